"""What the CLI says and writes at the edges of its input, through the CLI: a plain folder's diversity row beside a
run's own, a report with nothing to report, a paper file that is missing or empty, and values echoed as typed.
Each refusal is one line on stderr starting `error: `, exit 2, and nothing written; a report with nothing to report
says so in one note and writes nothing.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SAMPLES = ["method", "model", "prompt", "seed", "k", "steps", "nfe", "seconds", "path", "tag", "settings"]


def _images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"{i:06d}.png"
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _run(root: Path, tag: str = "hybrid_k1", prompt: str = "a circle") -> Path:
    """A run directory as generate leaves it, for what diversity and report read: images and their samples.csv."""
    paths = _images(root / "toy" / tag / "p", 3)
    with (root / "samples.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SAMPLES)
        writer.writeheader()
        for seed, path in enumerate(paths):
            method = tag.partition("_")[0]
            writer.writerow({"method": method, "model": "toy", "prompt": prompt, "seed": seed, "k": 1, "steps": 4,
                             "nfe": 4, "seconds": 0.05, "path": str(path.relative_to(root)), "tag": tag,
                             "settings": ""})  # fmt: skip
    return root


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _refused(cli, where: Path, *args: str) -> str:
    """One line on stderr starting `error: `, exit 2, and nothing written under `where`."""
    before = sorted(where.rglob("*"))
    code, out, err = cli(*args)
    assert code == 2, (out, err)
    assert err.startswith("error: ") and err.strip().count("\n") == 0, err
    assert "Traceback" not in out + err
    assert sorted(where.rglob("*")) == before, "a refused command wrote files"
    return err.strip()


# ------------------------------------------------------------------------------- a folder's row in a run's CSV


def test_a_folder_scored_into_a_run_directory_is_no_method_of_the_run(cli, tmp_path: Path):
    """A folder named like one of the run's method tags (hybrid_k1) got the row `hybrid_k1,,`: the report then
    filled the run's Hybrid row with the folder's number. Its row names it as the images= folder it is."""
    run = _run(tmp_path / "run")
    folder = tmp_path / "hybrid_k1"
    _images(folder, 3, seed=1)
    settings = ("metric=pixel", "bootstrap=0", "quality=none")
    code, _, err = cli("diversity", f"out={run}", *settings)
    assert code == 0, err
    code, _, err = cli("diversity", f"images={folder}", f"out={run}", "prompt=a circle", *settings)
    assert code == 0, err
    rows = _rows(run / "diversity.csv")
    assert [(r["method"], r["model"], r["prompt"]) for r in rows] == [
        ("hybrid_k1", "toy", "a circle"),
        ("images=hybrid_k1", "", "a circle"),
    ]
    assert len({r["value"] for r in rows}) == 2  # other images: the run's row was not replaced by the folder's

    code, _, err = cli("report", f"out={run}", "tables=[3]", "html=false", "figures=false")
    assert code == 0, err
    measured = [r for r in _rows(run / "tables" / "table_3.csv") if r["measured"]]
    assert measured and {(r["method"], r["model"]) for r in measured} == {("Hybrid", "toy")}, measured
    assert {float(r["measured"]) for r in measured} == {float(rows[0]["value"])}  # the run's, not the folder's


def test_a_folder_scored_into_a_plain_out_is_named_as_a_folder_too(cli, tmp_path: Path):
    """Named `distilled` in an out= of its own, a folder's row was `distilled`: the report read it as the distilled
    model's, whatever images the folder held."""
    folder = tmp_path / "distilled"
    _images(folder, 3)
    code, _, err = cli("diversity", f"images={folder}", f"out={tmp_path / 'scores'}", "metric=pixel", "bootstrap=0")
    assert code == 0, err
    assert [r["method"] for r in _rows(tmp_path / "scores" / "diversity.csv")] == ["images=distilled"]


# ------------------------------------------------------------------------------------ nothing to report


