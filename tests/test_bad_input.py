"""Bad input never gets a traceback, a hang or silent acceptance: one line on stderr, exit 2, nothing written.

Two suites. Generated from the schemas (core/schemas/): every key of every command with a wrong type and an
out-of-range value, checked by the same code compose runs, and a sample of them (each kind of key of each command)
through the CLI. Then every bad-input case found on main before the typed configs, through the CLI. All of it is
refused while the config is composed or the prompts are read, before any model loads.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from diversity_cli.commands import COMMANDS
from diversity_cli.core.config import compose
from diversity_cli.core.errors import UserError
from diversity_cli.core.schema import Rule, check, escape, literal_keys, rules
from diversity_cli.core.schemas import SCHEMAS

CLI_NAME = {command.config: command.name for command in COMMANDS}
FILE = "<an existing file>"
# Settings that keep a command cheap should a bad value ever be accepted (the test then fails, quickly).
BASE = {
    "generate": ["model=tiny_sd", "method=distilled", "n=1"],
    "x0viz": ["model=tiny_sd", "n=1"],
    "transfer_lora": ["model=tiny_sd", "n=1"],
    "train_lora": ["model=tiny_sd", "steps=1", "images=2", "batch_size=2"],
    "distill": ["model=tiny_sd", "iterations=1", "distill=dp_dmd"],  # dp_dmd: every key of both methods
    "ablate": ["model=tiny_sd", "n=2", "prompt=a red circle", "baselines=false"],
}


def bad_values(rule: Rule) -> list[tuple[str, str]]:
    """(what is wrong, the value as typed) for a key of this rule: a wrong type, and a value out of its range."""
    kind = rule.kind
    if kind == "flag":
        return [("type", "maybe"), ("range", "2")]
    if kind == "int":
        edge = str(int(rule.low) - 1) if rule.low is not None else str(int(rule.high) + 1)
        cases = [("type", "true"), ("range", edge)]
        return cases + ([("cap", "1000000000000")] if rule.cap else [])
    if kind == "float":
        if rule.low is not None:
            edge = rule.low if rule.low_open else rule.low - 1
        else:
            edge = rule.high if rule.high_open else rule.high + 1
        return [("type", "abc"), ("range", f"{edge:g}")]
    if kind == "choice":
        return [("type", "[a]"), ("range", "bogus")]
    if kind in ("text", "spec"):
        return [("range", "")]
    if kind in ("name", "path"):
        return [("type", "{a: 1}"), ("range", "")]
    if kind == "out":
        return [("type", "{a: 1}"), ("range", FILE), ("empty", "")]
    if kind == "device":
        return [("type", "[cpu]"), ("range", "gpu")]
    if kind == "list":
        cases = [("type", "{a: 1}")]
        item = (
            [f"[{value or repr('')}]" for label, value in bad_values(rule.item) if label == "range"]
            if rule.item
            else []
        )
        if item:
            cases.append(("range", item[0]))
        elif rule.min_items:
            cases.append(("range", "[]"))
        return cases
    if kind == "sweep":
        return bad_values(rule.item)
    return []  # any, section: open values, checked where they are used


CASES = [
    (command, key, label, value)
    for command, schema in SCHEMAS.items()
    for key, rule in rules(schema)
    for label, value in bad_values(rule)
]


def _id(case) -> str:
    command, key, label, _ = case
    return f"{command}-{key}-{label}"


@pytest.fixture(scope="module")
def composed():
    cache = {}

    def get(command: str):
        if command not in cache:
            cache[command] = compose(command, BASE.get(command, []))
        return cache[command]

    return get


@pytest.fixture(scope="module")
def a_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("planted") / "notes.txt"
    path.write_text("a file the user made\n")
    return path


PARSER = OverridesParser.create()
LITERAL = {command: literal_keys(schema) for command, schema in SCHEMAS.items()}


def _typed(command: str, key: str, value: str):
    """The value as compose sees it: free text verbatim, anything else parsed the way Hydra parses overrides."""
    if key in LITERAL[command]:
        return escape(value)
    return PARSER.parse_override(f"{key}={value}").value()


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_every_key_refuses_a_wrong_type_and_an_out_of_range_value(composed, a_file, case):
    command, key, _, value = case
    value = str(a_file) if value == FILE else value
    cfg = composed(command)
    before = OmegaConf.select(cfg, key)
    before = OmegaConf.to_container(before) if OmegaConf.is_config(before) else before
    OmegaConf.update(cfg, key, _typed(command, key, value), merge=False)
    try:
        with pytest.raises(UserError) as refused:
            check(SCHEMAS[command], cfg)
    finally:
        OmegaConf.update(cfg, key, before, merge=False)
    message = str(refused.value)
    assert "\n" not in message
    assert key.split(".")[-1] in message, message  # it names the key
    shown = value.strip("[]'")
    if shown and not value.startswith("{"):
        assert shown in message, message  # and the value


def _cli_sample() -> list[tuple[str, str, str, str]]:
    """Through the CLI (each call composes, so a few): every kind of key once, spread over the commands, and one
    integer key of every command."""
    sample, kinds = [], set()
    for command, schema in SCHEMAS.items():
        kind_of = dict(rules(schema))
        own = [case for case in CASES if case[0] == command and case[2] != "type"]
        for case in own:
            if kind_of[case[1]].kind not in kinds:
                kinds.add(kind_of[case[1]].kind)
                sample.append(case)
        first_int = next((case for case in own if kind_of[case[1]].kind == "int" and case[2] == "range"), None)
        if first_int and first_int not in sample:
            sample.append(first_int)
    return sample


def _refused(cli, tmp_path: Path, *args: str) -> str:
    """Run the CLI in an empty working directory; it must answer one line, exit 2, and write nothing."""
    before = sorted(tmp_path.rglob("*"))
    started = time.monotonic()
    code, out, err = cli(*args)
    assert code == 2, (args, out, err)
    assert err.startswith("error: ") and err.strip().count("\n") == 0, err
    assert "Traceback" not in err + out
    assert sorted(tmp_path.rglob("*")) == before, f"{args} wrote files"
    assert time.monotonic() - started < 30, f"{args} took {time.monotonic() - started:.0f} s"
    return err.strip()


@pytest.fixture(scope="module", autouse=True)
def _imported():
    """The command modules and what they import once they run (torch, diffusers) imported once, so the time limit
    below measures the answer alone, and a preflight that makes a scheduler says nothing of the time it took."""
    import importlib

    for command in COMMANDS:
        importlib.import_module(f"diversity_cli.commands.{command.module}")
    for module in ("torch", "diffusers", "diversity_cli.experiments.x0viz", "diversity_cli.training.distill"):
        importlib.import_module(module)


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)  # a relative default out= (results/...) would land here

    def refuse(*_, **__):
        raise AssertionError("a model was loaded before the bad input was refused")

    monkeypatch.setattr("diversity_cli.models.loading.load_pair", refuse)
    monkeypatch.setattr("diversity_cli.training.distill.load_pair", refuse)  # imported by name there
    return tmp_path


SAMPLE = _cli_sample()


def test_the_cli_sample_covers_every_kind_of_key():
    covered = {dict(rules(SCHEMAS[case[0]]))[case[1]].kind for case in SAMPLE}
    every = {rule.kind for schema in SCHEMAS.values() for _, rule in rules(schema)} - {"any", "section"}
    assert covered == every


@pytest.mark.parametrize("case", SAMPLE, ids=[_id(c) for c in SAMPLE])
def test_the_cli_refuses_each_kind_of_bad_value(cli, workdir, case):
    command, key, _, value = case
    if value == FILE:
        (workdir / "notes.txt").write_text("mine\n")
        value = str(workdir / "notes.txt")
    base = [arg for arg in BASE.get(command, []) if arg.partition("=")[0] != key]
    err = _refused(cli, workdir, CLI_NAME[command], *base, f"{key}={value}")
    assert key.split(".")[-1] in err


# --------------------------------------------------------------------------- the cases found on main, one by one

OUT = "out=run"  # relative to the empty working directory: it must not exist afterwards

FOUND = [
    # booleans: any string used to mean true
    ("generate", "overwrite=maybe"),
    ("distill", "model=tiny_sd", "resume=maybe"),
    ("ablate", "model=tiny_sd", "prompt=a", "merge=perhaps"),
    ("diversity", "out=run", "cache=sometimes"),
    ("report", "out=run", "html=2"),
    ("report", "out=run", "figures=y"),
    ("ablate", "model=tiny_sd", "prompt=a", "fid=nope"),
    ("ablate", "model=tiny_sd", "prompt=a", "baselines=1"),
    ("ablate", "model=tiny_sd", "prompt=a", "plots=[]"),
    # tracebacks for wrong types or ranges
    ("generate", "seed=-1"),
    ("generate", "seed=1.5"),
    ("generate", "seed=abc"),
    ("generate", "base_guidance=-1"),
    ("generate", "base_guidance=abc"),
    ("generate", "limit=-1"),
    ("generate", "limit=0"),
    ("generate", "limit=abc"),
    ("generate", "device=gpu"),
    ("generate", "device=cuda:x"),
    ("generate", "device=[cpu]"),
    ("train-lora", "lr=-1"),
    ("train-lora", "lr=abc"),
    ("distill", "lr.generator=0"),
    ("x0viz", "threshold=0"),
    ("x0viz", "threshold=abc"),
    ("diversity", "out=run", "ci=1.5"),
    ("diversity", "out=run", "ci=0"),
    ("diversity", "out=run", "ci=abc"),
    ("x0viz", "n=0"),
    ("x0viz", "n=abc"),
    ("x0viz", "columns=1"),
    ("x0viz", "columns=abc"),
    ("fid", "batch_size=0"),
    ("fid", "batch_size=abc"),
    ("report", "out=run", "grid.thumb=0"),
    ("report", "out=run", "grid.thumb=abc"),
    # wrong type that used to be taken
    ("generate", "n=true"),
    ("x0viz", "methods=bogus"),
    # out= empty (it wrote into the working directory)
    ("generate", "out="),
    ("x0viz", "out="),
    ("train-toy", "out="),
    # folders train-toy starts from, checked before an overwrite removes the earlier run
    ("train-toy", "overwrite=true", "vae.reuse=/nonexistent/vae"),
    ("train-toy", "overwrite=true", "unet.init_from=/nonexistent/base"),
    # ... and in a new run: they were found missing once written into (vae.reuse) or after the VAE had trained
    ("train-toy", "vae.reuse=/nonexistent/vae"),
    ("train-toy", "unet.init_from=/nonexistent/base"),
    # sizes the toy networks cannot be built with (a traceback once the earlier stages had trained), and VAE sizes
    # a reused VAE does not have (recorded, not used)
    ("train-toy", "unet.channels=[30,60]"),
    ("train-toy", "vae.norm_groups=5"),
    ("train-toy", "text_encoder.hidden=65"),
    (
        "train-toy",
        f"vae.reuse={Path(__file__).resolve().parents[1] / 'diversity_cli/assets/toy/base/vae'}",
        "vae.latent_channels=3",
    ),  # fmt: skip
    # a shard= that cannot be read: one line at once, before the preflight (it named missing weights first)
    ("generate", "model=sdxl_dmd2", "shard=4/4"),
    ("diversity", "shard=1/0"),
    # evaluation prompts the judge cannot check ("a hexagon" scored 1.0) or that name two colours: before training
    ("train-toy", "evaluate.prompts=[a circle,a hexagon]"),
    ("train-toy", "evaluate.prompts=[a red blue circle]"),
    # sizes that hung before any work
    ("generate", "n=1000000000"),
    ("x0viz", "n=1000000000"),
    ("transfer-lora", "n=1000000000"),
    ("ablate", "model=tiny_sd", "prompt=a", "k=1..100000000"),
    ("ablate", "model=tiny_sd", "prompt=a", "base_guidance=range(0,100000000)"),
    ("ablate", "model=tiny_sd", "prompt=a", "k=1..40", "base_guidance=range(0,40)", "max_points=1000"),
    # a one-step student (the SDXL-Turbo card): no hand-over, no first step to skip
    ("generate", "model=sdxl_turbo", "preset=card", "method=hybrid", "k=1"),
    ("generate", "preset=card", "method=skip_first", "model=sdxl_turbo"),
    ("x0viz", "preset=card", "model=sdxl_turbo"),
    # a local folder where a hub id was (a scheduler's config, a bare weights file): checked on disk, one line
    ("generate", "model=sdxl_dmd2", "model.base.scheduler.repo=/nonexistent/sdxl"),
    ("generate", "model=sdxl_dmd2", "model.distilled.network.repo=/nonexistent/dmd2"),
    # train-lora trains a UNet LoRA: pairs of another family are refused, not a traceback after loading
    ("train-lora", "concept=red", "model=tiny_flux"),
    ("train-lora", "concept=red", "model=tiny_sd3"),
    ("train-lora", "concept=red", "model=tiny_qwen"),
    # a pair's samples per network call
    ("generate", "model=toy", "model.micro_batch=0"),
    ("generate", "model=toy", "model.micro_batch=100000000"),  # allocated 200 GB after a minute
    ("generate", "model=tiny_qwen", "+model.micro_batch=2"),
    ("x0viz", "+model.micro_batch=abc"),
    ("transfer-lora", "model=tiny_sd", "+model.micro_batch=-2"),
    ("ablate", "model=tiny_sd", "prompt=a", "k=1..2", "+model.micro_batch=1.5"),
    # a pair's steps and guidance (a ValueError once the pair had loaded, after the run directory was made)
    ("generate", "model=toy", "model.base.guidance=abc"),
    ("x0viz", "model=toy", "model.base.steps=0"),
    ("distill", "model=toy", "prompt=a", "model.base.guidance=-1"),
    ("transfer-lora", "model=tiny_sd", "model.distilled.steps=1.5"),
    ("train-lora", "model=toy", "model.base.guidance=true"),
    ("ablate", "model=tiny_sd", "prompt=a", "k=1..2", "model.base.guidance=abc"),
    ("generate", "model=toy", "model.base.guidance=inf"),  # an all-black image before
    ("generate", "model=toy", "model.base.steps=null"),
    ("x0viz", "model=toy", "~model.distilled.guidance"),
    # explicit timesteps (a TypeError or a scheduler's ValueError after loading; [] and 500.5 sampled silently)
    ("generate", "model=toy", "model.distilled.timesteps=[999,abc]"),
    ("generate", "model=toy", "model.distilled.timesteps=[249,499,749,999]"),
    ("x0viz", "model=toy", "model.distilled.timesteps=[1200,800,400,1]"),
    ("generate", "model=toy", "model.distilled.timesteps=[]"),
    ("distill", "model=toy", "prompt=a", "model.distilled.timesteps=[999,749,499,249.5]"),
    ("ablate", "model=tiny_sd", "prompt=a", "k=1..2", "model.distilled.timesteps=[999,999,499,249]"),
    ("generate", "model=toy", "model.distilled.timesteps=[999,499]"),  # 2 timesteps labelled as 4 steps
    ("generate", "model=toy", "model.distilled.scheduler=5"),  # the timesteps check read it as a group
    # what every load of a pair reads (a traceback once loading had begun, most after the run directory was made)
    ("generate", "model=toy", "model.resolution=-32"),
    ("x0viz", "model=toy", "model.resolution=[32]"),
    ("generate", "model=toy", "model.resolution=33"),  # sampled 32 px images
    ("generate", "model=toy", "model.resolution=100000"),  # killed for memory
    ("generate", "model=toy", "~model.resolution"),
    ("generate", "model=toy", "~model.distilled.scheduler"),
    ("distill", "model=toy", "prompt=a", "model.base.network.path=null"),
    ("transfer-lora", "model=tiny_sd", "model.resolution=abc"),
    ("ablate", "model=tiny_sd", "prompt=a", "k=1..2", "model.resolution=0"),
    ("generate", "model=toy", "~model.components"),
    ("generate", "model=toy", "model.base.label=${nosuch}"),
    ("train-lora", "model=toy", "model.dtype=${oc.env:DIVERSITY_CLI_NO_SUCH_VARIABLE}"),
    ("generate", "model=toy", "model.dtype=float99"),  # refused only once loading began
    ("x0viz", "model=toy", "~model.dtype"),
    ("generate", "model=toy", "model.name=../../x"),  # refused by the run directory, naming no key
    ("generate", "model=toy", "model.name="),
    ("generate", "model=toy", "model.base.label=[a,b]"),  # taken, and shown as the base's name in tables
    ("distill", "model=toy", "prompt=a", "adam.betas=[0.9,0.99,0.5]"),  # three betas were taken
    ("distill", "model=toy", "prompt=a", "adam.betas=[1.0,0.999]"),  # AdamW raised after the pair loaded
    ("distill", "model=toy", "prompt=a", "mixed_precision=fp16"),  # on a CPU: ran float32, recorded as fp16
    # distill's open keys (a TypeError from pathlib, a ValueError from OmegaConf)
    ("distill", "model=toy", "prompts=5"),
    ("distill", "model=toy", "distill=dp_dmd", "prompt=a", "teacher_ode.overrides=5"),
    # the key that lifts a cap is itself checked
    ("generate", "max_images=0"),
    ("ablate", "model=tiny_sd", "prompt=a", "max_points=-3"),
    # refused only once the pair loaded, after the run directory was made
    ("generate", "model=toy", "model.family=bogus"),
    ("x0viz", "model=toy", "+model.skip_first_noise=bogus"),
    ("generate", "model=toy", "model.base.scheduler.class=5"),  # a TypeError from getattr
    ("generate", "model=toy", "preset=card"),
    ("ablate", "model=tiny_sd", "prompt=a", "k=1..2", "preset=card"),
    # taken and read by nothing
    ("generate", "model=toy", "+model.skip_frist_noise=scaled"),
    ("generate", "model=toy", "+model.base.gudiance_scale=2"),
    ("distill", "model=toy", "prompt=a", "+model.base.network.revison=main"),
    ("generate", "model=toy", "+model.components.subfolder=x"),
    ("report", "out=run", "diversity_metrics=[nosuch]"),
    ("generate", "model=toy", "launcher=submitit_local", "launcher_params=5"),  # a message naming no key
    ("generate", "model=toy", "launcher_params=5"),  # launcher=local: taken, read by nothing
    ("diversity", "out=run", "launcher_params=abc"),
    ("report", "out=run", "diversity_metrics=[vendi]"),  # written as vendi_<embedder>: no row has it
    ("report", "out=run", "tables=[3]", "mapping.3.metrics=[nosuch]"),
    ("generate", "model=tiny_sd", "model.base.scheduler.overrides=5"),  # a traceback
    ("generate", "model=tiny_sdxl_lora", "model.distilled.lora=5"),  # a traceback
    ("generate", "model=tiny_sdxl_lora", "+model.distilled.lora.rnak=8"),  # ran at rank 4
    # keys only some pairs read
    ("generate", "model=toy", "+model.max_sequence_length=77"),
    ("generate", "model=tiny_sd", "+model.base.guidance_embeds=true"),
    ("generate", "model=toy", "+model.base.network.lora=true"),
    # a key added to a section with a fixed set of settings
    ("generate", "model=toy", "+auto_k.nn=3"),
    ("ablate", "model=tiny_sd", "prompt=a", "+measure.diversity.foo=1"),
    # a key of an open section set without +: said "unknown key ... did you mean launcher_params?"
    ("generate", "launcher=slurm", "launcher_params.timeout_min=5"),
    # limit= cuts a prompt file's rows; with one prompt it was passed over
    ("x0viz", "model=toy", "prompt=a", "limit=2"),
    ("generate", "model=toy", "limit=2"),
    # the base's commitment read as a count of final steps: replace_final ran its last step on the base
    ("generate", "model=toy", "method=replace_final", "k=auto"),
]


def test_a_group_inside_an_open_section_can_be_added():
    """launcher_params holds nothing by default: a SLURM setting that is itself a group is added whole."""
    from diversity_cli.commands.usage import check_keys

    check_keys("generate", ["+launcher_params.additional_parameters.mail_user=x"], only_added=True)
    with pytest.raises(UserError, match="adds a key no part"):  # a pair's network is not open
        check_keys("generate", ["+model.base.network.foo.bar=1"], only_added=True)
    with pytest.raises(UserError, match=r"add it with \+launcher_params.timeout_min=5"):
        check_keys("generate", ["launcher_params.timeout_min=5"])


@pytest.mark.parametrize("args", FOUND, ids=[" ".join(a) for a in FOUND])
def test_found_on_main(cli, workdir, args):
    command, *rest = args
    extra = [] if any(a.startswith("out=") for a in rest) else [OUT]
    base = {"generate": ["model=tiny_sd", "n=1"], "x0viz": ["model=tiny_sd"]}.get(command, [])
    base = [b for b in base if b.partition("=")[0] not in {a.partition("=")[0] for a in rest}]
    err = _refused(cli, workdir, command, *base, *rest, *extra)
    key = rest[-1].partition("=")[0] if "max_points=1000" not in rest else "max_points"
    assert key.split(".")[-1] in err, err
    assert not (workdir / "run").exists()


@pytest.mark.parametrize(
    "args",
    [
        ("generate", "model=tiny_sd", "prompt=a", "n=1", "model.base.scheduler.overrides.timestep_spacing=bogus"),
        ("generate", "model=tiny_sd", "prompt=a", "n=1", "+model.base.scheduler.overrides.beta_schedule=bogus"),
        ("x0viz", "model=toy", "prompt=a", "model.base.scheduler.class=NoSuchScheduler"),
        ("generate", "model=tiny_sd", "prompt=a", "model.distilled.scheduler.class=UNet2DConditionModel"),
        ("ablate", "model=tiny_sd", "prompt=a", "k=1..2", "model.distilled.scheduler.class=PNDMScheduler"),
        # a setting the class does not take, which diffusers drops with a warning
        ("generate", "model=tiny_sd", "prompt=a", "n=1", "+model.base.scheduler.overrides.timestep_spacnig=trailing"),
        ("train-lora", "model=toy", "+model.base.scheduler.overrides.set_alpha_to_won=true"),
    ],
)
def test_a_scheduler_diffusers_refuses_is_one_line_before_anything_is_written(cli, workdir, args):
    """Only diffusers knows its classes and what each accepts: a new run's schedulers are made in the preflight
    (a traceback once, then one line after run.json was written)."""
    command, *rest = args
    err = _refused(cli, workdir, command, *rest, OUT)
    assert "scheduler" in err or "Scheduler" in err, err
    if "bogus" not in rest[-1] and "class" not in rest[-1]:  # a dropped setting is named in full
        assert rest[-1].partition("=")[0].lstrip("+") in err, err


@pytest.mark.parametrize(
    "args",
    [
        ("distill", "model=tiny_sd", "distill=dp_dmd", "prompt=a", "teacher_ode.overrides.timestep_spacing=bogus"),
        ("distill", "model=tiny_sd", "distill=dp_dmd", "prompt=a", "+teacher_ode.overrides.set_alpha_to_won=true"),
        ("generate", "model=tiny_sd", "prompt=a", "n=1", "model.base.scheduler.overrides.timestep_spacing=bogus"),
    ],
)
def test_a_scheduler_diffusers_refuses_is_one_line_once_loaded(cli, tmp_path, args):
    """The DP-DMD teacher's ODE is made with the training; a run directory that exists may be complete, so its
    pair's schedulers are made only when it loads: one line then too (a traceback before)."""
    command, *rest = args
    out = tmp_path / "run"
    if command == "generate":  # an existing run directory with work left (another method: no settings to clash)
        assert cli("generate", "model=tiny_sd", "method=base", "prompt=b", "n=1", f"out={out}")[0] == 0
    code, out_text, err = cli(command, *rest, f"out={out}")
    assert code == 2 and err.startswith("error: ") and err.strip().count("\n") == 0, err
    assert "Traceback" not in err + out_text and ("model.base.scheduler" in err or "teacher_ode.overrides" in err), err
    if "bogus" not in rest[-1]:
        assert rest[-1].partition("=")[0].lstrip("+") in err, err


