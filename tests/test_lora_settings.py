"""train-lora refused a run of other settings without naming them: its record held a digest of the keys only."""

from __future__ import annotations

import json

import pytest
import torch

TINY = ("concept=red", "steps=2", "images=8", "batch_size=4")


def test_the_refusal_names_the_keys_that_differ_and_old_records_still_resume(cli, tmp_path):
    out = tmp_path / "lora"
    code, _, err = cli("train-lora", *TINY, f"out={out}")
    assert code == 0, err
    code, _, err = cli("train-lora", *TINY, "steps=3", "rank=2", f"out={out}")
    assert code == 2 and err.count("\n") == 1, err
    assert "holds a train-lora run with other settings (rank, steps); rerun with its settings to resume" in err
    code, stdout, err = cli("train-lora", *TINY, f"out={out}")
    assert code == 0 and "nothing to do" in stdout + err
    record = out / "train_lora.json"  # as runs recorded before the keys were kept: the digest alone
    digest = json.loads(record.read_text())["settings"]
    record.write_text(json.dumps({"settings": digest}) + "\n")
    code, stdout, err = cli("train-lora", *TINY, f"out={out}")
    assert code == 0 and "nothing to do" in stdout + err  # the same digest as before: it still resumes
    code, _, err = cli("train-lora", *TINY, "steps=3", f"out={out}")
    assert code == 2 and "other settings (recorded by digest)" in err


def test_the_summary_gives_the_adapters_concept_final_loss_and_how_to_use_it(cli, tmp_path):
    """train-lora's summary said only "output" and the weights file: its headline number (the final loss) and
    what the adapter was trained toward were on stderr and in adapter.json alone."""
    out = tmp_path / "lora"
    code, stdout, err = cli("train-lora", *TINY, "mode=slider", "negative=blue", f"out={out}")
    assert code == 0, err
    meta = json.loads((out / "adapter.json").read_text())
    said = " ".join(stdout.split())
    assert "slider toward red vs blue on toy's base" in said, stdout
    logged = "the loss of step 2, the one logged in the last 2 steps"  # a mean of one logged step said "mean"
    assert f"final loss {meta['final_loss']:.4g} ({logged}), 2 steps, rank {meta['rank']}" in said, stdout
    assert f"diversity-cli transfer-lora model=toy adapter={out} prompt=" in said.replace("│ ", ""), stdout


def test_the_use_it_line_carries_the_base_the_adapter_was_trained_on(cli, tmp_path):
    """Trained on another base (model.base.network.path=...), the 'use it' line named model=toy alone: followed,
    transfer-lora took the config file's base and refused the adapter as trained on other weights."""
    import shlex
    import shutil

    from diversity_cli.core.resources import asset

    base = tmp_path / "base"
    shutil.copytree(asset("toy/base"), base)
    out = tmp_path / "lora"
    code, stdout, err = cli("train-lora", *TINY, f"model.base.network.path={base / 'unet'}", f"out={out}")
    assert code == 0, err
    cells = [line.split("│") for line in stdout.splitlines() if line.count("│") == 3]
    first = next(i for i, row in enumerate(cells) if "diversity-cli transfer-lora" in row[2])
    rest = [row[2] for row in cells[first + 1 :]]
    rest = rest[: next((i for i, row in enumerate(cells[first + 1 :]) if row[1].strip()), len(rest))]
    line = " ".join([cells[first][2], *rest])  # the cell as rich wrapped it, at spaces
    words = shlex.split(" ".join(line.split()).replace(" prompt=...", ""))
    assert f"model.base.network.path={base / 'unet'}" in words, line
    code, _, err = cli(*words[1:], "prompt=a red circle", "n=1", "clip_model=null", f"out={tmp_path / 'run'}")
    assert code == 0 and "trained on base weights" not in err, err


def test_a_rank_above_the_adapted_layers_width_is_one_line_and_writes_nothing(cli, tmp_path):
    """rank=100000 on the toy's 64-wide attention layers was taken, and trained for seconds a step."""
    out = tmp_path / "lora"
    code, _, err = cli("train-lora", *TINY, "rank=100000", f"out={out}")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "rank=100000 is above the rank of every layer it adapts" in err and "give rank <= 64" in err, err
    assert not out.exists()
    # a 3x3 convolution 32 -> 64 takes rank 48 (its weight is 64 x 288); the widest layer of several sets the cap
    from diversity_cli.core.errors import UserError
    from diversity_cli.toy.lora import check_rank

    network = torch.nn.Sequential(torch.nn.Conv2d(32, 64, 3), torch.nn.Linear(32, 32))
    check_rank(network, ["0"], 48)
    check_rank(network, ["0", "1"], 48)
    with pytest.raises(UserError, match="give rank <= 32"):
        check_rank(network, ["1"], 48)


def test_the_final_loss_says_how_many_logged_losses_it_averages():
    """At 4 steps it said "the mean of the losses logged in the last 4 steps": the log held step 4's alone."""
    from diversity_cli.toy.lora import loss_words

    assert loss_words(4) == "the loss of step 4, the one logged in the last 4 steps"
    assert loss_words(1) == "the loss of its one step" and "0" not in loss_words(0)  # "last 1 steps", "the 0 ..."
    assert loss_words(25) == "the mean of the 3 one-step losses logged in the last 25 steps"  # steps 10, 20, 25
    assert loss_words(1000) == "the mean of the 5 one-step losses logged in the last 50 steps"
