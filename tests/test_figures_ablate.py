"""Figure 7's points: each point of a run's pair and metric is a mean over the same prompts (those measured at all
of its points, baselines included), states the images per prompt it rests on, and what was left out is said."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from diversity_cli.reporting.tables import ablate_curves, ablate_notes, load_run


def _ablate_run(root: Path, points: list[tuple[str, str, int, int, float]]) -> Path:
    """ablate.csv of (method, prompt, k, n, value) rows, one toy_features row each."""
    rows = [
        {"model": "toy", "method": method, "k": k if method == "hybrid" else "",
         "base_guidance": 0 if method == "hybrid" else "", "base_steps": "", "prompt": prompt, "n": n,
         "metric": "toy_features", "value": value, "seconds_per_image": 0.1, "nfe": 4}
        for method, prompt, k, n, value in points
    ]  # fmt: skip
    return _write_ablate(root, rows)


def _write_ablate(root: Path, rows: list[dict]) -> Path:
    root.mkdir(parents=True)
    with (root / "ablate.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def _by_point(curves: list[dict]) -> dict[tuple[str, object], dict]:
    return {(c["knob"], c["fixed"] if c["knob"] == "baseline" else c["point"]): c for c in curves}


def test_a_sweep_extended_on_one_prompt_is_plotted_over_the_prompts_of_every_point(tmp_path: Path):
    """k=1..3 on "a circle", then k=1..2 on "a red square" (as two ablate calls into one run make): k=3 has no
    square, so every point (and the baselines) is over the circle alone, and the square is named as left out."""
    rows = [("hybrid", "a circle", k, 4, 0.1 * k) for k in (1, 2, 3)]
    rows += [("hybrid", "a red square", k, 4, 0.9) for k in (1, 2)]
    rows += [(m, p, 1, 4, v) for p in ("a circle", "a red square") for m, v in (("base", 0.5), ("distilled", 0.2))]
    rows[-1] = ("distilled", "a red square", 1, 4, 0.8)
    run = load_run(_ablate_run(tmp_path / "abl", rows))
    points = _by_point(ablate_curves([run]))
    assert [points[("k", k)]["value"] for k in (1.0, 2.0, 3.0)] == pytest.approx([0.1, 0.2, 0.3])
    assert points[("baseline", "distilled")]["value"] == pytest.approx(0.2)
    assert {c["prompts"] for c in points.values()} == {1} and {c["n"] for c in points.values()} == {"4"}
    assert {c["left_out"] for c in points.values()} == {"a red square"}
    (note,) = ablate_notes([run])
    assert "a red square" in note and "a circle" not in note


def test_a_point_over_prompts_of_different_counts_gives_their_range(tmp_path: Path):
    rows = [("hybrid", p, k, n, 0.5) for k in (1, 2) for p, n in (("a circle", 4), ("a red square", 8))]
    rows += [("base", p, 1, n, 0.5) for p, n in (("a circle", 4), ("a red square", 8))]
    run = load_run(_ablate_run(tmp_path / "abl", rows))
    points = _by_point(ablate_curves([run]))
    assert points[("k", 1.0)]["n"] == "4-8" and points[("k", 1.0)]["prompts"] == 2
    assert not ablate_notes([run]) and {c["left_out"] for c in points.values()} == {""}


def test_a_points_interval_is_that_of_its_mean_over_prompts(tmp_path: Path):
    """Figure 7 drew no interval though ablate.csv holds each prompt's: a point's is the pooled interval of its
    prompts' (as Table 3's averages), none when a prompt has none (bootstrap=0)."""
    from diversity_cli.metrics.diversity import pooled_interval

    rows = [("hybrid", p, k, 4, v) for k in (1, 2) for p, v in (("a circle", 0.4), ("a red square", 0.6))]
    root = _ablate_run(tmp_path / "abl", rows)
    text = (root / "ablate.csv").read_text().splitlines()
    header = text[0] + ",ci_low,ci_high"
    bounds = {"a circle": ",0.3,0.45", "a red square": ",0.5,0.8"}
    body = [line + next(b for p, b in bounds.items() if f",{p}," in line) for line in text[1:]]
    (root / "ablate.csv").write_text("\n".join([header, *body]) + "\n")
    point = _by_point(ablate_curves([load_run(root)]))[("k", 1.0)]
    _, low, high = pooled_interval([0.4, 0.6], [0.3, 0.5], [0.45, 0.8])
    assert (point["ci_low"], point["ci_high"]) == pytest.approx((low, high))
    (root / "ablate.csv").write_text("\n".join([text[0] + ",ci_low,ci_high", *(line + ",," for line in text[1:])]))
    point = _by_point(ablate_curves([load_run(root)]))[("k", 1.0)]
    assert point["ci_low"] != point["ci_low"]  # NaN: no interval to pool


def test_with_no_prompt_at_every_point_each_curve_keeps_its_own(tmp_path: Path, cli):
    """k=1,2 on two prompts, then k=3 alone on a third: no prompt is at every point, and Figure 7 vanished (its
    earlier file left beside the report as if current). Each curve is now over its own points' prompts, said."""
    rows = [("hybrid", p, k, 4, 0.2 * k) for k in (1, 2) for p in ("a circle", "a red square")]
    rows += [("hybrid", "a green cross", 3, 4, 0.9)]
    rows += [(m, p, 1, 4, 0.5) for m in ("base", "distilled") for p in ("a circle", "a red square")]
    run = load_run(_ablate_run(tmp_path / "abl", rows))
    points = _by_point(ablate_curves([run]))
    assert [points[("k", k)]["value"] for k in (1.0, 2.0, 3.0)] == pytest.approx([0.2, 0.4, 0.9])
    assert [points[("k", k)]["prompts"] for k in (1.0, 2.0, 3.0)] == [2, 2, 1]  # each over its own prompts
    assert points[("baseline", "base")]["prompts"] == 2
    notes = ablate_notes([run])
    assert any("each curve is over its own prompts" in note for note in notes)
    assert any("no common prompt" in note and "not comparable" in note for note in notes)
    tables = tmp_path / "tables"
    tables.mkdir()
    (tables / "figure_5.png").write_bytes(b"an earlier report's")
    code, _, err = cli("report", f"out={tmp_path / 'abl'}", "tables=none", "html=false", f"tables_dir={tables}")
    assert code == 0 and (tables / "figure_7.png").is_file()
    assert "figure_5.png is an earlier report's" in " ".join(err.split())


