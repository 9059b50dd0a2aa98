"""`ablate`: sweep syntax; a sweep end to end on tiny_sd (rows, values, plots, an idempotent re-run); merging the
per-point files; bad input; and the SLURM path through hydra-submitit-launcher's `submitit_local` launcher (one
Python process per point, as SLURM would run them)."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from diversity_cli.cli import run as cli_run
from diversity_cli.core.config import compose
from diversity_cli.core.errors import UserError
from diversity_cli.experiments.ablate import COLUMNS, Point, Sweep, plan_sweep, plot, write_rows
from diversity_cli.experiments.sweep import expand, grid, split_overrides
from diversity_cli.metrics.embedders import get_embedder, load_images

PROMPTS = ["a red circle", "a blue square"]
# the base alone at 1 step: the baselines cost little (hybrid's base runs on the distilled schedule regardless)
SWEEP = ["model=tiny_sd", "model.base.steps=1", "n=2", "metric=pixel"]


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _no_model(monkeypatch) -> None:
    def refuse(*_, **__):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("diversity_cli.models.loading.load_pair", refuse)


def _sweep(*overrides: str) -> Sweep:
    return plan_sweep(compose("ablate", split_overrides(["prompt=a red circle", *overrides]).compose))


# ------------------------------------------------------------------------------------------------ parsing


def test_ranges_lists_and_hydra_functions():
    assert expand("k", "1..4") == [1, 2, 3, 4]
    assert expand("k", "2..2") == [2]
    assert expand("base_guidance", "0,2,5,7.5") == [0.0, 2.0, 5.0, 7.5]
    assert expand("k", "range(1,4)") == [1, 2, 3]  # Hydra's range: end excluded
    assert expand("base_guidance", "range(0,10,2.5)") == [0.0, 2.5, 5.0, 7.5]
    assert expand("method", "choice(hybrid,replace_final)") == ["hybrid", "replace_final"]
    assert expand("base_steps", "null,1,2,5,10") == [None, 1, 2, 5, 10]
    assert expand("k", [2, 1, 2]) == [2, 1]  # the order written, each value once
    assert expand("base_guidance", 5) == [5.0]
    # the list as a command line types it (README: `[a,b]`) was "k=[1,2] must be an integer"
    assert expand("k", "[1,2]") == [1, 2] and expand("method", "[hybrid, replace_final]") == ["hybrid", "replace_final"]
    assert split_overrides(["base_guidance=[0,5]"]).compose == ["base_guidance=[0.0,5.0]"]


def test_sweeps_become_lists_for_compose_and_the_rest_passes_through():
    args = split_overrides(
        ["model=tiny_sdxl", "k=1..3", "base_guidance=0,5", "prompt=a dog", "n=2", "metric=pixel,lpips"]
        + ["method=replace_final", "hydra.launcher.partition=gpu", "hydra/launcher=slurm", "measure.fid.reference=toy"]
    )
    assert args.compose == [
        "model=tiny_sdxl",
        "k=[1,2,3]",
        "base_guidance=[0.0,5.0]",
        "prompt=a dog",
        "n=2",
        "metric=[pixel,lpips]",
        "method=replace_final",
        "measure.fid.reference=toy",
    ]
    assert args.hydra == ["hydra.launcher.partition=gpu", "hydra/launcher=slurm"]
    cfg = compose("ablate", args.compose)
    assert (cfg.model.name, list(cfg.k), list(cfg.base_guidance), cfg.method) == (
        "tiny_sdxl",
        [1, 2, 3],
        [0.0, 5.0],
        "replace_final",
    )
    assert (cfg.n, list(cfg.metric), cfg.measure.fid.reference) == (2, ["pixel", "lpips"], "toy")


def test_grids_dedupe_and_baselines():
    assert grid({"base_guidance": [0.0, 5.0], "k": [1, 2]}) == [
        {"k": 1, "base_guidance": 0.0},
        {"k": 1, "base_guidance": 5.0},
        {"k": 2, "base_guidance": 0.0},
        {"k": 2, "base_guidance": 5.0},
    ]
    sweep = _sweep("k=1..4", "base_guidance=0,5")
    assert [p.tag for p in sweep.points[:3]] == ["hybrid_k1", "hybrid_k1_g5", "hybrid_k2"]
    assert len(sweep.points) == 8 and sweep.swept == ["k", "base_guidance"]
    assert [p.tag for p in sweep.baselines] == ["base", "distilled"]
    # skip_first has no k: three values of k are one point, and nothing is swept
    sweep = _sweep("method=skip_first", "k=1..3")
    assert [p.tag for p in sweep.all] == ["skip_first", "base", "distilled"] and sweep.swept == []
    sweep = _sweep("method=hybrid,replace_final", "k=1..2", "base_steps=2", "baselines=false")
    assert [p.tag for p in sweep.all] == [
        "hybrid_k1_bs2",
        "hybrid_k2_bs2",
        "replace_final_k1_bs2",
        "replace_final_k2_bs2",
    ]
    assert sweep.swept == ["method", "k"]
    # a baseline the sweep already holds is not added twice
    assert [p.tag for p in _sweep("method=distilled,hybrid").all] == ["distilled", "hybrid_k1", "base"]


# ------------------------------------------------------------------------------------------ a whole sweep


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    root = tmp_path_factory.mktemp("ablate")
    prompts = root / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    assert cli_run(_args(root / "out", prompts, "k=1..2")) == 0
    return root / "out", prompts


def _args(out: Path, prompts: Path, *extra: str) -> list[str]:
    return ["ablate", *SWEEP, f"prompts={prompts}", f"out={out}", *extra]


def test_sweep_rows_hold_each_point_prompt_and_metric(swept):
    out, _ = swept
    with (out / "ablate.csv").open(newline="") as f:
        assert next(csv.reader(f)) == COLUMNS
    rows = _read(out / "ablate.csv")
    points = [("hybrid", "1", "0"), ("hybrid", "2", "0"), ("base", "", ""), ("distilled", "", "")]
    assert sorted((r["method"], r["k"], r["base_guidance"], r["prompt"]) for r in rows) == sorted(
        (*p[:3], prompt) for p in points for prompt in PROMPTS
    )
    for row in rows:
        assert (row["model"], row["n"], row["metric"], row["base_steps"]) == ("tiny_sd", "2", "pixel", "")
        samples = [s for s in _read(out / row["run"] / "samples.csv") if s["prompt"] == row["prompt"]]
        assert len(samples) == 2 and {s["nfe"] for s in samples} == {row["nfe"]}
        assert row["seed"] == str(min(int(s["seed"]) for s in samples))  # which images: seed .. seed+n-1
        # n=2: the mean pairwise pixel distance is the one distance between the two images
        images = load_images([out / row["run"] / s["path"] for s in samples])
        embedding = get_embedder("pixel", "cpu")(images)
        assert float(row["value"]) == pytest.approx(float(torch.dist(embedding[0], embedding[1])), rel=1e-4)
        seconds = [float(s["seconds"]) for s in _read(out / row["run"] / "samples.csv")]  # the point's images
        assert float(row["seconds_per_image"]) == pytest.approx(sum(seconds) / len(seconds), rel=1e-3)


def test_sweep_draws_one_plot_per_swept_knob(swept):
    out, _ = swept
    (drawn,) = (out / "plots").iterdir()
    assert drawn.name.startswith("tiny_sd_pixel_vs_k_")  # + the sweep's id: another sweep in out keeps its own
    with Image.open(drawn) as image:
        assert image.format == "PNG" and min(image.size) > 100


def test_rerun_adds_no_rows_and_regenerates_nothing(swept, monkeypatch):
    out, prompts = swept
    files = [*out.glob("points/**/*.png"), *out.glob("points/*/*/point.csv"), out / "ablate.csv"]
    before = {path: path.stat().st_mtime_ns for path in files}
    assert len([path for path in files if path.suffix == ".png"]) == 4 * len(PROMPTS) * 2  # points x prompts x n
    rows = _read(out / "ablate.csv")
    _no_model(monkeypatch)
    assert cli_run(_args(out, prompts, "k=1..2")) == 0
    assert {path: path.stat().st_mtime_ns for path in before} == before
    assert _read(out / "ablate.csv") == rows


def test_rows_are_replaced_in_place_and_new_ones_appended(tmp_path):
    def row(k: int, prompt: str, value: str) -> dict[str, str]:
        return {"model": "m", "method": "hybrid", "k": str(k), "prompt": prompt, "metric": "pixel", "value": value}

    path = tmp_path / "ablate.csv"
    write_rows(path, [row(1, "a", "0.1"), row(2, "a", "0.2")])
    write_rows(path, [row(3, "a", "0.3"), row(1, "a", "0.15")])
    assert [(r["k"], r["value"]) for r in _read(path)] == [("1", "0.15"), ("2", "0.2"), ("3", "0.3")]
    stamp = path.stat().st_mtime_ns
    write_rows(path, [row(2, "a", "0.2")])  # nothing new: the file is not touched
    assert path.stat().st_mtime_ns == stamp and len(_read(path)) == 3


def test_merge_collects_the_point_files(swept, tmp_path, monkeypatch):
    out = tmp_path / "copy"
    shutil.copytree(swept[0], out)
    expected = _read(out / "ablate.csv")
    (out / "ablate.csv").unlink()
    shutil.rmtree(out / "plots")
    _no_model(monkeypatch)
    monkeypatch.setattr(
        "diversity_cli.experiments.diversity.measure_diversity", lambda cfg: pytest.fail("merge measured again")
    )
    args = _args(out, swept[1], "k=1..2", "merge=true")
    assert cli_run(args) == 0
    assert _read(out / "ablate.csv") == expected
    assert len(list((out / "plots").glob("tiny_sd_pixel_vs_k_*.png"))) == 1
    # a point without results (its job died): the others are merged, and the command fails naming the missing one
    (out / "points/tiny_sd/hybrid_k2/point.json").unlink()
    (out / "ablate.csv").unlink()
    assert cli_run(args) == 2
    runs = {row["run"] for row in _read(out / "ablate.csv")}
    assert runs == {f"points/tiny_sd/{tag}" for tag in ("hybrid_k1", "base", "distilled")}


def test_plots_of_a_grid_and_of_methods(tmp_path):
    points = [Point.of("hybrid", k, g) for k in (1, 2, 3) for g in (0.0, 5.0)]
    baselines = [Point("base"), Point("distilled")]
    results = [
        (
            p,
            [
                {"prompt": q, "metric": "pixel", "value": str(0.1 * (p.k or 4) + 0.01 * i)}
                for i, q in enumerate(PROMPTS)
            ],
        )
        for p in points + baselines
    ]
    folder = tmp_path / "plots"  # a folder of the run directory tmp_path
    paths = plot(results, Sweep("tiny_sd", points, baselines, ["k", "base_guidance"]), folder)
    assert [p.name.rsplit("_", 1)[0] for p in paths] == ["tiny_sd_pixel_vs_k", "tiny_sd_pixel_vs_base_guidance"]
    # another sweep of k into the same folder (other points) draws its own file, never over this one
    other = [Point.of("replace_final", k, 0.0) for k in (1, 2)]
    again = plot([(p, results[0][1]) for p in other], Sweep("tiny_sd", other, [], ["k"]), folder)
    assert again[0].name.startswith("tiny_sd_pixel_vs_k_") and again[0] != paths[0] and paths[0].is_file()
    methods = [Point("skip_first"), *baselines]
    paths = plot([(p, results[0][1]) for p in methods], Sweep("tiny_sd", methods[:1], baselines, []), folder)
    assert [p.name.rsplit("_", 1)[0] for p in paths] == ["tiny_sd_pixel_by_method"]
    with Image.open(paths[0]) as image:
        assert image.format == "PNG"


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "args, message",
    [
        (["k=4..1"], "k=4..1 is an empty range"),
        (["kk=1..3"], "cannot sweep 'kk'"),
        (["n=2,4"], "cannot sweep 'n'"),
        (["base_guidance=0,5", "k=0..9"], "k=5 is out of range for tiny_sd"),
        (["method=replace_final", "k=1,2,7"], "k=7 is out of range"),
        (["method=hybrid,bogus"], "unknown method 'bogus'"),
        (["k=auto"], "ablate sweeps explicit k"),
        (["base_guidance=a,b"], "base_guidance=a must be a number"),
        (["base_steps=0..2"], "base_steps=0 gives the base model no step"),
        (["launcher=nowhere"], "unknown launcher 'nowhere'"),
        (["launcher=slurm"], "sbatch and srun are not on this machine"),
        (["n=1"], "n=1 is out of range: n is an integer >= 2"),
        (["base_guidance=-1"], "base_guidance=-1 is out of range: base_guidance is a number >= 0"),
        (["k=1,-2"], "k=-2 is out of range: k is an integer >= 0"),
        (["metric=pixle"], "unknown metric 'pixle'; did you mean pixel? choose from: dreamsim,"),
        (["base_guidence=0,5"], "cannot sweep 'base_guidence' (base_guidence=0,5); did you mean base_guidance?"),
        (["launcher=slrum"], "unknown launcher 'slrum'; did you mean slurm? choose one of: local,"),
        (["measure.diversity.metric=lpips"], "measure.diversity.metric is set by ablate for every point; use metric="),
        (["measure.diversity.reference=base"], "measure.diversity.reference=base is not a folder"),
        (["measure.fid.images=."], "measure.fid.images is set by ablate for every point; leave it out"),
        (["measure.diversity.shard=1/2"], "measure.diversity.shard is set by ablate for every point"),
        (["shards=2", "devices=cpu:1"], "shards=2: ablate runs every point whole, so it takes no shards="),
        (["shard=0/2"], "shard=0/2: ablate runs every point whole"),
        (["+launcher_params.partition=a100"], "launcher_params={partition: a100}: ablate runs every point whole"),
        (
            ["launcher=submitit_local", "hydra.launcher.timeout_min=abc"],
            "error: launcher submitit_local: Value 'abc' of type 'str' could not be converted to Integer",
        ),
        (
            ["launcher=submitit_slurm", "+hydra.launcher.partitoin=a100"],
            "error: launcher submitit_slurm: no setting 'partitoin' in SlurmQueueConf; did you mean partition?",
        ),
        (
            ["launcher=slurm", "hydra.launcher.timeout_min=5,10"],
            "error: hydra.launcher.timeout_min=5,10: a hydra setting takes one value here (ablate sweeps its knobs)",
        ),
        (  # Hydra replaces no dict key by key without ++: refused inside the multirun, after its folders were made
            ["launcher=slurm", "hydra.launcher.additional_parameters={mail_type:ALL}"],
            "error: launcher slurm: Could not override 'hydra.launcher.additional_parameters'.",
        ),
    ],
)
def test_bad_input_is_one_line_before_any_model_loads(cli, tmp_path, monkeypatch, args, message):
    _no_model(monkeypatch)
    monkeypatch.setattr(
        "diversity_cli.experiments.launch.shutil.which", lambda name: None
    )  # as on a machine without SLURM
    code, _, err = cli("ablate", "model=tiny_sd", "prompt=a red circle", f"out={tmp_path}", *args)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "points").exists()


@pytest.mark.parametrize(
    "overrides",
    [
        ["+hydra.launcher.additional_parameters.mail_type=ALL"],  # a nested one: refused as a flat key once
        ["++hydra.launcher.additional_parameters={mail_type:ALL}", "hydra.launcher.partition=a100"],
        ["hydra.launcher.timeout_min=60", "hydra.launcher.gres=gpu:1"],
    ],
)
def test_launcher_settings_hydra_takes_pass_the_check(overrides):
    from diversity_cli.commands.ablate import compose_config
    from diversity_cli.experiments.ablate import check_launcher_overrides

    check_launcher_overrides(compose_config(["model=tiny_sd", "launcher=slurm", *overrides]))


def test_the_plugins_own_slurm_launcher_passes_the_preflight(tmp_path):
    """`launcher=submitit_slurm`, which ablate offers, was an "unknown launcher" to the preflight of a new out=."""
    from diversity_cli.commands.ablate import compose_config
    from diversity_cli.commands.checks import gpus_present

    gpus_present(compose_config(["model=tiny_sd", "launcher=submitit_slurm", f"out={tmp_path / 'new'}"]))


def test_a_point_the_pair_cannot_do_is_reported_and_the_others_run(cli, tmp_path):
    # tiny_sd's base (DDIM) can land on the hand-over timestep 749 in 2 of its own steps, not in 4
    args = [*SWEEP, "base_steps=2,4", "prompt=a red circle", f"out={tmp_path}", "baselines=false"]
    code, _, err = cli("ablate", *args)
    assert code == 2
    assert "1 of 2 points have no results (hybrid_k1_bs4); hybrid_k1_bs4: DDIMScheduler has no schedule" in err
    assert [r["base_steps"] for r in _read(tmp_path / "ablate.csv")] == ["2"]
    assert (tmp_path / "points/tiny_sd/hybrid_k1_bs4/error.txt").is_file()


def test_a_sweep_of_base_guidances_at_most_1_says_they_are_one_setting(cli, tmp_path):
    """0, 0.5 and 1 all run the base's conditional branch alone: three identical points drew a flat curve that
    read as a finding about guidance."""
    args = [*SWEEP, "base_guidance=0,0.5,1,2", "prompt=a red circle", f"out={tmp_path}", "baselines=false"]
    code, _, err = cli("ablate", *args)
    said = "note: base_guidance=0, 0.5, 1 are all at most 1: the base runs its conditional branch alone at each"
    shown = " ".join(err.split())
    assert code == 0 and said in shown and shown.count(said) == 1, err  # once: it was said before and after the work
    values = {r["base_guidance"]: r["value"] for r in _read(tmp_path / "ablate.csv")}
    assert values["0"] == values["0.5"] == values["1"] != values["2"], values  # what the note says
    code, _, err = cli("ablate", *SWEEP, "base_guidance=0,2", "prompt=a red circle", f"out={tmp_path / 'b'}")
    assert code == 0 and "at most 1" not in err, err
    # a base that embeds its guidance (FLUX.1-dev's, the tiny FLUX's) reads 0.5 and 1 apart: no such note; SD3's
    # flow sampler applies CFG above 1 only, as diffusers does: the note
    flow = ["n=2", "metric=pixel", "prompt=a", "baselines=false", "base_guidance=0.5,1"]
    code, _, err = cli("ablate", "model=tiny_flux", *flow, f"out={tmp_path / 'flux'}")
    assert code == 0 and "at most 1" not in err, err
    code, _, err = cli("ablate", "model=tiny_sd3", *flow, f"out={tmp_path / 'sd3'}")
    assert code == 0 and "at most 1" in err, err


def test_a_job_refuses_a_point_outside_its_sweep():
    from omegaconf import OmegaConf

    from diversity_cli.experiments import ablate_job

    cfg = OmegaConf.create({"points": {"hybrid_k1": Point("hybrid", 1, 0.0).knobs()}, "point": "hybrid_k9"})
    with pytest.raises(UserError, match="point=hybrid_k9 is not a point of this sweep"):
        ablate_job.main.__wrapped__(cfg)


# -------------------------------------------------------------------------------------- SLURM path, locally


@pytest.mark.slow
def test_a_submitit_local_sweep_of_the_toy_pair_runs(tmp_path):
    """The toy pair loads from folders, through the loaders that name a local copy's setting: working that name out
    composed a config through Hydra inside the multirun job, where Hydra is already initialised (every point
    failed)."""
    out = tmp_path / "out"
    args = ["ablate", "model=toy", "n=2", "k=1", "metric=pixel", f"prompt={PROMPTS[0]}", f"out={out}"]
    assert cli_run([*args, "baselines=false", "launcher=submitit_local"]) == 0
    rows = _read(out / "ablate.csv")
    assert {(row["method"], row["k"]) for row in rows} == {("hybrid", "1")} and "pixel" in {r["metric"] for r in rows}


@pytest.mark.slow
def test_submitit_local_multirun_runs_one_job_per_point_and_merges(tmp_path, monkeypatch):
    out = tmp_path / "out"
    args = ["ablate", *SWEEP, "k=1..2", f"prompt={PROMPTS[0]}", f"out={out}", "baselines=false"]
    assert cli_run([*args, "launcher=submitit_local"]) == 0
    rows = _read(out / "ablate.csv")
    assert sorted((r["method"], r["k"]) for r in rows) == [("hybrid", "1"), ("hybrid", "2")]
    assert {r["pair"] for r in rows} == {"base.steps=1"}  # a job inside Hydra could not compose the pair: "?"
    (sweep_dir,) = (out / "multirun").iterdir()
    assert (sweep_dir / "sweep.yaml").is_file()
    logs = list(sweep_dir.glob(".submitit/*/*_log.err"))
    assert len(logs) == 2  # one submitit job per point
    # each job's records say how it ended, with the job's own command line (they said "running" for ever)
    records = [json.loads(path.read_text()) for path in (out / "points").rglob("runs/*.json")]
    assert records and {r["status"] for r in records} == {"finished"}, [r.get("status") for r in records]
    assert all(r["command_line"][:3] == ["python", "-m", "diversity_cli.experiments.ablate_job"] for r in records)
    assert len(list((out / "plots").glob("tiny_sd_pixel_vs_k_*.png"))) == 1
    # the jobs left exactly what a local run reuses: no model, no measurement, the same table
    content = (out / "ablate.csv").read_bytes()
    _no_model(monkeypatch)
    monkeypatch.setattr(
        "diversity_cli.experiments.diversity.measure_diversity", lambda cfg: pytest.fail("measured again")
    )
    assert cli_run(args) == 0
    assert (out / "ablate.csv").read_bytes() == content


def test_a_submission_the_cluster_refuses_is_one_line_and_leaves_no_sweep_folder(cli, tmp_path, fake_slurm):
    """sbatch there but no cluster it reaches: Hydra's launcher traceback, then 'the multirun stopped at a failed job
    ... other jobs may still be running' (none was submitted) and the sweep folder of submitit's pickles."""
    fake_slurm("sbatch", "srun")
    out = tmp_path / "out"
    code, _, err = cli("ablate", *SWEEP, "k=1..2", f"prompt={PROMPTS[0]}", f"out={out}", "launcher=slurm")
    assert code == 2 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("error: launcher=slurm: the cluster refused the submission (sbatch:")
    assert not (out / "multirun").exists() and not (out / "points").exists()


def test_fid_points_are_numbers_labelled_with_their_reference(cli, tmp_path):
    """fid=true copied fid.csv's `samples` digest into ablate.csv as a metric, and plotting it raised ValueError;
    its rows did not say they were measured against another reference than the default."""
    reference = tmp_path / "reference"
    reference.mkdir()
    for i in range(4):
        Image.new("RGB", (32, 32), (60 * i, 30, 0)).save(reference / f"{i}.png")
    fid = [f"measure.fid.reference={reference}", "measure.fid.features=tiny_random", "measure.fid.clip_model=null"]
    fid.append("measure.fid.is_splits=1")  # an IS needs two images a split
    args = [*SWEEP, "k=1", f"prompt={PROMPTS[0]}", f"out={tmp_path / 'out'}", "baselines=false", "fid=true", *fid]
    code, out, err = cli("ablate", *args)
    assert code == 0, err
    rows = _read(tmp_path / "out" / "ablate.csv")
    assert {row["metric"] for row in rows} == {"pixel", "fid_tinyrandom", "is_tinyrandom"}
    options = {row["metric"]: row["options"] for row in rows if row["metric"] != "pixel"}
    assert options == {"fid_tinyrandom": f"reference={reference}", "is_tinyrandom": ""}  # IS needs no reference
    assert f"fid_tinyrandom[reference={reference}]" in "".join(out.split())
    plots = [path.name for path in (tmp_path / "out" / "plots").iterdir()]  # the reference's path is not in them
    assert len(plots) == 3 and all(len(name) < 64 and str(reference.name) not in name for name in plots), plots
    # other embedder settings are another number: a row of its own beside the default's, named so in the summary
    code, out, err = cli("ablate", *args, "measure.diversity.embedders.pixel.size=16")
    assert code == 0, err
    pixel = {row["options"]: row["value"] for row in _read(tmp_path / "out" / "ablate.csv") if row["metric"] == "pixel"}
    assert set(pixel) == {"", "size=16"} and pixel[""] != pixel["size=16"]
    assert "pixel[size=16]" in out


def test_tables_2_and_4_show_an_ablations_fid_points(cli, tmp_path):
    """README gives `ablate method=skip_first fid=true` as Table 4's command, and the report showed no Table 4 (nor
    Table 2) for it: it read fid.csv at a run's root, and an ablation measures FID in each point's folder."""
    reference = tmp_path / "reference"
    reference.mkdir()
    for i in range(4):
        Image.new("RGB", (32, 32), (60 * i, 30, 0)).save(reference / f"{i}.png")
    fid = [f"measure.fid.reference={reference}", "measure.fid.features=tiny_random", "measure.fid.clip_model=null"]
    out = tmp_path / "out"
    args = [*SWEEP, "method=skip_first,hybrid", "k=1", f"prompt={PROMPTS[0]}", f"out={out}", "baselines=false"]
    code, _, err = cli("ablate", *args, "fid=true", "measure.fid.is_splits=1", *fid)
    assert code == 0, err
    code, _, err = cli("report", f"out={out}", "tables=[2,4]", "html=false", "figures=false")
    assert code == 0, err
    table = (out / "tables" / "table_4.md").read_text()
    for tag, label in (("skip_first", "Skip First Timestep (3 steps)"), ("hybrid_k1", "Hybrid (4 steps)")):
        (row,) = _read(out / "points" / "tiny_sd" / tag / "measure" / "fid.csv")
        cells = [line for line in table.splitlines() if line.startswith(f"| {label} |")]
        assert len(cells) == 1 and f"tiny_sd / {tag} (" in cells[0], table
        measured = float(cells[0].split("|")[3])  # the FID column, as rounded for the table
        assert measured == pytest.approx(float(row["fid_tinyrandom"]), abs=5e-4), (cells, row)
        assert f"FID of {out / 'points' / 'tiny_sd' / tag / 'measure'} against {reference}: 4 images" in table
    assert "Hybrid (4 steps)" in (out / "tables" / "table_2.md").read_text()
    # a point's measurement folder removed: its ablate.csv FID is not shown, and the table says so
    shutil.rmtree(out / "points" / "tiny_sd" / "skip_first" / "measure")
    code, _, err = cli("report", f"out={out}", "tables=[4]", "html=false", "figures=false")
    table = (out / "tables" / "table_4.md").read_text()
    assert code == 0 and "holds FIDs of points/tiny_sd/skip_first, whose measure/fid.csv is gone" in table, table
    # the sweep rerun as the note says measures that point again (it had "measured before" and left it gone)
    assert cli("ablate", *args, "fid=true", "measure.fid.is_splits=1", *fid)[0] == 0
    assert (out / "points" / "tiny_sd" / "skip_first" / "measure" / "fid.csv").is_file()
    cli("report", f"out={out}", "tables=[4]", "html=false", "figures=false")
    assert "is gone" not in (out / "tables" / "table_4.md").read_text()


def test_images_of_other_settings_are_refused_before_any_point_and_keep_the_table(cli, tmp_path):
    """Refused inside each point, a rerun with another model.base.guidance recorded every point as failed, and a
    failed point's earlier rows left ablate.csv: the refusal lost the sweep's results."""
    args = [*SWEEP, "k=1", f"prompt={PROMPTS[0]}", f"out={tmp_path}"]
    assert cli("ablate", *args)[0] == 0
    table, records = (tmp_path / "ablate.csv").read_bytes(), sorted((tmp_path / "runs").iterdir())
    code, _, err = cli("ablate", *args, "model.base.guidance=2")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "point hybrid_k1:" in err and "made with different settings" in err
    assert (tmp_path / "ablate.csv").read_bytes() == table and sorted((tmp_path / "runs").iterdir()) == records
    assert not list((tmp_path / "points").rglob("error.txt"))


def test_a_sweep_an_earlier_version_measured_merges_as_this_one_writes(cli, tmp_path):
    """Points measured before: fid.csv's `samples` digest as a metric row (plotting it raised, on every rerun and
    merge) and a [d, d] interval over two images; both were read back as they were."""
    args = [*SWEEP, "k=1", f"prompt={PROMPTS[0]}", f"out={tmp_path}", "baselines=false"]
    assert cli("ablate", *args)[0] == 0
    for path in (tmp_path / "points/tiny_sd/hybrid_k1/point.csv", tmp_path / "ablate.csv"):
        rows = _read(path)
        rows = [{**row, "ci_low": row["value"], "ci_high": row["value"]} for row in rows]
        rows.append(
            {**rows[0], "prompt": "", "metric": "samples", "value": "c09cf58a0a26", "ci_low": "", "ci_high": ""}
        )
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    code, out, err = cli("ablate", *args, "merge=true")
    assert code == 0, err
    (row,) = _read(tmp_path / "ablate.csv")
    assert (row["metric"], row["n"], row["ci_low"], row["ci_high"]) == ("pixel", "2", "", "")
    assert "pixel" in out and "95% CI" not in out  # the summary reads the points' files as this version writes them


def test_a_point_whose_last_attempt_failed_shows_no_earlier_numbers(cli, tmp_path):
    """A point that ran once and then failed (its settings changed, say) keeps the earlier point.csv on disk: the
    sweep must not show those numbers as this sweep's, nor exit 0."""
    from diversity_cli.core.marker import write_owned

    args = [*SWEEP, "prompt=a red circle", f"out={tmp_path}", "baselines=false"]
    assert cli("ablate", *args)[0] == 0
    point = tmp_path / "points/tiny_sd/hybrid_k1"
    write_owned(point, "error.txt", "settings changed\n")  # what a failed attempt leaves
    code, out, err = cli("ablate", *args, "merge=true")
    assert code == 2 and "1 of 1 points have no results (hybrid_k1); hybrid_k1: settings changed" in err
    assert _read(tmp_path / "ablate.csv") == []  # nor do its earlier rows stay for report and Figure 7


