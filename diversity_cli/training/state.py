"""A distillation run directory: its settings, checkpoints, log and outputs, and the resume / overwrite rules.

Layout of `out/`: `run.json` (the run directory's marker, core/marker.py: the files written there, and under
`distill` the settings fingerprint and config, finished flag), `checkpoints/iter_NNNNNN/` (accelerate state:
student, fake score, optimisers, RNG as safetensors / weights-only tensors; `progress.json`: iteration and seconds),
`log.csv`, `student/` (the final student network, diffusers format), `config.yaml`, `README.md`. Only files listed
in run.json are ever replaced or removed; anything else there (a README of yours, a planted file) is left alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..core.atomic import shared_modes, write_text
from ..core.config import differing_keys
from ..core.errors import UserError, first_line
from ..core.marker import (
    MARKER,
    RunMarker,
    check_folder,
    contained,
    directory_lock,
    refuse_foreign,
    remove_listed,
)
from ..core.pair_settings import NOTE_KEYS, training_settings
from ..core.samples import append_rows, lock_path, parse, rewrite, writer_lock
from ..core.schemas.distill import gan_weight

OWNED = ("run.json", "log.csv", "quality.csv", "quality.png", "config.yaml", "README.md", "checkpoints", "student")
LOG_COLUMNS = [
    "iteration",
    "generator_loss",
    "dmd_loss",
    "first_step_loss",
    "first_step_floor",
    "fake_loss",
    "seconds",
    "gan_loss",  # last: a run from before them gets them (empty) when its log is rewritten on resume
    "discriminator_loss",
]
# quality.csv: the student's quality measured during training (training/monitor.py), one row per measurement.
QUALITY_COLUMNS = [
    "iteration",
    "fid_toyfeat",
    "fid_floor",
    "adherence_mean",
    "adherence_worst",
    "worst_prompt",
    "base_fid_toyfeat",
    "base_adherence_mean",
    "base_adherence_worst",
    "n_fid",
    "n_per_prompt",
    "seconds",
]
LOGS = {"log.csv": LOG_COLUMNS, "quality.csv": QUALITY_COLUMNS}
# Keys that do not change what a given iteration computes: a run may be resumed or extended with other values.
# `monitor` only measures the student (its draws are its own): turning it on mid-run changes no weight.
RUN_ONLY_KEYS = (
    "out",
    "iterations",
    "checkpoint_every",
    "keep_checkpoints",
    "resume",
    "overwrite",
    "device",
    "monitor",
)


def fingerprint_config(cfg: DictConfig) -> dict[str, Any]:
    config = OmegaConf.to_container(cfg, resolve=True)
    if isinstance(config.get("model"), dict):
        config["model"] = training_settings(config["model"])
    if not gan_weight(config):
        config.pop("gan", None)  # off computes what runs from before the GAN term did: their fingerprints hold
    return {key: value for key, value in config.items() if key not in RUN_ONLY_KEYS}


# the pair's words and the other commands' defaults: a run resumed with another label trains the same student
WORDS = ("label", "description", "default_prompt", "default_metric", "default_quality", "default_reference")


def changes_no_training(key: str) -> bool:
    """Whether a dotted setting of distill's config changes nothing the training computes (`model.base.label`,
    `model.auto_k.n`): resuming over it was refused as a run "with different settings". Not the pair's name: the
    student's README names the pair by it."""
    parts = key.split(".")
    if parts[0] != "model" or len(parts) < 2:
        return False
    inside = parts[2:] if parts[1] in ("base", "distilled") else parts[1:]
    if not inside:  # a whole role (`model.base`) given as one value: not a word
        return False
    return inside[0] == "auto_k" or inside[0] in NOTE_KEYS or (len(inside) == 1 and inside[0] in WORDS)


