"""`diversity-cli distill`: few-step distillation of a pair's base model with DMD or DP-DMD.

    diversity-cli distill model=tiny_sd distill=dmd prompts=prompts.txt out=results/distill_dmd
    diversity-cli distill model=tiny_sd distill=dp_dmd anchor_k=2 lambda_div=0.05 prompts=prompts.txt out=...
    accelerate launch -m diversity_cli distill model=sdxl_dmd2 mixed_precision=bf16 ...   # GPU nodes

The teacher is the pair's base network (frozen); student and fake score start as float32 copies of it. One
iteration is `fake_updates_per_generator_update` fake-score updates followed by one generator update (see
`objective`). Runs resume from the newest checkpoint in `out` and extend to a larger `iterations`; a run with
other settings is never replaced without `overwrite=true`.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from rich.markup import escape

from ..core.config import pair_overrides
from ..core.console import stderr_console
from ..core.errors import UserError, refused_as
from ..core.fingerprint import digest, folder_hash
from ..core.pair_settings import SCHEDULED_FAMILIES
from ..core.prompts import read_prompts
from ..core.record import record_invocation
from ..core.schemas.distill import gan_weight
from ..models.loading import DTYPES, load_pair, resolve_device, resolve_dtype
from ..models.pair import ModelPair
from ..models.provenance import hashed_provenance, pair_provenance
from ..toy import is_toy_pair
from .discriminator import build_head
from .generator import anchor_timestep
from .monitor import MonitorSettings, QualityMonitor, monitor_settings, plot_quality
from .objective import Distiller, DistillSettings
from .real_scenes import RealScenes
from .state import RunState

METHODS = ("dmd", "dp_dmd")
DP_DMD_KEYS = ("anchor_k", "lambda_div", "stop_gradient", "teacher_ode")


class TrainProgress:
    """The custom part of a checkpoint: the iteration reached and the training time so far."""

    def __init__(self):
        self.iteration = 0
        self.seconds = 0.0

    def state_dict(self) -> dict:
        return {"iteration": self.iteration, "seconds": self.seconds}

    def load_state_dict(self, state: dict) -> None:
        self.iteration = int(state["iteration"])
        self.seconds = float(state["seconds"])


def iteration_generator(seed: int, iteration: int, process: int) -> torch.Generator:
    """Every random draw of one iteration on one process comes from this generator. Seeding it from
    (seed, iteration, process) makes an iteration's randomness independent of what ran before it, so a resumed
    run draws exactly what an uninterrupted one would, with no generator state to checkpoint per process."""
    import numpy as np

    state = np.random.SeedSequence([int(seed), int(iteration), int(process)]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator("cpu").manual_seed(int(state))


def _on_cpu(device: str) -> bool:
    """Whether accelerate will train on the CPU: asked for, or `auto` with neither CUDA nor an Apple GPU."""
    return device == "cpu" or (
        device == "auto" and not torch.cuda.is_available() and not torch.backends.mps.is_available()
    )


def validate(cfg: DictConfig) -> None:
    """Reject bad settings before any model is loaded."""
    family = (cfg.get("model") or {}).get("family")
    if family not in SCHEDULED_FAMILIES:  # the student's LCM steps and the teacher's DDIM ODE are DDPM-family
        raise UserError(
            f"model={cfg.model.get('name')} is a {family} pair: distill trains DDPM-family pairs "
            f"({', '.join(SCHEDULED_FAMILIES)}); flow-matching pairs are not supported"
        )
    method = cfg.get("method")
    if method not in METHODS:
        raise UserError(f"unknown distill method '{method}'; choose distill=dmd or distill=dp_dmd")
    if method == "dp_dmd" and any(cfg.get(key) is None for key in DP_DMD_KEYS):
        raise UserError("method=dp_dmd needs its settings group: use distill=dp_dmd (it sets method, anchor_k, ...)")
    if method == "dmd" and any(cfg.get(key) is not None for key in DP_DMD_KEYS):
        # distill=dp_dmd method=dmd: plain DMD would train under a record of DP-DMD's anchor and weight
        raise UserError("method=dmd with distill=dp_dmd's settings (anchor_k, lambda_div, ...) would ignore them; "
                        "choose the method by its group alone: distill=dmd or distill=dp_dmd")  # fmt: skip
    for key in (
        "iterations",
        "batch_size",
        "fake_updates_per_generator_update",
        "checkpoint_every",
        "keep_checkpoints",
    ):
        if not isinstance(cfg[key], int) or isinstance(cfg[key], bool) or cfg[key] < 1:
            raise UserError(f"{key}={cfg[key]} must be a positive integer")
    timesteps = list(cfg.student_timesteps)
    if not timesteps or not all(isinstance(t, int) and t >= 0 for t in timesteps):
        raise UserError(f"student_timesteps={timesteps} must be a non-empty list of integer timesteps")
    if any(a <= b for a, b in zip(timesteps, timesteps[1:], strict=False)):
        raise UserError(f"student_timesteps={timesteps} must be strictly decreasing (noisiest first)")
    low, high = (float(v) for v in cfg.t_range)
    if not 0.0 <= low < high <= 1.0:
        raise UserError(f"t_range={list(cfg.t_range)} must be [low, high] with 0 <= low < high <= 1")
    for key in ("generator", "fake"):
        if float(cfg.lr[key]) <= 0:
            raise UserError(f"lr.{key}={cfg.lr[key]} must be positive")
    if cfg.mixed_precision not in (None, "no", "fp16", "bf16"):
        raise UserError(f"mixed_precision={cfg.mixed_precision} must be no, fp16, bf16 or null (accelerate's choice)")
    # null is accelerate's choice: its environment variable (accelerate config / launch sets it)
    given = "mixed_precision=fp16" if cfg.mixed_precision == "fp16" else "ACCELERATE_MIXED_PRECISION=fp16"
    precision = cfg.mixed_precision or os.environ.get("ACCELERATE_MIXED_PRECISION")
    if precision == "fp16" and _on_cpu(str(cfg.device)):
        # CPU autocast has no fp16: the run trained in float32 and was recorded as fp16 (told before the Accelerator
        # is made: its state, once set, is the process's)
        raise UserError(f"{given} needs a GPU (on the CPU it does nothing); give mixed_precision=bf16 or no")
    if method == "dp_dmd":
        if len(timesteps) < 2:
            raise UserError("distill=dp_dmd needs at least 2 student_timesteps: the first step and the ones DMD trains")
        steps = ode_steps(cfg)
        k = cfg.anchor_k
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= steps:
            raise UserError(
                f"anchor_k={k} is out of range: the teacher's ODE has {steps} steps (teacher_ode.steps), so 1..{steps}"
            )
        if float(cfg.lambda_div) < 0:
            raise UserError(f"lambda_div={cfg.lambda_div} must be >= 0")
    gan_settings(cfg)
    monitor_settings(cfg)


def _refuse_unread_gan_keys(group: Any) -> None:
    """gan.* other than its defaults with gan.weight=0: no GAN term reads them, and the student's README said "no
    GAN term" under a command that set them (as train-lora refuses negative= without mode=slider)."""
    from ..core.config import conf_dir
    from ..core.schema import show

    defaults = OmegaConf.load(conf_dir() / "distill.yaml").gan
    for key in ("discriminator_weight", "mismatched"):
        if key in group and group[key] != defaults[key]:  # a library caller's config may have no gan section
            raise UserError(
                f"gan.{key}={show(group.get(key))} applies with gan.weight > 0 only; gan.weight=0 (no GAN term) "
                f"ignores it (drop gan.{key}=, or set gan.weight, e.g. 5e-3: DMD2's SDXL recipe)"
            )


