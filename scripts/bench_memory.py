"""Memory benchmark: score 64 images of 1024 px with every diversity metric; print the peak resident memory.

    python scripts/bench_memory.py                   # 64 images, 1024 px, budget 4 GiB; exit 1 when over

The images are written as PNG files and read back a batch at a time, as `diversity` reads a run directory. For
each metric the network is built, every image embedded, the mean pairwise distance with its bootstrap interval,
the Vendi score and precision/recall/density/coverage (first half of the images against the second) computed,
and the network freed before the next. LPIPS goes through the streamed distance matrix (`LpipsEmbedder.
distances`, per layer and per block of image pairs, at its default resize); the others through their embeddings.

Weights: with none downloaded on this machine, networks with no local weights are built with RANDOM weights in
the same architectures (the memory a network needs depends on its shapes, not its values), and the output says
so per line: DreamSim's ensemble as its three ViT-B/16 backbones (DINO via timm, CLIP and OpenCLIP via open_clip)
at 224 px; CLIP ViT-B-32 (open_clip); DINOv2-base (transformers) with its image processor's settings; the LPIPS
backbones (AlexNet, VGG-16) with the linear layers that ship with torchmetrics. `pixel` has no weights;
`toy_features` / `toy_coverage` use the shipped toy classifier.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

GIB = 2**30


def peak_rss() -> int:
    """Peak resident set size of this process so far, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def write_images(folder: Path, count: int, size: int) -> list[Path]:
    """`count` smooth random colour images (low-frequency noise plus grain), saved as PNG, one at a time."""
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        coarse = torch.from_numpy(rng.random((1, 3, 8, 8), dtype=np.float32))
        smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0]
        grain = torch.from_numpy(rng.normal(0, 0.03, (3, size, size)).astype(np.float32))
        array = ((smooth + grain).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
        paths.append(folder / f"{i:03d}.png")
        Image.fromarray(array).save(paths[-1], compress_level=1)
    return paths


# --------------------------------------------------------------------------------------------- networks


def dreamsim_shaped(device: torch.device):
    """DreamSim 'ensemble': DINO ViT-B/16, CLIP ViT-B/16 and OpenCLIP ViT-B/16 CLS embeddings, concatenated
    (768 + 512 + 512), images squashed to 224 px. Random weights, no LoRA (same shapes to within the adapters)."""
    import open_clip
    import timm

    from diversity_cli.metrics.embedders import DREAMSIM_SIZE, BatchedEmbedder, resize

    dino = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0).to(device).eval()
    clips = [open_clip.create_model("ViT-B-16", pretrained=None, device=device).visual.eval() for _ in range(2)]

    def embed(batch: torch.Tensor) -> torch.Tensor:
        x = resize(batch, (DREAMSIM_SIZE, DREAMSIM_SIZE))
        parts = [dino(x), *(clip(x) for clip in clips)]
        return torch.cat([torch.nn.functional.normalize(p, dim=1) for p in parts], dim=1)

    return BatchedEmbedder("dreamsim", "cosine", embed, device, 16)


def clip_shaped(device: torch.device):
    """open_clip ViT-B-32 image tower, random weights, the `clip` embedder's squash/crop to 224 px."""
    import open_clip

    from diversity_cli.metrics.embedders import BatchedEmbedder, resize

    network = open_clip.create_model("ViT-B-32", pretrained=None, device=device).eval()
    return BatchedEmbedder("clip", "cosine", lambda b: network.encode_image(resize(b, (224, 224))), device, 32)


def dino_shaped(device: torch.device):
    """transformers DINOv2-base, random weights, with DINOv2's image processor settings (256 short side, 224 crop)."""
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    from diversity_cli.metrics.embedders import BatchedEmbedder

    network = Dinov2Model(Dinov2Config()).to(device).eval()
    processor = BitImageProcessor(
        size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224}, do_convert_rgb=False,
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
    )  # fmt: skip

    def embed(batch: torch.Tensor) -> torch.Tensor:
        pixels = processor(images=batch.cpu(), do_rescale=False, return_tensors="pt")["pixel_values"]
        return network(pixel_values=pixels.to(device)).pooler_output

    return BatchedEmbedder("dino", "cosine", embed, device, 32)


def lpips_random_backbone(net: str) -> Callable[[torch.device], object]:
    def build(device: torch.device):
        from torchmetrics.functional.image.lpips import _LPIPS

        from diversity_cli.metrics.embedders import LPIPS_RESIZE, LpipsEmbedder

        network = _LPIPS(pretrained=True, net=net, pnet_rand=True, resize=LPIPS_RESIZE)
        return LpipsEmbedder(network, device, batch_size=8)

    return build


