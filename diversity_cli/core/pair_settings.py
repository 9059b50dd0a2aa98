"""A pair's settings checked when a config is composed (conf/model/<name>.yaml): `micro_batch`, kept out of the
fingerprints it does not change (it moves the last bits of every image, so images are keyed by it; training never
samples through it), each role's steps, guidance and explicit timesteps, and the keys every load of a pair reads."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from itertools import pairwise
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import UserError, did_you_mean, first_line
from .schema import check, integer, number, refuse_unknown_keys, show

MICRO_BATCH = "micro_batch"
MAX_MICRO_BATCH = 1024
# A DDPM-family training schedule's length, unless a pair's scheduler overrides say otherwise.
TRAIN_TIMESTEPS = 1000


def micro_batch_of(model: Any) -> int:
    """The pair's samples per network call: a whole number >= 1 (1 when the config does not say)."""
    value = model.get(MICRO_BATCH, 1) if hasattr(model, "get") else 1
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_MICRO_BATCH:
        # every call has exactly this many rows (fillers included), so a huge value allocates a huge call
        raise UserError(
            f"model.micro_batch={value}: samples per network call must be a whole number from 1 to {MAX_MICRO_BATCH}"
        )
    if value > 1 and model.get("family") == "qwen":
        # Qwen-Image pads a call's prompts to the longest among them: a sample would depend on its neighbours.
        raise UserError(f"model.micro_batch={value}: Qwen-Image pairs run one sample per call; use 1")
    return value


@dataclass
class _Role:
    steps: int = integer("sampling steps of the role", 1)
    guidance: float = number("the role's CFG scale", 0)


MAX_SIDE = 4096
DTYPE_NAMES = ("float32", "float16", "bfloat16")  # the torch dtypes a pair may load in (models/loading.py)
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # a pair's name names folders of a run directory
# Families sampled through a diffusers DDPM-family scheduler named by the pair (flow families take theirs from
# the components' pipeline).
SCHEDULED_FAMILIES = ("sd", "sdxl", "pixart")
FLOW_FAMILIES = ("flux", "sd3", "qwen", "flux2")  # flow-matching pairs (models/flow_loading.py)
FAMILIES = SCHEDULED_FAMILIES + FLOW_FAMILIES
# skip_first's start noise (sampling/plan.py says what each is); flow pairs default to "scaled", the others to "unit"
SKIP_NOISE = ("unit", "scaled")
# Every key a pair config may hold (conf/model/*.yaml with its preset), and those of its roles and their groups.
# A key outside them is read by nothing: a misspelt `+model.skip_frist_noise=scaled` or a typo in one's own pair
# file would change nothing and say nothing. A scheduler's `overrides` go to diffusers, which checks them.
PAIR_KEYS = (
    "name",
    "family",
    "components",
    "base",
    "distilled",
    "resolution",
    "dtype",
    "micro_batch",
    "tiny",
    "skip_first_noise",
    "max_sequence_length",
    "default_prompt",
    "default_metric",
    "default_reference",
    "default_quality",
    "auto_k",
    "hybrid_note",  # said by generate when a hybrid runs with one base step (base_steps=null), where that fails
    "preset",
    "requested_preset",
)
ROLE_KEYS = (
    "label",
    "network",
    "scheduler",
    "steps",
    "guidance",
    "timesteps",
    "resolution",
    "seed",
    "lora",
    "guidance_embeds",
)
GROUP_KEYS = {
    "components": ("path", "repo", "variant"),
    "network": ("path", "repo", "subfolder", "variant", "file", "config_repo", "config_subfolder", "lora"),
    "scheduler": ("class", "repo", "subfolder", "overrides"),
    "lora": ("rank", "seed"),  # a tiny pair's student adapter, made offline
}
PAIR_READS = "no part of a pair reads it"  # why a key outside them is refused


