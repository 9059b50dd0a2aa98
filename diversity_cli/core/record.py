"""What made a run: one invocation record per command invocation, `runs/<time>-<command>.json` in the run
directory it wrote to.

The CLI opens the invocation (`begin`: command name and exact command line); the library adds what it knows when
it knows it (`record_invocation(root, ...)`: the resolved config, device, weights, schedulers, results). One run
directory holds many invocations (methods, pairs, shards, sweep points), so each invocation has its own file,
rewritten atomically as sections are added; nothing else ever writes it.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .atomic import remove_dead_temporaries, write_text
from .marker import RunMarker

RECORDS = "runs"
LIBRARY = "library"  # the invocation of library code called outside the CLI (tests, notebooks)
SCHEMA = 1
# Every package whose version can change a number this toolkit writes.
PACKAGES = (
    "diversity-cli",
    "torch",
    "torchvision",
    "diffusers",
    "transformers",
    "accelerate",
    "peft",
    "dreamsim",
    "torchmetrics",
    "torch-fidelity",
    "open-clip-torch",
    "pillow",
    "numpy",
    "hydra-core",
)


@dataclass
class Invocation:
    command: str
    argv: list[str]
    line: list[str] | None = None  # the process's own command line where it is no `diversity-cli` one (a SLURM job)
    started: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    files: dict[Path, Path] = field(default_factory=dict)  # run directory -> its record of this invocation
    sections: dict[Path, dict[str, Any]] = field(default_factory=dict)
    said: set[str] = field(default_factory=set)  # notes said once an invocation (not once per ablate point)


_current: Invocation | None = None


def begin(command: str, argv: list[str], line: list[str] | None = None) -> Invocation:
    """Open the invocation the CLI is running (`argv`: the overrides as typed); `line`: the process's command line
    where it is not `diversity-cli <command> <argv>` (an ablate point's job). `finish` closes it."""
    global _current
    _current = Invocation(command, list(argv), line)
    return _current


def finish(exit_code: int) -> None:
    """Close the open invocation: each record it wrote gets when it ended and how (`status`: finished,
    interrupted or failed, with the exit code), rewritten atomically. A record of a run cut short read as one of
    a finished run: they held the same fields."""
    global _current
    invocation, _current = _current, None  # closed once: a later command in this process opens its own
    if invocation is None:
        return
    ended = datetime.now(timezone.utc)
    status = "finished" if exit_code == 0 else "interrupted" if exit_code in (130, 143) else "failed"
    for key, path in invocation.files.items():
        body = invocation.sections[key]
        body.update(ended=ended.isoformat(), status=status, exit_code=exit_code)
        try:
            _write_json(path, body)
        except OSError:  # a full disk or a run directory removed meanwhile: the command's own line said what
            pass


def current() -> Invocation:
    """The open invocation; library code called outside the CLI (tests, notebooks) gets an anonymous one."""
    return _current or begin(LIBRARY, [])


def record_invocation(root: str | Path, **sections: Any) -> Path:
    """Add `sections` (JSON-able values: `config=`, `device=`, `models=`, ...) to this invocation's record in the
    run directory `root`, writing it atomically; returns its path."""
    invocation = current()
    root = Path(root)
    key = root.resolve()
    first = key not in invocation.files
    if first:
        stamp = invocation.started.strftime("%Y%m%dT%H%M%S.%fZ")
        invocation.files[key] = root / RECORDS / f"{stamp}-{invocation.command}-{os.getpid()}.json"
        invocation.sections[key] = _header(invocation)
    body = invocation.sections[key]
    body.update({name: _plain(value) for name, value in sections.items()})
    path = invocation.files[key]
    marker = RunMarker(root)
    marker.claim()
    if first:  # every command records here: what writers killed with -9 left in the directory goes now
        remove_dead_temporaries(root)
    _write_json(path, body)
    rel = f"{RECORDS}/{path.name}"
    if rel not in marker.files():
        marker.record(rel)  # run.json lists every file the toolkit wrote in the directory
    return path


def _header(invocation: Invocation) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "command": invocation.command,
        "command_line": invocation.line or ["diversity-cli", invocation.command, *invocation.argv],
        "overrides": invocation.argv,
        "started": invocation.started.isoformat(),
        # until `finish` says how it ended: a run killed outright (kill -9, a node lost) keeps "running"; a call of
        # the library outside the CLI (a notebook) has no end to record
        "status": "running" if invocation.command != LIBRARY else LIBRARY,
        "pid": os.getpid(),
        "host": platform.node(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "git_commit": git_commit(),
        "source": source_hash(),
        "executable": sys.executable,
    }


def package_versions() -> dict[str, str]:
    """Installed versions, read from package metadata (nothing is imported); torch's as the imported module says it
    once it is, with its build (`2.14.1+cu130`: the metadata may leave the CUDA build out), as versions.json does."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    if "torch" in sys.modules:
        found["torch"] = str(sys.modules["torch"].__version__)
    return found


def git_commit() -> str:
    """The checkout's commit (with `-dirty` when it has changes), or `not a checkout` for an installed wheel."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return "not a checkout"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


@functools.cache  # the package does not change under a running process: read once, not once per record
def source_hash() -> str:
    """A hash of the package's Python files and shipped configs (the presets' steps, timesteps, guidance): what ran,
    also where git cannot say (an installed wheel, an archive: `git_commit` reads `not a checkout` there)."""
    import hashlib

    from .resources import conf_root

    digest = hashlib.sha256()
    for root, pattern in ((Path(__file__).resolve().parents[1], "*.py"), (conf_root(), "*.yaml")):
        for path in sorted(root.rglob(pattern)):
            digest.update(f"{root.name}/{path.relative_to(root).as_posix()}".encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _plain(value: Any) -> Any:
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _write_json(path: Path, body: dict[str, Any]) -> None:
    write_text(path, json.dumps(body, indent=2, sort_keys=True, default=str) + "\n")


def read_records(root: str | Path) -> list[dict[str, Any]]:
    """The invocation records of a run directory (`runs/*.json`, see `core.record`), oldest first; each gets
    `_file`, its path relative to the run. A damaged record is left out."""
    records = []
    for path in sorted((Path(root) / RECORDS).glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict):
            records.append({**record, "_file": f"runs/{path.name}"})
    return sorted(records, key=lambda record: str(record.get("started", "")))
