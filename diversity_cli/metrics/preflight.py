"""Before any work: the metric networks and reference data a command will use, checked on the local disk only.

Each function returns `Missing` items (what, and the command or setting that fixes it) rather than raising, so a
command lists everything missing at once (`models.preflight.fail_if_missing`). The embedders' own loaders keep
their checks too; these only run them early, without loading a network.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..core.errors import UserError, did_you_mean
from ..models.hub import local_folder
from ..models.preflight import Missing, hf_cached, hf_home

# dreamsim 0.2.1 (model.download_weights): files each type needs in its cache dir. Types using DINO also load
# the DINO code and weights through torch.hub with the cache dir as hub dir, which needs network if absent.
DREAMSIM_FILES = {
    "ensemble": [
        "dino_vitb16_pretrain.pth",
        "open_clip_vitb16_pretrain.pth.tar",
        "clip_vitb16_pretrain.pth.tar",
        "ensemble_lora",
    ],
    "dino_vitb16": ["dino_vitb16_pretrain.pth", "dino_vitb16_single_lora"],
    "dinov2_vitb14": ["dinov2_vitb14_pretrain.pth", "dinov2_vitb14_single_lora"],
    "open_clip_vitb32": ["open_clip_vitb32_pretrain.pth.tar", "open_clip_vitb32_single_lora"],
    "clip_vitb32": ["clip_vitb32_pretrain.pth.tar", "clip_vitb32_single_lora"],
    "synclr_vitb16": ["synclr_vit_b_16.pth", "synclr_vitb16_single_lora"],
}
DREAMSIM_HUB = {
    "dino": ["facebookresearch_dino_main", "checkpoints/dino_vitbase16_pretrain.pth"],
    "dinov2": ["facebookresearch_dinov2_main", "checkpoints/dinov2_vitb14_pretrain.pth"],
}


def dreamsim_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """`cache_dir`, else $HF_HOME/dreamsim, else ~/.cache/dreamsim."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    home = os.environ.get("HF_HOME")
    return (Path(home) if home else Path.home() / ".cache") / "dreamsim"


def dreamsim_files(dreamsim_type: str) -> list[str]:
    """Files (and folders) under its cache dir that DreamSim of this type loads."""
    needed = list(DREAMSIM_FILES[dreamsim_type])
    if dreamsim_type in ("ensemble", "dino_vitb16"):
        needed += DREAMSIM_HUB["dino"]
    elif dreamsim_type == "dinov2_vitb14":
        needed += DREAMSIM_HUB["dinov2"]
    return needed


def dreamsim_missing(cache_dir: Path, dreamsim_type: str) -> list[str]:
    """Files DreamSim of this type would download into `cache_dir`: they must be there before it is loaded."""
    return [name for name in dreamsim_files(dreamsim_type) if not (cache_dir / name).exists()]


# torchvision's ImageNet weights of the LPIPS backbones (tests/test_cli.py checks them against torchvision), and
# torch-fidelity's port of the TF FID Inception: file names in torch hub's checkpoints/, known without torch.
TORCHVISION_MODELS = "https://download.pytorch.org/models/"
LPIPS_BACKBONE_FILES = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"


def metric_embedders(metrics: list[str], vendi_base: str) -> list[str]:
    """The embedders behind diversity metric names: vendi_<x> uses x, vendi the vendi_base, toy_coverage the toy
    classifier."""
    names = []
    for metric in metrics:
        if metric.startswith("vendi_"):
            names.append(metric.removeprefix("vendi_"))
        elif metric == "vendi":
            names.append(vendi_base)
        elif metric == "toy_coverage":
            names.append("toy_features")
        else:
            names.append(metric)
    return list(dict.fromkeys(names))


def _torch_hub_dir() -> Path:
    """torch.hub.get_dir() without importing torch: $TORCH_HOME/hub, else ~/.cache/torch/hub."""
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(home).expanduser() / "hub"


