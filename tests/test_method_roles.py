"""A method loads the networks it samples with and no other: a distilled run reads no base checkpoint (FLUX.1-schnell
without the gated FLUX.1-dev, DMD2 without SDXL-Base's UNet), a base run no student. The images are those of a pair
loaded whole, and a plan that would sample with a network left out is refused."""

from __future__ import annotations

import json

import pytest
import torch

from diversity_cli.core.config import compose
from diversity_cli.models.hub import ROLES, hub_calls, method_roles
from diversity_cli.models.loading import load_pair
from diversity_cli.sampling.plan import make_plan
from diversity_cli.sampling.sampler import sample_latents

pytestmark = pytest.mark.usefixtures("one_thread")


def _repos(name: str, method: str) -> set[str]:
    model = compose("generate", [f"model={name}"]).model
    return {call.repo for call in hub_calls(model, method_roles(model, method))}


def test_a_distilled_run_reads_nothing_of_the_base():
    assert "black-forest-labs/FLUX.1-dev" not in _repos("flux1_dev_schnell", "distilled")  # gated: licence needed
    assert "black-forest-labs/FLUX.1-dev" in _repos("flux1_dev_schnell", "hybrid")
    model = compose("generate", ["model=sdxl_dmd2"]).model
    kinds = {(call.role, call.kind) for call in hub_calls(model, method_roles(model, "skip_first"))}
    assert ("base", "network") not in kinds and ("distilled", "weights") in kinds
    assert ("distilled", "weights") not in {(c.role, c.kind) for c in hub_calls(model, method_roles(model, "base"))}


def test_a_lora_student_still_reads_the_base_network_it_sits_on():
    model = compose("generate", ["model=qwen_image_lightning"]).model
    assert method_roles(model, "distilled") == ROLES
    assert {call.role for call in hub_calls(model, method_roles(model, "distilled"))} >= {"base", "distilled"}


@pytest.mark.parametrize("name", ["tiny_sdxl", "tiny_flux"])
def test_the_student_alone_makes_the_images_of_the_whole_pair(name):
    model = compose("generate", [f"model={name}"]).model
    whole = load_pair(model, torch.device("cpu"), torch.float32)
    alone = load_pair(model, torch.device("cpu"), torch.float32, method_roles(model, "distilled"))
    assert alone.loaded == ("distilled",) and alone.base.network is alone.distilled.network

    def latents(pair):
        return sample_latents(make_plan(pair, "distilled"), pair.encode(["a cat", "a dog"]), [3, 4], pair.latent_shape)

    assert torch.equal(latents(whole), latents(alone))
    with pytest.raises(RuntimeError, match="base network, not loaded"):
        make_plan(alone, "hybrid", k=1)


def test_distilled_images_need_no_base_on_disk(cli, tmp_path):
    """generate method=distilled on a pair whose base folder does not exist: the preflight does not ask for it and
    the record names only what made the images; a hybrid of the same pair is refused, naming the base."""
    out = tmp_path / "run"
    missing = tmp_path / "no_base_here"
    args = ["generate", "model=toy", "prompt=a circle", "n=2", f"out={out}", f"model.base.network.path={missing}"]
    code, _, err = cli(*args, "method=distilled")
    assert code == 0, err
    (record,) = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert set(record["models"]) == {"distilled", "components"}
    assert set(record["sampling"]["models"]) == {"distilled"}
    code, _, err = cli(*args, "method=hybrid", f"out={tmp_path / 'hybrid'}")
    assert code == 2 and "base" in err and "no_base_here" in err, err


def test_x0viz_of_the_student_alone_needs_no_base(cli, tmp_path):
    """x0viz methods=distilled asked for the base (on FLUX.1-schnell, the gated FLUX.1-dev) and loaded it; its
    record names what it read, and a rerun finds its run done."""
    out = tmp_path / "x0viz"
    args = ["x0viz", "model=toy", "methods=distilled", "n=2", "prompt=a circle", f"out={out}"]
    args.append(f"model.base.network.path={tmp_path / 'no_base_here'}")
    code, _, err = cli(*args)
    assert code == 0, err
    (record,) = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert set(record["models"]) == {"distilled", "components"}
    code, _, err = cli(*args)
    assert code == 0 and "nothing to do" in err, err
    code, _, err = cli(*[a.replace("methods=distilled", "methods=[distilled,hybrid]") for a in args], "overwrite=true")
    assert code == 2 and "no_base_here" in err, err
