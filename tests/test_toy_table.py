"""README's toy table: the pooled interval over prompts, the protocol's hybrid methods, and the table's rows."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diversity_cli.core.config import compose
from diversity_cli.core.errors import UserError
from diversity_cli.experiments.toy_table import cosine_interval, furthest_free_factor, markdown, summarise
from diversity_cli.metrics.diversity import pooled_interval
from diversity_cli.toy.data import FACTORS, render, render_prompt_samples, sample_labels
from diversity_cli.toy.features import load_classifier
from diversity_cli.toy.protocol import embed, free_factor_rows, plan_of, prompt_row, total_variation


def test_pooled_interval_adds_half_widths_in_quadrature():
    mean, low, high = pooled_interval([1.0, 3.0], [0.0, 2.0], [2.0, 5.0])
    assert mean == 2.0
    assert low == pytest.approx(2.0 - math.sqrt(1 + 1) / 2)
    assert high == pytest.approx(2.0 + math.sqrt(1 + 4) / 2)


@pytest.fixture(scope="module")
def toy_pair():
    from diversity_cli.models.loading import load_pair

    cfg = compose("generate", ["model=toy"])
    return load_pair(cfg.model, torch.device("cpu"), torch.float32)


def test_protocol_hybrid_method_gives_the_base_the_first_k_steps(toy_pair):
    for k in (1, 2):
        plan = plan_of(toy_pair, f"hybrid_k{k}")
        base = [s for s in plan.segments if s.role == "base"]
        assert sum(len(s.timesteps) for s in base) == k
        assert base[0].timesteps[0] == 999
    assert [s.role for s in plan_of(toy_pair, "distilled").segments] == ["distilled"]
    with pytest.raises(UserError, match="hybrid_k<K>"):
        plan_of(toy_pair, "hybrid_kx")


def test_protocol_images_are_the_files_generate_writes(toy_pair, cli, tmp_path):
    """The protocol samples in batches of 64 or 125 and decoded a batch at once: seed 4 of "a shape" came out one
    8-bit level off generate's file, so its numbers were not quite those of the images a user makes."""
    import numpy as np
    from PIL import Image

    from diversity_cli.toy.protocol import sample

    code, _, err = cli("generate", "method=base", "prompt=a shape", "n=8", f"out={tmp_path}")
    assert code == 0, err
    files = sorted((tmp_path / "toy" / "base").rglob("*.png"))
    made = sample(toy_pair, "base", ["a shape"] * 64, list(range(64)))[: len(files)]
    written = torch.stack([torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1) for f in files])
    assert torch.equal((made * 255).round().to(torch.uint8), written)


def test_prompt_row_interval_brackets_the_diversity():
    classifier = load_classifier()
    images = torch.from_numpy(render_prompt_samples("a shape", 32, 3)).permute(0, 3, 1, 2).float() / 255
    row = prompt_row(images, images, "a shape", classifier, interval=cosine_interval)
    assert row["diversity_ci_low"] < row["diversity"] < row["diversity_ci_high"]
    # the interval is of the protocol's own diversity (mean pairwise cosine distance of the judge's features)
    features = embed(images, classifier)
    low, high = cosine_interval(features)
    assert (low, high) == (row["diversity_ci_low"], row["diversity_ci_high"])
    assert "diversity_ci_low" not in prompt_row(images, images, "a shape", classifier)


def _rows(values, adherence):
    return [
        {
            "prompt": f"p{i}",
            "n": 64,
            "diversity": v,
            "diversity_ci_low": v - 0.01,
            "diversity_ci_high": v + 0.02,
            "adherent_diversity": v / 2,
            "truth_diversity": 0.3,
            "adherence": a,
        }
        for i, (v, a) in enumerate(zip(values, adherence, strict=True))
    ]


