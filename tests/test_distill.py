"""`diversity-cli distill` (DMD, DP-DMD) on tiny_sd: training moves the right networks, resume is exact, the
DMD gradient and DP-DMD's stop-gradient hold under autograd, bad input is one line."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import pytest
import torch
from diffusers import DDPMScheduler
from omegaconf import OmegaConf
from safetensors.torch import load_file

from diversity_cli.core.marker import RunMarker
from diversity_cli.models import tiny
from diversity_cli.models.pair import Conditioning, ModelSpec, take_kwargs
from diversity_cli.sampling.denoiser import Denoiser
from diversity_cli.training import distill
from diversity_cli.training.generator import teacher_anchor, teacher_ode_scheduler
from diversity_cli.training.losses import dmd_gradient, dmd_loss
from diversity_cli.training.objective import Distiller, DistillSettings

PROMPTS = ["a red circle", "two blue squares", "a green triangle on a dark background"]
SMALL = ("batch_size=1", "fake_updates_per_generator_update=2")
TIMESTEPS = [999, 749, 499, 249]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def prompts_file(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n")
    return path


@pytest.fixture
def loaded_pairs(monkeypatch):
    """The pairs `distill` loads, kept so a test can inspect the teacher after training."""
    pairs = []

    def load(*args, **kwargs):
        pairs.append(distill_load(*args, **kwargs))
        return pairs[-1]

    distill_load = distill.load_pair
    monkeypatch.setattr(distill, "load_pair", load)
    return pairs


def _log(out: Path) -> list[dict[str, str]]:
    with (out / "log.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _checkpoint(out: Path, name: str) -> dict[str, torch.Tensor]:
    (latest,) = sorted((out / "checkpoints").glob("iter_*"))[-1:]
    return load_file(latest / name)


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _one_line(err: str) -> bool:
    return len(err.strip().splitlines()) == 1 and err.startswith("error: ")


@pytest.mark.parametrize("method", ["dmd", "dp_dmd"])
def test_training_moves_student_and_fake_but_not_teacher(cli, tmp_path, prompts_file, loaded_pairs, method):
    out = tmp_path / method
    # DP-DMD on a batch of 2: the constant-predictor floor of its first step needs more than one sample.
    extra = ["anchor_k=1", "teacher_ode.steps=2", "batch_size=2"] if method == "dp_dmd" else ["batch_size=1"]
    small = [item for item in SMALL if not item.startswith("batch_size=")]
    code, _, err = cli(
        "distill",
        "model=tiny_sd",
        f"distill={method}",
        *extra,
        f"prompts={prompts_file}",
        f"out={out}",
        "iterations=2",
        *small,
    )
    assert code == 0, err
    rows = _log(out)
    assert [int(r["iteration"]) for r in rows] == [1, 2]
    for row in rows:
        losses = ["generator_loss", "dmd_loss", "fake_loss"] + (["first_step_loss"] if method == "dp_dmd" else [])
        assert all(math.isfinite(float(row[key])) for key in losses)
        assert float(row["seconds"]) > 0
        if method == "dmd":
            assert row["first_step_loss"] == row["first_step_floor"] == ""
        else:  # total = dmd + lambda_div * first (0.05 by default)
            expected = float(row["dmd_loss"]) + 0.05 * float(row["first_step_loss"])
            assert float(row["generator_loss"]) == pytest.approx(expected, rel=1e-4)
            assert float(row["first_step_floor"]) > 0

    initial = tiny.build_network("sd", seed=0).state_dict()  # tiny_sd's base: the teacher before training
    teacher = loaded_pairs[-1].base.network.state_dict()
    assert _same({k: v.cpu() for k, v in teacher.items()}, initial)
    from diffusers import UNet2DConditionModel

    student = UNet2DConditionModel.from_pretrained(out / "student").state_dict()
    assert student.keys() == initial.keys()
    assert not _same(student, initial)
    assert _same(student, _checkpoint(out, "model.safetensors"))  # accelerate's first prepared model: the student
    fake = _checkpoint(out, "model_1.safetensors")
    assert fake.keys() == initial.keys() and not _same(fake, initial) and not _same(fake, student)
    readme = (out / "README.md").read_text()
    assert f"distill={method}" in readme and "LCMScheduler" in readme
    if method == "dp_dmd":  # 2 trailing DDIM steps run 999, 499: the first step's anchor is taken at 499
        assert "x̂0 at t=499 (anchor_k=1 of 2 DDIM steps" in readme


def test_an_anchor_at_the_odes_end_is_named_as_its_sample(cli, tmp_path, prompts_file):
    """anchor_k = teacher_ode.steps takes the ODE's sample, made by its last step from t=499 here: the card called it
    "the teacher's x̂0 at t=0", which no step predicts."""
    out = tmp_path / "run"
    code, _, err = cli("distill", "model=tiny_sd", "distill=dp_dmd", "anchor_k=2", "teacher_ode.steps=2",
                       f"prompts={prompts_file}", f"out={out}", "iterations=1", "batch_size=2")  # fmt: skip
    assert code == 0, err
    readme = (out / "README.md").read_text()
    assert "the teacher ODE's sample after all its steps (the last from t=499) (anchor_k=2 of 2" in readme
    assert "x̂0 at t=0" not in readme


def test_a_run_resumes_over_a_label_and_refuses_a_training_setting(cli, tmp_path, prompts_file):
    """A new label (or another command's default on the pair) was refused as a run "with different settings"."""
    args = ("distill", "model=tiny_sd", f"prompts={prompts_file}", f"out={tmp_path / 'run'}", *SMALL)
    assert cli(*args, "iterations=1")[0] == 0
    code, _, err = cli(*args, "iterations=2", "model.base.label=my teacher", "+model.default_prompt=a dog")
    assert code == 0, err
    assert len(_log(tmp_path / "run")) == 2
    code, _, err = cli(*args, "iterations=3", "lr.generator=1e-3", "model.base.label=another")
    assert code == 2 and _one_line(err), err
    assert "different settings (lr.generator)" in err, err  # the label is not named among them


def test_which_settings_change_no_training():
    from diversity_cli.training.state import changes_no_training

    words = ["model.base.label", "model.distilled.label", "model.auto_k.n", "model.hybrid_note", "model.default_prompt"]
    assert all(changes_no_training(key) for key in words)
    trained = ["model.base.guidance", "model.name", "model.base", "lr.generator", "model.distilled.network.path"]
    assert not any(changes_no_training(key) for key in trained)  # `model.base` alone raised an IndexError


def test_resume_continues_and_equals_an_uninterrupted_run(cli, tmp_path, prompts_file):
    # On CPU, where kernels are deterministic for a fixed thread count (GPU kernels are not: two identical GPU runs
    # already differ in the 6th digit), a checkpoint restores weights and Adam moments exactly and each iteration
    # seeds its own generator: resuming changes nothing.
    args = (
        "distill",
        "model=tiny_sd",
        "distill=dp_dmd",
        "anchor_k=1",
        "teacher_ode.steps=2",
        f"prompts={prompts_file}",
        "device=cpu",
    )
    args += ("batch_size=1", "fake_updates_per_generator_update=1")
    resumed, straight = tmp_path / "resumed", tmp_path / "straight"
    assert cli(*args, f"out={resumed}", "iterations=2")[0] == 0
    assert cli(*args, f"out={resumed}", "iterations=4")[0] == 0
    assert cli(*args, f"out={straight}", "iterations=4", "checkpoint_every=3", "keep_checkpoints=2")[0] == 0
    a, b = _log(resumed), _log(straight)
    assert [int(r["iteration"]) for r in a] == [1, 2, 3, 4]
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(a) == drop(b)
    assert _same(
        load_file(resumed / "student/diffusion_pytorch_model.safetensors"),
        load_file(straight / "student/diffusion_pytorch_model.safetensors"),
    )
    assert _same(_checkpoint(resumed, "model_1.safetensors"), _checkpoint(straight, "model_1.safetensors"))
    assert [p.name for p in sorted((straight / "checkpoints").iterdir())] == ["iter_000003", "iter_000004"]

    code, _, err = cli(*args, f"out={resumed}", "iterations=4")
    assert code == 0 and "nothing to do" in err and len(_log(resumed)) == 4
    code, _, err = cli(*args, f"out={resumed}", "iterations=4", "resume=false")  # not "nothing to do"
    assert code == 2 and _one_line(err) and "iteration 4 and resume=false" in err, err
    code, _, err = cli(*args, f"out={resumed}", "iterations=3")
    assert code == 2 and _one_line(err) and "already holds 4 iterations" in err
    code, _, err = cli(*args, f"out={resumed}", "iterations=4", "lr.generator=1e-3")
    assert code == 2 and _one_line(err) and "different settings" in err and "lr.generator" in err
    code, _, err = cli(*args, f"out={resumed}", "iterations=1", "lr.generator=1e-3", "overwrite=true")
    assert code == 0, err
    assert len(_log(resumed)) == 1 and [p.name for p in (resumed / "checkpoints").iterdir()] == ["iter_000001"]


def test_refuses_a_folder_with_foreign_outputs(cli, tmp_path, prompts_file):
    out = tmp_path / "run"
    RunMarker(out).claim()  # in a run directory: a folder of the user's is refused as a whole
    (out / "log.csv").write_text("mine\n")
    code, _, err = cli("distill", "model=tiny_sd", f"prompts={prompts_file}", f"out={out}", "iterations=1", *SMALL)
    assert code == 2 and _one_line(err) and "overwrite=true" in err
    assert (out / "log.csv").read_text() == "mine\n"


def test_another_commands_run_directory_is_refused_overwrite_or_not(cli, tmp_path, prompts_file):
    """distill into a generate run said "holds run.json but no run.json" and advised overwrite=true, which put a
    distill run beside the run's images."""
    out = tmp_path / "run"
    assert cli("generate", "model=tiny_sd", "prompt=a red circle", "n=1", f"out={out}")[0] == 0
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    args = ("distill", "model=tiny_sd", f"prompts={prompts_file}", f"out={out}", "iterations=1", *SMALL)
    for extra in ((), ("overwrite=true",)):
        code, _, err = cli(*args, *extra)
        assert code == 2 and _one_line(err) and "another command's run directory" in err and "samples.csv" in err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_overwrite_with_a_setting_refused_at_load_keeps_the_earlier_run(cli, tmp_path, prompts_file):
    """overwrite=true starts again, but a setting that fails only when the models load (a scheduler class that
    does not exist) trained nothing: the earlier student and checkpoints must still be there."""
    out = tmp_path / "run"
    args = ("distill", "model=tiny_sd", f"prompts={prompts_file}", f"out={out}", "iterations=1", *SMALL)
    assert cli(*args)[0] == 0
    student = sorted(p.relative_to(out) for p in (out / "student").rglob("*"))
    code, _, err = cli(*args, "overwrite=true", "model.base.scheduler.class=NoSuchScheduler")
    assert code == 2 and "NoSuchScheduler" in err
    assert student and sorted(p.relative_to(out) for p in (out / "student").rglob("*")) == student
    assert (out / "checkpoints").is_dir() and (out / "log.csv").is_file()


def test_an_extension_refuses_prompts_or_a_teacher_changed_since(cli, tmp_path):
    """The config holds a prompts file's path and a teacher's folder, not what they hold: an extension after either
    changed would train on other inputs under the same run."""
    from diversity_cli.core.resources import asset

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\na blue square\n")
    args = ("distill", "model=tiny_sd", f"prompts={prompts}", f"out={tmp_path / 'p'}", "checkpoint_every=1", *SMALL)
    assert cli(*args, "iterations=1")[0] == 0
    prompts.write_text("two green triangles\n")
    code, _, err = cli(*args, "iterations=2")
    assert code == 2 and "other prompts" in err and _one_line(err)
    code, _, err = cli(*args, "iterations=1")  # finished: it said "nothing to do" over the old prompts' student
    assert code == 2 and "other prompts" in err and _one_line(err)
    teacher = tmp_path / "teacher"
    shutil.copytree(asset("toy/base/unet"), teacher)
    args = ("distill", "model=toy", f"prompts={prompts}", f"out={tmp_path / 't'}", "checkpoint_every=1",
            f"model.base.network.path={teacher}", *SMALL)  # fmt: skip
    assert cli(*args, "iterations=1")[0] == 0
    weights = teacher / "diffusion_pytorch_model.safetensors"
    shutil.copy(asset("toy/dmd_student") / weights.name, weights)  # the same folder, other weights
    code, _, err = cli(*args, "iterations=2")
    assert code == 2 and "other teacher" in err
    code, _, err = cli(*args, "iterations=1")
    assert code == 2 and "other teacher" in err
    shutil.copy(asset("toy/base/unet") / weights.name, weights)  # restored: the extension goes on
    assert cli(*args, "iterations=2")[0] == 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["distill=gan"], "unknown distill 'gan'"),
        (["method=gan"], "unknown method 'gan'; choose one of: dmd, dp_dmd"),
        (["method=dp_dmd"], "use distill=dp_dmd"),
        (["distill=dp_dmd", "method=dmd"], "would ignore them; choose the method by its group alone"),
        (["distill=dp_dmd", "anchor_k=0"], "anchor_k=0 is out of range"),
        (["distill=dp_dmd", "anchor_k=9"], "anchor_k=9 is out of range"),  # the teacher ODE's default: 8 steps
        (["distill=dp_dmd", "teacher_ode.steps=null"], "teacher_ode.steps=null leaves anchor_k without"),
        (["distill=dp_dmd", "teacher_ode.steps=2000"], "teacher_ode.steps=2000 is above the 1000 training timesteps"),
        # refused once the teacher has loaded: the run's lock file left in a new out= went with it
        (["distill=dp_dmd", "teacher_ode.overrides.timestep_spacing=bogus"], "teacher_ode.overrides: the teacher's"),
        (["distill=dp_dmd", "student_timesteps=[999]"], "at least 2 student_timesteps"),
        (["student_timesteps=[499,749]"], "strictly decreasing"),
        (["t_range=[0.5,0.2]"], "t_range"),
        (["iterations=0"], "iterations=0"),
        (["monitor.every=5"], "monitor.every=5 needs a toy pair"),  # its judge is the toy feature network
        (["monitor.every=-1"], "monitor.every is an integer >= 0"),
        (["monitor.every=1", "monitor.captions=1"], "monitor.captions is an integer >= 2"),
        (["gan.weight=5e-3"], "needs real images, which only toy pairs draw"),
        (["model=toy", "gan.weight=1", "gan.discriminator_weight=0"], "gan.discriminator_weight=0 must be > 0"),
        (["gan.weight=-1"], "gan.weight is a number >= 0"),
        (["model=sdxl_dmd2"], "stable-diffusion-xl-base-1.0"),  # a real pair: its weights are not here
    ],
)
def test_bad_input_is_one_line(cli, tmp_path, prompts_file, overrides, message):
    code, _, err = cli("distill", "model=tiny_sd", *overrides, f"prompts={prompts_file}", f"out={tmp_path / 'run'}")
    assert code == 2 and _one_line(err), err
    assert message in err
    assert not (tmp_path / "run").exists()


