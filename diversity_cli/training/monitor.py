"""The student's quality measured while it trains, on toy pairs (the judge is the frozen toy feature network).

`distill monitor.every=N` measures the student where a session starts, every N iterations and at the last:
fid_toyfeat over `monitor.captions` toy captions against the protocol's 1000 reference scenes, and adherence over
`monitor.per_prompt` samples of each protocol prompt. Each row of `quality.csv` also carries the ground-truth floor
of the same captions and the base's own figures (the teacher at its own steps and guidance), so a curve reads
against both, and `quality.png` is redrawn after each row: whether quality has levelled off can be watched.

The student samples as it is trained and shipped (its LCM steps, `training/generator.py`); noise comes from fixed
seeds and a generator of the monitor's own, so a measurement neither changes nor depends on the training draws.
Fewer captions than the protocol's 1000 make fid_toyfeat larger for every model alike: compare a curve with its
own floor and base line, and take the shipped figure from the full protocol (`python -m diversity_cli.toy.protocol`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from ..core.atomic import atomic_path
from ..core.errors import UserError
from ..toy import is_toy_pair
from ..toy.features import ToyClassifier, adherent_mask, load_classifier
from ..toy.protocol import PROMPTS, embed, fid_captions, frechet_distance, ground_truth, quantise, reference_scenes
from ..toy.protocol import sample as sample_method

# The monitor's own noise: caption i starts from seed NOISE_SEED + i, sample j of prompt p (0-based) from
# NOISE_SEED + 100_000 (p + 1) + j; each chunk's LCM re-noising from its first seed + 1_000_000. The streams can
# meet (a chunk's re-noising and one prompt's starting noise), which biases neither estimate; they are kept as
# they are so that the shipped students' curves can be measured again exactly.
NOISE_SEED = 9_000
CHUNK = 125


@dataclass(frozen=True)
class MonitorSettings:
    every: int  # 0: off
    captions: int
    per_prompt: int


def monitor_settings(cfg: DictConfig) -> MonitorSettings:
    """The `monitor` group (its numbers checked by the config schema), refused before any model loads when it
    asks to measure a pair the toy judge cannot judge."""
    group = cfg.get("monitor") or {}
    settings = MonitorSettings(
        every=int(group.get("every", 0)),
        captions=int(group.get("captions", 250)),
        per_prompt=int(group.get("per_prompt", 16)),
    )
    if settings.every and not is_toy_pair(cfg.model):
        raise UserError(
            f"monitor.every={settings.every} needs a toy pair (its judge is the toy feature network); "
            f"model={cfg.model.name} is not one: leave monitor.every=0"
        )
    return settings


def _noise(count: int, offset: int, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.stack(
        [torch.randn(shape, generator=torch.Generator().manual_seed(NOISE_SEED + offset + i)) for i in range(count)]
    )


class QualityMonitor:
    """Fixed captions, prompts, noise and judge; `measure(student)` -> one quality.csv row."""

    def __init__(self, settings: MonitorSettings, pair, sampler, device: torch.device):
        self.settings, self.pair, self.sampler = settings, pair, sampler
        self.judge: ToyClassifier = load_classifier(device)
        self.captions = fid_captions(settings.captions)
        self.reference = embed(reference_scenes(), self.judge)
        self.floor = frechet_distance(embed(ground_truth(self.captions), self.judge), self.reference)
        self.base = self._teacher_figures()

    def _teacher_figures(self) -> dict[str, float]:
        """The teacher sampled as the pair's base (its own steps and guidance), judged the same way."""
        n = self.settings.per_prompt
        fid = self._fid(sample_method(self.pair, "base", self.captions, list(range(len(self.captions)))))
        rates = [self._adherence(sample_method(self.pair, "base", [p] * n, list(range(n))), p) for p in PROMPTS]
        return {"fid_toyfeat": fid, "adherence_mean": sum(rates) / len(rates), "adherence_worst": min(rates)}

    def _fid(self, images: torch.Tensor) -> float:
        return frechet_distance(embed(images, self.judge), self.reference)

    def _adherence(self, images: torch.Tensor, prompt: str) -> float:
        return adherent_mask(images, prompt, self.judge).float().mean().item()

    @torch.no_grad()
    def _student_images(self, student: torch.nn.Module, prompts: list[str], offset: int) -> torch.Tensor:
        """Decoded, 8-bit-quantised student samples: its full few-step rollout from the monitor's noise."""
        vae, last = self.pair.pipe.vae, len(self.sampler) - 1
        parts = []
        for start in range(0, len(prompts), CHUNK):
            chunk = prompts[start : start + CHUNK]
            noise = _noise(len(chunk), offset + start, self.pair.latent_shape).to(self.pair.device)
            generator = torch.Generator().manual_seed(NOISE_SEED + offset + start + 1_000_000)  # LCM's re-noising
            conditioning = self.pair.encode(chunk)
            x = self.sampler.run(student, noise, 0, last, conditioning, generator)
            x0, _ = self.sampler.step(student, x, last, conditioning, generator)
            decoded = vae.decode(x0.to(vae.dtype) / vae.config.scaling_factor).sample
            parts.append(quantise((decoded.float().cpu() + 1) / 2))
        return torch.cat(parts)

    def measure(self, student: torch.nn.Module, iteration: int) -> dict[str, Any]:
        began = time.perf_counter()
        n = self.settings.per_prompt
        fid = self._fid(self._student_images(student, self.captions, 0))
        rates = {
            prompt: self._adherence(self._student_images(student, [prompt] * n, 100_000 * (index + 1)), prompt)
            for index, prompt in enumerate(PROMPTS)
        }
        worst = min(rates, key=rates.get)
        return {
            "iteration": iteration,
            "fid_toyfeat": f"{fid:.4f}",
            "fid_floor": f"{self.floor:.4f}",
            "adherence_mean": f"{sum(rates.values()) / len(rates):.4f}",
            "adherence_worst": f"{rates[worst]:.4f}",
            "worst_prompt": worst,
            "base_fid_toyfeat": f"{self.base['fid_toyfeat']:.4f}",
            "base_adherence_mean": f"{self.base['adherence_mean']:.4f}",
            "base_adherence_worst": f"{self.base['adherence_worst']:.4f}",
            "n_fid": len(self.captions),
            "n_per_prompt": n,
            "seconds": f"{time.perf_counter() - began:.2f}",
        }


