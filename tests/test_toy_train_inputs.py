"""train-toy's starting weights checked before any stage: a vae.reuse folder that is no VAE was a KeyError
traceback (or a run folder written, then diffusers' error), and unet.init_from with a UNet of other settings failed
with torch's state-dict message once the VAE stage had trained, the run folder tied to the wrong settings."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

BASE = Path(__file__).resolve().parent.parent / "diversity_cli" / "assets" / "toy" / "base"
SHIPPED_FLAGS = ("unet.text_embedding=true", "unet.coordinates=true", "unet.prediction_type=v_prediction",
                 "unet.zero_terminal_snr=true")  # fmt: skip


@pytest.mark.parametrize("folder", ["unet", "no weights", "not json"])
def test_a_vae_reuse_folder_that_is_no_vae_is_one_line_and_nothing_is_written(cli, tmp_path, folder):
    if folder == "unet":
        reuse = BASE / "unet"
    else:
        reuse = tmp_path / "vae"
        shutil.copytree(BASE / "vae", reuse)
        if folder == "no weights":
            (reuse / "diffusion_pytorch_model.safetensors").unlink()
        else:
            (reuse / "config.json").write_text("{not json")
    code, _, err = cli("train-toy", f"vae.reuse={reuse}", f"out={tmp_path / 'run'}")
    assert code == 2 and "Traceback" not in err, err
    assert f"vae.reuse={reuse} is no toy network folder" in err
    assert not (tmp_path / "run").exists()


def test_init_from_a_unet_of_other_settings_names_them_before_any_stage(cli, tmp_path):
    code, _, err = cli("train-toy", f"unet.init_from={BASE}", "unet.text_embedding=true", f"out={tmp_path / 'run'}")
    assert code == 2 and "Traceback" not in err, err
    assert "holds a UNet of other settings than these (unet.coordinates)" in err
    assert not (tmp_path / "run").exists()


def test_init_from_with_its_own_settings_passes_the_check():
    from diversity_cli.core.config import compose
    from diversity_cli.toy.train import check_architectures

    check_architectures(compose("train_toy", [f"unet.init_from={BASE}", *SHIPPED_FLAGS]))  # raises nothing


def test_weights_replaced_in_a_starting_folder_make_another_run(tmp_path):
    """A run resumed silently from an init_from folder whose weights had been replaced; the card named the path."""
    from diversity_cli.core.config import compose, differing_keys
    from diversity_cli.toy.train import training_settings

    start = tmp_path / "base"
    shutil.copytree(BASE, start)
    cfg = compose("train_toy", [f"unet.init_from={start}", *SHIPPED_FLAGS])
    before = training_settings(cfg)
    weights = start / "unet" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of the last tensor
    weights.write_bytes(bytes(data))
    assert differing_keys(training_settings(cfg), before) == ["starts_from.unet.init_from"]
    plain = training_settings(compose("train_toy", []))
    assert "starts_from" not in plain  # runs without starting weights keep their settings (and resume) as before


def test_a_run_recorded_before_the_digest_still_resumes(tmp_path):
    """Runs recorded before their starting weights' digest was kept are compared without it, not refused as a run
    of other settings."""
    from omegaconf import OmegaConf

    from diversity_cli.core.config import compose
    from diversity_cli.core.errors import UserError
    from diversity_cli.core.marker import write_owned
    from diversity_cli.toy.train import RUN_CONFIG, prepare, training_settings

    cfg = compose("train_toy", [f"unet.init_from={BASE}", *SHIPPED_FLAGS])
    out = tmp_path / "run"
    earlier = {key: value for key, value in training_settings(cfg).items() if key != "starts_from"}
    write_owned(out, RUN_CONFIG, OmegaConf.to_yaml(OmegaConf.create(earlier)))  # as train-toy wrote it
    assert prepare(out, cfg) is True  # resumed, not refused
    assert "starts_from" in OmegaConf.load(out / RUN_CONFIG)  # kept from now on
    other = compose("train_toy", [f"unet.init_from={BASE}", *SHIPPED_FLAGS, "unet.lr=1e-2"])
    with pytest.raises(UserError, match=r"other settings \(unet.lr\)"):  # the digest is not named as a difference
        prepare(out, other)
