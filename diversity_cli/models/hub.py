"""Every hub read a pair's loader makes, derived from its config alone: no torch, no diffusers, no network.

The loader (`loading.py`) executes exactly these reads, the preflight (`preflight.py`) checks them on the local
disk before any work, and `tests/test_manifest.py` checks them against recorded repository listings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig


@dataclass(frozen=True)
class HubCall:
    """One hub read the loader makes: what it loads, for which role, from where.

    kind: "pipeline" (DiffusionPipeline.from_pretrained: model_index.json and the shared components),
    "network" (UNet/Transformer from_pretrained: config.json + weights), "network_config" (load_config of the
    architecture a bare weights file is loaded into), "weights" (hf_hub_download of one file),
    "scheduler_config" (a scheduler's load_config).
    """

    kind: str
    role: str  # "components", "base" or "distilled"
    repo: str
    subfolder: str | None = None
    variant: str | None = None
    file: str | None = None


def local_folder(repo: object) -> Path | None:
    """A `repo` that names a folder on this machine rather than a hub id (`/models/sdxl`, `./copy`, `~/x`): the
    loaders read it as it is (diffusers takes a folder wherever it takes a repo id), the preflight checks its
    files on disk. Written as a hub id (`org/name`), it stays one even where the working directory happens to
    hold such a folder: a local copy starts with `/`, `.` or `~`."""
    text = str(repo or "")
    if not text.startswith(("/", ".", "~")):
        return None
    return Path(text).expanduser()


ROLES = ("base", "distilled")


def variant_present(folder: Any, variant: Any) -> dict[str, str]:
    """`variant` for a local folder's from_pretrained where the folder holds files of it (`*.fp16.safetensors`), as
    the hub copy is read; a copy saved without variants loads its plain files (diffusers would refuse them)."""
    root = Path(str(folder)).expanduser()
    if not variant or not root.is_dir():
        return {}
    return {"variant": str(variant)} if any(f".{variant}." in p.name for p in root.rglob("*") if p.is_file()) else {}


def is_lora(model: DictConfig, role: str) -> bool:
    """Whether `role` of a pair config is a LoRA on the base network (`network.lora: true` on a real pair,
    a `lora:` block on a tiny one)."""
    return bool(model[role].get("network", {}).get("lora") or model[role].get("lora"))


def method_roles(model: DictConfig, method: str) -> tuple[str, ...]:
    """The networks `method` samples with, which are all its command loads: the base alone for method=base, the
    student alone for distilled and skip_first (unless it is a LoRA on the base network, which is then needed
    too), both for the hybrids. A distilled run reads no base checkpoint (FLUX.1-schnell needs no gated
    FLUX.1-dev), a base run no student."""
    if method == "base":
        return ("base",)
    if method in ("distilled", "skip_first") and not is_lora(model, "distilled"):
        return ("distilled",)
    return ROLES


def methods_roles(model: DictConfig, methods: Iterable[str]) -> tuple[str, ...]:
    """The networks a command sampling with each of `methods` reads (x0viz's traces): every one any of them needs."""
    needed = {role for method in methods for role in network_roles(model, method_roles(model, str(method)))}
    return tuple(role for role in ROLES if role in needed)


def network_roles(model: DictConfig, roles: tuple[str, ...]) -> tuple[str, ...]:
    """The networks to read for `roles`: a LoRA student is read into the base network, so it needs the base's."""
    if "distilled" in roles and is_lora(model, "distilled"):
        return ROLES
    return tuple(role for role in ROLES if role in roles)


def hub_calls(model: DictConfig, roles: tuple[str, ...] = ROLES) -> list[HubCall]:
    """Every hub read `load_pair` makes for this model config loaded for `roles`, in order; local `path:` entries
    and tiny pairs read nothing from the hub. The loader executes exactly these calls, so checking them checks
    the loader."""
    if model.get("tiny"):
        return []
    calls: list[HubCall] = []
    roles = network_roles(model, roles)
    for role in roles:
        calls += _network_calls(model, role)
    shared = model.components
    if not shared.get("path"):
        calls.append(HubCall("pipeline", "components", shared.repo, variant=shared.get("variant")))
    for role in roles:  # a role not loaded is not sampled: its scheduler is not read either
        call = _scheduler_call(model[role].scheduler, role)
        if call is not None:
            calls.append(call)
    return calls


def _network_calls(model: DictConfig, role: str) -> list[HubCall]:
    conf = model[role].network
    if conf.get("path"):
        return []
    if conf.get("lora"):  # a LoRA file loaded into the base network (adapter-distilled pairs): one file read
        return [HubCall("weights", role, conf.repo, file=conf.file)]
    if not conf.get("file"):
        return [HubCall("network", role, conf.repo, conf.get("subfolder"), conf.get("variant"))]
    return [
        HubCall("network_config", role, conf.config_repo, conf.get("config_subfolder")),
        HubCall("weights", role, conf.repo, file=conf.file),
    ]


def _scheduler_call(conf: DictConfig, role: str) -> HubCall | None:
    if not conf.get("repo"):
        return None
    return HubCall("scheduler_config", role, conf.repo, subfolder=conf.get("subfolder", "scheduler"))
