"""`diversity-cli cache info | clear [kind ...]`: show or empty the user cache (embeddings, FID reference
statistics, k=auto commitment records, weight-file hashes). Only files the toolkit wrote are deleted."""

from __future__ import annotations

from ..core.cache import KINDS, cache_info, cache_root, clear_cache
from ..core.errors import UserError, did_you_mean

ACTIONS = ("info", "clear")


def main(overrides: list[str]) -> None:
    if not overrides:
        raise UserError(f"cache needs an action: {' | '.join(ACTIONS)} (e.g. `diversity-cli cache info`)")
    if overrides[0] not in ACTIONS:
        near = did_you_mean(overrides[0], ACTIONS) or ";"
        raise UserError(f"cache {overrides[0]}: no such action{near} the actions: {' | '.join(ACTIONS)}")
    action, kinds = overrides[0], overrides[1:]
    unknown = [kind for kind in kinds if kind not in KINDS and action != "info"]  # info takes none: no did-you-mean
    if unknown or (kinds and action == "info"):
        near = (did_you_mean(unknown[0], KINDS) or ";") if unknown else ":"
        allowed = f"no such kind{near} the kinds: " + ", ".join(KINDS) if unknown else "`cache info` takes no argument"
        raise UserError(f"cache {action} {' '.join(kinds)}: {allowed}")
    if action == "info":
        print(f"cache root: {cache_root()} (set DIVERSITY_CLI_CACHE to move it)")
        for item in cache_info():
            print(f"  {item['kind']:13s} {item['files']:6d} file(s) {_size(item['bytes']):>10s}  {item['holds']}")
        return
    removed = clear_cache(kinds or None)
    for kind, count in removed.items():
        print(f"cleared {kind}: {count} file(s)")


def _size(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)
