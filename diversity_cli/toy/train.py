"""`diversity-cli train-toy`: train the toy base model (VAE, text encoder, UNet) and the toy feature network from
scratch, export them, and judge the base against the toy world's ground truth.

`out/` holds `base/` (a StableDiffusionPipeline folder), `features/` (the classifier), `logs/<stage>.csv`,
`checkpoints/` (a killed run resumes from them), `evaluation.csv`, `samples/` (a grid per prompt) and
`MODEL_CARD.md`. Copying `base/`, `features/` and `MODEL_CARD.md` into `diversity_cli/assets/toy/` ships them.
"""

from __future__ import annotations

import csv
import json
import platform
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..core.atomic import atomic_path, shared_modes
from ..core.config import differing_keys
from ..core.console import LoggedProgress, RateColumn
from ..core.errors import UserError, first_line
from ..core.marker import (
    BEFORE_MARKER,
    adopt_legacy,
    claim_outputs,
    record_tree,
    remove_outputs,
    write_owned,
)
from ..core.record import record_invocation
from ..core.samples import writer_lock
from ..models.loading import resolve_device
from .architecture import latent_side, parameter_count
from .data import FACTORS, IMAGE_SIZE, MODE_FACTORS, VOCABULARY, generate_dataset, parse_prompt, words_outside
from .evaluate import evaluate_base
from .features import JUDGE, ToyClassifier, judge_sha256, load_classifier
from .loop import StageRunner
from .schedule import schedule_config, training_schedule
from .stages import train_features, train_unet, train_vae
from .tokenizer import build_tokenizer

RUN_CONFIG = "train_toy.yaml"
EVALUATION = "evaluation.yaml"  # the evaluate.* that evaluation.csv and the card's table were measured with
# Everything train-toy writes in out/ (overwrite=true removes only the files run.json lists under these).
OUTPUTS = (
    "checkpoints", "logs", "vae", "features", "base", "samples", "evaluation.csv", EVALUATION, "MODEL_CARD.md",
    RUN_CONFIG,
)  # fmt: skip
# Keys that decide the trained weights; a rerun with the same values resumes, other values need overwrite=true.
TRAINING_KEYS = ("seed", "data", "vae", "features", "text_encoder", "unet")


def train_toy(cfg: DictConfig) -> Path:
    validate(cfg)
    out = Path(cfg.out)
    # one process a run: a second on the same out= refuses at once (both ran, and logged every step twice)
    with writer_lock(out / "logs", 0, waitable=False):
        return _train_locked(cfg, out)


