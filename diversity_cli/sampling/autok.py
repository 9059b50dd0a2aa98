"""`k=auto`: how many distilled steps to give the base, from where the base model commits to its composition.

The base model's commitment curve (see `x0viz`) is measured once per pair and settings and cached. The base has
committed at timestep t*; the hybrid gives it every distilled step whose timestep lies above t* (at least one,
never all), so the base decides the composition and the distilled model only refines it.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from omegaconf import DictConfig, OmegaConf

from ..core.atomic import write_text
from ..core.cache import cache_dir
from ..core.errors import UserError
from ..core.fingerprint import digest, packages
from .commitment import Pairwise, commitment, summarize
from .trace import to_pixels, trace_method


def k_from_commitment(distilled_timesteps: list[int], committed_timestep: int) -> int:
    """Distilled steps above the base's commitment timestep, clipped to 1..n-1."""
    above = sum(1 for t in distilled_timesteps if t > committed_timestep)
    return min(max(above, 1), len(distilled_timesteps) - 1)


def resolve_k(
    pair, cfg: DictConfig, measure: Callable[[], dict], judge_weights: list[str] | None = None
) -> tuple[int, dict]:
    """The k for `cfg.model`'s pair, with the cached base commitment it came from; `measure()` makes that record
    (see `measure_base_commitment`) when it is not cached. `judge_weights`: hashes of the weights of the network
    that measures the distances (another judge, another curve)."""
    from .plan import natural_scheduler

    timesteps = [int(round(float(t))) for t in natural_scheduler(pair.distilled).timesteps]
    if len(timesteps) < 2:  # before the base's traces are spent (and cached) on a k no schedule can take
        raise UserError(f"k=auto needs a distilled schedule of at least 2 steps; {cfg.model.name} has {len(timesteps)}")
    key = commitment_key(pair, cfg, judge_weights or [])
    path = cache_dir("commitment") / f"{cfg.model.name}-{digest(key)}.json"
    record = _read(path, key)
    cached = record is not None
    if record is None:
        record = measure()
        write_text(path, json.dumps({**record, "key": key}, indent=2, sort_keys=True, default=str) + "\n")
    record = {name: value for name, value in record.items() if name != "key"}
    record["cache"] = str(path)
    record["from_cache"] = cached  # measured by an earlier run with these settings and weights
    # the rule's own count, before k_from_commitment keeps k within 1..n-1: said where the two differ
    record["distilled_steps_above"] = sum(1 for t in timesteps if t > record["committed_timestep"])
    return k_from_commitment(timesteps, record["committed_timestep"]), record


# Libraries whose version can move the base model's x̂0 trace or the distance measured on it.
COMMITMENT_PACKAGES = ("diversity-cli", "torch", "diffusers", "transformers", "numpy", "pillow")


def commitment_key(pair, cfg: DictConfig, judge_weights: list[str]) -> dict:
    """What the base's commitment depends on: the model config, the effective `auto_k` settings (the pair's own
    block under what the command line set: `cfg.auto_k` as composed), the bytes of the base's weights and of the
    shared components (retraining a model in place is a miss), the weights of the network that measures the
    distance, and library versions."""
    from ..models.provenance import pair_weights_hash

    model = OmegaConf.to_container(cfg.model, resolve=True)
    return {
        # the pair's own auto_k block counts only as far as it is in effect, which the next entry holds
        "model": {key: value for key, value in model.items() if key != "auto_k"},
        "auto_k": OmegaConf.to_container(cfg.auto_k, resolve=True),
        "weights": pair_weights_hash(cfg.model, pair),
        "dtype": str(getattr(pair, "dtype", "")),
        "judge": judge_weights,
        "packages": packages(*COMMITMENT_PACKAGES),
    }


def _read(path, key: dict) -> dict | None:
    """The cached record if it was made under this very key (the name is a digest of it; the copy inside guards
    against a collision or a file from an older version); None otherwise."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if json.loads(json.dumps(key, default=str)) == record.get("key") else None


def measure_base_commitment(pair, settings: DictConfig, embedder, pairwise: Pairwise) -> dict:
    """Trace the base model alone over a few prompts and seeds; where does its x̂0 stop changing? `embedder`
    (images -> embeddings) and `pairwise` (its distance) measure how far each step is from the final image."""
    seeds = list(range(int(settings.n)))
    records = []
    for prompt in settings.prompts:
        trace, final = trace_method(pair, "base", prompt, seeds)
        distances = commitment(
            [to_pixels(pair, x0) for x0 in trace.targets], to_pixels(pair, final), embedder, pairwise
        )
        for step, timestep in enumerate(trace.timesteps):
            for j, seed in enumerate(seeds):
                records.append(
                    {
                        "method": "base",
                        "prompt": prompt,
                        "seed": seed,
                        "step": step,
                        "timestep": timestep,
                        "fraction": (step + 1) / len(trace.timesteps),
                        "distance": float(distances[step, j]),
                    }
                )
    summary = summarize(records, float(settings.threshold))[0]
    return {key: summary[key] for key in ("committed_fraction", "committed_step", "committed_timestep", "steps")} | {
        "metric": settings.metric,
        "threshold": float(settings.threshold),
    }
