"""Hand-overs, sample by sample: the latent the second model of a plan receives must be the first model's own
trajectory at the hand-over timestep, moved into the second scheduler's convention, for every sample.

The reference trajectory is computed here with a pipeline-style loop on a fresh scheduler whose own
`prediction_type` is the model's, so diffusers itself reads the model's ε or v output; the sampler instead runs the
model on the schedule's scheduler and converts the prediction. Both draw step noise from the same per-sample
generators, so stochastic samplers (Euler ancestral, LCM) match exactly too; the correlation check stands in for
the looser statement "the same latent, up to rounding". Two broken samplers are kept as mutants: one that skips the
ε/v conversion and one that substitutes fresh noise (each sample's mean and spread kept) at the hand-over; the
distribution-level checks in test_handover.py pass the second one, these checks fail both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
)

from diversity_cli.models.loading import TRAIN_SCHEDULE
from diversity_cli.models.pair import ModelPair
from diversity_cli.sampling import sampler
from diversity_cli.sampling.denoiser import Denoiser
from diversity_cli.sampling.plan import Plan, Segment, accepts_timesteps, make_plan
from diversity_cli.sampling.sampler import sample_generators, sample_latents

SEEDS = [3, 4, 5]
SIGMA_SPACE = (EulerDiscreteScheduler, EulerAncestralDiscreteScheduler)  # keep x0 + σε; the rest √ᾱ x0 + √(1-ᾱ) ε
SCHEDULERS = {
    "ddim": lambda **kw: DDIMScheduler.from_config(
        {**TRAIN_SCHEDULE, "timestep_spacing": "trailing", "set_alpha_to_one": True, **kw}
    ),
    "euler": lambda **kw: EulerDiscreteScheduler.from_config({**TRAIN_SCHEDULE, "timestep_spacing": "trailing", **kw}),
    "euler_a": lambda **kw: EulerAncestralDiscreteScheduler.from_config(
        {**TRAIN_SCHEDULE, "timestep_spacing": "trailing", **kw}
    ),
    "dpmpp": lambda **kw: DPMSolverMultistepScheduler.from_config({**TRAIN_SCHEDULE, **kw}),
    "lcm": lambda **kw: LCMScheduler.from_config({**TRAIN_SCHEDULE, **kw}),
}
STUDENT_TIMESTEPS = {"lcm": [999, 749, 499, 249], "euler": None, "euler_a": None}  # trailing: 999, 749, 499, 249


def variant(pair: ModelPair, base: str, student: str, base_pred: str = "epsilon", student_pred: str = "epsilon"):
    """The pair with the base on scheduler `base` and the student on `student`, each read as predicting the
    given quantity (the random tiny networks predict whatever they are declared to)."""
    base_spec = dataclasses.replace(pair.base, scheduler=SCHEDULERS[base](prediction_type=base_pred))
    student_spec = dataclasses.replace(
        pair.distilled,
        scheduler=SCHEDULERS[student](prediction_type=student_pred),
        steps=4,
        timesteps=STUDENT_TIMESTEPS[student],
    )
    return dataclasses.replace(pair, base=base_spec, distilled=student_spec)


def reference_trajectory(pair: ModelPair, segment: Segment, conditioning, noise, generators) -> torch.Tensor:
    """`segment`'s model alone over `segment`'s timesteps, on a fresh scheduler of the same class and schedule
    that reads the model's own prediction type: a pipeline's loop, without the sampler's conversions."""
    spec = pair.spec(segment.role)
    sched = type(segment.scheduler).from_config(segment.scheduler.config, prediction_type=spec.prediction_type)
    if accepts_timesteps(sched):
        sched.set_timesteps(timesteps=[int(round(float(t))) for t in segment.scheduler.timesteps])
    else:
        sched.set_timesteps(len(segment.scheduler.timesteps))
    assert torch.equal(sched.timesteps, segment.scheduler.timesteps)
    if hasattr(sched, "set_begin_index"):
        sched.set_begin_index(segment.start)
    network = Denoiser(spec, guidance=segment.denoiser.guidance)
    x = noise * sched.init_noise_sigma
    for t in sched.timesteps[segment.start : segment.stop]:
        out = network(sched.scale_model_input(x, t), t, conditioning)
        x = sched.step(out, t, x, generator=generators).prev_sample
    return x


def to_vp(sched, x: torch.Tensor, t: int) -> torch.Tensor:
    """The variance-preserving form √ᾱ x0 + √(1-ᾱ) ε of a latent in `sched`'s convention at timestep t."""
    alpha_bar = sched.alphas_cumprod[t].to(x.dtype)
    return x * alpha_bar.sqrt() if isinstance(sched, SIGMA_SPACE) else x


