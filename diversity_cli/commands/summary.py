"""The end of every run: one table on stdout saying what was written where, how many images, how long it took,
and the headline number with its interval; `generate` also leaves a contact sheet of its run."""

from __future__ import annotations

import csv
import json
import os
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ..core.console import stdout_console
from ..core.errors import UserError
from ..core.rundir import RunDir
from ..metrics.labels import metric_label

HEADLINE_ROWS = 12  # groups shown in the summary at most (the CSV has them all)


@dataclass
class Summary:
    command: str
    seconds: float
    written: list[tuple[str, str]] = field(default_factory=list)  # (what, where)
    images: int | None = None
    headline: list[tuple[str, str]] = field(default_factory=list)  # (group, "metric value [low, high]")
    preflight: float = 0.0  # seconds of the checks before any work (checks.prepare), named when many


def before(command: str, cfg: DictConfig | None) -> int:
    """What a summary compares against: the rows of samples.csv before `generate` ran."""
    if command != "generate" or cfg is None:
        return 0
    return len(RunDir(cfg.out).read_samples())


def _csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _num(text: str | None) -> str:
    """A CSV cell as a short number (or as written, when it is not one: the summary never fails a finished run)."""
    if text in (None, ""):
        return "-"
    try:
        return f"{float(text):.4g}"
    except ValueError:
        return str(text)


def _share(text: str | None, n: str) -> str:
    """A classifier share with its 95% Wilson score interval over the row's n images, as Table 1 shows it."""
    from ..reporting.tables.table1 import share_interval

    low, high = share_interval(str(text), n)
    return f"{_num(text)} [{_num(low)}, {_num(high)}]" if low else _num(text)


def _interval(row: dict[str, str], level: float) -> str:
    text = _num(row.get("value"))
    if row.get("ci_low") not in (None, "") and row.get("ci_high") not in (None, ""):
        text += f" [{_num(row['ci_low'])}, {_num(row['ci_high'])}] {level:.0%} CI"
    return text


def _generate(summary: Summary, cfg: DictConfig, root: Path, rows_before: int, made: int | None) -> None:
    from ..core.prompts import read_prompts
    from ..core.rundir import shard_writer
    from ..experiments.generation import plan_jobs
    from ..experiments.shards import parse_shard
    from ..reporting.contact_sheet import contact_sheet

    prompts = read_prompts(cfg.prompt, cfg.prompts, cfg.limit)
    shard = parse_shard(cfg.get("shard"))
    # this command's images (its shard's): a run directory holds other commands' and other shards' too, which
    # neither its count nor its seconds per image may take in (a shard beside another reported both's images)
    paths = {job.path for job in plan_jobs(cfg, prompts, shard)}
    rows = [row for row in RunDir(root).read_samples() if row["path"] in paths]
    if made is not None:  # generate's own count: not the images of another writer it waited for
        summary.images = made
    else:  # its shards': images written since it began (a remade image adds no row, so files are counted)
        began = time.time() - summary.seconds
        summary.images = sum(1 for row in rows if _mtime(root / row["path"]) >= began) if rows_before else len(rows)
    table = shard_writer(shard)  # a shard writes its own samples file
    if rows:  # a shard with no prompt row of its own wrote neither
        summary.written += [(table, str(root / table)), ("images", f"{root / cfg.model.name}/<tag>/")]
    if prompts:
        first = prompts[0]
        start = first.first_seed(cfg.seed)
        seeds = list(range(start, start + min(int(cfg.n), 8)))
        try:
            sheet = contact_sheet(root, str(cfg.model.name), first.prompt, seeds)
        except UserError as err:  # a file of yours at its name: the images are made, the sheet alone is left out
            summary.written.append(("contact sheet: not drawn", str(err)))
        else:
            if sheet is not None:
                summary.written.append(("contact sheet (a row per method, same seeds)", str(sheet)))
    for tag in dict.fromkeys(row.get("tag", row["method"]) for row in rows):
        seconds = [float(row["seconds"]) for row in rows if row.get("tag", row["method"]) == tag and row.get("seconds")]
        if seconds:
            summary.headline.append((tag, f"{sum(seconds) / len(seconds):.3f} s/image over its {len(seconds)} images"))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _measured_metrics(rows: list[dict[str, str]], cfg: DictConfig | None) -> list[str]:
    """The metrics this run asked for, in its order, as its rows name them: diversity.csv keeps the rows of earlier
    runs (other metrics, or the same one with and without adherent_only), so its first row need not be this run's."""
    from ..experiments.diversity import parse_metrics, row_metric

    present = {row["metric"] for row in rows}
    if cfg is not None and cfg.get("metric") not in (None, "auto"):
        measured = [row_metric(name, cfg) for name in parse_metrics(cfg.metric)]
        return [metric for metric in measured if metric in present] or [rows[0]["metric"]] if rows else []
    return [rows[0]["metric"]] if rows else []


