"""The one exception users see: a clear line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager


class UserError(Exception):
    """Bad input or a missing resource the user can fix. The message is one line: what is wrong, what to do."""

    exit_code = 2


def first_line(err: BaseException, limit: int = 300) -> str:
    """An exception's message in one line (a library's often runs on), or its type's name when it has none. A first
    line that is a heading ending in ':' keeps the detail under it: torch's "Error(s) in loading state_dict for X:"
    says what did not fit only on the next line."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    text = f"{lines[0]} {lines[1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]
    return text[:limit]


def did_you_mean(name: str, names: Sequence[str], where: str = "") -> str:
    """`; did you mean <where>.<nearest>?` for a misspelt `name` among `names`, or "" when none is near."""
    close = difflib.get_close_matches(str(name), list(names), n=1, cutoff=0.6)
    return f"; did you mean {where + '.' if where else ''}{close[0]}?" if close else ""


# What a library raises when a setting the user gave it cannot be used (a diffusers scheduler's config, its schedule).
REFUSALS = (ValueError, TypeError, NotImplementedError)


@contextmanager
def refused_as(what: str, errors: tuple[type[BaseException], ...] = REFUSALS) -> Iterator[None]:
    """Around a library call on user settings: its refusal becomes one line, `<what>: <the library's first line>`."""
    try:
        yield
    except errors as err:
        raise UserError(f"{what}: {first_line(err)}") from None


def run_main(main: Callable[[], int | None]) -> int:
    """The exit code of a `python -m` entry point's `main`: a UserError is its line on stderr and exit 2, as the
    CLI's commands give it, never a traceback."""
    try:
        return int(main() or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
