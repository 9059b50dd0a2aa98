"""`diversity`: embed-once metrics equal brute-force pair-by-pair computation; prdc; the command end to end."""

from __future__ import annotations

import csv
import importlib.util
import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from diversity_cli.core.cache import cache_dir
from diversity_cli.core.errors import UserError
from diversity_cli.metrics.coverage import prdc
from diversity_cli.metrics.diversity import PairwiseDiversity, bootstrap_mean_pairwise, mean_pairwise, vendi_score
from diversity_cli.metrics.embedders import (
    DISTANCES,
    BatchedEmbedder,
    LpipsEmbedder,
    get_embedder,
    load_images,
    pairwise_distances,
)

COLUMNS = [
    "method",
    "model",
    "prompt",
    "n",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "ci",
    "options",
    "samples",
    "reference_id",
]


def _distance(x: torch.Tensor, y: torch.Tensor, kind: str) -> float:
    x, y = x.double().flatten(), y.double().flatten()
    if kind == "cosine":
        return 1.0 - float(F.cosine_similarity(x, y, dim=0))
    squared = float(((x - y) ** 2).sum())
    return squared if kind == "sqeuclidean" else squared**0.5


def _cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2),
        torch.nn.Flatten(),
    ).eval()


def _images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _save_pngs(folder: Path, images: torch.Tensor) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        array = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        paths.append(folder / f"{i:03d}.png")
        Image.fromarray(array).save(paths[-1])
    return paths


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS
        return list(reader)


# ------------------------------------------------------------------------------------------- metric maths


@pytest.mark.parametrize("kind", ["cosine", "euclidean", "sqeuclidean"])
def test_pairwise_distances_equal_brute_force(kind):
    a, b = torch.randn(7, 5), torch.randn(4, 5)
    cross = pairwise_distances(a, b, kind)
    square = pairwise_distances(a, None, kind)
    for i, j in itertools.product(range(7), range(4)):
        assert cross[i, j].item() == pytest.approx(_distance(a[i], b[j], kind), abs=1e-9)
    for i, j in itertools.product(range(7), range(7)):
        assert square[i, j].item() == pytest.approx(_distance(a[i], a[j], kind), abs=1e-9)


@pytest.mark.parametrize("kind", ["cosine", "euclidean"])
def test_embed_once_equals_pair_by_pair_scoring(kind):
    network, images = _cnn(), _images(9)
    embedder = BatchedEmbedder("cnn", kind, network, batch_size=4)
    metric = PairwiseDiversity(kind, bootstrap=0)
    metric.update(embedder(images))
    got = metric.compute()
    with torch.no_grad():  # naive scoring: both images of every pair through the network
        pairs = [
            _distance(network(images[[i]]), network(images[[j]]), kind) for i, j in itertools.combinations(range(9), 2)
        ]
    assert got.n == 9
    assert got.value == pytest.approx(sum(pairs) / len(pairs), rel=1e-5)


@pytest.mark.parametrize("kind", ["cosine", "euclidean"])
def test_identical_images_give_zero(kind):
    images = _images(1).repeat(6, 1, 1, 1)
    metric = PairwiseDiversity(kind, bootstrap=50)
    metric.update(BatchedEmbedder("cnn", kind, _cnn())(images))
    got = metric.compute()
    assert got.value == pytest.approx(0.0, abs=1e-7)
    assert got.ci_low == pytest.approx(0.0, abs=1e-7) and got.ci_high == pytest.approx(0.0, abs=1e-7)
    pixel = get_embedder("pixel", size=16)
    assert mean_pairwise(pairwise_distances(pixel(images), None, pixel.distance)) == pytest.approx(0.0, abs=1e-9)


