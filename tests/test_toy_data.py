"""The toy world: deterministic scenes whose pixels, labels and captions agree."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from diversity_cli.core.errors import UserError
from diversity_cli.toy.data import (
    BACKGROUND_GRAY,
    COLORS_RGB,
    COLUMN_X,
    FACTORS,
    IMAGE_SIZE,
    MODE_FACTORS,
    VOCABULARY,
    allowed_modes,
    generate_dataset,
    parse_prompt,
    render_prompt_samples,
)


@pytest.fixture(scope="module")
def data():
    return generate_dataset(400, seed=7)


def test_same_seed_same_data_other_seed_other_data(data):
    again = generate_dataset(400, seed=7)
    assert np.array_equal(again.images, data.images)
    assert again.captions == data.captions
    other = generate_dataset(400, seed=8)
    assert not np.array_equal(other.images, data.images)
    assert other.captions != data.captions


def test_shapes_and_types(data):
    assert data.images.shape == (400, IMAGE_SIZE, IMAGE_SIZE, 3) and data.images.dtype == np.uint8
    for factor, values in FACTORS.items():
        assert data.labels[factor].shape == (400,)
        assert set(np.unique(data.labels[factor])) == set(range(len(values)))  # every value occurs


def test_captions_name_exactly_the_named_factors(data):
    for i, text in enumerate(data.captions):
        expected = {f: int(data.labels[f][i]) for f in FACTORS if data.named[f][i]}
        assert parse_prompt(text) == expected, text


def test_captions_vary_in_what_they_name(data):
    named_counts = sum(data.named[f].astype(int) for f in FACTORS)
    assert named_counts.min() == 0 and named_counts.max() >= 4
    assert "a shape" in data.captions


def test_vocabulary_is_small_and_covers_every_caption(data):
    assert len(VOCABULARY) <= 60
    words = {w for text in data.captions for w in text.split()}
    assert words <= set(VOCABULARY)


def _object_mask(image: np.ndarray, background: int) -> np.ndarray:
    return np.abs(image.astype(float) - image[0, 0].astype(float)).sum(axis=-1) > 60


def test_pixels_show_the_labelled_factors(data):
    for i in range(100):
        image = data.images[i]
        labels = {f: int(v[i]) for f, v in data.labels.items()}
        corner = image[0, 0].astype(float)
        assert np.abs(corner - BACKGROUND_GRAY[labels["background"]]).max() <= 13
        mask = _object_mask(image, labels["background"])
        distance = np.abs(image.astype(float) - corner).sum(axis=-1)
        solid = distance >= 0.95 * distance.max()  # fully covered pixels, not anti-aliased edges
        colour = image[solid].astype(float).mean(axis=0)
        assert np.abs(colour - COLORS_RGB[labels["color"]]).max() <= 13
        _, count = ndimage.label(mask)
        assert count == labels["count"] + 1
        xs = np.nonzero(mask)[1] + 0.5
        assert np.argmin(np.abs(COLUMN_X - xs.mean())) == labels["position"]
        area = mask.sum() / count
        assert (area > 70) == (labels["size"] == 1), area


def test_prompt_samples_keep_named_factors_and_vary_the_rest():
    images = render_prompt_samples("two red squares on the left", 32, seed=3)
    assert images.shape == (32, IMAGE_SIZE, IMAGE_SIZE, 3)
    for image in images:
        mask = _object_mask(image, 0)
        assert ndimage.label(mask)[1] == 2
        assert np.nonzero(mask)[1].mean() + 0.5 < 12
    backgrounds = {tuple(image[0, 0] // 60) for image in images}
    assert len(backgrounds) > 1  # the background was not named: it varies
    assert np.array_equal(images, render_prompt_samples("two red squares on the left", 32, seed=3))


def test_allowed_modes_count_the_free_mode_factors():
    assert MODE_FACTORS == ("shape", "color", "position")
    assert len(allowed_modes("a shape")) == 4 * 6 * 3
    assert allowed_modes("a red circle") == [("circle", "red", p) for p in FACTORS["position"]]
    assert len(allowed_modes("two small shapes on the left on a dark background")) == 4 * 6
    assert len(allowed_modes("a large blue cross in the center")) == 1


def test_parse_prompt_reads_plurals_and_rejects_contradictions():
    assert parse_prompt("Two SMALL red circles!") == {"count": 1, "size": 0, "color": 0, "shape": 0}
    assert parse_prompt("squares") == {"shape": 1, "count": 1}
    assert parse_prompt("a photo of a dog") == {}
    with pytest.raises(UserError, match="color"):
        parse_prompt("a red blue circle")
