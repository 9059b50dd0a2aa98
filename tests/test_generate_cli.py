"""`diversity-cli generate` end to end on tiny pairs: outputs, seeding, resume, overwrite, bad input."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from diversity_cli.core.config import available, compose

PROMPT = "prompt=a red circle"


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "samples.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("model", available("model"))
def test_every_model_config_composes(model):
    cfg = compose("generate", [f"model={model}"])
    assert cfg.model.name == model
    assert cfg.model.family in ("sd", "sdxl", "pixart", "flux", "sd3", "qwen", "flux2")
    for role in ("base", "distilled"):
        spec = cfg.model[role]
        assert spec.scheduler["class"].endswith("Scheduler")
        assert spec.steps >= 1 and spec.guidance >= 0
        if not cfg.model.get("tiny"):
            assert spec.network.get("repo") or spec.network.get("path")


@pytest.mark.parametrize("model", ["tiny_sd", "tiny_sdxl", "tiny_pixart"])
def test_tiny_pairs_run_every_method(cli, tmp_path, model):
    methods = ["base", "distilled", "hybrid", "skip_first", "replace_final"]
    for method in methods:
        code, _, err = cli("generate", f"model={model}", f"method={method}", PROMPT, "n=2", f"out={tmp_path}")
        assert code == 0, err
    rows = _rows(tmp_path)
    assert sorted({r["method"] for r in rows}) == sorted(methods)
    assert len(rows) == 2 * len(methods)
    for row in rows:
        assert (tmp_path / row["path"]).is_file()
        assert float(row["seconds"]) > 0 and int(row["nfe"]) >= int(row["steps"]) >= 1
    nfe = {r["method"]: int(r["nfe"]) for r in rows}
    assert nfe["hybrid"] == nfe["distilled"]  # base at guidance 0: one evaluation, like the student's
    assert nfe["skip_first"] == nfe["distilled"] - 1
    assert (tmp_path / "configs" / f"{model}_hybrid_k1.yaml").is_file()
    assert "diffusers" in (tmp_path / "versions.json").read_text()
    with (tmp_path / "timesteps.csv").open() as f:
        visits = [r for r in csv.DictReader(f) if r["run"] == f"{model}_hybrid_k1"]
    assert [r["model"] for r in visits][:2] == ["base", "distilled"]


def test_samples_leave_the_base_knobs_blank_where_no_base_runs_inside(cli, tmp_path):
    """base, distilled and skip_first take no k, base_guidance or base_steps (set, they are refused): their rows
    must not say they did, though the config holds defaults for them."""
    for method in ("base", "distilled", "skip_first", "hybrid"):
        knobs = ["k=1", "base_guidance=2", "base_steps=5"] if method == "hybrid" else []
        code, _, err = cli("generate", "model=tiny_sd", f"method={method}", PROMPT, "n=1", *knobs, f"out={tmp_path}")
        assert code == 0, err
    cells = {r["method"]: (r["k"], r["base_guidance"], r["base_steps"]) for r in _rows(tmp_path)}
    assert cells == {
        "base": ("", "", ""),
        "distilled": ("", "", ""),
        "skip_first": ("", "", ""),
        "hybrid": ("1", "2.0", "5"),  # a float, as the tag and settings read it
    }


@pytest.mark.parametrize("micro_batch", [1, 3])
def test_images_do_not_depend_on_batch_size(cli, tmp_path, micro_batch):
    for batch in (1, 4):
        code, _, err = cli(
            "generate",
            "model=tiny_sdxl",
            f"+model.micro_batch={micro_batch}",
            PROMPT,
            "n=4",
            f"batch_size={batch}",
            f"out={tmp_path / str(batch)}",
        )
        assert code == 0, err
    one, four = _rows(tmp_path / "1"), _rows(tmp_path / "4")
    assert [r["path"] for r in one] == [r["path"] for r in four]
    for row in one:
        assert (tmp_path / "1" / row["path"]).read_bytes() == (tmp_path / "4" / row["path"]).read_bytes()
    images = {(tmp_path / "1" / r["path"]).read_bytes() for r in one}
    assert len(images) == 4  # and different seeds do give different images


def test_resume_skips_what_exists_and_never_duplicates_rows(cli, tmp_path):
    args = ("generate", "model=tiny_sd", PROMPT, f"out={tmp_path}")
    assert cli(*args, "n=2")[0] == 0
    first = (tmp_path / _rows(tmp_path)[0]["path"]).stat().st_mtime_ns
    assert cli(*args, "n=4")[0] == 0
    rows = _rows(tmp_path)
    assert [int(r["seed"]) for r in rows] == [0, 1, 2, 3]
    assert (tmp_path / rows[0]["path"]).stat().st_mtime_ns == first  # not regenerated
    code, _, err = cli(*args, "n=4")
    assert code == 0 and "nothing to do" in err
    assert len(_rows(tmp_path)) == 4
    # An image lost from disk is made again; its row is not duplicated.
    (tmp_path / rows[1]["path"]).unlink()
    assert cli(*args, "n=4")[0] == 0
    assert len(_rows(tmp_path)) == 4 and (tmp_path / rows[1]["path"]).is_file()


def test_different_settings_do_not_overwrite_without_permission(cli, tmp_path):
    args = ("generate", "model=tiny_sd", PROMPT, "n=2", f"out={tmp_path}")
    assert cli(*args)[0] == 0
    before = {r["path"]: (tmp_path / r["path"]).read_bytes() for r in _rows(tmp_path)}
    code, _, err = cli(*args, "model.distilled.guidance=3.0")
    assert code == 2 and "overwrite=true" in err
    assert {r["path"]: (tmp_path / r["path"]).read_bytes() for r in _rows(tmp_path)} == before
    code, _, err = cli(*args, "model.distilled.guidance=3.0", "overwrite=true")
    assert code == 0, err
    rows = _rows(tmp_path)
    assert len(rows) == 2 and {r["settings"] for r in rows} != set()
    assert any((tmp_path / p).read_bytes() != data for p, data in before.items())


def test_prompt_csv_with_per_row_seeds(cli, tmp_path):
    table = tmp_path / "prompts.csv"
    table.write_text("case_number,prompt,evaluation_seed\n0,a red circle,100\n1,two blue squares,200\n")
    code, _, err = cli("generate", "model=tiny_sd", f"prompts={table}", "n=2", f"out={tmp_path / 'run'}")
    assert code == 0, err
    rows = _rows(tmp_path / "run")
    assert [(r["prompt"], int(r["seed"])) for r in rows] == [
        ("a red circle", 100),
        ("a red circle", 101),
        ("two blue squares", 200),
        ("two blue squares", 201),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["model=nope", PROMPT], "unknown model 'nope'; choose one of: "),
        (["model=toi", PROMPT], "unknown model 'toi'; did you mean toy? choose one of: "),
        (["method=hybird", PROMPT], "unknown method 'hybird'; did you mean hybrid? choose one of: base,"),
        (["method=fast", PROMPT], "unknown method 'fast'"),
        (["k=7", PROMPT], "k=7 is out of range"),
        (["n=0", PROMPT], "n=0 is out of range: n is an integer >= 1"),
        (["model=tiny_sd"], "no prompt given"),
        (["prompts=/does/not/exist.txt"], "not found"),
        (["not_a_key=1", PROMPT], "unknown key 'not_a_key'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, tmp_path, args, message):
    code, _, err = cli("generate", *args, f"out={tmp_path}")
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_text_prompt_files_skip_comments_and_blank_lines(tmp_path):
    from diversity_cli.core.prompts import read_prompts

    path = tmp_path / "prompts.txt"
    path.write_text("# what these prompts are for\na shape\n\n  # indented comment\na red circle\n")
    assert [row.prompt for row in read_prompts(None, str(path))] == ["a shape", "a red circle"]


def test_empty_prompt_file(cli, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    code, _, err = cli("generate", f"prompts={empty}", f"out={tmp_path / 'run'}")
    assert code == 2 and "has no prompts" in err


def test_missing_checkpoint_names_it_and_how_to_fix(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = cli("generate", "model=sdxl_dmd2", PROMPT, "device=cpu", f"out={tmp_path}")
    assert code == 2
    assert "stabilityai/stable-diffusion-xl-base-1.0" in err and "HF_HOME" in err and ".path=" in err
    assert len(err.strip().splitlines()) == 1


def test_console_script_answers_fast_and_cleanly(tmp_path):
    exe = Path(sys.executable).parent / "diversity-cli"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "diversity_cli"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    help_run = subprocess.run([*command, "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert help_run.returncode == 0 and "generate" in help_run.stdout
    bad = subprocess.run([*command, "generate", "k=99", PROMPT], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("error: k=99") and "Traceback" not in bad.stderr


def test_a_group_over_two_settings_is_refused_by_the_measurements(cli, tmp_path):
    """Other seeds added with other settings (or an overwrite at a smaller n) leave one tag and prompt over two
    models: diversity and fid refuse to give one number for them, before any network loads."""
    args = ("generate", "model=tiny_sd", PROMPT, "n=2", f"out={tmp_path}")
    assert cli(*args)[0] == 0
    assert cli(*args, "seed=100", "model.distilled.guidance=3.0")[0] == 0  # other seeds: no clash at generate
    assert len({r["settings"] for r in _rows(tmp_path)}) == 2
    for command in ("diversity", "fid"):
        settings = ["metric=pixel"] if command == "diversity" else ["features=toy", "reference=toy"]
        code, _, err = cli(command, f"out={tmp_path}", *settings)
        assert code == 2 and "2 different settings" in err, (command, err)
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "diversity.csv").exists() and not (tmp_path / "fid.csv").exists()


def test_a_method_whose_prompts_differ_in_settings_is_named_by_diversity(cli, tmp_path):
    """Another guidance for another prompt: each prompt's number is of one setting, but a mean over prompts (Table
    3's average) would mix the two, which diversity says."""
    args = ("generate", "model=tiny_sd", "n=2", f"out={tmp_path}")
    assert cli(*args, PROMPT)[0] == 0
    assert cli(*args, "prompt=two blue squares", "model.distilled.guidance=3.0")[0] == 0
    code, _, err = cli("diversity", f"out={tmp_path}", "metric=pixel")
    assert code == 0 and "hybrid_k1: its prompts were made with 2 different configs" in " ".join(err.split()), err