def _train_locked(cfg: DictConfig, out: Path) -> Path:
    device = resolve_device(cfg.device)
    if not prepare(out, cfg):
        if (out / EVALUATION).is_file():
            what = "these settings"
        else:  # finished before the evaluation was recorded
            what = "these training settings (evaluate.* not compared: its MODEL_CARD.md reports the evaluation it ran)"
        _console().print(f"[green]nothing to do[/]: {out} holds a finished train-toy run with {what}")
        return out
    if (out / "MODEL_CARD.md").is_file():  # finished, evaluated with other evaluate.*: the other prompts' grids go
        _console().print(f"{out}: training finished; evaluating again with these evaluate.* (the card is rewritten)")
        # the card first: a re-evaluation stopped half-way is then unfinished, and the next run evaluates again
        remove_outputs(out, ["MODEL_CARD.md", EVALUATION, "samples"])
    record_invocation(out, config=cfg, device=str(device), dtype="torch.float32")  # the toy trains in float32
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(int(cfg.threads))
    try:
        return _train(cfg, out, device)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: DictConfig, out: Path, device: torch.device) -> Path:
    _quiet()
    seed = int(cfg.seed)
    began = time.perf_counter()
    times: dict[str, float] = {}
    columns = (
        TextColumn("[bold]{task.description:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        RateColumn(),
        TextColumn("{task.fields[losses]}"),
    )
    # off a terminal (a SLURM log) a plain line every LOG_INTERVAL seconds, not one bar redrawn at the end
    with LoggedProgress(*columns, console=_console()) as progress:
        runner = StageRunner(out, progress, int(cfg.checkpoint_every), int(cfg.log_every))
        start = time.perf_counter()
        data = generate_dataset(int(cfg.data.n_train), seed)
        heldout = generate_dataset(int(cfg.data.n_heldout), seed + 1)
        images = torch.from_numpy(data.images).to(device)
        times["data"] = time.perf_counter() - start
        vae = train_vae(runner, cfg.vae, images, seed, out)
        times["vae"] = runner.done("vae")["seconds"]
        if cfg.features.retrain:
            classifier, features_info = train_features(runner, cfg.features, data, images, heldout, vae, seed, out)
        else:
            classifier, features_info = frozen_judge(out / "features", device)
        times["features"] = features_info["seconds"]
        tokenizer = build_tokenizer(out / "checkpoints" / "tokenizer")
        unet, encoder, unet_info = train_unet(
            runner, cfg.unet, cfg.text_encoder, data, images, vae, tokenizer, seed, out
        )
        times["unet"] = unet_info["seconds"]
        start = time.perf_counter()
        export_base(out / "base", vae, encoder, tokenizer, unet, training_schedule(cfg.unet))
        task = progress.add_task("evaluate", total=None, losses=f"{len(cfg.evaluate.prompts)} prompts")
        rows = evaluate_base(
            out / "base",
            classifier,
            list(cfg.evaluate.prompts),
            int(cfg.evaluate.n),
            int(cfg.evaluate.steps),
            float(cfg.evaluate.guidance),
            seed,
            device,
            grids=out / "samples",
        )
        progress.update(task, total=1, completed=1)
        times["export_and_evaluation"] = time.perf_counter() - start
    write_rows(out / "evaluation.csv", rows)
    networks = {"vae": vae, "text_encoder": encoder, "unet": unet, "features": classifier}
    stages = {name: runner.done(name) for name in ("vae", "features", "unet")}
    threads = {name: info.get("threads") for name, info in stages.items() if info and not info.get("reused")}
    trained = runner.finished_at("unet")  # the training's end: a later evaluate.* rerun rewrites the card only
    card = model_card(cfg, device, times, features_info, rows, networks, stages["vae"], threads, trained)
    record_tree(out, *OUTPUTS)  # run.json lists what this run wrote: overwrite=true removes only those
    write_owned(out, EVALUATION, OmegaConf.to_yaml(OmegaConf.create(evaluation_settings(cfg))))
    write_owned(out, "MODEL_CARD.md", card)
    _summary(rows, features_info, times, time.perf_counter() - began)
    return out


def _quiet() -> None:
    # The libraries' own tqdm bars (saving shards, loading components) would interleave with the stage bars.
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def validate(cfg: DictConfig) -> None:
    for key in ("vae", "features", "unet"):
        for field in ("steps", "batch_size"):
            value = cfg[key][field]
            if not isinstance(value, int) or value < 1:
                raise UserError(f"{key}.{field}={value} must be a positive integer")
    for key in ("n_train", "n_heldout"):
        if not isinstance(cfg.data[key], int) or cfg.data[key] < 2:
            raise UserError(f"data.{key}={cfg.data[key]} must be an integer of at least 2")
    if not isinstance(cfg.threads, int) or cfg.threads < 1:
        raise UserError(f"threads={cfg.threads} must be a positive integer")
    for key in ("checkpoint_every", "log_every"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise UserError(f"{key}={cfg[key]} must be a positive integer")
    if len(cfg.vae.channels) < 2:
        raise UserError("vae.channels needs at least two levels (the latent is smaller than the image)")
    if not cfg.evaluate.prompts or int(cfg.evaluate.n) < 2:
        raise UserError("evaluate.prompts must list at least one prompt and evaluate.n be at least 2")
    for prompt in cfg.evaluate.prompts:  # the judge checks only the toy language: "a hexagon" would score 1.0
        unknown = words_outside(str(prompt))
        if unknown:
            raise UserError(
                f"evaluate.prompts: '{prompt}' has words outside the toy language ({', '.join(unknown)}), which the "
                f"judge cannot check; use words of: {' '.join(VOCABULARY)}"
            )
        try:
            parse_prompt(str(prompt))  # two values of one factor ("a red blue circle") are refused before training
        except UserError as err:
            raise UserError(f"evaluate.prompts: {err}") from None
    training_schedule(cfg.unet)  # a schedule it cannot train on (zero terminal SNR with ε) is refused here
    check_architectures(cfg)
    # Folders it starts from, checked before anything is written (an overwrite=true removes the earlier run), not
    # when a stage reaches them; a resume whose stage is done no longer needs its folder
    out, overwrite = Path(str(cfg.out)), bool(cfg.get("overwrite"))
    vae_done = (out / "vae" / "config.json").is_file() and not overwrite
    if cfg.vae.get("reuse") and not vae_done and not (Path(cfg.vae.reuse) / "config.json").is_file():
        raise UserError(f"vae.reuse={cfg.vae.reuse} is not an AutoencoderKL folder (no config.json there)")
    unet_done = (out / "checkpoints" / "unet_final").is_dir() and not overwrite
    if cfg.unet.get("init_from") and not unet_done:
        missing = [name for name in ("unet", "text_encoder") if not (Path(cfg.unet.init_from) / name).is_dir()]
        if missing:
            raise UserError(
                f"unet.init_from={cfg.unet.init_from} is not a trained toy base folder (no {' or '.join(missing)}/ "
                "there)"
            )


def check_architectures(cfg: DictConfig) -> None:
    """The networks' sizes, built once in memory (a second or less) before any stage trains: channels a norm group
    count does not divide, a text width its heads do not, were a diffusers / transformers traceback once the
    earlier stages had trained (and the run folder tied to those settings). With vae.reuse, the VAE's sizes are the
    reused one's: other vae.* sizes would be recorded but not used."""
    from transformers import CLIPTextConfig, CLIPTextModel

    from .architecture import build_unet, build_vae

    vae_channels, latent_channels = list(cfg.vae.channels), int(cfg.vae.latent_channels)
    reuse = Path(str(cfg.vae.reuse)) if cfg.vae.get("reuse") else None
    if reuse is not None:
        reused = _network_config(
            reuse, "vae.reuse", ("block_out_channels", "latent_channels"), "a train-toy run's vae/"
        )
        given = {"channels": vae_channels, "latent_channels": latent_channels}
        own = {"channels": list(reused["block_out_channels"]), "latent_channels": int(reused["latent_channels"])}
        for key, value in given.items():
            if value != own[key]:
                raise UserError(
                    f"vae.{key}={value}: with vae.reuse the VAE is {cfg.vae.reuse}, whose {key} is {own[key]}; "
                    f"leave vae.{key} out (or give {own[key]})"
                )
    text, unet = cfg.text_encoder, cfg.unet
    hidden = int(text.hidden)
    sizes = dict(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=int(text.layers))
    sizes.update(vocab_size=64, bos_token_id=0, eos_token_id=1, pad_token_id=1)  # any vocabulary: only sizes matter
    builds = [
        ("text_encoder.hidden, .heads, .layers",
         lambda: CLIPTextModel(CLIPTextConfig(num_attention_heads=int(text.heads), **sizes))),
        ("unet.channels, .norm_groups, .heads",
         lambda: build_unet(unet.channels, int(unet.norm_groups), hidden, int(unet.heads), latent_side(vae_channels),
                            latent_channels, bool(unet.text_embedding), bool(unet.coordinates))),
    ]  # fmt: skip
    if reuse is None:
        vae = (
            "vae.channels, .norm_groups, .latent_channels",
            lambda: build_vae(vae_channels, int(cfg.vae.norm_groups), latent_channels),
        )
        builds.insert(0, vae)
    built = {}
    for keys, build in builds:
        try:
            with torch.random.fork_rng(devices=[]):
                built[keys] = build()
        except Exception as err:  # diffusers' ValueError, transformers' config validation error, ...: all said so
            raise UserError(f"{keys}: the toy network cannot be built with these sizes ({first_line(err)})") from None
    if cfg.unet.get("init_from") and (Path(str(cfg.unet.init_from)) / "unet").is_dir():
        unet_built = built["unet.channels, .norm_groups, .heads"]
        _refuse_other_unet(cfg, {**unet_built.config, "_class_name": type(unet_built).__name__})


def _network_config(folder: Path, key: str, needed: tuple[str, ...], what: str) -> dict:
    """A diffusers network folder's config.json, with its weights beside it; else one line naming `key`."""
    config = folder / "config.json"
    try:
        found = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        found = None
    weights = [folder / name for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")]
    if not isinstance(found, dict) or any(name not in found for name in needed) or not any(map(Path.is_file, weights)):
        keys = f" with {', '.join(needed)}" if needed else ""
        raise UserError(
            f"{key}={folder} is no toy network folder (a config.json{keys} and its "
            f"diffusion_pytorch_model.safetensors); give {what} folder"
        )
    return found


# the UNet settings a train-toy config decides, as its config.json names them, and the flag that sets each
INIT_KEYS = {
    "block_out_channels": "unet.channels",
    "norm_num_groups": "unet.norm_groups",
    "attention_head_dim": "unet.heads",
    "cross_attention_dim": "text_encoder.hidden",
    "in_channels": "vae.latent_channels",
    "sample_size": "vae.channels",
    "addition_embed_type": "unet.text_embedding",
}
COORD_CLASS = "CoordUNet2DConditionModel"  # the UNet with coordinate planes (unet.coordinates=true)


def _refuse_other_unet(cfg: DictConfig, wanted: dict) -> None:
    """unet.init_from's UNet of another architecture than these settings build: refused before any stage (it failed
    with torch's state-dict message once the VAE had trained, and the run folder was tied to these settings)."""
    folder = Path(str(cfg.unet.init_from)) / "unet"
    own = _network_config(folder.parent / "unet", "unet.init_from", (), "a trained toy base")
    differ = {flag for key, flag in INIT_KEYS.items() if _plain(own.get(key)) != _plain(wanted.get(key))}
    # a plain UNet continues as one with coordinate planes (they start at zero weight), not the other way round
    if own.get("_class_name") == COORD_CLASS and wanted.get("_class_name") != COORD_CLASS:
        differ.add("unet.coordinates")
    if differ:
        raise UserError(
            f"unet.init_from={cfg.unet.init_from} holds a UNet of other settings than these "
            f"({', '.join(sorted(differ))}); "
            "give the settings it was trained with (its MODEL_CARD.md's command)"
        )


def _plain(value: object) -> object:
    return list(value) if isinstance(value, (list, tuple)) else value


def training_settings(cfg: DictConfig) -> dict:
    settings = {
        key: OmegaConf.to_container(cfg[key], resolve=True) if key != "seed" else cfg.seed for key in TRAINING_KEYS
    }
    # Options at their defaults stay out, so runs made before the options existed still resume.
    unet = settings["unet"]
    if not unet.get("coordinates"):
        unet.pop("coordinates", None)
    if unet.get("late_timestep_multiplier", 1.0) == 1.0:
        unet.pop("late_timestep_multiplier", None)
        unet.pop("late_timestep_portion", None)
    starts = starting_weights(cfg)
    if starts:  # the weights a run starts from, by content: replaced since, the run is another one
        settings["starts_from"] = starts
    return settings


def _as_recorded(settings: dict, earlier: dict) -> dict:
    """`settings` as a run recorded before its starting weights' digest was kept would hold them: without it (such a
    run resumes and reruns as it did; its starting folders are not checked)."""
    if "starts_from" in earlier:
        return settings
    return {key: value for key, value in settings.items() if key != "starts_from"}


def starting_weights(cfg: DictConfig) -> dict[str, str]:
    """The digest of each folder the run starts from (vae.reuse, unet.init_from), by its files' bytes: a path alone
    names other weights once they are replaced (a resumed run went on from them silently)."""
    from ..core.fingerprint import folder_hash

    folders = {"vae.reuse": cfg.vae.get("reuse"), "unet.init_from": cfg.unet.get("init_from")}
    return {key: folder_hash(folder) for key, folder in folders.items() if folder and Path(str(folder)).is_dir()}


def evaluation_settings(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg.evaluate, resolve=True)


def _other_evaluation(out: Path, cfg: DictConfig) -> bool:
    """Whether a finished run was evaluated with other evaluate.* (one finished before they were recorded: no)."""
    recorded = out / EVALUATION
    return recorded.is_file() and OmegaConf.to_container(OmegaConf.load(recorded)) != evaluation_settings(cfg)


def prepare(out: Path, cfg: DictConfig) -> bool:
    """Make `out` ready: a new run, a resumed run, a finished one to evaluate again with other evaluate.*, or
    (overwrite=true) a fresh start. False: already finished with these settings."""
    settings = training_settings(cfg)
    saved = out / RUN_CONFIG
    adopt_legacy(out, RUN_CONFIG, OUTPUTS)
    if out.exists() and any(entry.name not in BEFORE_MARKER for entry in out.iterdir()):  # its lock: not a file
        if cfg.overwrite:
            if not saved.is_file():
                raise UserError(f"{out} is not a train-toy run directory; refusing to delete it, choose another out=")
            remove_outputs(out, OUTPUTS)  # only files run.json lists: anything of yours there stays
        elif not saved.is_file():
            raise UserError(f"{out} already exists and is not a train-toy run; choose another out= or empty it")
        elif (earlier := OmegaConf.to_container(OmegaConf.load(saved), resolve=True)) != (
            wanted := _as_recorded(settings, earlier)
        ):
            keys = differing_keys(wanted, earlier)
            # unlike distill's iterations, a stage's steps set its learning rate's whole course (warm-up, then a
            # cosine decay over all of them): more steps is another training, not this one carried on
            why = (
                " (a stage's steps set its learning-rate schedule: a finished run cannot be extended)"
                if all(key.endswith(".steps") for key in keys)
                else ""
            )
            raise UserError(
                f"{out} holds a train-toy run with other settings ({', '.join(keys[:5])}){why}; rerun with its "
                "settings to resume, or add overwrite=true to start again"
            )
        elif (out / "MODEL_CARD.md").is_file():
            return _other_evaluation(out, cfg)
    out.mkdir(parents=True, exist_ok=True)
    claim_outputs(out, (RUN_CONFIG, "MODEL_CARD.md"))
    write_owned(out, RUN_CONFIG, OmegaConf.to_yaml(OmegaConf.create(settings)))
    return True


def frozen_judge(folder: Path, device: torch.device) -> tuple[ToyClassifier, dict]:
    """The shipped feature network, copied unchanged into the run: it measures the model being trained, so it
    must not change with it (features.retrain=true trains a new one instead)."""
    shutil.copytree(JUDGE, folder, dirs_exist_ok=True)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    info = {"seconds": 0.0, "accuracy": config["accuracy"], "frozen": True, "sha256": judge_sha256(folder)}
    return load_classifier(device, folder), info


def export_base(folder: Path, vae, text_encoder, tokenizer, unet, schedule: dict | None = None) -> Path:
    """The toy base as a StableDiffusionPipeline folder (safetensors, no safety checker). The scheduler config
    carries the training schedule (`schedule`, SD's when None): its betas and prediction type, which every
    sampler reads."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    # DDIM with trailing spacing starts at t=999, as the toolkit's toy pair runs it; set_alpha_to_one ends clean.
    scheduler = DDIMScheduler.from_config(
        {**(schedule or schedule_config(1.0)), "timestep_spacing": "trailing", "set_alpha_to_one": True}
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    shared_modes(folder)  # safetensors writes its files private
    return folder


def write_rows(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as temporary, temporary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: f"{v:.4f}" if isinstance(v, float) else v for k, v in row.items()} for row in rows)


def command_line(cfg: DictConfig) -> str:
    """The `diversity-cli train-toy` call that reproduces `cfg`: its differences from the default config, without
    overwrite=true (pasted back into its out=, it would delete the run it describes and train it again)."""
    from ..core.config import compose, flat_keys

    default = flat_keys(OmegaConf.to_container(compose("train_toy"), resolve=True))
    current = flat_keys(OmegaConf.to_container(cfg, resolve=True))
    current.pop("overwrite", None)
    overrides = [f"{key}={_format(value)}" for key, value in current.items() if default.get(key) != value]
    return " ".join(["diversity-cli train-toy", *overrides])


def _format(value) -> str:
    if isinstance(value, list):
        return "[" + ",".join(_format(v) for v in value) + "]"
    if isinstance(value, str) and " " in value:
        return f"'{value}'"
    return str(value)


def threads_text(stages: dict[str, list[int] | None]) -> str:
    """The torch thread counts the trained stages ran at: one count for all, or each stage's (a stage resumed at
    another count ran at two; one checkpointed before the counts were kept, "not recorded")."""
    counts = {tuple(found) if found else None for found in stages.values()}
    if len(counts) == 1 and (only := counts.pop()) is not None and len(only) == 1:
        return f"{only[0]} torch threads"
    each = ", ".join(
        f"{name} {' and '.join(map(str, found)) if found else 'not recorded'}" for name, found in stages.items()
    )
    two = any(found and len(found) > 1 for found in stages.values())
    return f"torch threads per stage: {each}" + ("; resumed at another count, not bitwise a run at one" if two else "")


def _utc(seconds: float | None) -> str:
    """A time (now where None) as the card writes it."""
    when = datetime.now(timezone.utc) if seconds is None else datetime.fromtimestamp(seconds, tz=timezone.utc)
    return when.strftime("%Y-%m-%d %H:%M UTC")


def model_card(cfg, device, times, features_info, rows, networks, vae_info, threads, trained=None) -> str:
    counts = {name: parameter_count(module) for name, module in networks.items()}
    vae, judge = networks["vae"], networks["features"]
    accuracy = features_info["accuracy"]
    started = starting_weights(cfg).get("unet.init_from")  # hashed once: the folders are read whole
    lines = [
        "# Toy base model and toy feature network",
        "",
        "Trained from scratch by this toolkit on its procedural toy world (`diversity_cli/toy/data.py`): 32x32 RGB",
        "scenes of shapes with six independent factors and captions that name a random subset of them.",
        "",
        "## How it was trained",
        "",
        f"- command: `{command_line(cfg)}`",
        f"- seed: {cfg.seed}",
        f"- machine: {platform.machine()} {platform.processor() or ''} ({device}"
        + (f", {threads_text(threads)}" if device.type == "cpu" else "")
        + f"), torch {torch.__version__}",
        f"- finished: {_utc(trained)}" + (f"; evaluated (this card written) {_utc(None)}" if trained else ""),
        "- wall time per stage (seconds): "
        + ", ".join(f"{name} {seconds:.0f}" for name, seconds in times.items())
        + f"; total {sum(times.values()) / 60:.1f} min",
        "",
        "## Data",
        "",
        f"- {cfg.data.n_train} training scenes (seed {cfg.seed}), {cfg.data.n_heldout} held-out scenes "
        f"(seed {int(cfg.seed) + 1}); the UNet sees a fresh random caption of each scene at every step.",
        "- factors: " + "; ".join(f"{f}: {', '.join(v)}" for f, v in FACTORS.items()),
        f"- vocabulary ({len(VOCABULARY)} words): {' '.join(VOCABULARY)}",
        f"- mode coverage counts {' x '.join(MODE_FACTORS)}.",
        "",
        "## Architecture",
        "",
        "| part | class | parameters | configuration |",
        "| --- | --- | --- | --- |",
        f"| vae | AutoencoderKL | {counts['vae']:,} | channels {list(vae.config.block_out_channels)}, "
        f"{IMAGE_SIZE}x{IMAGE_SIZE}x3 -> {vae.config.latent_channels}x{latent_side(vae.config.block_out_channels)}^2, "
        f"scaling_factor {vae_info['scaling_factor']:.4f} (latent std {vae_info['latent_std']:.3f}, "
        f"mean {vae_info['latent_mean']:.3f}) |",
        f"| text_encoder | CLIPTextModel | {counts['text_encoder']:,} | hidden {cfg.text_encoder.hidden}, "
        f"{cfg.text_encoder.layers} layers, {cfg.text_encoder.heads} heads; CLIPTokenizer, one token per toy word |",
        f"| unet | {'CoordUNet2DConditionModel' if cfg.unet.coordinates else 'UNet2DConditionModel'} | "
        f"{counts['unet']:,} | channels {list(cfg.unet.channels)}, cross-attention below the top level"
        + ("; x and y coordinate planes join the input (CoordConv)" if cfg.unet.coordinates else "")
        + f"; {schedule_text(cfg.unet)} |",
        f"| features | ToyClassifier (CNN) | {counts['features']:,} | channels {list(judge.channels)}, "
        f"embedding {judge.embed_dim}, one head per factor |",
        "",
        "Training: "
        + (
            f"VAE reused from `{vae_info['reused']}`"
            if vae_info.get("reused")
            else f"VAE (MSE + KL weight {cfg.vae.kl_weight}, {cfg.vae.steps} steps of {cfg.vae.batch_size})"
        )
        + "; "
        + (
            f"feature network: the shipped judge, unchanged (sha256 {features_info['sha256'][:16]}...)"
            if features_info.get("frozen")
            else f"feature network ({cfg.features.steps} steps of {cfg.features.batch_size}, blur/noise augmentation)"
        )
        + "; text encoder + UNet jointly"
        + (f", continued from `{cfg.unet.init_from}` (weights digest {started[:16]})" if started else "")
        + f" ({cfg.unet.steps} steps of {cfg.unet.batch_size}, AdamW lr {cfg.unet.lr} "
        f"warm-up + cosine, caption dropout {cfg.unet.cond_dropout}, min-SNR gamma {cfg.unet.snr_gamma}, "
        + (
            f"the noisiest {cfg.unet.late_timestep_portion:.0%} of timesteps drawn "
            f"{cfg.unet.late_timestep_multiplier:g}x as often as the rest, "
            if cfg.unet.late_timestep_multiplier != 1.0
            else ""
        )
        + f"EMA {cfg.unet.ema_decay}; the exported weights are the EMA).",
        "",
        "## Feature network accuracy (held-out scenes)",
        "",
        *(
            ["Measured when the judge was trained (the round trip through that run's VAE).", ""]
            if features_info.get("frozen")
            else []
        ),
        "| factor | clean scenes | after the VAE round trip |",
        "| --- | --- | --- |",
        *[f"| {f} | {accuracy['heldout'][f]:.4f} | {accuracy['heldout_vae'][f]:.4f} |" for f in FACTORS],
        "",
        f"## Base model, measured (n={cfg.evaluate.n} per prompt, seeds {cfg.seed}.."
        f"{int(cfg.seed) + cfg.evaluate.n - 1}, DDIM trailing {cfg.evaluate.steps} steps, CFG {cfg.evaluate.guidance})",
        "",
        "Adherence: fraction of samples whose predicted factors match every factor the prompt names. Mode coverage: "
        "fraction of the prompt's allowed (shape, color, position) combinations seen. Feature diversity: mean "
        "pairwise cosine distance of feature-network embeddings. `truth`: the same for n ground-truth scenes.",
        "",
        "| prompt | modes | adherence | mode coverage | feature diversity | truth adherence | truth coverage "
        "| truth diversity | s/image |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *[
            f"| {r['prompt']} | {r['modes']} | {r['adherence']:.3f} | {r['mode_coverage']:.3f} | "
            f"{r['feature_diversity']:.3f} | {r['truth_adherence']:.3f} | {r['truth_mode_coverage']:.3f} | "
            f"{r['truth_feature_diversity']:.3f} | {r['seconds_per_image']:.4f} |"
            for r in rows
        ],
        "",
        *NOTES,
        *(COORDINATE_NOTE if cfg.unet.coordinates else []),
    ]
    return "\n".join(lines)


def schedule_text(unet_cfg: DictConfig) -> str:
    shift = float(unet_cfg.schedule_shift)
    kind = "v-prediction" if unet_cfg.prediction_type == "v_prediction" else "epsilon prediction"
    text = f"{kind}, SD scaled-linear schedule (0.00085..0.012, 1000 steps)"
    if shift != 1:
        text += f" shifted by {shift:g} (SNR / {shift:g}^2)"
    if unet_cfg.zero_terminal_snr:
        text += ", rescaled to zero terminal SNR (ᾱ_999 = 0)"
    return text + ("" if shift == 1 and not unet_cfg.zero_terminal_snr else "; trained_betas")


# diffusers imports no module a folder names (model_index.json names this UNet's), so a plain-diffusers user must.
COORDINATE_NOTE = [
    "- The UNet is `diversity_cli.models.coord_unet.CoordUNet2DConditionModel` (diffusers' UNet2DConditionModel with x "
    "and y planes joining its input). The toolkit loads it by itself; to load `base/` in plain diffusers, "
    "`import diversity_cli.models.coord_unet` before `StableDiffusionPipeline.from_pretrained`.",
    "",
]

NOTES = [
    "## Notes",
    "",
    '- In the toy language the article "a" fixes nothing: "a circle" may show one or two circles; "one"/"two" or '
    "a plural noun fix the count. `diversity_cli.toy.data.parse_prompt` reads a caption the way the numbers above do.",
    "- `diversity_cli.toy.features` (`load_classifier`, `mode_coverage`, `prompt_adherence`) computes these measures "
    "for any images; `render_prompt_samples` draws a prompt's ground-truth scenes.",
    "- Rerunning the command repeats the training (same seed, same data and captions); a killed run resumes from "
    "its last checkpoint. Wall times vary with the load of the machine.",
    "",
]


def _summary(rows: list[dict], features_info: dict, times: dict, total: float) -> None:
    console = _console()
    table = Table(title="toy base model (evaluation.csv)")
    for column in ("prompt", "adherence", "mode coverage", "truth coverage", "diversity", "truth diversity"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r["prompt"],
            f"{r['adherence']:.3f}",
            f"{r['mode_coverage']:.3f}",
            f"{r['truth_mode_coverage']:.3f}",
            f"{r['feature_diversity']:.3f}",
            f"{r['truth_feature_diversity']:.3f}",
        )
    console.print(table)
    accuracy = features_info["accuracy"]["heldout_vae"]
    # a frozen judge's figures are from when it was trained, through that run's VAE, not this run's
    which = (
        "the shipped judge's accuracy when it was trained"
        if features_info.get("frozen")
        else "feature network accuracy"
    )
    console.print(f"{which} (held-out, VAE round trip): " + json.dumps(accuracy))
    console.print(
        "seconds per stage: " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()) + f" (this run {total:.0f})"
    )


def _console() -> Console:
    return Console(stderr=False)
