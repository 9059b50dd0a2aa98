"""Figure 7 and ablate's own plots keep every text inside the image: a long legend (two sweeps in one out=, a line
per prompt, a metric's options) was cut off at the figure's left edge, hid the curves, and the y label ran over it."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox
from test_figures_ablate import _write_ablate

from diversity_cli.experiments.ablate import Point, Sweep, plot, plot_figure
from diversity_cli.reporting.tables import figure7, load_run
from diversity_cli.reporting.tables.figures import figure7_figure

MODEL = "a_pair_with_a_rather_long_name"
PROMPTS = [f"a {colour} shape drawn on a plain background, number {i}" for i, colour in enumerate("red green".split())]
OPTIONS = ("", "distance=euclidean,reference=/data/some/rather/long/folder/of/reference/images")


def _figure7_run(root: Path) -> Path:
    """ablate.csv of every knob swept (base guidance, k, the base's own steps) around k=1, guidance 0, 5 steps, at
    two seeds and with two metric options into one run: each panel has four curves and eight baselines."""
    hybrid = [(1, g, 5) for g in (0, 2, 4)] + [(k, 0, 5) for k in (2, 3)] + [(1, 0, 10)]
    points = [("hybrid", *knobs) for knobs in hybrid] + [("base", "", "", ""), ("distilled", "", "", "")]
    rows = [
        {"model": MODEL, "method": method, "k": k, "base_guidance": g, "base_steps": s, "prompt": prompt, "n": 4,
         "seed": seed, "metric": "toy_features", "options": options, "value": 0.3 + 0.01 * i, "ci_low": 0.2,
         "ci_high": 0.5, "ci": 0.95, "seconds_per_image": 0.1, "nfe": 4}
        for i, (method, k, g, s) in enumerate(points) for prompt in PROMPTS for seed in ("0", "100")
        for options in OPTIONS
    ]  # fmt: skip
    return _write_ablate(root, rows)


def _measured(value: float, prompts: list[str]) -> dict[str, tuple[float, float, float]]:
    """A point's value and interval on each prompt."""
    return {prompt: (value + 0.01 * i, value - 0.1, value + 0.1) for i, prompt in enumerate(prompts)}


PLOTS = {  # what `plot` draws, by what makes its legend long
    "a line per prompt": (["k"], [Point.of("hybrid", k, 0.0) for k in (1, 2, 3)]),
    "a grid's mean lines": (["k", "base_guidance"], [Point.of("hybrid", k, g) for k in (1, 2) for g in (0, 2, 4)]),
    "bars of every method": ([], [Point("skip_first"), Point("replace_final"), Point("hybrid")]),
}
METRIC = f"toy_features[{OPTIONS[1]}]"


def _sweep(case: str) -> tuple[Sweep, list]:
    """A sweep of `case` with base and distilled beside it, and each point's values on the long prompts (eight of
    them where a line per prompt is drawn)."""
    swept, points = PLOTS[case]
    baselines = [Point("base"), Point("distilled")]
    prompts = [f"{p}, again {j}" for p in PROMPTS for j in range(4)] if case == "a line per prompt" else PROMPTS
    values = [(point, _measured(0.3 + 0.02 * i, prompts)) for i, point in enumerate(points + baselines)]
    return Sweep(MODEL, points, baselines, swept, n=8, seed=100), values


def _texts(fig: Figure) -> dict[str, Bbox]:
    """Window extents of each panel's title, axis labels and legend, after the figure's layout has run."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    found: dict[str, Bbox] = {}
    for i, ax in enumerate(fig.axes):
        for name, text in (("title", ax.title), ("x label", ax.xaxis.label), ("y label", ax.yaxis.label)):
            if text.get_visible() and text.get_text():
                found[f"axes {i} {name} {text.get_text()!r}"] = text.get_window_extent(renderer)
        if ax.get_legend() is not None:
            found[f"axes {i} legend"] = ax.get_legend().get_window_extent(renderer)
    return found


def _assert_laid_out(fig: Figure) -> None:
    """Every text (tick labels too) inside the figure, none over another, and no legend over a plot's area (where
    it hid curves)."""
    import matplotlib.pyplot as plt

    texts = _texts(fig)
    # each axis with its drawn tick labels (a bar chart's slanted ones too)
    ticks = {f"axes {i} {axis.axis_name} axis": axis.get_tightbbox() for i, ax in enumerate(fig.axes)
             for axis in (ax.xaxis, ax.yaxis) if axis.get_visible()}  # fmt: skip
    inside = fig.bbox.padded(1)  # a pixel's rounding
    for name, box in {**texts, **ticks}.items():
        within = inside.x0 <= box.x0 and inside.y0 <= box.y0 and box.x1 <= inside.x1 and box.y1 <= inside.y1
        assert within, f"{name} {box} reaches past the figure {fig.bbox}"
    names = list(texts)
    for i, one in enumerate(names):
        for other in names[i + 1 :]:
            assert not texts[one].overlaps(texts[other]), f"{one} overlaps {other}"
    for name in (name for name in names if name.endswith("legend")):
        for ax in fig.axes:
            assert not texts[name].overlaps(ax.bbox), f"{name} lies over the plot of {ax.get_title()!r}"
    plt.close(fig)


def _assert_nothing_cut_off(png: Path) -> None:
    """The saved image's outermost pixels are background: text that ran past its edge would be cut off there."""
    from PIL import Image

    with Image.open(png) as image:
        pixels = image.convert("L")
        width, height = pixels.size
        edge = [(x, y) for x in range(width) for y in (0, height - 1)]
        edge += [(x, y) for y in range(height) for x in (0, width - 1)]
        assert min(pixels.getpixel(xy) for xy in edge) > 240, f"{png.name} has ink at its edge"


