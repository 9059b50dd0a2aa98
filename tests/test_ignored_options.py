"""A value set on the command line that the chosen method (mode) never reads is refused, not ignored: the run would
not be the one the user believes they measured. One line on stderr, exit 2, nothing written, before the preflight
or any model load. Defaults the method ignores, and values equal to them, pass."""

from __future__ import annotations

from pathlib import Path

import pytest


class Reached(Exception):
    """Raised in place of the preflight: the command got past every check of its arguments."""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # a relative default out= would land here

    def reached(*_, **__):
        raise Reached

    # the refusal comes first: reaching the preflight (or a model) means the value was accepted
    monkeypatch.setattr("diversity_cli.commands.checks.prepare", reached)
    monkeypatch.setattr("diversity_cli.models.loading.load_pair", reached)
    return tmp_path


def _refused(cli, workdir: Path, *args: str) -> str:
    """The CLI's answer to `args`: one line, exit 2, nothing written."""
    code, out, err = cli(*args, f"out={workdir / 'run'}")
    assert code == 2, (args, out, err)
    assert err.startswith("error: ") and err.strip().count("\n") == 0, err
    assert list(workdir.rglob("*")) == [], f"{args} wrote files"
    return err.strip()


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ("generate", "model=toy", "method=base", "k=3", "prompt=a circle", "n=1"),
            "error: k=3 applies to method=hybrid or replace_final only; method=base ignores it",
        ),
        (  # it offered replace_final, which refuses k=auto
            ("generate", "model=toy", "method=base", "k=auto", "prompt=a circle", "n=1"),
            "error: k=auto applies to method=hybrid only; method=base ignores it (drop k=auto, or choose "
            "method=hybrid)",
        ),
        (  # auto_k.* with a numeric k: ignored without a word
            ("generate", "model=toy", "method=hybrid", "k=1", "auto_k.threshold=0.1", "n=1"),
            "error: auto_k.threshold=0.1 applies to k=auto only; k=1 ignores it",
        ),
        (
            ("generate", "model=toy", "method=distilled", "base_guidance=5", "n=1"),
            "error: base_guidance=5 applies to method=hybrid or replace_final only; method=distilled ignores it",
        ),
        (
            ("generate", "model=toy", "method=skip_first", "base_steps=3", "n=1"),
            "error: base_steps=3 applies to method=hybrid or replace_final only; method=skip_first ignores it",
        ),
        (
            ("train-lora", "model=toy", "mode=lora", "negative=blue", "steps=1"),
            "error: negative=blue applies to mode=slider only; mode=lora ignores it",
        ),
        (  # every curve but the hybrid's ignores the hand-over
            ("x0viz", "model=toy", "methods=[base,distilled]", "k=3", "prompt=a circle", "n=1"),
            "error: k=3 applies to methods=hybrid or replace_final only; methods=base,distilled ignores it",
        ),
        (  # the sweep would be one point repeated
            ("ablate", "model=toy", "method=base", "k=1..2", "n=2", "prompt=a circle"),
            "error: k=1..2 applies to method=hybrid or replace_final only; method=base ignores it",
        ),
        (
            ("ablate", "model=toy", "method=base,skip_first", "base_guidance=0,5", "n=2", "prompt=a circle"),
            "error: base_guidance=0,5 applies to method=hybrid or replace_final only; method=base,skip_first",
        ),
        (  # one direction measures one adapter: the second was dropped without a word
            ("transfer-lora", "model=toy", "adapter=/nowhere/red", "reverse_adapter=/nowhere/blue"),
            "error: reverse_adapter=/nowhere/blue applies to direction=both only; direction=base_to_distilled "
            "ignores it",
        ),
    ],
)
def test_a_value_the_method_ignores_is_refused(cli, workdir, args, line):
    assert _refused(cli, workdir, *args).startswith(line)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ("generate", "model=toy", "method=base", "hydra/launcher=slurm", "n=1"),
            "error: hydra/launcher=slurm is Hydra's own setting and does not choose where generate runs; write "
            "launcher=slurm (settings: conf/hydra/launcher/slurm.yaml, per run +launcher_params.<key>=...)",
        ),
        (  # ablate hands hydra.* to its multirun, but the launcher it picks itself from launcher=
            ("ablate", "model=toy", "hydra/launcher=slurm", "n=2", "prompt=a circle"),
            "error: hydra/launcher=slurm is Hydra's own setting and does not choose where ablate runs; write "
            "launcher=slurm (settings: conf/hydra/launcher/slurm.yaml, per run hydra.launcher.<key>=...)",
        ),
        (
            ("train-lora", "model=toy", "hydra/launcher=slurm"),
            "error: hydra/launcher=slurm is not used: train-lora runs in this process (launcher= is for generate,",
        ),
        (
            ("generate", "model=toy", "launcher=slurm", "hydra.launcher.partition=a100"),
            "error: hydra.launcher.partition is ablate's spelling; generate takes the launcher's settings as "
            "+launcher_params.partition=a100",
        ),
    ],
)
def test_hydras_launcher_group_points_to_launcher(cli, workdir, args, line):
    assert _refused(cli, workdir, *args).startswith(line)