@pytest.mark.parametrize("sharded", [False, True])
def test_a_group_now_below_min_n_loses_its_old_diversity_rows(cli, tmp_path, sharded):
    """Images of one prompt lost since diversity ran: the group is skipped, and its old number goes with it
    rather than staying in diversity.csv (and the report) as if it described the run."""
    table, tmp_path = tmp_path / "prompts.txt", tmp_path / "run"  # out= a folder of its own
    table.write_text("a red circle\ntwo blue squares\n")
    assert cli("generate", "model=tiny_sd", f"prompts={table}", "n=2", f"out={tmp_path}")[0] == 0
    assert cli("diversity", f"out={tmp_path}", "metric=pixel")[0] == 0
    assert {r["prompt"] for r in csv.DictReader((tmp_path / "diversity.csv").open())} == {
        "a red circle",
        "two blue squares",
    }
    (tmp_path / next(r["path"] for r in _rows(tmp_path) if r["prompt"] == "two blue squares")).unlink()
    shards = ["devices=cpu:2", "shards=2"] if sharded else []  # the merge of two workers' rows too
    code, _, err = cli("diversity", f"out={tmp_path}", "metric=pixel", *shards)
    assert code == 0 and "skipped" in err and "left diversity.csv" in err
    assert {r["prompt"] for r in csv.DictReader((tmp_path / "diversity.csv").open())} == {"a red circle"}


