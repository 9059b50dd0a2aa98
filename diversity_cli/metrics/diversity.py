"""Sample diversity from one distance matrix: mean pairwise distance with a bootstrap interval, and the Vendi score
with a jackknife one.

Metric objects follow torchmetrics' shape (`update` with embeddings, `compute` for the result); the functions
below them work on a distance matrix or on embeddings directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import torch

from .embedders import gram64, pairwise_distances


@dataclass(frozen=True)
class Estimate:
    value: float
    ci_low: float | None
    ci_high: float | None
    n: int


def mean_pairwise(dist: torch.Tensor) -> float:
    """Mean over unordered pairs i<j of a symmetric (N,N) distance matrix with zero diagonal."""
    n = dist.shape[0]
    if n < 2:
        raise ValueError("mean pairwise distance needs at least 2 images")
    return float(torch.triu(dist, diagonal=1).sum() / (n * (n - 1) / 2))


def bootstrap_mean_pairwise(
    dist: torch.Tensor, samples: int = 1000, ci: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of the mean pairwise distance, resampling images with replacement.

    A resample draws each image c_i times; its mean pairwise distance runs over pairs of draws of *different*
    images, sum_ij c_i c_j d_ij / ((sum c)^2 - sum c_i^2): a duplicate image is not a pair at distance 0.
    All resamples at once: counts (B,N), one matrix product.
    """
    n = dist.shape[0]
    generator = torch.Generator().manual_seed(int(seed))
    draws = torch.randint(0, n, (samples, n), generator=generator)
    counts = torch.zeros(samples, n, dtype=torch.float64).scatter_add_(
        1, draws, torch.ones(samples, n, dtype=torch.float64)
    )
    d = dist.double()
    total = ((counts @ d) * counts).sum(1)
    pairs = counts.sum(1) ** 2 - (counts**2).sum(1)
    valid = pairs > 0  # a resample of one image drawn n times has no pair
    means = total[valid] / pairs[valid]
    if means.numel() == 0:
        return float("nan"), float("nan")
    tail = (1.0 - ci) / 2
    low, high = torch.quantile(means, torch.tensor([tail, 1.0 - tail], dtype=torch.float64))
    return float(low), float(high)


