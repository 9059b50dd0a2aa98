"""Before any work: is every network a command will load present on this machine?

Each check reads only the local disk (the Hugging Face cache and local folders), never the network, so a command
can list everything that is missing at once, with the command or setting that fixes each, before it loads
anything or generates a single image. Metrics add their own checks (`metrics/preflight.py`).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..core.errors import UserError
from .hub import ROLES, hub_calls, local_folder, network_roles, variant_present

HF_FILES = {  # what a hub read of each kind needs in the cache before it can succeed offline
    "pipeline": "model_index.json",
    "network": "config.json",
    "network_config": "config.json",
    "scheduler_config": "scheduler_config.json",
}
WEIGHT_PREFIXES = ("diffusion_pytorch_model", "model")
PART_WEIGHTS = {  # a pipeline part's weights file names, by the library that loads it (model_index.json)
    "diffusers": ("diffusion_pytorch_model",),
    "transformers": ("model", "pytorch_model"),
}


@dataclass(frozen=True)
class Missing:
    """One thing a command needs that is not on this machine, and how to get it there."""

    what: str
    fix: str
    downloadable: bool = False  # the loader fetches it itself when the hub may be reached (HF_HUB_OFFLINE=0)

    def line(self) -> str:
        return f"{self.what}: {self.fix}"


def hf_home() -> str:
    return os.environ.get("HF_HOME", "~/.cache/huggingface")


def hf_cached(repo: str, filename: str) -> Path | None:
    """The cached file of a hub repo, or None; reads the local cache only. A name that is no hub id (`./x`,
    `a b`) has no cached file."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo, filename)
    except ValueError:  # huggingface_hub's HFValidationError: not a repo id
        return None
    return Path(found) if isinstance(found, str) else None


KIND_WORDS = {
    "pipeline": "VAE + text encoders",
    "network": "network",
    "network_config": "network architecture",
    "weights": "network weights",
    "scheduler_config": "scheduler config",
}


PLAIN_WEIGHTS = ("safetensors", "bin", "safetensors.index.json", "bin.index.json")  # after `<prefix>.`: no variant


def weights_missing(folder: Path, variant: object = None, prefixes: tuple[str, ...] = WEIGHT_PREFIXES) -> str | None:
    """What a diffusers network folder (or a pipeline part whose weights take `prefixes`) lacks for from_pretrained
    to find its weights, None when nothing: some weights file beside its config.json and, without a variant, a plain
    one (a copy of only `diffusion_pytorch_model.fp16.safetensors` loads only with variant=fp16)."""
    names = sorted(
        p.name
        for p in folder.iterdir()
        if p.name.startswith(prefixes) and (".safetensors" in p.name or ".bin" in p.name)
    )
    if not names:
        named = " or ".join(f"{prefix}.safetensors / .bin" for prefix in prefixes)
        return f"no weights file beside its config.json ({named})"
    if not variant and not any(name.split(".", 1)[1] in PLAIN_WEIGHTS for name in names):
        return f"only variant weights ({names[0]}), and this preset reads the plain ones (no variant)"
    return None


# model_index.json entries loaded without weights, named by a word in their class (T5TokenizerFast,
# CLIPImageProcessor): their folder holds only its own settings files
WEIGHTLESS_CLASSES = ("Tokenizer", "Scheduler", "Processor", "FeatureExtractor")


# model_index.json entries the loaders pass to the pipeline themselves: never read from its folder
PASSED_PARTS = ("unet", "transformer", "safety_checker")