def pair_reads(key: str) -> bool:
    """Whether some part of a pair reads `key` (`model.base.network.path`): one outside PAIR_KEYS, ROLE_KEYS and
    GROUP_KEYS is refused by check_pair_shape, so it is no key to add with `+`. A scheduler's `overrides` are
    diffusers' to check."""
    parts = key.removeprefix("model.").split(".")
    if len(parts) == 1:
        return parts[0] in PAIR_KEYS
    if parts[0] == "components":
        return len(parts) == 2 and parts[1] in GROUP_KEYS["components"]
    if parts[0] not in ("base", "distilled") or parts[1] not in ROLE_KEYS:
        return False
    if len(parts) == 2 or (parts[1] == "scheduler" and parts[2:3] == ["overrides"]):
        return True
    return len(parts) == 3 and parts[2] in GROUP_KEYS.get(parts[1], ())


def check_pair_shape(model: Any, student_read: bool = True) -> None:
    """What every load of a pair reads: its interpolations resolve, it holds only keys a loader reads, its family,
    skip_first noise, preset and dtype are ones the loaders know, its resolution is a size, each role names its
    weights (unless the pair is tiny; the student's only where it is read: training a first student does not) and,
    for a DDPM-family pair, its scheduler by class name. A removed (~) or nulled key, or a `${...}` that resolves to
    nothing, is one line here instead of a traceback once loading has begun."""
    if not isinstance(model, DictConfig):
        return
    try:
        OmegaConf.to_container(model, resolve=True)
    except OmegaConfBaseException as err:
        raise UserError(f"{getattr(err, 'full_key', None) or 'model'}: {first_line(err)}") from None
    name = model.get("name")
    if not (isinstance(name, str) and NAME.fullmatch(name)):
        raise UserError(
            f"model.name={show(name)}: model.name is text naming the run directory's folders: letters, digits, _ - . "
            "(not starting with . or -; a number in quotes, model.name='2024')"
        )
    refuse_unknown_keys(model, PAIR_KEYS, "model", PAIR_READS)
    if model.get("family") not in FAMILIES:
        raise UserError(f"model.family={show(model.get('family'))}: model.family is one of {', '.join(FAMILIES)}")
    if "skip_first_noise" in model and model.skip_first_noise not in SKIP_NOISE:
        raise UserError(
            f"model.skip_first_noise={show(model.skip_first_noise)}: model.skip_first_noise is one of "
            f"{', '.join(SKIP_NOISE)}"
        )
    check_preset(model)
    _check_family_keys(model)
    if "dtype" not in model:
        raise UserError(f"model.dtype is missing: a pair loads in one of {', '.join(DTYPE_NAMES)}")
    if model.dtype not in DTYPE_NAMES:
        raise UserError(f"model.dtype={show(model.dtype)}: model.dtype is one of {', '.join(DTYPE_NAMES)}")
    if "resolution" not in model:
        raise UserError("model.resolution is missing: a pair samples at a size (model.resolution=<pixels>)")
    _check_size(model.resolution, "model.resolution")
    if isinstance(model.get("components"), DictConfig):
        refuse_unknown_keys(model.components, GROUP_KEYS["components"], "model.components", PAIR_READS)
    if not model.get("tiny"):
        _check_weights(model.get("components"), "model.components")
    for role in ("base", "distilled"):
        _check_role(model, role, weights=role == "base" or student_read)


def _check_family_keys(model: DictConfig) -> None:
    """Keys only some pairs read, refused where nothing would read them."""
    if "max_sequence_length" in model and model.family not in FLOW_FAMILIES:
        raise UserError(
            f"model.max_sequence_length: only flow-matching pairs ({', '.join(FLOW_FAMILIES)}) read it; a "
            f"{model.family} pair's text encoders have their own length"
        )
    for role in ("base", "distilled"):
        conf = model.get(role)
        if not isinstance(conf, DictConfig):
            continue  # check_sampling_numbers says what a role is
        if model.get("tiny") and conf.get("network") is not None:
            raise UserError(
                f"model.{role}.network: a tiny pair builds its networks in memory from model.{role}.seed, so no "
                "weights are read from there; a network of your own goes in a pair that loads weights (model=toy, "
                "a copy of conf/model/<pair>.yaml)"
            )
        if "guidance_embeds" in conf and not (model.get("tiny") and model.family == "flux"):
            raise UserError(
                f"model.{role}.guidance_embeds: only a tiny FLUX pair reads it (to build its network); a real "
                "network's config says whether it embeds guidance"
            )
    base_network = model.base.get("network") if isinstance(model.get("base"), DictConfig) else None
    if isinstance(base_network, DictConfig) and "lora" in base_network:
        raise UserError("model.base.network.lora: only the distilled model can be a LoRA on the base network")