# -- the losses under autograd ------------------------------------------------------------------------------------


def _distiller(pair, method: str = "dmd", stop_gradient: bool = True, fake_seed: int = 0) -> Distiller:
    teacher = pair.base.network
    settings = DistillSettings(
        method=method,
        student_timesteps=TIMESTEPS,
        teacher_guidance=pair.base.guidance,
        anchor_k=1,
        lambda_div=0.05,
        stop_gradient=stop_gradient,
        ode_steps=2,
        ode_guidance=pair.base.guidance,
        ode_overrides={"timestep_spacing": "trailing", "set_alpha_to_one": True, "clip_sample": False},
    )
    fake = Distiller.copy_of(tiny.build_network("sd", seed=fake_seed))
    return Distiller(teacher, Distiller.copy_of(teacher), fake, dict(pair.base.scheduler.config), settings)


def test_dmd_surrogate_has_exactly_the_dmd_gradient():
    gen = torch.Generator().manual_seed(0)
    x, real, fake = (torch.randn(3, 4, 8, 8, generator=gen) for _ in range(3))
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(dmd_loss(x, dmd_gradient(x, real, fake)), x)
    for b in range(3):  # per sample: (fake - real) / mean |x - real|, and the mean reduction's 1/N
        expected = (fake[b] - real[b]) / (x[b].detach() - real[b]).abs().mean()
        torch.testing.assert_close(grad[b] * x.numel(), expected, rtol=1e-5, atol=1e-6)


