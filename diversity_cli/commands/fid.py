"""`diversity-cli fid`: FID / IS / CLIP score per method of a run directory against a reference set."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig


def validate(cfg: DictConfig) -> None:
    """What needs two keys, told before the preflight (with the pair's defaults: reference=auto is toy there)."""
    from ..core.rundir import RunDir
    from ..experiments.defaults import apply_defaults
    from ..experiments.fid import check_folder_reference, check_reference_limit, folder_groups, sample_groups

    if cfg.get("images") is not None:  # a missing or empty folder first: what else it needs is moot without it
        folder_groups(cfg)
    elif cfg.get("tags") is not None:  # a tag the run does not hold, too
        sample_groups(RunDir(cfg.out), cfg.tags)
    if cfg.get("reference_limit") is not None or cfg.get("images") is not None:  # else the preflight's come first
        apply_defaults(cfg)
        check_reference_limit(cfg)
        check_folder_reference(cfg)


def run(cfg: DictConfig) -> Path | None:
    # imported once the command line has been read: a typo is told before torch loads
    from ..experiments.fid import measure_quality, merge_quality, quality_remaining
    from ..experiments.launch import dispatch

    # shards (launcher=, devices=) or here; SIGUSR2 waits for the batch in hand, then the statistics so far are kept
    return dispatch(cfg, measure_quality, quality_remaining, merge_quality, batched=True)