@pytest.mark.parametrize(
    "args",
    [
        ("tables=[3]", "html=false", "figures=false"),
        ("tables=none", "html=false"),
        ("html=false",),
    ],
)
def test_a_report_with_nothing_to_report_writes_nothing(cli, tmp_path: Path, args: tuple[str, ...]):
    """A run with images but no measurement, and no page asked for: it left <out>/tables/ holding only run.json and
    its record. Not an error (the run holds results, none of what was asked for): one note, nothing written."""
    run = _run(tmp_path / "run")
    before = sorted(tmp_path.rglob("*"))
    code, out, err = cli("report", f"out={run}", *args)
    assert code == 0, err
    assert sorted(tmp_path.rglob("*")) == before, "a report with nothing to report wrote files"
    (line,) = [line for line in err.splitlines() if "nothing to report" in line]
    assert line.startswith(f"note: nothing to report in {run}: ") and line.endswith("; nothing written"), err
    assert "Traceback" not in out + err


def test_a_report_of_pages_only_makes_no_tables_folder(cli, tmp_path: Path):
    """No table has a measurement, but report.html is asked for: the page is written, and no tables folder that
    would hold nothing but the report's own record."""
    run = _run(tmp_path / "run")
    code, out, err = cli("report", f"out={run}", "tables=[3]", "figures=false")
    assert code == 0, err
    assert (run / "report.html").is_file()
    assert not (run / "tables").exists()
    assert "table 3: no measurement in these runs (not written)" in out


# ------------------------------------------------------------------------------------------- paper=


@pytest.mark.parametrize(
    ("make", "said"),
    [
        ("missing", "not found"),
        ("empty", "the file is empty (0 bytes)"),
        ("header", "the file has a header but no rows"),
        ("folder", "a folder, not a CSV file"),
    ],
)
def test_paper_says_whether_it_is_missing_or_empty(cli, tmp_path: Path, make: str, said: str):
    run = _run(tmp_path / "run")
    paper = tmp_path / "paper.csv"
    if make == "empty":
        paper.write_text("")
    elif make == "header":
        paper.write_text("table,method,condition,metric,value\n")
    elif make == "folder":
        paper.mkdir()
    err = _refused(cli, tmp_path, "report", f"out={run}", f"paper={paper}", "html=false")
    assert err == f"error: paper={paper}: {said}; it ships as data/paper_tables.csv", err
    assert "not found or empty" not in err


# ------------------------------------------------------------------------------------- values as typed


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("generate", "model=toy", "prompt=a circle", "n=1e3"), "error: n=1e3: n is an integer >= 1"),
        (("generate", "model=toy", "prompt=a circle", "n=TRUE"), "error: n=TRUE: n is an integer >= 1"),
        (("diversity", "bootstrap=1e2"), "error: bootstrap=1e2: bootstrap is an integer from 0 to 1000000"),
        (("diversity", "min_n=2e0"), "error: min_n=2e0: min_n is an integer >= 2"),
        (("report", "grid.thumb=1e2"), "error: grid.thumb=1e2: grid.thumb is an integer from 8 to 1024"),
        (("diversity", "ci=5e0"), "error: ci=5e0 is out of range: ci is a number > 0 and < 1"),
    ],
)
def test_a_bad_value_is_echoed_as_typed(cli, tmp_path: Path, monkeypatch, args: tuple[str, ...], said: str):
    """Hydra reads 1e3 as the float 1000.0: the line said `n=1000.0`, a value the user never typed."""
    monkeypatch.chdir(tmp_path)
    assert _refused(cli, tmp_path, *args, "out=run") == said


