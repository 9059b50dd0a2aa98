"""Which weights a model pair was made of, for run records and cache keys: per network (base, distilled, the
shared components: VAE and text encoders), where it came from (hub id and the revision found in the local
Hugging Face cache, or a local path) and a hash of its weights (the files' bytes, memoised by path + mtime +
size in `core.fingerprint`; the state of in-memory networks for the tiny pairs).

It reads the same config keys `loading` loads from (`path`, or `repo` + `subfolder` + `variant`, or `repo` +
`file` into the architecture of `config_repo`), and only the local cache: it never downloads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ..core.fingerprint import digest, file_hash, files_hash, folder_hash, module_hash, weight_files
from .hub import local_folder

DENOISER_FOLDERS = ("unet", "transformer")  # replaced by the pair's own networks: not part of "components"


def pair_provenance(
    model: DictConfig, pair: Any = None, roles: tuple[str, ...] = ("base", "distilled", "components")
) -> dict[str, dict[str, Any]]:
    """{"base": ..., "distilled": ..., "components": ...}: source, revision, weights hash of each of `roles`
    (distill loads no distilled network: it leaves that role out)."""
    if model.get("tiny"):
        return {role: value for role, value in _tiny(model, pair).items() if role in roles}
    out = {role: _network(model[role].network) for role in ("base", "distilled") if role in roles}
    if "components" in roles:
        out["components"] = _components(model.components, model.get("family"))
    for role in ("base", "distilled"):
        scheduler = _local_scheduler(model, role) if role in out else None
        if scheduler is not None:
            out[role]["scheduler"] = scheduler
    return out


def _local_scheduler(model: DictConfig, role: str) -> dict[str, Any] | None:
    """A role's scheduler config read from a folder on this machine other than the components folder: its path
    and the hash of its bytes (an edit in place samples otherwise under the same names). None for the rest: a hub
    snapshot is named by its revision, and the components folder's configs are part of its hash."""
    conf = model[role].get("scheduler") or {}
    folder = local_folder(conf.get("repo"))
    if folder is None:
        return None
    config = (folder / str(conf.get("subfolder", "scheduler")) / "scheduler_config.json").expanduser()
    components = (model.get("components") or {}).get("path")
    if components and config.resolve().is_relative_to(Path(str(components)).expanduser().resolve()):
        return None
    return {"path": str(config.resolve()), "config_hash": file_hash(config) if config.is_file() else None}


def role_hashes(models: dict[str, dict[str, Any]], roles: Any) -> dict[str, Any]:
    """The weights hash of each of `roles` in a provenance record, and the hash of a role's scheduler config where
    `_local_scheduler` keeps one (only then: the digests of every other pair are as before)."""
    hashes: dict[str, Any] = {role: (models.get(role) or {}).get("weights_hash") for role in roles}
    for role in roles:
        scheduler = (models.get(role) or {}).get("scheduler")
        if isinstance(scheduler, dict):
            hashes[f"{role} scheduler"] = scheduler.get("config_hash")
    return hashes


def hashed_provenance(model: DictConfig, roles: tuple[str, ...]) -> dict[str, dict[str, Any]] | None:
    """`pair_provenance` of `roles` with no pair loaded, hashed from the weights' files (memoised); None where it
    cannot tell one set of weights from another: a tiny pair (built in memory) or weights not on this machine."""
    if model.get("tiny"):
        return None
    record = pair_provenance(model, roles=roles)
    if any(value.get("weights_hash") is None for value in record.values()):
        return None
    return record


def hashed_weights(model: DictConfig, roles: tuple[str, ...]) -> str | None:
    """One digest of the weights of `roles` hashed from their files (memoised), without loading them; None where
    `hashed_provenance` cannot tell (a tiny pair, weights not on this machine)."""
    record = hashed_provenance(model, roles)
    return None if record is None else digest(role_hashes(record, roles))[:12]


def pair_weights_hash(model: DictConfig, pair: Any = None, roles: tuple[str, ...] = ("base", "components")) -> str:
    """One digest of the weights of these networks of the pair (a cache key part)."""
    return digest(role_hashes(pair_provenance(model, pair), roles))


