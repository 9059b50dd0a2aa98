"""`conf/distill.yaml` and its method group `conf/distill/`: DMD or DP-DMD distillation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from omegaconf import DictConfig, ListConfig

from ..errors import UserError
from ..schema import (
    anything,
    choice,
    device,
    flag,
    integer,
    item_float,
    item_int,
    items,
    number,
    out_dir,
    section,
    show,
    text,
)
from .common import SEED_MAX
from .generate import base_pair_valid


@dataclass
class Lr:
    generator: float = number("AdamW learning rate of the student", 0, low_open=True)
    fake: float = number("AdamW learning rate of the fake score", 0, low_open=True)


@dataclass
class Adam:
    betas: list = items("AdamW betas [b1, b2]", item_float(0, 1, high_open=True), min_items=2, max_items=2)
    weight_decay: float = number("AdamW weight decay", 0)


@dataclass
class TeacherOde:
    steps: int = integer(
        "teacher DDIM steps anchor_k counts (null: the base's own; dp_dmd needs a number: 8 puts anchor_k=2 at t=749)",
        1,
        null=True,
    )
    guidance: float = number("CFG of the teacher's ODE (null: teacher_guidance)", 0, null=True)
    overrides: Any = anything("scheduler config overrides of the teacher's DDIM")


@dataclass
class Gan:
    weight: float = number("the generator's GAN loss weight (0: off; toy pairs only)", 0)
    discriminator_weight: float = number("the discriminator's loss weight in each fake-score update", 0)
    mismatched: bool = flag(
        "real scenes under contradicting captions are negatives too (a matching-aware discriminator)"
    )


def gan_weight(config: Any) -> float:
    """The GAN term's generator weight in a distill config (composed, or as a run recorded it): 0 when it is off or
    absent, as in runs from before the term."""
    return float((config.get("gan") or {}).get("weight") or 0)


@dataclass
class Monitor:
    every: int = integer(
        "toy pairs: the student's fid_toyfeat and adherence every N iterations, where a session starts and at the end"
        " (0: off)",
        0,
    )
    captions: int = integer("toy captions of the monitor's fid_toyfeat (the floor and the base alike)", 2)
    per_prompt: int = integer("samples of each protocol prompt for the monitor's adherence", 2)


def free_groups_typed(cfg: DictConfig, root: DictConfig) -> None:
    """The keys the schema leaves open: `prompts` is a file or a list of prompts, the teacher ODE's `overrides` a
    group of scheduler settings (a number in either failed deep in loading)."""
    prompts = cfg.get("prompts")
    if prompts is not None and not isinstance(prompts, (str, ListConfig)):
        raise UserError(f"prompts={show(prompts)}: prompts is a .txt / .csv file or a list ([a red circle,a dog])")
    ode = cfg.get("teacher_ode")
    overrides = ode.get("overrides") if isinstance(ode, DictConfig) else None
    if overrides is not None and not isinstance(overrides, DictConfig):
        raise UserError(
            f"teacher_ode.overrides={show(overrides)}: teacher_ode.overrides is a group of scheduler settings "
            "(teacher_ode.overrides.timestep_spacing=trailing)"
        )


@dataclass
class DistillConfig:
    checks: ClassVar[tuple] = (base_pair_valid, free_groups_typed)

    model: Any = anything("the pair whose base model is the teacher (conf/model/<name>.yaml)")
    method: str = choice("distill=dmd or distill=dp_dmd (the group sets it)", ("dmd", "dp_dmd"))
    out: str = out_dir("run directory: checkpoints/, log.csv, student/, README.md; quality.csv, .png when monitored")
    prompt: str = text("one training prompt, taken literally")
    prompts: Any = anything("... or a .txt / .csv file of them, or a YAML list")
    seed: int = integer("training seed", 0, SEED_MAX)
    iterations: int = integer("generator updates", 1)
    batch_size: int = integer("prompts per update", 1)
    lr: Lr = section(Lr, "learning rates")
    adam: Adam = section(Adam, "AdamW settings")
    max_grad_norm: float = number("gradient clip (0: off)", 0)
    fake_updates_per_generator_update: int = integer("fake-score updates per student update", 1)
    student_timesteps: list = items("the student's schedule, noisiest first", item_int(0, 999), min_items=1)
    teacher_guidance: float = number("CFG of the teacher's score (null: the base's own)", 0, null=True)
    t_range: list = items("DMD noise levels [low, high] as fractions of T", item_float(0, 1), min_items=2, max_items=2)
    checkpoint_every: int = integer("updates between checkpoints", 1)
    keep_checkpoints: int = integer("newest sealed checkpoints kept", 1)
    resume: bool = flag("continue from the newest checkpoint in out")
    overwrite: bool = flag("replace a distill run in out made with other settings")
    device: str = device()
    mixed_precision: str = choice(
        "accelerate's mixed precision (null: accelerate launch's)", ("no", "fp16", "bf16"), True
    )
    gradient_checkpointing: bool = flag("trade compute for memory")
    save_dtype: str = choice("dtype of student/ (null: the model's)", ("float32", "float16", "bfloat16"), True)
    gan: Gan = section(Gan, "DMD2's GAN term: a classifier head on the fake score tells real scenes from samples")
    monitor: Monitor = section(Monitor, "the student's quality during training (quality.csv, quality.png)")
    # distill=dp_dmd only
    anchor_k: int = integer("dp_dmd: teacher ODE steps before its x0 is the first step's target", 1)
    lambda_div: float = number("dp_dmd: weight of the first-step loss", 0)
    stop_gradient: bool = flag("dp_dmd: DMD gradients stop at the first step")
    teacher_ode: TeacherOde = section(TeacherOde, "dp_dmd: the teacher's deterministic sampler")