@pytest.mark.parametrize(
    "args",
    [
        ("generate", "model=toy", "device=cuda"),
        ("generate", "model=toy", "device=cuda:1"),
        ("x0viz", "model=toy", "device=mps"),
        ("generate", "model=toy", "devices=[cuda:0]"),  # three lines and a run directory made before
        ("generate", "model=toy", "devices=[cpu,cuda:0]"),
        ("fid", "out=run", "device=cuda:0"),
        ("generate", "model=toy", "launcher=submitit_local", "device=cuda"),  # local processes: checked here
    ],
)
def test_a_gpu_this_machine_lacks_is_refused_before_anything_is_written(cli, workdir, monkeypatch, args):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    command, *rest = args
    err = _refused(cli, workdir, command, *rest, "prompt=a", "n=1", OUT) if command != "fid" else None
    err = err or _refused(cli, workdir, command, *rest)
    assert rest[-1].partition("=")[2].strip("[]").split(",")[-1] in err, err


def test_a_complete_run_reruns_without_its_gpus(cli, tmp_path, monkeypatch):
    """Run on GPU nodes, then the same command on a login node to merge or summarise: nothing is left to make, so
    the GPUs it names are not looked for."""
    import torch

    out = f"out={tmp_path / 'run'}"
    for devices in ("devices=cpu:2", "devices=[cuda:0,cuda:1]"):
        code, _, err = cli("generate", "model=toy", "prompt=a", "n=2", out, devices)
        assert code == 0, err
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    code, _, err = cli("generate", "model=toy", "prompt=a", "n=2", out, "device=cuda")
    assert code == 0 and "nothing to do" in err, err


