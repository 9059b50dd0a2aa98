"""A report over runs of one pair name made with different networks (another student through
model.distilled.network.path) says so in every table drawing on both: its rows set one network's numbers beside
another's under the same name."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from diversity_cli.core.resources import asset

pytestmark = pytest.mark.usefixtures("one_thread")
NOTE = "distilled networks differ under one pair name"


def _measured(cli, out: Path, methods: tuple[str, ...], *args: str) -> Path:
    for method in methods:
        code, _, err = cli("generate", "model=toy", f"method={method}", "prompt=a shape", "n=3", f"out={out}", *args)
        assert code == 0, err
    code, _, err = cli("diversity", f"out={out}")
    assert code == 0, err
    return out


def test_runs_of_two_students_under_one_name_are_said_apart(cli, tmp_path):
    other = f"model.distilled.network.path={asset('toy/dp_dmd_student')}"
    # the table's Distilled column from one run, its Base and Hybrid from the other (each cell's first run listed)
    mine = _measured(cli, tmp_path / "mine", ("distilled",), other)
    shipped = _measured(cli, tmp_path / "shipped", ("base", "distilled", "hybrid"))
    code, _, err = cli("report", f"runs=[{mine},{shipped}]", f"tables_dir={tmp_path / 'tables'}", "html=false")
    assert code == 0, err
    table = (tmp_path / "tables" / "table_3.md").read_text()
    assert NOTE in table and str(mine) in table and str(shipped) in table
    # a cell's date is its CSV's last write, not when its row was measured: the provenance line says which
    assert "n = 3 per cell, results file written 20" in table and ", measured 20" not in table
    with (tmp_path / "tables" / "table_3.csv").open(newline="") as handle:
        cells = [row for row in csv.DictReader(handle) if row["measured"]]
    # an adherence cell carries its own (Wilson) interval and level, not its diversity cell's: it was shown bare
    adherence = [row for row in cells if row["metric"] == "quality"]
    assert adherence and all(row["ci"] == "0.95" and row["ci_low"] and row["ci_high"] for row in adherence)
    assert {row["ci"] for row in cells if row["metric"] != "quality"} == {"0.95"}
    code, _, err = cli("report", f"out={shipped}", "html=false")  # one run, one student: no such note
    assert code == 0, err
    assert NOTE not in (shipped / "tables" / "table_3.md").read_text()


def test_a_report_over_two_pairs_shows_the_first_listed_and_names_the_other(cli, tmp_path):
    """Table 3 shows one pair: the other pair's cells went without a word, and a tie went by name, whatever the order
    of runs= (which README says is the user's)."""
    pairs = {}
    for model in ("toy", "toy_dpdmd"):
        out = tmp_path / model
        for method in ("base", "distilled", "hybrid"):
            args = (f"model={model}", f"method={method}", "prompt=a shape", "n=3", f"out={out}")
            assert cli("generate", *args)[0] == 0
        assert cli("diversity", f"out={out}")[0] == 0
        pairs[model] = out
    for first, second in (("toy_dpdmd", "toy"), ("toy", "toy_dpdmd")):
        tables = tmp_path / f"tables_{first}"
        code, _, err = cli("report", f"runs=[{pairs[first]},{pairs[second]}]", f"tables_dir={tables}", "html=false",
                           "tables=[3]", "figures=false")  # fmt: skip
        assert code == 0, err
        text = (tables / "table_3.md").read_text().replace("\\", "")
        rows = [line for line in text.splitlines() if line.startswith("| a shape")]
        assert rows and all(line.rstrip(" |").endswith(f"| {first}") for line in rows), rows
        assert f"{pairs[second]}: its Table 3 cells of {second} are not shown" in text


def test_a_tables_links_to_its_runs_records_lead_there_from_the_tables_folder(cli, tmp_path, monkeypatch):
    """The link was the run's path as typed, which a markdown file reads relative to itself: from tables/ it led to
    tables/results/run/runs/, which is nowhere."""
    import re
    from urllib.parse import unquote

    monkeypatch.chdir(tmp_path)
    _measured(cli, Path("results") / "run", ("base", "distilled"))
    code, _, err = cli("report", "out=results/run", "html=false", "figures=false", "tables=[3]")
    assert code == 0, err
    for name in ("table_3.md", "tables.md"):
        text = (tmp_path / "results" / "run" / "tables" / name).read_text()
        (target,) = re.findall(r"\]\(([^)]*runs/)\)", text)
        assert (tmp_path / "results" / "run" / "tables" / unquote(target)).resolve() == tmp_path / "results/run/runs"