def embedder_missing(name: str, options: dict[str, Any], key: str | None = "embedders") -> list[Missing]:
    """Weights the diversity embedder `name` with these options (conf/diversity.yaml `embedders.<name>`) needs.
    `key`: where the command takes the embedder's options (`measure.diversity.embedders` in ablate); None where it
    takes none (x0viz, k=auto: the shipped defaults), so the advice names no key it would refuse."""

    def setting(option: str, value: str) -> str:
        return f"{key}.{name}.{option}={value}" if key else ""

    if name == "dreamsim":
        folder = dreamsim_cache_dir(options.get("cache_dir"))
        kind = str(options.get("type", "ensemble"))
        files = dreamsim_missing(folder, kind) if kind else []
        if files:
            return [
                Missing(
                    f"dreamsim '{kind}' weights in {folder} ({', '.join(files)})",
                    f"run `python -c \"from dreamsim import dreamsim; dreamsim(cache_dir='{folder}', "
                    f"dreamsim_type='{kind}')\"` with network"
                    # x0viz and k=auto take no embedder keys: the folder follows HF_HOME
                    + (f", or {setting('cache_dir', '/path')}" if key else ", or HF_HOME=<folder holding dreamsim/>"),
                )
            ]
    elif name == "lpips":
        net = str(options.get("net", "alex"))
        if net not in LPIPS_BACKBONE_FILES:
            return []  # the embedder names the allowed nets
        path = _torch_hub_dir() / "checkpoints" / LPIPS_BACKBONE_FILES[net]
        url = TORCHVISION_MODELS + LPIPS_BACKBONE_FILES[net]
        if not path.is_file():
            return [
                Missing(f"lpips backbone {path}", f"fetch {url} there, or TORCH_HOME=<folder with hub/checkpoints>")
            ]
    elif name == "dino":
        spec = str(options.get("path", "facebook/dinov2-base"))
        if not Path(spec).expanduser().is_dir() and hf_cached(spec, "config.json") is None:
            return [
                Missing(
                    f"dino {spec}",
                    f"`hf download {spec}` (HF_HOME={hf_home()})"
                    + (f" or {setting('path', '/folder')}" if key else ""),
                )
            ]
    elif name == "clip":
        model, pretrained = str(options.get("model", "")), options.get("pretrained")
        if model.startswith("local-dir:"):
            if not Path(model[len("local-dir:") :]).expanduser().is_dir():
                return [
                    Missing(
                        f"clip folder {model}", "needs open_clip_config.json and a checkpoint: a folder that exists"
                    )
                ]
        elif not model.startswith("hf-hub:") and not pretrained:
            how = (
                f"{setting('pretrained', '<file or open_clip tag in the HF cache>')} or "
                f"{setting('model', 'local-dir:/folder')}"
                if key
                else "this command measures with clip's shipped settings, which name no checkpoint: measure clip "
                "with `diversity-cli diversity` (its embedders.clip.pretrained=), or take another metric="
            )
            return [Missing(f"clip needs weights for {model}", how)]
    elif name == "toy_features":
        path = options.get("path")
        if path and not Path(str(path)).expanduser().is_dir():
            return [
                Missing(f"toy classifier {path}", setting("path", "<a train-toy features/ folder>") or "restore it")
            ]
    return []


CLIP_SCORE_MODEL = "openai/clip-vit-large-patch14"  # diversity's clip_score: torchmetrics' CLIPScore default


def diversity_missing(metrics: list[str], cfg: Any, key: str | None = "embedders") -> list[Missing]:
    """Every embedder the metrics use (vendi_<x> uses x, toy_coverage the toy classifier), and clip_score's CLIP.
    `cfg`: where the embedders' options are (`cfg.embedders`); `key`: where the command takes them, for the advice
    (see `embedder_missing`)."""
    missing: list[Missing] = []
    # tiny_random: a random CLIP built in memory (what fid's clip_model=tiny_random is), which tests put here
    offline_stand_in = CLIP_SCORE_MODEL == "tiny_random"
    if "clip_score" in metrics and not offline_stand_in and hf_cached(CLIP_SCORE_MODEL, "config.json") is None:
        missing.append(
            Missing(
                f"CLIP model {CLIP_SCORE_MODEL} (clip_score, the quality beside diversity)",
                f"`hf download {CLIP_SCORE_MODEL}` (HF_HOME={hf_home()}), or quality=none "
                "(ablate: measure.diversity.quality=none)",
            )
        )
    for name in metric_embedders(metrics, str(cfg.get("vendi_base", "dreamsim"))):
        options = dict((cfg.get("embedders") or {}).get(name) or {})
        missing += [item for item in embedder_missing(name, options, key) if item not in missing]
    return missing


