"""The shipped toy feature network: accurate on fresh scenes, and the measures built on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diversity_cli.core.errors import UserError
from diversity_cli.toy.data import FACTORS, MODE_FACTORS, allowed_modes, generate_dataset, render_prompt_samples
from diversity_cli.toy.features import load_classifier, mode_coverage, predicted_modes, prompt_adherence


def _tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255


@pytest.fixture(scope="module")
def classifier():
    return load_classifier()


def test_shipped_classifier_is_accurate_on_fresh_scenes(classifier):
    data = generate_dataset(500, seed=424242)  # not a seed train-toy uses
    with torch.no_grad():
        predicted = classifier.predict(_tensor(data.images))
    for factor in FACTORS:
        accuracy = (predicted[factor].numpy() == data.labels[factor]).mean()
        assert accuracy > (0.97 if factor in MODE_FACTORS else 0.9), (factor, accuracy)


def test_embedding_takes_any_size(classifier):
    images = _tensor(render_prompt_samples("a circle", 3, seed=0))
    big = torch.nn.functional.interpolate(images, size=(64, 64), mode="nearest")
    with torch.no_grad():
        small_features, big_features = classifier.embed(images), classifier.embed(big)
    assert small_features.shape == (3, classifier.embed_dim)
    assert torch.nn.functional.cosine_similarity(small_features, big_features).min() > 0.9


def test_ground_truth_covers_the_modes_and_follows_the_prompt(classifier):
    for prompt in ("a circle", "a red shape on the left", "two triangles"):
        images = _tensor(render_prompt_samples(prompt, 200, seed=1))
        assert mode_coverage(images, prompt, classifier) >= 0.95, prompt
        assert prompt_adherence(images, prompt, classifier) >= 0.97, prompt


def test_copies_of_one_image_cover_one_mode(classifier):
    prompt = "a circle"
    image = _tensor(render_prompt_samples(prompt, 1, seed=5))
    copies = image.repeat(16, 1, 1, 1)
    assert predicted_modes(image, classifier)[0] in allowed_modes(prompt)
    assert mode_coverage(copies, prompt, classifier) == pytest.approx(1 / len(allowed_modes(prompt)))


def test_off_prompt_images_cover_nothing(classifier):
    squares = _tensor(render_prompt_samples("a square", 32, seed=2))
    assert mode_coverage(squares, "a circle", classifier) == 0.0
    assert prompt_adherence(squares, "a circle", classifier) == 0.0


def test_missing_weights_are_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="toy feature network not found"):
        load_classifier(path=tmp_path)