def _scenes(n: int, seed: int, **fixed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(render(sample_labels(rng, n, fixed), rng)).permute(0, 3, 1, 2).float() / 255


def test_free_factor_shares_count_only_the_captions_that_leave_the_factor_free():
    classifier = load_classifier()
    # 24 dark scenes whose captions leave the background free, 8 light ones whose captions name it
    images = torch.cat([_scenes(24, 0, background=0), _scenes(8, 1, background=2)])
    captions = ["a shape"] * 24 + ["a shape on a light background"] * 8
    rows = free_factor_rows("m", images, captions, classifier)
    background = {r["value"]: r for r in rows if r["factor"] == "background"}
    assert background["dark"]["share"] == 1.0 and background["dark"]["n"] == 24
    assert {r["n"] for r in rows if r["factor"] != "background"} == {32}
    for factor in FACTORS:
        assert sum(r["share"] for r in rows if r["factor"] == factor) == pytest.approx(1.0)
    # against a ground truth drawing every background equally often: total variation 2/3, dark over-drawn
    balanced = torch.cat([_scenes(8, 2, background=b) for b in range(3)])
    truth = free_factor_rows("truth", balanced, ["a"] * 24, classifier)
    assert total_variation(rows + truth, "m", "background") == pytest.approx(2 / 3)
    furthest = furthest_free_factor(rows + truth, "m")
    assert (furthest["free_factor"], furthest["free_value"], furthest["free_share"]) == ("background", "dark", 1.0)
    assert furthest["free_truth_share"] == pytest.approx(1 / 3)


FREE = {"free_factor": "background", "free_tv": 0.5, "free_value": "gray", "free_share": 0.8, "free_truth_share": 0.33}


def test_summary_row_and_markdown():
    rows = _rows([0.2, 0.4], [1.0, 0.5])
    fid = {"fid_toyfeat": 40.0, "seconds": 10.0, "n": 1000, **FREE}
    row = summarise("base", "base", rows, fid, floor=20.0)
    assert row["diversity"] == pytest.approx(0.3)
    assert row["diversity_ci_low"] == pytest.approx(0.3 - math.sqrt(2) * 0.01 / 2)
    assert row["adherence"] == 0.75 and row["adherence_min"] == 0.5 and row["adherence_min_prompt"] == "p1"
    assert row["fid_x_floor"] == 2.0 and row["s_per_image"] == 0.01
    text = markdown([row], 20.0, "cmd")
    assert "| base | 0.300 [" in text and "40.0 (2.00x)" in text and "0.50: p1" in text
    assert "2 prompts x n=64" in text and "`cmd`" in text
    assert "| background: 0.50 (gray 0.80 vs 0.33) |" in text
    assert np.isfinite(row["diversity_ci_high"])


def test_table_rows_measure_the_pairs_named():
    from omegaconf import OmegaConf

    from diversity_cli.core.config import compose
    from diversity_cli.experiments.toy_table import table_rows

    def at_cfg_2(name: str):  # a chain made with TOY_GUIDANCE=2: its pairs are the shipped ones at CFG 2
        model = compose("generate", [f"model={'toy' if name == 'toy_retrained' else 'toy_dpdmd'}"]).model
        return OmegaConf.merge(model, {"base": {"guidance": 2.0}})

    rows = table_rows("toy_retrained", "toy_retrained_dpdmd", settings=at_cfg_2)
    methods = ["base", "distilled", "hybrid_k1", "hybrid_kauto", "hybrid_k1_bs5", "hybrid_k1_g2_bs5", "distilled"]
    assert [m for _, _, m in rows] == methods  # the base's own steps at CFG 0 and at the pair's CFG
    assert {p for _, p, _ in rows[:-1]} == {"toy_retrained"} and rows[-1][1] == "toy_retrained_dpdmd"
    assert rows[5][0] == "hybrid k=1 on the DMD student, the base's own 5 steps at CFG 2"
    # each label names what was sampled, read from the pair
    assert [label for label, _, _ in rows][:2] == ["base (DDIM 25, CFG 2)", "DMD student (4 steps)"]
    assert table_rows()[0][0] == "base (DDIM 25, CFG 3)" and table_rows()[-1][0] == "DP-DMD student (4 steps)"

    def at_cfg_0(name: str):  # a base sampled without guidance: one base_steps row, not the same one twice
        return OmegaConf.merge(at_cfg_2(name), {"base": {"guidance": 0.0}})

    assert [m for _, _, m in table_rows("toy", "toy_dpdmd", settings=at_cfg_0)].count("hybrid_k1_bs5") == 1


def test_a_prompt_without_adherent_samples_is_left_out_of_adherent_diversity_and_said():
    rows = _rows([0.2, 0.4, 0.3], [1.0, 0.5, 0.0])
    rows[2]["adherent_diversity"] = float("nan")  # no two adherent samples: undefined, not 0
    row = summarise("DMD", "distilled", rows, {"fid_toyfeat": 1.0, "seconds": 1.0, "n": 10, **FREE}, floor=1.0)
    assert row["adherent_diversity"] == pytest.approx((0.1 + 0.2) / 2) and row["adherent_prompts"] == 2
    assert "0.150 (2 of 3 prompts)" in markdown([row], 1.0, "cmd")


def test_provenance_names_the_weights_judge_and_versions(tmp_path):
    import json

    from diversity_cli.experiments.toy_table import write_provenance
    from diversity_cli.models.provenance import pair_provenance
    from diversity_cli.toy.features import judge_sha256

    weights = {"toy": pair_provenance(compose("generate", ["model=toy"]).model)}
    write_provenance(tmp_path, "cmd", weights)
    record = json.loads((tmp_path / "provenance.json").read_text())
    assert record["command"] == "cmd" and record["judge_sha256"] == judge_sha256()
    assert record["pairs"]["toy"]["distilled"]["weights_hash"]  # the student's bytes, not only its path
    assert "torch" in record["packages"]


def test_the_table_reads_each_method_s_fid_by_name_among_the_protocol_s_rows(tmp_path, monkeypatch):
    import csv

    from diversity_cli.experiments import toy_table

    # the protocol's FID rows as `measure` returns them: the floor and the VAE's round trip before the method's
    fid_rows = [
        {"method": "truth", "fid_toyfeat": 20.0},
        {"method": "truth_vae", "fid_toyfeat": 25.0},
        {"method": "base", "fid_toyfeat": 40.0, "seconds": 10.0},
    ]
    free = [
        {"method": m, "factor": f, "value": v, "n": 10, "share": 1 / len(values)}
        for m in ("truth", "base")
        for f, values in FACTORS.items()
        for v in values
    ]
    monkeypatch.setattr(toy_table, "measure", lambda *_, **__: (fid_rows, _rows([0.2, 0.4], [1.0, 0.5]), free))
    toy_table.build(tmp_path, [("base", "toy", "base")], log=lambda *_: None)
    with (tmp_path / "summary.csv").open() as handle:
        (row,) = list(csv.DictReader(handle))
    assert (float(row["fid_toyfeat"]), float(row["fid_x_floor"])) == (40.0, 2.0)
    text = (tmp_path / "toy_table.md").read_text()
    assert "40.0 (2.00x)" in text and "ground-truth floor 20.0; through the VAE 25.0 (1.25x))" in text


def test_help_and_a_bare_word_run_nothing(monkeypatch, capsys):
    """Arguments without `=` were dropped: `--help`, or a folder given without out=, started the full table."""
    from diversity_cli.core.errors import run_main
    from diversity_cli.experiments import toy_table

    monkeypatch.setattr(toy_table, "table_rows", lambda *_: pytest.fail("the table ran"))
    assert toy_table.main(["--help"]) == 0
    assert "python -m diversity_cli.experiments.toy_table out=" in capsys.readouterr().out
    assert run_main(lambda: toy_table.main(["results/mine"])) == 2
    assert capsys.readouterr().err == (
        "error: toy_table argument 'results/mine' is not one of out= model= dpdmd= (key=value; --help shows the "
        "usage)\n"
    )
