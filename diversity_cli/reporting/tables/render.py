"""A built table as the paper lays it out (`wide`), as markdown with where its numbers come from and what each
measured metric is, and as CSV (one row per `Line`)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from .common import CSV_COLUMNS, Line, Table, as_number

# (fields naming a row, field naming a column group) of each table's wide layout.
LAYOUT = {
    "1": (("method", "condition"), "metric"),
    "2": (("method",), "metric"),
    "3": (("condition",), "method"),
    "4": (("method",), "metric"),
    "D.1": (("method", "condition"), "metric"),
    "E.1": (("method", "condition"), "metric"),
}
# What a measured metric is, for the notes under a table (a name not listed is shown as it is).
METRIC_NOTES = {
    "dreamsim": "mean pairwise DreamSim distance",
    "toy_features": "mean pairwise cosine distance of the toy classifier's features (not DreamSim)",
    "pixel": "mean pairwise RMSE of 64 px downsampled images (not DreamSim)",
    "lpips": "mean pairwise LPIPS distance (not DreamSim)",
    "clip": "mean pairwise CLIP-embedding distance (not DreamSim)",
    "dino": "mean pairwise DINOv2-embedding distance (not DreamSim)",
    "fid": "FID, Inception features",
    "fid_toyfeat": "Frechet distance of the toy classifier's features to toy scenes (not FID)",
    "is_toyfeat": "Inception-Score formula on the toy classifier's outputs (not IS)",
    "fid_tinyrandom": "Frechet distance of a random tiny network's features (a plumbing check, not FID)",
    "is_tinyrandom": "IS formula on a random tiny network (a plumbing check, not IS)",
    "seconds_per_image": "mean seconds per image of this run's hardware (whole generation: both models and decoding)",
    "clip_change_pct": "100 x (CLIP score with - without adapter) / without, toward the concept text",
    "classifier_without": "fraction of images the toy classifier sees with the concept's factor value, no adapter",
    "classifier_with": "the same fraction with the adapter",
}


def _group_label(table: Table, line: Line) -> str:
    column = LAYOUT[table.id][1]
    value = getattr(line, column)
    return value.split(":", 1)[1] if column == "metric" and ":" in value else value


def _paper_metric(line: Line) -> str:
    return line.metric.split(":", 1)[0]


def wide(table: Table) -> tuple[list[str], list[list[str]]]:
    """The table as the paper lays it out, each paper column beside the measured column(s) of the same cell:
    header, then rows. Measured headers carry the measured metric's own name."""
    row_fields, _ = LAYOUT[table.id]
    groups: dict[str, dict[str, None]] = {}  # group -> measured metric names, in order of appearance
    paper_metric: dict[str, str] = {}
    for line in table.lines:
        group = _group_label(table, line)
        groups.setdefault(group, {})
        paper_metric.setdefault(group, _paper_metric(line))
        if line.measured_metric:
            groups[group][line.measured_metric] = None
    header = [*row_fields]
    columns: list[tuple[str, str | None]] = []
    for group, measured in groups.items():
        header.append(f"{group}: paper {paper_metric[group]}")
        columns.append((group, None))
        for name in measured:
            header.append(f"{group}: measured {name}")
            columns.append((group, name))
    header += ["n", "measured as"]
    rows: dict[tuple[str, ...], dict[str, Any]] = {}
    for line in table.lines:
        key = tuple(getattr(line, f) for f in row_fields)
        row = rows.setdefault(key, {"cells": {}, "n": {}, "as": {}})
        group = _group_label(table, line)
        if line.paper != "":
            row["cells"][(group, None)] = line.paper
        if line.measured != "":
            row["cells"][(group, line.measured_metric)] = format_number(line.measured)
            row["n"][line.n] = None
            row["as"][_short_as(table, line)] = None
    body = []
    for key, row in rows.items():
        cells = [row["cells"].get(column, "") for column in columns]
        body.append([*key, *cells, "/".join(n for n in row["n"] if n), "; ".join(row["as"])])
    return header, body


def _short_as(table: Table, line: Line) -> str:
    # Table 3's rows are prompts and its columns methods: the pair alone says what stands behind a row.
    return line.model if table.id == "3" and line.condition != "Average" else line.measured_as


def format_number(value: str) -> str:
    number = as_number(value)
    if number is None:
        return value
    size = abs(number)
    return f"{number:.1f}" if size >= 100 else f"{number:.2f}" if size >= 10 else f"{number:.3f}"


def provenance(table: Table) -> list[str]:
    """One line per run behind the table: directory, pair(s), n, date, commit."""
    by_run: dict[str, dict[str, dict]] = {}
    for line in table.measured:
        info = by_run.setdefault(line.run, {"model": {}, "n": {}, "date": {}})
        info["model"][line.model] = None
        info["n"][line.n] = None
        info["date"][line.date] = None
    out = []
    for run, info in by_run.items():
        ns = sorted((n for n in info["n"] if n), key=lambda v: as_number(v) or 0)
        n = ns[0] if len(ns) == 1 else f"{ns[0]}-{ns[-1]}" if ns else "?"
        out.append(
            f"{run}: model {', '.join(m for m in info['model'] if m)}, n = {n} per cell, "
            f"measured {', '.join(d for d in info['date'] if d)}"
        )
    return out


def metric_notes(table: Table) -> list[str]:
    names = dict.fromkeys(line.measured_metric for line in table.measured)
    notes = []
    for name in names:
        plain = name.split("[", 1)[0].split("@", 1)[0]
        if plain in METRIC_NOTES:
            notes.append(f"`{name}`: {METRIC_NOTES[plain]}")
    return notes


def to_markdown(table: Table, paper_source: str = "data/paper_tables.csv") -> str:
    header, body = wide(table)
    out = [f"## {table.title}", ""]
    out.append(f"Paper: {paper_source} (Gandikota & Bau 2025, Table {table.id}).")
    for line in provenance(table):
        out.append(f"Measured: {line}.")
    out.append("")
    out.append("| " + " | ".join(header) + " |")
    out.append("| " + " | ".join("---" for _ in header) + " |")
    for row in body:
        out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    out.append("")
    notes = metric_notes(table) + table.notes
    if any(line.condition == "Average" for line in table.measured):
        notes.append("measured Average: the mean over the prompts measured for every method (count in 'measured as')")
    notes.append("an empty measured cell: not measured by these runs")
    out += [f"- {note}" for note in notes]
    return "\n".join(out) + "\n"


def write_csv(table: Table, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(vars(line) for line in table.lines)
    return path
