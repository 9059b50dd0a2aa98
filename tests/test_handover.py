"""Hand-overs between scheduler conventions, checked against a denoiser that is exact in closed form.

For data x0 ~ N(m, s²) (every latent element independent) the optimal ε-prediction at VP level ᾱ is
E[ε | x] = √(1-ᾱ) (x - √ᾱ m) / v with v = ᾱ s² + 1 - ᾱ, and what each sampler does to a Gaussian latent is
known exactly: the probability-flow ODE (Euler, many steps) maps x - √ᾱ m by √(v_to / v_from); an LCM step keeps
the posterior mean x̂0 = m + (√ᾱ s² / v)(x - √ᾱ m) and re-noises it. The sampler, whichever scheduler family
(Euler: sigma space; LCM: alpha space) runs which part of the trajectory, must match that prediction. A
hand-over that skipped or botched the change of convention scales the latent by ~1/√ᾱ and is far off.
These are distribution-level checks: a hand-over that swapped in fresh noise of the right spread would pass them;
test_handover_exact.py checks every sample against the trajectory it continues.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from diffusers import EulerDiscreteScheduler, LCMScheduler

from diversity_cli.models.loading import TRAIN_SCHEDULE
from diversity_cli.models.pair import Conditioning, ModelPair, ModelSpec
from diversity_cli.sampling import sampler
from diversity_cli.sampling.plan import Plan, make_plan
from diversity_cli.sampling.sampler import handover, run_segment, sample_generators, sample_latents

MEAN, STD = 1.5, 0.5
SHAPE = (4, 32, 32)
SEEDS = list(range(16))  # 16 x 4096 values per statistic
STUDENT_TIMESTEPS = [999, 749, 499, 249, 99, 39, 9]
ALPHAS = LCMScheduler.from_config(TRAIN_SCHEDULE).alphas_cumprod.double()
NO_TEXT = Conditioning({"encoder_hidden_states": None}, {"encoder_hidden_states": None})


class GaussianEps(torch.nn.Module):
    """Exact ε-prediction for Gaussian data, with a diffusers network's call signature."""

    def __init__(self):
        super().__init__()
        self.config = SimpleNamespace(in_channels=SHAPE[0], time_cond_proj_dim=None, sample_size=SHAPE[1])

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def forward(self, sample, timestep, return_dict=False, **_):
        alpha_bar = ALPHAS[timestep.round().long()].float().view(-1, 1, 1, 1)
        a, b = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
        return (b * (sample - a * MEAN) / (alpha_bar * STD**2 + 1 - alpha_bar),)


@pytest.fixture(scope="module")
def pair() -> ModelPair:
    euler = EulerDiscreteScheduler.from_config({**TRAIN_SCHEDULE, "timestep_spacing": "trailing"})
    lcm = LCMScheduler.from_config(TRAIN_SCHEDULE)
    network = GaussianEps()
    base = ModelSpec("base", "Euler base", network, euler, steps=100, guidance=0.0)
    student = ModelSpec("distilled", "LCM student", network, lcm, steps=7, guidance=0.0, timesteps=STUDENT_TIMESTEPS)
    return ModelPair("gaussian", "sd", None, base, student, 32, 32, torch.device("cpu"), torch.float32)


def _level(t: int) -> tuple[float, float]:
    alpha_bar = 1.0 if t == 0 else float(ALPHAS[t])  # t = 0 here means "clean", after the last step
    return math.sqrt(alpha_bar), alpha_bar * STD**2 + 1 - alpha_bar


def _flow(mean: float, var: float, t_from: int, t_to: int) -> tuple[float, float]:
    a, v = _level(t_from)
    a_to, v_to = _level(t_to)
    gain = math.sqrt(v_to / v)
    return a_to * MEAN + gain * (mean - a * MEAN), gain**2 * var


def _posterior_mean(mean: float, var: float, t: int) -> tuple[float, float]:
    a, v = _level(t)
    gain = a * STD**2 / v
    return MEAN + gain * (mean - a * MEAN), gain**2 * var


