"""Random-weight tiny FLUX, SD3 and Qwen-Image pipeline components, built offline (no hub, no downloads).

The classes are the ones the real checkpoints load into (FluxPipeline, StableDiffusion3Pipeline, QwenImagePipeline),
only with small configs, so the flow-matching paths run on CPU in a fraction of a second. Weights depend only on
(family, seed). Tokenizers are built locally: the project's byte-level CLIP and character T5 tokenizers, and a
byte-level Qwen2 tokenizer without merges.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..core.pair_settings import FLOW_FAMILIES
from .tiny import TEXT_HIDDEN, _byte_unicode_chars, _clip_config, _clip_tokenizer, _t5_tokenizer

LATENT_CHANNELS = 4
T5_HIDDEN = 64  # SD3 pads the two CLIP widths (32 + 32) to the T5 width, so it must be at least their sum
QWEN_HIDDEN = 16
QWEN_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
QWEN3_HIDDEN = 8
QWEN3_LAYERS = 28  # FLUX.2-klein reads hidden states 9, 18 and 27 of its Qwen3 encoder
# A minimal chat template (the real tokenizer ships Qwen3's): FLUX.2-klein applies one to every prompt.
QWEN3_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _check(family: str) -> None:
    if family not in FLOW_FAMILIES:
        raise ValueError(f"unknown flow family {family!r}; expected one of {', '.join(FLOW_FAMILIES)}")


def pipeline_class(family: str):
    """FluxPipeline, StableDiffusion3Pipeline or QwenImagePipeline."""
    import diffusers

    _check(family)
    return {
        "flux": diffusers.FluxPipeline,
        "sd3": diffusers.StableDiffusion3Pipeline,
        "qwen": diffusers.QwenImagePipeline,
        "flux2": diffusers.Flux2KleinPipeline,
    }[family]


def _t5_encoder(tokenizer, width: int):
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=width,
        d_kv=8,
        d_ff=2 * width,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        dropout_rate=0.0,
        feed_forward_proj="gated-gelu",
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return T5EncoderModel(config)


def qwen_tokenizer():
    """A byte-level Qwen2 tokenizer without merges (one token per byte) plus the chat-template specials."""
    from transformers import Qwen2Tokenizer

    vocab = {char: i for i, char in enumerate(_byte_unicode_chars())}
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
        Path(tmp, "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
        tokenizer = Qwen2Tokenizer(
            vocab=str(Path(tmp, "vocab.json")), merges=str(Path(tmp, "merges.txt")), model_max_length=2048
        )
    tokenizer.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIAL[1:])})
    return tokenizer


def _qwen_text_encoder(tokenizer):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    size = len(tokenizer)
    config = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": QWEN_HIDDEN,
            "intermediate_size": QWEN_HIDDEN,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "vocab_size": size,
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
            "rope_theta": 1000000.0,
            "bos_token_id": tokenizer.eos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        },
        vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16},
        hidden_size=QWEN_HIDDEN,
        vocab_size=size,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        # The vision special ids must lie inside the tiny vocabulary; no image is ever passed.
        vision_start_token_id=size - 3,
        vision_end_token_id=size - 2,
        vision_token_id=size - 1,
        image_token_id=size - 1,
        video_token_id=size - 1,
    )
    return Qwen2_5_VLForConditionalGeneration(config)


def _qwen3_text_encoder(tokenizer):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=QWEN3_HIDDEN,
        intermediate_size=2 * QWEN3_HIDDEN,
        num_hidden_layers=QWEN3_LAYERS,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=4,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return Qwen3ForCausalLM(config)


def build_shared_components(family: str, seed: int = 0) -> dict[str, Any]:
    """Everything but the transformer and the scheduler, as keyword arguments for the family's pipeline.
    Eval mode, float32, on CPU; the global RNG state is left as it was."""
    from diffusers import AutoencoderKL, AutoencoderKLQwenImage
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    _check(family)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if family == "flux2":
            from diffusers import AutoencoderKLFlux2

            tokenizer = qwen_tokenizer()
            tokenizer.chat_template = QWEN3_CHAT_TEMPLATE
            vae = AutoencoderKLFlux2(
                block_out_channels=(16, 32),
                down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
                layers_per_block=1,
                latent_channels=LATENT_CHANNELS,
                norm_num_groups=8,
                sample_size=32,
            )
            with torch.no_grad():  # non-trivial latent statistics, so the denormalisation is exercised
                vae.bn.running_mean.uniform_(-0.2, 0.2)
                vae.bn.running_var.uniform_(0.5, 2.0)
            components = {"vae": vae, "text_encoder": _qwen3_text_encoder(tokenizer), "tokenizer": tokenizer}
        elif family == "qwen":
            tokenizer = qwen_tokenizer()
            components: dict[str, Any] = {
                "vae": AutoencoderKLQwenImage(
                    base_dim=24,
                    z_dim=LATENT_CHANNELS,
                    dim_mult=[1, 2, 4],
                    num_res_blocks=1,
                    temperal_downsample=[False, True],
                    latents_mean=[0.1, -0.2, 0.05, 0.0],
                    latents_std=[1.5, 0.8, 1.2, 1.0],
                ),
                "text_encoder": _qwen_text_encoder(tokenizer),
                "tokenizer": tokenizer,
            }
        else:
            vae = AutoencoderKL(
                in_channels=3,
                out_channels=3,
                down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
                block_out_channels=(16, 32),
                layers_per_block=1,
                latent_channels=LATENT_CHANNELS,
                norm_num_groups=8,
                sample_size=32,
                use_quant_conv=False,
                use_post_quant_conv=False,
                # The real checkpoints' latent normalisation (FLUX.1: 0.3611 / 0.1159; SD3: 1.5305 / 0.0609).
                scaling_factor=0.3611 if family == "flux" else 1.5305,
                shift_factor=0.1159 if family == "flux" else 0.0609,
            )
            clip_tokenizer = _clip_tokenizer()
            t5_tokenizer = _t5_tokenizer()
            if family == "flux":
                components = {
                    "vae": vae,
                    "text_encoder": CLIPTextModel(_clip_config(clip_tokenizer, "quick_gelu", TEXT_HIDDEN)),
                    "tokenizer": clip_tokenizer,
                    "text_encoder_2": _t5_encoder(t5_tokenizer, TEXT_HIDDEN),
                    "tokenizer_2": t5_tokenizer,
                }
            else:
                clip_2 = _clip_tokenizer()
                components = {
                    "vae": vae,
                    "text_encoder": CLIPTextModelWithProjection(
                        _clip_config(clip_tokenizer, "quick_gelu", TEXT_HIDDEN)
                    ),
                    "tokenizer": clip_tokenizer,
                    "text_encoder_2": CLIPTextModelWithProjection(_clip_config(clip_2, "gelu", TEXT_HIDDEN)),
                    "tokenizer_2": clip_2,
                    "text_encoder_3": _t5_encoder(t5_tokenizer, T5_HIDDEN),
                    "tokenizer_3": t5_tokenizer,
                }
    for value in components.values():
        if isinstance(value, torch.nn.Module):
            value.eval()
    return components


def build_network(family: str, seed: int = 0, guidance_embeds: bool = False) -> torch.nn.Module:
    """The family's transformer sized for `build_shared_components(family)`; `guidance_embeds` (FLUX only): a
    FLUX.1-dev-like network that takes the guidance scale as an input. Eval mode, float32, on CPU."""
    from diffusers import (
        Flux2Transformer2DModel,
        FluxTransformer2DModel,
        QwenImageTransformer2DModel,
        SD3Transformer2DModel,
    )

    _check(family)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if family == "flux":
            network: torch.nn.Module = FluxTransformer2DModel(
                patch_size=1,
                in_channels=4 * LATENT_CHANNELS,  # 2x2 packed latents
                num_layers=1,
                num_single_layers=1,
                attention_head_dim=16,
                num_attention_heads=2,
                joint_attention_dim=TEXT_HIDDEN,
                pooled_projection_dim=TEXT_HIDDEN,
                guidance_embeds=guidance_embeds,
                axes_dims_rope=(4, 4, 8),
            )
        elif family == "sd3":
            network = SD3Transformer2DModel(
                sample_size=16,
                patch_size=2,
                in_channels=LATENT_CHANNELS,
                out_channels=LATENT_CHANNELS,
                num_layers=2,
                attention_head_dim=8,
                num_attention_heads=4,
                joint_attention_dim=T5_HIDDEN,
                caption_projection_dim=32,
                pooled_projection_dim=2 * TEXT_HIDDEN,
                pos_embed_max_size=32,
            )
        elif family == "flux2":
            network = Flux2Transformer2DModel(
                patch_size=1,
                in_channels=4 * LATENT_CHANNELS,  # latents patchified 2x2 by the VAE's layout
                num_layers=1,
                num_single_layers=1,
                attention_head_dim=16,
                num_attention_heads=2,
                joint_attention_dim=3 * QWEN3_HIDDEN,  # three stacked encoder layers
                timestep_guidance_channels=32,
                axes_dims_rope=(4, 4, 4, 4),
                guidance_embeds=False,
            )
        else:
            network = QwenImageTransformer2DModel(
                patch_size=2,
                in_channels=4 * LATENT_CHANNELS,
                out_channels=LATENT_CHANNELS,
                num_layers=2,
                attention_head_dim=16,
                num_attention_heads=3,
                joint_attention_dim=QWEN_HIDDEN,
                guidance_embeds=False,
                axes_dims_rope=(8, 4, 4),
            )
    return network.eval()


def random_lora(network: torch.nn.Module, adapter: str, seed: int, rank: int = 4) -> None:
    """Attach a LoRA with random (non-zero) weights to the attention projections of `network`: a stand-in for a
    step-distillation LoRA such as Qwen-Image-Lightning, so the adapter visibly changes the network."""
    from peft import LoraConfig

    config = LoraConfig(
        r=rank,
        lora_alpha=rank,
        target_modules=["to_q", "to_k", "to_v", "to_out.0"],
        init_lora_weights=False,  # random A and B: a LoRA that does something
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network.add_adapter(config, adapter_name=adapter)
