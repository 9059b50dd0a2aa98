"""`conf/x0viz.yaml`: x̂0 grids per step and the commitment curve of each method."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..schema import anything, choice, device, flag, integer, item_choice, items, number, out_dir, path, text
from .common import EMBEDDER_NAMES, METHODS, SEED_MAX, seeds_in_range
from .generate import k_within_schedule, pair_valid


@dataclass
class X0vizConfig:
    checks: ClassVar[tuple] = (pair_valid, k_within_schedule, seeds_in_range)

    model: Any = anything("the model pair (conf/model/<name>.yaml)")
    prompt: str = text("one prompt, taken literally (commas, brackets, quotes, ${...})")
    prompts: str = path("a prompt file (the curve averages over its prompts)", True)
    limit: int = integer("first N prompts of the file only (null: all)", 1, null=True)
    n: int = integer("seeds per prompt (grid rows)", 1, cap="max_images")
    seed: int = integer("first seed", 0, SEED_MAX)
    methods: list = items("methods to trace, e.g. [base,hybrid]", item_choice(METHODS), split=True, min_items=1)
    k: int = integer("hybrid / replace_final: distilled steps the base runs", 0)
    base_guidance: float = number("guidance of the base model inside hybrid / replace_final", 0)
    base_steps: int = integer("null: the base runs on the distilled schedule; N: N steps of its own", 1, null=True)
    metric: str = choice("embedder of the x̂0-to-final distance (auto: the pair's)", ("auto", *EMBEDDER_NAMES))
    threshold: float = number("committed once the distance is at most this fraction of its first value", 0, 1, True)
    columns: int = integer("grid columns at most (first and last step always shown)", 2)
    cell: int = integer("grid cell size, px", 8, 2048)
    out: str = out_dir("where the grids, commitment.csv and the curve go")
    overwrite: bool = flag("replace an x0viz run already in out")
    device: str = device()
    max_images: int = integer("cap on traced images (prompts x n); raise it to trace more", 1)
