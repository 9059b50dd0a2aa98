"""Tables D.1 and E.1 show one prompt per pair and only the tags their rows take: what else a run measured of a
pair they show is said in their notes (the toy demo's `hybrid_k1_bs5`, which no D.1 row takes; a second prompt),
and nothing is said when nothing is left out."""

from __future__ import annotations

from pathlib import Path

from test_report import write_csv
from test_report_toy_hybrid import DEMO, toy_run

RULE = "the table shows one prompt per pair"


def written(cli, root: Path) -> dict[str, str]:
    """`report` of `root` for Tables D.1 and E.1: each table's markdown as written."""
    code, _, err = cli("report", f"out={root}", "tables=[D1,E1]", "figures=false", "html=false")
    assert code == 0, err
    return {key: (root / "tables" / f"table_{key}.md").read_text() for key in ("D1", "E1")}


def left_out(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("- ") and "not shown:" in line]


def prompt_rows(prompts: list[str], tag: str = "base") -> list[dict]:
    return [
        {"method": tag, "model": "toy", "prompt": prompt, "n": 4, "metric": "toy_features", "value": "0.2"}
        for prompt in prompts
    ]


def test_d1_names_the_demos_hybrid_no_row_takes(cli, tmp_path: Path):
    """The demo's hybrid_k1_bs5: D.1's rows take base, distilled, hybrid_k1 only, and Table 3 has it (so the
    report's "in no row" line stays silent); E.1's Replace First Timestep takes it, so E.1 has nothing to say."""
    root = toy_run(tmp_path / "demo", DEMO)
    tables = written(cli, root)
    (note,) = left_out(tables["D1"])
    assert note == (
        f"- toy: measured in {root}, not shown: hybrid_k1_bs5 (no row of Table D.1 takes it: its rows take base, "
        "distilled, hybrid_k1)"
    )
    assert "| toy / hybrid_k1_bs5 |" not in tables["D1"] and not left_out(tables["E1"])


def test_d1_and_e1_name_the_prompts_they_do_not_show(cli, tmp_path: Path):
    """A second prompt measured with base only: both tables show "a shape" (the most methods) and say the other."""
    root = toy_run(tmp_path / "demo", DEMO, extra=prompt_rows(["a circle"]))
    tables = written(cli, root)
    expected = (
        f'prompt "a circle" ({RULE}, here "a shape": the paper\'s if measured, else the one with the most methods; '
        "see Table 3 or diversity.csv)"
    )
    assert tables["D1"].count(expected) == 1 and "hybrid_k1_bs5 (no row" in tables["D1"]
    (note,) = left_out(tables["E1"])
    assert note == f"- toy: measured in {root}, not shown: {expected}"
    assert "| toy / base | a circle |" not in tables["D1"]  # the cells shown are as before


def test_many_prompts_left_out_are_counted_not_listed(cli, tmp_path: Path):
    others = ["a circle", "a square", "a star", "a ring", "a cross"]
    root = toy_run(tmp_path / "demo", DEMO, extra=prompt_rows(others))
    (note,) = left_out(written(cli, root)["E1"])
    assert 'prompts "a circle", "a square", "a star" and 2 more (' in note


def test_a_paper_pair_on_other_prompts_says_it_shows_the_papers(cli, tmp_path: Path):
    root = tmp_path / "run"
    root.mkdir()
    rows = [
        {"method": tag, "model": "pixart_alpha_delta", "prompt": prompt, "n": 4, "metric": "dreamsim", "value": "0.3"}
        for tag in ("base", "distilled")
        for prompt in ("image of a car", "a red car")
    ]
    write_csv(root / "diversity.csv", rows)
    (note,) = left_out(written(cli, root)["D1"])
    assert note == (
        f'- pixart_alpha_delta: measured in {root}, not shown: prompt "a red car" ({RULE}, here "image of a car": '
        "the paper's; see Table 3 or diversity.csv)"
    )


def test_a_note_only_when_something_is_left_out(cli, tmp_path: Path):
    """base, distilled and the paper's hybrid_k1 on one prompt: every measured group has a row in both tables, and
    neither says anything; the same run once a second prompt is measured says it in both."""
    groups = {"base": ("0.34", "1"), "distilled": ("0.31", "1"), "hybrid_k1": ("0.4", "1")}
    root = toy_run(tmp_path / "demo", groups)
    tables = written(cli, root)
    assert not left_out(tables["D1"]) and not left_out(tables["E1"])
    assert "| toy / hybrid_k1 | a shape |" in tables["D1"]
    toy_run(tmp_path / "again", groups, extra=prompt_rows(["a circle"], tag="hybrid_k1"))
    for markdown in written(cli, tmp_path / "again").values():
        (note,) = left_out(markdown)
        assert note.startswith(f'- toy: measured in {tmp_path / "again"}, not shown: prompt "a circle" ({RULE}')
