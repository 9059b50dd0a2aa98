"""The run directory every command shares: `samples.csv`, images, composed configs, versions, timesteps.

Rows are appended as images are written, so an interrupted run resumes where it stopped; a path is owned by
the settings that produced it, and different settings never replace it without `overwrite=true`.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import platform
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .atomic import atomic_path, remove_dead_temporaries, write_bytes
from .errors import UserError
from .marker import Recognizer, RunMarker, contained, directory_lock, left_as_found, owns, refuse_foreign, relative
from .record import git_commit
from .samples import append_rows, idle_writer, parse, rewrite, writer_lock

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
    "case",  # index of the prompt row in the command's prompt list: the order of a table, sharded or not
    "network_seconds",  # denoising-network calls only; `seconds` also holds text encoding and VAE decoding
]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
SHARDS = "shards"  # shard I of N writes shards/samples-<I>-of-<N>.csv (`shard_writer`)


def shard_writer(shard: Any | None) -> str:
    """The samples file a command writes, relative to the run directory: shard I of N (an `experiments.shards.Shard`,
    0-based) its own, merged into samples.csv once all have finished; no shard, samples.csv."""
    return f"{SHARDS}/samples-{shard.index}-of-{shard.count}.csv" if shard is not None else "samples.csv"


class RunDir:
    """`writer`: the one samples file this process appends to: `samples.csv` for an unsharded invocation,
    `shards/samples-<I>-of-<N>.csv` for shard I of N. Readers see the union of every samples file."""

    def __init__(self, root: str | Path, writer: str = "samples.csv", lock_wait: float | None = None):
        self.root = Path(root)
        self.writer = relative(writer)
        self.lock_wait = lock_wait  # for the writer's lock: seconds (None: as long as it takes, 0: refuse at once)
        self.marker = RunMarker(self.root)
        self._holding = 0  # depth of `writing()` in this process
        self._swept = False  # dead writers' temporaries removed (once per opening of the directory)

    # -- ownership and locking (run.json, see core/marker.py) ----------------------------------------------------
    def claim(self) -> None:
        """Mark the folder as a run directory (a folder from before run.json adopts what it holds of ours); on the
        first claim, remove the temporaries writers killed with -9 left anywhere in it (`remove_dead_temporaries`)."""
        if self.marker.read() is None:
            self.marker.claim()  # a folder from before run.json: adopts what it holds of ours (`legacy_files`)
        if not self._swept:
            remove_dead_temporaries(self.root)
            self._swept = True
        if self.samples_csv.exists() or self.samples_csv.is_symlink():
            refuse_foreign(self.root, self.writer, self.writer in self.marker.files())

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold this writer's lock (waiting or refusing per `lock_wait`), repairing its samples file first: a
        torn last row or duplicate rows left by a killed process are dropped, atomically."""
        if self._holding:
            self._holding += 1
            try:
                yield
            finally:
                self._holding -= 1
            return
        with left_as_found(self.root):  # a new or empty out= of a command failing before any image (a load error)
            self.claim()
            with writer_lock(self.samples_csv, self.lock_wait):
                self._holding = 1
                try:
                    self._repair()
                    yield
                finally:
                    self._holding = 0

    def _repair(self) -> None:
        if not self.samples_csv.is_file():
            return
        found = parse(self.samples_csv)
        if found.damaged or (found.header and found.header != self._columns(found.header)):
            rewrite(self.samples_csv, self._columns(found.header), found.rows)

    @staticmethod
    def _columns(header: list[str]) -> list[str]:
        return header + [c for c in SAMPLE_COLUMNS if c not in header] if header else list(SAMPLE_COLUMNS)

    def owns(self, rel: str) -> bool:
        """Whether the toolkit wrote `rel` here: listed in run.json, or (images) named by a row of a samples file."""
        rel = relative(rel)
        return rel in self.marker.files() or any(row["path"] == rel for row in self.read_samples())

    def check_targets(self, paths: Iterable[str]) -> None:
        """Before any work: every path to be written is inside the run directory, reached without a symlink, and
        is either free or an image the toolkit wrote (one line naming the first that is not)."""
        named = {row["path"] for row in self.read_samples()}
        files = self.marker.files()
        for rel in paths:
            refuse_foreign(self.root, rel, rel in named or rel in files)

    def image_ok(self, rel: str) -> bool:
        """A whole image at `rel` (a PNG with its end chunk): resume makes a truncated or unreadable one again."""
        path = self.root / rel
        if path.is_symlink() or not path.is_file():
            return False
        return complete_png(path)

    def write_images(self, images: list[tuple[str, Any]], rows: list[dict[str, Any]]) -> None:
        """Images (PIL) and their samples rows: each image written whole beside its target, then the rows
        appended, then the images moved into place; a kill leaves at worst a row whose image is missing, which
        the next run makes again (never an image no row names, which it could not tell from a foreign file)."""
        with self.writing(), contextlib.ExitStack() as staged:
            for rel, image in images:
                # atomic_path's temporaries name their host and pid: a killed writer's are found and removed
                image.save(staged.enter_context(atomic_path(contained(self.root, rel))), format="PNG")
            self.append_samples(rows)  # then leaving `staged` moves the images into place (on an error: removes them)

    def replace_samples(self, rows: list[dict[str, Any]]) -> None:
        """This writer's samples file replaced by `rows`, atomically (never unlink-then-rewrite: a kill between
        the two lost the whole file)."""
        with self.writing():
            self.marker.record(self.writer)
            rewrite(self.samples_csv, list(SAMPLE_COLUMNS), rows)

    def write_file(self, rel: str, data: str | bytes) -> Path:
        """A file the toolkit owns in the run directory, written atomically and listed in run.json; an existing
        file there that the toolkit did not write, or a symlink on the way, is refused."""
        rel = relative(rel)
        self.claim()
        refuse_foreign(self.root, rel, rel in self.marker.files())
        path = self.root / rel
        self.marker.record(rel)  # listed first: a kill before the write leaves a listed file missing, not a stray
        write_bytes(path, data.encode("utf-8") if isinstance(data, str) else data)
        return path

    @property
    def samples_csv(self) -> Path:
        return self.root / self.writer

    def samples_files(self) -> list[Path]:
        """samples.csv, then the shard files by (shard count, shard index): the order rows are read in."""

        def order(path: Path) -> tuple[int, int]:
            index, _, count = path.stem.removeprefix("samples-").partition("-of-")
            return (int(count), int(index)) if index.isdigit() and count.isdigit() else (1 << 30, 0)

        shards = sorted((self.root / SHARDS).glob("samples-*-of-*.csv"), key=order)
        return [path for path in [self.root / "samples.csv", *shards] if path.is_file()]

    def read_samples(self, files: list[Path] | None = None) -> list[dict[str, str]]:
        """Every samples file's rows (or those of `files`), each image once, in canonical order (`canonical_order`).
        A torn last row (a process killed mid-write) and duplicate rows in one file are dropped here, in memory, with
        a warning; only the file's writer, holding its lock, repairs the file."""
        rows, seen, notes = [], set(), []
        for path in self.samples_files() if files is None else files:
            found = parse(path)
            if found.torn:
                notes.append(f"{path}: dropped a torn last row (a process killed while writing it)")
            if found.duplicates:
                notes.append(f"{path}: {found.duplicates} duplicate row(s) counted once")
            for row in found.rows:
                if row["path"] not in seen:  # a merge interrupted after writing samples.csv: rows twice
                    seen.add(row["path"])
                    rows.append(row)
        if notes and not self._holding:
            from .console import stderr_console

            for note in notes:
                stderr_console().print(f"[yellow]warning[/]: {note}; the next generate there repairs it")
        return canonical_order(rows)

    def merge_shards(self) -> Path:
        """Fold the shard files into samples.csv (canonical order, written atomically), then remove them: once
        every shard has finished, the same table, byte for byte, as one unsharded process writes. A shard file whose
        process is still writing (another command's shard on this out=) stays as it is: read, then deleted, it lost
        the rows added between."""
        if not any(path.parent.name == SHARDS for path in self.samples_files()):
            return self.root / "samples.csv"  # nothing to fold: no lock taken
        # samples.csv's writer and the directory-wide lock: the shard files are deleted (only those run.json lists)
        merged = RunDir(self.root, lock_wait=self.lock_wait)
        with merged.writing(), directory_lock(self.root), contextlib.ExitStack() as held:
            files = self.samples_files()
            shards = [path for path in files if path.parent.name == SHARDS and held.enter_context(idle_writer(path))]
            if not shards:
                return self.root / "samples.csv"
            rows = self.read_samples([path for path in files if path.parent.name != SHARDS] + shards)
            with atomic_path(self.root / "samples.csv") as temporary, temporary.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=SAMPLE_COLUMNS, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows)
            self.marker.record("samples.csv")
            listed = self.marker.files()
            done = [str(path.relative_to(self.root)) for path in shards if str(path.relative_to(self.root)) in listed]
            for rel in done:
                contained(self.root, rel).unlink()
            self.marker.forget(*done)
        return self.root / "samples.csv"

    def append_samples(self, rows: Iterable[dict[str, Any]]) -> None:
        rows = list(rows)
        if not rows:
            return
        with self.writing():  # repaired on taking the lock, so its header holds every column
            new = not self.samples_csv.exists()
            columns = SAMPLE_COLUMNS if new else self._columns(parse(self.samples_csv).header)
            if new:
                self.marker.record(self.writer)  # listed before it exists (see write_file)
            append_rows(self.samples_csv, columns, rows)

    def drop_samples(self, paths: set[str]) -> None:
        """Remove rows (and their images) for `paths`: used only under overwrite=true, and for rows whose image
        is gone. Only samples files holding one of `paths` are rewritten (a shard never touches another's), each
        atomically under its writer's lock and the directory-wide lock; images go first, so a kill in between
        leaves rows whose image is missing (made again), never an image no row names."""
        with self.writing(), directory_lock(self.root):
            for path in paths:
                contained(self.root, path).unlink(missing_ok=True)
            for file in self.samples_files():
                found = parse(file)
                kept = [row for row in found.rows if row["path"] not in paths]
                if len(kept) == len(found.rows):
                    continue
                holder = contextlib.nullcontext() if file == self.samples_csv else writer_lock(file, self.lock_wait)
                with holder:
                    rewrite(file, self._columns(found.header), kept)

    def save_config(self, name: str, config: Any) -> None:
        from omegaconf import OmegaConf

        self.write_file(f"configs/{name}.yaml", OmegaConf.to_yaml(config, resolve=True))

    def save_versions(self, name: str, extra: dict[str, Any] | None = None) -> None:
        path = self.root / "versions.json"
        with self._shared_file():
            record = _read_versions(path) if path.is_file() and self.owns("versions.json") else {}
            record[name] = {**versions(), **(extra or {})}
            self.write_file("versions.json", json.dumps(record, indent=2, sort_keys=True) + "\n")

    @contextmanager
    def _shared_file(self) -> Iterator[None]:
        """Files every invocation of the directory updates (versions.json, timesteps.csv): one at a time."""
        from filelock import FileLock

        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / ".shared.lock")):
            yield

    def save_timesteps(self, name: str, visits: list[tuple[str, int, float]], schedulers: list[str]) -> None:
        """The exact (model, timestep, guidance) of every network call, one row each, per run name."""
        path = self.root / "timesteps.csv"
        columns = ["run", "call", "model", "timestep", "guidance", "scheduler"]
        with self._shared_file():
            rows = []
            if path.is_file() and self.owns("timesteps.csv"):
                with path.open(newline="") as f:
                    rows = [row for row in csv.DictReader(f) if row["run"] != name]
            self._write_timesteps(path, columns, rows, name, visits, schedulers)

    def _write_timesteps(self, path, columns, rows, name, visits, schedulers) -> None:
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
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        self.write_file(path.name, buffer.getvalue())


