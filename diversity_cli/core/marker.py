"""The marker of a run directory, `run.json` at its root, and the rules for writing inside one.

`run.json` says the folder is a diversity-cli run directory and lists the files the toolkit wrote there:

    {"schema": 1, "toolkit": "diversity-cli", "version": "0.1.0", "created": "...", "files": ["samples.csv", ...]}

Commands that delete or replace act only inside a marked directory and only on the files it lists (`owns`);
anything else there (a README, a planted file, a symlink) is never replaced, deleted or written through.
Generated images are not listed one by one: an image is the toolkit's when a row of one of the directory's samples
files names it (`RunDir.owns`), so 30,000 images do not make every update of run.json rewrite a megabyte.

Updates of run.json happen under a short lock of their own (`.run.json.lock`) and are atomic; deleting or
overwriting takes the directory-wide lock (`.run.lock`, `directory_lock`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from .atomic import atomic_path, write_text
from .errors import UserError

MARKER = "run.json"
SCHEMA = 1
TOOLKIT = "diversity-cli"
DIRECTORY_LOCK = ".run.lock"
# Files a run directory made before run.json held: adopted when the marker is first written there.
LEGACY_FILES = (
    "samples.csv",
    "versions.json",
    "timesteps.csv",
    "fid.csv",
    "diversity.csv",
    "transfer.csv",
    "report.html",
)


def toolkit_version() -> str:
    from .. import __version__

    return __version__


class RunMarker:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.path = self.root / MARKER

    # -- reading ----------------------------------------------------------------------------------------------
    def read(self) -> dict[str, Any] | None:
        """The marker, or None in an unmarked folder; a run.json that is not ours is an error."""
        if not self.path.exists() and not self.path.is_symlink():
            return None
        if self.path.is_symlink() or not self.path.is_file():
            raise UserError(f"{self.path} is not a regular file; diversity-cli does not use this folder as a run")
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise UserError(
                f"{self.path} is not a diversity-cli run marker ({type(err).__name__}); choose another out="
            ) from None
        if not isinstance(data, dict) or data.get("toolkit") != TOOLKIT or not isinstance(data.get("files"), list):
            raise UserError(f"{self.path} was not written by diversity-cli; choose another out=")
        if int(data.get("schema", 0)) > SCHEMA:
            raise UserError(
                f"{self.path} has schema {data['schema']}, newer than this diversity-cli ({SCHEMA}); "
                "upgrade diversity-cli"
            )
        return data

    def files(self) -> set[str]:
        data = self.read()
        return set(data["files"]) if data else set()

    def is_marked(self) -> bool:
        return self.read() is not None

    # -- writing ----------------------------------------------------------------------------------------------
    def claim(self, adopt: Iterable[str] = ()) -> bool:
        """Make the folder a run directory (creating it); True when this call created the marker. `adopt`:
        files already there that the caller knows the toolkit wrote; a run directory made before markers adopts
        its samples.csv and the files named after it (`legacy_files`), whichever command marks it first."""
        check_folder(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        with self._update_lock():
            if self.read() is not None:
                return False
            stamp = datetime.now(timezone.utc).isoformat()
            body = {
                "schema": SCHEMA,
                "toolkit": TOOLKIT,
                "version": toolkit_version(),
                "created": stamp,
                "files": sorted(set(adopt) | set(legacy_files(self.root))),
            }
            write_text(self.path, json.dumps(body, indent=2, sort_keys=True) + "\n")
            return True

    def record(self, *paths: str | Path, **sections: Any) -> None:
        """Add files (relative to the root) the toolkit wrote, and any other top-level `sections`."""
        self.update(add=[relative(p) for p in paths], **sections)

    def forget(self, *paths: str | Path) -> None:
        self.update(remove=[relative(p) for p in paths])

    def update(self, add: Iterable[str] = (), remove: Iterable[str] = (), **sections: Any) -> None:
        with self._update_lock():
            data = self.read()
            if data is None:
                raise UserError(f"{self.root} is not a run directory (no {MARKER})")
            files = (set(data["files"]) | set(add)) - set(remove)
            data.update(sections)
            data.update(files=sorted(files), version=toolkit_version())
            write_text(self.path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")

    @contextmanager
    def _update_lock(self) -> Iterator[None]:
        from filelock import FileLock

        with FileLock(str(self.root / ".run.json.lock")):
            yield


def legacy_files(root: Path) -> list[str]:
    """A run directory written before run.json (a samples.csv of ours there, with its `settings` column): the
    files the toolkit writes there."""
    from .samples import parse

    legacy = root / "samples.csv"
    if not legacy.is_file() or legacy.is_symlink():
        return []
    try:
        if "settings" not in parse(legacy).header:
            return []
    except UserError:
        return []
    names = [p for p in LEGACY_FILES if (root / p).is_file() and not (root / p).is_symlink()]
    for folder, pattern in (("configs", "*.yaml"), ("runs", "*.json"), ("shards", "samples-*-of-*.csv")):
        names += [f"{folder}/{p.name}" for p in (root / folder).glob(pattern) if not p.is_symlink()]
    return names


def relative(path: str | Path) -> str:
    """A path inside a run directory as stored in run.json (POSIX, relative, no `..`)."""
    rel = PurePosixPath(Path(path).as_posix())
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise UserError(f"{path} is not a path inside the run directory")
    return str(rel)


def check_folder(root: Path) -> None:
    """`out` must be a folder (or not exist yet): one line otherwise, before anything is written."""
    if str(root) in ("", "."):
        return
    if root.exists() and not root.is_dir():
        raise UserError(f"out={root} is a file, not a folder; choose another out=")


# What the toolkit leaves in a folder before its run.json is written: the locks taken to write it, a launcher's logs.
BEFORE_MARKER = {
    ".run.lock",
    ".run.json.lock",
    ".samples.csv.lock",
    ".shared.lock",
    ".logs.lock",
    ".log.csv.lock",
    "shards",
}
# A file by which each command knows a folder it wrote before run.json existed (it adopts the folder on its next
# write): generate's and the measurements' (LEGACY_FILES), ablate's table, train-toy's and train-lora's settings,
# x0viz's curve.
EARLIER_RUN_FILES = (*LEGACY_FILES, "ablate.csv", "train_toy.yaml", "train_lora.json", "commitment.csv")


def check_new_run_folder(root: Path) -> None:
    """A command that makes a run directory makes it in a new or empty folder, an earlier run directory (its
    run.json, or a file of ours from before run.json: `EARLIER_RUN_FILES`) or a folder holding only run directories
    (an adapter trained into `<out>/adapters/red` before transfer-lora runs in `<out>`): never in a folder of the
    user's, such as a home directory (`out=~`), where run.json would make every later overwrite=true act on it."""
    if not root.is_dir() or RunMarker(root).read() is not None:
        return
    if any((root / name).is_file() for name in EARLIER_RUN_FILES):
        return
    foreign = _first_foreign(root, top=True)
    if foreign is not None:
        raise UserError(
            f"out={root} holds files that are not a diversity-cli run (first: {foreign.relative_to(root)}) and no "
            f"{MARKER}; a run goes into a new or empty folder (choose another out=)"
        )


