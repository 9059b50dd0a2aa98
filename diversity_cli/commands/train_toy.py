"""`diversity-cli train-toy`: train the built-in toy pair's base model (VAE, text encoder, UNet) from scratch."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from ..toy.train import train_toy


def run(cfg: DictConfig) -> Path:
    return train_toy(cfg)