def no_samples(root: Path, other: str = "") -> str:
    """The line for an out= without samples.csv, where a command needs a generate's run directory (`other`: what it
    also takes): an ablate's folder holds its points' run directories, which it names."""
    where = f"{root / 'samples.csv'} not found or empty; out= must be a run directory made by generate{other}"
    if (root / "ablate.csv").is_file() or (root / "points").is_dir():
        where += f"; this is an ablate's folder: each point is one, out={root / 'points'}/<model>/<tag>"
    return where


def complete_png(path: Path) -> bool:
    """A PNG file that ends with its IEND chunk (a write cut short does not)."""
    try:
        with path.open("rb") as f:
            head = f.read(8)
            f.seek(max(path.stat().st_size - 12, 0))
            tail = f.read(12)
    except OSError:
        return False
    return head == PNG_SIGNATURE and tail == PNG_END


def config_part(settings: str) -> str:
    """The config fingerprint of a samples row's `settings`, "<config>/<weights>" (rows written before it named
    the weights hold only "<config>")."""
    return settings.partition("/")[0]


def configs_per_group(rows: Iterable[dict[str, str]]) -> dict[tuple[str, str], list[str]]:
    """(model, method tag) -> the configs (`config_part`) its samples rows were made with, first seen first; rows
    written before settings were recorded name none and are left out. More than one: its prompts (or seeds) were
    made at different settings, so a mean over them mixes them."""
    configs: dict[tuple[str, str], dict[str, None]] = {}
    for row in rows:
        if config := config_part(row.get("settings") or ""):
            configs.setdefault((row["model"], row.get("tag") or row["method"]), {})[config] = None
    return {key: list(found) for key, found in configs.items()}


