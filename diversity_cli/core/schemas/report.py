"""`conf/report.yaml`: the paper's tables, measured beside published, and an HTML report per run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..schema import ITEM_NAME, Rule, anything, flag, integer, items, out_dir, path, section


@dataclass
class Grid:
    prompts: int = integer("prompts shown in the HTML sample grid", 1, 1000)
    per_group: int = integer("thumbnails per (pair, method) and prompt", 1, 1000)
    thumb: int = integer("thumbnail side, px", 8, 1024)
    figures: int = integer("PNGs of the run directory embedded at most", 0, 10000)
    rows: int = integer("rows of each measurement CSV shown", 0, 1_000_000)


@dataclass
class ReportConfig:
    out: str = out_dir("a run directory (its CSVs); report.html is written there", True)
    runs: list = items("... or several run directories: runs=[dir1,dir2]", Rule("path", ""), min_items=1, null=True)
    tables: list = items("all, none, or some of [1,2,3,4,D1,E1]", None, split=True, min_items=1, also=("all", "none"))
    tables_dir: str = out_dir("where table_<id>.md / .csv, tables.md and the figures go (null: <run>/tables)", True)
    figures: bool = flag("Figure 5 from commitment.csv, Figure 7 from ablate.csv")
    html: bool = flag("write <run directory>/report.html (self-contained)")
    paper: str = path("the published numbers (a copy of the paper's tables)")
    grid: Grid = section(Grid, "the HTML sample grid")
    diversity_metrics: list = items("diversity metrics measured beside the paper's DreamSim", ITEM_NAME, min_items=1)
    mapping: Any = anything("which measured group fills which paper row, per table")
