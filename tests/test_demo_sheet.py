"""`make demo` ends with a contact sheet of base / distilled / hybrid at the paper's k=1, the same seeds, drawn by the
one contact-sheet helper (reporting/contact_sheet.py) that generate also uses, with its rows in the order asked."""

from __future__ import annotations

import csv
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from diversity_cli.reporting.contact_sheet import HEADER, LABEL_WIDTH, main, sheet_path
from diversity_cli.sampling.tags import run_tag

REPO = Path(__file__).resolve().parents[1]


def _dry_run(*variables: str) -> str:
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", "-f", str(REPO / "Makefile"), "demo", *variables],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _commands(text: str) -> list[str]:
    """The recipe's shell commands, continuation lines joined."""
    return [line for line in text.replace("\\\n", " ").splitlines() if line.strip()]


def test_make_demo_samples_three_methods_at_k1_with_the_same_seeds_then_draws_their_sheet(tmp_path):
    text = _dry_run(f"DEMO_OUT={tmp_path / 'demo'}")
    loop = re.search(r"for method in ([\w ]+); do", text)
    assert loop is not None
    methods = loop[1].split()
    assert methods == ["base", "distilled", "hybrid"]
    generate = next(line for line in _commands(text) if "generate" in line)
    args = dict(word.split("=", 1) for word in shlex.split(generate.split("generate", 1)[1]) if "=" in word)
    assert args["k"] == "1" and args["seed"] == "0" and args["overwrite"] == "true"  # the paper's k, same seeds
    assert args["out"] == str(tmp_path / "demo") and args["model"] == "toy" and args["prompt"] == "a shape"
    # the toy's base hands over after its own steps, not its x̂0 at pure noise; set for the hybrid only (generate
    # refuses base_steps with a method that ignores it)
    assert "$knobs" in generate and '[ $method = hybrid ] && knobs="base_steps=5"' in text
    last = _commands(text)[-1]
    assert "-m diversity_cli.reporting.contact_sheet" in last
    words = shlex.split(last.split("contact_sheet", 1)[1])
    assert words[:3] == [str(tmp_path / "demo"), "toy", "a shape"]
    # the rows it asks for are the tags generate gives those methods at that k and base_steps
    assert words[3:] == [run_tag(method, 1, 0.0, 5) for method in methods]
    assert "DEMO_PROMPT" not in last and "a red" in _commands(_dry_run("DEMO_PROMPT=a red circle"))[-1]


@pytest.mark.parametrize("variable", ["DEMO_BASE_STEPS=", "DEMO_PAIR=tiny_sd"])  # told, or a pair other than the toy
def test_make_demo_without_base_steps_runs_generate_s_default_hybrid(variable):
    commands = _commands(_dry_run(variable))
    assert not any("base_steps" in line for line in commands)
    assert commands[-1].split()[-1] == run_tag("hybrid", 1, 0.0, None)


def test_the_sheet_has_the_rows_asked_for_in_that_order_and_prints_its_path(cli, tmp_path, capsys):
    out = tmp_path / "run"
    for method in ("base", "distilled", "hybrid"):
        code, _, err = cli("generate", "model=tiny_sd", f"method={method}", "k=1", "prompt=a dog", "n=2", f"out={out}")
        assert code == 0, err
    capsys.readouterr()
    assert main([str(out), "tiny_sd", "a dog", "hybrid_k1", "base"]) == 0
    printed = capsys.readouterr().out
    sheet = sheet_path(out, "tiny_sd", "a dog")
    assert str(sheet) in printed and "hybrid_k1 / base" in printed
    rows = {r["tag"] + r["seed"]: r["path"] for r in csv.DictReader((out / "samples.csv").open())}
    with Image.open(sheet) as image:
        assert image.size == (LABEL_WIDTH + 2 * 96, HEADER + 2 * 96)  # two rows asked for, not all three methods
        for row, tag in enumerate(("hybrid_k1", "base")):
            tile = image.crop((LABEL_WIDTH + 96, HEADER + row * 96, LABEL_WIDTH + 192, HEADER + (row + 1) * 96))
            with Image.open(out / rows[f"{tag}1"]) as source:
                expected = source.convert("RGB").resize((96, 96), Image.Resampling.NEAREST)
            assert tile.tobytes() == expected.tobytes(), tag
    # a row with no image is an error (exit 2, one line), not a sheet with a silent gap
    assert main([str(out), "tiny_sd", "a dog", "base", "hybrid_k2"]) == 2
    err = capsys.readouterr().err
    assert "no image of tiny_sd for 'a dog' (base / hybrid_k2); its tags of tiny_sd for this prompt: base, " in err
    # what else the run holds, a prompt as generate stores it (stripped), a folder that is none, and --help
    assert main([str(out), "tiny_sd", "a cat"]) == 2
    assert "its prompts of tiny_sd: 'a dog'" in capsys.readouterr().err
    assert main([str(out), "tiny_sd", " a dog "]) == 0
    assert main([str(tmp_path / "nowhere"), "tiny_sd", "a dog"]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert main(["--help"]) == 0 and capsys.readouterr().out.startswith("usage:")
