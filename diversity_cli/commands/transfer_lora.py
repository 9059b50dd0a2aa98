"""`diversity-cli transfer-lora`: control distillation, an adapter of one model of a pair applied to the other."""

from __future__ import annotations

from omegaconf import DictConfig

from ..experiments.launch import dispatch
from ..experiments.transfer import Measured, merge_transfer, transfer, transfer_remaining


def run(cfg: DictConfig) -> Measured | None:
    # shards of the (adapter, prompt) units (launcher=, devices=) or here; SIGUSR2 waits for the batch in hand
    return dispatch(cfg, transfer, transfer_remaining, merge_transfer, batched=True)
