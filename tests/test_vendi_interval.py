"""The Vendi score's interval: a jackknife over images (leave-one-out, grouped above 50 images), in diversity.csv."""

from __future__ import annotations

import csv
import math
from statistics import NormalDist

import pytest
import torch

from diversity_cli.metrics.diversity import VENDI_GROUPS, vendi_estimate, vendi_score


def _jackknife(x: torch.Tensor, groups: int, ci: float) -> float:
    """The half-width, from scores of the subsets computed here one by one."""
    n = len(x)
    scores = [vendi_score(x[[i for i in range(n) if i % groups != g]]) for g in range(groups)]
    mean = sum(scores) / groups
    return NormalDist().inv_cdf(0.5 + ci / 2) * math.sqrt((groups - 1) / groups * sum((s - mean) ** 2 for s in scores))


@pytest.mark.parametrize(("n", "ci"), [(12, 0.95), (20, 0.9), (VENDI_GROUPS + 13, 0.95)])
def test_the_interval_is_the_jackknife_of_the_score(n, ci):
    x = torch.randn(n, 6, generator=torch.Generator().manual_seed(n))
    estimate = vendi_estimate(x, ci)
    half = _jackknife(x, min(n, VENDI_GROUPS), ci)
    assert estimate.value == pytest.approx(vendi_score(x), rel=1e-12) and estimate.n == n
    assert half > 0
    assert estimate.ci_low == pytest.approx(estimate.value - half, rel=1e-9)
    assert estimate.ci_high == pytest.approx(estimate.value + half, rel=1e-9)


def test_the_interval_stays_within_the_scores_range():
    """Near-identical images but one: the normal interval reached below 1, which no Vendi score can be."""
    x = torch.ones(8, 4) + 0.05 * torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    x[0] = torch.tensor([1.0, -1.0, 1.0, -1.0])  # one image unlike the rest: a wide jackknife spread
    estimate = vendi_estimate(x)
    assert _jackknife(x, 8, 0.95) > estimate.value - 1  # unclipped, the interval would go below 1
    assert estimate.ci_low == 1.0 and estimate.ci_high > estimate.value


def test_identical_images_have_an_interval_of_width_zero_and_two_images_none():
    same = vendi_estimate(torch.ones(10, 4))
    assert same.value == pytest.approx(1.0) and same.ci_low == pytest.approx(1.0) and same.ci_high == pytest.approx(1.0)
    two = vendi_estimate(torch.randn(2, 4))
    assert two.ci_low is None and two.ci_high is None


def test_diversity_csv_carries_the_vendi_interval(cli, tmp_path):
    out = tmp_path / "run"
    code, _, err = cli("generate", "model=toy", "method=base", "prompt=a circle", "n=6", f"out={out}")
    assert code == 0, err
    for bootstrap, interval in (("bootstrap=100", True), ("bootstrap=0", False)):
        code, _, err = cli("diversity", f"out={out}", "metric=[pixel,vendi_pixel]", bootstrap)
        assert code == 0, err
        with open(out / "diversity.csv", newline="") as handle:
            (row,) = [r for r in csv.DictReader(handle) if r["metric"] == "vendi_pixel"]
        if interval:
            assert float(row["ci_low"]) < float(row["value"]) < float(row["ci_high"]), row
            assert row["n"] == "6" and row["ci"] == "0.95"
        else:
            assert row["ci_low"] == row["ci_high"] == "", row
