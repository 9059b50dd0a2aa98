"""A training loop that survives being killed: periodic checkpoints, a CSV log, a rich progress bar.

A stage's checkpoint holds its modules, optimizer, schedule, extra state (an EMA), its random generators and the
seconds spent so far; rerunning the stage loads it and continues from the step it was saved at, dropping the log
rows written after it. A finished stage leaves `<name>.done.json` and is skipped on the next run.
"""

from __future__ import annotations

import csv
import json
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress

from ..core.atomic import atomic_path, write_text
from ..core.errors import UserError, first_line
from ..core.marker import RunMarker

StepFn = Callable[[int], dict[str, float]]


LOG_EVERY = 10  # a stage's log holds one step's losses every this many steps, and its last step's


@dataclass
class Stage:
    name: str
    steps: int
    modules: dict[str, torch.nn.Module]
    optimizer: torch.optim.Optimizer
    rng: np.random.Generator  # the stage's batch sampler
    generator: torch.Generator  # the stage's noise (a CPU generator, so a run draws the same on every device)
    lr_schedule: torch.optim.lr_scheduler.LRScheduler | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # objects with state_dict/load_state_dict (an EMA)
    checkpoint_every: int = 200
    log_every: int = LOG_EVERY


class StageRunner:
    """Runs stages inside one progress display; checkpoints and logs live under `root`."""

    def __init__(self, root: Path, progress: Progress, checkpoint_every: int = 200, log_every: int = LOG_EVERY):
        self.root = Path(root)
        self.progress = progress
        self.checkpoint_every = checkpoint_every
        self.log_every = log_every
        # stage -> the torch thread counts its steps ran at: CPU sums are split by thread, so a stage resumed at
        # another count gives weights that are not bitwise those of either count alone
        self.threads: dict[str, list[int]] = {}
        (self.root / "checkpoints").mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(parents=True, exist_ok=True)

    def done(self, name: str) -> dict | None:
        path = self._done_path(name)
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def mark_done(self, name: str, info: dict) -> None:
        if name in self.threads:  # a stage trained here (not one reused from elsewhere)
            info = {**info, "threads": self.threads[name]}
        self._wrote(self._done_path(name))
        _atomic_write_text(self._done_path(name), json.dumps(info, indent=2) + "\n")

    def _wrote(self, path: Path) -> None:
        """List the file in run.json when `root` is a run directory, so overwrite=true may remove it later; called
        before the file is written, so a kill in between never leaves a file of this run unlisted."""
        marker = RunMarker(self.root)
        if marker.read() is not None:
            marker.record(path.relative_to(self.root))

    def finished_at(self, name: str) -> float | None:
        """When a stage finished (its done file's time), or None if it has not."""
        path = self._done_path(name)
        return path.stat().st_mtime if path.is_file() else None

    def _done_path(self, name: str) -> Path:
        return self.root / "checkpoints" / f"{name}.done.json"

    def checkpoint_path(self, name: str) -> Path:
        return self.root / "checkpoints" / f"{name}.pt"

    def log_path(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.csv"

    def run(self, stage: Stage, step_fn: StepFn) -> float:
        """Train `stage` to its last step (resuming from its checkpoint); returns the stage's total seconds."""
        start, seconds, earlier = self._resume(stage)
        if start:  # said: the bar alone started part-way at a rate no step ran at
            self.progress.console.print(f"resuming {stage.name} from its checkpoint at step {start} of {stage.steps}")
        self._count_threads(stage, start, earlier)
        task = self.progress.add_task(stage.name, total=stage.steps, completed=start, losses="")
        log_rows = self._kept_log_rows(stage.name, start)
        self._write_log(stage.name, log_rows)
        smoothed: dict[str, float] = {}
        began = time.perf_counter() - seconds
        for module in stage.modules.values():
            module.train()
        for step in range(start, stage.steps):
            losses = step_fn(step)
            if stage.lr_schedule is not None:
                stage.lr_schedule.step()
            for key, value in losses.items():
                if not np.isfinite(value):
                    raise FloatingPointError(f"{stage.name}: {key} became {value} at step {step + 1}")
                smoothed[key] = value if key not in smoothed else 0.95 * smoothed[key] + 0.05 * value
            done = step + 1
            # a moving average (5% a step): one step's loss is too noisy to read; the log keeps the steps' own
            shown = "  ".join(f"{k} {v:.4f}" for k, v in smoothed.items()) + " (moving average)"
            self.progress.update(task, completed=done, losses=shown)
            if done % stage.log_every == 0 or done == stage.steps:
                row = {"step": done, **losses, "lr": stage.optimizer.param_groups[0]["lr"]}
                row["seconds"] = round(time.perf_counter() - began, 2)
                self._append_log(stage.name, row)
            if done % stage.checkpoint_every == 0 or done == stage.steps:
                self._save(stage, done, time.perf_counter() - began)
        for module in stage.modules.values():
            module.eval()
        return time.perf_counter() - began

    def _count_threads(self, stage: Stage, start: int, earlier: list[int] | None) -> None:
        """The stage's thread counts (`threads`): its checkpoint's and, with steps left, this session's; said when it
        resumes at another. A checkpoint from before the counts were kept leaves them unknown, not guessed."""
        if start and earlier is None:
            return
        earlier, now = earlier or [], torch.get_num_threads()
        if start < stage.steps and earlier and now not in earlier:
            self.progress.console.print(
                f"[yellow]note[/]: {stage.name} resumes at {now} torch thread(s); its first {start} steps ran at "
                f"{' and '.join(map(str, earlier))}: its weights will not be bitwise those of a run at one count "
                "(the model card names both)"
            )
        self.threads[stage.name] = sorted({*earlier, now}) if start < stage.steps else earlier

    def _resume(self, stage: Stage) -> tuple[int, float, list[int] | None]:
        """The step and seconds the stage's checkpoint was saved at, and the thread counts it ran at (None: not
        recorded), its state loaded into `stage`; 0, 0 and [] without one."""
        path = self.checkpoint_path(stage.name)
        if not path.is_file():
            return 0, 0.0, []
        # weights_only: a checkpoint is tensors, numbers and strings; a planted pickle must not run code here
        marker = RunMarker(self.root)
        if marker.read() is not None and str(path.relative_to(self.root)) not in marker.files():
            raise UserError(f"{path} was not written by this run (not in {self.root / 'run.json'}); move it away")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
            reason = first_line(err)
            raise UserError(f"{path} cannot be loaded safely ({reason[:160]}); move it away to start again") from None
        for key, module in stage.modules.items():
            module.load_state_dict(state["modules"][key])
        stage.optimizer.load_state_dict(state["optimizer"])
        if stage.lr_schedule is not None:
            stage.lr_schedule.load_state_dict(state["lr_schedule"])
        for key, obj in stage.extra.items():
            obj.load_state_dict(state["extra"][key])
        stage.rng.bit_generator.state = state["rng"]
        stage.generator.set_state(state["generator"])
        threads = [int(count) for count in state["threads"]] if state.get("threads") else None
        return int(state["step"]), float(state["seconds"]), threads

    def _save(self, stage: Stage, step: int, seconds: float) -> None:
        state = {
            "step": step,
            "seconds": seconds,
            "modules": {key: module.state_dict() for key, module in stage.modules.items()},
            "optimizer": stage.optimizer.state_dict(),
            "lr_schedule": stage.lr_schedule.state_dict() if stage.lr_schedule is not None else None,
            "extra": {key: obj.state_dict() for key, obj in stage.extra.items()},
            "rng": stage.rng.bit_generator.state,
            "generator": stage.generator.get_state(),
            "threads": self.threads.get(stage.name, []),
        }
        self._wrote(self.checkpoint_path(stage.name))
        with atomic_path(self.checkpoint_path(stage.name)) as tmp:  # a kill mid-write leaves the previous one
            torch.save(state, tmp)

    def _kept_log_rows(self, name: str, step: int) -> list[dict[str, str]]:
        path = self.log_path(name)
        if not path.is_file():
            return []
        with path.open(newline="", encoding="utf-8") as handle:
            return [row for row in csv.DictReader(handle) if int(row["step"]) <= step]

    def _write_log(self, name: str, rows: list[dict[str, str]]) -> None:
        path = self.log_path(name)
        if not rows:
            path.unlink(missing_ok=True)
            return
        self._wrote(path)
        with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    def _append_log(self, name: str, row: dict[str, Any]) -> None:
        path = self.log_path(name)
        new = not path.is_file()
        if new:
            self._wrote(path)
        with path.open("a", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def _atomic_write_text(path: Path, text: str) -> None:
    write_text(path, text)
