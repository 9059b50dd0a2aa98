"""`diversity-cli fid`: FID against the closed form, the reference-statistics cache, custom feature networks, the
CLIPScore wrapper on a tiny offline CLIP, the command end to end on a tiny pair, and clear offline failures."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import linalg

from diversity_cli.core.config import compose
from diversity_cli.core.errors import UserError
from diversity_cli.core.rundir import RunDir
from diversity_cli.metrics import quality
from diversity_cli.metrics import reference as reference_module
from diversity_cli.metrics.reference import folder_reference, open_reference


def _closed_form_frechet(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2), from the sample statistics, with scipy's sqrtm."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def _gaussian(rng: np.random.Generator, n: int, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return rng.standard_normal((n, len(mean))) @ scale + mean


def _fid(real: np.ndarray, fake: np.ndarray) -> float:
    metric = quality.feature_fid(real.shape[1])
    metric.update(torch.from_numpy(real), real=True)
    metric.update(torch.from_numpy(fake), real=False)
    return float(metric.compute())


def test_fid_equals_the_closed_form_frechet_distance():
    rng = np.random.default_rng(0)
    dim = 6
    real = _gaussian(rng, 500, rng.normal(size=dim), rng.normal(size=(dim, dim)))
    fake = _gaussian(rng, 400, rng.normal(size=dim) + 1.0, 0.5 * rng.normal(size=(dim, dim)))
    expected = _closed_form_frechet(real, fake)
    assert expected > 1.0
    assert _fid(real, fake) == pytest.approx(expected, rel=1e-6)


def test_fid_of_identical_sets_is_zero():
    rng = np.random.default_rng(1)
    features = _gaussian(rng, 300, rng.normal(size=5), rng.normal(size=(5, 5)))
    scale = _closed_form_frechet(features, features + 1.0)  # = 5, the size of a unit shift of every feature
    assert abs(_fid(features, features)) < 1e-6 * scale


class SmallNet(torch.nn.Module):
    """A custom feature network as a user would plug it in: float [0, 1] images in, features out."""

    num_features = 12
    resolution = 24
    tag = "small"

    def __init__(self):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(3)
            self.conv = torch.nn.Conv2d(3, self.num_features, 5, stride=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x)).mean(dim=(2, 3)) * 10


def small_network(device):  # features=test_fid:small_network
    return SmallNet().to(device)


class FromUint8(torch.nn.Module):
    """SmallNet as torchmetrics' own `feature=` module (torchmetrics hands it uint8 images)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net, self.num_features = net, net.num_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images.float() / 255.0)


def _images(rng: np.random.Generator, n: int, size: tuple[int, int], tint: tuple[int, int, int]) -> list[np.ndarray]:
    base = rng.integers(0, 160, (n, size[1], size[0], 3))
    return list((base + np.array(tint)).clip(0, 255).astype(np.uint8))


def _torchmetrics_fid(net: torch.nn.Module, real: list, fake: list, resolution: int) -> float:
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=FromUint8(net))
    metric.update(quality.pixels(real, resolution), real=True)
    metric.update(quality.pixels(fake, resolution), real=False)
    return float(metric.compute())


@pytest.mark.parametrize("spec", ["math:pi", "test_fid:SMALL_CONSTANT"])
def test_a_custom_feature_spec_that_names_no_factory_is_one_line(spec):
    with pytest.raises(UserError, match=f"features={spec}: .* is not a factory"):  # TypeError: not callable, before
        quality.load_extractor(spec, torch.device("cpu"))


SMALL_CONSTANT = 3


def test_a_custom_factory_that_fails_is_one_line():
    """features=os:getcwd: a callable that takes no device raised TypeError out of the command (a traceback)."""
    with pytest.raises(UserError, match=r"features=os:getcwd: getcwd\(device\) raised TypeError: "):
        quality.load_extractor("os:getcwd", torch.device("cpu"))


