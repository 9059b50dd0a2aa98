"""The CLI a researcher expects: usage errors in one line, help from the config, Hydra's habits, defaults that
fit the pair, a preflight that lists every missing network at once, and an end-of-run summary."""

from __future__ import annotations

import csv
import io
import re
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image

from diversity_cli.core.config import available, compose


def _one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "args, needle",
    [
        (["generat"], "Did you mean 'generate'"),
        (["--bogus"], "No such option: --bogus"),
        (["generate", "--bogus"], "unknown option --bogus"),
        (["generate", "nn=3"], "did you mean n?"),
        (["diversity", "metirc=pixel"], "did you mean metric?"),
        (["generate", "-m", "k=1,2"], "diversity-cli ablate"),
        (["distill", "-m", "iterations=1,2"], "distill runs one setting a call"),  # ablate sweeps no training
        (["generate", "method=base,distilled"], "a comma-separated list is a sweep (ablate sweeps it"),  # Hydra's
        (["generate", "n=2,3"], "n=2,3: a key takes one value here"),  # "Ambiguous value" said nothing of that
        (["generate", "hydra.run.dir=somewhere"], "out=<folder>"),
        (["generate", "+foo=1"], "+foo adds a key"),
        (["generate", "+n=3"], "without the +"),
        (["generate", "--cfg", "everything"], "--cfg takes job"),
        (["models", "sdxl_dmd"], "unknown pair 'sdxl_dmd'; did you mean sdxl_dmd2? the pairs: flux1_dev_schnell,"),
        (["models", "toy", "toy_dpdmd"], "models takes one pair at most (got toy toy_dpdmd)"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(cli, tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(*args)
    assert code == 2
    assert needle in _one_line(err)
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


def test_either_click_is_caught(cli, monkeypatch):
    """Typer bundles its own click; a usage error of the other one is one line and exit 2 as well."""
    import click

    from diversity_cli import cli as cli_module

    def broken(**_):
        raise click.UsageError("from the other click")

    monkeypatch.setattr(cli_module, "app", broken)
    code, _, err = cli()
    assert code == 2 and "from the other click" in _one_line(err)


def test_no_arguments_shows_help_and_exits_2(cli):
    code, out, err = cli()
    assert code == 2
    shown = out + err
    assert "Usage: diversity-cli" in shown and "generate" in shown and "models" in shown and "Traceback" not in shown


def test_version(cli):
    code, out, _ = cli("--version")
    assert code == 0 and out.startswith("diversity-cli ") and "torch" in out


# -------------------------------------------------------------------------------------------------- help


def test_help_lists_every_key_with_type_default_and_meaning(cli):
    from diversity_cli.commands.usage import leaf_keys

    code, out, _ = cli("generate", "--help")
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and line.split()}
    keys = [key for key in leaf_keys(compose("generate", [])) if not key.startswith("model.")]
    for key in keys:
        assert key in lines, key
    assert "int" in lines["n"] and " 8 " in lines["n"] and "samples per prompt" in lines["n"]
    for pair in available("model"):
        assert pair in lines  # each pair on a line of its own ...
    assert "present" in lines["toy"] and "built offline" in lines["tiny_sd"]  # ... saying whether weights are here
    assert "missing" in lines["sdxl_dmd2"] or "present" in lines["sdxl_dmd2"]
    assert "preset=<name>, one of: card, paper" in out


def test_help_of_a_group_choice_lists_its_keys(cli):
    """`distill --help` listed DMD's keys only; DP-DMD's (anchor_k, lambda_div, teacher_ode.*) were nowhere."""
    code, out, _ = cli("distill", "distill=dp_dmd", "--help")
    keys = {line.split()[0] for line in out.splitlines() if line.startswith("  ") and line.split()}
    assert code == 0 and {"anchor_k", "lambda_div", "stop_gradient", "teacher_ode.steps"} <= keys
    code, out, _ = cli("distill", "--help")
    assert code == 0 and "anchor_k" not in out and "distill=<name> --help" in out


def test_ablates_help_names_the_measure_keys_it_sets_apart_and_generates_the_pairs_keys(cli):
    """ablate --help listed measure.diversity.out, .metric, ... as keys to give, which ablate then refused ("set
    by ablate for every point"); generate --help said nothing of the pair's own keys (model.*)."""
    code, out, _ = cli("ablate", "--help")
    keys = {line.split()[0] for line in out.splitlines() if line.startswith("  ") and line.split()}
    assert code == 0 and "measure.diversity.out" not in keys and "measure.fid.tags" not in keys
    assert "measure.diversity.bootstrap" in keys and "measure.fid.reference" in keys  # the ones it takes
    (said,) = [line for line in out.splitlines() if line.startswith("Set by ablate itself")]
    assert "measure.diversity.out" in said and "measure.diversity.metric" in said and "measure.fid.tags" in said
    # generate's scale-out keys ablate refuses are named as refused, not as set by ablate (it sets no shards=)
    assert "shards" not in keys and "shards" not in said.split(": ")[1].split(", ")
    (refused,) = [line for line in out.splitlines() if line.startswith("Not taken by ablate")]
    assert refused.endswith(": devices, launcher_params, shard, shards"), refused
    code, out, _ = cli("generate", "--help")
    assert "its keys: model.<key>=... (`diversity-cli generate model=<pair> --cfg job` prints them)" in out


def test_models_command_prints_the_pair_table(cli):
    code, out, _ = cli("models")
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines() if line.split()}
    assert "toy DMD student" in rows["toy"] and "32" in rows["toy"] and "present" in rows["toy"]
    assert "SDXL-Base" in rows["sdxl_dmd2"]


def test_models_of_one_pair_names_each_missing_file_and_how_to_provide_it(cli, tmp_path, monkeypatch):
    """The table said "4 missing" and no more: which files, and the keys to point at a local copy, were nowhere."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hub"))
    code, out, _ = cli("models", "sdxl_dmd2")
    lines = out.strip().splitlines()
    assert code == 1 and lines[0] == "sdxl_dmd2 (preset=paper): 4 missing" and len(lines) == 5, out  # for scripts
    assert "tianweiy/DMD2/dmd2_sdxl_4step_unet_fp16.bin: `hf download tianweiy/DMD2" in out
    assert "model.distilled.network.repo=/local/copy" in out
    code, out, _ = cli("models", "model=toy")
    assert code == 0 and out.strip() == "toy: every file is on this machine (or built offline)"
    # the preset decides files (the card's fp16 variants): `models <pair> preset=card` was "one pair at most"
    code, out, _ = cli("models", "sdxl_dmd2", "preset=card")
    assert code == 1 and out.startswith("sdxl_dmd2 (preset=card): "), out
    code, _, err = cli("models", "preset=card")
    assert code == 2 and "models takes preset= once, after a pair" in err, err
    code, out, err = cli("models", "sd21_turbo", "preset=card")  # a one-step card: generate's k=1 check refused it
    assert code == 1 and out.startswith("sd21_turbo (preset=card): "), err
    # the local copy the lines suggest, checked where it is (it was "models takes one pair at most")
    copy = tmp_path / "dmd2"
    copy.mkdir()
    code, out, err = cli("models", "sdxl_dmd2", f"model.distilled.network.repo={copy}")
    assert code == 1 and out.startswith(f"sdxl_dmd2 (preset=paper, model.distilled.network.repo={copy}): "), err
    assert f"{copy / 'dmd2_sdxl_4step_unet_fp16.bin'}: not found there" in out
    code, _, err = cli("models", "model.base.guidance=4")
    assert code == 2 and "models takes model.base.guidance=4 after a pair" in err, err
    code, _, err = cli("models", "toy", "model.foo=1")  # Hydra's "bad override for 'generate'" named no pair key
    assert code == 2 and err.startswith("error: unknown key 'model.foo' of toy; did you mean"), err
    code, out, err = cli("models", "toy", "~model.hybrid_note")  # a deletion is a setting too, not a second pair
    assert code == 0 and out.startswith("toy (~model.hybrid_note): every file"), err


def test_cfg_job_prints_the_composed_config_and_does_nothing_else(cli, tmp_path):
    code, out, _ = cli("generate", "n=3", f"out={tmp_path / 'run'}", "--cfg", "job")
    assert code == 0
    printed = yaml.safe_load(out)
    assert printed["n"] == 3 and printed["model"]["name"] == "toy"
    assert not (tmp_path / "run").exists()
    code, out, _ = cli("ablate", "k=1..3", "--cfg", "job")
    assert code == 0 and yaml.safe_load(out)["k"] == [1, 2, 3]


def test_info_shows_the_search_path(cli, tmp_path, monkeypatch):
    (tmp_path / "model").mkdir()
    monkeypatch.setenv("DIVERSITY_CLI_CONF", str(tmp_path))
    code, out, _ = cli("generate", "--info")
    assert code == 0
    assert str(tmp_path) in out and "conf" in out and "Group model:" in out


@pytest.mark.parametrize("args", [("generate", "model=mine", "n=1"), ("generate", "model=mine", "--cfg", "job")])
def test_a_pair_file_of_yours_that_is_not_yaml_is_one_line(cli, tmp_path, monkeypatch, args):
    """A typo in a pair file on DIVERSITY_CLI_CONF was a 133-line yaml traceback (exit 1) from models, --help and
    every command naming the pair."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "mine.yaml").write_text(
        "name: mine\nbase:\n  steps: 25\n  guidance 3 # a missing colon\n  x: 1\n"
    )
    monkeypatch.setenv("DIVERSITY_CLI_CONF", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(*args)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: {tmp_path / 'model' / 'mine.yaml'}:5:") and "is not valid YAML" in err, err


@pytest.mark.parametrize("args", [("models",), ("generate", "--help")])
def test_models_and_help_list_a_pair_file_that_is_not_yaml_beside_the_others(cli, tmp_path, monkeypatch, args):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "mine.yaml").write_text("name: mine\nbase:\n  guidance 3\n  x: 1\n")
    monkeypatch.setenv("DIVERSITY_CLI_CONF", str(tmp_path))
    code, out, err = cli(*args)
    assert code == 0 and "Traceback" not in err, err
    (row,) = [line for line in out.splitlines() if line.lstrip().startswith("mine ")]
    assert "config does not read: `diversity-cli generate model=mine --cfg job` says why" in row
    assert any(line.lstrip().startswith("toy ") for line in out.splitlines())  # the others still listed


