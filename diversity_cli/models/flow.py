"""Flow-matching pairs (FLUX, SD3, Qwen-Image): the family-specific parts of what their diffusers pipelines do.

The sampler (sampling/flow.py) works on unpacked latents x_σ = (1-σ)·x0 + σ·ε and asks a pair for the velocity
v = ε - x0 at (x, σ's timestep). Everything a pipeline does around the network lives here, once per family:
packing (FLUX and Qwen pack 2x2 patches into tokens and pass t/1000; SD3 takes the latent as is and t in 0..1000),
text conditioning, guidance (FLUX.1-dev embeds it; SD3 and Qwen-Image use true CFG, Qwen with its norm
rescale), the schedule's `sigmas` and `mu` (from the packed token count), and decoding (Qwen's VAE latent is 5-D
with a per-channel mean and std).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from .flow_tiny import FLOW_FAMILIES
from .pair import Conditioning, ModelPair, ModelSpec, concat_kwargs

__all__ = ["FLOW_FAMILIES", "FlowPair", "calculate_shift"]

# The pipelines' max_sequence_length defaults (FluxPipeline 512, StableDiffusion3Pipeline 256, QwenImagePipeline 1024).
MAX_SEQUENCE_LENGTH = {"flux": 512, "sd3": 256, "qwen": 1024, "flux2": 512}
# The negative prompt of a CFG run: SD3's pipeline default "", Qwen-Image's model card " " (its pipeline runs no
# CFG without one).
NEGATIVE_PROMPT = {"flux": "", "sd3": "", "qwen": " ", "flux2": ""}
# calculate_shift's max_shift default differs by pipeline (FLUX and Qwen 1.15, SD3 1.16).
_MAX_SHIFT_DEFAULT = {"flux": 1.15, "sd3": 1.16, "qwen": 1.15}


def calculate_shift(seq_len: int, config, family: str) -> float:
    """The pipelines' `mu`: linear in the packed token count between (base_image_seq_len, base_shift) and
    (max_image_seq_len, max_shift) of the scheduler config."""
    base_len = config.get("base_image_seq_len", 256)
    max_len = config.get("max_image_seq_len", 4096)
    base_shift = config.get("base_shift", 0.5)
    max_shift = config.get("max_shift", _MAX_SHIFT_DEFAULT[family])
    slope = (max_shift - base_shift) / (max_len - base_len)
    return seq_len * slope + base_shift - slope * base_len


@dataclass
class FlowPair(ModelPair):
    """A base/distilled pair of flow-matching transformers sharing one VAE and one set of text encoders."""

    flow: ClassVar[bool] = True
    max_sequence_length: int = 512

    # -- latents ------------------------------------------------------------------------------------------
    @property
    def latent_grid(self) -> tuple[int, int]:
        """Latent height and width (even for the packing families, as their prepare_latents rounds)."""
        factor = self.pipe.vae_scale_factor
        if self.family == "sd3":
            return self.height // factor, self.width // factor
        return 2 * (self.height // (factor * 2)), 2 * (self.width // (factor * 2))

    @property
    def latent_shape(self) -> tuple[int, ...]:
        h, w = self.latent_grid
        channels = self.base.network.config.in_channels
        if self.family == "sd3":
            return channels, h, w
        if self.family == "flux2":  # latents patchified 2x2 into channels, then one token per position
            return channels, h // 2, w // 2
        if self.family == "flux":
            return channels // 4, h, w
        return channels // 4, 1, h, w  # Qwen: (C, frames=1, h, w), the VAE's video layout

    @property
    def token_count(self) -> int:
        """Image tokens the transformer sees: what `mu` is computed from."""
        h, w = self.latent_grid
        patch = self.base.network.config.patch_size if self.family == "sd3" else 2
        return (h // patch) * (w // patch)

    def schedule_args(self, spec: ModelSpec) -> dict[str, Any]:
        """What the family's pipeline passes to `set_timesteps` for `spec.steps` steps at this resolution:
        FLUX and Qwen pass sigmas linspace(1, 1/N, N) and always a mu; FLUX.2-klein's mu also depends on N; SD3
        passes neither unless the scheduler shifts dynamically (then mu). These sigmas are unshifted: the scheduler
        shifts them itself."""
        config = spec.scheduler.config
        args: dict[str, Any] = {}
        if self.family == "flux2":
            from diffusers.pipelines.flux2.pipeline_flux2_klein import compute_empirical_mu

            args["sigmas"] = np.linspace(1.0, 1 / spec.steps, spec.steps).tolist()
            args["mu"] = compute_empirical_mu(image_seq_len=self.token_count, num_steps=spec.steps)
        elif self.family in ("flux", "qwen"):
            if not config.get("use_flow_sigmas", False):
                args["sigmas"] = np.linspace(1.0, 1 / spec.steps, spec.steps).tolist()
            args["mu"] = calculate_shift(self.token_count, config, self.family)
        elif config.get("use_dynamic_shifting", False):
            args["mu"] = calculate_shift(self.token_count, config, self.family)
        return args

    def _pack(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        if self.family == "flux2":  # already patchified: one token per position
            return x.reshape(b, c, -1).permute(0, 2, 1)
        h, w = x.shape[-2:]
        x = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(b, (h // 2) * (w // 2), c * 4)

    def _unpack(self, tokens: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        b, c = like.shape[:2]
        if self.family == "flux2":
            return tokens.permute(0, 2, 1).reshape(like.shape)
        h, w = like.shape[-2:]
        x = tokens.reshape(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5)
        return x.reshape(like.shape)

    # -- conditioning ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, prompts: list[str]) -> Conditioning:
        """Per prompt (an embedding must not depend on its batch): the prompt's and the negative prompt's
        embeddings. Qwen's variable-length embeddings are padded with a mask the velocity call trims again."""
        negative = self._encode_one(NEGATIVE_PROMPT[self.family])
        parts = [self._encode_one(prompt) for prompt in prompts]
        if self.family == "qwen":
            longest = max(
                max(p["encoder_hidden_states"].shape[1] for p in parts), negative["encoder_hidden_states"].shape[1]
            )
            parts = [_pad_tokens(p, longest) for p in parts]
            negative = _pad_tokens(negative, longest)
        return Conditioning(concat_kwargs(parts), concat_kwargs([negative] * len(prompts)))

    def _encode_one(self, prompt: str) -> dict[str, torch.Tensor]:
        pipe, device, length = self.pipe, self.device, self.max_sequence_length
        if self.family == "flux":
            embeds, pooled, _ = pipe.encode_prompt([prompt], None, device=device, max_sequence_length=length)
            return {"encoder_hidden_states": embeds, "pooled_projections": pooled}
        if self.family == "sd3":
            embeds, _, pooled, _ = pipe.encode_prompt(
                [prompt], None, None, device=device, do_classifier_free_guidance=False, max_sequence_length=length
            )
            return {"encoder_hidden_states": embeds, "pooled_projections": pooled}
        if self.family == "flux2":
            embeds, _ids = pipe.encode_prompt(prompt=[prompt], device=device, max_sequence_length=length)
            return {"encoder_hidden_states": embeds}
        embeds, _mask = pipe.encode_prompt([prompt], device=device, max_sequence_length=length)
        return {"encoder_hidden_states": embeds}

    # -- the network ------------------------------------------------------------------------------------------
    def velocity(
        self,
        network: torch.nn.Module,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: dict[str, torch.Tensor],
        uncond: dict[str, torch.Tensor],
        guidance: float,
    ) -> torch.Tensor:
        """v = ε - x0 predicted for unpacked latents `x` at scheduler timestep `t` (σ·1000), with the family's
        guidance at scale `guidance`, computed as the family's pipeline computes it (same batching, same
        arithmetic), returned unpacked in x's shape and dtype."""
        if self.family == "sd3":
            return self._sd3(network, x, t, cond, uncond, guidance)
        tokens = self._pack(x).to(network.dtype)
        timestep = t.expand(x.shape[0]).to(tokens.dtype) / 1000
        if self.family == "flux":
            out = self._flux(network, tokens, timestep, cond, guidance, x)
        elif self.family == "flux2":
            out = self._flux2(network, tokens, timestep, cond, x)
            if guidance > 1.0:  # FLUX.2-klein base: true CFG against the empty prompt
                negative = self._flux2(network, tokens, timestep, uncond, x)
                out = negative + guidance * (out - negative)
        else:
            out = self._qwen_call(network, tokens, timestep, cond, x)
            if guidance > 1.0:
                negative = self._qwen_call(network, tokens, timestep, uncond, x)
                combined = negative + guidance * (out - negative)
                # Qwen-Image's pipeline rescales the guided velocity to the conditional one's norm per token.
                out = combined * (out.norm(dim=-1, keepdim=True) / combined.norm(dim=-1, keepdim=True))
        return self._unpack(out, x).to(x.dtype)

    def embeds_guidance(self, network: torch.nn.Module) -> bool:
        return bool(getattr(network.config, "guidance_embeds", False))

    def pipeline_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """FLUX.2's sampler latents (patchified, batch-normalised) as its VAE takes them (and as its pipeline
        returns them for output_type='latent'): denormalised with the VAE's running statistics, unpatchified."""
        return _flux2_pipeline_latents(self.pipe, latents)

    def evals_per_step(self, network: torch.nn.Module, guidance: float) -> int:
        if self.family == "flux2":
            return 2 if guidance > 1.0 else 1
        if self.family == "flux" or self.embeds_guidance(network):
            return 1
        return 2 if guidance > 1.0 else 1

    def _flux(self, network, tokens, timestep, cond, guidance, x) -> torch.Tensor:
        b = x.shape[0]
        h, w = x.shape[-2:]
        ids = self.pipe._prepare_latent_image_ids(b, h // 2, w // 2, x.device, tokens.dtype)
        embeds = cond["encoder_hidden_states"]
        text_ids = torch.zeros(embeds.shape[1], 3, device=x.device, dtype=embeds.dtype)
        scale = None
        if self.embeds_guidance(network):  # FLUX.1-dev: guidance distilled into an input; no second evaluation
            scale = torch.full([1], guidance, device=x.device, dtype=torch.float32).expand(b)
        return network(
            hidden_states=tokens,
            timestep=timestep,
            guidance=scale,
            pooled_projections=cond["pooled_projections"].to(network.dtype),
            encoder_hidden_states=embeds.to(network.dtype),
            txt_ids=text_ids,
            img_ids=ids,
            joint_attention_kwargs={},
            return_dict=False,
        )[0]

    def _flux2(self, network, tokens, timestep, cond, x) -> torch.Tensor:
        embeds = cond["encoder_hidden_states"].to(network.dtype)
        out = network(
            hidden_states=tokens,
            timestep=timestep,
            guidance=None,
            encoder_hidden_states=embeds,
            txt_ids=self.pipe._prepare_text_ids(embeds).to(x.device),
            img_ids=self.pipe._prepare_latent_ids(x).to(x.device),
            joint_attention_kwargs=None,
            return_dict=False,
        )[0]
        return out[:, : tokens.size(1)]

    def _qwen_call(self, network, tokens, timestep, cond, x) -> torch.Tensor:
        embeds, mask = cond["encoder_hidden_states"], cond["encoder_hidden_states_mask"]
        if embeds.shape[0] == 1:  # one prompt: drop its padding, as its own pipeline call has none
            keep = int(mask[0].sum())
            embeds, mask = embeds[:, :keep], None
        elif bool(mask.all()):
            mask = None
        h, w = x.shape[-2:]
        return network(
            hidden_states=tokens,
            timestep=timestep,
            guidance=None,
            encoder_hidden_states_mask=mask,
            encoder_hidden_states=embeds.to(network.dtype),
            img_shapes=[[(1, h // 2, w // 2)]] * x.shape[0],
            attention_kwargs={},
            return_dict=False,
        )[0]

    def _sd3(self, network, x, t, cond, uncond, guidance) -> torch.Tensor:
        cfg = guidance > 1.0
        if cfg:  # SD3's pipeline evaluates [uncond, cond] as one batch
            cond = concat_kwargs([uncond, cond])
        model_input = torch.cat([x, x]) if cfg else x
        out = network(
            hidden_states=model_input.to(network.dtype),
            timestep=t.expand(model_input.shape[0]),
            encoder_hidden_states=cond["encoder_hidden_states"].to(network.dtype),
            pooled_projections=cond["pooled_projections"].to(network.dtype),
            joint_attention_kwargs=None,
            return_dict=False,
        )[0]
        if cfg:
            negative, positive = out.chunk(2)
            out = negative + guidance * (positive - negative)
        return out.to(x.dtype)

    # -- decoding -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, latents: torch.Tensor, micro_batch: int | None = 1) -> list:
        """Unpacked latents to PIL images, as the family's pipeline decodes them."""
        vae = self.pipe.vae
        latents = latents.to(vae.device, vae.dtype)
        if self.family == "flux2":
            latents = self.pipeline_latents(latents)
        elif self.family == "qwen":
            shape = (1, vae.config.z_dim, 1, 1, 1)
            mean = torch.tensor(vae.config.latents_mean).view(shape).to(latents)
            std = torch.tensor(vae.config.latents_std).view(shape).to(latents)
            latents = latents * std + mean
        else:
            latents = latents / vae.config.scaling_factor + vae.config.shift_factor
        size = micro_batch or latents.shape[0]
        chunks = [vae.decode(chunk, return_dict=False)[0] for chunk in latents.split(size)]
        images = torch.cat([c[:, :, 0] if self.family == "qwen" else c for c in chunks])
        return self.pipe.image_processor.postprocess(images, output_type="pil")


def _flux2_pipeline_latents(pipe, latents: torch.Tensor) -> torch.Tensor:
    bn = pipe.vae.bn
    mean = bn.running_mean.view(1, -1, 1, 1).to(latents.device, latents.dtype)
    std = torch.sqrt(bn.running_var.view(1, -1, 1, 1) + pipe.vae.config.batch_norm_eps).to(
        latents.device, latents.dtype
    )
    return pipe._unpatchify_latents(latents * std + mean)


def _pad_tokens(part: dict[str, torch.Tensor], length: int) -> dict[str, torch.Tensor]:
    embeds = part["encoder_hidden_states"]
    n = embeds.shape[1]
    mask = torch.zeros(1, length, dtype=torch.long, device=embeds.device)
    mask[:, :n] = 1
    padded = torch.cat([embeds, embeds.new_zeros(1, length - n, embeds.shape[2])], dim=1)
    return {"encoder_hidden_states": padded, "encoder_hidden_states_mask": mask}
