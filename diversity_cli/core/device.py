"""Where a command runs. Here, not in the model loaders, so a metric shard (fid, diversity) that loads no model
pair does not pay for importing diffusers."""

from __future__ import annotations

import torch

from .errors import UserError


def resolve_device(name: str) -> torch.device:
    """`auto` (a GPU when one is visible), `cpu`, `cuda`, `cuda:N`, `mps`; a GPU asked for but absent is one line."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_device(name)
    return torch.device(name)


def check_device(name: str, asked: str | None = None, instead: str = "device=cpu or device=auto") -> None:
    """A GPU named (`cuda`, `cuda:N`, `mps`) that this machine does not have is one line, not a torch error at the
    first tensor moved there. `asked`: how the user named it (default `device=<name>`); `instead`: what to use."""
    asked = asked or f"device={name}"
    kind, _, index = name.partition(":")
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count:
            raise UserError(f"{asked} but no CUDA device is visible; use {instead}")
        if index.isdigit() and int(index) >= count:
            raise UserError(f"{asked} but this machine shows {count} CUDA device(s): cuda:0 to cuda:{count - 1}")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"{asked} but no Apple GPU (MPS) is available; use {instead}")
