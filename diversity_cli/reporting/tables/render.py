"""A built table as the paper lays it out (`wide`), as markdown with where its numbers come from and what each
measured metric is, and as CSV (one row per `Line`)."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ...core.marker import csv_with, owned_path, text_starting
from .common import CSV_COLUMNS, STALE_MARK, Line, Table, as_number, md_code, md_literal

# an earlier report's table files, written before run.json listed them
TABLE_CSV = csv_with("table", "method", "condition")
TABLE_MD = text_starting("## ")
TABLES_MD = text_starting("# The paper's tables")

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
    "pixel": "mean pairwise RMSE of the images resized to 64 px (bilinear; not DreamSim)",
    "lpips": "mean pairwise LPIPS distance (not DreamSim)",
    "clip": "mean pairwise CLIP-embedding distance (not DreamSim)",
    "dino": "mean pairwise DINOv2-embedding distance (not DreamSim)",
    "fid": "FID, Inception features (lower is better)",
    "is": "Inception Score (higher is better)",
    "fid_toyfeat": "Frechet distance of the toy classifier's features to toy scenes (not FID; lower is better)",
    "is_toyfeat": "Inception-Score formula on the toy classifier's outputs (not IS; higher is better)",
    "fid_tinyrandom": "Frechet distance of a random tiny network's features (a plumbing check, not FID)",
    "is_tinyrandom": "IS formula on a random tiny network (a plumbing check, not IS)",
    "seconds_per_image": "mean seconds per image of this run's hardware (whole generation: both models and decoding)",
    "clip_change_pct": "100 x (CLIP score with - without adapter) / without, toward the concept text",
    "classifier_without": "fraction of images the toy classifier sees with the concept's factor value, no adapter",
    "classifier_with": "the same fraction with the adapter",
    "clip_score": "CLIP score of the images against their prompt (quality beside diversity; higher is better)",
    "toy_adherence": "share of the images the toy judge finds on-prompt (quality beside diversity)",
}
# Measured metrics that are a quality, not a diversity: named as they are, never "<name>_diversity".
QUALITY = ("clip_score", "toy_adherence")


def _group_label(table: Table, line: Line) -> str:
    column = LAYOUT[table.id][1]
    value = getattr(line, column)
    return value.split(":", 1)[1] if column == "metric" and ":" in value else value


def _paper_metric(line: Line) -> str:
    return line.metric.split(":", 1)[0]


def measured_name(name: str, paper_metric: str) -> str:
    """What a measured column is, by the metric actually used: `pixel_diversity` where the paper's column is a
    diversity (never "dreamsim" for pixels), a quality or any other metric under its own name."""
    if paper_metric.endswith("_diversity") and name not in QUALITY and not name.endswith("_diversity"):
        return f"{name}_diversity"
    return name


def column_header(group: str, kind: str, metric: str, paper_metric: str) -> str:
    """`<group>: paper|measured <metric>`; a group that is itself the paper's metric (Tables 2, 4, D.1, E.1: one
    column group per metric) is not repeated: `paper dreamsim_diversity`, `measured pixel_diversity`."""
    return f"{kind} {metric}" if group in (paper_metric, "quality") else f"{group}: {kind} {metric}"


def column_kind(header: str) -> str | None:
    """Whether a column of `wide`'s header holds paper or measured values ("paper" / "measured"), else None."""
    if header in ("n", "measured as"):
        return None
    tail = header.split(": ", 1)[-1]
    kind = tail.split(" ", 1)[0]
    return kind if kind in ("paper", "measured") and " " in tail else None


def measured_cell(line: Line) -> str:
    """The measured number, with its confidence interval when it has one: `0.271 [0.250, 0.292]`, its level named
    when it is not 95% (`0.271 [0.262, 0.280] 50% CI`)."""
    text = format_number(line.measured)
    if as_number(line.ci_low) is not None and as_number(line.ci_high) is not None:
        text += f" [{format_number(line.ci_low)}, {format_number(line.ci_high)}]"
        level = as_number(line.ci)
        if level is not None and abs(level - 0.95) > 1e-9:
            text += f" {level:.0%} CI"
    return text


