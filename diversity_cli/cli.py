"""The `diversity-cli` command. Each subcommand composes `conf/<command>.yaml` with Hydra-style overrides
and hands the config to `run(cfg)` of its module under `commands/`.

Heavy imports (torch, diffusers) happen inside those modules' functions, so `--help` and bad input answer at once.
"""

from __future__ import annotations

import importlib
import pickle
import sys
import time
import warnings
from dataclasses import replace
from functools import partial

import typer

from . import __version__
from .commands import COMMANDS, Command
from .core import signals
from .core.cache import check_cache_root
from .core.errors import UserError, first_line

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
        # the summary's seconds are the command's from here: its imports, its config's composition, the checks
        # and the preflight, and the loading a run does (each at its own point), counted alike in a fresh and an
        # existing out=; only the interpreter's start and the CLI's own imports come before
        started = time.perf_counter()
        from .core.record import begin

        arguments = list(overrides or [])
        target = importlib.import_module(f"{__package__}.commands.{command.module}")
        if _answered(command, target, arguments):
            return
        begin(command.name, arguments)
        compose_config = getattr(target, "compose_config", None)  # ablate: sweeps are parsed before Hydra composes
        if compose_config is None and hasattr(target, "main"):  # no config at all (models, cache)
            target.main(arguments)
            return
        from .commands import checks, summary, usage

        cfg = _explained(command, arguments, lambda: (compose_config or partial(_compose, command))(arguments))
        # a key the chosen method never reads (k with method=base), set on the command line: refused, not ignored
        usage.refuse_ignored(command.config, cfg, arguments, getattr(target, "READ_ONLY_BY", {}))
        if hasattr(target, "validate"):  # the command's own checks of its values: one line before the preflight
            target.validate(cfg)
        preflight = checks.prepare(command.name, cfg)  # the pair's defaults, then every missing network at once
        rows_before = summary.before(command.name, cfg)
        result = target.run(cfg)
        done = summary.summarize(command.name, cfg, result, time.perf_counter() - started, rows_before)
        summary.show(replace(done, preflight=preflight))

    # --help is ours (keys, types, defaults from the command's config), so click must not take it
    settings = {**EXTRA, "help_option_names": []}
    app.command(name=command.name, help=command.help, context_settings=settings)(invoke)


def _answered(command: Command, target, arguments: list[str]) -> bool:
    """Hydra's habits before any work: --help, --cfg job, --info answered here; -m and hydra.run.dir refused."""
    from .commands import usage

    flag, rest = usage.hydra_flag(arguments)
    if flag in usage.MULTIRUN_FLAGS:
        raise usage.multirun_pointer(command.name)
    if flag in usage.HELP_FLAGS:
        pairs = []
        if command.config and "model" in usage.group_choices(command.config):
            from .commands.models import pair_lines

            pairs = pair_lines(checked=False)
        set_by_it = getattr(target, "SET_BY_THE_COMMAND", ())
        not_taken = getattr(target, "NOT_TAKEN", None)
        help_text = (
            usage.command_help(command.name, command.help, command.config, pairs, rest, set_by_it, not_taken)
            if command.config
            else None
        )
        print(help_text or command.help)
        return True
    if not command.config:
        return False
    usage.refuse_hydra_keys(command.name, rest)
    if any(item.startswith("+") for item in rest):  # Hydra would add any key silently; only sections take one
        usage.check_keys(command.config, [item for item in rest if "=" in item], only_added=True)
    if flag in usage.INFO_FLAGS:
        print(usage.info(command.config))
        return True
    if flag == "--cfg":
        from omegaconf import OmegaConf

        compose_config = getattr(target, "compose_config", None) or partial(_compose, command)
        cfg = _explained(command, rest, lambda: compose_config(rest))
        print(OmegaConf.to_yaml(cfg, resolve=False), end="")
        return True
    return False


def _compose(command: Command, arguments: list[str]):
    from .core.config import compose

    return compose(command.config, arguments)


