"""Which model runs at which timesteps: the five sampling methods as lists of segments.

A segment is one model stepping one diffusers scheduler over `scheduler.timesteps[start:stop]`. Consecutive
segments meet at one exact noise level: the timestep the first one lands on is the one the second starts from.
Segments that share a scheduler instance (the default: the base runs on the distilled model's own scheduler and
schedule) simply continue its trajectory; otherwise the latent is converted between the two schedulers'
conventions at that level (see `sampler.handover`).
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass

import numpy as np
from diffusers import SchedulerMixin

from ..core.errors import UserError, refused_as
from ..core.pair_settings import SKIP_NOISE
from ..models.pair import ModelPair, ModelSpec
from .denoiser import Denoiser
from .flow import FlowPlan, make_flow_plan, natural_flow_scheduler
from .methods import METHODS


@dataclass
class Segment:
    role: str  # "base" or "distilled"
    denoiser: Denoiser
    scheduler: SchedulerMixin
    start: int
    stop: int

    @property
    def timesteps(self) -> list[int]:
        return [int(round(float(t))) for t in self.scheduler.timesteps[self.start : self.stop]]

    @property
    def end_timestep(self) -> int:
        """The noise level this segment hands over at (0: the clean sample)."""
        ts = self.scheduler.timesteps
        return int(round(float(ts[self.stop]))) if self.stop < len(ts) else 0

    @property
    def nfe(self) -> int:
        return (self.stop - self.start) * self.denoiser.evals_per_call


@dataclass
class Plan:
    method: str
    segments: list[Segment]
    skip_first: bool = False  # the student starts at its second timestep from pure noise
    # skip_first's start noise. "unit": the noise a pipeline starts any run from, ε · init_noise_sigma in the
    # scheduler's own convention (unit variance under LCM/DDIM), which is what the paper's skip step does
    # (utils/utils.py at f83b1fc: pipe(from_timestep=1) with no start_latents). "scaled": zero signal at the
    # visited level in variance-preserving form, √(1-ᾱ_t)·ε (3% below unit variance at t=749).
    skip_noise: str = "unit"

    @property
    def nfe(self) -> int:
        return sum(s.nfe for s in self.segments)

    @property
    def steps(self) -> int:
        return sum(s.stop - s.start for s in self.segments)

    def visits(self) -> list[tuple[str, int, float]]:
        """(model, timestep, guidance) of every network call, in order."""
        return [(s.role, t, s.denoiser.guidance) for s in self.segments for t in s.timesteps]


def make_plan(
    pair: ModelPair,
    method: str,
    k: int = 1,
    base_guidance: float = 0.0,
    base_steps: int | None = None,
    micro_batch: int | None = None,
    skip_noise: str | None = None,
) -> Plan | FlowPlan:
    """Segments for `method`. `k` counts distilled-schedule steps given to the base (hybrid: the first k;
    replace_final: the last k). `base_steps=None` runs the base on the distilled schedule; `base_steps=N`
    gives it N steps of its own scheduler over the same span. `micro_batch`: samples per network call (see
    `sampling.chunks`; None: the pair's own, WHOLE_BATCH: the batch in one call). `skip_noise`:
    skip_first's start noise (see `Plan`; None: the pair's `skip_first_noise`)."""
    if method not in METHODS:
        raise UserError(f"unknown method '{method}'; choose one of: {', '.join(METHODS)}")
    skip_noise = skip_noise or getattr(pair, "skip_first_noise", "unit")
    micro_batch = getattr(pair, "micro_batch", 1) if micro_batch is None else micro_batch
    if skip_noise not in SKIP_NOISE:
        raise UserError(f"unknown skip_first noise '{skip_noise}'; choose one of: {', '.join(SKIP_NOISE)}")
    if getattr(pair, "flow", False):  # flow-matching pairs sample in σ-space (sampling/flow.py)
        return loaded_only(pair, make_flow_plan(pair, method, k, base_guidance, base_steps, micro_batch, skip_noise))
    return loaded_only(pair, _plan(pair, method, k, base_guidance, base_steps, micro_batch, skip_noise))


def loaded_only(pair: ModelPair, plan: Plan | FlowPlan) -> Plan | FlowPlan:
    """`plan`, whose every segment runs a network the pair read: a role loaded without its network (see
    `models.hub.method_roles`) holds the other's, and would sample under the wrong name."""
    absent = sorted({segment.role for segment in plan.segments} - set(getattr(pair, "loaded", ("base", "distilled"))))
    if absent:
        raise RuntimeError(f"method={plan.method} samples with the {' and '.join(absent)} network, not loaded")
    return plan


