"""`make toy-weights`: the chain's commands, the pairs it distils and measures with, the model card composed from its
outputs (here small fixture files, no training), and the install into the package's assets."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from diversity_cli.core.config import compose
from diversity_cli.core.errors import UserError
from diversity_cli.toy import card, release
from diversity_cli.toy.data import FACTORS, parse_prompt
from diversity_cli.toy.protocol import write_csv

REPO = Path(__file__).resolve().parents[1]
PROMPTS = ["a circle", "a red square", "two triangles"]
# (adherence, diversity, adherent-only diversity) per prompt; truth diversity beside
BASE = [(0.95, 0.32, 0.30), (0.92, 0.22, 0.20), (0.91, 0.12, 0.10)]
TRUTH = [0.31, 0.21, 0.105]
DMD = [(0.95, 0.20, 0.20), (0.86, 0.15, 0.14), (0.91, 0.08, 0.08)]
DP_DMD = [(0.90, 0.30, 0.29), (0.90, 0.21, 0.20), (0.90, 0.10, 0.09)]
FLOOR, FID = 20.0, {"base": 22.0, "distilled": 30.0, "dp_dmd": 28.0}
THROUGH_VAE = 21.0  # the ground truth after a round trip through the base's VAE
SHIPPED_CFG = compose("generate", ["model=toy"]).model.base.guidance  # the CFG conf/model/toy.yaml samples at
OTHER_CFG = SHIPPED_CFG + 1.5  # a chain made with TOY_GUIDANCE at another scale


def _rows(method: str, figures: list[tuple[float, float, float]]) -> list[dict]:
    return [
        {
            "method": method,
            "prompt": prompt,
            "n": 64,
            "adherence": a,
            "diversity": d,
            "adherent_diversity": ad,
            "truth_adherence": 1.0,
            "truth_diversity": truth,
            **{f"{factor}_adherence": a for factor in parse_prompt(prompt)},
        }
        for prompt, (a, d, ad), truth in zip(PROMPTS, figures, TRUTH, strict=True)
    ]


def _free(method: str, gray: float) -> list[dict]:
    """Free-factor shares: uniform for every factor but the background, where `gray` goes to gray."""
    rows = []
    for factor, values in FACTORS.items():
        for value in values:
            share = 1 / len(values)
            if factor == "background":
                share = gray if value == "gray" else (1 - gray) / 2
            rows.append({"method": method, "factor": factor, "value": value, "n": 600, "share": share})
    return rows


def _write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


def _record(run: Path, command: str, line: list[str], **sections) -> None:
    body = {"command_line": ["diversity-cli", command, *line], **sections}
    _write(run / "runs" / f"20261203T000000.000000Z-{command}-1.json", json.dumps(body))


def _distill_run(run: Path, iterations: int, seconds: float, config: dict, line: list[str]) -> None:
    record = {"finished": True, "iterations": iterations, "seconds": seconds, "config": config}
    _write(run / "run.json", json.dumps({"schema": 1, "toolkit": "diversity-cli", "files": [], "distill": record}))
    _record(run, "distill", line)
    log = ["iteration,generator_loss,dmd_loss,first_step_loss,first_step_floor,fake_loss,seconds"]
    log += [f"{i},{1 / i:.4f},{1 / i:.4f},{0.5 if 'anchor_k' in config else ''},0.6,0.3,1.5" for i in range(1, 21)]
    _write(run / "log.csv", "\n".join(log) + "\n")
    _write(run / "README.md", "- first-step anchor: the teacher's x̂0 at t=749 (anchor_k=2 of 8 DDIM steps)\n")
    _write(run / "student" / "config.json", "{}")
    _write(run / "student" / "diffusion_pytorch_model.safetensors", b"s" * 1000)


@pytest.fixture
def chain(tmp_path) -> Path:
    """A results folder as `make toy-weights` leaves it, its figures chosen so that some targets hold, some not."""
    out = tmp_path / "toy_weights"
    base = out / release.BASE_RUN
    _write(base / "MODEL_CARD.md", "# Toy base model and toy feature network\n\n## How it was trained\n\n- seed: 3\n")
    _write(base / "train_toy.yaml", f"seed: 3\nvae:\n  reuse: {card.SHIPPED_VAE}\nunet:\n  steps: 6000\n")
    _write(base / "checkpoints" / "unet.done.json", json.dumps({"seconds": 1800.0}))
    _write(base / "logs" / "unet.csv", "step,loss\n1,0.5\n")
    pipeline = base / "base"
    _write(pipeline / "model_index.json", "{}")
    _write(pipeline / "unet" / "config.json", "{}")
    _write(pipeline / "unet" / "diffusion_pytorch_model.safetensors", b"u" * 2000)
    _write(pipeline / "unet" / "diffusion_pytorch_model.bin", b"pickle")  # never shipped
    _write(pipeline / "scheduler" / "scheduler_config.json", "{}")
    _write(pipeline / "tokenizer" / "tokenizer.json", "{}")
    release.write_pairs(out)
    _distill_run(
        out / release.DMD_RUN,
        800,
        1200.0,
        {"student_timesteps": [999, 749, 499, 249], "lr": {"generator": 2e-5}},
        ["distill=dmd", "seed=3"],
    )
    dp_config = {"lambda_div": 0.5, "anchor_k": 2, "teacher_ode": {"steps": 8}, "lr": {"generator": 1.5e-4}}
    _distill_run(out / release.DP_DMD_RUN, 900, 1300.0, dp_config, ["distill=dp_dmd", "lambda_div=0.5"])
    evaluation = out / release.EVAL
    write_csv(evaluation / release.PROTOCOL, _rows("base", BASE) + _rows("distilled", DMD))
    fid = [{"method": "truth", "fid_toyfeat": FLOOR}]
    vae = [{"method": "truth_vae", "fid_toyfeat": THROUGH_VAE}]
    models = [{"method": m, "fid_toyfeat": FID[m]} for m in ("base", "distilled")]
    write_csv(evaluation / "protocol_fid.csv", fid + vae + models)
    write_csv(evaluation / release.PROTOCOL_DPDMD, _rows("distilled", DP_DMD))
    write_csv(evaluation / "protocol_dpdmd_fid.csv", fid + [{"method": "distilled", "fid_toyfeat": FID["dp_dmd"]}])
    truth = _free("truth", 1 / 3)
    write_csv(evaluation / "protocol_free.csv", truth + _free("base", 1 / 3) + _free("distilled", 0.8))
    write_csv(evaluation / "protocol_dpdmd_free.csv", _free("truth", 0.5) + _free("distilled", 0.6))
    summary = "method,steps,threshold,committed_fraction,committed_step,committed_timestep\n"
    _write(
        evaluation / release.X0VIZ / "commitment_summary.csv",
        summary + "base,25,0.25,0.24,5,799\ndistilled,4,0.25,0.5,1,749\n",
    )
    _write(evaluation / release.X0VIZ_DPDMD / "commitment_summary.csv", summary + "distilled,4,0.25,0.75,2,499\n")
    pair = OmegaConf.to_container(OmegaConf.load(release.pair_file(out, release.PAIR)))
    settings = {"prompts": "data/toy_prompts.txt", "n": 16, "metric": "toy_features", "threshold": 0.25}
    settings["model"] = pair  # x0viz records the pair it sampled, resolved
    for folder in (release.X0VIZ, release.X0VIZ_DPDMD):
        _record(evaluation / folder, "x0viz", ["model=toy_retrained", "n=16"], config=settings)
    return out


def _table(text: str, header: str) -> list[list[str]]:
    """The rows of the markdown table under the line starting with `header`, as cells."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_the_card_checks_every_target_against_the_figures(chain):
    path, found = card.write_card(chain)
    text = path.read_text()
    verdicts = {row[0]: row[2] for row in _table(text, "| target |")}
    assert len(verdicts) == len(found) == 9
    expected = [
        ("base adherence", "met"),  # lowest 0.91
        ("base fid_toyfeat", "met"),  # 22 = 1.10x the floor 20
        ("base adherent-only diversity", "met"),  # -3.2%, -4.8%, -4.8%
        ("base commits within the first distilled step", "met"),  # t=799 >= 749
        ("DMD fid_toyfeat", "not met"),  # 30 = 1.36x the base's
        ("DMD adherence", "not met"),  # 0.86 vs 0.92 on "a red square"
        ("DP-DMD fid_toyfeat", "met"),  # 28 = 1.27x
        ("DP-DMD adherence", "met"),  # -0.05 at worst: exactly the slack
        ("DP-DMD diversity", "not met"),  # 0.10 / 0.12 on "two triangles"
    ]
    figures = {row[0]: row[1] for row in _table(text, "| target |")}
    for what, verdict in expected:
        key = next(key for key in verdicts if key.startswith(what))
        assert verdicts[key] == verdict, (key, figures[key])
    measured = {what: figures[next(key for key in figures if key.startswith(what))] for what, _ in expected}
    assert measured["base adherence"] == "lowest 0.910 (two triangles); 0 of 3 prompts below"
    assert measured["DMD adherence"] == "worst -0.060 (a red square); 1 of 3 prompts below"
    assert measured["DP-DMD diversity"] == "lowest 0.83× (two triangles); 1 of 3 prompts below"
    assert measured["base commits within the first distilled step"] == "t=799"
    through_vae = "the ground truth through the VAE alone: 1.05× the floor"
    assert measured["base fid_toyfeat"] == f"22.00 = 1.10× the floor 20.00; {through_vae}"
    assert "(6 of 9 met)" in text
    # the old toy base committed at t=719, after the students' first step (999 -> 749): k=1 was not the hand-over
    summary = chain / release.EVAL / release.X0VIZ / "commitment_summary.csv"
    summary.write_text(summary.read_text().replace("0.24,5,799", "0.32,7,719"))
    late = {target.what: target for target in card.targets(card.load_figures(chain))}
    late = next(target for what, target in late.items() if what.startswith("base commits"))
    assert (late.figure, late.met) == ("t=719", False)


