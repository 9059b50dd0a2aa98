"""`diversity-cli diversity`: sample diversity per method and prompt of a run directory or an image folder."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig


def run(cfg: DictConfig) -> Path | None:
    # imported once the command line has been read: a typo is told before torch loads
    from ..experiments.diversity import diversity_remaining, measure_diversity, merge_diversity
    from ..experiments.launch import dispatch

    # shards by prompt, or here; SIGUSR2 waits for the batch in hand, then the new embeddings are kept
    return dispatch(cfg, measure_diversity, diversity_remaining, merge_diversity, batched=True)