def _ablate_with_options(root: Path, rows: list[tuple[str, int, float, str, float]]) -> Path:
    """ablate.csv of (method, k, base_guidance, options, value) rows on one prompt, with the `options` column ablate
    writes for an embedder measured with other settings than the defaults."""
    return _write_ablate(root, [
        {"model": "toy", "method": method, "k": k if method == "hybrid" else "",
         "base_guidance": guidance if method == "hybrid" else "", "base_steps": "", "prompt": "a circle", "n": 2,
         "metric": "toy_features", "value": value, "options": options}
        for method, k, guidance, options, value in rows
    ])  # fmt: skip


def test_points_measured_with_other_metric_options_are_their_own_curve(tmp_path: Path):
    """A base_guidance sweep with the default (cosine) distance, then k=1..2 again with distance=euclidean into the
    same run: Figure 7(a) drew one curve falling from 47 (euclidean) to 0.27 (cosine). Each metric and options is
    its own series, labelled as the tables label it, and figure_7.csv says each point's options."""
    from diversity_cli.reporting.tables import figure7

    euclidean = "distance=euclidean"
    rows = [("hybrid", 1, g, "", v) for g, v in ((0, 0.30), (2, 0.27))]
    rows += [("hybrid", 2, 0, "", 0.32)]
    rows += [("hybrid", k, 0, euclidean, v) for k, v in ((1, 46.9), (2, 47.5))]
    rows += [("base", 1, 0, "", 0.5), ("base", 1, 0, euclidean, 50.0)]
    run = load_run(_ablate_with_options(tmp_path / "abl", rows))
    curves = ablate_curves([run])
    series: dict[tuple[str, str], list[float]] = {}
    for c in curves:
        series.setdefault((c["metric"], c["knob"]), []).append(c["value"])
    labelled = f"toy_features[{euclidean}]"
    assert series[("toy_features", "base_guidance")] == pytest.approx([0.30, 0.27])
    assert series[("toy_features", "k")] == pytest.approx([0.30, 0.32])
    assert series[(labelled, "k")] == pytest.approx([46.9, 47.5])
    assert series[(labelled, "baseline")] == pytest.approx([50.0])
    assert (labelled, "base_guidance") not in series  # one euclidean guidance: no sweep to draw
    assert all(c["options"] == (euclidean if c["metric"] == labelled else "") for c in curves)
    figure7([run], tmp_path / "figure_7.png")
    with (tmp_path / "figure_7.csv").open() as f:
        plotted = {(r["metric"], r["options"]) for r in csv.DictReader(f)}
    assert plotted == {("toy_features", ""), (labelled, euclidean)}


