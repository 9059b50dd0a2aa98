"""`conf/ablate.yaml`: every generate key, the measuring commands' settings, and the sweep's own keys."""

from __future__ import annotations

from dataclasses import dataclass

from ..schema import (
    ITEM_NAME,
    Rule,
    flag,
    integer,
    item_choice,
    item_float,
    item_int,
    items,
    name,
    out_dir,
    section,
    sweep,
)
from .common import METHODS
from .diversity import DiversityConfig
from .fid import FidConfig
from .generate import GenerateConfig


@dataclass
class Measure:
    diversity: DiversityConfig = section(DiversityConfig, "the diversity command's settings (measure.diversity.*)")
    fid: FidConfig = section(FidConfig, "the fid command's settings (measure.fid.*)")


@dataclass
class AblateConfig(GenerateConfig):
    method: str = sweep("method(s) of the sweep", item_choice(METHODS))
    k: int = sweep("k: distilled steps the base runs (e.g. k=1..4)", item_int(0))
    base_guidance: float = sweep("guidance of the base inside the schedule (e.g. base_guidance=0,2,5)", item_float(0))
    base_steps: int = sweep("the base's own steps (null: the distilled schedule)", Rule("int", "", low=1, null=True))
    n: int = integer("samples per prompt and point (at least 2: diversity compares images)", 2, cap="max_images")
    out: str = out_dir("points/<model>/<tag>/, ablate.csv, plots/, multirun/")
    metric: list = items("diversity metric(s) of every point", ITEM_NAME, split=True, min_items=1)
    fid: bool = flag("also FID / IS / CLIP score of every point")
    baselines: bool = flag("also base and distilled alone, the lines the figures compare against")
    plots: bool = flag("draw <out>/plots/")
    merge: bool = flag("only collect the points' results and redraw the plots")
    launcher: str = name("local | slurm | submitit_local | a conf/hydra/launcher entry")
    launcher_overrides: list = items("Hydra overrides for the multirun", ITEM_NAME)
    max_points: int = integer("cap on the sweep's points (values of a knob, and the grid); raise it to sweep more", 1)
    max_images: int = integer("cap on images per command (points x prompts x n); raise it to make more", 1)
    measure: Measure = section(Measure, "settings of the measuring commands")
