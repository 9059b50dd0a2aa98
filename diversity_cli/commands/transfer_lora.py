"""`diversity-cli transfer-lora`: control distillation, an adapter of one model of a pair applied to the other."""

from __future__ import annotations

from omegaconf import DictConfig

from ..experiments.defaults import apply_defaults
from ..experiments.launch import dispatch
from ..experiments.transfer import (
    Measured,
    make_plan,
    merge_transfer,
    refuse_overruled,
    transfer,
    transfer_remaining,
)

# the adapter trained on the distilled model is the second of direction=both: in one direction it was ignored, and
# the run measured one adapter where the user asked for two
READ_ONLY_BY = {key: ("direction", ("both",)) for key in ("reverse_adapter", "reverse_adapter_file")}


def validate(cfg: DictConfig) -> None:
    """The adapter files, an adapters= table and the prompts, read and checked before the preflight: bad input is
    told before a missing checkpoint (with the pair's defaults: its default prompt)."""
    refuse_overruled(cfg)  # before the pair's default prompt fills prompt=
    apply_defaults(cfg)
    make_plan(cfg)


def run(cfg: DictConfig) -> Measured | None:
    # shards of the (adapter, prompt) units (launcher=, devices=) or here; SIGUSR2 waits for the batch in hand
    return dispatch(cfg, transfer, transfer_remaining, merge_transfer, batched=True)
