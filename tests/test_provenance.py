"""Provenance in every run directory: each command's invocation record (`runs/*.json`) holds its command line,
config, versions, device, dtype and, for every model, where its weights came from and their hash."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from diversity_cli.core.config import compose
from diversity_cli.core.fingerprint import files_hash, folder_hash, weight_files
from diversity_cli.models.provenance import pair_provenance

ASSETS = Path(__file__).resolve().parents[1] / "diversity_cli" / "assets" / "toy"
PROMPT = "a red circle"


def records(root: Path, command: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((root / "runs").glob(f"*-{command}-*.json"))]


def test_every_command_records_what_made_its_numbers(cli, tmp_path):
    run = tmp_path / "run"
    code, _, err = cli("generate", "model=tiny_sd", "method=hybrid", f"prompt={PROMPT}", "n=2", f"out={run}")
    assert code == 0, err
    (generate,) = records(run, "generate")
    assert generate["device"] == "cpu" and generate["dtype"] == "torch.float32"
    for role in ("base", "distilled", "components"):
        assert len(generate["models"][role]["weights_hash"]) == 16, role
    assert generate["models"]["base"]["weights_hash"] != generate["models"]["distilled"]["weights_hash"]
    for package in ("dreamsim", "torchmetrics", "torch-fidelity", "open-clip-torch", "pillow", "numpy"):
        assert package in generate["packages"]
    from diversity_cli.core.record import source_hash

    # how it ended, and the code that ran where git cannot say (an installed wheel: `not a checkout`)
    assert (generate["status"], generate["exit_code"], generate["source"]) == ("finished", 0, source_hash())

    code, _, err = cli("diversity", f"out={run}", "metric=pixel", "bootstrap=0", "device=cpu")
    assert code == 0, err
    (diversity,) = records(run, "diversity")
    assert diversity["command_line"][:2] == ["diversity-cli", "diversity"] and diversity["device"] == "cpu"
    assert diversity["config"]["metric"] in ("pixel", ["pixel"])
    assert (
        diversity["embedders"]["pixel"]["options"].startswith("pixel:")
        and "cache_fingerprint" in diversity["embedders"]["pixel"]
    )

    reference = tmp_path / "ref"
    reference.mkdir()
    for i, pixels in enumerate(np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)):
        Image.fromarray(pixels).save(reference / f"{i}.png")
    code, _, err = cli(
        "fid", f"out={run}", f"reference={reference}", "features=tiny_random", "clip_model=tiny_random",
        f"cache_dir={tmp_path / 'cache'}",
    )  # fmt: skip
    assert code == 0, err
    (fid,) = records(run, "fid")
    assert fid["preparation"]["id"].startswith("pil_bicubic@") and fid["features"]["network"].startswith("tiny_random")
    assert fid["device"] == "cpu" and list(fid["references"].values())[0]["images"]  # the reference's bytes

    x0 = tmp_path / "x0"
    code, _, err = cli("x0viz", "model=tiny_sd", f"prompt={PROMPT}", "n=2", "metric=pixel", f"out={x0}")
    assert code == 0, err
    (x0viz,) = records(x0, "x0viz")
    assert x0viz["models"] == generate["models"] and x0viz["metric"]["name"] == "pixel"

    code, _, err = cli("report", f"out={run}", f"tables_dir={tmp_path / 'tables'}")
    assert code == 0, err
    assert records(run, "report") and records(tmp_path / "tables", "report")
    page = (run / "report.html").read_text()
    assert "<details id='provenance'>" in page
    for line in (generate, diversity, fid):  # each command's record, its command line and weights, in the page
        assert " ".join(line["command_line"]) in page.replace("&#x27;", "'")
    assert generate["models"]["base"]["weights_hash"] in page
    assert "href='#provenance'" in page  # the tables' footnote links it
    assert "Provenance: [" in (tmp_path / "tables" / "table_3.md").read_text()


@pytest.mark.parametrize(("ending", "status", "code"), [("sigint", "interrupted", 130), ("refusal", "failed", 2)])
def test_a_record_says_whether_its_command_finished(cli, tmp_path, monkeypatch, ending, status, code):
    """A generate cut short by Ctrl-C, or stopped by an error after it had begun writing, left a record with the
    same fields as a finished one's."""
    import os
    import signal
    import time

    import diversity_cli.commands.generate as command
    from diversity_cli.core.errors import UserError
    from diversity_cli.core.record import record_invocation

    def stopped(cfg):
        record_invocation(cfg.out, config=cfg)
        if ending == "sigint":
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        raise UserError("the disk is full")

    monkeypatch.setattr(command, "run", stopped)
    run = tmp_path / "run"
    assert cli("generate", "model=tiny_sd", f"prompt={PROMPT}", "n=2", f"out={run}")[0] == code
    (record,) = records(run, "generate")
    assert (record["status"], record["exit_code"]) == (status, code) and record["ended"] >= record["started"]