def _tiny(model: DictConfig, pair: Any) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for role in ("base", "distilled"):
        # a role the pair was loaded without holds the other's network: it has no hash of its own here
        spec = getattr(pair, role, None) if role in getattr(pair, "loaded", (role,)) else None
        out[role] = {
            "source": f"tiny random network (seed {model[role].get('seed')})",
            "weights_hash": module_hash(spec.network) if spec is not None else None,
        }
    pipe = getattr(pair, "pipe", None)
    parts = [getattr(pipe, name) for name in ("vae", "text_encoder", "text_encoder_2") if getattr(pipe, name, None)]
    out["components"] = {
        "source": "tiny random components",
        "weights_hash": module_hash(*parts) if parts else None,
    }
    return out


def _network(conf: DictConfig) -> dict[str, Any]:
    if conf.get("path"):
        return _local(conf.path)
    if conf.get("file"):
        found = _cached(conf.repo, conf.file)
        record = {"hub_id": str(conf.repo), "file": str(conf.file), **_revision(found)}
        record["weights_hash"] = folder_hash(found) if found else None
        if conf.get("lora"):  # a LoRA file on the base network (its architecture): no architecture of its own
            record["lora"] = True
            return record
        architecture = _cached(conf.config_repo, _join(conf.get("config_subfolder"), "config.json"))
        record["architecture"] = {"hub_id": str(conf.config_repo), **_revision(architecture)}
        return record
    subfolder = conf.get("subfolder")
    config = _cached(conf.repo, _join(subfolder, "config.json"))
    record = {"hub_id": str(conf.repo), "subfolder": subfolder, "variant": conf.get("variant"), **_revision(config)}
    files = _variant_files(weight_files(config.parent), conf.get("variant")) if config else []
    record["weights_hash"] = files_hash(files, root=config.parent) if files else None
    return record


def _components(conf: DictConfig, family: str | None) -> dict[str, Any]:
    if conf.get("path"):  # a local pipeline folder: its denoiser is the pair's base, hashed as that role
        folder = Path(str(conf.path)).expanduser()
        if not folder.is_dir():
            return _local(conf.path)
        files = [p for p in weight_files(folder) if p.relative_to(folder).parts[0] not in DENOISER_FOLDERS]
        return {"path": str(folder.resolve()), "weights_hash": files_hash(files, root=folder) if files else None}
    index = _cached(conf.repo, "model_index.json")
    record = {"hub_id": str(conf.repo), "variant": conf.get("variant"), **_revision(index)}
    if index is None:
        record["weights_hash"] = None
        return record
    root = index.parent
    files = [p for p in weight_files(root) if p.parent != root and p.relative_to(root).parts[0] not in DENOISER_FOLDERS]
    files = _variant_files(files, conf.get("variant"))
    record["weights_hash"] = files_hash(files, root=root) if files else None
    return record


def _local(path: Any) -> dict[str, Any]:
    folder = Path(str(path)).expanduser()
    if not folder.exists():
        return {"path": str(folder), "weights_hash": None}
    return {"path": str(folder.resolve()), "weights_hash": folder_hash(folder)}


def _join(subfolder: Any, name: str) -> str:
    return f"{subfolder}/{name}" if subfolder else name


def _cached(repo: Any, filename: str) -> Path | None:
    """The file in the local Hugging Face cache (never downloaded), or in the folder `repo` names when it is a
    local copy (`local_folder`), or None."""
    from huggingface_hub import try_to_load_from_cache

    folder = local_folder(repo)
    if folder is not None:
        return folder / filename if (folder / filename).is_file() else None
    try:
        found = try_to_load_from_cache(str(repo), filename)
    except ValueError:
        return None
    return Path(found) if isinstance(found, str) else None


def _revision(found: Path | None) -> dict[str, Any]:
    """The commit of the snapshot a cached file belongs to (…/snapshots/<commit>/…)."""
    if found is None:
        return {"revision": None, "note": "not found (Hugging Face cache, or the local folder named)"}
    parts = found.parts
    if "snapshots" in parts:
        return {"revision": parts[parts.index("snapshots") + 1]}
    return {"revision": None}


def _variant_files(files: list[Path], variant: Any) -> list[Path]:
    """The weight files diffusers loads for a variant: `name.<variant>.ext` (none: names without a variant),
    safetensors over .bin where a folder has both."""
    chosen = [p for p in files if f".{variant}." in p.name] if variant else []
    if not chosen:  # no variant asked, or none stored: diffusers falls back to the plain files
        chosen = [p for p in files if p.name.count(".") == 1]
    folders_with_safetensors = {p.parent for p in chosen if p.suffix == ".safetensors"}
    return [p for p in chosen if p.suffix == ".safetensors" or p.parent not in folders_with_safetensors]
