"""The `diversity-cli` command. Each subcommand composes `conf/<command>.yaml` with Hydra-style overrides
and hands the config to the `run(cfg)` of the module that does the work.

Heavy imports (torch, diffusers) happen inside those modules' functions, so `--help` and bad input answer at once.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import typer

from .errors import UserError

app = typer.Typer(
    help="Diversity and control of distilled diffusion models (Gandikota & Bau, 2025).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# (command, module with run(cfg), config name under conf/, one-line help)
COMMANDS = [
    (
        "generate",
        "diversity_cli.generate",
        "generate",
        "Sample a model pair (base | distilled | hybrid | skip_first | replace_final) into a run directory.",
    ),
    (
        "x0viz",
        "diversity_cli.x0viz",
        "x0viz",
        "Diffusion-target (x̂0) grids per step and the commitment curve of each method.",
    ),
    (
        "diversity",
        "diversity_cli.diversity",
        "diversity",
        "Sample diversity of a run directory or an image folder (mean pairwise distance, Vendi, coverage).",
    ),
    ("fid", "diversity_cli.fid", "fid", "FID / IS / CLIP score of a run directory against a reference set."),
    (
        "transfer-lora",
        "diversity_cli.transfer",
        "transfer_lora",
        "Apply an adapter trained on one model of a pair to the other and measure the change of CLIP score.",
    ),
    ("train-lora", "diversity_cli.toy.lora", "train_lora", "Train a small LoRA / slider on the toy base model."),
    ("train-toy", "diversity_cli.toy.train", "train_toy", "Train the built-in toy base model from scratch (CPU)."),
    ("distill", "diversity_cli.training.distill", "distill", "Few-step distillation of a base model: DMD or DP-DMD."),
    ("ablate", "diversity_cli.ablate", "ablate", "Sweep the sampler's knobs and measure each point."),
    ("report", "diversity_cli.report", "report", "Paper tables (measured beside published) and an HTML report."),
]

OVERRIDES = typer.Argument(None, help="Hydra-style overrides, e.g. model=sdxl_dmd2 method=hybrid k=1 n=16")
EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}


@app.callback()
def _root() -> None:
    """Diversity and control of distilled diffusion models (Gandikota & Bau, 2025)."""


def _register(name: str, module: str, config: str, help_text: str) -> None:
    def command(overrides: list[str] | None = OVERRIDES) -> None:
        from .config import compose

        target = importlib.import_module(module)
        if hasattr(target, "main"):  # it parses its own overrides first (ablate: sweeps, which compose rejects)
            target.main(list(overrides or []))
            return
        target.run(compose(config, overrides))

    app.command(name=name, help=help_text, context_settings=EXTRA)(command)


def _exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is not there either
        return False


for _name, _module, _config, _help in COMMANDS:
    if _exists(_module):  # only commands that exist are offered
        _register(_name, _module, _config, _help)


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