def test_a_custom_feature_network_plugs_in_and_matches_torchmetrics_feature_module(tmp_path):
    rng = np.random.default_rng(2)
    real = _images(rng, 10, (40, 30), (0, 0, 0))
    fake = _images(rng, 7, (30, 30), (90, 0, 40))
    extractor = quality.load_extractor("test_fid:small_network", torch.device("cpu"))
    assert (extractor.tag, extractor.resolution, extractor.num_features) == ("small", 24, 12)
    stats, _ = quality.reference_statistics(extractor, [real[:6], real[6:]], {"kind": "test"}, None)
    scores = quality.QualityScores(extractor, stats)
    scores.update(fake[:4], ["x"] * 4)
    scores.update(fake[4:], ["x"] * 3)
    measured = scores.compute()
    expected = _torchmetrics_fid(SmallNet(), real, fake, 24)
    assert expected > 1.0
    assert measured["fid"] == pytest.approx(expected, rel=1e-5)
    assert measured["is"] is None and measured["clip"] is None  # no logits, no CLIP model: nothing made up


def test_a_custom_feature_network_edited_in_place_is_another_extractor(tmp_path, monkeypatch):
    """Its cache key held its weights, not its code: a forward() edited with the weights kept returned the reference
    statistics of the old code, beside features of the new (a review run's FID read 725.6 where it was 294.2)."""
    import importlib
    import sys

    source = tmp_path / "edited_features.py"
    source.write_text(
        "import torch\n"
        "class Net(torch.nn.Module):\n"
        "    num_features = 4\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.w = torch.nn.Parameter(torch.ones(3, 4))\n"
        "    def forward(self, x):\n"
        "        return x.mean((2, 3)) @ self.w\n"
        "def factory(device):\n"
        "    return Net()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    before = quality.load_extractor("edited_features:factory", torch.device("cpu")).name
    source.write_text(
        source.read_text().replace("return x.mean((2, 3)) @ self.w", "return (x.mean((2, 3)) @ self.w).tanh()")
    )
    sys.modules.pop("edited_features")  # a new process imports the edited file
    importlib.invalidate_caches()
    after = quality.load_extractor("edited_features:factory", torch.device("cpu")).name
    assert before != after and before.startswith("edited_features:factory@")


def test_prepare_center_crops_then_resizes_with_pil_bicubic():
    wide = np.zeros((20, 60, 3), dtype=np.uint8)
    wide[:, :20] = wide[:, 40:] = (255, 0, 0)  # red only outside the centre square
    wide[:, 20:40] = (0, 0, 255)
    out = quality.prepare(wide, 299)
    assert out.shape == (299, 299, 3) and out.dtype == np.uint8
    assert out[..., 0].max() == 0 and out[..., 2].min() == 255
    square = Image.fromarray(wide[:, 20:40])
    assert np.array_equal(out, np.asarray(square.resize((299, 299), Image.Resampling.BICUBIC)))


def _write_images(folder: Path, images: list[np.ndarray], name: str = "{i:03d}.png") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        paths.append(folder / name.format(i=i))
        Image.fromarray(image).save(paths[-1])
    return paths


def test_reference_statistics_come_from_the_cache_without_reading_the_images(tmp_path, monkeypatch):
    _write_images(tmp_path / "ref", _images(np.random.default_rng(4), 6, (32, 32), (0, 0, 0)))
    reads = []
    real_load = reference_module.load_image
    monkeypatch.setattr(reference_module, "load_image", lambda path: reads.append(path) or real_load(path))
    extractor = quality.load_extractor("tiny_random", torch.device("cpu"))

    def stats(limit=None):
        ref = folder_reference(tmp_path / "ref", limit)
        return quality.reference_statistics(extractor, ref.batches(4), ref.identity, tmp_path / "cache")

    first, cached = stats()
    assert not cached and len(reads) == 6
    again, cached = stats()
    assert cached and len(reads) == 6  # not one reference image read again
    for name in quality.REAL_STATES:
        assert torch.equal(first[name], again[name])
    _, cached = stats(limit=4)  # another count is another reference set
    assert not cached and len(reads) == 10


def _coco_folder(tmp_path: Path, ids: list[int]) -> tuple[Path, Path]:
    captions = tmp_path / "captions.csv"
    with captions.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["case_number", "source", "prompt", "evaluation_seed", "coco_id"])
        writer.writerows([[i, "coco-30k", f"caption {i}", 100 + i, coco_id] for i, coco_id in enumerate(ids)])
    images = tmp_path / "val2014"
    rng = np.random.default_rng(5)
    for coco_id, image in zip(ids, _images(rng, len(ids), (48, 32), (0, 0, 0)), strict=True):
        _write_images(images, [image], f"COCO_val2014_{coco_id:012d}.jpg")
    return images, captions


