"""`diversity-cli generate`: sample prompts x seeds from a model pair into a resumable run directory."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from ..experiments.generation import generate, merge_samples, remaining
from ..experiments.launch import dispatch


def run(cfg: DictConfig) -> Path:
    return dispatch(cfg, generate, remaining, merge_samples, batched=True)  # shards (launcher=, devices=) or here