def _diversity(summary: Summary, result: Any, level: float, cfg: DictConfig | None = None) -> None:
    """The rows this command measured (`Written.rows`; a merge of shards returns the path alone: all of them)."""
    from ..experiments.diversity import row_key

    path = Path(result)
    rows = _csv(path)
    if getattr(result, "rows", None):
        rows = [row for row in rows if row_key(row) in result.rows]
    summary.written.append(("diversity.csv", str(path)))
    first, *others = _measured_metrics(rows, cfg)

    def group_of(row: dict[str, str]) -> tuple[str, str, str]:
        return row["model"], row["method"], row["prompt"]

    beside = _beside(rows, group_of, lambda row: row["metric"] in others)
    changed = _changed_pair_settings(path.parent)
    for row in [row for row in rows if row["metric"] == first]:  # no image count in the title: rows read from a
        # cache or merged from shards measured none now
        typed = changed.get((row["model"], row["method"], row["prompt"]))
        method = row["method"] + (f" ({', '.join(typed)})" if typed else "")
        group = " / ".join(part for part in (row["model"], method, row["prompt"][:40]) if part)
        summary.headline.append((group, _headline(row, level, beside.get(group_of(row), []))))


def _changed_pair_settings(root: Path) -> dict[tuple[str, str, str], list[str]]:
    """(pair, tag, prompt) -> the pair settings typed for that group's images (`model.base.guidance=5`): the group
    is then not the pair as its file has it, which diversity.csv's `base` does not say (the report's notes do)."""
    if not (root / "samples.csv").is_file():  # an images= folder: no generate made it
        return {}
    from ..core.record import read_records
    from ..core.rundir import config_part
    from ..reporting.tables.weights import typed_per_settings

    try:  # the records and samples alone, not the report's checks: a summary of work done does not fail on them
        typed, samples = typed_per_settings(read_records(root)), RunDir(root).read_samples()
    except UserError:
        return {}
    return {
        (row["model"], row["tag"], row["prompt"]): typed.get(config_part(row["settings"]), [])
        for row in samples
        if row.get("settings")
    }


def _beside(rows: list[dict[str, str]], key: Callable, other: Callable) -> dict[Any, list[dict[str, str]]]:
    """By `key`, the rows to stand on a headline's line: the run's other diversity metrics (those `other` picks),
    then its quality metrics (toy_adherence, clip_score: variety off the prompt is no diversity)."""
    from ..experiments.defaults import QUALITY_METRICS

    found: dict[Any, list[dict[str, str]]] = {}
    for row in sorted(rows, key=lambda row: row["metric"] in QUALITY_METRICS):
        if row["metric"] in QUALITY_METRICS or other(row):
            found.setdefault(key(row), []).append(row)
    return found