def pipeline_parts_missing(folder: Path, variant: object = None) -> str | None:
    """What a pipeline folder (a local copy, or a hub repository's cached snapshot) lacks of the parts its
    model_index.json names, None when nothing: each part DiffusionPipeline.from_pretrained loads itself must be a
    subfolder, and one whose class holds weights needs its config.json and weights (a copy of `unet/` and
    `model_index.json` alone failed at load, after both networks, naming the root folder)."""
    import json

    try:
        index = json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError) as error:
        return f"its model_index.json is unreadable ({error})"
    absent, problems = [], []
    for name, entry in sorted(index.items()) if isinstance(index, dict) else ():
        if name.startswith("_") or name in PASSED_PARTS or not isinstance(entry, list) or None in entry[:2]:
            continue
        part = folder / name
        if not part.is_dir():
            absent.append(f"{name}/")
        elif not any(word in str(entry[-1]) for word in WEIGHTLESS_CLASSES):
            prefixes = PART_WEIGHTS.get(str(entry[0]), WEIGHT_PREFIXES)
            if not (part / "config.json").is_file():
                problems.append(f"{name}/ holds no config.json")
            elif problem := weights_missing(part, variant_present(part, variant).get("variant"), prefixes):
                problems.append(f"{name}/ holds {problem}")
    if absent:
        verb = "is" if len(absent) == 1 else "are"
        problems.insert(0, f"{' and '.join(absent)} {verb} not there (its model_index.json names them)")
    return "; ".join(problems) or None


def _hub_missing(call) -> tuple[str, str, str] | None:
    """(repo/file, words for what it is, what is wrong with what is there: "" for absent) of a hub read whose file
    is not in the local cache (or, for a `repo` that is a local folder, not in that folder), else None."""
    where = f"{call.subfolder}/" if call.subfolder else ""
    filename = call.file if call.kind == "weights" else where + HF_FILES[call.kind]
    folder = local_folder(call.repo)
    if folder is not None:
        found = folder / filename if (folder / filename).is_file() else None
    else:
        found = hf_cached(call.repo, filename)
    problem = pipeline_parts_missing(found.parent, call.variant) if found and call.kind == "pipeline" else None
    if problem is not None:  # a download cut short, or of some files only
        return f"{call.repo}/{where}model_index.json's parts", "VAE + text encoders", problem
    if found is not None and call.kind == "network":
        # the config alone is not the network: its weights must sit beside it (a download cut short has none)
        problem = weights_missing(found.parent, call.variant)
        if problem is not None:
            return f"{call.repo}/{where}{WEIGHT_PREFIXES[0]}.*", "network weights", problem
    return None if found is not None else (f"{call.repo}/{filename}", KIND_WORDS[call.kind], "")


# Hub repositories that download only for an account that accepted their licence: without it, `hf download`
# fails with an access error that does not say so.
GATED = (
    "black-forest-labs/FLUX.1-dev",
    "stabilityai/stable-diffusion-3.5-large",
    "stabilityai/stable-diffusion-3.5-large-turbo",
)


def _hub_items(model: DictConfig, roles: tuple[str, ...]) -> list[Missing]:
    """The missing hub files, one item per file even when both models read it, with every role that needs it."""
    found: dict[str, tuple[list[str], str, object, list[str], str]] = {}
    for call in hub_calls(model, roles):
        missing = _hub_missing(call)
        if missing is not None:
            roles, _, _, keys, _ = found.setdefault(missing[0], ([], missing[1], call, [], missing[2]))
            roles.append(call.role)
            keys.append(copy_setting(model, call))  # each role's own
    items = []
    for target, (roles, words, call, settings, problem) in found.items():
        keys = " and ".join(settings)
        what = f"{'+'.join(roles)} {words} {target}"
        folder = local_folder(call.repo)
        if folder is not None:  # the user's own folder: nothing to download
            if folder.is_file() and call.kind == "weights":  # the weights file given where its folder is asked for
                problem = f"{folder} is a file: the key takes the folder holding it ({folder.parent})"
            elif folder.is_file():  # a config file given where the repository's copy is asked for
                problem = f"{folder} is a file: the key takes the copy of the repository (the folder at its root)"
            elif not folder.exists():
                problem = f"the folder {folder} does not exist"
            items.append(Missing(what, f"{problem or 'not found there'}; set {keys}"))
            continue
        command = f"hf download {call.repo}" + (f" {call.file}" if call.kind == "weights" else "")
        gated = " (a gated repository: accept its licence on its hub page, then `hf auth login`)"
        fix = f"`{command}`{gated if str(call.repo) in GATED else ''} (HF_HOME={hf_home()}) or {keys}"
        items.append(Missing(what, f"{problem}: {fix}" if problem else fix, True))
    return items


