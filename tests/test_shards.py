"""Sharded runs equal the unsharded run: generation (images byte for byte, one merged table), metric statistics
merged exactly (FID / IS / CLIP to 1e-10), several local devices, and the launcher's settings and bad input."""

from __future__ import annotations

import csv
import os
import shutil

import pytest
import torch

from diversity_cli.core.config import compose
from diversity_cli.core.errors import UserError
from diversity_cli.core.rundir import RunDir
from diversity_cli.experiments.shards import Shard, parse_shard

TIMING = ("seconds", "network_seconds")  # wall-clock measurements: the only columns two runs may differ in


def table(root) -> list[dict[str, str]]:
    with (root / "samples.csv").open(newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]


def same_images(a, b, rows) -> None:
    for row in rows:
        assert (a / row["path"]).read_bytes() == (b / row["path"]).read_bytes(), row["path"]


def test_shard_blocks_cover_every_case_once_and_parse():
    for total in (0, 1, 5, 30):
        for count in (1, 2, 4, 7):
            blocks = [list(Shard(i, count).block(total)) for i in range(count)]
            assert sum(blocks, []) == list(range(total))  # contiguous, in order, each case once
    assert parse_shard("2/4") == Shard(2, 4) and parse_shard(None) is None and parse_shard("null") is None


def test_shard_auto_reads_the_slurm_array(monkeypatch):
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    assert parse_shard("auto") is None  # outside an array: the whole command
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "5")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "4")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "2")  # --array=2-5: task ids need not start at 0
    monkeypatch.setenv("SLURM_ARRAY_TASK_MAX", "5")
    assert parse_shard("auto") == Shard(3, 4)


def test_shard_auto_takes_a_stepped_arrays_position(monkeypatch):
    # --array=0-8:4 runs tasks 0, 4 and 8: shards 0/3, 1/3 and 2/3, each once
    for key, value in (("SLURM_ARRAY_TASK_COUNT", "3"), ("SLURM_ARRAY_TASK_MIN", "0"), ("SLURM_ARRAY_TASK_MAX", "8")):
        monkeypatch.setenv(key, value)
    shards = []
    for task in ("0", "4", "8"):
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", task)
        shards.append(parse_shard("auto"))
    assert shards == [Shard(0, 3), Shard(1, 3), Shard(2, 3)]
    monkeypatch.setenv("SLURM_ARRAY_TASK_MAX", "9")  # --array=0,4,9: no even step
    with pytest.raises(UserError, match=r"ids 0\.\.9 are not evenly spaced.*give shard=I/N"):
        parse_shard("auto")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "abc")
    with pytest.raises(UserError, match="SLURM's array variables are not integers"):
        parse_shard("auto")


@pytest.mark.parametrize("value", ["4/4", "-1/3", "1/0", "a/b", "3"])
def test_bad_shard_is_one_line(value):
    with pytest.raises(UserError, match="shard="):
        parse_shard(value)


def _generate(out, *extra):
    from diversity_cli.experiments.generation import generate

    cfg = compose("generate", ["method=hybrid", "prompts=data/toy_captions.csv", f"out={out}", *extra])
    generate(cfg)
    return cfg


def test_sharded_generation_equals_one_process(tmp_path):
    """Three shards of Table 2's toy captions (one seed each), in an odd order, merged: the unsharded run's images
    byte for byte and its table row for row; the merge writes the same bytes whatever order shards finished in."""
    one, sharded = tmp_path / "one", tmp_path / "sharded"
    common = ["n=1", "limit=7", "batch_size=3"]
    _generate(one, *common)
    for index in (2, 0, 1):
        _generate(sharded, *common, f"shard={index}/3")
    files = sorted(p.name for p in (sharded / "shards").glob("samples-*.csv"))
    assert files == ["samples-0-of-3.csv", "samples-1-of-3.csv", "samples-2-of-3.csv"]
    assert not (sharded / "samples.csv").exists()
    before_merge = RunDir(sharded).read_samples()  # readers see the union before any merge
    assert [r["path"] for r in before_merge] == [r["path"] for r in table(one)]
    RunDir(sharded).merge_shards()
    assert not list((sharded / "shards").glob("samples-*.csv"))
    rows = table(one)
    assert table(sharded) == rows and [int(r["case"]) for r in rows] == list(range(7))
    same_images(one, sharded, rows)