def test_dmd_term_gradient_matches_teacher_and_fake_scores_computed_independently(tiny_pairs):
    pair = tiny_pairs("tiny_sd")
    distiller = _distiller(pair, fake_seed=1)  # a fake score unlike the teacher, so the gradient is not small
    cond = pair.encode(PROMPTS[:2])
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(2, *pair.latent_shape, generator=gen).requires_grad_(True)
    eps = torch.randn(2, *pair.latent_shape, generator=gen)
    t = torch.tensor([100, 700])
    (grad,) = torch.autograd.grad(distiller.dmd_term(x0, cond, t=t, eps=eps), x0)

    # The same quantities through the sampler's Denoiser (CFG as at inference), one sample at a time.
    sched = pair.base.scheduler
    teacher = Denoiser(pair.base)
    fake_spec = ModelSpec("fake", "fake", distiller.fake, sched, 1, 0.0)
    fake = Denoiser(fake_spec)
    for b in range(2):
        a = sched.alphas_cumprod[t[b]]
        x_t = a.sqrt() * x0[b : b + 1].detach() + (1 - a).sqrt() * eps[b : b + 1]
        kw = Conditioning(take_kwargs(cond.cond, [b]), take_kwargs(cond.uncond, [b]))
        with torch.no_grad():
            real_x0 = (x_t - (1 - a).sqrt() * teacher(x_t, t[b], kw)) / a.sqrt()
            fake_x0 = (x_t - (1 - a).sqrt() * fake(x_t, t[b], kw)) / a.sqrt()
        expected = (fake_x0 - real_x0) / (x0[b : b + 1].detach() - real_x0).abs().mean()
        torch.testing.assert_close(grad[b : b + 1] * x0.numel(), expected, rtol=1e-4, atol=1e-5)
    assert grad.abs().max() > 0


