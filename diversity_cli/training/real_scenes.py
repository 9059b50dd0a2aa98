"""Real images for the GAN term: toy scenes drawn from the toy world's renderer, with their captions.

The base model was trained on this distribution (uniform factors, captions naming each with its probability), so
the discriminator compares the student with the data, as DMD2's compares it with real photographs. Each draw
takes its seed from the iteration's generator: a resumed run draws the same scenes as an uninterrupted one.
For the matching-aware discriminator (`gan.mismatched`) each scene also gets a caption that contradicts it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.pair import ModelPair
from ..toy.data import ToyDataset, generate_dataset, parse_prompt
from ..toy.lora import encode_images


@dataclass
class RealBatch:
    latents: torch.Tensor  # the pair's scaled VAE latents (posterior means)
    captions: list[str]
    # Per scene: another scene of the batch whose caption contradicts it, None if none does; None as a whole when
    # not asked for (the plain discriminator).
    wrong: list[int | None] | None


class RealScenes:
    def __init__(self, pair: ModelPair, with_wrong_captions: bool = False):
        self.pair, self.with_wrong_captions = pair, with_wrong_captions

    def draw(self, n: int, generator: torch.Generator) -> RealBatch:
        """n scenes with their captions (and each one's contradicting caption, when asked for)."""
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
        data = generate_dataset(n, seed)
        wrong = contradicting(data) if self.with_wrong_captions else None
        return RealBatch(encode_images(self.pair, data.images), data.captions, wrong)


def contradicting(data: ToyDataset) -> list[int | None]:
    """For each scene, the next scene (cyclically) whose caption names a factor value this scene does not have. A
    caption that merely names less ("a shape") fits every scene, so it is never a wrong caption."""
    named = [parse_prompt(text) for text in data.captions]
    n = len(data)

    def contradicts(caption: int, scene: int) -> bool:
        return any(int(data.labels[factor][scene]) != value for factor, value in named[caption].items())

    return [next((j % n for j in range(i + 1, i + n) if contradicts(j % n, i)), None) for i in range(n)]