def gan_settings(cfg: DictConfig) -> dict[str, Any]:
    """The GAN term's fields of `DistillSettings`: all off when its weight is 0. Refused on a pair without a source
    of real images: only toy pairs have one (the toy world's renderer)."""
    group = cfg.get("gan") or {}
    weight, discriminator = gan_weight(cfg), float(group.get("discriminator_weight", 0) or 0)
    if weight <= 0:
        _refuse_unread_gan_keys(group)
        return {"gan_weight": 0.0, "gan_discriminator_weight": 0.0, "gan_mismatched": False}
    if not is_toy_pair(cfg.model):
        raise UserError(
            f"gan.weight={group.get('weight')} needs real images, which only toy pairs draw (their scene renderer); "
            f"model={cfg.model.name} has none: leave gan.weight=0"
        )
    if discriminator <= 0:
        raise UserError(f"gan.discriminator_weight={group.get('discriminator_weight')} must be > 0 with gan.weight > 0")
    mismatched = bool(group.get("mismatched", False))
    return {"gan_weight": weight, "gan_discriminator_weight": discriminator, "gan_mismatched": mismatched}


def ode_steps(cfg: DictConfig) -> int:
    # anchor_k counts steps of this ODE, so its step count must be stated: borrowed from the base model (25 on the
    # toy), anchor_k=2 would mean t=919 where the same setting means t=749 on an 8-step ODE.
    steps = cfg.teacher_ode.steps
    if steps is None:
        raise UserError(
            "teacher_ode.steps=null leaves anchor_k without a fixed timestep; set teacher_ode.steps "
            "(8: anchor_k=2 is t=749, the student's second timestep)"
        )
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise UserError(f"teacher_ode.steps={steps} must be a positive integer")
    return steps