def test_order_of_images_does_not_matter():
    embedder, images, order = BatchedEmbedder("cnn", "euclidean", _cnn(), batch_size=3), _images(10), torch.randperm(10)
    embeddings = embedder(images)
    forward = mean_pairwise(pairwise_distances(embeddings, None, "euclidean"))
    assert mean_pairwise(pairwise_distances(embeddings[order], None, "euclidean")) == pytest.approx(forward, rel=1e-12)
    # Re-embedded in another order, batches differ: only float32 rounding of the network may change.
    permuted = mean_pairwise(pairwise_distances(embedder(images[order]), None, "euclidean"))
    assert permuted == pytest.approx(forward, rel=1e-6)


def test_bootstrap_interval_contains_estimate_and_is_seeded():
    dist = pairwise_distances(torch.randn(15, 6), None, "euclidean")
    value = mean_pairwise(dist)
    low, high = bootstrap_mean_pairwise(dist, 500, 0.95, seed=3)
    assert low < value < high
    assert bootstrap_mean_pairwise(dist, 500, 0.95, seed=3) == (low, high)
    assert bootstrap_mean_pairwise(dist, 500, 0.95, seed=4) != (low, high)
    narrow = bootstrap_mean_pairwise(dist, 500, 0.5, seed=3)
    assert low < narrow[0] < narrow[1] < high


def test_one_bootstrap_resample_is_the_mean_over_pairs_of_different_images():
    dist = pairwise_distances(torch.randn(6, 3), None, "euclidean")
    low, high = bootstrap_mean_pairwise(dist, samples=1, ci=0.95, seed=11)
    draws = torch.randint(0, 6, (1, 6), generator=torch.Generator().manual_seed(11))[0].tolist()
    pairs = [dist[a, b].item() for a, b in itertools.permutations(draws, 2) if a != b]
    assert low == high == pytest.approx(sum(pairs) / len(pairs), rel=1e-12)


def test_vendi_score_counts_distinct_directions():
    assert vendi_score(torch.ones(5, 4)) == pytest.approx(1.0, abs=1e-9)
    assert vendi_score(torch.eye(4)) == pytest.approx(4.0, abs=1e-9)
    x = torch.randn(8, 5)
    eigenvalues = np.linalg.eigvalsh((F.normalize(x.double(), dim=1) @ F.normalize(x.double(), dim=1).T).numpy() / 8)
    p = eigenvalues[eigenvalues > 1e-12]
    assert vendi_score(x) == pytest.approx(float(np.exp(-(p * np.log(p)).sum())), rel=1e-9)


@pytest.mark.parametrize("kind", ["euclidean", "cosine"])
def test_prdc_equals_brute_force(kind):
    generator = torch.Generator().manual_seed(1)
    centre, away = torch.tensor([3.0, 0, 0, 0]), torch.tensor([-3.0, 0, 0, 3])
    real = torch.randn(20, 4, generator=generator) + centre
    near = centre + 0.3 * torch.randn(11, 4, generator=generator)  # a collapsed set on the data, and outliers
    fake = torch.cat([near, away + 0.3 * torch.randn(4, 4, generator=generator)])
    k = 3

    def radius(points, i):  # k-th nearest other point
        return sorted(_distance(points[i], points[j], kind) for j in range(len(points)) if j != i)[k - 1]

    real_r = [radius(real, i) for i in range(20)]
    fake_r = [radius(fake, j) for j in range(15)]
    d = [[_distance(real[i], fake[j], kind) for j in range(15)] for i in range(20)]
    expected = {
        "precision": np.mean([any(d[i][j] < real_r[i] for i in range(20)) for j in range(15)]),
        "recall": np.mean([any(d[i][j] < fake_r[j] for j in range(15)) for i in range(20)]),
        "density": np.mean([sum(d[i][j] < real_r[i] for i in range(20)) for j in range(15)]) / k,
        "coverage": np.mean([min(d[i]) < real_r[i] for i in range(20)]),
    }
    got = prdc(real, fake, k, kind)
    assert got == pytest.approx(expected, abs=1e-12)
    assert all(0 < got[key] < 1 for key in ("precision", "recall", "coverage"))  # both sides of the balls occur


