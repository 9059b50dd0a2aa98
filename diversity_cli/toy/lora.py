"""`diversity-cli train-lora`: a small LoRA, or a slider, on the base model of a pair for a concept of the toy world
(meant for `model=toy`; any SD / SDXL pair works), so that `transfer-lora` has an adapter to carry over.

- `mode=lora` ("make shapes red"): scenes that all show the concept value (every other factor drawn as usual),
  captioned WITHOUT naming the concept's factor, so the LoRA, not the prompt, has to carry it. The base model's
  own diffusion loss (its prediction type, its training noise schedule) with LoRA layers (peft) on the attention
  projections; everything else frozen. A tenth of the captions are dropped to the empty prompt, as the base was
  trained, so the LoRA acts under classifier-free guidance too.
- `mode=slider` (e.g. concept=large negative=small): pairs of scenes identical but for the factor (the same draw
  of every free detail); the LoRA at weight +1 denoises the positive scene and at -1 the negative one, from the
  same noise and timestep: the image-slider objective of Concept Sliders, so the adapter's scale moves along the
  factor.

Writes `<out>/pytorch_lora_weights.safetensors` (diffusers format, `save_lora_weights`: what `transfer-lora
adapter=<out>` loads) and `<out>/adapter.json` (concept, mode, model, steps, final loss). Training checkpoints
and a loss log go to `<out>/checkpoints`, `<out>/logs`; a killed run resumes, a finished one is not redone.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from ..core.atomic import atomic_path
from ..core.config import differing_keys
from ..core.errors import UserError, did_you_mean, first_line
from ..core.marker import (
    RunMarker,
    adopt_legacy,
    claim_outputs,
    left_as_found,
    record_tree,
    remove_outputs,
    require_marked,
    write_owned,
)
from ..core.pair_settings import training_settings as model_training_settings
from ..core.record import record_invocation
from ..core.samples import writer_lock
from ..models.provenance import hashed_weights
from .data import FACTORS, caption, factor_value, render, sample_labels, sample_named

WEIGHTS = "pytorch_lora_weights.safetensors"
METADATA = "adapter.json"
LOSS_WINDOW = 50  # adapter.json's final_loss: the mean of the one-step losses logged in the last this many steps
BASE_WEIGHTS = "base_weights"  # adapter.json's and the settings' digest of the base's weights and shared components
SETTINGS = "train_lora.json"
OUTPUTS = (WEIGHTS, METADATA, SETTINGS, "checkpoints", "logs")  # all train-lora writes in out/
STAGE = "lora"
TRAINING_KEYS = (
    "concept", "mode", "negative", "images", "data_seed", "steps", "batch_size", "lr", "rank", "target_modules",
    "uncond_prob", "seed",
)  # fmt: skip


def train_lora(cfg: DictConfig) -> Path:
    factor, value, negative = validate(cfg)
    out = Path(cfg.out)
    settings = training_settings(cfg)  # the keys; their digest names the run
    with (
        left_as_found(out, OUTPUTS),  # prepare marks out: a failure before begin unmarks a folder it made
        writer_lock(out / "logs", 0, waitable=False),  # one process a run: a second refuses at once
    ):
        if not prepare(out, settings, bool(cfg.overwrite)):
            _console().print(f"[green]nothing to do[/]: {out / WEIGHTS} was trained with these settings")
            return out / WEIGHTS
        from ..models.loading import load_pair, resolve_device
        from ..models.provenance import pair_provenance

        device = resolve_device(cfg.device)
        # the base alone (its student is not read), in float32 whatever the pair's inference dtype
        pair = load_pair(cfg.model, device, torch.float32, roles=("base",))
        if not hasattr(type(pair.pipe), "save_lora_weights"):
            raise UserError(f"model={cfg.model.name}: diffusers cannot save LoRA weights for its pipeline; SD/SDXL do")
        positive, negative_images, captions = training_scenes(cfg, factor, value, negative)
        latents = encode_images(pair, positive)
        negative_latents = encode_images(pair, negative_images) if negative_images is not None else None
        conditioning, caption_index = caption_conditioning(pair, captions)
        network = add_lora(pair.base.network, int(cfg.rank), list(cfg.target_modules), int(cfg.seed))
        # the record only now: a setting refused at load (target_modules) leaves out as it was found
        models = pair_provenance(cfg.model, pair, ("base", "components"))
        record_invocation(out, config=cfg, device=str(device), dtype=str(pair.dtype), models=models)
        begin(out, settings, bool(cfg.overwrite))  # all it needs is in hand: the earlier training may go now
    final_loss, seconds = train(cfg, out, pair, network, latents, negative_latents, conditioning, caption_index)
    path = save(out, pair, network)
    meta = {
        "name": out.name, "concept": value, "factor": factor, "negative": negative, "mode": cfg.mode,
        "model": cfg.model.name, "trained_on": "base", "steps": int(cfg.steps), "rank": int(cfg.rank),
        "final_loss": final_loss, "seconds": round(seconds, 1), "settings": settings_digest(settings),
        **({"base_weights": settings[BASE_WEIGHTS]} if BASE_WEIGHTS in settings else {}),
    }  # fmt: skip
    write_owned(out, METADATA, json.dumps(meta, indent=2) + "\n")
    record_tree(out, WEIGHTS)
    _console().print(
        f"[green]saved[/] {path}  (final loss {final_loss:.4g}: {loss_words(int(cfg.steps))}; {seconds:.0f} s)"
    )
    return path


def validate(cfg: DictConfig) -> tuple[str, str, str | None]:
    """(factor, value, negative value or None) of the concept; bad knobs fail before any model loads."""
    if cfg.mode not in ("lora", "slider"):
        raise UserError(f"mode={cfg.mode}: use lora (images showing the concept) or slider (concept vs negative)")
    factor, value = factor_value(str(cfg.concept), "concept")
    negative = None
    if cfg.mode == "slider":
        if not cfg.negative:
            raise UserError(f"mode=slider needs negative=...: another {factor} value ({', '.join(FACTORS[factor])})")
        other_factor, negative = factor_value(str(cfg.negative), "negative")
        if other_factor != factor or negative == value:
            raise UserError(f"negative={cfg.negative} must be another value of {factor}: {', '.join(FACTORS[factor])}")
    for key in ("steps", "batch_size", "images", "rank"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise UserError(f"{key}={cfg[key]} must be a positive integer")
    if cfg.model.family not in ("sd", "sdxl"):  # PixArt and the flow families: no UNet, other LoRA loaders
        raise UserError(f"model={cfg.model.name}: train-lora needs an SD or SDXL pair (UNet with LoRA loaders)")
    return factor, value, negative


def training_settings(cfg: DictConfig) -> dict[str, Any]:
    """What the adapter's weights depend on: TRAINING_KEYS and the pair's settings that change its networks."""
    keys = {
        key: OmegaConf.to_container(cfg[key]) if OmegaConf.is_config(cfg[key]) else cfg[key] for key in TRAINING_KEYS
    }
    keys["model"] = model_training_settings(OmegaConf.to_container(cfg.model, resolve=True))
    weights = hashed_weights(cfg.model, ("base", "components"))  # a base retrained in place trains another adapter
    if weights is not None:
        keys[BASE_WEIGHTS] = weights
    return json.loads(json.dumps(keys, default=str))  # as the record will hold them (tuples as lists)


def settings_digest(keys: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(keys, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _digests(keys: dict[str, Any], earlier: dict[str, Any]) -> set[str]:
    """The digests `keys` may carry in an earlier record: theirs; and, for a training recorded before the base's
    weights were part of them (its keys have none), theirs without the weights, which that record cannot check."""
    digests = {settings_digest(keys)}
    if BASE_WEIGHTS not in (earlier.get("keys") or {}):
        digests.add(settings_digest({key: value for key, value in keys.items() if key != BASE_WEIGHTS}))
    return digests


def prepare(out: Path, keys: dict[str, Any], overwrite: bool) -> bool:
    """False when `out` already holds this training, finished. Another training there needs overwrite=true, which
    removes only the files an earlier train-lora listed in out/run.json (core/marker.py), nothing else (in
    `begin`). Checks only: nothing of an earlier training is touched here."""
    adopt_legacy(out, SETTINGS, OUTPUTS)
    record = out / SETTINGS
    if record.is_file():
        earlier = json.loads(record.read_text(encoding="utf-8"))
        same = earlier.get("settings") in _digests(keys, earlier)
        if same and (out / METADATA).is_file() and (out / WEIGHTS).is_file() and not overwrite:
            return False
        if not same and not overwrite:
            # runs recorded before the keys were kept hold their digest only: which keys differ is not known
            which = ", ".join(differing_keys(keys, earlier["keys"])[:5]) if "keys" in earlier else "recorded by digest"
            raise UserError(
                f"{out} holds a train-lora run with other settings ({which}); rerun with its settings to resume, or "
                "use another out= or overwrite=true"
            )
    elif (out / WEIGHTS).exists() and not overwrite:
        raise UserError(
            f"{out / WEIGHTS} exists and was not made by train-lora here; use another out= or overwrite=true"
        )
    if overwrite and out.is_dir() and any(out.iterdir()):
        require_marked(out, "overwrite=true")  # before claim_outputs marks it: a folder of the user's is refused
    claim_outputs(out, (WEIGHTS, METADATA, SETTINGS))
    return True


def begin(out: Path, keys: dict[str, Any], overwrite: bool) -> None:
    """Once the pair has loaded and the adapter fits it (a setting refused there must not cost the earlier one): with
    overwrite=true the earlier training's files go; the settings this training runs with are written."""
    if overwrite:
        remove_outputs(out, OUTPUTS)
    write_owned(out, SETTINGS, json.dumps({"settings": settings_digest(keys), "keys": keys}) + "\n")