def predicted(plan: Plan, upto: int | None = None) -> tuple[float, float, int]:
    """(mean, std, level) of the VP latent after the plan's segments[:upto], from the standard N(0, 1) start."""
    mean, var = 0.0, 1.0
    level = plan.segments[0].timesteps[0]
    for segment in plan.segments[:upto]:
        if isinstance(segment.scheduler, EulerDiscreteScheduler):
            # The ODE flow between levels; Euler's last step to σ = 0 lands exactly on the posterior mean.
            last = segment.timesteps[-1] if segment.end_timestep == 0 else segment.end_timestep
            mean, var = _flow(mean, var, level, last)
            if segment.end_timestep == 0:
                mean, var = _posterior_mean(mean, var, last)
        else:  # LCM: posterior mean, then fresh noise at the next level
            for t, t_next in zip(segment.timesteps, segment.timesteps[1:] + [segment.end_timestep], strict=True):
                mean, var = _posterior_mean(mean, var, t)
                if t_next:
                    a_next, _ = _level(t_next)
                    mean, var = a_next * mean, a_next**2 * var + 1 - a_next**2
        level = segment.end_timestep
    return mean, math.sqrt(var), level


def _stats(x: torch.Tensor) -> tuple[float, float]:
    return x.mean().item(), x.std().item()


CASES = [
    ("base", {}),  # Euler alone
    ("distilled", {}),  # LCM alone
    ("hybrid", dict(k=1, base_steps=10)),  # Euler (sigma space) hands over to LCM (alpha space) at 749
    ("hybrid", dict(k=4, base_steps=40)),  # ... at 99
    ("replace_final", dict(k=6, base_steps=40)),  # LCM hands over to Euler at 749
    ("replace_final", dict(k=3, base_steps=30)),  # ... at 99
]


@pytest.mark.parametrize(("method", "knobs"), CASES)
def test_final_samples_match_the_closed_form(pair, method, knobs):
    plan = make_plan(pair, method, **knobs)
    mean, std, _ = predicted(plan)
    got_mean, got_std = _stats(sample_latents(plan, NO_TEXT, SEEDS, SHAPE))
    assert got_mean == pytest.approx(mean, abs=0.02)
    assert got_std == pytest.approx(std, rel=0.03)


@pytest.mark.parametrize(("method", "knobs"), [case for case in CASES if case[0] in ("hybrid", "replace_final")])
def test_latent_right_after_the_handover_is_in_the_next_schedulers_convention(pair, method, knobs):
    plan = make_plan(pair, method, **knobs)
    first, second = plan.segments
    assert type(first.scheduler) is not type(second.scheduler)
    generators = sample_generators(SEEDS)
    x = torch.stack([torch.randn(SHAPE, generator=g) for g in generators]) * first.scheduler.init_noise_sigma
    sampler._begin(first)
    x = handover(run_segment(first, x, NO_TEXT, generators), first, second)
    mean, std, level = predicted(plan, upto=1)
    if isinstance(second.scheduler, EulerDiscreteScheduler):  # sigma space holds x_vp · √(σ²+1) = x_vp / √ᾱ
        a, _ = _level(level)
        mean, std = mean / a, std / a
    got_mean, got_std = _stats(x)
    assert got_mean == pytest.approx(mean, rel=0.03, abs=0.01)
    assert got_std == pytest.approx(std, rel=0.03)


def test_a_handover_without_conversion_is_caught(pair, monkeypatch):
    monkeypatch.setattr(sampler, "handover", lambda x, before, after: (sampler._begin(after), x)[1])
    plan = make_plan(pair, "replace_final", k=6, base_steps=40)
    mean, std, _ = predicted(plan)
    got_mean, got_std = _stats(sample_latents(plan, NO_TEXT, SEEDS, SHAPE))
    assert abs(got_mean - mean) > 0.1 or abs(got_std / std - 1) > 0.1
