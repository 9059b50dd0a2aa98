"""A loaded base/distilled pair: two denoising networks that share one VAE and one set of text encoders."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import DiffusionPipeline, SchedulerMixin
from omegaconf import DictConfig


@dataclass
class ModelSpec:
    """One model of a pair: its network, its scheduler (a template, never stepped) and its sampling settings."""

    role: str  # "base" or "distilled"
    label: str
    network: torch.nn.Module
    scheduler: SchedulerMixin
    steps: int
    guidance: float
    timesteps: list[int] | None = None
    # Flow-matching models: the keyword arguments their pipeline passes to `set_timesteps` (sigmas, mu), fixed by
    # the pair's resolution at load (see models/flow.py). None: a DDPM-family model, `set_timesteps(steps)`.
    schedule_args: dict[str, Any] | None = None
    # Adapter-distilled pairs (one network, a LoRA toggled per role): the adapter this role runs with; None with a
    # shared network means adapters off (see models/adapter_pair.py).
    adapter: str | None = None

    @property
    def prediction_type(self) -> str:
        # Flow-matching schedulers have no prediction_type: their networks predict the velocity ε - x0.
        return self.scheduler.config.get("prediction_type", "flow")


@dataclass
class Conditioning:
    """Network keyword arguments for the prompts of one batch, conditional and unconditional."""

    cond: dict[str, Any]
    uncond: dict[str, Any]
    # Each sample's seed, set by the sampler: it fixes the sample's row in a fixed-shape network call
    # (sampling/chunks.py). None: the batch rows in order.
    seeds: tuple[int, ...] | None = None

    def keys(self, batch: int) -> tuple[int, ...]:
        return self.seeds if self.seeds is not None else tuple(range(batch))


def concat_kwargs(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch-concatenate keyword dicts of tensors (nested dicts too; None stays None)."""
    merged: dict[str, Any] = {}
    for key, value in parts[0].items():
        if isinstance(value, dict):
            merged[key] = concat_kwargs([p[key] for p in parts])
        else:
            merged[key] = None if value is None else torch.cat([p[key] for p in parts])
    return merged


def take_kwargs(kwargs: dict[str, Any], indices: list[int]) -> dict[str, Any]:
    """Rows `indices` (in that order, repeats allowed) of every tensor in a (nested) keyword dict."""
    return {
        key: take_kwargs(value, indices) if isinstance(value, dict) else None if value is None else value[indices]
        for key, value in kwargs.items()
    }


