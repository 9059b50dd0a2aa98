"""README's toy table: every method of the toy pair under the fixed measurement protocol (toy/protocol.py).

Rows: the base, the DMD student, hybrid k=1, hybrid k=auto (k as `generate k=auto` resolves it), hybrid k=1 with
the base's own steps over the student's first (`base_steps`, at CFG 0 and at the base's CFG) and the DP-DMD
student. Columns: toy_features diversity, the mean over the protocol's prompts with a 95% interval (each prompt's
bootstrap interval, pooled as Table 3 pools them), adherence (mean and the worst prompt), diversity over the
adherent samples only, fid_toyfeat beside its ground-truth floor, the factor its fid images draw furthest from the
ground truth where their captions leave it free (total variation of the value shares), and seconds per image.

    python -m diversity_cli.experiments.toy_table out=results/toy/toy_table

Writes `protocol.csv` (one row per method and prompt), `fid.csv`, `free.csv` (free-factor shares), `summary.csv`,
`toy_table.md` and `provenance.json` (the pairs' weights, the judge, the versions) under `out`.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..core.arguments import key_values
from ..core.atomic import write_text
from ..metrics.diversity import bootstrap_mean_pairwise, pooled_interval
from ..models.hub import method_roles
from ..models.provenance import pair_provenance
from ..sampling.tags import run_tag
from ..toy.data import FACTORS
from ..toy.protocol import (
    FID_COUNT,
    factor_shares,
    fid_row,
    finite_mean,
    measure,
    total_variation,
    write_csv,
)
from ..toy.release import base_label


def pair_settings(name: str):
    """The model config of the pair `name` (conf/model/<name>.yaml), as every command composes it."""
    from ..core.config import compose

    return compose("generate", [f"model={name}"]).model


# The base's own steps over the student's first step (999 -> 749) in the hybrid rows that give it them: the toy base's
# 25-step DDIM schedule does not land on 749, a 20-step one does, in 5 steps. One base step on the student's schedule
# hands over the base's x̂0 at t=999, pure noise on the toy's schedule: the prompt's mean image, not a sample.
OWN_STEPS = 5


def table_rows(
    model: str = "toy", dpdmd: str = "toy_dpdmd", settings: Callable[[str], Any] = pair_settings
) -> list[tuple[str, str, str]]:
    """(row label, pair, protocol method); "hybrid_kauto" is resolved to hybrid_k<K> by the pair's own k=auto.
    `model`: the base + DMD pair, `dpdmd`: the same base + DP-DMD pair (a retrained pair before it ships). The labels
    carry each pair's own sampler settings, read from its config (a chain at another CFG says so)."""
    pair, dp_pair = settings(model), settings(dpdmd)
    scales = dict.fromkeys((0.0, float(pair.base.guidance)))  # one row when the pair samples its base at 0
    own_steps = [
        (
            f"hybrid k=1 on the DMD student, the base's own {OWN_STEPS} steps at CFG {g:g}",
            model,
            run_tag("hybrid", 1, g, OWN_STEPS),
        )
        for g in scales
    ]
    return [
        (base_label(pair), model, "base"),
        (f"DMD student ({pair.distilled.steps} steps)", model, "distilled"),
        ("hybrid k=1 on the DMD student", model, "hybrid_k1"),
        ("hybrid k=auto on the DMD student", model, "hybrid_kauto"),
        *own_steps,
        (f"DP-DMD student ({dp_pair.distilled.steps} steps)", dpdmd, "distilled"),
    ]


BOOTSTRAP = 1000


def cosine_interval(features: torch.Tensor) -> tuple[float, float]:
    """95% bootstrap interval of the mean pairwise cosine distance (the protocol's diversity)."""
    normed = torch.nn.functional.normalize(features.double(), dim=1)
    return bootstrap_mean_pairwise(1 - normed @ normed.T, BOOTSTRAP, 0.95, 0)