def test_the_card_holds_the_protocol_tables_the_commitment_and_the_runs(chain):
    text, _ = card.build_card(chain)
    fid = {row[0]: row[1:] for row in _table(text, "| method | fid_toyfeat |")}
    assert fid["ground truth (floor)"][:2] == ["20.00", "1.00"]
    assert fid["ground truth through the VAE"][:2] == ["21.00", "1.05"]
    assert fid[f"base (DDIM 25, CFG {SHIPPED_CFG:g})"] == ["22.00", "1.10", "t=799 (after step 6 of 25)"]
    assert fid["DMD student (4 steps)"] == ["30.00", "1.50", "t=749 (after step 2 of 4)"]
    assert fid["DP-DMD student (4 steps)"] == ["28.00", "1.40", "t=499 (after step 3 of 4)"]
    prompts = {row[0]: row[1:] for row in _table(text, "| prompt | adherence base")}
    assert list(prompts) == PROMPTS
    assert prompts["a red square"] == [
        "0.920 / 0.860 / 0.900",
        "0.220 / 0.150 / 0.210",
        "0.200 / 0.140 / 0.200",
        "0.210",
    ]
    factors = {row[0]: row[1] for row in _table(text, "| prompt | per named factor")}
    assert factors["two triangles"] == "shape 0.91 / 0.91 / 0.90, count 0.91 / 0.91 / 0.90"
    assert factors["a circle"] == "shape 0.95 / 0.95 / 0.90"  # only what the prompt names, no blank columns
    free = {row[0]: row[1:] for row in _table(text, "| factor | captions leaving it free")}
    assert list(free) == list(FACTORS)
    # the ground truth is the first protocol's (the DP-DMD protocol's own truth rows are the same measurement)
    assert free["background"] == ["600", "0.00 / 0.47 / 0.27", "gray: 0.33 / 0.33 / 0.80 / 0.60"]
    assert free["shape"][1] == "0.00 / 0.00 / 0.00"
    students = _table(text, "| folder | method |")
    assert [row[0] for row in students] == ["`dmd_student/`", "`dp_dmd_student/`"]
    assert students[0][1] == "DMD (DMD2 without GAN)" and students[0][2] == "`diversity-cli distill distill=dmd seed=3`"
    assert students[0][3] == "1200 s (1.50 s/iteration, 800 iterations)"
    assert "anchor_k=2 (t=749), λ_div=0.5" in students[1][1]
    # train-toy's own card, one heading level down; the command that remakes everything, from the runs' values
    assert "\n## Toy base model and toy feature network\n" in text and "\n### How it was trained\n" in text
    variables = "SEED=3 DMD_ITERS=800 DPDMD_ITERS=900 LAMBDA=0.5 DMD_LR=2e-5 DPDMD_LR=1.5e-4"
    assert f"make toy-weights TOY_OUT={chain} {variables}\n" in text  # no DMD_GAN: the student has no GAN term
    assert "train-toy base (its stages) 1800 s, distill DMD 1200 s, distill DP-DMD 1300 s" in text
    assert "continues earlier train-toy runs" not in text
    assert "x0viz over data/toy_prompts.txt, n=16 seeds each, toy_features, threshold 0.25" in text