def test_coco_reference_follows_the_captions_and_names_a_missing_image(tmp_path):
    images, captions = _coco_folder(tmp_path, [203564, 179765, 322141])
    cfg = compose("fid", ["reference=coco", f"coco.images={images}", f"coco.captions={captions}"])
    ref = open_reference("coco", cfg)
    assert [p.name for p in ref.files] == [f"COCO_val2014_{i:012d}.jpg" for i in (203564, 179765, 322141)]
    (images / ref.files[1].name).unlink()
    with pytest.raises(UserError, match="COCO_val2014_000000179765.jpg"):
        open_reference("coco", cfg)


def test_the_shipped_coco_captions_are_the_papers_prompt_set():
    from diversity_cli.core.prompts import read_prompts
    from diversity_cli.metrics.reference import COCO_CAPTIONS

    rows = read_prompts(None, str(COCO_CAPTIONS))
    assert len(rows) == 30000 and all(row.seed is not None for row in rows)
    assert rows[0].prompt == "A bicycle replica with a clock as the front wheel." and rows[0].seed == 41337


def test_clip_score_wrapper_works_with_a_tiny_offline_clip():
    model, processor = quality.tiny_clip()
    rng = np.random.default_rng(6)
    images = [torch.from_numpy(image).permute(2, 0, 1) for image in _images(rng, 3, (40, 40), (0, 0, 0))]
    prompts = ["a red circle", "two blue squares", "a small cross"]

    def manual() -> torch.Tensor:  # 100 x cosine of CLIP's projected embeddings, per pair
        with torch.no_grad():
            pixels = processor(images=images, return_tensors="pt")["pixel_values"]
            tokens = processor(text=prompts, return_tensors="pt", padding=True)
            image = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
            text = model.text_projection(model.text_model(**tokens).pooler_output)
        return 100 * torch.nn.functional.cosine_similarity(image, text, dim=-1)

    if manual().mean() <= 0:  # CLIPScore clamps a negative mean to 0: flip the image side so nothing hides
        with torch.no_grad():
            model.visual_projection.weight.neg_()
    expected = manual().mean()
    metric = quality.clip_score_metric(model, processor)
    metric.update(images, prompts)
    assert expected > 0
    assert float(metric.compute()) == pytest.approx(float(expected), rel=1e-4)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _fake_run(run: Path, n: int, tags: tuple[str, ...] = ("distilled",)) -> None:
    """A run directory as `generate` leaves it, without running a model."""
    rng = np.random.default_rng(8)
    for tag in tags:
        paths = _write_images(run / "tiny_sd" / tag / "p", _images(rng, n, (32, 32), (0, 0, 0)))
        RunDir(run).append_samples(
            {"method": tag.split("_")[0], "model": "tiny_sd", "prompt": "a red circle", "seed": i, "seconds": "0.1",
             "path": str(p.relative_to(run)), "tag": tag}
            for i, p in enumerate(paths)
        )  # fmt: skip


def _fid_args(tmp_path: Path, *extra: str) -> tuple[str, ...]:
    return (
        "fid", f"out={tmp_path / 'run'}", f"reference={tmp_path / 'ref'}", "features=tiny_random",
        "clip_model=tiny_random", f"cache_dir={tmp_path / 'cache'}", *extra,
    )  # fmt: skip


def test_fid_command_end_to_end_on_a_tiny_pair(cli, tmp_path):
    run = tmp_path / "run"
    code, _, err = cli("generate", "model=tiny_sd", "method=hybrid", "prompt=a red circle", "n=3", f"out={run}")
    assert code == 0, err
    real = _images(np.random.default_rng(7), 8, (40, 40), (60, 30, 0))
    _write_images(tmp_path / "ref", real)
    code, out, err = cli(*_fid_args(tmp_path))
    assert code == 0, err
    assert "fid_tinyrandom" in out and "hybrid_k1" in out
    assert f"n=3, against {tmp_path / 'ref'}" in " ".join(out.split())  # fid.csv may hold other references' rows
    code, again, err = cli(*_fid_args(tmp_path))  # every feature from the cache: no rate of images measured now
    assert code == 0 and "n=3" in again and "images/s" not in again, err
    (row,) = _rows(run / "fid.csv")
    samples = _rows(run / "samples.csv")
    fake = [np.asarray(Image.open(run / s["path"]).convert("RGB")) for s in samples]
    expected = _torchmetrics_fid(quality.TinyRandomNet(), real, fake, 32)
    assert (row["method"], row["model"], row["n"], row["features"]) == ("hybrid_k1", "tiny_sd", "3", "tiny_random")
    assert row["fid"] == "" and row["is"] == ""  # not Inception: never called plain FID / IS
    assert float(row["fid_tinyrandom"]) == pytest.approx(expected, rel=1e-4)
    assert row["is_tinyrandom"] == "" and float(row["clip"]) >= 0.0  # 3 images: under two a split of is_splits=10
    assert float(row["seconds_per_image"]) == pytest.approx(np.mean([float(s["seconds"]) for s in samples]), 1e-3)


