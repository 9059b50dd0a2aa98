"""Fingerprints: short digests of everything that changes a cached result, so a cache can never hand back a
number made by other weights, other libraries, another image preparation or other images.

A cache key is `digest({...})` of plain parts: `file_hash` of weight files and images (their bytes), `module_hash`
of networks held in memory, `packages(...)` versions, preparation ids. Hashing a multi-GB checkpoint takes
seconds, so `file_hash` is computed once per file version and memoised by (path, mtime, size, ctime): in this process,
and for large files also on disk in the user cache (`fingerprints/files.json`), so the next command reads it back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .atomic import write_text
from .cache import cache_dir

HASH_CHARS = 16  # hex digits kept: 64 bits, ample for telling versions of one file apart
BLOCK = 1 << 22
PERSIST_BYTES = 8 << 20  # files at least this large (weights) keep their hash on disk between commands
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt", ".tar", ".npz", ".onnx")
# What a network is built from beside its weights: its config (layers, prediction type, a scheduler's schedule) and
# a tokenizer's vocabulary. Editing one in place changes the network as surely as new weights do.
CONFIG_SUFFIXES = (".json", ".txt", ".model", ".yaml")
INDEX = "files.json"

_memo: dict[tuple[str, int, int, int], str] = {}


def digest(value: Any) -> str:
    """Digest of a JSON-able value (keys sorted): the same parts give the same key in every process."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]


def _stamp(path: Path) -> tuple[str, int, int, int]:
    # ctime too: unlike mtime it cannot be set back (os.utime, cp -p, rsync -t), so rewritten bytes are never
    # mistaken for the memoised ones; a rename or chmod only costs hashing the file again.
    stat = path.stat()
    return str(path), stat.st_mtime_ns, stat.st_size, stat.st_ctime_ns


def file_stamps(paths: Iterable[str | Path]) -> list[tuple[int, int, int]]:
    """(mtime, size, ctime) of each file: a change of its bytes changes its stamp, read without reading the file (a
    fingerprint over 30,000 images, taken by every shard of an array, must not read them all); a copy of identical
    bytes changes it too, which costs only a recomputation."""
    return [_stamp(Path(p).expanduser())[1:] for p in paths]


def file_hash(path: str | Path) -> str:
    """sha256 of a file's bytes (first HASH_CHARS hex digits), memoised by path + mtime + size (+ ctime)."""
    return file_hashes([path])[0]


def file_hashes(paths: Iterable[str | Path], persist: bool = False) -> list[str]:
    """`file_hash` of many files, reading and writing the on-disk memo once. `persist`: keep every file's hash
    on disk (a reference set of 30k images is re-read by every `fid`), not only large files'."""
    stamps = [_stamp(Path(p).expanduser().resolve()) for p in paths]
    stored = [s for s in stamps if s not in _memo and (persist or s[2] >= PERSIST_BYTES)]
    index = _read_index() if stored else {}
    added = {}
    for stamp in stamps:
        if stamp in _memo:
            continue
        key = "\0".join(map(str, stamp))
        value = index.get(key)
        if value is None:
            sha = hashlib.sha256()
            with open(stamp[0], "rb") as f:
                for block in iter(lambda: f.read(BLOCK), b""):
                    sha.update(block)
            value = sha.hexdigest()[:HASH_CHARS]
            if persist or stamp[2] >= PERSIST_BYTES:
                added[key] = value
        _memo[stamp] = value
    if added:
        _write_index({**_read_index(), **added})
    return [_memo[stamp] for stamp in stamps]


def files_hash(paths: Iterable[str | Path], root: str | Path | None = None, persist: bool = False) -> str:
    """One digest of several files' bytes and names (relative to `root` when given, so a moved folder keeps it)."""
    paths = sorted(Path(p) for p in paths)
    names = [str(p.relative_to(root)) if root is not None else p.name for p in paths]
    return digest(list(zip(names, file_hashes(paths, persist), strict=True)))


def weight_files(folder: str | Path) -> list[Path]:
    """The weight files under a folder (recursively) and the configs beside them: what a network loaded from it
    is made of."""
    folder = Path(folder).expanduser()
    if folder.is_file():
        return [folder]
    suffixes = WEIGHT_SUFFIXES + CONFIG_SUFFIXES
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name.endswith(suffixes))


def folder_hash(folder: str | Path) -> str:
    """Digest of a folder's weight and config files (names and bytes); a single file is hashed as itself."""
    folder = Path(folder).expanduser()
    if folder.is_file():
        return file_hash(folder)
    return files_hash(weight_files(folder), root=folder)


def module_hash(*modules: Any) -> str:
    """Digest of networks' state dicts (names, dtypes, shapes and values): for weights that are not a file."""
    import torch

    sha = hashlib.sha256()
    for module in modules:
        for name, tensor in sorted(module.state_dict().items()):
            value = tensor.detach().cpu().contiguous()
            sha.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
            if value.numel():  # raw bytes: bfloat16 has no numpy type
                sha.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()[:HASH_CHARS]


def weights_fingerprint(sources: Iterable[Any]) -> list[str]:
    """Each weights source as a hash: a file or folder (its weight files' bytes) or an nn.Module (its state)."""
    out = []
    for source in sources:
        if isinstance(source, (str, Path)):
            out.append(folder_hash(source))
        elif hasattr(source, "state_dict"):
            out.append(module_hash(source))
        else:
            raise TypeError(f"cannot fingerprint weights of type {type(source).__name__}")
    return out


def weights_record(sources: Iterable[Any]) -> list[dict[str, str]]:
    """For a run record: each weights source (file, folder or network) and its hash."""
    out = []
    for source, value in zip(sources := list(sources), weights_fingerprint(sources), strict=True):
        if isinstance(source, (str, Path)):
            where = str(Path(source).expanduser().resolve())
        else:
            where = f"in-memory {type(source).__name__}"
        out.append({"source": where, "weights_hash": value})
    return out


def packages(*names: str) -> dict[str, str]:
    """Installed versions of these distributions (package metadata; nothing is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def index_path() -> Path:
    return cache_dir("fingerprints") / INDEX


def _read_index() -> dict[str, str]:
    try:
        return json.loads(index_path().read_text())
    except (OSError, ValueError):
        return {}


def _write_index(index: dict[str, str]) -> None:
    # Two commands writing at once may drop one's entry: that only costs hashing the file again later.
    try:
        write_text(index_path(), json.dumps(index, indent=0, sort_keys=True) + "\n")
    except OSError:
        pass  # a read-only cache only loses the memo
