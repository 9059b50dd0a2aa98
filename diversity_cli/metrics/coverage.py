"""Distribution-level precision / recall / density / coverage (Naeem et al. 2020, the `prdc` package's definitions).

Each point's k-nearest-neighbour ball (radius: distance to its k-th nearest other point of its own set) stands
for the manifold around it. With real = the reference set and fake = the generated set:

- precision: share of fake points inside some real ball (are samples on the reference distribution?)
- recall:    share of real points inside some fake ball (does the sample set reach all of it?)
- density:   (1/k) x mean number of real balls containing a fake point (precision that counts overlaps)
- coverage:  share of real points whose own ball contains some fake point (recall robust to fake outliers)

More diverse but off-distribution samples raise recall and lower precision / density; a collapsed set keeps
precision and loses coverage. Balls are strict (`<`), as in `prdc`.
"""

from __future__ import annotations

import torch

from .embedders import pairwise_distances

PRDC = ("precision", "recall", "density", "coverage")


def kth_neighbour_radii(dist: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point, from a square matrix with zero diagonal."""
    if not 1 <= k < dist.shape[0]:
        raise ValueError(f"k={k} needs more than k points (got {dist.shape[0]})")
    # The (k+1)-th smallest of a row counts the point itself at distance 0.
    return dist.kthvalue(k + 1, dim=1).values


def prdc(real: torch.Tensor, fake: torch.Tensor, k: int = 5, distance: str = "euclidean") -> dict[str, float]:
    """Precision, recall, density and coverage of `fake` embeddings against `real` ones (rows are points)."""
    real_radii = kth_neighbour_radii(pairwise_distances(real, None, distance), k)
    fake_radii = kth_neighbour_radii(pairwise_distances(fake, None, distance), k)
    cross = pairwise_distances(real, fake, distance)  # (real, fake)
    inside_real = cross < real_radii[:, None]  # fake j inside real i's ball
    return {
        "precision": float(inside_real.any(dim=0).double().mean()),
        "recall": float((cross < fake_radii[None, :]).any(dim=1).double().mean()),
        "density": float(inside_real.sum(dim=0).double().mean() / k),
        "coverage": float((cross.min(dim=1).values < real_radii).double().mean()),
    }