def test_a_rerun_replaces_only_its_rows(cli, tmp_path):
    _fake_run(tmp_path / "run", 3, ("distilled", "hybrid_k1"))
    _write_images(tmp_path / "ref", _images(np.random.default_rng(7), 4, (40, 40), (60, 30, 0)))
    assert cli(*_fid_args(tmp_path))[0] == 0
    path = tmp_path / "run" / "fid.csv"
    first = {r["method"]: r for r in _rows(path)}
    assert sorted(first) == ["distilled", "hybrid_k1"]
    path.write_text(path.read_text().replace(first["hybrid_k1"]["fid_tinyrandom"], "MARK"))
    assert cli(*_fid_args(tmp_path, "tags=[distilled]"))[0] == 0
    again = {r["method"]: r for r in _rows(path)}
    assert again["hybrid_k1"]["fid_tinyrandom"] == "MARK"  # not evaluated: left alone
    assert again["distilled"] == first["distilled"]  # evaluated again: replaced, not duplicated
    assert len(_rows(path)) == 2
    # another image preparation is another number: a row of its own, labelled (it replaced the default's row)
    assert cli(*_fid_args(tmp_path, "tags=[distilled]", "resolution=24", "resize=clean"))[0] == 0
    rows = _rows(path)
    assert [r["features"] for r in rows if r["method"] == "distilled"] == [
        "tiny_random",
        "tiny_random(resolution=24; resize=clean)",
    ]
    assert [r for r in rows if r["features"] == "tiny_random" and r["method"] == "distilled"] == [first["distilled"]]


def test_real_networks_offline_fail_with_one_line(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    _fake_run(tmp_path / "run", 2)
    _write_images(tmp_path / "ref", _images(np.random.default_rng(8), 3, (32, 32), (0, 0, 0)))
    common = (f"out={tmp_path / 'run'}", f"reference={tmp_path / 'ref'}", f"cache_dir={tmp_path / 'cache'}")
    code, _, err = cli("fid", *common, "clip_model=null")  # features=auto: Inception
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "weights-inception-2015-12-05-6726825d.pth" in err and "inception_weights=" in err
    code, _, err = cli("fid", *common, "features=tiny_random", "clip_model=diversity-cli-tests/absent-clip")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "absent-clip" in err and "clip_model=" in err
    code, _, err = cli("fid", *common, f"inception_weights={tmp_path / 'nothing.pth'}")
    assert code == 2 and "nothing.pth" in err


def test_inception_path_runs_from_a_local_weights_file(tmp_path, monkeypatch):
    """The real Inception code path (torch-fidelity's network, which torchmetrics' feature=2048 wraps) from a
    local weights file: random weights saved offline load exactly, and give pool features and logits."""
    from torch_fidelity import feature_extractor_inceptionv3 as fidelity

    with monkeypatch.context() as patch:  # build the network without its download, then save random weights
        patch.setattr(fidelity, "load_state_dict_from_url", lambda *a, **k: {})
        patch.setattr(fidelity.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
        saved = fidelity.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).state_dict()
    weights = tmp_path / quality.INCEPTION_FILE
    torch.save(saved, weights)
    extractor = quality.load_extractor("inception", torch.device("cpu"), inception_weights=str(weights))
    loaded = extractor.net.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in saved.items())
    images = quality.pixels(_images(np.random.default_rng(9), 1, (64, 48), (0, 0, 0)), extractor.resolution)
    features, logits = extractor(images)
    assert images.shape == (1, 3, 299, 299) and extractor.tag == ""
    assert features.shape == (1, 2048) and logits.shape == (1, 1008) and torch.isfinite(logits).all()


class StubToyClassifier(torch.nn.Module):
    """The toy feature network's interface (`load_classifier(device).embed`, float [0, 1] NCHW -> (N, D)), with
    class logits, standing in for diversity_cli.toy.features."""

    def __init__(self):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(11)
            self.project, self.head = torch.nn.Linear(48, 8), torch.nn.Linear(8, 5)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.project(torch.nn.functional.adaptive_avg_pool2d(images, 4).flatten(1)) * 10

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(images))


