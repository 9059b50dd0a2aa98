"""The x̂0 trace of one batch: every step's model, timestep, noisy latent x_t and x̂0 prediction."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .plan import make_plan
from .sampler import sample_latents


@dataclass
class Trace:
    """Per step of one batch: who ran, at which timestep, the VP latent x_t and the x̂0 prediction."""

    roles: list[str] = field(default_factory=list)
    timesteps: list[int] = field(default_factory=list)
    noisy: list[torch.Tensor] = field(default_factory=list)
    targets: list[torch.Tensor] = field(default_factory=list)

    def record(self, role: str, index: int, timestep: int, x_t: torch.Tensor, x0: torch.Tensor) -> None:
        self.roles.append(role)
        self.timesteps.append(timestep)
        self.noisy.append(x_t.detach().cpu())
        self.targets.append(x0.detach().cpu())


def trace_method(pair, method: str, prompt: str, seeds: list[int], **knobs) -> tuple[Trace, torch.Tensor]:
    """Sample `seeds` for one prompt, recording every step; returns the trace and the final latents."""
    trace = Trace()
    plan = make_plan(pair, method, **knobs)
    final = sample_latents(
        plan, pair.encode([prompt] * len(seeds)), seeds, pair.latent_shape, pair.device, trace.record
    )
    return trace, final.cpu()


def to_pixels(pair, latents: torch.Tensor) -> torch.Tensor:
    """Decode latents to float images in [0, 1], (N, 3, H, W)."""
    import numpy as np

    images = pair.decode(latents.to(pair.device))
    return torch.from_numpy(np.stack([np.asarray(im, dtype=np.float32) / 255.0 for im in images])).permute(0, 3, 1, 2)
