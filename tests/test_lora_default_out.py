"""train-lora's default out= was results/lora_red whatever the concept: a blue LoRA trained without out= was the
adapter `lora_red` in transfer-lora's tables (the folder's name is the adapter's name)."""

from __future__ import annotations

from diversity_cli.commands.usage import key_rows
from diversity_cli.core.config import compose


def test_the_default_folder_is_named_after_the_mode_and_concept():
    assert compose("train_lora", []).out == "results/lora_red"
    assert compose("train_lora", ["concept=blue"]).out == "results/lora_blue"
    slider = compose("train_lora", ["mode=slider", "concept=size=large", "negative=small"])
    assert slider.out == "results/slider_size-large"  # one folder name, no `=` in it
    assert compose("train_lora", ["concept=blue", "out=mine"]).out == "mine"


def test_help_shows_the_default_as_it_is_now_and_what_it_follows():
    (row,) = [row for row in key_rows("train_lora") if row[0] == "out"]
    assert row[2] == "results/lora_red (from mode, concept)"
