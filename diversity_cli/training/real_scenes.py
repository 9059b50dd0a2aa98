"""Real images for the GAN term: toy scenes drawn from the toy world's renderer, with their captions.

The base model was trained on this distribution (uniform factors, captions naming each with its probability), so
the discriminator compares the student with the data, as DMD2's compares it with real photographs. Each draw
takes its seed from the iteration's generator: a resumed run draws the same scenes as an uninterrupted one.
"""

from __future__ import annotations

import torch

from ..models.pair import ModelPair
from ..toy.data import generate_dataset
from ..toy.lora import encode_images


class RealScenes:
    def __init__(self, pair: ModelPair):
        self.pair = pair

    def draw(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, list[str]]:
        """n scenes as the pair's scaled VAE latents (posterior means) and their captions."""
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
        data = generate_dataset(n, seed)
        return encode_images(self.pair, data.images), data.captions