def plot_quality(rows: list[dict[str, str]], path: Path, title: str) -> None:
    """fid_toyfeat and adherence against iteration, beside the teacher's and the floor, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    its = [int(r["iteration"]) for r in rows]
    first = rows[0]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot(its, [float(r["fid_toyfeat"]) for r in rows], "o-", color="C0", label="student")
    left.axhline(float(first["base_fid_toyfeat"]), color="C1", ls="--", label="base (its own steps, guidance)")
    left.axhline(float(first["fid_floor"]), color="gray", ls=":", label="ground-truth floor")
    left.set(xlabel="iteration", ylabel=f"fid_toyfeat ({first['n_fid']} captions)", title="quality (lower is better)")
    left.set_yscale("log")  # the start (the teacher on the student's few steps) sits far above the rest
    left.yaxis.set_major_formatter(ScalarFormatter())
    left.yaxis.set_minor_formatter(ScalarFormatter())
    # Student in blue, base in orange, as on the left; mean solid or dashed, worst prompt with squares or dots.
    right.plot(its, [float(r["adherence_mean"]) for r in rows], "o-", color="C0", label="student, mean")
    right.plot(its, [float(r["adherence_worst"]) for r in rows], "s:", color="C0", label="student, worst prompt")
    right.axhline(float(first["base_adherence_mean"]), color="C1", ls="--", lw=2.5, alpha=0.6, label="base, mean")
    right.axhline(float(first["base_adherence_worst"]), color="C1", ls=":", label="base, worst prompt")
    right.set(xlabel="iteration", ylabel=f"adherence (n={first['n_per_prompt']} per prompt)", title="adherence")
    right.set_ylim(0, 1.02)
    for ax in (left, right):
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as temporary:
        fig.savefig(temporary, format="png", dpi=100)
    plt.close(fig)