def test_a_flag_that_also_takes_auto_names_it(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("transfer-lora", "classifier=maybe", "out=run")
    assert (
        code == 2 and err.strip() == "error: classifier=maybe: classifier is true, false or auto (also yes/no, on/off)"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("transfer-lora", "foo=1"), "unknown key 'foo' for 'transfer-lora'"),  # the command, not its config file
        (("train-lora", "+foo=1"), "+foo adds a key no part of 'train-lora' reads"),
        (("generate", "prompt=a", "square"), "'square' is no key=value; a value with spaces is quoted whole"),
        (("generate", "n=[1"), "a list is [a,b] with its brackets closed"),
        (("generate", "=3"), "'=3' names no key: write key=value"),  # was "unknown  '3'; choose one of" configs
        # taken for a folder, told after the Inception weights and the CLIP model it then asked for
        (("fid", "reference=toi"), "reference=toi is neither toy nor coco nor a folder here; did you mean toy?"),
        # ablate's fid settings, checked as fid's are and named by the keys ablate takes
        (("ablate", "k=1..2", "fid=true", "measure.fid.reference=toi"), "error: measure.fid.reference=toi is neither"),
        (("ablate", "k=1..2", "fid=true", "measure.fid.features=incepton"), "; did you mean inception?"),
        (("x0viz", "max_images=0"), "max_images=0 is out of range: max_images is an integer >= 1"),  # not n's cap
        (("x0viz", "prompt=a", "limit=2"), "limit=2 takes the first rows of a prompt file (prompts=FILE)"),
    ],
)
def test_a_command_line_that_cannot_be_read_names_the_command_and_what_to_write(cli, args, said):
    code, _, err = cli(*args)
    assert code == 2 and err.count("\n") == 1 and said in err, err


@pytest.mark.parametrize(
    ("args", "advice"),
    [
        (("diversity", "out=run", "metric=clip"), "ViT-B-32: embedders.clip.pretrained=<file"),
        (("ablate", "k=1..2", "metric=clip"), "ViT-B-32: measure.diversity.embedders.clip.pretrained=<file"),
        (("x0viz", "metric=clip"), "ViT-B-32: this command measures with clip's shipped settings"),
        (("generate", "method=hybrid", "k=auto", "auto_k.metric=clip"), "ViT-B-32: this command measures with"),
    ],
)
def test_missing_metric_weights_advise_keys_the_command_takes(cli, tmp_path, monkeypatch, args, advice):
    """The advice named embedders.clip.pretrained= to x0viz, which refuses that key, and to ablate, which takes it
    under measure.diversity; and the model as '' ("clip needs weights for :")."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run").mkdir()
    code, _, err = cli(*args)
    assert code == 2 and advice in err, err
    if args[0] in ("x0viz", "generate"):
        assert "embedders.clip" not in err.replace("(its embedders.clip.pretrained=)", "")


def test_missing_dreamsim_weights_tell_x0viz_where_it_looks(cli, tmp_path, monkeypatch):
    """x0viz takes no embedders.* key, and its advice gave none: the weights' folder follows HF_HOME, unsaid.
    The offline note stood after the last item, as if that item's alone."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    code, _, err = cli("x0viz", "model=sdxl_dmd2", "metric=dreamsim")
    assert code == 2 and f"dreamsim 'ensemble' weights in {tmp_path / 'hf' / 'dreamsim'}" in err, err
    assert "with network, or HF_HOME=<folder holding dreamsim/>" in err
    assert err.startswith(  # the pair's items one a line: the error's one line held 1090 characters
        "error: x0viz cannot start, 5 missing (`diversity-cli models sdxl_dmd2` lists the pair's one a line; "
        "HF_HUB_OFFLINE=0 lets the loaders download those"
    ), err