def test_a_network_folder_without_its_config_is_missing_before_anything_loads(cli, tmp_path, monkeypatch):
    """A distill run's folder named instead of its student/: `models` said "present" and generate failed once
    loading."""
    run = tmp_path / "distill_run"
    (run / "student").mkdir(parents=True)
    (run / "log.csv").write_text("iteration\n")
    pair = (Path(__file__).resolve().parents[1] / "conf" / "model" / "toy.yaml").read_text()
    pair = pair.replace("name: toy", "name: mytoy").replace('"${asset:toy/dmd_student}"', str(run))
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "mytoy.yaml").write_text(pair)
    monkeypatch.setenv("DIVERSITY_CLI_CONF", str(tmp_path / "conf"))
    code, out, _ = cli("models")
    assert code == 0 and any(line.startswith("mytoy") and "1 missing" in line for line in out.splitlines()), out
    code, _, err = cli("generate", "model=mytoy", "method=distilled", "n=1", f"out={tmp_path / 'out'}")
    assert code == 2 and f"distilled network {run}: holds no config.json" in err, err
    assert not (tmp_path / "out").exists()


def test_a_components_folder_without_its_pipeline_index_is_missing_before_anything_loads(cli, tmp_path):
    """It was checked for existing only: the load failed after both networks had loaded (minutes on a GPU node)."""
    folder = tmp_path / "sdxl_base_unet_only"
    (folder / "unet").mkdir(parents=True)
    out = tmp_path / "out"
    code, _, err = cli("generate", f"model.components.path={folder}", "n=1", f"out={out}")
    assert code == 2 and f"components folder {folder}: holds no model_index.json" in err, err
    assert not out.exists()


