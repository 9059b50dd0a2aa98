"""Before any work, for every command: the pair's defaults filled in (`metric=auto`, `reference=auto`, no
prompt), then every network and reference it will read checked on the local disk, all missing ones in one line."""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from ..core.console import stderr_console
from ..core.marker import MARKER, check_new_run_folder
from ..core.prompts import command_limits, read_prompts
from ..core.resources import shipped_config
from ..experiments.defaults import apply_defaults
from ..experiments.launch import (
    check_shard_options,
    check_worker_devices,
    launcher_params,
    launcher_settings,
    parse_devices,
)
from ..metrics.preflight import (
    check_features,
    check_reference,
    clip_missing,
    diversity_missing,
    fid_features,
    fid_missing,
)
from ..models.hub import ROLES, method_roles, methods_roles
from ..models.preflight import Missing, fail_if_missing, pair_missing

PAIR_COMMANDS = {"generate", "x0viz", "ablate", "transfer-lora", "train-lora", "distill"}
RUN_MAKERS = PAIR_COMMANDS | {"train-toy"}  # out= is the run directory they make
BASE_ONLY = {"distill", "train-lora"}  # they train on the base model: the pair's student is not read


def _metrics(value: object) -> list[str]:
    items = list(value) if isinstance(value, (list, tuple, ListConfig)) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def _point_quality(command: str, cfg: DictConfig) -> list[str]:
    """ablate: the quality its points measure beside diversity (`diversity`'s own joins its metric in
    apply_defaults)."""
    if command != "ablate":
        return []
    quality = str(cfg.measure.diversity.get("quality", "none"))
    quality = str(cfg.model.get("default_quality") or "none") if quality == "auto" else quality
    return [] if quality == "none" else [quality]


def needed(command: str, cfg: DictConfig) -> list[Missing]:
    """Everything `command` with this config will load that is not on this machine."""
    missing: list[Missing] = []
    model = cfg.get("model")
    if command in PAIR_COMMANDS and isinstance(model, DictConfig):
        missing += pair_missing(model, loaded_roles(command, cfg))
    if command in ("diversity", "x0viz", "ablate"):
        # where each command takes the embedders' options; x0viz takes none: it measures with the shipped ones
        source, key = {
            "ablate": (cfg.get("measure", {}).get("diversity"), "measure.diversity.embedders"),
            "x0viz": (shipped_embedders(), None),
        }.get(command, (cfg, "embedders"))
        missing += diversity_missing(_metrics(cfg.metric) + _point_quality(command, cfg), source, key)
    if command == "generate" and str(cfg.get("k")) == "auto":
        missing += diversity_missing(_metrics(cfg.auto_k.metric), shipped_embedders(), None)
    if command == "fid":
        missing += fid_missing(cfg)
    if command == "transfer-lora":  # the CLIP score toward the concept (none on the toy pair)
        from ..experiments.transfer import clip_model

        missing += clip_missing(clip_model(cfg))
    if command == "ablate" and cfg.get("fid"):
        missing += fid_missing(cfg.measure.fid, "measure.fid.")
    return list(dict.fromkeys(missing))


# pair keys that say where a network's or the components' files are: `models <pair>` reads the pair's file's
FILE_KEYS = (".path", ".repo", ".file", ".subfolder", ".config_repo", ".config_subfolder", ".variant")


def _pair_listing(command: str, cfg: DictConfig) -> str:
    """The command that lists a pair's missing files one a line (the error that names them all is one long line),
    at the preset asked for; none where a setting typed moves its files (a local copy), which `models` takes not."""
    from ..core.config import pair_overrides

    model = cfg.get("model")
    if command not in PAIR_COMMANDS or not isinstance(model, DictConfig) or not pair_missing(model):
        return ""
    typed = pair_overrides(model)
    keys = [item.lstrip("+~").partition("=")[0] for item in typed if not item.startswith("preset=")]
    if any(key.endswith(FILE_KEYS) or key == "model.components" for key in keys):  # files of elsewhere
        return ""
    return " ".join([f"diversity-cli models {model.get('name')}", *(i for i in typed if i.startswith("preset="))])


def shipped_embedders() -> dict:
    """conf/diversity.yaml's embedder settings: those x0viz and k=auto measure with (the embedders' own defaults)."""
    return {"embedders": OmegaConf.to_container(shipped_config("diversity").embedders)}


def _run_exists(cfg: DictConfig) -> bool:
    """`out` is a run directory already (it may be complete: nothing to load)."""
    return cfg.get("out") is not None and (Path(str(cfg.out)) / MARKER).exists()


