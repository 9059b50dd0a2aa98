"""A pair's settings checked when a config is composed (conf/model/<name>.yaml): `micro_batch`, kept out of the
fingerprints it does not change (it moves the last bits of every image, so images are keyed by it; training never
samples through it), and each role's steps and guidance."""

from __future__ import annotations

import math
from typing import Any

from .errors import UserError
from .schema import show

MICRO_BATCH = "micro_batch"


def micro_batch_of(model: Any) -> int:
    """The pair's samples per network call: a whole number >= 1 (1 when the config does not say)."""
    value = model.get(MICRO_BATCH, 1) if hasattr(model, "get") else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"model.micro_batch={value}: samples per network call must be a whole number >= 1")
    if value > 1 and model.get("family") == "qwen":
        # Qwen-Image pads a call's prompts to the longest among them: a sample would depend on its neighbours.
        raise UserError(f"model.micro_batch={value}: Qwen-Image pairs run one sample per call; use 1")
    return value


def check_sampling_numbers(model: Any) -> None:
    """Each role's `steps` (a whole number >= 1) and `guidance` (a finite number >= 0): checked when the config is
    composed, so a mistyped, removed or null override is one line before any network loads."""
    if not hasattr(model, "get"):
        return
    for role in ("base", "distilled"):
        conf = model.get(role)
        if not hasattr(conf, "get"):
            raise UserError(f"model.{role}={_shown(conf)}: a pair's {role} is a group (network, scheduler, steps, ...)")
        steps, guidance = conf.get("steps"), conf.get("guidance")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise UserError(f"model.{role}.steps={_shown(steps)}: sampling steps must be a whole number >= 1")
        if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not 0 <= guidance < math.inf:
            raise UserError(f"model.{role}.guidance={_shown(guidance)}: the CFG scale must be a finite number >= 0")


def _shown(value: Any) -> str:
    # Quoted, a number typed as text ('4') does not read as the number it is not.
    return repr(value) if isinstance(value, str) else show(value)


def image_settings(model: dict[str, Any]) -> dict[str, Any]:
    """The pair's settings as images are keyed by them: micro_batch 1 (one sample per call, how every image was
    made before a pair could say) is the same as no key, so older run directories still resume."""
    if model.get(MICRO_BATCH) == 1:
        return {key: value for key, value in model.items() if key != MICRO_BATCH}
    return model


def training_settings(model: dict[str, Any]) -> dict[str, Any]:
    """The pair's settings as a training is keyed by them: without micro_batch, which no training step uses."""
    return {key: value for key, value in model.items() if key != MICRO_BATCH}
