"""`diversity-cli fid`: FID / IS / CLIP score per method of a run directory against a reference set."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from ..experiments.fid import measure_quality


def run(cfg: DictConfig) -> Path:
    return measure_quality(cfg)