def test_a_points_measurement_is_redone_when_its_image_bytes_change(cli, tmp_path):
    """The point's cached measurement is keyed by its images' bytes too: an image replaced by hand (its samples row
    unchanged) is measured again, not read back from point.csv."""
    args = [*SWEEP, "prompt=a red circle", f"out={tmp_path}", "baselines=false", "n=3"]
    assert cli("ablate", *args)[0] == 0
    before = _read(tmp_path / "ablate.csv")[0]["value"]
    images = sorted((tmp_path / "points/tiny_sd/hybrid_k1").rglob("0*.png"))
    shutil.copy(images[0], images[1])  # two of three alike: less diverse
    code, _, err = cli("ablate", *args)
    assert code == 0 and "measured before" not in err
    assert _read(tmp_path / "ablate.csv")[0]["value"] != before


def test_the_summary_shows_this_sweeps_points_not_earlier_ones_in_the_same_out(cli, tmp_path):
    args = [*SWEEP, "prompt=a red circle", f"out={tmp_path}", "baselines=false"]
    assert cli("ablate", *args, "k=1")[0] == 0
    code, out, _ = cli("ablate", *args, "k=2", "seed=5")
    assert code == 0
    rows = _read(tmp_path / "ablate.csv")
    assert {(r["k"], r["seed"]) for r in rows} == {("1", "0"), ("2", "5")}  # both sweeps' rows kept, seeds named
    headline = [line for line in out.splitlines() if "hybrid k=" in line]  # the summary's rows, not the CSV's
    assert headline and all("hybrid k=2" in line for line in headline), out


