"""The `diversity-cli` command. Each subcommand composes `conf/<command>.yaml` with Hydra-style overrides.

Heavy imports (torch, diffusers) happen inside the commands, so `--help` and bad input answer at once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import typer

from .errors import UserError

app = typer.Typer(
    help="Diversity and control of distilled diffusion models (Gandikota & Bau, 2025).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Diversity and control of distilled diffusion models (Gandikota & Bau, 2025)."""


OVERRIDES = typer.Argument(None, help="Hydra-style overrides, e.g. model=sdxl_dmd2 method=hybrid k=1 n=16")
EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}


def _run(command: str, action: Callable, overrides: list[str] | None) -> None:
    from .config import compose

    cfg = compose(command, overrides)
    action(cfg)


@app.command(context_settings=EXTRA)
def generate(overrides: list[str] | None = OVERRIDES) -> None:
    """Sample a model pair (base | distilled | hybrid | skip_first | replace_final) into a run directory."""
    from .generate import generate as run

    _run("generate", run, overrides)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; user errors become one line on stderr and exit code 2."""
    import click

    try:
        app(args=argv, standalone_mode=False)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.ClickException as err:
        print(f"error: {err.format_message()}", file=sys.stderr)
        return 2
    except (click.exceptions.Abort, KeyboardInterrupt):
        print("aborted", file=sys.stderr)
        return 130
    return 0


def main() -> None:
    sys.exit(run())
