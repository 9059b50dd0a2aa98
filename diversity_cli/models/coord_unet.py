"""A UNet2DConditionModel that knows where it is: two coordinate planes join its input (CoordConv, Liu et al. 2018).

A convolutional UNet is translation-equivariant except at its zero-padded borders, so a caption word that names
a place ("on the left") has almost nothing in the features to bind to: the toy base learned to ignore position
words entirely. Giving `conv_in` the pixel's x and y in [-1, 1] as two extra input planes makes absolute position
a feature every later layer (and every cross-attention query) can use.

Everything else is diffusers' class unchanged: the config keeps `in_channels` = the latent's channels (pipelines
size their latents from it), the planes are made on the fly, and `save_pretrained` / `from_pretrained` round-trip
through config.json's `_class_name`, which `unet_class` reads to pick the class for a folder.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch
from diffusers import ModelMixin, UNet2DConditionModel

# A pipeline folder names this module as the UNet's library (model_index.json); diffusers finds the loading method
# of a component from such a library by looking its base classes up here, so ModelMixin must be importable from it.
__all__ = ["ModelMixin", "CoordUNet2DConditionModel", "add_coordinates", "unet_class"]

COORDINATE_PLANES = 2


def coordinate_planes(batch: int, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """(batch, 2, height, width): y then x, each running from -1 to 1 across the latent."""
    ys = torch.linspace(-1.0, 1.0, height, device=like.device, dtype=like.dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=like.device, dtype=like.dtype)
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij"))
    return grid.expand(batch, -1, -1, -1)


class CoordConv2d(torch.nn.Conv2d):
    """A convolution whose input gains the coordinate planes; its weight has COORDINATE_PLANES more input channels
    than the tensors it is called with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        return super().forward(torch.cat([x, coordinate_planes(b, h, w, x)], dim=1))


class CoordUNet2DConditionModel(UNet2DConditionModel):
    """UNet2DConditionModel with a CoordConv2d `conv_in`; takes the same arguments (and config) as its parent."""

    # wraps: diffusers reads the accepted config keys from the signature, which must stay the parent's
    @functools.wraps(UNet2DConditionModel.__init__)
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        plain = self.conv_in
        self.conv_in = CoordConv2d(
            plain.in_channels + COORDINATE_PLANES, plain.out_channels, plain.kernel_size, padding=plain.padding
        )


UNET_CLASSES: dict[str, type[UNet2DConditionModel]] = {
    "UNet2DConditionModel": UNet2DConditionModel,
    "CoordUNet2DConditionModel": CoordUNet2DConditionModel,
}


def unet_class(folder: str | Path) -> type[UNet2DConditionModel]:
    """The UNet class a local diffusers folder was saved from (config.json's `_class_name`); diffusers' own
    UNet2DConditionModel for anything else (hub folders, other names)."""
    config = Path(folder) / "config.json"
    try:
        name = json.loads(config.read_text()).get("_class_name")
    except (OSError, ValueError):
        return UNet2DConditionModel
    return UNET_CLASSES.get(name, UNet2DConditionModel)


def add_coordinates(plain: UNet2DConditionModel) -> CoordUNet2DConditionModel:
    """A CoordUNet computing exactly what `plain` computes: its weights, and zero weights on the coordinate planes,
    so continued training starts from the trained model and learns how much position to use."""
    network = CoordUNet2DConditionModel.from_config(plain.config)
    state = plain.state_dict()
    weight = state["conv_in.weight"]
    extra = weight.new_zeros(weight.shape[0], COORDINATE_PLANES, *weight.shape[2:])
    state["conv_in.weight"] = torch.cat([weight, extra], dim=1)
    network.load_state_dict(state)
    return network.to(plain.device)
