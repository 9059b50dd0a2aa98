"""Run a sampling plan: per-sample seeded noise, the segments in order, exact hand-overs between schedulers."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
from diffusers import SchedulerMixin

from ..models.adapter_pair import activate
from ..models.pair import Conditioning
from .denoiser import convert_prediction
from .flow import FlowPlan, sample_flow
from .plan import Plan, Segment

# on_step(role, step_index, timestep, x_t, x0): x_t the variance-preserving model input of the step, x0 the
# model's prediction of the clean latent at that step (the "diffusion target").
StepCallback = Callable[[str, int, int, torch.Tensor, torch.Tensor], None]


class NetworkTimer:
    """Seconds spent inside denoising-network calls (both models, every step), for `network_seconds`: the
    part of an image's time that the method changes, without text encoding and VAE decoding. On CUDA the
    device is synchronised around each call so queued kernels are counted where they run."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.cuda = torch.device(device).type == "cuda"
        self.seconds = 0.0
        self.calls = 0

    def __call__(self, call: Callable[[], torch.Tensor]) -> torch.Tensor:
        self._sync()
        began = time.perf_counter()
        out = call()
        self._sync()
        self.seconds += time.perf_counter() - began
        self.calls += 1
        return out

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()


def sample_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per sample: the image for a seed is the same whatever the batch it lands in."""
    return [torch.Generator("cpu").manual_seed(int(seed)) for seed in seeds]


@torch.no_grad()
def sample_latents(
    plan: Plan | FlowPlan,
    conditioning: Conditioning,
    seeds: Sequence[int],
    shape: tuple[int, ...],
    device: torch.device | str = "cpu",
    on_step: StepCallback | None = None,
    timer: NetworkTimer | None = None,
) -> torch.Tensor:
    """Clean latents for one batch (one seed per sample), following `plan`. `timer` (optional) accumulates
    the seconds spent in network calls."""
    generators = sample_generators(seeds)
    conditioning = replace(conditioning, seeds=tuple(int(seed) for seed in seeds))  # each sample's row in a call
    if isinstance(plan, FlowPlan):  # flow-matching pairs: Euler in σ-space, no conversion at hand-overs
        return sample_flow(plan, conditioning, generators, shape, device, on_step, timer)
    plan = _with_fresh_schedulers(plan)
    noise = torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device)
    first = plan.segments[0]
    _begin(first)
    if plan.skip_first and plan.skip_noise == "scaled":
        # No signal, only noise at the first visited level: x_vp = sqrt(1 - ᾱ_t) ε.
        alpha_bar = first.scheduler.alphas_cumprod[first.timesteps[0]]
        x = from_vp(first.scheduler, (1 - alpha_bar).sqrt().to(noise) * noise, first)
    else:  # a pipeline's start, also skip_first's "unit" noise (the paper's skip step)
        x = noise * first.scheduler.init_noise_sigma
    for previous, segment in zip(plan.segments, plan.segments[1:], strict=False):
        x = run_segment(previous, x, conditioning, generators, on_step, timer)
        x = handover(x, previous, segment)
    return run_segment(plan.segments[-1], x, conditioning, generators, on_step, timer)


def _with_fresh_schedulers(plan: Plan) -> Plan:
    """The plan with its own copies of the plan's schedulers (one copy per scheduler, so segments that share one
    still share it). LCM, Euler and DPM-Solver keep their position in the schedule, and DPM-Solver its past
    outputs, inside the scheduler: stepping the plan's own would start a second batch where the first ended."""
    copies: dict[int, SchedulerMixin] = {}
    for segment in plan.segments:
        if id(segment.scheduler) not in copies:
            copies[id(segment.scheduler)] = copy.deepcopy(segment.scheduler)
    return replace(plan, segments=[replace(s, scheduler=copies[id(s.scheduler)]) for s in plan.segments])


def run_segment(
    segment: Segment,
    x: torch.Tensor,
    conditioning: Conditioning,
    generators: list[torch.Generator],
    on_step: StepCallback | None = None,
    timer: NetworkTimer | None = None,
) -> torch.Tensor:
    sched = segment.scheduler
    target = sched.config.prediction_type
    activate(segment.denoiser.spec)  # adapter-distilled pairs: one toggle per segment, not per step
    for index in range(segment.start, segment.stop):
        t = sched.timesteps[index]
        model_input = sched.scale_model_input(x, t)
        if timer is None:
            out = segment.denoiser(model_input, t, conditioning)
        else:
            out = timer(lambda model_input=model_input, t=t: segment.denoiser(model_input, t, conditioning))
        alpha_bar = sched.alphas_cumprod[int(round(float(t)))]
        if segment.denoiser.spec.prediction_type != target:
            out = convert_prediction(out, model_input, alpha_bar, segment.denoiser.spec.prediction_type, target)
        result = sched.step(out, t, x, generator=generators, return_dict=True)
        x = result.prev_sample
        if on_step is not None:
            x0 = predicted_x0(result)
            if x0 is None:  # DPM-Solver keeps its x̂0 to itself; it is the same function of the prediction
                x0 = convert_prediction(out, model_input, alpha_bar, target, "sample")
            on_step(segment.role, index, int(round(float(t))), model_input, x0)
    return x


def handover(x: torch.Tensor, before: Segment, after: Segment) -> torch.Tensor:
    """Move a latent from one segment to the next at their shared noise level: unchanged when both step one
    scheduler (the base on the student's schedule), else from one scheduler's convention to the other's.

    Sigma-space schedulers (Euler family) keep x = x0 + σε and scale it by 1/sqrt(σ²+1) before the network;
    alpha-space ones (DDIM, DDPM, LCM, DPM-Solver) keep x = √ᾱ·x0 + √(1-ᾱ)·ε unscaled. Each scheduler's own
    `scale_model_input` is the map to the common variance-preserving form, so it is used both ways.
    """
    if after.scheduler is before.scheduler:
        return x
    t = before.end_timestep
    vp = before.scheduler.scale_model_input(x, t)
    _begin(after)
    return from_vp(after.scheduler, vp, after)


def from_vp(sched: SchedulerMixin, vp: torch.Tensor, segment: Segment) -> torch.Tensor:
    t = sched.timesteps[segment.start]
    scale = sched.scale_model_input(torch.ones(1, dtype=torch.float32, device=vp.device), t)
    return vp / scale.to(vp)


def predicted_x0(step_output) -> torch.Tensor | None:
    """The scheduler's x̂0 for this step: LCM calls it `denoised`, most others `pred_original_sample`."""
    for name in ("denoised", "pred_original_sample"):
        value = getattr(step_output, name, None)
        if value is not None:
            return value
    return None


def _begin(segment: Segment) -> None:
    # Stateful schedulers (Euler, LCM, DPM-Solver) must know where in their schedule the segment starts.
    if hasattr(segment.scheduler, "set_begin_index"):
        segment.scheduler.set_begin_index(segment.start)
