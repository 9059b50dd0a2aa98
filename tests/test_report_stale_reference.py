"""`report` on numbers measured against a reference that changed since: an FID against one reference folder
changed marked every cell of its method (FIDs against the unchanged ones, seconds per image, "measured as"), and
diversity.csv's precision/recall/density/coverage rows were never checked against their reference at all."""

from __future__ import annotations

import csv
from pathlib import Path

from diversity_cli.core.config import compose
from diversity_cli.reporting.tables import build_tables, load_run, read_paper, to_markdown
from diversity_cli.reporting.tables.common import row_change

REPO = Path(__file__).resolve().parent.parent
MARK = "[out of date]"


def _tables(out: Path, key: str):
    cfg = compose("report", [])
    return build_tables([load_run(out)], read_paper(REPO / "data" / "paper_tables.csv"), cfg, [key])[key]


def _reference_folder(folder: Path, count: int) -> Path:
    from PIL import Image

    folder.mkdir()
    for i in range(count):
        Image.new("RGB", (32, 32), (40 * i % 256, 90, 200 - 20 * i)).save(folder / f"{i}.png")
    return folder


def _coverage_changes(out: Path, method: str) -> list[str]:
    """What changed since each of `method`'s precision/recall/density/coverage rows of diversity.csv."""
    run = load_run(out)
    rows = [row for row in run.diversity if row["method"] == method and "reference=" in row["options"]]
    assert rows, run.diversity
    return [row_change(run, "diversity.csv", row) for row in rows]


def test_only_the_fid_cells_against_a_changed_reference_are_marked(cli, tmp_path: Path):
    out, reference = tmp_path / "run", _reference_folder(tmp_path / "refB", 4)
    assert cli("generate", "method=base", "prompt=a circle", "n=4", f"out={out}")[0] == 0
    fid = ("fid", f"out={out}", "features=toy", "clip_model=null")
    assert cli(*fid)[0] == 0  # against the toy scenes
    assert cli(*fid, f"reference={reference}")[0] == 0
    (reference / "3.png").unlink()

    table = _tables(out, "2")
    marked = {line.measured_metric for line in table.measured if MARK in line.measured_as}
    assert marked == {"fid_toyfeat[ref=refB]"}, marked  # not the toy reference's FID, nor seconds_per_image
    (note,) = [note for note in table.notes if "out of date" in note]
    assert f"toy / base against {reference}: its reference changed since (3 images now)" in note, note
    assert "against toy" not in note
    row = next(line for line in to_markdown(table).splitlines() if line.startswith("| Base"))
    assert row.count(MARK) == 1 and row.endswith("| toy / base (25 steps, 50 NFE) |"), row  # the cell says it


def test_coverage_against_a_folder_changed_since_is_out_of_date(cli, tmp_path: Path):
    out, reference = tmp_path / "run", _reference_folder(tmp_path / "refC", 4)
    assert cli("generate", "method=base", "prompt=a circle", "n=4", f"out={out}")[0] == 0
    diversity = ("diversity", f"out={out}", "metric=pixel", "bootstrap=0", "coverage_k=1")
    code, printed, _ = cli(*diversity, f"reference={reference}")
    assert code == 0 and "coverage" in printed and "reference_id" not in printed  # a digest for the report
    assert _coverage_changes(out, "base") == [""] * 4  # as measured: current
    (reference / "3.png").unlink()

    assert _coverage_changes(out, "base") == ["its reference changed since (3 images now)"] * 4
    table = _tables(out, "3")
    (note,) = [note for note in table.notes if "out of date" in note]
    assert f"toy / base / a circle against {reference}: its reference changed since" in note, note
    assert "(its precision/recall/density/coverage rows, which no table shows)" in note, note
    # the group's diversity is not over the reference: its cell stays current
    assert not [line for line in table.measured if MARK in line.measured_as]


def test_coverage_against_a_method_tag_whose_images_changed_is_out_of_date(cli, tmp_path: Path):
    out = tmp_path / "run"
    for method in ("base", "distilled"):
        assert cli("generate", f"method={method}", "prompt=a circle", "n=4", f"out={out}")[0] == 0
    diversity = ("diversity", f"out={out}", "metric=pixel", "bootstrap=0", "coverage_k=1", "reference=base")
    assert cli(*diversity)[0] == 0
    assert _coverage_changes(out, "distilled") == [""] * 4
    next((out / "toy" / "base").glob("*/000003.png")).unlink()

    assert _coverage_changes(out, "distilled") == ["its reference changed since (3 images now)"] * 4
    table = _tables(out, "3")
    (note,) = [note for note in table.notes if "out of date" in note]
    assert "toy / distilled / a circle against base: its reference changed since (3 images now)" in note, note
    marked = {line.method for line in table.measured if MARK in line.measured_as}
    assert marked == {"Base"}, marked  # base's own images changed; distilled's diversity is not over base's


def test_coverage_rows_written_before_they_named_their_reference_are_not_checked(cli, tmp_path: Path):
    out, reference = tmp_path / "run", _reference_folder(tmp_path / "refC", 4)
    assert cli("generate", "method=base", "prompt=a circle", "n=4", f"out={out}")[0] == 0
    diversity = ("diversity", f"out={out}", "metric=pixel", "bootstrap=0", "coverage_k=1")
    assert cli(*diversity, f"reference={reference}")[0] == 0
    path = out / "diversity.csv"
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    columns = [column for column in rows[0] if column != "reference_id"]  # as an earlier version wrote it
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (reference / "3.png").unlink()

    assert _coverage_changes(out, "base") == [""] * 4  # not known: not called out of date
    code, _, err = cli("report", f"out={out}", "figures=false")
    assert code == 0, err
    assert "out of date" not in err


def test_a_relative_reference_folder_is_named_by_its_absolute_path(cli, tmp_path: Path, monkeypatch):
    """diversity.csv kept `reference=refC` as typed: the report looked it up from its own folder, where another
    refC (other images) read as this one changed, and from anywhere else the check was skipped."""
    out = tmp_path / "run"
    (tmp_path / "here").mkdir()
    reference = _reference_folder(tmp_path / "here" / "refC", 4)
    assert cli("generate", "method=base", "prompt=a circle", "n=4", f"out={out}")[0] == 0
    monkeypatch.chdir(tmp_path / "here")
    diversity = ("diversity", f"out={out}", "metric=pixel", "bootstrap=0", "coverage_k=1", "reference=refC")
    assert cli(*diversity)[0] == 0
    run = load_run(out)
    options = {row["options"] for row in run.diversity if "coverage" in row["metric"]}
    assert options == {f"reference={reference}; coverage_k=1"}, options
    monkeypatch.chdir(_reference_folder(tmp_path / "elsewhere", 3).parent)
    _reference_folder(tmp_path / "refC", 2)  # a folder of that name here, other images
    assert _coverage_changes(out, "base") == [""] * 4
    (reference / "3.png").unlink()
    assert _coverage_changes(out, "base") == ["its reference changed since (3 images now)"] * 4
