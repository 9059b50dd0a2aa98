"""`diversity-cli ablate`: sweep the sampler's knobs (ranges, lists, grids), generate and measure every point."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from ..core.config import compose
from ..experiments.sweep import GENERATE_SCALE_OUT, KNOBS, measure_keys_set_per_point, split_overrides
from ..sampling.methods import USES_BASE_KNOBS

# the knobs besides method are the hand-over's: k=1..4 over method=base alone is one point repeated, so cli.py
# refuses them unless a swept method reads them
READ_ONLY_BY = {key: ("method", USES_BASE_KNOBS) for key in KNOBS if key != "method"}
# --help leaves them out of the keys to give, and names them
SET_BY_THE_COMMAND = measure_keys_set_per_point()
NOT_TAKEN = dict.fromkeys(
    GENERATE_SCALE_OUT, "it runs every point whole; launcher= spreads the points over jobs, hydra.launcher.* sets them"
)


def compose_config(overrides: list[str]) -> DictConfig:
    """Sweep arguments (`k=1..4`, `base_guidance=0,2,5`) are parsed before Hydra composes: its compose API rejects
    them."""
    args = split_overrides(overrides)
    cfg = compose("ablate", args.compose)
    cfg.launcher_overrides = [*cfg.launcher_overrides, *args.hydra]
    return cfg


def validate(cfg: DictConfig) -> None:
    """Every point of the sweep checked before the preflight (k=5 on a 4-step student): told before a missing
    checkpoint, not after it has been fetched."""
    from ..experiments.ablate import plan_sweep  # torch: once the command line has been read

    plan_sweep(cfg)


def main(overrides: list[str]) -> Path:
    return run(compose_config(overrides))


def run(cfg: DictConfig) -> Path:
    from ..experiments.ablate import ablate

    return ablate(cfg)
