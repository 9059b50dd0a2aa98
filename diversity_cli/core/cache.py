"""The user cache directory shared by every command (reference statistics, commitment records): one root,
`$DIVERSITY_CLI_CACHE` or ~/.cache/diversity_cli, one folder per kind."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "DIVERSITY_CLI_CACHE"


def cache_root() -> Path:
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "diversity_cli"


def cache_dir(kind: str) -> Path:
    """The folder of one kind of cached result, e.g. `cache_dir("fid")`."""
    return cache_root() / kind
