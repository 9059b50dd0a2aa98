"""Judge a toy base model against the toy world's ground truth: prompt adherence, mode coverage and feature
diversity of n samples per prompt, beside the same numbers for n ground-truth scenes of each prompt.

The model is loaded and sampled through the toolkit itself (`load_pair`, `make_plan`, `sample_latents`), so an
exported model that the toolkit cannot use fails here.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ..core.atomic import atomic_path
from .data import allowed_modes, render_prompt_samples
from .features import ToyClassifier, mode_coverage, prompt_adherence


def pair_config(base: Path, steps: int, guidance: float) -> DictConfig:
    """A model-pair entry with the toy base as both models (the base is all there is to judge here)."""
    spec = {
        "label": "toy base",
        "network": {"path": str(Path(base).resolve() / "unet")},
        # The exported scheduler config: it carries the training schedule (shifted betas included).
        "scheduler": {
            "class": "DDIMScheduler",
            "repo": str(Path(base).resolve()),
            "overrides": {"timestep_spacing": "trailing", "set_alpha_to_one": True},
        },
        "steps": int(steps),
        "guidance": float(guidance),
    }
    return OmegaConf.create(
        {
            "name": "toy_base",
            "family": "sd",
            "resolution": 32,
            "dtype": "float32",
            "components": {"path": str(Path(base).resolve())},
            "base": spec,
            "distilled": spec,
        }
    )


def mean_pairwise_cosine_distance(features: torch.Tensor) -> float:
    normed = torch.nn.functional.normalize(features, dim=1)
    similarity = normed @ normed.T
    n = features.shape[0]
    off_diagonal = similarity.sum() - similarity.diagonal().sum()
    return 1.0 - (off_diagonal / (n * (n - 1))).item()


@torch.no_grad()
def sample_base(pair, prompt: str, n: int, seed: int) -> torch.Tensor:
    """n samples of one prompt (seeds seed..seed+n-1, as `generate` uses them), float (n, 3, H, W) in [0, 1]."""
    from ..sampling.chunks import WHOLE_BATCH
    from ..sampling.plan import make_plan
    from ..sampling.sampler import sample_latents

    plan = make_plan(pair, "base", micro_batch=WHOLE_BATCH)
    conditioning = pair.encode([prompt] * n)
    latents = sample_latents(plan, conditioning, [seed + j for j in range(n)], pair.latent_shape, pair.device)
    vae = pair.pipe.vae
    decoded = vae.decode(latents / vae.config.scaling_factor).sample
    return ((decoded + 1) / 2).clamp(0, 1).float()


@torch.no_grad()
def evaluate_base(
    base: Path,
    classifier: ToyClassifier,
    prompts: list[str],
    n: int,
    steps: int,
    guidance: float,
    seed: int,
    device: torch.device,
    grids: Path | None = None,
) -> list[dict]:
    """One row per prompt: the base model's numbers and the ground truth's for the same n."""
    from ..models.loading import load_pair

    pair = load_pair(pair_config(base, steps, guidance), device, torch.float32)
    classifier = classifier.to(device).eval()
    rows = []
    for index, prompt in enumerate(prompts):
        began = time.perf_counter()
        images = sample_base(pair, prompt, n, seed)
        seconds = time.perf_counter() - began
        truth = torch.from_numpy(render_prompt_samples(prompt, n, seed + 10_000 + index)).permute(0, 3, 1, 2) / 255
        truth = truth.to(device)
        rows.append(
            {
                "prompt": prompt,
                "n": n,
                "modes": len(allowed_modes(prompt)),
                "adherence": prompt_adherence(images, prompt, classifier),
                "mode_coverage": mode_coverage(images, prompt, classifier),
                "feature_diversity": mean_pairwise_cosine_distance(classifier.embed(images)),
                "truth_adherence": prompt_adherence(truth, prompt, classifier),
                "truth_mode_coverage": mode_coverage(truth, prompt, classifier),
                "truth_feature_diversity": mean_pairwise_cosine_distance(classifier.embed(truth)),
                "seconds_per_image": seconds / n,
            }
        )
        if grids is not None:
            save_grid(images, grids / f"{index:02d}_{prompt.replace(' ', '_')}.png")
    return rows


def save_grid(images: torch.Tensor, path: Path, columns: int = 8, scale: int = 2) -> None:
    """A grid of (N, 3, H, W) [0, 1] images as a PNG, each image enlarged `scale` times."""
    from PIL import Image

    array = (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    n, h, w, _ = array.shape
    rows = -(-n // columns)
    canvas = np.full((rows * (h + 1), columns * (w + 1), 3), 255, dtype=np.uint8)
    for i, image in enumerate(array):
        r, c = divmod(i, columns)
        canvas[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = image
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = Image.fromarray(canvas).resize((canvas.shape[1] * scale, canvas.shape[0] * scale), Image.NEAREST)
    with atomic_path(path) as temporary:
        grid.save(temporary, format="PNG")
