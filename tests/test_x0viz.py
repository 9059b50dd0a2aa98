"""x0viz (grids, commitment curve) and k=auto on tiny pairs."""

from __future__ import annotations

import csv
import json

import pytest

from diversity_cli.sampling.autok import k_from_commitment
from diversity_cli.sampling.commitment import committed_fraction


def test_committed_fraction_is_the_first_step_under_the_threshold():
    fractions = [0.25, 0.5, 0.75, 1.0]
    assert committed_fraction(fractions, [1.0, 0.6, 0.2, 0.0], 0.25) == 0.75
    assert committed_fraction(fractions, [1.0, 0.1, 0.2, 0.0], 0.25) == 0.5
    assert committed_fraction(fractions, [2.0, 1.9, 1.8, 1.7], 0.25) == 1.0


def test_the_summary_gives_the_first_steps_distance_which_the_relative_rule_cannot_credit():
    """A model at its final composition after one step (distance 0.01 of 1.0) still "commits" at its second step
    by the rule relative to its own first step: the first step's distance, comparable across methods, says it."""
    from diversity_cli.sampling.commitment import summarize

    records = [
        {"method": method, "step": step, "fraction": (step + 1) / 4, "timestep": 999 - 250 * step, "distance": d}
        for method, curve in (("decided", [0.01, 0.002, 0.001, 0.0]), ("late", [0.8, 0.6, 0.1, 0.0]))
        for step, d in enumerate(curve)
    ]
    by_method = {row["method"]: row for row in summarize(records, 0.25)}
    assert by_method["decided"]["committed_step"] == 1  # the relative rule: never step 0
    assert (by_method["decided"]["first_step_distance"], by_method["late"]["first_step_distance"]) == (0.01, 0.8)


@pytest.mark.parametrize(("committed", "k"), [(900, 1), (749, 1), (700, 2), (300, 3), (100, 3), (999, 1)])
def test_k_from_commitment_covers_the_steps_before_the_base_commits(committed, k):
    assert k_from_commitment([999, 749, 499, 249], committed) == k


