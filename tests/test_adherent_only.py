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


def test_a_prompt_left_with_too_few_on_prompt_images_loses_its_earlier_adherent_rows(cli, tmp_path, monkeypatch):
    """Skipped at min_n, a prompt kept its @adherent row of an earlier run, and the summary showed it as this run's
    number; its rows over every image (toy_adherence, plain toy_features) stay."""
    out = tmp_path / "run"
    code, _, err = cli("generate", "method=base", "prompt=a red circle", "n=6", f"out={out}")
    assert code == 0, err
    args = ("diversity", f"out={out}", "metric=toy_features", "adherent_only=true", "bootstrap=0")
    monkeypatch.setattr("diversity_cli.toy.adherence.select_adherent", lambda paths, *_: paths[:4])
    assert cli(*args, "min_n=2")[0] == 0
    assert cli("diversity", f"out={out}", "metric=toy_features", "bootstrap=0")[0] == 0
    code, _, err = cli(*args, "min_n=5")  # 4 on-prompt images: below min_n, so no number over them
    assert code == 2 and "nothing to measure" in err, err  # the only group: nothing written either
    monkeypatch.undo()
    code, _, err = cli("generate", "method=distilled", "prompt=a red circle", "n=6", f"out={out}")
    assert code == 0, err
    monkeypatch.setattr(
        "diversity_cli.toy.adherence.select_adherent",
        lambda paths, *_: paths if "distilled" in str(paths[0]) else paths[:4],
    )
    code, _, err = cli(*args, "min_n=5")
    assert code == 0, err
    metrics = {(row["method"], row["metric"]) for row in _rows(out / "diversity.csv")}
    assert ("base", "toy_features@adherent") not in metrics
    assert {("base", "toy_features"), ("base", "toy_adherence"), ("distilled", "toy_features@adherent")} <= metrics
    assert "@adherent rows (if any) of the 1 skipped" in " ".join(err.split())