def check_preset(model: DictConfig) -> None:
    """`preset=card` on a pair without preset files would silently change nothing; say so instead."""
    requested = model.get("requested_preset")
    if requested and model.get("preset") != requested:
        raise UserError(
            f"model '{model.name}' has no preset '{requested}' (only the real pairs have presets, under "
            f"conf/pair_preset/<pair>/); leave preset at its default or set the model's keys directly"
        )


def _check_role(model: DictConfig, role: str, weights: bool) -> None:
    conf = model[role]
    refuse_unknown_keys(conf, ROLE_KEYS, f"model.{role}", PAIR_READS)
    for group in ("network", "scheduler", "lora"):
        if isinstance(conf.get(group), DictConfig):
            refuse_unknown_keys(conf[group], GROUP_KEYS[group], f"model.{role}.{group}", PAIR_READS)
    lora = conf.get("lora")
    if not (lora is None or isinstance(lora, (bool, DictConfig))):
        raise UserError(f"model.{role}.lora={show(lora)}: model.{role}.lora is true, false or a group (rank, seed)")
    overrides = conf.scheduler.get("overrides") if isinstance(conf.get("scheduler"), DictConfig) else None
    if not (overrides is None or isinstance(overrides, DictConfig)):
        raise UserError(
            f"model.{role}.scheduler.overrides={show(overrides)}: model.{role}.scheduler.overrides is a group of "
            "the scheduler's settings (model.base.scheduler.overrides.timestep_spacing=trailing)"
        )
    label = conf.get("label")
    if label is not None and not (isinstance(label, str) and label.strip()):  # it names the role in every table
        raise UserError(f"model.{role}.label={show(label)}: model.{role}.label is one piece of text naming the model")
    if conf.get("resolution") is not None:
        _check_size(conf.resolution, f"model.{role}.resolution")
    if weights and not model.get("tiny"):
        _check_weights(conf.get("network"), f"model.{role}.network")
    scheduler = conf.get("scheduler")
    if model.get("family") in SCHEDULED_FAMILIES and not (isinstance(scheduler, DictConfig) and scheduler.get("class")):
        raise UserError(
            f"model.{role}.scheduler names no class: give model.{role}.scheduler.class=<a diffusers scheduler>"
        )
    named = scheduler.get("class") if isinstance(scheduler, DictConfig) else None
    if named is not None and not (isinstance(named, str) and named.isidentifier()):
        # whether diffusers has it is known only once diffusers is imported, when the pair loads
        raise UserError(
            f"model.{role}.scheduler.class={show(named)}: model.{role}.scheduler.class is the name of a diffusers "
            "scheduler class (EulerDiscreteScheduler, LCMScheduler, ...)"
        )
    if named and overrides:
        _check_override_names(named, overrides, f"model.{role}.scheduler.overrides")


def _check_override_names(class_name: str, overrides: DictConfig, where: str) -> None:
    """A setting the scheduler class does not take, found from its signature before anything is read (a kept
    run's settings check came first and called the misspelt key "different settings"). Only where overrides are
    given: it imports diffusers."""
    import diffusers

    cls = getattr(diffusers, class_name, None)
    if cls is None:  # an unknown class: one line where the pair loads
        return
    for name in overrides:
        unknown_scheduler_setting(cls, str(name), where)


