"""`k=auto`: how many distilled steps to give the base, from where the base model commits to its composition.

The base model's commitment curve (see `x0viz`) is measured once per pair and settings and cached. The base has
committed at timestep t*; the hybrid gives it every distilled step whose timestep lies above t* (at least one,
never all), so the base decides the composition and the distilled model only refines it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from omegaconf import DictConfig, OmegaConf

from ..core.cache import cache_dir
from ..core.errors import UserError
from .commitment import Pairwise, commitment, summarize
from .trace import to_pixels, trace_method


def k_from_commitment(distilled_timesteps: list[int], committed_timestep: int) -> int:
    """Distilled steps above the base's commitment timestep, clipped to 1..n-1."""
    above = sum(1 for t in distilled_timesteps if t > committed_timestep)
    return min(max(above, 1), len(distilled_timesteps) - 1)


def resolve_k(pair, cfg: DictConfig, measure: Callable[[], dict]) -> tuple[int, dict]:
    """The k for `cfg.model`'s pair, with the cached base commitment it came from; `measure()` makes that record
    (see `measure_base_commitment`) when it is not cached."""
    from .plan import natural_scheduler

    settings = cfg.auto_k
    key = json.dumps(
        {
            "model": OmegaConf.to_container(cfg.model, resolve=True),
            "auto_k": OmegaConf.to_container(settings, resolve=True),
        },
        sort_keys=True,
    )
    path = cache_dir("commitment") / f"{cfg.model.name}-{hashlib.sha1(key.encode()).hexdigest()[:12]}.json"
    if path.exists():
        record = json.loads(path.read_text())
    else:
        record = measure()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2) + "\n")
    record["cache"] = str(path)
    timesteps = [int(round(float(t))) for t in natural_scheduler(pair.distilled).timesteps]
    if len(timesteps) < 2:
        raise UserError(f"k=auto needs a distilled schedule of at least 2 steps; {cfg.model.name} has {len(timesteps)}")
    return k_from_commitment(timesteps, record["committed_timestep"]), record


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