def resolve_auto(model: str) -> tuple[int, int]:
    """(k, committed timestep) for `model`, exactly as `generate model=<model> method=hybrid k=auto` gets it."""
    from ..core.config import compose
    from .generation import automatic_k, load_generation_pair

    cfg = compose("generate", [f"model={model}", "method=hybrid", "k=auto", "device=cpu"])
    pair = load_generation_pair(cfg)
    k, record = automatic_k(pair, cfg)
    return k, int(record["committed_timestep"])


def furthest_free_factor(free_rows: list[dict], method: str) -> dict:
    """The factor `method` draws furthest from the ground truth where captions leave it free, with that distance
    and the value it over-draws most (its share beside the ground truth's)."""
    factor = max(FACTORS, key=lambda f: total_variation(free_rows, method, f))
    share = factor_shares(free_rows, factor)
    value = max(FACTORS[factor], key=lambda v: share[(method, v)] - share[("truth", v)])
    return {
        "free_factor": factor,
        "free_tv": total_variation(free_rows, method, factor),
        "free_value": value,
        "free_share": share[(method, value)],
        "free_truth_share": share[("truth", value)],
    }


def summarise(label: str, method: str, prompt_rows: list[dict], fid: dict, floor: float) -> dict:
    """One table row from a method's per-prompt rows and its FID row."""
    k = len(prompt_rows)
    mean, low, high = pooled_interval(
        [r["diversity"] for r in prompt_rows],
        [r["diversity_ci_low"] for r in prompt_rows],
        [r["diversity_ci_high"] for r in prompt_rows],
    )
    adherence = [r["adherence"] for r in prompt_rows]
    adherent, adherent_prompts = finite_mean(prompt_rows, "adherent_diversity")
    worst = min(prompt_rows, key=lambda r: r["adherence"])
    return {
        "method": label,
        "protocol_method": method,
        "prompts": k,
        "n_per_prompt": prompt_rows[0]["n"],
        "diversity": mean,
        "diversity_ci_low": low,
        "diversity_ci_high": high,
        "adherent_diversity": adherent,
        "adherent_prompts": adherent_prompts,
        "truth_diversity": sum(r["truth_diversity"] for r in prompt_rows) / k,
        "adherence": sum(adherence) / k,
        "adherence_min": worst["adherence"],
        "adherence_min_prompt": worst["prompt"],
        "fid_toyfeat": fid["fid_toyfeat"],
        "fid_x_floor": fid["fid_toyfeat"] / floor,
        "fid_n": fid["n"],
        **{key: fid[key] for key in ("free_factor", "free_tv", "free_value", "free_share", "free_truth_share")},
        "s_per_image": fid["seconds"] / fid["n"],
    }


def _over(row: dict) -> str:
    """Adherent-only diversity is a mean over the prompts with two or more adherent samples: say so when not all."""
    return (
        "" if row["adherent_prompts"] == row["prompts"] else f" ({row['adherent_prompts']} of {row['prompts']} prompts)"
    )


def markdown(rows: list[dict], floor: float, command: str, through_vae: float = math.nan) -> str:
    """The table; `through_vae`, where measured, is the ground truth's fid_toyfeat after the pairs' VAE round trip:
    the part of every model's distance from the floor that the VAE alone accounts for."""
    vae = "" if math.isnan(through_vae) else f"; through the VAE {through_vae:.1f} ({through_vae / floor:.2f}x)"
    lines = [
        f"Measured by `{command}` (toy_features judge frozen; {rows[0]['prompts']} prompts x "
        f"n={rows[0]['n_per_prompt']} seeds 0..{rows[0]['n_per_prompt'] - 1}; fid_toyfeat over {rows[0]['fid_n']} "
        f"captions, one seed each, against 1000 reference scenes; ground-truth floor {floor:.1f}{vae}).",
        "",
        "| method | toy_features diversity [95% CI] | adherent-only diversity | adherence mean (worst prompt) "
        "| fid_toyfeat (x floor) | furthest free factor: TV (value share vs truth) | s/image |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['diversity']:.3f} [{r['diversity_ci_low']:.3f}, {r['diversity_ci_high']:.3f}] "
            f"| {r['adherent_diversity']:.3f}{_over(r)} | {r['adherence']:.3f} ({r['adherence_min']:.2f}: "
            f"{r['adherence_min_prompt']}) | {r['fid_toyfeat']:.1f} ({r['fid_x_floor']:.2f}x) "
            f"| {r['free_factor']}: {r['free_tv']:.2f} ({r['free_value']} {r['free_share']:.2f} vs "
            f"{r['free_truth_share']:.2f}) | {r['s_per_image']:.4f} |"
        )
    truth = rows[0]["truth_diversity"]
    lines += [
        "",
        f"Ground truth's toy_features diversity over the same prompts: {truth:.3f} (adherence 1.000).",
        "",
        "Free factor: over the fid_toyfeat images whose caption leaves a factor unnamed, the share of each of its",
        "values the judge sees; the factor whose shares are furthest from the ground truth's (total variation",
        "distance, 0 to 1) and its most over-drawn value. `free.csv` holds every factor's shares.",
    ]
    return "\n".join(lines) + "\n"


