"""The toy base's noise schedule: SD's scaled-linear schedule, optionally shifted for the toy's small latent.

A sample's structure is decided at a signal-to-noise ratio, not at a timestep. An 8x8 latent loses its layout at a
higher SNR than SD's 64x64 one (fewer pixels average the noise out), so on SD's schedule the toy commits late
(t ~ 640-720), after the first step of a 999/749/499/249 student. SD3 shifts its schedule by resolution; in its
convention a shift s divides the SNR at every timestep by s^2 (s > 1 for larger images). The toy takes s < 1:
`shift=0.5` gives every timestep four times SD's SNR, so the layout is decided earlier on the timestep axis.

The shifted schedule travels as `trained_betas` in the exported scheduler config, which every diffusers
scheduler (DDPM, DDIM, LCM) reads, so sampling, x0viz and distillation all run the schedule the base was
trained on.
"""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler

from ..core.errors import UserError
from ..models.loading import TRAIN_SCHEDULE


def shifted_betas(shift: float, config: dict | None = None) -> list[float]:
    """Betas whose cumulative alphas have SNR(t) / shift^2, from the scaled-linear schedule of `config`."""
    if not shift > 0:
        raise UserError(f"schedule_shift={shift} must be positive (1: SD's schedule, < 1: less noise per timestep)")
    plain = DDPMScheduler.from_config(config or TRAIN_SCHEDULE)
    alphas = plain.alphas_cumprod.double()
    snr = alphas / (1 - alphas) / shift**2
    shifted = snr / (1 + snr)
    previous = torch.cat([torch.ones(1, dtype=shifted.dtype), shifted[:-1]])
    return (1 - shifted / previous).tolist()


def schedule_config(shift: float) -> dict:
    """The training schedule's config: SD's for shift 1, else SD's with `trained_betas` shifted."""
    if shift == 1:
        return dict(TRAIN_SCHEDULE)
    return {**TRAIN_SCHEDULE, "trained_betas": shifted_betas(shift)}


def noise_schedule(shift: float = 1.0) -> DDPMScheduler:
    return DDPMScheduler.from_config(schedule_config(shift))