def test_a_components_folder_missing_a_part_its_index_names_is_told_before_anything_loads(cli, tmp_path):
    """A copy of the toy's pipeline folder without its VAE, and with a text encoder that lost its weights: each
    was found only by the pipeline's load, after the networks, naming the root folder."""
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(Path(__file__).resolve().parents[1] / "diversity_cli" / "assets" / "toy" / "base", folder)
    shutil.rmtree(folder / "vae")
    (folder / "text_encoder" / "model.safetensors").unlink()
    shutil.rmtree(folder / "unet")  # the network the pair passes in: not read from here
    out = tmp_path / "out"
    code, _, err = cli("generate", "model=toy", f"model.components.path={folder}", "n=1", f"out={out}")
    said = f"components folder {folder}: vae/ is not there (its model_index.json names them); text_encoder/ holds no"
    assert code == 2 and said in err and "unet/" not in err, err
    assert not out.exists()


def test_plus_key_adds_inside_a_section(cli):
    code, out, _ = cli("generate", "model=sdxl_dmd2", "+model.base.network.path=/x", "--cfg", "job")  # a local copy
    assert code == 0 and yaml.safe_load(out)["model"]["base"]["network"]["path"] == "/x"


# ---------------------------------------------------------------------------------------------- defaults


def _fake_run(root, model: str) -> None:
    root.mkdir(parents=True)
    with (root / "samples.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["method", "model", "prompt", "seed", "path", "tag"])
        writer.writeheader()
        writer.writerow(
            {"method": "base", "model": model, "prompt": "a shape", "seed": 0, "path": "x.png", "tag": "base"}
        )


def test_defaults_come_from_the_pair(tmp_path):
    from diversity_cli.experiments.defaults import apply_defaults

    _fake_run(tmp_path / "toy", "toy")
    _fake_run(tmp_path / "sdxl", "sdxl_dmd2")
    # each with its pair's quality number beside it
    assert list(apply_defaults(compose("diversity", [f"out={tmp_path / 'toy'}"])).metric) == [
        "toy_features",
        "toy_adherence",
    ]
    assert list(apply_defaults(compose("diversity", [f"out={tmp_path / 'sdxl'}"])).metric) == ["dreamsim", "clip_score"]
    assert apply_defaults(compose("diversity", ["images=/x", "out=/y"])).metric == "pixel"
    assert apply_defaults(compose("fid", [f"out={tmp_path / 'toy'}"])).reference == "toy"
    assert apply_defaults(compose("fid", [f"out={tmp_path / 'sdxl'}"])).reference == "coco"
    ablate = apply_defaults(compose("ablate", []))
    assert (ablate.prompt, ablate.metric) == ("a shape", "toy_features")
    x0viz = apply_defaults(compose("x0viz", ["model=sdxl_dmd2"]))
    assert (x0viz.prompt, x0viz.metric) == ("image of a car", "dreamsim")
    given = apply_defaults(compose("x0viz", ["metric=pixel", "prompt=a dog"]))
    assert (given.prompt, given.metric) == ("a dog", "pixel")


# --------------------------------------------------------------------------------------------- preflight


def test_preflight_lists_every_missing_network_at_once(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    started = time.perf_counter()
    code, _, err = cli("generate", "model=sdxl_dmd2", f"out={tmp_path / 'run'}")
    # well under the ~30 s an SDXL load took to fail (loose: shared CI cores); no torch: test_preflight_imports_no_torch
    assert time.perf_counter() - started < 10
    line = _one_line(err)
    assert code == 2 and not (tmp_path / "run").exists()
    assert "stabilityai/stable-diffusion-xl-base-1.0/unet/config.json" in line
    assert "tianweiy/DMD2/dmd2_sdxl_4step_unet_fp16.bin" in line and "hf download tianweiy/DMD2" in line
    # every setting it suggests is one the command line takes as written (`+` where the pair has no such key)
    hints = re.findall(r"(\+?model\.[\w.]+)=/local/copy", line)
    assert "+model.base.network.path" in hints, hints
    # the network's folder is the copy's unet/ (its config.json is there), the other keys take the copy's root
    assert "+model.base.network.path=/local/copy/unet and model.distilled.network.config_repo=/local/copy;" in line
    for hint in hints:
        compose("generate", ["model=sdxl_dmd2", f"{hint}={tmp_path}"])
    # a metric's weights are listed before any image is generated, together with the pair's
    code, _, err = cli("ablate", "model=sdxl_dmd2", "k=1..2", f"out={tmp_path / 'sweep'}")
    line = _one_line(err)
    assert code == 2 and "dreamsim" in line and "tianweiy/DMD2" in line and not (tmp_path / "sweep").exists()


def test_preflight_names_missing_local_folders(cli, tmp_path, monkeypatch):
    conf = tmp_path / "conf" / "model"
    conf.mkdir(parents=True)
    pair = compose("generate", ["model=toy"]).model
    text = yaml.safe_dump({"name": "mine", **{k: v for k, v in _plain(pair).items() if k != "name"}})
    text = text.replace("${asset:toy/base/unet}", str(tmp_path / "no_unet")).replace(
        "${asset:toy/dmd_student}", str(tmp_path / "no_student")
    )
    (conf / "mine.yaml").write_text(text)
    monkeypatch.setenv("DIVERSITY_CLI_CONF", str(tmp_path / "conf"))
    code, _, err = cli("generate", "model=mine", f"out={tmp_path / 'run'}")
    line = _one_line(err)
    assert code == 2 and "no_unet" in line and "no_student" in line and "model.base.network.path" in line


def _plain(cfg):
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=False)


# ------------------------------------------------------------------------------------- end of run, outputs


def test_generate_seconds_count_the_checks_and_loading_in_any_out(cli, tmp_path, monkeypatch):
    """The summary's clock started after the checks: the imports they did in a fresh out= went uncounted, and
    the same work in an existing one read 8x slower (0.8 s against 6.6 s for 4 toy images)."""
    import re
    import time

    from diversity_cli.commands import checks

    prepare = checks.prepare
    monkeypatch.setattr(checks, "prepare", lambda *a: (prepare(*a), time.sleep(0.5))[0])  # a slow check, say
    code, stdout, err = cli("generate", "model=tiny_sd", "method=base", "prompt=a dog", "n=1", f"out={tmp_path}")
    assert code == 0, err
    assert float(re.search(r"generate: 1 images, ([\d.]+) s", stdout).group(1)) >= 0.5, stdout


def test_generate_seconds_count_the_composition_of_its_config(cli, tmp_path, monkeypatch):
    """The clock started after the config was composed (Hydra, the command's imports): a review run's diversity
    summary said 10.1 s against 22.9 s of wall time."""
    import re
    from types import SimpleNamespace

    from diversity_cli import cli as entry

    clock = [0.0]  # the CLI's clock moves only where the composition says: 100 s of it
    monkeypatch.setattr(entry, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    compose = entry._compose

    def slow(*args):
        clock[0] += 100
        return compose(*args)

    monkeypatch.setattr(entry, "_compose", slow)
    code, stdout, err = cli("generate", "model=tiny_sd", "method=base", "prompt=a dog", "n=1", f"out={tmp_path}")
    assert code == 0, err
    assert float(re.search(r"generate: 1 images, ([\d.]+) s", stdout).group(1)) == 100.0, stdout


def test_generate_summary_and_contact_sheet(cli, tmp_path):
    out = tmp_path / "run"
    for method in ("base", "distilled"):
        code, stdout, err = cli("generate", "model=tiny_sd", f"method={method}", "prompt=a dog", "n=2", f"out={out}")
        assert code == 0, err
    assert "generate: 2 images" in stdout and "images/s" in stdout and "samples.csv" in stdout
    (sheet,) = out.glob("contact_sheet_tiny_sd_*.png")
    assert str(sheet) in stdout.replace("\n", "")
    from diversity_cli.reporting.contact_sheet import HEADER, LABEL_WIDTH

    with Image.open(sheet) as image:
        assert image.size == (LABEL_WIDTH + 2 * 96, HEADER + 2 * 96)  # a row per method, a column per seed
        rows = {r["tag"] + r["seed"]: r["path"] for r in csv.DictReader((out / "samples.csv").open())}
        tile = image.crop((LABEL_WIDTH + 96, HEADER + 96, LABEL_WIDTH + 192, HEADER + 192))
        with Image.open(out / rows["distilled1"]) as source:  # second row = second method, second column = seed 1
            expected = source.convert("RGB").resize((96, 96), Image.Resampling.NEAREST)
        assert tile.tobytes() == expected.tobytes()


def test_plain_folders_are_scored_and_only_out_is_written(cli, tmp_path):
    folder = _three_images(tmp_path)
    before = sorted(p.name for p in folder.rglob("*"))
    code, _, err = cli("diversity", f"images={folder}", "bootstrap=10")
    assert code == 2 and "needs out=" in _one_line(err)
    code, stdout, err = cli("diversity", f"images={folder}", f"out={tmp_path / 'scores'}", "bootstrap=10")
    assert code == 0, err
    assert (tmp_path / "scores" / "diversity.csv").is_file() and "pixel" in stdout and "CI" in stdout
    reference = tmp_path / "ref"
    reference.mkdir()
    for seed in range(3):
        Image.new("RGB", (16, 16), (10, seed * 90, 30)).save(reference / f"{seed}.png")
    code, stdout, err = cli(
        "fid", f"images={folder}", f"reference={reference}", "features=tiny_random", f"out={tmp_path / 'fid'}"
    )
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "fid" / "fid.csv").open()))
    assert rows[0]["method"] == "images=mine" and rows[0]["n"] == "3" and rows[0]["fid_tinyrandom"]
    assert sorted(p.name for p in folder.rglob("*")) == before  # the scored folder is never written