@pytest.mark.parametrize(
    "args",
    [
        # the defaults k=1, base_guidance=0, base_steps=null, negative=null: ignored by these methods, not given
        ("generate", "model=toy", "method=base", "n=1"),
        ("train-lora", "model=toy", "mode=lora"),
        ("ablate", "model=toy", "method=base", "n=2", "prompt=a circle"),
        # a value equal to the default changes nothing: the Makefile's `for method in base distilled hybrid:
        # generate method=$method k=1` holds the knobs fixed over every method
        ("generate", "model=toy", "method=base", "k=1", "base_guidance=0", "base_steps=null", "n=1"),
        # the methods that read them
        ("generate", "model=toy", "method=replace_final", "k=3", "base_guidance=5", "n=1"),
        ("generate", "model=toy", "method=hybrid", "k=auto", "auto_k.threshold=0.5", "n=1"),
        ("generate", "model=toy", "method=hybrid", "k=1", "auto_k.threshold=0.25", "n=1"),  # the toy's own value
        ("train-lora", "model=toy", "mode=slider", "concept=large", "negative=small"),
        # a sweep where one method reads k
        ("ablate", "model=toy", "method=base,hybrid", "k=1..2", "n=2", "prompt=a circle"),
    ],
)
def test_defaults_and_values_a_method_reads_pass(cli, workdir, args):
    with pytest.raises(Reached):
        cli(*args, f"out={workdir / 'run'}")


def test_direction_both_takes_the_reverse_adapter(cli, workdir):
    """The direction that reads it: the run goes on to check the adapters themselves (none exists here)."""
    code, _, err = cli(
        "transfer-lora", "model=toy", "direction=both", "adapter=/nowhere/red", "reverse_adapter=/nowhere/blue",
        f"out={workdir / 'run'}",
    )  # fmt: skip
    assert code == 2 and "applies to" not in err and "/nowhere/red" in err, err


def test_a_value_an_adapters_table_row_overrules_is_refused(cli, workdir, tmp_path_factory):
    """A row's own scale (prompt, concept) wins over the command line's: `scale=-1` on a slider ran at +1."""
    table = tmp_path_factory.mktemp("table") / "adapters.csv"
    table.write_text("name,concept,prompt,scale\nlarge,,,1\nred,,a red circle,\n")
    line = _refused(cli, workdir, "transfer-lora", "model=toy", f"adapters={table}", "scale=-1")
    assert line.startswith(f"error: scale=-1: adapters={table} line 2 sets scale 1 for adapter large"), line
    line = _refused(cli, workdir, "transfer-lora", "model=toy", f"adapters={table}", "prompt=a blue square")
    assert "line 3 sets prompt a red circle for adapter red" in line, line
    # a value the rows agree with, or that no row sets, is taken: the run goes on to read the adapters
    for extra in ("scale=1", "concept=large"):
        code, _, err = cli("transfer-lora", "model=toy", f"adapters={table}", extra, f"out={workdir / 'run'}")
        assert code == 2 and "a row's own" not in err, err
