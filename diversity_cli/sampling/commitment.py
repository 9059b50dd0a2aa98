"""The commitment curve: how far each step's x̂0 still is from the final image, and where a method commits.

A method has *committed* at the first step where the mean distance falls to `threshold` times its first-step
value; `generate k=auto` builds on the base model's point. That rule measures each method against its own first
step, which can therefore never be where it commits (a 4-step student commits at 50% of its steps at the earliest):
whether a method has decided at its first step is read from `first_step_distance`, the mean distance after it,
comparable across methods under one metric. The distance is the caller's (an embedder and its pairwise distance),
so sampling does not depend on any particular metric.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Pairwise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (N,D), (M,D) -> (N,M) distances


def commitment(
    step_images: list[torch.Tensor],
    final: torch.Tensor,
    embedder: Callable[[torch.Tensor], torch.Tensor],
    pairwise: Pairwise,
) -> torch.Tensor:
    """(steps, seeds) distance between each step's x̂0 image and the final image of the same seed."""
    final_emb = embedder(final)
    rows = []
    for images in step_images:
        emb = embedder(images)
        rows.append(torch.stack([pairwise(emb[i : i + 1], final_emb[i : i + 1])[0, 0] for i in range(len(emb))]))
    return torch.stack(rows)


def committed_fraction(fractions: list[float], distances: list[float], threshold: float) -> float:
    """First fraction of steps at which the mean distance is at most `threshold` x its first value."""
    limit = threshold * distances[0]
    for fraction, distance in zip(fractions, distances, strict=True):
        if distance <= limit:
            return fraction
    return fractions[-1]


def summarize(records: list[dict], threshold: float) -> list[dict]:
    """Per method: the mean curve over prompts and seeds, and where it commits."""
    import pandas as pd

    frame = pd.DataFrame(records)
    summary = []
    for method, group in frame.groupby("method", sort=False):
        curve = (
            group.groupby("step")
            .agg(fraction=("fraction", "first"), timestep=("timestep", "first"), distance=("distance", "mean"))
            .reset_index()
        )
        fraction = committed_fraction(curve.fraction.tolist(), curve.distance.tolist(), threshold)
        at = curve[curve.fraction == fraction].iloc[0]
        summary.append(
            {
                "method": method,
                "steps": len(curve),
                "threshold": threshold,
                "committed_fraction": round(fraction, 4),
                "committed_step": int(at.step),
                "committed_timestep": int(at.timestep),
                # how far the first step's x̂0 still is from the final image: a distilled model that decides its
                # composition at once is near 0 here, whatever its relative rule above says
                "first_step_distance": round(float(curve.distance.iloc[0]), 6),
            }
        )
    return summary
