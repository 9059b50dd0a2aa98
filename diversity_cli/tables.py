"""The paper's Tables 1, 2, 3, 4, D.1 and E.1 (and Figures 5 and 7) built from a run directory's CSVs, with the
published number beside each measured one.

A table is a list of `Line`s, each one cell of the paper's table: its coordinates in the paper (`method`,
`condition`, `metric`, exactly as in `data/paper_tables.csv`), the published value, and what a run measured there
(`measured_metric` is the real name of what was measured: `toy_features`, never "DreamSim"; `fid_toyfeat`, never
"FID"). A paper cell nobody measured keeps an empty measured value; a measurement with no paper cell (a toy prompt,
a toy adapter, another pair) gets a line of its own with an empty paper value. Nothing is ever filled in.

Which measured group goes to which paper row is set in `conf/report.yaml` (`mapping`): per table, the pair the
paper used and the method tag of each row. A run on another pair (the toy) stands in for the paper's pair, row by
row, with "measured as" saying what it is; every other pair gets rows of its own.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import UserError

# Table ids as the paper prints them, and the file key used for names and config (`tables=[1,3,D1]`).
TABLE_IDS = {"1": "1", "2": "2", "3": "3", "4": "4", "D1": "D.1", "E1": "E.1"}
TITLES = {
    "1": "Table 1: control transfer, % change of CLIP score with the adapter (base -> target model)",
    "2": "Table 2: distribution quality and speed of base, distilled and hybrid (COCO captions)",
    "3": "Table 3: sample diversity per prompt (mean pairwise distance, higher is more diverse)",
    "4": "Table 4: hybrid vs. skipping the first timestep (COCO captions)",
    "D.1": "Table D.1: other architectures (PixArt-alpha/delta, SD 2.1/SD-Turbo): diversity and time",
    "E.1": "Table E.1: replacing the final timesteps instead of the first (diversity and time)",
}
# (fields naming a row, field naming a column group) of each table's wide layout.
LAYOUT = {
    "1": (("method", "condition"), "metric"),
    "2": (("method",), "metric"),
    "3": (("condition",), "method"),
    "4": (("method",), "metric"),
    "D.1": (("method", "condition"), "metric"),
    "E.1": (("method", "condition"), "metric"),
}
RUN_CSVS = (
    "samples.csv",
    "diversity.csv",
    "fid.csv",
    "transfer.csv",
    "ablate.csv",
    "commitment.csv",
    "commitment_summary.csv",
)
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


@dataclass
class Line:
    """One cell of a paper table: the paper's coordinates and value, and what was measured there."""

    table: str
    method: str
    condition: str
    metric: str  # the paper's metric (slot) name, e.g. "fid", "clip_change_pct:base->dmd"
    paper: str = ""  # the published value exactly as data/paper_tables.csv writes it
    measured_metric: str = ""
    measured: str = ""  # the measured value as the run's CSV writes it (or a mean of such numbers)
    n: str = ""
    model: str = ""
    measured_as: str = ""  # the run's group behind the number: model / method tag / prompt
    run: str = ""
    date: str = ""


CSV_COLUMNS = [f.name for f in Line.__dataclass_fields__.values()]


@dataclass
class Table:
    id: str
    title: str
    lines: list[Line]
    notes: list[str] = field(default_factory=list)

    @property
    def measured(self) -> list[Line]:
        return [line for line in self.lines if line.measured != ""]


# ------------------------------------------------------------------------------------------------- inputs


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return [dict(row) for row in csv.DictReader(f)]


def read_paper(path: Path) -> list[Line]:
    """The published numbers, one Line per row of `table,method,condition,metric,value`."""
    rows = read_csv(path)
    if not rows:
        raise UserError(f"paper table file {path} not found or empty; it ships as data/paper_tables.csv")
    missing = {"table", "method", "condition", "metric", "value"} - set(rows[0])
    if missing:
        raise UserError(
            f"{path} lacks column(s) {', '.join(sorted(missing))}; expected table,method,condition,metric,value"
        )
    return [Line(r["table"], r["method"], r["condition"], r["metric"], paper=r["value"]) for r in rows]