def outside_toy_language(cfg: DictConfig, prompts: list[str]) -> str:
    """On a toy pair, the training prompts' words its models never learned (as generate and diversity note them):
    the student is trained on them anyway, the judge that monitors it cannot check them."""
    from ..toy.data import words_outside

    if not is_toy_pair(cfg.model):
        return ""
    unknown = {prompt: words_outside(prompt) for prompt in prompts}
    unknown = {prompt: words for prompt, words in unknown.items() if words}
    if not unknown:
        return ""
    words = ", ".join(dict.fromkeys(word for found in unknown.values() for word in found))
    verb = "has" if len(unknown) == 1 else "have"
    return (
        f"{len(unknown)} of {len(prompts)} training prompts {verb} words outside the toy language ({words}): the "
        "toy's models never learned them (each is read letter by letter) and its judge cannot check them"
    )


def training_prompts(cfg: DictConfig) -> list[str]:
    if cfg.prompts is not None and OmegaConf.is_list(cfg.prompts):
        prompts = [str(p) for p in cfg.prompts if str(p).strip()]
        if not prompts:
            raise UserError("prompts=[] is empty; give training prompts (a list, or a .txt / .csv file)")
        return prompts
    return [row.prompt for row in read_prompts(cfg.prompt, cfg.prompts)]


def settings(cfg: DictConfig, pair: ModelPair) -> DistillSettings:
    teacher_guidance = float(cfg.teacher_guidance if cfg.teacher_guidance is not None else pair.base.guidance)
    common = dict(
        method=cfg.method,
        student_timesteps=list(cfg.student_timesteps),
        teacher_guidance=teacher_guidance,
        t_range=tuple(float(v) for v in cfg.t_range),
    )
    common.update(gan_settings(cfg))
    if cfg.method == "dmd":
        return DistillSettings(**common)
    ode = cfg.teacher_ode
    return DistillSettings(
        **common,
        anchor_k=int(cfg.anchor_k),
        lambda_div=float(cfg.lambda_div),
        stop_gradient=bool(cfg.stop_gradient),
        ode_steps=ode_steps(cfg),
        ode_guidance=float(ode.guidance if ode.guidance is not None else teacher_guidance),
        ode_overrides=OmegaConf.to_container(ode.overrides, resolve=True) if ode.get("overrides") else {},
    )


def check_schedules(cfg: DictConfig, pair: ModelPair, distiller: Distiller) -> None:
    """Checks that need the loaded scheduler configs."""
    train_t = distiller.num_train_timesteps
    if max(cfg.student_timesteps) >= train_t:
        raise UserError(f"student_timesteps={list(cfg.student_timesteps)} must be below {train_t} for {pair.name}")
    if cfg.method == "dp_dmd":
        ode, steps = distiller.ode, distiller.settings.ode_steps
        if steps > train_t:
            raise UserError(
                f"teacher_ode.steps={steps} is above the {train_t} training timesteps of {pair.name}'s teacher; "
                f"use 1..{train_t}"
            )
        # an override diffusers cannot schedule with (timestep_spacing=bogus)
        with refused_as("teacher_ode.overrides: the teacher's DDIM cannot set its schedule", (ValueError, TypeError)):
            ode.set_timesteps(distiller.settings.ode_steps)
        first = int(ode.timesteps[0])
        if first != cfg.student_timesteps[0]:
            raise UserError(
                f"the teacher's ODE starts at timestep {first} but the student at {cfg.student_timesteps[0]}; "
                "both must start from the same noise level (teacher_ode.overrides.timestep_spacing=trailing)"
            )


@dataclass
class Training:
    """Everything one training session works with."""

    accelerator: Any
    pair: ModelPair
    distiller: Distiller
    opt_g: torch.optim.Optimizer
    opt_f: torch.optim.Optimizer
    progress: TrainProgress
    prompts: list[str]
    real: RealScenes | None = None  # the GAN term's real images (toy pairs)


def distill(cfg: DictConfig) -> Path:
    session_began = time.perf_counter()
    validate(cfg)
    prompts = training_prompts(cfg)
    from accelerate import Accelerator

    if cfg.device != "auto":
        resolve_device(cfg.device)  # a clear line when CUDA is asked for and absent
    accelerator = Accelerator(cpu=cfg.device == "cpu", mixed_precision=cfg.mixed_precision)
    state = RunState(cfg.out)
    state.plan(cfg)  # a folder it must not touch is refused before anything (even a lock file) is written there
    new = not state.root.exists()
    try:
        # One distill process per run directory (its main rank; the other ranks follow it): a second one refuses.
        with state.writing() if accelerator.is_main_process else contextlib.nullcontext():
            student = _run(cfg, accelerator, state, prompts, session_began)
    except UserError:
        # refused once the models had loaded (a schedule the teacher cannot set): a new out= holds only our lock
        if new:
            state.remove_if_lock_only()
        raise
    return student


