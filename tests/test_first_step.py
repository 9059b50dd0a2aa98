"""The first step's fit to DP-DMD's anchor with many noises per prompt: the per-prompt floor separates a first step
that reads its noise from one that reads its prompt alone (both sit below the training log's constant floor)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from diversity_cli.training import first_step
from diversity_cli.training.objective import DistillSettings

pytestmark = pytest.mark.usefixtures("one_thread")
OFFSET = {"a circle": 3.0, "two shapes": -3.0}  # each prompt's anchors sit around their own mean


def _fit(monkeypatch, student) -> first_step.FirstStepFit:
    """The fit where the anchor is the prompt's offset plus the noise, and the first step is `student(anchor,
    offset)`."""

    def anchor(teacher, ode, steps, k, noise, prompts, guidance):
        return OFFSET[prompts[0]] + noise

    class Sampler:
        def __init__(self, config, timesteps):
            pass

        def step(self, network, noise, index, prompts, generator):
            return student(anchor(None, None, 0, 0, noise, prompts, 0), OFFSET[prompts[0]]), None

    monkeypatch.setattr(first_step, "teacher_anchor", anchor)
    monkeypatch.setattr(first_step, "StudentSampler", Sampler)
    monkeypatch.setattr(first_step, "teacher_ode_scheduler", lambda *a: None)
    spec = SimpleNamespace(scheduler=SimpleNamespace(config={}), network=None)
    pair = SimpleNamespace(
        base=spec, distilled=spec, latent_shape=(1, 4, 4), device="cpu", dtype=torch.float32, encode=lambda p: p
    )
    settings = DistillSettings("dp_dmd", [999], 3.0, anchor_k=2, ode_steps=8, ode_guidance=3.0)
    return first_step.first_step_fit(pair, settings, list(OFFSET), noises=400)


def test_a_first_step_that_reads_its_prompt_alone_sits_at_the_per_prompt_floor(monkeypatch):
    fit = _fit(monkeypatch, lambda anchor, offset: torch.full_like(anchor, offset))
    assert fit.noise_share == 0.0
    assert fit.mse == pytest.approx(fit.prompt_floor, rel=0.05) and fit.prompt_floor == pytest.approx(1.0, rel=0.1)
    assert fit.constant_floor == pytest.approx(10.0, rel=0.1)  # the prompts' spread (3² around 0) plus the noise's


def test_a_first_step_that_follows_its_noise_sits_below_it(monkeypatch):
    fit = _fit(monkeypatch, lambda anchor, offset: anchor)
    assert fit.mse == 0.0 and fit.noise_share == pytest.approx(1.0)
    shuffled = _fit(monkeypatch, lambda anchor, offset: anchor.flip(0))  # varies as much, not with its own noise
    assert shuffled.noise_share == pytest.approx(1.0) and shuffled.mse > shuffled.prompt_floor


def test_the_shipped_dp_dmd_student_follows_its_noise_and_the_dmd_student_does_not():
    """What README says of the shipped students, measured as experiments/first_step.py measures it (fewer noises
    and prompts here)."""
    from diversity_cli.core.config import compose
    from diversity_cli.models.loading import load_pair
    from diversity_cli.training.distill import settings

    prompts = ["a circle", "two shapes", "a red square"]
    fits = {}
    for name in ("toy_dpdmd", "toy"):
        cfg = compose("distill", [f"model={name}", "distill=dp_dmd", "teacher_ode.steps=8", "anchor_k=2"])
        pair = load_pair(cfg.model, torch.device("cpu"), torch.float32)
        fits[name] = first_step.first_step_fit(pair, settings(cfg, pair), prompts, noises=8)
    assert fits["toy_dpdmd"].mse < 0.5 * fits["toy_dpdmd"].prompt_floor
    assert fits["toy"].mse > fits["toy"].prompt_floor


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["noises=1"], "noises=1: the variances need at least 2"),
        (["distill=dmd"], "first_step takes model=<pair>"),
        (["model=toy_dpdmd", "anchor_k=9"], "anchor_k=9 is out of range"),  # it measured the ODE's end as k=9
        (["model=tiny_qwen"], "flow-matching pairs are not supported"),  # a shape error's traceback
    ],
)
def test_bad_input_to_the_entry_point_is_one_line_and_exit_2(capsys, argv, said):
    from diversity_cli.core.errors import run_main
    from diversity_cli.experiments import first_step as entry

    assert run_main(lambda: entry.main(argv)) == 2
    err = capsys.readouterr().err
    assert said in err and err.count("\n") == 1, err


def test_a_students_readme_gives_the_check_against_its_own_anchor(cli, tmp_path, capsys):
    """The README's check kept anchor_k and the ODE's steps alone: a student trained against CFG 4 and a two-step
    schedule was measured against CFG 6's anchor (mse 0.518 where its own gave 0.603), under the pair's label."""
    import re
    import shlex

    from diversity_cli.experiments import first_step as entry

    out = tmp_path / "run"
    args = ("distill=dp_dmd", "prompt=a red circle", "iterations=1", "batch_size=2", "teacher_guidance=6",
            "teacher_ode.guidance=4", "student_timesteps=[999,499]", f"out={out}")  # fmt: skip
    assert cli("distill", *args)[0] == 0
    (hint,) = re.findall(r"`python -m diversity_cli\.experiments\.first_step ([^`]*)`", (out / "README.md").read_text())
    words = shlex.split(hint)
    assert {"teacher_ode.guidance=4", "student_timesteps=[999,499]", "teacher_guidance=6"} <= set(words), words
    assert f"model.distilled.network.path={out / 'student'}" in words
    capsys.readouterr()
    assert entry.main([*words, "noises=2"]) == 0
    row = capsys.readouterr().out
    assert "anchor=anchor_k=2 of teacher_ode.steps=8, CFG 4, student from t=999" in row, row
    assert f"(model.distilled.network.path={out / 'student'})" in row, row