def test_the_summary_gives_every_metric_of_the_sweep_on_its_points_line(cli, tmp_path):
    """metric=pixel,toy_features: the summary gave pixel alone."""
    args = [*SWEEP, "prompt=a red circle", f"out={tmp_path}", "baselines=false", "k=1", "metric=pixel,toy_features"]
    code, out, err = cli("ablate", *args)
    assert code == 0, err
    line = " ".join(out.split())
    assert line.count("hybrid k=1") == 1 and 0 < line.find("│ pixel ") < line.find("; toy_features "), out


def test_the_summary_names_a_plots_folder_only_where_plots_are_drawn(cli, tmp_path):
    """plots=false: the summary named `<out>/plots`, a folder that was never made."""
    args = [*SWEEP, "prompt=a red circle", "baselines=false", "k=1"]
    for plots, out in (("false", tmp_path / "a"), ("true", tmp_path / "b")):
        code, stdout, err = cli("ablate", *args, f"plots={plots}", f"out={out}")
        assert code == 0, err
        named = str(out / "plots") in "".join(stdout.split())
        assert named == (out / "plots").is_dir() == (plots == "true"), stdout


def test_a_points_measurement_is_redone_when_its_embedders_weights_change(cli, tmp_path):
    """A DINO checkpoint replaced in place (same path, other weights): the point's cached numbers were measured with
    the old one, so the point is measured again."""
    from test_diversity import _tiny_dino

    dino = _tiny_dino(tmp_path / "dino")
    args = [*SWEEP, "metric=dino", f"measure.diversity.embedders.dino.path={dino}", "prompt=a red circle"]
    args += [f"out={tmp_path / 'out'}", "baselines=false"]
    assert cli("ablate", *args)[0] == 0
    before = _read(tmp_path / "out/ablate.csv")[0]["value"]
    code, _, err = cli("ablate", *args)
    assert code == 0 and "measured before" in err  # unchanged: read back
    from transformers import Dinov2Model

    network = Dinov2Model.from_pretrained(dino)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(torch.randn_like(parameter))
    network.save_pretrained(dino)  # the same path, other weights
    code, _, err = cli("ablate", *args)
    assert code == 0 and "measured before" not in err
    assert _read(tmp_path / "out/ablate.csv")[0]["value"] != before