def _explained(command: Command, arguments: list[str], action):
    """Run `action`; when Hydra refuses the overrides, say which key is unknown and what was meant."""
    from .commands import usage

    try:
        return action()
    except UserError as err:
        if "bad override" not in str(err):
            raise
        usage.check_keys(command.config, [a for a in arguments if "=" in a and ".." not in a.partition("=")[2]])
        raise


for _command in COMMANDS:
    _register(_command)


def run(argv: list[str] | None = None, until_exit: bool = False) -> int:
    """Run the CLI and return its exit code; user errors become one line on stderr and exit code 2. Every run
    record the command wrote says how it ended, written while a Ctrl-C no longer changes the code (a traceback from
    inside the writes before); `until_exit`: so until the process ends (the command line's own process)."""
    from .core.record import finish

    code = _run(argv)
    previous = signals.exit_on_signal(code)
    try:
        finish(code)
    finally:
        if not until_exit:
            signals.restore(previous)
    return code


def _run(argv: list[str] | None = None) -> int:
    import click
    from typer import _click as typer_click
    from typer import exceptions as typer_exceptions

    from .core.weights_only import force_weights_only

    usage_errors = (click.ClickException, typer_click.exceptions.ClickException)
    # torch's weights-only unpickler warns about a pickle's protocol just before it refuses the file: the refusal
    # is the one line the user gets
    warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
    force_weights_only()  # a CLI process loads tensors only, from every library (core/weights_only.py)
    stop = signals.install()  # Ctrl-C and SIGTERM: one line, finished work kept, exit 130 / 143
    given = argv if argv is not None else sys.argv[1:]
    overwrite = any(arg.replace(" ", "").lower() in ("overwrite=true", "overwrite=1") for arg in given)
    interrupted, returned = False, None
    try:
        check_cache_root()
        # Typer turns a KeyboardInterrupt into a returned 130 (one from a signal or raised inside a library alike)
        returned = app(args=argv, prog_name="diversity-cli", standalone_mode=False)
        interrupted = returned == 130
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except (click.exceptions.Exit, typer_exceptions.Exit) as done:
        return done.exit_code
    except typer_click.exceptions.NoArgsIsHelpError as err:  # no arguments: the help (rich prints it itself), exit 2
        if err.format_message().strip():
            print(err.format_message(), file=sys.stderr)
        return 2
    except usage_errors as err:  # whichever click raised it (Typer bundles its own): one line, exit 2
        hint = "" if "--help" in err.format_message() else " (diversity-cli --help lists the commands)"
        print(f"error: {err.format_message()}{hint}", file=sys.stderr)
        return 2
    except (click.exceptions.Abort, typer_exceptions.Abort, KeyboardInterrupt) as abort:
        if stop.signum is None and isinstance(abort.__context__, EOFError):
            # click reports an EOFError as an abort: a file read ended early (an empty or cut weights file), not
            # Ctrl-C
            print(f"error: a file ended before its end ({first_line(abort.__context__)}); it is empty or was cut "
                  "short: fetch or write it again", file=sys.stderr)  # fmt: skip
            return 2
        return stop.exit_code(overwrite)
    except OSError as err:  # read-only or full disk, `out` a file, an unreadable input: one line naming the file
        print(f"error: {signals.os_error_line(err)}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as err:
        print(f"error: a file is not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8", file=sys.stderr)
        return 2
    except pickle.UnpicklingError:  # a loader without its own line (models.loading.refusing_pickles names the file)
        print(
            "error: a weights file holds a pickle that is not plain tensors (it could run code), so diversity-cli "
            "does not load it; use the original weights (safetensors, or a file of tensors only)",
            file=sys.stderr,
        )
        return 2
    finally:
        stop.restore()
    if stop.signum is not None or interrupted:
        return stop.exit_code(overwrite)
    return returned if isinstance(returned, int) else 0  # a command's own typer.Exit(code) (`models <pair>`)


def main() -> None:
    sys.exit(run(until_exit=True))  # the results are written: a Ctrl-C while the process tears down keeps the code
