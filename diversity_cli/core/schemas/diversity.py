"""`conf/diversity.yaml`: sample diversity of a run directory or an image folder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..schema import (
    ITEM_NAME,
    anything,
    choice,
    device,
    flag,
    integer,
    items,
    name,
    number,
    out_dir,
    path,
    section,
    text,
)
from .common import SEED_MAX

QUALITIES = ("auto", "clip_score", "toy_adherence", "none")
DREAMSIM_TYPES = ("ensemble", "dino_vitb16", "dinov2_vitb14", "open_clip_vitb32", "clip_vitb32", "synclr_vitb16")
DISTANCES = ("cosine", "euclidean", "sqeuclidean")  # metrics/embedders.py


@dataclass
class DreamSim:
    type: str = choice("DreamSim backbone", DREAMSIM_TYPES)
    cache_dir: str = path("DreamSim weights folder (null: $HF_HOME/dreamsim, else ~/.cache/dreamsim)", True)
    normalize_embeds: bool = flag("unit-length embeddings")


@dataclass
class Lpips:
    net: str = choice("LPIPS backbone", ("alex", "vgg", "squeeze"))
    resize: int = integer("resize inputs to this side first (needed when images differ in size)", 1, null=True)


@dataclass
class Clip:
    model: str = name("an open_clip model name, local-dir:/folder, or hf-hub:org/repo")
    pretrained: str = name("a checkpoint file or an open_clip tag in the HF cache", True)


@dataclass
class Dino:
    path: str = path("a local folder or a hub id already in the HF cache")


@dataclass
class Pixel:
    size: int = integer("images downsampled to size x size before the RMSE", 1, 4096)


@dataclass
class ToyFeatures:
    distance: str = choice("distance of the toy classifier's features", DISTANCES)
    path: str = path("a train-toy features/ folder (null: the shipped classifier)", True)


@dataclass
class Embedders:
    dreamsim: DreamSim = section(DreamSim, "DreamSim settings")
    lpips: Lpips = section(Lpips, "LPIPS settings")
    clip: Clip = section(Clip, "CLIP embedder settings")
    dino: Dino = section(Dino, "DINOv2 embedder settings")
    pixel: Pixel = section(Pixel, "pixel-space embedder settings")
    toy_features: ToyFeatures = section(ToyFeatures, "toy feature-network settings")


@dataclass
class DiversityConfig:
    out: str = out_dir("a run directory of generate (its samples.csv); diversity.csv is written there", True)
    images: str = path("... or a folder of images, one group", True)
    prompt: str = text("the prompt of an images= folder, taken literally")
    metric: list = items(
        "metric(s): dreamsim lpips clip dino pixel vendi toy_features toy_coverage", ITEM_NAME, True, 1
    )
    vendi_base: str = name("the embedder `vendi` scores")
    quality: str = choice(
        "the quality number beside every diversity number: auto (the pair's default_quality) | none", QUALITIES
    )
    reference: str = path("coverage against a folder, or a method tag of out= (e.g. base)", True)
    coverage_k: int = integer("k of the nearest-neighbour balls", 1)
    device: str = device()
    batch_size: int = integer("images per batch", 1)
    bootstrap: int = integer("resamples for the confidence interval (0: none)", 0, 1_000_000)
    ci: float = number("confidence level of the interval", 0, 1, low_open=True, high_open=True)
    seed: int = integer("bootstrap seed", 0, SEED_MAX)
    shard: str = name("I/N: block I of N of the groups (whole prompts) | auto: the SLURM array | null", True)
    shards: int = integer("with launcher= or devices=: split the command into this many shards, then merge", 1)
    launcher: str = name("local | slurm | submitit_local: where the shards run")
    devices: Any = anything("cpu:N | all | [cuda:0,cuda:1]: one local worker per device over the shards | null")
    launcher_params: Any = anything("per-run cluster settings over the launcher file")
    min_n: int = integer("groups with fewer images are skipped", 2)
    adherent_only: bool = flag("toy: diversity over the on-prompt images only (metric@adherent)")
    cache: bool = flag("keep embeddings per image in the user cache ($DIVERSITY_CLI_CACHE/embeddings)")
    embedders: Embedders = section(Embedders, "settings of each embedder")
