"""`diversity metric=lpips` scores from LPIPS distances streamed per block, equal to the full embedding's
(the library behind the command; the CLI's preflight would ask for the real backbone weights first)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from diversity_cli.core.config import compose
from diversity_cli.metrics.embedders import LpipsEmbedder, load_images, pairwise_distances


def test_diversity_command_streams_lpips(tmp_path, monkeypatch):
    from torchmetrics.functional.image.lpips import _LPIPS

    from diversity_cli.experiments import diversity

    torch.manual_seed(0)
    network = _LPIPS(pretrained=True, net="alex", pnet_rand=True)  # shipped linear layers, random backbone
    images = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    folder = tmp_path / "imgs"
    folder.mkdir()
    paths = []
    for i, image in enumerate(images):
        paths.append(folder / f"{i}.png")
        Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(paths[-1])
    # Blocks of two images: the command must go through the streamed distances, not embeddings.
    streamed = LpipsEmbedder(network, batch_size=2, feature_bytes=1)
    calls = []
    original = streamed.distances
    monkeypatch.setattr(streamed, "distances", lambda *a, **k: calls.append(a) or original(*a, **k))
    monkeypatch.setattr(diversity, "get_embedder", lambda name, device, **options: streamed)
    out = tmp_path / "scores"
    diversity.measure_diversity(compose("diversity", [f"images={folder}", f"out={out}", "metric=lpips", "bootstrap=0"]))
    with (out / "diversity.csv").open(newline="") as f:
        (row,) = [r for r in csv.DictReader(f) if r["metric"] == "lpips"]
    full = LpipsEmbedder(network, batch_size=5)
    dist = pairwise_distances(full(load_images(paths)), None, full.distance)
    expected = dist[torch.triu_indices(5, 5, 1).unbind()].mean().item()
    assert calls and float(row["value"]) == pytest.approx(expected, rel=1e-6)
    assert int(row["n"]) == 5
