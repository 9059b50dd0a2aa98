"""`diversity-cli transfer-lora`: control distillation, an adapter of one model of a pair applied to the other."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from ..experiments.transfer import transfer


def run(cfg: DictConfig) -> Path:
    return transfer(cfg)