def _three_images(tmp_path: Path) -> Path:
    """A folder of three different small images, `mine`."""
    folder = tmp_path / "mine"
    folder.mkdir()
    for seed in range(3):
        Image.new("RGB", (16, 16), (seed * 80, 20, 200 - seed * 50)).save(folder / f"{seed}.png")
    return folder


def test_the_diversity_summary_shows_the_metric_this_run_measured(cli, tmp_path):
    """diversity.csv keeps earlier runs' rows (first in the file): the summary's headline is this run's metric."""
    folder = _three_images(tmp_path)
    scores = [f"images={folder}", f"out={tmp_path / 'scores'}", "bootstrap=10"]
    for metric in ("toy_features", "pixel"):
        code, stdout, err = cli("diversity", *scores, f"metric={metric}")
        assert code == 0, err
        headline = [line for line in stdout.splitlines() if " CI" in line and "│ images=mine" in line]
        assert headline and all(f" {metric}[bootstrap=10] " in line and "n=3" in line for line in headline), stdout
    rows = list(csv.DictReader((tmp_path / "scores" / "diversity.csv").open()))
    assert [r["metric"] for r in rows] == ["toy_features", "pixel"]


def test_the_diversity_summary_gives_every_metric_the_run_measured(cli, tmp_path):
    """metric=pixel,toy_features: the summary gave pixel alone; an earlier run's metric stays out."""
    folder = _three_images(tmp_path)
    scores = [f"images={folder}", f"out={tmp_path / 'scores'}", "bootstrap=10"]
    assert cli("diversity", *scores, "metric=toy_features")[0] == 0
    code, stdout, err = cli("diversity", *scores, "metric=pixel")
    assert code == 0 and "pixel[bootstrap=10] " in stdout and "toy_features[" not in stdout, stdout
    code, stdout, err = cli("diversity", *scores, "metric=pixel,toy_features")
    assert code == 0, err
    line = " ".join(stdout.split())
    pixel, toy = line.find("│ pixel[bootstrap=10] "), line.find("; toy_features[bootstrap=10] ")
    assert 0 < pixel < toy, stdout