def _run(cfg: DictConfig, accelerator, state: RunState, prompts: list[str], session_began: float) -> Path:
    main = accelerator.is_main_process
    start = state.plan(cfg)
    if start and not cfg.overwrite:
        check_monitor_continues(cfg, state.read_log("quality.csv"), start, state.root)
    console = _console()
    if start is None:
        refuse_other_inputs(state, finished_inputs(cfg, prompts))  # else "nothing to do" passes for these inputs
        if main:
            console.print(f"[green]nothing to do[/]: {state.root} holds a finished run of {cfg.iterations} iterations")
        return state.root
    training = build(cfg, accelerator, prompts)
    teacher = pair_provenance(cfg.model, training.pair, roles=("base", "components"))  # no distilled loaded
    inputs = training_inputs(prompts, teacher)
    if start > 0:  # every rank: none goes on to train where the main one refuses
        refuse_other_inputs(state, inputs)
    # Only now that the models have loaded: a setting refused at load time must not have cost the earlier run.
    if cfg.overwrite and main:
        state.clear()
    accelerator.wait_for_everyone()
    if start > 0:
        # progress.json, not accelerate's custom-object pickle; every other file it loads is weights-only
        progress = state.read_progress(state.checkpoint_dir(start), start)
        state.load_checkpoint(accelerator, start)
        training.progress.load_state_dict(progress)
    if main:
        state.truncate_log(start)
        state.truncate_log(start, "quality.csv")
        state.write_record(cfg, finished=False, inputs=inputs)
        state.write_file("config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        precision = {"dtype": str(training.pair.dtype), "mixed_precision": str(accelerator.mixed_precision)}
        record_invocation(state.root, config=cfg, device=str(accelerator.device), models=teacher, **precision)
        # once every refusal has had its say (each stays one line), before the training it is about: said after it,
        # a run interrupted or killed never showed it
        if note := outside_toy_language(cfg, prompts):
            stderr_console().print(f"[yellow]note[/]: {escape(note)}")

    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from ..core.console import LoggedProgress, RateColumn

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        RateColumn(),
        TextColumn("{task.fields[losses]}"),
    )
    total = int(cfg.iterations)
    settings = monitor_settings(cfg)
    watch = Watch(cfg, settings, training, state, console) if main and settings.every else None
    # the curve's first point (at 0: the teacher's network on the student's few steps; or where a monitor turned on
    # mid-run starts); a resumed curve goes on at its next multiple, as the uninterrupted run's does
    if watch and not state.read_log("quality.csv"):
        watch.measure(start)
    # off a terminal (a SLURM log) a plain line every LOG_INTERVAL seconds, not one bar redrawn at the end
    with LoggedProgress(*columns, console=console, disable=not main) as progress:
        task = progress.add_task(f"distill {cfg.method} {training.pair.name}", total=total, completed=start, losses="")
        for iteration in range(start + 1, total + 1):
            row = train_iteration(cfg, training, iteration)
            if main:
                state.append_log([row])
            progress.update(task, advance=1, losses=_shown(row))
            if watch and (iteration % watch.every == 0 or iteration == total):
                watch.measure(iteration)
            if iteration % int(cfg.checkpoint_every) == 0 or iteration == total:
                save_checkpoint(accelerator, state, iteration, int(cfg.keep_checkpoints), training.progress)

    if main:
        partial = state.root / ".partial-student"  # written whole, then moved into place (`RunState.place`)
        save_student(accelerator.unwrap_model(training.distiller.student), partial, cfg)
        state.place(partial, state.student)
        seconds = training.progress.seconds
        # the student's identity as generate records it (model.distilled.network.path=<student>: its folder's hash),
        # so the images of a student name the distill run that made it
        student = {"path": str(state.student.resolve()), "weights_hash": folder_hash(state.student)}
        state.write_record(
            cfg, finished=True, iterations=total, seconds=round(seconds, 1), inputs=inputs, student=student
        )
        write_readme(state, cfg, training, seconds, time.perf_counter() - session_began)
        console.print(f"[green]student saved[/] to {state.student} ({total} iterations)")
    accelerator.wait_for_everyone()
    return state.root


def training_inputs(prompts: list[str], teacher: dict) -> dict[str, str]:
    """What the run trains on besides its settings: the prompts' text (a file's path is all the config holds) and
    the teacher's weights (a path or hub id names a folder whose bytes can change)."""
    weights = {role: value.get("weights_hash") for role, value in teacher.items()}
    return {"prompts": digest(prompts)[:12], "teacher": digest(weights)[:12]}


def finished_inputs(cfg: DictConfig, prompts: list[str]) -> dict[str, str]:
    """`training_inputs` without loading the pair, for a run that is finished: the teacher's weights hashed from
    their files (a tiny pair's, built in memory, or weights not on this machine: left out, not compared)."""
    teacher = hashed_provenance(cfg.model, roles=("base", "components"))
    inputs = training_inputs(prompts, teacher or {})
    if teacher is None:
        inputs.pop("teacher")
    return inputs


