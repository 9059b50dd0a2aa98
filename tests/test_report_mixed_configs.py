"""One prompt of a method remade at another CFG of the base: Table 3 averaged it with the other prompts' cells,
made at the pair's own CFG, without a word (diversity says it; the report did not)."""

from __future__ import annotations

from pathlib import Path

from diversity_cli.core.config import compose
from diversity_cli.reporting.tables import build_tables, load_run, read_paper, to_markdown

REPO = Path(__file__).resolve().parent.parent


def _table3(out: Path):
    cfg = compose("report", [])
    return build_tables([load_run(out)], read_paper(REPO / "data" / "paper_tables.csv"), cfg, ["3"])["3"]


def test_an_average_over_prompts_made_at_two_settings_is_said(cli, tmp_path: Path):
    out = tmp_path / "run"
    (tmp_path / "p.txt").write_text("a shape\na circle\n")
    for method in ("base", "distilled"):
        code, _, err = cli("generate", f"method={method}", f"prompts={tmp_path / 'p.txt'}", "n=3", f"out={out}")
        assert code == 0, err
    assert cli("diversity", f"out={out}", "bootstrap=0")[0] == 0
    assert not [note for note in _table3(out).notes if "configs" in note]  # one setting: nothing to say
    code, _, err = cli("generate", "method=base", "prompt=a shape", "n=3", "model.base.guidance=5", "overwrite=true",
                       f"out={out}")  # fmt: skip
    assert code == 0, err
    assert cli("diversity", f"out={out}", "bootstrap=0")[0] == 0
    (note,) = [note for note in _table3(out).notes if "configs" in note]
    assert note.startswith("toy / base in") and "made with 2 configs" in note and "average" in note


def test_a_cell_over_images_remade_since_is_marked_in_the_cell(cli, tmp_path: Path):
    """Out of date was said in the notes only; the cell itself read as current."""
    out = tmp_path / "run"
    (tmp_path / "p.txt").write_text("a shape\na circle\n")
    for method in ("base", "distilled"):
        assert cli("generate", f"method={method}", f"prompts={tmp_path / 'p.txt'}", "n=3", f"out={out}")[0] == 0
    assert cli("diversity", f"out={out}", "bootstrap=0")[0] == 0
    assert not [line for line in _table3(out).measured if "out of date" in line.measured_as]
    code, _, err = cli("generate", "method=base", "prompt=a shape", "n=3", "model.base.guidance=5", "overwrite=true",
                       f"out={out}")  # fmt: skip
    assert code == 0, err
    marked = {(line.method, line.condition) for line in _table3(out).measured if "[out of date]" in line.measured_as}
    assert ("Base", "a shape") in marked and any(condition.startswith("Average") for _, condition in marked)
    assert not any(method == "Distilled" or condition == "a circle" for method, condition in marked)
    # the rendered row too: its "measured as" was the pair alone, the mark dropped with the rest
    rows = {line.split(" | ")[0].strip("| "): line for line in to_markdown(_table3(out)).splitlines()}
    assert rows["a shape"].endswith("| toy [out of date] (Base); toy |") and "out of date" not in rows["a circle"]


def test_of_two_columns_of_one_method_only_the_out_of_date_one_is_marked(cli, tmp_path: Path):
    """pixel at size=8 over 3 images, 2 more images, pixel at the default over all 5: the row said "out of date
    (Distilled)" and neither cell did, though the default's was measured over the images the run holds."""
    out = tmp_path / "run"
    args = ("method=distilled", "prompt=a shape", f"out={out}")
    assert cli("generate", *args, "n=3")[0] == 0
    assert cli("diversity", f"out={out}", "metric=pixel", "bootstrap=0", "embedders.pixel.size=8")[0] == 0
    assert cli("generate", *args, "n=5")[0] == 0
    assert cli("diversity", f"out={out}", "metric=pixel", "bootstrap=0")[0] == 0
    header, *rows = [line.split(" | ") for line in to_markdown(_table3(out)).splitlines() if line.startswith("| ")]
    row = next(r for r in rows if r[0].strip("| ") == "a shape")
    cells = {name.strip(): row[i] for i, name in enumerate(header) if name.strip().startswith("Distilled: measured")}
    eight, default = cells["Distilled: measured pixel[size=8]_diversity"], cells["Distilled: measured pixel_diversity"]
    assert "[out of date]" in eight and "out of date" not in default, cells


def test_a_run_without_samples_csv_says_its_numbers_were_not_checked(cli, tmp_path: Path):
    out = tmp_path / "run"
    assert cli("generate", "method=base", "prompt=a shape", "n=3", f"out={out}")[0] == 0
    assert cli("diversity", f"out={out}", "bootstrap=0")[0] == 0
    (out / "samples.csv").rename(tmp_path / "samples.csv")
    (note,) = [note for note in _table3(out).notes if "samples.csv" in note]
    assert "has no samples.csv: whether its numbers are over the images it holds could not be checked" in note