def test_sweeps_at_another_n_into_one_run_are_curves_of_their_own(tmp_path: Path):
    """ablate k=1..2 at n=4, then at n=3 into the same out= (each its own rows now): Figure 7 averaged a prompt's
    n=3 and n=4 values as if two prompts (n "3-4", a narrower interval); each n is its own curve and baselines."""
    from diversity_cli.reporting.tables import figure7

    rows = [("hybrid", "a shape", k, n, v) for n, values in ((4, (0.4, 0.5)), (3, (0.2, 0.3))) for k, v in
            zip((1, 2), values, strict=True)]  # fmt: skip
    rows += [("base", "a shape", 1, 4, 0.6), ("base", "a shape", 1, 3, 0.1)]
    run = load_run(_ablate_run(tmp_path / "abl", rows))
    curves = ablate_curves([run])
    series: dict[str, list[float]] = {}
    for c in curves:
        series.setdefault(f"{c['knob']} {c['sweep']} n={c['n']}", []).append(c["value"])
    assert series == {
        "k n=4 n=4": pytest.approx([0.4, 0.5]),
        "baseline n=4 n=4": pytest.approx([0.6]),
        "k n=3 n=3": pytest.approx([0.2, 0.3]),
        "baseline n=3 n=3": pytest.approx([0.1]),
    }
    assert figure7([run], tmp_path / "figure_7.png") is not None
    # one sweep whose prompts differ in n (a prompt listed twice) stays one curve, its n a range
    rows = [("hybrid", p, k, n, 0.5) for k in (1, 2) for p, n in (("a circle", 4), ("a red square", 8))]
    curves = ablate_curves([load_run(_ablate_run(tmp_path / "one", rows))])
    assert {(c["sweep"], c["n"]) for c in curves} == {("", "4-8")}


def _seeded_run(root: Path, points: list[tuple[str, str, int, str, float]]) -> Path:
    """ablate.csv of (method, prompt, k, seed, value) rows at n=4, one toy_features row each, as ablate writes them
    now: each prompt's first seed named."""
    rows = [
        {"model": "toy", "method": method, "k": k if method == "hybrid" else "",
         "base_guidance": 0 if method == "hybrid" else "", "base_steps": "", "prompt": prompt, "n": 4, "seed": seed,
         "metric": "toy_features", "value": value, "seconds_per_image": 0.1, "nfe": 4}
        for method, prompt, k, seed, value in points
    ]  # fmt: skip
    return _write_ablate(root, rows)


def test_sweeps_at_another_seed_into_one_run_are_curves_of_their_own(tmp_path: Path, cli):
    """ablate k=1..2 at seed=0, then at seed=100 (same n) into the same out= (each its own rows now): Figure 7
    averaged a prompt's values at the two seeds into one point, said to be over its one prompt; each seed is its own
    curve and baselines, named in figure_7.csv."""
    rows = [("hybrid", "a shape", k, s, v) for s, values in (("0", (0.4, 0.5)), ("100", (0.2, 0.3))) for k, v in
            zip((1, 2), values, strict=True)]  # fmt: skip
    rows += [("base", "a shape", 1, "0", 0.6), ("base", "a shape", 1, "100", 0.1)]
    root = _seeded_run(tmp_path / "abl", rows)
    curves = ablate_curves([load_run(root)])
    series: dict[str, list[float]] = {}
    for c in curves:
        series.setdefault(f"{c['knob']} {c['sweep']} seed={c.get('seed')}", []).append(c["value"])
    assert series == {
        "k seed=0 seed=0": pytest.approx([0.4, 0.5]),
        "baseline seed=0 seed=0": pytest.approx([0.6]),
        "k seed=100 seed=100": pytest.approx([0.2, 0.3]),
        "baseline seed=100 seed=100": pytest.approx([0.1]),
    }
    assert {c["prompts"] for c in curves} == {1}
    tables = tmp_path / "tables"
    tables.mkdir()
    code, _, err = cli("report", f"out={root}", "tables=none", "html=false", f"tables_dir={tables}")
    assert code == 0, err
    with (tables / "figure_7.csv").open() as f:
        plotted = {(r["knob"], r["seed"], r["value"]) for r in csv.DictReader(f) if r["knob"] == "k"}
    assert {(seed, round(float(value), 6)) for _, seed, value in plotted} == {
        ("0", 0.4),
        ("0", 0.5),
        ("100", 0.2),
        ("100", 0.3),
    }
    # one sweep over a table whose prompts have seeds of their own (one per prompt) stays one curve
    rows = [("hybrid", p, k, s, 0.5) for k in (1, 2) for p, s in (("a circle", "7"), ("a red square", "9"))]
    curves = ablate_curves([load_run(_seeded_run(tmp_path / "one", rows))])
    assert {(c["sweep"], c["seed"], c["prompts"]) for c in curves} == {("", "", 2)}


