"""The toy Table 2 pipeline as 4 array shards through a real SLURM (`make test-slurm` starts a one-node cluster
with scripts/slurm_cluster.sh), one shard cancelled and rerun, the merged result equal to one process. Where no
SLURM answers, the same test runs the same jobs as local processes (launcher=submitit_local)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diversity_cli.core.config import compose

pytestmark = pytest.mark.slurm
REPO = Path(__file__).resolve().parents[1]
TIMING = ("seconds", "network_seconds")


def slurm_answers() -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and any(state in out.stdout for state in ("idle", "mix", "alloc"))


LAUNCHER = "slurm_cpu" if slurm_answers() else "submitit_local"
if os.environ.get("DIVERSITY_CLI_REQUIRE_SLURM") and LAUNCHER != "slurm_cpu":  # make test-slurm: no silent fallback
    raise RuntimeError("DIVERSITY_CLI_REQUIRE_SLURM is set but no SLURM cluster answers sinfo (SLURM_CONF?)")


def cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "diversity_cli", *args]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def cancel(out: Path, shard: str) -> str:
    """Cancel one shard as soon as its job exists: scancel on SLURM, a kill of the local job's process."""
    jobs = out / "shards" / "jobs.json"
    deadline = time.monotonic() + 120
    while not jobs.is_file() or shard not in json.loads(jobs.read_text() or "{}"):
        assert time.monotonic() < deadline, "the launcher wrote no shards/jobs.json"
        time.sleep(0.2)
    job_id = json.loads(jobs.read_text())[shard]["job_id"]
    if LAUNCHER == "submitit_local":  # the job id is submitit's controller process; the shard runs in its child
        children = Path(f"/proc/{job_id}/task/{job_id}/children")
        while not children.is_file() or not children.read_text().split():
            assert time.monotonic() < deadline, f"local job {job_id} started no task"
            time.sleep(0.05)
        for pid in [*children.read_text().split(), job_id]:
            os.kill(int(pid), signal.SIGKILL)
        return job_id
    while subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True).stdout.strip() != (
        "RUNNING"
    ):  # killed while it runs (a task cancelled while pending is covered by the launcher's squeue check)
        assert time.monotonic() < deadline, f"job {job_id} never ran"
        time.sleep(0.2)
    subprocess.run(["scancel", job_id], check=True)
    return job_id


def table(root: Path) -> list[dict[str, str]]:
    with (root / "samples.csv").open(newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]


def test_table2_as_four_array_shards_one_cancelled_and_rerun(tmp_path):
    from diversity_cli.core.record import read_records
    from diversity_cli.experiments.fid import measure_quality
    from diversity_cli.experiments.generation import generate

    limit = 8 if LAUNCHER != "submitit_local" else 4  # local processes share this machine's cores with the suite
    pipeline = ["method=hybrid", "k=1", "n=1", "prompts=data/toy_captions.csv", f"limit={limit}"]
    one, sharded = tmp_path / "one", tmp_path / "sharded"
    generate(compose("generate", [*pipeline, f"out={one}"]))

    launch = [*pipeline, f"out={sharded}", f"launcher={LAUNCHER}", "shards=4"]
    first = cli("generate", *launch)
    job_id = cancel(sharded, "0/4")
    _, err = first.communicate(timeout=600)
    first_err = err
    assert first.returncode == 2, err
    assert "shard 0/4 failed" in err and "shards/logs" in err, err  # one line naming the shard and its log
    assert "1 of 4 shard(s) failed" in err and not (sharded / "samples.csv").exists()
    # the launching command's own record (its shards' are there too): how it ended and the jobs it submitted
    (launched,) = [record for record in read_records(sharded) if record.get("jobs")]
    assert (launched["status"], launched["shards"], len(launched["jobs"])) == ("failed", 4, 4), launched

    rerun = cli("generate", *launch)
    _, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    assert "1 of 4 shard(s) have work left" in err, (first_err, err)  # only the cancelled shard ran again
    assert json.loads((sharded / "shards" / "jobs.json").read_text())["0/4"]["job_id"] != job_id

    rows = table(one)
    assert table(sharded) == rows
    if LAUNCHER == "submitit_local":  # submitit's folder template, made and left empty: gone
        assert not (sharded / "shards" / "logs" / "%j").exists()
    for row in rows:
        assert (one / row["path"]).read_bytes() == (sharded / row["path"]).read_bytes()

    if LAUNCHER != "submitit_local":  # Table 2's metrics as 4 shards too, merged exactly
        measure_quality(compose("fid", [f"out={one}", "reference=toy"]))
        fid = cli("fid", f"out={sharded}", "reference=toy", f"launcher={LAUNCHER}", "shards=4", "batch_size=2")
        _, err = fid.communicate(timeout=600)
        assert fid.returncode == 0, err
        measure_quality(compose("fid", [f"out={one}", "reference=toy", "batch_size=2"]))
        assert quality(sharded) == quality(one) and quality(one)[0]["fid_toyfeat"]


def quality(root: Path) -> list[dict[str, str]]:
    """fid.csv without seconds_per_image (the two runs' generation times differ)."""
    with (root / "fid.csv").open(newline="") as f:
        return [{k: v for k, v in row.items() if k != "seconds_per_image"} for row in csv.DictReader(f)]
