"""`make reproduce-table2/4` checks COCO_IMAGES before any generation: a folder that merely existed passed, and
`fid reference=coco` found its images missing only after every caption had been sampled."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "check_coco.py"), *args], capture_output=True, text=True, cwd=REPO
    )


def test_the_check_names_a_missing_image_and_passes_a_folder_holding_them_all(tmp_path):
    """Every image the captions name, as fid takes them all (LIMIT cuts the captions generate samples, not the
    reference): a folder holding some of them is refused, one holding all passes."""
    captions = tmp_path / "captions.csv"
    captions.write_text("prompt,coco_id\na bicycle,203564\na motorcycle,179765\na cat,1\n")
    folder = tmp_path / "val 2014, copy"  # a space and a comma: one line still, no traceback
    folder.mkdir()
    for coco_id in (203564, 179765):
        (folder / f"COCO_val2014_{coco_id:012d}.jpg").write_bytes(b"")
    done = _check(str(folder), str(captions))
    assert done.returncode == 2 and done.stderr.strip().startswith(
        f"error: COCO_IMAGES={folder}: 1 of 3 COCO images named by captions.csv are not in {folder}"
    ), done.stderr
    (folder / "COCO_val2014_000000000001.jpg").write_bytes(b"")
    done = _check(str(folder), str(captions))
    assert done.returncode == 0, done.stderr


def test_the_table_targets_run_the_check_before_generating(tmp_path):
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", "reproduce-table2", f"COCO_IMAGES={tmp_path}", "LIMIT=2"],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    check = done.stdout.index("scripts/check_coco.py")
    assert (
        check < done.stdout.index(" generate ") and f'check_coco.py "{tmp_path}" "data/coco_30k.csv"\n' in done.stdout
    )