@pytest.mark.parametrize("step_index", [1, 2, 3])
def test_dp_dmd_stops_the_dmd_gradient_at_the_first_step(tiny_pairs, step_index):
    pair = tiny_pairs("tiny_sd")
    distiller = _distiller(pair, "dp_dmd")
    cond = pair.encode(PROMPTS[:2])
    noise = torch.randn(2, *pair.latent_shape, generator=torch.Generator().manual_seed(2))
    out = distiller.generator_losses(noise, cond, torch.Generator().manual_seed(3), step_index=step_index)
    assert out.step_index == step_index
    (dmd_to_first,) = torch.autograd.grad(out.dmd, out.first_x0, retain_graph=True, allow_unused=True)
    assert dmd_to_first is None  # no path at all from the DMD term back to the first step's output
    (first_to_first,) = torch.autograd.grad(out.first_step, out.first_x0, retain_graph=True)
    assert first_to_first.abs().sum() > 0
    params = [p for p in distiller.student.parameters() if p.requires_grad]
    dmd_to_student = torch.autograd.grad(out.dmd, params, allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in dmd_to_student)  # the DMD term does train the student


def test_first_step_floor_is_the_loss_of_the_best_constant_first_step(tiny_pairs):
    pair = tiny_pairs("tiny_sd")
    distiller = _distiller(pair, "dp_dmd")
    cond = pair.encode(PROMPTS[:3])
    noise = torch.randn(3, *pair.latent_shape, generator=torch.Generator().manual_seed(4))
    out = distiller.generator_losses(noise, cond, torch.Generator().manual_seed(5), step_index=1)
    s = distiller.settings
    target = teacher_anchor(pair.base.network, distiller.ode, s.ode_steps, s.anchor_k, noise, cond, s.ode_guidance)
    # The batch mean is the best constant in-sample; the floor corrects its optimism by n / (n - 1).
    in_sample = (target - target.mean(dim=0, keepdim=True)).pow(2).mean().item()
    assert out.first_step_floor.item() == pytest.approx(in_sample * 3 / 2, rel=1e-5)
    for other in (target.mean(dim=0, keepdim=True) + 0.05, target[:1], torch.zeros_like(target[:1])):
        assert (target - other).pow(2).mean().item() > in_sample
    assert out.first_step_floor.grad_fn is None  # a reference number, never trained
    one = distiller.generator_losses(noise[:1], pair.encode(PROMPTS[:1]), torch.Generator().manual_seed(5), 1)
    assert one.first_step_floor is None  # one sample cannot say how much the anchors vary


