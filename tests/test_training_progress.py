"""Training progress off a terminal (a SLURM log): distill, train-lora and train-toy drew a rich bar, which off a
terminal prints nothing until the end and then one cut line; they now log plain wide lines, losses included."""

from __future__ import annotations

import io

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")


def test_distill_and_train_lora_log_plain_lines_with_their_losses(cli, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n")
    code, _, err = cli("distill", "model=tiny_sd", f"prompts={prompts}", f"out={tmp_path / 'd'}", "iterations=2",
                       "batch_size=1", "fake_updates_per_generator_update=2")  # fmt: skip
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.startswith("distill dmd tiny_sd: ")]
    assert lines and "2/2 (100%) elapsed" in lines[-1] and " G " in lines[-1] and " dmd " in lines[-1]  # losses too
    code, out, err = cli("train-lora", "model=tiny_sd", "concept=red", "steps=2", "images=8", "batch_size=4",
                         f"out={tmp_path / 'l'}")  # fmt: skip
    assert code == 0, err
    lines = [line for line in err.splitlines() if "2/2 (100%) elapsed" in line]
    assert lines and "loss" in lines[-1]


def test_a_disabled_progress_says_nothing_anywhere():
    """A training's other processes (ranks) draw no bar and log no line."""
    from rich.console import Console

    from diversity_cli.core.console import LoggedProgress

    sink = io.StringIO()
    with LoggedProgress(console=Console(file=sink), disable=True) as progress:
        task = progress.add_task("rank 1", total=2)
        progress.advance(task, 2)
    assert sink.getvalue() == ""


def test_train_loras_final_loss_comes_from_the_log_so_a_resumed_run_reports_the_same(tmp_path):
    """final_loss was the mean of this process's last steps: a run resumed near its end reported another number
    than an uninterrupted one with the same weights."""
    from diversity_cli.toy.lora import logged_final_loss

    log = tmp_path / "lora.csv"
    log.write_text("step,loss,lr,seconds\n" + "".join(f"{step},{step / 100},0.001,1\n" for step in range(10, 301, 10)))
    assert logged_final_loss(log, steps=300) == sum(step / 100 for step in (260, 270, 280, 290, 300)) / 5
    assert logged_final_loss(tmp_path / "missing.csv", steps=300) != logged_final_loss(log, steps=300)  # nan
