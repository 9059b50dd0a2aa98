"""Adapters on the networks of a model pair: read a file, recognise its format, apply it at a scale, remove it.

Formats (recognised by their keys):
- `lora`: diffusers / peft LoRA (`unet.<module>.lora_A.weight`, older `...lora.down.weight`), as written by
  diffusers' `save_lora_weights` and by `train-lora`.
- `kohya`: `lora_unet_<module_with_underscores>.lora_down.weight` / `.lora_up.weight` / `.alpha`. This is the
  Concept Sliders repository's format (rohitgandikota/sliders, `LoRANetwork.save_weights`) as well as kohya's
  sd-scripts'. diffusers' LoRA loader converts it itself (alpha / rank becomes the layer's scaling), SDXL's
  `input_blocks` naming included, so no conversion of ours is involved.
- `custom_diffusion`: Custom Diffusion attention weights (`<attention>.processor.to_k_custom_diffusion.weight`,
  ...), as `save_attn_procs` writes them.

LoRA-type adapters are loaded by the pipeline's own loader (`load_lora_weights`: kohya conversion, text-encoder
parts, network alphas), with the target network put in the pipeline's network slot for the duration: the two
networks of a pair share one architecture, so one file fits both. `scale` is the adapter weight of
`set_adapters` (a slider's strength; negative values push the other way; 0 adds exactly nothing). On leaving,
`unload_lora_weights` takes the layers out again, and the network is the one it was before, bit for bit.

On an adapter-distilled pair (one network, the student being its distillation LoRA) the adapter is stacked: it is
loaded beside the distillation adapter under its own name, the sampler keeps it on for both roles while it switches
the distillation adapter per role (`adapter_pair.activate`), and on leaving only it is deleted.

Custom Diffusion replaces the key/value (and optionally query/output) projections of cross-attention layers;
`scale` interpolates between the target network's own projections (0) and the trained ones (1), and removing
it puts the network's own attention processors back.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..core.errors import UserError, did_you_mean, first_line
from .adapter_pair import has_distillation_adapter
from .loading import NETWORK_SLOT, guarded_load, pickle_refusal, refused_pickle

ADAPTER_NAME = "transfer"  # the adapter name inside diffusers / peft while it is applied
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
KNOWN_FILES = (
    "pytorch_lora_weights.safetensors",
    "pytorch_custom_diffusion_weights.safetensors",
    "pytorch_custom_diffusion_weights.bin",
    "pytorch_lora_weights.bin",
)
METADATA = "adapter.json"  # written by train-lora beside its weights: concept, source model, ...
KINDS = {
    "lora": "diffusers/peft LoRA",
    "kohya": "kohya-style LoRA (Concept Sliders repository format)",
    "custom_diffusion": "Custom Diffusion attention weights",
}
# The down / A matrix of one LoRA layer, in each key style diffusers reads.
_LORA_DOWN = (".lora_A.weight", ".lora.down.weight", ".lora_down.weight", ".lora_linear_layer.down.weight")
_TEXT_PREFIXES = ("text_encoder", "lora_te")


@dataclass(frozen=True)
class Adapter:
    path: Path  # the weights file
    kind: str  # a key of KINDS
    keys: tuple[str, ...] = field(repr=False)
    digest: str  # sha1 of the file: part of the settings of images made with it
    meta: dict[str, Any] = field(default_factory=dict, repr=False)  # adapter.json beside the file, if any

    @property
    def name(self) -> str:
        """A short name for tables and folders: adapter.json's `name`, else the file's (or generic file's folder's)."""
        if self.meta.get("name"):
            return str(self.meta["name"])
        stem = self.path.stem
        return self.path.parent.name if stem in {Path(f).stem for f in KNOWN_FILES} else stem

    @property
    def network_layers(self) -> int:
        """How many LoRA layers of the denoising network the file holds (0 for Custom Diffusion)."""
        if self.kind == "custom_diffusion":
            return 0
        return sum(1 for k in self.keys if k.endswith(_LORA_DOWN) and not k.startswith(_TEXT_PREFIXES))


def read_adapter(spec: str, file: str | None = None) -> Adapter:
    """An adapter from a file, a folder holding one, or a hub repo id (`file` names the file inside the folder or
    repo). Reads its keys only; the format is decided here, so a bad file fails before any model loads."""
    path = resolve_file(spec, file)
    keys = _keys(path)
    meta_file = path.parent / METADATA
    meta = json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.is_file() else {}
    return Adapter(path, detect_kind(keys, path), tuple(keys), adapter_digest(path), meta)


def resolve_file(spec: str, file: str | None = None) -> Path:
    given = Path(str(spec)).expanduser()
    if given.is_file():
        return given
    if given.is_dir():
        return _file_in_folder(given, file)
    if re.fullmatch(r"[\w.-]+/[\w.-]+", str(spec)) and not str(spec).startswith((".", "/")):
        from huggingface_hub import hf_hub_download

        name = file or KNOWN_FILES[0]
        download = lambda local: hf_hub_download(spec, name, local_files_only=local)  # noqa: E731
        try:
            return Path(guarded_load(download, spec, "adapter", name))
        except UserError as err:
            # `results/lora_rde` where results/ is a folder here: a mistyped path, not a hub id to download
            if not given.parent.is_dir() or "is not in the local cache" not in str(err):
                raise
            raise UserError(f"{_not_there(spec, given)} (nor a hub repo id of that name in the local cache)") from None
    raise UserError(f"{_not_there(spec, given)} (give a weights file, a folder or a hub repo id)")


def _not_there(spec: str, given: Path) -> str:
    """`adapter=<spec>: no such file or folder`, with the names beside it it may have meant where its folder is
    here (`results/lora_rde`: results/ holds lora_red)."""
    if not given.parent.is_dir():
        return f"adapter={spec}: no such file or folder"
    near = did_you_mean(given.name, sorted(p.name for p in given.parent.iterdir()))
    return f"adapter={spec}: no such file or folder in {given.parent}/{near}"


def _file_in_folder(folder: Path, file: str | None) -> Path:
    if file:
        if not (folder / file).is_file():
            raise UserError(f"adapter file {folder / file} not found")
        return folder / file
    for name in KNOWN_FILES:
        if (folder / name).is_file():
            return folder / name
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))
    if len(found) != 1:
        what = "no weights file" if not found else f"{len(found)} weights files"
        raise UserError(f"adapter folder {folder} holds {what}; name one with adapter_file=NAME")
    return found[0]


TEXT_SUFFIXES = (".csv", ".txt", ".json", ".yaml", ".yml", ".md")  # what no weights file is called


def _weights_file(path: Path) -> None:
    """A text file given as the adapter is said to be one (torch read a CSV as a pickle it refused, "it could run
    code"); a table of adapters is adapters=FILE."""
    if path.suffix.lower() in TEXT_SUFFIXES:
        table = " (a table of adapters is adapters=FILE)" if path.suffix.lower() == ".csv" else ""
        raise UserError(f"adapter {path} is a text file, not weights ({', '.join(WEIGHT_SUFFIXES)}){table}")


def load_state(path: Path) -> dict[str, Any]:
    """The file's tensors (safetensors, or a pickled state dict loaded with weights_only)."""
    _weights_file(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt or foreign file: one line, whatever the reader raised
        if refused_pickle(err):  # a pickle that would run code: said so (torch's own message suggests loading it)
            raise pickle_refusal(f"adapter {path}", err) from None
        raise UserError(f"adapter {path} cannot be read ({type(err).__name__}: {first_line(err)})") from None
    if not isinstance(state, dict):
        raise UserError(f"adapter {path} holds a {type(state).__name__}, not a dict of weights")
    return state


def _keys(path: Path) -> list[str]:
    _weights_file(path)
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), "pt") as f:
                return list(f.keys())
        except Exception as err:
            raise UserError(f"adapter {path} cannot be read ({type(err).__name__}: {first_line(err)})") from None
    return [str(k) for k in load_state(path)]


