"""One thin module per subcommand: compose its config, call the library, report where the results went.

Each module has `run(cfg)`; a module with `main(overrides)` parses its own overrides first. Modules are imported
only when their command runs, so `--help` and bad input answer before torch loads: their help lives here.
"""

from __future__ import annotations

from typing import NamedTuple


class Command(NamedTuple):
    name: str  # as typed: diversity-cli <name>
    module: str  # under diversity_cli.commands
    config: str  # conf/<config>.yaml
    help: str


COMMANDS = [
    Command(
        "generate",
        "generate",
        "generate",
        "Sample a model pair (base | distilled | hybrid | skip_first | replace_final) into a run directory.",
    ),
    Command("x0viz", "x0viz", "x0viz", "Diffusion-target (x̂0) grids per step and the commitment curve of each method."),
    Command(
        "diversity",
        "diversity",
        "diversity",
        "Sample diversity of a run directory or an image folder (mean pairwise distance, Vendi, coverage).",
    ),
    Command("fid", "fid", "fid", "FID / IS / CLIP score of a run directory against a reference set."),
    Command(
        "transfer-lora",
        "transfer_lora",
        "transfer_lora",
        "Apply an adapter trained on one model of a pair to the other and measure the change of CLIP score.",
    ),
    Command("train-lora", "train_lora", "train_lora", "Train a small LoRA / slider on the toy base model."),
    Command("train-toy", "train_toy", "train_toy", "Train the built-in toy base model from scratch (CPU)."),
    Command("distill", "distill", "distill", "Few-step distillation of a base model: DMD or DP-DMD."),
    Command("ablate", "ablate", "ablate", "Sweep the sampler's knobs and measure each point."),
    Command("report", "report", "report", "Paper tables (measured beside published) and an HTML report."),
    Command("cache", "cache", "", "Show (`cache info`) or empty (`cache clear`, or `cache clear <kind>`) the cache."),
    Command(
        "models",
        "models",
        "",
        "The model pairs: base, student, resolution, weights present or not; `models <pair>`: what is missing "
        "(exit 1 if anything is).",
    ),
]