def test_toy_reference_scores_toy_features_and_names_them_fid_toyfeat(cli, tmp_path, monkeypatch):
    import sys
    import types

    import diversity_cli.toy
    from diversity_cli.toy.data import render_prompt_samples

    stub = types.ModuleType("diversity_cli.toy.features")
    stub.load_classifier = lambda device: StubToyClassifier().to(device)
    monkeypatch.setitem(sys.modules, "diversity_cli.toy.features", stub)
    monkeypatch.setattr(diversity_cli.toy, "features", stub, raising=False)
    _fake_run(tmp_path / "run", 4)
    args = ("fid", f"out={tmp_path / 'run'}", "reference=toy", "toy.per_prompt=8", f"cache_dir={tmp_path / 'cache'}")
    code, out, err = cli(*args)
    assert code == 0, err
    (row,) = _rows(tmp_path / "run" / "fid.csv")
    fake = [np.asarray(Image.open(tmp_path / "run" / s["path"])) for s in _rows(tmp_path / "run" / "samples.csv")]
    real = list(render_prompt_samples("a red circle", 8, compose("fid").toy.seed))  # the prompt's ground truth

    class Embed(torch.nn.Module):
        num_features = 8

        def forward(self, images):
            return StubToyClassifier().embed(images.float() / 255)

    from torchmetrics.image.fid import FrechetInceptionDistance

    expected = FrechetInceptionDistance(feature=Embed())
    expected.update(quality.pixels(real, 32), real=True)
    expected.update(quality.pixels(fake, 32), real=False)
    # 8 scenes per prompt, not the default 100: the reference says so (another number than plain "toy"'s)
    assert (row["reference"], row["features"], row["fid"], row["is"], row["clip"]) == (
        "toy(per_prompt=8)", "toy", "", "", ""
    )  # fmt: skip
    assert float(row["fid_toyfeat"]) == pytest.approx(float(expected.compute()), rel=1e-4)
    assert "is_toyfeat" in row  # its classifier head gives an IS column (its value: enough images a split or empty)


def _toy_features_available() -> bool:
    try:
        from diversity_cli.toy import data, features  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _toy_features_available(), reason="diversity_cli.toy.features (toy feature net) not built")
def test_the_real_toy_feature_network_gives_fid_toyfeat(cli, tmp_path):
    _fake_run(tmp_path / "run", 4)
    args = ("fid", f"out={tmp_path / 'run'}", "reference=toy", "toy.per_prompt=8", f"cache_dir={tmp_path / 'cache'}")
    code, out, err = cli(*args)
    assert code == 0, err
    (row,) = _rows(tmp_path / "run" / "fid.csv")
    assert row["fid"] == "" and float(row["fid_toyfeat"]) > 0 and row["features"] == "toy"


def test_the_summary_shows_this_runs_reference_only(cli, tmp_path):
    """fid.csv keeps the rows of another reference beside this run's; the summary counts and shows this run's."""
    _fake_run(tmp_path / "run", 3, ("distilled",))
    _write_images(tmp_path / "ref", _images(np.random.default_rng(7), 4, (40, 40), (60, 30, 0)))
    _write_images(tmp_path / "other", _images(np.random.default_rng(8), 4, (40, 40), (0, 30, 60)))
    assert cli(*_fid_args(tmp_path))[0] == 0
    code, out, _ = cli(*_fid_args(tmp_path), f"reference={tmp_path / 'other'}")
    assert code == 0 and len(_rows(tmp_path / "run" / "fid.csv")) == 2
    shown = " ".join(out.split())
    assert shown.count("(n=3, against") == 1 and str(tmp_path / "other") in shown
    assert str(tmp_path / "ref") + ")" not in shown


