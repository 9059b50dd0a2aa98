"""A pickle planted in a weights file never runs, wherever a command reads weights from: a model pair's local
folders (denoising network, text encoder, VAE), a bare weights file, a LoRA file, a transfer-lora adapter, the
metric networks (DINO, CLIP, open_clip, the LPIPS backbone, the FID Inception) and, through the process-wide
weights-only switch, any torch.load a library makes. The user gets one line and exit 2.

The checkpoints and caches the toolkit writes itself (toy and distill resume, FID statistics, embeddings, toy
latents) are covered in tests/test_integrity.py, whose planted pickle this file reuses."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_integrity import _one_line, _plant_pickle

from diversity_cli.core.errors import UserError
from diversity_cli.core.resources import asset as asset_path

REFUSED = "holds a pickle that is not plain tensors"


def _toy_copy(tmp_path: Path, folder: str) -> Path:
    return Path(shutil.copytree(asset_path(f"toy/{folder}"), tmp_path / folder))


# --- a model pair's local weights, end to end ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "folder", "weights", "planted"),
    [
        # diffusers' ModelMixin (UNet / transformer folders: `network.path`)
        ("model.distilled.network.path", "dmd_student", "diffusion_pytorch_model.safetensors",
         "diffusion_pytorch_model.bin"),
        # transformers (the text encoder of the shared components)
        ("model.components.path", "base", "text_encoder/model.safetensors", "text_encoder/pytorch_model.bin"),
        # diffusers inside DiffusionPipeline (the VAE of the shared components)
        ("model.components.path", "base", "vae/diffusion_pytorch_model.safetensors",
         "vae/diffusion_pytorch_model.bin"),
    ],
)  # fmt: skip
def test_a_planted_pickle_in_a_model_pairs_local_folder_never_runs(cli, tmp_path, key, folder, weights, planted):
    copy = _toy_copy(tmp_path, folder)
    (copy / weights).unlink()  # only the pickle is left to load: diffusers and transformers fall back to it
    marker = tmp_path / "ran"
    _plant_pickle(copy / planted, marker)
    code, _, err = cli("generate", "model=toy", f"{key}={copy}", "n=2", f"out={tmp_path / 'run'}")
    assert code == 2 and _one_line(err), err
    assert REFUSED in err and f"{key}={copy}" in err, err
    assert not marker.exists()


def test_a_planted_pickle_as_a_bare_weights_file_never_runs(tmp_path, monkeypatch):
    """A distilled network given as one weights file in a base architecture (DMD2's UNet .bin)."""
    import huggingface_hub
    from omegaconf import OmegaConf

    from diversity_cli.models.loading import _network

    marker, planted = tmp_path / "ran", tmp_path / "unet.bin"
    _plant_pickle(planted, marker)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *args, **kwargs: str(planted))
    model = OmegaConf.create(
        {"family": "sd", "distilled": {"network": {"repo": "someone/unet", "file": "unet.bin",
                                                   "config_repo": str(asset_path("toy/dmd_student"))}}}
    )  # fmt: skip
    with pytest.raises(UserError, match="cannot be loaded safely as weights"):
        _network(model, "distilled", torch.float32)
    assert not marker.exists()


def test_a_planted_pickle_as_a_distillation_lora_never_runs(tiny_pairs, tmp_path):
    """An adapter-distilled pair's LoRA file (SDXL + LCM-LoRA, Lightning LoRA), read by the pipeline's loader."""
    from diversity_cli.models.adapter_pair import load_lora
    from diversity_cli.models.loading import guarded_load

    pipe = tiny_pairs("tiny_sd").pipe
    marker = tmp_path / "ran"
    _plant_pickle(tmp_path / "lora" / "lora.bin", marker)
    folder = str(tmp_path / "lora")
    with pytest.raises(UserError, match=REFUSED):
        guarded_load(lambda local: load_lora(pipe, folder, "lora.bin", local), folder, "model.distilled.network.repo")
    assert not marker.exists()


def test_a_planted_pickle_as_a_transfer_lora_adapter_never_runs(cli, tmp_path):
    marker = tmp_path / "ran"
    _plant_pickle(tmp_path / "slider.pt", marker)
    code, _, err = cli("transfer-lora", "model=tiny_sd", f"adapter={tmp_path / 'slider.pt'}", "prompt=a")
    assert code == 2 and _one_line(err) and REFUSED in err and "slider.pt" in err, err
    assert not marker.exists()


# --- metric networks -----------------------------------------------------------------------------------------------


def _tiny_dino(folder: Path) -> None:
    from transformers import Dinov2Config

    Dinov2Config(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8, image_size=28,
                 patch_size=14).save_pretrained(folder)  # fmt: skip
    preprocessing = {"image_processor_type": "BitImageProcessor", "size": {"shortest_edge": 28},
                     "crop_size": {"height": 28, "width": 28}}  # fmt: skip
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessing))


