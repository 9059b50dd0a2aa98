"""Every invocation leaves a record of what made it in the run directory it wrote to."""

from __future__ import annotations

import csv
import json

from diversity_cli.core.record import PACKAGES


def test_generate_records_its_command_line_config_and_versions(cli, tmp_path):
    out = tmp_path / "run"
    args = ("generate", "model=tiny_sd", "prompt=a red circle", "n=1", f"out={out}")
    code, _, err = cli(*args)
    assert code == 0, err
    (path,) = list((out / "runs").glob("*-generate-*.json"))
    record = json.loads(path.read_text())
    assert record["command_line"] == ["diversity-cli", *args]
    assert record["config"]["model"]["name"] == "tiny_sd" and record["config"]["n"] == 1
    assert record["device"] == "cpu" and record["dtype"] == "torch.float32"
    assert set(record["packages"]) == set(PACKAGES)
    assert record["packages"]["torch"].startswith("2.")
    # A second invocation on the same directory adds its own record; the first is untouched.
    before = path.read_bytes()
    code, _, err = cli("generate", "model=tiny_sd", "method=distilled", "prompt=a red circle", "n=1", f"out={out}")
    assert code == 0, err
    assert len(list((out / "runs").glob("*.json"))) == 2 and path.read_bytes() == before


def test_generate_records_sampler_settings_and_network_time(cli, tmp_path):
    out = tmp_path / "run"
    code, _, err = cli(
        "generate", "model=tiny_sd", "+model.micro_batch=2", "method=hybrid", "prompt=a red circle", "n=2", f"out={out}"
    )
    assert code == 0, err
    (path,) = list((out / "runs").glob("*-generate-*.json"))
    sampling = json.loads(path.read_text())["sampling"]
    assert sampling and "base" in json.dumps(sampling) and "distilled" in json.dumps(sampling)
    assert sampling["micro_batch"] == 2  # samples per network call: it moves an image's last bits
    with (out / "samples.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for row in rows:
        # The network's share of an image's time: positive, and never more than the whole (encode + decode too).
        assert 0 < float(row["network_seconds"]) <= float(row["seconds"])
