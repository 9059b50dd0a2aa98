"""Adapter-distilled pairs: the distilled model is the base network plus a LoRA (Qwen-Image-Lightning, SDXL
DMD2-/LCM-LoRA, Hyper-SD), held once in memory and toggled per role.

The adapter is switched with peft's enable/disable (not fuse/unfuse, which rewrites the base weights and drifts
after repeated round trips) once when a role's segment begins, i.e. twice per hybrid batch, never per step.
With the adapter disabled the network computes exactly the base model.
"""

from __future__ import annotations

import torch

from ..core.errors import UserError
from .pair import ModelSpec

ADAPTER = "distilled"  # the adapter name the loader gives a pair's step-distillation LoRA


def has_distillation_adapter(network: torch.nn.Module) -> bool:
    return ADAPTER in (getattr(network, "peft_config", None) or {})


def activate(spec: ModelSpec) -> None:
    """Make `spec.network` compute `spec`'s model: on an adapter-distilled pair's shared network, its distillation
    adapter on (the student) or off (the base). Every other adapter on that network (a LoRA or slider applied by
    `transfer-lora`) stays on for both roles, stacked with the distillation adapter at the weight it was given.
    A network without a distillation adapter is left alone, the adapters a user applied to it included."""
    network = spec.network
    if not has_distillation_adapter(network):
        if spec.adapter:
            raise UserError(f"{spec.label}: adapter '{spec.adapter}' is configured but the network has no adapters")
        return
    applied = [name for name in network.peft_config if name != ADAPTER]
    active = ([spec.adapter] if spec.adapter else []) + applied
    if active:
        network.enable_adapters()
        network.set_adapter(active)  # activates only; each adapter keeps the weight set_adapters gave it
    else:
        network.disable_adapters()


def load_lora(pipe, repo_or_path: str, weight_name: str | None, local_only: bool) -> None:
    """Load a LoRA file through the pipeline's own LoRA loader (which converts the community key formats, e.g.
    Lightning's) into its network under the name `ADAPTER`."""
    kwargs = {"adapter_name": ADAPTER, "local_files_only": local_only}
    if weight_name:
        kwargs["weight_name"] = weight_name
    pipe.load_lora_weights(repo_or_path, **kwargs)