def test_without_stop_gradient_the_dmd_term_reaches_the_first_step(tiny_pairs):
    # The ablation, and the check that the test above could fail.
    pair = tiny_pairs("tiny_sd")
    distiller = _distiller(pair, "dp_dmd", stop_gradient=False)
    cond = pair.encode(PROMPTS[:2])
    noise = torch.randn(2, *pair.latent_shape, generator=torch.Generator().manual_seed(2))
    out = distiller.generator_losses(noise, cond, torch.Generator().manual_seed(3), step_index=2)
    (dmd_to_first,) = torch.autograd.grad(out.dmd, out.first_x0, allow_unused=True)
    assert dmd_to_first is not None and dmd_to_first.abs().sum() > 0


def test_dmd_trains_every_step_and_dp_dmd_all_but_the_first(tiny_pairs):
    pair = tiny_pairs("tiny_sd")
    assert list(_distiller(pair, "dmd").dmd_steps()) == [0, 1, 2, 3]
    assert list(_distiller(pair, "dp_dmd").dmd_steps()) == [1, 2, 3]
    with pytest.raises(ValueError):
        _distiller(pair, "dp_dmd").generator_losses(torch.zeros(1, *pair.latent_shape), None, None, step_index=0)


def test_teacher_anchor_at_the_last_step_is_the_teachers_own_ode_sample(tiny_pairs):
    """anchor_k = steps gives the teacher's deterministic sample: the toolkit's `base` method for the same noise."""
    from diversity_cli.sampling.plan import make_plan
    from diversity_cli.sampling.sampler import sample_generators, sample_latents

    pair = tiny_pairs("tiny_sd")
    cond = pair.encode(PROMPTS[:2])
    seeds = [5, 6]
    sampled = sample_latents(make_plan(pair, "base"), cond, seeds, pair.latent_shape)
    noise = torch.stack([torch.randn(pair.latent_shape, generator=g) for g in sample_generators(seeds)])
    ode = teacher_ode_scheduler(dict(pair.base.scheduler.config), {})  # tiny_sd's base is DDIM trailing already
    steps = pair.base.steps
    anchored = teacher_anchor(pair.base.network, ode, steps, steps, noise, cond, pair.base.guidance)
    torch.testing.assert_close(anchored, sampled, rtol=1e-4, atol=1e-4)
    early = teacher_anchor(pair.base.network, ode, steps, 1, noise, cond, pair.base.guidance)
    assert not torch.allclose(early, sampled, atol=1e-3)


