"""Calling a diffusers denoising network at per-sample timesteps, as training needs.

The sampler's `Denoiser` evaluates one timestep for the whole batch; DMD noises each sample to its own level, so
training uses these functions instead. All inputs are variance-preserving, x_t = √ᾱ_t·x0 + √(1-ᾱ_t)·ε (the form
DDPM/DDIM/LCM keep their latents in), and predictions are re-expressed with the sampler's `convert_prediction`.
"""

from __future__ import annotations

import torch

from ..models.pair import Conditioning, concat_kwargs
from ..sampling.denoiser import convert_prediction


def network_output(network: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, kwargs: dict) -> torch.Tensor:
    """The network's raw prediction for input `x` at timesteps `t` (one per sample), in `x`'s dtype.

    Learned-variance networks (PixArt) return twice the channels; the first half is the prediction."""
    dtype = next(network.parameters()).dtype
    out = network(x.to(dtype), timestep=t.to(x.device), **kwargs, return_dict=False)[0].to(x.dtype)
    channels = x.shape[1]
    return out[:, :channels] if out.shape[1] == 2 * channels else out


def guided_output(
    network: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, conditioning: Conditioning, guidance: float
) -> torch.Tensor:
    """Classifier-free guided prediction u + w·(c − u); conditional only when w <= 1 (as the pipelines do)."""
    if guidance <= 1.0:
        return network_output(network, x, t, conditioning.cond)
    both = network_output(
        network, torch.cat([x, x]), torch.cat([t, t]), concat_kwargs([conditioning.uncond, conditioning.cond])
    )
    uncond, cond = both.chunk(2)
    return uncond + guidance * (cond - uncond)


def alpha_bar(alphas_cumprod: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """ᾱ_t per sample, shaped to broadcast over `like` (B, C, H, W)."""
    values = alphas_cumprod.to(like.device)[t.to(like.device).long()].to(like.dtype)
    return values.reshape(-1, *([1] * (like.ndim - 1)))


def to_x0(
    out: torch.Tensor, x: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor, prediction_type: str
) -> torch.Tensor:
    """x̂0 from a prediction of `prediction_type` (epsilon, v_prediction or sample) for VP input `x`."""
    return convert_prediction(out, x, alpha_bar(alphas_cumprod, t, x), prediction_type, "sample")
