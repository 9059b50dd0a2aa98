"""Shards: one command's cases split over N jobs by case index, and the pieces put back together.

A case is the unit a shard owns whole: a prompt row with all its seeds (a COCO caption for Tables 2 and 4, a prompt
for Tables 3, D.1, E.1), or, for a metric, a block of a group's rows. Shard I of N takes the contiguous block
[I*U//N, (I+1)*U//N) of the U cases, so what a case produces never depends on N (an image depends on its prompt
and seed only), and the blocks read back in order make exactly the unsharded table.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ..core.errors import UserError

# the settings that say how a command is split and where its shards run: no shard's result depends on them
LAUNCH_KEYS = ("shard", "shards", "devices", "launcher", "launcher_params")
SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    index: int  # 0-based
    count: int

    def block(self, total: int) -> range:
        """The case indices of this shard among `total` cases."""
        return range(self.index * total // self.count, (self.index + 1) * total // self.count)

    @property
    def name(self) -> str:
        return f"{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(value: object) -> Shard | None:
    """`shard=I/N` (0 <= I < N), `shard=auto` (inside a SLURM array: SLURM_ARRAY_TASK_ID of
    SLURM_ARRAY_TASK_COUNT; outside one: no shard), or null (no shard)."""
    if value is None or str(value).strip().lower() in ("", "null", "none"):
        return None
    text = str(value).strip()
    if text == "auto":
        task, count = os.environ.get("SLURM_ARRAY_TASK_ID"), os.environ.get("SLURM_ARRAY_TASK_COUNT")
        if task is None or count is None:
            return None
        return _slurm_array_shard(task, count)
    match = SHARD.match(text)
    if not match:
        raise UserError(f"shard={text}: give I/N (shard I of N, 0 <= I < N, e.g. shard=0/4), auto or null")
    return _checked(int(match[1]), int(match[2]), f"shard={text}")


def _slurm_array_shard(task: str, count: str) -> Shard:
    """This task's position in its SLURM array as a shard. Task ids need not start at 0 (`--array=2-5`) nor be
    consecutive (`--array=0-8:4` runs 0, 4, 8): the position is (id - min) / step, so the shards are 0/3, 1/3,
    2/3 (id - min alone gave 4/3 and 8/3, refused, and shard 1/3 never ran). A task whose id no even step from
    min reaches is refused (task 2 of `--array=1,2,5`; tasks 1 and 5 cannot tell, and run as shards 0/3 and 2/3)."""
    what = f"shard=auto (SLURM_ARRAY_TASK_ID={task} of SLURM_ARRAY_TASK_COUNT={count})"
    try:
        number, total = int(task), int(count)
        first = int(os.environ.get("SLURM_ARRAY_TASK_MIN", task if total == 1 else "0"))
        last = int(os.environ.get("SLURM_ARRAY_TASK_MAX", str(first + total - 1)))
    except ValueError:
        raise UserError(f"{what}: SLURM's array variables are not integers; give shard=I/N instead") from None
    span = last - first
    step = span // (total - 1) if total > 1 else 1
    if total > 1 and (span % (total - 1) or step < 1 or (number - first) % step):
        raise UserError(
            f"{what}: the array's ids {first}..{last} are not evenly spaced, so this task's shard is unknown; "
            f"submit --array=0-{total - 1} (or a stepped range such as 0-{2 * (total - 1)}:2), or give shard=I/N"
        )
    return _checked((number - first) // step, total, what)


def _checked(index: int, count: int, what: str) -> Shard:
    if count < 1 or not 0 <= index < count:
        raise UserError(f"{what}: the shard index must be 0..N-1 with N >= 1")
    return Shard(index, count)


def parse_shard_count(value: object) -> int:
    """`shards=N`: how many shards a launcher splits the command into."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UserError(f"shards={value} must be a positive integer (the number of array jobs)")
    return value


_after_batch: list[Callable[[], None]] = []  # set by a shard job (`launch.ShardJob`) for the time it runs
_savers: list[Callable[[], None]] = []  # set by a command for the time it keeps finished work in memory


def batch_done() -> None:
    """A command calls this after each finished batch (its images and rows written): the point where a shard job
    that received SIGUSR2 (time limit near, preemption) checkpoints and requeues without losing work."""
    for hook in list(_after_batch):
        hook()


@contextmanager
def on_batch_done(hook: Callable[[], None]) -> Iterator[None]:
    """Call `hook` at every `batch_done()` while inside the block."""
    _after_batch.append(hook)
    try:
        yield
    finally:
        _after_batch.remove(hook)


@contextmanager
def saving(save: Callable[[], None]) -> Iterator[None]:
    """While inside the block, `save()` stores what the command has finished but still holds in memory (a metric
    shard's statistics of the batches so far, its new embeddings), so that a rerun does not compute it again. A
    shard job calls it (`save_progress`) at the end of a batch, just before it stops for a requeue."""
    _savers.append(save)
    try:
        yield
    finally:
        _savers.remove(save)


def save_progress() -> None:
    """Store every finished piece of work the running command holds in memory (see `saving`)."""
    for save in list(_savers):
        save()
