"""The student's few-step sampler (with backward simulation) and the teacher's deterministic ODE target.

Student: LCMScheduler at explicit timesteps (e.g. 999, 749, 499, 249), as DMD2's SDXL student is sampled and as
the toolkit's distilled pairs run. Step i takes x_{t_i}, predicts x0 (the scheduler's `denoised`: its x̂0 from
the network's ε/v output, with LCM's boundary scalings, which are ≈(0, 1) at these timesteps) and re-noises it
to the next timestep with fresh noise: x_{t_{i+1}} = √ᾱ·x0 + √(1−ᾱ)·ε'. Training runs the same scheduler code the
sampler runs, so a trained student samples exactly as it was trained.
"""

from __future__ import annotations

import copy

import torch
from diffusers import DDIMScheduler, LCMScheduler, SchedulerMixin

from ..models.pair import Conditioning
from ..models.schedulers import plain_config, scheduler_with
from .predict import guided_output, network_output


class StudentSampler:
    """Few-step rollouts of a student network on LCMScheduler at `timesteps`."""

    def __init__(self, scheduler_config: dict, timesteps: list[int]):
        self.scheduler = LCMScheduler.from_config(plain_config(scheduler_config))
        self.timesteps = [int(t) for t in timesteps]

    def __len__(self) -> int:
        return len(self.timesteps)

    def step(
        self,
        network: torch.nn.Module,
        x: torch.Tensor,
        index: int,
        conditioning: Conditioning,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Step `index` from x_{t_index}: (x0 estimate, next input x_{t_index+1}; the x0 itself at the last step).
        Differentiable when called with gradients enabled."""
        sched = self.scheduler
        sched.set_timesteps(timesteps=self.timesteps)  # resets LCM's step counter ...
        sched.set_begin_index(index)  # ... and starts it at this step
        t = sched.timesteps[index]
        out = network_output(network, x, t.expand(x.shape[0]), conditioning.cond)
        result = sched.step(out, t, x, generator=generator)
        return result.denoised, result.prev_sample

    @torch.no_grad()
    def run(
        self,
        network: torch.nn.Module,
        x: torch.Tensor,
        start: int,
        stop: int,
        conditioning: Conditioning,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """Backward simulation: steps start..stop−1 without gradients; returns x_{t_stop}, the input of step `stop`."""
        for index in range(start, stop):
            _, x = self.step(network, x, index, conditioning, generator)
        return x


def teacher_ode_scheduler(scheduler_config: dict, overrides: dict) -> DDIMScheduler:
    """DDIM on the teacher's training schedule (its alphas and prediction type) with `overrides`; with eta = 0 it
    is the deterministic probability-flow ODE sampler DP-DMD rolls the teacher out with."""
    return scheduler_with(DDIMScheduler, plain_config(scheduler_config), overrides, "teacher_ode.overrides")


@torch.no_grad()
def teacher_anchor(
    teacher: torch.nn.Module,
    template: SchedulerMixin,
    steps: int,
    anchor_k: int,
    noise: torch.Tensor,
    conditioning: Conditioning,
    guidance: float,
) -> torch.Tensor:
    """DP-DMD's first-step target x̂0_anchor for pure noise `noise` (at the first ODE timestep, t_0 = T−1).

    The teacher at CFG `guidance` runs `anchor_k` DDIM (eta = 0) steps of a `steps`-step schedule from z = noise
    to z_{t_k}; the target is the teacher's x0 prediction at (z_{t_k}, t_k), i.e. the `pred_original_sample` of
    its (k+1)-th evaluation. For anchor_k = steps (t_k = 0) it is the ODE's sample itself. 1 <= anchor_k <= steps.
    """
    sched = copy.deepcopy(template)
    sched.set_timesteps(steps)
    x = noise * sched.init_noise_sigma
    for index, t in enumerate(sched.timesteps):
        out = guided_output(teacher, x, t.expand(x.shape[0]), conditioning, guidance)
        result = sched.step(out, t, x, eta=0.0)
        if index == anchor_k:
            return result.pred_original_sample
        x = result.prev_sample
    return x


def anchor_timestep(template: SchedulerMixin, steps: int, anchor_k: int) -> int:
    """The timestep t_k whose x0 prediction `teacher_anchor` takes (0: the ODE's sample itself)."""
    sched = copy.deepcopy(template)
    sched.set_timesteps(steps)
    return int(sched.timesteps[anchor_k]) if anchor_k < steps else 0
