"""Fault injection (`make test-faults`, several minutes): `kill -9` at random points of `generate`, `distill`
(also the toy pair with its quality monitor) and `fid`, then rerun until done: the outputs equal an uninterrupted
run's byte for byte, with no row lost or duplicated; and two `generate` processes at once on one run directory.

Each command runs as a real process (`python -m diversity_cli`). A kill lands at a random moment (seeded) of the
work still to do, timed from the uninterrupted run's first to last row (images for generate, iterations for
distill), so it hits image writes, row appends, checkpoint saves and log rewrites alike; fid, which writes once at
the end, is killed anywhere in its run. Skipped unless DIVERSITY_CLI_FAULTS=1 (the make target sets it)."""

from __future__ import annotations

import csv
import io
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

if os.environ.get("DIVERSITY_CLI_FAULTS") != "1":
    pytest.skip("fault injection runs with `make test-faults`", allow_module_level=True)

SEEDS = (0, 1, 2)
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "120"}


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "diversity_cli", *args]


def _run(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(_command(*args), env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def _lines(path: Path) -> int:
    """Complete lines written so far (the header included), 0 before the file exists."""
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _killed(args: tuple[str, ...], progress: Path | None, delay: float) -> bool:
    """Start the command; once it has added a line to `progress` (its work is under way: images, iterations),
    sleep `delay` and kill -9. False when it had finished (or had nothing to do) before the kill."""
    process = subprocess.Popen(_command(*args), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if progress is not None:
        before, deadline = _lines(progress), time.monotonic() + 300
        while _lines(progress) <= before and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
    time.sleep(delay)
    if process.poll() is not None:
        return False
    process.kill()  # SIGKILL: no handler, no cleanup
    process.wait()
    return True


def _work_span(args: tuple[str, ...], progress: Path, rows: int) -> float:
    """An uninterrupted run; the seconds from its first row in `progress` to its last (`rows` rows): the window
    the kills are drawn from, so that they land while images, rows and checkpoints are being written."""
    process = subprocess.Popen(_command(*args), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while _lines(progress) < 2 and process.poll() is None:
        time.sleep(0.01)
    began = time.monotonic()
    while _lines(progress) < rows + 1 and process.poll() is None:
        time.sleep(0.01)
    span = time.monotonic() - began
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-2000:]
    return span


def _rows(path: Path, timings: bool = False) -> list[tuple]:
    """The rows of a CSV (without its timing columns: wall-clock seconds differ between any two runs)."""
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n"), f"{path} ends in a torn row"
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    return [tuple((k, v) for k, v in row.items() if timings or not k.endswith("seconds")) for row in rows]


def _files(root: Path, pattern: str) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob(pattern)) if p.is_file()}


def _kill_and_resume(args: tuple[str, ...], out: Path, progress: str, rows: int, span: float, seed: int) -> int:
    """Two kill -9 at random moments of the work still to do (a fraction of `span` by the rows already in
    `progress`), then a run to the end; returns how many kills hit a running process."""
    rng = random.Random(seed)
    hits = 0
    for _ in range(2):
        left = max(rows + 1 - _lines(out / progress), 1) / rows
        hits += _killed((*args, f"out={out}"), out / progress, rng.uniform(0.0, span * left))
    _run(*args, f"out={out}")
    return hits


# --- generate ------------------------------------------------------------------------------------------------------

GENERATE = ("generate", "model=tiny_sd", "prompt=a red circle", "n=24", "batch_size=1")  # 24 writes of a row


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, float]:
    out = tmp_path_factory.mktemp("generate") / "straight"
    return out, _work_span((*GENERATE, f"out={out}"), out / "samples.csv", 24)


@pytest.mark.parametrize("seed", SEEDS)
def test_generate_killed_at_random_points_resumes_to_the_same_images_and_rows(generated, tmp_path, seed):
    straight, seconds = generated
    out = tmp_path / "killed"
    assert _kill_and_resume(GENERATE, out, "samples.csv", 24, seconds, seed) >= 1  # a kill landed mid-run
    raw = _rows(out / "samples.csv")
    assert len(raw) == len({dict(row)["path"] for row in raw}) == 24  # nothing lost, nothing twice
    assert sorted(raw) == sorted(_rows(straight / "samples.csv"))
    assert _files(out, "*.png") == _files(straight, "*.png")