def test_a_gpu_index_past_the_last_is_refused(monkeypatch):
    import torch

    from diversity_cli.core.device import check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    check_device("cuda:1")
    check_device("cuda")
    with pytest.raises(UserError, match=r"device=cuda:2 but this machine shows 2 CUDA device\(s\): cuda:0 to cuda:1"):
        check_device("cuda:2")


def test_a_slurm_launch_does_not_check_this_machine_for_its_gpus(monkeypatch):
    """The login node that submits has no GPU; the nodes the jobs land on do."""
    import torch

    from diversity_cli.commands.checks import gpus_present

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    gpus_present(OmegaConf.create({"launcher": "slurm", "device": "cuda"}))
    with pytest.raises(UserError, match="device=cuda but no CUDA"):
        gpus_present(OmegaConf.create({"launcher": "local", "device": "cuda"}))


@pytest.fixture(scope="module")
def measured_run(tmp_path_factory) -> Path:
    """A run directory with images in it, so that report gets past "no results" to its tables."""
    from diversity_cli.cli import run

    out = tmp_path_factory.mktemp("measured") / "run"
    assert run(["generate", "model=tiny_sd", "prompt=a", "n=2", f"out={out}"]) == 0
    return out


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["mapping=5"], "mapping=5"),
        (["mapping.2.rows=5"], "mapping.2.rows=5"),
        (["tables=[3]", "mapping.3.metrics=5"], "mapping.3.metrics=5"),
        (["tables=[E1]", "mapping.E1.standin=nosuch"], "mapping.E1.standin=nosuch"),
        (["tables=[1]", "mapping.1.targets=null"], "mapping.1.targets=null"),
        (["tables=[2]", "~mapping.2"], "mapping.2 is missing"),
        (["mapping.D1.models.sd21_turbo=5"], "mapping.D1.models.sd21_turbo=5"),
        (["mapping.2.rows.base=[a,b]"], "mapping.2.rows.base=[a,b]"),
    ],
)
def test_a_paper_row_mapping_of_the_wrong_shape_is_one_line(cli, measured_run, args, named):
    """On a run with results, where a table's build raised a TypeError or KeyError before."""
    before = sorted(measured_run.rglob("*"))
    code, out, err = cli("report", f"out={measured_run}", "html=false", *args)
    assert code == 2 and err.startswith(f"error: {named}") and err.strip().count("\n") == 0, err
    assert sorted(measured_run.rglob("*")) == before


