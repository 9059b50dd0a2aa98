"""train-lora refused a run of other settings without naming them: its record held a digest of the keys only."""

from __future__ import annotations

import json

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
    assert f"final loss {meta['final_loss']:.4g}, 2 steps, rank {meta['rank']}" in said, stdout
    assert f"diversity-cli transfer-lora model=toy adapter={out} prompt=" in said.replace("│ ", ""), stdout
