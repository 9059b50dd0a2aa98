"""transfer.csv rows name the images they were measured over (`images`: each group's samples.csv tag and settings),
and Table 1 marks a row whose images a later transfer-lora remade with other settings, or that are gone; rows of an
earlier version's transfer.csv still read. Table 1's heading names what its cells measure: the toy pair's are the
toy classifier's shares, not CLIP scores. End to end on the toy pair, through the command line."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from test_transfer import save_random_lora

pytestmark = pytest.mark.usefixtures("one_thread")

# n=2 and no grid: a run of the toy pair in a few seconds
TRANSFER = ("transfer-lora", "model=toy", "prompt=a shape", "n=2", "grid_seeds=0")
REPORT = ("report", "tables=[1]", "figures=false", "html=false")
MARK = "[out of date: its images changed since]"
CLIP_HEADING = "Table 1: control transfer, % change of CLIP score with the adapter (source -> target model)"


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def invoke(*args: str) -> None:
    from diversity_cli.cli import run

    assert run(list(args)) == 0, args


@pytest.fixture(scope="module")
def measured(tiny_pairs, one_thread, tmp_path_factory) -> tuple[Path, Path]:
    """(a run directory where transfer-lora measured the adapter `red` at the toy's defaults, the adapter `blue`),
    made once; each test works on a copy of the run."""
    folder = tmp_path_factory.mktemp("transfer")
    red = save_random_lora(tiny_pairs("toy"), folder / "red", seed=0).parent  # the folder names the adapter
    blue = save_random_lora(tiny_pairs("toy"), folder / "blue", seed=1).parent
    invoke(*TRANSFER, f"adapter={red}", "concept=red", f"out={folder / 'run'}")
    return folder / "run", blue


@pytest.fixture
def run(measured, tmp_path) -> Path:
    return Path(shutil.copytree(measured[0], tmp_path / "run"))


def table_1(cli, run: Path) -> str:
    code, _, err = cli(*REPORT, f"out={run}")
    assert code == 0, err
    return (run / "tables" / "table_1.md").read_text().replace("\\", "")  # markdown escapes aside


def test_each_row_names_the_tag_and_settings_of_the_images_it_was_measured_over(cli, run):
    settings = {sample["tag"]: sample["settings"] for sample in rows(run / "samples.csv")}
    found = {row["target"]: row["images"] for row in rows(run / "transfer.csv")}
    assert found == {
        target: f"{target}={settings[target]}; {target}+red_s1={settings[f'{target}+red_s1']}"
        for target in ("base", "distilled")
    }
    text = table_1(cli, run)
    assert "**out of date**" not in text and MARK not in text  # nothing changed since


def test_a_row_whose_images_a_later_run_remade_with_other_settings_is_marked(cli, run, measured):
    """Another adapter measured into the same run with other sampler settings and overwrite=true remakes the
    images without an adapter; `red`'s rows were measured over the old ones and said nothing."""
    before = {sample["tag"]: sample["settings"] for sample in rows(run / "samples.csv")}
    code, _, err = cli(*TRANSFER, f"adapter={measured[1]}", "concept=blue", f"out={run}", "overwrite=true",
                       "model.base.steps=10")  # fmt: skip
    assert code == 0, err
    now = {sample["tag"]: sample["settings"] for sample in rows(run / "samples.csv")}
    assert now["base"] != before["base"] and now["base+red_s1"] == before["base+red_s1"]
    text = table_1(cli, run)
    cells = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert cells["red"].count(MARK) == 2 and MARK not in cells["blue"]  # both of red's rows, none of blue's
    (note,) = [line for line in text.splitlines() if line.startswith("- **out of date**")]
    assert f"base images remade with settings {now['base']} (measured: {before['base']})" in note
    assert f"distilled images remade with settings {now['distilled']}" in note and "blue" not in note


def test_a_row_whose_images_are_gone_is_marked(cli, run):
    (run / "toy" / "distilled+red_s1" / "a-shape-3fca9f" / "000001.png").unlink()
    text = table_1(cli, run)
    (note,) = [line for line in text.splitlines() if line.startswith("- **out of date**")]
    assert "base -> distilled: distilled+red_s1: 1 of its 2 image(s) left in the run" in note
    assert "base -> base" not in note and text.count(MARK) == 1


def test_rows_of_an_earlier_transfer_csv_without_images_still_read(cli, run):
    earlier = [{k: v for k, v in row.items() if k != "images"} for row in rows(run / "transfer.csv")]
    with (run / "transfer.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(earlier[0]))
        writer.writeheader()
        writer.writerows(earlier)
    shutil.rmtree(run / "toy" / "base")  # gone, but nothing says these rows were measured over them
    text = table_1(cli, run)
    assert "**out of date**" not in text and MARK not in text
    assert "| red | red (color=red) |" in text  # the cells, as before
    assert "2 row(s) written before transfer.csv named the images of each row" in text and "not checked" in text


def test_table_1_is_headed_by_what_its_cells_measure(cli, run, tmp_path):
    heading = table_1(cli, run).splitlines()[0]
    assert "% change of CLIP score with the adapter" not in heading  # the toy has no CLIP model
    assert "share of images the toy classifier sees showing the concept, without / with the adapter" in heading

    real = tmp_path / "real"
    real.mkdir()
    row = {
        "adapter": "age",
        "concept": "an old person",
        "source": "base",
        "target": "distilled",
        "n": "8",
        "clip_without": "20.0",
        "clip_with": "23.5",
        "change_pct": "17.5",
        "model": "sdxl_dmd2",
        "scale": "2",
    }
    shares = {**row, "model": "toy", "adapter": "red", "concept": "red", "classifier_without": "0.25",
              "classifier_with": "0.75", "classifier_target": "color=red"}  # fmt: skip

    def heading(found: list[dict[str, str]]) -> str:
        with (real / "transfer.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(shares), restval="")
            writer.writeheader()
            writer.writerows(found)
        return table_1(cli, real).splitlines()[0]

    assert heading([row]) == f"## {CLIP_HEADING}"  # a real pair's, as it was
    assert "% change of CLIP score with the adapter and, where the toy classifier counted" in heading([row, shares])


def test_a_rerun_with_other_pair_settings_is_refused_naming_them(cli, run, measured):
    """The refusal of images made with other settings names what differs (it named an example file only)."""
    red = measured[0].parent / "red"
    code, _, err = cli(*TRANSFER, f"adapter={red}", "concept=red", f"out={run}", "model.base.guidance=4")
    assert code == 2 and "model.base.guidance=3.0 then, 4.0 now" in err, err
    samples, plain = run / "samples.csv", (",toy/base/", ",toy/distilled/")
    for folder in ("base", "distilled"):  # the adapter's images alone: they are refused alike
        shutil.rmtree(run / "toy" / folder)
    samples.write_text(
        "".join(line for line in samples.read_text().splitlines(True) if not any(part in line for part in plain))
    )
    code, _, err = cli(*TRANSFER, f"adapter={red}", "concept=red", f"out={run}", "model.base.guidance=4")
    assert code == 2 and "toy/base+red_s1/" in err and "model.base.guidance=3.0 then, 4.0 now" in err, err