def wilson_interval(share: float, n: int, ci: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a share of `n` independent hits (the toy judge's on-prompt images): 0.125 of 24
    images is [0.04, 0.31] at 95%, which a bare 0.125 does not say; it stays inside [0, 1] at 0 and 1."""
    z = NormalDist().inv_cdf(0.5 + ci / 2)
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def pooled_interval(values: list[float], lows: list[float], highs: list[float]) -> tuple[float, float, float]:
    """(mean, low, high) of the mean of k independent estimates, each with its own interval (normal
    approximation): the mean minus sqrt(sum of squared lower half-widths) / k, plus sqrt(sum of squared upper
    ones) / k."""
    k = len(values)
    mean = sum(values) / k
    below = math.sqrt(sum((v - lo) ** 2 for v, lo in zip(values, lows, strict=True))) / k
    above = math.sqrt(sum((hi - v) ** 2 for v, hi in zip(values, highs, strict=True))) / k
    return mean, mean - below, mean + above


def vendi_score(embeddings: torch.Tensor) -> float:
    """Vendi score (Friedman & Dieng 2023) with the cosine-similarity kernel: exp of the Shannon entropy of the
    eigenvalues of K/n. Ranges from 1 (all alike) to n (mutually orthogonal)."""
    return _vendi_of_kernel(_cosine_kernel(embeddings))


def _cosine_kernel(embeddings: torch.Tensor) -> torch.Tensor:
    gram = gram64(embeddings.detach().flatten(1).cpu())  # float64 a block of columns at a time, not a whole copy
    norms = gram.diagonal().sqrt().clamp_min(1e-12)
    return gram / (norms[:, None] * norms[None, :])


def _vendi_of_kernel(kernel: torch.Tensor) -> float:
    eigenvalues = torch.linalg.eigvalsh(kernel / kernel.shape[0]).clamp_min(0.0)
    p = eigenvalues[eigenvalues > 0]
    return float(torch.exp(-(p * p.log()).sum()))


VENDI_GROUPS = 50  # leave-one-group-out sets of the jackknife: n eigendecompositions at n=1000 would take minutes


def vendi_estimate(embeddings: torch.Tensor, ci: float = 0.95) -> Estimate:
    """Vendi score with a jackknife normal interval, clipped to [1, n]: leave out each of min(n, 50) interleaved
    groups of images in turn (the grouped jackknife; leave-one-out at n <= 50). Not a bootstrap: a resample's
    duplicate images are alike under the kernel and lower the score, so bootstrap intervals sit below the estimate."""
    kernel = _cosine_kernel(embeddings)
    n = kernel.shape[0]
    value = _vendi_of_kernel(kernel)
    if n < MIN_INTERVAL_N:
        return Estimate(value, None, None, n)
    groups = min(n, VENDI_GROUPS)
    left_out = []
    for g in range(groups):
        keep = torch.arange(n) % groups != g
        left_out.append(_vendi_of_kernel(kernel[keep][:, keep]))
    mean = sum(left_out) / groups
    spread = math.sqrt((groups - 1) / groups * sum((v - mean) ** 2 for v in left_out))  # the jackknife's s.e.
    half = NormalDist().inv_cdf(0.5 + ci / 2) * spread
    # the normal interval clipped to the score's range, 1 (all alike) to n: a Vendi score below 1 means nothing
    return Estimate(value, max(1.0, value - half), min(float(n), value + half), n)


class _EmbeddingMetric:
    """torchmetrics-style accumulation: `update` with each batch's embeddings, `compute` once over all."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._parts: list[torch.Tensor] = []

    def update(self, embeddings: torch.Tensor) -> None:
        self._parts.append(embeddings.detach().flatten(1).cpu())

    def embeddings(self) -> torch.Tensor:
        return torch.cat(self._parts)


class PairwiseDiversity(_EmbeddingMetric):
    """Mean pairwise distance of a set of images' embeddings, with a bootstrap interval over images."""

    def __init__(self, distance: str, bootstrap: int = 1000, ci: float = 0.95, seed: int = 0):
        super().__init__()
        self.distance = distance
        self.bootstrap = int(bootstrap)
        self.ci = float(ci)
        self.seed = int(seed)

    def compute(self) -> Estimate:
        dist = pairwise_distances(self.embeddings(), None, self.distance)
        return pairwise_estimate(dist, self.bootstrap, self.ci, self.seed)


MIN_INTERVAL_N = 3  # images below which the mean pairwise distance gets no bootstrap interval


def pairwise_estimate(dist: torch.Tensor, bootstrap: int = 1000, ci: float = 0.95, seed: int = 0) -> Estimate:
    """Mean pairwise distance and its bootstrap interval from a distance matrix (LPIPS streams one directly)."""
    value = mean_pairwise(dist)
    # Two images are one pair: every resample with a pair is that pair, an interval of width 0 that says nothing.
    if bootstrap <= 0 or dist.shape[0] < MIN_INTERVAL_N:
        return Estimate(value, None, None, dist.shape[0])
    low, high = bootstrap_mean_pairwise(dist, int(bootstrap), float(ci), int(seed))
    return Estimate(value, low, high, dist.shape[0])


class VendiScore(_EmbeddingMetric):
    """Vendi score of a set of images' embeddings, with a jackknife interval (`vendi_estimate`)."""

    def __init__(self, ci: float = 0.95, interval: bool = True):
        super().__init__()
        self.ci = float(ci)
        self.interval = interval

    def compute(self) -> Estimate:
        embeddings = self.embeddings()
        if not self.interval:
            return Estimate(vendi_score(embeddings), None, None, len(embeddings))
        return vendi_estimate(embeddings, self.ci)