def test_x0viz_writes_grids_and_a_curve(cli, tmp_path):
    code, stdout, err = cli("x0viz", "model=tiny_sd", "prompt=a red circle", "n=2", "metric=pixel", f"out={tmp_path}")
    assert code == 0, err
    with (tmp_path / "commitment_summary.csv").open() as f:
        summary = {r["method"]: r for r in csv.DictReader(f)}
    for method in ("base", "distilled", "hybrid_k1"):  # the headline: each method's commitment, as the CSV has it
        row = summary[method]
        said = (
            f"commits at t={row['committed_timestep']}, after step {int(row['committed_step']) + 1} of {row['steps']}"
        )
        assert any(line.count("│") >= 2 and method in line and said in line for line in stdout.splitlines()), stdout
        assert (row["model"], row["metric"], row["prompts"], row["n"]) == ("tiny_sd", "pixel", "1", "2")
        first = f"x̂0 {float(row['first_step_distance']):#.3g} from its final image after step 1"
        assert any(method in line and first in line for line in stdout.splitlines()), stdout
        over = f"[pixel, threshold {row['threshold']}, 1 prompt(s) x 2 seeds]"  # what the commitment is over
        assert over in stdout.replace("│\n│", ""), stdout
        assert len(list(tmp_path.glob(f"x0_tiny_sd_{method}_*.png"))) == 1
        assert len(list(tmp_path.glob(f"xt_tiny_sd_{method}_*.png"))) == 1
    with (tmp_path / "commitment.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["method", "prompt", "seed", "step", "timestep", "fraction", "distance"]
    steps = {"base": 8, "distilled": 4, "hybrid_k1": 4}
    for method, count in steps.items():
        mine = [r for r in rows if r["method"] == method]
        assert len(mine) == count * 2
        last = [r for r in mine if float(r["fraction"]) == 1.0]
        # The last step's x̂0 is the sample itself (LCM returns it; DDIM with set_alpha_to_one lands on it).
        assert all(float(r["distance"]) < 1e-6 for r in last)
        assert max(float(r["distance"]) for r in mine) > 0
    assert (tmp_path / "commitment.png").stat().st_size > 0
    code, _, err = cli("x0viz", "model=tiny_sd", "prompt=a red circle", "n=3", f"out={tmp_path}")
    assert code == 2 and "overwrite=true" in err
    # overwrite=true that fails when its metric or pair loads made nothing: the earlier run stays whole
    grids = sorted(p.name for p in tmp_path.glob("x*_tiny_sd_*.png"))
    for bad in ("metric=no_such_metric", "model.base.scheduler.class=NoSuchScheduler"):
        code, _, err = cli("x0viz", "model=tiny_sd", "prompt=a blue square", "n=2", "methods=base", "overwrite=true",
                           bad, f"out={tmp_path}")  # fmt: skip
        assert code == 2 and "NoSuch" in err.replace("no_such_metric", "NoSuch"), err
        assert sorted(p.name for p in tmp_path.glob("x*_tiny_sd_*.png")) == grids
        assert (tmp_path / "commitment.csv").is_file()
    # overwrite=true with fewer methods: the earlier run's other grids go (the report shows the folder's grids)
    (tmp_path / "notes.txt").write_text("mine")
    code, _, err = cli(
        "x0viz", "model=tiny_sd", "prompt=a blue square", "n=2", "methods=base", "overwrite=true", f"out={tmp_path}"
    )
    assert code == 0, err
    assert sorted(p.name.split("_")[3] for p in tmp_path.glob("x*_tiny_sd_*.png")) == ["base", "base"]
    assert (tmp_path / "notes.txt").read_text() == "mine"
    code, _, err = cli(  # and again: the files the last overwrite wrote are still the toolkit's to replace
        "x0viz", "model=tiny_sd", "prompt=a blue square", "n=2", "methods=base", "overwrite=true", f"out={tmp_path}"
    )
    assert code == 0, err


def _files(folder):
    """Every file under `folder` with its bytes and mtime: what a command that writes nothing leaves as it was."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()
    }


def _no_loading(monkeypatch):
    """A rerun with nothing to do loads no model and no metric: either one here fails the command."""
    from diversity_cli.metrics import embedders
    from diversity_cli.models import loading

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(loading, "load_pair", refuse)
    monkeypatch.setattr(embedders, "get_embedder", refuse)


X0VIZ_RUN = ("x0viz", "model=tiny_sd", "prompt=a red circle", "n=2", "methods=[base,hybrid]", "metric=pixel")


def test_x0viz_rerun_with_the_same_settings_has_nothing_to_do(cli, tmp_path, monkeypatch):
    out = tmp_path / "run"
    code, _, err = cli(*X0VIZ_RUN, f"out={out}")
    assert code == 0, err
    before = _files(out)
    _no_loading(monkeypatch)
    # the same command, and the same settings spelt otherwise: a default said aloud, keys that change no file
    for extra in ((), ("seed=0", "k=1", "device=cpu", "max_images=50")):
        code, stdout, err = cli(*X0VIZ_RUN, *extra, f"out={out}")
        assert code == 0, err
        assert f"nothing to do: {out} holds this x0viz run" in " ".join(err.split()), err
        assert "commits at t=" in stdout and "hybrid_k1" in stdout, stdout  # the usual summary, from its files
        assert _files(out) == before


def test_x0viz_rerun_with_other_settings_is_refused_naming_them(cli, tmp_path, monkeypatch):
    out = tmp_path / "run"
    code, _, err = cli(*X0VIZ_RUN, f"out={out}")
    assert code == 0, err
    before = _files(out)
    _no_loading(monkeypatch)
    refused = {
        "n=3": "n=2 then, 3 now",
        "n=3 threshold=0.5": "n=2 then, 3 now",  # with a new threshold too: the images differ
        "k=2": "k=1 then, 2 now",
        "methods=[hybrid,base]": "methods=[base,hybrid] then, [hybrid,base] now",
        "model.base.guidance=2": "model.base.guidance=5.0 then, 2 now",
        "cell=64": "cell=96 then, 64 now",
    }
    for setting, said in refused.items():
        code, _, err = cli(*X0VIZ_RUN, *setting.split(), f"out={out}")
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1, err
        assert "different settings" in err and said in err and "overwrite=true" in err, err
        assert _files(out) == before
    # the same settings, a grid gone: not "nothing to do", and the rest stays
    grid = next(out.glob("x0_tiny_sd_hybrid_k1_*.png"))
    grid.unlink()
    before.pop(grid.name)
    code, _, err = cli(*X0VIZ_RUN, f"out={out}")
    assert code == 2 and grid.name in "".join(err.split()) and "overwrite=true" in err, err
    assert _files(out) == before


def test_x0viz_rerun_at_another_threshold_summarizes_its_curves_again_with_no_model(cli, tmp_path, monkeypatch):
    """threshold= only moves where the curves commit; a finished run was refused ("different settings") and
    overwrite=true traced every image again to summarize them at the new threshold."""
    out = tmp_path / "run"
    code, _, err = cli(*X0VIZ_RUN, f"out={out}")
    assert code == 0, err
    before = _files(out)
    _no_loading(monkeypatch)
    code, stdout, err = cli(*X0VIZ_RUN, "threshold=0.9", f"out={out}")
    assert code == 0 and "summarized again (no image traced)" in err and "threshold 0.9" in stdout, err
    after = _files(out)
    changed = {name for name in after if after[name] != before.get(name) and not name.startswith(("runs/", "run.json"))}
    assert changed == {"commitment_summary.csv", "commitment.png"}, changed  # grids and curves as they were
    with (out / "commitment_summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {row["threshold"] for row in rows} == {"0.9"}
    code, _, err = cli(*X0VIZ_RUN, "threshold=0.9", f"out={out}")  # now the run's own threshold
    assert code == 0 and "nothing to do" in err, err


def test_x0viz_rerun_is_refused_when_the_weights_changed(cli, tmp_path, monkeypatch):
    import shutil

    from diversity_cli.core.resources import asset

    network = tmp_path / "unet"
    shutil.copytree(asset("toy/base/unet"), network)
    args = ("x0viz", "model=toy", "prompt=a shape", "n=1", "methods=[base]", "metric=pixel", "columns=2",
            f"model.base.network.path={network}", f"out={tmp_path / 'run'}")  # fmt: skip
    code, _, err = cli(*args)
    assert code == 0, err
    before = _files(tmp_path / "run")
    _no_loading(monkeypatch)
    code, _, err = cli(*args)  # the weights hashed from their files, as the run recorded them
    assert code == 0 and "nothing to do" in err, err
    with (network / "config.json").open("a") as f:  # the same path, other bytes: a network retrained in place
        f.write("\n")
    code, _, err = cli(*args)
    assert code == 2 and "model.base weights" in err and "overwrite=true" in err, err
    assert _files(tmp_path / "run") == before


def test_x0viz_rerun_compares_the_prompt_rows_not_the_files_name(cli, tmp_path, monkeypatch):
    table = tmp_path / "prompts.csv"
    table.write_text("prompt,seed\na red circle,40\n")
    out = tmp_path / "run"
    args = ("x0viz", "model=tiny_sd", "n=2", "methods=[base]", "metric=pixel", f"out={out}")
    code, _, err = cli(*args, f"prompts={table}")
    assert code == 0, err
    before = _files(out)
    _no_loading(monkeypatch)
    copy = tmp_path / "same.csv"
    copy.write_text(table.read_text())
    code, _, err = cli(*args, f"prompts={copy}")  # another name, the same rows: the same images
    assert code == 0 and "nothing to do" in err, err
    table.write_text("prompt,seed\na red circle,41\n")  # the same name, another seed: other images
    code, _, err = cli(*args, f"prompts={table}")
    assert code == 2 and "prompts or seeds" in err and "overwrite=true" in err, err
    assert _files(out) == before


def test_x0viz_run_stopped_before_its_curve_is_traced_again(cli, tmp_path):
    out = tmp_path / "run"
    code, _, err = cli(*X0VIZ_RUN, f"out={out}")
    assert code == 0, err
    (out / "commitment.csv").unlink()  # as a run stopped after its grids, before the curve
    code, _, err = cli(*X0VIZ_RUN, f"out={out}")
    assert code == 0 and "nothing to do" not in err, err
    assert (out / "commitment.csv").is_file()


def test_x0viz_takes_a_prompt_tables_seeds(cli, tmp_path):
    """x0viz drew every prompt from seed= and wrote those seeds, where generate takes a CSV row's own seed: the
    grids of coco_30k.csv's captions were not the images generate makes of them."""
    table = tmp_path / "prompts.csv"
    table.write_text("prompt,seed\na red circle,40\na blue square,\n")
    out = tmp_path / "run"
    code, _, err = cli(
        "x0viz", "model=tiny_sd", f"prompts={table}", "seed=7", "n=2", "methods=base", "metric=pixel", f"out={out}"
    )
    assert code == 0, err
    with (out / "commitment.csv").open() as f:
        seeds = {(r["prompt"], r["seed"]) for r in csv.DictReader(f)}
    assert seeds == {("a red circle", "40"), ("a red circle", "41"), ("a blue square", "7"), ("a blue square", "8")}


def test_a_prompt_on_two_rows_at_other_seeds_gets_a_grid_per_row(cli, tmp_path):
    """Both rows were traced, but their grids shared one file name: the second row's overwrote the first's."""
    table = tmp_path / "prompts.csv"
    table.write_text("prompt,seed\na red circle,10\na red circle,20\na blue square,\n")
    out = tmp_path / "run"
    code, _, err = cli(
        "x0viz", "model=tiny_sd", f"prompts={table}", "n=1", "methods=base", "metric=pixel", f"out={out}"
    )  # fmt: skip
    assert code == 0, err
    grids = sorted(path.name for path in out.glob("x0_*.png"))
    assert len(grids) == 3 and [name for name in grids if name.endswith(("_seed10.png", "_seed20.png"))], grids
    first, second = [(out / name).read_bytes() for name in grids if "_seed" in name]
    assert first != second  # each row's own seeds
    assert not [name for name in grids if "square" in name and "_seed" in name]  # one row: named as before


def test_x0viz_refuses_a_base_steps_with_no_schedule_before_writing(cli, tmp_path):
    # The toy base's DDIM has no 7-step schedule from 999 to the hand-over at 749: only the loaded scheduler knows,
    # so the refusal comes after loading, yet before the base and distilled grids of the run.
    out = tmp_path / "run"
    code, stdout, err = cli("x0viz", "prompt=a shape", "n=2", "base_steps=7", f"out={out}")
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "base_steps=7" in lines[0], err
    assert not out.exists() or not any(out.iterdir()), sorted(p.name for p in out.iterdir())


def test_commitment_plot_names_its_metric(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from diversity_cli.experiments.x0viz import plot_curves

    figures = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: (figures.append(fig), close(fig)))
    records = [{"method": "base", "fraction": f, "distance": d} for f, d in ((0.5, 2.0), (1.0, 0.0))]
    plot_curves(records, tmp_path / "commitment.png", 0.25, "toy_features")
    assert "[toy_features]" in figures[0].axes[0].get_ylabel()


def test_generate_k_auto_measures_once_and_caches(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("DIVERSITY_CLI_CACHE", str(tmp_path / "cache"))
    args = (
        "generate",
        "model=tiny_sd",
        "method=hybrid",
        "k=auto",
        "prompt=a red circle",
        "n=1",
        "auto_k.prompts=[a circle]",
        "auto_k.n=2",
    )
    code, _, err = cli(*args, f"out={tmp_path / 'run'}")
    assert code == 0, err
    assert "k=auto -> k=" in err and "from the cache" not in err
    cached = list((tmp_path / "cache" / "commitment").glob("tiny_sd-*.json"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    with (tmp_path / "run" / "samples.csv").open() as f:
        k = int(next(csv.DictReader(f))["k"])
    assert 1 <= k <= 3
    code, _, err = cli(*args, f"out={tmp_path / 'run2'}")
    assert code == 0 and cached[0].stat().st_mtime_ns == stamp
    assert f"from the cache {cached[0]}" in " ".join(err.split())  # said, not only in the record
    code, _, err = cli(*args, f"out={tmp_path / 'run'}")  # all made: nothing to do, yet its k is recorded
    assert code == 0 and "nothing to do" in err
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "run" / "runs").glob("*.json"))]
    assert len(records) == 2 and records[-1]["auto_k"]["k"] == k


def test_k_auto_says_where_the_rule_was_kept_within_the_schedule():
    """k=auto said k=3 for a base committing below all 4 student steps, as if the rule gave 3."""
    from omegaconf import OmegaConf

    from diversity_cli.experiments.generation import auto_k_line

    cfg = OmegaConf.create({"k": 3, "auto_k": {"prompts": ["a circle"], "n": 2}})
    record = {"committed_timestep": 39, "committed_fraction": 1.0, "metric": "toy_features", "threshold": 1e-9}
    line = auto_k_line(cfg, {**record, "distilled_steps_above": 4})
    kept = "; 4 of the student's steps lie above it, kept within 1..n-1 (each model runs at least one step)"
    assert line.endswith(kept)
    assert "kept" not in auto_k_line(cfg, {**record, "distilled_steps_above": 3})


def test_a_prompt_or_method_listed_twice_is_traced_once(cli, tmp_path):
    """commitment.csv held a duplicated prompt's (or method's) rows twice: the mean curve weighed it double and the
    summary counted its prompts twice."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\na red circle\n")
    args = ("x0viz", "model=tiny_sd", f"prompts={prompts}", "methods=[distilled,distilled]", "n=2", "metric=pixel")
    code, _, err = cli(*args, f"out={tmp_path / 'x0'}")
    assert code == 0, err
    with (tmp_path / "x0" / "commitment.csv").open() as f:
        rows = [tuple(row.values()) for row in csv.DictReader(f)]
    assert len(rows) == len(set(rows)) == 4 * 2  # 4 steps x 2 seeds, once
    with (tmp_path / "x0" / "commitment_summary.csv").open() as f:
        assert [row["prompts"] for row in csv.DictReader(f)] == ["1"]


def test_a_run_stopped_before_its_curve_is_not_finished_with_other_prompts(cli, tmp_path):
    """Its grids stayed beside a rerun's at other prompts, which its curve never traced."""
    out = tmp_path / "x0"
    args = ("x0viz", "model=tiny_sd", "methods=[distilled]", "n=2", "metric=pixel", f"out={out}")
    assert cli(*args, "prompt=a red circle")[0] == 0
    for name in ("commitment.csv", "commitment_summary.csv"):  # as a run stopped before it wrote its curve
        (out / name).unlink()
    code, _, err = cli(*args, "prompt=a blue square")
    assert code == 2 and "stopped before its curve, with other prompts or methods" in err, err
    assert not list(out.glob("x0_*blue*"))
    assert cli(*args, "prompt=a red circle")[0] == 0  # its own settings finish it
    assert cli(*args, "prompt=a blue square", "overwrite=true")[0] == 0
    assert not list(out.glob("x0_*red*")) and list(out.glob("x0_*blue*"))


def test_a_grids_rows_are_named_by_their_seeds(tmp_path):
    """Rows are seeds (`seed + j`, or a table row's own): each row says which, at its left, beside its tiles."""
    from types import SimpleNamespace

    import numpy as np
    import torch
    from PIL import Image

    from diversity_cli.experiments.x0viz import save_grid

    trace = SimpleNamespace(roles=["base", "distilled"], timesteps=[999, 499])
    images = [torch.full((2, 3, 8, 8), 0.5) for _ in range(2)]
    cell, header = 32, 14
    grids = {}
    for seeds in ([7, 8], [7, 1234]):
        path = tmp_path / f"grid_{seeds[1]}.png"
        save_grid(images, trace, path, columns=2, cell=cell, label="x0", seeds=seeds)
        grids[seeds[1]] = np.asarray(Image.open(path).convert("L"))
    short, long = grids[8], grids[1234]
    gutter = long.shape[1] - 2 * cell
    assert gutter > 0 and (long[header : header + cell, :gutter] < 128).any()  # row 1 is named
    tiles = long[header:, gutter:]
    assert (tiles == 128).all()  # the tiles whole, beside the names
    rows_differ = np.nonzero((short[:, : short.shape[1] - 2 * cell] != long[:, : short.shape[1] - 2 * cell]).any(1))[0]
    assert rows_differ.min() >= header + cell  # only the second row's name differs: 8 then, 1234 now


def test_figure_5_names_each_curves_pair_and_marks_the_papers_reading(cli, tmp_path, monkeypatch):
    """Its curves were named by method alone (two runs: by folder), never by pair; nothing showed where the paper
    finds the SDXL base commits (~30% of its steps)."""
    from diversity_cli.reporting.tables import figures, load_run

    out = tmp_path / "x0"
    code, _, err = cli("x0viz", "model=tiny_sd", "prompt=a red circle", "n=2", "metric=pixel", f"out={out}")
    assert code == 0, err
    drawn = {}
    monkeypatch.setattr(figures, "_save_figure", lambda fig, path, points: drawn.setdefault("fig", fig) and path)
    figures.figure5([load_run(out)], tmp_path / "figure_5.png")
    labels = [text.get_text() for text in drawn["fig"].axes[0].get_legend().get_texts()]
    assert labels == [
        "tiny_sd base (n=2)",
        "tiny_sd distilled (n=2)",
        "tiny_sd hybrid_k1 (n=2)",
        "paper: SDXL base ~30%",
    ], labels


def test_the_summary_gives_each_first_step_distance_to_three_significant_digits(tmp_path):
    """0.370121 printed as 0.37 beside 0.416; three decimals would print 0.000412 as 0.000, read as identical."""
    from diversity_cli.commands.summary import Summary, _x0viz

    rows = "method,steps,committed_fraction,committed_step,committed_timestep,first_step_distance\n"
    rows += "hybrid_k1,4,0.5,1,749,0.370121\ndistilled,4,0.5,1,749,0.000412\n"
    (tmp_path / "commitment_summary.csv").write_text(rows)
    summary = Summary("x0viz", 1.0)
    _x0viz(summary, tmp_path)
    lines = dict(summary.headline)
    assert "x̂0 0.370 from its final image" in lines["hybrid_k1"] and "x̂0 0.000412 from" in lines["distilled"]
