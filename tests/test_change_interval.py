"""Table 1's % change of CLIP score carries a paired bootstrap interval: transfer.csv, the summary and the table."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from diversity_cli.metrics.change import change_pct, paired_change_interval


def test_pairs_resampled_together_cancel_what_both_sides_share():
    rng = np.random.default_rng(0)
    without = rng.uniform(10, 40, size=50)  # prompts and seeds that score high or low either way
    with_ = without * 1.10 + rng.normal(0, 0.2, size=50)  # +10% on each image, a little noise
    low, high = paired_change_interval(without, with_)
    point = change_pct(without.mean(), with_.mean())
    assert low < point < high and high - low < 1.0  # paired: tight around +10%
    shuffled = paired_change_interval(without, rng.permutation(with_))  # the pairing lost: the spread dominates
    assert shuffled[1] - shuffled[0] > 10 * (high - low)
    assert paired_change_interval([20.0], [22.0]) is None  # one pair: no interval
    with pytest.raises(ValueError):
        paired_change_interval([1.0, 2.0], [1.0])


@pytest.mark.usefixtures("one_thread")
def test_transfer_csv_the_summary_and_table_1_carry_it(cli, tmp_path):
    adapter, out = tmp_path / "adapter", tmp_path / "run"
    assert cli("train-lora", "concept=red", "model=tiny_sd", "steps=5", "images=16", f"out={adapter}")[0] == 0
    args = ("transfer-lora", "model=tiny_sd", f"adapter={adapter}", "clip_model=tiny_random", "concept=a cat")
    code, stdout, err = cli(*args, "prompt=a cat", "n=4", f"out={out}")
    assert code == 0, err
    with (out / "transfer.csv").open() as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        assert float(row["change_low"]) <= float(row["change_pct"]) <= float(row["change_high"]), row
    assert "95% CI" in stdout
    code, _, err = cli("report", f"out={out}")
    assert code == 0, err
    table = (out / "tables" / "tables.md").read_text()
    for row in rows:  # each cell with its own interval
        assert f"[{float(row['change_low']):.3f}, {float(row['change_high']):.3f}]" in table, table
    assert "bootstrap interval over the image pairs" in table
