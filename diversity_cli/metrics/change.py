"""Table 1's % change of CLIP score with an adapter, and its interval.

Each image without the adapter has its twin with it (the same prompt and seed), so the interval resamples the
pairs, not each side on its own: what the two sides share (a prompt that scores high either way) cancels, as it
does in the change itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def change_pct(without: float | None, with_: float | None) -> float | None:
    """100 * (with - without) / without: the paper's % change of CLIP score (Table 1)."""
    if without is None or with_ is None or without == 0:
        return None
    return 100.0 * (with_ - without) / without


def paired_change_interval(
    without: Sequence[float], with_: Sequence[float], ci: float = 0.95, resamples: int = 1000, seed: int = 0
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of `change_pct` of the mean scores (each mean at least 0, as CLIPScore's is)
    over image pairs (`without[i]` and `with_[i]` one prompt and seed) resampled together. A resample whose mean
    without the adapter is 0 has no ratio: it counts as an unbounded change, and where more of them fall than one
    tail holds the interval is unbounded too: None, as for fewer than 2 pairs."""
    if len(without) != len(with_):
        raise ValueError("paired_change_interval needs one score with the adapter for each without it")
    if len(without) < 2:
        return None
    pairs = np.array([without, with_], dtype=np.float64)
    rows = np.random.default_rng(seed).integers(0, pairs.shape[1], size=(resamples, pairs.shape[1]))
    means = np.maximum(pairs[:, rows].mean(axis=2), 0.0)  # (2, resamples)
    zero = means[0] == 0
    if zero.mean() > (1 - ci) / 2:
        return None
    changes = np.full(resamples, np.inf)
    changes[~zero] = 100.0 * (means[1, ~zero] - means[0, ~zero]) / means[0, ~zero]
    low, high = np.quantile(changes, [(1 - ci) / 2, 1 - (1 - ci) / 2], method="inverted_cdf")
    return float(low), float(high)