def refuse_other_inputs(state: RunState, inputs: dict[str, str]) -> None:
    """A resumed or extended run goes on only with the prompts and teacher it began with (runs recorded before
    these were kept: not checked)."""
    before = (state.read() or {}).get("inputs") or {}
    changed = [key for key, value in inputs.items() if key in before and before[key] != value]
    if changed:
        what = " and ".join({"prompts": "its prompts' text", "teacher": "the teacher's weights"}[k] for k in changed)
        raise UserError(
            f"{state.root} was trained so far with other {'/'.join(changed)} ({what} changed since); going on, or "
            "calling it done, would pass it off as trained on these: restore them, use another out=, or add "
            "overwrite=true to start again"
        )


def build(cfg: DictConfig, accelerator, prompts: list[str]) -> Training:
    """Load the pair; the student and fake score start as float32 copies of its base network (the teacher)."""
    device = accelerator.device
    # The teacher is the base; the pair's own distilled checkpoint is not needed (nor loaded) to train a new one.
    pair = load_pair(cfg.model, device, resolve_dtype(cfg.model.dtype, device), roles=("base",))
    teacher = pair.base.network.requires_grad_(False).eval()
    student, fake = Distiller.copy_of(teacher), Distiller.copy_of(teacher)
    if cfg.gradient_checkpointing:
        student.enable_gradient_checkpointing()
        fake.enable_gradient_checkpointing()
    betas = tuple(float(b) for b in cfg.adam.betas)
    opt_g = torch.optim.AdamW(student.parameters(), float(cfg.lr.generator), betas, weight_decay=cfg.adam.weight_decay)
    distill_settings = settings(cfg, pair)
    head = real = None
    trained_with_fake = list(fake.parameters())
    if distill_settings.gan_weight > 0:
        # The discriminator is the fake score's backbone plus this head, trained together by opt_f (as in DMD2).
        probe = torch.zeros(1, *pair.latent_shape, device=device)
        head = build_head(fake, probe, pair.encode([prompts[0]]).cond, int(cfg.seed))
        trained_with_fake += list(head.parameters())
        real = RealScenes(pair, with_wrong_captions=distill_settings.gan_mismatched)
    opt_f = torch.optim.AdamW(trained_with_fake, float(cfg.lr.fake), betas, weight_decay=cfg.adam.weight_decay)
    if head is None:
        student, fake, opt_g, opt_f = accelerator.prepare(student, fake, opt_g, opt_f)
    else:  # prepared (so checkpointed) only when on: runs without it keep their checkpoints' layout
        student, fake, opt_g, opt_f, head = accelerator.prepare(student, fake, opt_g, opt_f, head)
    progress = TrainProgress()  # saved as progress.json beside accelerate's state (`save_checkpoint`), never pickled
    distiller = Distiller(teacher, student, fake, dict(pair.base.scheduler.config), distill_settings, head)
    check_schedules(cfg, pair, distiller)
    return Training(accelerator, pair, distiller, opt_g, opt_f, progress, prompts, real)


def check_monitor_continues(cfg: DictConfig, rows: list[dict[str, str]], start: int, root: Path) -> None:
    """A resumed run's quality rows are one curve: other caption or sample counts would read as a jump in quality."""
    settings = monitor_settings(cfg)
    kept = [row for row in rows if int(row["iteration"]) <= start]
    if not settings.every or not kept:
        return
    for key, value, column in (
        ("captions", settings.captions, "n_fid"),
        ("per_prompt", settings.per_prompt, "n_per_prompt"),
    ):
        before = kept[-1][column]
        if str(value) != before:
            raise UserError(
                f"monitor.{key}={value} differs from the {before} of the quality.csv rows in {root}: "
                f"keep monitor.{key}={before} to extend that curve, or start over with overwrite=true"
            )


class Watch:
    """The student's quality during training: a quality.csv row and a redrawn quality.png per measurement."""

    def __init__(self, cfg: DictConfig, settings: MonitorSettings, training: Training, state: RunState, console):
        self.every, self.training, self.state, self.console = settings.every, training, state, console
        self.title = f"distill {cfg.method} {training.pair.name}: {state.root}"
        self.monitor = QualityMonitor(settings, training.pair, training.distiller.sampler, training.accelerator.device)
        floor, base = self.monitor.floor, self.monitor.base["fid_toyfeat"]
        if floor >= base:
            console.print(
                f"[yellow]warning[/]: at monitor.captions={settings.captions} the ground-truth floor ({floor:.1f}) "
                f"reads at or above the base ({base:.1f}): too few captions for fid_toyfeat to order models (250 do)"
            )

    def measure(self, iteration: int) -> None:
        student = self.training.accelerator.unwrap_model(self.training.distiller.student)
        row = self.monitor.measure(student, iteration)
        self.state.append_log([row], "quality.csv")
        plot_quality(self.state.read_log("quality.csv"), self.state.own("quality.png"), self.title)
        self.console.print(
            f"iteration {iteration}: fid_toyfeat {row['fid_toyfeat']} (base {row['base_fid_toyfeat']}, floor "
            f"{row['fid_floor']}), adherence {row['adherence_mean']} (worst {row['adherence_worst']} "
            f"{row['worst_prompt']}; base {row['base_adherence_mean']}) [{row['seconds']} s]"
        )


