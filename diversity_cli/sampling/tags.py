"""Names of sampling settings: the folder a method's images go to and the label tables and plots show."""

from __future__ import annotations

from .methods import USES_BASE_KNOBS


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
