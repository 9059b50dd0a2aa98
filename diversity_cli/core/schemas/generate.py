"""`conf/generate.yaml`: sample a model pair with one of the paper's methods."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

from omegaconf import DictConfig, OmegaConf

from ..errors import UserError
from ..pair_settings import check_pair_shape, check_sampling_numbers, micro_batch_of
from ..schema import (
    ITEM_TEXT,
    anything,
    check,
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
    show,
    text,
)
from .common import EMBEDDER_NAMES, METHODS, SEED_MAX, USES_BASE_KNOBS, seeds_in_range


@dataclass
class AutoK:
    prompts: list = items("prompts the base model's commitment is measured on", ITEM_TEXT, min_items=1)
    n: int = integer("seeds per prompt of that measurement", low=1)
    metric: str = choice("embedder of the x̂0-to-final distance (auto: the pair's)", ("auto", *EMBEDDER_NAMES))
    threshold: float = number("committed once the distance is at most this fraction of its first value", 0, 1, True)


AUTO_K = "auto_k"


def pair_auto_k(cfg: DictConfig, given: set[str]) -> None:
    """A pair's own `auto_k:` block (`conf/model/<pair>.yaml`, any of prompts, n, metric, threshold) stands in for
    the command's defaults, which are SDXL prompts measured in pixels: a pair knows what its base can draw and
    how to judge it. A key the user gave on the command line (`given`: the dotted keys typed) still wins."""
    model = cfg.get("model")
    own = model.get(AUTO_K) if isinstance(model, DictConfig) else None
    if own is None or not isinstance(cfg.get(AUTO_K), DictConfig):
        return
    where = f"model.{AUTO_K}"
    if not isinstance(own, DictConfig):
        raise UserError(f"{where}={show(own)}: {where} is a group of settings ({where}.prompts=[...], .n, ...)")
    allowed = [item.name for item in fields(AutoK)]
    unknown = [str(key) for key in own if key not in allowed]
    if unknown:
        raise UserError(f"{where}.{unknown[0]} is not a k=auto setting; a pair's {AUTO_K} sets {', '.join(allowed)}")
    check(AutoK, own, prefix=f"{where}.")
    if AUTO_K in given:  # auto_k={...} typed whole
        return
    for key in own:
        if f"{AUTO_K}.{key}" not in given:
            value = own[key]
            cfg[AUTO_K][key] = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def schedule_steps(model: Any) -> int | None:
    """Steps of the distilled schedule of a composed model config (None when it does not say)."""
    try:
        timesteps = model.distilled.get("timesteps")
        return len(timesteps) if timesteps else int(model.distilled.steps)
    except (AttributeError, TypeError, ValueError, KeyError):
        return None


def k_within_schedule(cfg: DictConfig, root: DictConfig) -> None:
    """`k` counts distilled steps: it cannot exceed the pair's distilled schedule, and a one-step schedule has no
    hand-over (nor a first step to skip)."""
    k = cfg.get("k")
    methods = cfg.get("methods") if "methods" in cfg else [cfg.get("method")]
    steps = schedule_steps(cfg.get("model"))
    if steps is not None and steps < 2 and "skip_first" in (methods or []):
        raise UserError(
            f"skip_first needs a distilled schedule of at least 2 steps; {cfg.model.name} has {steps} "
            "(give model.distilled.steps=N with N >= 2)"
        )
    if k == "auto" and "replace_final" in (methods or []):
        # the base's commitment says how many first steps it must run; it says nothing of how many final ones
        raise UserError(
            "k=auto measures how many first steps the base must run (method=hybrid); replace_final replaces the "
            "last k steps: give k=1..N"
        )
    uses_k = any(isinstance(m, str) and m in USES_BASE_KNOBS for m in methods or [])
    if not isinstance(k, int) or isinstance(k, bool) or not uses_k:
        return
    if steps is not None and k > steps:
        raise UserError(
            f"k={k} is out of range for {cfg.model.name}: its distilled schedule has {steps} steps (0..{steps})"
        )
    if steps == 1 and k == 1:  # k=n on a longer schedule is the ablation's end point; here it is all there is
        raise UserError(
            f"{cfg.model.name}'s distilled schedule has 1 step: k=1 leaves the student no step (the base alone, "
            "labelled a hybrid); give model.distilled.steps=N with N >= 2 for a hand-over, or k=0"
        )


def pair_valid(cfg: DictConfig, root: DictConfig, student_read: bool = True) -> None:
    """A pair's `micro_batch` (samples per network call), each role's steps and guidance, and the keys every load
    reads (conf/model/<name>.yaml, or overrides of them): see core/pair_settings.py."""
    micro_batch_of(cfg.get("model") or {})
    check_sampling_numbers(cfg.get("model") or {})
    check_pair_shape(cfg.get("model"), student_read)


def base_pair_valid(cfg: DictConfig, root: DictConfig) -> None:
    """`pair_valid` for commands that train from the base alone (distill, train-lora): the student's weights, which
    they never read, need not exist yet."""
    pair_valid(cfg, root, student_read=False)


@dataclass
class GenerateConfig:
    checks: ClassVar[tuple] = (pair_valid, k_within_schedule, seeds_in_range)

    model: Any = anything("the model pair (conf/model/<name>.yaml): model=toy, model=sdxl_dmd2, ...")
    method: str = choice("sampling method", METHODS)
    k: int = integer(
        "hybrid: distilled steps the base runs first (auto: measured); replace_final: the last k", 0, also=("auto",)
    )
    base_guidance: float = number("guidance of the base model inside hybrid / replace_final", 0)
    base_steps: int = integer("null: the base runs on the distilled schedule; N: N steps of its own", 1, null=True)
    n: int = integer("samples per prompt", 1, cap="max_images")
    seed: int = integer("first seed; sample j of a prompt uses seed + j", 0, SEED_MAX)
    prompt: str = text("one prompt, taken literally (commas, brackets, quotes, ${...}); null: the pair's default")
    prompts: str = path("a text file (one prompt per line) or a CSV with a prompt column (and a seed column)", True)
    limit: int = integer("first N prompts of the file only (null: all)", 1, null=True)
    batch_size: int = integer("images per batch (results do not depend on it)", 1)
    out: str = out_dir("the run directory: images, samples.csv, records")
    overwrite: bool = flag("replace images in out made with other settings")
    lock_wait: float = number(
        "another process writing the same samples file: wait this long, s (0: refuse)", 0, null=True
    )
    shard: str = name("I/N: only shard I of N (0-based) of the prompt rows | auto: from the SLURM array | null", True)
    shards: int = integer("with launcher= or devices=: split the command into this many shards", 1)
    launcher: str = name("local | slurm | submitit_local: where the shards run")
    devices: Any = anything("cpu:N | all | [cuda:0,cuda:1]: one local worker per device over the shards | null")
    launcher_params: Any = anything("per-run cluster settings over the launcher file")
    device: str = device()
    max_images: int = integer("cap on images per command (prompts x n); raise it to make more", 1)
    auto_k: AutoK = section(
        AutoK, "k=auto: where the base model commits, measured once per pair and cached (a pair's auto_k block first)"
    )
