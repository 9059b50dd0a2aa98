"""`conf/fid.yaml`: FID / IS / CLIP score of a run directory against a reference set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..schema import ITEM_NAME, anything, choice, device, integer, items, name, out_dir, path, section
from .common import SEED_MAX


@dataclass
class Coco:
    images: str = path("folder of the COCO images (val2014 for data/coco_30k.csv)", True)
    captions: str = path("CSV with a coco_id column, or a COCO annotation .json")
    pattern: str = name("file name of a coco_id, e.g. COCO_val2014_{coco_id:012d}.jpg; auto tries the usual ones")


@dataclass
class Toy:
    mode: str = choice(
        "prompts: ground-truth scenes per prompt of the run; dataset: `count` scenes", ("prompts", "dataset")
    )
    per_prompt: int = integer("ground-truth scenes per prompt", 1)
    count: int = integer("scenes of mode=dataset", 2)
    seed: int = integer("seed of the ground-truth scenes", 0, SEED_MAX)


@dataclass
class FidConfig:
    out: str = out_dir("the run directory to evaluate (its samples.csv); fid.csv is written there")
    reference: str = path("auto (the pair's default_reference) | coco | toy | a folder of images")
    images: str = path("... or score this folder of images (one group) instead of a run; fid.csv goes to out=", True)
    reference_limit: int = integer("only the first N reference images (null: all)", 1, null=True)
    coco: Coco = section(Coco, "reference=coco")
    toy: Toy = section(Toy, "reference=toy")
    features: str = name("auto | inception | toy | tiny_random | package.module:factory (imports that code)")
    inception_weights: str = path("Inception weights file (null: $TORCH_HOME/hub/checkpoints/)", True)
    resolution: int = integer("side of the square images the features see (null: the network's own)", 8, 4096, True)
    resize: str = choice(
        "pil_bicubic (8-bit PIL bicubic) or clean (clean-fid's float resize)", ("pil_bicubic", "clean")
    )
    clip_model: str = name("auto | hub id or folder | tiny_random | null (no CLIP score)", True)
    is_splits: int = integer("Inception Score: splits of the images", 1)
    tags: list = items("only these method tags (null: every group)", ITEM_NAME, split=True, min_items=1, null=True)
    batch_size: int = integer("images per batch", 1)
    workers: int = integer("threads that read and resize images", 1, 256)
    device: str = device()
    cache_dir: str = path("reference statistics (null: the user cache)", True)
    seed: int = integer("seed of the Inception Score's shuffle", 0, SEED_MAX)
    shard: str = name(
        "I/N: statistics of shard I of N (whole batches of each group) | auto: the SLURM array | null", True
    )
    shards: int = integer("with launcher= or devices=: split the command into this many shards, then merge", 1)
    launcher: str = name("local | slurm | submitit_local: where the shards run")
    devices: Any = anything("cpu:N | all | [cuda:0,cuda:1]: one local worker per device over the shards | null")
    launcher_params: Any = anything("per-run cluster settings over the launcher file")
