"""Metric shards stopped for a requeue and run in parallel: SIGUSR2 sent to a running `fid` / `diversity` shard
process waits for the batch in hand, stores what is done (fid: its statistics so far; diversity: its new
embeddings), then hands over to submitit's handler; the rerun computes only the rest and its merged table is the
uninterrupted one, byte for byte. Diversity shards running at once each write their own embedding cache file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from diversity_cli.core.config import compose
from diversity_cli.core.fingerprint import file_hash

REPO = Path(__file__).resolve().parents[1]
REQUEUED = 3  # the stand-in for submitit's handler exits with this: checkpointed, requeued

# A shard job as SLURM runs it: submitit's SIGUSR2 handler installed (here a stand-in that exits as its requeue
# does), the command run as `ShardJob(batched=True)`. After batch `at` (0: never) it says so and waits for the
# test's signal, so the signal lands in a known batch.
CHILD = """
import os, signal, sys, time
import torch
torch.set_num_threads(1)
from diversity_cli.core.config import compose
from diversity_cli.experiments import diversity, fid
from diversity_cli.experiments.launch import ShardJob
from diversity_cli.experiments.shards import on_batch_done, parse_shard

command, shard, at, go, args = sys.argv[1], parse_shard(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5:]
run = {"fid": fid.measure_quality, "diversity": diversity.measure_diversity}[command]
signal.signal(signal.SIGUSR2, lambda signum, frame: sys.exit(3))  # REQUEUED
seen = []

def announce():
    seen.append(1)
    if len(seen) == at:
        print("batch", flush=True)
        deadline = time.monotonic() + 60
        while not os.path.exists(go) and time.monotonic() < deadline:
            time.sleep(0.01)

with on_batch_done(announce):
    ShardJob(run, compose(command, args), shard, batched=True)()