@dataclass
class RunData:
    """Everything a run directory holds that the tables use."""

    root: Path
    samples: list[dict[str, str]]
    diversity: list[dict[str, str]]
    fid: list[dict[str, str]]
    transfer: list[dict[str, str]]
    ablate: list[dict[str, str]]
    commitment: list[dict[str, str]]
    commitment_summary: list[dict[str, str]]
    versions: dict[str, Any]
    dates: dict[str, str]  # CSV name -> its modification time (UTC)

    @property
    def found(self) -> list[str]:
        return sorted(self.dates)

    @property
    def commit(self) -> str:
        commits = {v.get("git_commit", "") for v in self.versions.values() if isinstance(v, dict)}
        commits.discard("")
        return ", ".join(sorted(c[:10] for c in commits))

    def date(self, name: str) -> str:
        return self.dates.get(name, "")


def load_run(root: str | Path) -> RunData:
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a directory; give out=<run directory> (or runs=[dir1,dir2])")
    data = {name: read_csv(root / name) for name in RUN_CSVS}
    dates = {name: _mtime(root / name) for name in RUN_CSVS if (root / name).is_file()}
    versions = {}
    if (root / "versions.json").is_file():
        try:
            versions = json.loads((root / "versions.json").read_text())
        except json.JSONDecodeError:
            versions = {}
    return RunData(
        root=root,
        samples=data["samples.csv"],
        diversity=data["diversity.csv"],
        fid=data["fid.csv"],
        transfer=data["transfer.csv"],
        ablate=data["ablate.csv"],
        commitment=data["commitment.csv"],
        commitment_summary=data["commitment_summary.csv"],
        versions=versions,
        dates=dates,
    )