def test_a_mapping_the_tables_accept_composes(measured_run):
    """null model: the pair measured most; a null label leaves the method out; tables=none: no mapping is read."""
    compose("report", [f"out={measured_run}", "mapping.2.model=null", "mapping.E1.standin=null"])
    compose("report", [f"out={measured_run}", "mapping.2.rows.base=null"])
    compose("report", [f"out={measured_run}", "tables=none", "~mapping.2"])


def test_caps_name_the_key_that_lifts_them(cli, workdir):
    err = _refused(cli, workdir, "generate", "n=1000000000", OUT)
    assert "above the cap max_images=100000" in err and "max_images=N" in err
    err = _refused(cli, workdir, "ablate", "model=tiny_sd", "prompt=a", "k=1..100000000", OUT)
    assert "100000000 values, above the cap max_points=1000" in err
    err = _refused(cli, workdir, "ablate", "model=tiny_sd", "prompt=a", "k=1..40", "base_guidance=range(0,40)", OUT)
    assert "1600 points (40 k x 40 base_guidance), above the cap max_points=1000" in err
    prompts = workdir / "prompts.txt"
    prompts.write_text("".join(f"prompt {i}\n" for i in range(20)))
    err = _refused(cli, workdir, "generate", f"prompts={prompts}", "n=10", "max_images=100", OUT)
    assert "20 prompt(s) x n=10 is 200 images, above the cap max_images=100" in err
    # ablate's cap is the command's, over its points: each point's prompts x n passed, and 6 x 4 images were made
    err = _refused(cli, workdir, "ablate", "model=tiny_sd", "prompt=a", "k=1..4", "n=4", "max_images=4", OUT)
    assert "6 point(s) x 1 prompt(s) x n=4 is 24 images, above the cap max_images=4" in err