def _first_foreign(folder: Path, top: bool = False) -> Path | None:
    """The first entry of `folder` that is neither a run directory nor a folder holding only run directories (nor,
    at the top, what the toolkit leaves before its run.json)."""
    for entry in sorted(folder.iterdir()):
        # a writer's temporary (`.run.json.<host>.<pid>.*.tmp`): another shard claiming the folder this instant
        if top and (entry.name in BEFORE_MARKER or (entry.name.startswith(".") and ".tmp" in entry.name)):
            continue
        if entry.is_symlink() or not entry.is_dir():
            return entry
        if not (entry / MARKER).is_file():
            inner = _first_foreign(entry)
            if inner is not None:
                return inner
    return None


def contained(root: Path, rel: str | Path) -> Path:
    """`root/rel`, refusing any symbolic link on the way: a link there could send a write (or a deletion) outside
    the run directory, or onto a file the toolkit did not write."""
    parts = PurePosixPath(relative(rel)).parts
    current = Path(root)
    for part in parts:
        current = current / part
        if current.is_symlink():
            raise UserError(
                f"{current} is a symbolic link; diversity-cli never writes or deletes through links "
                "in a run directory (move it away, or choose another out=)"
            )
    return current


def refuse_foreign(root: Path, rel: str, owned: bool, key: str = "out=") -> None:
    """An existing file at `rel` that the toolkit did not write is never replaced (`key`: where the user chose
    the folder)."""
    target = contained(root, rel)
    if (target.exists() or target.is_symlink()) and not owned:
        raise UserError(
            f"{target} exists and was not written by diversity-cli (not in {root / MARKER}); "
            f"move it away, or choose another {key}"
        )


