"""Image embedders: each maps images to vectors whose pairwise distances are the metric.

Every image is embedded once; the distances between N images are then one matrix product
(`pairwise_distances`), never one network call per pair. That is exact, not an approximation, for every
embedder here:

- `dreamsim`: DreamSim's distance is 1 - cosine of its embeddings -> kind "cosine".
- `clip`, `dino`: cosine distance of image features -> "cosine".
- `pixel`: RMSE between images downsampled to `size` x `size` (embedding scaled by 1/sqrt(D)) -> "euclidean".
- `lpips`: LPIPS is, per layer, the spatial mean of sum_c w_c (f0_c - f1_c)^2 over channel-normalised features
  with non-negative weights w. So it is the squared euclidean distance between the features scaled by
  sqrt(w / (H W)) -> "sqeuclidean", equal to torchmetrics' pair-by-pair LPIPS (tests check it) without
  its N(N-1) network calls. Its embeddings are large (every feature map), so they are not cached.
- `toy_features`: the toy classifier's features (`diversity_cli.toy.features`), when that module exists.

Nothing here downloads: a missing checkpoint is one `UserError` line naming the file and where to put it.
Embedders return float32 embeddings on the CPU.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from ..core.errors import UserError, first_line
from ..core.images import image_tensor
from .preflight import DREAMSIM_FILES, DREAMSIM_HUB, dreamsim_cache_dir, dreamsim_files, dreamsim_missing  # noqa: F401

DISTANCES = ("cosine", "euclidean", "sqeuclidean")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@runtime_checkable
class Embedder(Protocol):
    name: str
    distance: str  # a kind of `pairwise_distances`

    def __call__(self, images: torch.Tensor) -> torch.Tensor:  # (N,3,H,W) in [0,1] -> (N,D)
        ...


class BatchedEmbedder:
    """An embedder made of a function on one batch: batches, runs without autograd, returns float32 on CPU."""

    def __init__(
        self,
        name: str,
        distance: str,
        embed_batch: Callable[[torch.Tensor], torch.Tensor],
        device: str | torch.device = "cpu",
        batch_size: int = 16,
        cacheable: bool = True,
    ):
        if distance not in DISTANCES:
            raise ValueError(f"distance {distance!r} is not one of {DISTANCES}")
        self.name = name
        self.distance = distance
        self.embed_batch = embed_batch
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.cacheable = cacheable  # embeddings small enough to keep on disk between runs
        self.cache_key = name  # get_embedder adds the options that change the embeddings
        # Where its weights come from: files / folders (hashed by their bytes) or in-memory networks (their state).
        # Cache keys and provenance fingerprint them; each factory lists what it loaded.
        self.weights: list[Any] = []

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        parts = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = images[start : start + self.batch_size].to(self.device, torch.float32)
                parts.append(self.embed_batch(batch).float().flatten(1).cpu())
        return torch.cat(parts) if parts else torch.empty(0, 0)


def pairwise_distances(a: torch.Tensor, b: torch.Tensor | None = None, kind: str = "euclidean") -> torch.Tensor:
    """(N,M) float64 distances between the rows of `a` and `b` (b=None: `a` against itself, zero diagonal).

    Accumulated in float64 (the euclidean form |x|^2 + |y|^2 - 2 x.y loses digits for nearby points in float32),
    a block of columns at a time: the inputs are never copied whole into float64, which for LPIPS's large
    embeddings would double the memory.
    """
    if kind not in DISTANCES:
        raise ValueError(f"distance kind {kind!r} is not one of {DISTANCES}")
    x = a.detach().flatten(1).cpu()
    y = x if b is None else b.detach().flatten(1).cpu()
    gram = gram64(x, None if b is None else y)
    # Norms from the Gram matrix itself (a vs a): identical rows then cancel to exactly zero.
    x_sq = gram.diagonal().clone() if b is None else squared_norms64(x)
    y_sq = x_sq if b is None else squared_norms64(y)
    if kind == "cosine":
        norms = x_sq.sqrt().clamp_min(1e-12)[:, None] * y_sq.sqrt().clamp_min(1e-12)[None, :]
        dist = (1.0 - gram / norms).clamp(0.0, 2.0)
    else:
        scale = x_sq[:, None] + y_sq[None, :]
        dist = (scale - 2.0 * gram).clamp_min(0.0)
        _refine_near_zero(dist, scale, x, y)
        if kind == "euclidean":
            dist = dist.sqrt()
    if b is None:
        dist = (dist + dist.T) / 2
        dist.fill_diagonal_(0.0)
    return dist


CHUNK_BYTES = 64 * 2**20  # float64 working set of one block of columns (or rows) at a time


def _column_blocks(rows: int, columns: int) -> range:
    """Starts of blocks of columns whose float64 copy for `rows` rows fits CHUNK_BYTES."""
    return range(0, columns, max(1, CHUNK_BYTES // (8 * max(1, rows))))


def gram64(x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """x @ y.T in float64 (y=None: x @ x.T), summed over blocks of columns converted one at a time."""
    rows = x.shape[0] if y is None else x.shape[0] + y.shape[0]
    gram = torch.zeros(x.shape[0], x.shape[0] if y is None else y.shape[0], dtype=torch.float64)
    step = _column_blocks(rows, x.shape[1]).step
    for start in range(0, x.shape[1], step):
        xs = x[:, start : start + step].double()
        ys = xs if y is None else y[:, start : start + step].double()
        gram.addmm_(xs, ys.T)
    return gram


def squared_norms64(x: torch.Tensor) -> torch.Tensor:
    """Row norms squared, in float64, a block of columns at a time."""
    total = torch.zeros(x.shape[0], dtype=torch.float64)
    step = _column_blocks(x.shape[0], x.shape[1]).step
    for start in range(0, x.shape[1], step):
        block = x[:, start : start + step].double()
        total += (block * block).sum(1)
    return total


def _refine_near_zero(sq: torch.Tensor, scale: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> None:
    """Recompute tiny squared distances directly: the Gram form leaves rounding noise of about 1e-16 x |x|^2 there,
    which a square root would blow up to 1e-8 x |x| (identical images must give exactly 0)."""
    i, j = (sq <= 1e-9 * scale).nonzero(as_tuple=True)
    chunk = max(1, CHUNK_BYTES // (8 * max(1, x.shape[1])))
    for start in range(0, len(i), chunk):
        a, b = i[start : start + chunk], j[start : start + chunk]
        sq[a, b] = ((x[a].double() - y[b].double()) ** 2).sum(1)


def image_files(folder: Path) -> list[Path]:
    """Image files under `folder` (recursively), sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_image(path: Path) -> torch.Tensor:
    """One image file -> float (3,H,W) in [0,1]; a damaged file is one line naming it."""
    return image_tensor(path)


