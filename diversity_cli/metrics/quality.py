"""Distribution quality of generated images: FID against a reference set and CLIP score against the prompts,
computed by torchmetrics (`FrechetInceptionDistance`, `CLIPScore`), and Inception Score (torch-fidelity's way).

Image convention (one, for generated and reference images alike, and the reason for it; `PREPARATIONS` states
it field by field and `preparation()` gives the record that cache keys and provenance carry):
    every image is decoded to 8-bit RGB, center-cropped to a square on its short side, and resized once, on the
    CPU before the network (in `prepare`), to the feature network's input side (`resolution`; 299 for
    Inception). `resize=pil_bicubic` (default): PIL's bicubic filter on the 8-bit RGB image, giving uint8
    pixels again. `resize=clean`: clean-fid's "clean" resize, PIL's bicubic filter on each channel as float32
    (mode "F"), clipped to [0, 255], not quantised; torch-fidelity's Inception accepts only uint8, so for it
    those values are rounded to the nearest integer (clean-fid feeds them unrounded to its own copy of the
    network: at most 0.5/255 per pixel apart), while float-input networks get them unrounded. The network then
    sees exactly those pixels: at 299 px the Inception network's own resize (torch-fidelity / torchmetrics) is
    the identity, so this is the only resize. Why: FID moves by points with the resize filter (Parmar et al.,
    "On Aliased Resizing and Surprising Subtleties in GAN Evaluation", clean-fid), and aliasing resizes
    (bilinear without antialiasing) are the worst; PIL bicubic is antialiased and is clean-fid's filter.
    Doing it ourselves, identically on both sides, keeps a systematic difference between the two sets out of
    the number. The crop keeps COCO's non-square photos from being squashed
    while the generated images (square) are not. pil_bicubic stays uint8 because generated images are stored
    as 8-bit PNGs anyway and torch-fidelity's Inception accepts only uint8 input.
    Inception Score follows torch-fidelity (`inception_score`): shuffled by numpy's RandomState(seed)
    permutation, split at floor(i N / splits), mean and population standard deviation (ddof=0) of the splits'
    scores. Below IS_RELIABLE_N images it is unreliable (`inception_score_caveat` says so).
    CLIP score is the exception by design: each full generated image goes through the CLIP processor's own
    preprocessing, as in the published CLIP score (100 x cosine of the projected image and text embeddings).

Features are computed once per image by a feature extractor (Inception-v3 2048-d pool features and its 1008
logits for IS; or the toy feature network; or a custom module) and handed to torchmetrics' FID through an
identity feature module, so the statistics are torchmetrics' own. The reference side of FID is
torchmetrics' running sums (feature sum, outer-product sum, count), cached on disk per (reference set, count,
resolution, extractor, preparation): a sweep over methods reads the reference images once.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import math
import os
import re
import warnings
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.atomic import atomic_path, write_text
from ..core.cache import cache_dir
from ..core.errors import UserError, first_line
from ..core.fingerprint import file_hash, packages
from .preflight import INCEPTION_FILE, INCEPTION_URL, check_features  # torch-fidelity's port of the TF FID Inception

INCEPTION_RESOLUTION = 299
REAL_STATES = ("real_features_sum", "real_features_cov_sum", "real_features_num_samples")
FAKE_STATES = ("fake_features_sum", "fake_features_cov_sum", "fake_features_num_samples")
Progress = Callable[[int], None]
Mapper = Callable[..., Iterable[Any]]  # `map`, or a thread pool's: PIL decodes and resizes outside the GIL


# --- images -----------------------------------------------------------------------------------------------------


RESIZES = ("pil_bicubic", "clean")
PREPARATIONS: dict[str, dict[str, Any]] = {
    "pil_bicubic": {
        "decode": "8-bit RGB (PIL convert('RGB'))",
        "crop": "centre square on the short side",
        "resize": "PIL Image.resize BICUBIC on the 8-bit RGB image, on the CPU before the network",
        "dtype": "uint8",
        "range": [0, 255],
    },
    "clean": {
        "decode": "8-bit RGB (PIL convert('RGB'))",
        "crop": "centre square on the short side",
        "resize": "clean-fid 'clean': PIL Image.resize BICUBIC per channel in float32 mode 'F', clipped to [0, 255], "
        "on the CPU before the network",
        "dtype": "float32 (rounded to uint8 for torch-fidelity's Inception, which takes uint8 only)",
        "range": [0, 255],
    },
}


def preparation(resize: str, resolution: int) -> dict[str, Any]:
    """The image-preparation convention as a record: what a cached statistic and a run's provenance name."""
    if resize not in PREPARATIONS:
        raise UserError(f"resize={resize}: choose one of {', '.join(RESIZES)}")
    return {"id": f"{resize}@{int(resolution)}", "size": [int(resolution), int(resolution)], **PREPARATIONS[resize]}