def test_the_summary_shows_this_commands_groups_and_features_only(cli, tmp_path):
    """The summary listed every fid.csv row of the reference: an earlier run's other tags under tags=, and rows at
    another image preparation under the same label as this command's (two `distilled` lines, two numbers)."""
    _fake_run(tmp_path / "run", 3, ("distilled", "base"))
    _write_images(tmp_path / "ref", _images(np.random.default_rng(7), 4, (40, 40), (60, 30, 0)))
    assert cli(*_fid_args(tmp_path))[0] == 0
    code, out, err = cli(*_fid_args(tmp_path, "resolution=48"))
    assert code == 0 and len(_rows(tmp_path / "run" / "fid.csv")) == 4, err
    lines = [" ".join(line.split()) for line in out.splitlines() if "(n=3, against" in line]
    assert len(lines) == 2 and all("features tiny_random(resolution=48))" in line for line in lines), lines
    code, out, err = cli(*_fid_args(tmp_path, "tags=base"))
    lines = [" ".join(line.split()) for line in out.splitlines() if "(n=3, against" in line]
    assert code == 0 and len(lines) == 1 and "tiny_sd / base" in lines[0] and "features" not in lines[0], out


def test_a_tag_the_run_does_not_hold_is_one_line_before_the_preflight(cli, tmp_path, monkeypatch):
    """tags=base,nosuch measured base without a word (only a list of unknown tags alone was refused), and that
    only after the preflight had looked for the feature network's weights."""
    from diversity_cli.commands import checks

    _fake_run(tmp_path / "run", 3, ("distilled", "base"))
    monkeypatch.setattr(checks, "prepare", lambda *a, **k: pytest.fail("the preflight ran first"))
    for tags in ("tags=[base,nosuch]", "tags=nosuch"):
        code, _, err = cli(*_fid_args(tmp_path, tags))
        assert code == 2 and err.strip() == (
            f"error: tags=nosuch: no samples with that tag in {tmp_path / 'run'}; it has: base, distilled"
        ), err
    assert not (tmp_path / "run" / "fid.csv").exists()


def test_a_missing_images_folder_is_told_before_what_a_folder_would_need(cli, tmp_path):
    """images=<no such folder> was answered with reference=auto's or toy.mode's complaint; fixing those only led
    to the folder's."""
    for extra in ((), ("reference=toy",)):
        code, _, err = cli("fid", f"images={tmp_path / 'nodir'}", f"out={tmp_path / 'out'}", *extra)
        assert code == 2 and err.strip() == f"error: images={tmp_path / 'nodir'} is not a folder of images", err
    assert not (tmp_path / "out").exists()


def test_the_toy_fid_has_no_columns_it_cannot_fill(cli, tmp_path):
    """The toy classifier has no class logits, so no IS: fid.csv carried is_toyfeat and is_std_toyfeat columns
    that can never hold a number, and the table printed them empty beside fid, is, is_std and clip."""
    assert cli("generate", "model=toy", "prompt=a shape", "n=2", "method=base", f"out={tmp_path}")[0] == 0
    code, out, err = cli("fid", f"out={tmp_path}", "toy.per_prompt=10")
    assert code == 0, err
    with (tmp_path / "fid.csv").open() as f:
        (row,) = csv.DictReader(f)
    assert row["fid_toyfeat"] and "is_toyfeat" not in row and "is_std_toyfeat" not in row
    header = next(line for line in out.splitlines() if "fid_toyfeat" in line)
    columns = [cell.strip() for cell in header.split("┃")[1:-1]]
    assert columns == ["method", "model", "n", "fid_toyfeat", "seconds_per_image"]


def test_a_toy_reference_cut_by_reference_limit_is_labelled_with_its_count(cli, tmp_path):
    """toy.mode=dataset reference_limit=20 scored against 20 scenes under the 1000-scene label `toy(mode=dataset)`,
    and replaced that row; with the run's prompts (toy.mode=prompts) the limit cut nothing and was not said."""
    run = tmp_path / "run"
    assert cli("generate", "model=toy", "prompt=a shape", "n=2", "method=base", f"out={run}")[0] == 0
    args = ("fid", f"out={run}", "toy.mode=dataset", "toy.count=40")
    assert cli(*args)[0] == 0
    assert cli(*args, "reference_limit=20")[0] == 0
    with (run / "fid.csv").open() as f:
        labels = sorted(row["reference"] for row in csv.DictReader(f))
    assert labels == ["toy(mode=dataset; count=20)", "toy(mode=dataset; count=40)"]
    # at or above toy.count it cut nothing: it drew reference_limit scenes where toy.count=40 were asked for
    for limit in (40, 50):
        code, _, err = cli(*args, f"reference_limit={limit}")
        assert code == 2 and err.strip() == (
            f"error: reference_limit={limit}: the toy dataset reference (toy.count=40) holds 40 scenes, so it cuts "
            "nothing; leave it out to use them all, or give one below 40"
        ), err
    code, _, err = cli("fid", f"out={run}", "reference_limit=20")
    assert code == 2 and err.startswith("error: reference_limit=20 does not apply to the toy reference"), err