@dataclass
class ModelPair:
    name: str
    family: str  # "sd", "sdxl" or "pixart": which conditioning the networks take
    pipe: DiffusionPipeline  # holds the shared components; its own network slot holds the base network
    base: ModelSpec
    distilled: ModelSpec
    height: int
    width: int
    device: torch.device
    dtype: torch.dtype
    base_size: tuple[int, int] | None = None  # (height, width) of base-only runs when not the pair's own size
    preset: str | None = None  # the preset the settings came from (conf/pair_preset/), None: the model's own
    skip_first_noise: str = "unit"  # skip_first's start noise: "unit" (the paper's) or "scaled" (see sampler)
    # Samples per network call in `generate`, x0viz and transfer-lora, each at a row fixed by its seed
    # (sampling/chunks.py). Any value gives the same image at any batch size or shard; changing it moves the last
    # bits, so it is part of the settings an image is recorded with (conf/model/<name>.yaml).
    micro_batch: int = 1
    # The roles whose networks were read (models/hub.method_roles); a role left out is a stand-in that the plans
    # refuse to sample with.
    loaded: tuple[str, ...] = ("base", "distilled")

    def spec(self, role: str) -> ModelSpec:
        return self.base if role == "base" else self.distilled

    def for_method(self, method: str) -> ModelPair:
        """The pair at the resolution `method` runs at: base-only runs at the base's native size (SDXL-Base at
        1024 beside the 512 px SDXL-Turbo); every run the student takes part in stays at the pair's size."""
        if method != "base" or self.base_size is None or self.base_size == (self.height, self.width):
            return self
        height, width = self.base_size
        return dataclasses.replace(self, height=height, width=width)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        channels = self.base.network.config.in_channels
        factor = self.pipe.vae_scale_factor
        return channels, self.height // factor, self.width // factor

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> Conditioning:
        """Text conditioning for both models (they share the text encoders), with the empty-prompt negative.
        One prompt at a time: batched projections round differently, and a prompt's embedding must not
        depend on the batch it arrives in."""
        encode = {"sd": self._encode_sd, "sdxl": self._encode_sdxl, "pixart": self._encode_pixart}[self.family]
        parts = [encode([prompt]) for prompt in prompts]
        return Conditioning(concat_kwargs([p.cond for p in parts]), concat_kwargs([p.uncond for p in parts]))

    def _encode_sd(self, prompts: list[str]) -> Conditioning:
        embeds, negative = self.pipe.encode_prompt(prompts, self.device, 1, True, negative_prompt=[""] * len(prompts))
        return Conditioning({"encoder_hidden_states": embeds}, {"encoder_hidden_states": negative})

    def _encode_sdxl(self, prompts: list[str]) -> Conditioning:
        # negative_prompt=None keeps SDXL's force_zeros_for_empty_prompt behaviour, as its pipeline does.
        embeds, negative, pooled, negative_pooled = self.pipe.encode_prompt(
            prompt=prompts, device=self.device, num_images_per_prompt=1, do_classifier_free_guidance=True
        )
        size = (self.height, self.width)
        time_ids = (
            self.pipe._get_add_time_ids(
                size,
                (0, 0),
                size,
                dtype=embeds.dtype,
                text_encoder_projection_dim=self.pipe.text_encoder_2.config.projection_dim,
            )
            .to(self.device)
            .repeat(len(prompts), 1)
        )
        return Conditioning(
            {"encoder_hidden_states": embeds, "added_cond_kwargs": {"text_embeds": pooled, "time_ids": time_ids}},
            {
                "encoder_hidden_states": negative,
                "added_cond_kwargs": {"text_embeds": negative_pooled, "time_ids": time_ids},
            },
        )

    def _encode_pixart(self, prompts: list[str]) -> Conditioning:
        embeds, mask, negative, negative_mask = self.pipe.encode_prompt(
            prompts, True, negative_prompt="", device=self.device, clean_caption=False, max_sequence_length=120
        )
        micro = {"resolution": None, "aspect_ratio": None}
        if self.base.network.config.sample_size == 128:  # the 1024px PixArt-α checkpoints take size micro-conditions
            n = len(prompts)
            micro = {
                "resolution": torch.tensor([self.height, self.width]).repeat(n, 1).to(self.device, embeds.dtype),
                "aspect_ratio": torch.tensor([self.height / self.width]).repeat(n, 1).to(self.device, embeds.dtype),
            }
        return Conditioning(
            {"encoder_hidden_states": embeds, "encoder_attention_mask": mask, "added_cond_kwargs": micro},
            {"encoder_hidden_states": negative, "encoder_attention_mask": negative_mask, "added_cond_kwargs": micro},
        )

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, micro_batch: int | None = 1) -> list:
        """Latents to PIL images, with the VAE in float32 where its config says fp16 overflows (SDXL).
        Decoded in chunks of `micro_batch` so an image does not depend on its batch (None: all at once)."""
        vae = self.pipe.vae
        if vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False):
            vae.to(torch.float32)
        latents = latents.to(vae.device, vae.dtype) / vae.config.scaling_factor
        size = micro_batch or latents.shape[0]
        images = torch.cat([vae.decode(chunk, return_dict=False)[0] for chunk in latents.split(size)])
        return self.pipe.image_processor.postprocess(images, output_type="pil")


def stood_in(networks: dict[str, Any]) -> dict[str, Any]:
    """Both roles' networks: the one network read stands in for the other (one object, never copied)."""
    if len(networks) == 2:
        return networks
    (only,) = networks.values()
    return dict.fromkeys(("base", "distilled"), only)


def stand_ins(model: DictConfig, specs: dict[str, ModelSpec]) -> dict[str, ModelSpec]:
    """Both roles' specs: a role not loaded is the loaded one's network and scheduler under the role's own name
    and settings, so the pair keeps its shape (latent size, conditioning); the plans refuse to sample with it."""
    if len(specs) == 2:
        return specs
    (loaded,) = specs.values()
    for role in ("base", "distilled"):
        if role not in specs:
            conf = model[role]
            timesteps = list(conf.timesteps) if conf.get("timesteps") else None
            specs[role] = ModelSpec(
                role, conf.label, loaded.network, loaded.scheduler, int(conf.steps), float(conf.guidance), timesteps
            )
    return specs