@contextmanager
def directory_lock(root: str | Path, wait: float | None = None) -> Iterator[None]:
    """The directory-wide lock, taken only to delete or overwrite."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(Path(root) / DIRECTORY_LOCK), timeout=-1 if wait is None else wait)
    try:
        lock.acquire()
    except Timeout:
        raise UserError(
            f"{root} is being overwritten by another process (lock {DIRECTORY_LOCK}); try again later"
        ) from None
    try:
        yield
    finally:
        lock.release()


def require_marked(root: Path, what: str) -> dict[str, Any]:
    """The marker of `root`, where `what` (a deletion or replacement) needs one: one line otherwise."""
    data = RunMarker(root).read()
    if data is None:
        raise UserError(
            f"{what}: {root} has no {MARKER}, so diversity-cli did not make it; "
            "it deletes only inside its own run directories (choose another out=)"
        )
    return data


def listed_under(root: Path, name: str) -> list[str]:
    """The files run.json lists at `name` or under the folder `name`."""
    prefix = name.rstrip("/") + "/"
    return sorted(f for f in RunMarker(root).files() if f == name or f.startswith(prefix))


def remove_listed(root: Path, name: str) -> None:
    """Delete the files run.json lists at or under `name`, then the folders left empty there; nothing else (a file
    of yours inside stays, and so does its folder)."""
    files = listed_under(root, name)
    for rel in files:
        contained(root, rel).unlink(missing_ok=True)
    RunMarker(root).forget(*files)
    base = root / name
    if base.is_dir() and not base.is_symlink():
        for path in sorted(base.rglob("*"), key=lambda p: len(p.parts), reverse=True) + [base]:
            if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
                path.rmdir()


@contextmanager
def left_as_found(root: Path, outputs: Iterable[str] = ()) -> Iterator[None]:
    """A command that fails before writing any of `outputs` (a checkpoint that would not load) into a new or empty
    `root` leaves it as it was: a folder it made goes, an empty folder of yours stays, empty; the marker it wrote
    there (listing `outputs` before they run) goes either way."""
    existed = root.exists()
    untouched = not existed or (root.is_dir() and not root.is_symlink() and not any(root.iterdir()))
    try:
        yield
    except BaseException:
        if untouched and not any((root / name).exists() for name in outputs):
            if outputs and RunMarker(root).read() is not None:
                RunMarker(root).forget(*outputs)
            remove_if_bare(root, keep_folder=existed)
        raise


def remove_if_bare(root: Path, keep_folder: bool = False) -> None:
    """A folder this command created (or found empty, `keep_folder`), left with nothing but its marker (listing no
    file) and lock files, after the command failed: emptied, and removed unless kept, so a failure writes nothing.
    Anything else there, and the folder stays as it is."""
    if not root.is_dir() or root.is_symlink():
        return
    entries = list(root.iterdir())
    bare = all(
        e.is_file() and (e.name == MARKER or (e.name.startswith(".") and e.name.endswith(".lock"))) for e in entries
    )
    if not bare or RunMarker(root).files():
        return
    for entry in entries:
        entry.unlink(missing_ok=True)
    if keep_folder:
        return
    with contextlib.suppress(OSError):  # another process wrote there meanwhile: leave it
        root.rmdir()


def record_tree(root: Path, *names: str) -> None:
    """List in run.json every regular file at or under each of `names` (what a library just wrote there)."""
    found = []
    for name in names:
        base = contained(root, name)
        candidates = [base] if base.is_file() else sorted(base.rglob("*")) if base.is_dir() else []
        found += [str(p.relative_to(root)) for p in candidates if p.is_file() and not p.is_symlink()]
    if found:
        RunMarker(root).record(*found)


def _files_at(root: Path, names: Iterable[str]) -> list[str]:
    found = []
    for name in names:
        base = root / name
        candidates = [base] if base.is_file() else sorted(base.rglob("*")) if base.is_dir() else []
        found += [str(p.relative_to(root)) for p in candidates if p.is_file() and not p.is_symlink()]
    return found


def adopt_legacy(root: Path, sign: str, names: Iterable[str]) -> None:
    """A folder a command wrote before run.json existed (its `sign` file there, no run.json) becomes a run
    directory listing the files it holds at `names` (the command's own outputs; nothing else is adopted)."""
    if (root / sign).is_file() and not (root / MARKER).exists():
        RunMarker(root).claim(adopt=_files_at(root, names))


def remove_outputs(root: Path, names: Iterable[str]) -> None:
    """overwrite=true: in a marked folder only (one line otherwise), under the directory lock, removing only the
    files run.json lists at `names`."""
    check_folder(root)
    if not root.is_dir() or not any(root.iterdir()):
        return
    require_marked(root, "overwrite=true")
    with directory_lock(root):
        for name in names:
            remove_listed(root, name)


def claim_outputs(root: Path, names: Iterable[str]) -> None:
    """Mark the folder and check that none of `names` is a file the toolkit did not write there."""
    marker = RunMarker(root)
    marker.claim()
    files = marker.files()
    for name in names:
        refuse_foreign(root, name, name in files)


# How a file the toolkit writes is known as its own where run.json does not list it: an earlier version wrote
# results, tables and figures without listing them. A predicate reads the file at that path (nothing else).
Recognizer = Callable[[Path], bool]


def csv_with(*columns: str) -> Recognizer:
    """A CSV whose header has these columns (a results file of ours: a file of yours there has other ones)."""

    def ours(path: Path) -> bool:
        try:
            with path.open(encoding="utf-8", newline="") as f:
                header = f.readline().strip().split(",")
        except (OSError, UnicodeDecodeError):
            return False
        return set(columns) <= set(header)

    return ours


def text_starting(*prefixes: str) -> Recognizer:
    """A text file whose first line starts with one of these (a table's heading as the toolkit writes it)."""

    def ours(path: Path) -> bool:
        try:
            with path.open(encoding="utf-8") as f:
                return f.readline().startswith(prefixes)
        except (OSError, UnicodeDecodeError):
            return False

    return ours


def png_by(*software: str) -> Recognizer:
    """A PNG whose Software text chunk names one of these (matplotlib writes one into every figure it saves)."""

    def ours(path: Path) -> bool:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                return image.format == "PNG" and str(image.info.get("Software", "")).startswith(software)
        except (OSError, UnidentifiedImageError):
            return False

    return ours


def owns(root: Path, rel: str, recognize: Recognizer | None = None) -> bool:
    """Whether `rel` is the toolkit's to replace: listed in run.json, or recognized as its own."""
    target = contained(root, rel)
    if rel in RunMarker(root).files():
        return True
    return recognize is not None and target.is_file() and not target.is_symlink() and recognize(target)


def refuse_foreign_outputs(root: Path, outputs: dict[str, Recognizer | None], key: str = "out=") -> None:
    """Before any work: none of the files a command will write (`rel` -> how an earlier version's is known) is a
    file of someone else."""
    for rel, recognize in outputs.items():
        refuse_foreign(root, rel, owns(root, rel, recognize), key)


@contextmanager
def owned_path(root: Path, rel: str, recognize: Recognizer | None = None) -> Iterator[Path]:
    """A temporary to write `root/rel` through (any writer: csv, matplotlib, PIL), moved into place whole and listed
    in run.json first; a file there the toolkit did not write (`owns`), or a link on the way, is refused."""
    marker = RunMarker(root)
    marker.claim()
    refuse_foreign(root, rel, owns(root, rel, recognize))
    marker.record(rel)  # listed first: a kill before the write leaves a listed file missing, never a stray one
    with atomic_path(contained(root, rel)) as temporary:
        yield temporary


def write_owned(root: Path, name: str, text: str, recognize: Recognizer | None = None) -> Path:
    """A text file of the run directory written atomically and listed in run.json (never over a file of someone
    else)."""
    with owned_path(root, name, recognize) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return root / name
