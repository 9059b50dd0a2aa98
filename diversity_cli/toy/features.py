"""The toy feature network: a small CNN that predicts every factor of a toy scene, and the measures built on it.

Its penultimate layer is the embedding that `metric=toy_features` compares (mean pairwise cosine distance); its
factor heads give each image's predicted factors, from which `mode_coverage` and `prompt_adherence` are counted
against the ground truth of the toy language (`data.allowed_modes`, `data.parse_prompt`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..core.atomic import shared_modes, write_text
from ..core.errors import UserError
from ..core.resources import asset
from .data import FACTORS, IMAGE_SIZE, MODE_FACTORS, allowed_modes, parse_prompt

ASSETS = asset("toy")
# The measuring instrument of adherence, toy_features and fid_toyfeat: fixed, so those numbers cannot move with
# the model being judged. `train-toy` copies it unchanged unless asked to train a new one (features.retrain=true).
JUDGE = ASSETS / "features"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


class ToyClassifier(nn.Module):
    """Three strided conv stages (32 -> 16 -> 8 -> 4 px), a dense embedding, one linear head per factor.

    The dense layer keeps where things are (a global pool would lose the position factor)."""

    def __init__(self, channels: tuple[int, int, int] = (16, 32, 64), embed_dim: int = 128):
        super().__init__()
        self.channels = tuple(channels)
        self.embed_dim = embed_dim
        layers: list[nn.Module] = []
        width = 3
        for out in channels:
            layers += [
                nn.Conv2d(width, out, 3, padding=1),
                nn.BatchNorm2d(out),
                nn.ReLU(),
                nn.Conv2d(out, out, 3, stride=2, padding=1),
                nn.BatchNorm2d(out),
                nn.ReLU(),
            ]
            width = out
        self.trunk = nn.Sequential(*layers)
        side = IMAGE_SIZE // 2 ** len(channels)
        self.dense = nn.Sequential(nn.Flatten(), nn.Linear(width * side * side, embed_dim), nn.ReLU())
        self.heads = nn.ModuleDict({factor: nn.Linear(embed_dim, len(values)) for factor, values in FACTORS.items()})

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(embedding, factor -> logits) of images in [0, 1], (N, 3, H, W) of any size."""
        x = _prepare(images)
        features = self.dense(self.trunk(x))
        return features, {factor: head(features) for factor, head in self.heads.items()}

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(N, embed_dim) penultimate-layer features of images in [0, 1]."""
        return self.forward(images)[0]

    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """factor -> (N,) predicted value index (into data.FACTORS[factor])."""
        return {factor: logits.argmax(dim=1) for factor, logits in self.forward(images)[1].items()}

    def config(self) -> dict:
        return {
            "channels": list(self.channels),
            "embed_dim": self.embed_dim,
            "image_size": IMAGE_SIZE,
            "factors": FACTORS,
        }


def _prepare(images: torch.Tensor) -> torch.Tensor:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(images.shape)}")
    if images.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
        images = F.interpolate(images, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", antialias=True)
    return images * 2 - 1


def save_classifier(model: ToyClassifier, folder: str | Path, extra: dict | None = None) -> Path:
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS))
    write_text(folder / CONFIG, json.dumps({**model.config(), **(extra or {})}, indent=2) + "\n")
    shared_modes(folder)  # safetensors writes its files private
    return folder


def load_classifier(device: str | torch.device = "cpu", path: str | Path | None = None) -> ToyClassifier:
    """The shipped toy classifier (diversity_cli/assets/toy/features), or one saved by train-toy at `path`."""
    from safetensors.torch import load_file

    folder = Path(path) if path is not None else ASSETS / "features"
    if not (folder / WEIGHTS).is_file() or not (folder / CONFIG).is_file():
        raise UserError(
            f"toy feature network not found in {folder}; reinstall the package or run `diversity-cli train-toy` "
            "and point at its features/ folder"
        )
    config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    if config.get("factors") != FACTORS:
        raise UserError(f"toy feature network in {folder} was trained on other factors; retrain it with train-toy")
    model = ToyClassifier(tuple(config["channels"]), int(config["embed_dim"]))
    model.load_state_dict(load_file(str(folder / WEIGHTS)))
    return model.to(device).eval()


@torch.no_grad()
def predicted_modes(images: torch.Tensor, classifier: ToyClassifier) -> list[tuple]:
    """Each image's predicted (MODE_FACTORS) combination, as value names."""
    predicted = classifier.predict(images.to(next(classifier.parameters()).device))
    return [tuple(FACTORS[f][int(predicted[f][i])] for f in MODE_FACTORS) for i in range(images.shape[0])]


def mode_coverage(images: torch.Tensor, prompt: str, classifier: ToyClassifier) -> float:
    """Fraction of the prompt's allowed modes (data.allowed_modes) that at least one image shows, by the
    classifier's predictions. Images showing a mode the prompt does not allow count for nothing."""
    allowed = set(allowed_modes(prompt))
    seen = set(predicted_modes(images, classifier)) & allowed
    return len(seen) / len(allowed)


def judge_sha256(folder: str | Path = JUDGE) -> str:
    """SHA-256 of a feature network's weights file (the shipped judge's by default)."""
    return hashlib.sha256((Path(folder) / WEIGHTS).read_bytes()).hexdigest()


@torch.no_grad()
def adherent_mask(images: torch.Tensor, prompt: str, classifier: ToyClassifier, batch: int = 512) -> torch.Tensor:
    """(N,) bool on the CPU: does each image's predicted value of every factor the prompt names match it?
    A prompt that names nothing ("a shape") is followed by every image."""
    named = parse_prompt(prompt)
    device = next(classifier.parameters()).device
    parts = []
    for chunk in images.split(batch):
        predicted = classifier.predict(chunk.to(device))
        agree = torch.ones(chunk.shape[0], dtype=torch.bool, device=device)
        for factor, value in named.items():
            agree &= predicted[factor] == value
        parts.append(agree.cpu())
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.bool)


def prompt_adherence(images: torch.Tensor, prompt: str, classifier: ToyClassifier) -> float:
    """Fraction of images whose predicted factors agree with every factor the prompt names."""
    return adherent_mask(images, prompt, classifier).float().mean().item()
