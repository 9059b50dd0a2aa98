"""Benchmark: mean pairwise distance of N images, embed-once vs. pair-by-pair scoring, on CPU.

    python scripts/bench_diversity.py            # N=100 images, 64x64, ResNet-18 with random weights

Pair-by-pair is what naive code does: for every unordered pair, run the network on both images and compare.
That is N(N-1) forward passes; embedding once is N (batched) plus one distance matrix. Both give the same number.
The network is torchvision's ResNet-18 architecture with random weights (no download): the timing depends on
the architecture's cost, not on its weights.
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch


def feature_network() -> torch.nn.Module:
    import torchvision

    network = torchvision.models.resnet18(weights=None)  # random weights: nothing to download
    network.fc = torch.nn.Identity()  # 512-d pooled features
    return network.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="images")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--batch-size", type=int, default=50, help="embed-once batch size")
    parser.add_argument("--distance", default="cosine", choices=["cosine", "euclidean"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()

    from diversity_cli.metrics.diversity import mean_pairwise
    from diversity_cli.metrics.embedders import BatchedEmbedder, pairwise_distances

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    network = feature_network()
    images = torch.rand(args.n, 3, args.size, args.size)  # random images in [0,1]
    params = sum(p.numel() for p in network.parameters()) / 1e6
    print(
        f"network: torchvision ResNet-18, RANDOM weights ({params:.1f}M parameters); {args.n} random images "
        f"{args.size}x{args.size}; CPU, {torch.get_num_threads()} threads; distance: {args.distance}"
    )
    with torch.inference_mode():
        network(images[:2])  # warm-up: first-call allocations are not part of either method

    began = time.perf_counter()
    embedder = BatchedEmbedder("resnet18", args.distance, network, batch_size=args.batch_size)
    once = mean_pairwise(pairwise_distances(embedder(images), None, args.distance))
    embed_once = time.perf_counter() - began

    began = time.perf_counter()
    total, pairs = 0.0, 0
    with torch.inference_mode():
        for i, j in itertools.combinations(range(args.n), 2):
            a, b = network(images[i : i + 1]), network(images[j : j + 1])
            if args.distance == "cosine":
                total += 1.0 - torch.nn.functional.cosine_similarity(a.double(), b.double()).item()
            else:
                total += (a.double() - b.double()).norm().item()
            pairs += 1
    pair_by_pair = time.perf_counter() - began
    naive = total / pairs

    print(f"embed-once:   {embed_once:8.2f} s  ({args.n} images embedded, 1 distance matrix)  value {once:.6f}")
    print(f"pair-by-pair: {pair_by_pair:8.2f} s  ({pairs} pairs, {2 * pairs} forward passes)  value {naive:.6f}")
    print(f"speed-up:     {pair_by_pair / embed_once:8.1f}x  (goal >= 50x); |difference| {abs(once - naive):.2e}")


if __name__ == "__main__":
    main()