def test_a_merge_leaves_the_file_of_a_shard_still_writing(tmp_path):
    """Another command's shard is still running on the same out= when a merge comes: its file was read, then
    deleted under it, and the rows it added in between were lost (images on disk without a row)."""
    from diversity_cli.core.samples import writer_lock

    out = tmp_path / "run"
    for index in (0, 1):
        _generate(out, "n=1", "limit=4", f"shard={index}/2")
    everything = [row["path"] for row in RunDir(out).read_samples()]
    running = out / "shards" / "samples-1-of-2.csv"
    with writer_lock(running, 0):  # as a running shard holds it
        RunDir(out).merge_shards()
        assert running.is_file() and not (out / "shards" / "samples-0-of-2.csv").exists()
        assert [row["path"] for row in RunDir(out).read_samples()] == everything  # readers see both files
    RunDir(out).merge_shards()  # once it has finished
    assert not list((out / "shards").glob("samples-*.csv"))
    assert [row["path"] for row in table(out)] == everything


def test_a_prompts_seeds_stay_in_one_shard(tmp_path):
    """Tables 3, D.1, E.1: n seeds per prompt; shard 1 of 2 owns whole prompts (cases), never half of one."""
    out = tmp_path / "run"
    cfg = _generate(out, "n=3", "limit=3", "shard=1/2")
    rows = RunDir(out, "shards/samples-1-of-2.csv").read_samples()
    assert {r["case"] for r in rows} == {"1", "2"} and len(rows) == 6
    assert cfg.n == 3


def test_metric_statistics_merge_exactly():
    """FID / IS / CLIP of 11 images measured whole vs. as three shards of whole batches, merged: equal to 1e-10.
    The IS logits keep their order (its seeded shuffle depends on it), so swapping two shards must change IS."""
    from diversity_cli.metrics.quality import (
        QualityScores,
        load_clip,
        load_extractor,
        merge_states,
        reference_statistics,
        scores_from_state,
    )

    generator = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (40, 40, 3), generator=generator, dtype=torch.uint8).numpy() for _ in range(11)]
    prompts = [f"a shape number {i}" for i in range(11)]
    extractor = load_extractor("tiny_random", torch.device("cpu"))
    clip = load_clip("tiny_random", torch.device("cpu"))
    reference, _ = reference_statistics(extractor, [images[:6], images[6:]], {"kind": "test"}, None)
    batch = 3
    batches = [(images[i : i + batch], prompts[i : i + batch]) for i in range(0, 11, batch)]

    whole = QualityScores(extractor, reference, clip, is_splits=4)
    for chunk in batches:
        whole.update(*chunk)
    expected = whole.compute(seed=0)
    assert all(value is not None for value in expected.values())

    states = []
    for block in ([0], [1, 2], [3]):  # three shards of whole batches
        part = QualityScores(extractor, reference, clip, is_splits=4)
        for i in block:
            part.update(*batches[i])
        states.append(part.state())
    merged = scores_from_state(merge_states(states), reference, extractor.num_features, 4, 0)
    for name, value in expected.items():
        assert merged[name] == pytest.approx(value, abs=1e-10, rel=0), name
    swapped = scores_from_state(merge_states([states[1], states[0], states[2]]), reference, 16, 4, 0)
    assert swapped["is"] != pytest.approx(expected["is"], abs=1e-10)


def test_fid_shards_and_merge_write_the_one_process_table(tmp_path):
    from diversity_cli.experiments.fid import measure_quality, merge_quality, quality_remaining

    out = tmp_path / "run"
    _generate(out, "n=1", "limit=5")
    settings = [f"out={out}", "reference=toy", "features=tiny_random", "clip_model=tiny_random", "batch_size=2"]
    measure_quality(compose("fid", settings))
    expected = (out / "fid.csv").read_bytes()
    (out / "fid.csv").unlink()
    cfg = compose("fid", settings)
    assert quality_remaining(cfg, Shard(1, 2)) == 1
    for index in (1, 0):
        assert measure_quality(compose("fid", [*settings, f"shard={index}/2"])) is None
    assert quality_remaining(compose("fid", settings), Shard(1, 2)) == 0  # a rerun submits nothing for it
    merge_quality(compose("fid", settings), 2)
    assert (out / "fid.csv").read_bytes() == expected
    assert not list((out / "shards").glob("fid-*.pt"))