def test_two_generate_processes_on_one_run_directory_write_each_image_once(generated, tmp_path):
    straight, _ = generated
    out = tmp_path / "shared"
    processes = [
        subprocess.Popen(_command(*GENERATE, f"out={out}"), env=ENV, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for process in processes:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-2000:]
    raw = _rows(out / "samples.csv")
    assert len(raw) == 24 and sorted(raw) == sorted(_rows(straight / "samples.csv"))
    assert _files(out, "*.png") == _files(straight, "*.png")


# --- distill -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prompts(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    path.write_text("a red circle\na blue square\n")
    return path


STUDENT = "student/diffusion_pytorch_model.safetensors"


def _straight(tmp_path_factory, name: str, args: tuple[str, ...], iterations: int) -> tuple[Path, float]:
    """An uninterrupted distill run and the seconds over which it logged its iterations."""
    out = tmp_path_factory.mktemp(name) / "straight"
    return out, _work_span((*args, f"out={out}"), out / "log.csv", iterations)


def _killed_student(args: tuple[str, ...], straight: Path, seconds: float, iterations: int, seed: int, out: Path):
    """Kill -9 a distill run at random points, resume it to the end: its student is the uninterrupted run's."""
    assert _kill_and_resume(args, out, "log.csv", iterations, seconds, seed) >= 1  # a kill landed mid-run
    assert (out / STUDENT).read_bytes() == (straight / STUDENT).read_bytes()


def _distill(prompts: Path) -> tuple[str, ...]:
    return ("distill", "model=tiny_sd", f"prompts={prompts}", "iterations=5", "checkpoint_every=1", "batch_size=1")


@pytest.fixture(scope="module")
def distilled(tmp_path_factory, prompts) -> tuple[Path, float]:
    return _straight(tmp_path_factory, "distill", _distill(prompts), 5)


@pytest.mark.parametrize("seed", SEEDS)
def test_distill_killed_at_random_points_resumes_to_the_same_student(distilled, prompts, tmp_path, seed):
    straight, seconds = distilled
    out = tmp_path / "killed"
    _killed_student(_distill(prompts), straight, seconds, 5, seed, out)
    log = _rows(out / "log.csv")
    assert [dict(row)["iteration"] for row in log] == ["1", "2", "3", "4", "5"]  # no row twice, none lost
    assert log == _rows(straight / "log.csv")
    assert not list((out / "checkpoints").glob(".partial-*"))  # a half-saved checkpoint is cleaned up


def _monitored(prompts: Path) -> tuple[str, ...]:
    """The toy pair with its quality monitor at every iteration: kills land in measurements and in quality.csv's and
    quality.png's writes as well as in training steps and checkpoints."""
    return (
        "distill", "model=toy", f"prompts={prompts}", "device=cpu", "iterations=4", "checkpoint_every=1",
        "batch_size=1", "fake_updates_per_generator_update=1", "monitor.every=1", "monitor.captions=4",
        "monitor.per_prompt=2",
    )  # fmt: skip


@pytest.fixture(scope="module")
def monitored(tmp_path_factory, prompts) -> tuple[Path, float]:
    return _straight(tmp_path_factory, "monitored", _monitored(prompts), 4)


@pytest.mark.parametrize("seed", SEEDS)
def test_monitored_toy_distill_killed_at_random_points_keeps_each_quality_row_once(monitored, prompts, tmp_path, seed):
    straight, seconds = monitored
    out = tmp_path / "killed"
    _killed_student(_monitored(prompts), straight, seconds, 4, seed, out)
    quality = _rows(out / "quality.csv")
    assert [dict(row)["iteration"] for row in quality] == ["0", "1", "2", "3", "4"]  # no row twice, none lost
    assert quality == _rows(straight / "quality.csv")
    assert (out / "quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*.tmp*")) and not list(out.glob("*.tmp"))  # no torn atomic write left behind


# --- fid -----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def measured(tmp_path_factory, generated) -> tuple[Path, tuple[str, ...], float]:
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("fid")
    reference = root / "reference"
    reference.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(reference / f"{i}.png")
    args = ("fid", f"reference={reference}", "features=tiny_random", "clip_model=null", f"cache_dir={root / 'cache'}")
    straight = root / "straight"
    shutil.copytree(generated[0], straight)
    began = time.monotonic()
    _run(*args, f"out={straight}")
    return straight, args, time.monotonic() - began


@pytest.mark.parametrize("seed", SEEDS)
def test_fid_killed_at_random_points_gives_the_same_table(measured, generated, tmp_path, seed):
    straight, args, seconds = measured
    out = tmp_path / "killed"
    shutil.copytree(generated[0], out)
    (out / "fid.csv").unlink(missing_ok=True)
    rng = random.Random(seed)
    # fid writes once, at the end: kills over its whole run (loading, reading, scoring, writing fid.csv). A kill
    # drawn after a run ends (a warm rerun is faster than the timed one) misses, and that run leaves a finished
    # fid.csv that makes every later run a no-op: it is removed and the kill drawn again (up to 4 draws, 2 kills).
    hits = 0
    for _ in range(4):
        hits += _killed((*args, f"out={out}"), None, rng.uniform(0.0, seconds * 0.9))
        (out / "fid.csv").unlink(missing_ok=True)
        if hits == 2:
            break
    assert hits >= 1
    _run(*args, f"out={out}")
    assert _rows(out / "fid.csv", timings=True) == _rows(straight / "fid.csv", timings=True)
    assert _rows(out / "samples.csv") == _rows(generated[0] / "samples.csv")  # the input untouched