def test_figure7_keeps_its_legends_and_labels_inside_and_apart(tmp_path: Path):
    """Three panels, each with four curves (two seeds, two metric options) and eight baselines, all long labels."""
    fig, _ = figure7_figure([load_run(_figure7_run(tmp_path / "abl"))])
    assert len(fig.axes) == 6  # three panels, each with its seconds-per-image axis
    _assert_laid_out(fig)


def test_figure7_png_has_nothing_cut_off_at_its_edges(tmp_path: Path):
    run = load_run(_figure7_run(tmp_path / "abl"))
    _assert_nothing_cut_off(figure7([run], tmp_path / "figure_7.png"))


@pytest.mark.parametrize("case", list(PLOTS))
def test_ablate_plots_keep_their_legend_and_labels_inside_and_apart(case: str):
    sweep, values = _sweep(case)
    knob = sweep.swept[0] if sweep.swept else None
    _assert_laid_out(plot_figure(values, sweep, METRIC, knob, "95% CI"))


@pytest.mark.parametrize("case", list(PLOTS))
def test_ablate_plot_pngs_have_nothing_cut_off_at_their_edges(tmp_path: Path, case: str):
    sweep, values = _sweep(case)
    row = {"metric": "toy_features", "options": OPTIONS[1]}  # ablate.csv's row of METRIC
    results = [(point, [{**row, "prompt": p, "value": str(v)} for p, (v, _, _) in by_prompt.items()])
               for point, by_prompt in values]  # fmt: skip
    for png in plot(results, sweep, tmp_path / "plots"):
        _assert_nothing_cut_off(png)


def test_figure7s_baselines_of_two_sweeps_take_their_own_curves_colour(tmp_path: Path, monkeypatch):
    """Two sweeps into one out= (n=4, then n=3): their base levels were both black dashes, their distilled levels
    both red, so which level belonged to which curve could not be seen."""
    import matplotlib.axes
    from test_figures_ablate import _ablate_run

    rows = [("hybrid", "a shape", k, n, 0.1 * k + n / 100) for n in (4, 3) for k in (1, 2)]
    rows += [
        (method, "a shape", 1, n, v + n / 100) for n in (4, 3) for method, v in (("base", 0.6), ("distilled", 0.2))
    ]
    levels: dict[str, tuple[str, str]] = {}  # label -> (colour, dash)
    real_axhline = matplotlib.axes.Axes.axhline

    def axhline(ax, y=0, *args, **kwargs):
        levels[kwargs["label"]] = (kwargs["color"], kwargs["ls"])
        return real_axhline(ax, y, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "axhline", axhline)
    fig, _ = figure7_figure([load_run(_ablate_run(tmp_path / "abl", rows))])
    curves = {line.get_label(): line.get_color() for line in fig.axes[0].get_lines() if "hybrid" in line.get_label()}
    for n in (4, 3):
        (curve,) = [colour for label, colour in curves.items() if f"n={n}" in label]
        (base,) = [level for label, level in levels.items() if "base alone" in label and f"n={n}" in label]
        (distilled,) = [level for label, level in levels.items() if "distilled alone" in label and f"n={n}" in label]
        assert base == (curve, "--") and distilled == (curve, "-.")
    assert len(set(curves.values())) == 2


