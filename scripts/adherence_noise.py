"""Diagnostic: how finely the toy protocol's per-prompt adherence (n = 64 samples) resolves a gap, measured by
comparing one model with itself.

The toy students' target reads "adherence >= the base's - 0.05 on every prompt". This samples `draws` disjoint
blocks of 64 seeds for each of the protocol's 18 prompts from one method of a toy pair (block 0 is the protocol's
own seeds, 0..63) and, for every ordered pair of blocks, counts the prompts where the second reads more than 0.05
below the first: how often a model misses that target against itself.

    python scripts/adherence_noise.py model=toy method=base draws=8 out=results/adherence_noise.csv

Writes one row per (prompt, draw) to `out` and prints the summary.
"""

from __future__ import annotations

import csv
import itertools
import sys
from pathlib import Path

import torch

from diversity_cli.core.config import compose
from diversity_cli.models.hub import method_roles
from diversity_cli.models.loading import load_pair
from diversity_cli.toy.features import adherent_mask, load_classifier
from diversity_cli.toy.protocol import PER_PROMPT, PROMPTS, sample

MARGIN = 0.05  # the targets' "within 0.05 of the base"


def misses(adherence: dict[str, list[float]], first: int, second: int) -> int:
    """Prompts whose adherence in draw `second` is more than MARGIN below draw `first`'s."""
    return sum(values[second] < values[first] - MARGIN - 1e-9 for values in adherence.values())


def main(argv: list[str]) -> int:
    args = dict(item.split("=", 1) for item in argv if "=" in item)
    method, draws = args.pop("method", "base"), int(args.pop("draws", "8"))
    out = Path(args.pop("out", "results/adherence_noise.csv"))
    if method not in ("base", "distilled") or draws < 2 or len(args) != sum(k.startswith("model") for k in args):
        print("usage: python scripts/adherence_noise.py model=<toy pair> method=base|distilled draws=N>=2 out=<csv>",
              file=sys.stderr)  # fmt: skip
        return 2
    cfg = compose("generate", [f"{key}={value}" for key, value in args.items()])
    torch.manual_seed(0)
    pair = load_pair(cfg.model, torch.device("cpu"), torch.float32, method_roles(cfg.model, method))
    classifier = load_classifier("cpu")
    adherence: dict[str, list[float]] = {}
    rows = []
    for prompt in PROMPTS:
        for draw in range(draws):
            seeds = list(range(draw * PER_PROMPT, (draw + 1) * PER_PROMPT))
            value = adherent_mask(sample(pair, method, [prompt] * PER_PROMPT, seeds), prompt, classifier).float().mean()
            adherence.setdefault(prompt, []).append(value.item())
            rows.append({"prompt": prompt, "draw": draw, "first_seed": seeds[0], "adherence": value.item()})
        print(f"{prompt:36s} " + " ".join(f"{v:.3f}" for v in adherence[prompt]), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    counts = [misses(adherence, a, b) for a, b in itertools.permutations(range(draws), 2)]
    print(
        f"{cfg.model.name} {method} against itself, {draws} draws of {PER_PROMPT} seeds, {len(counts)} ordered pairs: "
        f"prompts more than {MARGIN} below: mean {sum(counts) / len(counts):.2f}, max {max(counts)}; "
        f"pairs with none: {sum(c == 0 for c in counts)} of {len(counts)}; wrote {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
