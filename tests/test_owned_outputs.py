"""Files a command writes into a run directory are its own: a file of yours at one of their paths stops the command
(one line, exit 2, before any measurement) and stays as it was; one an earlier version wrote without listing it in
run.json is recognized and replaced."""

import json
import shutil

import pytest
from PIL import Image

from diversity_cli.core.marker import RunMarker

PROMPT = "prompt=a shape"
SHEET = "contact_sheet_toy_a-shape-3fca9f.png"


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A toy run with base and distilled images of one prompt, nothing measured."""
    from diversity_cli.cli import run

    root = tmp_path_factory.mktemp("made") / "run"
    for method in ("base", "distilled"):
        assert run(["generate", "model=toy", PROMPT, "n=3", f"method={method}", f"out={root}"]) == 0
    return root


@pytest.fixture
def run(made, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(made, copy)
    return copy


def unlist(root, name):
    """As an earlier version left it: written, not listed in run.json."""
    path = root / "run.json"
    data = json.loads(path.read_text())
    data["files"] = [f for f in data["files"] if f != name]
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("command, name", [("diversity", "diversity.csv"), ("fid", "fid.csv")])
def test_a_results_csv_of_yours_stops_the_measurement(cli, run, command, name):
    """diversity and fid replaced a diversity.csv / fid.csv of yours with their rows, exit 0."""
    (run / name).write_text("mine\n")
    code, _, err = cli(command, f"out={run}")
    assert code == 2 and f"{run / name} exists and was not written by diversity-cli" in err, err
    assert len(err.strip().splitlines()) == 1
    assert (run / name).read_text() == "mine\n" and name not in RunMarker(run).files()


def test_an_earlier_versions_unlisted_results_are_recognized_and_listed(cli, run):
    assert cli("diversity", f"out={run}", "metric=pixel")[0] == 0
    unlist(run, "diversity.csv")
    code, _, err = cli("diversity", f"out={run}", "metric=toy_features")
    assert code == 0, err
    text = (run / "diversity.csv").read_text()
    assert ",pixel," in text and ",toy_features," in text  # the earlier rows kept beside the new ones
    assert "diversity.csv" in RunMarker(run).files()


def test_a_file_of_yours_at_the_contact_sheets_name_stays_and_the_images_are_made(cli, run):
    unlist(run, SHEET)
    (run / SHEET).write_text("mine\n")
    code, stdout, err = cli("generate", "model=toy", PROMPT, "n=4", "method=base", f"out={run}")
    assert code == 0, err
    assert (run / "toy" / "base").is_dir() and (run / SHEET).read_text() == "mine\n"
    assert "contact sheet: not drawn" in stdout and "was not written by diversity-cli" in stdout


def test_an_earlier_versions_untagged_contact_sheet_is_redrawn(cli, run):
    """Sheets drawn before run.json listed them carry no Software chunk: their layout tells them apart."""
    unlist(run, SHEET)
    Image.new("RGB", (150 + 96 * 3, 18 + 96 * 2), "white").save(run / SHEET)  # as an earlier version drew it
    code, _, err = cli("generate", "model=toy", PROMPT, "n=4", "method=base", f"out={run}")
    assert code == 0, err
    with Image.open(run / SHEET) as sheet:
        assert sheet.info.get("Software") == "diversity-cli" and sheet.size == (150 + 96 * 4, 18 + 96 * 2)
    assert SHEET in RunMarker(run).files()


@pytest.mark.parametrize("name", ["tables/table_3.md", "tables/table_3.csv", "report.html"])
def test_report_stops_before_writing_anything_over_a_file_of_yours(cli, run, name):
    """report rewrote tables/*.md of yours, and stopped at a report.html of yours after rewriting the tables."""
    assert cli("diversity", f"out={run}")[0] == 0
    (run / name).parent.mkdir(exist_ok=True)
    (run / name).write_text("mine\n")
    code, _, err = cli("report", f"out={run}")
    assert code == 2 and f"{run / name} exists and was not written by diversity-cli" in err, err
    # the tables move with tables_dir=; another out= would be another run's report
    assert err.strip().endswith("or choose another tables_dir=" if name.startswith("tables/") else "another out="), err
    assert (run / name).read_text() == "mine\n"
    written = sorted(p.name for p in (run / "tables").glob("*")) if (run / "tables").is_dir() else []
    assert written == ([name.split("/")[1]] if name.startswith("tables/") else [])
    assert name == "report.html" or not (run / "report.html").exists()


def test_an_earlier_reports_unlisted_tables_are_replaced(cli, run):
    assert cli("diversity", f"out={run}")[0] == 0
    assert cli("report", f"out={run}")[0] == 0
    (run / "tables" / "run.json").unlink()  # an earlier version listed none of them
    code, _, err = cli("report", f"out={run}")
    assert code == 0, err
    assert {"table_3.md", "table_3.csv", "tables.md"} <= RunMarker(run / "tables").files()


def test_a_damaged_versions_json_is_one_line(cli, run):
    """A versions.json of the run that is not JSON was a JSONDecodeError traceback, exit 1."""
    (run / "versions.json").write_text("mine\n")
    code, _, err = cli("generate", "model=toy", PROMPT, "n=4", "method=base", f"out={run}")
    assert code == 2 and err.strip() == (
        f"error: {run / 'versions.json'} is damaged (JSONDecodeError); move it away and rerun (it records the "
        "versions of each run)"
    ), err
    assert (run / "versions.json").read_text() == "mine\n"


def test_fid_on_a_folder_without_samples_says_so(cli, tmp_path):
    """It said "reference=auto: the run's pair names no default_reference": the folder holds no run at all."""
    (tmp_path / "empty").mkdir()
    code, _, err = cli("fid", f"out={tmp_path / 'empty'}")
    assert code == 2 and f"{tmp_path / 'empty' / 'samples.csv'} not found or empty" in err, err
    assert list((tmp_path / "empty").iterdir()) == []


def _matplotlib_png(path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    fig.savefig(path, format="png")
    plt.close(fig)


def test_an_earlier_reports_figure_5_is_recognised_and_a_figure_of_yours_is_not(cli, tmp_path):
    """figure_5.csv was written as `run,method,fraction,distance` before it named its metric: report refused an
    earlier report's shared tables_dir as a file of yours; a matplotlib PNG of yours with no points CSV beside it is
    no earlier report's figure; the line names tables_dir=, the key that chose the folder."""
    run = tmp_path / "x0"
    assert cli("x0viz", "model=tiny_sd", "prompt=a red circle", "n=2", "metric=pixel", f"out={run}")[0] == 0
    tables = tmp_path / "tables"
    tables.mkdir()
    (tables / "figure_5.csv").write_text("run,method,fraction,distance\nr,base,0.5,0.1\n")
    _matplotlib_png(tables / "figure_5.png")
    code, _, err = cli("report", f"out={run}", f"tables_dir={tables}", "html=false")
    assert code == 0, err
    assert {"figure_5.png", "figure_5.csv"} <= RunMarker(tables).files()
    mine = tmp_path / "mine"
    mine.mkdir()
    _matplotlib_png(mine / "figure_5.png")
    code, _, err = cli("report", f"out={run}", f"tables_dir={mine}", "html=false")
    assert code == 2 and "figure_5.png exists and was not written by diversity-cli" in err, err
    assert err.strip().endswith("choose another tables_dir=")


def test_a_figure_the_report_does_not_draw_is_not_checked(cli, tmp_path):
    """A sweep with no knob varying draws no Figure 7, yet a figure_7.csv of yours in the tables folder stopped
    report."""
    out = tmp_path / "ablate"
    args = ["model=tiny_sd", "model.base.steps=1", "n=2", "metric=pixel", "prompt=a red circle", f"out={out}"]
    assert cli("ablate", *args, "method=distilled", "baselines=false")[0] == 0
    (out / "tables").mkdir()
    (out / "tables" / "figure_7.csv").write_text("mine,yours\n1,2\n")
    code, _, err = cli("report", f"out={out}", "html=false")
    assert code == 0, err
    assert (out / "tables" / "figure_7.csv").read_text() == "mine,yours\n1,2\n"
