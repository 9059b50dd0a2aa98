"""Each metric against the package that defines it, on the same features / logits / pixels (no network weights).

Largest absolute differences seen when these were written (the asserted tolerances are wider):
prdc 0 with ties (the former Gram-form distances: 0.185), vendi-score 3e-14, torch-fidelity IS 0 (mean) and
1e-16 (std) (torchmetrics' chunks and ddof=1 were 0.36 / 0.39 off), FID 1.6e-7 on 4.09 against pytorch-fid,
clean-fid and torch-fidelity alike (torchmetrics' float32 feature sums), clean-fid's resize 0 (bit-identical).
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from diversity_cli.metrics import quality
from diversity_cli.metrics.coverage import prdc
from diversity_cli.metrics.diversity import vendi_score


def _tied_sets(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Points drawn from a few prototypes (most repeated exactly, some jittered), and generated points that copy
    reference points: k-NN radii and cross distances tie exactly, as with repeated images or the toy scenes."""
    generator = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(15, 16, generator=generator)
    jitter = 0.01 * torch.randn(60, 16, generator=generator) * (torch.rand(60, 1, generator=generator) < 0.3)
    real = prototypes[torch.randint(0, 15, (60,), generator=generator)] + jitter
    copies = real[torch.randint(0, 60, (30,), generator=generator)]
    fake = torch.cat([copies, prototypes[torch.randint(0, 15, (10,), generator=generator)]])
    return real, fake


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prdc_with_ties_equals_the_prdc_package(seed):
    from prdc import compute_prdc

    real, fake = _tied_sets(seed)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's joblib notice; prdc prints the set sizes
        expected = compute_prdc(real.double().numpy(), fake.double().numpy(), nearest_k=5)
    got = prdc(real, fake, k=5, distance="euclidean")
    assert got == pytest.approx({key: float(value) for key, value in expected.items()}, abs=1e-12)


def test_prdc_on_an_integer_grid_equals_the_prdc_package():
    from prdc import compute_prdc

    rng = np.random.default_rng(3)
    real, fake = rng.integers(0, 3, (40, 4)).astype(np.float64), rng.integers(0, 3, (30, 4)).astype(np.float64)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = compute_prdc(real, fake, nearest_k=3)
    got = prdc(torch.from_numpy(real), torch.from_numpy(fake), k=3)
    assert got == pytest.approx({key: float(value) for key, value in expected.items()}, abs=1e-12)


def test_vendi_score_equals_the_vendi_score_package():
    from vendi_score import vendi

    x = torch.randn(20, 8, generator=torch.Generator().manual_seed(4))
    x[10:] = x[:10] * 2.0  # parallel copies: cosine similarity 1
    assert vendi_score(x) == pytest.approx(float(vendi.score_dual(x.double().numpy(), normalize=True)), rel=1e-12)


@pytest.mark.parametrize(("n", "splits", "seed"), [(53, 10, 2020), (40, 3, 0)])
def test_inception_score_equals_torch_fidelity(n, splits, seed):
    from torch_fidelity.metric_isc import isc_features_to_metric

    logits = 3 * torch.randn(n, 12, generator=torch.Generator().manual_seed(5))
    expected = isc_features_to_metric(logits, splits=splits, shuffle=True, rng_seed=seed)
    mean, std = quality.inception_score(logits, splits, seed)
    assert mean == pytest.approx(expected["inception_score_mean"], rel=1e-12)
    assert std == pytest.approx(expected["inception_score_std"], rel=1e-12)  # population std: ddof=0


def test_quality_scores_report_torch_fidelity_inception_score():
    from torch_fidelity.metric_isc import isc_features_to_metric

    extractor = quality.load_extractor("tiny_random", torch.device("cpu"))
    rng = np.random.default_rng(6)
    images = [rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for _ in range(23)]
    reference = quality.feature_fid(extractor.num_features)
    reference.update(torch.randn(8, extractor.num_features), real=True)
    scores = quality.QualityScores(extractor, {k: getattr(reference, k) for k in quality.REAL_STATES}, is_splits=4)
    scores.update(images, [""] * len(images))
    _, logits = extractor(quality.pixels(images, extractor.resolution))
    expected = isc_features_to_metric(logits, splits=4, shuffle=True, rng_seed=7)
    measured = scores.compute(seed=7)
    assert (measured["is"], measured["is_std"]) == pytest.approx(
        (expected["inception_score_mean"], expected["inception_score_std"]), rel=1e-9
    )


def test_inception_score_caveat_below_5000_images():
    assert "unreliable" in quality.inception_score_caveat(4999)
    assert quality.inception_score_caveat(5000) is None


def _fid_of(real: torch.Tensor, fake: torch.Tensor) -> float:
    metric = quality.feature_fid(real.shape[1])
    metric.update(real, real=True)
    metric.update(fake, real=False)
    return float(metric.compute())


def _moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.mean(axis=0), np.cov(x, rowvar=False)


@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated")  # scipy, inside pytorch-fid / clean-fid
def test_fid_equals_pytorch_fid_clean_fid_and_torch_fidelity_on_the_same_features():
    from cleanfid.fid import frechet_distance
    from pytorch_fid.fid_score import calculate_frechet_distance
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    generator = torch.Generator().manual_seed(8)
    real = torch.randn(300, 24, generator=generator)
    fake = 0.8 * torch.randn(250, 24, generator=generator) + 0.3
    got = _fid_of(real, fake)
    (mu1, sigma1), (mu2, sigma2) = _moments(fake.double().numpy()), _moments(real.double().numpy())
    assert got == pytest.approx(float(calculate_frechet_distance(mu1, sigma1, mu2, sigma2)), rel=1e-6)
    assert got == pytest.approx(float(frechet_distance(mu1, sigma1, mu2, sigma2)), rel=1e-6)
    fidelity = fid_statistics_to_metric({"mu": mu1, "sigma": sigma1}, {"mu": mu2, "sigma": sigma2}, verbose=False)
    assert got == pytest.approx(fidelity["frechet_inception_distance"], rel=1e-6)


@pytest.mark.parametrize("shape", [(64, 64), (512, 512), (300, 300), (257, 183)])
def test_clean_resize_equals_clean_fid_resizer(shape):
    from cleanfid.resize import build_resizer, make_resizer

    rng = np.random.default_rng(shape[0])
    array = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    assert np.array_equal(quality.clean_resize(array, 299), build_resizer("clean")(array))
    assert np.array_equal(quality.clean_resize(array, 32), make_resizer("PIL", False, "bicubic", (32, 32))(array))
    side = min(shape)
    square = array[(shape[0] - side) // 2 :, (shape[1] - side) // 2 :][:side, :side]
    prepared = quality.prepare(Image.fromarray(array), 299, resize="clean")
    assert prepared.dtype == np.float32
    assert np.array_equal(prepared, build_resizer("clean")(square))  # crop first, then clean-fid's resize
    if side != 299:  # clean keeps the fraction that pil_bicubic rounds away
        assert not np.array_equal(prepared, quality.prepare(Image.fromarray(array), 299).astype(np.float32))


def test_preparation_names_filter_size_dtype_and_range():
    record = quality.preparation("clean", 299)
    assert record["id"] == "clean@299" and record["size"] == [299, 299] and record["range"] == [0, 255]
    assert "BICUBIC" in record["resize"] and quality.preparation("pil_bicubic", 299)["dtype"] == "uint8"
    with pytest.raises(Exception, match="resize=lanczos"):
        quality.preparation("lanczos", 299)