def wide(table: Table) -> tuple[list[str], list[list[str]]]:
    """The table as the paper lays it out, each paper column beside the measured column(s) of the same cell:
    header, then rows. Measured headers carry the metric actually measured; a group the paper has no number for
    (a quality column) has no paper column."""
    row_fields, _ = LAYOUT[table.id]
    groups: dict[str, dict[str, None]] = {}  # group -> measured metric names, in order of appearance
    paper_metric: dict[str, str] = {}
    published: set[str] = set()
    for line in table.lines:
        group = _group_label(table, line)
        groups.setdefault(group, {})
        if line.metric != "quality":
            paper_metric.setdefault(group, _paper_metric(line))
        if line.paper != "":
            published.add(group)
        if line.measured_metric:
            groups[group][line.measured_metric] = None
    header = [*row_fields]
    columns: list[tuple[str, str | None]] = []
    for group, measured in groups.items():
        metric = paper_metric.get(group, group)
        if group in published:
            header.append(column_header(group, "paper", metric, metric))
            columns.append((group, None))
        for name in measured:
            header.append(column_header(group, "measured", measured_name(name, metric), metric))
            columns.append((group, name))
    header += ["n", "measured as"]
    rows: dict[tuple[str, ...], dict[str, Any]] = {}
    for line in table.lines:
        key = tuple(getattr(line, f) for f in row_fields)
        row = rows.setdefault(key, {"cells": {}, "n": {}, "cell_n": {}, "as": {}})
        group = _group_label(table, line)
        if line.paper != "":
            row["cells"][(group, None)] = line.paper
        if line.measured != "":
            # the cell itself says it: a row of two columns of one method (two options) may hold one out of date
            stale = STALE_MARK if line.measured_as.endswith(STALE_MARK) else ""
            row["cells"][(group, line.measured_metric)] = measured_cell(line) + stale
            if line.metric != "quality":  # n: the images behind the row's diversity (a quality's may differ)
                row["n"][line.n] = None
                row["cell_n"][(group, line.measured_metric)] = line.n
            row["as"][_short_as(table, line)] = None
    body = []
    for key, row in rows.items():
        counts = [n for n in row["n"] if n]
        if len(counts) > 1:  # cells of one row over different numbers of images: each says its own
            for column, n in row["cell_n"].items():
                if n:
                    row["cells"][column] += f" (n={n})"
        cells = [row["cells"].get(column, "") for column in columns]
        counted = "/".join(counts) + (" (per cell)" if len(counts) > 1 else "")
        body.append([*key, *cells, counted, "; ".join(_one_group_each(row["as"]))])
    return header, body


def _one_group_each(measured_as: Iterable[str]) -> list[str]:
    """A row's "measured as", each group once: a group some of whose cells are out of date and others not (an FID
    against a reference changed since beside one against another) is named unmarked, its marked cells say which."""
    shown = list(measured_as)
    return [group for group in shown if not (group.endswith(STALE_MARK) and group.removesuffix(STALE_MARK) in shown)]


# generate's tags of the paper's three methods at their defaults (base, distilled, hybrid at k=1, guidance 0).
PLAIN_TAGS = ("base", "distilled", "hybrid_k1")


def _short_as(table: Table, line: Line) -> str:
    # Table 3's rows are prompts and its columns methods: the pair alone says what stands behind a row, and the tag
    # of a column filled by other settings (`+mapping.3.rows.hybrid_k1_bs5=Hybrid`); a cell out of date keeps its
    # mark, with its column's method (the pair alone would not say which of the row's cells it is).
    if table.id != "3":
        return line.measured_as
    measured_as = line.measured_as.removesuffix(STALE_MARK)
    stale = f"{STALE_MARK} ({line.method})" if measured_as != line.measured_as else ""
    if line.condition.startswith("Average"):
        return measured_as + stale
    tag = measured_as.split(" / ")[1] if measured_as.count(" / ") >= 2 else ""
    return (line.model if tag in ("", *PLAIN_TAGS) else f"{line.model} ({line.method}: {tag})") + stale


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
        # an average's n lists its cells' ("6/8"), a pooled row's a range ("4-8"): the counts inside, not the text
        ns = sorted({int(count) for n in info["n"] for count in re.findall(r"\d+", n)})
        n = str(ns[0]) if len(ns) == 1 else f"{ns[0]}-{ns[-1]}" if ns else "?"
        out.append(
            f"{run}: model {', '.join(m for m in info['model'] if m)}, n = {n} per cell, "
            # the CSV's modification time: a row measured earlier reads as late as the file's last write
            f"results file written {', '.join(d for d in info['date'] if d)}"
        )
    return out


def metric_notes(table: Table) -> list[str]:
    slots: dict[str, str] = {}
    for line in table.measured:
        slots.setdefault(line.measured_metric, line.metric)
    notes = []
    for name, slot in slots.items():
        plain = name.split("[", 1)[0].split("@", 1)[0]
        plain = "clip_score" if (plain, slot) == ("clip", "clip") else plain  # fid.csv's `clip`: a CLIP score
        if plain in METRIC_NOTES:
            notes.append(f"{md_code(name)}: {_described(name, METRIC_NOTES[plain])}")
    return notes + is_caveats(table) + fid_caveats(table)


