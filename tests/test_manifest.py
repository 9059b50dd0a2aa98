"""Offline load checks for the real pairs: every hub read the loader would make (repo, subfolder, variant, file)
must name files that exist in that repository, per a manifest recorded from its public file listings
(tests/manifests/, each entry citing its listing). A wrong subfolder or variant fails here, not on a GPU node."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from diversity_cli.core.config import compose
from diversity_cli.models import loading
from diversity_cli.models.loading import TRAIN_SCHEDULE, HubCall, hub_calls

MANIFESTS = Path(__file__).parent / "manifests"
REAL_PAIRS = ["sdxl_dmd2", "sdxl_turbo", "sdxl_lightning", "sdxl_lcm", "pixart_alpha_delta", "sd21_turbo"]
PRESETS = ["paper", "card"]
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json")


def _manifest(repo: str) -> dict:
    path = MANIFESTS / f"{repo.replace('/', '__')}.json"
    assert path.exists(), f"no manifest recorded for {repo}: add {path.name} from a file listing of the repository"
    return json.loads(path.read_text())


def _weights_in(files: set[str], folder: str, variant: str | None) -> list[str]:
    """Weight files directly in `folder` ("" = root) that a from_pretrained with `variant` would pick up."""
    prefix = f"{folder}/" if folder else ""
    found = []
    for path in files:
        name = path[len(prefix) :] if path.startswith(prefix) else None
        if not name or "/" in name or not name.endswith(WEIGHT_SUFFIXES):
            continue
        has_variant = any(f".{v}." in name for v in ("fp16", "bf16", "fp32", "non_ema", "ema"))
        if (variant and f".{variant}." in name) or (not variant and not has_variant):
            found.append(path)
    return found


def missing(call: HubCall) -> list[str]:
    """What `call` needs that its repository's manifest does not hold (empty: the read would find its files)."""
    manifest = _manifest(call.repo)
    files = {entry["path"] for entry in manifest["files"]}
    folder = call.subfolder or ""
    prefix = f"{folder}/" if folder else ""
    needed: list[str] = []
    if call.kind == "weights":
        needed = [call.file]
    elif call.kind == "network_config":
        needed = [f"{prefix}config.json"]
    elif call.kind == "scheduler_config":
        needed = [f"{prefix}scheduler_config.json"]
    elif call.kind == "network":
        needed = [f"{prefix}config.json"]
        if not _weights_in(files, folder, call.variant):
            return [p for p in needed if p not in files] + [f"{prefix}<weights, variant {call.variant}>"]
    elif call.kind == "pipeline":
        needed = ["model_index.json"]
        for component in manifest.get("pipeline_weights", []):
            if not _weights_in(files, component, call.variant):
                needed.append(f"{component}/<weights, variant {call.variant}>")
    else:
        raise AssertionError(f"unknown hub call kind {call.kind}")
    return [path for path in needed if path not in files]


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("name", REAL_PAIRS)
def test_every_hub_read_of_a_real_pair_finds_its_files(name, preset):
    calls = hub_calls(compose("generate", [f"model={name}", f"preset={preset}", "method=distilled"]).model)
    assert {c.role for c in calls} == {"components", "base", "distilled"}
    problems = {
        f"{c.kind} {c.repo} subfolder={c.subfolder} variant={c.variant} file={c.file}": missing(c) for c in calls
    }
    assert {call: gaps for call, gaps in problems.items() if gaps} == {}


# The real flow pairs: no stored copy of these repositories' public file listings was found (searched: the
# Hugging Face tree, blob and commit pages of each), so their reads stay unchecked. Only copies under the
# official repository count, not a duplicate's listing. A read of any other repository must find its files; a
# repository that gains a complete manifest must leave this table, or the test below fails.
UNSOURCED_FLOW_REPOS = {
    "qwen_image_lightning": {"Qwen/Qwen-Image"},
    "flux1_dev_schnell": {"black-forest-labs/FLUX.1-dev"},
    "sd35_large_turbo": {"stabilityai/stable-diffusion-3.5-large", "stabilityai/stable-diffusion-3.5-large-turbo"},
    "flux2_klein_4b": {"black-forest-labs/FLUX.2-klein-base-4B", "black-forest-labs/FLUX.2-klein-4B"},
}


def _gaps(call: HubCall) -> list[str]:
    try:
        return missing(call)
    except AssertionError as err:  # no manifest for the repository
        return [str(err).split(":")[0]]


@pytest.mark.parametrize("name", sorted(UNSOURCED_FLOW_REPOS))
def test_every_sourced_hub_read_of_a_real_flow_pair_finds_its_files(name):
    calls = hub_calls(compose("generate", [f"model={name}"]).model)
    assert {c.role for c in calls} == {"components", "base", "distilled"}
    failing = {c.repo for c in calls if _gaps(c)}
    assert failing == UNSOURCED_FLOW_REPOS[name], {f"{c.kind} {c.repo} {c.subfolder}": _gaps(c) for c in calls}


