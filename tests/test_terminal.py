"""What a researcher sees in a real terminal (a pseudo-terminal): the progress bar with done/total, elapsed,
remaining and it/s, then the end-of-run summary table."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect")

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_progress_and_summary_render_on_a_terminal(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TERM": "xterm-256color", "COLUMNS": "160"}
    env.pop("NO_COLOR", None)
    cli = str(Path(sys.executable).with_name("diversity-cli"))
    args = ["generate", "model=tiny_sd", "prompt=a red circle", "n=3", "batch_size=1", f"out={tmp_path / 'run'}"]
    child = pexpect.spawn(cli, args, env=env, dimensions=(40, 160), encoding="utf-8", timeout=240)
    child.expect(pexpect.EOF)
    child.close()
    screen = ANSI.sub("", child.before)
    assert child.exitstatus == 0, screen
    # the bar: description, done/total, elapsed < remaining, rate
    assert re.search(r"tiny_sd_hybrid_k1.*3/3\s+\d+:\d\d:\d\d\s+<\s+\d+:\d\d:\d\d\s+[\d.]+ (it/s|s/it)", screen), screen
    # the summary: a table headed by images, seconds and images/s, then what was written where
    assert re.search(r"generate: 3 images, [\d.]+ s, [\d.]+ images/s", screen), screen
    for what in ("samples.csv", "contact sheet", "s/image over its 3 images"):
        assert what in screen
    assert "┏" in screen and "┃" in screen  # drawn as a table on a terminal
