"""`diversity-cli transfer-lora`: control distillation, an adapter of one model of a pair applied to the other."""

from __future__ import annotations

from typing import TYPE_CHECKING

from omegaconf import DictConfig

from ..core.schema import check
from ..core.schemas.transfer_lora import TransferLoraConfig

if TYPE_CHECKING:
    from ..experiments.transfer import Measured

# the adapter trained on the distilled model is the second of direction=both: in one direction it was ignored, and
# the run measured one adapter where the user asked for two
READ_ONLY_BY = {key: ("direction", ("both",)) for key in ("reverse_adapter", "reverse_adapter_file")}


def validate(cfg: DictConfig) -> None:
    """The values against the schema first (no torch imported: n=0 is told at once), then the adapter files, an
    adapters= table and the prompts, read and checked before the preflight: bad input is told before a missing
    checkpoint (with the pair's defaults: its default prompt)."""
    check(TransferLoraConfig, cfg)
    from ..experiments.defaults import apply_defaults
    from ..experiments.transfer import make_plan, refuse_overruled

    refuse_overruled(cfg)  # before the pair's default prompt fills prompt=
    apply_defaults(cfg)
    make_plan(cfg)


def run(cfg: DictConfig) -> Measured | None:
    from ..experiments.launch import dispatch
    from ..experiments.transfer import merge_transfer, transfer, transfer_remaining

    # shards of the (adapter, prompt) units (launcher=, devices=) or here; SIGUSR2 waits for the batch in hand
    return dispatch(cfg, transfer, transfer_remaining, merge_transfer, batched=True)