# --- data ---------------------------------------------------------------------------------------------------------


def training_scenes(
    cfg: DictConfig, factor: str, value: str, negative: str | None
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Scenes with the factor fixed to `value` (and, for a slider, the same scenes with `negative`), captioned
    without naming that factor. uint8 (n, H, W, 3) arrays."""
    n = int(cfg.images)
    rng = np.random.default_rng(int(cfg.data_seed))
    labels = sample_labels(rng, n, {factor: FACTORS[factor].index(value)})
    named = sample_named(rng, n)
    named[factor][:] = False  # the prompt never names the concept: the adapter must carry it
    captions = [caption(labels, named, i) for i in range(n)]
    details = int(rng.integers(2**31))  # both renderings draw their free details from one seed
    positive = render(labels, np.random.default_rng(details))
    if negative is None:
        return positive, None, captions
    flipped = {**labels, factor: np.full(n, FACTORS[factor].index(negative))}
    return positive, render(flipped, np.random.default_rng(details)), captions


@torch.no_grad()
def encode_images(pair, images: np.ndarray, chunk: int = 256) -> torch.Tensor:
    """VAE latents (posterior means, scaled) of uint8 images, resized to the pair's resolution if needed."""
    vae = pair.pipe.vae
    parts = []
    for start in range(0, len(images), chunk):
        x = torch.from_numpy(images[start : start + chunk]).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        if x.shape[-2:] != (pair.height, pair.width):
            x = F.interpolate(x, size=(pair.height, pair.width), mode="bilinear", antialias=True)
        posterior = vae.encode(x.to(pair.device, vae.dtype)).latent_dist
        parts.append(posterior.mean.float() * vae.config.scaling_factor)
    return torch.cat(parts)


def caption_conditioning(pair, captions: list[str]):
    """The conditioning of each distinct caption (encoded once) and each scene's row in it."""
    unique = sorted(set(captions))
    row = {text: i for i, text in enumerate(unique)}
    return pair.encode(unique), torch.tensor([row[text] for text in captions])


def pick(cond: dict[str, Any], uncond: dict[str, Any], rows: torch.Tensor, drop: torch.Tensor) -> dict[str, Any]:
    """Rows of a (nested) conditioning dict; where `drop`, the empty prompt's instead."""
    picked: dict[str, Any] = {}
    for key, value in cond.items():
        if isinstance(value, dict):
            picked[key] = pick(value, uncond[key], rows, drop)
        elif value is None:
            picked[key] = None
        else:
            mask = drop.view(-1, *([1] * (value.dim() - 1))).to(value.device)
            picked[key] = torch.where(mask, uncond[key][rows], value[rows])
    return picked


# --- training -----------------------------------------------------------------------------------------------------


def add_lora(network: torch.nn.Module, rank: int, target_modules: list[str], seed: int) -> torch.nn.Module:
    """LoRA layers (peft, adapter "default", alpha = rank so the scale is the adapter weight) on the frozen network.
    peft draws the gaussian init from torch's global generator: seeded here (and restored after), or the same
    command would train a different adapter each time."""
    from peft import LoraConfig

    check_targets(network, target_modules)
    check_rank(network, target_modules, rank)
    network.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=target_modules)
    try:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            network.add_adapter(config)
    except ValueError as err:
        raise UserError(f"target_modules={target_modules}: {first_line(err)}") from None
    return network


