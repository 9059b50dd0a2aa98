"""README accuracy: every command of README's ```bash blocks runs on the toy pair, in README's order, from an empty
directory, and the files and CSV columns README promises are there afterwards. `make test-readme` (CI) runs it;
`make test` skips it (it takes minutes).

Not run, each for the reason given in EXCLUDED: `make install` (the environment this runs in), `make test`, the
`reproduce-*` targets, GPU pairs (SDXL, PixArt, SD 2.1) and what needs their weights or COCO, the long
trainings (train-toy, distill: their own tests), and lines with placeholders (`...`, `/my/...`). SLURM appears
in prose only (tests/test_ablate.py runs its multirun path with submitit_local).
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.skipif(
    os.environ.get("DIVERSITY_CLI_README") != "1", reason="README commands take minutes: make test-readme"
)

EXCLUDED = [  # (pattern of the command, why it is not run here)
    (r"^make test\b", "the test suite itself"),
    (r"^make install$", "the environment this runs in (its virtualenv is the one being tested)"),
    (r"\s\.\.\.\s", "a placeholder for the rest of a command"),
    (r"reproduce-", "the reproduce-* targets (the whole paper pipeline)"),
    (r"model=(sdxl|pixart|sd21)", "a GPU pair (weights not on a CPU test machine)"),
    (r"^diversity-cli models sdxl", "exits 1 without the pair's weights (tests/test_cli.py checks what it lists)"),
    (r"out=results/beach\b", "reads results/beach, made by an SDXL line"),
    (r"coco", "needs the COCO val2014 images"),
    (r"local-dir:/models", "needs CLIP weights in a local folder"),
    (r"/my/", "placeholder folders"),
    (r"=\.\.\.|\"\.\.\.\"", "a placeholder prompt or file"),
    (r"out=results/toy/table3", "reads the run of make reproduce-table3 MODEL=toy (excluded)"),
    (
        r"^make toy-(weights|ablation|vae)",
        "toy training (hours on 2 cores): tests/test_toy_weights.py, test_dp_dmd_ablation.py",
    ),
    (r"^make toy-table", "the toy protocol's 10,000+ images (minutes): tests/test_toy_table.py"),
]
# README promises `<name>.csv` (`col,col,...`): those columns must be in every such file the commands wrote.
PROMISE = re.compile(r"`(?:<out>/)?(\w+\.csv)`\s*[(:]\s*\(?`([a-z0-9_,]+)(?:,…)?`")
PROMPTS_TXT = "a red circle\ntwo triangles\n"  # README's generic `prompts=prompts.txt`


def commands(text: str | None = None) -> list[str]:
    """Every command line of README's bash blocks (continuations joined, comments dropped), in order."""
    lines, block = [], False
    for raw in (README.read_text() if text is None else text).splitlines():
        if raw.startswith("```"):
            block = raw.strip() == "```bash"
            continue
        if block:
            lines.append(raw)
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        command = re.sub(r"\s+#.*$", "", line).strip()
        if command and not command.startswith("#"):
            found.append(command)
    return found


def excluded(command: str) -> str | None:
    return next((why for pattern, why in EXCLUDED if re.search(pattern, command)), None)


def shell_line(command: str) -> str:
    """The command as this checkout runs it: `make` with this Makefile and virtualenv, never `make install`."""
    if command.startswith("make "):
        targets = [word for word in command.split()[1:] if word != "install"]
        return f"make -s -f {REPO / 'Makefile'} VENV={BIN.parent} " + " ".join(targets)
    return command


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """An empty directory with the repository's data/ and scripts/ (as README's relative paths expect)."""
    root = tmp_path_factory.mktemp("readme")
    for name in ("data", "scripts"):
        (root / name).symlink_to(REPO / name)
    (root / "prompts.txt").write_text(PROMPTS_TXT)
    return root


ALL = commands()


def test_every_command_is_run_or_listed_as_excluded():
    assert len(ALL) > 20
    first_run = README.read_text().split("## First run on the toy pair")[1].split("## Using the CLI")[0]
    newcomer = commands(first_run)
    assert len(newcomer) >= 6 and not [c for c in newcomer if excluded(c)]  # the newcomer's path runs whole
    stale = [pattern for pattern, _ in EXCLUDED if not any(re.search(pattern, command) for command in ALL)]
    assert not stale, f"exclusions that match no README command: {stale}"


@pytest.mark.parametrize("number", range(len(ALL)), ids=[f"{i:02d}" for i in range(len(ALL))])
def test_readme_command(workdir, number):
    command = ALL[number]
    why = excluded(command)
    if why:
        pytest.skip(f"{command[:60]}: {why}")
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "CLI": str(BIN / "diversity-cli"),
        "HF_HUB_OFFLINE": "1",
    }
    done = subprocess.run(["bash", "-c", shell_line(command)], cwd=workdir, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr


def test_promised_files_and_columns(workdir):
    text = README.read_text()
    promises = {name: columns.split(",") for name, columns in PROMISE.findall(text)}
    assert {"samples.csv", "diversity.csv", "fid.csv", "ablate.csv", "commitment.csv"} <= set(promises)
    for name, columns in promises.items():
        files = list((workdir / "results").rglob(name))
        assert files, f"README promises {name}; no command wrote one"
        for path in files:
            with path.open(newline="") as f:
                header = next(csv.reader(f))
            # a number from another feature network carries its tag (fid -> fid_toyfeat), as README says
            missing = [c for c in columns if c not in header and not any(h.startswith(f"{c}_") for h in header)]
            assert not missing, f"{path}: README promises columns {missing}"
    demo, ablate = workdir / "results/demo", workdir / "results/ablate"
    assert list(demo.glob("contact_sheet_toy_*.png"))
    assert (demo / "report.html").is_file() and (demo / "tables").is_dir()
    assert not (workdir / "results/tables").exists()  # report writes inside its run unless told otherwise
    assert (ablate / "report.html").is_file()
    assert list((ablate / "plots").glob("toy_toy_features_vs_k_*.png"))
    assert "data:image/png;base64" in (ablate / "report.html").read_text()
