"""`diversity` and `fid` of an images= folder write their results to out=: a folder of the user's was taken over
(run.json written beside their files, after which generate accepted it as a run), and fid's toy reference of "the
run's prompts" drew scenes of the empty caption for a folder that has none, labelled plain `toy`."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(images / f"{i}.png")
    return images


@pytest.mark.parametrize(
    "command", [("diversity", "metric=pixel"), ("fid", "reference=toy", "toy.mode=dataset", "toy.count=10")]
)
def test_a_folder_of_the_users_is_not_taken_as_out(cli, folder, tmp_path, command):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine\n")
    code, _, err = cli(*command, f"images={folder}", f"out={mine}")
    assert code == 2 and "holds files that are not a diversity-cli run (first: notes.txt)" in err
    assert sorted(path.name for path in mine.iterdir()) == ["notes.txt"]
    code, _, err = cli(*command, f"images={folder}", f"out={tmp_path / 'new'}")
    assert code == 0, err  # a new folder: measured as before


def test_fids_toy_reference_of_prompts_is_refused_for_a_folder_without_them(cli, folder, tmp_path):
    out = tmp_path / "out"
    code, _, err = cli("fid", f"images={folder}", "reference=toy", f"out={out}")
    assert code == 2 and err.count("\n") == 1
    assert "images=" in err and "has no prompts: give toy.mode=dataset" in err
    assert not out.exists()