def test_measure_keys_equal_to_what_ablate_sets_are_taken():
    sweep = _sweep("model=tiny_sd", "metric=pixel", "measure.diversity.metric=pixel", "device=cpu",
                   "measure.diversity.device=cpu", "measure.fid.seed=3")  # fmt: skip
    assert [point.tag for point in sweep.points] == ["hybrid_k1"]


def test_a_sweep_at_another_n_keeps_its_own_rows_plots_and_images(cli, tmp_path, monkeypatch):
    """The same sweep at n=2, then n=3, into one out: the n=3 rows replaced the n=2 ones (n was no part of a row's
    key) and its plot was drawn over the n=2 one (the sweep's id named its points only). Each n now keeps its rows
    and plots, each measured over exactly its own images (the point's folder holds the 3 images of both)."""
    args = [*SWEEP, "k=1", f"prompt={PROMPTS[0]}", f"out={tmp_path}", "baselines=false"]
    assert cli("ablate", *args)[0] == 0
    (two,) = _read(tmp_path / "ablate.csv")
    assert cli("ablate", *args, "n=3")[0] == 0
    rows = _read(tmp_path / "ablate.csv")
    assert [(row["n"], row["value"]) for row in rows][0] == ("2", two["value"]) and rows[1]["n"] == "3"
    assert rows[1]["value"] != two["value"]
    plots = sorted(path.name for path in (tmp_path / "plots").iterdir())
    assert len(plots) == 2 and [name.rsplit("_", 1)[1][:3] for name in plots] == ["n2-", "n3-"], plots
    view = tmp_path / "points/tiny_sd/hybrid_k1/measure/samples.csv"
    assert len(_read(view)) == 3 and len(list((tmp_path / "points").rglob("0*.png"))) == 3
    # merge=true at n=2 does not take the point's n=3 measurement for n=2's numbers
    code, _, err = cli("ablate", *args, "merge=true")
    assert code == 2 and "its last measurement is at n=3, not n=2" in err, err
    assert _read(tmp_path / "ablate.csv") == rows
    # run again at n=2: no image made, the two images of seeds 0 and 1 measured again, the same number
    _no_model(monkeypatch)
    code, out, err = cli("ablate", *args)
    assert code == 0, err
    assert _read(tmp_path / "ablate.csv") == rows and len(_read(view)) == 2
    assert "pixel" in out  # the summary reads the point's files, now at n=2
    # a point failing at n=3 loses its n=3 rows; n=2's are another sweep's numbers and stay
    from diversity_cli.core.marker import write_owned

    write_owned(tmp_path / "points/tiny_sd/hybrid_k1", "error.txt", "settings changed\n")
    assert cli("ablate", *args, "n=3", "merge=true")[0] == 2
    assert _read(tmp_path / "ablate.csv") == rows[:1]