@pytest.mark.parametrize("command", ["generate", "x0viz", "fid", "diversity", "train-toy", "train-lora", "distill"])
def test_out_an_existing_file(cli, workdir, command):
    mine = workdir / "results.txt"
    mine.write_text("mine\n")
    err = _refused(cli, workdir, command, f"out={mine}")
    assert f"out={mine} is an existing file" in err
    assert mine.read_text() == "mine\n"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("latin1.txt", b"caf\xe9\n", "is not UTF-8 text"),
        ("latin1.csv", b"prompt\ncaf\xe9\n", "is not UTF-8 text"),
        ("ragged.csv", b"prompt,seed\na red circle,1\na circle, red,2\n", "this row has 3 field(s), the header has 2"),
        ("short.csv", b"prompt,seed\na red circle\n", "this row has 1 field(s), the header has 2"),
        # read on to the end of the file as one prompt before
        ("open_quote.csv", b'prompt\nsquare\n"a red circle\na blue square\n', "open_quote.csv:3: a quoted field opens"),
        ("seed_past_max.csv", b"prompt,seed\na shape,99999999999\n", "above the largest seed"),
        ("empty.txt", b"# only a comment\n", "has no prompts"),
        ("folder", None, "is a folder"),
        ("absent.txt", False, "not found"),
    ],
)
def test_bad_prompt_files(cli, workdir, name, content, message):
    path = workdir / "inputs" / name
    path.parent.mkdir(exist_ok=True)
    if content is None:
        path.mkdir()
    elif content is not False:
        path.write_bytes(content)
    # sdxl_dmd2: told before the preflight's list of missing checkpoints (none is on a test machine), so a user does
    # not fetch gigabytes to learn their prompt file is wrong
    for command, pair in (
        ("generate", "tiny_sd"),
        ("x0viz", "tiny_sd"),
        ("generate", "sdxl_dmd2"),
        ("ablate", "sdxl_dmd2"),
    ):
        err = _refused(cli, workdir, command, f"model={pair}", f"prompts={path}", "n=2", OUT)
        assert message in err and str(path) in err, err


