"""Images are keyed by a digest of their settings. `model.base.guidance=3` (an int) was digested apart from the
pair's own 3.0, so the same setting typed by hand was refused as "different settings"; and a refusal never said
which setting differed."""

from __future__ import annotations

import csv
from pathlib import Path

from diversity_cli.core.config import compose
from diversity_cli.experiments.generation import _digest, settings_keys

CIRCLE = ("prompt=a circle", "batch_size=4")


def _digests(out: Path) -> list[str]:
    with (out / "samples.csv").open(newline="") as f:
        return [row["settings"].partition("/")[0] for row in csv.DictReader(f)]


def test_a_guidance_typed_as_a_whole_number_is_the_pairs_own(cli, tmp_path):
    out = tmp_path / "run"
    assert compose("generate", []).model.base.guidance == 3.0  # the toy's own, which `=3` below names again
    assert cli("generate", "method=hybrid", *CIRCLE, "n=2", f"out={out}")[0] == 0
    code, _, err = cli("generate", "method=hybrid", *CIRCLE, "n=3", "model.base.guidance=3", f"out={out}")
    assert code == 0, err
    assert len(_digests(out)) == 3 and len(set(_digests(out))) == 1


def test_a_refusal_names_the_settings_that_differ(cli, tmp_path):
    out = tmp_path / "run"
    for method in ("hybrid", "base"):
        assert cli("generate", f"method={method}", *CIRCLE, "n=2", f"out={out}")[0] == 0
    code, _, err = cli("generate", "method=hybrid", *CIRCLE, "n=2", "model.base.guidance=4", f"out={out}")
    assert code == 2 and "(e.g. toy/hybrid_k1/a-circle-4ed406/000000.png; model.base.guidance=3.0 then, 4.0 now)" in err
    code, _, err = cli("generate", "method=base", *CIRCLE, "n=2", "model.distilled.guidance=2", f"out={out}")
    assert code == 2 and "model.distilled.guidance=0.0 then, 2.0 now: base images too are keyed by every setting" in err


def test_a_run_digested_before_guidance_was_read_as_a_float_resumes_under_its_digest(cli, tmp_path):
    out = tmp_path / "run"
    args = ("method=hybrid", *CIRCLE, "model.base.guidance=4")
    assert cli("generate", *args, "n=2", f"out={out}")[0] == 0
    cfg = compose("generate", list(args))
    before, now = _digest(settings_keys(cfg, as_typed=True)), _digest(settings_keys(cfg))
    assert before != now and set(_digests(out)) == {now}
    text = (out / "samples.csv").read_text()
    (out / "samples.csv").write_text(text.replace(now, before))  # as a version before the float made them
    code, _, err = cli("generate", *args, "n=3", f"out={out}")
    assert code == 0, err
    assert _digests(out) == [before] * 3  # one setting: the run goes on under its digest


def _adapter_digest(cfg, done=None) -> str:
    from types import SimpleNamespace

    from diversity_cli.experiments.transfer import adapter_settings

    adapter = SimpleNamespace(digest="0123abcd", kind="lora")
    return adapter_settings(cfg, "distilled", adapter, 1.0, done or {})[0]


def test_transfer_lora_keys_an_adapters_images_by_the_pair_as_generate_keys_its_own(monkeypatch, tmp_path):
    """An adapter's images were keyed by the pair's resolved settings: the checkout's absolute asset paths (a moved
    checkout or an installed wheel refused its own images), its measurement keys, a guidance as typed."""
    import diversity_cli.core.config as config

    pair = compose("transfer_lora", [])
    assert _adapter_digest(pair) == _adapter_digest(compose("transfer_lora", ["model.base.guidance=3"]))
    assert _adapter_digest(pair) == _adapter_digest(compose("transfer_lora", ["model.auto_k.threshold=0.3"]))
    assert _adapter_digest(pair) != _adapter_digest(compose("transfer_lora", ["model.base.guidance=4"]))
    moved = _adapter_digest(pair)
    monkeypatch.setattr(config, "asset", lambda relative: tmp_path / "elsewhere" / relative)
    assert _adapter_digest(pair) == moved


def test_an_adapters_images_digested_the_old_way_go_on_under_their_digest():
    from omegaconf import OmegaConf

    from diversity_cli.core.pair_settings import image_settings

    cfg = compose("transfer_lora", [])
    keys = {"method": "distilled", "adapter": "0123abcd", "kind": "lora", "scale": 1.0}
    before = _digest({"model": image_settings(OmegaConf.to_container(cfg.model, resolve=True)), **keys})
    assert _adapter_digest(cfg) != before
    done = {"toy/distilled+red_s1/a/000000.png": {"settings": f"{before}/weights"}}
    assert _adapter_digest(cfg, done) == before
