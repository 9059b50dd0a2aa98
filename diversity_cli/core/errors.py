"""The one exception users see: a clear line on stderr and exit code 2, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or a missing resource the user can fix. The message is one line: what is wrong, what to do."""

    exit_code = 2


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (a library's often runs on), or its type's name when it has none."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
