"""`key=value` arguments of the `python -m` tools (the toy table, the DP-DMD ablation) that have no Hydra config."""

from __future__ import annotations

from collections.abc import Sequence

from .errors import UserError

HELP_FLAGS = ("-h", "--help")


def key_values(argv: Sequence[str], allowed: Sequence[str], program: str) -> dict[str, str] | None:
    """The arguments as a dict; None when help is asked (the caller prints its usage). Anything else is one line
    naming it: a bare word (`--help` misspelt, a folder without `out=`) was dropped and the full run started."""
    if any(item in HELP_FLAGS for item in argv):
        return None
    takes = " ".join(f"{key}=" for key in allowed)
    for item in argv:
        key, sep, _ = item.partition("=")
        if not sep or key not in allowed:
            raise UserError(f"{program} argument '{item}' is not one of {takes} (key=value; --help shows the usage)")
    return dict(item.split("=", 1) for item in argv)
