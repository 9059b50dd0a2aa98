"""Prompt rows as generate reads them: `prompt=` with spaces around it is the file line without them (one prompt,
one folder of images), and rows asking for one image twice make it once, said rather than silently folded."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from diversity_cli.core.errors import UserError
from diversity_cli.core.prompts import PromptRow, read_prompts
from diversity_cli.experiments.generation import repeated_images_note


def _paths(out: Path) -> list[str]:
    with (out / "samples.csv").open(newline="") as f:
        return sorted(row["path"] for row in csv.DictReader(f))


def test_a_prompt_with_spaces_around_it_is_the_file_lines_prompt(cli, tmp_path: Path):
    (tmp_path / "p.txt").write_text("a red circle\n")
    one, two = tmp_path / "one", tmp_path / "two"
    assert cli("generate", "method=distilled", f"prompts={tmp_path / 'p.txt'}", "n=2", f"out={one}")[0] == 0
    assert cli("generate", "method=distilled", "prompt= a red circle ", "n=2", f"out={two}")[0] == 0
    assert _paths(one) == _paths(two)
    assert read_prompts(" a cat\t", None) == [PromptRow("a cat")]


def test_rows_asking_for_one_image_twice_are_said(cli, tmp_path: Path):
    (tmp_path / "p.txt").write_text("a red circle\n# not a prompt\n\na red circle\ntwo triangles\n")
    out = tmp_path / "run"
    code, _, err = cli("generate", "method=distilled", f"prompts={tmp_path / 'p.txt'}", "n=2", f"out={out}")
    assert code == 0, err
    assert len(_paths(out)) == 4  # 3 rows x 2 seeds, the repeated row's 2 images made once
    assert "2 of the 6 images the prompt rows ask for repeat another row's" in " ".join(err.split())


def test_overlapping_seed_windows_of_a_table_count_each_shared_image():
    rows = [PromptRow("a cat", 0), PromptRow("a cat", 2), PromptRow("a dog", 0)]
    assert repeated_images_note(rows, n=4, seed=0).startswith("2 of the 12 images")  # seeds 2 and 3 twice
    assert repeated_images_note(rows[:1] + rows[2:], n=4, seed=0) is None


def test_a_space_after_a_closing_quote_is_read_as_before(tmp_path: Path):
    """Reading the file strictly (to find a quote never closed) refused `"a circle" ,1`, which hand-edited CSVs
    hold and which was read as the prompt `a circle`."""
    from diversity_cli.core.prompts import read_prompts

    path = tmp_path / "p.csv"
    path.write_text('prompt,seed\n"a circle" ,1\n"a square"  ,2\n')
    assert [(row.prompt, row.seed) for row in read_prompts(None, str(path))] == [("a circle", 1), ("a square", 2)]


@pytest.mark.parametrize(
    ("content", "said"),
    [
        # a quote never closed, after a row with a space after its closing quote (which stopped the check early)
        ('prompt\n"a circle" \n"a red square\na blue square\n', "p.csv:3: a quoted field opens on this line and its"),
        # a quote left open, closed by a quote in a later row: two rows read as one prompt
        (
            'prompt,seed\n"a red circle,1\na 5" square,2\n',
            "p.csv:2: a quoted field opens on this line and closes on line 3",
        ),
        ('prompt,seed\n"a 5" square",1\n', "p.csv:2: text follows a closing quote"),  # read as `a 5 square"`
        ('prompt,seed\n"a circle"x,1\n', "p.csv:2: text follows a closing quote"),  # read as `a circlex`
    ],
)
def test_a_quote_out_of_place_is_told_with_its_line_not_read_as_another_prompt(tmp_path: Path, content, said):
    from diversity_cli.core.errors import UserError
    from diversity_cli.core.prompts import read_prompts

    path = tmp_path / "p.csv"
    path.write_text(content)
    with pytest.raises(UserError, match=re.escape(said)):
        read_prompts(None, str(path))


def test_quotes_in_their_places_read_as_csv_means_them(tmp_path: Path):
    from diversity_cli.core.prompts import read_prompts

    path = tmp_path / "p.csv"
    path.write_text('prompt,seed\na 5" square,1\n"two\nlines",2\n"say ""hi""",3\n"a circle"  ,4\n')
    rows = [(row.prompt, row.seed) for row in read_prompts(None, str(path))]
    assert rows == [('a 5" square', 1), ("two\nlines", 2), ('say "hi"', 3), ("a circle", 4)]


def test_a_prompt_file_of_another_kind_is_refused_by_its_suffix(tmp_path):
    """distill prompts=README.md trained on its 1362 lines, markdown fences and make targets as prompts."""
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\n```bash\nmake test\n```\n")
    with pytest.raises(UserError, match=r"prompt file .*notes\.md is a \.md file; give a \.txt file"):
        read_prompts(None, str(notes))
    bare = tmp_path / "prompts"
    bare.write_text("a red circle\n")
    assert [row.prompt for row in read_prompts(None, str(bare))] == ["a red circle"]  # a bare name reads as .txt
    versioned = tmp_path / "prompts_v1.2"
    versioned.write_text("a blue square\n")
    assert [row.prompt for row in read_prompts(None, str(versioned))] == ["a blue square"]
