"""A model pair carries its own k=auto settings (`auto_k:` in conf/model/<pair>.yaml): they replace generate's
SDXL defaults, the command line still wins, and the commitment cache and the run record follow what is in effect."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from diversity_cli.core.config import compose
from diversity_cli.core.errors import UserError
from diversity_cli.core.resources import conf_root, data_file

TINY_BLOCK = {"prompts": ["a circle", "a red square"], "n": 2, "threshold": 0.5}  # metric left to generate.yaml


@pytest.fixture
def own_pair(tmp_path, monkeypatch):
    """tiny_sd as a user's pair `tiny_own` with a partial auto_k block, from a DIVERSITY_CLI_CONF folder."""
    model = yaml.safe_load((conf_root() / "model" / "tiny_sd.yaml").read_text())
    model.update(name="tiny_own", auto_k=TINY_BLOCK)
    folder = tmp_path / "conf" / "model"
    folder.mkdir(parents=True)
    (folder / "tiny_own.yaml").write_text(yaml.safe_dump(model))
    monkeypatch.setenv("DIVERSITY_CLI_CONF", str(tmp_path / "conf"))
    monkeypatch.setenv("DIVERSITY_CLI_CACHE", str(tmp_path / "cache"))
    return "tiny_own"


def _toy_prompts() -> list[str]:
    lines = data_file("toy_prompts.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_the_toy_pairs_measure_commitment_on_toy_prompts_with_the_toy_judge():
    sdxl = compose("generate", ["model=sdxl_dmd2"]).auto_k  # a pair without a block: generate.yaml's defaults
    assert "a photo of a dog" in sdxl.prompts and sdxl.metric == "pixel"
    for name in ("toy", "toy_dpdmd"):
        auto_k = compose("generate", [f"model={name}"]).auto_k
        assert list(auto_k.prompts) == _toy_prompts()  # the pinned protocol's prompts
        assert auto_k.metric == "toy_features" and auto_k.threshold == 0.25 and auto_k.n == 16
    # ablate composes generate's keys: its points see the same settings
    assert compose("ablate", ["model=toy"]).auto_k.metric == "toy_features"


def test_a_partial_block_fills_only_its_keys_and_the_command_line_wins(own_pair):
    auto_k = compose("generate", [f"model={own_pair}"]).auto_k
    assert list(auto_k.prompts) == TINY_BLOCK["prompts"] and auto_k.n == 2 and auto_k.threshold == 0.5
    assert auto_k.metric == "pixel"  # not in the block: generate.yaml's
    typed = compose("generate", [f"model={own_pair}", "auto_k.prompts=[a cat]", "auto_k.threshold=0.1"]).auto_k
    assert list(typed.prompts) == ["a cat"] and typed.threshold == 0.1
    assert typed.n == 2  # not typed: still the pair's
    assert compose("generate", ["model=toy", "auto_k.metric=pixel"]).auto_k.metric == "pixel"
    assert compose("generate", ["model=toy", "++auto_k.n=3"]).auto_k.n == 3


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.auto_k.n=0", "model.auto_k.n=0 is out of range"),
        ("+model.auto_k.promts=[a]", "model.auto_k.promts is not a k=auto setting"),
        ("model.auto_k=5", "model.auto_k is a group of settings"),
        ("model.auto_k.threshold=2", "model.auto_k.threshold=2 is out of range"),
    ],
)
def test_a_bad_pair_block_is_one_line_naming_the_pair_key(override, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[")):
        compose("generate", ["model=toy", override])


def test_the_commitment_cache_key_holds_the_settings_in_effect(own_pair, tiny_pairs):
    from diversity_cli.sampling.autok import commitment_key

    pair = tiny_pairs("tiny_sd")  # the same random networks as tiny_own (seeds 0 and 1)
    key = commitment_key(pair, compose("generate", [f"model={own_pair}"]), [])
    assert key["auto_k"]["prompts"] == TINY_BLOCK["prompts"] and key["auto_k"]["threshold"] == 0.5
    other = commitment_key(pair, compose("generate", [f"model={own_pair}", "auto_k.n=3"]), [])
    assert other != key and other["auto_k"]["n"] == 3
    # the same settings in effect, typed instead of coming from the block: the same key (the block itself is not
    # part of the model section, only what it puts into effect)
    typed = [f"auto_k.{name}={json.dumps(value)}" for name, value in TINY_BLOCK.items()]
    same = commitment_key(pair, compose("generate", [f"model={own_pair}", *typed, "model.auto_k=null"]), [])
    assert same == key


def test_k_auto_measures_with_the_pairs_settings_and_records_them(cli, own_pair, tmp_path):
    from diversity_cli.experiments.generation import settings_hash

    out = tmp_path / "run"
    args = ("generate", f"model={own_pair}", "method=hybrid", "k=auto", "prompt=a circle", "n=1", f"out={out}")
    code, _, err = cli(*args)
    assert code == 0, err
    assert "2 prompt(s) x 2 seeds" in err and "threshold 0.5" in err
    cached = list((tmp_path / "cache" / "commitment").glob("tiny_own-*.json"))
    assert len(cached) == 1
    assert json.loads(cached[0].read_text())["key"]["auto_k"]["prompts"] == TINY_BLOCK["prompts"]
    record = json.loads(next((out / "runs").glob("*-generate-*.json")).read_text())
    assert record["config"]["auto_k"] == {**TINY_BLOCK, "metric": "pixel"}
    assert record["auto_k"]["settings"] == record["config"]["auto_k"]
    assert record["auto_k"]["k"] == int(record["config"]["k"]) and record["auto_k"]["commitment"]["threshold"] == 0.5
    # measuring settings change no image: the same run directory is recognised with and without the block
    plain = compose("generate", [f"model={own_pair}", "model.auto_k=null"])
    assert settings_hash(plain) == settings_hash(compose("generate", [f"model={own_pair}"]))
    assert Path(out / "samples.csv").is_file()


def test_auto_k_metric_auto_takes_the_pairs_metric(cli, own_pair, tmp_path):
    """`auto_k.metric=auto`, offered by --help, reached the embedder as "auto" and failed once the models loaded."""
    out = tmp_path / "run"
    args = ("generate", f"model={own_pair}", "method=hybrid", "k=auto", "auto_k.metric=auto", "n=1", f"out={out}")
    code, _, err = cli(*args, "prompt=a circle")
    assert code == 0, err
    record = json.loads(next((out / "runs").glob("*-generate-*.json")).read_text())
    assert record["auto_k"]["commitment"]["metric"] == compose("generate", [f"model={own_pair}"]).model.default_metric


def test_k_auto_on_a_one_step_student_is_refused_before_the_base_is_measured(cli, tmp_path, monkeypatch):
    """It measured (and cached) the base's whole commitment, then refused the schedule."""
    from diversity_cli.sampling import autok

    cache = tmp_path / "cache"
    monkeypatch.setenv("DIVERSITY_CLI_CACHE", str(cache))
    args = ["generate", "model=toy", "method=hybrid", "k=auto", "n=1", "prompt=a circle", "auto_k.n=2"]
    args += ["model.distilled.steps=1", "model.distilled.timesteps=[999]", f"out={tmp_path / 'run'}"]
    monkeypatch.setattr(autok, "commitment_key", lambda *a: pytest.fail("the base was measured"))
    code, _, err = cli(*args)
    assert code == 2 and "k=auto needs a distilled schedule of at least 2 steps" in err, err
    assert not list(cache.rglob("*.json"))
