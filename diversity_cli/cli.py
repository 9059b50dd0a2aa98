"""The `diversity-cli` command. Each subcommand composes `conf/<command>.yaml` with Hydra-style overrides
and hands the config to `run(cfg)` of its module under `commands/`.

Heavy imports (torch, diffusers) happen inside those modules' functions, so `--help` and bad input answer at once.
"""

from __future__ import annotations

import importlib
import sys

import typer

from . import __version__
from .commands import COMMANDS, Command
from .core.errors import UserError

app = typer.Typer(
    help="Diversity and control of distilled diffusion models (Gandikota & Bau, 2025).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

OVERRIDES = typer.Argument(None, help="Hydra-style overrides, e.g. model=sdxl_dmd2 method=hybrid k=1 n=16")
EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}


def version_line() -> str:
    """The toolkit's version and the two libraries that decide what a sampler does (read without importing them)."""
    from importlib.metadata import PackageNotFoundError, version

    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "not installed"

    return f"diversity-cli {__version__} (torch {of('torch')}, diffusers {of('diffusers')})"


def _show_version(value: bool) -> None:
    if value:
        print(version_line())
        raise typer.Exit(0)


VERSION = typer.Option(
    False,
    "--version",
    help="Print the versions of diversity-cli, torch and diffusers.",
    callback=_show_version,
    is_eager=True,
)


@app.callback()
def _root(version: bool = VERSION) -> None:
    """Diversity and control of distilled diffusion models (Gandikota & Bau, 2025)."""


def _register(command: Command) -> None:
    def invoke(overrides: list[str] | None = OVERRIDES) -> None:
        from .core.config import compose
        from .core.record import begin

        begin(command.name, list(overrides or []))
        target = importlib.import_module(f"{__package__}.commands.{command.module}")
        if hasattr(target, "main"):  # it parses its own overrides first (ablate: sweeps, which compose rejects)
            target.main(list(overrides or []))
            return
        target.run(compose(command.config, overrides))

    app.command(name=command.name, help=command.help, context_settings=EXTRA)(invoke)


for _command in COMMANDS:
    _register(_command)


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
