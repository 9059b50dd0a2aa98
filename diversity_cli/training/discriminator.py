"""DMD2's discriminator: a small classifier head on the fake-score network's bottleneck.

The fake score is a copy of the teacher; its mid block's output, for a noised sample and its caption, is the
discriminator's feature, and the head turns it into one real-vs-student logit (DMD2, `cls_pred_branch` on the
fake UNet). The head flattens the bottleneck instead of pooling it, so where things are in the image reaches the
logit: the toy student's failure is what it puts where captions leave it free.
"""

from __future__ import annotations

import torch
from torch import nn

from .predict import network_output


def _inner(network: nn.Module) -> nn.Module:
    """The network itself under a DistributedDataParallel wrapper (accelerate's `prepare` on several processes)."""
    return getattr(network, "module", network)


def bottleneck(network: nn.Module, x: torch.Tensor, t: torch.Tensor, kwargs: dict) -> torch.Tensor:
    """The output of `network`'s mid block for input `x` at timesteps `t` (gradients flow when enabled)."""
    captured: list[torch.Tensor] = []
    hook = _inner(network).mid_block.register_forward_hook(lambda _module, _args, out: captured.append(out))
    try:
        network_output(network, x, t, kwargs)
    finally:
        hook.remove()
    return captured[0]


class ClassifierHead(nn.Module):
    """Bottleneck features (B, C, H, W) -> one logit per sample (B,)."""

    def __init__(self, channels: int, side: tuple[int, int], groups: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=3, padding=1),
            nn.GroupNorm(groups, channels),
            nn.SiLU(),
            nn.Flatten(),
            nn.Linear(channels * side[0] * side[1], 1),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.body(features.float()).squeeze(1)


@torch.no_grad()
def build_head(fake: nn.Module, latent: torch.Tensor, kwargs: dict, seed: int) -> ClassifierHead:
    """A head sized by one pass of `fake` over `latent` (one sample: (1, C, H, W)) with conditioning `kwargs`, its
    initial weights drawn from `seed` alone (the global generator would make two runs of one seed differ)."""
    features = bottleneck(fake, latent, torch.zeros(latent.shape[0], dtype=torch.long), kwargs)
    channels = int(features.shape[1])
    groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = ClassifierHead(channels, (int(features.shape[2]), int(features.shape[3])), groups)
    return head.to(latent.device)