def test_fid_of_an_image_folder_shards_and_merges_into_the_one_process_table(tmp_path):
    """images=FOLDER: the shards and the merge read the folder, as one process does (they read samples.csv, which
    a folder's out= does not have: 'samples.csv has no samples')."""
    import shutil

    from diversity_cli.experiments.fid import measure_quality, merge_quality, quality_remaining

    _generate(tmp_path / "made", "n=1", "limit=5")
    folder = tmp_path / "folder"
    folder.mkdir()
    for i, png in enumerate(sorted((tmp_path / "made").rglob("*.png"))):
        shutil.copy(png, folder / f"{i:03d}.png")
    settings = [f"images={folder}", f"reference={folder}", "features=tiny_random", "clip_model=null", "batch_size=2"]
    measure_quality(compose("fid", [*settings, f"out={tmp_path / 'one'}"]))
    sharded = [*settings, f"out={tmp_path / 'sharded'}"]
    for index in (1, 0):
        assert measure_quality(compose("fid", [*sharded, f"shard={index}/2"])) is None
    assert quality_remaining(compose("fid", sharded), Shard(0, 2)) == 0
    merge_quality(compose("fid", sharded), 2)
    assert (tmp_path / "sharded" / "fid.csv").read_bytes() == (tmp_path / "one" / "fid.csv").read_bytes()


@pytest.mark.slow
def test_two_cpu_workers_equal_one(tmp_path):
    """devices=cpu:2: one worker process per device over the shards, merged: byte-identical to one process."""
    from diversity_cli.experiments.generation import generate, merge_samples, remaining
    from diversity_cli.experiments.launch import dispatch

    one, two = tmp_path / "one", tmp_path / "two"
    common = ["method=distilled", "prompts=data/toy_captions.csv", "n=1", "limit=2"]
    _generate(one, *common[1:], "method=distilled")
    dispatch(compose("generate", [*common, f"out={two}", "devices=cpu:2"]), generate, remaining, merge_samples)
    rows = table(one)
    assert table(two) == rows
    same_images(one, two, rows)


def test_launcher_settings_follow_the_hydra_launcher_files():
    from diversity_cli.experiments.launch import launcher_settings, parse_devices

    kind, settings = launcher_settings(compose("generate", ["launcher=slurm", "+launcher_params.partition=a100"]))
    assert kind == "slurm" and settings["partition"] == "a100" and settings["signal_delay_s"] == 90
    assert settings["max_num_timeout"] >= 1  # submitit requeues a timed-out shard only then
    kind, _ = launcher_settings(compose("generate", ["launcher=submitit_local"]))
    assert kind == "local"
    assert parse_devices("cpu:2") == ["cpu", "cpu"] and parse_devices(["cuda:0", "cuda:1"]) == ["cuda:0", "cuda:1"]
    assert parse_devices(["cpu", "cpu"]) == ["cpu", "cpu"] and parse_devices("mps") == ["mps"]
    # [] fell through to the SLURM launcher; cpu:0 and a cpu index failed later, naming device=
    for bad in ("gpu:2", "cpu:x", [], "cpu:0", ["cpu:0"], ["cuda:x"], "cuda:"):
        with pytest.raises(UserError, match="devices="):
            parse_devices(bad)