def build(out: Path, rows: list[tuple[str, str, str]], log=print) -> Path:
    from ..models.loading import load_pair
    from ..toy.features import load_classifier

    classifier = load_classifier("cpu")
    auto = {model: resolve_auto(model) for _, model, method in rows if method == "hybrid_kauto"}
    summary, every_prompt, every_fid, every_free = [], [], [], []
    floor = through_vae = math.nan
    weights: dict[str, dict] = {}
    for label, model, method in rows:
        if method == "hybrid_kauto":
            k, committed = auto[model]
            method = f"hybrid_k{k}"
            label = f"{label} (= {k}: base commits at t={committed})"
        settings = pair_settings(model)
        torch.manual_seed(0)
        pair = load_pair(settings, torch.device("cpu"), torch.float32, method_roles(settings, method))
        weights.setdefault(model, pair_provenance(settings, pair))
        fid_rows, prompt_rows, free_rows = measure(pair, [method], classifier, log, interval=cosine_interval)
        floor = fid_row(fid_rows, "truth")["fid_toyfeat"]
        through_vae = fid_row(fid_rows, "truth_vae")["fid_toyfeat"]
        fid = {**fid_row(fid_rows, method), "n": FID_COUNT, **furthest_free_factor(free_rows, method)}
        every_fid += [{"model": model, **row} for row in fid_rows]
        every_prompt += [{"model": model, **row} for row in prompt_rows]
        every_free += [{"model": model, **row} for row in free_rows]
        summary.append(summarise(label, method, prompt_rows, fid, floor))
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "protocol.csv", every_prompt)
    write_csv(out / "fid.csv", every_fid)
    write_csv(out / "free.csv", every_free)
    write_csv(out / "summary.csv", summary)
    command = f"python -m diversity_cli.experiments.toy_table out={out} model={rows[0][1]} dpdmd={rows[-1][1]}"
    write_text(out / "toy_table.md", markdown(summary, floor, command, through_vae))
    write_provenance(out, command, weights)
    return out / "toy_table.md"


def write_provenance(out: Path, command: str, weights: dict[str, dict]) -> None:
    """What made the numbers: the command, the pairs' weights (source and hash per role), the judge's hash and the
    versions, beside the tables (provenance.json)."""
    from ..core.record import git_commit, package_versions
    from ..toy.features import judge_sha256

    record = {
        "command": command,
        "pairs": weights,
        "judge_sha256": judge_sha256(),
        "packages": package_versions(),
        "git_commit": git_commit(),
    }
    write_text(out / "provenance.json", json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = key_values(argv if argv is not None else sys.argv[1:], ("out", "model", "dpdmd"), "toy_table")
    if args is None:
        print(__doc__.strip())
        return 0
    rows = table_rows(args.get("model", "toy"), args.get("dpdmd", "toy_dpdmd"))
    path = build(Path(args.get("out", "results/toy/toy_table")), rows)
    print(path.read_text(encoding="utf-8"))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    from ..core.errors import run_main

    raise SystemExit(run_main(main))