def test_the_point_table_gives_each_diversity_its_interval_n_and_quality(capsys):
    """The point table gave the mean without its interval, and toy_adherence as a row of its own below it: the
    quality now stands on the diversity's line, beside its interval and the images per prompt."""
    from diversity_cli.experiments.ablate import show

    def row(prompt: str, metric: str, value: str, low: str = "", high: str = "") -> dict[str, str]:
        return {"prompt": prompt, "n": "8", "metric": metric, "value": value, "ci_low": low, "ci_high": high,
                "ci": "0.95" if low else "", "seconds_per_image": "0.01", "nfe": "4"}  # fmt: skip

    one = [row("a shape", "toy_features", "0.3", "0.2", "0.4"), row("a shape", "toy_adherence", "0.75")]
    two = [
        row(p, "toy_features", v, low, high)
        for p, v, low, high in (("a", "0.3", "0.2", "0.4"), ("b", "0.5", "0.4", "0.6"))
    ]
    two += [row("a", "toy_adherence", "1"), row("b", "toy_adherence", "0.5")]
    show([(Point("base"), one), (Point("distilled"), two)], Path("ablate.csv"))
    lines = [line for line in capsys.readouterr().out.splitlines() if "toy_" in line]
    assert len(lines) == 2, lines  # one line per point: the quality is no row of its own
    cells = [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines]
    assert cells[0][:7] == ["base", "toy_features", "0.3000", "[0.2000, 0.4000]", "1", "8", "toy_adherence 0.750"]
    from diversity_cli.metrics.diversity import pooled_interval

    _, low, high = pooled_interval([0.3, 0.5], [0.2, 0.4], [0.4, 0.6])
    assert cells[1][2:7] == ["0.4000", f"[{low:.4f}, {high:.4f}]", "2", "8", "toy_adherence 0.750"]


