"""The toy's shifted noise schedule: SD's for shift 1, SNR / shift^2 otherwise, readable by every sampler."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, LCMScheduler

from diversity_cli.core.errors import UserError
from diversity_cli.models.loading import TRAIN_SCHEDULE
from diversity_cli.toy.schedule import noise_schedule, schedule_config, shifted_betas


def _snr(alphas: torch.Tensor) -> torch.Tensor:
    return alphas.double() / (1 - alphas.double())


def test_shift_one_is_sds_schedule():
    sd = DDPMScheduler.from_config(TRAIN_SCHEDULE)
    assert schedule_config(1.0) == {**TRAIN_SCHEDULE, "prediction_type": "epsilon"}
    torch.testing.assert_close(torch.tensor(shifted_betas(1.0), dtype=torch.float32), sd.betas, rtol=2e-4, atol=1e-7)


@pytest.mark.parametrize("shift", [0.5, 2.0])
def test_shift_divides_the_snr_by_its_square_for_every_sampler(shift):
    sd = _snr(DDPMScheduler.from_config(TRAIN_SCHEDULE).alphas_cumprod)
    config = schedule_config(shift)
    for cls in (DDPMScheduler, DDIMScheduler, LCMScheduler):
        shifted = _snr(cls.from_config(config).alphas_cumprod)
        torch.testing.assert_close(shifted, sd / shift**2, rtol=2e-4, atol=0)
    assert torch.equal(noise_schedule(shift).alphas_cumprod, DDPMScheduler.from_config(config).alphas_cumprod)


def test_a_non_positive_shift_is_refused():
    with pytest.raises(UserError, match="schedule_shift=0"):
        shifted_betas(0)


@pytest.mark.parametrize("shift", [1.0, 0.5])
def test_zero_terminal_snr_ends_in_pure_noise_for_every_sampler(shift):
    """ᾱ_999 = 0, the first step keeps SD's (shifted) ᾱ_0, and the stored betas are rescaled once whatever the
    scheduler does with the rescale flag (rescaling is idempotent)."""
    config = schedule_config(shift, zero_terminal_snr=True, prediction_type="v_prediction")
    assert config["prediction_type"] == "v_prediction" and config["rescale_betas_zero_snr"]
    leaky = schedule_config(shift)
    leaky_alphas = DDPMScheduler.from_config(leaky).alphas_cumprod
    for cls in (DDPMScheduler, DDIMScheduler, LCMScheduler):
        scheduler = cls.from_config(config)
        assert scheduler.config.prediction_type == "v_prediction"
        alphas = scheduler.alphas_cumprod
        assert float(alphas[-1]) < 1e-12 and float(leaky_alphas[-1]) > 0.004
        torch.testing.assert_close(alphas[0], leaky_alphas[0])
        assert bool((alphas[1:] < alphas[:-1]).all())  # still a noise schedule: SNR falls with t


def test_zero_terminal_snr_with_epsilon_prediction_is_refused():
    with pytest.raises(UserError, match="zero_terminal_snr=true needs unet.prediction_type=v_prediction"):
        schedule_config(0.5, zero_terminal_snr=True)


def test_min_snr_weight_clips_high_snr_and_keeps_the_pure_noise_step():
    from diversity_cli.toy.stages import min_snr_weight

    snr = torch.tensor([0.0, 0.5, 4.0, 100.0])
    v = min_snr_weight(snr, 5.0, "v_prediction")
    torch.testing.assert_close(v, torch.tensor([1.0, 1.0, 1.0, 5.0 / 101.0]))
    eps = min_snr_weight(snr[1:], 5.0, "epsilon")
    torch.testing.assert_close(eps, torch.tensor([1.0, 1.0, 0.05]))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_denoising_target_is_what_the_sampler_reads_back(prediction_type):
    """The training target, converted back by the sampler's `convert_prediction`, gives the x0 and ε the input
    was made of; at ᾱ = 0 the v target is -x0 (finite, where an ε-derived one would divide by zero)."""
    from diversity_cli.sampling.denoiser import convert_prediction, denoising_target

    gen = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 3, 4, 4, generator=gen), torch.randn(2, 3, 4, 4, generator=gen)
    alpha_bar = torch.tensor([0.9, 0.05]).reshape(-1, 1, 1, 1)
    x = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps
    target = denoising_target(x0, eps, alpha_bar, prediction_type)
    for kind, expected in (("sample", x0), ("epsilon", eps)):
        torch.testing.assert_close(convert_prediction(target, x, alpha_bar, prediction_type, kind), expected)
    if prediction_type == "v_prediction":
        torch.testing.assert_close(denoising_target(x0, eps, torch.zeros(2, 1, 1, 1), prediction_type), -x0)


def test_sigma_space_schedulers_sample_a_zero_terminal_snr_schedule():
    """Euler and DPM-Solver work in σ = sqrt((1-ᾱ)/ᾱ), infinite at ᾱ = 0: the rescale flag makes them cap it."""
    from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler

    config = schedule_config(0.5, zero_terminal_snr=True, prediction_type="v_prediction")
    for cls in (EulerDiscreteScheduler, DPMSolverMultistepScheduler):
        scheduler = cls.from_config({**config, "timestep_spacing": "trailing"})
        scheduler.set_timesteps(4)
        x = torch.randn(1, 4, 8, 8) * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            x = scheduler.step(torch.zeros_like(x), t, x).prev_sample
        assert torch.isfinite(x).all(), cls.__name__