def prepare(image: Any, resolution: int, resize: str = "pil_bicubic") -> np.ndarray:
    """One image (PIL or uint8 HxWx3 array) under the module's convention: RGB, center square, resized to
    `resolution` by `resize` (see PREPARATIONS): uint8 for pil_bicubic, float32 in [0, 255] for clean."""
    from PIL import Image

    if resize not in PREPARATIONS:
        raise UserError(f"resize={resize}: choose one of {', '.join(RESIZES)}")
    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image, dtype=np.uint8))
    image = image.convert("RGB")
    width, height = image.size
    side = min(width, height)
    if width != height:
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if resize == "clean":
        return clean_resize(np.asarray(image, dtype=np.uint8), resolution)
    if side != resolution:
        image = image.resize((resolution, resolution), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8)


def clean_resize(array: np.ndarray, resolution: int) -> np.ndarray:
    """clean-fid's "clean" resize of a uint8 (H, W, 3) image: each channel as a float32 PIL image, bicubic, clipped
    to [0, 255]; float32 (resolution, resolution, 3), not quantised (also when the size does not change)."""
    from PIL import Image

    channels = [
        np.asarray(
            Image.fromarray(array[:, :, c].astype(np.float32)).resize(
                (resolution, resolution), Image.Resampling.BICUBIC
            )
        )
        for c in range(3)
    ]
    return np.stack(channels, axis=2).clip(0, 255).astype(np.float32)


def pixels(images: Iterable[Any], resolution: int, mapper: Mapper = map, resize: str = "pil_bicubic") -> torch.Tensor:
    """A batch under the convention, as a (N, 3, resolution, resolution) tensor: uint8, or float32 for clean."""
    prepared = list(mapper(partial(prepare, resolution=resolution, resize=resize), images))
    return torch.from_numpy(np.stack(prepared)).permute(0, 3, 1, 2)


# --- feature extractors -------------------------------------------------------------------------------------------


class Extractor(nn.Module):
    """Maps uint8 (N, 3, R, R) images to (features (N, D), logits (N, C) or None).

    `name` identifies the network and its weights (part of the statistics cache key); `tag` names the metric in
    the output: "" for Inception (columns fid, is, is_std), otherwise e.g. "toyfeat" (fid_toyfeat, ...), so a
    number made with another network is never called FID."""

    name: str
    tag: str
    resolution: int
    num_features: int
    resize: str = "pil_bicubic"  # set by load_extractor: the preparation convention its images get
    device: torch.device = torch.device("cpu")  # set by load_extractor


class InceptionExtractor(Extractor):
    """The FID Inception-v3 (torch-fidelity's TF port, as in torchmetrics' `feature=2048`): pool3 features for
    FID and the unbiased logits torchmetrics' InceptionScore uses, from one forward pass."""

    tag = ""
    num_features = 2048

    def __init__(self, weights: Path):
        super().__init__()
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        self.net = FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(weights)
        )
        self.resolution = INCEPTION_RESOLUTION
        self.name = f"inception-v3-compat:{file_hash(weights)}"  # other weights, other cached statistics

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if images.dtype != torch.uint8:  # resize=clean: float [0, 255]; this network takes uint8 only
            images = images.round().clamp(0, 255).to(torch.uint8)
        features, logits = self.net(images)
        return features, logits