@pytest.mark.parametrize(
    "args, message",
    [
        (["launcher=nowhere", "shards=2"], "unknown launcher 'nowhere'"),
        # the plugin's bare SLURM queue (no GPU, 60 min, no requeue): ablate's multirun takes it, generate's shards not
        (["launcher=submitit_slurm", "shards=2"], "unknown launcher 'submitit_slurm'"),
        (["launcher=submitit_local", "shards=0"], "shards=0"),
        (["launcher=submitit_local", "devices=cpu:2"], "not both"),
        (["launcher=submitit_local", "+launcher_params.no_such_key=1"], "launcher submitit_local"),
        # one shard here and every shard at once: one of the two was ignored without a word
        (["shard=0/2", "shards=3"], "shard=0/2 is one of 2 shards, shards=3 asks for 3"),
        (["shard=0/2", "devices=cpu:1"], "devices= runs every shard"),
        (["shard=1/2", "launcher=submitit_local"], "launcher= submits every shard"),
    ],
)
def test_bad_launch_input_fails_in_one_line_before_any_job(cli, tmp_path, args, message):
    code, _, err = cli("generate", f"out={tmp_path / 'run'}", "n=1", *args)
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_a_submission_the_cluster_refuses_is_one_line_and_leaves_nothing(cli, tmp_path, fake_slurm):
    """sbatch on the machine but no cluster it can reach (or a partition it refuses): a traceback and exit 1."""
    fake_slurm("sbatch", "srun")
    code, _, err = cli("generate", f"out={tmp_path / 'run'}", "n=1", "shards=2", "launcher=slurm")
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: launcher=slurm: the cluster refused the submission (sbatch:")
    assert not (tmp_path / "run").exists()  # submitit's pickles of the jobs it could not submit went too


def test_a_finished_slurm_launch_merges_on_a_machine_without_slurm(cli, tmp_path, monkeypatch):
    """Its shards all done (by hand, or by jobs since finished), a rerun only merges: refused for want of sbatch."""
    monkeypatch.setattr("diversity_cli.experiments.launch.shutil.which", lambda name: None)
    out, made = tmp_path / "run", ["prompts=data/toy_prompts.txt", "limit=2", "n=1"]
    for index in (0, 1):
        assert cli("generate", *made, f"shard={index}/2", f"out={out}")[0] == 0
    code, _, err = cli("generate", *made, "shards=2", "launcher=slurm", f"out={out}")
    assert code == 0 and (out / "samples.csv").is_file(), err


def test_sbatch_without_srun_is_one_line_and_leaves_nothing(cli, tmp_path, fake_slurm, monkeypatch):
    """submitit refuses to start without srun (its jobs' workers run through it): a RuntimeError's traceback."""
    fake_slurm("sbatch")
    which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "srun" else which(name, *a, **k))
    code, _, err = cli("generate", f"out={tmp_path / 'run'}", "n=1", "shards=2", "launcher=slurm")
    assert code == 2 and "Traceback" not in err
    assert err.startswith("error: launcher=slurm submits SLURM jobs, but srun is not on this machine"), err  # alone
    assert not (tmp_path / "run").exists()


def test_diversity_shards_by_prompt_merge_into_the_one_process_table(tmp_path):
    from diversity_cli.experiments.diversity import diversity_remaining, measure_diversity, merge_diversity

    out = tmp_path / "run"
    _generate(out, "n=3", "limit=3", "method=distilled")
    settings = [f"out={out}", "metric=[pixel,vendi_pixel]", "bootstrap=20"]
    measure_diversity(compose("diversity", settings))
    expected = (out / "diversity.csv").read_bytes()
    (out / "diversity.csv").unlink()
    for index in (1, 0):  # 3 prompts over 2 shards: 1 and 2 whole prompts
        assert measure_diversity(compose("diversity", [*settings, f"shard={index}/2"])) is None
    assert diversity_remaining(compose("diversity", settings), Shard(0, 2)) == 0
    assert diversity_remaining(compose("diversity", [*settings, "bootstrap=21"]), Shard(0, 2)) == 1  # other settings
    merge_diversity(compose("diversity", settings), 2)
    assert (out / "diversity.csv").read_bytes() == expected


