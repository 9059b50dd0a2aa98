"""A real pair read from local copies instead of the hub cache (an offline node with its own folders): the
pipeline and the base UNet as diffusers folders, a student shipped as one bare weights file (DMD2's
`dmd2_sdxl_4step_unet_fp16.bin`) in a folder given as its `repo`, the schedulers' configs from a local folder.
Tiny SDXL networks stand in for the real ones."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_thread")

STUDENT_FILE = "dmd2_sdxl_4step_unet_fp16.bin"


@pytest.fixture(scope="module")
def copies(tmp_path_factory) -> Path:
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    from diversity_cli.models import tiny

    root = tmp_path_factory.mktemp("copies")
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="leading"
    )
    components = tiny.build_shared_components("sdxl", seed=0)
    pipe = StableDiffusionXLPipeline(**components, unet=tiny.build_network("sdxl", seed=0), scheduler=scheduler)
    pipe.save_pretrained(root / "sdxl_base")
    (root / "dmd2").mkdir()
    torch.save(tiny.build_network("sdxl", seed=1).state_dict(), root / "dmd2" / STUDENT_FILE)
    return root


def _args(root: Path, out: Path, n: int) -> list[str]:
    base = root / "sdxl_base"
    return [
        "generate", "model=sdxl_dmd2", "method=hybrid", "prompt=a cat", f"n={n}", f"out={out}", "device=cpu",
        "model.resolution=64", f"+model.components.path={base}", f"+model.base.network.path={base / 'unet'}",
        f"model.distilled.network.repo={root / 'dmd2'}", f"model.distilled.network.config_repo={base}",
        f"model.base.scheduler.repo={base}", f"model.distilled.scheduler.repo={base}",
    ]  # fmt: skip


def test_a_bare_weights_student_and_scheduler_configs_load_from_local_folders(cli, copies, tmp_path):
    out = tmp_path / "run"
    code, _, err = cli(*_args(copies, out, 1))
    assert code == 0, err
    (record,) = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    from diversity_cli.core.fingerprint import folder_hash

    student = record["models"]["distilled"]  # the file's identity, read from the folder it lies in
    assert student["weights_hash"] == folder_hash(copies / "dmd2" / STUDENT_FILE)
    with (out / "samples.csv").open() as f:
        assert [row["tag"] for row in csv.DictReader(f)] == ["hybrid_k1"]
    # the student's file replaced by other weights: its images are not joined by the new student's
    torch.save(
        {k: v + 1 for k, v in torch.load(copies / "dmd2" / STUDENT_FILE).items()}, copies / "dmd2" / STUDENT_FILE
    )
    code, _, err = cli(*_args(copies, out, 2))
    assert code == 2 and "other weights made" in err


def test_a_pair_that_loads_composes_no_config_file_for_its_hints(copies, tmp_path, monkeypatch):
    """The setting a failed load would advise (`+model.base.network.path`) composes the pair's config file: only a
    failure works it out, so a load inside a Hydra multirun job (ablate's points), where Hydra cannot compose
    again, never tries."""
    from diversity_cli.core.config import compose
    from diversity_cli.models import preflight
    from diversity_cli.models.loading import load_pair

    cfg = compose("generate", [arg for arg in _args(copies, tmp_path / "run", 1)[1:] if arg.startswith(("model", "+"))])

    def refused(*_):
        raise AssertionError("the pair's config file was composed for a load that succeeded")

    monkeypatch.setattr(preflight, "_composed_pair", refused)
    pair = load_pair(cfg.model, torch.device("cpu"), torch.float32)
    assert pair.base is not None and pair.distilled is not None


def test_a_local_folder_missing_its_file_is_one_line_before_anything_loads(cli, copies, tmp_path):
    args = _args(copies, tmp_path / "run", 1)
    args = [a.replace(str(copies / "dmd2"), str(tmp_path / "empty")) for a in args]
    (tmp_path / "empty").mkdir()
    code, _, err = cli(*args)
    assert code == 2 and f"{tmp_path / 'empty' / STUDENT_FILE}: not found there" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


@pytest.mark.parametrize("damage", ["repository_root", "no_weights", "only_fp16", "weights_file"])
def test_a_local_network_folder_it_cannot_load_is_one_line_before_anything_loads(cli, copies, tmp_path, damage):
    """Each passed the preflight and failed at the load (or was told as another fault): the copy's root given for
    its unet/ folder, a folder with its config.json and no weights, one of only fp16 weights read by a preset without
    a variant, the weights file given for its folder."""
    unet = copies / "sdxl_base" / "unet"
    folder = tmp_path / "unet"
    if damage == "repository_root":
        folder = copies / "sdxl_base"
    elif damage == "weights_file":  # the file for its folder: it was said to hold no config.json
        folder = unet / "diffusion_pytorch_model.safetensors"
    elif damage == "no_weights":
        folder.mkdir()
        shutil.copy(unet / "config.json", folder)
    else:
        from diffusers import UNet2DConditionModel

        UNet2DConditionModel.from_pretrained(unet).save_pretrained(folder, variant="fp16")
    args = [a for a in _args(copies, tmp_path / "run", 1) if not a.startswith("+model.base.network.path")]
    code, _, err = cli(*args, f"+model.base.network.path={folder}")
    said = {
        "repository_root": f"holds no config.json, so it is no diffusers network folder (a distill run's network is "
        f"its student/ folder); {unet} is one",
        "no_weights": "no weights file beside its config.json",
        "weights_file": f"is a file: the key takes the folder holding config.json and the weights; {unet} holds one",
        "only_fp16": "only variant weights (diffusion_pytorch_model.fp16.safetensors), and this preset reads the plain",
    }[damage]
    assert code == 2 and said in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def test_a_hub_download_cut_short_names_the_weights_it_lacks(cli, tmp_path, monkeypatch):
    """A cached SDXL-Base whose unet/ holds its config.json and no weights was said to lack the config.json."""
    from huggingface_hub import constants

    hub = tmp_path / "hf" / "hub"
    snapshot = hub / "models--stabilityai--stable-diffusion-xl-base-1.0" / "snapshots" / ("0" * 40)
    (snapshot / "unet").mkdir(parents=True)
    (snapshot / "unet" / "config.json").write_text("{}")
    (hub / "models--stabilityai--stable-diffusion-xl-base-1.0" / "refs").mkdir()
    (hub / "models--stabilityai--stable-diffusion-xl-base-1.0" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    code, _, err = cli("generate", "model=sdxl_dmd2", "method=base", "prompt=a cat", f"out={tmp_path / 'run'}")
    assert code == 2 and "unet/config.json" not in err, err
    assert "base network weights stabilityai/stable-diffusion-xl-base-1.0/unet/diffusion_pytorch_model.*: no " in err


def test_a_hub_pipeline_downloaded_in_part_names_the_parts_it_lacks(cli, tmp_path, monkeypatch):
    """A cached SDXL-Base holding its model_index.json, UNet and tokenizers only (`hf download` of some files)
    passed the preflight: the pipeline's load failed on the VAE after the networks had loaded."""
    import json

    from huggingface_hub import constants

    hub = tmp_path / "hf" / "hub"
    repo = hub / "models--stabilityai--stable-diffusion-xl-base-1.0"
    snapshot = repo / "snapshots" / ("0" * 40)
    index = {
        "_class_name": "StableDiffusionXLPipeline",
        "vae": ["diffusers", "AutoencoderKL"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "image_encoder": [None, None],
        # weightless by a word inside its class name (FLUX's); transformers' own weights file name
        "tokenizer_2": ["transformers", "T5TokenizerFast"],
        "text_encoder": ["transformers", "CLIPTextModel"],
    }
    files = {"model_index.json": json.dumps(index), "tokenizer/tokenizer_config.json": "{}",
             "tokenizer_2/tokenizer_config.json": "{}", "text_encoder/config.json": "{}",
             "text_encoder/pytorch_model.bin": "t", "scheduler/scheduler_config.json": "{}", "unet/config.json": "{}",
             "unet/diffusion_pytorch_model.fp16.safetensors": "u"}  # fmt: skip
    for name, text in files.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_text(text)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    code, _, err = cli("generate", "model=sdxl_dmd2", "method=base", "prompt=a cat", f"out={tmp_path / 'run'}")
    said = "stable-diffusion-xl-base-1.0/model_index.json's parts: vae/ is not there (its model_index.json names"
    assert code == 2 and said in err and "tokenizer" not in err and "text_encoder" not in err, err
    assert "image_encoder" not in err and not (tmp_path / "run").exists()
    # a denoising network's folder is read by diffusers alone: transformers' file name is no weights there
    from diversity_cli.models.preflight import weights_missing

    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "pytorch_model.bin").write_text("u")
    assert weights_missing(tmp_path / "unet") is not None
    # a diffusers part of a pipeline (its VAE) loads diffusion_pytorch_model.* alone
    from diversity_cli.models.preflight import pipeline_parts_missing

    (tmp_path / "pipe" / "vae").mkdir(parents=True)
    (tmp_path / "pipe" / "model_index.json").write_text(json.dumps({"vae": ["diffusers", "AutoencoderKL"]}))
    (tmp_path / "pipe" / "vae" / "config.json").write_text("{}")
    (tmp_path / "pipe" / "vae" / "model.safetensors").write_text("v")
    said = pipeline_parts_missing(tmp_path / "pipe")
    assert said == "vae/ holds no weights file beside its config.json (diffusion_pytorch_model.safetensors / .bin)"


@pytest.mark.parametrize("given", ["the_file", "no_folder", "a_config_file"])
def test_a_student_repo_given_as_its_file_or_a_folder_not_there_says_so(cli, copies, tmp_path, given):
    """`...repo=/copy/dmd2_sdxl_4step_unet_fp16.bin` read `.../x.bin/x.bin: not found there`; a scheduler's
    config file given for the copy of its repository was told to give the scheduler/ folder (also wrong)."""
    args = _args(copies, tmp_path / "run", 1)
    if given == "a_config_file":
        wrong = copies / "sdxl_base" / "scheduler" / "scheduler_config.json"
        args = [a.replace(f"base.scheduler.repo={copies / 'sdxl_base'}", f"base.scheduler.repo={wrong}") for a in args]
    else:
        wrong = copies / "dmd2" / STUDENT_FILE if given == "the_file" else tmp_path / "nowhere"
        args = [a.replace(f"repo={copies / 'dmd2'}", f"repo={wrong}") for a in args]
    code, _, err = cli(*args)
    said = {
        "the_file": f"{wrong} is a file: the key takes the folder holding it ({copies / 'dmd2'})",
        "no_folder": f"the folder {wrong} does not exist",
        "a_config_file": f"{wrong} is a file: the key takes the copy of the repository (the folder at its root)",
    }[given]
    assert code == 2 and said in err and len(err.strip().splitlines()) == 1, err


def test_a_flow_pair_loads_from_local_folders(cli, tmp_path):
    """FLUX.1-dev / schnell from local copies (the settings the preflight names): the loader read only hub ids."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from diversity_cli.models import flow_tiny

    components = flow_tiny.build_shared_components("flux", seed=0)
    base = flow_tiny.build_network("flux", seed=0, guidance_embeds=True)
    pipe = flow_tiny.pipeline_class("flux")(**components, transformer=base, scheduler=FlowMatchEulerDiscreteScheduler())
    pipe.save_pretrained(tmp_path / "dev")
    flow_tiny.build_network("flux", seed=1).save_pretrained(tmp_path / "schnell")
    dev = tmp_path / "dev"
    code, _, err = cli(
        "generate", "model=flux1_dev_schnell", "method=hybrid", "prompt=a cat", "n=1", f"out={tmp_path / 'run'}",
        "device=cpu", "model.resolution=32", "model.dtype=float32", "model.max_sequence_length=32",
        f"+model.components.path={dev}", f"+model.base.network.path={dev / 'transformer'}",
        f"+model.distilled.network.path={tmp_path / 'schnell'}", f"model.base.scheduler.repo={dev}",
        f"model.distilled.scheduler.repo={dev}",
    )  # fmt: skip
    assert code == 0, err
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "run" / "runs").glob("*.json")]
    assert record["models"]["distilled"]["path"] == str((tmp_path / "schnell").resolve())


def test_a_local_folder_holding_only_a_variant_loads_it(cli, copies, tmp_path):
    """A local copy of the base saved as `variant=fp16` only (as the hub's SDXL-Base UNet is read by the card
    presets): `variant` applies to a local folder too, where the folder has it."""
    from diffusers import UNet2DConditionModel

    UNet2DConditionModel.from_pretrained(copies / "sdxl_base" / "unet").save_pretrained(
        tmp_path / "unet16", variant="fp16"
    )
    args = [a for a in _args(copies, tmp_path / "run", 1) if not a.startswith("+model.base.network.path")]
    code, _, err = cli(*args, f"+model.base.network.path={tmp_path / 'unet16'}", "model.base.network.variant=fp16")
    assert code == 0, err


def test_a_hub_id_stays_one_where_the_working_directory_holds_a_folder_of_its_name(tmp_path, monkeypatch):
    from diversity_cli.models.hub import local_folder

    (tmp_path / "tianweiy" / "DMD2").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert local_folder("tianweiy/DMD2") is None  # the hub's file, not ./tianweiy/DMD2
    assert local_folder("./tianweiy/DMD2") == Path("./tianweiy/DMD2") and local_folder("/models/dmd2") is not None


def test_a_scheduler_config_edited_in_place_outside_the_components_folder_is_other_settings(cli, tmp_path):
    """A role's scheduler read from a folder of its own was keyed by its path alone: images of the edited config
    joined the earlier ones under one settings digest, and k=auto's cache gave the earlier config's k."""
    from diversity_cli.core.config import compose
    from diversity_cli.core.resources import asset
    from diversity_cli.models.provenance import pair_weights_hash

    folder = tmp_path / "schedule"
    shutil.copytree(asset("toy/base/scheduler"), folder / "scheduler")
    args = ("generate", "method=base", "prompt=a circle", f"model.base.scheduler.repo={folder}")
    out = tmp_path / "run"
    code, _, err = cli(*args, "n=1", f"out={out}")
    assert code == 0, err
    commitment_key = pair_weights_hash(compose("generate", list(args[1:])).model)
    config = folder / "scheduler" / "scheduler_config.json"
    original = config.read_text()
    config.write_text(json.dumps({**json.loads(original), "prediction_type": "epsilon"}))
    assert pair_weights_hash(compose("generate", list(args[1:])).model) != commitment_key
    code, _, err = cli(*args, "n=2", f"out={out}")
    assert code == 2 and "other weights made" in err, err
    config.write_text(original)  # as it was: the run goes on
    assert cli(*args, "n=2", f"out={out}")[0] == 0


def test_base_images_need_no_student(cli, copies, tmp_path):
    """method=base asked for the student's checkpoint (and loaded it): Table 2's base rows needed DMD2 downloaded."""
    out = tmp_path / "run"
    args = [item.replace("method=hybrid", "method=base") for item in _args(copies, out, 1)]
    args = [item for item in args if not item.startswith("model.distilled.network.repo=")]
    args += [f"model.distilled.network.repo={tmp_path / 'no_student_here'}", "model.base.resolution=64",
             "model.base.steps=2"]  # fmt: skip
    code, _, err = cli(*args)
    assert code == 0, err
    (record,) = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert set(record["models"]) == {"base", "components"}
    hybrid = [item.replace("method=base", "method=hybrid") for item in args]
    code, _, err = cli(*hybrid)  # the student is read where it runs: missing, before anything loads
    assert code == 2 and "distilled network" in err and "no_student_here" in err, err


def test_a_cached_network_that_fails_to_load_advises_a_setting_the_command_line_takes(
    cli, copies, tmp_path, monkeypatch
):
    """The load's own line said `set model.base.network.path=...`, which the command line refuses (the pair's
    file has no such key: it takes `+`), and gave the copy's root for its unet/ folder."""
    from huggingface_hub import constants

    hub = tmp_path / "hf" / "hub"
    repo = hub / "models--stabilityai--stable-diffusion-xl-base-1.0"
    shutil.copytree(copies / "sdxl_base", repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40) / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"cut short")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    args = ("generate", "model=sdxl_dmd2", "method=base", "prompt=a cat", "model.resolution=64", "device=cpu")
    code, _, err = cli(*args, f"out={tmp_path / 'run'}")
    assert code == 2 and err.strip().endswith("or set +model.base.network.path=/path/to/local/copy/unet"), err
