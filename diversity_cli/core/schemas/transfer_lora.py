"""`conf/transfer_lora.yaml`: an adapter of one model of a pair applied to the other (paper Table 1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..schema import anything, choice, device, flag, integer, name, number, out_dir, path, spec, text
from .common import SEED_MAX, seeds_in_range
from .generate import pair_valid

DIRECTIONS = ("base_to_distilled", "distilled_to_base", "both")  # experiments/transfer.py


@dataclass
class TransferLoraConfig:
    checks: ClassVar[tuple] = (pair_valid, seeds_in_range)

    model: Any = anything("the model pair (conf/model/<name>.yaml)")
    adapter: str = path("weights file, folder or hub repo id of the adapter (LoRA, slider, Custom Diffusion)", True)
    adapters: str = path("a CSV table of adapters (name,concept,prompt,scale[,file] a row), instead of adapter=", True)
    adapter_dir: str = path("adapters=: the folder holding <name> of each row (default: the table's folder)", True)
    adapter_file: str = path("the file inside a folder or hub repo", True)
    adapter_name: str = name("name in transfer.csv and folders (default: adapter.json's name or the file name)", True)
    direction: str = choice("which model the adapter was trained on", DIRECTIONS)
    reverse_adapter: str = path("direction=both: the adapter trained on the distilled model", True)
    reverse_adapter_file: str = path("the file inside reverse_adapter's folder or repo", True)
    scale: float = number("adapter weight (negative pushes the other way; 0: no effect)", -100, 100)
    concept: str = text("text the CLIP score is measured toward, taken literally (default: train-lora's concept)")
    prompt: str = text("one prompt, taken literally (commas, brackets, quotes, ${...})")
    prompts: str = path("a .txt / .csv prompt file (as generate)", True)
    limit: int = integer("first N prompts of the file only (null: all)", 1, null=True)
    n: int = integer("seeds per prompt", 1, cap="max_images")
    seed: int = integer("first seed", 0, SEED_MAX)
    clip_model: str = name("auto | hub id or folder | tiny_random | null", True)
    classifier: bool = flag("count the toy factor classifier's hits (auto: on toy pairs)", also=("auto",))
    classifier_target: str = spec("factor=value it counts, e.g. classifier_target=color=red", True)
    grid_seeds: int = integer("seeds of the first prompt in the grid PNG (0: no grid)", 0, 64)
    grid_cell: int = integer("side of one grid image, px", 8, 2048)
    batch_size: int = integer("images per batch", 1)
    out: str = out_dir("run directory: images, samples.csv, transfer.csv, grids")
    overwrite: bool = flag("replace images in out made with other settings")
    lock_wait: float = number(
        "another process writing the same samples file: wait this long, s (0: refuse)", 0, null=True
    )
    shard: str = name(
        "I/N: only shard I of N (0-based) of the (adapter, prompt) units | auto: the SLURM array | null", True
    )
    shards: int = integer("with launcher= or devices=: split the command into this many shards, then merge", 1)
    launcher: str = name("local | slurm | submitit_local: where the shards run")
    devices: Any = anything("cpu:N | all | [cuda:0,cuda:1]: one local worker per device over the shards | null")
    launcher_params: Any = anything("per-run cluster settings over the launcher file")
    device: str = device()
    max_images: int = integer("cap on images per adapter and model (prompts x n); raise it to make more", 1)
