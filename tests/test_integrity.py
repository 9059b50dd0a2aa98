"""Run directories that never lose or corrupt data: the run.json marker, torn and duplicate rows, atomic rewrites,
symlinks and foreign files, one writer per samples file, safe loading, signals and OS errors as one line.

The slow kill -9 suite is tests/test_faults.py (`make test-faults`)."""

from __future__ import annotations

import json
import os
import pickle
import signal
import time
from pathlib import Path

import pytest

from diversity_cli.core.errors import UserError
from diversity_cli.core.marker import RunMarker
from diversity_cli.core.rundir import RunDir

PROMPT = "prompt=a red circle"


def _one_line(err: str) -> bool:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    return len(lines) == 1 and "Traceback" not in err


def _error_line(err: str) -> str:
    """The one error line of a command that may have shown progress first (no traceback, one error)."""
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def _generate(cli, out: Path, *extra: str):
    return cli("generate", "model=tiny_sd", PROMPT, "n=2", f"out={out}", *extra)


def _images(out: Path) -> dict[str, bytes]:
    return {row["path"]: (out / row["path"]).read_bytes() for row in RunDir(out).read_samples()}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """One generate run (tiny_sd, 2 images), copied by the tests that change it."""
    from diversity_cli.cli import run

    out = tmp_path_factory.mktemp("made") / "run"
    assert run(["generate", "model=tiny_sd", PROMPT, "n=2", f"out={out}"]) == 0
    return out


def _copy(made: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(made, tmp_path / "run", symlinks=True))


