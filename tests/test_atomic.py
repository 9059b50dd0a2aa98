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