def test_the_first_runs_ablate_sweeps_the_hybrid_make_demo_runs():
    """README's first run swept k=1..3 with the one base step that README's toy section says brings no diversity
    back on the toy (hybrid 0.251 against the student's 0.353): it sweeps the hybrid `make demo` runs there, the
    base's own steps its DEMO_BASE_STEPS names for the toy."""
    import re

    root = Path(__file__).resolve().parents[1]
    first_run = (root / "README.md").read_text().split("## First run on the toy pair")[1].split("\n## ")[0]
    (line,) = [line for line in first_run.splitlines() if line.startswith("diversity-cli ablate ")]
    makefile = (root / "Makefile").read_text()
    steps = re.search(r"^DEMO_BASE_STEPS \?= \$\(if \$\(filter toy%,\$\(DEMO_PAIR\)\),(\d+)\)", makefile, re.M)
    assert steps, "the Makefile's DEMO_BASE_STEPS for the toy pair"
    arguments = line.split("#")[0].split()[2:]
    assert f"base_steps={steps.group(1)}" in arguments, line
    assert {point.base_steps for point in _sweep(*arguments).points} == {int(steps.group(1))}


def test_the_summary_gives_each_points_diversity_its_n_and_its_quality(cli, tmp_path):
    """The summary's line was "toy_features 0.2515 [0.1958, 0.3085] 95% CI": neither how many images it rests on
    nor whether they follow the prompt."""
    args = ["model=toy", "k=1", "base_steps=5", "n=3", "prompt=a shape", "baselines=false", f"out={tmp_path}"]
    code, out, err = cli("ablate", *args)
    assert code == 0, err
    (row,) = [r for r in _read(tmp_path / "ablate.csv") if r["metric"] == "toy_adherence"]
    (line,) = [line for line in out.splitlines() if "hybrid k=1" in line]
    assert re.search(r"toy_features [\d.]+ \[[\d.]+, [\d.]+\] 95% CI, n=3; toy_adherence (\S+) ", line), line
    assert float(re.search(r"toy_adherence (\S+) ", line).group(1)) == float(row["value"])


