"""The paper's Hybrid rows from the hybrid a pair actually runs: `make demo`'s toy hybrid is `hybrid_k1_bs5` (the
base takes the student's first step in 5 steps of its own), and Tables 2, 3 and 4 show it in their Hybrid rows,
its tag in "measured as"; where a run also measured the paper's `hybrid_k1`, that one is shown by a stated rule
and the other is named (Table 3's notes) or shown in a row of its own (Table 2)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from test_report import write_csv

from diversity_cli.core.config import compose
from diversity_cli.core.rundir import SAMPLE_COLUMNS
from diversity_cli.reporting.tables import build_tables, load_run, read_paper, wide

REPO = Path(__file__).resolve().parent.parent
PAPER = REPO / "data" / "paper_tables.csv"


def toy_run(root: Path, groups: dict[str, tuple[str, str]], extra: list[dict] | None = None) -> Path:
    """A toy run on "a shape": per tag (as listed, which is diversity.csv's and fid.csv's order), its toy_features
    diversity and toy_adherence, fid_toyfeat, and samples.csv rows with the tag's steps and NFE."""
    from PIL import Image

    root.mkdir(parents=True)
    diversity, fid, samples = [], [], []
    for tag, (value, adherence) in groups.items():
        common = {"method": tag, "model": "toy", "prompt": "a shape", "n": 4}
        diversity.append({**common, "metric": "toy_features", "value": value, "ci_low": "0.1", "ci_high": "0.6"})
        diversity.append({**common, "metric": "toy_adherence", "value": adherence})
        fid.append({"method": tag, "model": "toy", "n": 4, "fid_toyfeat": str(10 * float(value)), "reference": "toy"})
        steps = {"base": ("25", "50"), "hybrid_k1_bs5": ("8", "8")}.get(tag, ("4", "4"))
        for seed in range(4):
            path = f"toy/{tag}/shape/{seed:06d}.png"
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8), (40 * seed, 90, 200)).save(root / path)
            samples.append(
                {"method": tag.split("_k")[0], "model": "toy", "prompt": "a shape", "seed": seed, "k": 1,
                 "steps": steps[0], "nfe": steps[1], "seconds": 0.1, "path": path, "base_guidance": 0.0,
                 "base_steps": "5" if tag.endswith("_bs5") else "", "tag": tag, "settings": "x"}
            )  # fmt: skip
    write_csv(root / "diversity.csv", diversity + (extra or []))
    write_csv(root / "fid.csv", fid)
    with (root / "samples.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SAMPLE_COLUMNS)
        writer.writeheader()
        writer.writerows(samples)
    return root


def tables_of(*roots: Path, keys=("2", "3", "4")):
    return build_tables([load_run(r) for r in roots], read_paper(PAPER), compose("report", []), keys)


def cells(table, **where):
    return [line for line in table.measured if all(getattr(line, k) == v for k, v in where.items())]


def hybrid_of(table3, metric="toy_features"):
    (line,) = cells(table3, method="Hybrid", condition="a shape", measured_metric=metric)
    return line


DEMO = {"base": ("0.34", "1"), "distilled": ("0.31", "1"), "hybrid_k1_bs5": ("0.41", "0.75")}


def test_the_demos_hybrid_fills_table_3s_hybrid_column_its_tag_named(tmp_path: Path):
    tables = tables_of(toy_run(tmp_path / "demo", DEMO))
    line = hybrid_of(tables["3"])
    assert (line.measured, line.measured_as) == ("0.41", "toy / hybrid_k1_bs5 / a shape")
    assert hybrid_of(tables["3"], "toy_adherence").measured == "0.75"  # its own quality beside it
    header, body = wide(tables["3"])
    shape = next(row for row in body if row[0] == "a shape")
    assert shape[header.index("Hybrid: measured toy_features_diversity")].startswith("0.410")
    assert "toy (Hybrid: hybrid_k1_bs5)" in shape[header.index("measured as")]  # never read as hybrid_k1
    average = next(row for row in body if row[0].startswith("Average of 1 prompt"))
    assert "(Hybrid: hybrid_k1_bs5)" in average[header.index("measured as")]


def test_the_demos_hybrid_fills_table_2s_and_4s_hybrid_rows_with_its_tag_and_steps(tmp_path: Path):
    tables = tables_of(toy_run(tmp_path / "demo", DEMO))
    for key in ("2", "4"):
        (line,) = cells(tables[key], method="Hybrid (4 steps)", measured_metric="fid_toyfeat")
        assert line.measured == "4.1" and line.measured_as == "toy / hybrid_k1_bs5 (8 steps, 8 NFE)"
        assert not cells(tables[key], method="toy / hybrid_k1_bs5")


def test_report_says_nothing_is_untabulated_for_the_demo(cli, tmp_path: Path):
    root = toy_run(tmp_path / "demo", DEMO)
    code, _, err = cli("report", f"out={root}", "html=false", "figures=false", "tables=[2,3]")
    assert code == 0 and "in no row" not in err, err
    assert "toy (Hybrid: hybrid_k1_bs5)" in (root / "tables" / "table_3.md").read_text()


BOTH = {
    "base": ("0.34", "1"),
    "distilled": ("0.31", "1"),
    "hybrid_k1_bs5": ("0.26", "0.75"),  # listed before hybrid_k1, at hybrid_k1's value: neither order nor a
    "hybrid_k1": ("0.26", "1"),  # difference of value may decide or hide which one the table shows
}


def test_with_both_hybrids_table_3_shows_hybrid_k1_by_the_stated_rule_and_names_the_other(tmp_path: Path):
    lpips = {"method": "hybrid_k1_bs5", "model": "toy", "prompt": "a shape", "n": 4, "metric": "lpips", "value": "0.5"}
    t3 = tables_of(toy_run(tmp_path / "both", BOTH, extra=[lpips]), keys=("3",))["3"]
    assert hybrid_of(t3).measured_as == "toy / hybrid_k1 / a shape"
    assert hybrid_of(t3, "toy_adherence").measured == "1"  # hybrid_k1's quality, not hybrid_k1_bs5's 0.75
    assert not cells(t3, method="Hybrid", measured_metric="lpips")  # no second setting in the column
    assert all("hybrid_k1_bs5" not in line.measured_as for line in t3.measured)
    (note,) = [note for note in t3.notes if "hybrid" in note and "k1" in note and "bs5" in note and "also" in note]
    assert "also measured 0.26" in note and "own key before" in note and "glob key" in note
    (lpips,) = [note for note in t3.notes if "not shown: the column shows hybrid_k1," in note]  # said, not dropped
    assert "lpips: measured 0.5" in lpips


def test_with_both_hybrids_table_2_shows_hybrid_k1_and_the_other_in_a_row_of_its_own(tmp_path: Path):
    t2 = tables_of(toy_run(tmp_path / "both", BOTH), keys=("2",))["2"]
    (shown,) = cells(t2, method="Hybrid (4 steps)", measured_metric="fid_toyfeat")
    assert shown.measured_as == "toy / hybrid_k1 (4 steps, 4 NFE)"
    (other,) = cells(t2, method="toy / hybrid_k1_bs5", measured_metric="fid_toyfeat")
    assert other.measured_as == "toy / hybrid_k1_bs5 (8 steps, 8 NFE)" and other.paper == ""


def test_across_runs_the_rows_own_tag_wins_and_the_other_is_named(tmp_path: Path):
    """The demo's run listed first filled the Hybrid rows with its hybrid_k1_bs5 (5 base steps), the paper's
    hybrid_k1 of the second run only in a note: which setting a row shows followed the order of runs=."""
    demo = toy_run(tmp_path / "demo", DEMO)
    plain = toy_run(tmp_path / "plain", {**DEMO, "hybrid_k1": ("0.2", "1")})
    tables = tables_of(demo, plain, keys=("2", "3"))
    line = hybrid_of(tables["3"])
    assert (line.measured_as, line.run) == ("toy / hybrid_k1 / a shape", str(plain))
    assert hybrid_of(tables["3"], "toy_adherence").run == str(plain)  # its quality from the same run
    assert any("also measured 0.41" in note and "hybrid_k1_bs5" in note for note in tables["3"].notes)
    average = [row for row in cells(tables["3"], method="Hybrid") if row.condition.startswith("Average")]
    assert average and all(row.measured.startswith("0.2") for row in average if row.measured_metric == "toy_features")
    (fid,) = cells(tables["2"], method="Hybrid (4 steps)", measured_metric="fid_toyfeat")
    assert (fid.measured, fid.run) == ("2.0", str(plain))
    # within the same tag, the first run listed still wins
    base = cells(tables["3"], method="Base", condition="a shape", measured_metric="toy_features")
    assert [line.run for line in base] == [str(demo)]


def test_an_ablation_of_the_demos_hybrid_fills_the_hybrid_column_from_its_k1_point(tmp_path: Path):
    """README's first run sweeps the demo's hybrid (base_steps=5) over k: its k=1 point is Table 3's Hybrid, k=2
    is no Table 3 cell."""
    root = tmp_path / "ablate"
    root.mkdir()
    write_csv(
        root / "ablate.csv",
        [{"model": "toy", "method": m, "k": k, "base_guidance": 0.0 if k else "", "base_steps": 5 if k else "",
          "prompt": "a shape", "n": 6, "metric": "toy_features", "value": v, "seconds_per_image": 0.1, "nfe": 4}
         for m, k, v in (("base", "", "0.3"), ("distilled", "", "0.2"), ("hybrid", 1, "0.28"), ("hybrid", 2, "0.29"))],
    )  # fmt: skip
    t3 = tables_of(root, keys=("3",))["3"]
    assert (hybrid_of(t3).measured, hybrid_of(t3).measured_as) == ("0.28", "toy / hybrid_k1_bs5 / a shape")
    assert not [line for line in t3.lines if "hybrid_k2" in line.measured_as]


@pytest.mark.parametrize(
    ("tag", "rank"),
    [("hybrid_k1", 0), ("hybrid_k1_bs5", 3), ("hybrid_k1_g3_bs5", 3), ("hybrid_k2_bs5", None), ("hybrid_k10", None)],
)
def test_a_tags_rank_is_its_rows_own_key_then_the_glob_keys_in_order(tag: str, rank):
    from diversity_cli.reporting.tables.common import tag_rank

    assert tag_rank(tag, {"base": "Base", "hybrid_k1": "Hybrid", "hybrid_k1_*": "Hybrid"}) == rank
    assert tag_rank("skip_first", {"skip_first": None, "*": "x"}) is None  # a null label takes no tag


def test_the_shipped_mapping_gives_each_hybrid_row_the_k1_glob_after_its_own_key():
    mapping = compose("report", []).mapping
    for key in ("2", "3", "4"):
        rows = {str(tag): label for tag, label in dict(mapping[key].rows).items()}
        assert rows["hybrid_k1_*"] == rows["hybrid_k1"] and list(rows).index("hybrid_k1_*") > list(rows).index(
            "hybrid_k1"
        )


def test_table_e1_takes_the_demos_hybrid_as_replace_first_and_with_both_gives_the_other_a_row(tmp_path: Path):
    """E.1's Replace First Timestep row stayed empty for the demo (its hybrid is hybrid_k1_bs5), and stderr no
    longer named it once Table 3 mapped the tag."""
    e1 = tables_of(toy_run(tmp_path / "demo", DEMO), keys=("E1",))["E1"]
    (line,) = cells(e1, method="Replace First Timestep", measured_metric="toy_features")
    assert (line.measured, line.measured_as) == ("0.41", "toy / hybrid_k1_bs5 / a shape")
    e1 = tables_of(toy_run(tmp_path / "both", BOTH), keys=("E1",))["E1"]
    (line,) = cells(e1, method="Replace First Timestep", measured_metric="toy_features")
    assert line.measured_as == "toy / hybrid_k1 / a shape"  # listed second, shown by the rule
    (other,) = cells(e1, method="toy / hybrid_k1_bs5", measured_metric="toy_features")
    assert other.measured == "0.26"


def test_table_3s_hybrid_column_and_its_average_rest_on_one_tag(tmp_path: Path):
    """hybrid_k1 measured on one prompt, hybrid_k1_bs5 on two: the column took hybrid_k1 where it was measured and
    bs5 elsewhere, and its Average (0.176) mixed a 4-step and an 8-step sampler under bs5's name. The column now
    shows the tag measured on all its prompts; the other is named in the notes."""
    extra = []
    for prompt, values in (("a red circle", {"base": "0.3", "distilled": "0.2", "hybrid_k1_bs5": "0.11"}),):
        for tag, value in values.items():
            common = {"method": tag, "model": "toy", "prompt": prompt, "n": 4}
            extra += [{**common, "metric": "toy_features", "value": value, "ci_low": "0.1", "ci_high": "0.6"},
                      {**common, "metric": "toy_adherence", "value": "1"}]  # fmt: skip
    both = {**BOTH, "hybrid_k1": ("0.24", "1"), "hybrid_k1_bs5": ("0.13", "0.75")}
    t3 = tables_of(toy_run(tmp_path / "mix", both, extra=extra), keys=("3",))["3"]
    hybrid = cells(t3, method="Hybrid", measured_metric="toy_features")
    prompts = [line for line in hybrid if not line.condition.startswith("Average")]
    assert [line.measured_as for line in prompts] == [
        "toy / hybrid_k1_bs5 / a shape",
        "toy / hybrid_k1_bs5 / a red circle",
    ]
    (average,) = [line for line in hybrid if line.condition.startswith("Average")]
    assert float(average.measured) == pytest.approx((0.13 + 0.11) / 2)
    assert any("also measured 0.24" in note for note in t3.notes)


def test_a_cell_of_another_tag_where_the_columns_tag_has_none_is_named_not_silently_empty(tmp_path: Path):
    """hybrid_k1 on "a shape" only, hybrid_k1_bs5 on "a red circle" only: no tag covers both prompts, the column
    shows hybrid_k1, and bs5's measured cell was left out with no word (the table's note called the empty cell
    "not measured")."""
    extra = []
    for tag, value in {"base": "0.3", "distilled": "0.2", "hybrid_k1_bs5": "0.11"}.items():
        common = {"method": tag, "model": "toy", "prompt": "a red circle", "n": 4}
        extra += [{**common, "metric": "toy_features", "value": value, "ci_low": "0.1", "ci_high": "0.6"},
                  {**common, "metric": "toy_adherence", "value": "1"}]  # fmt: skip
    groups = {"base": ("0.3", "1"), "distilled": ("0.2", "1"), "hybrid_k1": ("0.24", "1")}
    t3 = tables_of(toy_run(tmp_path / "split", groups, extra=extra), keys=("3",))["3"]
    hybrid = cells(t3, method="Hybrid", measured_metric="toy_features")
    assert [line.measured_as for line in hybrid if not line.condition.startswith("Average")] == [
        "toy / hybrid_k1 / a shape"
    ]
    (note,) = [note for note in t3.notes if "not shown: the column shows" in note]
    assert "measured 0.11" in note and "hybrid_k1_bs5 / a red circle" in note and "shows hybrid_k1," in note


def test_a_cell_left_out_says_its_n(tmp_path: Path):
    """Two ablate sweeps at n=2 and n=3 into one out= fill one cell: the note named the value left out but not that
    it rests on another number of images."""
    root = tmp_path / "ablate"
    root.mkdir()
    write_csv(
        root / "ablate.csv",
        [{"model": "toy", "method": "base", "k": "", "base_guidance": "", "base_steps": "", "prompt": "a shape",
          "n": n, "metric": "toy_features", "value": v, "seconds_per_image": 0.1, "nfe": 4}
         for n, v in ((3, "0.47"), (2, "0.33"))],
    )  # fmt: skip
    t3 = tables_of(root, keys=("3",))["3"]
    (base,) = cells(t3, method="Base", measured_metric="toy_features", condition="a shape")
    assert base.measured == "0.47" and base.n == "3"
    assert any("also measured 0.33" in note and "n=2)" in note for note in t3.notes), t3.notes


def test_fid_cells_over_different_prompts_are_said_to_be(tmp_path: Path):
    """Table 4 set a hybrid over one prompt beside a skip_first over two (each against its own prompts' toy scenes);
    only n showed, which did not tell them apart."""
    groups = {"base": ("0.3", "1"), "distilled": ("0.2", "1"), "hybrid_k1": ("0.25", "1"), "skip_first": ("0.2", "1")}
    root = toy_run(tmp_path / "run", groups)
    t4 = tables_of(root, keys=("4",))["4"]
    assert not [note for note in t4.notes if "different prompts" in note]  # one prompt for all: nothing to say
    with (root / "samples.csv").open("a", newline="") as f:
        row = {"method": "skip_first", "model": "toy", "prompt": "a circle", "seed": 9, "path": "toy/x.png"}
        csv.DictWriter(f, fieldnames=SAMPLE_COLUMNS).writerow({**row, "tag": "skip_first"})
    t4 = tables_of(root, keys=("4",))["4"]
    (note,) = [note for note in t4.notes if "different prompts" in note]
    assert "hybrid_k1: 1 prompt(s)" in note and "skip_first: 2 prompt(s)" in note, note


def test_an_average_over_cells_of_two_runs_or_tags_is_not_taken(tmp_path: Path):
    """The Hybrid column showed one run's hybrid_k1 on one prompt and another's hybrid_k1_bs5 on the other: their
    mean was given as the Average, named after one tag, its run "J, I" (a provenance link to no folder)."""
    extra = []
    for tag, value in {"base": "0.3", "distilled": "0.2", "hybrid_k1_bs5": "0.11"}.items():
        common = {"method": tag, "model": "toy", "prompt": "a red circle", "n": 4}
        extra += [{**common, "metric": "toy_features", "value": value, "ci_low": "0.1", "ci_high": "0.6"},
                  {**common, "metric": "toy_adherence", "value": "1"}]  # fmt: skip
    demo = toy_run(tmp_path / "demo", DEMO, extra=extra)  # bs5 on both prompts
    plain = toy_run(tmp_path / "plain", {"hybrid_k1": ("0.2", "1")})  # the paper's tag, on one
    t3 = tables_of(demo, plain, keys=("3",))["3"]
    hybrid = cells(t3, method="Hybrid", measured_metric="toy_features")
    assert len(hybrid) == 2 and not [line for line in hybrid if line.condition.startswith("Average")]
    (note,) = [note for note in t3.notes if "so it has no average" in note]
    assert note.startswith("Hybrid / toy_features: its cells are of hybrid_k1 in") and "hybrid_k1_bs5 in" in note
    assert all(", " not in line.run for line in t3.measured)  # no cell of two runs (its provenance link: none)
    base = [line for line in cells(t3, method="Base", measured_metric="toy_features") if "Average" in line.condition]
    assert base and base[0].measured  # one run's cells: averaged as before
