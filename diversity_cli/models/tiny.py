"""Random-weight tiny versions of the SD, SDXL and PixArt-α pipeline components, built offline.

The classes are the ones the real checkpoints load into, only with small configs, so every code path of the
toolkit runs on CPU in seconds without a model hub. Weights depend only on (family, seed).
"""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    DiffusionPipeline,
    PixArtAlphaPipeline,
    PixArtTransformer2DModel,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

FAMILIES = ("sd", "sdxl", "pixart")

_PIPELINES: dict[str, type[DiffusionPipeline]] = {
    "sd": StableDiffusionPipeline,
    "sdxl": StableDiffusionXLPipeline,
    "pixart": PixArtAlphaPipeline,
}

LATENT_CHANNELS = 4
CHANNELS = (16, 32)  # two resolution levels in the VAE and the UNets
NORM_GROUPS = 8
TEXT_HIDDEN = 32  # every tiny text encoder's width, and SD's / PixArt's cross-attention width
CLIP_MAX_LENGTH = 77
T5_MAX_LENGTH = 120  # PixArt-α's max_sequence_length
SDXL_PROJECTION_DIM = 32  # text_encoder_2's pooled width, which SDXL's add_time_ids are sized from
SDXL_TIME_EMBED_DIM = 8
# Latent size of the networks; the VAE halves each side, so the pipelines' default image is 64x64 px.
SAMPLE_SIZE = 32
# Real checkpoints' VAE scaling factors, so latent statistics code sees the family's usual constant.
_VAE_SCALING = {"sd": 0.18215, "sdxl": 0.13025, "pixart": 0.18215}