def test_ablate_records_its_sweep(cli, tmp_path):
    out = tmp_path / "sweep"
    code, _, err = cli(
        "ablate", "model=tiny_sd", f"prompt={PROMPT}", "k=1", "n=2", "metric=pixel", "plots=false", f"out={out}"
    )
    assert code == 0, err
    (ablate,) = records(out, "ablate")
    assert "hybrid_k1" in ablate["points"] and ablate["config"]["model"]["name"] == "tiny_sd"


def test_a_local_pair_records_its_paths_and_file_hashes():
    record = pair_provenance(compose("generate", ["model=toy"]).model)
    assert record["base"]["path"] == str((ASSETS / "base" / "unet").resolve())
    assert record["base"]["weights_hash"] == folder_hash(ASSETS / "base" / "unet")
    assert record["distilled"]["weights_hash"] == folder_hash(ASSETS / "dmd_student")
    # the pipeline folder without its unet/: that is the base's role, so retraining the base in place leaves the
    # components (and a distilled image's weights) unchanged
    parts = [p for p in weight_files(ASSETS / "base") if p.relative_to(ASSETS / "base").parts[0] != "unet"]
    assert record["components"]["weights_hash"] == files_hash(parts, root=ASSETS / "base")
    assert record["components"]["weights_hash"] != folder_hash(ASSETS / "base")


