"""`diversity-cli distill`: few-step DMD or DP-DMD distillation of a pair's base model."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig


def validate(cfg: DictConfig) -> None:
    """The training settings, checked before the preflight (a bad anchor_k was told after it, on a second line)."""
    from ..training.distill import validate as check  # torch: once the command line has been read

    check(cfg)


def run(cfg: DictConfig) -> Path:
    from ..training.distill import distill  # torch, diffusers: once the command line has been read

    return distill(cfg)
