"""`ablate` never replaces or deletes a file it did not write: `out` and every point's folder are run directories
(run.json), and a file of someone else's anywhere the sweep would write stops it before its first point (one line,
exit 2, nothing written), with overwrite=true too."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

ARGS = ["model=tiny_sd", "model.base.steps=1", "n=2", "metric=pixel", "prompt=a red circle", "baselines=false"]
POINT = Path("points/tiny_sd/hybrid_k1")


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A finished one-point sweep, copied by each test."""
    from diversity_cli.cli import run

    out = tmp_path_factory.mktemp("ablate") / "out"
    assert run(["ablate", *ARGS, "k=1", f"out={out}"]) == 0
    return out


def _copy(swept: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(swept, tmp_path / "out", symlinks=True))


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def _no_model(monkeypatch) -> None:
    def refuse(*_, **__):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("diversity_cli.models.loading.load_pair", refuse)


def _forget(out: Path, planted: Path) -> None:
    """Take `planted` off the run.json of the run directory holding it: the file is no longer the toolkit's."""
    folder = (out / planted).parent
    while not (folder / "run.json").is_file():
        folder = folder.parent
    body = json.loads((folder / "run.json").read_text())
    body["files"].remove(str((out / planted).relative_to(folder)))
    (folder / "run.json").write_text(json.dumps(body))


def _sweep_plot() -> Path:
    """The plot the sweep k=1..2 draws."""
    from diversity_cli.core.config import compose
    from diversity_cli.experiments.ablate import plan_sweep, plot_name
    from diversity_cli.experiments.sweep import split_overrides

    sweep = plan_sweep(compose("ablate", split_overrides([*ARGS, "k=1..2"]).compose))
    return Path("plots") / plot_name(sweep, "pixel", "k")


# Files of someone else's where the sweep k=1..2 writes or deletes: in the finished point, in the point still to
# make (ablate's files and generate's), in a point's measure/ view, and at out= itself; each with overwrite=true,
# and some without.
PLANTED = [
    POINT / "error.txt",  # deleted when the point succeeds
    POINT / "point.csv",
    Path("points/tiny_sd/hybrid_k2/point.json"),  # the second point, not made yet
    Path("points/tiny_sd/hybrid_k2/samples.csv"),
    Path("points/tiny_sd/hybrid_k2/tiny_sd/hybrid_k2/a-red-circle-35a5b3/000000.png"),  # one of its images
    POINT / "measure" / "diversity.csv",  # deleted before each measurement
    Path("ablate.csv"),
    None,  # the sweep's plot
]
CASES = [(path, True) for path in PLANTED] + [(path, False) for path in PLANTED[1:3] + PLANTED[-2:]]


@pytest.mark.parametrize(
    ("planted", "overwrite"), CASES, ids=[f"{p or 'plot'}{'-overwrite' if o else ''}" for p, o in CASES]
)
def test_a_foreign_file_where_the_sweep_writes_stops_it_before_anything_is_written(
    cli, swept, tmp_path, monkeypatch, planted, overwrite
):
    out = _copy(swept, tmp_path)
    planted = planted or _sweep_plot()
    path = out / planted
    if path.exists():  # the toolkit's own file: replaced by one of someone else's, which run.json does not list
        path.unlink()
        _forget(out, planted)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"a file of mine")
    before = _tree(out)
    _no_model(monkeypatch)
    code, _, err = cli("ablate", *ARGS, "k=1..2", f"out={out}", *(["overwrite=true"] if overwrite else []))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    # the file named; with overwrite=true, a folder diversity-cli never marked is refused as a whole
    unmarked = overwrite and any(
        f"{folder} has no run.json" in err and not (folder / "run.json").exists() for folder in path.parents
    )
    assert f"{path} exists and was not written by diversity-cli" in err or unmarked, err
    assert _tree(out) == before  # nothing written, nothing deleted
    assert path.read_bytes() == b"a file of mine"


def test_overwrite_remakes_the_sweep_and_keeps_every_file_of_someone_elses(cli, swept, tmp_path):
    out = _copy(swept, tmp_path)
    mine = [out / "notes.md", out / POINT / "notes.md", out / POINT / "measure" / "notes.md", out / "plots" / "x.txt"]
    for path in mine:
        path.write_text("mine")
    image = next((out / POINT).glob("tiny_sd/**/*.png"))
    stamp = image.stat().st_mtime_ns
    code, _, err = cli("ablate", *ARGS, "k=1", f"out={out}", "overwrite=true")
    assert code == 0, err
    assert image.stat().st_mtime_ns != stamp  # made again
    assert all(path.read_text() == "mine" for path in mine)


def test_a_sweep_from_before_run_json_is_adopted_and_reused(cli, swept, tmp_path, monkeypatch):
    out = _copy(swept, tmp_path)
    for marker in out.rglob("run.json"):
        marker.unlink()
    _no_model(monkeypatch)
    code, _, err = cli("ablate", *ARGS, "k=1", f"out={out}")
    assert code == 0, err
    assert {"point.csv", "point.json", "samples.csv"} <= set(_listed(out / POINT))
    assert {"ablate.csv", f"plots/{next((out / 'plots').iterdir()).name}"} <= set(_listed(out))


def test_a_point_folder_that_is_a_link_is_never_written_through(cli, swept, tmp_path, monkeypatch):
    out = _copy(swept, tmp_path)
    elsewhere = Path(shutil.move(out / POINT, tmp_path / "elsewhere"))
    (out / POINT).symlink_to(elsewhere, target_is_directory=True)
    before = _tree(elsewhere)
    _no_model(monkeypatch)
    code, _, err = cli("ablate", *ARGS, "k=1", f"out={out}", "overwrite=true")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "symbolic link" in err, err
    assert _tree(elsewhere) == before


def _listed(root: Path) -> list[str]:
    return json.loads((root / "run.json").read_text())["files"]


def test_a_measure_views_tables_of_earlier_versions_are_known_by_their_headers(tmp_path):
    """A point's measure/ view from before run.json lists its tables: diversity.csv written before the ci, options
    and samples columns existed, fid.csv before samples, are still the measuring commands' own."""
    from diversity_cli.experiments.ablate import _measured_here

    old = "method,model,prompt,n,metric,value,ci_low,ci_high"
    for header, expected in ((old, True), (old + ",ci,options", True), (old + ",samples", False), ("a,b", False)):
        (tmp_path / "diversity.csv").write_text(header + "\n")
        assert _measured_here(tmp_path, "diversity.csv") is expected, header
    for ending in ("reference,features", "reference,features,samples"):
        (tmp_path / "fid.csv").write_text(f"method,model,n,fid,is,is_std,clip,seconds_per_image,{ending}\n")
        assert _measured_here(tmp_path, "fid.csv")


def test_a_measure_views_fid_table_as_fid_writes_it_now_is_known(tmp_path):
    """fid.csv's header grew clip_model and reference_id: the header check knew only older endings, so a fid.csv
    written into a measure/ view before run.json listed it was taken for someone else's file."""
    from diversity_cli.experiments.ablate import _measured_here
    from diversity_cli.experiments.fid import write_results

    write_results(tmp_path / "fid.csv", [{"method": "base", "model": "toy", "n": 2, "fid": 1.0, "reference": "toy"}])
    (tmp_path / "run.json").unlink(missing_ok=True)
    assert _measured_here(tmp_path, "fid.csv")
    (tmp_path / "fid.csv").write_text("method,model,n,fid,mine\n")
    assert not _measured_here(tmp_path, "fid.csv")