def _snapshot(cache: Path, repo: str, revision: str, files: dict[str, bytes]) -> Path:
    """A Hugging Face cache entry as `hf download` leaves it (refs/main -> snapshots/<revision>/...)."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(revision)
    snapshot = root / "snapshots" / revision
    for name, data in files.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_bytes(data)
    return snapshot


def test_hub_models_record_hub_id_revision_and_the_loaded_files_hash(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    pipe = _snapshot(
        cache, "org/pipe", "a" * 40,
        {"model_index.json": b"{}", "unet/config.json": b"{}", "unet/diffusion_pytorch_model.fp16.safetensors": b"u16",
         "unet/diffusion_pytorch_model.safetensors": b"u32", "vae/config.json": b"{}",
         "vae/diffusion_pytorch_model.fp16.safetensors": b"v16", "sd_xl_base_1.0.safetensors": b"single file"},
    )  # fmt: skip
    student = _snapshot(cache, "org/student", "b" * 40, {"student.safetensors": b"dmd"})
    model = OmegaConf.create(
        {
            "family": "sdxl",
            "components": {"repo": "org/pipe", "variant": "fp16"},
            "base": {"network": {"repo": "org/pipe", "subfolder": "unet", "variant": "fp16"}},
            "distilled": {
                "network": {"repo": "org/student", "file": "student.safetensors", "config_repo": "org/pipe",
                            "config_subfolder": "unet"},
            },
        }
    )  # fmt: skip
    record = pair_provenance(model)
    base = record["base"]
    assert (base["hub_id"], base["subfolder"], base["revision"]) == ("org/pipe", "unet", "a" * 40)
    loaded = [pipe / "unet" / "diffusion_pytorch_model.fp16.safetensors"]  # the fp16 variant only
    assert base["weights_hash"] == files_hash(loaded, root=pipe / "unet")
    distilled = record["distilled"]
    assert (distilled["hub_id"], distilled["revision"]) == ("org/student", "b" * 40)
    assert distilled["weights_hash"] == folder_hash(student / "student.safetensors")
    assert distilled["architecture"] == {"hub_id": "org/pipe", "revision": "a" * 40}
    components = record["components"]  # the VAE, not the UNet it replaces nor the single-file checkpoint
    assert components["weights_hash"] == files_hash([pipe / "vae" / "diffusion_pytorch_model.fp16.safetensors"], pipe)
    (student / "student.safetensors").write_bytes(b"retrained")  # new weights, same name: a new hash
    assert pair_provenance(model)["distilled"]["weights_hash"] != distilled["weights_hash"]
    # a LoRA student (Qwen-Image-Lightning): one file on the base's architecture, no config_repo of its own
    model.distilled.network = {"repo": "org/student", "file": "student.safetensors", "lora": True}
    lora = pair_provenance(model)["distilled"]
    assert lora["weights_hash"] == folder_hash(student / "student.safetensors") and lora["lora"] is True


@pytest.mark.parametrize("command", ["diversity", "fid"])
def test_bad_input_writes_no_record(cli, tmp_path, command):
    code, _, err = cli(command, f"out={tmp_path / 'nothing'}")
    assert code == 2 and not (tmp_path / "nothing").exists()


def test_distill_records_its_teacher(cli, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\na blue square\n")
    out = tmp_path / "student"
    args = (
        "model=tiny_sd",
        f"prompts={prompts}",
        "iterations=1",
        "batch_size=1",
        "fake_updates_per_generator_update=2",
    )
    code, _, err = cli("distill", *args, f"out={out}")
    assert code == 0, err
    (distill,) = records(out, "distill")
    assert set(distill["models"]) == {"base", "components"}  # the pair's own student is not loaded to train one
    assert distill["dtype"] == "torch.float32" and distill["mixed_precision"] == "no" and distill["device"] == "cpu"


def test_versions_json_and_the_record_name_one_commit_and_one_torch(cli, tmp_path, monkeypatch):
    """versions.json said the bare commit of a checkout with changes, where the record said `<commit>-dirty`, and
    torch as 2.14.1 in one and 2.14.1+cu130 in the other."""
    import subprocess
    import sys

    real = subprocess.run

    def git(args, *rest, **kwargs):  # a checkout at commit abc with a changed file
        if args[:2] == ["git", "rev-parse"]:
            return subprocess.CompletedProcess(args, 0, "abc\n", "")
        if args[:2] == ["git", "status"]:
            return subprocess.CompletedProcess(args, 0, " M diversity_cli/cli.py\n", "")
        return real(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "run", git)
    out = tmp_path / "run"
    assert cli("generate", "method=base", f"prompt={PROMPT}", "n=1", f"out={out}")[0] == 0
    (record,) = records(out, "generate")
    saved = json.loads((out / "versions.json").read_text())["toy_base"]
    assert record["git_commit"] == saved["git_commit"] == "abc-dirty"
    assert record["packages"]["torch"] == saved["torch"] == sys.modules["torch"].__version__


@pytest.mark.parametrize(("ending", "status", "code"), [("done", "finished", 0), ("refusal", "failed", 2)])
def test_a_shard_a_launcher_runs_records_how_it_ended(tmp_path, ending, status, code):
    """A shard run by a launcher (submitit_local, SLURM) opened its record and never closed it: no ended, status or
    exit code, where the command line's own records have them."""
    from diversity_cli.core.errors import UserError
    from diversity_cli.core.record import record_invocation
    from diversity_cli.experiments.launch import ShardJob
    from diversity_cli.experiments.shards import Shard

    def run(cfg):
        record_invocation(cfg.out, config=cfg)
        if ending == "refusal":
            raise UserError("the disk is full")

    job = ShardJob(run, compose("generate", [f"out={tmp_path / 'run'}"]), Shard(1, 2), command="generate")
    if ending == "refusal":
        with pytest.raises(UserError):
            job()
    else:
        assert job() == "1/2"
    (record,) = records(tmp_path / "run", "generate")
    assert record["command_line"][-1] == "shard=1/2" and (record["status"], record["exit_code"]) == (status, code)