# The layer types peft puts LoRA on in a diffusers network.
LORA_LAYERS = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.Conv1d, torch.nn.Embedding)


def check_targets(network: torch.nn.Module, targets: list[str]) -> None:
    """Each of `targets` names layers LoRA can go on, as peft matches it (a module name, or the end of one after a
    dot), and nothing else. peft refuses a name that matches a block (`to_out`, `0`) in a line cut at the block it
    prints, and drops a name that matches nothing from a list where another matches: a misspelt `to_v` trained
    without it."""
    modules = dict(network.named_modules())
    ends = sorted({_end(name) for name, module in modules.items() if isinstance(module, LORA_LAYERS)})
    for target in targets:
        matched = [name for name in modules if _targets(name, target)]
        blocks = [name for name in matched if not isinstance(modules[name], LORA_LAYERS)]
        if matched and not blocks:
            continue
        near = did_you_mean(target, ends) or ";"
        what = (
            f"names {blocks[0]} (a {type(modules[blocks[0]]).__name__}), a block, not a layer LoRA goes on"
            if blocks
            else "names no layer of the network (nor the end of one)"
        )
        raise UserError(f"target_modules={list(targets)}: {target} {what}{near} its layer names: {', '.join(ends)}")


def check_rank(network: torch.nn.Module, targets: list[str], rank: int) -> None:
    """A rank above the widest targeted layer's rank limit adds parameters that span nothing more (rank=100000 on the
    toy's 64-wide layers trained for seconds a step): refused, naming the limit. A k x k convolution's is
    min(in * k * k, out), as LoRA sees its weight."""
    limits = {
        name: _rank_limit(module)
        for name, module in network.named_modules()
        if isinstance(module, LORA_LAYERS) and any(_targets(name, t) for t in targets)
    }
    if limits and rank > max(limits.values()):
        widest = max(limits, key=limits.get)
        raise UserError(
            f"rank={rank} is above the rank of every layer it adapts (at most {limits[widest]}, {widest}): a LoRA of "
            f"rank {limits[widest]} already spans it; give rank <= {limits[widest]}"
        )


