"""What every paper table is made of: the `Line` (one cell) and the `Table`, the inputs (the paper's numbers in
`data/paper_tables.csv`, a run directory's CSVs), the helpers the per-table modules share to turn a run's rows into
measured cells, and `assemble`, which joins the measured cells with the paper's.

A `Line` keeps the paper's coordinates (`method`, `condition`, `metric`, exactly as in `data/paper_tables.csv`), the
published value, and what a run measured there (`measured_metric` is the real name of what was measured:
`toy_features`, never "DreamSim"; `fid_toyfeat`, never "FID"). A paper cell nobody measured keeps an empty measured
value; a measurement with no paper cell gets a line of its own with an empty paper value. Nothing is ever filled in.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ...core.errors import UserError
from ...core.record import read_records
from ...core.rundir import RunDir, read_table, read_table_end, samples_digest, seed_window
from ...metrics.diversity import MIN_INTERVAL_N
from ...metrics.preflight import other_clip

# Table ids as the paper prints them, and the file key used for names and config (`tables=[1,3,D1]`).
TABLE_IDS = {"1": "1", "2": "2", "3": "3", "4": "4", "D1": "D.1", "E1": "E.1"}
TITLES = {
    "1": "Table 1: control transfer, % change of CLIP score with the adapter (source -> target model)",
    "2": "Table 2: distribution quality and speed of base, distilled and hybrid (the paper: 30k COCO captions)",
    "3": "Table 3: sample diversity per prompt (mean pairwise distance, higher is more diverse)",
    "4": "Table 4: hybrid vs. skipping the first timestep (the paper: 30k COCO captions)",
    "D.1": "Table D.1: other architectures (PixArt-alpha/delta, SD 2.1/SD-Turbo): diversity and time",
    "E.1": "Table E.1: replacing the final timesteps instead of the first (diversity and time)",
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
    ci_low: str = ""  # the measured value's confidence interval (diversity.csv's bootstrap), when it has one
    ci_high: str = ""
    ci: str = ""  # the interval's level (diversity.csv's `ci`); empty in CSVs written before it was recorded
    model: str = ""
    measured_as: str = ""  # the run's group behind the number: model / method tag / prompt
    run: str = ""
    date: str = ""
    # `tag_rank` of the tag behind the cell where it fills a paper row (0: the row's own key): the paper's own
    # setting is shown before a glob key's (`hybrid_k1` before `hybrid_k1_bs5`), whichever run measured it
    rank: int = field(default=0, compare=False)
    # What changed since the one CSV row behind the cell was measured (`row_change`; "" for nothing), where its
    # builder knows that row (fid.csv's cells): a group's other rows, against other references, are not this cell's.
    # None: not known, the cell's group is checked instead (`mark_out_of_date`).
    change: str | None = field(default=None, compare=False)


# the rank is the report's choice; the change is said by the cell's mark and the notes
CSV_COLUMNS = [name for name in Line.__dataclass_fields__ if name not in ("rank", "change")]


def _short_commit(commit: str) -> str:
    """A git hash cut to 10 characters (`-dirty` kept); anything else as written."""
    if re.fullmatch(r"[0-9a-f]{40}(-dirty)?", commit):
        return commit[:10] + ("-dirty" if commit.endswith("-dirty") else "")
    return commit


@dataclass
class Table:
    id: str
    title: str
    lines: list[Line]
    notes: list[str] = field(default_factory=list)
    standin: str = ""  # said beside the provenance when another pair's numbers fill the paper's rows

    @property
    def measured(self) -> list[Line]:
        return [line for line in self.lines if line.measured != ""]


# ------------------------------------------------------------------------------------------------- inputs


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    return read_table(path)


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
    records: list[dict[str, Any]] = field(default_factory=list)  # runs/*.json: what made each result, oldest first
    # What several tables derive from the run's files alike (which groups are out of date, which images it holds):
    # each reads images or ablate points from disk, so it is worked out once per report, not once per table.
    _derived: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def once(self, name: str, make: Callable[[], Any]) -> Any:
        """`make()`, computed on the first call for `name` and kept (the run's files are read once, at load)."""
        if name not in self._derived:
            self._derived[name] = make()
        return self._derived[name]

    @property
    def found(self) -> list[str]:
        return sorted(self.dates)

    @property
    def commit(self) -> str:
        commits = {v.get("git_commit", "") for v in self.versions.values() if isinstance(v, dict)}
        commits |= {str(record.get("git_commit") or "") for record in self.records}
        commits.discard("")
        # a commit's records, in full and cut, said once; `-dirty` (a checkout with changes) kept; words (`not a
        # checkout`: an installed wheel) as written
        return ", ".join(sorted({_short_commit(c) for c in commits}))

    def date(self, name: str) -> str:
        return self.dates.get(name, "")


def load_run(root: str | Path) -> RunData:
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a directory; give out=<run directory> (or runs=[dir1,dir2])")
    data, ends = {}, {}
    for name in RUN_CSVS:
        data[name], ends[name] = read_table_end(root / name) if (root / name).is_file() else ([], "")
    for name, columns in REQUIRED_COLUMNS.items():
        require_columns(root / name, data[name], columns)
    for name, numeric in NUMBER_COLUMNS.items():
        check_whole(root / name, data[name], ends[name], numeric)
        check_possible(root / name, data[name])
    data["samples.csv"] = RunDir(root).read_samples()  # every samples file (shards too), torn rows dropped
    check_timings(root, data["samples.csv"])
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
        records=read_records(root),
    )