def test_distills_a_local_diffusers_folder_pair_and_the_student_samples(cli, tmp_path, prompts_file, monkeypatch):
    """A pair loaded from local folders (the real-checkpoint code path, as the toy pair will be); the student it
    writes is then the distilled network of a pair that `generate` samples."""
    from diffusers import DDIMScheduler

    from diversity_cli.models.loading import TRAIN_SCHEDULE

    components = tiny.build_shared_components("sd", seed=0)
    scheduler = DDIMScheduler.from_config(TRAIN_SCHEDULE)
    pipe = tiny.pipeline_class("sd")(**components, unet=tiny.build_network("sd", seed=0), scheduler=scheduler)
    pipe.save_pretrained(tmp_path / "base")
    conf = tmp_path / "conf"
    shutil.copytree(Path(distill.__file__).resolve().parents[2] / "conf", conf)
    base = tmp_path / "base"
    (conf / "model" / "local.yaml").write_text(
        f"""name: local
family: sd
resolution: 32
dtype: float32
components: {{path: {base}}}
base:
  label: local base
  network: {{path: {base / "unet"}}}
  scheduler: {{class: DDIMScheduler, overrides: {{timestep_spacing: trailing, set_alpha_to_one: true}}}}
  steps: 4
  guidance: 3.0
distilled:
  label: local student
  network: {{path: {base / "unet"}}}   # a placeholder: generate points it at the student below
  scheduler: {{class: LCMScheduler}}
  steps: 4
  timesteps: {TIMESTEPS}
  guidance: 0.0
"""
    )
    monkeypatch.setenv("DIVERSITY_CLI_CONF", str(conf))
    code, _, err = cli(
        "distill", "model=local", f"prompts={prompts_file}", f"out={tmp_path / 'run'}", "iterations=1", *SMALL
    )
    assert code == 0, err
    student = f"model.distilled.network.path={tmp_path / 'run' / 'student'}"
    code, _, err = cli(
        "generate", "model=local", student, "method=hybrid", "prompt=a red circle", "n=1", f"out={tmp_path}/gen"
    )
    assert code == 0, err
    assert list((tmp_path / "gen").rglob("*.png"))
    # the run README's command, pasted as it is (it lacked the label a pair needs and the base's scheduler config)
    import shlex

    readme = (tmp_path / "run" / "README.md").read_text()
    command = readme.split("```bash\n")[1].split("```")[0].replace("\\\n", " ")
    program, subcommand, *pasted = shlex.split(command)
    assert (program, subcommand) == ("diversity-cli", "generate")
    code, _, err = cli(subcommand, *pasted, "method=distilled", "prompt=a red circle", "n=1", f"out={tmp_path}/pasted")
    assert code == 0, err
    section = OmegaConf.create(readme.split("```yaml\n")[1].split("```")[0]).distilled
    assert section.label and section.network.path == str(tmp_path / "run" / "student")