FEATURE_NETWORKS = ("inception", "toy", "tiny_random")  # else package.module:factory


def check_features(spec: str, prefix: str = "") -> None:
    """`features=` names a built-in feature network or a factory (`package.module:factory`)."""
    if spec not in FEATURE_NETWORKS and ":" not in spec:
        raise UserError(
            f"{prefix}features={spec}: use {', '.join(FEATURE_NETWORKS)} or package.module:factory"
            f"{did_you_mean(spec, FEATURE_NETWORKS)}"
        )


REFERENCE_NAMES = ("toy", "coco")


def check_reference(reference: str, prefix: str = "") -> None:
    """`reference=` is toy, coco or a folder here: a name that is none of them (a misspelt `toi`) was taken for a
    folder, and told last, after the Inception weights and CLIP model it then asked for."""
    if reference in REFERENCE_NAMES or Path(reference).expanduser().is_dir():
        return
    names = " nor ".join(REFERENCE_NAMES)
    raise UserError(
        f"{prefix}reference={reference} is neither {names} nor a folder here{did_you_mean(reference, REFERENCE_NAMES)}"
    )


def fid_features(cfg: Any) -> str:
    """The feature network `fid` measures with: features=auto is the toy judge against the toy reference, else
    Inception."""
    return str(cfg.features) if cfg.features != "auto" else ("toy" if str(cfg.reference) == "toy" else "inception")


def fid_clip(cfg: Any) -> str | None:
    """The CLIP model `fid` scores prompts with: clip_model=auto is the published CLIP score's, except against the toy
    reference and for a plain folder (`images=`), which has no prompts."""
    if cfg.clip_model != "auto":
        return cfg.clip_model
    return None if str(cfg.reference) == "toy" or cfg.get("images") is not None else CLIP_SCORE_MODEL


def other_clip(spec: str | None) -> str:
    """The CLIP model a CLIP score was measured with where it is not the published score's (`CLIP_SCORE_MODEL`,
    what diversity's clip_score always uses), "" otherwise: scores of two CLIP models are not comparable, so a label
    names the other one."""
    return "" if not spec or spec == CLIP_SCORE_MODEL else str(spec)


def clip_missing(clip: str | None, prefix: str = "") -> list[Missing]:
    """The CLIP model `clip_model=` names (fid's CLIP score, transfer-lora's), where it is neither a folder here nor
    in the local hub cache; tiny_random is built in memory. `prefix`: where the command takes the key (ablate's
    `measure.fid.`), so the hint can be pasted as it is."""
    key = f"{prefix}clip_model"
    if not clip or clip == "tiny_random" or Path(str(clip)).expanduser().is_dir():
        return []
    if local_folder(clip) is not None:  # a path, not a hub id: nothing to download
        return [Missing(f"CLIP model folder {clip}", f"not found; {key}=<a folder that exists>, a hub id, or null")]
    if hf_cached(str(clip), "config.json") is not None:
        return []
    return [Missing(f"CLIP model {clip}", f"`hf download {clip}` (HF_HOME={hf_home()}), or {key}=null")]


def fid_missing(cfg: Any, prefix: str = "") -> list[Missing]:
    """The feature network, the CLIP model and the COCO images `fid` will read (a reference folder's existence is
    `check_reference`'s, checked before the preflight). `prefix`: where the command takes fid's keys."""
    missing: list[Missing] = []
    if fid_features(cfg) == "inception":
        given = cfg.get("inception_weights")
        path = Path(str(given)).expanduser() if given else _torch_hub_dir() / "checkpoints" / INCEPTION_FILE
        if not path.is_file():
            hint = f"fetch {INCEPTION_URL} there, or {prefix}inception_weights=PATH"
            missing.append(Missing(f"Inception weights {path}", hint))
    missing += clip_missing(fid_clip(cfg), prefix)
    if str(cfg.reference) == "coco":
        images = (cfg.get("coco") or {}).get("images")
        if not images or not Path(str(images)).expanduser().is_dir():
            hint = f"{prefix}coco.images=/path/to/val2014 (the folder of val2014 JPEGs)"
            missing.append(Missing("COCO reference images", hint))
    return missing
