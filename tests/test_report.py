"""`report` and the paper tables: built from small CSVs written here, the paper column equal to
data/paper_tables.csv, the measured column equal to the run's CSVs, unmeasured cells empty, toy metric names kept,
and the HTML report end to end."""

from __future__ import annotations

import csv
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from diversity_cli.core.config import compose
from diversity_cli.core.rundir import SAMPLE_COLUMNS
from diversity_cli.reporting.tables import (
    build_tables,
    load_run,
    metric_notes,
    read_paper,
    read_prompt_labels,
    to_markdown,
    wide,
)

REPO = Path(__file__).resolve().parent.parent
PAPER = REPO / "data" / "paper_tables.csv"
SUNSET, PUPPY = "image of a sunset beach", "image of a cute puppy"  # lines 1 and 2 of data/table3_prompts.txt


def write_csv(path: Path, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(c for row in rows for c in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)


def write_samples(root: Path, groups: dict[tuple[str, str, str], list[float]], size: int = 16) -> None:
    """Images (a colour per seed) and samples.csv rows; groups: (model, tag, prompt) -> seconds of each image."""
    from PIL import Image

    rows = []
    for (model, tag, prompt), seconds in groups.items():
        for seed, second in enumerate(seconds):
            path = f"{model}/{tag}/{abs(hash(prompt)) % 10**6}/{seed:06d}.png"
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (size, size), (40 * seed % 256, 90, 200)).save(root / path)
            method = tag.split("_k")[0]
            steps, nfe = ("50", "100") if tag == "base" else ("4", "5" if "hybrid" in tag else "4")
            rows.append(
                {
                    "method": method, "model": model, "prompt": prompt, "seed": seed, "k": 1, "steps": steps,
                    "nfe": nfe, "seconds": second, "path": path, "base_guidance": 0.0, "base_steps": "", "tag": tag,
                    "settings": "x",
                }
            )  # fmt: skip
    with (root / "samples.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SAMPLE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def diversity_row(model: str, tag: str, prompt: str, metric: str, value: str, n: int = 4) -> dict:
    return {"method": tag, "model": model, "prompt": prompt, "n": n, "metric": metric, "value": value}


@pytest.fixture
def paper_run(tmp_path: Path) -> Path:
    """A run on the paper's pairs: two of Table 3's prompts, the car prompt on SDXL-DMD2 and SD 2.1 / SD-Turbo,
    fid.csv for Tables 2 and 4, transfer.csv for Table 1."""
    root = tmp_path / "paper"
    root.mkdir()
    car = "image of a car"
    write_samples(
        root,
        {
            ("sdxl_dmd2", "base", SUNSET): [9.0, 9.5],
            ("sdxl_dmd2", "hybrid_k1", SUNSET): [0.5, 0.75],
            ("sd21_turbo", "base", car): [3.0, 3.5],
            ("sd21_turbo", "distilled", car): [0.5, 0.25],
            ("sdxl_dmd2", "replace_final_k3_bs30", car): [6.5, 6.25],
        },
    )
    write_csv(
        root / "diversity.csv",
        [
            diversity_row("sdxl_dmd2", "base", SUNSET, "dreamsim", "0.4012"),
            diversity_row("sdxl_dmd2", "distilled", SUNSET, "dreamsim", "0.2511"),
            diversity_row("sdxl_dmd2", "hybrid_k1", SUNSET, "dreamsim", "0.3803"),
            diversity_row("sdxl_dmd2", "base", PUPPY, "dreamsim", "0.25"),
            diversity_row("sdxl_dmd2", "distilled", PUPPY, "dreamsim", "0.2"),
            diversity_row("sdxl_dmd2", "hybrid_k1", PUPPY, "dreamsim", "0.27"),
            diversity_row("sdxl_dmd2", "base", "image of a person", "dreamsim", "0.9"),  # base only: not averaged
            diversity_row("sdxl_dmd2", "base", car, "dreamsim", "0.36"),
            diversity_row("sdxl_dmd2", "replace_final_k3_bs30", car, "dreamsim", "0.255"),
            diversity_row("sdxl_dmd2", "hybrid_k2", SUNSET, "dreamsim", "0.5"),  # an ablate point: no Table 3 cell
            diversity_row("sd21_turbo", "base", car, "dreamsim", "0.301"),
            diversity_row("sd21_turbo", "distilled", car, "dreamsim", "0.17"),
            diversity_row("sd21_turbo", "distilled", car, "vendi_dreamsim", "3.1"),  # not a pairwise distance
        ],
    )
    write_csv(
        root / "fid.csv",
        [
            {"method": "base", "model": "sdxl_dmd2", "n": 30000, "fid": "12.9", "is": "24.1", "is_std": "0.3",
             "clip": "31.7", "seconds_per_image": "9.3", "reference": "coco", "features": "inception"},
            {"method": "skip_first", "model": "sdxl_dmd2", "n": 30000, "fid": "10.5", "is": "24.0", "is_std": "0.2",
             "clip": "31.5", "seconds_per_image": "0.5", "reference": "coco", "features": "inception"},
        ],
    )  # fmt: skip
    write_csv(
        root / "transfer.csv",
        [
            {"adapter": "age", "concept": "an old person", "source": "base", "target": "distilled", "n": 8,
             "clip_without": "20.0", "clip_with": "23.5", "change_pct": "17.5", "model": "sdxl_dmd2", "scale": "2"},
            {"adapter": "age", "concept": "an old person", "source": "base", "target": "base", "n": 8,
             "clip_without": "20.0", "clip_with": "24.0", "change_pct": "20.0", "model": "sdxl_dmd2", "scale": "2"},
            {"adapter": "age@distilled", "concept": "an old person", "source": "distilled", "target": "base", "n": 8,
             "clip_without": "20.0", "clip_with": "22.0", "change_pct": "10.0", "model": "sdxl_dmd2", "scale": "2"},
        ],
    )  # fmt: skip
    return root


@pytest.fixture
def toy_run(tmp_path: Path) -> Path:
    """A run on the toy pair with its own metrics: toy_features diversity, fid_toyfeat, classifier transfer."""
    root = tmp_path / "toy"
    root.mkdir()
    write_samples(root, {("toy", tag, "a shape"): [0.1, 0.2, 0.3] for tag in ("base", "distilled", "hybrid_k1")})
    write_csv(
        root / "diversity.csv",
        [diversity_row("toy", tag, "a shape", "toy_features", v, 3) for tag, v in
         (("base", "0.61"), ("distilled", "0.22"), ("hybrid_k1", "0.58"))]
        + [diversity_row("toy", "base", "a red circle", "toy_features", "0.3", 3)],
    )  # fmt: skip
    write_csv(
        root / "fid.csv",
        [{"method": tag, "model": "toy", "n": 3, "fid_toyfeat": f, "is_toyfeat": "2.5", "is_std_toyfeat": "0.1",
          "clip": "", "seconds_per_image": "0.2", "reference": "toy", "features": "toy"}
         for tag, f in (("base", "3.5"), ("distilled", "9.25"), ("hybrid_k1", "4.0"), ("skip_first", "6.0"))],
    )  # fmt: skip
    write_csv(
        root / "transfer.csv",
        [{"adapter": "red", "concept": "red", "source": "base", "target": t, "n": 8, "clip_without": "",
          "clip_with": "", "change_pct": "", "classifier_without": "0.125", "classifier_with": w,
          "classifier_target": "color=red", "model": "toy", "scale": "1"}
         for t, w in (("base", "0.875"), ("distilled", "0.75"))],
    )  # fmt: skip
    write_csv(
        root / "commitment.csv",
        [{"method": m, "prompt": "a shape", "seed": s, "step": i, "timestep": 999 - 250 * i,
          "fraction": (i + 1) / 4, "distance": d * (3 - i) + s}
         for m, d in (("base", 0.3), ("distilled", 0.1)) for s in (0, 1) for i in range(4)],
    )  # fmt: skip
    write_csv(
        root / "ablate.csv",
        [{"model": "toy", "method": "hybrid", "k": k, "base_guidance": 0.0, "base_steps": "", "prompt": p, "n": 3,
          "metric": "toy_features", "value": v + (0.1 if p == "b" else 0.0), "seconds_per_image": 0.1 * k, "nfe": 4 + k}
         for k, v in ((1, 0.5), (2, 0.6), (3, 0.7)) for p in ("a", "b")]
        + [{"model": "toy", "method": m, "k": "", "base_guidance": "", "base_steps": "", "prompt": "a", "n": 3,
            "metric": "toy_features", "value": v, "seconds_per_image": 0.1, "nfe": 4}
           for m, v in (("base", 0.8), ("distilled", 0.3))],
    )  # fmt: skip
    return root


def tables_of(*roots: Path, keys=("1", "2", "3", "4", "D1", "E1")):
    cfg = compose("report", [])
    cfg.mapping["3"].prompts = str(REPO / "data" / "table3_prompts.txt")
    return build_tables([load_run(r) for r in roots], read_paper(PAPER), cfg, keys)


def cell(table, **where):
    found = [line for line in table.lines if all(getattr(line, k) == v for k, v in where.items())]
    assert len(found) == 1, (where, found)
    return found[0]


def test_paper_column_is_the_shipped_csv(paper_run: Path, toy_run: Path):
    shipped = (REPO / "data" / "paper_tables.csv").read_text()
    assert shipped == Path("/work/shared/paper/tables.csv").read_text() if Path("/work/shared/paper").exists() else True
    with PAPER.open(newline="") as f:
        published = {(r["table"], r["method"], r["condition"], r["metric"]): r["value"] for r in csv.DictReader(f)}
    tables = tables_of(paper_run, toy_run)
    assert set(tables) == {"1", "2", "3", "4", "D1", "E1"}
    for table in tables.values():
        in_table = {k: v for k, v in published.items() if k[0] == table.id}
        shown = {(table.id, line.method, line.condition, line.metric): line.paper for line in table.lines if line.paper}
        assert shown == in_table  # every published cell, with its exact value, and nothing else


def test_measured_column_is_the_run_csv(paper_run: Path):
    tables = tables_of(paper_run)
    t3 = tables["3"]
    base = cell(t3, method="Base", condition="Sunset beach", metric="dreamsim_diversity")
    assert (base.paper, base.measured, base.measured_metric, base.n) == ("0.396", "0.4012", "dreamsim", "4")
    assert cell(t3, method="Distilled", condition="Sunset beach").measured == "0.2511"
    two = "Average of 2 prompts: Sunset beach, Cute puppy"  # not the paper's 5-prompt Average
    assert float(cell(t3, method="Base", condition=two).measured) == pytest.approx((0.4012 + 0.25) / 2)
    assert float(cell(t3, method="Hybrid", condition=two).measured) == pytest.approx((0.3803 + 0.27) / 2)
    assert cell(t3, method="Base", condition="Person").measured == "0.9"
    assert not [line for line in t3.lines if "hybrid_k2" in line.measured_as]  # ablate points stay out of Table 3
    fid = cell(tables["2"], method="Base (SDXL-Base 50 steps)", metric="fid")
    assert (fid.paper, fid.measured, fid.measured_metric, fid.n) == ("12.74", "12.9", "fid", "30000")
    assert "50 steps, 100 NFE" in fid.measured_as
    skip = cell(tables["4"], method="Skip First Timestep (3 steps)", metric="is")
    assert (skip.paper, skip.measured) == ("24.69", "24.0")
    assert not [line for line in tables["2"].lines if "skip_first" in line.measured_as]
    t1 = tables["1"]
    assert cell(t1, condition="Age", metric="clip_change_pct:base->dmd").measured == "17.5"
    assert cell(t1, condition="Age", metric="clip_change_pct:base->base").measured == "20.0"
    reverse = cell(t1, condition="Age", metric="clip_change_pct:dmd->base")  # Fig. A.1's direction: no paper cell
    assert (reverse.paper, reverse.measured, reverse.measured_metric) == ("", "10.0", "clip_change_pct")
    assert "age@distilled (scale 2)" in reverse.measured_as
    d1 = tables["D1"]
    turbo = cell(d1, method="SD-Turbo (UNet)", metric="seconds_per_image")
    assert (turbo.paper, float(turbo.measured), turbo.n) == ("0.7", 0.375, "2")  # mean of samples.csv seconds
    assert cell(d1, method="SD-Turbo (UNet)", metric="dreamsim_diversity").measured == "0.17"
    assert not [line for line in d1.lines if line.measured_metric.startswith("vendi")]
    final = cell(tables["E1"], method="Replace Final Timesteps", metric="dreamsim_diversity")
    assert (final.paper, final.measured) == ("0.251", "0.255")
    assert not [line for line in tables["E1"].lines if line.model == "sd21_turbo"]  # D.1's pair, not E.1's
    with (tmp := paper_run / "t3.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerows(zip(*wide(t3), strict=False))  # the wide layout holds the same strings
    header, rows = wide(t3)
    row = next(r for r in rows if r[0] == "Sunset beach")
    assert row[header.index("Base: paper dreamsim_diversity")] == "0.396"
    # the fixture's rows count 4 images where samples.csv holds 2: out of date, and the cell says so
    assert row[header.index("Base: measured dreamsim_diversity")] == "0.401 [out of date]"
    tmp.unlink()


def test_unmeasured_cells_stay_empty(paper_run: Path):
    tables = tables_of(paper_run)
    t3 = tables["3"]
    for condition in ("Futuristic city", "Van Gogh art"):
        for method in ("Base", "Distilled", "Hybrid"):
            line = cell(t3, method=method, condition=condition)
            assert line.paper and line.measured == "" and line.measured_metric == ""
    header, rows = wide(t3)
    person = next(r for r in rows if r[0] == "Person")  # measured for the base only
    assert person[header.index("Base: measured dreamsim_diversity")] == "0.900"
    assert person[header.index("Distilled: paper dreamsim_diversity")] == "0.347"
    assert person[header.index("Distilled: measured dreamsim_diversity")] == ""
    assert cell(tables["2"], method="Hybrid (4 steps)", metric="fid").measured == ""
    assert cell(tables["D1"], method="PixArt-Alpha (DiT)", metric="dreamsim_diversity").measured == ""
    assert "|  |" in to_markdown(t3)


def test_toy_metrics_keep_their_names(toy_run: Path):
    tables = tables_of(toy_run)
    header, rows = wide(tables["3"])
    assert "Base: paper dreamsim_diversity" in header and "Base: measured toy_features_diversity" in header
    assert not [h for h in header if "measured dreamsim" in h]
    shape = next(r for r in rows if r[0] == "a shape")  # a toy prompt: a row of its own, no paper number
    assert shape[header.index("Base: paper dreamsim_diversity")] == ""
    assert shape[header.index("Distilled: measured toy_features_diversity")] == "0.220"
    header2, rows2 = wide(tables["2"])
    assert "paper fid" in header2 and "measured fid_toyfeat" in header2 and "measured is_toyfeat" in header2
    assert not [h for h in header2 if h.endswith("measured fid") or h.endswith("measured is")]
    base = cell(tables["2"], method="Base (SDXL-Base 50 steps)", metric="fid")  # the toy stands in, and says so
    assert (base.measured, base.measured_metric, base.model) == ("3.5", "fid_toyfeat", "toy")
    assert cell(tables["4"], method="Skip First Timestep (3 steps)", metric="fid").measured == "6.0"
    e1 = cell(tables["E1"], method="Replace First Timestep", metric="dreamsim_diversity")
    assert (e1.paper, e1.measured, e1.measured_metric) == ("0.350", "0.58", "toy_features")
    assert "a shape" in e1.measured_as
    d1_toy = cell(
        tables["D1"], method="toy / base", condition="a shape", metric="dreamsim_diversity"
    )  # not a paper row in D.1
    assert (d1_toy.paper, d1_toy.measured) == ("", "0.61")
    t1 = tables["1"]
    with_ = cell(t1, condition="red (color=red)", metric="clip_change_pct:base->dmd", measured_metric="classifier_with")
    assert (with_.paper, with_.measured) == ("", "0.75")
    markdown = to_markdown(tables["3"])
    assert "toy classifier's features (not DreamSim)" in markdown


def test_prompt_labels_follow_the_file():
    labels = read_prompt_labels(
        REPO / "data" / "table3_prompts.txt",
        ["Sunset beach", "Cute puppy", "Futuristic city", "Person", "Van Gogh art"],
    )
    assert labels[SUNSET] == "Sunset beach" and len(labels) == 5


class Parsed(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: dict[str, int] = {}
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if tag == "img":
            self.images.append(dict(attrs)["src"])


def test_report_end_to_end(cli, toy_run: Path, tmp_path: Path):
    tables_dir = tmp_path / "tables"
    code, out, err = cli("report", f"out={toy_run}", f"tables_dir={tables_dir}")
    assert code == 0, err
    for key in ("1", "2", "3", "4", "D1", "E1"):
        assert (tables_dir / f"table_{key}.md").is_file() and (tables_dir / f"table_{key}.csv").is_file()
    assert (tables_dir / "figure_5.png").is_file() and (tables_dir / "figure_7.png").is_file()
    with (tables_dir / "figure_5.csv").open() as f:  # each point with its traces and band: 2 seeds, 0 and 1 apart
        first = {(r["method"], r["fraction"]): r for r in csv.DictReader(f)}[("base", "0.25")]
    assert int(first["traces"]) == 2 and float(first["distance"]) == pytest.approx(0.9 + 0.5)
    # Student's t over 2 traces (the normal 1.96 is far too narrow there), floored at 0: a distance is never below
    t_975 = 12.7062047  # scipy.stats.t.ppf(0.975, 1)
    assert float(first["ci_high"]) - float(first["distance"]) == pytest.approx(t_975 * 0.5**0.5 / 2**0.5)
    assert float(first["ci_low"]) == 0.0
    with (tables_dir / "figure_7.csv").open() as f:
        points = {(r["knob"], float(r["point"] or "nan")): float(r["value"]) for r in csv.DictReader(f)}
    # prompt a alone (0.6): b (0.7) has no base or distilled to stand beside, so no point of the figure is over it
    assert points[("k", 2.0)] == pytest.approx(0.6)
    assert "left out prompt(s) b" in " ".join(err.split())
    with (tables_dir / "figure_7.csv").open() as f:
        levels = {r["fixed"]: float(r["value"]) for r in csv.DictReader(f) if r["knob"] == "baseline"}
    assert levels == {"base": 0.8, "distilled": 0.3}
    page = (toy_run / "report.html").read_text()
    parsed = Parsed()
    parsed.feed(page)
    parsed.close()
    assert parsed.tags["table"] >= 6
    assert all(src.startswith("data:image/") for src in parsed.images)  # nothing outside the file
    assert len(parsed.images) == 9 + 2  # 3 methods x 3 seeds of thumbnails, figures 5 and 7
    assert "measured toy_features" in page and "a shape" in page
    with (tables_dir / "table_3.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {r["measured"] for r in rows if r["condition"] == "a shape"} == {"0.61", "0.22", "0.58"}


def test_several_runs_merge(cli, paper_run: Path, toy_run: Path, tmp_path: Path):
    code, _, err = cli("report", f"runs=[{paper_run},{toy_run}]", f"tables_dir={tmp_path / 't'}", "tables=[3,D1]")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "t").glob("table_*.md")) == ["table_3.md", "table_D1.md"]
    text = (tmp_path / "t" / "table_3.md").read_text()
    assert "Sunset beach" in text and str(paper_run) in text
    assert (paper_run / "report.html").is_file() and (toy_run / "report.html").is_file()
    page = (paper_run / "report.html").read_text()  # a run's page holds all its tables, not only tables=[...]
    assert "Table E.1" in page and "Table 2:" in page


@pytest.mark.parametrize("make", ["empty", "missing", "none"])
def test_bad_input_one_line(cli, tmp_path: Path, make: str):
    args = {"empty": [f"out={tmp_path}"], "missing": [f"out={tmp_path / 'nope'}"], "none": []}[make]
    code, out, err = cli("report", *args)
    assert code == 2
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_figures_only(cli, toy_run: Path, tmp_path: Path):
    code, out, err = cli("report", f"out={toy_run}", "tables=none", f"tables_dir={tmp_path / 't'}", "html=false")
    assert code == 0, err
    records = {"runs", "run.json", ".run.json.lock"}  # the invocation record of this report and the run's marker
    assert sorted(p.name for p in (tmp_path / "t").iterdir() if p.name not in records) == [
        "figure_5.csv",
        "figure_5.png",
        "figure_7.csv",
        "figure_7.png",
    ]
    assert list((tmp_path / "t" / "runs").glob("*-report-*.json"))


def test_unknown_table(cli, toy_run: Path):
    code, _, err = cli("report", f"out={toy_run}", "tables=[9]", "html=false")
    assert code == 2 and "unknown table '9'" in err


def test_report_on_a_generated_run(cli, tmp_path: Path):
    """generate -> diversity -> report on the tiny pair: the real CSVs feed the tables and the HTML grid."""
    out = tmp_path / "run"
    for method in ("base", "hybrid"):
        code, _, err = cli("generate", "model=tiny_sd", f"method={method}", "n=2", f"prompt={SUNSET}", f"out={out}")
        assert code == 0, err
    code, _, err = cli("diversity", f"out={out}", "metric=pixel", "bootstrap=0")
    assert code == 0, err
    code, _, err = cli("report", f"out={out}", f"tables_dir={tmp_path / 'tables'}")
    assert code == 0, err
    with (out / "diversity.csv").open() as f:
        measured = {r["method"]: r["value"] for r in csv.DictReader(f)}
    with (tmp_path / "tables" / "table_3.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["condition"] == "Sunset beach"]
    assert {r["method"]: r["measured"] for r in rows if r["measured"]} == {
        "Base": measured["base"],
        "Hybrid": measured["hybrid_k1"],
    }
    assert {r["measured_metric"] for r in rows if r["measured"]} == {"pixel"}
    parsed = Parsed()
    parsed.feed((out / "report.html").read_text())
    pngs = [src for src in parsed.images if src.startswith("data:image/png;base64,")]
    assert len(pngs) == 4 + len(list(out.glob("*.png")))  # 2 methods x 2 thumbnails, and the run's own PNGs
    assert not (tmp_path / "tables" / "table_2.md").exists()  # no fid.csv: no Table 2


# --------------------------------------------------------------------------------- labels that say what was measured


def test_headers_name_the_metric_actually_used(paper_run: Path):
    rows = [
        diversity_row("sd21_turbo", tag, "image of a car", "pixel", value) for tag, value in (("base", "0.2"),)
    ]  # pixel diversity where the paper measured DreamSim
    write_csv(paper_run / "diversity.csv", rows)
    header, _ = wide(tables_of(paper_run, keys=("D1",))["D1"])
    assert "paper dreamsim_diversity" in header and "measured pixel_diversity" in header
    assert not [h for h in header if "dreamsim_diversity: measured" in h or h.endswith("measured pixel")]


def _five_prompt_run(root: Path) -> Path:
    root.mkdir()
    prompts = [ln for ln in (REPO / "data" / "table3_prompts.txt").read_text().splitlines() if ln and ln[0] != "#"]
    write_csv(
        root / "diversity.csv",
        [
            {**diversity_row("sdxl_dmd2", tag, prompt, "dreamsim", str(0.3 + 0.01 * i)), "ci_low": "", "ci_high": ""}
            for i, prompt in enumerate(prompts)
            for tag in ("base", "distilled", "hybrid_k1")
        ],
    )
    return root


def test_an_average_stands_beside_the_papers_only_over_the_same_prompts(paper_run: Path, toy_run: Path, tmp_path):
    toy = tables_of(toy_run, keys=("3",))["3"]
    assert not [line for line in toy.measured if line.condition == "Average"]  # one toy prompt is no 5-prompt mean
    # Its own row instead, naming the prompts every method has (diversity.csv's and ablate.csv's).
    own = cell(toy, method="Base", condition="Average of 2 prompts: a, a shape", measured_metric="toy_features")
    assert (own.paper, float(own.measured)) == ("", pytest.approx((0.61 + 0.8) / 2))
    assert cell(toy, method="Base", condition="Average").paper == "0.337"  # the paper's row, left unmeasured
    paper = tables_of(paper_run, keys=("3",))["3"]
    assert not [line for line in paper.measured if line.condition == "Average"]  # 2 of the paper's 5 prompts
    full = tables_of(_five_prompt_run(tmp_path / "five"), keys=("3",))["3"]
    average = cell(full, method="Base", condition="Average")
    assert (average.paper, float(average.measured)) == ("0.337", pytest.approx(0.32))
    assert "Average" in to_markdown(full) and "Average of" not in to_markdown(full)


def test_every_diversity_number_shows_n_and_its_interval(paper_run: Path):
    rows = [
        {**diversity_row("sdxl_dmd2", "base", SUNSET, "dreamsim", "0.4"), "ci_low": "0.38", "ci_high": "0.43"},
        {**diversity_row("sdxl_dmd2", "base", PUPPY, "dreamsim", "0.2"), "ci_low": "0.17", "ci_high": "0.22"},
    ]
    write_csv(paper_run / "diversity.csv", rows)
    t3 = tables_of(paper_run, keys=("3",))["3"]
    header, body = wide(t3)
    sunset = next(r for r in body if r[0] == "Sunset beach")
    assert sunset[header.index("Base: measured dreamsim_diversity")] == "0.400 [0.380, 0.430] [out of date]"
    assert sunset[header.index("n")] == "4"
    average = cell(t3, method="Base", condition="Average of 2 prompts: Sunset beach, Cute puppy")
    # A mean of two independent estimates: half-widths add in quadrature, over 2.
    assert float(average.ci_low) == pytest.approx(0.3 - (0.02**2 + 0.03**2) ** 0.5 / 2)
    assert float(average.ci_high) == pytest.approx(0.3 + (0.03**2 + 0.02**2) ** 0.5 / 2)
    assert "bootstrap confidence interval" in to_markdown(t3)


def test_quality_stands_beside_diversity(paper_run: Path, toy_run: Path):
    # paper_run: SDXL-DMD2's base was sampled on one prompt, so fid.csv's CLIP score is that prompt's.
    t3 = tables_of(paper_run, keys=("3",))["3"]
    header, body = wide(t3)
    sunset = next(r for r in body if r[0] == "Sunset beach")
    at = header.index("Base: measured clip_score")
    assert header[at - 1] == "Base: measured dreamsim_diversity" and sunset[at] == "31.70 [out of date]"
    assert "Base: paper clip_score" not in header  # the paper has no such number
    rows = list(csv.DictReader((toy_run / "diversity.csv").open()))
    write_csv(
        toy_run / "diversity.csv",
        rows + [diversity_row("toy", tag, "a shape", "toy_adherence", v, 3) for tag, v in (("base", "0.9"),)],
    )
    tables = tables_of(toy_run, keys=("3", "E1"))
    header, body = wide(tables["3"])
    assert body[[r[0] for r in body].index("a shape")][header.index("Base: measured toy_adherence")] == "0.900"
    e1 = cell(tables["E1"], method="SDXL-Base", metric="quality")
    assert (e1.measured_metric, e1.measured) == ("toy_adherence", "0.9")
    assert "measured toy_adherence" in wide(tables["E1"])[0]


def test_html_renders_markdown(cli, toy_run: Path, tmp_path: Path):
    code, _, err = cli("report", f"out={toy_run}", f"tables_dir={tmp_path / 'tables'}")
    assert code == 0, err
    page = (toy_run / "report.html").read_text()
    notes = [line for line in page.split("<p class='note'>")[1:]]
    assert not [note for note in notes if "`" in note.split("</p>")[0]]  # no raw backticks
    assert "<code>toy_features</code>" in page


def test_toy_diversity_comes_with_toy_adherence_and_the_table_shows_it(cli, tmp_path: Path):
    """Off-prompt variety cannot pass for diversity: scenes of the wrong colour score adherence 0 beside their
    diversity, scenes of the prompt score 1 (the toy renderer's ground truth, judged by the frozen classifier)."""
    from PIL import Image

    from diversity_cli.toy.data import render_prompt_samples

    for name, drawn in (("on", "a red circle"), ("off", "a blue square")):
        folder = tmp_path / name
        folder.mkdir()
        for i, image in enumerate(render_prompt_samples(drawn, 4, seed=5)):
            Image.fromarray(image).save(folder / f"{i}.png")
        code, _, err = cli(
            "diversity", f"images={folder}", "prompt=a red circle", "metric=toy_features", "bootstrap=0",
            f"out={tmp_path / ('out_' + name)}",
        )  # fmt: skip
        assert code == 0, err
    adherence = {}
    for name in ("on", "off"):
        with (tmp_path / f"out_{name}" / "diversity.csv").open() as f:
            rows = {r["metric"]: r for r in csv.DictReader(f)}
        assert set(rows) == {"toy_features", "toy_adherence"} and rows["toy_adherence"]["n"] == "4"
        adherence[name] = float(rows["toy_adherence"]["value"])
    assert adherence == {"on": 1.0, "off": 0.0}


def test_real_pairs_get_a_per_prompt_clip_score_beside_diversity(cli, tmp_path: Path, monkeypatch):
    import torch
    from PIL import Image

    from diversity_cli.metrics import preflight
    from diversity_cli.metrics.quality import load_clip

    monkeypatch.setattr(preflight, "CLIP_SCORE_MODEL", "tiny_random")  # an offline stand-in for the real CLIP
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(3)
    arrays = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(3)]
    for i, array in enumerate(arrays):
        Image.fromarray(array).save(folder / f"{i}.png")
    args = ("metric=[pixel,clip_score]", "bootstrap=0", f"out={tmp_path / 'out'}", "device=cpu")
    code, _, err = cli("diversity", f"images={folder}", f"prompt={SUNSET}", *args)
    assert code == 0, err
    with (tmp_path / "out" / "diversity.csv").open() as f:
        rows = {r["metric"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"pixel", "clip_score"} and rows["clip_score"]["n"] == "3"
    expected = load_clip("tiny_random", torch.device("cpu"))
    expected.update([torch.from_numpy(a).permute(2, 0, 1) for a in arrays], [SUNSET] * 3)
    assert float(rows["clip_score"]["value"]) == pytest.approx(float(expected.compute()), rel=1e-4)
    (record,) = (tmp_path / "out" / "runs").glob("*-diversity-*.json")
    assert '"clip_score"' in record.read_text()


def _toy_cells(root: Path, values: dict[str, tuple[str, str]], n: int = 4, ci: str = "0.95") -> Path:
    """A toy run: per method tag, (toy_features diversity, toy_adherence) on two prompts, diversity.csv only."""
    root.mkdir()
    rows = []
    for tag, (diversity, adherence) in values.items():
        for prompt in ("a shape", "a red circle"):
            low, high = str(float(diversity) - 0.02), str(float(diversity) + 0.02)
            rows.append({**diversity_row("toy", tag, prompt, "toy_features", diversity, n), "ci_low": low,
                         "ci_high": high, "ci": ci})  # fmt: skip
            rows.append({**diversity_row("toy", tag, prompt, "toy_adherence", adherence, n), "ci": ""})
    write_csv(root / "diversity.csv", rows)
    return root


def test_a_cells_diversity_quality_and_average_come_from_one_run(tmp_path: Path):
    """Two runs measured the same groups: every cell of a row, and the average, is the first run's; the second
    run's adherence never stands beside the first run's diversity."""
    tags = ("base", "distilled", "hybrid_k1")
    first = _toy_cells(tmp_path / "first", {tag: ("0.3", "") for tag in tags})  # no adherence measured
    second = _toy_cells(tmp_path / "second", {tag: ("0.1", "0.5") for tag in tags})
    t3 = tables_of(first, second, keys=("3",))["3"]
    average = cell(
        t3, method="Base", condition="Average of 2 prompts: a red circle, a shape", metric="dreamsim_diversity"
    )
    assert float(average.measured) == pytest.approx(0.3)  # not the mean over both runs' cells (0.2)
    assert not [line for line in t3.measured if line.measured_metric == "toy_adherence"]
    assert any("0.5 in" in note and "not shown" in note for note in t3.notes)  # the second run's, named
    e1 = tables_of(first, second, keys=("E1",))["E1"]
    assert not [line for line in e1.measured if line.measured_metric == "toy_adherence"]


def test_an_ablation_run_has_its_adherence_beside_its_diversity(tmp_path: Path):
    root = tmp_path / "ablate"
    root.mkdir()
    write_csv(
        root / "ablate.csv",
        [{"model": "toy", "method": m, "k": 1 if m == "hybrid" else "", "base_guidance": 0.0 if m == "hybrid" else "",
          "base_steps": "", "prompt": "a shape", "n": 6, "metric": metric, "value": v, "seconds_per_image": 0.1,
          "nfe": 4}
         for m in ("base", "distilled", "hybrid")
         for metric, v in (("toy_features", "0.3"), ("toy_adherence", "0.75"))],
    )  # fmt: skip
    tables = tables_of(root, keys=("3", "E1"))
    assert cell(tables["3"], method="Hybrid", condition="a shape", metric="quality").measured == "0.75"
    assert cell(tables["E1"], method="SDXL-Base", metric="quality").measured == "0.75"


def test_an_interval_names_its_level_when_it_is_not_95(tmp_path: Path):
    run = _toy_cells(tmp_path / "half", {tag: ("0.3", "1") for tag in ("base", "distilled", "hybrid_k1")}, ci="0.5")
    header, body = wide(tables_of(run, keys=("3",))["3"])
    shape = next(r for r in body if r[0] == "a shape")
    assert shape[header.index("Base: measured toy_features_diversity")] == "0.300 [0.280, 0.320] 50% CI"
    usual = _toy_cells(tmp_path / "usual", {tag: ("0.3", "1") for tag in ("base", "distilled", "hybrid_k1")})
    header, body = wide(tables_of(usual, keys=("3",))["3"])
    assert next(r for r in body if r[0] == "a shape")[header.index("Base: measured toy_features_diversity")] == (
        "0.300 [0.280, 0.320]"
    )


def test_a_row_over_different_numbers_of_images_gives_each_cell_its_n(tmp_path: Path):
    root = _toy_cells(tmp_path / "run", {tag: ("0.3", "1") for tag in ("base", "distilled", "hybrid_k1")})
    rows = list(csv.DictReader((root / "diversity.csv").open()))
    for row in rows:
        if row["method"] == "distilled":
            row["n"] = "12"
    write_csv(root / "diversity.csv", rows)
    header, body = wide(tables_of(root, keys=("3",))["3"])
    shape = next(r for r in body if r[0] == "a shape")
    assert shape[header.index("Distilled: measured toy_features_diversity")].endswith("(n=12)")
    assert shape[header.index("Base: measured toy_features_diversity")].endswith("(n=4)")
    assert shape[header.index("n")] == "4/12 (per cell)"


def _rows_of(root: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((root / "samples.csv").open()))


def test_measurements_older_than_the_runs_images_are_flagged(cli, tmp_path: Path):
    """Images added after `diversity` and `fid` ran: the tables still show the old numbers (the run's CSVs), and
    say they are out of date, naming the group and the command that remeasures it."""
    root = tmp_path / "run"
    write_samples(root, {("toy", tag, "a shape"): [0.1] * 4 for tag in ("base", "distilled", "hybrid_k1")})
    write_csv(
        root / "diversity.csv",
        [diversity_row("toy", tag, "a shape", "toy_features", "0.3", 4) for tag in ("base", "distilled", "hybrid_k1")]
        + [diversity_row("toy", "base", "a shape", "toy_features@adherent", "0.3", 3)],  # a subset, by name
    )
    write_csv(
        root / "fid.csv",
        [{"method": tag, "model": "toy", "n": 4, "fid_toyfeat": "3.5", "seconds_per_image": "0.2", "reference": "toy"}
         for tag in ("base", "distilled", "hybrid_k1")],
    )  # fmt: skip
    fresh = tables_of(root, keys=("2", "3"))
    assert not [note for table in fresh.values() for note in table.notes if "out of date" in note]
    write_samples(
        root,
        {
            ("toy", tag, "a shape"): [0.1] * (6 if tag == "distilled" else 4)
            for tag in ("base", "distilled", "hybrid_k1")
        },
    )
    tables = tables_of(root, keys=("2", "3"))
    (note3,) = [note for note in tables["3"].notes if "out of date" in note]
    assert "toy / distilled / a shape: n=4, samples.csv's images 6" in note3 and "diversity-cli diversity" in note3
    (note2,) = [note for note in tables["2"].notes if "out of date" in note]
    assert "toy / distilled against toy: n=4, samples.csv's images 6" in note2 and "diversity-cli fid" in note2
    code, _, err = cli("report", f"out={root}", "html=false", "figures=false")
    assert code == 0 and "warning: out of date" in err
    # an image lost from disk before diversity ran is no change to measure again: it left the image out (n=3)
    write_samples(root, {("toy", tag, "a shape"): [0.1] * 4 for tag in ("base", "distilled", "hybrid_k1")})
    lost = _rows_of(root)[0]
    (root / lost["path"]).unlink()
    rows = list(csv.DictReader((root / "diversity.csv").open()))
    write_csv(root / "diversity.csv", [{**r, "n": 3 if r["method"] == lost["tag"] else r["n"]} for r in rows])
    assert not [note for note in tables_of(root, keys=("3",))["3"].notes if "out of date" in note]


def test_a_group_no_table_row_names_is_said_and_can_be_mapped(cli, tmp_path: Path):
    """A hybrid at another k than the paper's (hybrid_k2_bs5) is no paper row: report says so rather than leaving
    it out without a word, and a mapping added on the command line puts it there, its tag shown. (The toy demo's
    k=1 hybrid_k1_bs5 fills the Hybrid rows by itself: tests/test_report_toy_hybrid.py.)"""
    root = _toy_cells(tmp_path / "demo", {tag: ("0.3", "1") for tag in ("base", "distilled", "hybrid_k2_bs5")})
    code, _, err = cli("report", f"out={root}", "html=false", "figures=false", "tables=[3]")
    assert code == 0 and "in no row of Tables 3, D.1, E.1" in " ".join(err.split()) and "toy / hybrid_k2_bs5" in err
    assert "+mapping.3.rows.hybrid_k2_bs5=Hybrid" in " ".join(err.split())
    code, _, err = cli(
        "report", f"out={root}", "html=false", "figures=false", "tables=[3]", "+mapping.3.rows.hybrid_k2_bs5=Hybrid"
    )
    assert code == 0 and "in no row" not in err
    text = (root / "tables" / "table_3.md").read_text()
    assert "toy (Hybrid: hybrid_k2_bs5)" in text
    # fid.csv's group: Tables 2 and 4 have rows of their own; said when one of them is asked for
    write_csv(root / "fid.csv", [{"method": "hybrid_k2_bs5", "model": "toy", "n": 8, "fid_toyfeat": "3.5"}])
    err = " ".join(cli("report", f"out={root}", "html=false", "figures=false", "tables=[2]")[2].split())
    assert "fid.csv measured toy / hybrid_k2_bs5, in no row of Tables 2, 4" in err
    assert "+mapping.2.rows.hybrid_k2_bs5=Hybrid" in err and "diversity.csv measured" not in err


def test_an_ablations_groups_no_table_row_names_are_said_as_a_generate_runs_are(cli, tmp_path: Path):
    """`report out=<ablate run>` said nothing of a sweep's hybrid_k2_bs5 in no row of any table: it looked at
    diversity.csv and fid.csv only, while the same groups made by generate were named."""
    root = tmp_path / "ablate"
    root.mkdir()
    point = {"model": "toy", "method": "hybrid", "k": "2", "base_guidance": "0", "base_steps": "5", "n": "4"}
    rows = [
        {**point, "prompt": "a red circle", "metric": "toy_features", "value": "0.2", "seed": "0"},
        {**point, "prompt": "", "metric": "fid_toyfeat", "value": "3.5", "seed": "0"},  # ablate fid=true's row
    ]
    write_csv(root / "ablate.csv", rows)
    err = " ".join(cli("report", f"out={root}", "html=false", "figures=false", "tables=[3]")[2].split())
    assert "ablate.csv measured toy / hybrid_k2_bs5, in no row of Tables 3, D.1, E.1" in err, err
    err = " ".join(cli("report", f"out={root}", "html=false", "figures=false", "tables=[4]")[2].split())
    assert "ablate.csv measured toy / hybrid_k2_bs5, in no row of Tables 2, 4" in err, err


def test_a_row_of_a_table_not_asked_for_is_a_row_and_no_group_is_advised_into_another_methods_row(cli, tmp_path):
    """`make reproduce-table4` on a run that also holds Table 2's base and distilled: they are rows of Table 2, not
    untabulated; and a group no row takes (replace_final in fid.csv) is named without advice to map it into Hybrid,
    which only a hybrid's tag is advised into."""
    root = tmp_path / "coco"
    root.mkdir()
    tags = ("base", "distilled", "hybrid_k1", "skip_first")
    write_csv(root / "fid.csv", [{"method": t, "model": "toy", "n": 8, "fid_toyfeat": "3.5"} for t in tags])
    for table in ("4", "2"):
        err = cli("report", f"out={root}", "html=false", "figures=false", f"tables=[{table}]")[2]
        assert "in no row" not in err, err
    rows = [{"method": t, "model": "toy", "n": 8, "fid_toyfeat": "3.5"} for t in ("replace_final_k3", "skip_first")]
    write_csv(root / "fid.csv", rows)
    err = " ".join(cli("report", f"out={root}", "html=false", "figures=false", "tables=[4]")[2].split())
    assert "fid.csv measured toy / replace_final_k3, in no row of Tables 2, 4" in err
    assert "=Hybrid" not in err and "+mapping" not in err
    write_csv(root / "fid.csv", [{**rows[0]}, {**rows[0], "method": "hybrid_k2"}])
    err = " ".join(cli("report", f"out={root}", "html=false", "figures=false", "tables=[4]")[2].split())
    assert (
        "toy / replace_final_k3, toy / hybrid_k2" in err and "+mapping.4.rows.hybrid_k2=Hybrid" in err
    )  # the table asked for


def test_table_2s_clip_is_described_as_a_clip_score_and_a_folder_reference_as_a_folder(paper_run: Path, toy_run):
    """fid.csv's `clip` column is a CLIP score against the captions, not the diversity embedder of that name; a
    toy-feature FID against a folder is not "to toy scenes"."""
    notes = tables_of(paper_run, keys=("2",))["2"].notes + metric_notes(tables_of(paper_run, keys=("2",))["2"])
    (clip,) = [note for note in notes if note.startswith("`clip`")]
    assert "CLIP score" in clip and "pairwise" not in clip
    rows = list(csv.DictReader((toy_run / "fid.csv").open()))
    write_csv(toy_run / "fid.csv", [{**row, "reference": "/data/photos"} for row in rows])
    (note,) = [n for n in metric_notes(tables_of(toy_run, keys=("2",))["2"]) if n.startswith("`fid_toyfeat")]
    assert "reference images of photos" in note and "toy scenes" not in note


def test_the_htmls_measurement_tables_round_every_fraction_alike():
    from diversity_cli.reporting.report import _tidy

    assert [_tidy(v) for v in ("0.17955", "0.0765878", "12", "-3", "a shape", "")] == [
        "0.180", "0.077", "12", "-3", "a shape", ""
    ]  # fmt: skip


def test_a_toy_reference_with_other_settings_heads_its_own_column(toy_run: Path):
    rows = list(csv.DictReader((toy_run / "fid.csv").open()))
    write_csv(toy_run / "fid.csv", [{**row, "reference": "toy(mode=dataset)"} for row in rows])
    table = tables_of(toy_run, keys=("2",))["2"]
    assert "measured fid_toyfeat[ref=toy(mode=dataset)]" in " ".join(wide(table)[0])
    (note,) = [n for n in metric_notes(table) if n.startswith("`fid_toyfeat")]
    assert "toy scenes drawn with mode=dataset" in note


def test_e1s_stand_in_prompt_is_the_pairs_own_default_prompt_when_it_is_among_the_fullest(tmp_path: Path):
    import json

    run = _toy_cells(tmp_path / "run", {tag: ("0.3", "1") for tag in ("base", "distilled", "hybrid_k1")})
    rows = list(csv.DictReader((run / "diversity.csv").open()))
    write_csv(
        run / "diversity.csv",
        [r for r in rows if r["prompt"] == "a shape"] + [r for r in rows if r["prompt"] != "a shape"],
    )
    line = cell(tables_of(run, keys=("E1",))["E1"], method="SDXL-Base", metric="dreamsim_diversity")
    assert line.measured_as.endswith("/ a shape")  # no record to go by: the first measured
    (run / "runs").mkdir()
    own = {"name": "toy", "default_prompt": "a red circle"}
    record = {"command": "generate", "started": "1", "config": {"model": own}}
    (run / "runs" / "1-generate.json").write_text(json.dumps(record))
    line = cell(tables_of(run, keys=("E1",))["E1"], method="SDXL-Base", metric="dreamsim_diversity")
    assert line.measured_as.endswith("/ a red circle")


def test_a_metric_only_a_later_run_measured_keeps_its_column_and_its_quality(tmp_path: Path):
    """One run measured pixel, another toy_features with adherence: both diversity columns are shown, and the
    adherence beside them comes from the run whose toy_features the row shows."""
    tags = ("base", "distilled", "hybrid_k1")
    first = tmp_path / "pixel"
    first.mkdir()
    write_csv(first / "diversity.csv", [diversity_row("toy", t, p, "pixel", "0.2") for t in tags for p in ("a shape",)])
    second = _toy_cells(tmp_path / "toy", {tag: ("0.3", "0.75") for tag in tags})
    t3 = tables_of(first, second, keys=("3",))["3"]
    shape = {
        line.measured_metric: line for line in t3.measured if line.condition == "a shape" and line.method == "Base"
    }
    assert set(shape) == {"pixel", "toy_features", "toy_adherence"}
    assert (shape["pixel"].run, shape["toy_features"].run) == (str(first), str(second))
    assert shape["toy_adherence"].run == str(second)


def test_an_older_diversity_csv_takes_its_level_from_the_runs_diversity_records(tmp_path: Path):
    import json

    run = _toy_cells(tmp_path / "old", {tag: ("0.3", "1") for tag in ("base", "distilled", "hybrid_k1")}, ci="0.5")
    rows = [{k: v for k, v in r.items() if k != "ci"} for r in csv.DictReader((run / "diversity.csv").open())]
    write_csv(run / "diversity.csv", rows)  # as written before diversity.csv had a ci column
    (run / "runs").mkdir()
    record = {"command": "diversity", "started": "1", "config": {"ci": 0.5}}
    (run / "runs" / "1-diversity.json").write_text(json.dumps(record))
    header, body = wide(tables_of(run, keys=("3",))["3"])
    shape = next(r for r in body if r[0] == "a shape")
    assert shape[header.index("Base: measured toy_features_diversity")].endswith("50% CI")


def test_images_remade_at_the_same_count_are_flagged(cli, tmp_path: Path):
    """A group remade with other settings at the same n (overwrite=true with other timesteps): the counts agree,
    but diversity.csv and fid.csv name the images they measured, and the report says the numbers are out of date;
    a rerun of diversity clears it."""
    from diversity_cli.core.rundir import samples_digest

    root = tmp_path / "run"
    write_samples(root, {("toy", tag, "a shape"): [0.1] * 4 for tag in ("base", "distilled")})
    code, _, err = cli("diversity", f"out={root}", "metric=pixel", "min_n=2")
    assert code == 0, err
    write_csv(
        root / "fid.csv",
        [{"method": tag, "model": "toy", "n": 4, "fid_toyfeat": "3.5", "reference": "toy",
          "samples": samples_digest([r for r in _rows_of(root) if r["tag"] == tag])} for tag in ("base", "distilled")],
    )  # fmt: skip
    assert not [n for t in tables_of(root, keys=("2", "3")).values() for n in t.notes if "out of date" in n]
    rows = [{**row, "settings": "y" if row["tag"] == "distilled" else row["settings"]} for row in _rows_of(root)]
    write_csv(root / "samples.csv", rows)
    tables = tables_of(root, keys=("2", "3"))
    (note3,) = [note for note in tables["3"].notes if "out of date" in note]
    assert "toy / distilled / a shape: images remade since (n=4)" in note3 and "base" not in note3
    (note2,) = [note for note in tables["2"].notes if "out of date" in note]
    assert "toy / distilled against toy: images remade since (n=4)" in note2
    code, _, err = cli("diversity", f"out={root}", "metric=pixel", "min_n=2")
    assert code == 0, err
    assert not [note for note in tables_of(root, keys=("3",))["3"].notes if "out of date" in note]


def test_figure_5_names_the_metric_of_each_runs_curves(cli, tmp_path: Path):
    """Two x0viz runs measured with other metrics: their distances are not on one scale, so each line and the
    plotted points name theirs (commitment_summary.csv's metric; the x0viz record's for older runs)."""
    runs = []
    for name, metric in (("pixel_run", "pixel"), ("toy_run", "toy_features")):
        root = tmp_path / name
        root.mkdir()
        write_csv(
            root / "commitment.csv",
            [{"method": "base", "prompt": "a shape", "seed": 0, "step": i, "timestep": 999 - 250 * i,
              "fraction": (i + 1) / 4, "distance": 3 - i} for i in range(4)],
        )  # fmt: skip
        summary = {"method": "base", "steps": 4, "committed_fraction": 0.5, "metric": metric}
        write_csv(root / "commitment_summary.csv", [summary])
        runs.append(str(root))
    code, _, err = cli("report", f"runs=[{','.join(runs)}]", "tables=[3]", "html=false", f"tables_dir={tmp_path / 't'}")
    assert code == 0, err
    with (tmp_path / "t" / "figure_5.csv").open() as f:
        assert {(Path(r["run"]).name, r["metric"]) for r in csv.DictReader(f)} == {
            ("pixel_run", "pixel"),
            ("toy_run", "toy_features"),
        }


def test_table_1_shows_the_newest_row_of_a_cell_and_what_it_is_over(tmp_path: Path):
    """transfer-lora at scale 1, then 3, then 1 again: the rerun's row moves to the end of transfer.csv, and the
    cell shows it (not the scale-3 row written between), saying its scale, concept and prompts."""
    root = tmp_path / "run"
    root.mkdir()
    row = {"adapter": "red", "concept": "red", "source": "base", "target": "distilled", "n": 8, "clip_without": "",
           "clip_with": "", "change_pct": "", "classifier_without": "0.125", "classifier_target": "color=red",
           "model": "toy", "prompts": "a shape"}  # fmt: skip
    write_csv(
        root / "transfer.csv",
        [{**row, "scale": "3", "classifier_with": "0.5"}, {**row, "scale": "1", "classifier_with": "0.75"}],
    )
    table = tables_of(root, keys=("1",))["1"]
    header, body = wide(table)
    (red,) = [r for r in body if r[0] == "red"]
    # 6 of 8 images: with the 95% Wilson interval of that share (a bare 0.750 said nothing of n=8)
    assert red[header.index("base->dmd: measured classifier_with")] == "0.750 [0.409, 0.928]"
    page = to_markdown(table)  # and its footnote says so: no bootstrap was run
    assert "Wilson score interval" in page and "bootstrap" not in page
    assert "(scale 1)" in red[header.index("measured as")] and "prompts 'a shape'" in red[header.index("measured as")]
    assert any("also measured 0.5" in note and "(scale 3)" in note for note in table.notes)


def test_the_suggested_row_is_of_a_requested_table_and_of_the_groups_own_pair():
    """report tables=[E1] advised a Table 3 row (which does not change E.1); D.1's rows of PixArt are no place for
    the toy's group."""
    from diversity_cli.reporting.tables import suggested_row

    mapping = compose("report", []).mapping
    assert suggested_row("diversity.csv", "toy / hybrid_k2", mapping) == "+mapping.3.rows.hybrid_k2=Hybrid"
    asked = suggested_row("diversity.csv", "sdxl_dmd2 / hybrid_k2", mapping, ["E1"])
    assert asked is not None and asked.startswith("'+mapping.E1.models.sdxl_dmd2.hybrid_k2=")
    assert "pixart" not in suggested_row("diversity.csv", "toy / hybrid_k2", mapping, ["D1"])


def test_a_pair_standing_in_for_the_papers_is_said_above_the_cells(paper_run: Path, toy_run: Path):
    """The toy fills Table 2's and E.1's SDXL-DMD2 rows under the paper's labels: the table says, above its cells,
    that those numbers are of another pair; the paper's pair measured (or the toy in rows of its own) says nothing."""
    toy = tables_of(toy_run, keys=("2", "3", "D1", "E1"))
    for key in ("2", "E1"):
        assert toy[key].standin.startswith("Stand-in: no run of the paper's pair (sdxl_dmd2); its rows show toy")
        page = to_markdown(toy[key])
        assert page.index("Stand-in:") < page.index("| method")
    assert toy["D1"].standin == "" and toy["3"].standin == ""  # the toy's rows are its own there
    assert all(table.standin == "" for table in tables_of(paper_run).values())


def test_an_interval_over_two_images_an_earlier_version_wrote_is_not_shown(tmp_path: Path):
    """diversity.csv rows of n=2 carried [d, d] as a 95% interval (two images are one pair); the tables drop it."""
    run = _toy_cells(tmp_path / "run", {tag: ("0.3", "1") for tag in ("base", "distilled")}, n=2)
    line = cell(tables_of(run, keys=("E1",))["E1"], method="SDXL-Base", metric="dreamsim_diversity")
    assert (line.measured, line.n, line.ci_low, line.ci_high) == ("0.3", "2", "", "")
    run3 = _toy_cells(tmp_path / "run3", {tag: ("0.3", "1") for tag in ("base", "distilled")}, n=3)
    line = cell(tables_of(run3, keys=("E1",))["E1"], method="SDXL-Base", metric="dreamsim_diversity")
    assert line.ci_low != "" and line.ci_high != ""


def test_a_row_label_that_is_no_paper_method_is_said(cli, toy_run: Path, tmp_path: Path):
    """`mapping.3.rows.hybrid_k1=Hybird` made a column of its own beside the paper's Hybrid, without a word."""
    code, _, err = cli("report", f"out={toy_run}", f"tables_dir={tmp_path / 'plain'}", "tables=[3]", "html=false")
    assert code == 0, err
    assert "a row label of the report's mapping" not in (tmp_path / "plain" / "table_3.md").read_text()
    code, _, err = cli("report", f"out={toy_run}", f"tables_dir={tmp_path / 'typo'}", "tables=[3]", "html=false",
                       "mapping.3.rows.hybrid_k1=Hybird")  # fmt: skip
    assert code == 0, err
    text = (tmp_path / "typo" / "table_3.md").read_text().replace("\\", "")
    assert "Hybird (a row label of the report's mapping) is no method of the paper's Table 3 (Base, Distilled, " in text
