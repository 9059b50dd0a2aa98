"""diversity.csv did not say how many resamples an interval came from: bootstrap=3 gave a narrow interval that
Table 3 showed as the usual 95% interval of 1000."""

from __future__ import annotations

import csv
from pathlib import Path


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "diversity.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_an_interval_says_its_bootstrap_when_not_the_default(cli, tmp_path):
    out = tmp_path / "run"
    assert cli("generate", "method=base", "prompt=a circle", "n=4", f"out={out}")[0] == 0
    code, _, err = cli("diversity", f"out={out}", "metric=[pixel,vendi_pixel]", "bootstrap=3", "seed=5")
    assert code == 0, err
    assert "bootstrap=3: an interval from so few resamples is rough" in " ".join(err.split())
    (pixel,) = [row for row in _rows(out) if row["metric"] == "pixel"]
    assert pixel["ci_low"] and pixel["options"] == "bootstrap=3; seed=5"
    (vendi,) = [row for row in _rows(out) if row["metric"] == "vendi_pixel"]
    assert vendi["ci_low"] and vendi["options"] == ""  # a jackknife's interval: no resamples, no seed
    assert cli("diversity", f"out={out}", "metric=pixel", "bootstrap=0")[0] == 0  # no interval: nothing to say
    assert cli("diversity", f"out={out}", "metric=pixel")[0] == 0  # the defaults: nothing to say
    # bootstrap=0's row had the default's key (no options): the default's rerun replaced it; bootstrap=3's stays apart
    options = sorted((row["options"], row["ci_low"] != "") for row in _rows(out) if row["metric"] == "pixel")
    assert options == [("", True), ("bootstrap=3; seed=5", True)]