def _described(name: str, note: str) -> str:
    """A metric's note, told what the brackets of its name say: `fid_toyfeat[ref=photos]` was measured against a
    folder, not toy scenes; `toy_features[distance=euclidean]` with embedder settings other than the defaults the
    note describes."""
    inside = name[name.index("[") + 1 : name.rindex("]")] if "[" in name and "]" in name else ""
    if inside.startswith("ref=toy("):
        return note.replace("to toy scenes", f"to toy scenes drawn with {md_literal(inside[8:-1])}")
    if inside.startswith("ref="):  # a folder's name: as it is, not as markdown
        return note.replace("to toy scenes", f"to the reference images of {md_literal(inside[4:])}")
    distance = re.search(r"(?:^|; )distance=(\w+)", inside)
    if distance and "cosine distance" in note:  # the note names the default distance: say the one measured
        note = note.replace("cosine distance", f"{distance.group(1)} distance")
    return f"{note}; measured with {md_literal(inside)}, not the defaults" if inside else note


def smallest_n(table: Table, metric: str) -> dict[str, int]:
    """Each measured column of `metric` (as the table names it: `fid_toyfeat[ref=...]`) -> the smallest n of its
    cells: a caveat about small n holds for the column at its smallest."""
    smallest: dict[str, int] = {}
    for line in table.measured:
        if line.metric == metric and line.n.isdigit():
            smallest[line.measured_metric] = min(int(line.n), smallest.get(line.measured_metric, int(line.n)))
    return smallest


def is_caveats(table: Table) -> list[str]:
    """IS below a few thousand images is not a number to cite: say so beside the table."""
    from ...metrics.quality import inception_score_caveat

    # per IS column as the table names it (`is_tinyrandom`): its smallest n speaks
    caveats = [(name, inception_score_caveat(n)) for name, n in smallest_n(table, "is").items()]
    return [f"{md_code(name)}: {caveat}" for name, caveat in caveats if caveat]


def fid_caveats(table: Table) -> list[str]:
    """FID over fewer images than its features have dimensions rests on a singular covariance and is biased upward
    (what `fid` says when it measures): say so beside the table, per FID column, at its smallest n. Without an
    interval, even the order of its cells is noise there (a stand-in's note invites comparing the order)."""
    notes = []
    for name, n in smallest_n(table, "fid").items():
        dimensions = feature_dimensions(name)
        if dimensions is not None and n < dimensions:
            notes.append(
                f"FID over {n} images ({md_code(name)}), fewer than its {dimensions} feature dimensions, is biased "
                "upward and has no interval: it orders no methods at this n, nor beside the paper's; compare only "
                "numbers with the same n"
            )
    return notes


def feature_dimensions(name: str) -> int | None:
    """The feature dimension behind an FID column (fid.csv records none): Inception's pool3 for `fid`, the toy
    judge's embedding for `fid_toyfeat`, the tiny random net's for `fid_tinyrandom`; None for another network."""
    from ...metrics.quality import InceptionExtractor, TinyRandomNet

    tag = name.split("[", 1)[0].removeprefix("fid").removeprefix("_")
    if tag == "":
        return InceptionExtractor.num_features
    if tag == "toyfeat":
        return toy_feature_dimensions()
    return TinyRandomNet.num_features if tag == "tinyrandom" else None


def toy_feature_dimensions() -> int:
    """The embedding width of the toy judge `fid features=toy` measures with (its shipped config)."""
    import json

    from ...toy.features import CONFIG, JUDGE

    return int(json.loads((JUDGE / CONFIG).read_text(encoding="utf-8"))["embed_dim"])


def to_markdown(table: Table, paper_source: str = "data/paper_tables.csv", folder: Path | None = None) -> str:
    """The table as markdown; `folder`: where the file goes, which its links to the runs are relative to."""
    header, body = wide(table)
    out = [f"## {table.title}", ""]
    # Cells, provenance and paths are plain text (prompts, tags, paths): written so markdown shows them as they are.
    # The header is the mapping's labels and metric names, written as they are (`pixel[size=16]_diversity`).
    out.append(f"Paper: {md_literal(paper_source)} (Gandikota & Bau 2025, Table {table.id}).")
    for line in provenance(table):
        out.append(f"Measured: {md_literal(line)}.")
    if table.standin:
        out.append(f"{md_literal(table.standin)}.")
    out.append("")
    out.append("| " + " | ".join(header) + " |")
    out.append("| " + " | ".join("---" for _ in header) + " |")
    for row in body:
        out.append("| " + " | ".join(md_literal(cell) for cell in row) + " |")
    out.append("")
    notes = metric_notes(table) + table.notes + reading_notes(table)
    out += [f"- {note}" for note in notes]
    out += ["", provenance_footnote(table, folder)]
    return "\n".join(out) + "\n"