def weights_of(settings: str) -> str:
    """The weights fingerprint of a samples row's `settings` ("" in rows written before it carried one)."""
    return settings.partition("/")[2]


def one_setting_per_group(rows: list[dict[str, str]], group: tuple[str, ...]) -> None:
    """Every group of samples rows (by the columns `group`) made with one setting and one set of weights
    (samples.csv's `settings`: the fingerprints of the config and of the weights behind an image): a number over
    two would mix two models under one label (images of other seeds added with other timesteps, or with a
    student retrained in place; an overwrite at a smaller n)."""
    # The parts are compared one by one, so an old row (config only) and a new one of the same config agree.
    found: dict[tuple[str, ...], tuple[dict[str, None], dict[str, None]]] = {}
    for row in rows:
        key = tuple(row.get(column) or (row.get("method", "") if column == "tag" else "") for column in group)
        config, weights = config_part(row.get("settings") or ""), weights_of(row.get("settings") or "")
        configs, weight_parts = found.setdefault(key, ({}, {}))
        if config:
            configs[config] = None
        if weights:
            weight_parts[weights] = None
    for key, (configs, weight_parts) in found.items():
        for what, parts in (("settings", configs), ("weights", weight_parts)):
            if len(parts) > 1:
                raise UserError(
                    f"{' / '.join(key)} holds images made with {len(parts)} different {what} (samples.csv's "
                    f"settings column: {', '.join(list(parts)[:3])}); one number must come from one model: "
                    "generate each into its own out=, or remake the whole group with overwrite=true"
                )