def _rank_limit(module: torch.nn.Module) -> int:
    """The largest rank a LoRA update of this layer's weight can have."""
    if isinstance(module, torch.nn.Embedding):
        return min(module.num_embeddings, module.embedding_dim)
    if isinstance(module, torch.nn.Linear):
        return min(module.in_features, module.out_features)
    kernel = 1
    for size in module.kernel_size:
        kernel *= size
    return min(module.in_channels * kernel // module.groups, module.out_channels)


def _targets(name: str, target: str) -> bool:
    """Whether a target_modules entry names this module, as peft matches it: the name, or its end after a dot."""
    return name == target or name.endswith(f".{target}")


def _end(name: str) -> str:
    """A module name's last part, with its parent's where it is an index (`to_out.0`, as diffusers' LoRAs name it)."""
    parts = name.split(".")
    return ".".join(parts[-2:]) if parts[-1].isdigit() and len(parts) > 1 else parts[-1]


def train(cfg, out: Path, pair, network, latents, negative_latents, conditioning, caption_index) -> tuple[float, float]:
    """Runs the training stage (resumable); returns the mean logged loss of its last 50 steps and its seconds."""
    from diffusers import DDPMScheduler
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from ..core.console import LoggedProgress, RateColumn
    from .loop import Stage, StageRunner

    device = pair.device
    # The training noise in variance-preserving form (x_t = sqrt(a) x0 + sqrt(1-a) eps), whatever scheduler the base
    # samples with: DDPM's add_noise / get_velocity on the base's own beta schedule.
    schedule = DDPMScheduler.from_config(pair.base.scheduler.config)
    prediction = pair.base.prediction_type
    train_steps = int(schedule.config.num_train_timesteps)
    params = [p for p in network.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=float(cfg.lr), weight_decay=0.0)
    rng = np.random.default_rng(int(cfg.seed))
    generator = torch.Generator("cpu").manual_seed(int(cfg.seed))
    stage = Stage(STAGE, int(cfg.steps), {"network": network}, optimizer, rng, generator,
                  checkpoint_every=int(cfg.checkpoint_every))  # fmt: skip
    batch = int(cfg.batch_size)

    def loss_at(weight: float, z: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, cond: dict) -> torch.Tensor:
        if negative_latents is not None:
            network.set_adapters(["default"], weights=[weight])
        noisy = schedule.add_noise(z, noise, t)
        if prediction == "v_prediction":
            target = schedule.get_velocity(z, noise, t)
        else:
            target = z if prediction == "sample" else noise
        predicted = network(noisy, t, **cond).sample
        return F.mse_loss(predicted.float(), target.float())

    def step(_: int) -> dict[str, float]:
        rows = torch.from_numpy(rng.integers(0, len(latents), batch))
        drop = torch.from_numpy(rng.random(batch) < float(cfg.uncond_prob))
        t = torch.from_numpy(rng.integers(0, train_steps, batch)).to(device)
        z = latents[rows.to(device)]
        noise = torch.randn(z.shape, generator=generator).to(device)
        cond = pick(conditioning.cond, conditioning.uncond, caption_index[rows], drop)
        loss = loss_at(1.0, z, noise, t, cond)
        if negative_latents is not None:  # the slider: -1 toward the negative scene, same noise and timestep
            loss = 0.5 * (loss + loss_at(-1.0, negative_latents[rows.to(device)], noise, t, cond))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": loss.item()}

    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), RateColumn(), TextColumn("{task.fields[losses]}"),
    )  # fmt: skip
    # off a terminal (a SLURM log) a plain line every LOG_INTERVAL seconds, not one bar redrawn at the end
    with LoggedProgress(*columns, console=_console()) as progress:
        runner = StageRunner(out, progress, int(cfg.checkpoint_every))
        seconds = runner.run(stage, step)
    if negative_latents is not None:
        network.set_adapters(["default"], weights=[1.0])
    return logged_final_loss(runner.log_path(STAGE), int(cfg.steps)), seconds