def test_the_listing_a_missing_files_error_names_is_of_the_preset_asked_for(cli, tmp_path, monkeypatch):
    """It named `models sdxl_turbo` (the paper preset's files) for preset=card, and the pair as its file has it where
    a local copy was given; working out the typed settings refused the one-step card schedule's k=1 (method=base)."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    args = ("generate", "model=sdxl_turbo", "method=base", f"out={tmp_path / 'run'}")
    code, _, err = cli(*args, "preset=card")
    assert code == 2 and "(`diversity-cli models sdxl_turbo preset=card` lists the pair's one a line;" in err, err
    code, _, err = cli(*args, f"+model.base.network.path={tmp_path}")
    assert code == 2 and "diversity-cli models" not in err, err  # `models` reads the pair's file, not this folder
    code, _, err = cli(*args, "model.base.guidance=5")  # moves no file: the listing still holds
    assert code == 2 and "(`diversity-cli models sdxl_turbo` lists the pair's one a line;" in err, err


@pytest.mark.parametrize("damage", ["empty", "cut", "another_network"])
def test_a_damaged_inception_file_is_one_line(cli, tmp_path, damage):
    """An empty file read as an interruption (click turns the reader's EOFError into an abort, exit 130); a file
    cut short or of another network was a traceback."""
    import torch
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        Image.new("RGB", (16, 16), (i * 90, 20, 20)).save(images / f"{i}.png")
    weights = tmp_path / "pt_inception.pth"
    torch.save({"conv.weight": torch.zeros(3, 3)}, weights)
    if damage == "empty":
        weights.write_bytes(b"")
    elif damage == "cut":
        weights.write_bytes(weights.read_bytes()[:200])
    out = tmp_path / "fid"
    code, _, err = cli("fid", f"images={images}", f"reference={images}", f"inception_weights={weights}", f"out={out}")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"inception_weights {weights} cannot be read as the FID Inception" in err
    assert not out.exists()


def test_a_file_ending_early_elsewhere_is_no_interruption(cli, tmp_path, monkeypatch):
    """click reads any EOFError as an abort: one raised by a reader (an empty file) said 'interrupted', exit 130."""
    import diversity_cli.experiments.diversity as command

    def empty_file(*_args, **_kwargs):
        raise EOFError("Ran out of input")

    monkeypatch.setattr(command, "measure_diversity", empty_file)  # read by the command when it runs
    code, _, err = cli("diversity", "images=" + str(_two_images(tmp_path)), f"out={tmp_path / 'd'}")
    assert code == 2 and err.strip().startswith("error: a file ended before its end (Ran out of input)"), err


def _two_images(tmp_path):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        Image.new("RGB", (16, 16), (i * 90, 20, 20)).save(images / f"{i}.png")
    return images


def test_a_bad_sweep_or_empty_folder_is_told_before_missing_weights(cli, tmp_path):
    """ablate's k out of a real pair's schedule, and fid's empty images= folder, were told only once every missing
    checkpoint (DMD2, the Inception) had been fetched."""
    code, _, err = cli("ablate", "model=sdxl_dmd2", "k=1..5", "n=2", f"out={tmp_path / 'sweep'}")
    assert code == 2 and "k=5 is out of range for sdxl_dmd2" in err and "missing" not in err, err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = cli("fid", f"images={empty}", "reference=coco", "coco.images=null", f"out={tmp_path / 'fid'}")
    assert code == 2 and f"images={empty} holds 0 image(s)" in err and "missing" not in err, err
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "fid").exists()


def test_a_gated_checkpoint_says_how_to_get_access(cli, tmp_path):
    """`hf download black-forest-labs/FLUX.1-dev` fails without an accepted licence, with an error that says not."""
    code, _, err = cli("generate", "model=flux1_dev_schnell", "n=1", f"out={tmp_path / 'run'}")
    assert code == 2 and "FLUX.1-dev` (a gated repository: accept its licence" in err, err
    assert "FLUX.1-schnell` (a gated" not in err  # open: nothing to accept


def test_a_clip_model_that_is_no_folder_and_no_hub_id_is_one_line(cli, tmp_path):
    """clip_model= given a path that does not exist (or a name no hub id can be) was huggingface_hub's validation
    traceback, exit 1."""
    adapter = tmp_path / "adapter"
    assert cli("train-lora", "concept=red", "model=tiny_sd", "steps=5", "images=16", f"out={adapter}")[0] == 0
    out = tmp_path / "run"
    for clip in ("/nonexistent/clip", "./myclip", "a b"):
        args = ("transfer-lora", "model=tiny_sd", f"adapter={adapter}", "prompt=a cat", "n=2", f"clip_model={clip}")
        code, _, err = cli(*args, f"out={out}")
        assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert f"CLIP model {'folder ' if clip != 'a b' else ''}{clip}" in err and not out.exists(), err


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("sdxl", "; did you mean sdxl_dmd2, sdxl_lcm, sdxl_lightning or sdxl_turbo?"),  # was sdxl_lcm alone
        ("TOY", "; did you mean toy?"),  # was nothing: case counted
        ("toi", "; did you mean toy?"),
        ("zzz", ""),
    ],
)
def test_a_did_you_mean_offers_every_name_a_prefix_begins_and_ignores_case(typed, said):
    from diversity_cli.core.config import available
    from diversity_cli.core.errors import did_you_mean

    assert did_you_mean(typed, available("model")) == said


def test_a_misspelt_vendi_metric_is_offered_its_vendi_name(cli, tmp_path):
    """metric=vendi_dreamsym was offered dreamsim, another metric."""
    code, _, err = cli("diversity", f"images={tmp_path}", "metric=vendi_dreamsym", f"out={tmp_path / 'd'}")
    assert code == 2 and "unknown metric 'vendi_dreamsym'; did you mean vendi_dreamsim? choose from:" in err, err


@pytest.mark.parametrize(
    "args",
    [
        ("x0viz", "model=toy", "prompt=a circle", "metric=vendi"),  # a diversity metric, not an embedder
        ("generate", "model=toy", "prompt=a circle", "k=auto", "auto_k.metric=vendi"),
    ],
)
def test_an_x0_metric_that_is_no_embedder_is_refused_before_the_preflight(cli, tmp_path, monkeypatch, args):
    """x0viz metric=vendi asked for DreamSim's weights (vendi's embedder, to a diversity run) and was refused only
    once they were there."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty"))  # no DreamSim weights: the preflight would name them
    code, _, err = cli(*args, f"out={tmp_path / 'run'}")
    assert code == 2 and "unknown metric 'vendi'; choose one of: auto, dreamsim" in err, err
    assert "missing" not in err and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("generate", "model=sdxl_dmd2", "prompts=data/toy_prompts.txt", "n=30000"), "above the cap max_images="),
        (("x0viz", "model=sdxl_dmd2", "prompts=data/toy_prompts.txt", "n=9000", "max_images=10000"), "above the cap"),
        (("generate", "model=tiny_sd"), "no prompt given"),
        (("x0viz", "model=tiny_sd"), "no prompt given"),
        # distill's settings: told after the preflight had run
        (("distill", "prompt=a shape", "distill=dp_dmd", "anchor_k=9"), "anchor_k=9 is out of range"),
        (("distill", "prompt=a shape", "t_range=[0.9,0.1]"), "must be [low, high] with 0 <= low < high <= 1"),
    ],
)
def test_input_that_cannot_run_is_told_before_the_preflight(cli, tmp_path, monkeypatch, args, said):
    """No prompt at all, or more images than max_images (or a distill setting out of range), was told only after
    the preflight had listed every missing checkpoint (a real pair) or made the pair's schedulers (a tiny one)."""
    from diversity_cli.commands import checks

    def refused(*_):
        raise AssertionError("the preflight ran before the input was checked")

    monkeypatch.setattr(checks, "needed", refused)
    monkeypatch.setattr(checks, "schedules_set", refused)
    code, _, err = cli(*args, f"out={tmp_path / 'run'}")
    assert code == 2 and said in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def test_a_mistyped_relative_adapter_path_is_told_as_a_path_not_a_download(cli, tmp_path, monkeypatch):
    """`adapter=results/lora_rde` read as a hub repo id: "not in the local cache ... run `hf download
    results/lora_rde`", for a folder misspelt beside results/lora_red."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results" / "lora_red").mkdir(parents=True)
    args = ("transfer-lora", "model=toy", "prompt=a shape", "n=2", "out=results/run")
    code, _, err = cli(*args, "adapter=results/lora_rde")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "adapter=results/lora_rde: no such file or folder in results/; did you mean lora_red?" in err, err
    assert "hf download" not in err and not (tmp_path / "results" / "run").exists()
    # the same mistake spelt as a path, or the file's name misspelt: the names beside it too
    for spec, near in (
        ("./results/lora_rde", "lora_red"),
        (f"{tmp_path}/results/lora_rde", "lora_red"),
        ("results/lora_red/adapter.jsn", "adapter.json"),
    ):
        (tmp_path / "results" / "lora_red" / "adapter.json").write_text("{}")
        code, _, err = cli(*args, f"adapter={spec}")
        assert code == 2 and f"adapter={spec}: no such file or folder in " in err and f"did you mean {near}?" in err
    code, _, err = cli(*args, "adapter=someone/lora")  # no folder `someone` here: a hub id, as before
    assert code == 2 and "hf download someone/lora" in err, err


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("train-lora", "concept=rde"), "concept=rde is not a value of a toy factor; did you mean red?"),
        (("train-lora", "concept=color=circle"), "'circle' is no color value ('circle' is a shape value); color: red"),
        (("train-lora", "concept=colour=red"), "'colour' is no toy factor; did you mean color?"),
        (("train-lora", "concept=red", "mode=slider", "negative=blu"), "negative=blu is not a value of a toy factor; "),
        (("transfer-lora", "adapter=ADAPTER", "classifier_target=color=purpel"), "did you mean purple? color: red,"),
        (("transfer-lora", "adapter=ADAPTER", "classifier_target=purple"), "e.g. classifier_target=color=purple"),
        (("train-lora", "concept=red="), "concept=red=: 'red' is a color value, not a factor; give concept=color=red"),
        (("train-lora", "concept=circle=red"), "'circle' is a shape value, not a factor; give concept=color=red"),
    ],
)
def test_a_toy_factor_value_mistyped_is_named_with_what_it_may_be(cli, tmp_path, args, said):
    """concept=rde listed every value with no did-you-mean, concept=color=circle said circle was no toy value at
    all, and classifier_target=color=purpel said only "use factor=value with a toy factor value"."""
    if args[0] == "transfer-lora":
        adapter = tmp_path / "adapter"
        assert cli("train-lora", "concept=red", "steps=1", "images=4", f"out={adapter}")[0] == 0
        args = (*(arg.replace("ADAPTER", str(adapter)) for arg in args), "prompt=a shape")
    code, _, err = cli(*args, f"out={tmp_path / 'run'}")
    assert code == 2 and said in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def test_a_misspelt_name_in_an_adapters_table_names_its_line(cli, tmp_path):
    """A row's name not in the table's folder was told as `adapter=<folder>/<name>` (a hub id to download, when
    relative), with no table line."""
    (tmp_path / "lora_red").mkdir()
    table = tmp_path / "table.csv"
    table.write_text("name,concept,prompt,scale\nlora_rde,red,a shape,1\n")
    code, _, err = cli("transfer-lora", f"adapters={table}", "n=1", f"out={tmp_path / 'run'}")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"adapters={table} line 2: adapter lora_rde: no file or folder " in err and "did you mean lora_red?" in err
    assert not (tmp_path / "run").exists()


def test_bad_input_told_after_a_slow_preflight_is_one_line_and_the_summary_names_its_seconds(
    cli, tmp_path: Path, monkeypatch
):
    """A preflight over 2 s printed `note: the preflight took N s` on stderr before the error of a value checked
    after it (train-lora's target_modules): two lines. Its seconds go in the summary's title."""
    import itertools

    from diversity_cli.commands import checks

    ticks = itertools.count(step=3.0)
    monkeypatch.setattr(checks.time, "perf_counter", lambda: next(ticks))
    code, _, err = cli("train-lora", "target_modules=[to_z]", f"out={tmp_path / 'lora'}")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "to_z names no layer" in err, err
    code, stdout, err = cli("train-lora", "steps=1", "images=4", "batch_size=4", f"out={tmp_path / 'lora'}")
    assert code == 0 and "; the preflight took 3.0 s of it" in stdout and "preflight" not in err, stdout + err
