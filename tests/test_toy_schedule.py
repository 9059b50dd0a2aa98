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
    assert schedule_config(1.0) == TRAIN_SCHEDULE
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
