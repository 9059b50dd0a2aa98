"""`diversity-cli generate`: sample prompts x seeds from a model pair into a resumable run directory."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from ..experiments.generation import generate


def run(cfg: DictConfig) -> Path:
    return generate(cfg)
