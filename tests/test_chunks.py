"""Fixed-shape network calls: a sample's row is fixed by its seed, so its bits do not depend on its batch."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from omegaconf import OmegaConf

from diversity_cli.core.pair_settings import image_settings
from diversity_cli.experiments.generation import settings_hash
from diversity_cli.sampling.chunks import WHOLE_BATCH, call_in_chunks, slot_layout
from diversity_cli.sampling.plan import make_plan
from diversity_cli.sampling.sampler import sample_latents


def test_consecutive_seeds_fill_one_chunk_at_the_rows_their_seeds_name():
    assert slot_layout([5, 6, 7, 8], 4) == [[3, 0, 1, 2]]  # seed 8 -> row 0, seed 5 -> row 1, ...


def test_seeds_on_the_same_row_go_to_separate_chunks_padded_with_none():
    assert slot_layout([0, 4, 1], 4) == [[0, 2, None, None], [1, None, None, None]]


def test_call_in_chunks_returns_batch_order_and_only_calls_full_chunks():
    shapes = []

    def predict(rows):
        shapes.append(len(rows))
        return torch.tensor(rows, dtype=torch.float32) * 10

    out = call_in_chunks(predict, [7, 2, 3], 4)  # rows 3, 2, 3: seed 7 and seed 3 collide
    assert out.tolist() == [0.0, 10.0, 20.0]
    assert shapes == [4, 4]
    assert call_in_chunks(predict, [7, 2, 3], WHOLE_BATCH).tolist() == [0.0, 10.0, 20.0] and shapes[-1] == 3


def _latents(pair, seeds, micro_batch):
    plan = make_plan(pair, "base", micro_batch=micro_batch)
    conditioning = pair.encode(["a red circle"] * len(seeds))
    return sample_latents(plan, conditioning, seeds, pair.latent_shape)


@pytest.mark.parametrize("name", ["tiny_sd", "tiny_sdxl", "tiny_pixart"])
def test_a_sample_has_the_same_bits_whatever_batch_it_is_sampled_in(tiny_pairs, name):
    """Seed 5 alone, then at another position among other seeds: identical latents with micro_batch=4."""
    pair = tiny_pairs(name)
    alone = _latents(pair, [5], 4)[0]
    crowded = _latents(pair, [9, 2, 5, 6, 7], 4)[2]
    assert torch.equal(alone, crowded)
    # The pair's own micro_batch is the default: a pair that says 4 gives the same bits.
    assert torch.equal(_latents(dataclasses.replace(pair, micro_batch=4), [5], None)[0], alone)


def test_micro_batch_keys_images_but_not_trainings():
    """Images are keyed by micro_batch (1 counts as no key: older run directories resume); trainings are not."""
    from diversity_cli.training.state import fingerprint

    def cfg(**extra):
        return OmegaConf.create({"model": {"name": "toy", "family": "sd", **extra}, "method": "distilled", "lr": 1e-4})

    assert settings_hash(cfg(micro_batch=1)) == settings_hash(cfg()) != settings_hash(cfg(micro_batch=8))
    assert image_settings({"micro_batch": 8}) == {"micro_batch": 8}
    assert fingerprint(cfg(micro_batch=8)) == fingerprint(cfg())