def test_lpips_embedding_equals_torchmetrics_lpips_pair_by_pair():
    from torchmetrics.functional.image.lpips import _LPIPS

    torch.manual_seed(0)
    network = _LPIPS(pretrained=True, net="alex", pnet_rand=True)  # shipped linear layers, random backbone
    images = _images(3, size=64)
    embedder = LpipsEmbedder(network, batch_size=2)
    dist = pairwise_distances(embedder(images), None, embedder.distance)
    with torch.no_grad():
        for i, j in itertools.combinations(range(3), 2):
            direct = network(images[[i]], images[[j]], normalize=True).item()
            assert dist[i, j].item() == pytest.approx(direct, rel=1e-4)


def test_lpips_streamed_distances_equal_the_full_embedding(tmp_path):
    from torchmetrics.functional.image.lpips import _LPIPS

    torch.manual_seed(0)
    network = _LPIPS(pretrained=True, net="alex", pnet_rand=True, resize=48)
    images, others = _images(5, size=64), _images(3, size=64, seed=1)
    full = LpipsEmbedder(network, batch_size=2)
    expected = pairwise_distances(full(images), None, full.distance)
    per_image = sum(layer.shape[1] for layer in full.layer_features(images[:1])) * 4
    streamed = LpipsEmbedder(network, batch_size=2, feature_bytes=4 * per_image)  # two blocks of 2 images at once
    assert streamed.block_size(images) == 2  # blocks 2, 2, 1: diagonal, off-diagonal and ragged blocks
    assert torch.allclose(streamed.distances(images), expected, rtol=1e-9, atol=1e-12)
    paths, other_paths = _save_pngs(tmp_path / "a", images), _save_pngs(tmp_path / "b", others)
    cross = pairwise_distances(full(load_images(paths)), full(load_images(other_paths)), full.distance)
    assert torch.allclose(streamed.distances(paths, other_paths), cross, rtol=1e-9, atol=1e-12)  # files, a block each


def test_pairwise_distances_in_column_blocks_equal_one_block(monkeypatch):
    from diversity_cli.metrics import embedders

    a, b = torch.randn(6, 40), torch.randn(4, 40)
    whole = {kind: (pairwise_distances(a, b, kind), pairwise_distances(a, None, kind)) for kind in DISTANCES}
    monkeypatch.setattr(embedders, "CHUNK_BYTES", 8 * 10 * 3)  # blocks of 3 columns: 14 blocks
    for kind, (cross, square) in whole.items():
        assert torch.allclose(pairwise_distances(a, b, kind), cross, rtol=1e-12, atol=1e-12)
        assert torch.allclose(pairwise_distances(a, None, kind), square, rtol=1e-12, atol=1e-12)


def test_load_images_reads_pngs_in_unit_range(tmp_path):
    images = _images(3, size=16)
    loaded = load_images(_save_pngs(tmp_path, images))
    assert loaded.shape == (3, 3, 16, 16)
    assert torch.allclose(loaded, images, atol=1 / 255)
    Image.new("RGB", (8, 8)).save(tmp_path / "small.png")
    with pytest.raises(UserError, match="different sizes"):
        load_images(sorted(tmp_path.glob("*.png")))
    assert load_images(sorted(tmp_path.glob("*.png")), size=12).shape == (4, 3, 12, 12)


# ------------------------------------------------------------------------------ embedders from local files