def test_measurements_made_before_the_vae_round_trip_still_make_a_card(chain):
    fid = chain / release.EVAL / "protocol_fid.csv"
    fid.write_text("".join(line for line in fid.read_text().splitlines(True) if not line.startswith("truth_vae,")))
    text, _ = card.build_card(chain)
    rows = {row[0]: row[1:] for row in _table(text, "| method | fid_toyfeat |")}
    assert "ground truth through the VAE" not in rows and rows["ground truth (floor)"][:2] == ["20.00", "1.00"]
    figures = {row[0]: row[1] for row in _table(text, "| target |")}
    assert figures[next(k for k in figures if k.startswith("base fid_toyfeat"))] == "22.00 = 1.10× the floor 20.00"


def test_a_base_on_a_vae_of_its_own_names_it_in_the_command_and_says_how_it_was_made(chain, tmp_path):
    text, _ = card.build_card(chain)
    assert "DPDMD_LR=1.5e-4\n" in text and "the VAE reused from the shipped pair" in text
    vae_run = tmp_path / "vae_run"
    _write(vae_run / "train_toy.yaml", "seed: 0\nvae:\n  steps: 8000\n")
    base = chain / release.BASE_RUN / "train_toy.yaml"
    base.write_text(base.read_text().replace(card.SHIPPED_VAE, str(vae_run / "base" / "vae")))
    text, _ = card.build_card(chain)
    assert f"DPDMD_LR=1.5e-4 TOY_VAE={vae_run / 'base' / 'vae'}\n" in text
    assert f"the VAE reused from `{vae_run / 'base' / 'vae'}` (train-toy, 8000 VAE steps)" in text


def test_a_base_that_trained_its_own_vae_is_not_said_to_reuse_one(chain):
    base = chain / release.BASE_RUN / "train_toy.yaml"
    base.write_text(base.read_text().replace(f"reuse: {card.SHIPPED_VAE}", "reuse: null"))
    text, _ = card.build_card(chain)
    assert "the VAE was trained by the base's own train-toy run" in text
    assert "the VAE reused" not in text and "neither is retrained" not in text and "TOY_VAE=" not in text


def test_a_dmd_student_with_the_gan_term_names_its_weight_in_the_card(chain):
    marker = chain / release.DMD_RUN / "run.json"
    body = json.loads(marker.read_text())
    body["distill"]["config"]["gan"] = {"weight": 0.05, "discriminator_weight": 0.01}
    marker.write_text(json.dumps(body))
    assert card.main([str(chain)]) == 0
    text = (chain / release.CARD).read_text()
    assert "DMD_LR=2e-5 DPDMD_LR=1.5e-4 DMD_GAN=5e-2\n" in text
    assert "| `dmd_student/` | DMD (DMD2 with its GAN term, weight 0.05) |" in text