def _headline(row: dict[str, str], level: float, beside: list[dict[str, str]]) -> str:
    """`toy_features 0.2402 [0.1657, 0.2877] 95% CI, n=3; toy_adherence 1 [0.44, 1] 95% CI`: a number with its
    interval (at the row's own level; older rows: this run's), its n, then the run's other metrics and the quality
    measured beside it, each with its own interval. A metric is labelled with its settings other than the
    defaults."""
    measured_at = float(row["ci"]) if row.get("ci") else level
    n = f", n={row['n']}" if str(row.get("n", "")).isdigit() else ""
    scores = "".join(  # each its own interval where its row has one (toy_adherence's Wilson interval)
        f"; {metric_label(other)} {_interval(other, float(other['ci']) if other.get('ci') else level)}"
        for other in beside
        if metric_label(other) != metric_label(row)
    )
    return f"{metric_label(row)} {_interval(row, measured_at)}{n}{scores}"


def _fid(summary: Summary, path: Path, cfg: DictConfig | None = None) -> None:
    rows = _csv(path)
    summary.written.append(("fid.csv", str(path)))
    if cfg is not None:  # fid.csv keeps the rows of other groups, references and features: this command's are shown
        rows = _measured_now(rows, cfg)
    for row in rows:  # as diversity's: each row carries its n, the title no images/s of work a cache or shard did
        name = next((key for key in row if key.startswith("fid") and row[key]), None)
        score = f"{name} {_num(row[name])}" if name else "fid -"
        against = f", against {row['reference']}" if row.get("reference") else ""
        # another image preparation is another number: `toy(resolution=64)` beside the default's row
        features = f", features {row['features']}" if "(" in row.get("features", "") else ""
        label = f"{row['model']} / {row['method']}".strip(" /")
        summary.headline.append((label, f"{score} (n={row['n']}{against}{features})"))


def _measured_now(rows: list[dict[str, str]], cfg: DictConfig) -> list[dict[str, str]]:
    """The fid.csv rows this command wrote: its groups (tags=, images=) against its reference with its features."""
    from ..core.rundir import RunDir
    from ..experiments.fid import features_label, measured_groups, reference_label

    groups = set(measured_groups(cfg, RunDir(cfg.out)))
    made = (reference_label(cfg), features_label(cfg))
    return [r for r in rows if (r["method"], r["model"]) in groups and (r.get("reference"), r.get("features")) == made]


def _x0viz(summary: Summary, out: Path) -> None:
    summary.written += [
        ("x0 grids, commitment.png", str(out)),
        ("commitment_summary.csv", str(out / "commitment_summary.csv")),
    ]
    for row in _csv(out / "commitment_summary.csv"):
        try:  # committed_step is 0-based; committed_fraction counts the steps up to and including it
            after = f"after step {int(row['committed_step']) + 1} of {row['steps']}"
            share = f"{float(row['committed_fraction']):.0%} of its steps"
        except (KeyError, ValueError):
            summary.headline.append((row.get("method", "?"), "commitment: see commitment_summary.csv"))
            continue
        first = row.get("first_step_distance")  # absent in summaries written before it
        # three significant digits, trailing zeros kept: 0.370 beside 0.416 (not 0.37), 0.000412 (not 0.000)
        first = f"; x̂0 {float(first):#.3g} from its final image after step 1" if first else ""
        # what it was measured over: the commitment moves with the prompts, n, the metric and the threshold
        over = [row.get(key) for key in ("metric", "threshold", "prompts", "n")]
        over = f" [{over[0]}, threshold {over[1]}, {over[2]} prompt(s) x {over[3]} seeds]" if all(over) else ""
        line = f"commits at t={row['committed_timestep']}, {after} ({share}){first}{over}"
        summary.headline.append((row["method"], line))


