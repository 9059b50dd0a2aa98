"""Load a model pair from its `conf/model/<name>.yaml` entry: real checkpoints or a tiny offline pair.

Real checkpoints come from the Hugging Face cache (`HF_HOME`) or a local directory (`path:`); nothing here
decides to download on its own beyond what `from_pretrained` does. When a checkpoint is missing the user gets
one line naming it and how to point at a local copy.

Weights are read as safetensors or weights-only (`torch.load(weights_only=True)`, forced for the whole process in
diversity_cli/__init__.py, and the default of diffusers and transformers): a weights file that holds a pickle which
would run code is refused, and `refusing_pickles` turns that refusal into one line naming the file.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from ..core.device import resolve_device  # noqa: F401 (the loaders' callers import it from here)
from ..core.errors import UserError, first_line
from ..core.pair_settings import DTYPE_NAMES, TRAIN_TIMESTEPS, check_preset, micro_batch_of
from ..core.weights_only import weights_only_loads
from .adapter_pair import ADAPTER, load_lora
from .flow_loading import load_flow_pair
from .flow_tiny import FLOW_FAMILIES
from .hub import (  # noqa: F401
    ROLES,
    HubCall,
    _network_calls,
    _scheduler_call,
    hub_calls,
    is_lora,
    local_folder,
    network_roles,
    variant_present,
)
from .pair import ModelPair, ModelSpec, stand_ins, stood_in
from .preflight import Setting, copy_folder
from .schedulers import scheduler_with

NETWORK_SLOT = {"sd": "unet", "sdxl": "unet", "pixart": "transformer"}
DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}

# The SD-family training noise schedule, used by the tiny pairs (real pairs read their scheduler configs).
TRAIN_SCHEDULE = {
    "num_train_timesteps": TRAIN_TIMESTEPS,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "steps_offset": 1,
}


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name not in DTYPES:
        raise UserError(f"unknown dtype '{name}'; choose one of: {', '.join(DTYPES)}")
    # Half precision is a GPU setting; on CPU it is slow and some kernels lack it.
    return torch.float32 if device.type == "cpu" else DTYPES[name]


def load_pair(model: DictConfig, device: torch.device, dtype: torch.dtype, roles: tuple[str, ...] = ROLES) -> ModelPair:
    """Load the networks of `roles` once (`hub.method_roles`: those a method samples with); the distilled model
    reuses the base's VAE and text encoders. A role left out is not read, its scheduler neither: the loaded
    network stands in for it (`ModelPair.loaded` says which are real) and sampling with it is refused."""
    _quiet_libraries()
    family = model.family
    roles = network_roles(model, roles)
    if family in FLOW_FAMILIES:  # FLUX, SD3, Qwen-Image: flow-matching pairs (models/flow_loading.py)
        check_preset(model)
        return load_flow_pair(model, device, dtype, roles, _scheduler, guarded_load, hub_calls)
    if family not in NETWORK_SLOT:
        raise UserError(f"model '{model.name}' has unknown family '{family}'; use sd, sdxl or pixart")
    check_preset(model)
    if model.get("tiny"):
        pipe, networks = _tiny(model, roles)
    else:
        pipe, networks = _real(model, dtype, roles)
    check_same_interface(model, networks, pipe, roles)
    pipe.to(device)
    specs = {}
    for role in roles:
        conf = model[role]
        network = networks[role].to(device)
        if network.dtype != dtype:
            network = network.to(dtype)
        network.eval()
        scheduler = _scheduler(conf.scheduler, role, model.get("tiny", False))
        timesteps = list(conf.timesteps) if conf.get("timesteps") else None
        # A LoRA-distilled student (SDXL + DMD2-/LCM-LoRA, Hyper-SD) is the base network with its adapter on.
        adapter = ADAPTER if role == "distilled" and is_lora(model, "distilled") else None
        specs[role] = ModelSpec(
            role, conf.label, network, scheduler, int(conf.steps), float(conf.guidance), timesteps, adapter=adapter
        )
    if len(specs) == 2:
        check_shared_schedule(model.name, specs["base"].scheduler, specs["distilled"].scheduler)
    specs = stand_ins(model, specs)
    height, width = _size(model.resolution)
    base_size = _size(model.base.resolution) if model.base.get("resolution") else None
    return ModelPair(
        model.name,
        family,
        pipe,
        specs["base"],
        specs["distilled"],
        height,
        width,
        device,
        dtype,
        base_size=base_size,
        preset=model.get("preset"),
        skip_first_noise=model.get("skip_first_noise", "unit"),
        micro_batch=micro_batch_of(model),
        loaded=roles,
    )


# What the shared VAE and text encoders hand a denoiser: a network of another pair (a student distilled from
# another base) fails on them at the first step, as a shape error deep in torch; here it is one line at load
INTERFACE = ("in_channels", "out_channels", "cross_attention_dim")


def check_same_interface(
    model: DictConfig, networks: dict[str, Any], pipe: Any, roles: tuple[str, ...] = ROLES
) -> None:
    """The distilled network takes the base's latents and text embeddings (in/out channels, cross-attention
    width), and both take the pair's VAE latents; of a pair loaded for one role, that role's network."""
    latent = getattr(getattr(getattr(pipe, "vae", None), "config", None), "latent_channels", None)
    base, student = (getattr(networks[role], "config", None) for role in ("base", "distilled"))
    for key in INTERFACE:
        expected, found = getattr(base, key, None), getattr(student, key, None)
        if expected is not None and found is not None and expected != found:
            raise UserError(
                f"model '{model.name}': the distilled network's {key} is {found}, the base's {expected}: it is "
                f"not a network of this pair (model.distilled.network: a student of another base?)"
            )
    role = roles[0]  # the base where it is read; a student read alone is checked against the VAE itself
    channels = getattr(base, "in_channels", latent)
    if latent is not None and channels != latent:
        raise UserError(
            f"model '{model.name}': the {role} network takes {channels} latent channels, the pair's VAE makes "
            f"{latent} (model.{role}.network and model.components are of different models"
            + (": a student of another base?)" if role == "distilled" else ")")
        )


def make_schedulers(model: DictConfig, roles: tuple[str, ...] = ROLES) -> dict[str, Any]:
    """The schedulers of `roles` as the load makes them, without the networks: a class diffusers does not have, or
    an override it refuses or would drop, is one line before a run directory is written rather than once the
    networks load."""
    _quiet_libraries()
    made = {}
    for role in network_roles(model, roles):
        conf = model[role].get("scheduler")
        if isinstance(conf, DictConfig) and conf.get("class"):
            made[role] = _scheduler(conf, role, bool(model.get("tiny")))
    return made


def check_shared_schedule(name: str, base, distilled) -> None:
    """A hand-over moves a latent between the two schedulers at one noise level, which only means the same
    thing when both were trained on the same ᾱ_t; a pair whose schedules differ is refused at load."""
    a, b = base.alphas_cumprod, distilled.alphas_cumprod
    if a.shape != b.shape or not torch.allclose(a.double(), b.double(), rtol=1e-5, atol=1e-7):
        gap = (a.double() - b.double()).abs().max().item() if a.shape == b.shape else float("nan")
        raise UserError(
            f"model '{name}': the base and distilled schedulers have different noise schedules (alphas_cumprod, "
            f"largest gap {gap:.3g}); hand-overs need one schedule: give both schedulers the same betas"
        )


def _quiet_libraries() -> None:
    # Both libraries log config notes at warning level on every load; the terminal is for progress and errors.
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()  # one rich bar per command is enough
    transformers.utils.logging.disable_progress_bar()


def _size(resolution: Any) -> tuple[int, int]:
    if isinstance(resolution, int):
        return resolution, resolution
    height, width = resolution
    return int(height), int(width)


def _tiny(model: DictConfig, roles: tuple[str, ...]):
    from . import tiny

    components = tiny.build_shared_components(model.family, seed=int(model.base.seed))
    lora = is_lora(model, "distilled") and "distilled" in roles
    built = ("base",) if lora else roles  # a LoRA student is the base network with its adapter
    networks = {role: tiny.build_network(model.family, seed=int(model[role].seed)) for role in built}
    if lora:  # one network: a random LoRA standing in for a step-distillation LoRA, toggled per role
        from .flow_tiny import random_lora

        conf = model.distilled.lora
        random_lora(networks["base"], ADAPTER, seed=int(conf.seed), rank=int(conf.get("rank", 4)))
    networks = stood_in(networks)
    slot = NETWORK_SLOT[model.family]
    scheduler = _scheduler(model[roles[0]].scheduler, roles[0], tiny=True)
    pipe = tiny.pipeline_class(model.family)(**components, **{slot: networks[roles[0]]}, scheduler=scheduler)
    return pipe, networks


def _real(model: DictConfig, dtype: torch.dtype, roles: tuple[str, ...]):
    from diffusers import DiffusionPipeline

    shared = model.components
    lora = is_lora(model, "distilled") and "distilled" in roles
    networks = {role: _network(model, role, dtype) for role in (("base",) if lora else roles)}
    slot = NETWORK_SLOT[model.family]
    kwargs: dict[str, Any] = {slot: networks[roles[0]], "torch_dtype": dtype}
    if model.family == "sd":
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    calls = hub_calls(model, roles)
    if shared.get("path"):
        source = shared.path
        kwargs.update(variant_present(source, shared.get("variant")))
    else:
        (call,) = [c for c in calls if c.kind == "pipeline"]
        source = call.repo
        if call.variant:
            kwargs["variant"] = call.variant
    pipe = guarded_load(
        lambda local: DiffusionPipeline.from_pretrained(source, local_files_only=local, **kwargs),
        source,
        Setting(model, "model.components.path"),
    )
    if lora:  # the student is the base network plus a LoRA file
        (call,) = [c for c in calls if c.role == "distilled" and c.kind == "weights"]
        hint = Setting(model, "model.distilled.network.repo")  # a folder holding the file
        guarded_load(lambda local: load_lora(pipe, call.repo, call.file, local), call.repo, hint, file=call.file)
    return pipe, stood_in(networks)


def _network(model: DictConfig, role: str, dtype: torch.dtype) -> torch.nn.Module:
    """A denoising network: a diffusers folder (repo + subfolder, or `path`), or a bare weights file
    (repo + file, e.g. DMD2 or Lightning UNets) loaded into the architecture of `config_repo`.
    Hub reads follow `_network_calls`, the plan `hub_calls` reports."""
    from diffusers import PixArtTransformer2DModel, UNet2DConditionModel

    from .coord_unet import unet_class

    cls = PixArtTransformer2DModel if model.family == "pixart" else UNet2DConditionModel
    conf = model[role].network
    hint = Setting(model, f"model.{role}.network.path")  # `+key` where the pair's file has none
    if conf.get("path"):
        if cls is UNet2DConditionModel:  # a local folder names its class: the toy's UNets carry coordinate planes
            cls = unet_class(conf.path)
        kwargs = {"torch_dtype": dtype, **variant_present(conf.path, conf.get("variant"))}
        return guarded_load(
            lambda local: cls.from_pretrained(conf.path, local_files_only=local, **kwargs), conf.path, hint
        )
    calls = {call.kind: call for call in _network_calls(model, role)}
    if "network" in calls:
        call = calls["network"]
        kwargs = {"subfolder": call.subfolder, "torch_dtype": dtype}
        if call.variant:
            kwargs["variant"] = call.variant
        return guarded_load(
            lambda local: cls.from_pretrained(call.repo, local_files_only=local, **kwargs),
            call.repo,
            hint,
            copy=copy_folder(call),
        )

    from huggingface_hub import hf_hub_download

    arch, file = calls["network_config"], calls["weights"]
    config = guarded_load(
        lambda local: cls.load_config(arch.repo, subfolder=arch.subfolder, local_files_only=local),
        arch.repo,
        Setting(model, f"model.{role}.network.config_repo"),
    )
    folder = local_folder(file.repo)  # a local copy of the repo: the file is read where it lies
    weights = guarded_load(
        lambda local: (
            str(folder / file.file) if folder else hf_hub_download(file.repo, file.file, local_files_only=local)
        ),
        file.repo,
        Setting(model, f"model.{role}.network.repo"),
        file=file.file,
    )
    network = cls.from_config(config).to(dtype)
    if weights.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(weights)
    else:
        import pickle

        try:  # weights_only: a pickle that would run code is refused, not run
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
            reason = first_line(err, 160)
            raise UserError(f"{weights} cannot be loaded safely as weights ({reason})") from None
    network.load_state_dict(state)
    return network


def _scheduler(conf: DictConfig, role: str, tiny: bool = False):
    """A scheduler of `class`, from the repo config `_scheduler_call` names (real pairs) or the SD training
    schedule (tiny pairs), with `overrides` on top."""
    import diffusers

    cls = getattr(diffusers, conf["class"], None)
    if cls is None or not hasattr(cls, "set_timesteps"):
        raise UserError(f"unknown scheduler class '{conf['class']}'; use a diffusers scheduler class name")
    overrides = conf.get("overrides")
    overrides = OmegaConf.to_container(overrides, resolve=True) if overrides is not None else {}
    call = None if tiny else _scheduler_call(conf, role)
    if call is None:
        config = TRAIN_SCHEDULE
    else:
        config = guarded_load(
            lambda local: cls.load_config(call.repo, subfolder=call.subfolder, local_files_only=local),
            call.repo,
            f"model.{role}.scheduler.repo",
        )
    return scheduler_with(cls, config, overrides, f"model.{role}.scheduler.overrides")


def guarded_load(load, repo: str, hint: object, file: str | None = None, copy: str = "/path/to/local/copy"):
    """Load from the local cache first; reach for the hub only when it may be reached (not HF_HUB_OFFLINE).
    A checkpoint found in neither place becomes one actionable line (`hint=copy`: the setting, as typed, that
    reads a local copy instead; a `Setting` is worked out only then); so does a local folder or file that cannot
    be loaded (naming what failed), and a weights file holding a pickle that would run code (`refusing_pickles`)."""
    import diffusers
    import huggingface_hub

    huggingface_hub.utils.logging.set_verbosity_error()  # its retry notes would bury the line that matters
    verbosity = diffusers.utils.logging.get_verbosity()
    # diffusers logs an error of its own before falling back from safetensors to .bin: one line is ours to print
    diffusers.utils.logging.set_verbosity(diffusers.utils.logging.CRITICAL)
    attempts = [True] if _offline() else [True, False]
    local = os.path.exists(os.path.expanduser(str(repo)))
    try:
        for local_only in attempts:
            try:
                with warnings.catch_warnings(), refusing_pickles((lambda: f"{hint}={repo}") if local else repo):
                    warnings.simplefilter("ignore")
                    return load(local_only)
            except (OSError, ValueError, pickle.UnpicklingError) as err:  # hub and offline errors: OSError, ValueError
                reason = type(err).__name__
                if local:  # not a cache miss: what is wrong with the user's own copy
                    raise UserError(f"{hint}={repo} cannot be loaded: {first_line(err)}") from None
    finally:
        diffusers.utils.logging.set_verbosity(verbosity)
    hf_home = os.environ.get("HF_HOME", "~/.cache/huggingface")
    what = f"{repo}/{file}" if file else repo
    fetch = f"hf download {repo}" + (f" {file}" if file else "")
    raise UserError(
        f"checkpoint '{what}' is not in the local cache and could not be fetched ({reason}); on a machine with "
        f"network run `{fetch}` with HF_HOME={hf_home}, or set {hint}={copy}"
    ) from None


def refused_pickle(err: BaseException) -> bool:
    """Whether `err`, or an error it was raised from (diffusers re-raises as OSError), is torch refusing to
    unpickle more than tensors from a weights file."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, pickle.UnpicklingError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


@contextmanager
def refusing_pickles(what: str | Callable[[], str]) -> Iterator[None]:
    """Around any load of weights (`what`: the file, folder or hub id): a weights file refused because it holds a
    pickle that is not plain tensors (it could run code) becomes one line naming it; other errors pass through.
    Loads inside are weights-only even where a library asks otherwise (`weights_only_loads`)."""
    try:
        with weights_only_loads():
            yield
    except Exception as err:
        if not refused_pickle(err):
            raise
        raise pickle_refusal(what() if callable(what) else what, err) from None


def pickle_refusal(what: str, err: BaseException) -> UserError:
    """The one line for a weights file of `what` that torch refused to unpickle (`refused_pickle`)."""
    named = _weights_file(err)
    return UserError(
        f"{what}: {'the weights file ' + named if named else 'a weights file'} holds a pickle that is not plain "
        "tensors (it could run code), so diversity-cli does not load it; use the original weights (safetensors, "
        "or a file of tensors only)"
    )


def _weights_file(err: BaseException) -> str | None:
    """The weights file an error (or one it was raised from) names, if any."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        found = re.search(r"'([^']+\.(?:bin|pt|pth|ckpt|pkl|tar))'", str(current))
        if found:
            return found[1]
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
