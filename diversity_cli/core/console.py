"""The terminal side of every command: messages and progress go to stderr, results (the end-of-run summary) to
stdout.

On a terminal a progress bar shows done/total, elapsed, remaining and it/s. Off a terminal (a SLURM log, a pipe)
a redrawn bar would be noise and an 80-column console would cut lines, so progress becomes one plain, wide line
per task every `LOG_INTERVAL` seconds and when the task finishes.
"""

from __future__ import annotations

import time
from datetime import timedelta

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

LOG_WIDTH = 240  # columns of a console that is not a terminal: whole lines, no 80-column cut
LOG_INTERVAL = 10.0  # seconds between plain progress lines off a terminal


def _console(stderr: bool) -> Console:
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=LOG_WIDTH, soft_wrap=True)


def stderr_console() -> Console:
    return _console(stderr=True)


def stdout_console() -> Console:
    return _console(stderr=False)


def _rate(task: Task) -> str:
    """Items per second (or seconds per item when slower than one a second); the mean so far when rich has too
    few samples for its moving estimate (a task advanced in one step)."""
    speed = task.finished_speed or task.speed
    if not speed and task.elapsed and task.completed:
        speed = task.completed / task.elapsed
    if not speed:
        return "? it/s"
    return f"{speed:.2f} it/s" if speed >= 1 else f"{1 / speed:.2f} s/it"


class RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(_rate(task), style="progress.data.speed")


def _clock(seconds: float | None) -> str:
    return "?" if seconds is None else str(timedelta(seconds=int(seconds)))


def plain_line(task: Task) -> str:
    """One progress line for a log: what, done/total (%), elapsed, remaining, rate, and a training's last losses
    (its task's `losses` field)."""
    total = f"/{int(task.total)}" if task.total is not None else ""
    share = f" ({task.percentage:.0f}%)" if task.total else ""
    rate = _rate(task)
    remaining = 0.0 if task.finished else task.time_remaining
    losses = f" {task.fields['losses']}" if task.fields.get("losses") else ""
    return (
        f"{task.description}: {int(task.completed)}{total}{share} elapsed {_clock(task.elapsed)} "
        f"remaining {_clock(remaining)} {rate}{losses}"
    )


class LoggedProgress(Progress):
    """rich's Progress on a terminal; plain lines at an interval (and at each task's end) anywhere else."""

    def __init__(
        self,
        *columns,
        console: Console,
        transient: bool = False,
        interval: float = LOG_INTERVAL,
        disable: bool = False,
    ):
        self.plain = not console.is_terminal and not disable  # disable: nothing at all (a training's other ranks)
        self.interval = interval
        self._logged: dict[TaskID, float] = {}
        self._closed: set[TaskID] = set()
        super().__init__(*columns, console=console, transient=transient, disable=disable or self.plain)

    def _log(self, task_id: TaskID, force: bool = False) -> None:
        if not self.plain:
            return
        task = self._tasks.get(task_id)
        if task is None or task_id in self._closed:
            return
        now = time.monotonic()
        if task.finished:
            self._closed.add(task_id)
        elif not force and now - self._logged.get(task_id, -self.interval) < self.interval:
            return
        self._logged[task_id] = now
        print(plain_line(task), file=self.console.file, flush=True)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._log(task_id)

    def update(self, task_id: TaskID, **changes) -> None:
        super().update(task_id, **changes)
        self._log(task_id)

    def stop(self) -> None:
        for task_id in list(self._tasks):
            self._log(task_id, force=True)
        super().stop()


def progress_bar(console: Console | None = None, transient: bool = False, *extra: ProgressColumn) -> Progress:
    """A bar per task: description, bar, done/total, elapsed, remaining, it/s (plain lines off a terminal)."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("<"),
        TimeRemainingColumn(),
        RateColumn(),
        *extra,
    )
    return LoggedProgress(*columns, console=console or stderr_console(), transient=transient)