def test_a_base_continued_from_an_earlier_run_carries_its_time_and_command(chain):
    """A base trained in two train-toy runs (unet.init_from the first run's export): the card counts both runs'
    time and names the first run's command, read from that run's own card."""
    first = chain / "base_eps"
    _write(first / "train_toy.yaml", "seed: 3\nunet:\n  steps: 6000\n")
    _write(first / "checkpoints" / "unet.done.json", json.dumps({"seconds": 2400.0}))
    _write(first / "MODEL_CARD.md", "## Trained\n\n- command: `diversity-cli train-toy out=x unet.lr=8e-4`\n")
    _write(chain / "base" / "train_toy.yaml", f"seed: 3\nunet:\n  init_from: {first / 'base'}\n")
    assert card.main([str(chain)]) == 0
    text = (chain / release.CARD).read_text()
    assert "train-toy base_eps (its stages) 2400 s, train-toy base (its stages) 1800 s, distill DMD 1200 s" in text
    seconds = [float(value) for value in re.findall(r" ([0-9.]+) s[,;]", text.split("Training time:")[1][:400])]
    students = seconds[-2:]  # trained side by side: the wall time counts the longer one only
    wall = f"{sum(seconds) / 3600:.2f} h of training, {(sum(seconds) - min(students)) / 3600:.2f} h of wall time"
    assert wall in text, text.split("Training time:")[1][:400]
    assert f"- `{first}`: `diversity-cli train-toy out=x unet.lr=8e-4`" in text


def test_a_base_continued_from_an_earlier_release_carries_its_recipe_and_time(chain, tmp_path):
    """A base whose first run started from an installed release's base (not a train-toy run here): the release
    card's earlier runs, command and training seconds carry over; weights with no card are named as untraced."""
    shipped = tmp_path / "shipped"
    _write(
        shipped / release.CARD,
        "Training time: train-toy base_v2 (its stages) 3935 s, train-toy base (its stages) 1752 s, distill DMD "
        "2066 s; 2.1 h in all.\n\n- `/old/base_v2`: `diversity-cli train-toy out=/old/base_v2`\n\n"
        "## Toy base model\n\n- command: `diversity-cli train-toy out=/old/base_v3`\n",
    )
    _write(chain / "base" / "train_toy.yaml", f"seed: 3\nunet:\n  init_from: {shipped / 'base'}\n")
    assert card.main([str(chain)]) == 0
    text = (chain / release.CARD).read_text()
    assert (
        "Training time: earlier release train-toy base_v2 (its stages) 3935 s, earlier release train-toy base "
        "(its stages) 1752 s, train-toy base (its stages) 1800 s, distill DMD 1200 s" in text
    )
    assert "- `/old/base_v2`: `diversity-cli train-toy out=/old/base_v2`" in text
    started = f"- `{shipped / 'base'}` (an earlier release's base; its card's command): "
    assert started + "`diversity-cli train-toy out=/old/base_v3`" in text
    (shipped / release.CARD).unlink()
    assert card.main([str(chain)]) == 0
    assert "weights with no card beside them" in (chain / release.CARD).read_text()


def test_a_coordinate_base_tells_how_to_load_it_once(chain):
    from diversity_cli.toy.train import COORDINATE_NOTE

    assert card.main([str(chain)]) == 0
    assert COORDINATE_NOTE[0] not in (chain / release.CARD).read_text()  # a plain UNet needs no note
    _write(chain / "base" / "base" / "unet" / "config.json", json.dumps({"_class_name": "CoordUNet2DConditionModel"}))
    assert card.main([str(chain)]) == 0
    assert (chain / release.CARD).read_text().count(COORDINATE_NOTE[0]) == 1
    base_card = chain / "base" / release.CARD  # a base whose own card already says it: not twice
    _write(base_card, base_card.read_text() + "\n" + COORDINATE_NOTE[0] + "\n")
    assert card.main([str(chain)]) == 0
    assert (chain / release.CARD).read_text().count(COORDINATE_NOTE[0]) == 1


def test_an_extended_distill_run_shows_every_command_that_trained_it(chain):
    body = {"command_line": ["diversity-cli", "distill", "distill=dmd", "iterations=1500"]}
    _write(chain / release.DMD_RUN / "runs" / "20261203T010000.000000Z-distill-2.json", json.dumps(body))
    assert card.main([str(chain)]) == 0
    students = _table((chain / release.CARD).read_text(), "| folder | method |")
    assert students[0][2] == (
        "`diversity-cli distill distill=dmd seed=3`, then `diversity-cli distill distill=dmd iterations=1500`"
    )


