"""Figures 5 (when each method commits: x̂0 against the final image, step by step) and 7 (diversity against base
guidance, k and the base's own steps), as PNG with the plotted points as CSV beside them."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ...core.marker import csv_with, owned_path, png_by, write_owned
from ...metrics.labels import interval_name, metric_label
from .common import (
    QUALITY_METRICS,
    STALE,
    RunData,
    ablate_stale_text,
    common_to_all,
    stale_ablate,
    without_pair_interval,
)

# an earlier report's figure, written before run.json listed figures: the points as CSV (figure_5.csv had no
# `metric` column before it named its embedder), and matplotlib's PNG beside such a CSV (a matplotlib figure of
# yours alone at that name is not taken for one)
_POINTS = (csv_with("metric"), csv_with("run", "method", "fraction", "distance"))
_PNG = png_by("matplotlib", "Matplotlib")


def figure_csv(path: Path) -> bool:
    return any(points(path) for points in _POINTS)


def figure_png(path: Path) -> bool:
    return _PNG(path) and figure_csv(path.with_suffix(".csv"))


PAPER_BASE_COMMITS = 30  # % of its steps after which the paper's SDXL base has its structure (Fig. 5's caption)


def figure5(runs: list[RunData], path: Path) -> Path | None:
    """Figure 5: distance between each step's x̂0 and the final image against % of steps, per method: the mean over
    its traces (prompts x seeds) with a 95% band (Student's t over the traces, floored at 0), and a dotted line where
    x0viz's summary finds it commits (its threshold). The CSV holds each point's number of traces and band."""
    frames = [(run, row) for run in runs for row in run.commitment]
    if not frames:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    metric = {str(run.root): x0viz_metric(run) for run in runs}
    frame = pd.DataFrame([{**row, "run": str(run.root), "metric": metric[str(run.root)]} for run, row in frames])
    frame["fraction"] = frame["fraction"].astype(float)
    frame["distance"] = frame["distance"].astype(float)
    grouped = frame.groupby(["run", "metric", "method", "fraction"], sort=False).distance
    curves = grouped.agg(["mean", "count", "std"]).reset_index()
    curves = _t_band(curves).rename(columns={"mean": "distance", "count": "traces"})
    committed = {
        (str(run.root), row.get("method")): row for run in runs for row in run.commitment_summary if row.get("method")
    }
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=120)
    multi, metrics = curves.run.nunique() > 1, list(dict.fromkeys(curves.metric))
    # the pair each curve is of (commitment_summary.csv's model; older summaries have none)
    pairs = {key: row.get("model") for key, row in committed.items() if row.get("model")}
    thresholds = set()
    for (run, name, method), curve in curves.groupby(["run", "metric", "method"], sort=False):
        label = f"{pairs[run, method]} {method}" if (run, method) in pairs else method
        label = f"{Path(run).name}: {label}" if multi else label
        label += f" [{name}]" if len(metrics) > 1 else ""  # distances of other metrics: each line says its own
        label += f" (n={int(curve.traces.max())})"
        (line,) = ax.plot(curve.fraction * 100, curve.distance, marker="o", ms=3, label=label)
        ax.fill_between(curve.fraction * 100, curve.ci_low, curve.ci_high, color=line.get_color(), alpha=0.15)
        summary = committed.get((run, method)) or {}
        if summary.get("committed_fraction"):
            ax.axvline(float(summary["committed_fraction"]) * 100, color=line.get_color(), ls=":", lw=1)
            thresholds.add(str(summary.get("threshold", "?")))
    # the paper's reading of its Figure 5 (SDXL): the base reaches the structure of its final image after ~30% of
    # its steps, the distilled model after its first
    ax.axvline(PAPER_BASE_COMMITS, color="grey", ls="--", lw=0.8, label=f"paper: SDXL base ~{PAPER_BASE_COMMITS}%")
    ax.set_xlabel("% of steps done")
    ax.set_ylabel(f"distance(x̂0 at step, final image)\n[{metrics[0] if len(metrics) == 1 else 'metric per line'}]")
    marks = f"; dotted: commits (threshold {', '.join(sorted(thresholds))})" if thresholds else ""
    ax.set_title(f"Figure 5: when each method commits\n(mean over n traces, 95% band{marks})", fontsize=9)
    ax.legend(fontsize=8)
    return _save_figure(fig, path, curves)


def _t_band(curves: Any) -> Any:
    """Each point's 95% interval of its mean over `count` traces: Student's t (over 4 traces the normal 1.96 drew it
    38% too narrow), floored at 0 as a distance is; no band for one trace. Numbers to 10 decimals: the final step's
    distance, 0, came out 5.55e-17."""
    from scipy.stats import t

    counts = curves["count"]
    quantile = t.ppf(0.975, (counts - 1).where(counts > 1))  # NaN for one trace
    half = quantile * curves["std"] / counts**0.5
    low, high = (curves["mean"] - half).clip(lower=0), curves["mean"] + half
    return curves.assign(ci_low=low, ci_high=high).drop(columns="std").round({"mean": 10, "ci_low": 10, "ci_high": 10})


def x0viz_metric(run: RunData) -> str:
    """The embedder a run's x0viz measured with: commitment_summary.csv's `metric`, else the last x0viz record's."""
    for row in run.commitment_summary:
        if row.get("metric"):
            return row["metric"]
    for record in reversed(run.records):
        if record.get("command") == "x0viz":
            found = (record.get("metric") or {}).get("name") or (record.get("config") or {}).get("metric")
            if found:
                return str(found)
    return "metric not recorded"


ABLATE_KNOBS = (
    ("base_guidance", "(a) base guidance"),
    ("k", "(b) k: base steps at the start"),
    ("base_steps", "(c) base's own steps"),
)


def ablate_curves(runs: list[RunData], metrics: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Figure 7's data: for each knob, the mean over prompts of every hybrid point where only that knob varies;
    and the base / distilled baselines (knob "baseline"), the levels the paper's figure compares against. Each
    point of a run's pair and metric is over the same prompts (`ablate_points`)."""
    return ablate_points(runs, metrics)[0]


def ablate_notes(runs: list[RunData], metrics: Iterable[str] | None = None) -> list[str]:
    """What Figure 7 left out: per run, pair and metric, the prompts not measured at every one of its points."""
    return ablate_points(runs, metrics)[1]


def ablate_points(runs: list[RunData], metrics: Iterable[str] | None) -> tuple[list[dict[str, Any]], list[str]]:
    """(points, notes). The points of one run, pair and metric are means over the prompts measured at all of them,
    baselines included, as Table 3 averages over the prompts of every method: a point over other prompts than its
    neighbours' (an ablate run extended on one prompt) would move for its prompts, not its knob."""
    frame = _ablate_frame(runs, metrics)
    points: list[dict[str, Any]] = []
    notes: list[str] = []
    if frame is None:
        return points, notes
    quality = _ablate_frame(runs, QUALITY_METRICS)  # measured at the same points: stands beside their diversity
    for run in runs:
        if stale := stale_ablate(run):
            notes.append(f"{STALE} Figure 7: {ablate_stale_text(run, list(stale.values()))}")
    for (run, model, metric, sweep, seed), rows in _by_sweep(frame):
        plotted = _plotted(rows)
        where = f"Figure 7, {run} / {model} / {metric}" + (f" / {sweep}" if sweep else "")
        curves = [plotted]
        if not common_to_all(set(part.prompt) for *_, part in plotted):
            # no prompt at every point: each curve (and each baseline) over its own points' common prompts, said
            curves = [[p for p in plotted if p[:3:2] == key] for key in dict.fromkeys(p[:3:2] for p in plotted)]
            notes.append(f"{where}: no prompt was measured at every point; each curve is over its own prompts")
        for curve in curves:
            common = common_to_all(set(part.prompt) for *_, part in curve)
            if not common:  # not one prompt along the curve either: each point over its own, which the note says
                notes.append(
                    f"{where}: the {curve[0][0]} points were measured on no common prompt; each is the mean over "
                    "its own prompts (figure_7.csv's `prompts`), so they are not comparable"
                )
                common = set().union(*(set(part.prompt) for *_, part in curve))
            left = sorted(set().union(*(set(part.prompt) for *_, part in curve)) - common)
            if left:
                notes.append(
                    f"{where}: left out prompt(s) {', '.join(left)}, not measured at every point (the points are "
                    f"means over the {len(common)} prompt(s) measured at all of them)"
                )
            for knob, point, fixed, part in curve:
                kept = part[part.prompt.isin(common)]
                if not kept.empty:
                    found = {**_point(knob, point, run, model, metric, fixed, kept), **_quality(kept, quality)}
                    points.append({**found, "sweep": sweep, "seed": seed, "left_out": "; ".join(left)})
    return points, notes


def _by_sweep(frame: Any) -> list[tuple[tuple[str, str, str, str, str], Any]]:
    """The rows of each run, pair and metric; split by n and by seed where a point and prompt was measured at several
    (sweeps at another n or seed= into one out=), and by the pair's changed settings (`pair`) wherever there are two
    (sweeps at two model.base.guidance=): one prompt's values at n=3 and n=4, at seed=0 and seed=100, or at two CFGs
    of the base, are no two prompts to average, nor points of one curve. Each part's key names its split (`n=3`,
    `seed=100`, `n=3, pair: base.guidance=5`) and its seed where split by seed (`?`: rows written before ablate.csv
    named one). A sweep whose prompts differ in n or seed (a prompt listed twice, a table's seeds) stays one."""
    groups = []
    cell = ["method", "k", "base_guidance", "base_steps", "prompt"]
    for (run, model, metric), rows in frame.groupby(["run", "model", "metric"], sort=False):
        cells = rows.groupby(cell, dropna=False)
        split = [column for column in ("n", "seed") if cells[column].nunique().gt(1).any()]
        # a pair's settings are a sweep's own: points at two of them are never one curve, measured at one cell or not
        split += ["pair"] if rows["pair"].nunique(dropna=False) > 1 else []
        if not split:
            groups.append(((run, model, metric, "", ""), rows))
            continue
        for values, part in rows.groupby(split, sort=False):
            found = dict(zip(split, values, strict=True))
            seed = (found["seed"] or "?") if "seed" in found else ""
            named = ", ".join(_split_name(column, found[column], seed) for column in split)
            groups.append(((run, model, metric, named, seed), part))
    return groups


def _split_name(column: str, value: Any, seed: str) -> str:
    """How a sweep's part is named by one column: `n=3`, `seed=100`, `pair: base.guidance=5` (the pair's settings
    changed from its file; `pair as configured` where none)."""
    if column == "n":
        return f"n={value:g}"
    if column == "seed":
        return f"seed={seed}"
    return f"pair: {value}" if value else "pair as configured"


def _ablate_frame(runs: list[RunData], metrics: Iterable[str] | None) -> Any:
    """ablate.csv rows of all runs (of `metrics`), numbers as numbers; None when there are none. `metric` is the
    tables' label (`toy_features[distance=euclidean]`): every grouping below is by it, so a curve never joins points
    of two distance measures under one name."""
    import pandas as pd

    rows = [{**without_pair_interval(row), "run": str(run.root)} for run in runs for row in run.ablate]
    if metrics is not None:
        wanted = set(metrics)
        rows = [row for row in rows if row.get("metric") in wanted]
    if not rows:
        return None
    rows = [{**row, "options": row.get("options") or "", "metric": metric_label(row)} for row in rows]
    frame = pd.DataFrame(rows)
    for column in ("k", "base_guidance", "base_steps", "value", "ci_low", "ci_high", "seconds_per_image", "nfe", "n"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce") if column in frame else float("nan")
    # text, "" where not named (rows written before ablate.csv had the column): a seed is a name, not a number
    frame["seed"] = frame["seed"].fillna("").astype(str) if "seed" in frame else ""
    frame["pair"] = frame["pair"].fillna("").astype(str) if "pair" in frame else ""  # rows before it: as configured
    return frame


def _plotted(rows: Any) -> list[tuple[str, float, str, Any]]:
    """(knob, point, fixed, rows) of each point one run, pair and metric plots: the baselines (knob "baseline",
    fixed: the method), then each hybrid point of a sweep where only that knob varies (fixed: the other knobs)."""
    import pandas as pd

    found = [
        ("baseline", float("nan"), method, part)
        for method, part in rows[rows.method.isin(["base", "distilled"])].groupby("method", sort=False)
    ]
    hybrid = rows[rows.method == "hybrid"]
    for knob, _ in ABLATE_KNOBS:
        others = [c for c, _ in ABLATE_KNOBS if c != knob]
        for key, group in hybrid.groupby(others, dropna=False, sort=False):
            if group[knob].nunique(dropna=True) < 2:
                continue
            fixed = ", ".join(f"{c}={v:g}" for c, v in zip(others, key, strict=True) if not pd.isna(v))
            found += [(knob, point, fixed, part) for point, part in group.groupby(knob, sort=True)]
    return found


def _point(knob: str, point: float, run: str, model: str, metric: str, fixed: str, part: Any) -> dict[str, Any]:
    low, high = _interval(part)
    return {
        "knob": knob,
        "point": point,
        "run": run,
        "model": model,
        "metric": metric,
        "options": part.options.iloc[0],  # one per point: `metric` (its label) holds them too
        "fixed": fixed,
        "value": part.value.mean(),
        "ci_low": low,
        "ci_high": high,
        "ci": _levels(part),
        "seconds_per_image": part.seconds_per_image.mean(),
        "nfe": part.nfe.mean(),
        "prompts": int(part.prompt.nunique()),
        "n": n_range(part.n),
        "pair": part.pair.iloc[0],  # one per point: parts are split by it (`_by_sweep`)
    }


# what one diversity row and its point's quality row share: the point, the prompt and the images (n, seed, pair)
POINT_CELL = ["run", "model", "method", "k", "base_guidance", "base_steps", "prompt", "n", "seed", "pair"]


def _quality(part: Any, quality: Any) -> dict[str, Any]:
    """`quality_metric` and `quality`: the mean, over the point's prompts, of the quality measured over the same
    images as its diversity (off-prompt variety is no diversity); empty where ablate measured none there."""
    if quality is None:
        return {"quality_metric": "", "quality": float("nan")}
    found = part[POINT_CELL].merge(quality[[*POINT_CELL, "metric", "value"]], on=POINT_CELL, how="inner")
    if found.empty or found.prompt.nunique() != part.prompt.nunique():  # not at every prompt: no mean to set beside
        return {"quality_metric": "", "quality": float("nan")}
    metric = found.metric.iloc[0]
    return {"quality_metric": metric, "quality": found[found.metric == metric].value.mean()}


def _levels(part: Any) -> str:
    """The level of a point's interval (ablate.csv's `ci`, "0.95"): "" where its rows predate the column; levels
    that differ between its prompts, each ("0.5/0.95")."""
    if "ci" not in part:
        return ""
    return "/".join(sorted({str(level) for level in part.ci.dropna() if str(level)}))


def _interval(part: Any) -> tuple[float, float]:
    """The interval of a point's mean over its prompts (`pooled_interval` of their bootstrap intervals, as Table 3's
    averages); NaN when a prompt has none (bootstrap=0, or two images)."""
    from ...metrics.diversity import pooled_interval

    if part.ci_low.isna().any() or part.ci_high.isna().any():
        return float("nan"), float("nan")
    _, low, high = pooled_interval(list(part.value), list(part.ci_low), list(part.ci_high))
    return low, high


def n_range(counts: Any) -> str:
    """The images per prompt behind a point: "4", or "4-8" when its prompts were measured over different counts."""
    found = sorted({int(n) for n in counts.dropna()})
    return "" if not found else str(found[0]) if len(found) == 1 else f"{found[0]}-{found[-1]}"


def figure7(runs: list[RunData], path: Path, metrics: Iterable[str] | None = None) -> Path | None:
    """Figure 7: diversity (and seconds per image, dotted) against base guidance, k and the base's own step count;
    base and distilled alone as horizontal lines."""
    drawn = figure7_figure(runs, metrics)
    if drawn is None:
        return None
    fig, frame = drawn
    return _save_figure(fig, path, frame)


FIGURE7_PANEL = (4.4, 3.5)  # inches per panel, before its legend
LEGEND_CHARS = 48  # a legend line this long at fontsize 7 stays within its panel: panels' legends never meet


def figure7_figure(runs: list[RunData], metrics: Iterable[str] | None = None) -> tuple[Any, Any] | None:
    """Figure 7 as a matplotlib Figure and the points it plots (None without a hybrid sweep): one panel per knob,
    each with its legend under it, the figure as tall as the longest legend needs."""
    curves = ablate_curves(runs, metrics)
    if not any(c["knob"] != "baseline" for c in curves):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    frame = pd.DataFrame(curves)
    knobs = [(knob, title) for knob, title in ABLATE_KNOBS if (frame.knob == knob).any()]
    width, height = FIGURE7_PANEL
    # constrained layout keeps each legend under its panel inside the figure and every label clear of the next
    # panel's (tight_layout, with the legends outside the axes, squeezed the axes instead)
    fig, axes = plt.subplots(1, len(knobs), figsize=(width * len(knobs), height), dpi=120, squeeze=False,
                             layout="constrained")  # fmt: skip
    for ax, (knob, title) in zip(axes[0], knobs, strict=True):
        _panel7(ax, frame, knob, title)
    legends = [_legend_below(ax) for ax in axes[0]]
    fig.set_figheight(height + max(_inches(legend).height for legend in legends))
    return fig, frame


def _panel7(ax: Any, frame: Any, knob: str, title: str) -> None:
    """One panel of Figure 7: each hybrid curve of `knob` with its intervals and its seconds per image (dotted, on
    a second axis), and the base / distilled levels of the same pairs, metrics and sweeps."""
    part = frame[frame.knob == knob]
    twin = ax.twinx()
    # each run's curves apart, named by it where several runs are drawn: two runs of one sweep joined into one
    # curve that went back and forth along the axis (k=1,2,1,2), its levels and intervals mixed
    named = frame.run.nunique() > 1
    levels_differ = len({level for value in part.ci.dropna() for level in str(value).split("/") if level}) > 1
    colours: dict[tuple[str, str, str, str], str] = {}  # (run, model, metric, sweep) -> its first curve's colour
    groups = part.groupby(["run", "model", "metric", "fixed", "sweep"], sort=False)
    for (run, model, metric, fixed, sweep), line in groups:
        label = _run_name(run, named) + f"{model} hybrid, {metric}" + (f" ({fixed})" if fixed else "") + _over(line)
        level = str(line.ci.iloc[0])
        label += f", bars: {interval_name(set(level.split('/')))}" if levels_differ and level else ""
        label += _quality_words(line)
        drawn = ax.plot(line.point, line.value, marker="o", ms=3, label=label)[0]
        colours.setdefault((run, model, metric, sweep), drawn.get_color())
        bars = line.dropna(subset=["ci_low", "ci_high"])
        if not bars.empty:  # the interval of each point's mean, as ablate's own plots draw it
            below, above = bars.value - bars.ci_low, bars.ci_high - bars.value
            ax.errorbar(bars.point, bars.value, yerr=[below, above], fmt="none", ecolor=drawn.get_color(), lw=1)
        if line.seconds_per_image.notna().any():
            twin.plot(line.point, line.seconds_per_image, ls=":", color="grey", lw=1)
    baseline = frame.knob == "baseline"
    same = frame.run.isin(part.run) & frame.model.isin(part.model) & frame.metric.isin(part.metric)
    levels = frame[baseline & same & frame.sweep.isin(part.sweep)]
    several = levels.groupby(["run", "model", "metric", "sweep"]).ngroups > 1
    for _, level in levels.iterrows():
        # base and distilled told apart by dash and colour (both were black); where several pairs, metrics or
        # sweeps have levels, each takes its hybrid curve's colour (theirs alike could not be told apart), the
        # distilled one paler
        style = "--" if level.fixed == "base" else "-."
        colour = "black" if level.fixed == "base" else "tab:red"
        if several:
            colour = colours.get((level.run, level.model, level.metric, level.sweep), colour)
        label = _run_name(level.run, named) + f"{level.model} {level.fixed} alone"
        label += f" ({level.sweep})" if level.sweep else ""
        label += _pair(level.pair) if "pair" not in level.sweep else ""  # named once
        label += _quality_words(level.to_frame().T)
        alpha = 0.5 if several and level.fixed != "base" else 1.0
        ax.axhline(level.value, ls=style, lw=1, color=colour, alpha=alpha, label=label)
        if level.notna()[["ci_low", "ci_high"]].all():  # its interval, as wide as a point's: bare, it read as exact
            ax.axhspan(level.ci_low, level.ci_high, color=colour, alpha=0.12 * alpha, lw=0)
    twin.set_ylim(bottom=0)  # from zero: zoomed to its range, a 5% wobble of the timing drew as a steep line
    ax.set_xlabel(knob)
    if knob in ("k", "base_steps"):  # counts of steps: ticks at 1.2, 1.4, ... named points that are none
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    # on two lines: on one it was as long as the panel is tall, and reached down into the legend under it
    ax.set_ylabel(f"diversity\n(metric in legend){bar_level(part)}", fontsize=9)
    twin.set_ylabel("s / image (dotted)", color="grey")
    ax.set_title(title, fontsize=9)


def _quality_words(points: Any) -> str:
    """The quality beside a curve's (or a level's) diversity, for its legend: "; toy_adherence 0.81-0.94" over its
    points. figure_7.csv had it and the figure did not: diversity stood alone, off-prompt variety as diversity."""
    if "quality" not in points:
        return ""
    found = points.dropna(subset=["quality"])
    found = found[found.quality_metric.astype(str) != ""]
    if found.empty:
        return ""
    found = found[found.quality_metric == found.quality_metric.iloc[0]]  # one metric's range, under its name
    low, high = float(found.quality.min()), float(found.quality.max())
    span = f"{low:.2f}" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f}-{high:.2f}"
    return f"; {found.quality_metric.iloc[0]} {span}"


def _run_name(run: str, named: bool) -> str:
    """A legend entry's run, where a figure draws several: "AB2: " (its folder's name), as Figure 5 names them."""
    return f"{Path(run).name}: " if named else ""


def _legend_below(ax: Any, chars: int = LEGEND_CHARS) -> Any:
    """`ax`'s legend under its x label, each entry wrapped at `chars`: inside the axes a long legend hid the curves,
    and one wider than its panel ran off the figure's edge and under the y label."""
    import textwrap

    from matplotlib.transforms import ScaledTranslation

    fig = ax.figure
    # how far the tick labels and x label reach below the axes, in inches: their size is in points, so the legend
    # clears them whatever height the layout gives the axes
    depth = (ax.bbox.y0 - ax.get_tightbbox(fig.canvas.get_renderer()).y0) / fig.dpi + 0.05
    under = ax.transAxes + ScaledTranslation(0, -depth, fig.dpi_scale_trans)
    handles, labels = ax.get_legend_handles_labels()
    wrapped = [textwrap.fill(label, chars, subsequent_indent="  ") for label in labels]
    return ax.legend(handles, wrapped, loc="upper center", bbox_to_anchor=(0.5, 0), bbox_transform=under, fontsize=7,
                     frameon=False)  # fmt: skip


def _inches(artist: Any) -> Any:
    """An artist's extent in inches (the Bbox of its window extent)."""
    fig = artist.figure
    return artist.get_window_extent(fig.canvas.get_renderer()).transformed(fig.dpi_scale_trans.inverted())


def bar_level(part: Any) -> str:
    """What a panel's error bars are, for its axis label: ", bars: 95% CI" (each level where they differ; "level
    not recorded" for rows from before ablate.csv named one)."""
    drawn = part.dropna(subset=["ci_low", "ci_high"])
    if drawn.empty:
        return ""
    levels = {level for value in drawn.ci for level in str(value).split("/")}
    return f", bars: {interval_name(levels)}" if "" not in levels else ", bars: CI (level not recorded)"


def _over(line: Any) -> str:
    """What a curve's points are means over, for its legend: " [2 prompts, n=4]"; its sweep's seed where sweeps
    at several seeds share the run (" [2 prompts, n=4, seed=100]")."""
    prompts, counts = sorted(set(line.prompts)), "/".join(dict.fromkeys(line.n))
    seeds = "/".join(seed for seed in dict.fromkeys(line.seed) if seed)
    seeded = f", seed={seeds}" if seeds else ""
    return f" [{'/'.join(map(str, prompts))} prompt{'s' if prompts != [1] else ''}, n={counts or '?'}{seeded}]" + (
        _pair(line.pair.iloc[0])
    )


def _pair(changed: str) -> str:
    """A legend entry's pair settings, where the sweep changed the pair's (`base.guidance=5`): a curve at the
    base's CFG 5 is not the pair as configured."""
    return f" (pair: {changed})" if changed else ""


def _save_figure(fig, path: Path, points) -> Path:
    """The figure as PNG and the points it plots as CSV beside it."""
    import matplotlib.pyplot as plt

    if fig.get_layout_engine() is None:  # Figure 7 is laid out as it is drawn, by its own engine
        fig.tight_layout()
    with owned_path(path.parent, path.name, figure_png) as temporary:
        # "tight": any text reaching past the figure's edge widens the image instead of being cut off by it
        fig.savefig(temporary, format=path.suffix.lstrip(".") or "png", bbox_inches="tight")
    plt.close(fig)
    write_owned(path.parent, path.with_suffix(".csv").name, points.to_csv(index=False), figure_csv)
    return path
