"""torch.load as weights-only whatever its caller asks, for a scope or for a whole CLI process.

torch-fidelity's Inception and torchvision's hub cache (the LPIPS backbone) call torch.load with
weights_only=False, so a pickle planted in such a weights file would run its code. torch reads
TORCH_FORCE_WEIGHTS_ONLY_LOAD at each load, so setting it around a load (or for a CLI process) closes that. It is
not set on importing the package: a researcher importing diversity_cli into a notebook keeps torch's own rules.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

FORCE, NO_FORCE = "TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


def force_weights_only() -> None:
    """For the rest of the process (a CLI run); with both variables set torch would refuse every load."""
    os.environ[FORCE] = "1"
    os.environ.pop(NO_FORCE, None)


@contextmanager
def weights_only_loads() -> Iterator[None]:
    """Every torch.load inside is weights-only; the environment is restored on leaving."""
    saved = {name: os.environ.get(name) for name in (FORCE, NO_FORCE)}
    force_weights_only()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
