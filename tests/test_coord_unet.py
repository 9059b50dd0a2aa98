"""CoordUNet2DConditionModel: a UNet that sees where each latent pixel is, saved and loaded as a diffusers folder."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import DiffusionPipeline, StableDiffusionPipeline, UNet2DConditionModel

from diversity_cli.models.coord_unet import CoordUNet2DConditionModel, add_coordinates, unet_class
from diversity_cli.toy.architecture import build_unet


def _plain(seed: int = 0) -> UNet2DConditionModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_unet([8, 16], 4, 16, 2, 8, latent_channels=4).eval()


def _inputs(batch: int = 2):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 4, 8, 8, generator=generator)
    return x, torch.tensor([900, 300][:batch]), torch.randn(batch, 5, 16, generator=generator)


@torch.no_grad()
def test_added_coordinates_start_as_the_same_function():
    plain = _plain()
    coord = add_coordinates(plain).eval()
    assert isinstance(coord, CoordUNet2DConditionModel) and coord.config.in_channels == 4
    assert coord.conv_in.weight.shape[1] == 6
    x, t, text = _inputs()
    assert torch.equal(plain(x, t, text).sample, coord(x, t, text).sample)


@torch.no_grad()
def test_coordinate_weights_make_the_output_depend_on_place():
    """A translation-invariant input (constant latent) gives a flat output from a plain UNet far from its borders
    only by accident; with weight on the coordinate planes the left and right halves must differ."""
    coord = add_coordinates(_plain()).eval()
    x = torch.zeros(1, 4, 8, 8)
    t, text = torch.tensor([500]), torch.zeros(1, 5, 16)
    before = coord(x, t, text).sample
    coord.conv_in.weight[:, -1].normal_(generator=torch.Generator().manual_seed(0))  # the x plane
    after = coord(x, t, text).sample
    assert not torch.allclose(before, after)
    # the x plane enters antisymmetric in x: flipping the input left-right no longer flips the output
    flipped = coord(x.flip(-1), t, text).sample.flip(-1)
    assert not torch.allclose(after, flipped, atol=1e-4)


@torch.no_grad()
def test_saved_folder_names_its_class_and_loads_back(tmp_path):
    coord = add_coordinates(_plain()).eval()
    coord.conv_in.weight[:, -2:].fill_(0.1)
    coord.save_pretrained(tmp_path / "unet", safe_serialization=True)
    assert json.loads((tmp_path / "unet" / "config.json").read_text())["_class_name"] == "CoordUNet2DConditionModel"
    cls = unet_class(tmp_path / "unet")
    assert cls is CoordUNet2DConditionModel
    loaded = cls.from_pretrained(tmp_path / "unet").eval()
    x, t, text = _inputs()
    assert torch.equal(loaded(x, t, text).sample, coord(x, t, text).sample)
    _plain().save_pretrained(tmp_path / "plain")
    assert unet_class(tmp_path / "plain") is UNet2DConditionModel
    assert unet_class(tmp_path / "missing") is UNet2DConditionModel  # hub ids and folders without a config


@pytest.mark.parametrize("pass_unet", [False, True])
def test_a_pipeline_folder_with_a_coordinate_unet_loads_in_plain_diffusers(tmp_path, pass_unet):
    """The exported toy base is a StableDiffusionPipeline folder whose model_index.json names this module: diffusers
    must load it on its own (the ModelMixin lookup), and with the UNet passed in, as the toolkit's loader does."""
    from diffusers import DDIMScheduler

    from diversity_cli.models.tiny import build_network, build_shared_components

    coord = add_coordinates(build_network("sd"))
    components = build_shared_components("sd")
    pipe = StableDiffusionPipeline(**components, unet=coord, scheduler=DDIMScheduler())
    pipe.save_pretrained(tmp_path / "pipe", safe_serialization=True)
    kwargs = {"unet": coord} if pass_unet else {}
    loaded = DiffusionPipeline.from_pretrained(tmp_path / "pipe", **kwargs)
    assert isinstance(loaded.unet, CoordUNet2DConditionModel)