def test_the_source_hash_covers_the_shipped_configs(tmp_path, monkeypatch):
    """It hashed the Python files alone: a preset's steps or guidance edited in place left it unchanged."""
    import shutil

    from diversity_cli.core import record, resources

    conf = tmp_path / "conf"
    shutil.copytree(resources.conf_root(), conf)
    monkeypatch.setattr(resources, "conf_root", lambda: conf)
    record.source_hash.cache_clear()  # read once a process
    before = record.source_hash()
    preset = conf / "pair_preset" / "sdxl_dmd2" / "paper.yaml"
    preset.write_text(preset.read_text() + "\n# steps edited\n")
    record.source_hash.cache_clear()
    assert record.source_hash() != before
    record.source_hash.cache_clear()  # the shipped configs again, for what runs next


def test_a_finished_distill_records_its_student_as_generate_will(cli, tmp_path):
    """The distill run hashed the teacher it loaded, not the student it wrote: a later generate's distilled
    weights_hash named no run that made it."""
    from diversity_cli.core.config import compose
    from diversity_cli.models.provenance import pair_provenance

    out = tmp_path / "student"
    args = ("model=toy", "prompt=a red circle", "iterations=1", "batch_size=1", "fake_updates_per_generator_update=1")
    code, _, err = cli("distill", *args, f"out={out}")
    assert code == 0, err
    student = json.loads((out / "run.json").read_text())["distill"]["student"]
    model = compose("generate", ["model=toy", f"model.distilled.network.path={out / 'student'}"]).model
    assert student == pair_provenance(model, roles=("distilled",))["distilled"]
    assert student["weights_hash"]


def test_a_record_of_a_command_killed_outright_says_it_never_ended(cli, tmp_path, monkeypatch):
    """kill -9 runs no `finish`: the record held no status at all, so a report could not tell it from one whose
    fields were lost; it now says "running" from its start, with the process to look for, and the report says it."""
    import diversity_cli.commands.generate as command
    from diversity_cli.core import record as record_module
    from diversity_cli.core.errors import UserError
    from diversity_cli.reporting.report import _record_html

    def killed(cfg):
        record_module.record_invocation(cfg.out, config=cfg)
        raise UserError("killed")  # and, as kill -9 does, no `finish` after it (below)

    monkeypatch.setattr(command, "run", killed)
    monkeypatch.setattr(record_module, "finish", lambda code: None)
    run = tmp_path / "run"
    cli("generate", "model=tiny_sd", f"prompt={PROMPT}", "n=1", f"out={run}")
    (record,) = records(run, "generate")
    assert record["status"] == "running" and isinstance(record["pid"], int) and "ended" not in record, record
    # on this host: whether its process still runs (here it does: this test's own process)
    assert "its process (pid" in _record_html({**record, "_file": "x"}) and "still runs" in _record_html(record)
    import subprocess
    import sys

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = {**record, "pid": int(ended.stdout)}
    assert "no longer runs: killed outright" in _record_html(gone), _record_html(gone)
    assert "still running, or killed outright" in _record_html({**record, "host": "another-node"})
    # library code called outside the CLI has no end to record: it is not said to be running
    monkeypatch.setattr(record_module, "_current", None)  # the generate above was never closed (its finish patched)
    record_module.record_invocation(tmp_path / "lib", note="a notebook")
    (library,) = records(tmp_path / "lib", "library")
    assert library["status"] == "library" and "library code called outside the CLI" in _record_html(library)
    older = {**library, "status": "running"}  # as the version before wrote it: not "killed outright"
    assert "library code called outside the CLI" in _record_html(older), _record_html(older)
