"""`conf/train_lora.yaml`: a small LoRA or slider on the toy base model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..schema import ITEM_NAME, anything, choice, device, flag, integer, items, number, out_dir, spec
from .common import SEED_MAX
from .generate import base_pair_valid


@dataclass
class TrainLoraConfig:
    checks: ClassVar[tuple] = (base_pair_valid,)

    model: Any = anything("the model pair whose base is trained (conf/model/<name>.yaml)")
    concept: str = spec("a toy factor value, or factor=value: every training scene shows it")
    mode: str = choice("lora: scenes showing the concept | slider: concept vs negative", ("lora", "slider"))
    negative: str = spec("slider: the opposite value of the same factor (or factor=value)", True)
    images: int = integer("training scenes", 1)
    data_seed: int = integer("seed of the training scenes", 0, SEED_MAX)
    steps: int = integer("optimizer steps", 1)
    batch_size: int = integer("scenes per step", 1)
    lr: float = number("learning rate", 0, low_open=True)
    rank: int = integer("LoRA rank", 1)
    target_modules: list = items("UNet modules that get a LoRA", ITEM_NAME, split=True, min_items=1)
    uncond_prob: float = number("fraction of captions dropped to the empty prompt", 0, 1)
    seed: int = integer("training seed", 0, SEED_MAX)
    checkpoint_every: int = integer("steps between checkpoints", 1)
    out: str = out_dir("where pytorch_lora_weights.safetensors and adapter.json go")
    overwrite: bool = flag("replace a train-lora run in out made with other settings")
    device: str = device()