def _mtime(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def read_prompt_labels(path: Path, conditions: list[str]) -> dict[str, str]:
    """prompt text -> paper row label, from a prompt file whose i-th line is the paper's i-th row."""
    if not path.is_file():
        raise UserError(f"Table 3 prompt file {path} not found (data/table3_prompts.txt ships with the repository)")
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    prompts = [ln for ln in lines if ln and not ln.startswith("#")]
    if len(prompts) != len(conditions):
        raise UserError(
            f"{path} has {len(prompts)} prompts but the paper's Table 3 has {len(conditions)} rows "
            f"({', '.join(conditions)}); give one prompt per row, in that order"
        )
    return {prompt.lower(): label for prompt, label in zip(prompts, conditions, strict=True)}


# --------------------------------------------------------------------------------------- measured records


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _mean(values: list[str]) -> str:
    numbers = [x for x in (_number(v) for v in values) if x is not None]
    return repr(sum(numbers) / len(numbers)) if numbers else ""


def match_tag(tag: str, rows: dict[str, str]) -> str | None:
    """The paper row of a method tag: an exact key first, then a glob key (`replace_final_k*`)."""
    if tag in rows:
        return rows[tag]
    for pattern, label in rows.items():
        if fnmatch.fnmatchcase(tag, pattern):
            return label
    return None


def choose_model(groups: Iterable[tuple[str, str]], paper_model: str | None) -> str | None:
    """The pair whose (pair, method tag) groups fill the paper's rows: the paper's own pair if measured, else the
    one with the most of the table's methods (ties: by name)."""
    tags: dict[str, set[str]] = {}
    for model, tag in groups:
        tags.setdefault(model, set()).add(tag)
    if not tags:
        return None
    if paper_model in tags:
        return paper_model
    return min(tags, key=lambda model: (-len(tags[model]), model))


def _steps(run: RunData) -> dict[tuple[str, str], str]:
    """(model, tag) -> "4 steps, 5 NFE" from samples.csv, for "measured as"."""
    found: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for row in run.samples:
        found.setdefault((row["model"], row.get("tag") or row["method"]), set()).add((row["steps"], row["nfe"]))
    return {
        key: "; ".join(f"{steps} steps, {nfe} NFE" for steps, nfe in sorted(values)) for key, values in found.items()
    }


def seconds_per_group(run: RunData) -> dict[tuple[str, str, str], tuple[str, int]]:
    """(model, tag, prompt) -> (mean seconds per image, images), from samples.csv."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for row in run.samples:
        if row.get("seconds"):
            groups.setdefault((row["model"], row.get("tag") or row["method"], row["prompt"]), []).append(row["seconds"])
    return {key: (_mean(values), len(values)) for key, values in groups.items()}


def ablate_as_diversity(run: RunData) -> list[dict[str, str]]:
    """ablate.csv rows in diversity.csv's shape (method = the tag generate gives those knobs)."""
    from .generate import run_tag

    rows = []
    for row in run.ablate:
        k = int(float(row["k"])) if _number(row.get("k")) is not None else 1
        guidance = _number(row.get("base_guidance")) or 0.0
        steps = int(float(row["base_steps"])) if _number(row.get("base_steps")) is not None else None
        tag = run_tag(row["method"], k, guidance, steps)
        rows.append({**row, "method": tag, "_source": "ablate.csv"})
    return rows


def diversity_rows(run: RunData) -> list[dict[str, str]]:
    """diversity.csv rows, then ablate.csv's for groups diversity.csv does not have."""
    rows = [{**row, "_source": "diversity.csv"} for row in run.diversity]
    have = {(r["model"], r["method"], r["prompt"], r["metric"]) for r in rows}
    for row in ablate_as_diversity(run):
        if (row["model"], row["method"], row["prompt"], row["metric"]) not in have:
            rows.append(row)
    return rows


def _origin(run: RunData, source: str) -> dict[str, str]:
    """The run and the date of the CSV a measured cell comes from."""
    return {"run": str(run.root), "date": run.date(source)}


def table1_records(run: RunData, paper: list[Line], cfg: Any) -> list[Line]:
    """transfer.csv -> Table 1 cells: rows by adapter concept, columns by `source->target` of each pair."""
    targets = dict(cfg.targets)
    conditions = {line.condition.lower(): line for line in paper if line.table == "1"}
    adapters = {str(k).lower(): str(v) for k, v in dict(cfg.adapters).items()}
    records = []
    for row in run.transfer:
        model = row.get("model", "")
        # direction=both names the adapters <name>@base and <name>@distilled
        name = row["adapter"].split("@")[0]
        label = adapters.get(name.lower()) or row["concept"]
        known = conditions.get(label.lower())
        method, condition = (known.method, known.condition) if known else (name, row["concept"])
        if row.get("classifier_target"):
            condition = f"{condition} ({row['classifier_target']})" if not known else condition

        def role(name: str, model: str = model) -> str:
            return "base" if name == "base" else str(targets.get(model, f"{model}:{name}"))

        slot = f"clip_change_pct:{role(row['source'])}->{role(row['target'])}"
        scale = row.get("scale", "")
        at = f" (scale {scale})" if scale else ""
        clip = f"[{row['clip_model']}]" if row.get("clip_model") else ""
        values = [(f"clip_change_pct{clip}", row.get("change_pct", ""))]
        values += [(c, row.get(c, "")) for c in ("classifier_without", "classifier_with")]
        for metric, value in values:
            if value != "" and _number(value) is not None:
                records.append(
                    Line(
                        "1",
                        method,
                        condition,
                        slot,
                        measured_metric=metric,
                        measured=value,
                        n=row.get("n", ""),
                        model=model,
                        measured_as=f"{model} / {row['adapter']}{at}: {row['source']} -> {row['target']}",
                        **_origin(run, "transfer.csv"),
                    )
                )
    return records


def quality_slot(column: str) -> str | None:
    """fid.csv column -> the paper metric it measures: fid / fid_<features> -> fid, is / is_<features> -> is."""
    if column in ("clip", "seconds_per_image", "fid", "is"):
        return column
    if column.startswith("fid_"):
        return "fid"
    if column.startswith("is_") and not column.startswith("is_std"):
        return "is"
    return None


def quality_records(table: str, run: RunData, cfg: Any) -> list[Line]:
    """fid.csv -> Table 2 / 4 cells: one row per method tag of the paper's pair (or its stand-in)."""
    rows = dict(cfg.rows)
    mapped = [r for r in run.fid if match_tag(r["method"], rows)]
    model = choose_model(((r["model"], r["method"]) for r in mapped), cfg.get("model"))
    steps = _steps(run)
    records = []
    for row in mapped:  # other method tags belong to other tables (Table 4's skip_first is not a Table 2 row)
        label = match_tag(row["method"], rows) if row["model"] == model else None
        method = label or f"{row['model']} / {row['method']}"
        reference = row.get("reference", "")
        for column, value in row.items():
            slot = quality_slot(column)
            if slot is None or _number(value) is None:
                continue
            name = column
            if slot == "fid" and reference not in ("", "coco", "toy"):
                name = f"{column}[ref={Path(reference).name}]"
            step = steps.get((row["model"], row["method"]), "")
            records.append(
                Line(
                    table,
                    method,
                    "all",
                    slot,
                    measured_metric=name,
                    measured=value,
                    n=row.get("n", ""),
                    model=row["model"],
                    measured_as=f"{row['model']} / {row['method']}" + (f" ({step})" if step else ""),
                    **_origin(run, "fid.csv"),
                )
            )
    return records


def table3_records(run: RunData, cfg: Any, labels: dict[str, str]) -> list[Line]:
    """diversity.csv -> Table 3 cells of every pair and prompt; `finish_table3` picks the pair and prompts."""
    rows = dict(cfg.rows)
    metrics = {str(m) for m in cfg.metrics}
    records = []
    for row in diversity_rows(run):
        method = match_tag(row["method"], rows)
        if row["metric"] not in metrics or method is None:
            continue  # other settings (ablate's points: Figure 7) are no Table 3 cells
        records.append(
            Line(
                "3",
                method,
                labels.get(row["prompt"].lower(), row["prompt"]),
                "dreamsim_diversity",
                measured_metric=row["metric"],
                measured=row["value"],
                n=row.get("n", ""),
                model=row["model"],
                measured_as=f"{row['model']} / {row['method']} / {row['prompt']}",
                **_origin(run, row["_source"]),
            )
        )
    return records


def finish_table3(records: list[Line], cfg: Any, labels: dict[str, str]) -> list[Line]:
    """One pair (the paper's, else a stand-in); the paper's prompts once any is measured (the car of E.1 is no
    Table 3 prompt), else all of the stand-in's; and the Average row."""
    model = choose_model(((line.model, line.method) for line in records), cfg.get("model"))
    records = [line for line in records if line.model == model]
    named = set(labels.values())
    if any(line.condition in named for line in records):
        records = [line for line in records if line.condition in named]
    # Average: per metric, the mean over the prompts measured for every method (the paper averages one prompt set;
    # a prompt only some methods have would tilt the comparison).
    averages = []
    for metric in dict.fromkeys(line.measured_metric for line in records):
        lines = [line for line in records if line.measured_metric == metric]
        methods = dict.fromkeys(line.method for line in lines)
        common = set.intersection(*({line.condition for line in lines if line.method == m} for m in methods))
        for method in methods:
            chosen = [line for line in lines if line.method == method and line.condition in common]
            if chosen:
                averages.append(
                    replace(
                        chosen[0],
                        condition="Average",
                        measured=_mean([line.measured for line in chosen]),
                        n="/".join(sorted({line.n for line in chosen})),
                        measured_as=f"{model} / mean of {len(chosen)} prompt(s)",
                    )
                )
    return records + averages


def _fullest_prompt(rows: list[dict[str, str]], model: str | None, preferred: str) -> str:
    """The stand-in's prompt for a one-prompt table: the paper's if measured, else the one with most methods."""
    tags: dict[str, set[str]] = {}
    for row in rows:
        if row["model"] == model:
            tags.setdefault(row["prompt"].lower(), set()).add(row["method"])
    if preferred in tags or not tags:
        return preferred
    return max(tags, key=lambda prompt: len(tags[prompt]))  # ties: the first in diversity.csv


def architecture_records(table: str, run: RunData, cfg: Any) -> list[Line]:
    """diversity.csv + samples.csv seconds -> Table D.1 / E.1 cells, one row per (pair, method tag)."""
    pairs = {str(model): dict(rows) for model, rows in dict(cfg.models).items()}
    metrics = {str(m) for m in cfg.metrics}
    paper_prompt = str(cfg.prompt).lower()
    tags = {tag: tag for rows in pairs.values() for tag in rows}  # ablate's other settings belong to Figure 7
    div = [r for r in diversity_rows(run) if r["metric"] in metrics and match_tag(r["method"], tags)]
    # A run on none of the paper's pairs stands in for the one named by `standin` (E.1: SDXL-DMD2). Each pair
    # counts on one prompt, the table's: the paper's if measured, else the one with the most methods measured.
    paper_models = [r["model"] for r in div if r["model"] in pairs]
    standin = None
    if not paper_models and cfg.get("standin"):
        rows = pairs[str(cfg.standin)]
        standin = choose_model(((r["model"], r["method"]) for r in div if match_tag(r["method"], rows)), None)
    prompt_of = {
        model: paper_prompt if model in pairs else _fullest_prompt(div, model, paper_prompt)
        for model in {r["model"] for r in div}
    }
    if standin is not None and cfg.get("standin_prompt"):
        prompt_of[standin] = str(cfg.standin_prompt).lower()
    div = [r for r in div if r["prompt"].lower() == prompt_of[r["model"]]]
    if cfg.get("standin"):  # a table about one pair (E.1): the other architectures of a shared run are D.1's
        div = [r for r in div if r["model"] in pairs or r["model"] == standin]

    def label(model: str, tag: str, prompt: str) -> tuple[str, str]:
        rows = pairs.get(model) or (pairs[str(cfg.standin)] if model == standin else {})
        method = match_tag(tag, rows)
        return (method, str(cfg.prompt)) if method else (f"{model} / {tag}", prompt)

    seconds = seconds_per_group(run)
    records = []
    seen = set()
    for row in div:
        method, condition = label(row["model"], row["method"], row["prompt"])
        base = dict(model=row["model"], measured_as=f"{row['model']} / {row['method']} / {row['prompt']}")
        records.append(
            Line(
                table,
                method,
                condition,
                "dreamsim_diversity",
                measured_metric=row["metric"],
                measured=row["value"],
                n=row.get("n", ""),
                **base,
                **_origin(run, row["_source"]),
            )
        )
        key = (row["model"], row["method"], row["prompt"])
        if key in seen:
            continue
        seen.add(key)
        if key in seconds and seconds[key][0]:
            value, count = seconds[key]
            source = "samples.csv"
        elif _number(row.get("seconds_per_image")) is not None:
            value, count, source = row["seconds_per_image"], row.get("n", ""), row["_source"]
        else:
            continue
        records.append(
            Line(
                table,
                method,
                condition,
                "seconds_per_image",
                measured_metric="seconds_per_image",
                measured=value,
                n=str(count),
                **base,
                **_origin(run, source),
            )
        )
    return records


# ----------------------------------------------------------------------------------------------- assembly


def table_records(key: str, run: RunData, paper: list[Line], cfg: Any) -> list[Line]:
    """The measured cells of one table (by key: 1, 2, 3, 4, D1, E1) from one run directory."""
    mapping = cfg.mapping[key]
    if key == "1":
        return table1_records(run, paper, mapping)
    if key in ("2", "4"):
        return quality_records(TABLE_IDS[key], run, mapping)
    if key == "3":
        return table3_records(run, mapping, table3_labels(paper, mapping))
    return architecture_records(TABLE_IDS[key], run, mapping)


def table3_labels(paper: list[Line], cfg: Any) -> dict[str, str]:
    conditions = [line.condition for line in paper if line.table == "3" and line.condition != "Average"]
    return read_prompt_labels(Path(cfg.prompts), list(dict.fromkeys(conditions)))


def assemble(table_id: str, paper: list[Line], measured: list[Line]) -> Table:
    """Join the paper's cells with the measured ones: every paper cell once per measured metric found for it (or
    once, empty, if none), then measured cells the paper has no number for. The first run wins a duplicate."""
    notes: list[str] = []
    slots: dict[tuple[str, str, str], list[Line]] = {}
    kept: dict[tuple[str, str, str, str], Line] = {}
    for line in measured:
        key = (line.method, line.condition, line.metric, line.measured_metric)
        if key in kept:
            if kept[key].measured != line.measured:
                notes.append(
                    f"{line.method} / {line.condition} / {line.measured_metric}: also measured {line.measured} in "
                    f"{line.run} ({line.measured_as}); the table shows {kept[key].measured} from {kept[key].run}"
                )
            continue
        kept[key] = line
        slots.setdefault(key[:3], []).append(line)
    lines: list[Line] = []
    published = [line for line in paper if line.table == table_id]
    for cell in published:
        found = slots.pop((cell.method, cell.condition, cell.metric), [])
        lines += [replace(line, paper=cell.paper) for line in found] or [replace(cell)]
    for found in slots.values():
        lines += found
    return Table(table_id, TITLES[table_id], lines, notes)


def build_tables(runs: list[RunData], paper: list[Line], cfg: Any, keys: Iterable[str]) -> dict[str, Table]:
    """Each requested table that at least one run has a measurement for."""
    tables = {}
    for key in keys:
        measured = [line for run in runs for line in table_records(key, run, paper, cfg)]
        if key == "3":
            measured = finish_table3(measured, cfg.mapping["3"], table3_labels(paper, cfg.mapping["3"]))
        if measured:
            tables[key] = assemble(TABLE_IDS[key], paper, measured)
    return tables


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


# ----------------------------------------------------------------------------------------------- rendering


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
    number = _number(value)
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
        ns = sorted((n for n in info["n"] if n), key=lambda v: _number(v) or 0)
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


# ------------------------------------------------------------------------------------------------- figures


def figure5(runs: list[RunData], path: Path) -> Path | None:
    """Figure 5: distance between each step's x̂0 and the final image against % of steps, per method."""
    frames = [(run, row) for run in runs for row in run.commitment]
    if not frames:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    frame = pd.DataFrame([{**row, "run": str(run.root)} for run, row in frames])
    frame["fraction"] = frame["fraction"].astype(float)
    frame["distance"] = frame["distance"].astype(float)
    curves = frame.groupby(["run", "method", "fraction"], sort=False).distance.mean().reset_index()
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=120)
    multi = curves.run.nunique() > 1
    for (run, method), curve in curves.groupby(["run", "method"], sort=False):
        label = f"{Path(run).name}: {method}" if multi else method
        ax.plot(curve.fraction * 100, curve.distance, marker="o", ms=3, label=label)
    ax.set_xlabel("% of steps done")
    ax.set_ylabel(f"distance(x̂0 at step, final image)\n[{x0viz_metric(runs)}]")
    ax.set_title("Figure 5: when each method commits", fontsize=10)
    ax.legend(fontsize=8)
    return _save_figure(fig, path, curves)


