"""`diversity-cli distill`: few-step DMD or DP-DMD distillation of a pair's base model."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from ..training.distill import distill


def run(cfg: DictConfig) -> Path:
    return distill(cfg)
