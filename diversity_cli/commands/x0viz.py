"""`diversity-cli x0viz`: x̂0 and x_t grids per step and each method's commitment curve (paper Fig. 3-5)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from ..experiments.x0viz import visualize


def run(cfg: DictConfig) -> Path:
    return visualize(cfg)
