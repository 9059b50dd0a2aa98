"""A pair's `micro_batch` (conf/model/<name>.yaml): checked once, and kept out of the fingerprints it does not
change. It moves the last bits of every image, so images are keyed by it; training never samples through it."""

from __future__ import annotations

from typing import Any

from .errors import UserError

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
    """Each role's `steps` (a whole number >= 1) and `guidance` (a number >= 0), where the pair sets them: checked
    when the config is composed, so a mistyped override is one line before any network loads."""
    for role in ("base", "distilled"):
        conf = model.get(role) if hasattr(model, "get") else None
        if not hasattr(conf, "get"):
            continue
        steps, guidance = conf.get("steps"), conf.get("guidance")
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise UserError(f"model.{role}.steps={steps}: sampling steps must be a whole number >= 1")
        if guidance is not None and (
            isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not guidance >= 0
        ):
            raise UserError(f"model.{role}.guidance={guidance}: the CFG scale must be a number >= 0")


def image_settings(model: dict[str, Any]) -> dict[str, Any]:
    """The pair's settings as images are keyed by them: micro_batch 1 (one sample per call, how every image was
    made before a pair could say) is the same as no key, so older run directories still resume."""
    if model.get(MICRO_BATCH) == 1:
        return {key: value for key, value in model.items() if key != MICRO_BATCH}
    return model


def training_settings(model: dict[str, Any]) -> dict[str, Any]:
    """The pair's settings as a training is keyed by them: without micro_batch, which no training step uses."""
    return {key: value for key, value in model.items() if key != MICRO_BATCH}