def samples_digest(rows: Iterable[dict[str, str]]) -> str:
    """Which images a group's number was measured over: each image's path, seed and settings (config and
    weights). diversity.csv and fid.csv keep it beside the number, so a group remade at the same count with other
    settings or seeds reads as measured over other images (same seed and settings: the same image)."""
    lines = sorted(f"{row.get('path', '')}\t{row.get('seed', '')}\t{row.get('settings', '')}" for row in rows)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:12]


def seed_window(rows: Iterable[dict[str, str]], prompt: str, first: int, n: int) -> list[dict[str, str]]:
    """The samples rows of `prompt` whose seed is one of first .. first+n-1: the images a measurement of n images
    per prompt from seed `first` read (one seed makes one image), so its `samples_digest` can be checked later."""
    seeds = {str(seed) for seed in range(first, first + n)}
    return [row for row in rows if row.get("prompt") == prompt and row.get("seed") in seeds]


def canonical_order(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Groups (model, method tag) in the order they first appear; inside a group, rows by (case, seed) when every
    row has its case index (older files without it keep their file order). Sharded and unsharded runs of the same
    commands therefore read as the same table."""
    groups: dict[tuple[str, str], list[dict[str, str]]] = {}
    for row in rows:
        groups.setdefault((row.get("model", ""), row.get("tag", "")), []).append(row)
    ordered = []
    for group in groups.values():
        if all(
            str(row.get("case") or "").isdigit() and str(row.get("seed", "")).lstrip("-").isdigit() for row in group
        ):
            group = sorted(group, key=lambda row: (int(row["case"]), int(row["seed"])))
        ordered.extend(group)
    return ordered


def merge_rows(
    path: Path, rows: list[dict[str, Any]], key: tuple[str, ...], recognize: Recognizer
) -> list[dict[str, Any]]:
    """The rows of a results CSV whose `key` is not among `rows`, then `rows`: a re-run replaces only what it
    recomputed and keeps the rest. A file there the toolkit did not write (`recognize`: an earlier version's,
    unlisted) is refused before it is read as one."""
    refuse_foreign(path.parent, path.name, owns(path.parent, path.name, recognize))
    if not path.exists():
        return list(rows)
    new_keys = {tuple(str(r[k]) for k in key) for r in rows}
    kept = [r for r in read_table(path) if tuple(r.get(k, "") for k in key) not in new_keys]
    return kept + list(rows)


def read_table(path: Path) -> list[dict[str, str]]:
    """The rows of a results CSV the toolkit wrote, without a last row torn by a kill; a file that is not UTF-8
    CSV is one line naming it."""
    return read_table_end(path)[0]


def read_table_end(path: Path) -> tuple[list[dict[str, str]], str]:
    """`read_table`'s rows and what the file's end shows: "empty" (not even a header), "its last row is cut off"
    (shorter than the header, left out of the rows: a kill mid-append tears only the last), or "" for neither. A file
    written whole, never appended, has neither."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = [dict(row) for row in reader]
            end = "" if reader.fieldnames else "empty"  # read while open: with no row, it reads the header now
    except (UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"{path} is damaged ({type(err).__name__}: {err}); move it away and rerun") from None
    for index, row in enumerate(rows):
        torn = None in row.values() and index == len(rows) - 1  # a kill mid-append tears the last row only
        if (None in row or None in row.values()) and not torn:  # read on, its cells would sit under other columns
            count = sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None) or [])
            columns = len(row) - (None in row)
            raise UserError(
                f"{path} line {index + 2} is damaged ({count} fields where its header has {columns}); move it away "
                "and rerun the command that wrote it"
            )  # line: the row's, after the header (the toolkit writes no line breaks inside a cell)
    if rows and None in rows[-1].values():
        end = "its last row is cut off"
        rows.pop()
    return rows, end


def _read_versions(path: Path) -> dict[str, Any]:
    """versions.json as the toolkit wrote it (config name -> versions); anything else is one line naming it."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        record, reason = None, type(err).__name__
    else:
        reason = "not an object of config names"
    if not isinstance(record, dict):
        raise UserError(f"{path} is damaged ({reason}); move it away and rerun (it records the versions of each run)")
    return record


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
        "git_commit": git_commit(),  # as the run's records say it: `-dirty` for a checkout with changes
    }
