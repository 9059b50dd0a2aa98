"""Sampling flow-matching pairs in σ-space, in the k-diffusion shape: a denoiser, an Euler sampler over σ.

Flow models share one latent convention, x_σ = (1-σ)·x0 + σ·ε, and their networks predict v = ε - x0, so
x̂0 = x - σ·v and an Euler step is x ← x + (σ' - σ)·v (the same as k-diffusion's x + (σ' - σ)·(x - x̂0)/σ; it is
taken with v itself, as FlowMatchEulerDiscreteScheduler.step takes it, so runs match the pipelines bit for bit).

Hand-over rule (no conversion: both models read the same x_σ):
- the hand-over happens at the student's own σ_k (its k-th sigma);
- `base_steps=None`: the base takes the student's first k steps (its σ's and timesteps);
- `base_steps=M`: the base takes M+1 points evenly spaced in its *unshifted* time from shift⁻¹(σ_start) (1 for a
  hybrid) to shift⁻¹(σ_k), its own shift applied, and the end points forced to σ_start and σ_k exactly.
Grids are computed here, never by passing already-shifted sigmas to `set_timesteps(sigmas=...)` of a shifting
scheduler (it would shift them again), and `mu` comes from the packed token count (see models/flow.py).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import SchedulerMixin

from ..core.errors import UserError
from ..models.adapter_pair import activate
from ..models.pair import Conditioning, ModelSpec, take_kwargs
from .chunks import WHOLE_BATCH, call_in_chunks


class FlowDenoiser:
    """One model of a flow pair at one guidance scale: the velocity v and the denoised x̂0 = x - σ·v."""

    def __init__(self, pair, spec: ModelSpec, guidance: float | None = None, micro_batch: int = WHOLE_BATCH):
        self.pair = pair
        self.spec = spec
        self.network = spec.network
        self.guidance = spec.guidance if guidance is None else float(guidance)
        # Samples per network call, each at the row its seed names (sampling/chunks.py), which keeps an image
        # independent of its batch; WHOLE_BATCH (the default) does not, and serves internal measurements only.
        self.micro_batch = micro_batch

    @property
    def evals_per_call(self) -> int:
        return self.pair.evals_per_step(self.network, self.guidance)

    def velocity(self, x: torch.Tensor, t: torch.Tensor, conditioning: Conditioning) -> torch.Tensor:
        return call_in_chunks(
            lambda rows: self.pair.velocity(
                self.network,
                x[rows],
                t,
                take_kwargs(conditioning.cond, rows),
                take_kwargs(conditioning.uncond, rows),
                self.guidance,
            ),
            conditioning.keys(x.shape[0]),
            self.micro_batch,
        )

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, t: torch.Tensor, conditioning: Conditioning):
        """x̂0 at noise level σ (network timestep t), the k-diffusion denoiser."""
        return denoised(x, sigma, self.velocity(x, t, conditioning))


def denoised(x: torch.Tensor, sigma: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float32) - sigma * v.to(torch.float32)


@dataclass
class FlowSegment:
    """One model stepping over `sigmas` (its start, every intermediate level, its end), calling the network at
    `times` (the scheduler timesteps σ·T that go with all but the last sigma)."""

    role: str
    denoiser: FlowDenoiser
    scheduler: SchedulerMixin  # the scheduler whose convention the grid is in (reported, never stepped)
    sigmas: torch.Tensor
    times: torch.Tensor

    @property
    def timesteps(self) -> list[int]:
        return [int(round(float(t))) for t in self.times]

    @property
    def end_timestep(self) -> int:
        return int(round(float(self.sigmas[-1]) * self.scheduler.config.num_train_timesteps))

    @property
    def nfe(self) -> int:
        return len(self.times) * self.denoiser.evals_per_call


@dataclass
class FlowPlan:
    method: str
    segments: list[FlowSegment]
    skip_first: bool = False
    skip_noise: str = "scaled"  # skip_first's start: "scaled" σ_1·ε (scale_noise of a zero image), "unit" ε

    @property
    def nfe(self) -> int:
        return sum(s.nfe for s in self.segments)

    @property
    def steps(self) -> int:
        return sum(len(s.times) for s in self.segments)

    def visits(self) -> list[tuple[str, int, float]]:
        return [(s.role, t, s.denoiser.guidance) for s in self.segments for t in s.timesteps]


# -- schedules -------------------------------------------------------------------------------------------------


def natural_flow_scheduler(spec: ModelSpec) -> SchedulerMixin:
    """A copy of the model's scheduler set as its pipeline sets it (`spec.schedule_args`: sigmas, mu)."""
    sched = copy.deepcopy(spec.scheduler)
    args = dict(spec.schedule_args or {})
    if args.get("sigmas") is not None:
        sched.set_timesteps(sigmas=list(args["sigmas"]), mu=args.get("mu"))
    else:
        sched.set_timesteps(spec.steps, mu=args.get("mu"))
    return sched


