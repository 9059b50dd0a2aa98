"""`diversity-cli train-lora`: train a small LoRA or slider on the toy base model."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

# a LoRA trains on the concept alone; only a slider reads its opposite (cli.py refuses negative= with mode=lora)
READ_ONLY_BY = {"negative": ("mode", ("slider",))}


def validate(cfg: DictConfig) -> None:
    """concept=, negative=, mode= and the counts, checked before the preflight loads anything."""
    from ..toy.lora import validate as checked  # torch: once the command line has been read

    checked(cfg)


def run(cfg: DictConfig) -> Path:
    from ..toy.lora import train_lora

    return train_lora(cfg)