def test_the_cards_command_pairs_the_student_with_the_teacher_it_was_distilled_from(cli, tmp_path, prompts_file):
    """A student of a teacher given on distill's command line: the card's command dropped it, so generate paired the
    student with the base of the pair's config file."""
    import json
    import shlex

    from diversity_cli.core.resources import asset

    teacher = Path(shutil.copytree(asset("toy/base/unet"), tmp_path / "teacher"))
    run = tmp_path / "run"
    code, _, err = cli("distill", "model=toy", f"model.base.network.path={teacher}", f"prompts={prompts_file}",
                       f"out={run}", "iterations=1", *SMALL)  # fmt: skip
    assert code == 0, err
    readme = (run / "README.md").read_text()
    assert "with the base and components it was distilled from" in readme
    command = readme.split("```bash\n")[1].split("```")[0].replace("\\\n", " ")
    _, subcommand, *pasted = shlex.split(command)
    assert f"model.base.network.path={teacher}" in pasted
    out = tmp_path / "gen"
    code, _, err = cli(subcommand, *pasted, "method=hybrid", "prompt=a red circle", "n=1", f"out={out}")
    assert code == 0, err
    (record,) = [json.loads(path.read_text()) for path in (out / "runs").glob("*.json")]
    assert record["models"]["base"]["path"] == str(teacher.resolve())


def test_teacher_ode_is_ddim_trailing_even_from_another_schedulers_config():
    # A DPM-Solver config (PixArt's base) marks timestep_spacing as a default it took; the ODE must still be
    # DDIM with the trailing spacing asked for, starting at the student's first timestep.
    from diffusers import DPMSolverMultistepScheduler

    from diversity_cli.models.loading import TRAIN_SCHEDULE

    config = DPMSolverMultistepScheduler.from_config(TRAIN_SCHEDULE).config
    assert "timestep_spacing" in config["_use_default_values"]
    ode = teacher_ode_scheduler(dict(config), {"timestep_spacing": "trailing", "set_alpha_to_one": True})
    ode.set_timesteps(8)
    assert type(ode).__name__ == "DDIMScheduler" and int(ode.timesteps[0]) == 999


def _zero_snr_v_config(pair) -> dict:
    """The tiny pair's schedule rescaled to zero terminal SNR, for a v-prediction teacher (the toy base's setting)."""
    from diffusers.schedulers.scheduling_ddpm import rescale_zero_terminal_snr

    config = dict(pair.base.scheduler.config)
    betas = rescale_zero_terminal_snr(DDPMScheduler.from_config(config).betas.double())
    return {**config, "prediction_type": "v_prediction", "trained_betas": betas.tolist()}


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_fake_score_learns_in_its_teachers_parameterisation(tiny_pairs, prediction_type, monkeypatch):
    """The fake score's loss is the MSE to the target of the teacher's own parameterisation. For a v-prediction
    teacher at zero terminal SNR the ε form is blind at t=999 (ε̂ = x_t exactly, whatever the network says);
    the v form still trains the fake score there."""
    pair = tiny_pairs("tiny_sd")
    distiller = _distiller(pair, fake_seed=1)
    if prediction_type == "v_prediction":
        distiller = Distiller(
            distiller.teacher, distiller.student, distiller.fake, _zero_snr_v_config(pair), distiller.settings
        )
    gen = torch.Generator().manual_seed(3)
    x0 = torch.randn(2, *pair.latent_shape, generator=gen)
    cond = pair.encode(PROMPTS[:2])
    t = torch.tensor([999, 300])
    eps = torch.randn(2, *pair.latent_shape, generator=gen)
    monkeypatch.setattr(distiller, "draw_timesteps", lambda *_: t)
    monkeypatch.setattr(distiller, "draw_noise", lambda *_: eps)
    loss = distiller.fake_loss(x0, cond, gen)

    a = distiller.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    noisy = a.sqrt() * x0 + (1 - a).sqrt() * eps
    with torch.no_grad():
        out = distiller.fake(noisy, t, **cond.cond, return_dict=False)[0]
    target = eps if prediction_type == "epsilon" else a.sqrt() * eps - (1 - a).sqrt() * x0
    torch.testing.assert_close(loss.detach(), (out - target).pow(2).mean(), rtol=1e-5, atol=1e-6)
    if prediction_type == "v_prediction":
        assert float(a[0]) == 0.0  # t=999 is pure noise, and its target is -x0
        torch.testing.assert_close(target[0], -x0[0])
    (grad,) = torch.autograd.grad(loss, next(distiller.fake.parameters()))
    assert grad.abs().max() > 0


