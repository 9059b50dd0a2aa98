"""The toy pair's fixed measurement protocol, one function per number, judged by the frozen feature network.

- fid_toyfeat: Fréchet distance between toy-feature statistics of >= 1000 generated images (toy captions, one
  seed each) and >= 1000 reference scenes; the ground-truth floor is the same distance for one ground-truth scene
  per caption, so "how far from the floor" is the model's share.
- through the VAE: fid_toyfeat of the same ground-truth scenes after a round trip through the pair's VAE
  (encoded to the posterior mean, decoded): what a model that drew exactly the VAE's latents of the ground truth
  would score, so the part of a model's distance from the floor that its VAE alone accounts for.
- per prompt, n = 64 samples: adherence (all named factors right), toy_features diversity (mean pairwise cosine
  distance), and that diversity over the adherent samples only, beside the ground truth's.
- free factors, over the fid_toyfeat images: for each factor, among the images whose caption leaves it free, the
  share the judge sees of each value, beside the ground truth's. A model can follow every factor its captions name
  and still draw one background for most of the rest: that collapse is diversity lost, and fid_toyfeat counts it.

    python -m diversity_cli.toy.protocol model=toy methods=base,distilled out=results/toy_protocol.csv

Images are quantised to 8 bits as saved PNGs are, so the numbers are those of the files `generate` writes.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..core.atomic import atomic_path, write_text
from ..core.errors import UserError
from ..sampling.tags import parse_tag
from . import is_toy_pair
from .adherence import adherent_diversity
from .data import FACTORS, caption, parse_prompt, render, render_prompt_samples, sample_labels, sample_named
from .evaluate import mean_pairwise_cosine_distance
from .features import ToyClassifier, adherent_mask, load_classifier

if TYPE_CHECKING:
    from diffusers import AutoencoderKL

# The model card's prompts (its evaluation table and its per-factor table) and data/toy_prompts.txt.
PROMPTS = [
    "a shape",
    "a circle",
    "a square",
    "a triangle",
    "a cross",
    "a red square",
    "a red circle",
    "a green shape",
    "a red shape",
    "two triangles",
    "two shapes",
    "a small shape",
    "a large cross on a dark background",
    "a large square on the left",
    "two shapes on a dark background",
    "a shape on a light background",
    "a blue shape on the left",
    "a shape on the right",
]
FID_COUNT = 1000
PER_PROMPT = 64
CAPTION_SEED = 7_000  # the FID captions and their sampling seeds
REFERENCE_SEED = 7_001  # the reference scenes
TRUTH_SEED = 7_002  # the ground truth drawn for each caption / prompt


def fid_captions(n: int = FID_COUNT, seed: int = CAPTION_SEED) -> list[str]:
    """n toy captions drawn as the training data draws them (a random subset of each scene's factors named)."""
    rng = np.random.default_rng(seed)
    labels, named = sample_labels(rng, n), sample_named(rng, n)
    return [caption(labels, named, i) for i in range(n)]


def reference_scenes(n: int = FID_COUNT, seed: int = REFERENCE_SEED) -> torch.Tensor:
    """n scenes of the toy world with uniform factors, float (n, 3, H, W) in [0, 1]."""
    rng = np.random.default_rng(seed)
    return _to_float(render(sample_labels(rng, n), rng))


def ground_truth(captions: list[str], seed: int = TRUTH_SEED) -> torch.Tensor:
    """One ground-truth scene per caption (its named factors fixed, the rest drawn)."""
    return torch.cat([_to_float(render_prompt_samples(c, 1, seed + i)) for i, c in enumerate(captions)])


def _to_float(uint8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(uint8).permute(0, 3, 1, 2).float() / 255


def quantise(images: torch.Tensor) -> torch.Tensor:
    return (images.clamp(0, 1) * 255).round() / 255


@torch.no_grad()
def vae_round_trip(vae: AutoencoderKL, images: torch.Tensor, batch: int = 250) -> torch.Tensor:
    """Images in [0, 1] encoded by `vae` to their posterior mean and decoded back, quantised to 8 bits."""
    parts = []
    for chunk in images.split(batch):
        latents = vae.encode(chunk.to(vae.device, vae.dtype) * 2 - 1).latent_dist.mean
        parts.append(quantise((vae.decode(latents).sample.float().cpu() + 1) / 2))
    return torch.cat(parts)


@torch.no_grad()
def embed(images: torch.Tensor, classifier: ToyClassifier, batch: int = 500) -> torch.Tensor:
    device = next(classifier.parameters()).device
    return torch.cat([classifier.embed(chunk.to(device)).double().cpu() for chunk in images.split(batch)])


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2) of two feature sets (rows are samples), in float64.
    Tr (S_a S_b)^1/2 = Tr (S_a^1/2 S_b S_a^1/2)^1/2, a symmetric matrix's root: stable when the covariances are
    singular (the judge's ReLU features leave some dimensions always zero)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T
    middle = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()
    return float((mu_a - mu_b).pow(2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * middle)


Interval = Callable[[torch.Tensor], tuple[float, float]]


def prompt_row(
    images: torch.Tensor, truth: torch.Tensor, prompt: str, classifier: ToyClassifier, interval: Interval | None = None
) -> dict:
    """Adherence, diversity and adherent-only diversity of one prompt's samples, beside its ground truth's.
    `interval(features)`: a confidence interval of the diversity (the caller's bootstrap), added when given."""
    mask = adherent_mask(images, prompt, classifier)
    features = embed(images, classifier)
    truth_features = embed(truth, classifier)
    low, high = interval(features) if interval else (None, None)
    return {
        "prompt": prompt,
        "n": images.shape[0],
        "adherence": mask.float().mean().item(),
        "diversity": mean_pairwise_cosine_distance(features),
        **({"diversity_ci_low": low, "diversity_ci_high": high} if interval else {}),
        "adherent_diversity": adherent_diversity(features, mask),
        "truth_adherence": adherent_mask(truth, prompt, classifier).float().mean().item(),
        "truth_diversity": mean_pairwise_cosine_distance(truth_features),
        **{f"{factor}_adherence": v for factor, v in factor_adherence(images, prompt, classifier).items()},
    }


@torch.no_grad()
def factor_adherence(images: torch.Tensor, prompt: str, classifier: ToyClassifier) -> dict[str, float]:
    """Per named factor: the fraction of images whose predicted value matches the prompt's."""
    device = next(classifier.parameters()).device
    predicted = classifier.predict(images.to(device))
    return {f: (predicted[f] == v).float().mean().item() for f, v in parse_prompt(prompt).items()}


@torch.no_grad()
def free_factor_rows(method: str, images: torch.Tensor, captions: list[str], classifier: ToyClassifier) -> list[dict]:
    """One row per (factor, value): the share of `images` predicted as that value, over the images whose caption
    does not name the factor (n of them)."""
    device = next(classifier.parameters()).device
    chunks = [classifier.predict(chunk.to(device)) for chunk in images.split(500)]
    named = [parse_prompt(c) for c in captions]
    rows = []
    for factor, values in FACTORS.items():
        free = torch.tensor([factor not in fixed for fixed in named])
        predicted = torch.cat([chunk[factor].cpu() for chunk in chunks])[free]
        counts = torch.bincount(predicted, minlength=len(values)).double()
        shares = counts / max(len(predicted), 1)
        rows += [
            {"method": method, "factor": factor, "value": value, "n": len(predicted), "share": shares[i].item()}
            for i, value in enumerate(values)
        ]
    return rows


def factor_shares(rows: list[dict], factor: str) -> dict[tuple[str, str], float]:
    """(method, value) -> share, from free-factor rows, for one factor."""
    return {(r["method"], r["value"]): float(r["share"]) for r in rows if r["factor"] == factor}


def total_variation(rows: list[dict], method: str, factor: str, against: str = "truth") -> float:
    """Half the L1 distance between two methods' shares of one factor's values (0: the same, 1: disjoint)."""
    share = factor_shares(rows, factor)
    return 0.5 * sum(abs(share[(method, v)] - share[(against, v)]) for v in FACTORS[factor])


def method_settings(method: str) -> tuple[str, int, float, int | None]:
    """(method, k, base_guidance, base_steps) of a protocol method, named as `generate` names its images:
    "base", "distilled", "hybrid_k1", "hybrid_k1_g3_bs5" (the base runs the first distilled step in 5 steps of its
    own at CFG 3), ..."""
    parsed = parse_tag(method)
    if parsed is None:
        raise UserError(
            f"protocol method '{method}': choose base, distilled, skip_first or a tag as generate writes it, "
            "hybrid_k<K>[_g<G>][_bs<N>] or replace_final_k<K>[_g<G>][_bs<N>] (e.g. hybrid_k1, hybrid_k1_g3_bs5)"
        )
    return parsed


def plan_of(pair, method: str):
    """The sampling plan of a protocol method (see `method_settings`)."""
    from ..sampling.chunks import WHOLE_BATCH
    from ..sampling.plan import make_plan

    name, k, guidance, steps = method_settings(method)
    return make_plan(pair, name, k=k, base_guidance=guidance, base_steps=steps, micro_batch=WHOLE_BATCH)


@torch.no_grad()
def sample(pair, method: str, prompts: list[str], seeds: list[int], batch: int = 125) -> torch.Tensor:
    """Decoded samples of `method` (see `plan_of`), one per (prompt, seed), quantised to 8 bits."""
    from ..sampling.sampler import sample_latents

    plan = plan_of(pair, method)
    vae = pair.pipe.vae
    parts = []
    for start in range(0, len(prompts), batch):
        chunk, chunk_seeds = prompts[start : start + batch], seeds[start : start + batch]
        latents = sample_latents(plan, pair.encode(chunk), chunk_seeds, pair.latent_shape, pair.device)
        # one image at a time, as `generate` decodes (`pair.decode`): a batch's convolutions round otherwise, and
        # an image came out one 8-bit level off the file generate writes for its seed
        decoded = torch.cat([vae.decode(one / vae.config.scaling_factor).sample for one in latents.split(1)])
        parts.append(quantise((decoded.float().cpu() + 1) / 2))
    return torch.cat(parts)


def measure(
    pair, methods: list[str], classifier: ToyClassifier, log=print, interval: Interval | None = None
) -> tuple[list[dict], list[dict], list[dict]]:
    """(FID rows, per-prompt rows, free-factor rows) for each method of `pair`, and the ground truth measured the
    same way."""
    captions = fid_captions()
    reference = embed(reference_scenes(), classifier)
    truth = ground_truth(captions)
    floor = frechet_distance(embed(truth, classifier), reference)
    through_vae = frechet_distance(embed(vae_round_trip(pair.pipe.vae, truth), classifier), reference)
    fid_rows = [{"method": "truth", "fid_toyfeat": floor}, {"method": "truth_vae", "fid_toyfeat": through_vae}]
    free_rows = free_factor_rows("truth", truth, captions, classifier)
    log(f"fid_toyfeat truth (floor): {floor:.2f}; through the VAE: {through_vae:.2f} ({through_vae / floor:.2f}x)")
    prompt_rows = []
    for method in methods:
        began = time.perf_counter()
        images = sample(pair, method, captions, [CAPTION_SEED + i for i in range(len(captions))])
        fid = frechet_distance(embed(images, classifier), reference)
        fid_rows.append({"method": method, "fid_toyfeat": fid, "seconds": time.perf_counter() - began})
        log(f"fid_toyfeat {method}: {fid:.2f} ({fid / floor:.2f}x the floor)")
        free_rows += free_factor_rows(method, images, captions, classifier)
        distances = ", ".join(f"{f} {total_variation(free_rows, method, f):.2f}" for f in FACTORS)
        log(f"  free factors of {method}, total variation to the ground truth's: {distances}")
        for index, prompt in enumerate(PROMPTS):
            images = sample(pair, method, [prompt] * PER_PROMPT, list(range(PER_PROMPT)))
            truth = _to_float(render_prompt_samples(prompt, PER_PROMPT, TRUTH_SEED + 100 * index))
            row = {"method": method, **prompt_row(images, truth, prompt, classifier, interval)}
            prompt_rows.append(row)
            log(
                f"  {method:9s} {prompt:36s} adherence {row['adherence']:.3f}  diversity {row['diversity']:.3f} "
                f"(adherent {row['adherent_diversity']:.3f}, truth {row['truth_diversity']:.3f})"
            )
    return fid_rows, prompt_rows, free_rows


def fid_row(fid_rows: list[dict], method: str) -> dict:
    """The row of `method` among `measure`'s FID rows ("truth": the floor; "truth_vae": through the VAE)."""
    return next(row for row in fid_rows if row["method"] == method)


def finite_mean(rows: list[dict], key: str) -> tuple[float, int]:
    """(mean of `key` over the rows where it is a number, how many): adherent-only diversity is undefined (nan)
    for a prompt with fewer than two adherent samples, and such a prompt is left out, not counted as 0."""
    values = [r[key] for r in rows if r[key] == r[key]]
    return (sum(values) / len(values) if values else float("nan")), len(values)


def record_path(out: Path) -> Path:
    """What made a protocol CSV (protocol.csv -> protocol_run.json): its command line, the pair as resolved,
    versions and commit."""
    return out.with_name(out.stem + "_run.json")


def write_record(out: Path, argv: list[str], model) -> None:
    """The record beside a protocol CSV. The pair is stored resolved: the absolute folders of its weights and every
    setting as sampled, so a reader (the model card) can tell which base the figures describe."""
    from omegaconf import OmegaConf

    from ..core.record import git_commit, package_versions

    body = {
        "command_line": ["python", "-m", "diversity_cli.toy.protocol", *argv],
        "model": OmegaConf.to_container(model, resolve=True),
        "packages": package_versions(),
        "git_commit": git_commit(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(record_path(out), json.dumps(body, indent=2, sort_keys=True) + "\n")


def free_path(out: Path) -> Path:
    """Where the free-factor shares of a protocol CSV go (protocol.csv -> protocol_free.csv)."""
    return out.with_name(out.stem + "_free.csv")


def _cell(value):
    """Floats to 4 decimals, except those 4 decimals would round to 0 (a learning rate of 2e-5): 4 significant
    digits then, so no setting reads as 0."""
    if not isinstance(value, float):
        return value
    text = f"{value:.4f}"
    return f"{value:.4g}" if float(text) == 0 and value != 0 else text


def write_csv(path: Path, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary, temporary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)


def _key_values(argv: list[str]) -> dict[str, str]:
    """`model=`, `methods=`, `out=` and `model.*=` arguments as a dict (a `~model.*` deletion is the caller's, see
    `deletions`); anything else is a UserError naming it (generate's other keys, n= or seed=, would compose but the
    protocol's counts and seeds are fixed)."""
    argv = [item for item in argv if item not in deletions(argv)]
    for item in argv:
        key = item.partition("=")[0]
        # Hydra's +model.x= / ++model.x= add or force a key of the pair; the protocol's own keys take no prefix.
        if "=" not in item or not (key in ("model", "methods", "out") or key.lstrip("+").startswith("model.")):
            raise UserError(f"protocol argument '{item}' is not one of model=, methods=, out= or a model.* override")
    args = dict(item.split("=", 1) for item in argv)
    if not args.get("out", "x.csv").lower().endswith(".csv"):
        raise UserError(f"out={args['out']}: the protocol writes a CSV; name one, out=<folder>/<name>.csv")
    return args


def deletions(argv: list[str]) -> list[str]:
    """Hydra's `~model.<key>` deletions of the pair's keys: DDPMScheduler takes no `set_alpha_to_one`, which the toy
    pair's DDIM sets (`~model.base.scheduler.overrides.set_alpha_to_one`)."""
    return [item for item in argv if item.startswith("~model.") and "=" not in item]


def main(argv: list[str] | None = None) -> int:
    """`model=<conf/model entry>` (plus any `model.*=` overrides), `methods=base,distilled`, `out=<csv>`.
    `methods=` (none) measures only the references: the floor and the ground truth through the pair's VAE, so a
    new VAE (`model.components.path=<a base folder>`) can be judged before a model is trained on it."""
    from ..core.config import compose
    from ..models.hub import ROLES
    from ..models.loading import load_pair

    argv = list(argv if argv is not None else sys.argv[1:])
    if any(item in ("-h", "--help") for item in argv):
        print(__doc__.strip())
        return 0
    try:
        args = _key_values(argv)
        methods = [m for m in args.pop("methods", "base,distilled").split(",") if m]
        out = Path(args.pop("out", "results/toy_protocol.csv"))
        overrides = [f"model={args.pop('model', 'toy')}", *(f"{k}={v}" for k, v in args.items()), *deletions(argv)]
        for method in methods:  # a misspelt method is refused before anything loads
            method_settings(method)
        cfg = compose("generate", overrides)
        if not is_toy_pair(cfg.model):
            raise UserError(f"model={cfg.model.name}: the protocol judges toy scenes; give a toy pair (toy, toy_dpdmd)")
        torch.manual_seed(0)
        pair = load_pair(
            cfg.model, torch.device("cpu"), torch.float32, ("base",) if set(methods) == {"base"} else ROLES
        )
        for method in methods:  # and one the pair's schedulers cannot run (base_steps missing the hand-over)
            plan_of(pair, method)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    classifier = load_classifier("cpu")
    # A record left by an earlier run must not vouch for CSVs this run may leave half rewritten if interrupted.
    record_path(out).unlink(missing_ok=True)
    fid_rows, prompt_rows, free_rows = measure(pair, methods, classifier)
    fid_path = out.with_name(out.stem + "_fid.csv")
    if prompt_rows:
        write_csv(out, prompt_rows)
    write_csv(fid_path, fid_rows)
    write_record(out, argv, cfg.model)
    # Written last: `make toy-weights` reruns the protocol until this file exists.
    write_csv(free_path(out), free_rows)
    written = [out] if prompt_rows else []
    files = [*written, fid_path, free_path(out), record_path(out)]
    print(f"wrote {', '.join(map(str, files))} (factors judged: {', '.join(FACTORS)})")
    return 0


if __name__ == "__main__":
    from ..core.errors import run_main

    raise SystemExit(run_main(main))