def copy_setting(model: DictConfig, call) -> str:
    """The setting that points `call` at a local copy of its repository, as typed on the command line."""
    return f"{settable(model, local_key(call.kind, call.role))}={copy_folder(call, '/local/copy')}"


def copy_folder(call, root: str = "/path/to/local/copy") -> str:
    """Where in a local copy of `call`'s repository its setting points: a network folder is the copy's subfolder
    (`network.path=/local/copy/unet`), the other keys take the copy's root."""
    return root + (f"/{call.subfolder}" if call.kind == "network" and call.subfolder else "")


def local_key(kind: str, role: str) -> str:
    """The setting that points a hub read of `kind` at a local copy instead (a folder laid out as the repo)."""
    if role == "components":
        return "model.components.path"
    return {
        "scheduler_config": f"model.{role}.scheduler.repo",
        "network_config": f"model.{role}.network.config_repo",
        "weights": f"model.{role}.network.repo",  # a folder holding the file: bare weights and LoRA students
    }.get(kind, f"model.{role}.network.path")


def settable(model: DictConfig, key: str) -> str:
    """`key` as the command line sets it: `+key` where the pair's config file has no such key
    (`model.base.network.path` of a hub pair), which Hydra refuses to set without the `+`. The file's, not `model`'s:
    a key the user added with `+` is in `model`, and typed again without it would be refused."""
    own = _config_file_pair(model)
    parent, _, name = key.removeprefix("model.").rpartition(".")
    node = OmegaConf.select(own, parent) if parent else own
    return key if isinstance(node, DictConfig) and name in node else f"+{key}"


class Setting:
    """`settable(model, key)`, worked out when a message shows it (`str`, an f-string): a load that succeeds
    shows none, and working it out composes the pair's config file."""

    def __init__(self, model: DictConfig, key: str) -> None:
        self.model, self.key = model, key

    def __str__(self) -> str:
        return settable(self.model, self.key)


def _config_file_pair(model: DictConfig) -> DictConfig:
    """The pair as its config file has it (`model`, where no file has its name)."""
    from ..core.config import available, search_dirs

    name = str(model.get("name", ""))
    folders = tuple(str(folder) for folder in search_dirs())  # a user's conf folder may hold a pair of that name
    if name not in available("model"):
        return model
    try:
        return _composed_pair(name, folders)
    except UserError:  # inside a Hydra multirun job (ablate's points), where Hydra cannot compose again
        return model


@functools.cache
def _composed_pair(name: str, folders: tuple[str, ...]) -> DictConfig:
    """Composed once a process and search path: `models` and `--help` ask for every pair's missing items (a compose
    costs ~0.1 s)."""
    from ..core.config import compose

    pair = compose("generate", [f"model={name}"], checked=False).model  # its keys: no checks (they import diffusers)
    OmegaConf.set_readonly(pair, True)  # shared by every caller: read only
    return pair


def _local_path(model: DictConfig, role: str) -> str | None:
    section = model.get(role) or {}
    return section.get("path") if role == "components" else (section.get("network") or {}).get("path")


def _local_weights_missing(model: DictConfig, role: str, folder: Path) -> str | None:
    """A local network folder's weights, as its loader reads them: the variant where the folder has files of it
    (`variant_present`), else the plain files."""
    return weights_missing(folder, variant_present(folder, model[role].network.get("variant")).get("variant"))