def logged_final_loss(path: Path, steps: int, window: int = LOSS_WINDOW) -> float:
    """The mean of the log's losses over the last `window` steps (every logged step among them): from the log, not
    this process's steps, so a resumed run gives the number an uninterrupted one does (the log's rows are kept
    across a resume)."""
    import csv

    if not path.is_file():
        return float("nan")
    with path.open(newline="", encoding="utf-8") as f:
        losses = [float(row["loss"]) for row in csv.DictReader(f) if int(row["step"]) > steps - window]
    return float(np.mean(losses)) if losses else float("nan")


def loss_words(steps: int) -> str:
    """What the final loss is the mean of: the log holds one step's loss every LOG_EVERY steps and the last."""
    from .loop import LOG_EVERY

    if steps < 1:  # an adapter.json of no steps recorded
        return "the mean of the losses logged in its last steps"
    window = min(steps, LOSS_WINDOW)
    logged = len({step for step in range(steps - window + 1, steps + 1) if step % LOG_EVERY == 0 or step == steps})
    if window == 1:
        return "the loss of its one step"
    if logged == 1:
        return f"the loss of step {steps}, the one logged in the last {window} steps"
    return f"the mean of the {logged} one-step losses logged in the last {window} steps"


def save(out: Path, pair, network: torch.nn.Module) -> Path:
    from peft.utils import get_peft_model_state_dict

    state = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(network).items()}
    RunMarker(out).record(WEIGHTS)  # listed before it is written: a kill in between leaves no unlisted file
    with atomic_path(out / WEIGHTS) as temporary:  # a kill mid-save leaves no half-written adapter
        type(pair.pipe).save_lora_weights(str(temporary.parent), unet_lora_layers=state, weight_name=temporary.name)
    return out / WEIGHTS


def _console():
    from rich.console import Console

    return Console(stderr=True)
