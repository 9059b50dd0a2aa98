"""Atomic file writes: a reader (or a rerun after a crash) sees the old file or the new one, never a torn one.

Everything is written to a temporary file in the same folder, flushed to disk, then renamed over the target
(`os.replace` is atomic within one file system).
"""

from __future__ import annotations

import glob
import os
import platform
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# This machine in temporaries' names (dots would split the name's fields).
HOST = re.sub(r"[^A-Za-z0-9_-]", "_", platform.node()) or "host"


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to (with any writer: PIL, torch, pandas); on success it replaces
    `path`, on error it is removed and `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path)
    owner = f".{path.name}.{HOST}.{os.getpid()}."  # whose temporary: a killed writer's is removed by the next one
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=owner, suffix=".tmp" + path.suffix)
    os.close(handle)
    os.chmod(name, new_file_mode())  # mkstemp makes it private; the file gets the mode any new file would
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, new_file_mode())  # a writer may have made it anew, private (safetensors does)
        _fsync(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _remove_stale(path: Path) -> None:
    """Temporaries of `path` left by a writer on this host that no longer runs (killed with -9: no cleanup ran).
    A live writer's are kept (two processes may write the same file), and so are other hosts' on a shared file
    system, whose processes cannot be seen from here."""
    for stale in path.parent.glob(glob.escape(f".{path.name}.{HOST}.") + "*.tmp*"):
        if _dead_writer(stale.name):
            stale.unlink(missing_ok=True)


# `.<target>.<host>.<pid>.<mkstemp's random part>.tmp<target's suffix>`, as `atomic_path` names its temporaries
_TEMPORARY = re.compile(r"\..+\.(?P<host>[A-Za-z0-9_-]+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp(\.[^./]*)?")


def is_temporary(name: str) -> bool:
    """Whether `name` is named as `atomic_path` names its temporaries (its writer may be running)."""
    return bool(_TEMPORARY.fullmatch(name))


def _dead_writer(name: str) -> bool:
    """Whether `name` is a temporary of a writer on this host that no longer runs."""
    found = _TEMPORARY.fullmatch(name)
    return bool(found) and found["host"] == HOST and not _running(int(found["pid"]))


def dead_temporary(name: str) -> bool:
    """Whether `name` is a temporary a killed writer on this host left (safe to delete: nobody writes it)."""
    return _dead_writer(name)


def remove_dead_temporaries(root: str | Path) -> list[Path]:
    """Every temporary under `root` (at any depth, never through a symbolic link) whose writer on this host no
    longer runs: what a `kill -9` left of writes to files this one may never write again (another n, another
    method), so the next write of the same file would not remove it. Live writers' and other hosts' stay."""
    removed = []
    for folder, _, names in os.walk(root):  # os.walk does not descend into linked folders
        for name in names:
            path = Path(folder) / name
            if _dead_writer(name) and not path.is_symlink():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def new_file_mode() -> int:
    """The mode a new file gets under this process's umask (0644 under the usual 022)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def shared_modes(root: str | Path) -> None:
    """Give every file under `root` the mode a new file gets: safetensors writes its files readable by their owner
    alone, and a student, adapter or checkpoint on a shared run folder is for the whole group to read."""
    mode = new_file_mode()
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            if not path.is_symlink():
                os.chmod(path, mode)


def _fsync(path: Path) -> None:
    with path.open("rb+") as f:
        os.fsync(f.fileno())