# The columns the tables index each row of a run's CSV by: a file edited by hand without one is one line naming
# it, not a KeyError deep in a table's builder.
REQUIRED_COLUMNS = {
    "diversity.csv": ("model", "method", "prompt", "metric", "value"),
    "fid.csv": ("model", "method"),
    "transfer.csv": ("adapter", "concept", "source", "target"),
    "ablate.csv": ("model", "method", "prompt", "metric", "value"),
    "commitment.csv": ("method", "fraction", "distance"),  # Figure 5's curves (a KeyError's traceback)
    "commitment_summary.csv": ("method", "committed_fraction"),  # its "commits" marks, lost without a word
}


# The measurement files the toolkit writes whole (atomically, header first, every line ended) and the columns that
# hold numbers (None: every column but the listed text ones): a damaged or hand-edited cell is one line naming it,
# not a number left out of an average that still says how many prompts it is over.
NUMBER_COLUMNS: dict[str, tuple[str, ...] | None] = {
    "diversity.csv": ("n", "value", "ci_low", "ci_high", "ci"),
    "fid.csv": None,
    "transfer.csv": (
        "n",
        "clip_without",
        "clip_with",
        "change_pct",
        "change_low",
        "change_high",
        "classifier_without",
        "classifier_with",
    ),  # fmt: skip
    "ablate.csv": ("n", "value", "ci_low", "ci_high", "ci", "seconds_per_image"),
    "commitment.csv": ("seed", "step", "timestep", "fraction", "distance"),  # Figure 5's points
}
SHARES = {"transfer.csv": ("classifier_without", "classifier_with")}  # and toy_adherence's value: in [0, 1]
TEXT_COLUMNS = (
    "method",
    "model",
    "reference",
    "features",
    "clip_model",
    "samples",
    "reference_id",
    "prompt",
    "options",
    "tag",
)


def check_whole(path: Path, rows: list[dict[str, str]], end: str, numeric: tuple[str, ...] | None) -> None:
    """`path`, where it exists, as the toolkit writes it: a header, a last row as long as it (`end`, from
    `read_table_end`, which drops a torn one: only an appended file may have it), a number (or nothing) in each of
    `numeric`; else one UserError naming the file, line and cell. A number cut short inside its cell still reads as
    a number."""
    fix = "restore it, or move it away and rerun the command that wrote it"
    if end:
        raise UserError(f"{path} is damaged ({end}); {fix}")
    for number, row in enumerate(rows, start=2):  # line 1: the header
        columns = numeric if numeric is not None else [c for c in row if c not in TEXT_COLUMNS]
        for column in columns:
            value = row.get(column)
            if value not in (None, "") and not _finite(value):
                raise UserError(f"{path} line {number}: {column} is {value!r}, not a number (damaged or edited); {fix}")


def check_timings(root: Path, samples: list[dict[str, str]]) -> None:
    """Each image's seconds a number: one that is not was left out of its cell's mean, which still said all its
    images' n (a shard's file holds some of the rows: the image names the row)."""
    for row in samples:
        for column in ("seconds", "network_seconds"):
            value = row.get(column)
            if value not in (None, "") and not _finite(value):
                raise UserError(
                    f"{root / 'samples.csv'} (image {row.get('path')}): {column} is {value!r}, not a number (damaged "
                    "or edited); restore it, or delete that image and rerun its generate (it makes a lost image "
                    "again, in place of its row)"
                )


