"""`diversity adherent_only=true` on the toy: diversity over the on-prompt images only, labelled as such, with
adherence still over every image."""

from __future__ import annotations

import csv

import torch


def _rows(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_adherent_only_scores_the_on_prompt_images(cli, tmp_path):
    from diversity_cli.toy.adherence import select_adherent
    from diversity_cli.toy.features import load_classifier

    out = tmp_path / "run"
    code, _, err = cli("generate", "method=base", "prompt=a red circle", "n=8", f"out={out}")
    assert code == 0, err
    paths = [out / row["path"] for row in _rows(out / "samples.csv")]
    kept = select_adherent(paths, "a red circle", load_classifier(torch.device("cpu")))
    assert 2 <= len(kept) < len(paths)  # the seeds give a mix: the test would not tell anything otherwise

    code, _, err = cli("diversity", f"out={out}", "metric=toy_features", "adherent_only=true", "bootstrap=0")
    assert code == 0, err
    by_metric = {row["metric"]: row for row in _rows(out / "diversity.csv")}
    assert "toy_features" not in by_metric  # nothing measured on the kept images passes for the whole set
    assert int(by_metric["toy_features@adherent"]["n"]) == len(kept)
    assert int(by_metric["toy_adherence"]["n"]) == len(paths)
    assert float(by_metric["toy_adherence"]["value"]) == len(kept) / len(paths)
