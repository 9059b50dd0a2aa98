from __future__ import annotations

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads; see diversity_cli/__init__.py

import pytest

# Tests never reach a hub: a missing checkpoint must fail fast and clearly, not try the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Nor the user's cache: a test run gets its own (embeddings, FID statistics, commitment records, weight hashes),
# removed when the run ends.
if "DIVERSITY_CLI_CACHE" not in os.environ:
    os.environ["DIVERSITY_CLI_CACHE"] = tempfile.mkdtemp(prefix="diversity-cli-test-cache-")
    atexit.register(shutil.rmtree, os.environ["DIVERSITY_CLI_CACHE"], ignore_errors=True)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's training tests: two threads on two cores shared with other jobs run these
    tiny networks ~10x slower than one."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_pairs():
    """Tiny pairs loaded once per session (each loads in well under a second, but tests use them often)."""
    import torch

    from diversity_cli.core.config import compose
    from diversity_cli.models.loading import load_pair

    cache = {}

    def get(name: str):
        if name not in cache:
            cfg = compose("generate", [f"model={name}"])
            cache[name] = load_pair(cfg.model, torch.device("cpu"), torch.float32)
        return cache[name]

    return get


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    from diversity_cli.cli import run

    def invoke(*args: str):
        code = run(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """Put SLURM commands on PATH (before any real ones) that fail as sbatch does with no cluster to reach:
    `fake_slurm("sbatch", "srun")`. submitit wants both: it submits with sbatch and will not start without srun."""

    def install(*tools: str) -> None:
        folder = tmp_path / "fake-slurm-bin"
        folder.mkdir(exist_ok=True)
        for tool in tools:
            script = folder / tool
            script.write_text(
                f'#!/bin/sh\necho "{tool}: fatal: Could not establish a configuration source" >&2\nexit 1\n'
            )
            script.chmod(0o755)
        monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")

    return install
