"""The three training stages of the toy model: the VAE, the feature network, and the text encoder with the UNet."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from diffusers.training_utils import EMAModel, compute_snr
from omegaconf import DictConfig
from transformers import CLIPTextModel, CLIPTokenizer

from ..core.atomic import atomic_path, shared_modes
from ..core.errors import UserError, first_line
from ..models.coord_unet import CoordUNet2DConditionModel, add_coordinates, unet_class
from ..sampling.denoiser import denoising_target
from .architecture import build_text_encoder, build_unet, build_vae, latent_side
from .data import FACTORS, ToyDataset, caption, sample_named
from .features import ToyClassifier, save_classifier
from .loop import Stage, StageRunner
from .schedule import training_schedule

# Seeds of the stages' random streams: offsets from the run's seed, so stages do not share draws.
STAGE_SEED = {"vae": 1, "features": 2, "unet": 3}


def _streams(seed: int, stage: str) -> tuple[np.random.Generator, torch.Generator]:
    stage_seed = seed * 1000 + STAGE_SEED[stage]
    return np.random.default_rng(stage_seed), torch.Generator("cpu").manual_seed(stage_seed)


def _images(images: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) rows -> float (B, 3, H, W) in [0, 1]."""
    return images[torch.from_numpy(idx).to(images.device)].permute(0, 3, 1, 2).float() / 255