def _plan(
    pair: ModelPair,
    method: str,
    k: int,
    base_guidance: float,
    base_steps: int | None,
    micro_batch: int,
    skip_noise: str,
) -> Plan:
    base = Denoiser(pair.base, micro_batch=micro_batch)
    distilled = Denoiser(pair.distilled, micro_batch=micro_batch)
    if method == "base":
        return Plan(method, [_whole(pair.base, base)])
    schedule = natural_scheduler(pair.distilled)
    n = len(schedule.timesteps)
    if method == "distilled":
        return Plan(method, [Segment("distilled", distilled, schedule, 0, n)])
    if method == "skip_first":
        if n < 2:
            raise UserError(f"skip_first needs a distilled schedule of at least 2 steps; {pair.name} has {n}")
        return Plan(method, [Segment("distilled", distilled, schedule, 1, n)], skip_first=True, skip_noise=skip_noise)

    if not 0 <= k <= n:
        raise UserError(f"k={k} is out of range for {pair.name}: its distilled schedule has {n} steps (0..{n})")
    if base_steps is not None and base_steps < 1 and k > 0:
        raise UserError(f"base_steps={base_steps} gives the base model no step; use base_steps>=1 or null")
    guided_base = Denoiser(pair.base, guidance=base_guidance, micro_batch=micro_batch)
    split = k if method == "hybrid" else n - k
    first_role, second_role = ("base", "distilled") if method == "hybrid" else ("distilled", "base")
    segments = []
    for role, start, stop in ((first_role, 0, split), (second_role, split, n)):
        if start == stop:
            continue
        if role == "distilled":
            segments.append(Segment(role, distilled, schedule, start, stop))
        elif base_steps is None:
            segments.append(Segment(role, guided_base, schedule, start, stop))
        else:
            t_from = _timestep(schedule, start)
            t_to = _timestep(schedule, stop) if stop < n else 0
            sched, i, j = spanning_scheduler(pair.base, t_from, t_to, base_steps)
            segments.append(Segment(role, guided_base, sched, i, j))
    _check_handovers(segments)
    return Plan(method, segments)


def natural_scheduler(spec: ModelSpec) -> SchedulerMixin:
    """A fresh copy of the model's scheduler set to its own schedule (explicit timesteps when configured)."""
    if spec.schedule_args is not None:  # a flow-matching model: set as its pipeline sets it
        return natural_flow_scheduler(spec)
    sched = copy.deepcopy(spec.scheduler)
    if spec.timesteps:
        if not accepts_timesteps(sched):
            raise UserError(
                f"{type(sched).__name__} cannot take explicit timesteps; remove 'timesteps' from the "
                f"{spec.role} model config or pick a scheduler that accepts them (LCM, Euler, DDPM, DPM-Solver)"
            )
    # a scheduler override diffusers cannot schedule with (timestep_spacing=bogus, num_train_timesteps=-5)
    with refused_as(
        f"model.{spec.role}.scheduler ({type(sched).__name__}) cannot set its schedule", (ValueError, TypeError)
    ):
        if spec.timesteps:
            sched.set_timesteps(timesteps=list(spec.timesteps))
        else:
            sched.set_timesteps(spec.steps)
    return sched


def spanning_scheduler(spec: ModelSpec, t_from: int, t_to: int, steps: int) -> tuple[SchedulerMixin, int, int]:
    """The model's scheduler set so that `steps` steps go from `t_from` exactly to `t_to` (0: to the clean
    sample). Returns it with the index range to step over."""
    sched = copy.deepcopy(spec.scheduler)
    if accepts_timesteps(sched):
        points = np.rint(np.linspace(t_from, t_to, steps + 1)).astype(int).tolist()
        if len(set(points)) != len(points):
            raise UserError(f"base_steps={steps} is more steps than the {t_from}->{t_to} span has timesteps")
        sched.set_timesteps(timesteps=points[:-1] if t_to == 0 else points)
        return sched, 0, steps
    # Schedulers that only take a step count (DDIM, Euler ancestral): find a count whose own schedule
    # contains the span with exactly `steps` steps, so the hand-over level stays exact.
    for count in range(1, sched.config.num_train_timesteps + 1):
        sched.set_timesteps(count)
        ts = [int(round(float(t))) for t in sched.timesteps]
        if t_from not in ts:
            continue
        i = ts.index(t_from)
        if not _lands_on_schedule(sched, ts, count):
            continue
        if (t_to == 0 and len(ts) - i == steps) or (i + steps < len(ts) and ts[i + steps] == t_to):
            if hasattr(sched, "set_begin_index"):
                sched.set_begin_index(i)
            return sched, i, i + steps
    raise UserError(
        f"{type(sched).__name__} has no schedule with base_steps={steps} from timestep {t_from} to {t_to}; "
        "try another base_steps or a base scheduler that accepts explicit timesteps"
    )


def _lands_on_schedule(sched: SchedulerMixin, ts: list[int], count: int) -> bool:
    # Stateless schedulers (DDIM) step to `t - T // count`, which leaves their own timestep list whenever T / count
    # is not whole; only a uniform integer stride keeps the hand-over level exact there.
    if hasattr(sched, "step_index"):
        return True
    stride = sched.config.num_train_timesteps // count
    return all(a - b == stride for a, b in zip(ts, ts[1:], strict=False))


def accepts_timesteps(sched: SchedulerMixin) -> bool:
    return "timesteps" in inspect.signature(sched.set_timesteps).parameters


def _whole(spec: ModelSpec, denoiser: Denoiser) -> Segment:
    sched = natural_scheduler(spec)
    return Segment(spec.role, denoiser, sched, 0, len(sched.timesteps))


def _timestep(sched: SchedulerMixin, index: int) -> int:
    return int(round(float(sched.timesteps[index])))


def _check_handovers(segments: list[Segment]) -> None:
    for before, after in zip(segments, segments[1:], strict=False):
        if before.end_timestep != after.timesteps[0]:
            raise UserError(
                f"hand-over mismatch: {before.role} ends at timestep {before.end_timestep} but {after.role} "
                f"starts at {after.timesteps[0]}"
            )
