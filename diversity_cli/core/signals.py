"""Stopping cleanly: Ctrl-C (SIGINT) and SIGTERM (what SLURM sends at a time limit and on `scancel`) end a command
with one line and exit 130 / 143, keeping every finished image, row and checkpoint (all of them are written
atomically, so the interrupted write leaves nothing half-done). SIGUSR2 is not touched here: it belongs to the
launcher, which checkpoints and requeues on it.

Both signals raise KeyboardInterrupt in the main thread, so `finally` blocks and context managers (locks, temporary
files) unwind as for Ctrl-C; `Stop` remembers which signal it was.
"""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass, field
from typing import Any

MESSAGE = "interrupted: rerun the same command to resume"
# overwrite=true starts its run again (every image remade, a training from its first step): the same command would
OVERWRITE_MESSAGE = "interrupted: rerun the command without overwrite=true to resume (with it, the run starts again)"
HANDLED = (signal.SIGINT, signal.SIGTERM)


@dataclass
class Stop:
    signum: int | None = None
    previous: dict[int, Any] = field(default_factory=dict)

    def _handle(self, signum: int, frame: Any) -> None:
        first = self.signum is None
        self.signum = signum
        if first:
            raise KeyboardInterrupt

    def restore(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous.clear()

    def exit_code(self, overwrite: bool = False) -> int:
        """The one line (how to resume: `overwrite` when the command had overwrite=true) and the shell's code for the
        signal (128 + its number; Ctrl-C without a handler: 130)."""
        import sys

        print(OVERWRITE_MESSAGE if overwrite else MESSAGE, file=sys.stderr)
        return 128 + (self.signum or signal.SIGINT)


def exit_on_signal(code: int) -> dict[int, Any]:
    """From the end of a command on, a Ctrl-C no longer changes the exit code: one while Python tore down its
    threads and modules (up to half a second after a command's summary) made a finished run exit 130, saying
    nothing, so a Makefile or a SLURM script took it for failed. SIGINT is ignored (Python's teardown restores
    a handler of its own to the default, which would end the process by the signal); SIGTERM ends it at once with
    `code`. Returns the handlers it replaced."""
    import os
    import sys

    def leave(signum: int, frame: Any) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe: nothing more to say
                pass
        os._exit(code)

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        previous = {signum: signal.getsignal(signum) for signum in HANDLED}
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, leave)
    return previous


def restore(previous: dict[int, Any]) -> None:
    """Put back the handlers `exit_on_signal` replaced (a process that goes on after the command: tests)."""
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def install() -> Stop:
    """Handle SIGINT and SIGTERM until `restore()` (only possible in the main thread: elsewhere nothing changes)."""
    stop = Stop()
    if threading.current_thread() is threading.main_thread():
        for signum in HANDLED:
            stop.previous[signum] = signal.signal(signum, stop._handle)
    return stop


def os_error_line(err: OSError) -> str:
    """One line for a failed read or write: the file, the reason, and what to do."""
    where = err.filename if err.filename is not None else "a file"
    reason = err.strerror or str(err)
    hints = {
        28: "the disk is full: free space and rerun the same command to resume (finished work is kept)",
        30: "the file system is read-only: choose another out=",
        13: "permission denied: choose another out= or fix its permissions",
        20: "a path on the way is a file, not a folder: choose another out=",
        21: "it is a folder, not a file",
    }
    hint = hints.get(err.errno or 0, "")
    return f"{where}: {reason}" + (f" ({hint})" if hint else "")
