"""One samples file (`samples.csv`, `shards/samples-<I>-of-<N>.csv`): reading it despite a torn last row, appending
whole rows, rewriting it atomically, and the lock of its one writer.

A process killed while appending can leave a last row without its line end; readers drop it (with a warning) and
only the writer holding the file's lock repairs the file. A row is appended with one `write` of whole lines and
fsync'd, so a kill leaves the file either with the row or without it (or, at worst, that torn last line).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import write_text
from .errors import UserError


@dataclass
class SamplesFile:
    path: Path
    header: list[str] = field(default_factory=list)
    rows: list[dict[str, str]] = field(default_factory=list)
    torn: bool = False  # a last row cut short (dropped from `rows`)
    duplicates: int = 0  # rows naming an image an earlier row of this file names (dropped from `rows`)

    @property
    def damaged(self) -> bool:
        return self.torn or self.duplicates > 0


def parse(path: Path, key: str = "path") -> SamplesFile:
    """The rows of one samples file, each image once (the first row naming it), without a torn last row; one
    line naming the file when it cannot be read as a samples file at all. `key`: the column that names a row
    (`path` in a samples file; `iteration` in a training log)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(
            f"{path} is not a UTF-8 samples file (bad byte at offset {err.start}); it is damaged: "
            "move it away and rerun generate"
        ) from None
    found = SamplesFile(path)
    if text and not text.endswith("\n"):
        found.torn = True
        text = text[: text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        rows = list(reader)
    except csv.Error as err:
        raise UserError(f"{path}: line {reader.line_num} is not CSV ({err}); the file is damaged") from None
    found.header = list(reader.fieldnames or [])
    if found.header and key not in found.header:
        raise UserError(f"{path} was not written by diversity-cli (no {key} column)")
    short = [i for i, row in enumerate(rows) if None in row or any(value is None for value in row.values())]
    if short and short[-1] == len(rows) - 1 and len(short) == 1:
        found.torn = True  # its line end was written, but not all of its fields: still the last row cut short
        rows.pop()
    elif short:
        raise UserError(
            f"{path}: row {short[0] + 2} has a different number of fields than the header; the file is damaged"
        )
    seen: set[str] = set()
    for row in rows:
        if row[key] in seen:
            found.duplicates += 1
            continue
        seen.add(row[key])
        found.rows.append(row)
    return found


def render(columns: list[str], rows: list[dict[str, Any]], header: bool) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", restval="")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def append_rows(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    """Whole rows in one write, flushed to disk (the header first when the file is new)."""
    new = not path.exists() or path.stat().st_size == 0
    data = render(columns, rows, header=new).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(handle, data)
        while written < len(data):  # a short write (a signal, a full disk) continues; it never leaves half a row
            written += os.write(handle, data[written:])
        os.fsync(handle)
    finally:
        os.close(handle)


def rewrite(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    """The whole file replaced atomically: a kill leaves the old file or the new one, never neither."""
    write_text(path, render(columns, rows, header=True))


def lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


@contextmanager
def idle_writer(path: Path) -> Iterator[bool]:
    """Hold `path`'s writer lock if no process holds it (True), else hold nothing (False); never waits."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(lock_path(path)))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


@contextmanager
def writer_lock(path: Path, wait: float | None, waitable: bool = True) -> Iterator[None]:
    """The lock of the one process that writes `path`. `wait`: seconds to wait for another holder (None: as long
    as it takes, 0: refuse at once); `waitable`: whether the command has lock_wait= to offer (a training has not:
    one process a run)."""
    from filelock import FileLock, Timeout

    from .console import stderr_console

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path(path)))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if wait == 0:
            offer = ", or set lock_wait=<seconds> (null: as long as it takes) to wait" if waitable else ""
            raise UserError(f"{path} is being written by another process; wait for it to finish{offer}") from None
        stderr_console().print(f"waiting for another process writing {path} ...")
        try:
            lock.acquire(timeout=-1 if wait is None else wait)
        except Timeout:
            raise UserError(f"{path} was still being written by another process after {wait:g} s") from None
    try:
        yield
    finally:
        lock.release()
