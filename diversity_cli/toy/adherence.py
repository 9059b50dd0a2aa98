"""Prompt adherence of toy samples, for the `diversity` command: a `toy_adherence` number beside every toy
diversity number, and `adherent_only=true`, which scores diversity over the samples that follow the prompt.

Why: toy_features diversity rewards off-prompt samples (a "red circle" prompt answered with squares of every
colour is "diverse"), so a diversity number means little without the share of samples it was measured on.
Every function takes image files, as the `diversity` command holds them, and the frozen judge
(`features.load_classifier`).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..core.images import image_tensor
from .evaluate import mean_pairwise_cosine_distance
from .features import ToyClassifier, adherent_mask


def _load(paths: list[Path]) -> torch.Tensor:
    return torch.stack([image_tensor(path) for path in paths])


def file_adherence(paths: list[Path], prompt: str, classifier: ToyClassifier) -> list[bool]:
    """For each image file: does it show every factor the prompt names (by the judge's predictions)?"""
    if not paths:
        return []
    return adherent_mask(_load(paths), prompt, classifier).tolist()


def toy_adherence(paths: list[Path], prompt: str, classifier: ToyClassifier) -> float:
    """The fraction of the image files that follow the prompt (NaN for no files)."""
    flags = file_adherence(paths, prompt, classifier)
    return sum(flags) / len(flags) if flags else math.nan


def select_adherent(paths: list[Path], prompt: str, classifier: ToyClassifier) -> list[Path]:
    """The image files that follow the prompt, in their order: the group `adherent_only=true` scores."""
    return [path for path, ok in zip(paths, file_adherence(paths, prompt, classifier), strict=True) if ok]


def adherent_diversity(features: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean pairwise cosine distance of the rows of `features` that `mask` keeps (NaN with fewer than two)."""
    kept = features[mask.to(features.device)]
    return mean_pairwise_cosine_distance(kept) if kept.shape[0] >= 2 else math.nan