def test_a_sweep_at_another_seed_keeps_its_own_rows_plots_and_measurement(cli, tmp_path):
    """The same sweep at seed=0, then seed=100 (same n) into one out: seed was no part of a row's key, so the
    seed=100 rows replaced the seed=0 ones, and its plot was drawn over theirs. Each seed now keeps its rows (their
    own values) and plots; the point's folder records the seed its last measurement was at."""
    import json

    args = [*SWEEP, "k=1", f"prompt={PROMPTS[0]}", f"out={tmp_path}", "baselines=false"]
    assert cli("ablate", *args)[0] == 0
    (first,) = _read(tmp_path / "ablate.csv")
    (plot_before,) = (tmp_path / "plots").iterdir()
    assert cli("ablate", *args, "seed=100")[0] == 0
    rows = _read(tmp_path / "ablate.csv")
    assert [(row["seed"], row["n"]) for row in rows] == [("0", "2"), ("100", "2")]
    assert rows[0] == first and rows[1]["value"] != first["value"]  # seed=0's number kept, seed=100's its own
    point = json.loads((tmp_path / "points/tiny_sd/hybrid_k1/point.json").read_text())
    assert (point["n"], point["seed"]) == (2, 100)
    plots = sorted(path.name for path in (tmp_path / "plots").iterdir())
    # the default seed keeps the name it had before plots named seeds; another seed is named in its own
    assert len(plots) == 2 and plot_before.name in plots, plots
    assert [name.rsplit("_", 1)[1].split("-")[:-1] for name in plots] == [["n2"], ["n2", "s100"]], plots
    # both again: nothing replaced, the images of both seeds in the point's folder
    assert cli("ablate", *args)[0] == 0 and _read(tmp_path / "ablate.csv") == rows
    assert len(list((tmp_path / "points").rglob("0*.png"))) == 4