def test_a_report_looks_each_image_up_on_disk_once(cli, tmp_path: Path, monkeypatch):
    """Which groups are out of date was worked out once for the notes and again for the cells' marks, per table,
    each time looking every image of the run up on disk (and reading each ablate point's samples.csv)."""
    out = tmp_path / "run"
    (tmp_path / "p.txt").write_text("a shape\na circle\n")
    for method in ("base", "distilled"):
        assert cli("generate", f"method={method}", f"prompts={tmp_path / 'p.txt'}", "n=3", f"out={out}")[0] == 0
    assert cli("diversity", f"out={out}", "bootstrap=0")[0] == 0
    run = load_run(out)
    looked_up: list[str] = []
    is_file = Path.is_file
    monkeypatch.setattr(Path, "is_file", lambda path: looked_up.append(str(path)) or is_file(path))
    cfg = compose("report", [])
    tables = build_tables([run], read_paper(REPO / "data" / "paper_tables.csv"), cfg, ["3", "D1", "E1"])
    assert "3" in tables
    images = [name for name in looked_up if name.endswith(".png")]
    assert len(images) == len(run.samples) == 12 and len(set(images)) == 12


def test_the_pages_measurement_table_marks_a_row_over_images_since_changed(cli, tmp_path: Path):
    """The tables said "out of date"; the page's raw diversity.csv table beside them showed the row unmarked."""
    out = tmp_path / "run"
    assert cli("generate", "method=base", "prompt=a shape", "n=3", f"out={out}")[0] == 0
    assert cli("diversity", f"out={out}", "bootstrap=0")[0] == 0
    assert cli("report", f"out={out}", "figures=false")[0] == 0
    assert "<th>out of date</th>" not in (out / "report.html").read_text()  # nothing changed: no such column
    assert cli("generate", "method=base", "prompt=a shape", "n=4", f"out={out}")[0] == 0
    assert cli("report", f"out={out}", "figures=false")[0] == 0
    page = (out / "report.html").read_text()
    raw = page.split("<h3>diversity.csv</h3>")[1].split("</table>")[0]
    assert "<th>out of date</th>" in raw and "n=3, samples.csv&#x27;s images 4" in raw


def test_an_fid_against_a_reference_folder_changed_since_is_out_of_date(cli, tmp_path: Path):
    """An image of the reference folder replaced after fid: Table 2 showed the old FID as current (the record held
    the reference's hash, the report did not read it). fid again against it clears the mark."""
    from PIL import Image

    out, reference = tmp_path / "run", tmp_path / "ref"
    reference.mkdir()
    for i in range(4):
        Image.new("RGB", (32, 32), (60 * i, 90, 200 - 40 * i)).save(reference / f"{i}.png")
    assert cli("generate", "method=base", "prompt=a circle", "n=4", f"out={out}")[0] == 0
    fid = ("fid", f"out={out}", f"reference={reference}", "features=toy", "clip_model=null")
    assert cli(*fid)[0] == 0

    def table2():
        cfg = compose("report", [])
        return build_tables([load_run(out)], read_paper(REPO / "data" / "paper_tables.csv"), cfg, ["2"])["2"]

    assert not [line for line in table2().measured if "out of date" in line.measured_as]
    # what the FID is against, with its size (the column's label, `ref=ref`, gave none)
    assert f"FID of {out} against {reference}: 4 images in {reference}" in table2().notes
    Image.new("RGB", (32, 32), (255, 255, 255)).save(reference / "0.png")  # same count, other bytes
    table = table2()
    marked = {line.method for line in table.measured if "[out of date]" in line.measured_as}  # FID and s/image
    assert marked == {"Base (SDXL-Base 50 steps)"}, marked
    (note,) = [note for note in table.notes if "out of date" in note]
    assert "its reference changed since (4 images now)" in note, note
    assert cli(*fid)[0] == 0
    assert not [line for line in table2().measured if "out of date" in line.measured_as]
    reference.rename(tmp_path / "moved")  # not there to check: said, not passed over
    (note,) = [note for note in table2().notes if note.startswith(f"FID of {out} against {reference}")]
    assert note.endswith("(not found on this machine now: whether it changed since is not checked)"), note


def test_a_later_fid_of_some_groups_leaves_the_others_against_the_old_reference_out_of_date(cli, tmp_path: Path):
    """fid tags=base against the changed reference cleared the mark of the distilled row too, which it had not
    measured again (the check compared the reference with the last fid run's record, not with each row's)."""
    from PIL import Image

    out, reference = tmp_path / "run", tmp_path / "ref"
    reference.mkdir()
    for i in range(4):
        Image.new("RGB", (32, 32), (60 * i, 90, 200 - 40 * i)).save(reference / f"{i}.png")
    for method in ("base", "distilled"):
        assert cli("generate", f"method={method}", "prompt=a circle", "n=4", f"out={out}")[0] == 0
    fid = ("fid", f"out={out}", f"reference={reference}", "features=toy", "clip_model=null")
    assert cli(*fid)[0] == 0
    Image.new("RGB", (32, 32), (255, 255, 255)).save(reference / "0.png")
    assert cli(*fid, "tags=base")[0] == 0

    cfg = compose("report", [])
    table = build_tables([load_run(out)], read_paper(REPO / "data" / "paper_tables.csv"), cfg, ["2"])["2"]
    marked = {line.method for line in table.measured if "[out of date]" in line.measured_as}
    assert marked == {"Distilled (SDXL-DMD2 4 steps)"}, marked