def test_an_unknown_feature_network_is_told_before_the_missing_reference(cli, workdir):
    err = _refused(cli, workdir, "fid", "features=nosuch", "reference=coco", "coco.images=/nonexistent", OUT)
    assert err == "error: features=nosuch: use inception, toy, tiny_random or package.module:factory", err


def test_unreadable_prompt_file(cli, workdir, monkeypatch):
    """chmod 000 (and, since root reads any file, a read that fails as it would)."""
    path = workdir / "secret.txt"
    path.write_text("a red circle\n")
    path.chmod(0)
    real = Path.read_text

    def read_text(self, *args, **kwargs):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    try:
        err = _refused(cli, workdir, "generate", "model=tiny_sd", f"prompts={path}", "n=1", OUT)
    finally:
        path.chmod(0o600)
    assert f"cannot read prompt file {path}: Permission denied" in err


def test_overwrite_no_keeps_the_images(cli, tmp_path, monkeypatch):
    """`overwrite=no` used to mean true and replaced images made with other settings."""
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("generate", "model=tiny_sd", "method=distilled", "prompt=a red circle", "n=1", OUT)
    assert code == 0, err
    png = next((tmp_path / "run").rglob("*.png"))
    made = png.read_bytes()
    code, _, err = cli("generate", "model=tiny_sd", "method=distilled", "prompt=a red circle", "n=1", "seed=0",
                       "overwrite=no", "batch_size=1", OUT, "model.distilled.guidance=1.5")  # fmt: skip
    assert code == 2 and "overwrite" in err, err
    assert png.read_bytes() == made


