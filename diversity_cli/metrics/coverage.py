"""Distribution-level precision / recall / density / coverage (Naeem et al. 2020, the `prdc` package's definitions).

Each point's k-nearest-neighbour ball (radius: distance to its k-th nearest other point of its own set) stands
for the manifold around it. With real = the reference set and fake = the generated set:

- precision: share of fake points inside some real ball (are samples on the reference distribution?)
- recall:    share of real points inside some fake ball (does the sample set reach all of it?)
- density:   (1/k) x mean number of real balls containing a fake point (precision that counts overlaps)
- coverage:  share of real points whose own ball contains some fake point (recall robust to fake outliers)

More diverse but off-distribution samples raise recall and lower precision / density; a collapsed set keeps
precision and loses coverage. Balls are strict (`<`), as in `prdc`.

Ties decide these rates: a generated image identical to a reference image lies exactly on the balls its twin
bounds, and discrete data (the toy world's scenes) repeats images. So every comparison uses one number per pair
of distinct points, computed from the pair's own difference vector in float64 (no |x|^2 + |y|^2 - 2 x.y
cancellation), and shared by all comparisons: a radius and a cross distance that are equal are compared as equal,
never broken apart by rounding.
"""

from __future__ import annotations

import math

import torch

from .embedders import CHUNK_BYTES, DISTANCES

PRDC = ("precision", "recall", "density", "coverage")


def kth_neighbour_radii(dist: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point, from a square matrix with zero diagonal."""
    if not 1 <= k < dist.shape[0]:
        raise ValueError(f"k={k} needs more than k points (got {dist.shape[0]})")
    # The (k+1)-th smallest of a row counts the point itself at distance 0.
    return dist.kthvalue(k + 1, dim=1).values


def ordering_distances(points: torch.Tensor, kind: str = "euclidean") -> torch.Tensor:
    """(N,N) float64 matrix ordered exactly like the `kind` distance: squared euclidean distances, or for
    "cosine" squared distances of the unit vectors (= 2 (1 - cosine)). Each entry is the sum of the squared
    differences of one pair, computed once (upper triangle, mirrored), so equal pairs give equal entries."""
    if kind not in DISTANCES:
        raise ValueError(f"distance kind {kind!r} is not one of {DISTANCES}")
    x = points.detach().flatten(1).cpu()
    n, dim = x.shape
    block = max(1, math.isqrt(CHUNK_BYTES // (8 * max(1, dim))))
    out = torch.zeros(n, n, dtype=torch.float64)
    for r in range(0, n, block):
        rows = _prepared(x[r : r + block], kind)
        for c in range(r, n, block):
            cols = rows if c == r else _prepared(x[c : c + block], kind)
            out[r : r + block, c : c + block] = ((rows[:, None, :] - cols[None, :, :]) ** 2).sum(-1)
    upper = torch.triu(out, diagonal=1)
    return upper + upper.T  # zero diagonal, exactly symmetric


def _prepared(block: torch.Tensor, kind: str) -> torch.Tensor:
    x = block.double()
    if kind == "cosine":
        x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return x


def prdc(real: torch.Tensor, fake: torch.Tensor, k: int = 5, distance: str = "euclidean") -> dict[str, float]:
    """Precision, recall, density and coverage of `fake` embeddings against `real` ones (rows are points)."""
    n_real = real.shape[0]
    both = torch.cat([real.detach().flatten(1).cpu(), fake.detach().flatten(1).cpu()])
    # Distinct points once: duplicates (within or across the sets) then share every distance bit for bit.
    unique, index = torch.unique(both, dim=0, return_inverse=True)
    dist = ordering_distances(unique, distance)[index][:, index]
    return prdc_from_distances(dist[:n_real, :n_real], dist[n_real:, n_real:], dist[:n_real, n_real:], k)


def prdc_from_distances(real: torch.Tensor, fake: torch.Tensor, cross: torch.Tensor, k: int = 5) -> dict[str, float]:
    """PRDC from distance matrices: real-real (R,R), fake-fake (F,F), real-fake (R,F), zero diagonals. Any
    monotone transform of the distance gives the same result (LPIPS hands over its streamed matrices)."""
    real_radii = kth_neighbour_radii(real, k)
    fake_radii = kth_neighbour_radii(fake, k)
    inside_real = cross < real_radii[:, None]  # fake j inside real i's ball
    return {
        "precision": float(inside_real.any(dim=0).double().mean()),
        "recall": float((cross < fake_radii[None, :]).any(dim=1).double().mean()),
        "density": float(inside_real.sum(dim=0).double().mean() / k),
        "coverage": float((cross.min(dim=1).values < real_radii).double().mean()),
    }
