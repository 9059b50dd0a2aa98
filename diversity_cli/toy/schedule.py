"""The toy base's noise schedule: SD's scaled-linear schedule, optionally shifted for the toy's small latent.

A sample's structure is decided at a signal-to-noise ratio, not at a timestep. An 8x8 latent loses its layout at a
higher SNR than SD's 64x64 one (fewer pixels average the noise out), so on SD's schedule the toy commits late
(t ~ 640-720), after the first step of a 999/749/499/249 student. SD3 shifts its schedule by resolution; in its
convention a shift s divides the SNR at every timestep by s^2 (s > 1 for larger images). The toy takes s < 1:
`shift=0.5` gives every timestep four times SD's SNR, so the layout is decided earlier on the timestep axis.

The shifted schedule travels as `trained_betas` in the exported scheduler config, which every diffusers
scheduler (DDPM, DDIM, LCM) reads, so sampling, x0viz and distillation all run the schedule the base was
trained on.

Zero terminal SNR (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed"): SD's schedule
leaves signal at t=999 (√ᾱ = 0.068, 0.11 after a 0.6 shift). On an 8x8 latent that leak is large enough for the
model to read the layout and the background brightness from the training input at t=999, which at sampling time is
pure noise: it then follows the noise instead of the prompt. `zero_terminal_snr` rescales the betas so ᾱ_999 = 0
(diffusers' `rescale_zero_terminal_snr`); ε cannot be predicted from pure noise, so it goes with v-prediction.
"""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler
from diffusers.schedulers.scheduling_ddpm import rescale_zero_terminal_snr

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


def schedule_config(shift: float, zero_terminal_snr: bool = False, prediction_type: str = "epsilon") -> dict:
    """The training schedule's config: SD's for shift 1, else SD's with `trained_betas` shifted; with
    `zero_terminal_snr` those betas are rescaled so that ᾱ_999 = 0 (stored rescaled, `rescale_betas_zero_snr` set)."""
    if zero_terminal_snr and prediction_type == "epsilon":
        raise UserError(
            "unet.zero_terminal_snr=true needs unet.prediction_type=v_prediction: ε cannot be predicted at t=999, "
            "where the input is pure noise"
        )
    config = {**TRAIN_SCHEDULE, "prediction_type": prediction_type}
    if shift == 1 and not zero_terminal_snr:
        return config
    betas = torch.tensor(shifted_betas(shift), dtype=torch.float64)
    if zero_terminal_snr:
        betas = rescale_zero_terminal_snr(betas)
        # Rescaling is idempotent, so the flag changes no beta; it makes the σ-space schedulers (Euler, DPM-Solver)
        # replace their infinite σ at t=999 by a finite one, as they do for any zero-terminal-SNR schedule.
        config["rescale_betas_zero_snr"] = True
    return {**config, "trained_betas": betas.tolist()}


def training_schedule(unet_cfg) -> dict:
    """The scheduler config a train-toy `unet` section trains on: its betas (shifted, rescaled) and prediction
    type. Read in one place, so the training loop, the exported scheduler and the up-front check agree."""
    return schedule_config(
        float(unet_cfg.schedule_shift),
        bool(unet_cfg.get("zero_terminal_snr", False)),
        str(unet_cfg.get("prediction_type", "epsilon")),
    )


def noise_schedule(
    shift: float = 1.0, zero_terminal_snr: bool = False, prediction_type: str = "epsilon"
) -> DDPMScheduler:
    return DDPMScheduler.from_config(schedule_config(shift, zero_terminal_snr, prediction_type))
