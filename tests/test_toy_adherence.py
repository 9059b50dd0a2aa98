"""Toy adherence for the `diversity` command (per image file), adherent-only diversity, the frozen judge, and the
fixed measurement protocol's Fréchet distance."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diversity_cli.toy.adherence import adherent_diversity, file_adherence, select_adherent, toy_adherence
from diversity_cli.toy.data import render_prompt_samples
from diversity_cli.toy.evaluate import mean_pairwise_cosine_distance
from diversity_cli.toy.features import JUDGE, judge_sha256, load_classifier
from diversity_cli.toy.protocol import frechet_distance, prompt_row

# The shipped feature network measures adherence, toy_features and fid_toyfeat. Replacing it changes every toy
# number in the README and the model card: do it only on purpose, and update this hash with them.
JUDGE_SHA256 = "3c9153a031e0e4c3522e61949fd853980d6c4365907c0af7ebf26df458f4dd9c"


@pytest.fixture(scope="module")
def classifier():
    return load_classifier()


def _files(folder, prompt: str, n: int, seed: int, start: int = 0) -> list:
    paths = []
    for i, image in enumerate(render_prompt_samples(prompt, n, seed)):
        path = folder / f"{start + i:03d}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def _tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255


def test_the_judge_is_the_frozen_shipped_network():
    assert judge_sha256() == JUDGE_SHA256
    assert judge_sha256(JUDGE) == JUDGE_SHA256


def test_adherence_and_selection_per_file(classifier, tmp_path):
    circles = _files(tmp_path, "a red circle", 8, seed=11)
    squares = _files(tmp_path, "a blue square", 4, seed=12, start=8)
    mixed = [squares[0], *circles[:4], squares[1], *circles[4:], *squares[2:]]
    assert file_adherence(mixed, "a red circle", classifier) == [p in circles for p in mixed]
    assert toy_adherence(mixed, "a red circle", classifier) == pytest.approx(8 / 12)
    assert select_adherent(mixed, "a red circle", classifier) == circles  # in their order
    assert select_adherent(mixed, "a square", classifier) == squares
    assert toy_adherence(mixed, "a shape", classifier) == 1.0  # a prompt that names nothing
    assert math.isnan(toy_adherence([], "a circle", classifier)) and select_adherent([], "a circle", classifier) == []


def test_adherent_diversity_scores_only_the_kept_samples():
    features = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    keep = torch.tensor([True, False, True, True, False, True])
    assert adherent_diversity(features, keep) == pytest.approx(mean_pairwise_cosine_distance(features[keep]))
    assert adherent_diversity(features, torch.ones(6, dtype=torch.bool)) == mean_pairwise_cosine_distance(features)
    assert math.isnan(adherent_diversity(features, torch.eye(6, dtype=torch.bool)[0]))


def test_protocol_row_of_ground_truth_and_of_off_prompt_images(classifier):
    truth = _tensor(render_prompt_samples("a red circle", 32, seed=3))
    row = prompt_row(truth, truth, "a red circle", classifier)
    assert row["adherence"] == row["truth_adherence"] == 1.0
    assert row["adherent_diversity"] == pytest.approx(row["diversity"]) == pytest.approx(row["truth_diversity"])
    assert row["shape_adherence"] == row["color_adherence"] == 1.0
    mixed = torch.cat([truth[:16], _tensor(render_prompt_samples("a blue square", 16, seed=4))])
    row = prompt_row(mixed, truth, "a red circle", classifier)
    assert row["adherence"] == 0.5 and row["color_adherence"] == 0.5
    assert row["diversity"] > row["adherent_diversity"]  # the off-prompt half inflates diversity


def test_frechet_distance_matches_the_matrix_square_root_formula():
    from scipy import linalg

    g = torch.Generator().manual_seed(1)
    a = torch.randn(400, 6, generator=g, dtype=torch.float64) @ torch.randn(6, 6, generator=g, dtype=torch.float64)
    b = torch.randn(400, 6, generator=g, dtype=torch.float64) * 1.5 + 0.3
    cov_a, cov_b = np.cov(a.numpy(), rowvar=False), np.cov(b.numpy(), rowvar=False)
    root = np.real(linalg.sqrtm(cov_a @ cov_b))
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum().item() + np.trace(cov_a + cov_b - 2 * root)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def test_the_vae_round_trip_returns_the_scenes_it_was_given_in_8_bits(classifier):
    from diffusers import AutoencoderKL

    from diversity_cli.core.resources import asset
    from diversity_cli.toy.protocol import vae_round_trip

    vae = AutoencoderKL.from_pretrained(asset("toy/base/vae")).eval()
    truth = _tensor(render_prompt_samples("a red circle", 16, seed=5))
    back = vae_round_trip(vae, truth, batch=6)  # batches that do not divide the set
    assert back.shape == truth.shape
    assert torch.equal(back, (back * 255).round() / 255)  # what a saved PNG holds
    # the shipped VAE reconstructs its scenes closely (pixel MSE ~1e-3 on [0, 1]): a wrong range ([0, 1] given
    # where [-1, 1] is expected, or its output left in [-1, 1]) is an order of magnitude off
    assert (back - truth).pow(2).mean() < 4e-3
    row = prompt_row(back, truth, "a red circle", classifier)
    assert row["adherence"] >= 0.9  # the judge still sees red circles (the VAE loses an outline now and then)


def test_an_interrupted_protocol_leaves_no_record_vouching_for_older_csvs(tmp_path, monkeypatch):
    from diversity_cli.toy import protocol

    stale = tmp_path / "references_run.json"
    stale.write_text('{"model": {"base": {"guidance": 9}}}')

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(protocol, "measure", interrupted)
    with pytest.raises(KeyboardInterrupt):
        protocol.main(["model=toy", "methods=", f"out={tmp_path}/references.csv"])
    assert not stale.exists()


def test_the_protocol_without_methods_measures_only_its_references(tmp_path, capsys):
    import csv

    from diversity_cli.toy.protocol import main

    argv = ["model=toy", "methods=", f"out={tmp_path}/references.csv", "model.base.guidance=3"]
    assert main(argv) == 0
    assert not (tmp_path / "references.csv").exists()  # no method, no per-prompt rows
    record = json.loads((tmp_path / "references_run.json").read_text())  # what made these numbers
    assert record["command_line"] == ["python", "-m", "diversity_cli.toy.protocol", *argv]
    assert record["model"]["base"]["guidance"] == 3 and record["model"]["name"] == "toy"
    assert record["packages"]["torch"] and record["git_commit"]
    with (tmp_path / "references_fid.csv").open() as handle:
        fid = {row["method"]: float(row["fid_toyfeat"]) for row in csv.DictReader(handle)}
    assert list(fid) == ["truth", "truth_vae"]
    # the same scenes through the shipped VAE: farther from the reference than themselves, not unrecognisable
    assert fid["truth"] < fid["truth_vae"] < 2 * fid["truth"]
    with (tmp_path / "references_free.csv").open() as handle:
        assert {row["method"] for row in csv.DictReader(handle)} == {"truth"}
    assert "references_fid.csv" in capsys.readouterr().out


def test_the_protocol_samples_a_setting_named_as_generate_names_it():
    from diversity_cli.core.config import compose
    from diversity_cli.models.loading import load_pair
    from diversity_cli.toy.protocol import plan_of

    pair = load_pair(compose("generate", ["model=toy"]).model, torch.device("cpu"), torch.float32)
    visits = plan_of(pair, "hybrid_k1_g3_bs5").visits()
    # the base's own five steps over the student's first (999 -> 749) at CFG 3, then the student's last three
    assert visits == [
        *(("base", t, 3.0) for t in (999, 949, 899, 849, 799)),
        *(("distilled", t, 0.0) for t in (749, 499, 249)),
    ]
    assert (
        plan_of(pair, "hybrid_k1").visits()[0] == ("base", 999, 0.0) and len(plan_of(pair, "hybrid_k1").visits()) == 4
    )


@pytest.mark.parametrize(
    "args, says",
    [
        (["methods=base,hybrid_1"], "protocol method 'hybrid_1'"),
        (["methods=base,hybrid_k1_bs6"], "no schedule with base_steps=6"),
        (["extra"], "argument 'extra' is not one of"),
        (["=x"], "argument '=x' is not one of"),
        (["n=16"], "argument 'n=16' is not one of"),  # composes for generate, but the protocol's n is fixed
        (["out=p"], "out=p: the protocol writes a CSV"),
        (["model.base.guidance=abc"], "model.base.guidance=abc: model.base.guidance is a number >= 0"),
        (["++model.base.steps=0"], "model.base.steps=0 is out of range: model.base.steps is an integer >= 1"),
        (["++out=elsewhere.csv"], "argument '++out=elsewhere.csv' is not one of"),  # generate's out, not the CSV's
        (["+methods=hybrid_1"], "argument '+methods=hybrid_1' is not one of"),
        (["model=tiny_sd"], "model=tiny_sd: the protocol judges toy scenes"),  # ran, and judged SD images as toys
    ],
)
def test_a_method_or_argument_the_protocol_cannot_use_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, args, says):
    from diversity_cli.toy import protocol

    monkeypatch.setattr(protocol, "measure", lambda *a, **k: pytest.fail("measured a method it cannot sample"))
    if "bs6" not in args[0]:  # everything but a schedule the pair cannot run is refused before any network loads
        monkeypatch.setattr("diversity_cli.models.loading.load_pair", lambda *a, **k: pytest.fail("loaded the pair"))
    monkeypatch.chdir(tmp_path)
    assert protocol.main(["model=toy", f"out={tmp_path}/p.csv", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err
    assert list(tmp_path.iterdir()) == []


def test_the_protocol_takes_a_deletion_of_a_pair_key(tmp_path, monkeypatch):
    """README's ancestral-sampler command: DDPMScheduler takes no set_alpha_to_one, which the toy's DDIM sets; the
    protocol refused the `~model.*` deletion that removes it."""
    from diversity_cli.toy import protocol

    seen = []
    monkeypatch.setattr(protocol, "measure", lambda pair, methods, *a, **k: pytest.fail("measured"))

    def loaded(model, *args, **kwargs):
        seen.append(dict(model.base.scheduler))
        raise protocol.UserError("stop here")

    monkeypatch.setattr("diversity_cli.models.loading.load_pair", loaded)
    argv = ["model=toy", "methods=base", "model.base.scheduler.class=DDPMScheduler", f"out={tmp_path}/p.csv"]
    assert protocol.main([*argv, "~model.base.scheduler.overrides.set_alpha_to_one"]) == 2
    assert seen and seen[0]["class"] == "DDPMScheduler" and "set_alpha_to_one" not in seen[0]["overrides"]


def test_the_protocol_answers_help_with_its_usage(tmp_path, capsys, monkeypatch):
    from diversity_cli.toy import protocol

    monkeypatch.chdir(tmp_path)
    assert protocol.main(["--help"]) == 0
    assert "python -m diversity_cli.toy.protocol model=toy methods=" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_protocol_csvs_keep_small_settings_readable(tmp_path):
    import csv

    from diversity_cli.toy.protocol import write_csv

    write_csv(tmp_path / "a.csv", [{"lr_generator": 2e-5, "fid_toyfeat": 51.32654, "zero": 0.0, "n": 64}])
    with (tmp_path / "a.csv").open() as handle:
        row = next(csv.DictReader(handle))
    assert row == {"lr_generator": "2e-05", "fid_toyfeat": "51.3265", "zero": "0.0000", "n": "64"}


def _adherence_noise():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "adherence_noise.py"
    spec = importlib.util.spec_from_file_location("adherence_noise", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_adherence_noise_counts_prompts_more_than_the_margin_below():
    script = _adherence_noise()
    adherence = {"a": [1.0, 59 / 64], "b": [1.0, 61 / 64], "c": [0.9, 1.0]}  # -0.078, -0.047, +0.1
    assert script.misses(adherence, 0, 1) == 1
    assert script.misses(adherence, 1, 0) == 1  # "c" from draw 1 to draw 0
    assert script.misses({"a": [1.0, 0.95]}, 0, 1) == 0  # exactly the margin is within it


@pytest.mark.parametrize("argv", [["method=hybrid"], ["draws=1"], ["seed=3"]])
def test_adherence_noise_refuses_what_it_cannot_measure(argv, capsys):
    assert _adherence_noise().main(argv) == 2
    assert "usage" in capsys.readouterr().err


def test_a_prompt_outside_the_toy_language_is_said_beside_its_adherence(cli, tmp_path):
    """'a hexagon' names nothing the judge can see: every image follows it (adherence 1.0), which diversity says
    rather than leaving the 1.0 to read as a model following its prompt."""
    from diversity_cli.toy.data import words_outside

    assert words_outside("a hexagon on the left") == ["hexagon"] and words_outside("two red crosses") == []
    assert cli("generate", "model=toy", "method=distilled", "prompt=a hexagon", "n=2", f"out={tmp_path}")[0] == 0
    code, _, err = cli("diversity", f"out={tmp_path}")
    assert code == 0 and "hexagon not in the toy language" in " ".join(err.split())


def test_every_diversity_number_comes_with_the_pairs_quality_number(cli, tmp_path):
    """metric=pixel on the toy wrote a diversity number alone: off-prompt variety would pass for diversity. The
    pair's default_quality joins any diversity metric (quality=none leaves it out); an SDXL pair's is clip_score,
    whose CLIP weights the preflight asks for before anything is measured."""
    from diversity_cli.commands.checks import needed
    from diversity_cli.core.config import compose
    from diversity_cli.experiments.defaults import apply_defaults, with_quality

    assert cli("generate", "model=toy", "method=distilled", "prompt=a red circle", "n=2", f"out={tmp_path}")[0] == 0
    for quality, expected in (("quality=auto", {"pixel", "toy_adherence"}), ("quality=none", {"pixel"})):
        (tmp_path / "diversity.csv").unlink(missing_ok=True)
        code, _, err = cli("diversity", f"out={tmp_path}", "metric=pixel", quality)
        assert code == 0, err
        assert {row["metric"] for row in csv.DictReader((tmp_path / "diversity.csv").open())} == expected
    sdxl = apply_defaults(compose("diversity", ["out=/nonexistent", "metric=dreamsim"]))
    assert list(sdxl.metric) == ["dreamsim"] and sdxl.quality == "none"  # no run there: no pair to ask
    cfg = compose("diversity", ["metric=dreamsim"])
    with_quality(cfg, compose("generate", ["model=sdxl_dmd2"]).model)  # a run of sdxl_dmd2 images
    assert list(cfg.metric) == ["dreamsim", "clip_score"]
    assert any("clip-vit-large-patch14" in str(item) for item in needed("diversity", cfg))  # empty HF cache here