def test_a_shard_of_images_remade_since_or_damaged_is_work_left_not_merged(tmp_path):
    """Shard 0 measured, then every image remade in place with other steps (same paths): its statistics and rows are
    of the old images. They were merged as if current (a wrong FID, a diversity number of the old images)."""
    from diversity_cli.experiments.diversity import diversity_remaining, measure_diversity, merge_diversity
    from diversity_cli.experiments.fid import measure_quality, merge_quality, quality_remaining

    out = tmp_path / "run"
    _generate(out, "n=2", "limit=2", "method=distilled")
    fid = [f"out={out}", "reference=toy", "features=tiny_random", "clip_model=tiny_random", "batch_size=2"]
    diversity = [f"out={out}", "metric=pixel", "bootstrap=20"]
    measure_quality(compose("fid", [*fid, "shard=0/2"]))
    measure_diversity(compose("diversity", [*diversity, "shard=0/2"]))
    other_steps = ["model.distilled.timesteps=[999,499]", "model.distilled.steps=2"]
    _generate(out, "n=2", "limit=2", "method=distilled", *other_steps, "overwrite=true")
    measure_quality(compose("fid", [*fid, "shard=1/2"]))
    measure_diversity(compose("diversity", [*diversity, "shard=1/2"]))
    assert quality_remaining(compose("fid", fid), Shard(0, 2)) == 1  # a rerun of the array remakes shard 0
    assert diversity_remaining(compose("diversity", diversity), Shard(0, 2)) == 1
    with pytest.raises(UserError, match="fid-0-of-2.pt is missing, damaged or from other settings or images"):
        merge_quality(compose("fid", fid), 2)
    with pytest.raises(UserError, match="diversity-0-of-2.json is missing, damaged or from other settings or"):
        merge_diversity(compose("diversity", diversity), 2)
    for path in (out / "shards" / "fid-1-of-2.pt", out / "shards" / "diversity-1-of-2.json"):  # cut short
        path.write_bytes(path.read_bytes()[:50])
    assert quality_remaining(compose("fid", fid), Shard(1, 2)) == 1  # a traceback before
    assert diversity_remaining(compose("diversity", diversity), Shard(1, 2)) == 1
    assert not (out / "fid.csv").exists() and not (out / "diversity.csv").exists()


def test_sigusr2_waits_for_the_batch_then_hands_over_to_submitit(tmp_path):
    """In a shard job, SIGUSR2 (time limit near) is held where it arrives and handed to submitit's handler (here a
    stand-in that stops the run, as its requeue does) at the end of the batch, once its images and rows are written."""
    import signal

    from diversity_cli.experiments.generation import generate
    from diversity_cli.experiments.launch import ShardJob
    from diversity_cli.experiments.shards import on_batch_done

    calls = []

    class Requeued(Exception):
        pass

    def submitit_handler(signum, frame):
        calls.append(len(RunDir(tmp_path / "run", "shards/samples-0-of-1.csv").read_samples()))
        raise Requeued

    batches, right_after = [], []

    def send_after_first_batch():
        batches.append(1)
        if len(batches) == 1:
            os.kill(os.getpid(), signal.SIGUSR2)
            right_after.append(len(calls))  # an unheld handler would already have run here

    previous = signal.signal(signal.SIGUSR2, submitit_handler)
    cfg = compose("generate", ["method=distilled", "n=4", "batch_size=1", f"out={tmp_path / 'run'}"])
    try:
        with on_batch_done(send_after_first_batch), pytest.raises(Requeued):
            ShardJob(generate, cfg, Shard(0, 1), batched=True)()
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert right_after == [0]  # held, not run where it arrived
    assert calls == [1] and len(batches) == 1  # handed over at the batch end, its row written, no further batch
    assert signal.getsignal(signal.SIGUSR2) is previous


