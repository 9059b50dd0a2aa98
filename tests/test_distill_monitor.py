"""`distill monitor.every=N` on the toy pair: quality.csv and quality.png written during training, the weights
exactly those of an unmonitored run, rows neither lost nor repeated across a resume, and the figures those of the
network being trained."""

from __future__ import annotations

import csv
import json
import os
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diversity_cli.core.config import compose
from diversity_cli.models.loading import load_pair
from diversity_cli.training.generator import StudentSampler
from diversity_cli.training.monitor import MonitorSettings, QualityMonitor

TOY_PROMPTS = ["a red circle", "two triangles", "a shape on the right"]
SMALL_MONITOR = ("monitor.captions=4", "monitor.per_prompt=2")


pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]  # distill runs resumed: ~80 s


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _without_seconds(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def _student(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "student/diffusion_pytorch_model.safetensors")


def test_monitoring_changes_no_weight_and_resumes_without_losing_or_repeating_a_row(cli, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(TOY_PROMPTS) + "\n")
    args = ("distill", "model=toy", f"prompts={prompts}", "device=cpu", "batch_size=1")
    args += ("fake_updates_per_generator_update=1", "checkpoint_every=2")
    plain, resumed, straight = tmp_path / "plain", tmp_path / "resumed", tmp_path / "straight"
    watched = ("monitor.every=2", *SMALL_MONITOR)

    assert cli(*args, f"out={plain}", "iterations=4")[0] == 0
    assert cli(*args, *watched, f"out={resumed}", "iterations=2")[0] == 0
    # A row measured after the last checkpoint by a run killed before it saved: computed again, not kept twice.
    rows = _rows(resumed / "quality.csv")
    with (resumed / "quality.csv").open("a") as f:
        f.write(",".join(["3", *list(rows[-1].values())[1:]]) + "\n")
    code, _, err = cli(*args, *watched, f"out={resumed}", "iterations=4")
    assert code == 0, err
    assert "iteration 4: fid_toyfeat" in err
    code, _, err = cli(*args, *watched, f"out={straight}", "iterations=4")
    assert code == 0, err

    assert not (plain / "quality.csv").exists()
    assert torch.equal(
        torch.cat([v.flatten() for v in _student(plain).values()]),
        torch.cat([v.flatten() for v in _student(resumed).values()]),
    )
    a, b = _rows(resumed / "quality.csv"), _rows(straight / "quality.csv")
    assert [r["iteration"] for r in a] == ["0", "2", "4"]
    assert _without_seconds(a) == _without_seconds(b)
    assert a[0]["fid_toyfeat"] != a[2]["fid_toyfeat"]  # the student moved, and the monitor saw it
    assert {r["n_fid"] for r in a} == {"4"} and {r["n_per_prompt"] for r in a} == {"2"}
    assert (resumed / "quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    listed = set(json.loads((resumed / "run.json").read_text())["files"])
    assert {"quality.csv", "quality.png"} <= listed  # the run's own files: overwrite=true may replace them

    # Other counts would read as a jump in one curve: refused, before any model loads, and nothing written.
    before = (straight / "quality.csv").read_bytes()
    code, _, err = cli(
        *args, "monitor.every=2", "monitor.captions=5", "monitor.per_prompt=2", f"out={straight}", "iterations=6"
    )
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "monitor.captions=5 differs from the 4 of the quality.csv rows" in err
    assert (straight / "quality.csv").read_bytes() == before
    # Turned on mid-run, the monitor measures where the session starts, then every N and at the end.
    assert cli(*args, *watched, f"out={plain}", "iterations=5")[0] == 0
    assert [r["iteration"] for r in _rows(plain / "quality.csv")] == ["4", "5"]


def test_the_figures_are_those_of_the_network_passed_in(tmp_path):
    """The toy's shipped DMD student scores far better than the teacher's network run on the student's 4 steps
    (the iteration-0 student): a monitor that measured anything but the network it is given would not see it."""
    cfg = compose("distill", ["model=toy"])
    pair = load_pair(cfg.model, torch.device("cpu"), torch.float32)
    sampler = StudentSampler(dict(pair.base.scheduler.config), list(cfg.student_timesteps))
    monitor = QualityMonitor(MonitorSettings(every=1, captions=100, per_prompt=4), pair, sampler, torch.device("cpu"))
    start, trained = monitor.measure(pair.base.network, 0), monitor.measure(pair.distilled.network, 1000)
    assert float(trained["fid_toyfeat"]) < 0.7 * float(start["fid_toyfeat"])
    assert float(trained["adherence_mean"]) > float(start["adherence_mean"])
    assert start["fid_floor"] == trained["fid_floor"] and start["base_fid_toyfeat"] == trained["base_fid_toyfeat"]


def test_a_run_stopped_between_checkpoints_resumes_to_the_uninterrupted_curve(cli, tmp_path, monkeypatch):
    """Measured every 2 iterations, checkpointed every 3, stopped during iteration 5: it resumes from iteration 3
    and its quality.csv has the rows of a run never stopped (0, 2, 4, 6), not one more at 3."""
    from diversity_cli.training import distill

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(TOY_PROMPTS) + "\n")
    args = ("distill", "model=toy", f"prompts={prompts}", "device=cpu", "batch_size=1", "iterations=6")
    args += ("fake_updates_per_generator_update=1", "checkpoint_every=3", "monitor.every=2", *SMALL_MONITOR)
    stopped, straight = tmp_path / "stopped", tmp_path / "straight"
    train = distill.train_iteration

    def stopping(cfg, training, iteration):
        if iteration == 5:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: the CLI's handler stops the run
        return train(cfg, training, iteration)

    monkeypatch.setattr(distill, "train_iteration", stopping)
    assert cli(*args, f"out={stopped}")[0] == 130
    assert [r["iteration"] for r in _rows(stopped / "quality.csv")] == ["0", "2", "4"]
    monkeypatch.setattr(distill, "train_iteration", train)
    code, _, err = cli(*args, f"out={stopped}")
    assert code == 0, err
    assert cli(*args, f"out={straight}")[0] == 0
    a, b = _rows(stopped / "quality.csv"), _rows(straight / "quality.csv")
    assert [r["iteration"] for r in a] == ["0", "2", "4", "6"]
    assert _without_seconds(a) == _without_seconds(b)
