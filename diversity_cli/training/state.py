"""A distillation run directory: its settings, checkpoints, log and outputs, and the resume / overwrite rules.

Layout of `out/`: `run.json` (settings fingerprint and config, finished flag), `checkpoints/iter_NNNNNN/`
(accelerate state: student, fake score, optimisers, RNG, iteration), `log.csv`, `student/` (the final student
network, diffusers format), `config.yaml`, `README.md`. Only these names are ever written or removed.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..core.errors import UserError

OWNED = ("run.json", "log.csv", "config.yaml", "README.md", "checkpoints", "student")
LOG_COLUMNS = ["iteration", "generator_loss", "dmd_loss", "first_step_loss", "first_step_floor", "fake_loss", "seconds"]
# Keys that do not change what a given iteration computes: a run may be resumed or extended with other values.
RUN_ONLY_KEYS = ("out", "iterations", "checkpoint_every", "keep_checkpoints", "resume", "overwrite", "device")


def fingerprint_config(cfg: DictConfig) -> dict[str, Any]:
    config = OmegaConf.to_container(cfg, resolve=True)
    return {key: value for key, value in config.items() if key not in RUN_ONLY_KEYS}


def fingerprint(cfg: DictConfig) -> str:
    text = json.dumps(fingerprint_config(cfg), sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): value}


class RunState:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.run_json = self.root / "run.json"
        self.log_csv = self.root / "log.csv"
        self.checkpoints = self.root / "checkpoints"
        self.student = self.root / "student"

    # -- what is there ----------------------------------------------------------------------------------------
    def read(self) -> dict[str, Any] | None:
        return json.loads(self.run_json.read_text()) if self.run_json.exists() else None

    def latest_checkpoint(self) -> tuple[int, Path] | None:
        found = sorted(self.checkpoints.glob("iter_*")) if self.checkpoints.is_dir() else []
        found = [p for p in found if (p / "done").exists()]  # a checkpoint cut short by a crash is not one
        return (int(found[-1].name.split("_")[1]), found[-1]) if found else None

    def owned_present(self) -> list[str]:
        return [name for name in OWNED if (self.root / name).exists()]

    # -- deciding -----------------------------------------------------------------------------------------------
    def plan(self, cfg: DictConfig) -> int | None:
        """The iteration to resume from (0: a fresh run), or None when the run is already complete.
        Raises UserError where going on would replace or mix a different run."""
        if cfg.overwrite:
            return 0  # the caller clears (one process of a multi-process run)
        record = self.read()
        if record is None:
            present = self.owned_present()
            if present:
                raise UserError(
                    f"{self.root} holds {', '.join(present)} but no run.json, so not a distill run of these settings; "
                    "use another out= or add overwrite=true"
                )
            return 0
        if record["fingerprint"] != fingerprint(cfg):
            mine = _flatten(fingerprint_config(cfg))
            theirs = _flatten(record["config"])
            keys = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            raise UserError(
                f"{self.root} holds a distill run with different settings ({', '.join(keys[:5]) or 'config'}); "
                "use another out= or add overwrite=true"
            )
        latest = self.latest_checkpoint()
        done = latest[0] if latest else 0
        if done > int(cfg.iterations):
            raise UserError(
                f"{self.root} already holds {done} iterations, more than iterations={cfg.iterations}; "
                f"ask for iterations>={done}, or add overwrite=true to start again"
            )
        if done == int(cfg.iterations) and record.get("finished") and self.student.exists():
            return None
        if done > 0 and not cfg.resume:
            raise UserError(
                f"{self.root} holds a run at iteration {done} and resume=false; "
                "use resume=true to continue it, or overwrite=true to start again"
            )
        return done

    def clear(self) -> None:
        for name in OWNED:
            path = self.root / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    # -- writing ------------------------------------------------------------------------------------------------
    def write_record(self, cfg: DictConfig, finished: bool, **extra: Any) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        record = {"fingerprint": fingerprint(cfg), "finished": finished, "config": fingerprint_config(cfg), **extra}
        self.run_json.write_text(json.dumps(record, indent=2, default=str) + "\n")

    def checkpoint_dir(self, iteration: int) -> Path:
        return self.checkpoints / f"iter_{iteration:06d}"

    def mark_complete(self, path: Path, keep: int) -> None:
        """Seal a written checkpoint and drop all but the newest `keep` sealed ones."""
        (path / "done").write_text("")
        sealed = [p for p in sorted(self.checkpoints.glob("iter_*")) if (p / "done").exists()]
        for old in sealed[: max(len(sealed) - keep, 0)]:
            shutil.rmtree(old)

    def read_log(self) -> list[dict[str, str]]:
        if not self.log_csv.exists():
            return []
        with self.log_csv.open(newline="") as f:
            return list(csv.DictReader(f))

    def truncate_log(self, iteration: int) -> None:
        """Keep the rows up to `iteration`: rows written after the last checkpoint are computed again."""
        rows = [row for row in self.read_log() if int(row["iteration"]) <= iteration]
        self.log_csv.unlink(missing_ok=True)
        self.append_log(rows)

    def append_log(self, rows: list[dict[str, Any]]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        new = not self.log_csv.exists()
        with self.log_csv.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=LOG_COLUMNS)
            if new:
                writer.writeheader()
            writer.writerows(rows)
