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
    """`; did you mean <where>.<nearest>?` for a misspelt `name` among `names`, or "" when none is near. Case is
    ignored (`model=TOY`); a name that begins a few (`model=sdxl`) is offered all of them, not the nearest one."""
    lowered, typed = {str(candidate).lower(): str(candidate) for candidate in names}, str(name).lower()
    tied = [candidate for low, candidate in lowered.items() if low.startswith(typed) and low != typed]
    if typed in lowered:  # the name in other case
        tied = [lowered[typed]]
    elif not 0 < len(tied) <= 4:
        close = difflib.get_close_matches(typed, list(lowered), n=4, cutoff=0.6)
        if not close:
            return ""
        best = difflib.SequenceMatcher(None, typed, close[0]).ratio()
        tied = [lowered[c] for c in close if difflib.SequenceMatcher(None, typed, c).ratio() == best]
    prefix = where + "." if where else ""
    named = [f"{prefix}{candidate}" for candidate in tied]
    return f"; did you mean {named[0] if len(named) == 1 else ', '.join(named[:-1]) + ' or ' + named[-1]}?"


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
