"""Weights retrained in place under the same path: transfer-lora's kept images are refused whether images are left
to make or not, as generate refuses them; train-lora trains again rather than calling its adapter done; and an
adapter train-lora made on the old base is refused on the new one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")


def _retrained(base: Path) -> None:
    from safetensors.torch import load_file, save_file

    weights = base / "unet" / "diffusion_pytorch_model.safetensors"
    save_file({k: v * 0.9 for k, v in load_file(weights).items()}, weights)


@pytest.fixture
def trained(cli, tmp_path) -> tuple[Path, str, Path]:
    from diversity_cli.core.resources import asset

    base = tmp_path / "base"
    shutil.copytree(asset("toy/base"), base)
    pair = f"model.base.network.path={base / 'unet'}"
    adapter = tmp_path / "adapter"
    assert cli("train-lora", "concept=red", "steps=5", "images=16", pair, f"out={adapter}")[0] == 0
    return base, pair, adapter


def test_a_complete_transfer_run_refuses_images_other_base_weights_made(cli, tmp_path, trained):
    base, pair, adapter = trained
    meta = adapter / "adapter.json"  # an adapter that records no base (one made elsewhere): the images' check alone
    meta.write_text(json.dumps({k: v for k, v in json.loads(meta.read_text()).items() if k != "base_weights"}))
    out = tmp_path / "run"
    args = ("transfer-lora", f"adapter={adapter}", "prompt=a shape", "n=2", pair, f"out={out}")
    assert cli(*args)[0] == 0
    _retrained(base)
    before = (out / "transfer.csv").read_bytes()
    code, _, err = cli(*args)  # every image there: nothing is made, the old ones were measured again
    assert code == 2 and "other weights made" in err, err
    assert (out / "transfer.csv").read_bytes() == before


def test_an_adapter_of_the_old_base_is_trained_again_and_refused_on_the_new_one(cli, tmp_path, trained):
    base, pair, adapter = trained
    recorded = json.loads((adapter / "adapter.json").read_text())["base_weights"]
    _retrained(base)
    out = tmp_path / "run"
    code, _, err = cli("transfer-lora", f"adapter={adapter}", "prompt=a shape", "n=2", pair, f"out={out}")
    assert code == 2 and f"was trained on base weights {recorded}" in err and not out.exists(), err
    code, _, err = cli("train-lora", "concept=red", "steps=5", "images=16", pair, f"out={adapter}")
    assert code == 2 and "other settings (base_weights)" in err, err  # it said "nothing to do"
    assert cli("train-lora", "concept=red", "steps=5", "images=16", pair, f"out={adapter}", "overwrite=true")[0] == 0
    assert json.loads((adapter / "adapter.json").read_text())["base_weights"] != recorded
    assert cli("transfer-lora", f"adapter={adapter}", "prompt=a shape", "n=2", pair, f"out={out}")[0] == 0


def test_a_training_recorded_before_its_base_weights_were_keyed_is_still_done(cli, tmp_path, trained):
    from diversity_cli.toy.lora import SETTINGS, settings_digest

    _, pair, adapter = trained
    record = json.loads((adapter / SETTINGS).read_text())
    keys = {key: value for key, value in record["keys"].items() if key != "base_weights"}
    (adapter / SETTINGS).write_text(json.dumps({"settings": settings_digest(keys), "keys": keys}) + "\n")
    code, _, err = cli("train-lora", "concept=red", "steps=5", "images=16", pair, f"out={adapter}")
    assert code == 0 and "nothing to do" in err, err