def x0viz_metric(runs: list[RunData]) -> str:
    """The embedder x0viz measured with, from the run's saved config when there is one."""
    from omegaconf import OmegaConf

    names = []
    for run in runs:
        config = run.root / "configs" / "x0viz.yaml"
        if config.is_file():
            names.append(str(OmegaConf.load(config).get("metric", "")))
    names = [n for n in dict.fromkeys(names) if n]
    return ", ".join(names) if names else "x0viz metric"


ABLATE_KNOBS = (
    ("base_guidance", "(a) base guidance"),
    ("k", "(b) k: base steps at the start"),
    ("base_steps", "(c) base's own steps"),
)


def ablate_curves(runs: list[RunData], metrics: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Figure 7's data: for each knob, the mean over prompts of every hybrid point where only that knob varies;
    and the base / distilled baselines (knob "baseline"), the levels the paper's figure compares against."""
    import pandas as pd

    rows = [{**row, "run": str(run.root)} for run in runs for row in run.ablate]
    if metrics is not None:
        wanted = set(metrics)
        rows = [row for row in rows if row.get("metric") in wanted]
    if not rows:
        return []
    frame = pd.DataFrame(rows)
    for column in ("k", "base_guidance", "base_steps", "value", "seconds_per_image", "nfe", "n"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce") if column in frame else float("nan")
    out = []
    for (run, model, metric, method), group in frame[frame.method.isin(["base", "distilled"])].groupby(
        ["run", "model", "metric", "method"], sort=False
    ):
        out.append(_point("baseline", float("nan"), run, model, metric, method, group))
    hybrid = frame[frame.method == "hybrid"]
    for knob, _ in ABLATE_KNOBS:
        others = [c for c, _ in ABLATE_KNOBS if c != knob]
        for key, group in hybrid.groupby(["run", "model", "metric", *others], dropna=False, sort=False):
            if group[knob].nunique(dropna=True) < 2:
                continue
            fixed = ", ".join(f"{c}={v:g}" for c, v in zip(others, key[3:], strict=True) if not pd.isna(v))
            for point, part in group.groupby(knob, sort=True):
                out.append(_point(knob, point, *key[:3], fixed, part))
    return out


def _point(knob: str, point: float, run: str, model: str, metric: str, fixed: str, part: Any) -> dict[str, Any]:
    return {
        "knob": knob,
        "point": point,
        "run": run,
        "model": model,
        "metric": metric,
        "fixed": fixed,
        "value": part.value.mean(),
        "seconds_per_image": part.seconds_per_image.mean(),
        "nfe": part.nfe.mean(),
        "prompts": int(part.prompt.nunique()),
        "n": part.n.iloc[0],
    }


def figure7(runs: list[RunData], path: Path, metrics: Iterable[str] | None = None) -> Path | None:
    """Figure 7: diversity (and seconds per image, dotted) against base guidance, k and the base's own step count;
    base and distilled alone as horizontal lines."""
    curves = ablate_curves(runs, metrics)
    if not any(c["knob"] != "baseline" for c in curves):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    frame = pd.DataFrame(curves)
    knobs = [(knob, title) for knob, title in ABLATE_KNOBS if (frame.knob == knob).any()]
    fig, axes = plt.subplots(1, len(knobs), figsize=(4.4 * len(knobs), 3.5), dpi=120, squeeze=False)
    for ax, (knob, title) in zip(axes[0], knobs, strict=True):
        part = frame[frame.knob == knob]
        twin = ax.twinx()
        for (model, metric, fixed), line in part.groupby(["model", "metric", "fixed"], sort=False):
            label = f"{model} hybrid, {metric}" + (f" ({fixed})" if fixed else "")
            ax.plot(line.point, line.value, marker="o", ms=3, label=label)
            if line.seconds_per_image.notna().any():
                twin.plot(line.point, line.seconds_per_image, ls=":", color="grey", lw=1)
        levels = frame[(frame.knob == "baseline") & frame.model.isin(part.model) & frame.metric.isin(part.metric)]
        for _, level in levels.iterrows():
            style = "--" if level.fixed == "base" else "-."
            ax.axhline(level.value, ls=style, lw=1, color="black", label=f"{level.model} {level.fixed} alone")
        ax.set_xlabel(knob)
        ax.set_ylabel("diversity (metric in legend)")
        twin.set_ylabel("s / image (dotted)", color="grey")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    return _save_figure(fig, path, frame)


def _save_figure(fig, path: Path, points) -> Path:
    """The figure as PNG and the points it plots as CSV beside it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    points.to_csv(path.with_suffix(".csv"), index=False)
    return path