def _transfer(summary: Summary, measured: Any) -> None:
    """A row per (adapter, source -> target): Table 1's number (the CLIP score's % change toward the concept, the
    means it is a ratio of) or, on the toy pair, the share of images the classifier finds the concept in."""
    summary.written.append(("transfer.csv", str(measured.path)))
    summary.written += [("grid", str(grid)) for grid in measured.grids]
    for row in measured.rows:
        group = f"{row['adapter']} x{row['scale']}: {row['source']} -> {row['target']}"
        values = []
        means = f"CLIP score toward {row['concept']!r} {_num(row['clip_without'])} -> {_num(row['clip_with'])}"
        if row.get("change_pct") not in (None, ""):
            low, high = row.get("change_low"), row.get("change_high")
            interval = f" [{float(low):+.1f}, {float(high):+.1f}] 95% CI" if low not in (None, "") else ""
            values.append(f"change_pct {float(row['change_pct']):+.1f}%{interval} ({means})")
        elif row.get("clip_model"):  # CLIPScore's max(0, mean) without the adapter was 0: no ratio to take
            values.append(f"no change_pct ({means}: a change of a score of 0)")
        if row.get("classifier_target"):
            without, with_ = (_share(row.get(key), row["n"]) for key in ("classifier_without", "classifier_with"))
            values.append(f"share of images with {row['classifier_target']} {without} -> {with_} (95% Wilson)")
        summary.headline.append((group, f"{'; '.join(values) or 'no score (no CLIP model)'}, n={row['n']}"))


def _ablate(summary: Summary, cfg: DictConfig) -> None:
    from ..core.record import read_records

    out = Path(cfg.out)
    rows = _csv(out / "ablate.csv")
    summary.written.append(("ablate.csv", str(out / "ablate.csv")))
    if (out / "plots").is_dir():  # plots=false draws none
        summary.written.append(("plots", str(out / "plots")))
    # ablate.csv keeps earlier sweeps' points and measurements (other options) into this out=: the headline is this
    # sweep's points (its record's), as each point's point.csv holds its latest measurement
    mine = [record for record in read_records(out) if record.get("command") == "ablate" and "points" in record]
    if mine:  # a point whose last attempt failed has no numbers of this sweep; older point.csv files as read now
        from ..experiments.ablate import ERROR_NAME, POINTS, measurements

        folders = [out / POINTS / str(cfg.model.name) / tag for tag in mine[-1]["points"]]
        done = [folder for folder in folders if not (folder / ERROR_NAME).is_file()]
        rows = measurements([row for folder in done for row in _csv(folder / "point.csv")])
    from ..experiments.defaults import QUALITY_METRICS

    # a prompt's quality (toy_adherence, clip_score) stands on its diversity's line, never as a headline of its own;
    # a CLIP score over all of a point's prompts (fid=true) stays a number of its own
    def point_of(row: dict[str, str]) -> tuple[str, str, str]:
        return row.get("run", ""), row["prompt"], row.get("n", "")

    diversity = [row for row in rows if not (row["metric"] in QUALITY_METRICS and row.get("prompt"))] or rows
    first = metric_label(diversity[0]) if diversity else None
    # the sweep's other diversity metrics (metric=dreamsim,lpips) stand on the first one's line
    others = _beside([row for row in rows if row.get("prompt")], point_of, lambda row: metric_label(row) != first)
    level = float(cfg.measure.diversity.get("ci", 0.95))
    for row in [row for row in diversity if metric_label(row) == first]:
        knobs = ",".join(f"{k}={row[k]}" for k in ("k", "base_guidance", "base_steps") if row.get(k) not in ("", None))
        point = f"{row['method']} {knobs}".strip()
        beside = others.get(point_of(row), []) if row.get("prompt") else []
        summary.headline.append((f"{point} / {row['prompt'][:30]}", _headline(row, level, beside)))


def _distill(summary: Summary, root: Path) -> None:
    """Where the student is and how to sample with it (its run's README.md gives the command line): the summary
    said only "output" and the run's folder."""
    summary.written.append(("run directory", str(root)))
    named = (("student network", "student"), ("how to sample with it", "README.md"), ("quality", "quality.png"))
    for what, name in named:
        if (root / name).exists():
            summary.written.append((what, str(root / name)))


