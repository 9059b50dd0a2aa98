"""Load a flow-matching pair (FLUX, SD3, Qwen-Image): tiny offline ones, or real checkpoints from the hub cache.

A distilled model given as a LoRA (`distilled.network.lora: true`) is the base network plus that adapter: one
network in memory, toggled per role (models/adapter_pair.py). The scheduler factory and the guarded hub read are
the general loader's, and so is the plan of hub reads (passed in, so this module does not import it back).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from omegaconf import DictConfig

from ..core.errors import UserError
from ..core.pair_settings import micro_batch_of
from .adapter_pair import ADAPTER, load_lora
from .flow import MAX_SEQUENCE_LENGTH, FlowPair
from .flow_tiny import FLOW_FAMILIES
from .hub import is_lora
from .pair import ModelSpec, stand_ins, stood_in
from .preflight import Setting, copy_folder

TRANSFORMER_CLASS = {
    "flux": "FluxTransformer2DModel",
    "sd3": "SD3Transformer2DModel",
    "qwen": "QwenImageTransformer2DModel",
    "flux2": "Flux2Transformer2DModel",
}


def load_flow_pair(
    model: DictConfig,
    device: torch.device,
    dtype: torch.dtype,
    roles: tuple[str, ...],
    make_scheduler: Callable,
    guarded_load: Callable,
    hub_calls: Callable,
) -> FlowPair:
    """The models of `roles` once (the loader's `load_pair`: a role left out is stood in for and not read),
    sharing VAE and text encoders; a LoRA-distilled model shares the base network too."""
    family = model.family
    if family not in FLOW_FAMILIES:
        raise UserError(f"model '{model.name}' has unknown family '{family}'; use {', '.join(FLOW_FAMILIES)}")
    for role in ("base", "distilled"):
        if model[role].get("timesteps"):
            raise UserError(f"model '{model.name}': flow models take steps, not explicit timesteps ({role})")
        if model[role].get("resolution"):
            raise UserError(f"model '{model.name}': a separate {role} resolution is not supported for flow pairs")
    schedulers = {role: make_scheduler(model[role].scheduler, role, bool(model.get("tiny"))) for role in roles}
    for role, sched in schedulers.items():
        if not hasattr(sched, "scale_noise"):
            raise UserError(
                f"model '{model.name}': the {role} scheduler {type(sched).__name__} is not a flow-matching "
                "scheduler; use FlowMatchEulerDiscreteScheduler"
            )
    if model.get("tiny"):
        pipe, networks = _tiny(model, schedulers[roles[0]], roles)
    else:
        pipe, networks = _real(model, dtype, roles, guarded_load, hub_calls(model, roles))
    pipe.to(device)
    specs = {}
    for role in roles:
        conf = model[role]
        network = networks[role].to(device)
        if network.dtype != dtype:
            network = network.to(dtype)
        network.eval()
        adapter = ADAPTER if role == "distilled" and is_lora(model, "distilled") else None
        specs[role] = ModelSpec(
            role, conf.label, network, schedulers[role], int(conf.steps), float(conf.guidance), adapter=adapter
        )
    specs = stand_ins(model, specs)
    height, width = _size(model.resolution)
    pair = FlowPair(
        model.name,
        family,
        pipe,
        specs["base"],
        specs["distilled"],
        height,
        width,
        device,
        dtype,
        preset=model.get("preset"),
        skip_first_noise=model.get("skip_first_noise", "scaled"),
        micro_batch=micro_batch_of(model),
        max_sequence_length=int(model.get("max_sequence_length") or MAX_SEQUENCE_LENGTH[family]),
        loaded=roles,
    )
    for spec in (pair.base, pair.distilled):  # the pipeline's sigmas and mu at this resolution
        spec.schedule_args = pair.schedule_args(spec)
    return pair


def _size(resolution: Any) -> tuple[int, int]:
    if isinstance(resolution, int):
        return resolution, resolution
    height, width = resolution
    return int(height), int(width)


def _tiny(model: DictConfig, scheduler, roles: tuple[str, ...]):
    from . import flow_tiny

    family = model.family
    components = flow_tiny.build_shared_components(family, seed=int(model.base.seed))

    def network(role: str) -> torch.nn.Module:
        return flow_tiny.build_network(family, int(model[role].seed), bool(model[role].get("guidance_embeds", False)))

    lora = is_lora(model, "distilled") and "distilled" in roles
    networks = {role: network(role) for role in (("base",) if lora else roles)}
    if lora:
        conf = model.distilled.lora
        flow_tiny.random_lora(networks["base"], ADAPTER, seed=int(conf.seed), rank=int(conf.get("rank", 4)))
    networks = stood_in(networks)  # one network where one role is read, or the LoRA toggled per role
    pipe = flow_tiny.pipeline_class(family)(**components, transformer=networks[roles[0]], scheduler=scheduler)
    return pipe, networks


def _real(model: DictConfig, dtype: torch.dtype, roles: tuple[str, ...], guarded_load: Callable, calls: list):
    """Real checkpoints, reading exactly `calls` (the loader's `hub_calls` plan)."""
    import diffusers
    from diffusers import DiffusionPipeline

    cls = getattr(diffusers, TRANSFORMER_CLASS[model.family])

    def network(role: str) -> torch.nn.Module:
        path = model[role].network.get("path")  # a local folder: no hub read (`hub_calls` lists none)
        found = [c for c in calls if c.role == role and c.kind == "network"]
        repo, kwargs = (path, {}) if path else (found[0].repo, {"subfolder": found[0].subfolder})
        kwargs["torch_dtype"] = dtype
        if not path and found[0].variant:
            kwargs["variant"] = found[0].variant
        return guarded_load(
            lambda local: cls.from_pretrained(repo, local_files_only=local, **kwargs),
            repo,
            Setting(model, f"model.{role}.network.path"),  # `+key` where the pair's file has none
            copy=copy_folder(found[0]) if found else "/path/to/local/copy",
        )

    lora = is_lora(model, "distilled") and "distilled" in roles
    networks = {role: network(role) for role in (("base",) if lora else roles)}
    kwargs: dict[str, Any] = {"transformer": networks[roles[0]], "torch_dtype": dtype}
    source = model.components.get("path")
    if not source:
        (components,) = [c for c in calls if c.kind == "pipeline"]
        source = components.repo
        if components.variant:
            kwargs["variant"] = components.variant
    pipe = guarded_load(
        lambda local: DiffusionPipeline.from_pretrained(source, local_files_only=local, **kwargs),
        source,
        Setting(model, "model.components.path"),
    )
    if lora:
        (call,) = [c for c in calls if c.role == "distilled" and c.kind == "weights"]
        hint = Setting(model, "model.distilled.network.repo")  # a folder holding the file
        guarded_load(lambda local: load_lora(pipe, call.repo, call.file, local), call.repo, hint, call.file)
    return pipe, stood_in(networks)
