"""Atomic writes leave no litter behind a writer killed with -9: the next write of the same file removes it."""

from __future__ import annotations

import subprocess
import sys

from diversity_cli.core.atomic import HOST, write_text


def test_the_next_write_removes_a_dead_writers_temporary_and_keeps_a_live_ones(tmp_path):
    target = tmp_path / "table.csv"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # that process has exited
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        stale = tmp_path / f".table.csv.{HOST}.{dead_pid}.abc123.tmp.csv"
        busy = tmp_path / f".table.csv.{HOST}.{live.pid}.def456.tmp.csv"
        other_host = tmp_path / f".table.csv.elsewhere.{dead_pid}.ghi789.tmp.csv"
        for path in (stale, busy, other_host):
            path.write_text("partial")
        write_text(target, "a,b\n")
        assert target.read_text() == "a,b\n"
        assert not stale.exists()  # its writer is gone
        assert busy.exists() and other_host.exists()  # a live writer's, and one this host cannot judge
    finally:
        live.kill()
        live.wait()


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)  # that process has exited


def test_opening_a_run_directory_removes_dead_writers_temporaries_at_any_depth(tmp_path):
    from diversity_cli.core.rundir import RunDir

    root, dead = tmp_path / "run", _dead_pid()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        gone = [
            root / f".samples.csv.{HOST}.{dead}.k2j4_x9q.tmp.csv",
            root / "tiny_sd" / "hybrid_k1" / "a-red-circle" / f".000003.png.{HOST}.{dead}.abcdefgh.tmp.png",
            root / "runs" / f".20250101T000000-generate-{dead}.json.{HOST}.{dead}.zzzzzzzz.tmp.json",
            root / "checkpoints" / f".README.{HOST}.{dead}.a1b2c3d4.tmp",  # a target without a suffix
        ]
        kept = [
            root / f".samples.csv.{HOST}.{live.pid}.livewrtr.tmp.csv",  # a live writer's
            root / f".samples.csv.elsewhere.{dead}.otherhst.tmp.csv",  # another host's: its pids are not ours
            root / f".notes.{dead}.tmp",  # not a name atomic_path makes: a file of the user's
            root / "notes.md",
        ]
        for path in gone + kept:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("partial")
        outside = tmp_path / "outside"
        outside.mkdir()
        linked = outside / f".x.csv.{HOST}.{dead}.abcdefgh.tmp.csv"
        linked.write_text("not in the run")
        (root / "linked").symlink_to(outside, target_is_directory=True)
        RunDir(root).claim()  # what every command that writes does first
        assert [path for path in gone if path.exists()] == []
        assert all(path.exists() for path in kept) and linked.exists()  # never through a link out of the run
    finally:
        live.kill()
        live.wait()


def test_after_a_kill_9_mid_write_the_next_command_in_the_directory_leaves_no_temporary(cli, tmp_path):
    out = tmp_path / "run"
    code, _, err = cli("generate", "model=tiny_sd", "prompt=a red circle", "n=2", f"out={out}")
    assert code == 0, err
    # A writer killed with -9 in the middle of two atomic writes (an image, a table): no cleanup ran.
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from diversity_cli.core.atomic import atomic_path\n"
        "root = Path(sys.argv[1])\n"
        "image = atomic_path(root / 'tiny_sd' / 'other' / '000009.png').__enter__()\n"
        "image.write_bytes(b'half a png')\n"
        "table = atomic_path(root / 'transfer.csv').__enter__()\n"
        "table.write_text('metric,va')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    killed = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True)
    assert killed.returncode == -9 and len(list(out.rglob(".*.tmp*"))) == 2
    # the next command there (it writes neither that image nor that table) leaves nothing of them
    code, _, err = cli("diversity", "metric=pixel", f"out={out}")
    assert code == 0, err
    assert list(out.rglob(".*.tmp*")) == []