def test_a_folder_scored_into_a_run_directory_is_not_read_as_one_of_its_methods(cli, tmp_path):
    """`fid images=<a folder named distilled> out=<run>` wrote a `distilled` row beside the run's own: the report's
    Distilled row could take it. It is named `images=distilled`, as diversity names such a row, in any out=."""
    run = tmp_path / "run"
    assert cli("generate", "model=toy", "prompt=a shape", "n=2", "method=base", f"out={run}")[0] == 0
    folder = tmp_path / "elsewhere" / "distilled"
    folder.mkdir(parents=True)
    for image in sorted(run.rglob("*.png"))[:2]:
        shutil.copy(image, folder / image.name)
    code, _, err = cli("fid", f"out={run}", f"images={folder}", "reference=toy", "toy.mode=dataset", "toy.count=20")
    assert code == 0, err
    with (run / "fid.csv").open() as f:
        assert [row["method"] for row in csv.DictReader(f)] == ["images=distilled"]
    # nor out= of its own: its row filled the report's Distilled row of Table 2, base images under that label
    scores = tmp_path / "scores"
    code, _, err = cli("fid", f"out={scores}", f"images={folder}", "reference=toy", "toy.mode=dataset", "toy.count=20")
    assert code == 0, err
    with (scores / "fid.csv").open() as f:
        assert [row["method"] for row in csv.DictReader(f)] == ["images=distilled"]
    code, _, err = cli("report", f"out={scores}", "tables=[2]")
    assert code == 0 and not (scores / "tables" / "table_2.csv").exists(), err
    assert "fid.csv measured images=distilled, in no row of Tables 2, 4" in err, err


def test_an_inception_score_of_one_image_a_split_is_left_empty():
    """n at or under is_splits gave IS exactly 1, std 0, whatever the images: a split of one image scores its KL to
    itself. Two images a split and more: computed as before."""
    extractor = quality.load_extractor("tiny_random", torch.device("cpu"))
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for _ in range(8)]
    reference = quality.feature_fid(extractor.num_features)
    reference.update(torch.randn(8, extractor.num_features), real=True)
    states = {k: getattr(reference, k) for k in quality.REAL_STATES}
    for splits, computed in ((5, False), (4, True)):
        scores = quality.QualityScores(extractor, states, is_splits=splits)
        scores.update(images, [""] * len(images))
        measured = scores.compute(seed=1)
        assert (measured["is"] is not None) is computed and (measured["is_std"] is not None) is computed
        assert measured["fid"] >= 0.0 and measured["is_images"] == 8


def test_a_folder_has_no_prompts_to_score_clip_against(cli, tmp_path):
    """fid images=<folder> clip_model=<a model> wrote a CLIP score against the empty text, exit 0."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    _write_images(folder, _images(rng, 3, (32, 32), (0, 0, 0)))
    out = tmp_path / "out"
    code, _, err = cli("fid", f"images={folder}", f"reference={folder}", "features=tiny_random",
                       "clip_model=tiny_random", f"out={out}")  # fmt: skip
    assert code == 2 and "has none (it scored them against the empty text)" in err and not out.exists(), err


def test_a_reference_limit_that_cuts_nothing_is_refused(cli, tmp_path):
    """reference_limit=1000 over a folder of 4 images used all 4 under the label `ref(limit=1000)`: a column apart
    from the same images' unlimited FID, as if it had been cut."""
    _fake_run(tmp_path / "run", 3, ("distilled",))
    _write_images(tmp_path / "ref", _images(np.random.default_rng(7), 4, (40, 40), (60, 30, 0)))
    code, _, err = cli(*_fid_args(tmp_path, "reference_limit=1000"))
    assert code == 2 and err.strip() == (
        f"error: reference_limit=1000: reference folder {tmp_path / 'ref'} holds 4 images, so it cuts nothing; "
        "leave it out to use them all, or give one below 4"
    ), err
    assert not (tmp_path / "run" / "fid.csv").exists()
    assert cli(*_fid_args(tmp_path, "reference_limit=3"))[0] == 0
    assert [row["reference"].rsplit("/", 1)[-1] for row in _rows(tmp_path / "run" / "fid.csv")] == ["ref(limit=3)"]