def fingerprint(cfg: DictConfig) -> str:
    text = json.dumps(fingerprint_config(cfg), sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


class RunState:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.run_json = self.root / "run.json"
        self.log_csv = self.root / "log.csv"
        self.checkpoints = self.root / "checkpoints"
        self.student = self.root / "student"
        self.marker = RunMarker(self.root)

    # -- what is there ----------------------------------------------------------------------------------------
    def read(self) -> dict[str, Any] | None:
        """This directory's distill record (the `distill` section of run.json), None when there is none."""
        self._upgrade()
        marker = self.marker.read()
        return marker.get("distill") if marker else None

    def _upgrade(self) -> None:
        """A run.json of a distill run from before run-directory markers becomes a marker listing its files."""
        if not self.run_json.is_file() or self.run_json.is_symlink():
            return
        try:
            old = json.loads(self.run_json.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return  # the marker's reader names the file
        if not isinstance(old, dict) or "fingerprint" not in old or "toolkit" in old:
            return
        files = [
            str(p.relative_to(self.root))
            for name in OWNED
            if name != MARKER
            for p in ([self.root / name] if (self.root / name).is_file() else (self.root / name).rglob("*"))
            if p.is_file() and not p.is_symlink()
        ]
        self.run_json.unlink()  # replaced at once by the marker holding the same record
        self.marker.claim(adopt=files)
        self.marker.update(distill=old)

    def check_foreign(self, folder: Path) -> None:
        """Nothing the run did not write is replaced: refuse when `folder` holds a file run.json does not list."""
        mine = self.marker.files()
        base = contained(self.root, folder.relative_to(self.root))
        for path in sorted(base.rglob("*")) if base.is_dir() else []:
            if path.is_file() or path.is_symlink():
                rel = str(path.relative_to(self.root))
                refuse_foreign(self.root, rel, rel in mine)

    def remove_owned(self, folder: str) -> None:
        """Delete the files run.json lists under `folder`, then the folders left empty; never anything else."""
        remove_listed(self.root, folder)

    def own(self, name: str) -> Path:
        """The path of a file this run writes: refused when someone else's file is there, listed in run.json
        before it is written (a kill in between leaves no unlisted file)."""
        self.marker.claim()
        refuse_foreign(self.root, name, name in self.marker.files())
        self.marker.record(name)
        return self.root / name

    def write_file(self, name: str, text: str) -> None:
        write_text(self.own(name), text)

    def write_progress(self, path: Path, iteration: int, seconds: float) -> None:
        """Training progress of a checkpoint as JSON (accelerate would pickle it, and unpickle it on resume)."""
        write_text(path / "progress.json", json.dumps({"iteration": iteration, "seconds": seconds}) + "\n")

    def load_checkpoint(self, accelerator, iteration: int) -> None:
        """accelerate's state of a checkpoint this run wrote; it reads safetensors and weights-only tensors, so a
        planted pickle is refused (one line), never run."""
        import pickle

        path = self.checkpoint_dir(iteration)
        self.check_foreign(path)
        try:
            accelerator.load_state(str(path))
        except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError) as err:
            reason = first_line(err)
            raise UserError(
                f"{path} cannot be loaded safely ({reason[:160]}); start again with overwrite=true"
            ) from None

    def read_progress(self, path: Path, iteration: int) -> dict[str, Any]:
        pickled = sorted(p.name for p in path.glob("custom_checkpoint_*.pkl"))
        if pickled:
            raise UserError(
                f"{path} holds {pickled[0]}, a pickle diversity-cli never loads (it could run code); resume from "
                "a checkpoint without it, or start again with overwrite=true"
            )
        progress = path / "progress.json"
        if not progress.is_file():
            return {"iteration": iteration, "seconds": 0.0}
        try:
            return json.loads(progress.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise UserError(f"{progress} is damaged; start again with overwrite=true") from None

    def latest_checkpoint(self) -> tuple[int, Path] | None:
        found = sorted(self.checkpoints.glob("iter_*")) if self.checkpoints.is_dir() else []
        found = [p for p in found if (p / "done").exists()]  # a checkpoint cut short by a crash is not one
        return (int(found[-1].name.split("_")[1]), found[-1]) if found else None

    def other_commands_files(self) -> list[str]:
        """Files run.json lists that distill does not write (a generate run's samples.csv, ...); invocation records
        (runs/) are every command's."""
        found = [f for f in self.marker.files() if f.split("/")[0] not in (*OWNED, "runs")]
        return sorted(found, key=lambda f: ("/" in f, f))  # its own files (samples.csv) before its folders

    def owned_present(self) -> list[str]:
        return [name for name in OWNED if (self.root / name).exists()]

    # -- deciding -----------------------------------------------------------------------------------------------
    def plan(self, cfg: DictConfig) -> int | None:
        """The iteration to resume from (0: a fresh run), or None when the run is already complete.
        Raises UserError where going on would replace or mix a different run."""
        record = self.read()
        others = self.other_commands_files() if record is None else []
        if others:  # overwrite=true too: it would put a distill run beside that command's files
            raise UserError(
                f"{self.root} is another command's run directory (its run.json lists {', '.join(others[:3])}), not a "
                "distill run; choose another out="
            )
        if cfg.overwrite:
            if self.root.is_dir() and any(self.root.iterdir()) and self.marker.read() is None:
                raise UserError(
                    f"overwrite=true: {self.root} has no {MARKER}, so diversity-cli did not make it; it deletes only "
                    "in its own run directories (choose another out=)"
                )
            return 0  # the caller clears (one process of a multi-process run)
        if record is None:
            present = [name for name in self.owned_present() if name != MARKER]  # a marker alone is no run
            if present:
                raise UserError(
                    f"{self.root} holds {', '.join(present)} but no run.json, so not a distill run of these settings; "
                    "use another out= or add overwrite=true"
                )
            return 0
        keys = [k for k in differing_keys(fingerprint_config(cfg), record["config"]) if not changes_no_training(k)]
        if record["fingerprint"] != fingerprint(cfg) and keys:
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
        if done > 0 and not cfg.resume:  # a finished run too: "nothing to do" would pass over resume=false
            raise UserError(
                f"{self.root} holds a run at iteration {done} and resume=false; "
                "use resume=true to continue it, or overwrite=true to start again"
            )
        if done == int(cfg.iterations) and record.get("finished") and self.student.exists():
            return None
        return done

    def clear(self) -> None:
        """overwrite=true: remove what earlier distill runs wrote here (files run.json lists), nothing else."""
        with directory_lock(self.root):
            for name in OWNED:
                if name != MARKER:
                    self.remove_owned(name)
            self.marker.update(distill=None)

    # -- writing ------------------------------------------------------------------------------------------------
    def write_record(self, cfg: DictConfig, finished: bool, **extra: Any) -> None:
        self.marker.claim()
        record = {"fingerprint": fingerprint(cfg), "finished": finished, "config": fingerprint_config(cfg), **extra}
        self.marker.update(distill=record)

    def checkpoint_dir(self, iteration: int) -> Path:
        return self.checkpoints / f"iter_{iteration:06d}"

    def partial_dir(self, iteration: int) -> Path:
        return self.checkpoints / f".partial-iter_{iteration:06d}"

    @contextmanager
    def writing(self) -> Iterator[None]:
        """The run directory's one distill process: a second one refuses at once (one line). Holding it, a
        half-saved checkpoint folder left by a killed run is ours to remove."""
        check_folder(self.root)
        with writer_lock(self.log_csv, 0, waitable=False):
            partials = [*self.root.glob(".partial-student"), *self.checkpoints.glob(".partial-iter_*")]
            for partial in partials if self.root.is_dir() else []:
                if partial.is_dir() and not partial.is_symlink():
                    shutil.rmtree(partial)
            yield

    def remove_if_lock_only(self) -> None:
        """A run directory that holds nothing but the writer's lock (`writing`), as one refused after the lock was
        taken leaves it: removed, so a refused command writes nothing. Only for a folder this process made."""
        if self.root.is_dir() and [p.name for p in self.root.iterdir()] == [lock_path(self.log_csv).name]:
            shutil.rmtree(self.root)

    def place(self, partial: Path, path: Path) -> None:
        """Move a folder written whole under a hidden name into place, its files listed in run.json first (a kill
        in between leaves listed files missing, never unlisted ones); an older folder there goes, if it is ours."""
        final = str(path.relative_to(self.root))
        names = [f"{final}/{p.relative_to(partial)}" for p in sorted(partial.rglob("*")) if p.is_file()]
        if path.exists():
            self.check_foreign(path)
            self.remove_owned(final)
        self.marker.record(*names)
        shared_modes(partial)  # its safetensors were written private
        os.replace(partial, path)

    def seal(self, partial: Path, path: Path, keep: int) -> None:
        """Mark a whole checkpoint, move it into place, list its files and drop all but the newest `keep`."""
        write_text(partial / "done", "")
        self.place(partial, path)
        sealed = [p for p in sorted(self.checkpoints.glob("iter_*")) if (p / "done").exists()]
        for old in sealed[: max(len(sealed) - keep, 0)]:
            self.remove_owned(str(old.relative_to(self.root)))

    def read_log(self, name: str = "log.csv") -> list[dict[str, str]]:
        """The rows of a per-iteration log (log.csv, or quality.csv), without a row torn by a kill."""
        path = self.root / name
        if not path.exists():
            return []
        return parse(path, key="iteration").rows

    def truncate_log(self, iteration: int, name: str = "log.csv") -> None:
        """Keep the rows up to `iteration`: rows written after the last checkpoint are computed again."""
        rows = [row for row in self.read_log(name) if int(row["iteration"]) <= iteration]
        if name != "log.csv" and not (self.root / name).exists():
            return  # a run that never measured quality gets no empty quality.csv
        rewrite(self.own(name), LOGS[name], rows)  # atomic: a kill leaves the old log or the new one

    def append_log(self, rows: list[dict[str, Any]], name: str = "log.csv") -> None:
        path = self.root / name
        if not path.exists():
            self.own(name)  # claimed and listed before its first row is written
        append_rows(path, LOGS[name], rows)  # whole rows; a torn last one is dropped by read_log
