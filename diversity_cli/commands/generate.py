"""`diversity-cli generate`: sample prompts x seeds from a model pair into a resumable run directory."""

from __future__ import annotations

import os

from omegaconf import DictConfig

from ..experiments.generation import generate, merge_samples, remaining
from ..experiments.launch import dispatch
from ..sampling.methods import USES_BASE_KNOBS

# the hand-over's knobs: only methods where the base runs inside the distilled schedule read them (cli.py refuses
# them, set on the command line, with any other method)
# k=auto measures how many first steps the base must run: the hybrid's question, not replace_final's
READ_ONLY_BY = {"k=auto": ("method", ("hybrid",))}
READ_ONLY_BY.update({key: ("method", USES_BASE_KNOBS) for key in ("k", "base_guidance", "base_steps")})
# auto_k.* choose how k=auto measures: with k a number they were ignored without a word
READ_ONLY_BY.update({f"auto_k.{key}": ("k", ("auto",)) for key in ("prompts", "n", "metric", "threshold")})


def run(cfg: DictConfig) -> os.PathLike:
    return dispatch(cfg, generate, remaining, merge_samples, batched=True)  # shards (launcher=, devices=) or here