def _randn(shape, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randn(shape, generator=generator).to(device)


def _warmup_cosine(optimizer: torch.optim.Optimizer, warmup: int, steps: int, floor: float = 0.1):
    """Linear warm-up, then a cosine decay to `floor` times the peak learning rate."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, steps - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ---------------------------------------------------------------- VAE


def train_vae(runner: StageRunner, cfg: DictConfig, images: torch.Tensor, seed: int, out: Path) -> AutoencoderKL:
    """AutoencoderKL on the scenes: per-pixel MSE plus a small KL; then its scaling factor from the latent std."""
    folder = out / "vae"
    if runner.done("vae"):
        return AutoencoderKL.from_pretrained(folder).to(images.device).eval()
    rng, generator = _streams(seed, "vae")
    if cfg.get("reuse"):
        return reuse_vae(runner, Path(cfg.reuse), images, generator, folder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = build_vae(cfg.channels, cfg.norm_groups, int(cfg.latent_channels)).to(images.device)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, weight_decay=0.0)
    stage = Stage(
        "vae",
        int(cfg.steps),
        {"vae": vae},
        optimizer,
        rng,
        generator,
        _warmup_cosine(optimizer, min(100, int(cfg.steps) // 10 + 1), int(cfg.steps)),
        checkpoint_every=runner.checkpoint_every,
        log_every=runner.log_every,
    )

    def step(_: int) -> dict[str, float]:
        x = _images(images, rng.integers(0, len(images), int(cfg.batch_size))) * 2 - 1
        posterior = vae.encode(x).latent_dist
        z = posterior.sample(generator=generator)
        recon = vae.decode(z).sample
        rec = F.mse_loss(recon, x)
        kl = posterior.kl().mean() / z[0].numel()
        loss = rec + float(cfg.kl_weight) * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"mse": rec.item(), "kl": kl.item()}

    seconds = runner.run(stage, step)
    mean, std = latent_stats(vae, images, generator)
    # SD's convention: latents / scaling_factor is what the decoder takes, and scaled latents have unit variance.
    vae.register_to_config(scaling_factor=1.0 / std)
    vae.save_pretrained(folder, safe_serialization=True)
    shared_modes(folder)  # safetensors writes its files private
    runner.mark_done("vae", {"seconds": seconds, "latent_mean": mean, "latent_std": std, "scaling_factor": 1 / std})
    return vae.eval()


def reuse_vae(
    runner: StageRunner, source: Path, images: torch.Tensor, generator: torch.Generator, folder: Path
) -> AutoencoderKL:
    """A trained VAE (its scaling factor kept) in place of training one: a new UNet on the shipped latents."""
    if not (source / "config.json").is_file():
        raise UserError(f"vae.reuse={source} is not an AutoencoderKL folder (no config.json there)")
    vae = AutoencoderKL.from_pretrained(source).to(images.device).eval()
    mean, std = latent_stats(vae, images, generator)
    vae.save_pretrained(folder, safe_serialization=True)
    shared_modes(folder)
    scaling = float(vae.config.scaling_factor)
    info = {"seconds": 0.0, "latent_mean": mean, "latent_std": std, "scaling_factor": scaling, "reused": str(source)}
    runner.mark_done("vae", info)
    return vae


@torch.no_grad()
def latent_stats(vae: AutoencoderKL, images: torch.Tensor, generator: torch.Generator, n: int = 2048):
    """Mean and standard deviation of sampled latents of the first n scenes."""
    n = min(n, len(images))
    z = torch.cat(
        [
            vae.encode(_images(images, np.arange(i, min(i + 256, n))) * 2 - 1).latent_dist.sample(generator=generator)
            for i in range(0, n, 256)
        ]
    )
    return z.mean().item(), z.std().item()


@torch.no_grad()
def reconstruct(vae: AutoencoderKL, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """VAE round trip (posterior mean) of uint8 scenes -> float (N, 3, H, W) in [0, 1]."""
    parts = []
    for i in range(0, len(images), batch):
        x = _images(images, np.arange(i, min(i + batch, len(images)))) * 2 - 1
        parts.append(((vae.decode(vae.encode(x).latent_dist.mode()).sample + 1) / 2).clamp(0, 1))
    return torch.cat(parts)


# ---------------------------------------------------------------- feature network


def train_features(
    runner: StageRunner,
    cfg: DictConfig,
    data: ToyDataset,
    images: torch.Tensor,
    heldout: ToyDataset,
    vae: AutoencoderKL,
    seed: int,
    out: Path,
) -> tuple[ToyClassifier, dict]:
    """A multi-head factor classifier, trained on the scenes blurred and noised now and then so that it also
    reads decoded, slightly soft samples. Accuracy is measured on held-out scenes and on their VAE round trip."""
    from .features import load_classifier

    folder = out / "features"
    info = runner.done("features")
    if info:
        return load_classifier(images.device, folder), info
    rng, generator = _streams(seed, "features")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ToyClassifier(tuple(cfg.channels), int(cfg.embed_dim)).to(images.device)
    labels = {f: torch.from_numpy(v).to(images.device) for f, v in data.labels.items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    steps = int(cfg.steps)
    stage = Stage(
        "features",
        steps,
        {"features": model},
        optimizer,
        rng,
        generator,
        _warmup_cosine(optimizer, min(50, steps // 10 + 1), steps, floor=0.02),
        checkpoint_every=runner.checkpoint_every,
        log_every=runner.log_every,
    )

    def step(_: int) -> dict[str, float]:
        idx = rng.integers(0, len(images), int(cfg.batch_size))
        x = augment(_images(images, idx), generator)
        _, logits = model(x)
        target = {f: labels[f][torch.from_numpy(idx).to(images.device)] for f in FACTORS}
        losses = {f: F.cross_entropy(logits[f], target[f]) for f in FACTORS}
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        accuracy = torch.stack([(logits[f].argmax(1) == target[f]).float().mean() for f in FACTORS]).mean()
        return {"loss": loss.item(), "accuracy": accuracy.item()}

    seconds = runner.run(stage, step)
    model.eval()
    held_images = torch.from_numpy(heldout.images).to(images.device)
    accuracy = {
        "heldout": factor_accuracy(model, _images(held_images, np.arange(len(heldout))), heldout.labels),
        "heldout_vae": factor_accuracy(model, reconstruct(vae, held_images), heldout.labels),
    }
    info = {"seconds": seconds, "accuracy": accuracy, "heldout_scenes": len(heldout)}
    save_classifier(model, folder, {"accuracy": accuracy})
    runner.mark_done("features", info)
    return model, info


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Blur half the batch a little and add a little noise to all of it."""
    blur = torch.tensor([1.0, 2.0, 1.0])
    kernel = (blur[:, None] * blur[None, :] / 16).to(x)[None, None].repeat(3, 1, 1, 1)
    blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    pick = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)[:, None, None, None]
    x = torch.where(pick, blurred, x)
    sigma = torch.rand(x.shape[0], 1, 1, 1, generator=generator) * 0.04
    return (x + sigma.to(x.device) * _randn(x.shape, generator, x.device)).clamp(0, 1)


