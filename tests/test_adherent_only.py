"""`diversity adherent_only=true` on the toy: diversity over the on-prompt images only, labelled as such, with
adherence still over every image."""

from __future__ import annotations

import csv

import pytest
import torch

from diversity_cli.metrics.diversity import wilson_interval


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
    # a share of hits and misses: its Wilson interval at the run's level, not a bare number
    low, high = wilson_interval(len(kept) / len(paths), len(paths), 0.95)
    adherence = by_metric["toy_adherence"]
    assert (float(adherence["ci_low"]), float(adherence["ci_high"]), adherence["ci"]) == (
        pytest.approx(low, abs=1e-5),
        pytest.approx(high, abs=1e-5),
        "0.95",
    )


def test_the_wilson_interval_is_the_closed_form():
    # 3 hits of 24 at 95%: centre (p + z²/2n) / (1 + z²/n), half-width z sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n)
    assert wilson_interval(3 / 24, 24, 0.95) == (pytest.approx(0.04344, abs=1e-4), pytest.approx(0.31004, abs=1e-4))
    assert wilson_interval(0.0, 8, 0.95)[0] == 0.0 and wilson_interval(1.0, 8, 0.95)[1] == 1.0
    assert wilson_interval(0.5, 100, 0.5)[1] - wilson_interval(0.5, 100, 0.5)[0] < 0.1  # a lower level, narrower


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


def test_sharded_adherent_only_drops_what_one_process_drops(cli, tmp_path, monkeypatch):
    """A shard whose only group had too few on-prompt images failed ("nothing to measure"), so the run could not be
    merged; and the merge kept that group's @adherent rows of an earlier run beside this run's numbers."""
    from diversity_cli.core.config import compose
    from diversity_cli.experiments.diversity import measure_diversity, merge_diversity

    out = tmp_path / "run"
    for method in ("base", "distilled"):
        code, _, err = cli("generate", f"method={method}", "prompt=a red circle", "n=6", f"out={out}")
        assert code == 0, err
    settings = [f"out={out}", "metric=toy_features", "adherent_only=true", "bootstrap=0"]
    monkeypatch.setattr("diversity_cli.toy.adherence.select_adherent", lambda paths, *_: paths[:4])
    measure_diversity(compose("diversity", [*settings, "min_n=2"]))  # both groups: @adherent rows over 4 images
    monkeypatch.setattr(
        "diversity_cli.toy.adherence.select_adherent",
        lambda paths, *_: paths if "distilled" in str(paths[0]) else paths[:4],
    )
    for index in (0, 1):  # one group a shard; base's shard is left with none on-prompt enough at min_n=5
        assert measure_diversity(compose("diversity", [*settings, "min_n=5", f"shard={index}/2"])) is None
    merge_diversity(compose("diversity", [*settings, "min_n=5"]), 2)
    metrics = {(row["method"], row["metric"]) for row in _rows(out / "diversity.csv")}
    assert ("base", "toy_features@adherent") not in metrics
    assert {
        ("base", "toy_adherence"),
        ("distilled", "toy_adherence"),
        ("distilled", "toy_features@adherent"),
    } <= metrics


def test_a_clip_score_over_the_on_prompt_images_is_named_so(cli, tmp_path, monkeypatch):
    """With adherent_only the CLIP score was measured over the kept images but named as over every image."""
    from diversity_cli.metrics import preflight

    monkeypatch.setattr(preflight, "CLIP_SCORE_MODEL", "tiny_random")  # an offline stand-in for the real CLIP
    out = tmp_path / "run"
    code, _, err = cli("generate", "method=base", "prompt=a red circle", "n=6", f"out={out}")
    assert code == 0, err
    monkeypatch.setattr("diversity_cli.toy.adherence.select_adherent", lambda paths, *_: paths[:4])
    args = ("metric=[toy_features,clip_score]", "adherent_only=true", "bootstrap=0", "device=cpu")
    code, _, err = cli("diversity", f"out={out}", *args)
    assert code == 0, err
    by_metric = {row["metric"]: row for row in _rows(out / "diversity.csv")}
    assert by_metric["clip_score@adherent"]["n"] == "4" and "clip_score" not in by_metric


def test_adherent_only_over_a_folder_without_its_prompt_is_one_line_before_any_work(cli, tmp_path, monkeypatch):
    """It came as two notes, then a line blaming too few on-prompt images: the cause was the missing prompt."""
    folder = tmp_path / "images"
    code, _, err = cli("generate", "method=base", "prompt=a red circle", "n=2", f"out={tmp_path / 'run'}")
    assert code == 0, err
    folder.mkdir()
    for path in (tmp_path / "run").rglob("*.png"):
        (folder / path.name).write_bytes(path.read_bytes())
    monkeypatch.setattr("diversity_cli.toy.features.load_classifier", lambda *_: pytest.fail("the judge loaded"))
    code, _, err = cli("diversity", f"images={folder}", f"out={tmp_path / 'out'}", "adherent_only=true")
    assert code == 2 and err.strip() == (
        f"error: adherent_only=true keeps the images that follow their prompt; images={folder} names none: add "
        "prompt=<the prompt they were made from>, or measure the run directory (out=<run>)"
    ), err
    assert not (tmp_path / "out").exists()
