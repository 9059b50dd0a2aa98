"""`diversity-cli train-toy`: train the built-in toy pair's base model (VAE, text encoder, UNet) from scratch."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig


def run(cfg: DictConfig) -> Path:
    from ..toy.train import train_toy  # torch, diffusers: once the command line has been read

    return train_toy(cfg)