def test_the_diversity_summary_leaves_out_an_earlier_runs_rows_of_other_options(cli, tmp_path):
    """pixel at size=8, then at the default: the second summary showed both numbers, the earlier one (possibly over
    images since replaced) as if this command had measured it."""
    folder = _three_images(tmp_path)
    scores = [f"images={folder}", f"out={tmp_path / 'scores'}", "metric=pixel", "bootstrap=10"]
    assert cli("diversity", *scores, "embedders.pixel.size=8")[0] == 0
    code, stdout, err = cli("diversity", *scores)
    assert code == 0, err
    headline = [line for line in stdout.splitlines() if " CI" in line and "│ images=mine" in line]
    assert len(headline) == 1 and "pixel[bootstrap=10]" in headline[0] and "size=8" not in stdout, stdout
    rows = list(csv.DictReader((tmp_path / "scores" / "diversity.csv").open()))
    assert sorted(r["options"] for r in rows) == ["bootstrap=10", "size=8; bootstrap=10"]


def test_progress_off_a_terminal_is_plain_wide_lines():
    from rich.console import Console

    from diversity_cli.core.console import LoggedProgress, progress_bar

    sink = io.StringIO()
    console = Console(file=sink, width=240)
    with progress_bar(console) as progress:
        assert isinstance(progress, LoggedProgress) and progress.plain
        task = progress.add_task("a long description " * 6, total=4)
        for _ in range(4):
            progress.advance(task)
    lines = sink.getvalue().splitlines()
    assert lines and all(line.startswith("a long description") for line in lines)
    assert len(lines[-1]) > 120  # no 80-column cut
    assert "4/4 (100%)" in lines[-1] and "elapsed" in lines[-1] and "remaining 0:00:00" in lines[-1]
    assert "it/s" in lines[-1] or "s/it" in lines[-1]


