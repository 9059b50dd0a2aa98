"""What a new user found wrong in `report`: a damaged or hand-edited number left out of an average that still said
how many prompts it was over (exit 0), an empty or cut-off results file read as "no measurement", a header's n
garbled from an average's "6/8", a commit named twice, markdown shown as written in the HTML, and advice to set a key
that is then refused."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from test_report import toy_run, write_csv  # noqa: F401 (toy_run: a fixture)

from diversity_cli.reporting.tables.common import Line, Table
from diversity_cli.reporting.tables.render import provenance


def _edit(path: Path, column: str, value: str) -> None:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    rows[0][column] = value
    write_csv(path, rows)


@pytest.mark.parametrize(
    "name, column, value",
    [("diversity.csv", "value", "abc"), ("diversity.csv", "value", "nan"), ("fid.csv", "fid_toyfeat", "oops"),
     ("transfer.csv", "classifier_with", "x"), ("ablate.csv", "ci_low", "inf")],
)  # fmt: skip
def test_a_cell_that_is_no_number_is_one_line_and_nothing_is_written(cli, toy_run: Path, tmp_path, name, column, value):  # noqa: F811
    if name == "ablate.csv":
        _edit(toy_run / name, "ci_high", "0.9")  # the column exists in a file the toolkit wrote
    _edit(toy_run / name, column, value)
    code, _, err = cli("report", f"out={toy_run}", f"tables_dir={tmp_path / 'tables'}")
    assert code == 2 and "Traceback" not in err, err
    assert err.strip() == (
        f"error: {toy_run / name} line 2: {column} is {value!r}, not a number (damaged or edited); restore it, or "
        "move it away and rerun the command that wrote it"
    )
    assert not (tmp_path / "tables").exists() and not (toy_run / "report.html").exists()


@pytest.mark.parametrize(
    "name, column, value, said",
    [("transfer.csv", "classifier_with", "1.7", "classifier_with=1.7 is no share (0 to 1)"),  # a traceback
     ("transfer.csv", "n", "0", "n=0 is no count of images"),  # shown as 0.250 (n=0)
     ("diversity.csv", "ci", "95", "ci=95 is no interval level"),  # shown as a 9500% CI
     ("diversity.csv", "ci_low", "0.99", "its interval [0.99, "),  # shown reversed
     ("commitment.csv", "distance", "far", "distance is 'far', not a number"),  # a pandas traceback
     ("samples.csv", "seconds", "slow", "seconds is 'slow', not a number")],  # left out of a mean still of all n
)  # fmt: skip
def test_a_number_no_measurement_gives_is_one_line(cli, toy_run: Path, tmp_path, name, column, value, said):  # noqa: F811
    if column.startswith("ci"):
        _edit(toy_run / name, "ci_high", "0.9")  # the columns exist in a file the toolkit wrote
        _edit(toy_run / name, "ci_low", "0.1")
    _edit(toy_run / name, column, value)
    code, _, err = cli("report", f"out={toy_run}", f"tables_dir={tmp_path / 'tables'}")
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    where = "(image toy/" if name == "samples.csv" else "line 2: "  # a shard's file holds some of the rows
    assert err.startswith(f"error: {toy_run / name} {where}") and said in err, err
    assert not (tmp_path / "tables").exists() and not (toy_run / "report.html").exists()


@pytest.mark.parametrize("cut", ["empty", "mid-row"])
def test_an_empty_or_cut_off_results_file_is_damaged_not_unmeasured(cli, toy_run: Path, tmp_path, cut):  # noqa: F811
    path = toy_run / "diversity.csv"
    text = path.read_text()
    path.write_text("" if cut == "empty" else text[: text.rindex(",")])  # the last row stops before its last cell
    code, _, err = cli("report", f"out={toy_run}", f"tables_dir={tmp_path / 'tables'}")
    reason = "empty" if cut == "empty" else "its last row is cut off"
    assert code == 2 and f"{path} is damaged ({reason})" in err, err


@pytest.mark.parametrize("name", ["diversity.csv", "fid.csv", "ablate.csv"])
@pytest.mark.parametrize("change", ["a field more", "a field less"])
def test_a_row_with_a_field_more_or_less_is_one_line_naming_its_line(cli, toy_run: Path, tmp_path, name, change):  # noqa: F811
    """A hand-edited row with an extra field crashed the report (a traceback) and one short of a field was read with
    its cells under other columns; only a torn last row (a kill mid-append) is one it may leave out."""
    path = toy_run / name
    lines = path.read_text().splitlines()
    lines[1] = lines[1] + ",extra" if change == "a field more" else lines[1][: lines[1].rindex(",")]
    path.write_text("\n".join(lines) + "\n")
    header = len(lines[0].split(","))
    code, _, err = cli("report", f"out={toy_run}", f"tables_dir={tmp_path / 'tables'}")
    found = header + 1 if change == "a field more" else header - 1
    assert code == 2 and err.strip() == (
        f"error: {path} line 2 is damaged ({found} fields where its header has {header}); move it away and rerun the "
        "command that wrote it"
    ), err
    assert not (tmp_path / "tables").exists() and not (toy_run / "report.html").exists()


def test_the_headers_n_reads_the_counts_of_an_averages_cells():
    lines = [
        Line("3", "Base", "a shape", "diversity", measured="0.3", n="8", run="/r", model="toy"),
        Line("3", "Base", "Average", "diversity", measured="0.3", n="6/8", run="/r", model="toy"),
    ]
    (line,) = provenance(Table("3", "Table 3", lines, []))
    assert "n = 6-8 per cell" in line


def test_a_commit_recorded_in_full_and_cut_is_named_once(toy_run: Path):  # noqa: F811
    import json

    from diversity_cli.reporting.tables.common import load_run

    full = "c54d3dcc70aa11bb22cc33dd44ee55ff66778899"
    (toy_run / "versions.json").write_text(json.dumps({"generate": {"git_commit": full}}))
    (toy_run / "runs").mkdir()
    (toy_run / "runs" / "x.json").write_text(json.dumps({"command": "diversity", "git_commit": full[:10]}))
    assert load_run(toy_run).commit == full[:10]
    # a checkout with changes says so: cut to 10 characters, the header read as a clean commit
    (toy_run / "runs" / "y.json").write_text(json.dumps({"command": "fid", "git_commit": f"{full}-dirty"}))
    assert load_run(toy_run).commit == f"{full[:10]}, {full[:10]}-dirty"
    # an installed wheel's words are no hash to cut ("not a chec")
    (toy_run / "runs" / "z.json").write_text(json.dumps({"command": "fid", "git_commit": "not a checkout"}))
    assert load_run(toy_run).commit == f"{full[:10]}, {full[:10]}-dirty, not a checkout"


def test_figure_7s_caption_in_the_html_is_plain_text(cli, toy_run: Path, tmp_path, monkeypatch):  # noqa: F811
    from diversity_cli.reporting import report

    monkeypatch.setattr(report, "ablate_notes", lambda runs, metrics: ["**out of date**: ablate.csv's k=1 row"])
    code, _, err = cli("report", f"out={toy_run}", f"tables_dir={tmp_path / 'tables'}")
    assert code == 0, err
    page = (toy_run / "report.html").read_text()
    assert "out of date: ablate.csv" in page and "**out of date**" not in page


def test_the_advice_for_a_network_folder_is_a_key_the_command_line_takes(cli, tmp_path):
    folder = tmp_path / "unet"
    folder.mkdir()  # no config.json: no diffusers network folder
    code, _, err = cli("generate", "model=sdxl_dmd2", "method=base", "n=1", f"+model.base.network.path={folder}",
                       f"out={tmp_path / 'run'}")  # fmt: skip
    assert code == 2
    assert "set +model.base.network.path=<such a folder>" in err  # without the + Hydra refuses the key


def test_an_adherence_interval_is_said_to_be_wilsons_not_a_bootstrap():
    """Tables 3, D.1 and E.1 put a toy_adherence interval beside each diversity interval; the only note called
    every interval a bootstrap over the images."""
    from diversity_cli.reporting.tables.render import reading_notes

    common = dict(n="6", run="/r", model="toy", ci_low="0.4", ci_high="0.9")
    lines = [
        Line("3", "Base", "a shape", "dreamsim_diversity", measured_metric="toy_features", measured="0.3", **common),
        Line("3", "Base", "a shape", "quality", measured_metric="toy_adherence", measured="0.83", **common),
    ]
    notes = reading_notes(Table("3", "Table 3", lines, []))
    (wilson,) = [note for note in notes if "after a toy_adherence" in note]
    assert "Wilson score interval" in wilson
    (bootstrap,) = [note for note in notes if "bootstrap confidence interval" in note]
    assert bootstrap.startswith("[low, high] after a measured diversity")
    assert not [note for note in notes if "no quality beside" in note]
    diversity, adherence = lines
    assert not [note for note in reading_notes(Table("3", "Table 3", [adherence], [])) if "bootstrap" in note]
    # diversity alone (quality=none): said, as a missing quality column was not
    (alone,) = [note for note in reading_notes(Table("3", "Table 3", [diversity], [])) if "no quality" in note]
    assert "variety off the prompt cannot be told from diversity here" in alone


def test_the_is_caveat_names_the_is_column_the_table_shows():
    """The caveat said "`is`: IS over 4 images is unreliable" where the column was `is_tinyrandom`."""
    from diversity_cli.reporting.tables.render import is_caveats

    lines = [
        Line("2", "Base", "all", "is", measured_metric="is_tinyrandom", measured="1.2", n="4", run="/r", model="toy"),
        Line("2", "Distilled", "all", "is", measured_metric="is_tinyrandom", measured="1.1", n="6", run="/r"),
        Line("2", "Base", "all", "is", measured_metric="is", measured="9.1", n="5000", run="/r", model="toy"),
    ]
    (caveat,) = is_caveats(Table("2", "Table 2", lines, []))
    assert caveat.startswith("`is_tinyrandom`: IS over 4 images is unreliable"), caveat


def test_a_metric_measured_at_another_distance_is_described_at_that_distance():
    """`toy_features[distance=euclidean]` was described as a "mean pairwise cosine distance ...; measured with
    distance=euclidean": its note contradicted itself."""
    from diversity_cli.reporting.tables.render import METRIC_NOTES, _described

    said = _described("toy_features[distance=euclidean]", METRIC_NOTES["toy_features"])
    assert said.startswith("mean pairwise euclidean distance of the toy classifier's features"), said
    assert "cosine" not in said and said.endswith("measured with distance=euclidean, not the defaults")