def load_images(paths: list[Path], size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """Image files -> float (N,3,H,W) in [0,1]. They must share one size unless `size` resizes them (bicubic)."""
    images = [load_image(Path(p)) for p in paths]
    if size is not None:
        hw = (size, size) if isinstance(size, int) else tuple(size)
        images = [resize(img[None], hw)[0] for img in images]
    sizes = sorted({tuple(img.shape[1:]) for img in images})
    if len(sizes) > 1:
        raise UserError(f"images have different sizes {sizes[:3]}; pass a size to resize them to one")
    return torch.stack(images) if images else torch.empty(0, 3, 0, 0)


def resize(images: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Bicubic, antialiased (like PIL's resize), clamped back into [0,1]."""
    if tuple(images.shape[-2:]) == tuple(hw):
        return images
    return F.interpolate(images, size=hw, mode="bicubic", antialias=True, align_corners=False).clamp(0.0, 1.0)


# ---------------------------------------------------------------------------------------------------- pixel


def pixel(device: torch.device, size: int = 64, batch_size: int = 64) -> BatchedEmbedder:
    """Pixels resized to `size` (down, or up for a smaller image); the euclidean distance of the embeddings is the
    RMSE of the resized images."""

    def embed(batch: torch.Tensor) -> torch.Tensor:
        small = F.interpolate(batch, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        flat = small.flatten(1)
        return flat / flat.shape[1] ** 0.5

    return BatchedEmbedder("pixel", "euclidean", embed, device, batch_size)


# ------------------------------------------------------------------------------------------------- dreamsim

# What DreamSim reads from its cache dir: preflight.py (torch-free, so a command can check it before any work).
DREAMSIM_SIZE = 224


def dreamsim(
    device: torch.device,
    type: str = "ensemble",
    cache_dir: str | None = None,
    normalize_embeds: bool = True,
    batch_size: int = 16,
) -> BatchedEmbedder:
    """DreamSim (Fu et al. 2023): images squashed to 224x224 bicubic in [0,1]; normalisation is inside the model."""
    if type not in DREAMSIM_FILES:
        raise UserError(f"unknown dreamsim type '{type}'; choose one of: {', '.join(DREAMSIM_FILES)}")
    folder = dreamsim_cache_dir(cache_dir)
    missing = dreamsim_missing(folder, type)
    if missing:
        raise UserError(
            f"dreamsim '{type}' weights missing in {folder}: {', '.join(missing)}; run `from dreamsim import "
            f"dreamsim; dreamsim(cache_dir='{folder}', dreamsim_type='{type}')` once with network (or copy that "
            "folder here), or set embedders.dreamsim.cache_dir=/path"
        )
    from dreamsim import dreamsim as load_dreamsim

    from ..models.loading import refusing_pickles

    hub_dir = torch.hub._hub_dir  # dreamsim sets torch.hub's directory globally; put it back afterwards
    try:
        # its "Using cached ..." must not mix with our table
        with contextlib.redirect_stdout(sys.stderr), refusing_pickles(f"dreamsim weights in {folder}"):
            model, _ = load_dreamsim(
                pretrained=True,
                device=str(device),
                cache_dir=str(folder),
                normalize_embeds=normalize_embeds,
                dreamsim_type=type,
            )
    finally:
        torch.hub._hub_dir = hub_dir

    def embed(batch: torch.Tensor) -> torch.Tensor:
        return model.embed(resize(batch, (DREAMSIM_SIZE, DREAMSIM_SIZE)))

    embedder = BatchedEmbedder("dreamsim", "cosine", embed, device, batch_size)
    embedder.weights = [folder / name for name in dreamsim_files(type)]
    return embedder


# ---------------------------------------------------------------------------------------------------- lpips

LPIPS_BACKBONES = {"alex": "AlexNet_Weights", "vgg": "VGG16_Weights", "squeeze": "SqueezeNet1_1_Weights"}


LPIPS_RESIZE = 256  # default side LPIPS sees: at 1024 px VGG's features alone are 488 MiB per image
LPIPS_FEATURE_BYTES = 1 << 30  # features held at once by `LpipsEmbedder.distances` (two blocks of images)


class LpipsEmbedder(BatchedEmbedder):
    """LPIPS as an embedding: channel-normalised features of every layer scaled by sqrt(w / (H W)).

    The squared euclidean distance between two embeddings is torchmetrics' LPIPS of the pair (`normalize=True`).
    `network` is a torchmetrics `_LPIPS` module (its backbone and its linear layers).

    Calling it returns every layer's features of every image at once (large); `distances` gives the same
    distance matrix streamed per layer and per block of image pairs, holding two blocks' features at a time.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        device: str | torch.device = "cpu",
        batch_size: int = 8,
        feature_bytes: int = LPIPS_FEATURE_BYTES,
    ):
        from torchmetrics.functional.image.lpips import _normalize_tensor, _resize_tensor

        self.network = network.to(device).eval()
        weights = [lin.model[-1].weight.detach().flatten() for lin in network.lins]
        if any(bool((w < 0).any()) for w in weights):
            raise ValueError("LPIPS linear weights must be non-negative to be an embedding distance")
        keep = [w > 0 for w in weights]  # channels with zero weight do not count: leave them out
        self.feature_bytes = int(feature_bytes)

        def layers(batch: torch.Tensor) -> list[torch.Tensor]:
            """Each layer's scaled features of a batch, (B, D_layer) float32."""
            x = self.network.scaling_layer(2 * batch - 1)
            if self.network.resize is not None:
                x = _resize_tensor(x, size=self.network.resize)
            parts = []
            for feature, w, k in zip(self.network.net(x), weights, keep, strict=True):
                feature = _normalize_tensor(feature)[:, k]
                scale = (w[k] / (feature.shape[2] * feature.shape[3])).sqrt()
                parts.append((feature * scale[None, :, None, None]).flatten(1))
            return parts

        self._layers = layers
        super().__init__(
            "lpips", "sqeuclidean", lambda batch: torch.cat(layers(batch), dim=1), device, batch_size, cacheable=False
        )

    def layer_features(self, images: ImageSource, start: int = 0, stop: int | None = None) -> list[torch.Tensor]:
        """Each layer's scaled features of images[start:stop] (a tensor (N,3,H,W) in [0,1], or image files read
        `batch_size` at a time), float32 on the CPU."""
        source = _source(images)
        stop = len(source) if stop is None else min(stop, len(source))
        per_layer: list[list[torch.Tensor]] = []
        with torch.inference_mode():
            for first in range(start, stop, self.batch_size):
                batch = source.load(first, min(first + self.batch_size, stop)).to(self.device, torch.float32)
                for i, part in enumerate(self._layers(batch)):
                    if i == len(per_layer):
                        per_layer.append([])
                    per_layer[i].append(part.float().cpu())
        return [torch.cat(parts) for parts in per_layer]

    def block_size(self, images: ImageSource) -> int:
        """Images per block so that two blocks' features fit `feature_bytes` (from the first image's features)."""
        per_image = sum(part.shape[1] for part in self.layer_features(images, 0, 1)) * 4
        return max(1, self.feature_bytes // (2 * per_image))

    def distances(self, images: ImageSource, other: ImageSource | None = None) -> torch.Tensor:
        """LPIPS of every pair, (N,M) float64 (other=None: `images` against themselves, zero diagonal).

        Per block of rows and block of columns, each layer's squared distances are added into the float64
        matrix; features of only two blocks exist at a time, and images are read `batch_size` at a time. Exactly
        the distances of `pairwise_distances` on the full embeddings (the sum over layers is the concatenation),
        without holding them.
        """
        rows = _source(images)
        cols = rows if other is None else _source(other)
        if len(rows) == 0 or len(cols) == 0:
            return torch.zeros(len(rows), len(cols), dtype=torch.float64)
        block = self.block_size(rows)
        dist = torch.zeros(len(rows), len(cols), dtype=torch.float64)
        for r in range(0, len(rows), block):
            row_features = self.layer_features(rows, r, r + block)
            first = r if other is None else 0  # the square matrix: upper blocks only, mirrored below
            for c in range(first, len(cols), block):
                same = other is None and c == r
                col_features = row_features if same else self.layer_features(cols, c, c + block)
                out = dist[r : r + block, c : c + block]
                for a, b in zip(row_features, col_features, strict=True):
                    out += pairwise_distances(a, None if same else b, "sqeuclidean")
                if other is None and not same:
                    dist[c : c + block, r : r + block] = out.T
                del col_features
        return dist


class _Images:
    """Images to stream: a tensor, or image files read a block at a time (one size per block)."""

    def __init__(self, source: torch.Tensor | list[Path]):
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def load(self, start: int, stop: int) -> torch.Tensor:
        if isinstance(self.source, torch.Tensor):
            return self.source[start:stop]
        return load_images(self.source[start:stop])


ImageSource = torch.Tensor | list[Path]


def _source(images: ImageSource | _Images) -> _Images:
    if isinstance(images, _Images):
        return images
    return _Images(images if isinstance(images, torch.Tensor) else [Path(p) for p in images])


def lpips_backbone_file(net: str) -> tuple[Path, str]:
    """Where torchvision looks for the LPIPS backbone's ImageNet weights, and their URL."""
    import torchvision

    url = getattr(torchvision.models, LPIPS_BACKBONES[net]).DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name, url


def lpips(
    device: torch.device, net: str = "alex", resize: int | None = LPIPS_RESIZE, batch_size: int = 8
) -> LpipsEmbedder:
    """LPIPS with torchmetrics' networks: its linear layers ship with torchmetrics, the backbone is torchvision's.
    `resize`: the side images are resized to first (torchmetrics' area / bilinear resize); None keeps their size."""
    if net not in LPIPS_BACKBONES:
        raise UserError(f"unknown lpips net '{net}'; choose one of: {', '.join(LPIPS_BACKBONES)}")
    path, url = lpips_backbone_file(net)
    if not path.is_file():
        raise UserError(
            f"lpips '{net}' needs torchvision's backbone weights {path} (not found; no download here): "
            f"fetch {url} into that folder, or set TORCH_HOME to a folder holding hub/checkpoints/{path.name}"
        )
    from torchmetrics.functional.image.lpips import _LPIPS

    from ..models.loading import refusing_pickles

    with refusing_pickles(f"lpips backbone {path}"):  # torchvision reads it weights-only (diversity_cli/__init__.py)
        network = _LPIPS(pretrained=True, net=net, resize=resize)
    embedder = LpipsEmbedder(network, device, batch_size)
    embedder.weights = [path, embedder.network.lins]  # the backbone file and torchmetrics' linear layers
    return embedder


# ----------------------------------------------------------------------------------------------- clip / dino


def _hf_cached_folder(repo: str, filename: str, what: str) -> Path:
    """The snapshot folder of a hub repo whose `filename` is in the local Hugging Face cache; never downloads."""
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo, filename)
    except ValueError:  # not a valid repo id either
        found = None
    if not isinstance(found, str):
        raise UserError(
            f"{what}: '{repo}' is not a local folder and {filename} is not in the Hugging Face cache "
            f"{constants.HF_HUB_CACHE}; run `hf download {repo}` with network, or give a local folder"
        )
    return Path(found).parent


def _weights_in(folder: Path) -> list[Path]:
    return [p for ext in ("*.safetensors", "*.bin", "*.pth", "*.pt") for p in folder.glob(ext)]


def _clip_checkpoint(model: str, pretrained: str | None) -> str:
    """A local checkpoint file for an open_clip model name: a path, or a pretrained tag found in the HF cache."""
    import open_clip
    from open_clip.pretrained import get_pretrained_cfg

    if model not in open_clip.list_models():
        raise UserError(f"unknown open_clip model '{model}'; use a name from open_clip.list_models() or local-dir:")
    if not pretrained:
        raise UserError(
            "clip needs weights: set embedders.clip.pretrained=<checkpoint file> or an open_clip tag already in the "
            "Hugging Face cache (e.g. laion2b_s34b_b79k), or embedders.clip.model=local-dir:/folder"
        )
    if Path(pretrained).expanduser().is_file():
        return str(Path(pretrained).expanduser())
    cfg = get_pretrained_cfg(model, pretrained)
    if not cfg:
        raise UserError(f"clip pretrained '{pretrained}' is neither a file nor an open_clip tag of {model}")
    if not cfg.get("hf_hub"):
        raise UserError(
            f"clip {model}/{pretrained} has no Hugging Face copy; download {cfg.get('url')} and pass the file"
        )
    repo, filename = cfg["hf_hub"].rstrip("/"), None
    if not cfg["hf_hub"].endswith("/"):
        repo, filename = os.path.split(cfg["hf_hub"])
    names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    for name in names:
        try:
            return str(_hf_cached_folder(repo, name, "clip") / name)
        except UserError:
            continue
    raise UserError(
        f"clip {model}/{pretrained}: {repo}/{names[-1]} is not in the Hugging Face cache; run `hf download {repo}` "
        "with network, or set embedders.clip.pretrained=<checkpoint file>"
    )


def _clip_source(model: str, pretrained: str | None) -> tuple[str, str | None]:
    """(model name for open_clip.create_model, pretrained file or None) using local files only."""
    if model.startswith("hf-hub:"):
        model = "local-dir:" + str(_hf_cached_folder(model[len("hf-hub:") :], "open_clip_config.json", "clip"))
    if model.startswith("local-dir:"):
        folder = Path(model[len("local-dir:") :]).expanduser()
        if not (folder / "open_clip_config.json").is_file() or not _weights_in(folder):
            raise UserError(f"clip: {folder} needs open_clip_config.json and a checkpoint (.safetensors/.bin/.pth)")
        return f"local-dir:{folder}", None
    return model, _clip_checkpoint(model, pretrained)


def clip(device: torch.device, model: str = "ViT-B-32", pretrained: str | None = None, batch_size: int = 32):
    """open_clip image features, cosine distance; preprocessing (resize, crop, normalise) from the model's config."""
    import open_clip

    from ..models.loading import refusing_pickles

    name, checkpoint = _clip_source(model, pretrained)
    try:
        with refusing_pickles(f"clip {checkpoint or name}"):
            network = open_clip.create_model(name, pretrained=checkpoint, device=device)
    except (RuntimeError, FileNotFoundError, KeyError) as err:
        raise UserError(f"clip: cannot load {model} ({checkpoint or name}): {first_line(err)}") from None
    network.eval()
    prep = open_clip.get_model_preprocess_cfg(network)
    size = prep["size"] if isinstance(prep["size"], (tuple, list)) else (prep["size"], prep["size"])
    mean = torch.tensor(prep["mean"], device=device)[None, :, None, None]
    std = torch.tensor(prep["std"], device=device)[None, :, None, None]

    def embed(batch: torch.Tensor) -> torch.Tensor:
        if prep.get("resize_mode") == "squash":
            x = resize(batch, tuple(size))
        else:  # open_clip's default: shortest side to size, then centre crop
            import torchvision.transforms.functional as TF

            h, w = batch.shape[-2:]
            scale = max(size[0] / h, size[1] / w)
            x = resize(batch, (max(size[0], round(h * scale)), max(size[1], round(w * scale))))
            x = TF.center_crop(x, list(size))
        return network.encode_image((x - mean) / std)

    embedder = BatchedEmbedder("clip", "cosine", embed, device, batch_size)
    embedder.weights = [checkpoint or name.removeprefix("local-dir:")]
    return embedder


def dino(device: torch.device, path: str = "facebook/dinov2-base", batch_size: int = 32) -> BatchedEmbedder:
    """A transformers vision backbone (DINOv2 by default) from a local folder or the HF cache; CLS features, cosine."""
    from transformers import AutoImageProcessor, AutoModel

    folder = Path(path).expanduser()
    if not folder.is_dir():
        folder = _hf_cached_folder(path, "config.json", "dino")
    from ..models.loading import refusing_pickles

    try:
        with refusing_pickles(f"dino {folder}"):
            processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
            network = AutoModel.from_pretrained(folder, local_files_only=True).to(device).eval()
    except (OSError, ValueError) as err:
        raise UserError(f"dino: cannot load {path} from {folder}: {first_line(err)}") from None

    def embed(batch: torch.Tensor) -> torch.Tensor:
        pixels = processor(images=batch.cpu(), do_rescale=False, return_tensors="pt")["pixel_values"]
        out = network(pixel_values=pixels.to(device))
        pooled = getattr(out, "pooler_output", None)
        return pooled if pooled is not None else out.last_hidden_state[:, 0]

    embedder = BatchedEmbedder("dino", "cosine", embed, device, batch_size)
    embedder.weights = [folder]
    return embedder


# ---------------------------------------------------------------------------------------------------- toy


def toy_module():
    """`diversity_cli.toy.features`, imported only when a toy metric is asked for."""
    import importlib

    try:
        return importlib.import_module("diversity_cli.toy.features")
    except ModuleNotFoundError as err:
        if err.name and err.name.startswith("diversity_cli.toy"):
            raise UserError(
                "toy metrics need diversity_cli.toy.features (the toy model), which this checkout does not have yet"
            ) from None
        raise


def toy_features(
    device: torch.device, distance: str = "cosine", path: str | None = None, batch_size: int = 64
) -> BatchedEmbedder:
    """Penultimate features of the toy classifier (`diversity_cli.toy.features`): the shipped one, or one saved
    by train-toy at `path`."""
    if distance not in DISTANCES:
        raise UserError(f"toy_features distance '{distance}' is not one of: {', '.join(DISTANCES)}")
    classifier = toy_module().load_classifier(device, path)
    embedder = BatchedEmbedder("toy_features", distance, classifier.embed, device, batch_size)
    embedder.weights = [classifier]  # its state: whichever file it came from
    return embedder


# ------------------------------------------------------------------------------------------------ registry

EMBEDDERS: dict[str, Callable[..., Embedder]] = {
    "dreamsim": dreamsim,
    "lpips": lpips,
    "clip": clip,
    "dino": dino,
    "pixel": pixel,
    "toy_features": toy_features,
}


def get_embedder(name: str, device: str | torch.device = "cpu", **options: Any) -> Embedder:
    """The embedder `name` with its options (those of conf/diversity.yaml `embedders.<name>`) on `device`."""
    if name not in EMBEDDERS:
        raise UserError(f"unknown embedder '{name}'; choose one of: {', '.join(EMBEDDERS)}")
    factory = EMBEDDERS[name]
    accepted = set(inspect.signature(factory).parameters) - {"device"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise UserError(f"{name} has no option {', '.join(unknown)}; its options: {', '.join(sorted(accepted))}")
    if str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    embedder = factory(torch.device(device), **options)
    fixed = {k: v for k, v in options.items() if k != "batch_size"}  # what changes the embeddings
    embedder.cache_key = f"{name}:{json.dumps(fixed, sort_keys=True, default=str)}"
    return embedder
