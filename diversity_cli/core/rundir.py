"""The run directory every command shares: `samples.csv`, images, composed configs, versions, timesteps.

Rows are appended as images are written, so an interrupted run resumes where it stopped; a path is owned by
the settings that produced it, and different settings never replace it without `overwrite=true`.
"""

from __future__ import annotations

import csv
import json
import platform
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SAMPLE_COLUMNS = [
    "method",
    "model",
    "prompt",
    "seed",
    "k",
    "steps",
    "nfe",
    "seconds",
    "path",
    "base_guidance",
    "base_steps",
    "tag",
    "settings",
]


class RunDir:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def samples_csv(self) -> Path:
        return self.root / "samples.csv"

    def read_samples(self) -> list[dict[str, str]]:
        if not self.samples_csv.exists():
            return []
        with self.samples_csv.open(newline="") as f:
            return list(csv.DictReader(f))

    def append_samples(self, rows: Iterable[dict[str, Any]]) -> None:
        rows = list(rows)
        if not rows:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        new = not self.samples_csv.exists()
        with self.samples_csv.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=SAMPLE_COLUMNS, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerows(rows)
            f.flush()

    def drop_samples(self, paths: set[str]) -> None:
        """Remove rows (and their images) for `paths`: used only under overwrite=true."""
        kept = [row for row in self.read_samples() if row["path"] not in paths]
        for path in paths:
            (self.root / path).unlink(missing_ok=True)
        self.samples_csv.unlink(missing_ok=True)
        self.append_samples(kept)

    def save_config(self, name: str, config: Any) -> None:
        from omegaconf import OmegaConf

        folder = self.root / "configs"
        folder.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(config, folder / f"{name}.yaml", resolve=True)

    def save_versions(self, name: str, extra: dict[str, Any] | None = None) -> None:
        path = self.root / "versions.json"
        record = json.loads(path.read_text()) if path.exists() else {}
        record[name] = {**versions(), **(extra or {})}
        path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")

    def save_timesteps(self, name: str, visits: list[tuple[str, int, float]], schedulers: list[str]) -> None:
        """The exact (model, timestep, guidance) of every network call, one row each, per run name."""
        path = self.root / "timesteps.csv"
        columns = ["run", "call", "model", "timestep", "guidance", "scheduler"]
        rows = []
        if path.exists():
            with path.open(newline="") as f:
                rows = [row for row in csv.DictReader(f) if row["run"] != name]
        for call, ((role, timestep, guidance), scheduler) in enumerate(zip(visits, schedulers, strict=True)):
            rows.append(
                {
                    "run": name,
                    "call": call,
                    "model": role,
                    "timestep": timestep,
                    "guidance": guidance,
                    "scheduler": scheduler,
                }
            )
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)


def merge_rows(path: Path, rows: list[dict[str, Any]], key: tuple[str, ...]) -> list[dict[str, Any]]:
    """The rows of a results CSV whose `key` is not among `rows`, then `rows`: a re-run replaces only what it
    recomputed and keeps the rest."""
    if not path.exists():
        return list(rows)
    new_keys = {tuple(str(r[k]) for k in key) for r in rows}
    with path.open(newline="") as f:
        kept = [r for r in csv.DictReader(f) if tuple(r.get(k, "") for k in key) not in new_keys]
    return kept + list(rows)


def versions() -> dict[str, str]:
    import diffusers
    import torch
    import transformers

    from .. import __version__

    return {
        "diversity_cli": __version__,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "git_commit": _git_commit(),
    }


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"