def test_a_shard_of_images_or_references_replaced_since_is_work_left_not_merged(tmp_path):
    """images=FOLDER and reference=FOLDER are keyed by path, not samples.csv rows: an image or reference image
    replaced after the shards ran was merged from their old statistics (fid 405.3 merged, 367.0 in one process)."""
    import shutil

    from diversity_cli.experiments.diversity import diversity_remaining, measure_diversity, merge_diversity
    from diversity_cli.experiments.fid import measure_quality, merge_quality, quality_remaining

    _generate(tmp_path / "made", "n=1", "limit=4")
    pngs = sorted((tmp_path / "made").rglob("*.png"))
    folder, reference = tmp_path / "folder", tmp_path / "reference"
    for target in (folder, reference):
        target.mkdir()
        for i, png in enumerate(pngs):
            shutil.copy(png, target / f"{i:03d}.png")
    fid = [f"images={folder}", f"reference={reference}", "features=tiny_random", "clip_model=null", "batch_size=2"]
    fid.append(f"out={tmp_path / 'fid'}")
    diversity = [f"images={folder}", "metric=pixel", "bootstrap=20", f"out={tmp_path / 'diversity'}"]
    for index in (0, 1):
        measure_quality(compose("fid", [*fid, f"shard={index}/2"]))
    measure_diversity(compose("diversity", [*diversity, "shard=0/1"]))
    shutil.copy(pngs[1], reference / "000.png")  # the reference changes: only fid reads it
    assert quality_remaining(compose("fid", fid), Shard(0, 2)) == 1
    with pytest.raises(UserError, match="fid-0-of-2.pt is missing, damaged or from other settings or images"):
        merge_quality(compose("fid", fid), 2)
    assert diversity_remaining(compose("diversity", diversity), Shard(0, 1)) == 0
    shutil.copy(pngs[1], folder / "000.png")  # an image measured changes
    assert diversity_remaining(compose("diversity", diversity), Shard(0, 1)) == 1
    with pytest.raises(UserError, match="diversity-0-of-1.json is missing, damaged or from other settings or"):
        merge_diversity(compose("diversity", diversity), 1)


def test_shards_measured_with_other_weights_are_not_merged_and_the_merge_records_them(tmp_path):
    """An embedder's weights replaced between two shards' runs: the merge mixed rows of two networks, and its
    record named no embedder at all (a one-process run records each one's weights and their hashes)."""
    import json

    from diversity_cli.core.record import read_records
    from diversity_cli.experiments.diversity import measure_diversity, merge_diversity

    out = tmp_path / "run"
    _generate(out, "n=2", "limit=2", "method=distilled")
    diversity = [f"out={out}", "metric=pixel", "bootstrap=20"]
    for index in (0, 1):
        measure_diversity(compose("diversity", [*diversity, f"shard={index}/2"]))
    merge_diversity(compose("diversity", diversity), 2)
    (record,) = [r for r in read_records(out) if r.get("merged_shards") == 2]
    assert "pixel" in record["embedders"] and record["embedders"]["pixel"]["cache_fingerprint"]
    for index in (0, 1):
        measure_diversity(compose("diversity", [*diversity, f"shard={index}/2"]))
    path = out / "shards" / "diversity-1-of-2.json"
    body = json.loads(path.read_text())
    body["embedders"]["pixel"]["weights"] = [{"source": "/node-local/copy/of/the/same/weights"}]
    path.write_text(json.dumps(body))
    merge_diversity(compose("diversity", diversity), 2)  # the same weights read elsewhere: merged
    for index in (0, 1):
        measure_diversity(compose("diversity", [*diversity, f"shard={index}/2"]))
    body = json.loads(path.read_text())
    body["embedders"]["pixel"]["cache_fingerprint"] = "other weights"
    path.write_text(json.dumps(body))
    with pytest.raises(UserError, match="measured pixel with other weights or options"):
        merge_diversity(compose("diversity", diversity), 2)


