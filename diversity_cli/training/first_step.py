"""How closely a student's first step follows DP-DMD's anchor, against the two floors that say what it reads.

The training log's `first_step_floor` is the MSE of one constant first step for every prompt and noise of a batch
(`losses.constant_predictor_floor`); its batches mix captions, so a first step that reads its prompt but ignores
its noise also sits below it. Here each prompt gets many noises, which separates the two:

- `constant_floor`: the MSE of the best single image for every prompt and noise (the mean anchor);
- `prompt_floor`: the MSE of the best image per prompt whatever the noise (each prompt's mean anchor), i.e. of
  the best first step that ignores its noise;
- `mse`: the student's first step against the anchors of the same noises.

Below `prompt_floor`, the first step follows its noise as the teacher's anchor does: what DP-DMD trains for.
`noise_share` is the within-prompt variance of the first step's x̂0 over that of the anchors: 0 for a first step
that ignores its noise, 1 for one that varies with it as much as the anchor does (not necessarily the same way).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..models.pair import ModelPair
from .generator import StudentSampler, teacher_anchor, teacher_ode_scheduler
from .objective import DistillSettings


@dataclass(frozen=True)
class FirstStepFit:
    prompts: int
    noises: int  # per prompt
    mse: float
    constant_floor: float
    prompt_floor: float
    noise_share: float

    def row(self) -> dict[str, float | int]:
        return asdict(self)


@torch.no_grad()
def first_step_fit(
    pair: ModelPair, settings: DistillSettings, prompts: list[str], noises: int = 16, seed: int = 0
) -> FirstStepFit:
    """The fit of `pair`'s student (its distilled network) to the anchors of its base (the teacher) under the
    DP-DMD `settings` (anchor_k, the teacher's ODE and its guidance, the student's timesteps), over `noises` fresh
    noises for each prompt (drawn from `seed`, none seen in training). Unbiased variances: noises >= 2."""
    if noises < 2 or not prompts:
        raise ValueError("first_step_fit needs prompts and at least 2 noises per prompt")
    config = dict(pair.base.scheduler.config)
    sampler = StudentSampler(config, settings.student_timesteps)
    ode = teacher_ode_scheduler(config, settings.ode_overrides or {})
    generator = torch.Generator().manual_seed(seed)
    squared, within_student, within_anchor, anchors = [], [], [], []
    for prompt in prompts:
        noise = torch.randn((noises, *pair.latent_shape), generator=generator).to(pair.device, pair.dtype)
        conditioning = pair.encode([prompt] * noises)
        first, _ = sampler.step(pair.distilled.network, noise, 0, conditioning, generator)
        anchor = teacher_anchor(
            pair.base.network, ode, settings.ode_steps, settings.anchor_k, noise, conditioning, settings.ode_guidance
        )
        first, anchor = first.float(), anchor.float()
        squared.append(((first - anchor) ** 2).mean())
        within_student.append(first.var(dim=0, unbiased=True).mean())
        within_anchor.append(anchor.var(dim=0, unbiased=True).mean())
        anchors.append(anchor)
    prompt_floor = torch.stack(within_anchor).mean()
    return FirstStepFit(
        prompts=len(prompts),
        noises=noises,
        mse=float(torch.stack(squared).mean()),
        constant_floor=float(torch.cat(anchors).var(dim=0, unbiased=True).mean()),
        prompt_floor=float(prompt_floor),
        noise_share=float(torch.stack(within_student).mean() / prompt_floor),
    )
