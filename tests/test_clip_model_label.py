"""A CLIP score names its CLIP model where it is not the published score's: fid.csv's `clip_model` column, the
`clip[<model>]` heading of Tables 2 and 4, Table 3's quality cell from fid.csv, and ablate.csv's options. Scores of
two CLIP models are on other scales; under one label they would pass for comparable."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from test_fid import _fake_run, _fid_args, _images, _write_images
from test_report import paper_run, tables_of, wide, write_csv  # noqa: F401 (paper_run: a fixture)

from diversity_cli.metrics.preflight import CLIP_SCORE_MODEL


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_fid_csv_names_the_clip_model_of_its_clip_column(cli, tmp_path: Path):
    _fake_run(tmp_path / "run", 3)
    _write_images(tmp_path / "ref", _images(np.random.default_rng(7), 4, (40, 40), (60, 30, 0)))
    code, _, err = cli(*_fid_args(tmp_path))
    assert code == 0, err
    (row,) = _rows(tmp_path / "run" / "fid.csv")
    assert row["clip"] != "" and row["clip_model"] == "tiny_random"
    code, _, err = cli(*_fid_args(tmp_path), "clip_model=null")  # no CLIP score: no model named
    assert code == 0, err
    (row,) = _rows(tmp_path / "run" / "fid.csv")
    assert row["clip"] == "" and row["clip_model"] == ""


def _with_clip_model(run: Path, model: str) -> None:
    rows = _rows(run / "fid.csv")
    write_csv(run / "fid.csv", [{**row, "clip_model": model} for row in rows])


def test_table_2_heads_another_clip_models_score_with_its_name(paper_run: Path):  # noqa: F811
    _with_clip_model(paper_run, "tiny_random")
    heading = " ".join(wide(tables_of(paper_run, keys=("2",))["2"])[0])
    assert "clip[tiny_random]" in heading
    _with_clip_model(paper_run, CLIP_SCORE_MODEL)  # the published score's model: the plain heading
    heading = " ".join(wide(tables_of(paper_run, keys=("2",))["2"])[0])
    assert "measured clip paper" in heading and "clip[" not in heading


def test_table_3s_quality_cell_from_fid_csv_names_another_clip_model(tmp_path: Path):
    from diversity_cli.reporting.tables.common import load_run, quality_of

    root = tmp_path / "run"
    root.mkdir()
    write_csv(
        root / "samples.csv",
        [{"method": "base", "model": "sdxl_dmd2", "prompt": "a car", "seed": s, "path": f"{s}.png", "tag": "base"}
         for s in range(2)],
    )  # fmt: skip
    write_csv(
        root / "fid.csv",
        [{"method": "base", "model": "sdxl_dmd2", "n": 2, "fid": "", "clip": "30.5", "reference": "coco",
          "features": "inception", "clip_model": "tiny_random"}],
    )  # fmt: skip
    (item,) = quality_of(load_run(root))[("sdxl_dmd2", "base", "a car")]
    assert item["metric"] == "clip_score[tiny_random]" and item["value"] == "30.5"


def test_ablate_options_name_another_clip_model():
    from diversity_cli.experiments.ablate import _quality_options

    assert _quality_options("clip_score", {"clip_model": "tiny_random"}) == "clip_model=tiny_random"
    assert _quality_options("clip_score", {"clip_model": CLIP_SCORE_MODEL}) == ""
    assert _quality_options("fid", {"clip_model": "tiny_random"}) == ""  # an FID does not depend on it