def _tiny_dino(folder: Path) -> Path:
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8
    )
    Dinov2Model(config).save_pretrained(folder)
    BitImageProcessor(
        size={"shortest_edge": 32},
        crop_size={"height": 32, "width": 32},
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(folder)
    return folder


def test_dino_from_a_local_folder(tmp_path):
    from transformers import AutoModel

    embedder = get_embedder("dino", path=str(_tiny_dino(tmp_path / "dino")), batch_size=2)
    images = _images(3)
    mean = torch.tensor([0.485, 0.456, 0.406])[None, :, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[None, :, None, None]
    with torch.no_grad():
        expected = AutoModel.from_pretrained(tmp_path / "dino")(pixel_values=(images - mean) / std).pooler_output
    assert embedder.distance == "cosine"
    assert torch.allclose(embedder(images), expected, atol=1e-5)


def test_clip_from_a_local_open_clip_folder(tmp_path):
    import open_clip

    model_cfg = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
    }
    folder = tmp_path / "clip"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": {}}))
    torch.manual_seed(0)
    network = open_clip.CLIP(**model_cfg).eval()
    torch.save(network.state_dict(), folder / "open_clip_pytorch_model.bin")
    embedder = get_embedder("clip", model=f"local-dir:{folder}")
    images = _images(3)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN)[None, :, None, None]
    std = torch.tensor(open_clip.OPENAI_DATASET_STD)[None, :, None, None]
    with torch.no_grad():
        expected = network.encode_image((images - mean) / std)
    assert embedder.distance == "cosine"
    assert torch.allclose(embedder(images), expected, atol=1e-5)


# --------------------------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny_sd run directory: distilled and hybrid, 2 prompts x 2 seeds (few-step methods: fast)."""
    from diversity_cli.cli import run

    out = tmp_path_factory.mktemp("run")
    prompts = tmp_path_factory.mktemp("inputs") / "prompts.txt"  # not in out=: a run goes into an empty folder
    prompts.write_text("a red circle\na blue square\n")
    for method in ("distilled", "hybrid"):
        code = run(["generate", "model=tiny_sd", f"method={method}", f"prompts={prompts}", "n=2", f"out={out}"])
        assert code == 0
    return out


def test_command_on_a_run_directory(cli, run_dir, tmp_path):
    dino = _tiny_dino(tmp_path / "dino")
    code, out, err = cli(
        "diversity",
        f"out={run_dir}",
        "metric=[pixel,dino,vendi_pixel]",
        f"embedders.dino.path={dino}",
        "reference=distilled",
        "coverage_k=1",
        "bootstrap=200",
        "device=cpu",
    )
    assert code == 0, err
    rows = _read(run_dir / "diversity.csv")
    groups = {(r["method"], r["model"], r["prompt"]) for r in rows}
    assert groups == {(m, "tiny_sd", p) for m in ("distilled", "hybrid_k1") for p in ("a red circle", "a blue square")}
    for method, _, prompt in groups:
        metrics = {r["metric"] for r in rows if r["method"] == method and r["prompt"] == prompt}
        coverage = {f"{e}_{k}" for e in ("pixel", "dino") for k in ("precision", "recall", "density", "coverage")}
        assert metrics == {"pixel", "dino", "vendi_pixel"} | (coverage if method == "hybrid_k1" else set())
    for row in rows:
        assert row["n"] == "2"
        if row["metric"].endswith(("_precision", "_recall", "_density", "_coverage")):  # against what, with which k
            assert row["options"].endswith("reference=distilled; coverage_k=1"), row
        if row["metric"] in ("pixel", "dino"):  # two images are one pair: an interval would have width 0
            assert row["ci_low"] == row["ci_high"] == "" and float(row["value"]) > 0
    assert "one pair, so no interval" in " ".join(err.split())
    # two images against two: the coverage rows are there, and said to be near 1 whatever the samples
    assert "from 2 images and 2 reference images at coverage_k=1" in " ".join(err.split())
    assert "hybrid_k1" in out and "pixel_coverage" in out  # the printed table
    assert list(cache_dir("embeddings").glob("*.pt"))  # the user cache, not the run directory
    assert not (run_dir / ".cache").exists()

    # The stored value is the pair-by-pair RMSE of the group's images, downsampled.
    with (run_dir / "samples.csv").open(newline="") as f:
        paths = [
            run_dir / r["path"] for r in csv.DictReader(f) if r["tag"] == "distilled" and r["prompt"] == "a red circle"
        ]
    small = F.interpolate(load_images(paths), size=(64, 64), mode="bilinear", antialias=True, align_corners=False)
    assert len(paths) == 2
    rmse = float(((small[0] - small[1]) ** 2).mean().sqrt())
    stored = next(r for r in rows if (r["method"], r["prompt"], r["metric"]) == ("distilled", "a red circle", "pixel"))
    assert float(stored["value"]) == pytest.approx(rmse, rel=1e-4)

    # A rerun of one metric replaces its rows and keeps the others.
    code, _, err = cli("diversity", f"out={run_dir}", "metric=pixel", "bootstrap=0", "device=cpu")
    assert code == 0, err
    again = _read(run_dir / "diversity.csv")
    assert len(again) == len(rows)
    pixel = [r for r in again if r["metric"] == "pixel"]
    assert len(pixel) == 4 and all(r["ci_low"] == "" for r in pixel)
    assert [r for r in again if r["metric"] == "dino"] == [r for r in rows if r["metric"] == "dino"]


