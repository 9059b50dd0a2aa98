"""`conf/train_toy.yaml`: the toy base model and its feature network, trained from scratch."""

from __future__ import annotations

from dataclasses import dataclass

from ..schema import ITEM_TEXT, choice, device, flag, integer, item_int, items, number, out_dir, path, section
from .common import SEED_MAX

CHANNELS = item_int(1, 4096)


@dataclass
class Data:
    n_train: int = integer("training scenes", 2)
    n_heldout: int = integer("held-out scenes", 2)


@dataclass
class Vae:
    channels: list = items("channels per level (at least two levels)", CHANNELS, min_items=2)
    norm_groups: int = integer("GroupNorm groups", 1)
    latent_channels: int = integer("latent channels", 1)
    reuse: str = path("a trained AutoencoderKL folder to use instead of training one", True)
    steps: int = integer("optimizer steps", 1)
    batch_size: int = integer("scenes per step", 1)
    lr: float = number("learning rate", 0, low_open=True)
    kl_weight: float = number("KL weight per latent element", 0)


@dataclass
class Features:
    retrain: bool = flag("train a new feature network instead of copying the shipped one")
    channels: list = items("channels per level", CHANNELS, min_items=1)
    embed_dim: int = integer("feature size", 1)
    steps: int = integer("optimizer steps", 1)
    batch_size: int = integer("scenes per step", 1)
    lr: float = number("learning rate", 0, low_open=True)


@dataclass
class TextEncoder:
    hidden: int = integer("width", 1)
    layers: int = integer("transformer layers", 1)
    heads: int = integer("attention heads", 1)


@dataclass
class Unet:
    channels: list = items("channels per level", CHANNELS, min_items=1)
    norm_groups: int = integer("GroupNorm groups", 1)
    heads: int = integer("attention heads", 1)
    text_embedding: bool = flag("the pooled caption also joins the timestep embedding")
    coordinates: bool = flag("x and y planes join the UNet's input, so position words have a place to bind to")
    schedule_shift: float = number("SD3-style shift of the noise schedule", 0, low_open=True)
    prediction_type: str = choice("what the UNet predicts", ("epsilon", "v_prediction"))
    zero_terminal_snr: bool = flag("rescale the schedule so that t=999 is pure noise (needs v_prediction)")
    late_timestep_portion: float = number("the noisiest share of the schedule, drawn more often", 0, 1, low_open=True)
    late_timestep_multiplier: float = number("how much more often those timesteps are drawn (1: uniform)", 1)
    steps: int = integer("optimizer steps", 1)
    batch_size: int = integer("scenes per step", 1)
    lr: float = number("learning rate", 0, low_open=True)
    warmup: int = integer("warm-up steps", 0)
    cond_dropout: float = number("fraction of captions replaced by the empty prompt", 0, 1)
    snr_gamma: float = number(
        "min-SNR loss weighting (null: plain MSE of the predicted target)", 0, low_open=True, null=True
    )
    ema_decay: float = number("EMA decay of the weights", 0, 1)
    init_from: str = path("a trained base folder (unet/, text_encoder/ of the same sizes) to continue from", True)


@dataclass
class Evaluate:
    prompts: list = items("prompts of the evaluation", ITEM_TEXT, min_items=1)
    n: int = integer("samples per prompt", 2)
    steps: int = integer("DDIM steps of the base", 1)
    guidance: float = number("CFG scale", 0)


@dataclass
class TrainToyConfig:
    out: str = out_dir("run directory; a killed run resumes when rerun with the same settings")
    seed: int = integer("training seed", 0, SEED_MAX)
    device: str = device()
    threads: int = integer("CPU threads for torch (CPU runs only)", 1, 1024)
    overwrite: bool = flag("delete an existing train-toy run in out and start again")
    checkpoint_every: int = integer("optimizer steps between checkpoints", 1)
    log_every: int = integer("optimizer steps between log rows", 1)
    data: Data = section(Data, "the procedural scenes")
    vae: Vae = section(Vae, "the VAE")
    features: Features = section(Features, "the feature network")
    text_encoder: TextEncoder = section(TextEncoder, "the text encoder")
    unet: Unet = section(Unet, "the UNet")
    evaluate: Evaluate = section(Evaluate, "the evaluation after training")