def train_iteration(cfg: DictConfig, training: Training, iteration: int) -> dict[str, Any]:
    """`fake_updates_per_generator_update` fake-score updates, then one generator update; the log row."""
    began = time.perf_counter()
    accelerator, distiller = training.accelerator, training.distiller
    rng = iteration_generator(cfg.seed, iteration, accelerator.process_index)
    shape = (int(cfg.batch_size), *training.pair.latent_shape)

    def batch():
        picks = torch.randint(len(training.prompts), (shape[0],), generator=rng).tolist()
        conditioning = training.pair.encode([training.prompts[i] for i in picks])
        return distiller.draw_noise(shape, accelerator.device, rng), conditioning

    def update(optimizer, network, loss):
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        if cfg.max_grad_norm and float(cfg.max_grad_norm) > 0:
            accelerator.clip_grad_norm_(network.parameters(), float(cfg.max_grad_norm))
        optimizer.step()

    fake_losses, discriminator_losses = [], []
    for _ in range(int(cfg.fake_updates_per_generator_update)):
        noise, conditioning = batch()
        samples = distiller.student_sample(noise, conditioning, rng)
        loss = distiller.fake_loss(samples, conditioning, rng)
        fake_losses.append(loss.item())
        if training.real is not None:
            real = training.real.draw(shape[0], rng)
            real_kwargs = training.pair.encode(real.captions).cond
            discriminator = distiller.discriminator_loss(
                samples, conditioning.cond, real.latents, real_kwargs, rng, real.wrong
            )
            discriminator_losses.append(discriminator.item())
            loss = loss + distiller.settings.gan_discriminator_weight * discriminator
        update(training.opt_f, distiller.fake, loss)
    noise, conditioning = batch()
    g = distiller.generator_losses(noise, conditioning, rng)
    update(training.opt_g, distiller.student, g.total)

    seconds = time.perf_counter() - began
    training.progress.iteration = iteration
    training.progress.seconds += seconds
    return {
        "iteration": iteration,
        "generator_loss": f"{g.total.item():.6g}",
        "dmd_loss": f"{g.dmd.item():.6g}",
        "first_step_loss": "" if g.first_step is None else f"{g.first_step.item():.6g}",
        # The MSE of the best constant first step (the batch's mean anchor, for all its prompts and noises): a
        # first_step_loss at this floor means the first step is a constant; below it, it reads its prompt, its
        # noise or both (this floor cannot tell which).
        "first_step_floor": "" if g.first_step_floor is None else f"{g.first_step_floor.item():.6g}",
        "fake_loss": _mean(fake_losses),
        # Unweighted GAN losses (log 4 = 1.386 for the discriminator's when it cannot tell real from student)
        "gan_loss": "" if g.gan is None else f"{g.gan.item():.6g}",
        "discriminator_loss": _mean(discriminator_losses),
        "seconds": f"{seconds:.3f}",
    }


def _mean(values: list[float]) -> str:
    return f"{sum(values) / len(values):.6g}" if values else ""


def _shown(row: dict[str, Any]) -> str:
    shown = f"G {row['generator_loss']}  dmd {row['dmd_loss']}  fake {row['fake_loss']}"
    if row["first_step_loss"]:
        shown += f"  first {row['first_step_loss']} (floor {row['first_step_floor']})"
    if row["gan_loss"]:
        shown += f"  gan {row['gan_loss']}  disc {row['discriminator_loss']}"
    return shown


def save_checkpoint(accelerator, state: RunState, iteration: int, keep: int, progress: TrainProgress) -> None:
    """accelerate's state and progress.json into a hidden folder, sealed and renamed to `iter_NNNNNN` only when
    whole: a kill mid-save leaves the previous checkpoint as the newest (the next run removes the partial one)."""
    path = state.checkpoint_dir(iteration)
    partial = state.partial_dir(iteration)
    if accelerator.is_main_process:
        state.check_foreign(path)  # an iter_ folder this run did not write is never replaced
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    if accelerator.is_main_process:
        state.write_progress(partial, progress.iteration, progress.seconds)
        state.seal(partial, path, keep)


