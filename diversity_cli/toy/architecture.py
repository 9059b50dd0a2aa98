"""The toy base model's networks: SD's classes (AutoencoderKL, CLIPTextModel, UNet2DConditionModel) in small sizes.

A 32x32 RGB image becomes an 8x8 latent (the VAE halves the side twice; 8 channels by default); the UNet works
on 8x8 latents with cross-attention only at its 4x4 level, where attention is cheap on a CPU. Sizes come from the
`train_toy` config, so tests can build even smaller ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from ..models.coord_unet import CoordUNet2DConditionModel
from .data import IMAGE_SIZE


def build_vae(channels: Sequence[int], norm_groups: int, latent_channels: int = 4) -> AutoencoderKL:
    """Each level after the first halves the side: three levels map 32x32 images to 8x8 latents."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(channels),
        up_block_types=("UpDecoderBlock2D",) * len(channels),
        block_out_channels=tuple(channels),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=norm_groups,
        sample_size=IMAGE_SIZE,
        mid_block_add_attention=False,  # self-attention over 64 latent pixels adds cost and nothing the toy needs
        force_upcast=False,
    )


def build_text_encoder(tokenizer: CLIPTokenizer, hidden: int, layers: int, heads: int) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=tokenizer.model_max_length,
        hidden_act="quick_gelu",
        projection_dim=hidden,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,  # not 2, so CLIP pools at the first end-of-text token
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def latent_side(vae_channels: Sequence[int]) -> int:
    return IMAGE_SIZE // 2 ** (len(vae_channels) - 1)


def build_unet(
    channels: Sequence[int],
    norm_groups: int,
    cross_attention_dim: int,
    heads: int,
    sample_size: int,
    latent_channels: int = 4,
    text_embedding: bool = True,
    coordinates: bool = False,
) -> UNet2DConditionModel:
    """Plain ResNet blocks at the latent's full size, cross-attention at every lower level (and the middle).

    `text_embedding`: an attention-pooled caption embedding is added to the timestep embedding (diffusers'
    `addition_embed_type="text"`), so every ResNet block, the full-size ones too, sees the caption.
    `coordinates`: x and y planes join the input (CoordUNet2DConditionModel), so position words have a place to
    bind to."""
    down = ("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (len(channels) - 1)
    up = ("CrossAttnUpBlock2D",) * (len(channels) - 1) + ("UpBlock2D",)
    cls = CoordUNet2DConditionModel if coordinates else UNet2DConditionModel
    return cls(
        sample_size=sample_size,  # the pipelines' default image side is this times the VAE's scale factor
        in_channels=latent_channels,
        out_channels=latent_channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=tuple(channels),
        layers_per_block=1,
        norm_num_groups=norm_groups,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=heads,  # diffusers' historical name: the number of heads
        addition_embed_type="text" if text_embedding else None,
        addition_embed_type_num_heads=heads,
    )


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