METRICS: list[tuple[str, str, Callable[[torch.device], object] | None]] = [
    ("pixel", "no weights", None),
    ("dreamsim", "RANDOM weights: ensemble-shaped, 3x ViT-B/16 (timm DINO, open_clip CLIP x2)", dreamsim_shaped),
    ("clip", "RANDOM weights: open_clip ViT-B-32", clip_shaped),
    ("dino", "RANDOM weights: transformers DINOv2-base", dino_shaped),
    (
        "lpips",
        "RANDOM backbone: AlexNet (torchmetrics' linear layers), streamed",
        lpips_random_backbone("alex"),
    ),
    (
        "lpips_vgg",
        "RANDOM backbone: VGG-16 (torchmetrics' linear layers), streamed",
        lpips_random_backbone("vgg"),
    ),
    ("toy_features", "shipped toy classifier (real weights)", None),
]


# ---------------------------------------------------------------------------------------------- scoring


def embed_files(embedder, paths: list[Path], batch_size: int) -> torch.Tensor:
    """Embeddings of image files, read `batch_size` at a time (never all images at once)."""
    from diversity_cli.metrics.embedders import load_images

    return torch.cat([embedder(load_images(paths[s : s + batch_size])) for s in range(0, len(paths), batch_size)])


def score(name: str, embedder, paths: list[Path], batch_size: int) -> str:
    from diversity_cli.metrics.coverage import prdc, prdc_from_distances
    from diversity_cli.metrics.diversity import pairwise_estimate, vendi_score
    from diversity_cli.metrics.embedders import pairwise_distances

    half = len(paths) // 2
    if hasattr(embedder, "distances"):  # LPIPS: the streamed matrix, no embeddings held
        dist = embedder.distances(paths)
        estimate = pairwise_estimate(dist)
        coverage = prdc_from_distances(dist[:half, :half], dist[half:, half:], dist[:half, half:], k=5)
        vendi = None
    else:
        embeddings = embed_files(embedder, paths, batch_size)
        estimate = pairwise_estimate(pairwise_distances(embeddings, None, embedder.distance))
        coverage = prdc(embeddings[:half], embeddings[half:], k=5, distance=embedder.distance)
        vendi = vendi_score(embeddings)
    parts = [f"mean {estimate.value:.4g} [{estimate.ci_low:.4g}, {estimate.ci_high:.4g}]"]
    parts += [f"vendi {vendi:.3g}"] if vendi is not None else []
    parts += [f"coverage {coverage['coverage']:.2f}"]
    return ", ".join(parts)


def toy_coverage(paths: list[Path], device: torch.device) -> str:
    """`toy_coverage` as `diversity` runs it: the toy classifier over the group's images."""
    from diversity_cli.metrics.embedders import load_images, toy_module

    module = toy_module()
    value = module.mode_coverage(load_images(paths), "a red circle", module.load_classifier(device))
    return f"coverage of 'a red circle' modes {float(value):.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=64, help="images")
    parser.add_argument("--size", type=int, default=1024, help="image side in pixels")
    parser.add_argument("--batch-size", type=int, default=16, help="images read and embedded at a time")
    parser.add_argument("--budget-gib", type=float, default=4.0, help="peak RSS allowed (exit 1 above it)")
    parser.add_argument("--metrics", nargs="+", default=[m[0] for m in METRICS] + ["toy_coverage"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()

    from diversity_cli.metrics.embedders import get_embedder

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    print(f"{args.n} images of {args.size}x{args.size} px (PNG, read {args.batch_size} at a time); CPU", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_images(Path(tmp), args.n, args.size)
        print(f"{'metric':<14}{'peak RSS so far':>16}{'seconds':>9}  weights / result", flush=True)
        for name, weights, build in METRICS:
            if name not in args.metrics:
                continue
            began = time.perf_counter()
            torch.manual_seed(0)  # the random networks are the same every run
            embedder = build(device) if build is not None else get_embedder(name, device)
            result = score(name, embedder, paths, args.batch_size)
            del embedder
            gc.collect()
            seconds = time.perf_counter() - began
            print(f"{name:<14}{peak_rss() / GIB:>12.2f} GiB{seconds:>9.1f}  {weights}; {result}", flush=True)
        if "toy_coverage" in args.metrics:
            began = time.perf_counter()
            result = toy_coverage(paths, device)
            seconds = time.perf_counter() - began
            name = "toy_coverage"
            print(f"{name:<14}{peak_rss() / GIB:>12.2f} GiB{seconds:>9.1f}  shipped toy classifier; {result}")
    peak = peak_rss() / GIB
    verdict = "within" if peak <= args.budget_gib else "OVER"
    print(f"peak RSS: {peak:.2f} GiB ({verdict} the {args.budget_gib:g} GiB budget)")
    return 0 if peak <= args.budget_gib else 1


if __name__ == "__main__":
    sys.exit(main())
