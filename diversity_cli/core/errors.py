"""The one exception users see: a clear line on stderr and exit code 2, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or a missing resource the user can fix. The message is one line: what is wrong, what to do."""

    exit_code = 2