@pytest.mark.parametrize(
    "command, key",
    [("generate", "k"), ("generate", "n"), ("diversity", "ci"), ("fid", "workers"), ("ablate", "baselines"),
     ("report", "figures"), ("train-lora", "lr"), ("distill", "iterations"), ("transfer-lora", "scale"),
     ("x0viz", "columns")],
)  # fmt: skip
def test_deleting_a_commands_own_key_is_one_line(cli, tmp_path, command, key):
    """`~k` deleted the key, and the command failed reading it: a traceback, exit 1 (x0viz after writing run.json)."""
    code, _, err = cli(command, f"~{key}", f"out={tmp_path / 'run'}")
    expected = f"error: ~{key} deletes a key the command reads; set it instead ({key}=...)"
    assert code == 2 and err.strip() == expected, err
    assert not (tmp_path / "run").exists()


def test_a_bad_transfer_lora_value_is_told_before_torch_is_imported():
    """transfer-lora imported torch and diffusers (~7 s) before its schema check: n=0 took 11 s, generate's 0.8 s."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from diversity_cli.cli import run\n"
        "print('exit', run(['transfer-lora', 'n=0']), 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["exit", "2", "False"], (done.stdout, done.stderr)
    assert "n=0 is out of range" in done.stderr


def test_fp16_from_accelerates_environment_is_refused_on_a_cpu_naming_the_variable(cli, workdir, monkeypatch):
    """mixed_precision=null takes accelerate's ACCELERATE_MIXED_PRECISION: fp16 there trained in float32 on a CPU
    and was recorded as fp16, as mixed_precision=fp16 did."""
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    code, _, err = cli(
        "distill", "model=toy", "prompt=a", "mixed_precision=null", "iterations=1", f"out={workdir / 'run'}"
    )
    assert code == 2 and err.strip() == (
        "error: ACCELERATE_MIXED_PRECISION=fp16 needs a GPU (on the CPU it does nothing); give mixed_precision=bf16 "
        "or no"
    ), err
    assert not (workdir / "run").exists()
