"""The terminal side of every command: messages and rich progress bars go to stderr, results to stdout."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


def stderr_console() -> Console:
    return Console(stderr=True)


def progress_bar(console: Console | None = None, transient: bool = False) -> Progress:
    """A bar per task: description, bar, done/total, time left."""
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    return Progress(*columns, console=console or stderr_console(), transient=transient)