def gpus_present(cfg: DictConfig) -> None:
    """The GPUs `device=` and `devices=` name are on this machine, checked before a new run directory is written.
    Not for an existing one, which may be complete (rerun anywhere to merge or summarise: the launch checks
    `devices=` once it knows shards have work left, the loaders `device=`), nor for a SLURM launch, whose GPUs are
    on its nodes. torch is imported only when a GPU is named."""
    launcher_params(cfg)  # its shape, whatever the launcher
    if _run_exists(cfg):
        return
    launcher = str(cfg.get("launcher", "local"))
    # the plugin's own SLURM launcher, which ablate's multirun takes by name (generate's launchers have a file)
    if launcher == "submitit_slurm" or (launcher != "local" and launcher_settings(cfg)[0] != "local"):
        return
    if isinstance(cfg.get("device"), str) and cfg.device.startswith(("cuda", "mps")):
        from ..core.device import check_device

        check_device(cfg.device)
    check_worker_devices(parse_devices(cfg.get("devices")))


def loaded_roles(command: str, cfg: DictConfig) -> tuple[str, ...]:
    """The networks `command` loads: distill and train-lora train on the base alone, generate loads those its
    method samples with (`load_generation_pair`), x0viz those of its methods, the rest both."""
    if command in BASE_ONLY:
        return ("base",)
    if command == "generate":
        return method_roles(cfg.model, str(cfg.get("method")))
    if command == "x0viz" and cfg.get("methods"):
        return methods_roles(cfg.model, [str(method) for method in cfg.methods])
    return ROLES


def schedules_set(model: DictConfig, roles: tuple[str, ...]) -> None:
    """Each role's scheduler made and set to the role's own schedule, as sampling sets it (a flow-matching
    schedule depends on the latent size, known once the pair loads: those are only made)."""
    from ..core.pair_settings import SCHEDULED_FAMILIES
    from ..models.loading import make_schedulers
    from ..models.pair import ModelSpec
    from ..sampling.plan import natural_scheduler

    for role, scheduler in make_schedulers(model, roles).items():
        if model.family in SCHEDULED_FAMILIES:
            conf = model[role]
            timesteps = list(conf.timesteps) if conf.get("timesteps") else None
            steps, guidance = int(conf.steps), float(conf.guidance)
            natural_scheduler(ModelSpec(role, str(conf.get("label")), None, scheduler, steps, guidance, timesteps))


def check_inputs(command: str, cfg: DictConfig) -> None:
    """The user's own files and names that need nothing loaded, checked before the preflight: a prompt file that is
    missing or unreadable, no prompt at all, more images than max_images, and an unknown fid `features=`, would
    otherwise be told only after every missing checkpoint had been fetched."""
    prompts = cfg.get("prompts")
    if command in ("generate", "x0viz"):  # they sample the prompts: one is needed (a pair's default is set by now)
        read_prompts(cfg.get("prompt"), prompts, cfg.get("limit"), **command_limits(cfg))
    elif isinstance(prompts, str) and "prompt" in cfg:  # distill takes a YAML list too, read as it is
        read_prompts(cfg.get("prompt"), prompts)
    if "features" in cfg and "reference" in cfg:
        check_reference(str(cfg.reference))
        check_features(fid_features(cfg))
    if cfg.get("fid") is True and "measure" in cfg:  # ablate's points measured by fid too
        check_reference(str(cfg.measure.fid.reference), "measure.fid.")
        check_features(fid_features(cfg.measure.fid), "measure.fid.")


def prepare(command: str, cfg: DictConfig) -> float:
    """Defaults from the pair, then the preflight: exit 2 naming every missing item or GPU, before anything loads.
    Its seconds, which the summary names when they are many (bad input told after it stays one line)."""
    check_shard_options(cfg)  # a shard= it cannot read, or beside shards=/devices=, is one line before the preflight
    gpus_present(cfg)
    # diversity and fid of an images= folder make their out= as the run makers do: never in a folder of the user's
    makes_out = command in RUN_MAKERS or (command in ("diversity", "fid") and cfg.get("images") is not None)
    if makes_out and cfg.get("out") is not None:
        check_new_run_folder(Path(str(cfg.out)).expanduser())
    started = time.perf_counter()
    apply_defaults(cfg)
    check_inputs(command, cfg)
    missing = needed(command, cfg)
    # the listing only where something is missing: working it out checks the pair's files again
    downloads = fail_if_missing(missing, command, _pair_listing(command, cfg) if missing else "")
    if command in PAIR_COMMANDS and isinstance(cfg.get("model"), DictConfig) and not _run_exists(cfg):
        # a new run directory is made to load the pair: its schedulers cost nothing to make first (diffusers is
        # imported for the load anyway); an existing one may be complete and load nothing, so it is left to the load
        schedules_set(cfg.model, loaded_roles(command, cfg))
    if downloads:
        console = stderr_console()
        for item in downloads:
            console.print(f"[yellow]will download[/] (HF_HUB_OFFLINE=0): {item.what}")
    return time.perf_counter() - started