def test_each_device_worker_is_handed_one_shard_at_a_time(monkeypatch):
    """devices=cpu:1 with two shards: both were submitted to the worker's pool at once, which queues the second into
    the worker; after Ctrl-C (the worker stops its shard) the worker went on through the whole next shard."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from diversity_cli.experiments import launch

    held: dict[int, int] = {}
    most: dict[int, int] = {}

    class Pool(ThreadPoolExecutor):  # a worker that counts the jobs handed to it and not yet done
        def __init__(self, *args, **kwargs):
            super().__init__(1)

        def submit(self, job):
            held[id(self)] = held.get(id(self), 0) + 1
            most[id(self)] = max(most.get(id(self), 0), held[id(self)])

            def run():
                try:
                    time.sleep(0.01)
                    return job()
                finally:
                    held[id(self)] -= 1

            return super().submit(run)

    def failing(shard):
        def job():
            if shard.index == 2:
                raise RuntimeError("out of memory")

        return job

    monkeypatch.setattr(launch, "ProcessPoolExecutor", Pool)
    monkeypatch.setattr(launch, "_jobs", lambda cfg, run, shards, devices: [failing(s) for s in shards])
    shards = [Shard(i, 5) for i in range(5)]
    failed = launch.run_on_devices(compose("generate", []), None, shards, ["cpu", "cpu"])
    assert len(most) == 2 and set(most.values()) == {1}
    assert failed == [Shard(2, 5)]


def test_a_worker_that_dies_fails_its_shard_and_a_fresh_one_runs_the_next(monkeypatch):
    """A worker process killed with its shard (memory, a signal) breaks its pool: handing it the next shard raised
    BrokenProcessPool out of the command, a traceback, the other shards never run."""
    from concurrent.futures import ThreadPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from diversity_cli.experiments import launch

    ran: list[int] = []

    class Pool(ThreadPoolExecutor):  # a worker process, as far as run_on_devices can tell
        def __init__(self, *args, **kwargs):
            super().__init__(1)
            self.broken = False

        def submit(self, job):
            if self.broken:
                raise BrokenProcessPool("A child process terminated abruptly")
            return super().submit(job, self)

    def job_of(shard):
        def job(pool):
            if shard.index == 0:
                pool.broken = True
                raise BrokenProcessPool("A child process terminated abruptly")
            ran.append(shard.index)

        return job

    monkeypatch.setattr(launch, "ProcessPoolExecutor", Pool)
    monkeypatch.setattr(launch, "_jobs", lambda cfg, run, shards, devices: [job_of(s) for s in shards])
    failed = launch.run_on_devices(compose("generate", []), None, [Shard(i, 4) for i in range(4)], ["cpu", "cpu"])
    assert failed == [Shard(0, 4)] and sorted(ran) == [1, 2, 3]


def test_a_shard_jobs_record_names_the_command_line_that_runs_it_by_hand(cli, tmp_path, monkeypatch):
    """A shard's record gave `... devices=cpu:2 shard=0/2`, a line the CLI refuses (devices= runs every shard)."""
    from diversity_cli.core.record import read_records
    from diversity_cli.experiments.generation import generate
    from diversity_cli.experiments.launch import ShardJob

    out = tmp_path / "run"
    typed = ["prompt=a circle", "n=1", f"out={out}", "shards=2", "devices=cpu:2", "+launcher_params.mem_gb=4"]
    job = ShardJob(generate, compose("generate", typed[:3]), Shard(1, 2), "cpu", "generate", tuple(typed))
    job()
    (record,) = read_records(out)
    assert record["command_line"][2:] == ["prompt=a circle", "n=1", f"out={out}", "device=cpu", "shard=1/2"]
    # a SLURM array's job has no worker device: the device= typed stays in its line
    out = tmp_path / "slurm"
    typed = ["prompt=a circle", "n=1", f"out={out}", "device=cpu", "shards=2", "launcher=slurm"]
    ShardJob(generate, compose("generate", typed[:4]), Shard(1, 2), None, "generate", tuple(typed))()
    (record,) = read_records(out)
    assert record["command_line"][2:] == ["prompt=a circle", "n=1", f"out={out}", "device=cpu", "shard=1/2"]
    code, _, err = cli(*record["command_line"][1:])  # it runs, as a user would replay it
    assert code == 0, err


def test_a_launch_whose_shard_failed_leaves_its_own_record(cli, tmp_path, monkeypatch):
    """Only the merge wrote the launching command's record: a launch ending at a failed shard left the shards'
    records and none of the command the user typed, nor how it ended."""
    from diversity_cli.core.record import read_records
    from diversity_cli.experiments import launch

    monkeypatch.setattr(launch, "run_on_devices", lambda cfg, run, todo, devices: todo[-1:])  # the last one failed
    out = tmp_path / "run"
    settings = ("prompts=data/toy_prompts.txt", "limit=2", "n=2", "shards=2", "devices=cpu:2", f"out={out}")
    code, _, err = cli("generate", *settings)
    assert code == 2 and "1 of 2 shard(s) failed" in err, err
    (record,) = read_records(out)
    assert (record["command"], record["status"], record["exit_code"], record["shards"]) == ("generate", "failed", 2, 2)
    assert record["launched_on"] == ["cpu", "cpu"] and "devices=cpu:2" in record["command_line"]


