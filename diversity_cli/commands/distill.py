"""`diversity-cli distill`: few-step DMD or DP-DMD distillation of a pair's base model."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig


def run(cfg: DictConfig) -> Path:
    from ..training.distill import distill  # torch, diffusers: once the command line has been read

    return distill(cfg)