def _train_lora(summary: Summary, path: Path, cfg: DictConfig | None) -> None:
    """The adapter file, what it was trained toward and its final loss (adapter.json), and how to use it: the
    summary said only "output" and the weights file. The use names the pair as train-lora was given it (another
    base, local components): without those overrides transfer-lora took the config file's base and refused."""
    summary.written.append(("adapter", str(path)))
    meta_file = path.parent / "adapter.json"
    meta = json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.is_file() else {}
    if meta:
        negative = f" vs {meta['negative']}" if meta.get("mode") == "slider" and meta.get("negative") else ""
        trained = f"{meta.get('mode', 'lora')} toward {meta.get('concept')}{negative} on {meta.get('model')}'s base"
        steps = f"{meta.get('steps')} step{'' if meta.get('steps') == 1 else 's'}"
        from ..toy.lora import loss_words

        # the log's one-step losses in the last steps, averaged (not the moving average the progress bar shows)
        logged = loss_words(int(meta.get("steps") or 0))
        loss = f"final loss {_num(str(meta.get('final_loss')))} ({logged}), {steps}, rank {meta.get('rank')}"
        summary.headline.append((trained, loss))
    pair = f" model={meta['model']}" if meta.get("model") else ""  # the pair it was trained on: its base fits it
    if cfg is not None and meta.get("model"):
        from ..core.config import pair_overrides

        pair += "".join(f" {shlex.quote(item)}" for item in pair_overrides(cfg.model, skip="distilled"))
    summary.headline.append(("use it", f"diversity-cli transfer-lora{pair} adapter={path.parent} prompt=..."))


def summarize(command: str, cfg: DictConfig | None, result: Any, seconds: float, rows_before: int = 0) -> Summary:
    summary = Summary(command, seconds)
    path = Path(result) if isinstance(result, (str, os.PathLike)) else None
    if command == "generate" and path is not None:
        _generate(summary, cfg, path, rows_before, getattr(result, "made", None))
    elif command == "diversity" and path is not None:
        _diversity(summary, result, float(cfg.get("ci", 0.95)) if cfg is not None else 0.95, cfg)
    elif command == "fid" and path is not None:
        _fid(summary, path, cfg)
    elif command == "x0viz" and path is not None:
        _x0viz(summary, path)
    elif command == "transfer-lora" and hasattr(result, "rows"):
        _transfer(summary, result)
    elif command == "ablate" and cfg is not None:
        _ablate(summary, cfg)
    elif command == "distill" and path is not None:
        _distill(summary, path)
    elif command == "train-lora" and path is not None:
        _train_lora(summary, path, cfg)
    elif command == "report" and cfg is not None:
        if path is not None:  # None: no table or figure, so no tables folder (a page may still be written)
            summary.written.append(("tables (markdown + CSV)", str(path)))
        runs = [cfg.out] if cfg.get("out") is not None else list(cfg.get("runs") or [])
        for run in runs:
            if (Path(str(run)) / "report.html").is_file():
                summary.written.append(("HTML report", str(Path(str(run)) / "report.html")))
    elif path is not None:
        summary.written.append(("output", str(path)))
    return summary


PREFLIGHT_NAMED = 2.0  # seconds: a preflight slower than this is named in the summary's title


def show(summary: Summary) -> None:
    from rich.table import Table
    from rich.text import Text  # cells are data: a prompt or `toy_features[distance=euclidean]` is no markup

    rate = ""
    if summary.images and summary.seconds > 0:
        rate = f", {summary.images / summary.seconds:.2f} images/s"
    images = f"{summary.images} images, " if summary.images is not None else ""
    checks = f"; the preflight took {summary.preflight:.1f} s of it" if summary.preflight > PREFLIGHT_NAMED else ""
    title = f"{summary.command}: {images}{summary.seconds:.1f} s{rate}{checks}"
    table = Table(title=title, title_justify="left")
    table.add_column("what")
    table.add_column("where / value", overflow="fold")
    for what, where in summary.written:
        table.add_row(Text(what), Text(where))
    for group, value in summary.headline[:HEADLINE_ROWS]:
        table.add_row(Text(group), Text(value))
    if len(summary.headline) > HEADLINE_ROWS:
        table.add_row("...", f"{len(summary.headline) - HEADLINE_ROWS} more rows in the CSV")
    stdout_console().print(table)
