"""Throughput of the toy Table 2 pipeline in one process vs. N local shards (one worker per CPU device).

    python scripts/bench_shards.py --limit 32 --shards 2

Runs, each time in a fresh run directory: `generate` of base, distilled and hybrid (k=1) over the first --limit toy
captions, one seed each, then `fid reference=toy`; once plainly and once with `devices=cpu:N` (N worker processes,
merged). Prints wall seconds, images per second and the ratio, and checks the two runs made the same images.
Each worker is given --threads torch threads (default 1), so the comparison is N cores against one.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METHODS = ("base", "distilled", "hybrid")


def pipeline(out: Path, limit: int, extra: list[str], threads: int) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads)}
    began = time.perf_counter()
    for method in METHODS:
        args = [f"method={method}", "k=1", "n=1", "prompts=data/toy_captions.csv", f"limit={limit}", f"out={out}"]
        subprocess.run([sys.executable, "-m", "diversity_cli", "generate", *args, *extra], env=env, check=True,
                       capture_output=True)  # fmt: skip
    subprocess.run([sys.executable, "-m", "diversity_cli", "fid", f"out={out}", "reference=toy", *extra], env=env,
                   check=True, capture_output=True)  # fmt: skip
    return time.perf_counter() - began


def images(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.png")) if "toy" in p.parts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=32, help="toy captions (images per method)")
    parser.add_argument("--shards", type=int, default=2, help="local CPU workers (devices=cpu:N)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    args = parser.parse_args()
    os.chdir(Path(__file__).resolve().parents[1])
    count = args.limit * len(METHODS)
    with tempfile.TemporaryDirectory() as folder:
        one, many = Path(folder) / "one", Path(folder) / "many"
        t_one = pipeline(one, args.limit, [], args.threads)
        t_many = pipeline(many, args.limit, [f"devices=cpu:{args.shards}"], args.threads)
        same = images(one) == images(many)
    print(f"toy Table 2 pipeline: {count} images (3 methods x {args.limit} captions) + fid, on {os.cpu_count()} cores")
    print(f"1 process:   {t_one:7.1f} s  {count / t_one:6.2f} images/s")
    print(f"{args.shards} shards:    {t_many:7.1f} s  {count / t_many:6.2f} images/s")
    print(f"ratio (N shards / 1): {t_one / t_many:.2f}x   images identical: {same}")


if __name__ == "__main__":
    main()