def test_merge_at_another_seed_is_refused_and_a_failed_point_loses_only_its_seeds_rows(cli, tmp_path):
    """merge=true at seed=0 after the point was measured at seed=100 took the seed=100 numbers as seed=0's; and a
    point failing at seed=100 dropped seed=0's rows too."""
    args = [*SWEEP, "k=1", f"prompt={PROMPTS[0]}", f"out={tmp_path}", "baselines=false"]
    assert cli("ablate", *args)[0] == 0
    assert cli("ablate", *args, "seed=100")[0] == 0
    rows = _read(tmp_path / "ablate.csv")
    code, _, err = cli("ablate", *args, "merge=true")
    assert code == 2 and "its last measurement is at seed=100, not seed=0" in err, err
    assert _read(tmp_path / "ablate.csv") == rows and [row["seed"] for row in rows] == ["0", "100"]
    from diversity_cli.core.marker import write_owned

    write_owned(tmp_path / "points/tiny_sd/hybrid_k1", "error.txt", "settings changed\n")
    assert cli("ablate", *args, "seed=100", "merge=true")[0] == 2
    assert _read(tmp_path / "ablate.csv") == rows[:1]


def test_rows_over_all_prompts_at_two_seeds_are_two_rows(tmp_path):
    """An FID row (no prompt) of a sweep at seed=100 replaced seed=0's: each names its sweep's seed= now and both
    stay; a row an earlier version wrote without a seed is replaced in place, as before."""
    from diversity_cli.experiments.ablate import _seeded

    def row(seed: str, value: str) -> dict[str, str]:
        return {"model": "m", "method": "base", "prompt": "", "n": "8", "seed": seed, "metric": "fid", "value": value}

    path = tmp_path / "ablate.csv"
    write_rows(path, [row("", "31.0")])  # as an earlier version wrote it
    write_rows(path, _seeded([row("", "30.0")], 0))
    write_rows(path, _seeded([row("", "35.0")], 100))
    assert [(r["seed"], r["value"]) for r in _read(path)] == [("0", "30.0"), ("100", "35.0")]
    assert _seeded([row("", "1")], None)[0]["seed"] == ""  # every prompt its own seed: seed= chose no image


def test_a_plots_name_says_its_seed_unless_the_default():
    from diversity_cli.experiments.ablate import plot_name

    points = [Point.of("hybrid", k, 0.0) for k in (1, 2)]
    names = [plot_name(Sweep("m", points, [], ["k"], 8, seed), "pixel", "k") for seed in (None, 0, 100)]
    assert names[0] == names[1] and names[0].rsplit("_", 1)[1].startswith("n8-") and "s100" not in names[0]
    assert names[2].rsplit("_", 1)[1].startswith("n8-s100-") and names[2] != names[0]


def test_images_of_other_weights_are_refused_before_any_point_and_keep_the_table(cli, tmp_path):
    """A student retrained in place was refused inside its points, after the base point had run: the failed points'
    rows, valid for the images still on disk, left ablate.csv."""
    import shutil

    from safetensors.torch import load_file, save_file

    from diversity_cli.core.resources import asset

    student = Path(shutil.copytree(asset("toy/dmd_student"), tmp_path / "student"))
    out = tmp_path / "sweep"
    args = ["k=1", "base_steps=5", "n=2", "metric=pixel", "prompt=a circle", f"out={out}",
            f"model.distilled.network.path={student}"]  # fmt: skip
    assert cli("ablate", *args)[0] == 0
    table = (out / "ablate.csv").read_bytes()
    weights = student / "diffusion_pytorch_model.safetensors"
    save_file({name: value * 0.9 for name, value in load_file(weights).items()}, weights)
    code, _, err = cli("ablate", *args)
    assert code == 2 and "point hybrid_k1_bs5:" in err and "other weights made" in err, err
    assert (out / "ablate.csv").read_bytes() == table
    assert not list((out / "points").rglob("error.txt"))