def test_figure7s_step_counts_are_ticked_at_whole_numbers(tmp_path: Path):
    """k=1..3 drew ticks at 1.5, 2.5: points that no sampler can run."""
    fig, _ = figure7_figure([load_run(_figure7_run(tmp_path / "abl"))])
    fig.canvas.draw()
    ticks = {ax.get_xlabel(): [tick for tick in ax.get_xticks() if ax.get_xlim()[0] <= tick <= ax.get_xlim()[1]]
             for ax in fig.axes if ax.get_xlabel()}  # fmt: skip
    for knob in ("k", "base_steps"):
        assert ticks[knob] and all(float(tick).is_integer() for tick in ticks[knob]), (knob, ticks[knob])


def _spans(ax) -> set[tuple[float, float]]:
    """The vertical extents (data units) of the horizontal bands drawn on `ax` (axhspan's rectangles)."""
    return {(round(p.get_y(), 6), round(p.get_y() + p.get_height(), 6)) for p in ax.patches}


def test_baselines_carry_their_interval_and_seconds_start_at_zero(tmp_path: Path):
    """Base and distilled were bare lines beside hybrid points with error bars as wide: they read as exact. The
    seconds axis zoomed to its range drew a 5% timing wobble as a steep line."""
    fig, frame = figure7_figure([load_run(_figure7_run(tmp_path / "abl"))])
    levels = frame[frame.knob == "baseline"]
    panel = fig.axes[0]
    bands = _spans(panel)
    for _, level in levels.iterrows():
        assert (round(level.ci_low, 6), round(level.ci_high, 6)) in bands, (level.fixed, bands)
    seconds = [ax for ax in fig.axes if ax.get_ylabel() == "s / image (dotted)"]
    assert seconds and all(ax.get_ylim()[0] == 0 for ax in seconds)
    sweep, values = _sweep("a grid's mean lines")
    one = [(point, dict(list(by_prompt.items())[:1])) for point, by_prompt in values]  # one prompt: its interval
    fig = plot_figure(one, sweep, METRIC, "k", "95% CI")
    for _, by_prompt in one[-2:]:  # base and distilled
        ((_, low, high),) = by_prompt.values()
        assert (round(low, 6), round(high, 6)) in _spans(fig.axes[0]), _spans(fig.axes[0])


def test_figure7_draws_two_runs_of_one_sweep_as_two_curves_named_by_their_runs(tmp_path: Path):
    """Two runs of `ablate k=1..2` joined into one curve drawn k=1,2,1,2 (its line doubling back), their base and
    distilled levels each twice under one name, and no run named."""
    from test_figures_ablate import _ablate_run

    def rows(shift: float) -> list:
        hybrid = [("hybrid", "a shape", k, 4, 0.1 * k + shift) for k in (1, 2)]
        return hybrid + [(m, "a shape", 1, 4, v + shift) for m, v in (("base", 0.6), ("distilled", 0.2))]

    runs = [load_run(_ablate_run(tmp_path / name, rows(shift))) for name, shift in (("AB", 0.0), ("AB2", 0.05))]
    fig, _ = figure7_figure(runs)
    lines = fig.axes[0].get_lines()
    curves = {line.get_label(): list(line.get_xdata()) for line in lines if "hybrid" in line.get_label()}
    assert sorted(label.split(":")[0] for label in curves) == ["AB", "AB2"], curves
    assert all(points == [1, 2] for points in curves.values()), curves
    levels = [label for label in fig.axes[0].get_legend_handles_labels()[1] if "alone" in label]
    assert sorted(levels) == ["AB2: toy base alone", "AB2: toy distilled alone", "AB: toy base alone",
                              "AB: toy distilled alone"], levels  # fmt: skip