class Shift:
    """A flow scheduler's σ map from unshifted time u in [0, 1] to σ, pointwise, as `set_timesteps` applies it:
    a static shift s·u/(1+(s-1)·u) or the dynamic time shift at `mu`, then `shift_terminal`'s stretch with the
    scale of the model's own schedule (the stretch is relative to the last sigma of the grid it is given)."""

    def __init__(self, spec: ModelSpec):
        config = spec.scheduler.config
        for option in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "invert_sigmas"):
            if config.get(option, False):
                raise UserError(f"{spec.label}: base_steps needs a plain shifted flow schedule; {option} is on")
        self.config = config
        args = spec.schedule_args or {}
        self.mu = args.get("mu")
        if config.get("use_dynamic_shifting", False) and self.mu is None:
            raise UserError(f"{spec.label}: its scheduler shifts dynamically but no mu was computed")
        self.scale = None
        if config.get("shift_terminal"):
            if args.get("sigmas") is None:
                raise UserError(f"{spec.label}: shift_terminal without explicit sigmas is not supported")
            last = self._time_shift(np.float64(args["sigmas"][-1]))
            self.scale = (1.0 - last) / (1.0 - config.shift_terminal)

    def _time_shift(self, u):
        if self.config.get("use_dynamic_shifting", False):
            if self.config.get("time_shift_type", "exponential") == "linear":
                return self.mu / (self.mu + (1 / u - 1))
            return math.exp(self.mu) / (math.exp(self.mu) + (1 / u - 1))
        s = self.config.get("shift", 1.0)
        return s * u / (1 + (s - 1) * u)

    def __call__(self, u):
        u = np.asarray(u, dtype=np.float64)
        with np.errstate(divide="ignore"):
            sigma = np.where(u > 0, self._time_shift(np.maximum(u, 1e-300)), 0.0)
        if self.scale is not None:
            sigma = 1.0 - (1.0 - sigma) / self.scale
        return sigma

    def inverse(self, sigma: float) -> float:
        """u with shift(u) = σ, by bisection (the map is increasing)."""
        lo, hi = 0.0, 1.0
        for _ in range(200):
            mid = (lo + hi) / 2
            if float(self(mid)) < sigma:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2


def spanning_grid(spec: ModelSpec, sigma_from: torch.Tensor, sigma_to: torch.Tensor, steps: int) -> torch.Tensor:
    """`steps`+1 sigmas for `spec`'s model from σ_from to σ_to: even in its unshifted time, its shift applied,
    both ends exactly the given levels (float32, as schedulers keep them)."""
    shift = Shift(spec)
    a, b = float(sigma_from), float(sigma_to)
    u_from = 1.0 if a >= 1.0 else shift.inverse(a)
    # σ_to = 0 (replace_final): where the shift reaches 0 (u = 0, or later under shift_terminal's stretch).
    u_to = shift.inverse(b)
    points = torch.from_numpy(shift(np.linspace(u_from, u_to, steps + 1))).to(torch.float32)
    points[0], points[-1] = sigma_from, sigma_to
    if not bool((points[1:] < points[:-1]).all()):
        raise UserError(f"base_steps={steps} gives no decreasing schedule from σ={a:.4g} to σ={b:.4g}")
    return points


# -- the plan ----------------------------------------------------------------------------------------------------