def test_rows_of_other_settings_stand_beside_each_other(cli, run_dir, tmp_path):
    """Coverage against another reference, or a distance measured otherwise, replaced the earlier number (rows were
    keyed without their options): README promises they stand apart; the same settings again still replace."""
    reference = tmp_path / "reference"
    reference.mkdir()
    for path in sorted(run_dir.rglob("*.png"))[:3]:
        shutil.copy(path, reference / path.name)
    common = ["diversity", f"out={run_dir}", "metric=pixel", "coverage_k=1", "bootstrap=0", "device=cpu"]
    for extra in (["reference=distilled"], [f"reference={reference}"], ["embedders.pixel.size=16"]):
        assert cli(*common, *extra)[0] == 0
    rows = _read(run_dir / "diversity.csv")
    hybrid = {(r["metric"], r["options"]) for r in rows if r["method"] == "hybrid_k1" and r["prompt"] == "a red circle"}
    assert {
        ("pixel_coverage", "reference=distilled; coverage_k=1"),
        ("pixel_coverage", f"reference={reference}; coverage_k=1"),
    } <= hybrid
    assert {("pixel", ""), ("pixel", "size=16")} <= hybrid
    assert cli(*common, "embedders.pixel.size=16")[0] == 0  # the same settings: replaced, never a second row
    assert len(_read(run_dir / "diversity.csv")) == len(rows)


def test_command_on_an_image_folder(cli, tmp_path):
    _save_pngs(tmp_path / "imgs", _images(5, size=24))
    Image.new("RGB", (24, 24)).save(tmp_path / "imgs" / "black.png")
    out = tmp_path / "scores"
    code, _, err = cli(
        "diversity", f"images={tmp_path / 'imgs'}", f"out={out}", "metric=pixel", "bootstrap=100", "cache=false"
    )
    assert code == 0, err
    rows = _read(out / "diversity.csv")
    assert [(r["method"], r["n"], r["metric"]) for r in rows] == [("images=imgs", "6", "pixel")]
    assert not (out / ".cache").exists()
    assert {p.suffix for p in (tmp_path / "imgs").iterdir()} == {".png"}  # the scored folder is never written


def test_groups_below_min_n_are_skipped(cli, tmp_path):
    _save_pngs(tmp_path / "one", _images(1))
    code, _, err = cli("diversity", f"images={tmp_path / 'one'}", f"out={tmp_path / 'scores'}", "metric=pixel")
    assert code == 2
    assert "skipped" in err and err.strip().splitlines()[-1].startswith("error: no group has at least min_n=2")


