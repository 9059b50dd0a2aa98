"""`diversity-cli x0viz`: x̂0 and x_t grids per step and each method's commitment curve (paper Fig. 3-5)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from ..sampling.methods import USES_BASE_KNOBS

# the hand-over's knobs: read by a hybrid or replace_final curve only (cli.py refuses them, set on the command line,
# when `methods` has neither)
READ_ONLY_BY = {key: ("methods", USES_BASE_KNOBS) for key in ("k", "base_guidance", "base_steps")}


def run(cfg: DictConfig) -> Path:
    from ..experiments.x0viz import visualize  # diffusers: imported once the command line has been read

    return visualize(cfg)
