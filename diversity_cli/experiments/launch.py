"""Running one command as N shards, then merging them: a SLURM array job through submitit (`launcher=slurm`), the
same jobs as local processes (`launcher=submitit_local`), or one local worker per device (`devices=cpu:2`, `all`).

Cluster settings come from `conf/hydra/launcher/<launcher>.yaml`, the hydra-submitit-launcher schema that `ablate`
uses too (partition, gpus_per_node, cpus_per_task, mem_gb, timeout_min, max_num_timeout, array_parallelism,
signal_delay_s, setup, additional_parameters ...), overridden per run by `launcher_params.*`.
Every shard job is resumable (`ShardJob` is a submitit Checkpointable): SLURM sends SIGUSR2 `signal_delay_s`
before the time limit or on preemption; a batched command (generate, fid, diversity, transfer-lora) finishes the
batch in hand and stores what it holds in memory, then submitit checkpoints the job and requeues it (at most
`max_num_timeout` times), and the requeued job resumes where the run directory (and, for diversity, the embedding
cache) says it stopped. The launching command shows one status line while it waits, names each failed shard with
its log, and merges once every shard has finished; rerunning the same command submits only the shards with work
left.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..core.config import available, search_dirs
from ..core.console import stderr_console
from ..core.errors import UserError, did_you_mean, first_line
from ..core.record import begin, current, finish, record_invocation
from ..core.rundir import SHARDS
from ..core.schema import show
from .shards import LAUNCH_KEYS, Shard, on_batch_done, parse_shard, parse_shard_count, save_progress

Runner = Callable[[DictConfig], Any]
Remaining = Callable[[DictConfig, Shard], "int | None"]
Merge = Callable[[DictConfig, int], Any]
LOCAL_KINDS = ("submitit_local",)  # a launcher file whose defaults name submitit_local runs local processes
FINISHED = ("COMPLETED", "FINISHED")


def check_shard_options(cfg: DictConfig) -> None:
    """`shard=I/N` runs that one shard here: `shards=`, `devices=` or a launcher beside it asks for all of them,
    and one of the two would be ignored. (A shard job itself runs with shards=N, launcher local, no devices.)"""
    shard = parse_shard(cfg.get("shard"))
    if shard is None:
        count = cfg.get("shards", 1)
        if str(cfg.get("shard")).strip() == "auto":  # a script's sbatch without --array would do all the work in each
            whole = "this process does the whole job"
            what = "the shards run as devices=/launcher= say" if wants_launch(cfg) else whole
            stderr_console().print(
                f"[yellow]note[/]: shard=auto found no SLURM array here (SLURM_ARRAY_TASK_ID unset): {what}"
            )
        elif isinstance(count, int) and count > 1 and not wants_launch(cfg):
            raise UserError(
                f"shards={count} splits the work among devices= workers or launcher= jobs, and this command has "
                "neither: add devices=cpu:2 (say) or launcher=slurm, or leave shards= out"
            )
        return
    count = cfg.get("shards", 1)
    if count not in (1, shard.count):
        raise UserError(f"shard={shard} is one of {shard.count} shards, shards={count} asks for {count}: give one")
    if cfg.get("devices") is not None:
        raise UserError(f"shard={shard} runs one shard in this process; devices= runs every shard: give one of them")
    if str(cfg.get("launcher", "local")) != "local":
        raise UserError(f"shard={shard} runs one shard in this process; launcher= submits every shard: give one")


def wants_launch(cfg: DictConfig) -> bool:
    """True when this invocation runs shards (launcher= or devices=) instead of doing the work itself."""
    if parse_shard(cfg.get("shard")) is not None:
        return False
    return str(cfg.get("launcher", "local")) != "local" or cfg.get("devices") is not None


def dispatch(cfg: DictConfig, run: Runner, remaining: Remaining, merge: Merge, batched: bool = False) -> Any:
    """`run(cfg)` itself, or its shards through the launcher / devices followed by `merge(cfg, shards)`.
    `batched`: `run` calls `shards.batch_done()` after every batch, so SIGUSR2 can wait for the batch to end."""
    if not wants_launch(cfg):
        return run(cfg)
    count = parse_shard_count(cfg.get("shards", 1))
    devices = parse_devices(cfg.get("devices"))
    if devices and str(cfg.get("launcher", "local")) != "local":
        raise UserError("give devices= (workers on this machine) or launcher= (jobs), not both")
    if devices and count == 1:
        count = len(devices)  # one shard per device unless told otherwise
    kind = None if devices else launcher_settings(cfg)[0]  # the launcher's file and launcher_params, checked first
    shards = [Shard(i, count) for i in range(count)]
    todo = [shard for shard in shards if remaining(cfg, shard) != 0]  # bad input fails here, before any job
    if todo and kind == "slurm":  # before the line below (a merge alone needs no SLURM)
        refuse_without_slurm(str(cfg.launcher), "launcher=submitit_local (the same jobs as local processes)")
    console = stderr_console()
    if todo:
        console.print(
            f"{len(todo)} of {count} shard(s) have work left; {count - len(todo)} none (done before, or no prompt row "
            "of their own)"
        )
        if devices:
            check_worker_devices(devices)
            record_launch(cfg, count, devices)
            failed = run_on_devices(cfg, run, todo, devices)
        else:
            failed = run_array(cfg, run, todo, batched)
        if failed:
            raise UserError(
                f"{len(failed)} of {len(todo)} shard(s) failed (lines above); rerun the same command to run only "
                "the unfinished shards"
            )
    return merge(cfg, count)


def record_launch(cfg: DictConfig, count: int, on: list[str] | str, jobs: list[str] | None = None) -> None:
    """This command's own record, once its shards run: a failed shard ends it as failed (only the merge wrote it,
    so a launch ending at a failed shard left its shards' records and none of the command typed)."""
    record_invocation(cfg.out, config=cfg, shards=count, launched_on=on, **({"jobs": jobs} if jobs else {}))