def save_student(network: torch.nn.Module, path: Path, cfg: DictConfig) -> None:
    """The student in diffusers format (config.json + safetensors), in `save_dtype` (null: the model's dtype).
    Training is over: the network is moved and cast in place rather than copied (an SDXL copy would not fit)."""
    name = cfg.save_dtype or cfg.model.dtype
    if name not in DTYPES:
        raise UserError(f"save_dtype={name} must be one of: {', '.join(DTYPES)}")
    dtype = DTYPES[name]
    network.to("cpu", dtype)
    network.save_pretrained(str(path), safe_serialization=True)


def command_line(cfg: DictConfig) -> str:
    """An equivalent command: the group choices plus every setting that differs from the composed defaults. Not
    overwrite=true: pasted back into its out=, it would delete the run it describes and train it again."""
    if Path(sys.argv[0]).name == "diversity-cli":
        args = [arg for arg in sys.argv[1:] if arg.partition("=")[0].lstrip("+") != "overwrite"]
        return "diversity-cli " + shlex.join(args)  # quoted: a prompt with spaces pastes back whole
    changed = [f"{k}={_override_value(v)}" for k, v in _changed(cfg) if k != "overwrite"]
    return " ".join(["diversity-cli distill", f"model={cfg.model.name}", f"distill={cfg.method}", *changed])


def _changed(cfg: DictConfig) -> list[tuple[str, Any]]:
    """(dotted key, value) of every setting that differs from the defaults its pair and method compose."""
    from ..core.config import compose

    defaults = compose("distill", [f"model={cfg.model.name}", f"distill={cfg.method}"])
    return list(_diff(OmegaConf.to_container(cfg, resolve=True), OmegaConf.to_container(defaults, resolve=True)))


ANCHOR_KEYS = ("anchor_k", "teacher_ode.", "student_timesteps", "teacher_guidance")  # what DP-DMD's anchor reads


def first_step_command(cfg: DictConfig, student: Path) -> str:
    """The first-step check of this run's student against this run's anchor: the pair as distill was given it, and
    every setting the anchor reads that differs from the defaults (the guidance of its ODE, the student's first
    timestep), not anchor_k and the ODE's steps alone (the check then measured another anchor)."""
    from ..models.preflight import settable

    anchor = [f"{k}={_override_value(v)}" for k, v in _changed(cfg) if k.startswith(ANCHOR_KEYS)]
    shown = {item.partition("=")[0] for item in anchor}
    anchor = [f"{k}={v}" for k, v in (("anchor_k", cfg.anchor_k), ("teacher_ode.steps", cfg.teacher_ode.steps))
              if k not in shown] + anchor  # fmt: skip
    network = f"{settable(cfg.model, 'model.distilled.network.path')}={student}"
    words = [f"model={cfg.model.name}", *pair_overrides(cfg.model, skip="distilled"), network, *anchor]
    return "python -m diversity_cli.experiments.first_step " + " ".join(shlex.quote(word) for word in words)


def _diff(mine, base, prefix: str = ""):
    for key, value in mine.items():
        other = base.get(key) if isinstance(base, dict) else None
        if isinstance(value, dict) and isinstance(other, dict):
            yield from _diff(value, other, f"{prefix}{key}.")
        elif value != other:
            yield f"{prefix}{key}", value