def test_images_of_weights_changed_in_place_are_not_joined_by_new_ones(cli, tmp_path):
    """A student retrained into the same folder: its path and config are unchanged, so only the weights part of
    `settings` tells the old images from the new. Resuming is refused; a full overwrite remakes them all, and
    diversity refuses a group over both."""
    from diversity_cli.core.resources import asset

    student = tmp_path / "student"
    shutil.copytree(asset("toy/dmd_student"), student)
    args = ("generate", "model=toy", "method=distilled", PROMPT, f"model.distilled.network.path={student}")
    out = f"out={tmp_path / 'run'}"
    assert cli(*args, "n=2", out)[0] == 0
    weights = student / "diffusion_pytorch_model.safetensors"
    shutil.copy(asset("toy/dp_dmd_student") / weights.name, weights)
    code, _, err = cli(*args, "n=3", out)
    assert code == 2 and "2 distilled image(s) of toy that other weights made" in err
    assert len(_rows(tmp_path / "run")) == 2
    code, _, err = cli(*args, "n=2", out)  # every image there: it said "nothing to do" over the old student's
    assert code == 2 and "2 distilled image(s) of toy that other weights made" in err
    assert cli(*args, "n=3", "overwrite=true", out)[0] == 0
    assert len({r["settings"] for r in _rows(tmp_path / "run")}) == 1
    rows = _rows(tmp_path / "run")
    rows[0]["settings"] = rows[0]["settings"].split("/")[0] + "/000000000000"  # as the old weights wrote it
    with (tmp_path / "run" / "samples.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    code, _, err = cli("diversity", f"out={tmp_path / 'run'}", "metric=pixel")
    assert code == 2 and "2 different weights" in err


def test_a_diversity_number_names_embedder_settings_other_than_the_defaults(cli, tmp_path):
    """pixel at 16 px is another measurement than the 64 px the label's description names: diversity.csv, the
    command's summary and the report's header and note all say so. A prompt is shown as typed, brackets too."""
    prompt = "a [b] red circle"
    assert cli("generate", "model=tiny_sd", f"prompt={prompt}", "n=2", f"out={tmp_path}")[0] == 0
    code, out, _ = cli("diversity", f"out={tmp_path}", "metric=pixel", "embedders.pixel.size=16")
    assert code == 0
    rows = list(csv.DictReader((tmp_path / "diversity.csv").open()))
    assert {r["options"] for r in rows if r["metric"] == "pixel"} == {"size=16"}
    assert "pixel[size=16]" in out and "[b] red" in out
    assert cli("diversity", f"out={tmp_path}", "metric=pixel")[0] == 0  # the defaults: no options, beside 16 px
    assert {r["options"] for r in csv.DictReader((tmp_path / "diversity.csv").open())} == {"", "size=16"}
    assert cli("diversity", f"out={tmp_path}", "metric=pixel", "embedders.pixel.size=16")[0] == 0
    assert cli("report", f"out={tmp_path}", "tables=[3]", "html=false", "figures=false")[0] == 0
    text = (tmp_path / "tables" / "table_3.md").read_text()
    assert "measured pixel[size=16]_diversity" in text and "measured with size=16" in text


def test_the_summary_counts_remade_images(cli, tmp_path):
    """An image lost from disk is made again without a new row: the summary counts what this command wrote."""
    args = ("generate", "model=tiny_sd", PROMPT, "n=3", f"out={tmp_path}")
    code, out, _ = cli(*args)
    assert code == 0 and "generate: 3 images" in out
    (tmp_path / _rows(tmp_path)[1]["path"]).unlink()
    code, out, _ = cli(*args)
    assert code == 0 and "generate: 1 images" in out, out
    code, out, _ = cli("generate", "model=tiny_sd", "prompt=another", "n=1", "shard=0/1", f"out={tmp_path}")
    assert code == 0 and "shards/samples-0-of-1.csv" in out and " samples.csv " not in out  # the file it wrote


def test_a_distilled_images_weights_include_the_base_only_when_the_student_is_a_lora_on_it():
    from diversity_cli.experiments.generation import weights_part

    def part(pair: str, base: str) -> str:
        cfg = compose("generate", [f"model={pair}", "method=distilled"])
        models = {
            "base": {"weights_hash": base},
            "distilled": {"weights_hash": "s"},
            "components": {"weights_hash": "c"},
        }
        return weights_part(cfg.model, str(cfg.method), models)

    assert part("tiny_sd", "b1") == part("tiny_sd", "b2")  # a student of its own: the base's weights play no part
    assert part("tiny_sdxl_lora", "b1") != part("tiny_sdxl_lora", "b2")  # base + LoRA: they do


def test_a_base_changed_in_place_leaves_distilled_images_alone_but_not_base_ones(cli, tmp_path):
    """The components folder's own unet/ is the base's role: a distilled image's weights do not include it."""
    from diversity_cli.core.resources import asset

    base = tmp_path / "base"
    shutil.copytree(asset("toy/base"), base)
    pair = ("model=toy", f"model.components.path={base}", f"model.base.network.path={base / 'unet'}", PROMPT)
    out = f"out={tmp_path / 'run'}"
    for method in ("distilled", "base"):
        assert cli("generate", *pair, f"method={method}", "n=1", out)[0] == 0
    with (base / "unet" / "config.json").open("a") as f:
        f.write("\n")  # the same network, other bytes: as a retrained base would be
    assert cli("generate", *pair, "method=distilled", "n=2", out)[0] == 0
    code, _, err = cli("generate", *pair, "method=base", "n=2", out)
    assert code == 2 and "other weights made" in err


def test_sharded_generate_refuses_other_settings_and_overwrites_when_told(cli, tmp_path):
    """With devices= the launcher asks each shard what is left: a clash was 'nothing left' (0 images, exit 0),
    and overwrite=true remade nothing."""
    args = ("generate", "model=tiny_sd", PROMPT, "n=2", f"out={tmp_path}")
    assert cli(*args)[0] == 0
    before = {r["path"]: r["settings"] for r in _rows(tmp_path)}
    sharded = ("devices=cpu:2", "shards=2", "model.distilled.guidance=3.0")
    code, _, err = cli(*args, *sharded)
    assert code == 2 and "different settings" in err and "overwrite=true" in err
    assert cli(*args, *sharded, "overwrite=true")[0] == 0
    after = {r["path"]: r["settings"] for r in _rows(tmp_path)}
    assert after.keys() == before.keys() and all(after[p] != before[p] for p in before)


def test_overwrite_with_a_setting_refused_at_load_keeps_the_images(cli, tmp_path):
    """overwrite=true remakes images, but a setting that fails only when the pair loads (a scheduler class that
    does not exist) made nothing: the run's images and rows must still be there."""
    args = ("generate", "model=toy", "method=distilled", PROMPT, "n=2", f"out={tmp_path}")
    assert cli(*args)[0] == 0
    before = _rows(tmp_path)
    code, _, err = cli(*args, "overwrite=true", "model.distilled.scheduler.class=NoSuchScheduler")
    assert code == 2 and "NoSuchScheduler" in err
    assert _rows(tmp_path) == before and all((tmp_path / row["path"]).is_file() for row in before)
    code, _, err = cli(*args, "overwrite=true", "model.distilled.timesteps=[999,499]", "model.distilled.steps=2")
    assert code == 0, err
    after = _rows(tmp_path)  # each image once, made with the new settings
    assert sorted(r["path"] for r in after) == sorted(r["path"] for r in before)
    assert {r["settings"] for r in after}.isdisjoint(r["settings"] for r in before)


def test_sharded_overwrite_remakes_images_of_weights_changed_in_place(cli, tmp_path):
    """A student retrained in place, then the command sharded with overwrite=true: each shard remakes only its
    own block, yet the other shards' old images are part of the same remake, not images it would join."""
    from diversity_cli.core.resources import asset

    student = tmp_path / "student"
    shutil.copytree(asset("toy/dmd_student"), student)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\ntwo blue squares\n")
    args = ("generate", "model=toy", "method=distilled", f"prompts={prompts}", "n=2", f"out={tmp_path / 'run'}",
            f"model.distilled.network.path={student}")  # fmt: skip
    assert cli(*args)[0] == 0
    weights = student / "diffusion_pytorch_model.safetensors"
    shutil.copy(asset("toy/dp_dmd_student") / weights.name, weights)
    for shard in ("shard=0/2", "shard=1/2"):  # one after the other, as a SLURM array with parallelism 1 runs them
        code, _, err = cli(*args, "overwrite=true", shard)
        assert code == 0, err
    code, _, err = cli("diversity", f"out={tmp_path / 'run'}", "metric=pixel")
    assert code == 0, err  # one set of weights per group: nothing of the old student is left


@pytest.mark.parametrize("command", ["generate", "x0viz"])
def test_a_network_that_will_not_load_leaves_no_new_out(cli, tmp_path, command):
    """A folder whose config.json is no network's passes the preflight and fails when it loads: the command made
    nothing, so the out= it created is gone again (it left run.json and lock files); an empty folder of yours given
    as out= stays, empty (x0viz left its run.json there, listing files it never wrote)."""
    student = tmp_path / "student"
    student.mkdir()
    (student / "config.json").write_text("not a network's config\n")
    (student / "diffusion_pytorch_model.safetensors").write_bytes(b"not weights")  # the preflight asks for a file
    for out, existed in ((tmp_path / "new", False), (tmp_path / "empty", True)):
        if existed:
            out.mkdir()
        code, _, err = cli(command, "model=toy", PROMPT, "n=2", f"out={out}", f"model.distilled.network.path={student}")
        assert code == 2 and "cannot be loaded" in err and err.count("error:") == 1  # (a slow preflight adds a note)
        assert out.is_dir() == existed and (not existed or list(out.iterdir()) == [])


def test_a_student_of_another_pair_is_one_line_at_load(cli, tmp_path):
    """A tiny pair's network as the toy's student: a torch shape error at the first step (a traceback, exit 1)
    after the run directory was written; it takes other latents than the toy's VAE makes."""
    from diversity_cli.models import tiny

    tiny.build_network("sd", seed=0).save_pretrained(tmp_path / "student")
    args = ("generate", "model=toy", "method=distilled", PROMPT, f"model.distilled.network.path={tmp_path / 'student'}")
    code, _, err = cli(*args, "n=1", f"out={tmp_path / 'run'}")
    assert code == 2 and len(err.strip().splitlines()) <= 2 and "Traceback" not in err, err
    assert "the distilled network takes 4 latent channels, the pair's VAE makes 8" in err  # read without the base
    assert not (tmp_path / "run").exists()
    code, _, err = cli(*args, "n=1", "method=hybrid", f"out={tmp_path / 'run'}")  # read with it: the two compared
    assert code == 2 and "the distilled network's in_channels is 4, the base's 8" in err, err
    assert not (tmp_path / "run").exists()


def test_a_misspelt_scheduler_setting_is_named_in_an_existing_run_too(cli, tmp_path):
    """In a run holding images, the kept images' settings check came first and called the typo "different
    settings ... add overwrite=true"; only a fresh out= named the misspelt key."""
    assert cli("generate", "model=toy", PROMPT, "n=1", "method=base", f"out={tmp_path}")[0] == 0
    typo = "+model.base.scheduler.overrides.timestep_spacnig=trailing"
    code, _, err = cli("generate", "model=toy", PROMPT, "n=1", "method=base", typo, f"out={tmp_path}")
    assert code == 2 and "did you mean model.base.scheduler.overrides.timestep_spacing?" in err, err


def test_overwrite_says_what_it_makes_again(cli, tmp_path):
    """overwrite=true replaced the run's images made with other settings without a word."""
    assert cli("generate", "model=toy", PROMPT, "n=2", "method=base", f"out={tmp_path}")[0] == 0
    other = ("model.base.guidance=2", "overwrite=true")
    code, _, err = cli("generate", "model=toy", PROMPT, "n=2", "method=base", *other, f"out={tmp_path}")
    assert code == 0 and "2 image(s) in" in err and "made again, 2 of them made with other settings before" in err


def test_the_summary_counts_and_times_this_commands_images_only(cli, tmp_path):
    """A second prompt into a run: its summary's seconds per image were pooled over the first prompt's images too
    ("over 5 images" after making 3); a shard's likewise over the other shard's."""
    out = tmp_path / "run"
    assert cli("generate", "model=toy", "method=distilled", "prompt=a circle", "n=2", f"out={out}")[0] == 0
    code, stdout, err = cli("generate", "model=toy", "method=distilled", "prompt=a square", "n=3", f"out={out}")
    assert code == 0, err
    shown = " ".join(stdout.split())
    assert "generate: 3 images" in shown and "s/image over its 3 images" in shown, shown


def test_one_base_guidance_is_one_spelling_in_samples_csv(cli, tmp_path):
    """base_guidance=3 then =3.0 into one run: one tag and settings, but samples.csv said "3" and "3.0"."""
    for value, n in (("3", 1), ("3.0", 2)):
        args = ("generate", "model=toy", "method=hybrid", f"base_guidance={value}", "prompt=a circle", f"n={n}")
        assert cli(*args, f"out={tmp_path / 'run'}")[0] == 0
    assert {row["base_guidance"] for row in _rows(tmp_path / "run")} == {"3.0"}


def test_a_shard_without_prompt_rows_lists_nothing_as_written(cli, tmp_path):
    code, out, err = cli("generate", "model=toy", "method=distilled", "prompt=a circle", "n=2", "shard=0/2",
                         f"out={tmp_path / 'run'}")  # fmt: skip
    assert code == 0 and "holds no prompt row" in err, err
    assert "samples-0-of-2.csv" not in out and "<tag>" not in out, out


def test_a_process_s_first_network_calls_are_untimed_and_change_no_image(cli, tmp_path, monkeypatch):
    """The first point of a sweep paid the process's warm-up in its s/image (Figure 7's cost axis). One untimed
    image is made first, once a process for a pair, and thrown away: the images are those of a warm process."""
    from diversity_cli.experiments import generation

    monkeypatch.setattr(generation, "_WARMED", set())
    made = []
    sample = generation.sample_batch
    monkeypatch.setattr(generation, "sample_batch", lambda pair, plan, prompts, *a, **k: (
        made.append(len(prompts)), sample(pair, plan, prompts, *a, **k))[1])  # fmt: skip
    args = ("generate", "model=tiny_sd", "method=base", "prompt=a dog", "n=2", "batch_size=2")
    assert cli(*args, f"out={tmp_path / 'cold'}")[0] == 0
    assert made == [1, 2]  # the warm-up image, then the timed batch
    assert cli(*args, f"out={tmp_path / 'warm'}")[0] == 0
    assert made == [1, 2, 2]  # warm: no second warm-up
    for cold in (tmp_path / "cold").rglob("*.png"):
        if "contact_sheet" not in cold.name:
            assert cold.read_bytes() == (tmp_path / "warm" / cold.relative_to(tmp_path / "cold")).read_bytes()


def test_a_pair_key_its_file_does_not_set_is_told_to_be_added_with_a_plus(cli, tmp_path):
    """model.base.network.path=/x on a hub pair offered only near keys (repo, variant): the README's way, `+`, was
    not named."""
    code, _, err = cli("generate", "model=sdxl_dmd2", "model.base.network.path=/x", f"out={tmp_path / 'run'}")
    assert code == 2 and "did you mean model.base.network.repo" in err, err
    assert "A pair reads it where set: add it with +model.base.network.path=/x" in err and len(err.splitlines()) == 1
    code, _, err = cli("generate", "ns=3", f"out={tmp_path / 'run'}")
    assert code == 2 and "add it with" not in err, err  # not a pair's key: no + advice
    # a key no part of a pair reads: offered with +, it was then refused as read by nothing
    code, _, err = cli("generate", "model=sdxl_dmd2", "model.base.nosuch=1", f"out={tmp_path / 'run'}")
    assert code == 2 and "add it with" not in err and "did you mean model.base.steps" in err, err


def test_the_toys_one_step_hybrid_is_told_and_its_note_keys_no_image(cli, tmp_path):
    """generate's defaults on the toy (hybrid, k=1, one base step) are the hand-over README's toy table shows to
    fail, and nothing said so. The pair's note is words: images made before it existed still resume."""
    args = ("generate", "model=toy", "prompt=a circle", "n=1", f"out={tmp_path}")
    code, _, err = cli(*args, "method=hybrid")
    assert code == 0 and "note: on the toy one base step at t=999 hands the student the prompt's mean image" in err
    code, _, err = cli(*args, "method=hybrid", "~model.hybrid_note")  # the pair as it was: the same images
    assert code == 0 and "nothing to do" in err and "mean image" not in err, err
    for other in ("method=hybrid base_steps=5", "method=base", "method=hybrid k=3"):  # no one-step hand-over
        code, _, err = cli(*args, *other.split())
        assert code == 0 and "mean image" not in err, (other, err)
