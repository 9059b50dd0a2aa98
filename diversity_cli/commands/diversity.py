"""`diversity-cli diversity`: sample diversity per method and prompt of a run directory or an image folder."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from ..experiments.diversity import measure_diversity


def run(cfg: DictConfig) -> Path:
    return measure_diversity(cfg)
