"""`diversity-cli train-lora`: train a small LoRA or slider on the toy base model."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from ..toy.lora import train_lora


def run(cfg: DictConfig) -> Path:
    return train_lora(cfg)