def test_a_network_returning_nan_is_refused_and_not_cached(cli, tmp_path, monkeypatch):
    from diversity_cli.metrics import embedders

    folder = tmp_path / "imgs"
    _save_pngs(folder, _images(4, size=16))
    out = tmp_path / "scores"
    args = ("diversity", f"images={folder}", f"out={out}", "metric=pixel", "bootstrap=50", "cache=true")

    def overflowing(device, size=64, batch_size=64):  # a network that overflows in half precision on one image
        embedder = embedders.pixel(device, size, batch_size)
        plain = embedder.embed_batch
        embedder.embed_batch = lambda batch: plain(batch).index_fill(0, torch.tensor([0]), float("nan"))
        return embedder

    # a cache of its own: healthy embeddings of these images cached by an earlier run would hide the NaN
    monkeypatch.setenv("DIVERSITY_CLI_CACHE", str(tmp_path / "cache"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(embedders.EMBEDDERS, "pixel", overflowing)
        code, _, err = cli(*args)
    assert code == 2
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: pixel returned non-finite embeddings for 1 image(s)")
    assert not (out / "diversity.csv").exists()  # it read as an empty cell, exit 0

    # the same images again, the network healthy: a NaN kept in the embeddings cache would be refused here
    code, _, err = cli(*args)
    assert code == 0, err
    assert float(_read(out / "diversity.csv")[0]["value"]) > 0


def test_a_judge_returning_nan_is_refused():
    from diversity_cli.experiments.diversity import refuse_non_finite

    row = {"method": "base", "model": "toy", "prompt": "a circle", "metric": "clip_score", "ci_low": None}
    refuse_non_finite([{**row, "value": 0.3}])
    with pytest.raises(UserError, match="clip_score of toy / base / a circle: value is nan"):
        refuse_non_finite([{**row, "value": float("nan")}])


def _one_line_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error:") and "Traceback" not in err
    return lines[0]


@pytest.fixture
def folder(tmp_path):
    _save_pngs(tmp_path / "imgs", _images(3, size=16))
    return tmp_path / "imgs"


def test_dreamsim_without_weights_names_the_missing_files(cli, folder, tmp_path):
    empty = tmp_path / "dreamsim"
    code, _, err = cli(
        "diversity",
        f"images={folder}",
        f"out={folder.parent / 'scores'}",
        "metric=dreamsim",
        f"embedders.dreamsim.cache_dir={empty}",
    )
    assert code == 2
    line = _one_line_error(err)
    assert str(empty) in line and "ensemble_lora" in line and "dino_vitb16_pretrain.pth" in line
    assert not empty.exists()  # nothing was created, nothing was downloaded


def test_lpips_without_backbone_weights_is_one_line(cli, folder, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    code, _, err = cli("diversity", f"images={folder}", f"out={folder.parent / 'scores'}", "metric=lpips")
    assert code == 2
    assert "alexnet-owt" in _one_line_error(err)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["metric=clip"], "clip needs weights"),
        (["metric=clip", "embedders.clip.pretrained=laion2b_s34b_b79k"], "not in the Hugging Face cache"),
        (["metric=clip", "embedders.clip.model=local-dir:/nonexistent"], "open_clip_config.json"),
        (["metric=dino"], "facebook/dinov2-base"),
    ],
)
def test_clip_and_dino_offline_errors(cli, folder, tmp_path, monkeypatch, overrides, expected):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))  # an empty cache
    code, _, err = cli("diversity", f"images={folder}", f"out={folder.parent / 'scores'}", *overrides)
    assert code == 2
    assert expected in _one_line_error(err)


def test_unknown_metric_and_bad_options(cli, folder):
    code, _, err = cli("diversity", f"images={folder}", f"out={folder.parent / 'scores'}", "metric=[pixel,nope]")
    assert code == 2 and "unknown metric 'nope'" in _one_line_error(err)
    code, _, err = cli("diversity", "metric=pixel")
    assert code == 2 and "out=" in _one_line_error(err)
    with pytest.raises(UserError, match="no option"):
        get_embedder("pixel", colour=True)


TOY = importlib.util.find_spec("diversity_cli.toy") is not None and (
    importlib.util.find_spec("diversity_cli.toy.features") is not None
)


@pytest.mark.skipif(TOY, reason="diversity_cli.toy.features exists: the missing-module error cannot happen")
def test_toy_metrics_without_the_toy_module_are_one_line(cli, folder):
    for metric in ("toy_features", "toy_coverage"):
        code, _, err = cli(
            "diversity",
            f"images={folder}",
            f"out={folder.parent / 'scores'}",
            f"metric={metric}",
            "prompt=a red circle",
        )
        assert code == 2 and "diversity_cli.toy.features" in _one_line_error(err)


