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


def test_a_table_target_lists_every_missing_file_of_its_pairs_before_any_image(tmp_path):
    """Each generate checks only the networks its method loads: `method=base` ran for hours before the DMD2
    student it lacked was told."""
    env = {"PATH": "/usr/bin:/bin", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        ["make", "--no-print-directory", "reproduce-table3", f"BIN={Path(sys.executable).parent}",
         f"RESULTS={tmp_path / 'results'}"],
        capture_output=True, text=True, cwd=REPO, env=env,
    )  # fmt: skip
    assert done.returncode != 0 and "sdxl_dmd2 (preset=paper): 4 missing" in done.stdout, done.stdout + done.stderr
    assert "tianweiy/DMD2/dmd2_sdxl_4step_unet_fp16.bin" in done.stdout and " generate " not in done.stdout
    assert not (tmp_path / "results").exists()


def test_every_table_target_checks_its_pairs_first():
    for target, pairs in [("reproduce-table1", "sdxl_dmd2 sdxl_turbo"), ("reproduce-tableD1", "toy toy_dpdmd"),
                          ("reproduce-figures", "sdxl_dmd2"), ("reproduce-tableE1-toy", "toy")]:  # fmt: skip
        done = subprocess.run(
            ["make", "-n", "--no-print-directory", target, "T1_PAIRS=sdxl_dmd2 sdxl_turbo", "D1_PAIRS=toy toy_dpdmd"],
            capture_output=True, text=True, cwd=REPO,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert (
            done.stdout.index(f"for pair in {pairs}; do")
            < done.stdout.index(" models $pair")
            < min(
                done.stdout.index(f" {word} ")
                for word in ("generate", "train-lora", "transfer-lora", "x0viz")
                if f" {word} " in done.stdout
            )
        ), (target, done.stdout)


def test_the_check_reads_the_folder_with_fid_refs_own_pattern(tmp_path):
    """`FID_REF=... coco.pattern=...` names images fid finds; the check took fid's default pattern and refused them."""
    captions = tmp_path / "captions.csv"
    captions.write_text("prompt,coco_id\na bicycle,7\na cat,8\n")
    (tmp_path / "img").mkdir()
    for coco_id in (7, 8):
        (tmp_path / "img" / f"coco_{coco_id}.png").write_bytes(b"")
    assert _check(str(tmp_path / "img"), str(captions)).returncode == 2
    # quoted as fid (Hydra) needs it, the quotes reaching the check as they reach fid: read as fid reads them
    done = _check(str(tmp_path / "img"), str(captions), "coco.pattern='coco_{coco_id}.png'")
    assert done.returncode == 0, done.stderr
    for refused in ("coco.pattern=coco_{coco_id}.png", "coco.pattern=a,b"):  # fid refuses both (one a traceback)
        done = _check(str(tmp_path / "img"), str(captions), refused)
        assert done.returncode == 2 and "fid reads no such value; quote one with braces" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    done = _check(str(tmp_path / "img"), str(captions), "coco.pattern")  # no `=`: not told to quote it
    assert done.returncode == 2 and "the check takes fid's coco.<key>=<value>" in done.stderr
    done = _check(str(tmp_path / "img"), str(captions), "coco.patern=x")
    assert done.returncode == 2 and "coco.patern=x: the check takes fid's coco.<key>=<value>" in done.stderr
    shown = subprocess.run(
        ["make", "-n", "--no-print-directory", "reproduce-table2", f"COCO_IMAGES={tmp_path}",
         f"FID_REF=reference=coco coco.images={tmp_path} coco.pattern=\"'coco_{{coco_id}}.png'\""],
        capture_output=True, text=True, cwd=REPO,
    ).stdout  # fmt: skip
    assert f'check_coco.py "{tmp_path}" "data/coco_30k.csv" coco.pattern="\'coco_{{coco_id}}.png\'"\n' in shown, shown