def reading_notes(table: Table) -> list[str]:
    """How to read the cells: intervals, n, averages, quality columns, empty cells."""
    notes = []
    shares = [line for line in table.measured if line.ci_low and line.measured_metric.startswith("classifier")]
    if shares:  # Table 1's toy classifier shares: a count of hits, not a bootstrap over pairs of images
        notes.append(
            "[low, high] after a classifier share: its 95% Wilson score interval (the share's n images are "
            "independent hits or misses); n: images per cell"
        )
    changes = [line for line in table.measured if line.ci_low and line.measured_metric.startswith("clip_change")]
    if changes:  # Table 1's % change: image pairs resampled, not images
        notes.append(
            "[low, high] after a % change of CLIP score: its 95% bootstrap interval over the image pairs (each image "
            "without the adapter resampled with its twin with it, the same prompt and seed)"
        )
    bare = [line for line in table.measured if line.metric.endswith("diversity") and not line.ci_low]
    if bare:  # said, so a number without an interval is not read as one with a negligible one
        notes.append(
            "a measured diversity without [low, high]: no interval was computed for it (diversity bootstrap=0, "
            "two images: one pair, or toy_coverage, a count of distinct modes a bootstrap would undercount), or, "
            "for an average, not every cell it averages has one at one level"
        )
    adherence = [line for line in table.measured if line.ci_low and line.measured_metric.startswith("toy_adherence")]
    if adherence:  # beside the toy's diversity: a share of images on the prompt, not a bootstrap over pairs
        notes.append(
            "[low, high] after a toy_adherence: its Wilson score interval (95% unless the cell names another level) "
            "over the cell's n images, each on its prompt or not by the toy judge; an Average's pools its prompts' "
            "intervals, as a diversity Average's does"
        )
    if any(line.ci_low and line not in shares + changes + adherence for line in table.measured):
        notes.append(
            "[low, high] after a measured diversity: its bootstrap confidence interval over the images (95% unless "
            "the cell names another level; for a diversity.csv written before it had a `ci` column, the level its "
            "run's `diversity` records agree on, else unknown: see runs/*.json); n: images per cell"
        )
    if any(line.condition.startswith("Average") for line in table.measured):
        notes.append(
            "measured Average: the mean over the prompts measured for every method; it stands beside the paper's "
            "Average only over the paper's own prompts, else its row names the prompts it covers; its interval "
            "pools the prompts' intervals (normal approximation)"
        )
    if any(line.metric == "quality" for line in table.measured):
        notes.append("quality (CLIP score, toy adherence) beside diversity: variety off the prompt is no diversity")
    elif any(line.metric.endswith("diversity") and line.measured for line in table.measured):
        notes.append(
            "no quality beside these diversity numbers (measured with `diversity quality=none`, or before quality "
            "was measured beside diversity): variety off the prompt cannot be told from diversity here; "
            "`diversity quality=auto` adds it"
        )
    notes.append("an empty measured cell: not measured by these runs, unless a note above names it as left out")
    return notes


def provenance_footnote(table: Table, folder: Path | None = None) -> str:
    """Where the records of what made these numbers are: each run's `runs/` folder (command line, resolved config,
    package versions, git commit, device, dtype, every model's hub id, revision and weights hash), linked from
    `folder` (a markdown link is relative to its file: the path as typed pointed elsewhere from tables/)."""
    import os
    from urllib.parse import quote

    def target(run: str) -> str:
        if folder is None:
            return f"{run}/runs/"
        return os.path.relpath(Path(run).expanduser().resolve() / "runs", folder.expanduser().resolve()) + "/"

    runs = dict.fromkeys(line.run for line in table.measured if line.run)
    # the link's target percent-encoded: a space, bracket or quote in a path neither ends it nor leaves it
    links = ", ".join(f"[{md_literal(run)}/runs/]({quote(target(run))})" for run in runs)
    return f"Provenance: {links or 'no run'} (one invocation record per command: what made these numbers)."


def write_csv(table: Table, path: Path) -> Path:
    with (
        owned_path(path.parent, path.name, TABLE_CSV) as temporary,
        temporary.open("w", newline="", encoding="utf-8") as f,
    ):
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows({name: getattr(line, name) for name in CSV_COLUMNS} for line in table.lines)
    return path