def unknown_scheduler_setting(cls: type, name: str, where: str) -> None:
    """One line where `cls` takes no setting `name` (diffusers' from_config would drop it with a warning)."""
    import inspect

    takes = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "kwargs")]
    if name not in takes:
        hint = did_you_mean(name, takes, where)
        raise UserError(f"{where}.{name}: {cls.__name__} takes no such setting (diffusers would drop it){hint}")


def _check_size(value: Any, where: str) -> None:
    sides = list(value) if isinstance(value, ListConfig) else [value, value]
    if len(sides) == 2 and all(_side(side) for side in sides):
        return
    raise UserError(
        f"{where}={show(value)}: {where} is a whole number of pixels (a multiple of 8, from 8 to {MAX_SIDE}) "
        "or [height,width] of two such"
    )


def _side(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 8 <= value <= MAX_SIDE and value % 8 == 0


def _check_weights(conf: Any, where: str) -> None:
    if not (isinstance(conf, DictConfig) and (conf.get("repo") or conf.get("path"))):
        raise UserError(f"{where} names no weights: give {where}.path=<a local folder> or {where}.repo=<a hub id>")


def check_sampling_numbers(model: Any) -> None:
    """Each role's `steps` (a whole number >= 1) and `guidance` (a finite number >= 0), by the config schema's own
    rules: checked when the config is composed, so a mistyped, removed or null override is one line before any
    network loads."""
    if not hasattr(model, "get"):
        return
    for role in ("base", "distilled"):
        conf, where = model.get(role), f"model.{role}"
        if not isinstance(conf, DictConfig):
            raise UserError(f"{where}={show(conf)}: a pair's {role} is a group (network, scheduler, steps, ...)")
        check(_Role, conf, prefix=f"{where}.")
        for item in fields(_Role):  # check() passes over a key the config leaves out; every pair's role sets both
            if item.name not in conf:
                raise UserError(f"{where}.{item.name} is missing: a pair's {role} needs steps and guidance")
        _check_timesteps(conf, where)


def _check_timesteps(conf: DictConfig, where: str) -> None:
    """A role's explicit `timesteps`: null, or whole numbers strictly descending within the training schedule, as
    many as its `steps` (labels and records read `steps`; a schedule of another length would be mislabelled)."""
    timesteps = conf.get("timesteps")
    if timesteps is None:
        return
    scheduler = conf.get("scheduler")  # its shape is checked with the rest of the pair (check_pair_shape)
    overrides = scheduler.get("overrides") if isinstance(scheduler, DictConfig) else None
    count = overrides.get("num_train_timesteps") if isinstance(overrides, DictConfig) else None
    count = count if isinstance(count, int) and not isinstance(count, bool) else TRAIN_TIMESTEPS
    values = list(timesteps) if isinstance(timesteps, ListConfig) else None
    whole = values and all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < count for t in values)
    if not whole or any(a <= b for a, b in pairwise(values)):
        raise UserError(
            f"{where}.timesteps={show(timesteps)}: {where}.timesteps is null or whole numbers in 0..{count - 1}, "
            f"strictly descending ([999,749,499,249])"
        )
    if len(values) != conf.steps:
        raise UserError(
            f"{where}.timesteps has {len(values)} timesteps but {where}.steps={conf.steps}; "
            f"give {where}.steps={len(values)} too, or {where}.timesteps=null"
        )


NOTE_KEYS = ("hybrid_note",)  # words a command says about the pair: they change no image and no training


def image_settings(model: dict[str, Any]) -> dict[str, Any]:
    """The pair's settings as images are keyed by them: micro_batch 1 (one sample per call, how every image was
    made before a pair could say) is the same as no key, so older run directories still resume."""
    said = {key: value for key, value in model.items() if key not in NOTE_KEYS}
    if said.get(MICRO_BATCH) == 1:
        return {key: value for key, value in said.items() if key != MICRO_BATCH}
    return said


def training_settings(model: dict[str, Any]) -> dict[str, Any]:
    """The pair's settings as a training is keyed by them: without micro_batch, which no training step uses."""
    return {key: value for key, value in model.items() if key not in (MICRO_BATCH, *NOTE_KEYS)}