def _override_value(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ",".join(_override_value(v) for v in value) + "]"
    text = str(value)
    return f"'{text}'" if any(c in text for c in " ,=[]{}") else text


def prompts_line(cfg: DictConfig) -> str:
    """What the student was trained on, named in its README (without prompt= or prompts= it is the pair's default
    prompt alone, which only the config dump below said)."""
    prompts = training_prompts(cfg)
    shown = ", ".join(repr(prompt) for prompt in prompts[:3]) + (
        f" and {len(prompts) - 3} more" if len(prompts) > 3 else ""
    )
    source = f" from `{cfg.prompts}`" if isinstance(cfg.prompts, str) else ""
    return f"training prompts{source}: {len(prompts)} ({shown})"


def write_readme(state: RunState, cfg: DictConfig, training: Training, seconds: float, session: float) -> None:
    net = state.student.resolve()
    pair, s = training.pair, training.distiller.settings
    anchor = ""
    if cfg.method == "dp_dmd":
        t = anchor_timestep(training.distiller.ode, s.ode_steps, s.anchor_k)
        target = f"the teacher's x̂0 at t={t}"
        if s.anchor_k >= s.ode_steps:  # no x̂0 at t=0: the ODE's sample, which its last step (from t_last) made
            last = anchor_timestep(training.distiller.ode, s.ode_steps, s.ode_steps - 1)
            target = f"the teacher ODE's sample after all its steps (the last from t={last})"
        anchor = (
            f"\n- first-step anchor: {target} (anchor_k={s.anchor_k} of {s.ode_steps} DDIM steps, "
            f"CFG {s.ode_guidance:g}), weight lambda_div={s.lambda_div:g}; log.csv's first_step_floor is the MSE "
            "of one constant first step for all the prompts and noises of a batch (below it, the step reads its "
            "prompt, its noise or both: the floor cannot tell which; "
            + (
                "experiments/first_step.py tells them apart on a pair that loads its student from weights, not on "
                "a tiny pair, built in memory)"
                if cfg.model.get("tiny")
                else f"`{first_step_command(cfg, net)}` does, with many noises per prompt, against this run's anchor)"
            )
        )
    method = "DMD2-style DMD" if cfg.method == "dmd" else "DP-DMD: first step to the teacher ODE anchor"
    if s.gan_weight > 0:
        method += (
            f", with DMD2's GAN term (generator weight {s.gan_weight:g}, discriminator weight "
            f"{s.gan_discriminator_weight:g}{', matching-aware' if s.gan_mismatched else ''}; real images: toy "
            "scenes from the renderer)"
        )
    elif cfg.method == "dmd":
        method += ", no GAN term"
    measured = (state.root / "quality.csv").exists()
    quality = "; `quality.csv`, `quality.png`: its fid_toyfeat and adherence during training" if measured else ""
    card = f"""# {cfg.method} student of {pair.name}

Few-step student distilled from the base network of `{pair.name}` by `diversity-cli distill`
({method}).

- command: `{command_line(cfg)}`
- iterations: {cfg.iterations}, batch size {cfg.batch_size}, seed {cfg.seed}, device {pair.device}
- {prompts_line(cfg)}
- training time {seconds:.0f} s over all sessions ({seconds / max(int(cfg.iterations), 1):.2f} s/iteration);
  wall time of the last session {session:.0f} s (loading, training, saving)
- student schedule: LCMScheduler at timesteps {list(cfg.student_timesteps)}{anchor}
- files: `student/` (diffusers {type(pair.base.network).__name__}, safetensors), `log.csv`, `config.yaml`{quality}

{use_student(cfg, pair.name, net)}

## Config

```yaml
{OmegaConf.to_yaml(cfg, resolve=True)}```
"""
    state.write_file("README.md", card)


def use_student(cfg: DictConfig, pair: str, net: Path) -> str:
    """How to sample with the student: as the distilled model of the pair it was distilled from (its components and
    base stay), on the command line or in a pair file of its own. A tiny pair builds its networks in memory: none."""
    if cfg.model.get("tiny"):
        return (
            f"`{pair}` is a tiny test pair, whose networks are built in memory: no pair loads this student's "
            "weights (generate refuses a network path on a tiny pair)."
        )
    steps, timesteps = len(cfg.student_timesteps), list(cfg.student_timesteps)
    label = f"{cfg.method} student ({net.parent.name})"
    base_scheduler = OmegaConf.to_container(cfg.model.base.scheduler, resolve=True)
    # the schedule it was trained on: the base's noise schedule (its scheduler config), stepped by LCM
    scheduler = {key: value for key, value in base_scheduler.items() if key in ("repo", "subfolder")}
    scheduler["class"] = "LCMScheduler"
    flow = "{" + ", ".join(f"{k}: {v}" for k, v in scheduler.items()) + "}"
    timesteps_arg = "[" + ",".join(map(str, timesteps)) + "]"
    own = cfg.model.distilled.get("scheduler") or {}  # `+`: a key the pair's distilled scheduler has not
    source = " ".join(
        f"{'' if k in own else '+'}model.distilled.scheduler.{k}={v}" for k, v in scheduler.items() if k != "class"
    )
    # the teacher as distill was given it (another base, local components): without these, generate would pair the
    # student with the base of the pair's config file
    teacher = pair_overrides(cfg.model, skip="distilled")
    given = "".join(f"{shlex.quote(item)} " for item in teacher)
    stays = (
        "with the base and components it was distilled from, as distill was given them"
        if teacher
        else "its base and components stay"
    )
    changed = f" and the settings above ({', '.join(teacher)})" if teacher else ""
    return f"""Use it as the distilled model of `{pair}` ({stays}), on the command line:

```bash
diversity-cli generate model={pair} {given}model.distilled.network.path={net} 'model.distilled.label="{label}"' \\
  model.distilled.scheduler.class=LCMScheduler {source} \\
  model.distilled.steps={steps} model.distilled.timesteps={timesteps_arg} model.distilled.guidance=0
```

or in a pair file of its own: a copy of `conf/model/{pair}.yaml` (another `name:`){changed} with this `distilled:`
section:

```yaml
distilled:
  label: {label}
  network: {{path: {net}}}
  scheduler: {flow}
  steps: {steps}
  timesteps: {timesteps}
  guidance: 0.0
```"""


def _console():
    from rich.console import Console

    return Console(stderr=True)
