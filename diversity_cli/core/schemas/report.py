"""`conf/report.yaml`: the paper's tables, measured beside published, and an HTML report per run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from omegaconf import DictConfig, ListConfig

from ..errors import UserError
from ..schema import ITEM_NAME, Rule, anything, flag, integer, items, out_dir, path, section, show
from .common import ADHERENT, EMBEDDER_NAMES, diversity_row_metric


@dataclass
class Grid:
    prompts: int = integer("prompts shown in the HTML sample grid", 1, 1000)
    per_group: int = integer("thumbnails per (pair, method) and prompt", 1, 1000)
    thumb: int = integer("thumbnail side, px", 8, 1024)
    figures: int = integer("PNGs of the run directory embedded at most", 0, 10000)
    rows: int = integer("rows of each measurement CSV shown", 0, 1_000_000)


# Each table's mapping: its keys and what each holds ("labels": a group of name -> text; "rows": the same, a null
# label leaving that method out of the paper's rows; "pairs": a group of pair -> rows; "?": or null).
MAPPING = {
    "1": {"targets": "labels", "adapters": "labels"},
    "2": {"model": "name?", "rows": "rows"},  # model null: the pair measured most
    "3": {"model": "name?", "prompts": "file", "metrics": "names", "rows": "rows"},
    "4": {"model": "name?", "rows": "rows"},
    "D1": {"prompt": "text", "metrics": "names", "standin": "name?", "models": "pairs"},
    "E1": {"prompt": "text", "metrics": "names", "standin": "name?", "standin_prompt": "text?", "models": "pairs"},
}
MAPPING_WORDS = {
    "labels": "a group of name: label",
    "rows": "a group of method: paper row label",
    "pairs": "a group of pair: {method: paper row label}",
    "name": "a name",
    "file": "a file",
    "text": "text",
    "names": "a list of names",
}


def mapping_typed(cfg: DictConfig, root: DictConfig) -> None:
    """The paper-row mapping has a fixed shape per table: a number, a removed table or a list where a group belongs
    failed deep in a table's build (a TypeError or KeyError) instead of here."""
    tables = cfg.get("tables")
    if tables == "none" or (isinstance(tables, ListConfig) and list(tables) == ["none"]):
        return  # no table is built (the HTML page builds them all when any is asked for)
    mapping = cfg.get("mapping")
    if not isinstance(mapping, DictConfig):
        raise UserError(f"mapping={show(mapping)}: mapping is a group of tables ({', '.join(MAPPING)})")
    for table, fields in MAPPING.items():
        group = mapping.get(table)
        if not isinstance(group, DictConfig):
            said = "is missing" if group is None else f"={show(group)}"
            raise UserError(f"mapping.{table} {said}: mapping.{table} is a group of {', '.join(fields)}")
        for key, kind in fields.items():
            where = f"mapping.{table}.{key}"
            _check_mapping_value(kind, group.get(key), where)
        standin = group.get("standin")
        if standin is not None and standin not in group.models:
            raise UserError(
                f"mapping.{table}.standin={show(standin)}: name one of mapping.{table}.models "
                f"({', '.join(map(str, group.models))}) or null"
            )


def _check_mapping_value(kind: str, value: Any, where: str) -> None:
    optional, kind = kind.endswith("?"), kind.rstrip("?")
    if value is None and optional:
        return
    if kind in ("labels", "rows", "pairs"):
        fits = isinstance(value, DictConfig)
        allowed = (str, int, float, type(None)) if kind == "rows" else (str, int, float)
        for name, label in value.items() if fits else ():
            if kind == "pairs":  # each pair's rows
                _check_mapping_value("rows", label, f"{where}.{name}")
            elif not isinstance(label, allowed) or (isinstance(label, str) and not label.strip()):
                words = "the label of a paper row or null (left out)" if kind == "rows" else "a label"
                raise UserError(f"{where}.{name}={show(label)}: {where}.{name} is {words}")
    elif kind == "names":  # the metrics of a table's diversity columns
        fits = isinstance(value, ListConfig) and all(isinstance(v, str) and v for v in value)
        for name in value if fits else ():
            _check_row_metric(name, where)
    else:
        fits = isinstance(value, str) and bool(value.strip())
    if not fits:
        raise UserError(f"{where}={show(value)}: {where} is {MAPPING_WORDS[kind]}" + (" or null" if optional else ""))


def metrics_known(cfg: DictConfig, root: DictConfig) -> None:
    """Each of `diversity_metrics` is a metric diversity.csv's rows can name: a misspelt one would give no row."""
    for name in cfg.get("diversity_metrics") or []:
        _check_row_metric(str(name), "diversity_metrics")


def _check_row_metric(name: str, where: str) -> None:
    if not diversity_row_metric(name):
        raise UserError(
            f"{where}: '{name}' names no diversity.csv row; choose from {', '.join(EMBEDDER_NAMES)}, toy_coverage, "
            f"clip_score, vendi_<embedder> (each also <name>{ADHERENT}) or toy_adherence"
        )


@dataclass
class ReportConfig:
    checks: ClassVar[tuple] = (metrics_known, mapping_typed)  # mapping.*.metrics interpolate diversity_metrics

    out: str = out_dir("a run directory (its CSVs); report.html is written there", True)
    runs: list = items(
        "... or several run directories: runs=dir1,dir2", Rule("path", ""), split=True, min_items=1, null=True
    )
    tables: list = items("all, none, or some of [1,2,3,4,D1,E1]", None, split=True, min_items=1, also=("all", "none"))
    tables_dir: str = out_dir("where table_<id>.md / .csv, tables.md and the figures go (null: <run>/tables)", True)
    figures: bool = flag("Figure 5 from commitment.csv, Figure 7 from ablate.csv")
    html: bool = flag("write <run directory>/report.html (self-contained)")
    paper: str = path("the published numbers (a copy of the paper's tables)")
    grid: Grid = section(Grid, "the HTML sample grid")
    diversity_metrics: list = items("diversity metrics measured beside the paper's DreamSim", ITEM_NAME, min_items=1)
    mapping: Any = anything("which measured group fills which paper row, per table")