@torch.no_grad()
def factor_accuracy(model: ToyClassifier, images: torch.Tensor, labels: dict[str, np.ndarray]) -> dict[str, float]:
    predicted = {f: [] for f in FACTORS}
    for chunk in images.split(512):
        for f, p in model.predict(chunk).items():
            predicted[f].append(p.cpu())
    return {f: (torch.cat(predicted[f]).numpy() == labels[f]).mean().item() for f in FACTORS}


# ---------------------------------------------------------------- text encoder + UNet


def train_unet(
    runner: StageRunner,
    cfg: DictConfig,
    text_cfg: DictConfig,
    data: ToyDataset,
    images: torch.Tensor,
    vae: AutoencoderKL,
    tokenizer: CLIPTokenizer,
    seed: int,
    out: Path,
) -> tuple[UNet2DConditionModel, CLIPTextModel, dict]:
    """Text encoder and UNet from scratch (or from `init_from`), jointly: ε- or v-prediction, caption dropout for
    CFG, an EMA of both. Each step gives every scene a fresh caption naming a fresh random subset of its factors."""
    device = images.device
    info = runner.done("unet")
    if info:
        folder = out / "checkpoints" / "unet_final" / "unet"
        unet = unet_class(folder).from_pretrained(folder)
        encoder = CLIPTextModel.from_pretrained(out / "checkpoints" / "unet_final" / "text_encoder")
        return unet.to(device).eval(), encoder.to(device).eval(), info
    rng, generator = _streams(seed, "unet")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = build_text_encoder(tokenizer, int(text_cfg.hidden), int(text_cfg.layers), int(text_cfg.heads))
        unet = build_unet(
            cfg.channels,
            cfg.norm_groups,
            int(text_cfg.hidden),
            int(cfg.heads),
            latent_side(vae.config.block_out_channels),
            int(vae.config.latent_channels),
            bool(cfg.text_embedding),
            bool(cfg.coordinates),
        )
    if cfg.get("init_from"):
        start_from(Path(cfg.init_from), unet, encoder)
    encoder.to(device)
    unet.to(device)
    mean, std = encode_dataset(vae, images, runner.checkpoint_path("latents"))
    scaling = float(vae.config.scaling_factor)
    schedule = DDPMScheduler.from_config(training_schedule(cfg))
    prediction_type = schedule.config.prediction_type
    alphas = schedule.alphas_cumprod.to(device)
    params = [*unet.parameters(), *encoder.parameters()]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    ema = EMAModel(params, decay=float(cfg.ema_decay), use_ema_warmup=True, power=2 / 3)
    steps = int(cfg.steps)
    stage = Stage(
        "unet",
        steps,
        {"unet": unet, "text_encoder": encoder},
        optimizer,
        rng,
        generator,
        _warmup_cosine(optimizer, int(cfg.warmup), steps),
        extra={"ema": ema},
        checkpoint_every=runner.checkpoint_every,
        log_every=runner.log_every,
    )
    batch = int(cfg.batch_size)

    def step(_: int) -> dict[str, float]:
        idx = rng.integers(0, len(data), batch)
        named = sample_named(rng, batch)
        labels = {f: v[idx] for f, v in data.labels.items()}
        drop = rng.random(batch) < float(cfg.cond_dropout)
        captions = ["" if drop[i] else caption(labels, named, i) for i in range(batch)]
        ids = tokenizer(
            captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids.to(device)
        rows = torch.from_numpy(idx).to(device)
        z = (mean[rows] + std[rows] * _randn(mean[rows].shape, generator, device)) * scaling
        noise = _randn(z.shape, generator, device)
        t = sample_timesteps(
            batch,
            schedule.config.num_train_timesteps,
            float(cfg.late_timestep_portion),
            float(cfg.late_timestep_multiplier),
            generator,
        ).to(device)
        a = alphas[t].sqrt()[:, None, None, None]
        s = (1 - alphas[t]).sqrt()[:, None, None, None]
        prediction = unet(a * z + s * noise, t, encoder(ids)[0]).sample
        target = denoising_target(z, noise, alphas[t][:, None, None, None], prediction_type)
        per_sample = (prediction - target).pow(2).mean(dim=(1, 2, 3))
        if cfg.snr_gamma is not None:
            per_sample = per_sample * min_snr_weight(
                compute_snr(schedule, t.cpu()).to(device), cfg.snr_gamma, prediction_type
            )
        loss = per_sample.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        ema.step(params)
        return {"loss": loss.item(), "mse": (prediction - target).pow(2).mean().item()}

    seconds = runner.run(stage, step)
    ema.copy_to(params)  # the exported model is the EMA
    final = out / "checkpoints" / "unet_final"
    unet.save_pretrained(final / "unet", safe_serialization=True)
    encoder.save_pretrained(final / "text_encoder", safe_serialization=True)
    shared_modes(final)
    info = {"seconds": seconds}
    runner.mark_done("unet", info)
    return unet.eval(), encoder.eval(), info


def sample_timesteps(batch: int, steps: int, portion: float, multiplier: float, generator: torch.Generator):
    """Training timesteps: uniform, except that the last `portion` of the schedule (the noisiest) is drawn
    `multiplier` times as often as the rest. multiplier 1 keeps the plain uniform draw, and so its exact numbers."""
    if multiplier == 1.0:
        return torch.randint(0, steps, (batch,), generator=generator)
    weights = torch.ones(steps)
    weights[steps - max(1, round(steps * portion)) :] = multiplier
    return torch.multinomial(weights, batch, replacement=True, generator=generator)


def min_snr_weight(snr: torch.Tensor, gamma: float, prediction_type: str) -> torch.Tensor:
    """Min-SNR-γ (Hang et al. 2023): the x0 loss weighted by min(SNR, γ), written for the predicted target.

    ε-MSE is the x0 loss times SNR, so its weight is min(SNR, γ) / SNR. v-MSE is the x0 loss times SNR + 1; its
    weight is min(SNR + 1, γ) / (SNR + 1), which clips the high-SNR end as the ε form does but keeps weight 1 at
    SNR = 0. The paper's min(SNR, γ) / (SNR + 1) would give the zero-terminal-SNR step no weight at all, and that
    step is where the caption alone must decide the layout and the background."""
    if prediction_type == "epsilon":
        return torch.clamp(snr, max=float(gamma)) / snr
    return torch.clamp(snr + 1, max=float(gamma)) / (snr + 1)


def start_from(base: Path, unet: UNet2DConditionModel, encoder: CLIPTextModel) -> None:
    """Load a trained base's UNet and text encoder (same sizes) as the starting point: continued training, e.g.
    adapting the shipped base to a shifted schedule, instead of starting from noise. A plain UNet can start a
    coordinate one (its coordinate weights start at zero)."""
    for name, module in (("unet", unet), ("text_encoder", encoder)):
        try:
            cls = unet_class(base / name) if name == "unet" else type(module)
            trained = cls.from_pretrained(base / name)
            if isinstance(module, CoordUNet2DConditionModel) and not isinstance(trained, CoordUNet2DConditionModel):
                trained = add_coordinates(trained)  # the same function to start with; training learns position
            module.load_state_dict(trained.state_dict())
        except (OSError, RuntimeError) as err:
            raise UserError(f"unet.init_from={base}: cannot start the {name} from it ({first_line(err)})") from None


@torch.no_grad()
def encode_dataset(vae: AutoencoderKL, images: torch.Tensor, cache: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of every scene (unscaled), cached so a resumed run skips the encoding."""
    try:
        saved = torch.load(cache, map_location="cpu", weights_only=True) if cache.is_file() else None
    except Exception:  # never unpickles code from a run folder; a damaged or foreign file is encoded again
        saved = None
    if isinstance(saved, dict) and saved.get("mean") is not None and saved["mean"].shape[0] == len(images):
        return saved["mean"].to(images.device), saved["std"].to(images.device)
    means, stds = [], []
    for i in range(0, len(images), 256):
        posterior = vae.encode(_images(images, np.arange(i, min(i + 256, len(images)))) * 2 - 1).latent_dist
        means.append(posterior.mean)
        stds.append(posterior.std)
    mean, std = torch.cat(means), torch.cat(stds)
    with atomic_path(cache) as temporary:
        torch.save({"mean": mean.cpu(), "std": std.cpu()}, temporary)
    return mean, std
