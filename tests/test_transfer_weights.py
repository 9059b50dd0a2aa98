"""transfer-lora's kept images against the weights that would make them now: a base retrained in place (its folder
rewritten) is refused whether images are left to make or not, as generate refuses it."""

from __future__ import annotations

import shutil

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_complete_transfer_run_refuses_images_other_base_weights_made(cli, tmp_path):
    from safetensors.torch import load_file, save_file

    from diversity_cli.core.resources import asset

    base = tmp_path / "base"
    shutil.copytree(asset("toy/base"), base)
    pair = f"model.base.network.path={base / 'unet'}"
    adapter, out = tmp_path / "adapter", tmp_path / "run"
    assert cli("train-lora", "concept=red", "steps=5", "images=16", pair, f"out={adapter}")[0] == 0
    args = ("transfer-lora", f"adapter={adapter}", "prompt=a shape", "n=2", pair, f"out={out}")
    assert cli(*args)[0] == 0
    weights = base / "unet" / "diffusion_pytorch_model.safetensors"
    save_file({k: v * 0.9 for k, v in load_file(weights).items()}, weights)  # retrained in place, say
    before = (out / "transfer.csv").read_bytes()
    code, _, err = cli(*args)  # every image there: nothing is made, the old ones were measured again
    assert code == 2 and "other weights made" in err, err
    assert (out / "transfer.csv").read_bytes() == before
    code, _, err = cli(*args[:-2], "n=3", pair, f"out={out}")  # images left to make: the complete groups too
    assert code == 2 and "other weights made" in err, err