def detect_kind(keys: list[str], path: Path | str = "adapter") -> str:
    if any("custom_diffusion" in k for k in keys):
        return "custom_diffusion"
    if any(k.startswith(("lora_unet_", "lora_te")) for k in keys):
        return "kohya"
    if any(k.endswith(_LORA_DOWN) for k in keys):
        return "lora"
    sample = ", ".join(keys[:2]) or "no keys"
    raise UserError(
        f"{path}: unknown adapter format (keys like {sample}); expected a diffusers/peft LoRA, a kohya or Concept "
        "Slider LoRA (lora_unet_* keys) or Custom Diffusion weights"
    )


def adapter_digest(path: Path) -> str:
    """An adapter file's identity: sha1 of its bytes, 12 hex digits (transfer.csv's `adapter_hash`)."""
    digest = hashlib.sha1()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


# --- applying -----------------------------------------------------------------------------------------------------


@contextmanager
def applied(pair, role: str, adapter: Adapter, scale: float = 1.0) -> Iterator[None]:
    """`adapter` on the `role` network of `pair` (LoRA text-encoder parts on the shared text encoders) for the
    duration of the block; everything is as before afterwards, also when the block raises."""
    network = pair.spec(role).network
    if adapter.kind == "custom_diffusion":
        with _custom_diffusion(network, adapter, float(scale), f"{pair.name}'s {role} network"):
            yield
    else:
        with _lora(pair, role, network, adapter, float(scale)):
            yield