def test_preflight_file_names_match_the_libraries():
    """The preflight knows weight file names without importing torch; they must be the ones the loaders read."""
    from pathlib import Path

    import torch
    import torchvision

    from diversity_cli.metrics import preflight
    from diversity_cli.metrics.embedders import LPIPS_BACKBONES, lpips_backbone_file

    assert preflight._torch_hub_dir() == Path(torch.hub.get_dir())
    for net in LPIPS_BACKBONES:
        path, url = lpips_backbone_file(net)
        assert preflight.LPIPS_BACKBONE_FILES[net] == path.name and url.startswith(preflight.TORCHVISION_MODELS)
    assert torchvision.__version__


def test_preflight_imports_no_torch(tmp_path):
    """The check that runs before any work lists an SDXL pair's and its metrics' missing files without torch."""
    import subprocess
    import sys

    code = (
        "import sys, time; started = time.perf_counter()\n"
        "from diversity_cli.core.config import compose\n"
        "from diversity_cli.commands.checks import needed\n"
        "from diversity_cli.experiments.defaults import apply_defaults\n"
        "cfg = apply_defaults(compose('ablate', ['model=sdxl_dmd2', 'fid=true']))\n"
        "missing = needed('ablate', cfg)\n"
        "print(len(missing), 'torch' in sys.modules)\n"
    )
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "TORCH_HOME": str(tmp_path / "torch")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**_env(), **env})
    assert done.returncode == 0, done.stderr
    count, torch_loaded = done.stdout.split()
    assert int(count) >= 6 and torch_loaded == "False"  # pair files, DreamSim, Inception, CLIP, COCO