def check_handover(pair: ModelPair, make_plan_: Callable[[], Plan]) -> None:
    """Per sample: the second model's first network input equals the first model's own trajectory at the
    hand-over timestep in variance-preserving form (the exact affine map of each convention), and the latent
    handed over is that same trajectory in the second scheduler's convention. `make_plan_` builds the plan
    (twice: schedulers keep step state, so the reference gets a fresh one)."""
    plan, reference = make_plan_(), make_plan_()
    first, second = plan.segments[0], plan.segments[1]
    t_h = first.end_timestep
    conditioning = pair.encode(["a red circle"] * len(SEEDS))
    inputs, handed = {}, []
    handover = sampler.handover  # the sampler's own, or a mutant in its place

    def spy(x, before, after):
        handed.append(handover(x, before, after))
        return handed[-1]

    def on_step(role, index, t, x_in, x0):
        inputs.setdefault((role, t), x_in)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sampler, "handover", spy)
        sample_latents(plan, conditioning, SEEDS, pair.latent_shape, on_step=on_step)
    got_input = inputs[(second.role, t_h)]

    generators = sample_generators(SEEDS)
    noise = torch.stack([torch.randn(pair.latent_shape, generator=g) for g in generators])
    x_ref = reference_trajectory(pair, reference.segments[0], conditioning, noise, generators)
    expected_vp = to_vp(first.scheduler, x_ref, t_h)
    alpha_bar = second.scheduler.alphas_cumprod[t_h]
    expected_latent = expected_vp / alpha_bar.sqrt() if isinstance(second.scheduler, SIGMA_SPACE) else expected_vp
    for i in range(len(SEEDS)):
        torch.testing.assert_close(got_input[i], expected_vp[i], rtol=2e-4, atol=2e-5)
        torch.testing.assert_close(handed[0][i], expected_latent[i], rtol=2e-4, atol=2e-5)
        corr = torch.corrcoef(torch.stack([got_input[i].flatten(), expected_vp[i].flatten()]))[0, 1]
        assert corr > 1 - 1e-6


SCHEDULER_PAIRS = [(base, student) for base in ("ddim", "euler", "euler_a", "dpmpp") for student in STUDENT_TIMESTEPS]


@pytest.mark.parametrize(("base", "student"), SCHEDULER_PAIRS)
def test_hybrid_hands_over_the_base_trajectory_between_schedulers(tiny_pairs, base, student):
    pair = variant(tiny_pairs("tiny_sd"), base, student)
    # the base on its own scheduler, 999 and 874, hands over at 749
    check_handover(pair, lambda: make_plan(pair, "hybrid", k=1, base_steps=2))


@pytest.mark.parametrize(("base", "student"), [("euler", "lcm"), ("ddim", "euler"), ("dpmpp", "euler_a")])
def test_replace_final_hands_over_the_student_trajectory(tiny_pairs, base, student):
    pair = variant(tiny_pairs("tiny_sd"), base, student)
    check_handover(pair, lambda: make_plan(pair, "replace_final", k=2, base_steps=2))  # hands over at 499


PREDICTION_PAIRS = [("epsilon", "epsilon"), ("v_prediction", "epsilon"), ("epsilon", "v_prediction")]


@pytest.mark.parametrize("student", list(STUDENT_TIMESTEPS))
@pytest.mark.parametrize(("base_pred", "student_pred"), PREDICTION_PAIRS)
def test_base_on_the_students_schedule_across_prediction_types(tiny_pairs, student, base_pred, student_pred):
    """The paper's hybrid: the base steps the student's own scheduler, its ε or v re-expressed for it."""
    pair = variant(tiny_pairs("tiny_sd"), "euler", student, base_pred, student_pred)
    check_handover(pair, lambda: make_plan(pair, "hybrid", k=2))


@pytest.mark.parametrize("name", ["tiny_sdxl", "tiny_pixart"])
def test_other_families_hand_over_exactly(tiny_pairs, name):
    pair = tiny_pairs(name)  # their own configs: Euler -> LCM (SDXL), DPM-Solver -> LCM (PixArt)
    check_handover(pair, lambda: make_plan(pair, "hybrid", k=1, base_steps=2))
    check_handover(pair, lambda: make_plan(pair, "hybrid", k=1))


# ---- mutants: each broken sampler must fail the checks above ----------------------------------------------------


def _skip_conversion(out, x, alpha_bar, source, target):
    return out


def _fresh_noise_handover(real):
    def handover(x, before, after):
        y = real(x, before, after)
        z = torch.randn(y.shape, generator=torch.Generator().manual_seed(1234)).to(y)
        mean, std = y.mean(dim=(1, 2, 3), keepdim=True), y.std(dim=(1, 2, 3), keepdim=True)
        return mean + std * (z - z.mean(dim=(1, 2, 3), keepdim=True)) / z.std(dim=(1, 2, 3), keepdim=True)

    return handover


@pytest.mark.parametrize(("base_pred", "student_pred"), PREDICTION_PAIRS[1:])
def test_mutant_that_skips_the_prediction_conversion_is_caught(tiny_pairs, monkeypatch, base_pred, student_pred):
    pair = variant(tiny_pairs("tiny_sd"), "euler", "lcm", base_pred, student_pred)
    check_handover(pair, lambda: make_plan(pair, "hybrid", k=1))  # the real sampler passes
    monkeypatch.setattr(sampler, "convert_prediction", _skip_conversion)
    with pytest.raises(AssertionError):
        check_handover(pair, lambda: make_plan(pair, "hybrid", k=1))


@pytest.mark.parametrize(("base", "student", "base_steps"), [("euler", "lcm", 2), ("ddim", "lcm", None)])
def test_mutant_that_substitutes_fresh_noise_at_the_handover_is_caught(
    tiny_pairs, monkeypatch, base, student, base_steps
):
    pair = variant(tiny_pairs("tiny_sd"), base, student)
    monkeypatch.setattr(sampler, "handover", _fresh_noise_handover(sampler.handover))
    with pytest.raises(AssertionError):
        check_handover(pair, lambda: make_plan(pair, "hybrid", k=1, base_steps=base_steps))
