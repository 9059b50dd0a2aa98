"""One training process a run directory: two train-lora (or train-toy) on one out= both ran and logged every step
twice; distill refused, but advised lock_wait=, a key distill refuses."""

from __future__ import annotations

from diversity_cli.core.marker import RunMarker
from diversity_cli.core.samples import writer_lock


def test_a_second_train_lora_or_train_toy_on_one_out_refuses_at_once(cli, tmp_path):
    for command, args in (("train-lora", ("model=tiny_sd", "concept=red", "steps=2", "images=8", "batch_size=4")),
                          ("train-toy", ("data.n_train=64",))):  # fmt: skip
        out = tmp_path / command
        RunMarker(out).claim()  # the first process's run directory, its lock held: still training
        with writer_lock(out / "logs", 0):
            code, _, err = cli(command, *args, f"out={out}")
        assert code == 2, err
        assert err.strip().endswith("is being written by another process; wait for it to finish"), err
        assert not (out / "logs").exists()


def test_distills_refusal_offers_no_key_it_does_not_take(cli, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n")
    out = tmp_path / "d"
    RunMarker(out).claim()
    with writer_lock(out / "log.csv", 0):
        code, _, err = cli("distill", "model=tiny_sd", f"prompts={prompts}", f"out={out}", "iterations=1")
    assert code == 2 and "being written by another process" in err and "lock_wait" not in err, err