@pytest.mark.skipif(not TOY, reason="diversity_cli.toy.features (the toy issue) is not in this checkout yet")
def test_toy_metrics_with_a_saved_classifier(cli, tmp_path):
    from diversity_cli.toy import features

    torch.manual_seed(0)
    classifier = features.ToyClassifier().eval()
    weights = features.save_classifier(classifier, tmp_path / "features")
    images = load_images(_save_pngs(tmp_path / "imgs", _images(4)))
    code, _, err = cli(
        "diversity",
        f"images={tmp_path / 'imgs'}",
        f"out={tmp_path / 'scores'}",
        "metric=[toy_features,toy_coverage]",
        f"embedders.toy_features.path={weights}",
        "prompt=a red circle",
        "bootstrap=0",
    )
    assert code == 0, err
    rows = {r["metric"]: float(r["value"]) for r in _read(tmp_path / "scores" / "diversity.csv")}
    with torch.no_grad():
        embeddings = classifier.embed(images)
    pairs = [_distance(embeddings[i], embeddings[j], "cosine") for i, j in itertools.combinations(range(4), 2)]
    assert rows["toy_features"] == pytest.approx(sum(pairs) / len(pairs), rel=1e-4)
    assert rows["toy_coverage"] == pytest.approx(features.mode_coverage(images, "a red circle", classifier), abs=1e-6)

    code, _, err = cli(
        "diversity",
        f"images={tmp_path / 'imgs'}",
        f"out={tmp_path / 'scores'}",
        "metric=toy_features",
        f"embedders.toy_features.path={tmp_path}",
    )
    assert code == 2 and "toy feature network not found" in _one_line_error(err)


def test_two_images_get_no_interval_and_three_get_one():
    """Every bootstrap resample of two images that has a pair is that one pair: a [d, d] "95% CI" said nothing."""
    from diversity_cli.metrics.diversity import pairwise_estimate

    dist = torch.tensor([[0.0, 0.3, 0.5], [0.3, 0.0, 0.4], [0.5, 0.4, 0.0]])
    two = pairwise_estimate(dist[:2, :2], bootstrap=200)
    assert (two.value, two.ci_low, two.ci_high) == (pytest.approx(0.3), None, None)
    three = pairwise_estimate(dist, bootstrap=200)
    assert three.ci_low is not None and three.ci_low < three.ci_high


def test_the_summary_gives_each_diversity_its_quality(cli, tmp_path):
    """The summary showed toy_features alone; the toy_adherence measured beside it was only in diversity.csv."""
    import csv
    import re

    assert cli("generate", "model=toy", "prompt=a red circle", "n=3", "method=base", f"out={tmp_path}")[0] == 0
    code, out, err = cli("diversity", f"out={tmp_path}")
    assert code == 0, err
    with (tmp_path / "diversity.csv").open() as f:
        (adherence,) = [r for r in csv.DictReader(f) if r["metric"] == "toy_adherence"]
    (line,) = [line for line in out.splitlines() if "toy / base / a red circle" in line]
    assert re.search(r"toy_features [\d.]+ \[[\d.]+, [\d.]+\] 95% CI, n=3; toy_adherence (\S+) ", line), line
    assert float(re.search(r"toy_adherence (\S+) ", line).group(1)) == pytest.approx(float(adherence["value"]), 1e-4)
    # the share with its own (Wilson) interval, as diversity.csv and the tables give it
    low, high = (f"{float(adherence[key]):.4g}" for key in ("ci_low", "ci_high"))
    assert f"toy_adherence {float(adherence['value']):.4g} [{low}, {high}] 95% CI" in line, line