def test_hand_run_shards_and_their_merge_each_leave_a_record_of_what_made_them(cli, tmp_path):
    """shard=I/N run by hand (as a user's own sbatch array does), then merged by the same command with shards=N:
    every shard's measurement and every merge is in runs/, saying what it measured with or that it merged."""
    from diversity_cli.core.record import read_records

    out = tmp_path / "run"
    made = ["model=toy", "method=distilled", "prompts=data/toy_prompts.txt", "limit=2", "n=2", f"out={out}"]
    measures = {
        "generate": made[:-1],
        "diversity": ["metric=pixel", "bootstrap=10"],
        "fid": ["reference=toy", "features=tiny_random", "clip_model=tiny_random"],
    }
    for command, settings in measures.items():
        for index in (0, 1):
            code, _, err = cli(command, *settings, f"shard={index}/2", f"out={out}")
            assert code == 0, err
        code, _, err = cli(command, *settings, "shards=2", "devices=cpu:1", f"out={out}")
        assert code == 0, err
        records = [r for r in read_records(out) if r["command"] == command]
        shards = sorted(r["config"]["shard"] for r in records if r["config"].get("shard"))
        assert shards == ["0/2", "1/2"], command
        assert [r["merged_shards"] for r in records if "merged_shards" in r] == [2], command
    measured = [r for r in read_records(out) if r["command"] == "diversity" and r["config"].get("shard")]
    assert all("pixel" in r["embedders"] for r in measured)
    measured = [r for r in read_records(out) if r["command"] == "fid" and r["config"].get("shard")]
    assert all(r["features"]["tag"] and r["references"] for r in measured)


def test_a_shard_with_no_prompt_row_says_so(cli, tmp_path):
    """One prompt over two shards: shard 0's block is empty. It said "all 0 images are in <out>"."""
    code, _, err = cli("generate", "model=toy", "prompt=a shape", "n=2", "shard=0/2", f"out={tmp_path / 'run'}")
    assert code == 0 and "shard 0/2 holds no prompt row" in " ".join(err.split()), err


def test_shards_without_workers_or_jobs_is_refused_and_shard_auto_outside_an_array_says_so(cli, tmp_path, monkeypatch):
    """shards=2 alone ran as one process without a word, and shard=auto outside a SLURM array (an sbatch script
    that forgot --array) did the whole job in every task, silently."""
    code, _, err = cli("generate", "prompt=a circle", "n=1", "shards=2", f"out={tmp_path / 'a'}")
    assert code == 2 and "shards=2 splits the work among devices= workers or launcher= jobs" in err
    assert not (tmp_path / "a").exists()
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    code, _, err = cli("generate", "prompt=a circle", "n=1", "shard=auto", f"out={tmp_path / 'b'}")
    assert code == 0 and "shard=auto found no SLURM array here" in " ".join(err.split())
    assert "this process does the whole job" in " ".join(err.split())
    # beside devices=, the shards still run on the workers: not "this process does the whole job"
    monkeypatch.setattr("diversity_cli.experiments.launch.run_on_devices", lambda cfg, run, todo, devices: [])
    code, _, err = cli("generate", "prompt=a circle", "n=1", "shard=auto", "devices=cpu:1", f"out={tmp_path / 'c'}")
    assert "the shards run as devices=/launcher= say" in " ".join(err.split()), err


def test_an_interrupted_launch_names_the_jobs_that_go_on_and_how_to_stop_them(capsys):
    """Ctrl-C on a launch said only "rerun the same command to resume" while its shard jobs (local processes too)
    went on running."""
    from rich.console import Console

    from diversity_cli.experiments.launch import left_running

    class Job:
        def __init__(self, job_id: str, done: bool):
            self.job_id, self._done = job_id, done

        def done(self) -> bool:
            return self._done

    console = Console(stderr=True, width=200)
    left_running([Job("11", True), Job("12", False), Job("13", False)], "local", console)
    assert "2 shard job(s) go on running to the end of their shards (`pkill -INT -P 12,13` stops them)" in (
        capsys.readouterr().err
    )
    left_running([Job("11", True), Job("12", False)], "slurm", console)
    assert "(`scancel 12` stops them)" in capsys.readouterr().err
    left_running([Job("11", True)], "slurm", console)
    assert capsys.readouterr().err == ""
