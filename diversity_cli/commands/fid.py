"""`diversity-cli fid`: FID / IS / CLIP score per method of a run directory against a reference set."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from ..experiments.fid import measure_quality, merge_quality, quality_remaining
from ..experiments.launch import dispatch


def run(cfg: DictConfig) -> Path | None:
    # shards (launcher=, devices=) or here; SIGUSR2 waits for the batch in hand, then the statistics so far are kept
    return dispatch(cfg, measure_quality, quality_remaining, merge_quality, batched=True)