def test_a_free_factor_file_without_a_student_is_one_line_and_no_card(chain, capsys):
    write_csv(chain / release.EVAL / "protocol_dpdmd_free.csv", _free("truth", 0.5))
    assert card.main([str(chain)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "lack dp_dmd" in err
    assert not (chain / release.CARD).exists()


def test_a_missing_measurement_is_one_line_and_no_card(chain, capsys):
    (chain / release.EVAL / "protocol_dpdmd_fid.csv").unlink()
    assert card.main([str(chain)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "protocol_dpdmd_fid.csv, which is missing" in err
    assert not (chain / release.CARD).exists()


def test_the_chains_pairs_are_the_shipped_settings_with_its_own_weights(chain, monkeypatch):
    monkeypatch.setenv("DIVERSITY_CLI_CONF", str(chain / release.CONF))
    pipeline = (chain / "base" / "base").resolve()
    for name, student in ((release.PAIR, "dmd"), (f"{release.PAIR}_dpdmd", "dp_dmd")):
        model = compose("generate", [f"model={name}"]).model
        shipped = compose("generate", [f"model={release.SHIPPED_PAIRS[name]}"]).model
        assert model.name == name
        assert model.components.path == str(pipeline) and model.base.network.path == str(pipeline / "unet")
        assert model.distilled.network.path == str((chain / student / "student").resolve())
        # a base trained with a shifted schedule carries it in its scheduler config: both roles read it
        assert model.base.scheduler.repo == model.distilled.scheduler.repo == str(pipeline)
        for key in ("steps", "guidance"):
            assert model.base[key] == shipped.base[key] and model.distilled[key] == shipped.distilled[key]
        assert list(model.distilled.timesteps) == list(shipped.distilled.timesteps)
        assert model.auto_k == shipped.auto_k


def _rewrite_pairs(chain: Path, guidance: float) -> None:
    """The chain as made with TOY_GUIDANCE=`guidance`: its pairs, and x0viz's record of the base it sampled."""
    shutil.rmtree(chain / release.CONF)
    release.write_pairs(chain, base_guidance=guidance)
    for record in (chain / release.EVAL).glob("*/runs/*.json"):
        body = json.loads(record.read_text())
        body["config"]["model"]["base"]["guidance"] = guidance
        record.write_text(json.dumps(body))


def test_a_chain_at_another_cfg_samples_its_base_there_and_its_card_says_so(chain, monkeypatch):
    text, _ = card.build_card(chain)
    assert "TOY_GUIDANCE" not in text  # the shipped pair's CFG: the Makefile's default
    _rewrite_pairs(chain, OTHER_CFG)
    monkeypatch.setenv("DIVERSITY_CLI_CONF", str(chain / release.CONF))
    for name in release.SHIPPED_PAIRS:
        assert compose("generate", [f"model={name}"]).model.base.guidance == OTHER_CFG
    text, _ = card.build_card(chain)
    assert f"DPDMD_LR=1.5e-4 TOY_GUIDANCE={OTHER_CFG:g}\n" in text and f"| base (DDIM 25, CFG {OTHER_CFG:g}) |" in text


def test_a_folder_s_pairs_are_not_rewritten_with_other_settings(chain):
    pair, dp_pair = (release.pair_file(chain, name) for name in release.SHIPPED_PAIRS)
    before = pair.read_bytes(), pair.stat().st_mtime_ns
    release.write_pairs(chain)  # a resumed chain writes the same pairs again
    stamp = pair.stat().st_mtime_ns
    with pytest.raises(UserError, match=rf"base.guidance={SHIPPED_CFG} then, {OTHER_CFG} now\).*new TOY_OUT"):
        release.write_pairs(chain, base_guidance=OTHER_CFG)
    assert pair.read_bytes() == before[0]
    # only the second pair differs (an edit made since): neither is written, the first included
    dp_pair.write_text(dp_pair.read_text().replace("steps: 4", "steps: 2"))
    with pytest.raises(UserError, match=r"\(distilled.steps=2 then, 4 now\)"):
        release.write_pairs(chain)
    assert (pair.read_bytes(), pair.stat().st_mtime_ns) == (before[0], stamp)
    assert "steps: 2" in dp_pair.read_text()


def test_a_copied_folder_s_pairs_read_the_copy_s_weights(chain, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(chain, copy)
    release.write_pairs(copy)  # only where the weights are read from differs: not a change of settings
    model = OmegaConf.load(release.pair_file(copy, release.PAIR))
    assert model.distilled.network.path == str((copy / "dmd" / "student").resolve())


def test_pairs_at_a_cfg_say_how_to_make_them_again(chain):
    _rewrite_pairs(chain, OTHER_CFG)
    header = (release.pair_file(chain, release.PAIR)).read_text().splitlines()[0]
    told = f"base_guidance={OTHER_CFG:g}"
    assert header.startswith(f"# Generated by `python -m diversity_cli.toy.release pairs {chain} {told}`")


@pytest.mark.parametrize(
    "arg", ["base_guidance=0", "base_guidance=x", "base_guidance=inf", "guidance=3", "base_guidance=3 extra"]
)
def test_a_bad_guidance_for_the_pairs_is_one_line_and_exit_2(chain, capsys, arg):
    shutil.rmtree(chain / release.CONF)
    assert release.main(["pairs", str(chain), *arg.split()]) == 2
    assert capsys.readouterr().err.count("\n") == 1 and not (chain / release.CONF).exists()


def test_install_refuses_a_chain_sampled_at_another_cfg_than_the_shipped_pair(chain, tmp_path):
    _rewrite_pairs(chain, OTHER_CFG)
    card.write_card(chain)
    target = tmp_path / "assets"
    refusal = f"CFG {OTHER_CFG:g}, conf/model/toy.yaml at {SHIPPED_CFG:g}; set base.guidance: {OTHER_CFG:g}"
    with pytest.raises(UserError, match=refusal):
        release.install(chain, target)
    assert not target.exists()


def _protocol_record(chain: Path, name: str = release.PROTOCOL, **base) -> Path:
    """The record the protocol leaves beside its CSV: the pair as it resolved it, `base` settings changed."""
    pair = OmegaConf.to_container(OmegaConf.load(release.pair_file(chain, release.PAIR)))
    pair["base"].update(base)
    path = chain / release.EVAL / f"{Path(name).stem}_run.json"
    path.write_text(json.dumps({"command_line": ["python", "-m", "diversity_cli.toy.protocol"], "model": pair}))
    return path


def _x0viz_record(chain: Path, folder: str, **base) -> None:
    record = next((chain / release.EVAL / folder / "runs").glob("*.json"))
    body = json.loads(record.read_text())
    body["config"]["model"]["base"].update(base)
    record.write_text(json.dumps(body))


def _contents(folder: Path) -> list[tuple[Path, bytes]]:
    return [(path, path.read_bytes()) for path in sorted(folder.rglob("*")) if path.is_file()]


def test_the_targets_of_measurements_alone_against_the_pair_their_protocol_recorded(chain, capsys):
    evaluation = chain / release.EVAL
    assert card.main(["targets", str(evaluation)]) == 2  # no record: which pair was measured is unknown
    assert capsys.readouterr().err.count("\n") == 1
    # measured at another CFG than the folder's conf/ says: targets reads the pair the protocol recorded
    _protocol_record(chain, guidance=OTHER_CFG)
    for folder in (release.X0VIZ, release.X0VIZ_DPDMD):
        _x0viz_record(chain, folder, guidance=OTHER_CFG)
    before = _contents(evaluation)
    assert card.main(["targets", str(evaluation)]) == 0
    out = capsys.readouterr().out
    assert f"base (DDIM 25, CFG {OTHER_CFG:g})" in out
    found = card.targets(card.measured_figures(evaluation, card.recorded_pair(evaluation)))
    assert out.count("\nmet ") + out.count("\nNOT MET") == len(found) == 9
    assert f"{sum(t.met for t in found)} of 9 targets met" in out
    assert _contents(evaluation) == before  # writes nothing


@pytest.mark.parametrize(
    "stale",
    [
        {"protocol": release.PROTOCOL, "guidance": OTHER_CFG},
        {"protocol": release.PROTOCOL, "steps": 50},
        {"protocol": release.PROTOCOL_DPDMD, "guidance": OTHER_CFG},
        {"x0viz": release.X0VIZ, "guidance": OTHER_CFG},
        {"x0viz": release.X0VIZ_DPDMD, "steps": 50},
    ],
)
def test_measurements_made_at_another_setting_than_the_pair_make_no_card(chain, stale):
    stale = dict(stale)
    if "protocol" in stale:
        _protocol_record(chain, stale.pop("protocol"), **stale)
    else:
        _x0viz_record(chain, stale.pop("x0viz"), **stale)
    with pytest.raises(
        UserError, match=rf"sampled the base at .*, the pair at 25 steps, CFG {SHIPPED_CFG:g}; remeasure"
    ):
        card.build_card(chain)


@pytest.mark.parametrize("record", ["{not json", '{"model": {"base": {"steps": 25}}}', '{"command_line": []}'])
def test_a_broken_protocol_record_is_one_line_and_exit_2(chain, capsys, record):
    (chain / release.EVAL / "protocol_run.json").write_text(record)
    assert card.main(["targets", str(chain / release.EVAL)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "protocol_run.json" in err


def test_install_names_a_missing_pair_in_one_line(chain, tmp_path):
    card.write_card(chain)
    release.pair_file(chain, f"{release.PAIR}_dpdmd").unlink()
    with pytest.raises(UserError, match="toy_retrained_dpdmd.yaml missing"):
        release.install(chain, tmp_path / "assets")
    assert not (tmp_path / "assets").exists()


def test_install_ships_weights_configs_logs_and_the_card_only(chain, tmp_path):
    card.write_card(chain)
    target = tmp_path / "assets"
    _write(target / "features" / "model.safetensors", b"judge")
    _write(target / "base" / "stale.safetensors", b"old")
    copies = release.install(chain, target)
    assert (target / "features" / "model.safetensors").read_bytes() == b"judge"  # the judge is never replaced
    assert not (target / "base" / "stale.safetensors").exists()
    assert (target / "base" / "unet" / "diffusion_pytorch_model.safetensors").stat().st_size == 2000
    assert not (target / "base" / "unet" / "diffusion_pytorch_model.bin").exists()
    assert (target / "dmd_student" / "train_log.csv").read_text() == (chain / "dmd" / "log.csv").read_text()
    assert (target / "dp_dmd_student" / "diffusion_pytorch_model.safetensors").is_file()
    assert (target / "MODEL_CARD.md").read_text() == (chain / "MODEL_CARD.md").read_text()
    assert all(not copy.target.endswith((".bin", ".pt")) for copy in copies)
    assert not list(target.glob(".incoming-*")) and not list(target.glob(".outgoing-*"))


def test_install_refuses_over_the_size_limit_or_an_unfinished_run_and_writes_nothing(chain, tmp_path, monkeypatch):
    card.write_card(chain)
    target = tmp_path / "assets"
    _write(target / "base" / "old.safetensors", b"old")
    total = sum(copy.size for copy in release.plan_install(chain))
    monkeypatch.setattr(release, "SIZE_LIMIT", total - 1)
    with pytest.raises(UserError, match="over the 0 MB limit"):
        release.install(chain, target)
    monkeypatch.setattr(release, "SIZE_LIMIT", total)
    marker = chain / "dp_dmd" / "run.json"
    body = json.loads(marker.read_text())
    body["distill"]["finished"] = False
    marker.write_text(json.dumps(body))
    with pytest.raises(UserError, match="dp_dmd is unfinished"):
        release.install(chain, target)
    assert sorted(p.name for p in target.rglob("*")) == ["base", "old.safetensors"]


def _make_dry_run(*args: str) -> str:
    """What `make -n` would run for these targets and variables (the commands, not run)."""
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", "-f", str(REPO / "Makefile"), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_dry_run_reports_no_wall_time(tmp_path):
    """The timing lines share a shell line with $(MAKE), which make -n runs: they must not claim a finished run."""
    for target in ("toy-weights", "reproduce-toy"):
        printed = _make_dry_run(target, f"TOY_OUT={tmp_path}")
        assert "wall time" in printed  # the recipe, shown
        assert not re.search(rf"^make {target}: \d+ s wall time", printed, re.MULTILINE), target  # not run


def test_make_toy_weights_runs_the_recipe_with_its_variables(tmp_path):
    out = tmp_path / "w"
    variables = [f"TOY_OUT={out}", "SEED=5", "DMD_ITERS=7", "DPDMD_ITERS=9", "LAMBDA=0.25", "DPDMD_LR=3e-5"]
    variables += ["DMD_GAN=5e-2", f"TOY_VAE={out}/vae/base/vae", "TOY_GUIDANCE=3"]
    dry_run = _make_dry_run("toy-weights", "toy-weights-install", *variables)
    lines = [line for line in dry_run.replace("\\\n", " ").splitlines() if "diversity" in line]

    def args(needle: str) -> dict[str, str]:
        line = next(line for line in lines if needle in line)
        words = shlex.split(line.split("||")[-1])
        return dict(word.split("=", 1) for word in words if "=" in word)

    first, train, coord = args(f"out={out}/base_eps "), args(f"out={out}/base_v "), args(f"out={out}/base ")
    for run in (first, train, coord):
        assert run["seed"] == "5" and run["threads"] == "2"
        assert run["evaluate.guidance"] == "3"  # train-toy's own evaluation at the chain's CFG
        assert run["vae.reuse"] == f"{out}/vae/base/vae"  # a fixed instrument, not retrained by the chain
    assert {k: first[k] for k in ("unet.schedule_shift", "unet.text_embedding", "unet.steps", "unet.lr")} == {
        "unet.schedule_shift": "0.6",
        "unet.text_embedding": "true",
        "unet.steps": "6000",
        "unet.lr": "8e-4",
    }
    assert "unet.init_from" not in first and train["unet.init_from"] == f"{out}/base_eps/base"
    for run in (train, coord):
        assert (run["unet.prediction_type"], run["unet.zero_terminal_snr"], run["unet.schedule_shift"]) == (
            "v_prediction",
            "true",
            "0.5",
        )
    assert "unet.coordinates" not in train and coord["unet.coordinates"] == "true"
    assert coord["unet.late_timestep_multiplier"] == "6"
    assert coord["unet.init_from"] == f"{out}/base_v/base"
    assert any(line.endswith(f"-m diversity_cli.toy.release pairs {out} base_guidance=3") for line in lines)
    dmd, dp_dmd = args("distill=dmd"), args("distill=dp_dmd")
    for run, folder in ((dmd, release.DMD_RUN), (dp_dmd, release.DP_DMD_RUN)):
        assert run["model"] == release.PAIR and run["out"] == f"{out}/{folder}"
        assert run["seed"] == "5" and run["prompts"] == "data/toy_captions.csv"
        assert (run["batch_size"], run["lr.fake"]) == ("16", "1e-4")
        assert run["DIVERSITY_CLI_CONF"] == f"{out}/{release.CONF}"
        assert run["OMP_NUM_THREADS"] == "1"  # the two students run side by side, one thread each
        assert run["monitor.every"] == "100"  # their quality measured while they train, shipped beside them
    assert (dp_dmd["lambda_div"], dp_dmd["anchor_k"], dp_dmd["teacher_ode.steps"]) == ("0.25", "2", "8")
    assert (dmd["iterations"], dp_dmd["iterations"]) == ("7", "9")
    assert (dmd["lr.generator"], dp_dmd["lr.generator"]) == ("2e-5", "3e-5")  # DMD's default, DP-DMD's as given
    assert dmd["gan.weight"] == "5e-2" and "gan.weight" not in dp_dmd
    protocol = [args(f"out={out}/{release.EVAL}/{name}") for name in (release.PROTOCOL, release.PROTOCOL_DPDMD)]
    assert [(p["model"], p["methods"]) for p in protocol] == [
        (release.PAIR, "base,distilled"),
        (f"{release.PAIR}_dpdmd", "distilled"),
    ]
    for folder in (release.X0VIZ, release.X0VIZ_DPDMD):
        x0viz = args(f"out={out}/{release.EVAL}/{folder}")
        assert (x0viz["prompts"], x0viz["n"], x0viz["metric"], x0viz["threshold"]) == (
            "data/toy_prompts.txt",
            "16",
            "toy_features",
            "0.25",
        )
        # made again when older than its student's weights, else kept (a rerun of the recipe)
        line = next(line for line in lines if f"{folder}/commitment_summary.csv" in line)
        assert line.startswith(f"test {out}/{release.EVAL}/{folder}/commitment_summary.csv -nt {out}/"), line
    assert any(line.endswith(f"-m diversity_cli.toy.card {out}") for line in lines)
    assert lines[-1].endswith(f"-m diversity_cli.toy.release install {out}")


def test_make_toy_weights_samples_the_base_at_the_shipped_cfg_unless_told(tmp_path):
    from diversity_cli.core.config import compose

    dry_run = _make_dry_run("toy-weights", f"TOY_OUT={tmp_path}")
    pairs = [line.rstrip() for line in dry_run.splitlines() if "toy.release pairs" in line]
    assert pairs and pairs[0].endswith(f"toy.release pairs {tmp_path}")
    # train-toy's own evaluation is then at its default, which is the shipped pair's CFG too.
    train_toy = [line for line in dry_run.splitlines() if "train-toy" in line]
    assert len(train_toy) == 3 and not any("evaluate.guidance" in line for line in train_toy)
    assert compose("train_toy").evaluate.guidance == SHIPPED_CFG
    told = _make_dry_run("toy-weights", f"TOY_OUT={tmp_path}", f"TOY_GUIDANCE={OTHER_CFG:g}").splitlines()
    assert sum(f"evaluate.guidance={OTHER_CFG:g}" in line for line in told if "train-toy" in line) == 3
    assert any(line.rstrip().endswith(f"base_guidance={OTHER_CFG:g}") for line in told)


def test_make_toy_vae_trains_the_vae_the_chain_can_then_reuse(tmp_path):
    out = tmp_path / "w"
    words = shlex.split(_make_dry_run("toy-vae", f"TOY_OUT={out}", "SEED=5").replace("\\\n", " "))
    assert "train-toy" in words
    run = dict(word.split("=", 1) for word in words if "=" in word)
    assert (run["out"], run["seed"], run["vae.steps"]) == (f"{out}/vae", "5", "8000")
    assert run["unet.steps"] == "1"  # the UNet stage only completes the export of base/vae


def test_make_toy_ablation_trains_each_point_as_named_then_measures_all(tmp_path):
    out = tmp_path / "w"
    lines = [
        line
        for line in _make_dry_run("toy-ablation", f"TOY_OUT={out}").replace("\\\n", " ").splitlines()
        if "diversity" in line
    ]
    points = {}
    for line in (line for line in lines if "distill=dp_dmd" in line):
        words = dict(word.split("=", 1) for word in shlex.split(line) if "=" in word)
        assert words["OMP_NUM_THREADS"] == "1" and words["iterations"] == "100"  # two at a time, one thread each
        points[Path(words["out"]).name] = (words["lambda_div"], words["anchor_k"])
    assert points == {
        "lambda0.05_k2": ("0.05", "2"),
        "lambda0.5_k2": ("0.5", "2"),
        "lambda1_k2": ("1", "2"),
        "lambda0.5_k1": ("0.5", "1"),
    }
    runs = shlex.split(lines[-1])[-1].removeprefix("runs=").split(",")
    assert runs == [f"{out}/dmd", f"{out}/dp_dmd", *(f"{out}/ablation/{name}" for name in points)]


def test_a_students_quality_during_training_is_in_the_card_and_shipped_beside_it(chain, tmp_path):
    columns = "iteration,fid_toyfeat,fid_floor,adherence_mean,adherence_worst,worst_prompt,base_fid_toyfeat,"
    columns += "base_adherence_mean,base_adherence_worst,n_fid,n_per_prompt,seconds"
    rows = ["0,385.0,37.0,0.76,0.38,a circle,58.3,0.98,0.88,250,16,5", "100,124.4,37.0,0.92,0.75,a circle,58.3,0.98"]
    rows[1] += ",0.88,250,16,5"
    rows.append("200,150.2,37.0,0.95,0.81,two triangles,58.3,0.98,0.88,250,16,5")
    _write(chain / release.DMD_RUN / "quality.csv", "\n".join([columns, *rows]) + "\n")
    _write(chain / release.DMD_RUN / "quality.png", b"\x89PNG")
    text, _ = card.build_card(chain)
    line = next(line for line in text.splitlines() if "dmd_student/train_quality.csv" in line)
    assert "3 points" in line and "over 250 captions, where the floor is 37.0 and the base 58.3" in line
    assert "lowest 124.4 at iteration 100, 150.2 at the last (200); adherence 0.920 and 0.950 there" in line
    assert "dp_dmd_student/train_quality" not in text  # a student trained without the monitor has no such line
    card.write_card(chain)
    target = tmp_path / "assets"
    release.install(chain, target)
    assert (target / "dmd_student" / "train_quality.csv").read_bytes() == (chain / "dmd" / "quality.csv").read_bytes()
    assert (target / "dmd_student" / "train_quality.png").read_bytes() == b"\x89PNG"
    assert not (target / "dp_dmd_student" / "train_quality.csv").exists()


def test_the_card_names_the_base_s_sampler_as_its_pair_runs_it(chain):
    pair = release.pair_file(chain, release.PAIR)
    pair.write_text(pair.read_text().replace("class: DDIMScheduler", "class: EulerDiscreteScheduler"))
    text, _ = card.build_card(chain)
    assert f"| base (EulerDiscrete 25, CFG {SHIPPED_CFG:g}) |" in text and "| base (DDIM" not in text


def test_a_students_measurements_are_made_again_when_older_than_its_weights(tmp_path):
    """`make toy-weights` skipped the protocol and x0viz where their files existed: a student extended or retrained
    into the same TOY_OUT (other DMD_ITERS) kept the numbers of the one before, and the card was built from them."""
    import os
    import time

    bin_dir, out = tmp_path / "bin", tmp_path / "toy"
    bin_dir.mkdir()
    log = tmp_path / "ran.log"
    for name in ("python", "diversity-cli"):  # the commands, recorded instead of run
        stub = bin_dir / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\n')
        stub.chmod(0o755)
    weights = out / "dmd" / "student" / "diffusion_pytorch_model.safetensors"
    weights.parent.mkdir(parents=True)
    measured = [out / "eval" / "protocol_free.csv", out / "eval" / "x0viz" / "commitment_summary.csv"]
    for path in measured:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("old\n")
    weights.write_bytes(b"new student")
    later = time.time() + 5
    os.utime(weights, (later, later))  # the student written after its measurements

    def ran() -> list[str]:
        log.unlink(missing_ok=True)
        done = subprocess.run(
            ["make", "--no-print-directory", "-f", str(REPO / "Makefile"), "toy-weights-dmd", f"BIN={bin_dir}",
             f"TOY_OUT={out}"], capture_output=True, text=True, cwd=REPO,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return log.read_text().splitlines() if log.is_file() else []

    calls = ran()
    assert any("diversity_cli.toy.protocol" in c for c in calls) and any(" x0viz " in c for c in calls), calls
    for path in measured:  # measured after the student: kept
        os.utime(path, (later + 5, later + 5))
    assert [c for c in ran() if "protocol" in c or " x0viz " in c] == []