def _finite(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def check_possible(path: Path, rows: list[dict[str, str]]) -> None:
    """The numbers of `path` that no measurement can give, one line naming the first: an interval level outside
    (0, 1) (`ci=95` read as 9500%), an interval whose low end lies above its high end, a count below 1, a share
    (toy_adherence, the toy classifier's hits) outside [0, 1]. Hand edits, mostly: shown, they read as measured."""
    shares = SHARES.get(path.name, ())
    for number, row in enumerate(rows, start=2):
        found = _impossible(row, shares)
        if found:
            raise UserError(
                f"{path} line {number}: {found}; restore it, or move it away and rerun the command that wrote it"
            )


def _impossible(row: dict[str, str], shares: tuple[str, ...]) -> str:
    def number(column: str) -> float | None:
        return float(row[column]) if row.get(column) not in (None, "") else None

    ci, low, high, n = number("ci"), number("ci_low"), number("ci_high"), number("n")
    if ci is not None and not 0 < ci < 1:
        return f"ci={row['ci']} is no interval level (a share in (0, 1): 0.95 for 95%)"
    if low is not None and high is not None and low > high:
        return f"its interval [{row['ci_low']}, {row['ci_high']}] ends below its start"
    if n is not None and (n < 1 or not n.is_integer()):
        return f"n={row['n']} is no count of images (a whole number of at least 1)"
    for column in (*shares, *(("value",) if row.get("metric") == "toy_adherence" else ())):
        value = number(column)
        if value is not None and not 0 <= value <= 1:
            return f"{column}={row[column]} is no share (0 to 1)"
    return ""


def require_columns(path: Path, rows: list[dict[str, str]], columns: tuple[str, ...]) -> None:
    """`rows` of `path` have every one of `columns`, or a UserError names the first one missing."""
    missing = [column for column in columns if rows and column not in rows[0]]
    if missing:
        raise UserError(
            f"{path} has no column '{missing[0]}'; the report needs {', '.join(columns)}: restore the column or "
            f"move the file away and rerun the command that wrote it"
        )


def _mtime(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# ------------------------------------------------------------------------------------------ markdown text

# What markdown could read as markup in a prompt, concept, tag or path: code, emphasis, raw HTML, entities, cell
# bars, strikethrough, and a link's "](" (a bracket alone is none, and intervals "[0.1, 0.2]" stay legible). `_`
# only at a word's edge: inside a word it is no emphasis, and tags are full of it.
_MARKUP = re.compile(r"[\\`*<|~]|\](?=[(\[])|&(?=#?\w+;)|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def md_literal(text: object) -> str:
    """Text a note or a cell embeds (a prompt, a path) as markdown that shows it as it is, not as markup."""
    return _MARKUP.sub(lambda m: "\\" + m[0], re.sub(r"[\r\n]+", " ", str(text)))  # a new line would end the note


def md_code(text: object) -> str:
    """Text as a code span; a backtick inside would end the span early, so such text is escaped instead."""
    return f"`{text}`" if "`" not in str(text) else md_literal(text)


# --------------------------------------------------------------------------------------- measured records


def as_number(value: Any) -> float | None:
    """A CSV cell as a finite number; None for an empty cell, text, nan or inf."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def mean_of(values: list[str]) -> str:
    """The mean of the numbers among `values`, written as repr writes it (the tables' text form), to 12 significant
    digits: the mean of 0.0819, 0.0820 and 0.0818 is 0.08189999999999999 in floating point, which a table CSV
    showed (and 10 decimals made a mean of 1e-11 and 3e-11 zero); "" if none."""
    numbers = [x for x in (as_number(v) for v in values) if x is not None]
    return repr(float(f"{sum(numbers) / len(numbers):.12g}")) if numbers else ""


def common_to_all(groups: Iterable[Iterable[str]]) -> set[str]:
    """What every group holds (the prompts measured for every method of a table, at every point of a figure): a
    mean over it compares like with like, where one over each group's own prompts would not. Empty for no group."""
    sets = [set(group) for group in groups]
    return set.intersection(*sets) if sets else set()


def match_tag(tag: str, rows: dict[str, str]) -> str | None:
    """The paper row of a method tag: an exact key first, then a glob key (`replace_final_k*`)."""
    if tag in rows:
        return rows[tag]
    for pattern, label in rows.items():
        if fnmatch.fnmatchcase(tag, pattern):
            return label
    return None


def tag_rank(tag: str, rows: dict[str, str]) -> int | None:
    """Where a tag stands among those that can fill its paper row: 0 for a row's own key (`hybrid_k1`), else 1 + the
    position of the first glob key that takes it (`hybrid_k1_*`: the toy demo's `hybrid_k1_bs5`); None for a tag no
    row takes. A row several measured tags could fill shows the lowest (`preferred_tags`)."""
    if tag in rows:
        return 0 if rows[tag] is not None else None  # a null label leaves the tag out, as in `match_tag`
    for index, (pattern, label) in enumerate(rows.items(), start=1):
        if fnmatch.fnmatchcase(tag, pattern):
            return index if label is not None else None
    return None


# How a row several measured tags could fill picks one, as the notes on the others say it.
TAG_ORDER = (
    "a row shows one tag per pair (and prompt) of a run: in Table 3 a tag measured on every prompt of its column "
    "first; then a row's own key before a tag a glob key takes, glob keys in conf/report.yaml's order, then the tag "
    "its CSV lists first"
)


# The tables whose builders pick one tag per row by `tag_rank` (Table 3 names the others in its notes; Tables 2 and
# 4 give them rows of their own).
TAG_RANKED = ("2", "3", "4")


def preferred_tags(candidates: Iterable[tuple[tuple[str, ...], str, int]]) -> dict[tuple[str, ...], str]:
    """(cell, tag, `tag_rank`) of one run's measured groups -> the tag each cell shows: the lowest rank, then the
    first listed. A paper row must never show two settings side by side, nor pick between them by chance."""
    best: dict[tuple[str, ...], tuple[int, str]] = {}
    for cell, tag, rank in candidates:
        if cell not in best or rank < best[cell][0]:
            best[cell] = (rank, tag)
    return {cell: tag for cell, (_, tag) in best.items()}


def choose_model(groups: Iterable[tuple[str, str]], paper_model: str | None) -> str | None:
    """The pair whose (pair, method tag) groups fill the paper's rows: the paper's own pair if measured, else the
    one with the most of the table's methods (ties: the first listed, as the runs= order is the user's)."""
    tags: dict[str, set[str]] = {}
    for model, tag in groups:
        tags.setdefault(model, set()).add(tag)
    if not tags:
        return None
    if paper_model in tags:
        return paper_model
    return min(tags, key=lambda model: -len(tags[model]))  # min keeps the first of equals: the first listed


def standin_sentence(table: Table, mapping: Any) -> str:
    """Who fills the paper's rows when the paper's pair was not measured (the toy in SDXL-DMD2's rows): the rows keep
    the paper's labels to set the method order beside the paper's, so the table says above its cells that the
    numbers are of another pair, prompt and metric."""
    pairs = {str(mapping.get(key)) for key in ("model", "standin") if mapping.get(key)}
    pairs |= {str(model) for model in (mapping.get("models") or {})}
    published = {(line.method, line.condition) for line in table.lines if line.paper != ""}
    standing_in = [
        line
        for line in table.measured
        if (line.method, line.condition) in published and line.model and line.model not in pairs
    ]
    if not pairs or not standing_in:
        return ""
    models = ", ".join(dict.fromkeys(line.model for line in standing_in))
    return (
        f"Stand-in: no run of the paper's pair ({', '.join(sorted(pairs))}); its rows show {models} (each cell's "
        'group in "measured as"), on another model, prompt and metric than the paper\'s: compare the order of the '
        "methods with the paper's, not the values"
    )


def recorded_ci(run: RunData) -> str:
    """The interval level every `diversity` invocation of the run used (its records), for diversity.csv rows
    written before the file had a `ci` column; "" when they differ or none is recorded."""
    levels = {str(r["config"].get("ci")) for r in run.records if r.get("command") == "diversity" and r.get("config")}
    return levels.pop() if len(levels) == 1 else ""


def ablate_as_diversity(run: RunData) -> list[dict[str, str]]:
    """ablate.csv rows in diversity.csv's shape (method = the tag generate gives those knobs)."""
    from ...sampling.tags import run_tag

    rows = []
    for row in run.ablate:
        k = int(float(row["k"])) if as_number(row.get("k")) is not None else 1
        guidance = as_number(row.get("base_guidance")) or 0.0
        steps = int(float(row["base_steps"])) if as_number(row.get("base_steps")) is not None else None
        tag = run_tag(row["method"], k, guidance, steps)
        rows.append({**row, "method": tag, "_source": "ablate.csv"})
    return rows


def diversity_rows(run: RunData) -> list[dict[str, str]]:
    """diversity.csv rows, then ablate.csv's for groups diversity.csv does not have."""
    older = recorded_ci(run) if any("ci" not in row for row in run.diversity) else ""
    rows = [{"ci": older, **row, "_source": "diversity.csv"} for row in run.diversity]
    have = {(r["model"], r["method"], r["prompt"], r["metric"]) for r in rows}
    changed = ablate_changes(run)
    # rows over images since remade last: a table shows the first of a cell's rows, and a current one before them
    for row in sorted(ablate_as_diversity(run), key=lambda row: bool(changed(row))):
        if (row["model"], row["method"], row["prompt"], row["metric"]) not in have:
            rows.append(row)
    return [without_pair_interval(row) for row in rows]


def without_pair_interval(row: dict[str, str]) -> dict[str, str]:
    """An interval over fewer than MIN_INTERVAL_N images, as earlier versions wrote one: two images are one pair,
    and its [d, d] said nothing."""
    n = as_number(row.get("n"))
    if n is not None and n < MIN_INTERVAL_N and (row.get("ci_low") or row.get("ci_high")):
        return {**row, "ci_low": "", "ci_high": ""}
    return row


# Per-prompt quality beside diversity (Tables 3, D.1, E.1): off-prompt variety must not pass for diversity.
# diversity.csv rows of these metrics (clip_score: CLIP score against the prompt; toy_adherence: the share of toy
# samples the toy judge finds on-prompt), or fid.csv's `clip` of a (pair, method) run on one prompt only.
QUALITY_METRICS = ("clip_score", "toy_adherence")


def quality_of(run: RunData) -> dict[tuple[str, str, str], list[dict[str, str]]]:
    """(model, method tag, prompt) -> its quality rows ({metric, value, n, _source}), from diversity.csv (ablate.csv
    for an ablation's points), then fid.csv's CLIP score where that group's images all share one prompt."""
    found: dict[tuple[str, str, str], list[dict[str, str]]] = {}
    for row in diversity_rows(run):
        if row.get("metric") in QUALITY_METRICS:
            key = (row["model"], row["method"], row["prompt"].lower())
            found.setdefault(key, []).append(row)
    prompts: dict[tuple[str, str], set[str]] = {}
    for row in run.samples:
        prompts.setdefault((row["model"], row.get("tag") or row["method"]), set()).add(row["prompt"].lower())
    for row in run.fid:
        group = prompts.get((row.get("model", ""), row.get("method", "")), set())
        if len(group) == 1 and as_number(row.get("clip")) is not None:
            key = (row["model"], row["method"], next(iter(group)))
            if not any(item["metric"] == "clip_score" for item in found.get(key, [])):
                other = other_clip(row.get("clip_model"))  # diversity.csv's clip_score is always the published model's
                metric = f"clip_score[{other}]" if other else "clip_score"
                item = {"metric": metric, "value": row["clip"], "n": row.get("n", ""), "_source": "fid.csv"}
                found.setdefault(key, []).append(item)
    return found


def quality_lines(run: RunData, quality: dict, key: tuple[str, str, str], like: Line) -> list[Line]:
    """The quality cells of one (model, tag, prompt) group, in the row of its diversity cell `like`."""
    model, tag, prompt = key
    return [
        replace(
            like,
            metric="quality",
            measured_metric=item["metric"],
            measured=item["value"],
            n=str(item.get("n", "")),
            # its own interval where diversity.csv gives one (toy adherence's Wilson interval; fid.csv's CLIP score
            # none): without it, adherence 1.000 beside 0.750 at n=4 read as a difference
            ci_low=str(item.get("ci_low") or ""),
            ci_high=str(item.get("ci_high") or ""),
            ci=str(item.get("ci") or "") if item.get("ci_low") else "",  # not the diversity cell's level (`like`)
            **origin(run, item["_source"]),
        )
        for item in quality.get((model, tag, prompt.lower()), [])
    ]


def origin(run: RunData, source: str) -> dict[str, str]:
    """The run and the date of the CSV a measured cell comes from."""
    return {"run": str(run.root), "date": run.date(source)}


STALE = "**out of date**:"  # how a note on measurements older than the run's images begins


def stale_groups(run: RunData, source: str) -> dict[tuple[tuple[str, ...], str], str]:
    """((model, tag[, prompt]), reference) -> what changed, for groups whose `source` (diversity.csv or fid.csv) row was
    measured over other images than samples.csv now holds for it: images added, or remade with other settings or
    seeds, after the measurement, so its number is not the run's (each as "model / tag[ / prompt][ against
    <reference>]: n=8, samples.csv's images 12", or "…: images remade since (n=8)" when the count is the same; rows
    older than the `samples` column are checked by count only). Numbers over a subset say so in their metric
    (`toy_features@adherent`) and are left out; so are images lost from disk."""
    return run.once(f"stale_groups {source}", lambda: _stale_groups(run, source))


def _stale_groups(run: RunData, source: str) -> dict[tuple[tuple[str, ...], str], str]:
    found = {}
    for row in run.diversity if source == "diversity.csv" else run.fid:
        key = (row.get("model", ""), row.get("method", ""))
        key += (row.get("prompt", ""),) if source == "diversity.csv" else ()
        coverage = "" if row.get("reference") else coverage_reference(row)  # diversity.csv's coverage rows'
        reference = row.get("reference") or coverage  # or fid's
        against = f" against {reference}" if reference else ""
        change = row_change(run, source, row)
        if change:
            # coverage rows feed no table: said so, or a table's note read as about its own (unmarked) cells
            unshown = " (its precision/recall/density/coverage rows, which no table shows)" if coverage else ""
            found[key, against] = f"{' / '.join(key)}{against}: {change}{unshown}"
    return found


def row_change(run: RunData, source: str, row: dict[str, str]) -> str:
    """What changed since one diversity.csv or fid.csv row was measured ("" for nothing, or not known): the
    reference it was measured against (fid's, diversity's coverage), the count of its group's images, or the images
    themselves (`samples` digest). Numbers over a subset (`@adherent`) and groups with no image left are not
    checked."""
    if "@" in row.get("metric", ""):
        return ""
    if source == "fid.csv" and (changed := reference_change(run, row)):
        return changed
    if source == "diversity.csv" and (changed := coverage_reference_change(run, row)):
        return changed
    key = (row.get("model", ""), row.get("method", ""))
    key += (row.get("prompt", ""),) if source == "diversity.csv" else ()
    n, images = as_number(row.get("n")), held_images(run).get(key)
    if n is None or images is None:
        return ""
    if int(n) != len(images):
        return f"n={int(n)}, samples.csv's images {len(images)}"
    if row.get("samples") and row["samples"] != samples_digest(images):
        return f"images remade since (n={int(n)})"
    return ""


def reference_change(run: RunData, row: dict[str, str]) -> str:
    """How the reference an fid.csv row was measured against differs now ("" for not at all, or not known): its
    images replaced, added or removed since (a folder's, COCO's). A row names the id of the images it was measured
    against (`reference_id`), so a later fid of some groups, or a shard never merged, leaves the others' rows out
    of date; a row written before it named one is compared with its reference as the last fid recorded it. Toy
    scenes are drawn, not read, and a reference not on this machine cannot be read: neither is checked."""
    found = references_now(run).get(row.get("reference", ""))
    if found is None:
        return ""
    now, problem, was = found
    if problem:
        return f"{REFERENCE_CHANGED}: {problem}"
    from ...metrics.reference import identity_id

    measured = row.get("reference_id") or identity_id(was)
    if measured == identity_id(now):
        return ""
    then = f"{was.get('count')} images then, " if not row.get("reference_id") else ""
    return f"{REFERENCE_CHANGED} ({then}{now.get('count')} images now)"


# How diversity.csv's options end on a precision/recall/density/coverage row: what it was measured against.
_AGAINST = re.compile(r"(?:^|; )reference=(.*); coverage_k=\d+$")


def coverage_reference(row: dict[str, str]) -> str:
    """The reference a diversity.csv row of precision/recall/density/coverage was measured against, as its options
    name it (a method tag of the run, or a folder); "" for any other row."""
    found = _AGAINST.search(row.get("options") or "")
    return found[1] if found else ""


def coverage_reference_change(run: RunData, row: dict[str, str]) -> str:
    """How the reference a diversity.csv coverage row was measured against differs now ("" for not at all, or not
    known): a method tag's images of the row's prompt (`samples_digest`, as its own images are checked) or a
    folder's images (fid's `identity_id`) other than its `reference_id` says. Rows written before they named one,
    and a folder not on this machine, are not checked."""
    reference, measured = coverage_reference(row), row.get("reference_id")
    if not reference or not measured:
        return ""
    if reference in run_tags(run):
        images = held_images(run).get((row.get("model", ""), reference, row.get("prompt", "")), [])
        now, count, problem = samples_digest(images), len(images), ""
    elif Path(reference).is_absolute() and Path(reference).is_dir():  # rows before absolute paths: not known
        now, count, problem = run.once(f"reference_folder {reference}", lambda: _folder_id(reference))
    else:
        return ""
    if problem:
        return f"{REFERENCE_CHANGED}: {problem}"
    return "" if now == measured else f"{REFERENCE_CHANGED} ({count} images now)"


def run_tags(run: RunData) -> set[str]:
    """The method tags samples.csv names: a coverage reference that is one is that tag's images, not a folder."""
    return run.once("run_tags", lambda: {row.get("tag") or row["method"] for row in run.samples})


def _folder_id(folder: str) -> tuple[str, int, str]:
    """(a reference folder's `identity_id` as diversity recorded it, its image count, what keeps it from being
    read): fid's own `folder_reference`, so the two commands name one folder alike."""
    from ...metrics.reference import folder_id

    try:
        return (*folder_id(Path(folder)), "")
    except UserError:  # its only refusal without a limit: coverage was measured against more than one image
        return "", 0, "fewer than 2 images in it now"


def references_now(run: RunData) -> dict[str, tuple[dict[str, Any], str, dict[str, Any]]]:
    """fid.csv's reference label -> (the reference's identity now, what keeps it from being read, its identity as
    the last fid run against it recorded it), for the labels of folders and COCO the run's fid records name."""
    return run.once("references_now", lambda: _references_now(run))


def fid_references(run: RunData) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """fid.csv's reference label -> (the config, the references) the latest fid record measured against it names."""
    return run.once("fid_references", lambda: _fid_references(run))


def _fid_references(run: RunData) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    measured = {}
    for record in run.records:  # oldest first: the latest measurement under a label is fid.csv's
        label, config, used = record.get("reference_label"), record.get("config"), record.get("references")
        # fid's, or ablate's in a point's measurement folder (its fid=true step)
        fid = record.get("command") in ("fid", "ablate")
        if fid and label and isinstance(config, dict) and isinstance(used, dict) and used:
            measured[str(label)] = (config, used)
    return measured


def label_folder(label: str) -> str:
    """A folder reference's fid.csv label (`/data/ref(limit=500)`) -> the folder, as fid resolved it."""
    return re.sub(r"\(limit=\d+\)$", "", label)


def _references_now(run: RunData) -> dict[str, tuple[dict[str, Any], str, dict[str, Any]]]:
    from omegaconf import OmegaConf

    from ...metrics.reference import open_reference

    found = {}
    for label, (config, used) in fid_references(run).items():
        if config.get("reference") == "toy" or len(used) != 1:
            continue
        cfg, was = OmegaConf.create(config), next(iter(used.values()))
        if cfg.reference != "coco":  # the folder as fid resolved it (the label), not as typed in another directory
            cfg.reference = label_folder(label)
        folder = cfg.coco.get("images") if cfg.reference == "coco" else cfg.reference
        if not folder or not Path(str(folder)).expanduser().is_dir():
            continue
        try:
            found[label] = (open_reference(str(cfg.reference), cfg).identity, "", was)
        except UserError as err:
            found[label] = ({}, f"it cannot be read as fid read it ({err})", was)
    return found


REFERENCE_CHANGED = "its reference changed since"


def held_images(run: RunData) -> dict[tuple[str, ...], list[dict[str, str]]]:
    """(model, tag, prompt) and (model, tag) -> the samples.csv rows of that group whose image is on disk."""
    return run.once("held_images", lambda: _held_images(run))


def _held_images(run: RunData) -> dict[tuple[str, ...], list[dict[str, str]]]:
    held: dict[tuple[str, ...], list[dict[str, str]]] = {}
    for row in run.samples:
        if not (run.root / row["path"]).is_file():
            continue  # an image lost from disk: the measurement left it out (and said so), generate remakes it
        tag = row.get("tag") or row["method"]
        for key in ((row["model"], tag, row["prompt"]), (row["model"], tag)):
            held.setdefault(key, []).append(row)
    return held


def stale_ablate(run: RunData) -> dict[tuple[str, str, str], str]:
    """(model, method tag, prompt) -> what changed, for ablate.csv rows whose images are no longer those they
    measured (`ablate_changes`)."""
    return run.once("stale_ablate", lambda: _stale_ablate(run))


def _stale_ablate(run: RunData) -> dict[tuple[str, str, str], str]:
    found: dict[tuple[str, str, str], str] = {}
    changes = ablate_changes(run)
    for row in ablate_as_diversity(run):
        if change := changes(row):
            found.setdefault((row["model"], row["method"], row["prompt"]), change)
    return found


def ablate_changes(run: RunData) -> Callable[[dict[str, str]], str]:
    """A function of an ablate.csv row (as `ablate_as_diversity` gives it): what changed since it was measured, or
    "". The seeds it names in its point's samples.csv (`seed_window`) were remade (a later sweep into the same out=
    at other pair settings with overwrite=true), or are gone from disk. A row without a `samples` digest (over all
    prompts, or written before rows carried one) is not checked."""
    points: dict[str, list[dict[str, str]]] = {}

    def change(row: dict[str, str]) -> str:
        n, seed = as_number(row.get("n")), as_number(row.get("seed"))
        if not row.get("samples") or not row.get("prompt") or n is None or seed is None:
            return ""
        point = row.get("run", "")
        if point not in points:
            points[point] = point_images(run.root, point)
        images = seed_window(points[point], row["prompt"], int(seed), int(n))
        where = f"{row['model']} / {row['method']} / {row['prompt']} (n={int(n)}, seed={int(seed)})"
        if len(images) != int(n):
            return f"{where}: {len(images)} of its {int(n)} images on disk"
        return f"{where}: images remade since" if samples_digest(images) != row["samples"] else ""

    return change


def point_images(root: Path, point: str) -> list[dict[str, str]]:
    """The samples rows of an ablate point's run directory (`point`, relative to the ablate run) whose image is on
    disk, paths made relative to the ablate run (as ablate.csv's digests name them)."""
    folder = root / point
    if not point or not (folder / "samples.csv").is_file():
        return []
    rows = RunDir(folder).read_samples()
    return [{**row, "path": f"{point}/{row['path']}"} for row in rows if (folder / row["path"]).is_file()]


def shows_group(table: Table, run: RunData, key: tuple[str, ...]) -> bool:
    """Whether a cell of `table` stands on the (model, tag[, prompt]) group `key` of `run` (Table 1: the (model,
    adapter)): its "measured as" is the group (Tables 3, D.1, E.1), one of its prompts (`toy / base / a shape`), the
    group and its steps (Tables 2, 4), or the adapter, its scale and its direction (Table 1)."""
    return any(_stands_on(line, run, key) for line in table.measured)


def _stands_on(line: Line, run: RunData, key: tuple[str, ...]) -> bool:
    group = " / ".join(key)
    return line.run == str(run.root) and (
        line.measured_as == group or line.measured_as.startswith((f"{group} /", f"{group} (", f"{group}:"))
    )


STALE_MARK = " [out of date]"  # after a cell's "measured as": its number is over other images than the run holds


def mark_out_of_date(runs: list[RunData], table: Table, sources: tuple[str, ...]) -> None:
    """Mark in the cell, not only in the notes, each measured cell of `table` over images the run (or its
    reference) no longer holds: a cell that knows its row (`Line.change`) by that row alone, any other by its group
    (`stale_groups` of `sources`); and an average of a method whose cells of that run include one. Done last: the
    notes match cells by their "measured as" unmarked."""
    marked = set()
    for line in table.measured:
        if line.change:
            line.measured_as += STALE_MARK
            marked.add((line.run, line.method))
    for run in runs:
        # A row measured against a reference feeds no cell checked by its group: fid.csv's cells know their row,
        # and diversity.csv's precision/recall/density/coverage are in no table. Its group's diversity is not
        # over that reference, so it must not be marked for it.
        stale = {
            key: text for source in sources for (key, against), text in stale_groups(run, source).items() if not against
        }
        held = held_images(run)
        for line in table.measured:
            if line.change is None and any(
                _stands_on(line, run, key) and not _counts_now(line, held.get(key), text) for key, text in stale.items()
            ):
                line.measured_as += STALE_MARK
                marked.add((line.run, line.method))
    for line in table.measured:  # Table 3's averages ("toy / mean of 2 prompt(s)"), of one run each
        if line.condition.startswith("Average") and (line.run, line.method) in marked:
            line.measured_as += STALE_MARK


def _counts_now(line: Line, images: list | None, finding: str) -> bool:
    """Whether a cell of an out-of-date group stands on the images the run holds: a group is out of date when one of
    its rows is (another metric's, another option's), and a row measured since over as many images as the group now
    holds is not. Where the images were remade at the same count, which row was measured since is not known: none
    is cleared."""
    n = as_number(line.n)
    return images is not None and n is not None and int(n) == len(images) and "remade since" not in finding


def stale_notes(runs: list[RunData], table: Table, sources: tuple[str, ...]) -> list[str]:
    """A note per run behind `table` whose measurements in `sources` no longer count the run's images; only the
    groups the table shows are named (Table 4 does not show the distilled model)."""
    notes = []
    for run in runs:
        for source in sources:
            found = stale_groups(run, source)
            shown = {(key, against): text for (key, against), text in found.items() if shows_group(table, run, key)}
            groups = list(shown.values())
            if groups:
                more = f" and {len(groups) - 3} more" if len(groups) > 3 else ""
                command = source.removesuffix(".csv")
                # fid's rows are all against a reference; diversity.csv's coverage rows are
                referenced = source == "fid.csv" or any(against for _, against in shown)
                notes.append(
                    f"{STALE} {md_literal(run.root)}/{source} was measured over other images than the run "
                    f"{'(or its reference) ' if referenced else ''}now holds "
                    f"({'; '.join(md_literal(group) for group in groups[:3])}{more}); rerun "
                    f"{md_code(f'diversity-cli {command} out={run.root}')} with the settings it was measured with"
                )
        ablate = stale_ablate(run) if "diversity.csv" in sources else {}
        groups = [text for key, text in ablate.items() if shows_group(table, run, key)]
        if groups:
            notes.append(f"{STALE} {ablate_stale_text(run, groups)}")
    return notes


def ablate_stale_text(run: RunData, groups: list[str]) -> str:
    """What a stale-ablate note says: which rows, and the sweep that measures them again."""
    more = f" and {len(groups) - 3} more" if len(groups) > 3 else ""
    return (
        f"{md_literal(run.root)}/ablate.csv holds numbers over images remade or removed since "
        f"({'; '.join(md_literal(group) for group in groups[:3])}{more}); rerun that sweep "
        f"({md_code(f'diversity-cli ablate out={run.root}')} at its n=, seed= and pair settings) to measure them again"
    )


# Which tables a diversity.csv group and a fid.csv group can fill.
TABLES_OF = {"diversity.csv": ("3", "D1", "E1"), "fid.csv": ("2", "4")}


def untabulated(runs: list[RunData], mapping: Any, keys: list[str]) -> dict[str, dict[str, str]]:
    """CSV kind -> "model / tag" of each group measured whose tag no row of the tables that kind fills names in
    `mapping` -> the file that measured it (the CSV, or ablate.csv), said when one of those tables is requested
    (`keys`): e.g. the toy demo's hybrid `hybrid_k1_bs5`, in no table unless mapped to a row. A row of a table not
    requested counts: Table 4's report need not call Table 2's base untabulated."""
    found: dict[str, dict[str, str]] = {}
    for source, tables in TABLES_OF.items():
        if not any(key in keys for key in tables):
            continue
        names = [rows for key in tables for _, rows in row_sets(mapping, key)]
        groups: dict[str, str] = {}
        for run in runs:
            for row in measured_rows(run, source):
                tag, model = row.get("method", ""), row.get("model", "")
                if tag and not any(match_tag(tag, rows) for rows in names):
                    groups.setdefault(f"{model} / {tag}".strip(" /"), row.get("_source", source))
        if groups:
            found[source] = groups
    return found


def measured_rows(run: RunData, source: str) -> list[dict[str, str]]:
    """The rows of `source`'s measurements a run holds (method = the tag): the CSV's, and an ablation's of that
    kind (ablate.csv's FID / IS / CLIP rows have no prompt, its diversity rows one)."""
    ablate = [row for row in ablate_as_diversity(run) if bool(row.get("prompt")) == (source == "diversity.csv")]
    return [*(run.diversity if source == "diversity.csv" else run.fid), *ablate]


def row_sets(mapping: Any, key: str) -> list[tuple[str, dict[str, str]]]:
    """(override path, tag -> row label) of a table's mapping: `3.rows`, or per pair `E1.models.sdxl_dmd2`."""
    entry = mapping[key]
    sets = [(f"{key}.rows", dict(entry.rows))] if "rows" in entry else []
    return sets + [(f"{key}.models.{model}", dict(rows)) for model, rows in dict(entry.get("models") or {}).items()]


def method_of(tag: str) -> str | None:
    """The method a tag (or a row's tag pattern, `replace_final_k*`) samples with: the longest that begins it."""
    from ...sampling.methods import METHODS

    return max((m for m in METHODS if tag == m or tag.startswith(f"{m}_")), key=len, default=None)


def suggested_row(source: str, group: str, mapping: Any, keys: Iterable[str] = ()) -> str | None:
    """An override that puts a group ("model / tag") in a row of a table `source` fills, the requested tables
    (`keys`) first, only a row of the tag's own method (a row's label names its method: skip_first's number must
    never stand in a row called Hybrid) and of its own pair where the table has rows per pair; None when none is."""
    import shlex

    model, _, tag = group.rpartition(" / ")
    method = method_of(tag)
    asked = [key for key in TABLES_OF[source] if key in set(keys)]
    for key in asked + [key for key in TABLES_OF[source] if key not in asked]:
        for path, rows in row_sets(mapping, key):
            if ".models." in path and path.rpartition(".")[2] != model:
                continue  # another pair's rows (D.1's PixArt rows are no place for the toy's)
            # a null label leaves its method out of the table: no row to advise
            labels = [str(text) for pattern, text in rows.items() if text is not None and method_of(pattern) == method]
            if method and labels:
                # the label without its details: Table 2's "Hybrid (4 steps)" would misname other steps
                return shlex.quote(f"+mapping.{path}.{tag}={labels[0].split(' (')[0]}")
    return None


# ----------------------------------------------------------------------------------------------- assembly


# The cells of one group of images that stand side by side in a row: its diversity, the quality beside it (is the
# variety on the prompt?) and its seconds per image. They must come from one run's images.
GROUP_SLOTS = ("dreamsim_diversity", "quality", "seconds_per_image")


def one_run_per_group(lines: list[Line]) -> tuple[list[Line], list[Line]]:
    """(kept, dropped): each diversity cell of a row from the first run that measured that metric there, and the
    row's quality and seconds only from runs whose diversity the row shows, so a second run's adherence never
    stands beside the first run's diversity alone, nor do averages mix runs. A metric only a later run measured
    keeps its column. Cells of other slots (Table 1's, 2's, 4's) are kept; `assemble` resolves their duplicates.
    A row's own tag comes before a glob key's from any run (`Line.rank`): kept is in that order."""
    lines = sorted(lines, key=lambda line: line.rank)  # stable: among equal ranks, the runs' order
    owner: dict[tuple[str, str, str], str] = {}
    shown: dict[tuple[str, str], set[str]] = {}
    for line in lines:
        if line.metric == "dreamsim_diversity":
            run = owner.setdefault((line.method, line.condition, line.measured_metric), line.run)
            shown.setdefault((line.method, line.condition), set()).add(run)
    kept, dropped = [], []
    for line in lines:
        row = (line.method, line.condition)
        if line.metric == "dreamsim_diversity":
            ok = owner[(*row, line.measured_metric)] == line.run
        else:
            ok = line.metric not in GROUP_SLOTS or row not in shown or line.run in shown[row]
        (kept if ok else dropped).append(line)
    return kept, dropped


def assemble(table_id: str, paper: list[Line], measured: list[Line]) -> Table:
    """Join the paper's cells with the measured ones: every paper cell once per measured metric found for it (or
    once, empty, if none), then measured cells the paper has no number for. A row's own tag wins a duplicate, then
    the first run, and a row's diversity, quality and seconds come from one run (`one_run_per_group`)."""
    notes: list[str] = []
    slots: dict[tuple[str, str, str], list[Line]] = {}
    kept: dict[tuple[str, str, str, str], Line] = {}
    measured, dropped = one_run_per_group(measured)
    for line in dropped:
        notes.append(
            f"{_also_measured(line)}; not shown: a cell comes from the first run listed that measured it (a "
            "row's own tag first, as conf/report.yaml names it), and a row's quality and seconds from the runs whose "
            "diversity it shows"
        )
    for line in measured:
        key = (line.method, line.condition, line.metric, line.measured_metric)
        if key in kept:
            shown = kept[key]
            other_tag = table_id in TAG_RANKED and _same_run_other_tag(shown, line)
            if shown.measured != line.measured or other_tag:
                said = f" ({md_literal(shown.measured_as)}): {TAG_ORDER}" if other_tag else ""
                notes.append(
                    f"{_also_measured(line)}; the table shows {md_literal(shown.measured)} from "
                    f"{md_literal(shown.run)}{said}"
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


def _same_run_other_tag(shown: Line, other: Line) -> bool:
    """Whether a cell left out is another tag of the same pair and run as the one shown (the toy's `hybrid_k1_bs5`
    where its `hybrid_k1` was measured too): said even at an equal value, with the rule that chose."""
    return (shown.run, shown.model) == (other.run, other.model) and _tag(shown) != _tag(other)


def _tag(line: Line) -> str:
    """The method tag in a cell's "measured as" ("toy / hybrid_k1_bs5 / a shape", "toy / base (25 steps, ...)")."""
    parts = line.measured_as.split(" / ")
    return parts[1].split(" (", 1)[0] if len(parts) > 1 else ""


def _also_measured(line: Line) -> str:
    """A note's words for a cell left out; its prompt, tag and run as they are, not read as markdown."""
    where = " / ".join(md_literal(part) for part in (line.method, line.condition, line.measured_metric))
    over = f", n={md_literal(line.n)}" if line.n else ""  # sweeps at several n into one out=: which one
    return (
        f"{where}: also measured {md_literal(line.measured)} in {md_literal(line.run)} "
        f"({md_literal(line.measured_as)}{over})"
    )


# How a table's measured cells come from the runs: (runs in order, the paper's cells, the table's entry of
# conf/report.yaml's `mapping`) -> cells. The registry in `__init__` maps each table id to one.
Builder = Callable[[list[RunData], list[Line], Any], list[Line]]
