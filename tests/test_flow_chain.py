"""A flow-matching pair through the whole measuring chain from the command line: generate (base, distilled, hybrid)
-> diversity -> report, as `make reproduce-table3 PAIR=<flow pair>` runs it."""

from __future__ import annotations

import csv

import numpy as np
from PIL import Image

PROMPT = "a red circle"


def _rows(path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_generate_diversity_report_on_a_flow_pair(cli, tmp_path):
    out = tmp_path / "run"
    for method in ("base", "distilled", "hybrid"):
        code, _, err = cli(
            "generate", "model=tiny_sd3", f"method={method}", "k=1", "n=2", f"prompt={PROMPT}", f"out={out}"
        )
        assert code == 0, err
    samples = _rows(out / "samples.csv")
    assert sorted((r["method"], r["seed"]) for r in samples) == sorted(
        (m, s) for m in ("base", "distilled", "hybrid") for s in ("0", "1")
    )
    pixels = {(r["method"], r["seed"]): np.asarray(Image.open(out / r["path"]), dtype=np.float64) for r in samples}
    assert not np.array_equal(pixels["distilled", "0"], pixels["distilled", "1"])  # seeds differ
    assert not np.array_equal(pixels["hybrid", "0"], pixels["distilled", "0"])  # the base's step is in the hybrid

    code, _, err = cli("diversity", f"out={out}", "metric=pixel", "bootstrap=0", "device=cpu")
    assert code == 0, err
    measured = {r["method"]: float(r["value"]) for r in _rows(out / "diversity.csv") if r["prompt"] == PROMPT}
    assert set(measured) == {"base", "distilled", "hybrid_k1"} and all(v > 0 for v in measured.values())

    tables = tmp_path / "tables"
    code, _, err = cli("report", f"out={out}", f"tables_dir={tables}", "tables=[3]")
    assert code == 0, err
    cells = {r["method"]: r for r in _rows(tables / "table_3.csv") if r["condition"] == PROMPT and r["measured"] != ""}
    assert set(cells) == {"Base", "Distilled", "Hybrid"}
    for column, method in (("Base", "base"), ("Distilled", "distilled"), ("Hybrid", "hybrid_k1")):
        cell = cells[column]
        assert (cell["model"], cell["n"], cell["measured_metric"]) == ("tiny_sd3", "2", "pixel")
        assert float(cell["measured"]) == measured[method], column