def test_flux_schnell_reads_are_checked_not_skipped():
    """FLUX.1-schnell is the flux pair's student and its shared components: a wrong subfolder there must fail."""
    model = compose("generate", ["model=flux1_dev_schnell"]).model
    model.distilled.network.subfolder = "unet"
    (call,) = [c for c in hub_calls(model) if c.role == "distilled" and c.kind == "network"]
    assert missing(call) == ["unet/config.json", "unet/<weights, variant None>"]
    model = compose("generate", ["model=flux1_dev_schnell", "+model.components.variant=fp16"]).model
    (call,) = [c for c in hub_calls(model) if c.kind == "pipeline"]  # FLUX.1-schnell publishes no fp16 files
    assert "text_encoder/<weights, variant fp16>" in missing(call)


def test_the_old_lcm_sdxl_unet_subfolder_fails_the_check():
    model = compose("generate", ["model=sdxl_lcm"]).model
    model.distilled.network.subfolder = "unet"  # the repository's layout before its "better" commit moved it
    (call,) = [c for c in hub_calls(model) if c.role == "distilled" and c.kind == "network"]
    assert missing(call) == ["unet/config.json", "unet/<weights, variant None>"]


@pytest.mark.parametrize(
    ("override", "gap"),
    [
        ("model.distilled.network.variant=fp16", "transformer/<weights, variant fp16>"),  # PixArt has no fp16 files
        ("model.components.variant=fp16", "text_encoder/<weights, variant fp16>"),
        ("model.distilled.scheduler.repo=PixArt-alpha/PixArt-XL-2-1024-MS-typo", "no manifest"),
    ],
)
def test_the_check_catches_a_wrong_variant_or_repo(override, gap):
    model = compose("generate", ["model=pixart_alpha_delta", override]).model
    gaps = []
    for call in hub_calls(model):
        try:
            gaps += missing(call)
        except AssertionError as err:
            gaps.append(str(err))
    assert any(gap in g for g in gaps)


def test_every_manifest_entry_cites_a_listing_of_its_own_repository():
    for path in sorted(MANIFESTS.glob("*.json")):
        manifest = json.loads(path.read_text())
        assert path.name == f"{manifest['repo'].replace('/', '__')}.json"
        for entry in manifest["files"]:
            assert entry["source"].startswith(f"https://huggingface.co/{manifest['repo']}/"), entry


class _Stub(torch.nn.Module):
    """Stands in for a network or pipeline: records nothing, loads nothing, moves nowhere."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    @property
    def dtype(self) -> torch.dtype:
        return self.weight.dtype

    def load_state_dict(self, state, *args, **kwargs):
        return None


@pytest.mark.parametrize("roles", [("base", "distilled"), ("base",), ("distilled",)])
@pytest.mark.parametrize("name", REAL_PAIRS)
def test_the_loader_makes_exactly_the_calls_it_reports(name, roles, monkeypatch):
    """`hub_calls` is what the manifest check sees; the loader must make those reads and no others, for every
    set of networks a method loads."""
    import diffusers
    import huggingface_hub
    import safetensors.torch

    model = compose("generate", [f"model={name}"]).model
    made: list[HubCall] = []

    def network_from_pretrained(cls, repo, subfolder=None, variant=None, **_):
        made.append(HubCall("network", "?", repo, subfolder, variant))
        return _Stub()

    def network_config(cls, repo, subfolder=None, **_):
        made.append(HubCall("network_config", "?", repo, subfolder))
        return {}

    def scheduler_config(cls, repo, subfolder=None, **_):
        made.append(HubCall("scheduler_config", "?", repo, subfolder))
        return dict(TRAIN_SCHEDULE)

    def pipeline(cls, repo, variant=None, **_):
        made.append(HubCall("pipeline", "?", repo, variant=variant))
        return _Stub()

    def download(repo, file, **_):
        made.append(HubCall("weights", "?", repo, file=file))
        return file

    for cls in (diffusers.UNet2DConditionModel, diffusers.PixArtTransformer2DModel):
        monkeypatch.setattr(cls, "from_pretrained", classmethod(network_from_pretrained))
        monkeypatch.setattr(cls, "load_config", classmethod(network_config))
        monkeypatch.setattr(cls, "from_config", classmethod(lambda cls, config, **_: _Stub()))
    for cls in {getattr(diffusers, model[role].scheduler["class"]) for role in ("base", "distilled")}:
        monkeypatch.setattr(cls, "load_config", classmethod(scheduler_config))
    monkeypatch.setattr(diffusers.DiffusionPipeline, "from_pretrained", classmethod(pipeline))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(torch, "load", lambda *a, **k: {})
    monkeypatch.setattr(safetensors.torch, "load_file", lambda *a, **k: {})

    pair = loading.load_pair(model, torch.device("cpu"), torch.float32, roles)

    def key(call: HubCall) -> tuple:
        return call.kind, call.repo, call.subfolder, call.variant, call.file

    assert sorted(map(key, made)) == sorted(map(key, hub_calls(model, roles)))
    assert pair.preset == "paper"
