"""`ablate` sweeps into one out= at two pair settings: ablate.csv names each row's pair settings (rows at the base's
CFG 3 and CFG 5 stood side by side, alike), and a report finds rows whose images a later sweep remade or a user
deleted (they were shown as current)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from diversity_cli.core.config import compose
from diversity_cli.reporting.tables import ablate_curves, build_tables, read_paper
from diversity_cli.reporting.tables.common import diversity_rows, load_run, stale_ablate

# tiny_sd, the base at one step: a point costs little
SWEEP = ["model=tiny_sd", "model.base.steps=1", "metric=pixel", "prompt=a red circle", "k=1..2"]


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def two_settings(tmp_path_factory):
    """Sweep A at n=2 (the pair's CFG), then sweep B at n=3 and model.base.guidance=2 with overwrite=true: B remade
    the seeds 0 and 1 that A measured."""
    from diversity_cli.cli import run

    out = tmp_path_factory.mktemp("pairs") / "abl"
    assert run(["ablate", *SWEEP, "n=2", f"out={out}"]) == 0
    assert run(["ablate", *SWEEP, "n=3", "model.base.guidance=2", "overwrite=true", f"out={out}"]) == 0
    return out


def test_each_row_names_the_pair_settings_its_sweep_changed(two_settings):
    rows = _read(two_settings / "ablate.csv")
    pairs = {(row["method"], row["n"], row["pair"]) for row in rows}
    assert ("base", "2", "base.steps=1") in pairs and ("base", "3", "base.guidance=2; base.steps=1") in pairs
    assert {row["pair"] for row in rows} == {"base.steps=1", "base.guidance=2; base.steps=1"}


def test_rows_over_images_remade_since_are_found_and_current_ones_shown_first(two_settings):
    run = load_run(two_settings)
    stale = stale_ablate(run)
    assert set(stale) == {("tiny_sd", tag, "a red circle") for tag in ("base", "distilled", "hybrid_k1", "hybrid_k2")}
    assert (
        stale["tiny_sd", "base", "a red circle"] == "tiny_sd / base / a red circle (n=2, seed=0): images remade since"
    )
    # a table shows a cell's first row: sweep B's (n=3), over the images the point holds now
    first = next(row for row in diversity_rows(run) if row["method"] == "base" and row["metric"] == "pixel")
    assert first["n"] == "3"


def test_the_report_warns_of_them_and_figure_7_splits_the_pair_settings(two_settings, cli):
    code, _, err = cli("report", f"out={two_settings}")
    assert code == 0, err
    assert "warning: out of date" in err and "ablate.csv holds numbers over images remade or removed since" in err
    assert "tiny_sd / hybrid_k1 / a red circle (n=2, seed=0): images remade since" in " ".join(err.split())
    sweeps = {curve["sweep"] for curve in ablate_curves([load_run(two_settings)])}
    assert sweeps == {"n=2, pair: base.steps=1", "n=3, pair: base.guidance=2; base.steps=1"}
    drawn = _read(two_settings / "tables" / "figure_7.csv")  # each point names its pair settings
    assert {row["pair"] for row in drawn} == {"base.steps=1", "base.guidance=2; base.steps=1"}


def test_images_deleted_from_a_point_are_found(tmp_path, cli):
    out = tmp_path / "abl"
    assert cli("ablate", *SWEEP, "k=1", "n=3", "baselines=false", f"out={out}")[0] == 0
    assert stale_ablate(load_run(out)) == {}  # nothing changed: nothing found
    sorted((out / "points").rglob("0*.png"))[0].unlink()
    found = stale_ablate(load_run(out))
    assert found == {
        (
            "tiny_sd",
            "hybrid_k1",
            "a red circle",
        ): "tiny_sd / hybrid_k1 / a red circle (n=3, seed=0): 2 of its 3 images on disk"
    }
    paper = read_paper(Path(__file__).resolve().parents[1] / "data" / "paper_tables.csv")
    notes = build_tables([load_run(out)], paper, compose("report", []), ["3"])["3"].notes
    assert [note for note in notes if "2 of its 3 images on disk" in note]  # checked against the point's images
    assert not [note for note in notes if "has no samples.csv" in note]  # so not "could not be checked" too


def test_rows_written_before_they_carried_a_digest_are_not_checked(tmp_path, cli):
    out = tmp_path / "abl"
    assert cli("ablate", *SWEEP, "k=1", "n=2", "baselines=false", f"out={out}")[0] == 0
    path = out / "ablate.csv"
    rows = _read(path)
    columns = [column for column in rows[0] if column not in ("samples", "pair")]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    for image in (out / "points").rglob("0*.png"):
        image.unlink()
    assert stale_ablate(load_run(out)) == {}


def test_a_sweep_at_other_pair_settings_and_the_same_n_keeps_the_first_sweeps_rows(tmp_path, cli):
    """Sweep B (one k, the base's CFG changed, overwrite=true, the same n) replaced sweep A's k=1 rows, so
    Figure 7 drew one curve from B's k=1 to A's k=2, under B's settings."""
    out = tmp_path / "abl"
    assert cli("ablate", *SWEEP, "n=2", "baselines=false", f"out={out}")[0] == 0
    code, _, err = cli("ablate", *SWEEP[:-1], "k=1", "n=2", "baselines=false", "model.base.guidance=2",
                       "overwrite=true", f"out={out}")  # fmt: skip
    assert code == 0, err
    rows = {(row["k"], row["pair"]) for row in _read(out / "ablate.csv")}
    assert rows == {("1", "base.steps=1"), ("2", "base.steps=1"), ("1", "base.guidance=2; base.steps=1")}
    curves = {}
    for curve in ablate_curves([load_run(out)]):
        curves.setdefault(curve["sweep"], []).append(curve["point"])
    # A's curve, both its points at A's settings; B's one k is no curve of its own
    assert curves == {"pair: base.steps=1": [1, 2]}


def test_points_at_two_pair_settings_are_never_one_curve(tmp_path):
    """k=1 swept at the base's CFG 2 only, k=2 and k=3 at its config's: no cell was measured at both, and Figure 7
    joined the three into one curve."""
    out = tmp_path / "abl"
    out.mkdir()
    rows = [
        {"model": "toy", "method": "hybrid", "k": k, "base_guidance": 0, "base_steps": "", "pair": pair,
         "prompt": "a shape", "n": 4, "metric": "toy_features", "value": 0.1 * k, "seconds_per_image": 0.1, "nfe": 4}
        for k, pair in ((1, "base.guidance=2"), (2, ""), (3, ""))
    ]  # fmt: skip
    with (out / "ablate.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    curves = {}
    for curve in ablate_curves([load_run(out)]):
        curves.setdefault(curve["sweep"], []).append(curve["point"])
    assert curves == {"pair as configured": [2, 3]}  # the lone CFG-2 point is no curve


def test_a_row_of_unknown_pair_settings_over_the_same_images_is_replaced(tmp_path, cli):
    """Rows written before ablate.csv named the pair settings (or `?`, by a multirun job) stood beside a rerun's
    rows of the very same images, the one measurement twice in the report."""
    out = tmp_path / "abl"
    assert cli("ablate", *SWEEP, "k=1", "n=2", "baselines=false", f"out={out}")[0] == 0
    path = out / "ablate.csv"
    rows = _read(path)
    for unknown in ("", "?"):
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows({**row, "pair": unknown} for row in rows)
        assert cli("ablate", *SWEEP, "k=1", "n=2", "baselines=false", f"out={out}")[0] == 0
        assert sorted(map(str, _read(path))) == sorted(map(str, rows))  # replaced: the rows as measured now
    with path.open("w", newline="") as f:  # over other images (digests differ): another measurement, kept
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**row, "pair": "", "samples": "other"} for row in rows)
    assert cli("ablate", *SWEEP, "k=1", "n=2", "baselines=false", f"out={out}")[0] == 0
    assert len(_read(path)) == 2 * len(rows)


def test_the_pair_column_and_a_cards_teacher_leave_out_what_they_do_not_name():
    """ablate.csv's `pair` leaves out the keys that change no image (what the pair is measured with, k=auto's
    settings); a student card's teacher overrides leave out the distilled role, which the card sets itself."""
    from diversity_cli.core.config import compose, pair_overrides
    from diversity_cli.experiments.ablate import pair_changes

    swept = compose("ablate", ["model.auto_k.threshold=0.3", "model.base.guidance=2"]).model
    assert pair_changes(swept) == "base.guidance=2"
    taught = compose("distill", ["model.distilled.label=x", "model.base.guidance=2"]).model
    assert pair_overrides(taught, skip="distilled") == ["model.base.guidance=2"]
    assert pair_overrides(taught) == ["model.base.guidance=2", "model.distilled.label=x"]