def test_the_plots_name_the_level_of_their_bars(tmp_path: Path, cli, monkeypatch):
    """ablate measure.diversity.ci=0.5: the tables said 50% CI, but the plots' bars were "CI of each value" and
    figure_7.csv had no level at all (README said 95%)."""
    import matplotlib.axes

    said: list[str] = []

    def recording(real):
        def record(ax, text, *args, **kwargs):
            said.append(text)
            return real(ax, text, *args, **kwargs)

        return record

    for method in ("set_title", "set_ylabel"):
        monkeypatch.setattr(matplotlib.axes.Axes, method, recording(getattr(matplotlib.axes.Axes, method)))
    levels: dict[str, str] = {}  # Figure 7's horizontal lines: label -> colour
    real_axhline = matplotlib.axes.Axes.axhline

    def axhline(ax, y=0, *args, **kwargs):
        levels[kwargs.get("label", "")] = kwargs.get("color", "")
        return real_axhline(ax, y, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "axhline", axhline)
    out = tmp_path / "ablate"
    args = ("ablate", "model=toy", "k=1..2", "n=3", "prompt=a shape", "measure.diversity.ci=0.5", f"out={out}")
    code, _, err = cli(*args)
    assert code == 0, err
    assert any("(bars: 50% CI of each value)" in text for text in said), said
    code, _, err = cli("report", f"out={out}", "html=false")
    assert code == 0, err
    assert any(text.endswith(", bars: 50% CI") for text in said), said
    base, distilled = (next(c for label, c in levels.items() if f"{m} alone" in label) for m in ("base", "distilled"))
    assert base != distilled, levels  # both were black
    with (out / "tables" / "figure_7.csv").open(newline="") as handle:
        levels = {row["ci"] for row in csv.DictReader(handle) if row["ci_low"]}
    assert levels == {"0.5"}


def test_a_sweeps_plot_names_the_knobs_its_points_hold(tmp_path: Path):
    """`ablate k=1..2 base_steps=5`: its plot read "toy_features vs k", as if the paper's one-step hand-over."""
    from diversity_cli.experiments.ablate import Point, Sweep, plot_figure

    points, baselines = [Point.of("hybrid", k, 0.0, 5) for k in (1, 2)], [Point.of("base"), Point.of("distilled")]
    values = [(point, {"a circle": (0.2 + 0.01 * i, None, None)}) for i, point in enumerate(points + baselines)]
    sweep = Sweep(model="toy", points=points, baselines=baselines, swept=["k"], n=4, seed=0)
    title = plot_figure(values, sweep, "toy_features", "k", "95% CI").axes[0].get_title()
    assert "toy_features vs k (base_guidance=0, base_steps=5)" in " ".join(title.split())
    swept = Sweep(model="toy", points=points, baselines=baselines, swept=["k", "base_steps"], n=4, seed=0)
    title = plot_figure(values, swept, "toy_features", "k", "95% CI").axes[0].get_title()
    assert "base_steps=" not in title  # varied (a curve each): not held


def test_each_point_carries_the_quality_measured_beside_its_diversity(tmp_path: Path):
    """ablate.csv holds toy_adherence at every point; Figure 7's points (and figure_7.csv) had diversity alone."""
    rows = [("hybrid", p, k, 4, 0.3) for k in (1, 2) for p in ("a circle", "a red square")]
    rows += [("base", p, 1, 4, 0.5) for p in ("a circle", "a red square")]
    run_rows = _ablate_run(tmp_path / "abl", rows)
    with (run_rows / "ablate.csv").open(newline="") as f:
        measured = list(csv.DictReader(f))
    adherence = {("hybrid", "1"): (1.0, 0.5), ("hybrid", "2"): (0.75, 0.75), ("base", ""): (0.25, 0.25)}
    for row in list(measured):
        share = adherence[(row["method"], row["k"])][row["prompt"] == "a red square"]
        measured.append({**row, "metric": "toy_adherence", "value": share})
    (run_rows / "ablate.csv").unlink()
    run_rows.rmdir()
    points = _by_point(ablate_curves([load_run(_write_ablate(tmp_path / "abl", measured))], ["toy_features"]))
    assert {(key, c["quality_metric"]) for key, c in points.items()} == {
        (("k", 1.0), "toy_adherence"),
        (("k", 2.0), "toy_adherence"),
        (("baseline", "base"), "toy_adherence"),
    }
    assert points[("k", 1.0)]["quality"] == pytest.approx(0.75) and points[("k", 2.0)]["quality"] == 0.75
    assert points[("baseline", "base")]["quality"] == pytest.approx(0.25)
    assert points[("k", 1.0)]["value"] == pytest.approx(0.3)  # diversity, not the quality
    # and the figure says it beside each curve and level, as the CSV does
    from diversity_cli.reporting.tables.figures import figure7_figure

    fig, _ = figure7_figure([load_run(tmp_path / "abl")], ["toy_features"])
    labels = fig.axes[0].get_legend_handles_labels()[1]
    (curve,) = [label for label in labels if "hybrid" in label]
    (base,) = [label for label in labels if "base alone" in label]
    assert curve.endswith("; toy_adherence 0.75") and base.endswith("; toy_adherence 0.25"), labels
