"""Benchmark: mean pairwise distance of N images, embed-once vs. a fair batched pair-by-pair baseline, on CPU.

    python scripts/bench_diversity.py                  # N=100 and N=1000, 32x32 images, a tiny random CNN

Pair-by-pair is how a pairwise metric is often scored: run the network on both images of every unordered pair
and compare. The baseline here is the fair version of it: pairs go through the network in batches of the same
size as embed-once's batches (batch_size images = batch_size / 2 pairs), so both methods pay the same per-image
cost and differ only in how many forward passes they make: N(N-1) images for pair-by-pair, N for embed-once
(plus one distance matrix). Both give the same number, printed with the difference.

The network is a cheap one so that N=1000 (999,000 image passes pair-by-pair) finishes in minutes on 2 cores:
`tiny_cnn`, two strided 3x3 convolutions (3->16->32 channels) and global average pooling, random weights;
`--network resnet18` uses torchvision's ResNet-18 architecture with random weights instead (much slower).
Timings depend on the architecture's cost, not on its weights. Embed-once is timed as the best of `--repeat`
runs (it takes milliseconds and the machine is shared); pair-by-pair runs once.
"""

from __future__ import annotations

import argparse
import time

import torch


def feature_network(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "resnet18":
        import torchvision

        network = torchvision.models.resnet18(weights=None)  # random weights: nothing to download
        network.fc = torch.nn.Identity()  # 512-d pooled features
    else:
        network = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, stride=2, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(16, 32, 3, stride=2, padding=1),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
        )
    return network.eval()


def distance(a: torch.Tensor, b: torch.Tensor, kind: str) -> torch.Tensor:
    """Row-wise distances between two (B, D) batches, float64."""
    a, b = a.double(), b.double()
    if kind == "cosine":
        return 1.0 - torch.nn.functional.cosine_similarity(a, b, dim=1)
    return (a - b).norm(dim=1)


def embed_once(network, images: torch.Tensor, kind: str, batch_size: int) -> float:
    from diversity_cli.metrics.diversity import mean_pairwise
    from diversity_cli.metrics.embedders import BatchedEmbedder, pairwise_distances

    embedder = BatchedEmbedder("bench", kind, network, batch_size=batch_size)
    return mean_pairwise(pairwise_distances(embedder(images), None, kind))


def pair_by_pair(network, images: torch.Tensor, kind: str, batch_size: int) -> float:
    """Every unordered pair's two images through the network, batch_size images (batch_size // 2 pairs) at once."""
    first, second = torch.triu_indices(len(images), len(images), offset=1)
    per_batch = max(1, batch_size // 2)
    total = torch.zeros((), dtype=torch.float64)
    with torch.inference_mode():
        for start in range(0, len(first), per_batch):
            i, j = first[start : start + per_batch], second[start : start + per_batch]
            features = network(torch.cat([images[i], images[j]]))
            total += distance(features[: len(i)], features[len(i) :], kind).sum()
    return float(total / len(first))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[100, 1000], help="numbers of images")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels")
    parser.add_argument("--network", default="tiny_cnn", choices=["tiny_cnn", "resnet18"])
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass, both methods")
    parser.add_argument("--distance", default="cosine", choices=["cosine", "euclidean"])
    parser.add_argument("--repeat", type=int, default=3, help="embed-once runs; the fastest is reported")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    network = feature_network(args.network)
    params = sum(p.numel() for p in network.parameters())
    print(
        f"network: {args.network}, RANDOM weights ({params:,} parameters); random {args.size}x{args.size} images; "
        f"CPU, {torch.get_num_threads()} threads; batch {args.batch_size} images; distance: {args.distance}"
    )
    for n in args.n:
        images = torch.rand(n, 3, args.size, args.size, generator=torch.Generator().manual_seed(n))
        with torch.inference_mode():
            network(images[: args.batch_size])  # warm-up: first-call allocations are not part of either method
        times = []
        for _ in range(max(1, args.repeat)):
            began = time.perf_counter()
            once = embed_once(network, images, args.distance, args.batch_size)
            times.append(time.perf_counter() - began)
        began = time.perf_counter()
        baseline = pair_by_pair(network, images, args.distance, args.batch_size)
        pairwise_seconds = time.perf_counter() - began
        pairs = n * (n - 1) // 2
        print(f"N={n}:")
        print(f"  embed-once:            {min(times):9.3f} s  ({n} images through the network)  value {once:.8f}")
        print(
            f"  batched pair-by-pair:  {pairwise_seconds:9.3f} s  ({pairs} pairs, {2 * pairs} images through the "
            f"network)  value {baseline:.8f}"
        )
        ratio = pairwise_seconds / min(times)
        print(f"  ratio:                 {ratio:9.1f}x  |difference| {abs(once - baseline):.2e}")


if __name__ == "__main__":
    main()