def _check(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")


def pipeline_class(family: str) -> type[DiffusionPipeline]:
    """The diffusers pipeline class of a family: StableDiffusion, StableDiffusionXL or PixArtAlpha."""
    _check(family)
    return _PIPELINES[family]


def _byte_unicode_chars() -> list[str]:
    """GPT-2/CLIP's byte-to-unicode table: printable stand-ins for the 256 byte values, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)]
    codes = {b: b for b in printable}
    extra = 0
    for b in range(256):
        if b not in codes:
            codes[b] = 256 + extra
            extra += 1
    return [chr(codes[b]) for b in range(256)]


def _clip_tokenizer() -> CLIPTokenizer:
    """A byte-level CLIP tokenizer without merges: any text encodes, one token per byte (ids < 514)."""
    chars = _byte_unicode_chars()
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: i for i, token in enumerate(tokens)}
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
        Path(tmp, "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
        # Without model_max_length a locally built tokenizer reports a huge one and the pipelines pad to it.
        return CLIPTokenizer.from_pretrained(tmp, model_max_length=CLIP_MAX_LENGTH)


def _t5_tokenizer() -> T5Tokenizer:
    """A character-level Unigram T5 tokenizer (<pad>=0, </s>=1, <unk>=2); no sentencepiece model needed."""
    chars = string.ascii_lowercase + string.ascii_uppercase + string.digits + string.punctuation
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [("▁" + c, -2.5) for c in chars] + [(c, -3.0) for c in chars]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=T5_MAX_LENGTH)


def _clip_config(tokenizer: CLIPTokenizer, hidden_act: str, projection_dim: int) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=TEXT_HIDDEN,
        intermediate_size=2 * TEXT_HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=CLIP_MAX_LENGTH,
        hidden_act=hidden_act,
        projection_dim=projection_dim,
        bos_token_id=tokenizer.bos_token_id,
        # Not 2, so CLIP pools at the first end-of-text token rather than at the largest id.
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _vae(family: str) -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=CHANNELS,
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=NORM_GROUPS,
        sample_size=2 * SAMPLE_SIZE,
        scaling_factor=_VAE_SCALING[family],
    )


def build_shared_components(family: str, seed: int = 0) -> dict[str, Any]:
    """Everything but the denoising network and the scheduler, as keyword arguments for the family's pipeline.

    sd: vae, text_encoder, tokenizer, and safety_checker=None, feature_extractor=None,
    requires_safety_checker=False.
    sdxl: vae, text_encoder, text_encoder_2 (with projection), tokenizer, tokenizer_2.
    pixart: vae, text_encoder (T5 encoder), tokenizer (T5, max length 120).
    Modules are in eval mode, float32, on CPU; the global RNG state is left as it was.
    """
    _check(family)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = _vae(family)
        if family == "sd":
            tokenizer = _clip_tokenizer()
            components: dict[str, Any] = {
                "vae": vae,
                "text_encoder": CLIPTextModel(_clip_config(tokenizer, "quick_gelu", TEXT_HIDDEN)),
                "tokenizer": tokenizer,
                "safety_checker": None,
                "feature_extractor": None,
                "requires_safety_checker": False,
            }
        elif family == "sdxl":
            tokenizer, tokenizer_2 = _clip_tokenizer(), _clip_tokenizer()
            components = {
                "vae": vae,
                "text_encoder": CLIPTextModel(_clip_config(tokenizer, "quick_gelu", TEXT_HIDDEN)),
                "text_encoder_2": CLIPTextModelWithProjection(_clip_config(tokenizer_2, "gelu", SDXL_PROJECTION_DIM)),
                "tokenizer": tokenizer,
                "tokenizer_2": tokenizer_2,
            }
        else:
            tokenizer = _t5_tokenizer()
            config = T5Config(
                vocab_size=len(tokenizer),
                d_model=TEXT_HIDDEN,
                d_kv=8,
                d_ff=2 * TEXT_HIDDEN,
                num_layers=2,
                num_heads=4,
                relative_attention_num_buckets=8,
                dropout_rate=0.0,
                feed_forward_proj="gated-gelu",  # T5 v1.1, as in PixArt-α's text encoder
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
                decoder_start_token_id=tokenizer.pad_token_id,
            )
            components = {"vae": vae, "text_encoder": T5EncoderModel(config), "tokenizer": tokenizer}
    for value in components.values():
        if isinstance(value, torch.nn.Module):
            value.eval()  # as from_pretrained leaves them
    return components


def build_network(family: str, seed: int = 0) -> torch.nn.Module:
    """The denoising network of a family, with cross-attention sized for `build_shared_components(family)`.

    sd: UNet2DConditionModel. sdxl: UNet2DConditionModel with "text_time" added embeddings, sized for
    text_encoder_2's projection_dim. pixart: PixArtTransformer2DModel with learned sigma (8 output channels)
    and no size micro-conditions. Eval mode, float32, on CPU; the global RNG state is left as it was.
    """
    _check(family)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if family == "sd":
            network: torch.nn.Module = UNet2DConditionModel(
                sample_size=SAMPLE_SIZE,
                in_channels=LATENT_CHANNELS,
                out_channels=LATENT_CHANNELS,
                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                block_out_channels=CHANNELS,
                layers_per_block=1,
                norm_num_groups=NORM_GROUPS,
                cross_attention_dim=TEXT_HIDDEN,
                attention_head_dim=4,
            )
        elif family == "sdxl":
            network = UNet2DConditionModel(
                sample_size=SAMPLE_SIZE,
                in_channels=LATENT_CHANNELS,
                out_channels=LATENT_CHANNELS,
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                block_out_channels=CHANNELS,
                layers_per_block=1,
                norm_num_groups=NORM_GROUPS,
                # SDXL concatenates the penultimate hidden states of both text encoders.
                cross_attention_dim=2 * TEXT_HIDDEN,
                attention_head_dim=(2, 4),
                use_linear_projection=True,
                addition_embed_type="text_time",
                addition_time_embed_dim=SDXL_TIME_EMBED_DIM,
                # Six size/crop ids, each embedded to addition_time_embed_dim, plus the pooled text embedding.
                projection_class_embeddings_input_dim=SDXL_TIME_EMBED_DIM * 6 + SDXL_PROJECTION_DIM,
            )
        else:
            network = PixArtTransformer2DModel(
                sample_size=SAMPLE_SIZE,
                num_layers=2,
                patch_size=2,
                num_attention_heads=4,
                attention_head_dim=8,
                in_channels=LATENT_CHANNELS,
                out_channels=2 * LATENT_CHANNELS,
                cross_attention_dim=TEXT_HIDDEN,
                caption_channels=TEXT_HIDDEN,
                attention_bias=True,
                activation_fn="gelu-approximate",
                num_embeds_ada_norm=1000,
                norm_type="ada_norm_single",
                norm_elementwise_affine=False,
                norm_eps=1e-6,
                use_additional_conditions=False,
            )
    return network.eval()
