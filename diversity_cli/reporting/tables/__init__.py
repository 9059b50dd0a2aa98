"""The paper's Tables 1, 2, 3, 4, D.1 and E.1 (and Figures 5 and 7) built from a run directory's CSVs, with the
published number beside each measured one.

One module per table (or pair of tables built alike): `table1`, `quality` (2 and 4), `table3`, `architectures`
(D.1 and E.1); `figures` draws Figures 5 and 7, `render` writes a built table as markdown or CSV, and `common` holds
what they share (`Line`, `Table`, `RunData`, reading the paper's and a run's CSVs, `assemble`). `BUILDERS` below is
the registry: each table id's builder, which `build_tables` calls and joins with the paper's cells.

Which measured group goes to which paper row is set in `conf/report.yaml` (`mapping`): per table, the pair the
paper used and the method tag of each row. A run on another pair (the toy) stands in for the paper's pair, row by
row, with "measured as" saying what it is; every other pair gets rows of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any

from ...core.errors import UserError
from . import architectures, quality, table1, table3, weights
from .common import (
    CSV_COLUMNS,
    RUN_CSVS,
    STALE,
    TABLE_IDS,
    TABLES_OF,
    TITLES,
    Builder,
    Line,
    RunData,
    Table,
    assemble,
    load_run,
    mark_out_of_date,
    md_literal,
    read_csv,
    read_paper,
    stale_notes,
    standin_sentence,
    suggested_row,
    untabulated,
)
from .figures import ablate_curves, ablate_notes, figure5, figure7
from .render import (
    column_kind,
    format_number,
    measured_cell,
    metric_notes,
    provenance,
    provenance_footnote,
    reading_notes,
    to_markdown,
    wide,
    write_csv,
)
from .table3 import read_prompt_labels

__all__ = [
    "BUILDERS",
    "CSV_COLUMNS",
    "RUN_CSVS",
    "STALE",
    "TABLE_IDS",
    "TABLES_OF",
    "TITLES",
    "Builder",
    "Line",
    "RunData",
    "Table",
    "ablate_curves",
    "ablate_notes",
    "assemble",
    "build_tables",
    "column_kind",
    "figure5",
    "figure7",
    "format_number",
    "load_run",
    "measured_cell",
    "metric_notes",
    "provenance",
    "provenance_footnote",
    "read_csv",
    "read_paper",
    "read_prompt_labels",
    "reading_notes",
    "suggested_row",
    "table_keys",
    "to_markdown",
    "untabulated",
    "wide",
    "write_csv",
]

# Table key (as in `tables=[1,3,D1]` and conf/report.yaml's `mapping`) -> its builder. Tables built alike share one
# builder, told which paper table (the id as the paper prints it) the cells belong to.
BUILDERS: dict[str, Builder] = {
    "1": table1.build,
    "2": partial(quality.build, "2"),
    "3": table3.build,
    "4": partial(quality.build, "4"),
    "D1": partial(architectures.build, "D.1"),
    "E1": partial(architectures.build, "E.1"),
}


def build_tables(everyone: list[RunData], paper: list[Line], cfg: Any, keys: Iterable[str]) -> dict[str, Table]:
    """Each requested table that at least one run has a measurement for."""
    tables = {}
    for key in keys:
        runs = quality.with_ablate_points(everyone) if key in ("2", "4") else everyone  # ablate fid=true's too
        measured = BUILDERS[key](runs, paper, cfg.mapping[key])
        if measured:
            tables[key] = table = assemble(TABLE_IDS[key], paper, measured)
            if key == "1":  # its heading names what its cells measure: CLIP score, the toy classifier's shares
                table.title = table1.title(table)
            if key in ("2", "4"):  # FIDs over different prompt sets side by side: said; what each is against
                table.notes += quality.prompt_notes(runs, table) + quality.reference_notes(runs, table)
                table.notes += quality.lost_point_notes(everyone)
            if key == "3":  # cells of a column's other tag at prompts its own tag lacks: said, not silently empty
                table.notes += table3.left_out_notes(runs, paper, cfg.mapping[key], table.measured)
            if key in ("D1", "E1"):  # one prompt per pair, only the tags its rows take: what else was measured, said
                table.notes += architectures.left_out_notes(runs, cfg.mapping[key], table)
            table.notes += unknown_row_labels(table, paper, cfg.mapping[key])
            table.notes += out_of_date(runs, table, STALE_SOURCES.get(key, ()))
            table.notes += weights.mixed_networks_notes(runs, table)  # one pair name, two students across runs
            table.notes += weights.changed_pair_notes(runs, table)  # `toy / base` made at another CFG, say
            table.notes += weights.mixed_config_notes(runs, table)  # some of its prompts at another CFG
            mark_out_of_date(runs, table, tuple(s for s in STALE_SOURCES.get(key, ()) if s != "transfer.csv"))
            table.standin = standin_sentence(table, cfg.mapping[key])
    return tables


def unknown_row_labels(table: Table, paper: list[Line], mapping: Any) -> list[str]:
    """A row label of the mapping (`+mapping.3.rows.hybrid_k1_bs5=Hybird`) that is no method of the paper's table
    makes a column or row of its own with no paper cell: said, where a misspelt label went without a word."""
    methods = list(dict.fromkeys(line.method for line in paper if line.table == table.id))
    rows = mapping.get("rows") if hasattr(mapping, "get") else None
    shown = {line.method for line in table.measured}
    unknown = [str(label) for label in dict.fromkeys((rows or {}).values()) if label not in methods and label in shown]
    return [
        f"{md_literal(label)} (a row label of the report's mapping) is no method of the paper's Table {table.id} "
        f"({', '.join(md_literal(m) for m in methods)}): its cells stand apart, with no paper cell beside them"
        for label in unknown
    ]


# The CSVs a table's cells rest on, each checked for what changed since it was measured: diversity.csv's and
# fid.csv's counts of images against samples.csv, transfer.csv's adapter hashes against the adapter files and its
# rows' images against samples.csv.
STALE_SOURCES = {
    "1": ("transfer.csv",),
    "2": ("fid.csv",),
    "3": ("diversity.csv",),
    "4": ("fid.csv",),
    "D1": ("diversity.csv",),
}
STALE_SOURCES["E1"] = STALE_SOURCES["D1"]


def out_of_date(runs: list[RunData], table: Table, sources: tuple[str, ...]) -> list[str]:
    """The table's "out of date" notes: measurements over other images than the runs hold, or other adapters."""
    notes = stale_notes(runs, table, tuple(source for source in sources if source in TABLES_OF))
    for run in runs:  # nothing to check against: said, so no note reads as "checked, current"
        # an ablate run's cells come from ablate.csv, checked against its points' samples (stale_ablate)
        measured = {"diversity.csv": run.diversity, "fid.csv": run.fid, "transfer.csv": run.transfer}
        if not any(measured.get(source) for source in sources):
            continue
        if not run.samples and any(line.run == str(run.root) for line in table.measured):
            notes.append(
                f"{md_literal(run.root)} has no samples.csv: whether its numbers are over the images it holds could "
                "not be checked"
            )
    if "transfer.csv" in sources:
        notes += table1.adapter_notes(runs, table) + table1.image_notes(runs, table)
    return notes


def table_keys(value: Any) -> list[str]:
    """`tables=[1,3,D1]` / "all" / "none" -> keys; D.1 and d1 are accepted."""
    if value is None:
        return list(TABLE_IDS)
    if isinstance(value, str):
        items = value.replace(",", " ").split()
    elif isinstance(value, Iterable):
        items = [str(v) for v in value]
    else:
        items = [str(value)]
    if items in (["all"], []):
        return list(TABLE_IDS)
    if items == ["none"]:  # figures and the HTML only
        return []
    keys = []
    for item in items:
        key = item.upper().replace(".", "").replace("TABLE", "").strip()
        if key not in TABLE_IDS:
            raise UserError(f"unknown table '{item}'; choose from: {', '.join(TABLE_IDS.values())} (or all)")
        keys.append(key)
    return list(dict.fromkeys(keys))
