"""The user cache directory shared by every command (reference statistics, commitment records): one root,
`$DIVERSITY_CLI_CACHE` or ~/.cache/diversity_cli, one folder per kind."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "DIVERSITY_CLI_CACHE"


def cache_root() -> Path:
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "diversity_cli"


def check_cache_root() -> None:
    """$DIVERSITY_CLI_CACHE, where set, names a folder or a path one can be made at: checked before any work (a
    file there failed only when the first result was saved, after the work, blaming out=)."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        return
    path = Path(root).expanduser()
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        from .errors import UserError

        raise UserError(
            f"{CACHE_ENV}={root}: {existing} is a file, so no cache folder can be made there; point {CACHE_ENV} at a "
            "folder (unset: ~/.cache/diversity_cli)"
        )


def cache_dir(kind: str) -> Path:
    """The folder of one kind of cached result, e.g. `cache_dir("fid")`."""
    return cache_root() / kind


# What the toolkit writes, per kind: `cache clear` deletes only files whose names match (never a user's file in a
# cache root they pointed elsewhere, e.g. DIVERSITY_CLI_CACHE=~), and `cache info` counts them.
KINDS = {
    "embeddings": (
        "per-image embeddings of `diversity`, one file per embedder fingerprint (and per shard of a sharded run)",
        r"[0-9a-f]{16}(\.\d+-of-\d+)?\.pt",
    ),
    "fid": ("FID reference statistics of `fid`", r"[a-z]+-[0-9a-f]{20}(\.pt|\.json|\.\d+\.tmp)"),
    "commitment": ("base-model commitment records of k=auto", r"[\w.-]+-[0-9a-f]{12,20}\.json"),
    "fingerprints": ("memoised hashes of weight files (path, mtime, size)", r"files\.json"),
}


def cached_files(kind: str, removable: bool = False) -> list[Path]:
    """The files the toolkit wrote in one kind's folder, with the temporaries of its atomic writes (`core.atomic`);
    `removable`: only those a killed writer left, never one a running `fid` or `diversity` is writing."""
    import re

    from .atomic import dead_temporary, is_temporary

    folder = cache_dir(kind)
    if not folder.is_dir():
        return []
    pattern = re.compile(KINDS[kind][1])
    temporary = dead_temporary if removable else is_temporary
    return sorted(p for p in folder.iterdir() if p.is_file() and (pattern.fullmatch(p.name) or temporary(p.name)))


def cache_info() -> list[dict]:
    """Per kind: its folder, what it holds, how many files and bytes."""
    out = []
    for kind, (what, _) in KINDS.items():
        files = cached_files(kind)
        out.append(
            {
                "kind": kind,
                "folder": str(cache_dir(kind)),
                "holds": what,
                "files": len(files),
                "bytes": sum(p.stat().st_size for p in files),
            }
        )
    return out


def clear_cache(kinds: list[str] | None = None) -> dict[str, int]:
    """Delete the toolkit's files of these kinds (all when None); a folder left empty goes too. Returns the count
    deleted per kind. Nothing else in the cache root is touched."""
    removed = {}
    for kind in kinds or list(KINDS):
        files = cached_files(kind, removable=True)
        for path in files:
            path.unlink(missing_ok=True)
        removed[kind] = len(files)
        folder = cache_dir(kind)
        # a kind linked elsewhere (fid/ on a cluster's scratch) keeps its link: rmdir of a link fails after the files
        if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
            folder.rmdir()
    return removed