class Evil:
    """A pickle that, when loaded with weights_only=False, creates `marker` (code running)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _plant_pickle(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump({"state": Evil(marker)}, f)


# --- the marker ----------------------------------------------------------------------------------------------------


def test_run_json_marks_the_directory_and_lists_what_generate_wrote(made):
    marker = json.loads((made / "run.json").read_text())
    assert marker["schema"] == 1 and marker["toolkit"] == "diversity-cli" and marker["version"]
    assert {"samples.csv", "versions.json", "timesteps.csv"} <= set(marker["files"])
    assert any(name.startswith("runs/") and name.endswith(".json") for name in marker["files"])
    run = RunDir(made)
    rows = run.read_samples()
    assert len(rows) == 2 and all(run.owns(row["path"]) for row in rows)  # images: through the samples file
    assert not run.owns("README.md")


def test_a_run_directory_from_before_run_json_is_adopted_by_whichever_command_marks_it(cli, made, tmp_path):
    from diversity_cli.core.marker import RunMarker

    out = _copy(made, tmp_path)
    (out / "run.json").unlink()  # as an older diversity-cli left it
    (out / "notes.md").write_text("mine")
    RunMarker(out).claim()  # what a reader (fid, diversity, report) does first: its invocation record
    files = set(json.loads((out / "run.json").read_text())["files"])
    assert {"samples.csv", "versions.json", "timesteps.csv"} <= files and "notes.md" not in files
    code, _, err = _generate(cli, out, "n=3")  # appends to the adopted samples.csv
    assert code == 0, err
    assert len(RunDir(out).read_samples()) == 3 and (out / "notes.md").read_text() == "mine"


# --- torn and duplicate rows ---------------------------------------------------------------------------------------


def test_a_torn_last_row_is_dropped_by_readers_and_repaired_by_the_next_writer(cli, made, tmp_path):
    out = _copy(made, tmp_path)
    before = _images(out)
    text = (out / "samples.csv").read_text()
    lost = RunDir(out).read_samples()[-1]["path"]
    # A kill while appending the last row: half of it on disk, its image not yet moved into place.
    (out / "samples.csv").write_text(text[: len(text) - 25])
    (out / lost).unlink()
    rows = RunDir(out).read_samples()
    assert [row["path"] for row in rows] == [p for p in before if p != lost]
    code, _, err = _generate(cli, out)
    assert code == 0, err
    repaired = (out / "samples.csv").read_text()
    assert repaired.endswith("\n") and len(repaired.splitlines()) == 3  # header + 2 rows, none torn or twice
    assert _images(out) == before  # the lost image made again, byte for byte


def test_duplicate_rows_are_counted_once_with_a_warning_and_the_writer_repairs_them(made, tmp_path, capsys):
    out = _copy(made, tmp_path)
    lines = (out / "samples.csv").read_text().splitlines(keepends=True)
    (out / "samples.csv").write_text("".join(lines + lines[1:]))  # two processes appended the same rows
    assert len(RunDir(out).read_samples()) == 2
    assert "duplicate" in capsys.readouterr().err
    with RunDir(out).writing():
        pass
    assert (out / "samples.csv").read_text() == "".join(lines)


def test_dropping_samples_never_leaves_the_file_missing(made, tmp_path, monkeypatch):
    """A kill while rows are dropped (overwrite=true, lost images): the old file or the new, never none."""
    import diversity_cli.core.atomic as atomic

    out = _copy(made, tmp_path)
    before = (out / "samples.csv").read_bytes()
    first = RunDir(out).read_samples()[0]["path"]

    def killed(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        RunDir(out).drop_samples({first})
    assert (out / "samples.csv").read_bytes() == before


def test_a_truncated_png_is_made_again_on_resume(cli, made, tmp_path):
    out = _copy(made, tmp_path)
    before = _images(out)
    path = next(iter(before))
    (out / path).write_bytes(before[path][: len(before[path]) // 2])
    code, _, err = _generate(cli, out)
    assert code == 0, err
    assert _images(out) == before


# --- symlinks and foreign files ------------------------------------------------------------------------------------


def test_a_symlink_at_an_image_path_is_never_written_through(cli, made, tmp_path):
    out = _copy(made, tmp_path)
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"mine")
    path = RunDir(out).read_samples()[0]["path"]
    (out / path).unlink()
    (out / path).symlink_to(outside)
    code, _, err = _generate(cli, out, "overwrite=true")
    assert code == 2 and _one_line(err) and "symbolic link" in err, err
    assert outside.read_bytes() == b"mine"


def test_a_symlinked_folder_inside_the_run_never_sends_writes_outside(cli, tmp_path):
    out, outside = tmp_path / "run", tmp_path / "elsewhere"
    outside.mkdir()
    RunMarker(out).claim()  # a run directory: a folder of the user's is refused as a whole (test below)
    (out / "tiny_sd").symlink_to(outside, target_is_directory=True)
    code, _, err = _generate(cli, out)
    assert code == 2 and _one_line(err) and "symbolic link" in err, err
    assert list(outside.iterdir()) == []


def test_a_foreign_file_at_an_image_path_is_never_replaced(cli, tmp_path):
    out = tmp_path / "run"
    code, _, err = _generate(cli, tmp_path / "probe")
    assert code == 0, err
    path = RunDir(tmp_path / "probe").read_samples()[0]["path"]
    RunMarker(out).claim()
    (out / path).parent.mkdir(parents=True)
    (out / path).write_bytes(b"a file of mine")
    for extra in ((), ("overwrite=true",)):
        code, _, err = _generate(cli, out, *extra)
        assert code == 2 and _one_line(err) and "not written by diversity-cli" in err, err
        assert (out / path).read_bytes() == b"a file of mine"


@pytest.mark.parametrize("command", ["generate", "x0viz", "ablate", "train-toy"])
def test_a_folder_of_yours_never_becomes_a_run_directory(cli, tmp_path, command):
    """out=~ (the shell expands it) made the home directory a run directory; overwrite=true then acted on it."""
    home = tmp_path / "home"
    (home / ".config").mkdir(parents=True)
    (home / ".bashrc").write_text("mine")
    (home / "adapters" / "red").mkdir(parents=True)  # a run directory inside is no reason to refuse...
    RunMarker(home / "adapters" / "red").claim()
    before = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    extra = {"generate": ["model=toy", PROMPT, "n=1"], "x0viz": ["model=toy", PROMPT, "n=1"]}
    extra["ablate"] = ["model=toy", PROMPT, "n=2", "k=1..2"]
    for overwrite in ((), ("overwrite=true",)):
        code, _, err = cli(command, *extra.get(command, []), f"out={home}", *overwrite)
        assert code == 2 and _one_line(err) and "first: .bashrc" in err and "new or empty folder" in err, err
    assert sorted(str(p.relative_to(home)) for p in home.rglob("*")) == before


def test_a_folder_holding_only_run_directories_takes_a_run(cli, tmp_path):
    out = tmp_path / "table1"
    RunMarker(out / "adapters" / "red").claim()  # an adapter trained into <out>/adapters/red, as make does
    (out / "empty").mkdir()
    (out / ".run.json.host.123.x.tmp").write_text("{")  # another shard's marker, being written this instant
    code, _, err = _generate(cli, out)
    assert code == 0, err
    assert RunMarker(out).is_marked() and len(RunDir(out).read_samples()) == 2


def test_overwrite_refuses_a_folder_the_toolkit_did_not_mark(cli, tmp_path):
    folder = tmp_path / "papers"
    folder.mkdir()
    (folder / "README.md").write_text("my notes")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n")
    for command in (
        ("distill", "model=tiny_sd", f"prompts={prompts}", "iterations=1", "overwrite=true"),
        ("train-lora", "concept=red", "steps=1", "overwrite=true"),
    ):
        code, _, err = cli(*command, f"out={folder}")
        assert code == 2 and _one_line(err) and "run.json" in err, (command, err)
    assert [p.name for p in folder.iterdir()] == ["README.md"] and (folder / "README.md").read_text() == "my notes"


def test_distill_overwrite_removes_only_what_it_wrote_and_resumes_from_json_progress(cli, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n")
    out = tmp_path / "distill"
    args = ("distill", "model=tiny_sd", f"prompts={prompts}", "batch_size=1", "checkpoint_every=1", f"out={out}")
    code, _, err = cli(*args, "iterations=1")
    assert code == 0, err
    checkpoint = out / "checkpoints" / "iter_000001"
    assert json.loads((checkpoint / "progress.json").read_text())["iteration"] == 1
    assert not list(checkpoint.glob("custom_checkpoint_*"))  # progress is JSON, not accelerate's pickle
    mine = [out / "notes.md", out / "checkpoints" / "keep.txt", out / "student" / "extra.txt"]
    for path in mine:
        path.write_text("mine")
    code, _, err = cli(*args, "iterations=2")  # resumes from progress.json, never a pickle
    assert code == 2 and "student" in err  # student/ holds a file the run did not write: not replaced
    (out / "student" / "extra.txt").unlink()
    mine.pop()
    code, _, err = cli(*args, "iterations=2")
    assert code == 0, err
    code, _, err = cli(*args, "iterations=1", "lr.generator=1e-3", "overwrite=true")
    assert code == 0, err
    assert all(path.read_text() == "mine" for path in mine)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["iter_000001", "keep.txt"]


# --- one writer per samples file -----------------------------------------------------------------------------------


def test_a_second_writer_refuses_with_one_line_or_waits(cli, made, tmp_path):
    from filelock import FileLock

    out = _copy(made, tmp_path)
    with FileLock(str(out / ".samples.csv.lock")):  # another process is writing samples.csv
        code, _, err = _generate(cli, out, "n=3", "lock_wait=0")
        assert code == 2 and _one_line(err) and "another process" in err, err
        code, _, err = _generate(cli, out, "n=3", "lock_wait=0.2")  # waits (saying so), then gives up
        assert code == 2 and "Traceback" not in err and "waiting for another process" in err, err
        assert err.strip().splitlines()[-1].startswith("error:") and "still being written" in err, err
    assert len(RunDir(out).read_samples()) == 2


def test_a_generate_that_waited_for_another_writer_counts_none_of_its_images(cli, made, tmp_path):
    """It waited while another process made the images, found nothing to do, and reported them as its own
    ("generate: 2 images, ... images/s"): a throughput made up from another process's work."""
    import shutil
    import threading

    from filelock import FileLock

    out = tmp_path / "run"
    out.mkdir()
    holding = threading.Event()

    def other_writer() -> None:  # holds the writer's lock, makes the run's images, lets go
        with FileLock(str(out / ".samples.csv.lock")):
            holding.set()
            time.sleep(1.0)
            shutil.copytree(made, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.lock"))

    writer = threading.Thread(target=other_writer)
    writer.start()
    holding.wait()
    code, summary, err = _generate(cli, out, "lock_wait=null")
    writer.join()
    assert code == 0 and "waiting for another process" in err and "nothing to do" in err, err
    assert "generate: 0 images" in summary, summary
    assert len(RunDir(out).read_samples()) == 2


def test_shard_writers_read_as_one_table(made, tmp_path):
    out = _copy(made, tmp_path)
    rows = RunDir(out).read_samples()
    shard = RunDir(out, writer="shards/samples-1-of-2.csv")
    shard.append_samples([{**rows[0], "path": "tiny_sd/x/000009.png", "seed": "9"}])
    assert len(RunDir(out).read_samples()) == 3
    assert "shards/samples-1-of-2.csv" in json.loads((out / "run.json").read_text())["files"]


# --- safe loading --------------------------------------------------------------------------------------------------


def test_a_planted_pickle_in_a_toy_checkpoint_never_runs(tmp_path):
    import numpy as np
    import torch
    from rich.progress import Progress

    from diversity_cli.core.marker import RunMarker
    from diversity_cli.toy.loop import Stage, StageRunner

    marker = tmp_path / "ran"
    root = tmp_path / "lora"
    _plant_pickle(root / "checkpoints" / "lora.pt", marker)
    module = torch.nn.Linear(2, 2)
    stage = Stage("lora", 2, {"m": module}, torch.optim.SGD(module.parameters(), 0.1), np.random.default_rng(0),
                  torch.Generator().manual_seed(0))  # fmt: skip
    with Progress() as progress:
        runner = StageRunner(root, progress)
        with pytest.raises(UserError, match="cannot be loaded safely"):  # unmarked folder: weights_only refuses
            runner.run(stage, lambda step: {})
        RunMarker(root).claim()
        with pytest.raises(UserError, match="not written by this run"):  # marked: not in run.json
            runner.run(stage, lambda step: {})
        RunMarker(root).record("checkpoints/lora.pt")
        with pytest.raises(UserError, match="cannot be loaded safely"):  # listed, still never unpickled
            runner.run(stage, lambda step: {})
    assert not marker.exists()


def test_a_planted_pickle_in_a_distill_checkpoint_never_runs(cli, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n")
    out = tmp_path / "distill"
    args = ("distill", "model=tiny_sd", f"prompts={prompts}", "batch_size=1", "checkpoint_every=1", f"out={out}")
    assert cli(*args, "iterations=1")[0] == 0
    marker = tmp_path / "ran"
    checkpoint = out / "checkpoints" / "iter_000001"
    _plant_pickle(checkpoint / "custom_checkpoint_0.pkl", marker)  # accelerate would unpickle this one fully
    code, _, err = cli(*args, "iterations=2")
    assert code == 2 and _one_line(err) and "custom_checkpoint_0.pkl" in err, err
    (checkpoint / "custom_checkpoint_0.pkl").unlink()
    _plant_pickle(checkpoint / "optimizer.bin", marker)  # replaces a file the run wrote: read weights-only
    code, _, err = cli(*args, "iterations=2")
    assert code == 2 and _one_line(err) and "cannot be loaded safely" in err, err
    assert not marker.exists()


def test_a_planted_pickle_in_the_fid_statistics_cache_never_runs(tmp_path):
    import torch

    from diversity_cli.metrics import quality

    class Net(torch.nn.Module):
        num_features, resolution, resize, name, device = 4, 8, "pil_bicubic", "net", torch.device("cpu")

        def forward(self, x):
            return x.float().mean(dim=(2, 3)).repeat(1, 2)[:, :4], None

    marker = tmp_path / "ran"
    key_probe = {}
    original = quality.cache_path

    def spy(cache_dir, key):
        path = original(cache_dir, key)
        key_probe["path"] = path
        return path

    import numpy as np
    from PIL import Image

    images = [Image.fromarray(np.full((8, 8, 3), i * 20, np.uint8)) for i in range(4)]
    quality.cache_path = spy
    try:
        stats, cached = quality.reference_statistics(Net(), [images], {"set": "x"}, tmp_path / "cache")
        _plant_pickle(key_probe["path"], marker)
        stats, cached = quality.reference_statistics(Net(), [images], {"set": "x"}, tmp_path / "cache")
    finally:
        quality.cache_path = original
    assert not cached and not marker.exists()  # refused, computed again, the cache replaced
    assert torch.load(key_probe["path"], weights_only=True).keys() == stats.keys()


def test_a_planted_pickle_in_the_embedding_cache_never_runs(tmp_path):
    from diversity_cli.core.fingerprint import digest
    from diversity_cli.experiments.diversity import EmbeddingCache

    marker, key = tmp_path / "ran", {"embedder": "pixel"}
    _plant_pickle(tmp_path / "cache" / f"{digest(key)}.pt", marker)
    assert EmbeddingCache(tmp_path / "cache", key).items == {}  # refused: computed again
    assert not marker.exists()


def test_a_planted_pickle_in_the_toy_latent_cache_never_runs(tmp_path):
    import torch

    from diversity_cli.toy.stages import encode_dataset

    class Posterior:
        def __init__(self, x):
            self.mean, self.std = x.mean(dim=1, keepdim=True), x.std(dim=1, keepdim=True)

    class Vae:
        def encode(self, x):
            return type("Encoded", (), {"latent_dist": Posterior(x)})()

    marker, cache = tmp_path / "ran", tmp_path / "latents.pt"
    _plant_pickle(cache, marker)
    images = torch.zeros(3, 8, 8, 3, dtype=torch.uint8)
    mean, _ = encode_dataset(Vae(), images, cache)
    assert mean.shape[0] == 3 and not marker.exists()
    assert torch.load(cache, weights_only=True)["mean"].shape[0] == 3  # replaced by what it computed


# --- signals and OS errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_and_sigterm_stop_with_one_line_and_130_or_143(cli, tmp_path, monkeypatch, signum, code):
    import time

    import diversity_cli.commands.generate as command

    def interrupted(cfg):
        os.kill(os.getpid(), signum)
        time.sleep(5)
        raise AssertionError("the signal did not stop the command")

    monkeypatch.setattr(command, "run", interrupted)
    got, _, err = _generate(cli, tmp_path / "run")
    # the one line (a slow first import may add the preflight's timing note above it)
    assert got == code and err.strip().splitlines()[-1] == "interrupted: rerun the same command to resume", err
    assert "Traceback" not in err
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or signum != signal.SIGTERM  # handlers restored


def test_a_ctrl_c_once_a_command_has_finished_leaves_its_exit_code(tmp_path):
    """A Ctrl-C while the process tore down after a finished command (its summary printed, its files written):
    the finished run exited 130 or printed a KeyboardInterrupt traceback."""
    import subprocess
    import sys

    script = tmp_path / "late.py"
    script.write_text(
        "import atexit, os, signal, sys, time\n"
        "from diversity_cli.cli import main\n"
        "atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(0.5)))  # during teardown\n"
        "sys.argv = ['diversity-cli', 'models', 'toy']\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "toy: every file" in done.stdout, done.stderr
    assert "KeyboardInterrupt" not in done.stderr and "interrupted" not in done.stderr, done.stderr


def test_a_ctrl_c_while_a_finished_commands_records_are_closed_changes_nothing(cli, tmp_path, monkeypatch):
    """The records were closed after the command's own handlers were put back: a Ctrl-C then raised a traceback
    from inside the writes, and the process died by the signal while its records said `finished`."""
    import json
    import time

    import diversity_cli.core.record as record

    closing = record.finish

    def interrupted(code: int) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)
        closing(code)

    monkeypatch.setattr(record, "finish", interrupted)
    handler = signal.getsignal(signal.SIGINT)
    code, _, err = _generate(cli, tmp_path / "run")
    assert code == 0 and "interrupted" not in err, err
    statuses = [json.loads(path.read_text())["status"] for path in (tmp_path / "run" / "runs").glob("*.json")]
    assert statuses == ["finished"]
    assert signal.getsignal(signal.SIGINT) is handler  # put back for what runs next


def test_an_interrupt_raised_without_a_signal_is_not_a_success(cli, tmp_path, monkeypatch):
    """A KeyboardInterrupt raised inside a library (no signal reached the CLI's handler): Typer returned 130, and
    the command exited 0 with nothing said, as if it had finished."""
    import diversity_cli.commands.generate as command

    def interrupted(cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "run", interrupted)
    got, _, err = _generate(cli, tmp_path / "run")
    assert got == 130 and err.strip().splitlines()[-1] == "interrupted: rerun the same command to resume", err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("errno", "words"), [(28, "disk is full"), (30, "read-only"), (13, "permission denied")]
)  # fmt: skip
def test_disk_full_read_only_and_denied_are_one_line_naming_the_file(cli, made, tmp_path, monkeypatch, errno, words):
    import diversity_cli.core.atomic as atomic

    out = _copy(made, tmp_path)

    def failing(source, target):
        raise OSError(errno, os.strerror(errno), str(target))

    monkeypatch.setattr(atomic.os, "replace", failing)
    code, _, err = _generate(cli, out, "n=3")
    assert code == 2 and _one_line(err) and words in err and str(out) in err, err
    assert len(RunDir(out).read_samples()) == 2  # finished work kept


def test_out_a_file_is_one_line(cli, tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("mine")
    code, _, err = _generate(cli, target)
    assert code == 2 and _one_line(err) and "file" in err, err
    assert target.read_text() == "mine"


def test_a_corrupt_samples_file_is_one_line_naming_it(cli, made, tmp_path):
    out = _copy(made, tmp_path)
    (out / "samples.csv").write_bytes(b"method,path\n\xff\xfe\x00garbage\n")
    for command in (("diversity", "metric=pixel"), ("report", "tables=none"), ("generate", "model=tiny_sd", PROMPT)):
        code, _, err = cli(*command, f"out={out}")
        assert code == 2 and _one_line(err) and "samples.csv" in err, (command, err)


def test_a_corrupt_png_is_one_line_naming_it_in_fid_and_marked_by_report(cli, made, tmp_path):
    import numpy as np
    from PIL import Image

    out = _copy(made, tmp_path)
    path = out / RunDir(out).read_samples()[0]["path"]
    path.write_bytes(path.read_bytes()[:60])
    (tmp_path / "ref").mkdir()
    for i in range(3):
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(tmp_path / "ref" / f"{i}.png")
    fid = ("fid", f"reference={tmp_path / 'ref'}", "features=tiny_random", "clip_model=null",
           f"cache_dir={tmp_path / 'cache'}")  # fmt: skip
    code, _, err = cli(*fid, f"out={out}")
    assert code == 2 and path.name in _error_line(err), err
    # the report completes (its tables were written before the page): the image is marked, and named on stderr
    code, _, err = cli("report", "tables=none", f"out={out}")
    assert code == 0 and "warning" in err and path.name in err, err
    assert f"[unreadable {path}]" in (out / "report.html").read_text()


def test_an_interrupted_overwrite_says_to_resume_without_it(cli, tmp_path, monkeypatch):
    """ "rerun the same command to resume" after overwrite=true started the run again (a training from its first
    step, every image remade)."""
    import diversity_cli.commands.generate as command

    def interrupted(cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "run", interrupted)
    got, _, err = _generate(cli, tmp_path / "run", "overwrite=true")
    assert got == 130 and err.strip().splitlines()[-1] == (
        "interrupted: rerun the command without overwrite=true to resume (with it, the run starts again)"
    )