def _fresh_run(tmp_path, *args: str):
    """`args` run in a fresh process: (exit code, torch imported, diffusers imported, stdout, stderr)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from diversity_cli.cli import run\n"
        f"code = run({list(args)!r})\n"
        "print(code, 'torch' in sys.modules, 'diffusers' in sys.modules, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=_env())
    status, torch_loaded, diffusers_loaded = done.stderr.split()[-3:]
    return int(status), torch_loaded == "True", diffusers_loaded == "True", done.stdout, done.stderr


@pytest.mark.parametrize("command", ["x0viz", "report", "diversity", "fid", "ablate", "distill", "train-toy"])
def test_a_misspelt_key_is_told_before_torch_or_diffusers_is_imported(tmp_path, command):
    """The command modules imported their experiment (torch, diffusers, matplotlib) before the command line was
    read: `x0viz metrc=pixel` took 7-22 s to say 'did you mean metric?'."""
    code, torch_loaded, diffusers_loaded, _, err = _fresh_run(tmp_path, command, "metrc=pixel")
    assert (code, torch_loaded, diffusers_loaded) == (2, False, False), err
    assert "unknown key 'metrc'" in err


@pytest.mark.parametrize("command", ["train-lora", "generate", "distill"])
def test_a_commands_help_imports_neither_torch_nor_diffusers(tmp_path, command):
    """--help composed every pair and the command's config through the schema's scheduler checks, which import
    diffusers: `train-lora --help` took 7 s here (2.5 s without)."""
    code, torch_loaded, diffusers_loaded, out, err = _fresh_run(tmp_path, command, "--help")
    assert (code, torch_loaded, diffusers_loaded) == (0, False, False), err
    assert "sdxl_dmd2" in out  # the pairs are listed still


def test_help_shows_a_list_keys_default_as_a_list(cli):
    """Read without the schema's checks (which import diffusers), `metric: auto` showed as `auto`, where the schema
    makes it the list [auto]; a key that also takes a word (`tables: all`) shows the word."""
    rows = {line.split()[0]: line.split() for line in cli("ablate", "--help")[1].splitlines() if line.strip()}
    assert rows["metric"][1:3] == ["list[str]", "[auto]"], rows["metric"]
    rows = {line.split()[0]: line.split() for line in cli("report", "--help")[1].splitlines() if line.strip()}
    assert rows["tables"][1:7] == ["list[any]", "|", "all", "|", "none", "all"], rows["tables"]


def test_help_types_a_key_that_follows_another_as_the_one_it_follows(cli):
    """`mapping.3.metrics: ${diversity_metrics}` showed as a str whose default was the Python repr of a list."""
    rows = {line.split()[0]: line for line in cli("report", "--help")[1].splitlines() if line.strip()}
    assert rows["mapping.3.metrics"].split()[1:3] == ["list[str]", "[dreamsim,"], rows["mapping.3.metrics"]
    assert "(from diversity_metrics)" in rows["mapping.3.metrics"]


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_a_key_of_another_choice_names_the_choice(cli, tmp_path):
    """`distill lambda_div=0.5` without distill=dp_dmd: "unknown key", with nothing to say where it belongs."""
    code, _, err = cli("distill", "lambda_div=0.5", f"out={tmp_path / 'run'}")
    assert code == 2 and "lambda_div is a setting of distill=dp_dmd: add distill=dp_dmd" in err, err
    code, _, err = cli("generate", "lambda_div=0.5", f"out={tmp_path / 'run'}")  # no distill group there
    assert code == 2 and "distill=" not in err, err
    assert not (tmp_path / "run").exists()


def test_the_distill_summary_names_the_student_and_how_to_sample_with_it(tmp_path):
    """It said "output" and the run's folder: where the student was, and the card saying how to use it, unsaid."""
    from diversity_cli.commands.summary import summarize

    (tmp_path / "student").mkdir()
    (tmp_path / "README.md").write_text("generate model=toy model.distilled.network.path=...\n")
    written = dict(summarize("distill", None, tmp_path, 1.0).written)
    assert written["student network"] == str(tmp_path / "student")
    assert written["how to sample with it"] == str(tmp_path / "README.md") and "quality" not in written


def test_a_damaged_diversity_csv_is_told_not_rewritten_with_its_cells_shifted(cli, tmp_path, monkeypatch):
    """diversity's merge read its own diversity.csv with a plain reader: a row short of a field was written back
    padded, its cells under other columns, and the report then stumbled on "n is 'pixel'"."""
    folder = _three_images(tmp_path)
    scores = [f"images={folder}", f"out={tmp_path / 'scores'}", "bootstrap=10"]
    assert cli("diversity", *scores, "metric=[pixel,vendi_pixel]")[0] == 0
    path = tmp_path / "scores" / "diversity.csv"
    lines = path.read_text().splitlines()
    lines[1] = lines[1][: lines[1].rindex(",")]
    path.write_text("\n".join(lines) + "\n")
    from diversity_cli.experiments import diversity

    monkeypatch.setattr(diversity, "embedder_rows", lambda *a, **k: pytest.fail("measured before the file was read"))
    code, _, err = cli("diversity", *scores, "metric=pixel")
    assert code == 2 and f"{path} line 2 is damaged" in err and len(err.strip().splitlines()) == 1, err
    assert path.read_text().splitlines()[1] == lines[1]  # left as it was