def _tiny_clip(folder: Path) -> None:
    from transformers import CLIPConfig

    tower = {"hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 8}
    CLIPConfig(text_config=tower, vision_config={**tower, "image_size": 28, "patch_size": 14},
               projection_dim=8).save_pretrained(folder)  # fmt: skip


def _tiny_open_clip(folder: Path) -> None:
    vision = {"image_size": 32, "layers": 1, "width": 16, "patch_size": 16, "head_width": 8}
    text = {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}
    model = {"embed_dim": 8, "vision_cfg": vision, "text_cfg": text}
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": model}))


def _dino(folder: Path):
    from diversity_cli.metrics import embedders

    _tiny_dino(folder)
    return folder / "pytorch_model.bin", lambda: embedders.dino(torch.device("cpu"), str(folder))


def _clip_model(folder: Path):
    from diversity_cli.metrics.quality import load_clip

    _tiny_clip(folder)
    return folder / "pytorch_model.bin", lambda: load_clip(str(folder), torch.device("cpu"))


def _open_clip(folder: Path):
    from diversity_cli.metrics import embedders

    _tiny_open_clip(folder)
    return folder / "open_clip_pytorch_model.bin", lambda: embedders.clip(torch.device("cpu"), f"local-dir:{folder}")


def _lpips(folder: Path):
    from diversity_cli.metrics import embedders

    torch.hub.set_dir(str(folder / "hub"))  # where torchvision keeps the backbone (TORCH_HOME/hub)
    # squeeze: the smallest backbone, read like the others (torch.hub's cache, weights_only=False there)
    return embedders.lpips_backbone_file("squeeze")[0], lambda: embedders.lpips(torch.device("cpu"), "squeeze")


@pytest.mark.parametrize("network", [_dino, _clip_model, _open_clip, _lpips], ids=lambda f: f.__name__[1:])
def test_a_planted_pickle_in_a_metric_networks_weights_never_runs(tmp_path, network):
    hub = torch.hub.get_dir()
    folder = tmp_path / "weights"
    folder.mkdir()
    marker = tmp_path / "ran"
    try:
        planted, load = network(folder)
        _plant_pickle(planted, marker)
        with pytest.raises(UserError, match=REFUSED) as refused:
            load()
    finally:
        torch.hub.set_dir(hub)
    assert "\n" not in str(refused.value) and not marker.exists()


def test_a_planted_pickle_as_the_fid_inception_weights_never_runs(cli, tmp_path):
    """torch-fidelity reads the Inception weights with weights_only=False: the process-wide switch makes it
    weights-only, and the refusal is one line."""
    import numpy as np
    from PIL import Image

    code, _, err = cli("generate", "model=tiny_sd", "prompt=a red circle", "n=2", f"out={tmp_path / 'run'}")
    assert code == 0, err
    (tmp_path / "ref").mkdir()
    for i in range(2):
        Image.fromarray(np.full((16, 16, 3), 60 * i, np.uint8)).save(tmp_path / "ref" / f"{i}.png")
    marker = tmp_path / "ran"
    _plant_pickle(tmp_path / "inception.pth", marker)
    code, _, err = cli("fid", f"out={tmp_path / 'run'}", f"reference={tmp_path / 'ref'}", "features=inception",
                       f"inception_weights={tmp_path / 'inception.pth'}", "clip_model=null")  # fmt: skip
    assert code == 2 and _one_line(err) and REFUSED in err, err
    assert "inception.pth" in err  # the line names the file
    assert not marker.exists()


# --- every load in the process -------------------------------------------------------------------------------------


def test_every_torch_load_under_the_switch_is_weights_only_whatever_the_caller_asks(tmp_path, monkeypatch):
    from diversity_cli.core.weights_only import FORCE, weights_only_loads

    monkeypatch.delenv(FORCE, raising=False)
    marker = tmp_path / "ran"
    _plant_pickle(tmp_path / "any.pt", marker)
    with weights_only_loads(), pytest.raises(Exception, match="Weights only load failed"):
        torch.load(tmp_path / "any.pt", weights_only=False)  # as torch-fidelity and torch.hub call it
    assert not marker.exists()
    assert FORCE not in os.environ  # restored: importing or calling the library leaves torch's rules alone


def test_importing_the_package_leaves_torch_load_alone():
    code = "import os, diversity_cli; print(os.environ.get('TORCH_FORCE_WEIGHTS_ONLY_LOAD'))"
    env = {k: v for k, v in os.environ.items() if k != "TORCH_FORCE_WEIGHTS_ONLY_LOAD"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == "None"


def test_the_toolkits_own_torch_loads_all_ask_for_weights_only():
    """Every torch.load in the package says weights_only=True itself (the switch is a second line of defence)."""
    package = Path(__file__).resolve().parent.parent / "diversity_cli"
    unsafe = []
    for source in package.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "load":
                base = node.func.value
                if isinstance(base, ast.Name) and base.id == "torch":
                    flags = {k.arg: k.value for k in node.keywords}
                    safe = isinstance(flags.get("weights_only"), ast.Constant) and flags["weights_only"].value is True
                    if not safe:
                        unsafe.append(f"{source.relative_to(package)}:{node.lineno}")
    assert unsafe == []
