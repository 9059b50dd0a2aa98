"""Where a command runs. Here, not in the model loaders, so a metric shard (fid, diversity) that loads no model
pair does not pay for importing diffusers."""

from __future__ import annotations

import torch

from .errors import UserError


def resolve_device(name: str) -> torch.device:
    """`auto` (a GPU when one is visible), `cpu`, `cuda`, `cuda:N`, `mps`; a GPU asked for but absent is one line."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device={name} but no CUDA device is visible; use device=cpu or device=auto")
    return torch.device(name)
