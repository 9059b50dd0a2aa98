"""The DP-DMD ablation's reading of distill runs: settings, the anchor's teacher timestep, the training log's tail."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from diversity_cli.core.config import compose
from diversity_cli.core.errors import UserError
from diversity_cli.core.resources import asset
from diversity_cli.experiments.dp_dmd_ablation import anchor_timestep, markdown, point


def _run(tmp_path, name: str, overrides: list[str], first: list[float] | None):
    run = tmp_path / name
    (run / "student").mkdir(parents=True)
    cfg = compose("distill", overrides)
    (run / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    header = "iteration,generator_loss,dmd_loss,first_step_loss,first_step_floor,fake_loss,seconds\n"
    rows = []
    for i in range(1, 201):
        f, floor = (f"{first[i % 2]}", "0.7") if first else ("", "")
        rows.append(f"{i},1.0,{0.5 if i <= 100 else 0.25},{f},{floor},0.1,1.0\n")
    (run / "log.csv").write_text(header + "".join(rows))
    return run


@pytest.mark.parametrize(("k", "steps", "t"), [(1, 8, 874), (2, 8, 749), (3, 8, 624), (8, 8, 0), (2, 4, 499)])
def test_anchor_timestep_is_the_teacher_grid_at_anchor_k(tmp_path, k, steps, t):
    cfg = compose("distill", ["distill=dp_dmd", f"anchor_k={k}", f"teacher_ode.steps={steps}"])
    assert anchor_timestep(cfg) == t
    assert anchor_timestep(compose("distill", ["distill=dmd"])) is None


def test_point_reads_settings_and_the_last_hundred_rows(tmp_path):
    run = _run(tmp_path, "dp", ["distill=dp_dmd", "lambda_div=0.5", "anchor_k=1", "lr.generator=2e-5"], [0.4, 0.6])
    p = point(run)
    assert (p["method"], p["lambda_div"], p["anchor_k"], p["anchor_timestep"]) == ("dp_dmd", 0.5, 1, 874)
    assert p["iterations"] == 200
    assert p["dmd_loss"] == pytest.approx(0.25)  # the last 100 rows only, not the first 100 at 0.5
    assert p["first_step_loss"] == pytest.approx(0.5) and p["first_step_floor"] == pytest.approx(0.7)
    dmd = point(_run(tmp_path, "dmd", ["distill=dmd", "gan.weight=5e-3"], first=None))
    assert dmd["lambda_div"] is None and dmd["first_step_loss"] is None and dmd["gan_weight"] == 0.005
    older = _run(tmp_path, "older", ["distill=dmd"], first=None)
    config = OmegaConf.load(older / "config.yaml")
    del config["gan"]  # a run from before the GAN term
    (older / "config.yaml").write_text(OmegaConf.to_yaml(config))
    assert point(older)["gan_weight"] == 0.0
    rows = [
        {
            **p,
            "fid_toyfeat": 50.0,
            "adherence": 0.9,
            "adherence_min": 0.5,
            "diversity": 0.2,
            "adherent_diversity": 0.18,
            "adherent_prompts": 5,
            "truth_diversity": 0.3,
        }
    ]
    rows.append(
        {
            **dmd,
            **{
                k: rows[0][k]
                for k in (
                    "fid_toyfeat",
                    "adherence",
                    "adherence_min",
                    "diversity",
                    "adherent_diversity",
                    "adherent_prompts",
                    "truth_diversity",
                )
            },
        }
    )
    text = markdown(rows, "cmd")
    assert "| dp | dp_dmd | 0.5 | 1 (t=874) | 200 | 2e-05 / 1e-05 | 0 | 0.5000 / 0.7000 |  | 50.0 |" in text
    assert "| dmd | dmd |  |  | 200 | 1e-05 / 1e-05 | 0.005 |  |  | 50.0 |" in text  # no anchor fit measured
    assert "| 0.200 | 0.180 (5) |" in text  # adherent-only diversity says over how many prompts


def test_point_refuses_an_unfinished_run(tmp_path):
    run = _run(tmp_path, "dp", ["distill=dp_dmd"], first=[0.4, 0.6])
    (run / "student").rmdir()
    with pytest.raises(UserError, match="not a finished distill run"):
        point(run)
    # an extension killed midway: student/ is the earlier length's, the log and config already the longer run's
    run = _run(tmp_path, "killed", ["distill=dp_dmd"], first=[0.4, 0.6])
    (run / "run.json").write_text('{"distill": {"finished": false}}')
    with pytest.raises(UserError, match="unfinished distill run"):
        point(run)


def test_a_student_is_not_measured_on_a_base_other_than_its_teacher(tmp_path):
    from diversity_cli.experiments.dp_dmd_ablation import measure_point

    run = _run(tmp_path, "other", ["distill=dp_dmd", "model.base.network.path=/elsewhere/unet"], first=[0.4, 0.6])
    with pytest.raises(UserError, match="was distilled from model.base.network=/elsewhere/unet"):
        measure_point("toy", run, None, {}, log=lambda *_: None)


def test_a_measured_point_takes_its_student_s_fid_not_the_protocol_s_reference_rows(tmp_path, monkeypatch):
    from diversity_cli.core.resources import asset
    from diversity_cli.experiments import dp_dmd_ablation

    run = tmp_path / "run"
    run.mkdir()
    (run / "student").symlink_to(asset("toy/dmd_student"))
    (run / "config.yaml").write_text(OmegaConf.to_yaml(compose("distill", ["model=toy"]), resolve=True))
    # the protocol's FID rows as `measure` returns them: the floor and the VAE's round trip before the student's
    fid_rows = [
        {"method": "truth", "fid_toyfeat": 20.0},
        {"method": "truth_vae", "fid_toyfeat": 25.0},
        {"method": "distilled", "fid_toyfeat": 40.0, "seconds": 1.0},
    ]
    prompts = [{"adherence": 1.0, "diversity": 0.2, "adherent_diversity": 0.2, "truth_diversity": 0.3}]
    monkeypatch.setattr(dp_dmd_ablation, "measure", lambda pair, methods, *_: (fid_rows, prompts, []))
    weights: dict = {}
    row = dp_dmd_ablation.measure_point("toy", run, None, weights, log=lambda *_: None)
    assert (row["fid_toyfeat"], row["fid_floor"]) == (40.0, 20.0)
    assert weights[str(run)]["distilled"]["weights_hash"]  # the student measured is named by its bytes


def test_bad_input_to_the_entry_point_is_one_line_and_exit_2(capsys):
    from diversity_cli.core.errors import run_main
    from diversity_cli.experiments import dp_dmd_ablation

    assert run_main(lambda: dp_dmd_ablation.main(["runs=/nonexistent/run"])) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: /nonexistent/run is not a finished distill run") and err.count("\n") == 1
    assert run_main(lambda: dp_dmd_ablation.main(["runs=/nonexistent/run", "results/mine"])) == 2
    assert capsys.readouterr().err.startswith("error: dp_dmd_ablation argument 'results/mine' is not one of model=")


def test_a_measured_point_carries_its_first_step_against_the_anchor(tmp_path, monkeypatch):
    """A DP-DMD run's first step against its own anchor, a DMD run's against the first DP-DMD run's, both shown in
    ablation.md; without a DP-DMD run there is no anchor and no such columns."""
    from diversity_cli.experiments import dp_dmd_ablation

    dmd = _run(tmp_path, "dmd", ["model=toy"], first=None)
    dp = _run(tmp_path, "dp", ["model=toy", "distill=dp_dmd", "anchor_k=3"], first=[0.4, 0.6])
    assert dp_dmd_ablation.anchor_of(dmd, [dp]).anchor_k == 3 and dp_dmd_ablation.anchor_of(dmd, []) is None
    seen = []

    def fit(pair, anchor):
        seen.append(int(anchor.anchor_k))
        return {"anchor": "k", "mse": 0.14, "prompt_floor": 0.5, "constant_floor": 0.69, "noise_share": 0.84}

    monkeypatch.setattr(dp_dmd_ablation, "anchor_fit", fit)
    monkeypatch.setattr(dp_dmd_ablation, "load_pair", lambda *a, **k: None, raising=False)
    prompts = [{"adherence": 1.0, "diversity": 0.2, "adherent_diversity": 0.2, "truth_diversity": 0.3}]
    fid_rows = [{"method": m, "fid_toyfeat": 1.0} for m in ("truth", "distilled")]
    monkeypatch.setattr(dp_dmd_ablation, "measure", lambda pair, methods, *_: (fid_rows, prompts, []))
    (dmd / "student").rmdir()
    (dmd / "student").symlink_to(asset("toy/dmd_student"))
    row = dp_dmd_ablation.measure_point("toy", dmd, None, {}, dp_dmd_ablation.anchor_of(dmd, [dp]), log=print)
    assert seen == [3] and row["fit_mse"] == 0.14
    rows = [{**point(dmd), **row}]
    assert "| 0.140 / 0.500 (0.84) |" in markdown(rows, "cmd")