def make_flow_plan(
    pair,
    method: str,
    k: int = 1,
    base_guidance: float = 0.0,
    base_steps: int | None = None,
    micro_batch: int = 1,
    skip_noise: str = "scaled",
) -> FlowPlan:
    """Segments for `method` on a flow pair (see `sampling.plan.make_plan` for the knobs)."""
    base = FlowDenoiser(pair, pair.base, micro_batch=micro_batch)
    distilled = FlowDenoiser(pair, pair.distilled, micro_batch=micro_batch)
    if method == "base":
        sched = natural_flow_scheduler(pair.base)
        return FlowPlan(method, [FlowSegment("base", base, sched, sched.sigmas, sched.timesteps)])
    sched = natural_flow_scheduler(pair.distilled)
    sigmas, times = sched.sigmas, sched.timesteps
    n = len(times)

    def student(start: int, stop: int, denoiser: FlowDenoiser = distilled, role: str = "distilled") -> FlowSegment:
        return FlowSegment(role, denoiser, sched, sigmas[start : stop + 1], times[start:stop])

    if method == "distilled":
        return FlowPlan(method, [student(0, n)])
    if method == "skip_first":
        if n < 2:
            raise UserError(f"skip_first needs a distilled schedule of at least 2 steps; {pair.name} has {n}")
        return FlowPlan(method, [student(1, n)], skip_first=True, skip_noise=skip_noise)
    if not 0 <= k <= n:
        raise UserError(f"k={k} is out of range for {pair.name}: its distilled schedule has {n} steps (0..{n})")
    if base_steps is not None and base_steps < 1 and k > 0:
        raise UserError(f"base_steps={base_steps} gives the base model no step; use base_steps>=1 or null")
    guided = FlowDenoiser(pair, pair.base, guidance=base_guidance, micro_batch=micro_batch)
    split = k if method == "hybrid" else n - k
    order = (
        (("base", 0, split), ("distilled", split, n))
        if method == "hybrid"
        else (
            ("distilled", 0, split),
            ("base", split, n),
        )
    )
    segments = []
    for role, start, stop in order:
        if start == stop:
            continue
        if role == "distilled":
            segments.append(student(start, stop))
        elif base_steps is None:
            segments.append(student(start, stop, guided, "base"))
        else:
            grid = spanning_grid(pair.base, sigmas[start], sigmas[stop], base_steps)
            base_sched = pair.base.scheduler
            segments.append(
                FlowSegment("base", guided, base_sched, grid, grid[:-1] * base_sched.config.num_train_timesteps)
            )
    check_handovers(segments)
    return FlowPlan(method, segments)


def check_handovers(segments: list[FlowSegment]) -> None:
    """Consecutive segments must meet at exactly one σ: the level one lands on is the level the next starts at."""
    for before, after in zip(segments, segments[1:], strict=False):
        if not torch.equal(before.sigmas[-1], after.sigmas[0]):
            raise UserError(
                f"hand-over mismatch: {before.role} ends at σ={float(before.sigmas[-1]):.6g} but {after.role} "
                f"starts at σ={float(after.sigmas[0]):.6g}"
            )


# -- the sampler -------------------------------------------------------------------------------------------------

FlowStepCallback = Callable[[str, int, int, torch.Tensor, torch.Tensor], None]


@torch.no_grad()
def sample_flow(
    plan: FlowPlan,
    conditioning: Conditioning,
    generators: Sequence[torch.Generator],
    shape: tuple[int, ...],
    device: torch.device | str = "cpu",
    on_step: FlowStepCallback | None = None,
    timer=None,
) -> torch.Tensor:
    """Clean latents for one batch: per-sample noise ε, then each segment's Euler steps in order, the latent
    passed on unchanged at each hand-over. `on_step(role, step, timestep, x_σ, x̂0)` sees every step."""
    noise = torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device)
    first = plan.segments[0]
    x = noise
    if plan.skip_first and plan.skip_noise == "scaled":
        # No signal at the first visited level: x_σ1 = (1-σ1)·0 + σ1·ε, the scheduler's forward process.
        x = first.scheduler.scale_noise(torch.zeros_like(noise), first.times[:1].to(device), noise)
    x = x.to(first.denoiser.network.dtype)
    step = 0
    for index, segment in enumerate(plan.segments):
        if index:
            x = handover(x, plan.segments[index - 1], segment)
        activate(segment.denoiser.spec)  # one adapter toggle per role per batch (adapter-distilled pairs)
        x, step = run_flow_segment(segment, x, conditioning, step, on_step, timer)
    return x


def handover(x: torch.Tensor, before: FlowSegment, after: FlowSegment) -> torch.Tensor:
    """The latent passes unchanged: both models read x_σ = (1-σ)·x0 + σ·ε at the shared σ (a DDPM-style
    rescaling here would be wrong; the Gaussian test in tests/test_flow.py measures how wrong)."""
    return x


def run_flow_segment(
    segment: FlowSegment,
    x: torch.Tensor,
    conditioning: Conditioning,
    step: int = 0,
    on_step: FlowStepCallback | None = None,
    timer=None,
) -> tuple[torch.Tensor, int]:
    sigmas = segment.sigmas.to(x.device)
    for i, t in enumerate(segment.times.to(x.device)):
        if timer is None:
            v = segment.denoiser.velocity(x, t, conditioning)
        else:
            v = timer(lambda x=x, t=t: segment.denoiser.velocity(x, t, conditioning))
        if on_step is not None:
            on_step(segment.role, step, int(round(float(t))), x, denoised(x, sigmas[i], v))
        # FlowMatchEulerDiscreteScheduler.step's arithmetic: float32 update, cast back to the prediction's dtype.
        x = (x.to(torch.float32) + (sigmas[i + 1] - sigmas[i]) * v).to(v.dtype)
        step += 1
    return x, step
