"""Files the toolkit writes get the mode any new file gets (0644 under umask 022): safetensors writes its files
readable by their owner alone, and a student, adapter or checkpoint on a shared run folder is for the group."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from diversity_cli.core.atomic import atomic_path

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _modes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): oct(stat.S_IMODE(p.stat().st_mode)) for p in root.rglob("*") if p.is_file()}


def test_a_file_a_writer_makes_anew_inside_atomic_path_gets_the_usual_mode(tmp_path, umask_022):
    from safetensors.torch import save_file

    with atomic_path(tmp_path / "w.safetensors") as temporary:
        save_file({"a": torch.zeros(2)}, str(temporary))  # replaces the temporary with a file of mode 0600
    assert oct(stat.S_IMODE((tmp_path / "w.safetensors").stat().st_mode)) == "0o644"


def test_an_adapter_and_a_distilled_student_are_readable_by_the_group(cli, tmp_path, umask_022):
    adapter = tmp_path / "adapter"
    code, _, err = cli("train-lora", "concept=red", "model=tiny_sd", "steps=2", "images=8", f"out={adapter}")
    assert code == 0, err
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n")
    student = tmp_path / "student"
    args = ("distill", "model=tiny_sd", f"prompts={prompts}", f"out={student}", "iterations=1", "checkpoint_every=1")
    code, _, err = cli(*args, "batch_size=1", "fake_updates_per_generator_update=1")
    assert code == 0, err
    modes = {**_modes(adapter), **{f"student:{k}": v for k, v in _modes(student).items()}}
    weights = [name for name in modes if name.endswith(".safetensors")]
    assert any(name.startswith("student:student/") for name in weights), weights
    assert any(name.startswith("student:checkpoints/") for name in weights), weights
    assert "pytorch_lora_weights.safetensors" in weights, weights
    assert {name: mode for name, mode in modes.items() if mode != "0o644"} == {}