@contextmanager
def _lora(pair, role: str, network: torch.nn.Module, adapter: Adapter, scale: float) -> Iterator[None]:
    pipe = pair.pipe
    if not hasattr(pipe, "load_lora_weights"):
        raise UserError(f"{pair.name}: diffusers has no LoRA loader for {type(pipe).__name__}; use an SD or SDXL pair")
    where = f"{pair.name}'s {role} network"
    slot = NETWORK_SLOT.get(pair.family, "transformer")  # every flow-matching pipeline keeps it in `transformer`
    stacked = has_distillation_adapter(network)
    original = getattr(pipe, slot)
    setattr(pipe, slot, network)  # the pipeline's loader targets whatever network sits in its slot
    try:
        try:
            with _quiet():  # diffusers and peft log their own lines of a misfit: the one line below is ours
                pipe.load_lora_weights(
                    str(adapter.path.parent), weight_name=adapter.path.name, adapter_name=ADAPTER_NAME
                )
        except (ValueError, KeyError, RuntimeError, OSError, TypeError) as err:
            raise UserError(f"adapter {adapter.path} does not fit {where}: {first_line(err)}") from None
        placed = lora_layers(network)
        expected = adapter.network_layers
        if placed < expected or (expected == 0 and placed == 0 and not _has_text_parts(adapter)):
            raise UserError(
                f"only {placed} of the {expected} network layers of adapter {adapter.path} fit {where}; "
                "was it trained for another architecture?"
            )
        pipe.set_adapters([ADAPTER_NAME], adapter_weights=[scale])
        yield
    finally:
        if not stacked:
            pipe.unload_lora_weights()
        elif ADAPTER_NAME in (getattr(network, "peft_config", None) or {}):
            pipe.delete_adapters([ADAPTER_NAME])  # unload_lora_weights would take the distillation adapter too
        setattr(pipe, slot, original)


@contextmanager
def _quiet() -> Iterator[None]:
    import diffusers

    verbosity = diffusers.utils.logging.get_verbosity()
    diffusers.utils.logging.set_verbosity(diffusers.utils.logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        diffusers.utils.logging.set_verbosity(verbosity)


def lora_layers(network: torch.nn.Module, name: str = ADAPTER_NAME) -> int:
    """How many of the network's layers carry LoRA adapter `name`."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return sum(1 for m in network.modules() if isinstance(m, BaseTunerLayer) and name in getattr(m, "lora_A", {}))


def _has_text_parts(adapter: Adapter) -> bool:
    return any(k.startswith(_TEXT_PREFIXES) for k in adapter.keys)


@contextmanager
def _custom_diffusion(network: torch.nn.Module, adapter: Adapter, scale: float, where: str) -> Iterator[None]:
    processors = custom_diffusion_processors(network, load_state(adapter.path), scale, where)
    saved = dict(network.attn_processors)
    network.set_attn_processor(dict(processors))  # diffusers pops from the dict it is given: a copy
    try:
        yield
    finally:
        network.set_attn_processor(dict(saved))


def custom_diffusion_processors(
    network: torch.nn.Module, state: dict[str, Any], scale: float, where: str = "the network"
) -> dict[str, Any]:
    """Every attention processor of `network`, those the file trained replaced by Custom Diffusion processors
    holding its weights (blended with the network's own projections at `scale`). Layers the file leaves
    untrained keep the network's own processor, which computes the same attention."""
    from diffusers.models.attention_processor import CustomDiffusionAttnProcessor2_0

    grouped: dict[str, dict[str, torch.Tensor]] = defaultdict(dict)
    for key, value in state.items():
        if not isinstance(value, torch.Tensor) or value.numel() == 0:
            continue  # .bin files list the untrained layers with empty entries
        cut = 3 if "to_out" in key else 2  # `...processor.to_out_custom_diffusion.0.weight` has one part more
        parts = key.split(".")
        grouped[".".join(parts[:-cut])][".".join(parts[-cut:])] = value
    processors = dict(network.attn_processors)
    for name, weights in grouped.items():
        if name not in processors or "to_k_custom_diffusion.weight" not in weights:
            raise UserError(f"Custom Diffusion weights for '{name}' do not fit {where}")
        attention = network.get_submodule(name.removesuffix(".processor"))
        hidden, cross = weights["to_k_custom_diffusion.weight"].shape
        processor = CustomDiffusionAttnProcessor2_0(
            train_kv=True,
            train_q_out="to_q_custom_diffusion.weight" in weights,
            hidden_size=hidden,
            cross_attention_dim=cross,
            out_bias="to_out_custom_diffusion.0.bias" in weights,
        )
        try:
            processor.load_state_dict(weights)
        except RuntimeError as err:
            raise UserError(f"Custom Diffusion weights for '{name}' do not fit {where}: {first_line(err)}") from None
        processor.to(attention.to_k.weight.device, attention.to_k.weight.dtype)
        if scale != 1.0:
            _blend(processor, attention, scale)
        processors[name] = processor
    if not grouped:
        raise UserError(f"the Custom Diffusion file holds no trained layer for {where}")
    return processors


@torch.no_grad()
def _blend(processor: torch.nn.Module, attention: torch.nn.Module, scale: float) -> None:
    """Trained projection -> own + scale * (trained - own); lerp is exact at 0 and 1."""
    pairs = [(processor.to_k_custom_diffusion, attention.to_k), (processor.to_v_custom_diffusion, attention.to_v)]
    if processor.train_q_out:
        pairs += [
            (processor.to_q_custom_diffusion, attention.to_q),
            (processor.to_out_custom_diffusion[0], attention.to_out[0]),
        ]
    for trained, own in pairs:
        trained.weight.copy_(torch.lerp(own.weight, trained.weight, scale))
        if trained.bias is not None and own.bias is not None:
            trained.bias.copy_(torch.lerp(own.bias, trained.bias, scale))