# ------------------------------------------------------------------------------------------------- the job


@dataclass
class ShardJob:
    """One shard of a command: what a SLURM array task (or a local worker) runs. Resumable, so a requeue after
    SIGUSR2 (timeout, preemption) simply runs it again; with `batched`, the batch in hand was finished and stored
    before the requeue, so nothing stored is computed twice."""

    run: Runner
    cfg: DictConfig
    shard: Shard
    device: str | None = None
    command: str = "library"
    argv: tuple[str, ...] = ()
    batched: bool = False  # run calls shards.batch_done(): SIGUSR2 is held until the current batch is written

    def __call__(self) -> str:
        # a worker's own device (devices=) in place of any typed; a SLURM job keeps the typed one
        device = [f"device={self.device}"] if self.device is not None else []
        begin(f"{self.command}", [*shard_argv(self.argv, own_device=bool(device)), *device, f"shard={self.shard}"])
        cfg = self.cfg.copy()
        OmegaConf.set_struct(cfg, False)
        cfg.shard, cfg.launcher, cfg.devices = str(self.shard), "local", None
        if self.device is not None:
            cfg.device = self.device
        code = 1  # how the shard's record says it ended, as the command line's own records do
        try:
            with _usr2_between_batches(self.batched):
                self.run(cfg)
            code = 0
        except UserError:
            code = 2
            raise
        except KeyboardInterrupt:
            code = 130
            raise
        finally:
            finish(code)
        return str(self.shard)

    def checkpoint(self, *args: Any, **kwargs: Any):
        """submitit calls this on SIGUSR2; the returned submission is requeued and resumes from the run directory."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def shard_argv(argv: tuple[str, ...], own_device: bool = False) -> list[str]:
    """The launching command's overrides without its launch keys (and its device=, where the shard has its own):
    with `shard=I/N` added, the command line that runs this one shard by hand (`devices=cpu:2 shard=0/4` is
    refused: devices= runs every shard)."""
    launch = (*LAUNCH_KEYS, "device") if own_device else LAUNCH_KEYS
    return [item for item in argv if item.partition("=")[0].lstrip("+~").split(".")[0] not in launch]


@contextmanager
def _usr2_between_batches(batched: bool) -> Iterator[None]:
    """submitit's SIGUSR2 handler checkpoints, requeues and exits at once, in the middle of a batch. For a batched
    command the signal is held instead and handed to that handler when the current batch has been written
    (`shards.batch_done`), after the command has stored what it holds in memory (`shards.saving`: fid's
    statistics so far, diversity's new embeddings); a run that ends first simply finishes."""
    previous = signal.getsignal(signal.SIGUSR2)
    if not batched or not callable(previous) or threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[tuple[int, Any]] = []

    def hold(signum: int, frame: Any) -> None:
        received.append((signum, frame))

    def release() -> None:
        if received:
            save_progress()  # what the command holds in memory (a metric's statistics so far) goes to disk first
            previous(*received[0])  # submitit: checkpoint, requeue, exit

    signal.signal(signal.SIGUSR2, hold)
    try:
        with on_batch_done(release):
            yield
    finally:
        signal.signal(signal.SIGUSR2, previous)


def _jobs(
    cfg: DictConfig, run: Runner, shards: list[Shard], devices: list[str | None], batched: bool = False
) -> list[ShardJob]:
    invocation = current()
    return [
        ShardJob(run, cfg, shard, devices[i % len(devices)], invocation.command, tuple(invocation.argv), batched)
        for i, shard in enumerate(shards)
    ]


# ----------------------------------------------------------------------------------------------- launchers


def launchers() -> list[str]:
    return ["local", *dict.fromkeys(["slurm", "submitit_local", *available("hydra/launcher")])]


def launcher_params(cfg: DictConfig) -> DictConfig:
    """`launcher_params`, a group (empty when not given); checked whatever the launcher, since a value that is not a
    group is a mistake even where launcher=local reads none of it."""
    params = cfg.get("launcher_params")
    params = OmegaConf.create({}) if params is None else params
    if not isinstance(params, DictConfig):
        raise UserError(
            f"launcher_params={show(params)}: launcher_params is a group of the launcher's settings "
            "(launcher_params.timeout_min=60, launcher_params.gpus_per_node=1)"
        )
    return params


def launcher_settings(cfg: DictConfig) -> tuple[str, dict[str, Any]]:
    """("slurm" | "local", settings): the launcher file over the plugin's defaults, then `launcher_params`."""
    name = str(cfg.launcher)
    if name not in launchers():
        raise UserError(
            f"unknown launcher '{name}'{did_you_mean(name, launchers()) or ';'} choose one of: {', '.join(launchers())}"
        )
    return queue_settings(name, launcher_params(cfg))


def queue_settings(name: str, params: DictConfig) -> tuple[str, dict[str, Any]]:
    """("slurm" | "local", settings) of the launcher `name` (its file, else the plugin's own queue) with `params`
    over it, each key and type checked against the plugin's queue config: one line, not Hydra's traceback."""
    from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf

    files = [folder / "hydra" / "launcher" / f"{name}.yaml" for folder in search_dirs()]
    found = next((path for path in files if path.is_file()), None)
    given = OmegaConf.load(found) if found is not None else OmegaConf.create({})
    defaults = [str(item) for item in given.pop("defaults", [])] if "defaults" in given else []
    kind = "local" if name in LOCAL_KINDS or any(d in LOCAL_KINDS for d in defaults) else "slurm"
    queue = LocalQueueConf if kind == "local" else SlurmQueueConf
    schema = OmegaConf.structured(queue)  # types checked
    unknown = [key for key in [*given, *params] if key not in schema]
    if unknown:
        hint = did_you_mean(str(unknown[0]), list(schema))
        raise UserError(f"launcher {name}: no setting '{unknown[0]}' in {queue.__name__}{hint}")
    try:
        merged = OmegaConf.merge(schema, given, params)
    except Exception as err:  # a mistyped value, in one line
        raise UserError(f"launcher {name}: {first_line(err)}") from None
    settings = OmegaConf.to_container(merged, resolve=False)
    for key in ("submitit_folder", "_target_"):
        settings.pop(key, None)  # the run directory decides where logs go
    settings["name"] = str(given.get("name", "diversity-cli"))  # the plugin's default interpolates hydra.job
    return kind, settings


def refuse_without_slurm(launcher: str, instead: str) -> None:
    """One line where SLURM's commands are missing: submitit submits with sbatch and refuses to start without srun
    (each job's worker runs through it), with a traceback."""
    missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
    if missing:
        raise UserError(
            f"launcher={launcher} submits SLURM jobs, but {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not on this machine; run on the cluster's login node, or use "
            f"{instead}"
        )


def make_executor(cfg: DictConfig, folder: Path, name: str):
    """A submitit executor for the launcher, parameters mapped the way hydra-submitit-launcher maps them."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    kind, settings = launcher_settings(cfg)
    if kind == "slurm":
        refuse_without_slurm(str(cfg.launcher), "launcher=submitit_local (the same jobs as local processes)")
    executor = submitit.AutoExecutor(
        folder=folder, cluster=kind, **{f"{kind}_max_num_timeout": settings.pop("max_num_timeout", 0)}
    )
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    settings["name"] = f"diversity-{name}"  # e.g. diversity-generate-64shards in squeue
    executor.update_parameters(**{key if key in base else f"{kind}_{key}": value for key, value in settings.items()})
    return executor


def run_array(cfg: DictConfig, run: Runner, shards: list[Shard], batched: bool = False) -> list[Shard]:
    """Submit the shards as one array job, wait with a status line, name each failed shard; returns the failed."""
    out = Path(cfg.out)
    folder = (out / SHARDS / "logs").resolve()
    made = [path for path in (out, out / SHARDS, folder) if not path.exists()]
    executor = make_executor(cfg, folder / "%j", f"{current().command}-{shards[0].count}shards")
    try:
        jobs = submit(cfg, executor, _jobs(cfg, run, shards, [None], batched))
    except UserError:  # nothing was submitted: the folders made for it go (submitit's pickles in a new log folder)
        if folder in made:
            shutil.rmtree(folder, ignore_errors=True)
        for empty in reversed(made):
            with contextlib.suppress(OSError):
                empty.rmdir()
        raise
    write_jobs(out, shards, jobs)
    record_launch(cfg, shards[0].count, str(cfg.launcher), [str(job.job_id) for job in jobs])
    console = stderr_console()
    console.print(f"submitted {len(jobs)} shard(s) through {cfg.launcher} (job {jobs[0].job_id}); logs: {folder}")
    try:
        failed = wait(jobs, shards, console)
    except KeyboardInterrupt:
        left_running(jobs, launcher_settings(cfg)[0], console)
        raise
    with contextlib.suppress(OSError):  # submitit makes the folder's template `%j` itself; each job's is its id
        (folder / "%j").rmdir()
    return failed


def submit(cfg: DictConfig, executor, jobs: list) -> list:
    """The array submitted; sbatch refusing it (no cluster configured here, a bad partition) is one line."""
    from submitit.core.utils import FailedJobError

    try:
        return executor.submit_array(jobs)
    except (FailedJobError, OSError) as err:
        raise UserError(
            f"launcher={cfg.launcher}: the cluster refused the submission ({first_line(err)}); check its settings "
            "(+launcher_params.partition=...), or use launcher=submitit_local (the same jobs as local processes)"
        ) from None


def write_jobs(out: Path, shards: list[Shard], jobs: list) -> None:
    """shards/jobs.json: shard -> job id and log files, for scancel / sacct and for reading a failure."""
    from ..core.atomic import write_text

    path = out / SHARDS / "jobs.json"
    record = json.loads(path.read_text()) if path.is_file() else {}
    for shard, job in zip(shards, jobs, strict=True):
        record[str(shard)] = {
            "job_id": str(job.job_id),
            "stdout": str(job.paths.stdout),
            "stderr": str(job.paths.stderr),
        }
    write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")


def left_running(jobs: list, kind: str, console) -> None:
    """This command interrupted while its shard jobs run: they go on (submitit's local jobs as well as a cluster's:
    a local job ignores SIGTERM, and SIGINT to its controller prints that process's traceback here), so the user is
    told which and how to stop them; a rerun meanwhile waits on their writer locks and makes no image twice."""
    active = [job for job in jobs if not job.done()]
    if not active:
        return
    ids = " ".join(str(job.job_id) for job in active)
    # a local job's id is its controller's pid: its shard is that process's child
    stop = f"`pkill -INT -P {ids.replace(' ', ',')}`" if kind == "local" else f"`scancel {ids}`"
    console.print(
        f"[yellow]note[/]: {len(active)} shard job(s) go on running to the end of their shards ({stop} stops them); "
        "rerun the same command once they end to merge"
    )


def wait(jobs: list, shards: list[Shard], console, poll_s: float = 2.0) -> list[Shard]:
    """Poll until every job has ended; one status line whenever the counts change."""
    ended: dict[int, bool] = {}  # job index -> succeeded
    unknown_since: dict[str, float] = {}  # job id -> when sacct first did not know it
    last = ""
    watcher = getattr(jobs[0], "watcher", None)  # SLURM: one sacct call per poll for every job
    while len(ended) < len(jobs):
        if watcher is not None and hasattr(watcher, "update"):
            try:
                watcher.update()
            except Exception:  # sacct can hiccup; the next poll asks again
                pass
        states = {}
        for i, job in enumerate(jobs):
            if i not in ended and (job.done() or _vanished(job, unknown_since)):
                ended[i] = job.paths.result_pickle.exists() and job.exception() is None
                if not ended[i]:
                    console.print(
                        f"[red]shard {shards[i]} failed[/] (job {job.job_id}, {_state(job)}): log {job.paths.stderr}"
                    )
            states[i] = "done" if ended.get(i) else "failed" if i in ended else _state(job)
        running = sum(1 for s in states.values() if s == "RUNNING")
        done = sum(1 for s in states.values() if s == "done")
        failed = sum(1 for s in states.values() if s == "failed")
        line = f"shards: {done} done, {running} running, {len(jobs) - done - running - failed} waiting, {failed} failed"
        if line != last:
            console.print(line)
            last = line
        if len(ended) < len(jobs):
            time.sleep(poll_s)
    return [shards[i] for i, ok in sorted(ended.items()) if not ok]


def _vanished(job, unknown_since: dict[str, float], grace_s: float = 30.0) -> bool:
    """An array task cancelled while still pending leaves no record in sacct, so submitit never calls it done:
    unknown to sacct for `grace_s` and absent from squeue counts as ended (without a result: failed)."""
    if _state(job) not in ("UNKNOWN", "READY") or job.paths.result_pickle.exists():
        unknown_since.pop(str(job.job_id), None)
        return False
    first = unknown_since.setdefault(str(job.job_id), time.monotonic())
    if time.monotonic() - first < grace_s or not isinstance(job, _slurm_job_class()):
        return False
    import subprocess

    try:
        queued = subprocess.run(["squeue", "-h", "-j", str(job.job_id)], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return queued.returncode != 0 or not queued.stdout.strip()


def _slurm_job_class() -> type:
    from submitit.slurm.slurm import SlurmJob

    return SlurmJob


def _state(job) -> str:
    try:
        return str(job.state).split()[0]
    except Exception:  # sacct can hiccup; the next poll asks again
        return "UNKNOWN"


# ----------------------------------------------------------------------------------------------- devices


def parse_devices(value: object) -> list[str]:
    """`cpu:2` -> [cpu, cpu]; `all` -> every visible GPU (one cpu worker without one); a list -> as given."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text == "all":
            import torch

            count = torch.cuda.device_count()
            return [f"cuda:{i}" for i in range(count)] if count else ["cpu"]
        kind, _, number = text.partition(":")
        if kind == "cpu" and number.isdigit() and int(number) >= 1:
            return ["cpu"] * int(number)
        items = [text]
    else:
        items = [str(item) for item in value]  # type: ignore[union-attr]
    # An empty list would fall through to the job launcher; a cpu worker has no index (cpu:N counts workers).
    if not items or not all(_one_device(item) for item in items):
        raise UserError(
            f"devices={show(value)}: give cpu:N (N >= 1 cpu workers), all (every GPU) or a list like [cuda:0,cuda:1]"
        )
    return items


def check_worker_devices(devices: list[str]) -> None:
    """Each GPU among `devices` is on this machine: one line before any worker starts (torch imported only then)."""
    gpus = [name for name in dict.fromkeys(devices) if name.startswith(("cuda", "mps"))]
    if gpus:
        from ..core.device import check_device

        for name in gpus:
            check_device(name, f"devices= names {name}", "devices=cpu:N (N cpu workers) or devices=all")


def _one_device(item: str) -> bool:
    kind, colon, index = item.partition(":")
    return item == "cpu" or kind in ("cuda", "mps") and (not colon or index.isdigit())


def run_on_devices(cfg: DictConfig, run: Runner, shards: list[Shard], devices: list[str]) -> list[Shard]:
    """One worker process per device; the shards go to the devices round-robin. Returns the failed shards."""
    console = stderr_console()
    console.print(f"{len(shards)} shard(s) on {len(devices)} worker(s): {', '.join(devices)}")
    threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    context = get_context("spawn")  # a clean interpreter per worker: no forked torch state

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(1, mp_context=context, initializer=_worker_init, initargs=(threads,))

    pools = [new_pool() for _ in devices]
    # One job at a time per worker, the next handed over when it ends: a pool queues a submitted job into its worker
    # at once, so after Ctrl-C (which the worker obeys by stopping its shard) it went on through the next shard.
    waiting = [[] for _ in devices]
    for i, (shard, job) in enumerate(zip(shards, _jobs(cfg, run, shards, devices), strict=True)):
        waiting[i % len(devices)].append((shard, job))
    running: dict[Future, tuple[int, Shard]] = {}

    def start(worker: int) -> None:
        if not waiting[worker]:
            return
        shard, job = waiting[worker].pop(0)
        try:
            future = pools[worker].submit(job)
        except BrokenProcessPool:  # its process died with the last shard (memory, a signal): a fresh one goes on
            pools[worker].shutdown(cancel_futures=True)
            pools[worker] = new_pool()
            future = pools[worker].submit(job)
        running[future] = (worker, shard)

    try:
        for worker in range(len(devices)):
            start(worker)
        failed = []
        while running:
            for future in futures.wait(running, return_when=futures.FIRST_COMPLETED).done:
                worker, shard = running.pop(future)
                try:
                    future.result()
                except UserError:
                    raise
                except Exception as err:
                    console.print(f"[red]shard {shard} failed[/]: {type(err).__name__}: {err}")
                    failed.append(shard)
                start(worker)
        return sorted(failed, key=lambda shard: shard.index)
    finally:
        for pool in pools:
            pool.shutdown(cancel_futures=True)


def _worker_init(threads: int) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)
    sys.stdout.flush()
