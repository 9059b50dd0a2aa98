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
