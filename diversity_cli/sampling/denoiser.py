"""A diffusers network with its guidance, called on variance-preserving latents like any pipeline does."""

from __future__ import annotations

from typing import Any

import torch

from ..models.pair import Conditioning, ModelSpec, concat_kwargs, take_kwargs
from .chunks import WHOLE_BATCH, call_in_chunks

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


class Denoiser:
    """Wraps one model of a pair: classifier-free guidance, guidance embeddings, learned-sigma outputs.

    Guidance follows the diffusers pipelines: CFG only when `guidance > 1`; networks trained with a guidance
    embedding (LCM's `time_cond_proj_dim`) take `guidance - 1` as an embedding and one evaluation instead.
    """

    def __init__(self, spec: ModelSpec, guidance: float | None = None, micro_batch: int = WHOLE_BATCH):
        self.spec = spec
        self.network = spec.network
        self.guidance = spec.guidance if guidance is None else float(guidance)
        self.embeds_guidance = getattr(self.network.config, "time_cond_proj_dim", None) is not None
        self.cfg = self.guidance > 1.0 and not self.embeds_guidance
        # Samples per network call, each at the row its seed names (sampling/chunks.py), which keeps an image
        # independent of its batch; WHOLE_BATCH (the default) does not, and serves internal measurements only.
        self.micro_batch = micro_batch

    @property
    def evals_per_call(self) -> int:
        """Network evaluations per sample per step (the NFE a step costs)."""
        return 2 if self.cfg else 1

    def __call__(self, x: torch.Tensor, t: torch.Tensor, conditioning: Conditioning) -> torch.Tensor:
        """The network's prediction (in its own `prediction_type`) for scaled model input `x` at timestep `t`."""
        return call_in_chunks(
            lambda rows: self._predict(
                x[rows], t, take_kwargs(conditioning.cond, rows), take_kwargs(conditioning.uncond, rows)
            ),
            conditioning.keys(x.shape[0]),
            self.micro_batch,
        )

    def _predict(self, x: torch.Tensor, t: torch.Tensor, cond: dict[str, Any], uncond: dict[str, Any]):
        kwargs = cond
        if self.cfg:
            x = torch.cat([x, x])
            kwargs = concat_kwargs([uncond, cond])
        if self.embeds_guidance:
            kwargs = {**kwargs, "timestep_cond": self._guidance_embedding(x)}
        timestep = t.reshape(()).expand(x.shape[0]).to(x.device)
        out = self.network(x.to(self.network.dtype), timestep=timestep, **kwargs, return_dict=False)[0].to(x.dtype)
        channels = x.shape[1]
        if out.shape[1] == 2 * channels:  # learned variance (PixArt): the first half is the prediction
            out = out[:, :channels]
        if self.cfg:
            uncond_out, cond_out = out.chunk(2)
            out = uncond_out + self.guidance * (cond_out - uncond_out)
        return out

    def _guidance_embedding(self, x: torch.Tensor) -> torch.Tensor:
        from diffusers import StableDiffusionPipeline

        # The pipelines' sinusoidal embedding of (w - 1); it does not use the pipeline instance.
        w = torch.full((x.shape[0],), self.guidance - 1.0)
        dim = self.network.config.time_cond_proj_dim
        emb = StableDiffusionPipeline.get_guidance_scale_embedding(None, w, embedding_dim=dim)
        return emb.to(x.device, self.network.dtype)


def convert_prediction(
    out: torch.Tensor, x: torch.Tensor, alpha_bar: torch.Tensor, source: str, target: str
) -> torch.Tensor:
    """Re-express a prediction for VP input `x` (x = a·x0 + s·ε, a² = ᾱ) from one parameterisation to another.

    Needed when the base model runs on the distilled model's scheduler and the two were trained with different
    prediction types (SD 2.1 predicts v, SD-Turbo predicts ε).
    """
    if source == target:
        return out
    for kind in (source, target):
        if kind not in PREDICTION_TYPES:
            raise ValueError(f"unsupported prediction_type {kind!r}")
    a = alpha_bar.sqrt().to(out)
    s = (1 - alpha_bar).sqrt().to(out)
    if source == "epsilon":
        eps, x0 = out, (x - s * out) / a
    elif source == "v_prediction":
        eps, x0 = s * x + a * out, a * x - s * out
    else:
        eps, x0 = (x - a * out) / s, out
    return {"epsilon": eps, "v_prediction": a * eps - s * x0, "sample": x0}[target]


def denoising_target(
    x0: torch.Tensor, eps: torch.Tensor, alpha_bar_t: torch.Tensor, prediction_type: str
) -> torch.Tensor:
    """What a network of `prediction_type` should output for x_t = √ᾱ·x0 + √(1-ᾱ)·ε. Written from x0 and ε, not
    converted from an ε-prediction, so it stays finite at ᾱ = 0 (zero terminal SNR), where v = -x0."""
    a, s = alpha_bar_t.sqrt(), (1 - alpha_bar_t).sqrt()
    targets = {"epsilon": lambda: eps, "v_prediction": lambda: a * eps - s * x0, "sample": lambda: x0}
    if prediction_type not in targets:
        raise ValueError(f"unsupported prediction_type {prediction_type!r}")
    return targets[prediction_type]()