def pair_missing(model: DictConfig, roles: tuple[str, ...] = ROLES) -> list[Missing]:
    """What of this pair loaded for `roles` is not on disk: local `path:` folders, then every hub read its loader
    makes."""
    if model.get("tiny"):
        return []
    missing: list[Missing] = []
    for role in ("components", *network_roles(model, roles)):
        path = _local_path(model, role)
        key = "model.components.path" if role == "components" else f"model.{role}.network.path"
        folder = Path(str(path)).expanduser() if path else None
        if folder is not None and not folder.exists():
            missing.append(
                Missing(f"{role} folder {path}", f"not found; set {settable(model, key)}=/folder/that/exists")
            )
        elif folder is not None and folder.is_file():  # a weights or config file given for its folder
            index = "model_index.json" if role == "components" else "config.json"
            parent = f"; {folder.parent} holds one" if (folder.parent / index).is_file() else ""
            missing.append(
                Missing(
                    f"{role} {'folder' if role == 'components' else 'network'} {path}",
                    f"is a file: the key takes the folder holding {index} and the weights{parent}; set "
                    f"{settable(model, key)}=<such a folder>",
                )
            )
        elif folder is not None and role == "components" and not (folder / "model_index.json").is_file():
            # the shared parts are read as a pipeline folder, after both networks have loaded: said before
            missing.append(
                Missing(
                    f"components folder {path}",
                    f"holds no model_index.json, so it is no diffusers pipeline folder (a pipeline repository's "
                    f"root); set {settable(model, key)}=<such a folder>",
                )
            )
        elif (
            folder is not None
            and role == "components"
            and (problem := pipeline_parts_missing(folder, model.components.get("variant")))
        ):
            missing.append(
                Missing(f"components folder {path}", f"{problem}; set {settable(model, key)}=<a complete copy>")
            )
        elif folder is not None and role != "components" and not (folder / "config.json").is_file():
            # a network folder is read by from_pretrained: without its config.json it fails only once loading
            # a repository's root given for its network's folder (unet/, transformer/)
            network = model[role].network
            names = [network.get("subfolder"), network.get("config_subfolder"), "unet", "transformer"]
            inside = [name for name in names if name and (folder / str(name) / "config.json").is_file()]
            where = f"; {folder / str(inside[0])} is one" if inside else ""
            missing.append(
                Missing(
                    f"{role} network {path}",
                    f"holds no config.json, so it is no diffusers network folder (a distill run's network is its "
                    f"student/ folder){where}; set {settable(model, key)}=<such a folder>",
                )
            )
        elif folder is not None and role != "components" and (problem := _local_weights_missing(model, role, folder)):
            missing.append(
                Missing(f"{role} network {path}", f"{problem}; set {settable(model, key)}=<a folder with them>")
            )
    # every part local still reads the schedulers' configs (`model.<role>.scheduler.repo`)
    return missing + _hub_items(model, roles)


def pair_present(model: DictConfig) -> bool:
    return not pair_missing(model)


def downloads_allowed() -> bool:
    """Only an explicit HF_HUB_OFFLINE=0 says the hub may be reached: otherwise a missing checkpoint would cost a
    timeout on a node without network before failing."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("0", "false", "no", "off")


def fail_if_missing(missing: list[Missing], command: str, listing: str = "") -> list[Missing]:
    """One line naming every missing item and its fix (exit 2), before any work, and `listing`, a command that
    lists the pair's one a line. With HF_HUB_OFFLINE=0 what the loaders download themselves is returned (to be
    listed) instead of failing."""
    if downloads_allowed():
        blocking = [item for item in missing if not item.downloadable]
        if not blocking:
            return missing
    if missing:
        items = "; ".join(f"({i}) {m.line()}" for i, m in enumerate(missing, 1))
        # said before the items: after the last one it read as that item's advice alone
        notes = [f"`{listing}` lists the pair's one a line"] if listing else []
        if any(m.downloadable for m in missing) and not downloads_allowed():
            notes.append("HF_HUB_OFFLINE=0 lets the loaders download those a hub id names")
        said = f" ({'; '.join(notes)})" if notes else ""
        raise UserError(f"{command} cannot start, {len(missing)} missing{said}: {items}")
    return []
