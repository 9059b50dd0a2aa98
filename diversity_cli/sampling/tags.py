"""Names of sampling settings: the folder a method's images go to and the label tables and plots show."""

from __future__ import annotations

import re

from .methods import METHODS, USES_BASE_KNOBS

_KNOBS = re.compile(r"_k(?P<k>\d+)(?:_g(?P<g>\d+(?:\.\d+)?(?:e[+-]\d+)?))?(?:_bs(?P<bs>\d+))?")  # g as :g writes it


def run_tag(method: str, k: int = 1, base_guidance: float = 0.0, base_steps: int | None = None) -> str:
    """Folder name of a sampling setting: the method and the knobs that change its images."""
    tag = method
    if method in USES_BASE_KNOBS:
        tag += f"_k{k}"
        if float(base_guidance) != 0.0:
            tag += f"_g{float(base_guidance):g}"
        if base_steps is not None:
            tag += f"_bs{base_steps}"
    return tag


def parse_tag(tag: str) -> tuple[str, int, float, int | None] | None:
    """(method, k, base_guidance, base_steps) of a folder name `run_tag` writes, or None when it names none:
    a table can then ask for any setting generate samples by the name its images carry."""
    if tag in METHODS and tag not in USES_BASE_KNOBS:
        return tag, 1, 0.0, None
    for method in USES_BASE_KNOBS:
        knobs = _KNOBS.fullmatch(tag[len(method) :]) if tag.startswith(method) else None
        if knobs:
            steps = int(knobs["bs"]) if knobs["bs"] else None
            parsed = method, int(knobs["k"]), float(knobs["g"] or 0.0), steps
            # only the spelling run_tag writes (no "_g0", no "_k01"), so one setting has one name
            return parsed if run_tag(*parsed) == tag else None
    return None
