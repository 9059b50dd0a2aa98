"""Before any work, for every command: the pair's defaults filled in (`metric=auto`, `reference=auto`, no
prompt), then every network and reference it will read checked on the local disk, all missing ones in one line."""

from __future__ import annotations

import time

from omegaconf import DictConfig, ListConfig

from ..core.console import stderr_console
from ..experiments.defaults import apply_defaults
from ..experiments.launch import parse_devices
from ..metrics.preflight import diversity_missing, fid_missing
from ..models.preflight import Missing, fail_if_missing, pair_missing

PAIR_COMMANDS = {"generate", "x0viz", "ablate", "transfer-lora", "train-lora", "distill"}
BASE_ONLY = {"distill", "train-lora"}  # they train on the base model: the pair's student is not read


def _metrics(value: object) -> list[str]:
    items = list(value) if isinstance(value, (list, tuple, ListConfig)) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def needed(command: str, cfg: DictConfig) -> list[Missing]:
    """Everything `command` with this config will load that is not on this machine."""
    missing: list[Missing] = []
    model = cfg.get("model")
    if command in PAIR_COMMANDS and isinstance(model, DictConfig):
        missing += pair_missing(model, distilled=command not in BASE_ONLY)
    if command in ("diversity", "x0viz", "ablate"):
        source = cfg.measure.diversity if command == "ablate" else cfg
        missing += diversity_missing(_metrics(cfg.metric), source)
    if command == "generate" and str(cfg.get("k")) == "auto":
        missing += diversity_missing(_metrics(cfg.auto_k.metric), {})
    if command == "fid":
        missing += fid_missing(cfg)
    if command == "ablate" and cfg.get("fid"):
        missing += fid_missing(cfg.measure.fid)
    return list(dict.fromkeys(missing))


def gpus_present(cfg: DictConfig) -> None:
    """The GPUs `device=` and `devices=` name are on this machine (a SLURM launch's are on its nodes, not here).
    torch is imported only when a GPU is named: a run that is already complete does not pay for it."""
    if str(cfg.get("launcher", "local")) != "local":
        return
    asked = [(cfg.device, None, "device=cpu or device=auto")] if isinstance(cfg.get("device"), str) else []
    for name in parse_devices(cfg.get("devices")):
        asked.append((name, f"devices= names {name}", "devices=cpu:N (N cpu workers) or devices=all"))
    gpus = [item for item in asked if item[0].startswith(("cuda", "mps"))]
    if gpus:
        from ..core.device import check_device

        for name, words, instead in dict.fromkeys(gpus):
            check_device(name, words, instead)


def prepare(command: str, cfg: DictConfig) -> DictConfig:
    """Defaults from the pair, then the preflight: exit 2 naming every missing item or GPU, before anything loads."""
    gpus_present(cfg)
    started = time.perf_counter()
    apply_defaults(cfg)
    downloads = fail_if_missing(needed(command, cfg), command)
    if downloads:
        console = stderr_console()
        for item in downloads:
            console.print(f"[yellow]will download[/] (HF_HUB_OFFLINE=0): {item.what}")
    elapsed = time.perf_counter() - started
    if elapsed > 2:
        stderr_console().print(f"[yellow]note[/]: the preflight took {elapsed:.1f} s")
    return cfg