def test_a_prompt_given_for_a_run_directory_is_refused(cli, tmp_path):
    """prompt= names an images= folder's prompt; with out= it was silently ignored (every group of the run was
    measured), so `diversity out=R prompt="a hexagon"` looked like a measurement of that prompt."""
    assert cli("generate", "model=toy", "prompt=a red circle", "n=2", "method=base", f"out={tmp_path}")[0] == 0
    code, _, err = cli("diversity", f"out={tmp_path}", "prompt=a hexagon")
    assert code == 2 and "prompt='a hexagon' names the prompt of an images= folder" in err, err
    assert not (tmp_path / "diversity.csv").exists()


def test_coverage_rates_from_sets_their_balls_span_are_said_to_saturate():
    """A ball reaching a quarter or more of its set: precision/recall/coverage tend to 1 whatever the samples."""
    from diversity_cli.experiments.diversity import Group, small_sets_note

    def group(n: int, reference: int) -> Group:
        return Group("hybrid_k1", "toy", "a shape", [Path(f"{i}.png") for i in range(n)], [Path("r")] * reference)

    assert small_sets_note(group(8, 1000), 5) and small_sets_note(group(1000, 20), 5)
    assert small_sets_note(group(21, 21), 5) == [] and small_sets_note(group(64, 1000), 5) == []


def test_diversity_table_names_the_interval_level_as_a_percentage(capsys, tmp_path):
    """The level was printed as `0.9500` beside values of four digits, as if a fourth measured number."""
    from diversity_cli.experiments.diversity import _print_table

    row = {"method": "base", "model": "toy", "prompt": "a circle", "n": 4, "metric": "toy_features", "value": 0.2,
           "ci_low": 0.15, "ci_high": 0.25, "ci": 0.9, "options": ""}  # fmt: skip
    _print_table([row], tmp_path / "diversity.csv")
    shown = capsys.readouterr().out
    assert " 90% " in shown and "0.9000" not in shown and "0.1500" in shown, shown


def test_the_summary_names_the_pair_settings_typed_for_a_groups_images(cli, tmp_path):
    """`generate method=base model.base.guidance=5` then `diversity`: the summary said `toy / base`, the pair as its
    file has it (CFG 3); only the run's records named CFG 5."""
    args = ("generate", "model=toy", "n=2", f"out={tmp_path}")
    assert cli(*args, "prompt=a square", "method=base")[0] == 0
    assert cli(*args, "prompt=a red circle", "method=base", "model.base.guidance=5")[0] == 0
    assert cli(*args, "prompt=a red circle", "method=distilled")[0] == 0
    code, out, err = cli("diversity", f"out={tmp_path}")
    assert code == 0, err
    shown = " ".join(out.split())
    assert "toy / base (model.base.guidance=5) / a red circle" in shown and "toy / distilled / a red circle" in shown
    # per image: the square was made at the pair's own CFG (it was labelled by the tag's newest generate)
    assert "toy / base / a square" in shown, shown
    # the label reads records and samples alone: a cell the report refuses does not fail the measurement done
    text = (tmp_path / "samples.csv").read_text().splitlines()
    header = text[0].split(",")
    cells = text[1].split(",")
    cells[header.index("seconds")] = "abc"
    (tmp_path / "samples.csv").write_text("\n".join([text[0], ",".join(cells), *text[2:]]) + "\n")
    code, out, err = cli("diversity", f"out={tmp_path}")
    assert code == 0 and "toy / base (model.base.guidance=5) / a red circle" in " ".join(out.split()), err


@pytest.mark.parametrize("command", ["diversity", "fid"])
def test_an_ablate_folder_given_as_out_names_its_points(cli, tmp_path, command):
    """`diversity out=<an ablate's out>` said only that out= must be made by generate: an ablate's points are."""
    (tmp_path / "points" / "toy" / "hybrid_k1").mkdir(parents=True)
    (tmp_path / "ablate.csv").write_text("model,method\n")
    code, _, err = cli(command, f"out={tmp_path}")
    assert (
        code == 2 and f"this is an ablate's folder: each point is one, out={tmp_path / 'points'}/<model>/<tag>" in err
    )