def test_the_run_readme_command_pastes_back_into_a_shell(monkeypatch):
    import shlex

    from diversity_cli.core.config import compose

    argv = ["/venv/bin/diversity-cli", "distill", "model=tiny_sd", "prompt=a red circle", "overwrite=true"]
    monkeypatch.setattr("sys.argv", argv)
    line = distill.command_line(compose("distill", ["model=tiny_sd"]))
    # without overwrite=true: pasted back into its out=, it deleted the run it describes
    assert shlex.split(line) == ["diversity-cli", "distill", "model=tiny_sd", "prompt=a red circle"]
    monkeypatch.setattr("sys.argv", ["python"])  # called as a library: the differences from the defaults
    assert "overwrite" not in distill.command_line(compose("distill", ["model=tiny_sd", "overwrite=true"]))


def test_the_students_readme_names_its_training_prompts(cli, tmp_path):
    """Without prompt= or prompts= a toy student trained on the pair's default prompt alone, which only the config
    dump at the end of its README said."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle\ntwo triangles\na blue square\na shape on the left\n")
    out = tmp_path / "run"
    code, _, err = cli("distill", "model=tiny_sd", f"prompts={prompts}", f"out={out}", "iterations=1", *SMALL)
    assert code == 0, err
    assert (
        f"- training prompts from `{prompts}`: 4 ('a red circle', 'two triangles', 'a blue square' and 1 more)"
        in (out / "README.md").read_text()
    )


def test_a_tiny_students_readme_offers_no_first_step_check_it_would_refuse(cli, tmp_path, prompts_file):
    """The check's command set a network path on a tiny pair, which builds its networks in memory: refused."""
    out = tmp_path / "run"
    args = ("distill", "model=tiny_sd", "distill=dp_dmd", f"prompts={prompts_file}", "iterations=1", f"out={out}")
    assert cli(*args, *SMALL)[0] == 0
    readme = (out / "README.md").read_text()
    assert "experiments.first_step" not in readme and "not on a tiny pair, built in memory" in readme, readme


def test_toy_training_prompts_outside_the_toy_language_are_noted(cli, tmp_path):
    """generate and diversity noted such words; distill trained a student on "a hexagon" without a word."""
    out = tmp_path / "run"
    code, _, err = cli("distill", "model=toy", "prompts=[a hexagon, a circle]", "iterations=1", f"out={out}")
    assert code == 0, err
    said = "note: 1 of 2 training prompts has words outside the toy language (hexagon): the toy's models never"
    assert said in " ".join(err.split()), err
    # before the training it is about: said after it, an interrupted run never showed it
    assert err.index("outside the toy language") < err.index("student saved to"), err
    # a refusal is one line still: the note came before distill refused another command's run directory
    made = tmp_path / "generated"
    assert cli("generate", "model=toy", "method=base", "prompt=a circle", "n=1", f"out={made}")[0] == 0
    code, _, err = cli("distill", "model=toy", "prompts=[a hexagon, a circle]", "iterations=1", f"out={made}")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "hexagon" not in err, err


@pytest.mark.parametrize("setting", ["gan.mismatched=true", "gan.discriminator_weight=0.5"])
def test_a_gan_setting_without_the_gan_term_is_refused(cli, tmp_path, prompts_file, setting):
    """Accepted silently with gan.weight=0, under a README that said "no GAN term"."""
    out = tmp_path / "run"
    code, _, err = cli("distill", "model=tiny_sd", f"prompts={prompts_file}", f"out={out}", "iterations=1", setting)
    assert code == 2 and f"{setting} applies with gan.weight > 0 only" in err, err
    assert not out.exists()


def test_a_config_without_a_gan_section_is_no_gan_term():
    """A library caller's config may have no gan section: that is no GAN term, not a refused gan setting."""
    from omegaconf import OmegaConf

    from diversity_cli.training.distill import gan_settings

    cfg = OmegaConf.create({"model": {"name": "toy"}})
    assert gan_settings(cfg) == {"gan_weight": 0.0, "gan_discriminator_weight": 0.0, "gan_mismatched": False}


def test_a_flow_matching_pair_is_refused_before_anything_loads(cli, tmp_path):
    """distill model=tiny_flux was a KeyError traceback ('prediction_type') after the pair had loaded."""
    out = tmp_path / "run"
    code, _, err = cli("distill", "model=tiny_flux", "iterations=1", "prompt=a cat", f"out={out}")
    assert code == 2 and "flow-matching pairs are not supported" in err and "Traceback" not in err, err
    assert not out.exists()