print("finished", flush=True)
"""


def shard_process(tmp_path: Path, command: str, shard: str, at: int, args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    go = tmp_path / f"go-{command}-{shard.replace('/', '-')}"
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, command, shard, str(at), str(go), *args],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def stop_after_batch(tmp_path: Path, child: subprocess.Popen, command: str, shard: str) -> str:
    """Send SIGUSR2 to a shard process once it has said its batch is done; check it went to be requeued."""
    try:
        line = child.stdout.readline()
        assert line.strip() == "batch", child.communicate(timeout=60)
        child.send_signal(signal.SIGUSR2)
        (tmp_path / f"go-{command}-{shard.replace('/', '-')}").touch()
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == REQUEUED, (out, err)  # handed over to the requeue, not run to the end
    assert "finished" not in out
    return err


def _generate(out: Path, *extra: str) -> None:
    from diversity_cli.experiments.generation import generate

    generate(compose("generate", [f"prompts={REPO / 'data/toy_captions.csv'}", f"out={out}", *extra]))


def count_calls(monkeypatch, module, name: str) -> list[int]:
    """How many times `module.name` is called from now on (each call: one image read to be measured)."""
    calls = [0]
    original = getattr(module, name)

    def counted(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def cached(path: Path) -> dict:
    """The embeddings a cache file holds, by image hash."""
    import torch

    return torch.load(path, weights_only=True)["items"]


def test_fid_shard_keeps_its_statistics_on_sigusr2_and_the_rerun_measures_only_the_rest(tmp_path, monkeypatch):
    import torch

    from diversity_cli.experiments import fid
    from diversity_cli.experiments.launch import ShardJob
    from diversity_cli.experiments.shards import Shard

    out = tmp_path / "run"
    for method in ("distilled", "hybrid"):  # two groups of 2 images, one per batch: 4 batches
        _generate(out, f"method={method}", "n=1", "limit=2")
    args = [f"out={out}", "reference=toy", "features=tiny_random", "batch_size=1"]  # no CLIP: see the next test

    child = shard_process(tmp_path, "fid", "0/1", 3, args)  # stopped after the first group and one batch more
    err = stop_after_batch(tmp_path, child, "fid", "0/1")
    partial = out / "shards" / "fid-0-of-1.partial.pt"
    saved = torch.load(partial, weights_only=True)["groups"]
    assert sorted((entry.get("whole", False), entry.get("batches")) for entry in saved.values()) == [
        (False, 1), (True, None)
    ], err  # fmt: skip
    assert not (out / "shards" / "fid-0-of-1.pt").exists()
    assert fid.quality_remaining(compose("fid", args), Shard(0, 1)) == 1  # a resubmission runs it again

    images = count_calls(monkeypatch, fid, "load_image")
    ShardJob(fid.measure_quality, compose("fid", args), Shard(0, 1), batched=True)()  # the requeued job
    assert images[0] == 1  # what was stored is not measured again: 1 of 4 images
    assert not partial.exists() and fid.quality_remaining(compose("fid", args), Shard(0, 1)) == 0
    fid.merge_quality(compose("fid", args), 1)
    merged = (out / "fid.csv").read_bytes()

    (out / "fid.csv").unlink()
    images[0] = 0
    fid.measure_quality(compose("fid", args))  # one process, never stopped
    assert images[0] == 4 and (out / "fid.csv").read_bytes() == merged


def test_quality_scores_go_on_from_a_stored_state_bit_for_bit():
    """What a resumed fid shard does with its stored statistics, CLIP score included: restored and continued, the
    FID / IS / CLIP numbers are exactly those of one uninterrupted pass."""
    import torch

    from diversity_cli.metrics.quality import QualityScores, load_clip, load_extractor, reference_statistics

    generator = torch.Generator().manual_seed(1)
    images = [torch.randint(0, 256, (40, 40, 3), generator=generator, dtype=torch.uint8).numpy() for _ in range(7)]
    prompts = ["a dog"] * 7  # the tiny CLIP scores these images above 0 for it: the mean is not clamped to 0
    extractor, clip = load_extractor("tiny_random", torch.device("cpu")), load_clip("tiny_random", torch.device("cpu"))
    reference, _ = reference_statistics(extractor, [images[:4], images[4:]], {"kind": "test"}, None)
    batches = [(images[i : i + 2], prompts[i : i + 2]) for i in range(0, 7, 2)]

    whole = QualityScores(extractor, reference, clip, is_splits=3)
    for batch in batches:
        whole.update(*batch)
    stopped = QualityScores(extractor, reference, clip, is_splits=3)
    for batch in batches[:2]:
        stopped.update(*batch)
    resumed = QualityScores(extractor, reference, clip, is_splits=3)
    resumed.restore(stopped.state())
    for batch in batches[2:]:
        resumed.update(*batch)
    expected = whole.compute(seed=0)
    assert all(value is not None for value in expected.values()) and expected["clip"] > 0
    assert resumed.compute(seed=0) == expected


def test_diversity_shards_at_once_keep_own_cache_files_and_one_stopped_by_sigusr2_resumes(tmp_path, monkeypatch):
    """Two shards in parallel processes, shard 1 stopped by SIGUSR2 after one of its three embedding batches:
    each wrote only its own cache file, the stopped one its finished batch; the rerun embeds only the rest, the
    merge is the one-process table, and one process reading every shard's file embeds nothing."""
    from diversity_cli.core.cache import cache_dir
    from diversity_cli.experiments import diversity
    from diversity_cli.experiments.launch import ShardJob
    from diversity_cli.experiments.shards import Shard

    out = tmp_path / "run"
    _generate(out, "method=distilled", "n=3", "limit=2")  # two prompts of 3 images: one per shard
    monkeypatch.setenv("DIVERSITY_CLI_CACHE", str(tmp_path / "cache"))  # this test's own, for children and reruns
    args = [f"out={out}", "metric=[pixel,vendi_pixel]", "bootstrap=20", "batch_size=1"]

    whole = shard_process(tmp_path, "diversity", "0/2", 0, args)
    stopped = shard_process(tmp_path, "diversity", "1/2", 1, args)
    err = stop_after_batch(tmp_path, stopped, "diversity", "1/2")
    out0, err0 = whole.communicate(timeout=120)
    assert whole.returncode == 0 and "finished" in out0, err0

    files = sorted(cache_dir("embeddings").glob("*.pt"))
    fingerprint = files[0].name.split(".")[0]
    assert [p.name for p in files] == [f"{fingerprint}.{i}-of-2.pt" for i in range(2)], err  # one file per shard
    _, groups, _ = diversity.collect_groups(compose("diversity", args))
    assert set(cached(files[0])) == {file_hash(path) for path in groups[0].paths}  # shard 0: its prompt, only it
    assert len(cached(files[1])) == 1 and set(cached(files[1])) <= {file_hash(p) for p in groups[1].paths}

    embedded = count_calls(monkeypatch, diversity, "load_image")
    ShardJob(diversity.measure_diversity, compose("diversity", args), Shard(1, 2), batched=True)()  # requeued
    assert embedded[0] == 2  # only the 2 images not stored
    diversity.merge_diversity(compose("diversity", args), 2)
    merged = (out / "diversity.csv").read_bytes()

    (out / "diversity.csv").unlink()
    embedded[0] = 0
    diversity.measure_diversity(compose("diversity", [*args, "cache=false"]))  # one process, never stopped
    assert embedded[0] == 6 and (out / "diversity.csv").read_bytes() == merged
    embedded[0] = 0
    diversity.measure_diversity(compose("diversity", args))  # reads both shards' files: all hits
    assert embedded[0] == 0 and (out / "diversity.csv").read_bytes() == merged
    assert sorted(cache_dir("embeddings").glob("*.pt")) == files  # nothing new to write


@pytest.mark.parametrize("name", ["0123456789abcdef.pt", "0123456789abcdef.3-of-8.pt"])
def test_cache_clear_knows_the_shard_cache_files(tmp_path, monkeypatch, name):
    from diversity_cli.core.cache import cache_dir, cached_files

    monkeypatch.setenv("DIVERSITY_CLI_CACHE", str(tmp_path))
    cache_dir("embeddings").mkdir(parents=True)
    (cache_dir("embeddings") / name).write_bytes(b"")
    assert [p.name for p in cached_files("embeddings")] == [name]
