"""What a run sampled with, as one JSON-ready dict for the run record: the preset, both schedulers with their
full configs, both models' timesteps and guidance, the plan's segments, resolution and dtype."""

from __future__ import annotations

import json
from typing import Any

from ..models.pair import ModelPair, ModelSpec
from .plan import Plan, natural_scheduler


def sampling_settings(pair: ModelPair, plan: Plan) -> dict[str, Any]:
    """The settings behind `plan` on `pair` (pass `pair.for_method(method)`, the pair at the size it ran at).

    models: each model's own scheduler (class and full config), its own schedule's timesteps, steps and
    guidance. segments: what actually ran, in order: which model, on which scheduler, at which timesteps and
    guidance (the base inside a hybrid runs at base_guidance, on the student's scheduler unless base_steps).
    """
    return {
        "model": pair.name,
        "preset": pair.preset,  # None: a pair without presets (toy, tiny, a user's own): its config's settings
        "method": plan.method,
        "resolution": [pair.height, pair.width],
        "dtype": str(pair.dtype).removeprefix("torch."),
        "skip_first_noise": plan.skip_noise if plan.skip_first else None,
        "nfe": plan.nfe,
        "micro_batch": plan.segments[0].denoiser.micro_batch,  # samples per call, as the plan ran: it moves bits
        "models": {spec.role: _model(spec) for spec in (pair.base, pair.distilled) if spec.role in pair.loaded},
        "segments": [
            {
                "model": segment.role,
                "scheduler": type(segment.scheduler).__name__,
                "timesteps": segment.timesteps,
                "hands_over_at": segment.end_timestep,
                "guidance": segment.denoiser.guidance,
            }
            for segment in plan.segments
        ],
    }


def _model(spec: ModelSpec) -> dict[str, Any]:
    schedule = natural_scheduler(spec)
    return {
        "label": spec.label,
        "prediction_type": spec.prediction_type,
        "guidance": spec.guidance,
        "steps": len(schedule.timesteps),
        "timesteps": [int(round(float(t))) for t in schedule.timesteps],
        "scheduler": {"class": type(spec.scheduler).__name__, "config": _plain(dict(spec.scheduler.config))},
    }


def _plain(value: Any) -> Any:
    # Scheduler configs hold tuples, numpy scalars or arrays now and then; the record is JSON.
    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))