class ModuleExtractor(Extractor):
    """Any network taking float [0, 1] (N, 3, R, R) images: `embed` gives the features, `logits` (optional) the
    class logits for an Inception-Score-style number."""

    def __init__(
        self,
        embed: Callable[[torch.Tensor], torch.Tensor],
        *,
        name: str,
        tag: str,
        resolution: int,
        num_features: int,
        logits: Callable[[torch.Tensor], torch.Tensor] | None = None,
        modules: Iterable[nn.Module] = (),
    ):
        super().__init__()
        self.nets = nn.ModuleList(modules)  # so .to(device) moves them
        self.embed, self.logits = embed, logits
        self.name = f"{name}:{weights_hash(self.nets)}"
        self.tag, self.resolution, self.num_features = tag, int(resolution), int(num_features)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = images.float() / 255.0  # uint8, or float [0, 255] from resize=clean
        return self.embed(x), (self.logits(x) if self.logits is not None else None)


class TinyRandomNet(nn.Module):
    """A small seeded convolutional network for tests and debugging: its numbers mean nothing."""

    num_features = 16
    resolution = 32

    def __init__(self, seed: int = 0):
        super().__init__()
        with torch.random.fork_rng(devices=[]):  # the same weights every time, the global RNG untouched
            torch.manual_seed(seed)
            self.body = nn.Sequential(
                nn.Conv2d(3, 8, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.Conv2d(8, 16, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
            )
            self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def source_hash(*objects: object) -> str:
    """The bytes of the source files that define `objects` (a user's factory and its network's class): an extractor
    edited in place, its forward changed and its weights not, keys other statistics (the cached reference's were
    returned, and a shard's merged with another's)."""
    digest = hashlib.sha1()
    files = dict.fromkeys(getattr(inspect.getmodule(obj), "__file__", None) for obj in objects)
    for path in filter(None, files):
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:12]


def weights_hash(modules: Iterable[nn.Module]) -> str:
    """Fingerprint of a network's weights: retraining it changes the cache key."""
    digest = hashlib.sha1()
    for module in modules:
        for key, tensor in sorted(module.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def load_extractor(
    spec: str,
    device: torch.device,
    *,
    inception_weights: str | None = None,
    resolution: int | None = None,
    resize: str = "pil_bicubic",
) -> Extractor:
    """`inception` | `toy` | `tiny_random` (tests/debug) | `package.module:factory` (factory(device) -> module).
    `resize`: the image-preparation convention (`PREPARATIONS`) its images get."""
    if resize not in PREPARATIONS:
        raise UserError(f"resize={resize}: choose one of {', '.join(RESIZES)}")
    if spec == "inception":
        if resolution not in (None, INCEPTION_RESOLUTION):
            raise UserError(f"resolution={resolution}: the FID Inception network takes {INCEPTION_RESOLUTION} px")
        extractor: Extractor = _inception(inception_weights_file(inception_weights))
    elif spec == "toy":
        extractor = _toy_extractor(device)
    elif spec == "tiny_random":
        net = TinyRandomNet()
        extractor = ModuleExtractor(
            net, name="tiny_random", tag="tinyrandom", resolution=net.resolution, num_features=net.num_features,
            logits=net.logits, modules=[net],
        )  # fmt: skip
    elif ":" in spec:
        extractor = _custom_extractor(spec, device)
    else:
        check_features(spec)
    if resolution is not None:
        extractor.resolution = int(resolution)
    extractor.resize = resize
    extractor.device = device
    return extractor.to(device).eval()


def _inception(weights: Path) -> InceptionExtractor:
    """The FID Inception from `weights`; a file that is not torch-fidelity's Inception (empty, cut short, another
    network's state) is one line naming it, where the reader's own error was a traceback (or, for an empty file,
    read as an interruption)."""
    from ..models.loading import refusing_pickles

    try:
        with refusing_pickles(f"inception_weights {weights}"):
            return InceptionExtractor(weights)
    except UserError:
        raise
    except Exception as err:  # whatever the reader raised: the file is what is wrong
        raise UserError(
            f"inception_weights {weights} cannot be read as the FID Inception ({type(err).__name__}: "
            f"{first_line(err)}); use torch-fidelity's file, {INCEPTION_URL}"
        ) from None


def inception_weights_file(path: str | None) -> Path:
    """The Inception weights: `inception_weights=PATH`, else torch hub's cache (downloaded there when online)."""
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        raise UserError("features=inception needs torch-fidelity; run `pip install torch-fidelity`") from None
    if path:
        given = Path(path).expanduser()
        if not given.is_file():
            raise UserError(f"inception_weights={given} not found; download {INCEPTION_URL} there")
        return given
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    if cached.is_file():
        return cached
    if not _offline():
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(INCEPTION_URL, str(cached), progress=False)
            return cached
        except Exception:  # any network or disk failure becomes the one line below
            cached.unlink(missing_ok=True)
    raise UserError(
        f"Inception weights {INCEPTION_FILE} are not in {cached.parent} and cannot be downloaded here; fetch "
        f"{INCEPTION_URL} into that folder or set inception_weights=/path/to/file"
    )


def _toy_extractor(device: torch.device) -> Extractor:
    """The toy classifier's features (`load_classifier(device).embed`, float [0, 1] NCHW). IS-style scores come
    from its class logits only if it has a `logits(images) -> (N, C)` method; otherwise they stay empty."""
    try:
        from ..toy import features
        from ..toy.data import IMAGE_SIZE
    except ImportError:
        raise UserError("features=toy needs the toy feature network (diversity_cli.toy.features), missing") from None
    classifier = features.load_classifier(device)
    candidates = (classifier, getattr(classifier, "net", None), getattr(classifier, "model", None))
    modules = [m for m in candidates if isinstance(m, nn.Module)][:1]  # its weights key the cache
    resolution = int(getattr(classifier, "resolution", None) or getattr(classifier, "image_size", None) or IMAGE_SIZE)
    probe_images = torch.zeros(2, 3, resolution, resolution, device=device)
    with torch.no_grad():
        num_features = classifier.embed(probe_images).shape[-1]
        logits = getattr(classifier, "logits", None)
        if callable(logits):
            probe = logits(probe_images)
            logits = logits if isinstance(probe, torch.Tensor) and probe.dim() == 2 else None
    return ModuleExtractor(
        classifier.embed, name="toy", tag="toyfeat", resolution=resolution, num_features=num_features,
        logits=logits if callable(logits) else None, modules=modules,
    )  # fmt: skip


def _custom_extractor(spec: str, device: torch.device) -> Extractor:
    # By design this imports the named module and calls its factory: the user's own code runs, as with any import
    # (README "What happens when..."). It is the one loader here that runs code; name only modules you trust.
    module_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise UserError(f"features={spec}: cannot import it ({err})") from None
    if not callable(factory):
        raise UserError(f"features={spec}: {attr} is not a factory (a function of the device returning an nn.Module)")
    try:
        net = factory(device)
    except Exception as err:  # the user's code, called as a factory of the device: its failure is one line
        raise UserError(f"features={spec}: {attr}(device) raised {type(err).__name__}: {first_line(err)}") from None
    if not isinstance(net, nn.Module) or not isinstance(getattr(net, "num_features", None), int):
        raise UserError(f"features={spec} must return an nn.Module with an integer `num_features`")
    tag = re.sub(r"[^a-z0-9]+", "", str(getattr(net, "tag", "custom")).lower()) or "custom"
    return ModuleExtractor(
        net, name=f"{spec}@{source_hash(factory, type(net))}", tag=tag,
        resolution=int(getattr(net, "resolution", INCEPTION_RESOLUTION)),
        num_features=net.num_features, logits=getattr(net, "logits", None), modules=[net],
    )  # fmt: skip


# --- FID and IS through torchmetrics ------------------------------------------------------------------------------


class GivenFeatures(nn.Module):
    """The identity, as torchmetrics' `feature` module: features arrive already computed (once per image)."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def feature_fid(num_features: int):
    """torchmetrics' FID over precomputed features; the real side survives `reset()` (it comes from a cache)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    return FrechetInceptionDistance(feature=GivenFeatures(num_features), reset_real_features=False)


def reference_statistics(
    extractor: Extractor,
    batches: Iterable[list[Any]],
    identity: dict[str, Any],
    cache_dir: Path | None,
    progress: Progress | None = None,
    mapper: Mapper = map,
) -> tuple[dict[str, torch.Tensor], bool]:
    """torchmetrics' real-side FID sums for a reference set, from the cache when it has them.
    Returns (statistics, whether they came from the cache). `batches` is only consumed on a miss."""
    key = {
        **identity,
        "resolution": extractor.resolution,
        "extractor": extractor.name,  # the network and a hash of its weights
        "preparation": preparation(extractor.resize, extractor.resolution),  # every field, not only its id
        "packages": packages(*STATISTICS_PACKAGES),
    }
    path = cache_path(cache_dir, key) if cache_dir is not None else None
    if path is not None and path.is_file():
        try:  # weights_only: a planted pickle raises here instead of running
            return {name: value for name, value in torch.load(path, weights_only=True).items()}, True
        except Exception:  # a damaged or foreign cache file is only lost time: computed again and replaced
            pass
    fid = feature_fid(extractor.num_features)
    for batch in batches:
        features, _ = extractor(pixels(batch, extractor.resolution, mapper, extractor.resize).to(extractor.device))
        fid.update(features.cpu(), real=True)
        if progress is not None:
            progress(len(batch))
    stats = {name: getattr(fid, name).clone() for name in REAL_STATES}
    if path is not None:
        with atomic_path(path) as partial:  # a sweep running in parallel never reads half a file
            torch.save(stats, partial)
        write_text(path.with_suffix(".json"), json.dumps(key, indent=2, sort_keys=True) + "\n")
    return stats, False


# Libraries whose version can change the statistics: the decoder and resizer (Pillow, numpy), the network's
# runtime and port (torch, torch-fidelity), the running sums (torchmetrics).
STATISTICS_PACKAGES = ("torch", "torchvision", "torch-fidelity", "torchmetrics", "pillow", "numpy")


def cache_path(cache_dir: Path, key: dict[str, Any]) -> Path:
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir / f"{key.get('kind', 'reference')}-{digest}.pt"


def default_cache_dir() -> Path:
    return cache_dir("fid")


IS_RELIABLE_N = 5000  # Inception Score over fewer images is biased and noisy (Barratt & Sharma 2018; 50k usual)


def inception_score(logits: torch.Tensor, splits: int = 10, seed: int | None = 0) -> tuple[float, float]:
    """Inception Score of class logits (N, C) the way torch-fidelity computes it: rows shuffled by
    numpy.random.RandomState(seed).permutation(N) (seed None: not shuffled), split at floor(i N / splits), per
    split exp(mean KL(p(y|x) || mean p(y))) in float64; returns (mean, population std, ddof=0) over splits."""
    n = logits.shape[0]
    if not 1 <= splits <= n:
        raise ValueError(f"Inception Score with {splits} splits needs at least {splits} images (got {n})")
    x = logits.detach().cpu().double()
    if seed is not None:
        x = x[torch.from_numpy(np.random.RandomState(seed).permutation(n))]
    log_p = x.log_softmax(dim=1)
    scores = []
    for i in range(splits):
        part = log_p[i * n // splits : (i + 1) * n // splits]
        log_marginal = part.exp().mean(dim=0).log()
        kl = (part.exp() * (part - log_marginal)).sum(dim=1)
        scores.append(float(kl.mean().exp()))
    return float(np.mean(scores)), float(np.std(scores))


def inception_score_caveat(n: int) -> str | None:
    """A sentence for the report when IS rests on too few images to be cited; None when n is enough."""
    if n >= IS_RELIABLE_N:
        return None
    return f"IS over {n} images is unreliable (fewer than {IS_RELIABLE_N}; it is biased low and noisy at small n)"


class QualityScores:
    """FID and IS (torchmetrics) of one group of generated images against fixed reference statistics, and CLIP
    score against their prompts; `update` with images and prompts, `compute`, `reset` for the next group.

    Mergeable: `state()` is the group's sufficient statistics (FID: feature count, sum and sum of outer products,
    float64, torchmetrics' own states; IS: every image's logits in order; CLIP: the float64 sum of per-image
    scores and their count). `merge_states` adds the sums and concatenates the logits of consecutive blocks, and
    `compute` always goes through `scores_from_state`, so shards measured apart and merged give the one-process
    numbers (to float64 rounding of the sums' order, ~1e-12), provided each image is embedded in the same batch
    (metric shards split at batch boundaries; a network's output can depend on its batch in the last bit)."""

    def __init__(
        self,
        extractor: Extractor,
        reference: dict[str, torch.Tensor],
        clip=None,
        is_splits: int = 10,
        mapper: Mapper = map,
    ):
        self.extractor, self.clip, self.mapper = extractor, clip, mapper
        self.reference = reference
        self.fid = feature_fid(extractor.num_features)
        for name in REAL_STATES:
            setattr(self.fid, name, reference[name].clone())
        self.is_splits = int(is_splits)
        self.reset()

    def update(self, images: list[Any], prompts: list[str]) -> None:
        device = self.extractor.device
        prepared = pixels(images, self.extractor.resolution, self.mapper, self.extractor.resize)
        features, logits = self.extractor(prepared.to(device))
        self.fid.update(features.cpu(), real=False)
        if logits is not None:
            self.logits.append(logits.detach().cpu().double())
        if self.clip is not None:
            # CLIPScore's own update, minus its float32 running sum: per-image scores summed in float64 add up the
            # same whether the images were measured in one process or in shards.
            from torchmetrics.functional.multimodal.clip_score import _clip_score_update

            scores, count = _clip_score_update(
                [_chw(image).to(device) for image in images], list(prompts), self.clip.model, self.clip.processor
            )
            self.clip_sum += float(scores.detach().double().sum())
            self.clip_n += int(count)
        self.count += len(images)

    def state(self) -> dict[str, Any]:
        """The group's sufficient statistics (see the class): what a shard ships to the merge."""
        return {
            **{name: getattr(self.fid, name).clone() for name in FAKE_STATES},
            "logits": torch.cat(self.logits) if self.logits else None,
            "clip_sum": self.clip_sum if self.clip is not None else None,
            "clip_n": self.clip_n,
            "count": self.count,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Go on from `state()` of this group's earlier batches (a shard resumed after a requeue): the float64 sums
        continue from the saved values and the logits keep their order, so the result is the uninterrupted one
        bit for bit."""
        for name in FAKE_STATES:
            setattr(self.fid, name, state[name].clone())
        self.logits = [state["logits"].clone()] if state["logits"] is not None else []
        self.clip_sum = state["clip_sum"] if state["clip_sum"] is not None else 0.0
        self.clip_n, self.count = int(state["clip_n"]), int(state["count"])

    def compute(self, seed: int = 0) -> dict[str, float | None]:
        """fid, is, is_std and clip (None where not defined: fewer than 2 images, no logits, no CLIP model)."""
        return scores_from_state(self.state(), self.reference, self.extractor.num_features, self.is_splits, seed)

    def reset(self) -> None:
        self.fid.reset()  # keeps the reference side
        self.logits: list[torch.Tensor] = []
        self.clip_sum, self.clip_n, self.count = 0.0, 0, 0


def merge_states(states: list[dict[str, Any]]) -> dict[str, Any]:
    """One group's state from the states of consecutive blocks of its images, in order: sums add, logits
    concatenate (IS shuffles them by a seeded permutation, so their order is part of the number)."""
    if not states:
        raise ValueError("no states to merge")
    merged = {name: sum(state[name] for state in states) for name in (*FAKE_STATES, "clip_n", "count")}
    logits = [state["logits"] for state in states if state["logits"] is not None]
    merged["logits"] = torch.cat(logits) if logits else None
    clip = [state["clip_sum"] for state in states if state["clip_sum"] is not None]
    merged["clip_sum"] = math.fsum(clip) if clip else None
    return merged


def scores_from_state(
    state: dict[str, Any], reference: dict[str, torch.Tensor], num_features: int, is_splits: int = 10, seed: int = 0
) -> dict[str, float | None]:
    """fid, is, is_std, clip from a (possibly merged) state and the reference's real-side sums."""
    # is_images: the images an IS could be over (None: the features have no classifier head, so no IS at all)
    scores: dict[str, float | None] = {"fid": None, "is": None, "is_std": None, "clip": None, "is_images": None}
    if state["count"] >= 2:
        fid = feature_fid(num_features)
        for name in REAL_STATES:
            setattr(fid, name, reference[name].clone())
        for name in FAKE_STATES:
            setattr(fid, name, state[name].clone())
        fid.orig_dtype = torch.float64  # torchmetrics computes in float64; no rounding to float32 at the end
        with warnings.catch_warnings():  # its states were set, not updated: torchmetrics would warn
            warnings.simplefilter("ignore", UserWarning)
            scores["fid"] = float(fid.compute())
    logits = state["logits"]
    scores["is_images"] = None if logits is None else len(logits)
    if logits is not None and len(logits) >= 2 * int(is_splits):
        # Seeded shuffle: the number repeats. Under two images a split there is no IS: a split of one image scores
        # exactly 1 (its KL to itself is 0), whatever the images, so the cell stays empty rather than say so.
        scores["is"], scores["is_std"] = inception_score(logits, int(is_splits), seed)
    if scores["fid"] is not None:
        scores["fid"] = max(scores["fid"], 0.0)  # a distance: float64 rounding left -1e-12 for identical sets
    if state["clip_sum"] is not None and state["clip_n"]:
        scores["clip"] = max(state["clip_sum"] / state["clip_n"], 0.0)  # CLIPScore's compute: max(mean, 0)
    return scores


def _chw(image: Any) -> torch.Tensor:
    return torch.from_numpy(np.array(image.convert("RGB") if hasattr(image, "convert") else image)).permute(2, 0, 1)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


# --- CLIP score ---------------------------------------------------------------------------------------------------


class ProjectedCLIP(nn.Module):
    """A transformers CLIPModel whose `get_image_features` / `get_text_features` return the projected embedding
    tensor, as torchmetrics' CLIPScore expects: transformers 5 returns an output object there instead (its
    `pooler_output` is the projected embedding), on which CLIPScore fails ("... has no attribute 'norm'")."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.config = model.config  # CLIPScore reads the text length limit from here

    def get_image_features(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return _embedding(self.model.get_image_features(*args, **kwargs))

    def get_text_features(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return _embedding(self.model.get_text_features(*args, **kwargs))


def _embedding(output: Any) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def clip_score_metric(model: nn.Module, processor: Any):
    """torchmetrics' CLIPScore on a transformers CLIP model and processor (100 x cosine, mean over images)."""
    from torchmetrics.multimodal.clip_score import CLIPScore

    return CLIPScore(model_name_or_path=lambda: (ProjectedCLIP(model).eval(), processor))


def load_clip(spec: str | None, device: torch.device):
    """CLIPScore for `clip_model`: a hub id or local folder (from the Hugging Face cache, never downloaded when
    HF_HUB_OFFLINE=1), `tiny_random` (tests/debug), or None for no CLIP score."""
    if spec is None:
        return None
    if spec == "tiny_random":
        model, processor = tiny_clip()
    else:
        from transformers import CLIPModel, CLIPProcessor

        from ..models.loading import guarded_load

        model = guarded_load(lambda local: CLIPModel.from_pretrained(spec, local_files_only=local), spec, "clip_model")
        processor = guarded_load(
            lambda local: CLIPProcessor.from_pretrained(spec, local_files_only=local), spec, "clip_model"
        )
    return clip_score_metric(model.eval(), processor).to(device)


def tiny_clip(seed: int = 0):
    """A tiny random-weight CLIP (model, processor) built offline: a character-level tokenizer and 32-px images.
    For tests and debugging: it exercises the real CLIPScore path; its scores mean nothing."""
    import string

    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in string.ascii_lowercase + string.digits + string.punctuation:
        vocab.setdefault(char, len(vocab))
        vocab.setdefault(char + "</w>", len(vocab))  # a word's last character
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    layers = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), max_position_embeddings=77, bos_token_id=0, eos_token_id=1, **layers),
        vision_config=dict(image_size=32, patch_size=8, **layers),
        projection_dim=16,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config)
    return model.eval(), CLIPProcessor(image_processor=images, tokenizer=tokenizer)
