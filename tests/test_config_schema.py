"""The typed configs: every key of every command has a schema rule and a help line; values are converted or
refused at compose time (booleans, ints, lists, free text taken literally); prompt files read strictly."""

from __future__ import annotations

import os
import re

import pytest
from omegaconf import OmegaConf

from diversity_cli.core.config import compose, describe
from diversity_cli.core.errors import UserError
from diversity_cli.core.prompts import read_prompts
from diversity_cli.core.schema import rules, show
from diversity_cli.core.schemas import SCHEMAS
from diversity_cli.core.schemas import common as schema_common
from diversity_cli.core.schemas import diversity as diversity_schema
from diversity_cli.core.schemas import transfer_lora as transfer_schema

# A command's config as the user can compose it; distill=dp_dmd adds that method's keys.
VARIANTS = [(name, []) for name in SCHEMAS] + [("distill", ["distill=dp_dmd"])]


def _keys(node, prefix=""):
    found = []
    for key in node:
        child = node._get_node(key)
        found.append(prefix + str(key))
        if OmegaConf.is_dict(child):
            found += _keys(child, f"{prefix}{key}.")
    return found


@pytest.mark.parametrize(("command", "extra"), VARIANTS)
def test_every_config_key_is_declared(command, extra):
    """A key in conf/<command>.yaml without a schema rule would pass unchecked; a rule without a key is stale."""
    cfg = compose(command, extra)
    declared = dict(rules(SCHEMAS[command]))
    opened = [key for key, rule in declared.items() if rule.kind == "any"]
    present = [k for k in _keys(cfg) if not any(k.startswith(f"{o}.") for o in opened)]
    assert [k for k in present if k not in declared] == []
    if command != "distill" or extra:
        dp_only = () if extra else ("anchor_k", "lambda_div", "stop_gradient", "teacher_ode")
        assert [k for k in declared if k not in present and not k.startswith(dp_only)] == []


@pytest.mark.parametrize("command", list(SCHEMAS))
def test_describe_gives_every_key_a_type_default_and_one_line_help(command):
    rows = describe(command)
    assert rows, command
    cfg = compose(command)
    for key, kind, default, help_text in rows:
        assert help_text and "\n" not in help_text and kind, key
        if OmegaConf.select(cfg, key, default="<absent>") != "<absent>":
            value = OmegaConf.select(cfg, key)
            assert default == (OmegaConf.to_container(value) if OmegaConf.is_config(value) else value), key


def test_describe_generate():
    rows = {key: (kind, default) for key, kind, default, _ in describe("generate")}
    assert rows["n"] == ("int >= 1 <= max_images", 8)
    assert rows["overwrite"] == ("bool", False)
    assert rows["method"][0] == "base|distilled|hybrid|skip_first|replace_final"
    assert rows["k"] == ("int >= 0 | auto", 1)
    assert rows["auto_k.threshold"][0] == "float > 0 and <= 1"


def test_schema_names_match_the_library():
    """Names core cannot import (a lower layer) are copies; they must stay equal to the library's."""
    from diversity_cli.experiments.transfer import DIRECTIONS
    from diversity_cli.metrics.embedders import DISTANCES, EMBEDDERS
    from diversity_cli.models.loading import DTYPES
    from diversity_cli.sampling.methods import METHODS, USES_BASE_KNOBS

    assert schema_common.METHODS == METHODS
    assert schema_common.USES_BASE_KNOBS == USES_BASE_KNOBS
    assert set(schema_common.EMBEDDER_NAMES) == set(EMBEDDERS)  # report's metric names (diversity_row_metric)
    assert diversity_schema.DISTANCES == DISTANCES
    assert transfer_schema.DIRECTIONS == tuple(DIRECTIONS)
    save_dtype = dict(rules(SCHEMAS["distill"]))["save_dtype"]
    assert set(save_dtype.options) == set(DTYPES)
    from diversity_cli.core.pair_settings import SCHEDULED_FAMILIES
    from diversity_cli.models.loading import NETWORK_SLOT

    assert set(SCHEDULED_FAMILIES) == set(NETWORK_SLOT)  # the families whose roles name a scheduler class


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("false", False), ("yes", True), ("no", False), ("on", True), ("off", False), ("No", False)],
)
def test_booleans_mean_what_they_say(value, expected):
    assert compose("generate", [f"overwrite={value}"]).overwrite is expected
    assert compose("report", [f"html={value}"]).html is expected


@pytest.mark.parametrize("value", ["maybe", "2", "0", "1", "[true]", "null"])
def test_anything_else_is_not_a_boolean(value):
    with pytest.raises(UserError, match=re.escape(f"overwrite={value}: overwrite is true or false")):
        compose("generate", [f"overwrite={value}"])


def test_ints_are_ints():
    assert compose("generate", ["n=3"]).n == 3
    for value in ("true", "2.5", "abc", "[2]"):
        with pytest.raises(UserError, match=re.escape(f"n={value}: n is an integer >= 1")):
            compose("generate", [f"n={value}"])


@pytest.mark.parametrize("typed", ["n='4'", "n='true'", "n='null'", "n='inf'", "n=four"])
def test_text_that_would_read_as_another_type_is_shown_quoted(typed):
    """n='4' is the text 4: shown unquoted, the refusal would read "n=4: n is an integer", which 4 is."""
    with pytest.raises(UserError, match=re.escape(f"{typed}: n is an integer >= 1")):
        compose("generate", [typed])


@pytest.mark.parametrize("text", ["4", "-1", "2.5", "1e3", "true", "null", "inf", "[1,2]", "a,b", "four", "a b"])
def test_a_shown_text_types_back_as_the_same_text(text):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    assert OverridesParser.create().parse_override(f"key={show(text)}").value() == text


def test_an_unknown_choice_is_quoted_once():
    with pytest.raises(UserError, match=re.escape("method='4': unknown method '4'; choose one of: base,")):
        compose("generate", ["method='4'"])


def test_lists_stay_lists():
    assert list(compose("x0viz", ["methods=base"]).methods) == ["base"]
    assert list(compose("x0viz", ["methods=base,hybrid"]).methods) == ["base", "hybrid"]
    assert list(compose("x0viz", ["methods=[distilled]"]).methods) == ["distilled"]
    assert list(compose("diversity", ["metric=pixel,lpips"]).metric) == ["pixel", "lpips"]
    # runs= was refused as "a comma-separated list is a sweep", though report reads several runs
    assert list(compose("report", ["runs=runA,runB"]).runs) == ["runA", "runB"]
    with pytest.raises(UserError, match=r"methods\[0\]=bogus: unknown value 'bogus'; choose one of: base,"):
        compose("x0viz", ["methods=bogus"])


@pytest.mark.parametrize(
    "text",
    [
        "a circle, red",  # a comma: Hydra would read a sweep ("Ambiguous value")
        "[x] marks the spot",  # brackets: a list to Hydra
        "a [red] circle",
        'a "quoted" circle',
        "it's a circle",
        "${oc.env:HOME}",  # an interpolation to OmegaConf
        "cost: ${5}, back\\${x}",
        "{a: b} = c",
        "  spaces kept  ",
    ],
)
def test_prompt_text_is_taken_literally(text):
    cfg = compose("generate", [f"prompt={text}"])
    assert cfg.prompt == text
    assert OmegaConf.to_container(cfg, resolve=True)["prompt"] == text  # what the invocation record stores
    # the prompt row as a file's line would be: spaces around it dropped (one prompt, one folder of images)
    assert [row.prompt for row in read_prompts(cfg.prompt, None)] == [text.strip()]


def test_every_free_text_key_is_literal():
    """concept= of transfer-lora, and ablate's prompt (its sweep parser must not take the comma for a sweep)."""
    from diversity_cli.experiments.sweep import split_overrides

    text = 'a "red" [circle], ${oc.env:HOME}'
    cfg = compose("transfer_lora", [f"concept={text}", f"prompt={text}"])
    assert (cfg.concept, cfg.prompt) == (text, text)
    args = split_overrides([f"prompt={text}", f"measure.diversity.prompt={text}", "k=1..2"]).compose
    cfg = compose("ablate", args)
    assert (cfg.prompt, cfg.measure.diversity.prompt, list(cfg.k)) == (text, text, [1, 2])


def test_prompt_null_means_no_prompt_and_empty_is_refused():
    assert compose("generate", ["prompt=a", "prompt=null"]).prompt is None
    with pytest.raises(UserError, match="prompt is empty"):
        compose("generate", ["prompt="])


def test_literal_prompt_reaches_samples_csv(cli, tmp_path):
    """End to end: the exact text with a comma, brackets, quotes and ${...} is the prompt of the images."""
    import csv

    text = 'a "red" circle, [big] ${oc.env:HOME}'
    out = tmp_path / "run"
    code, _, err = cli("generate", "model=tiny_sd", "method=distilled", f"prompt={text}", "n=1", f"out={out}")
    assert code == 0, err
    with (out / "samples.csv").open(newline="", encoding="utf-8") as f:
        assert [row["prompt"] for row in csv.DictReader(f)] == [text]


def test_k_within_the_schedule():
    assert compose("generate", ["k=4"]).k == 4
    assert compose("generate", ["k=auto"]).k == "auto"
    with pytest.raises(UserError, match=r"k=5 is out of range for toy: its distilled schedule has 4 steps"):
        compose("generate", ["k=5"])
    compose("generate", ["k=5", "method=distilled"])  # k does not matter to the distilled model alone
    with pytest.raises(UserError, match="k=9 is out of range"):
        compose("x0viz", ["k=9"])


def test_explicit_timesteps_with_their_steps_compose_and_bound_k():
    two = ["model.distilled.timesteps=[999,499]", "model.distilled.steps=2"]
    assert list(compose("generate", [*two, "k=2"]).model.distilled.timesteps) == [999, 499]
    with pytest.raises(UserError, match="k=3 is out of range for toy: its distilled schedule has 2 steps"):
        compose("generate", [*two, "k=3"])
    assert compose("generate", ["model.distilled.timesteps=null"]).model.distilled.timesteps is None


def test_training_from_the_base_does_not_need_the_student_weights():
    """distill and train-lora read only the base: a pair whose student does not exist yet composes for them."""
    no_student = ["model=toy", "model.distilled.network=null"]
    compose("distill", [*no_student, "prompt=a"])
    compose("train_lora", no_student)
    with pytest.raises(UserError, match="model.distilled.network names no weights"):
        compose("generate", no_student)


def test_caps_name_the_key_that_lifts_them():
    with pytest.raises(UserError, match=r"n=1000000000 is above the cap max_images=100000.*max_images=N"):
        compose("generate", ["n=1000000000"])
    assert compose("generate", ["n=200000", "max_images=200000"]).n == 200000
    rows = ["a", "b", "c"]
    with pytest.raises(UserError, match=r"3 prompt\(s\) x n=4 is 12 images, above the cap max_images=10"):
        read_prompts(None, _write("\n".join(rows)), n=4, max_images=10)
    assert len(read_prompts(None, _write("\n".join(rows)), n=4, max_images=12)) == 3


_FILES: list[str] = []


def _write(text: str, suffix: str = ".txt", data: bytes | None = None) -> str:
    import tempfile

    handle, name = tempfile.mkstemp(suffix=suffix)
    with os.fdopen(handle, "wb") as f:
        f.write(data if data is not None else text.encode("utf-8"))
    _FILES.append(name)
    return name


@pytest.fixture(autouse=True)
def _cleanup():
    yield
    while _FILES:
        os.unlink(_FILES.pop())


def test_prompts_csv_with_a_byte_order_mark_is_read():
    path = _write("", ".csv", "\ufeffprompt,seed\na red circle,3\n".encode())
    rows = read_prompts(None, path)
    assert [(r.prompt, r.seed) for r in rows] == [("a red circle", 3)]
    path = _write("", ".txt", "\ufeffa blue square\n".encode())
    assert [r.prompt for r in read_prompts(None, path)] == ["a blue square"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("prompt,seed\na red circle,1,extra\n", r":2: this row has 3 field\(s\), the header has 2"),
        ("prompt,seed\na red circle\n", r":2: this row has 1 field\(s\), the header has 2"),
        ("prompt,seed\na,1\nb,-4\n", r":3: seed -4 is negative"),
        ("prompt,seed\na,x\n", r":2: seed 'x' is not an integer"),
        ("caption\na\n", r"has no 'prompt' column \(columns: caption\)"),
    ],
)
def test_bad_prompt_csv_is_one_line(body, message):
    with pytest.raises(UserError, match=message) as err:
        read_prompts(None, _write(body, ".csv"))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("suffix", [".txt", ".csv"])
def test_non_utf8_prompt_file_is_one_line(suffix):
    path = _write("", suffix, b"prompt\ncaf\xe9 au lait\n")
    with pytest.raises(UserError, match=r"is not UTF-8 text \(byte 0xe9 at offset 10\); save it as UTF-8"):
        read_prompts(None, path)


def test_unreadable_prompt_file_is_one_line(monkeypatch):
    from pathlib import Path

    path = _write("a red circle\n")
    os.chmod(path, 0)
    real = Path.read_text

    def read_text(self, *args, **kwargs):  # root reads a chmod 000 file: fail the read as it would for a user
        if str(self) == path:
            raise PermissionError(13, "Permission denied", path)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    with pytest.raises(UserError, match=r"cannot read prompt file .*: Permission denied"):
        read_prompts(None, path)


def test_prompt_folder_is_refused(tmp_path):
    with pytest.raises(UserError, match="is a folder"):
        read_prompts(None, str(tmp_path))


def test_a_shipped_prompt_file_is_found_from_any_directory(tmp_path, monkeypatch):
    """README's prompts=data/toy_prompts.txt: the shipped copy outside the repository, the user's own file first."""
    monkeypatch.chdir(tmp_path)
    shipped = [row.prompt for row in read_prompts(None, "data/toy_prompts.txt")]
    assert len(shipped) == 5 and "a shape" in shipped
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "toy_prompts.txt").write_text("mine\n")
    assert [row.prompt for row in read_prompts(None, "data/toy_prompts.txt")] == ["mine"]
    with pytest.raises(UserError, match=r"prompt file data/no_such_prompts.txt not found \(nor among the shipped"):
        read_prompts(None, "data/no_such_prompts.txt")


def test_ablate_jobs_get_the_prompt_as_typed(tmp_path, monkeypatch):
    """launcher=submitit_local/slurm: the jobs read sweep.yaml; a `${...}` in the prompt must stay text there."""
    from diversity_cli.experiments import ablate
    from diversity_cli.experiments.sweep import split_overrides

    text = "a circle, ${oc.env:HOME} [red]"
    args = [f"prompt={text}", "model=tiny_sd", "n=2", "k=1..2"]  # measure.diversity.prompt: refused, ablate sets it
    cfg = compose("ablate", [*split_overrides(args).compose, "launcher=submitit_local", f"out={tmp_path}"])
    monkeypatch.setattr(ablate.subprocess, "run", lambda argv, check, env: type("Done", (), {"returncode": 0}))
    assert ablate.launch(cfg, ablate.plan_sweep(cfg)) is None
    job = OmegaConf.load(next(tmp_path.rglob("sweep.yaml")))
    assert job.prompt == text


def test_ablate_jobs_key_their_images_as_a_local_run_does(tmp_path, monkeypatch):
    """sweep.yaml held the toy's shipped paths resolved (absolute): a job's images were keyed otherwise than a local
    run's, so a sweep begun locally could not go on through launcher=submitit_local/slurm, nor the other way."""
    from diversity_cli.experiments import ablate
    from diversity_cli.experiments.generation import pair_image_keys
    from diversity_cli.experiments.sweep import split_overrides

    cfg = compose("ablate", [*split_overrides(["model=toy", "k=1..2"]).compose, "launcher=submitit_local"])
    cfg.out = str(tmp_path)
    monkeypatch.setattr(ablate.subprocess, "run", lambda argv, check, env: type("Done", (), {"returncode": 0}))
    assert ablate.launch(cfg, ablate.plan_sweep(cfg)) is None
    job = OmegaConf.load(next(tmp_path.rglob("sweep.yaml")))
    assert OmegaConf.to_container(job.model, resolve=False)["base"]["network"]["path"] == "${asset:toy/base/unet}"
    assert pair_image_keys(job.model) == pair_image_keys(cfg.model)


def test_factor_value_settings_are_typed_as_the_help_shows_them():
    """`concept=color=red` and `classifier_target=color=blue`, as their help writes them, were Hydra parse errors
    ("mismatched input '='"); only a quoted value got through, and nothing said to quote it."""
    assert compose("train_lora", ["concept=color=red"]).concept == "color=red"
    slider = compose("train_lora", ["mode=slider", "concept=color=red", "negative=color=blue"])
    assert slider.negative == "color=blue"
    assert compose("transfer_lora", ["classifier_target=color=blue"]).classifier_target == "color=blue"
    # the quoted form, the only one that got through before, still works
    assert compose("transfer_lora", ["classifier_target='color=blue'"]).classifier_target == "color=blue"
    assert compose("transfer_lora", ["classifier_target=null"]).classifier_target is None


def test_the_last_seed_of_a_prompt_stays_a_seed_the_generators_take(tmp_path):
    """seed=4294967295 n=2 drew sample 2 with seed 4294967296, above the largest seed, without a word."""
    for command in ("generate", "x0viz", "transfer_lora"):
        with pytest.raises(UserError, match="reaches seed 4294967296, above the largest seed 4294967295"):
            compose(command, ["seed=4294967295", "n=2"])
    assert compose("generate", ["seed=4294967294", "n=2"]).seed == 4294967294
    table = tmp_path / "prompts.csv"
    table.write_text("prompt,seed\na red circle,4294967295\n")
    with pytest.raises(UserError, match="reaches seed 4294967296"):
        read_prompts(None, str(table), n=2)
    assert read_prompts(None, str(table), n=1)[0].seed == 4294967295
    # seed= is not checked where a table is given: its rows may bring their own seeds (checked as read)
    table.write_text("prompt,seed\na red circle,5\n")
    assert compose("generate", [f"prompts={table}", "seed=4294967295", "n=2"]).seed == 4294967295
    assert read_prompts(None, str(table), n=2, seed=4294967295)[0].seed == 5
    # a row without a seed of its own takes seed=: checked as read, like a row's
    table.write_text("prompt,seed\na red circle,5\na blue square,\n")
    with pytest.raises(UserError, match="seed 4294967295 with n=2 reaches seed 4294967296"):
        read_prompts(None, str(table), n=2, seed=4294967295)
    assert [row.seed for row in read_prompts(None, str(table), n=2, seed=4294967294)] == [5, None]
    # both too high: both named, so one fix is enough (the table's was named alone, then seed= at the next try)
    table.write_text("prompt,seed\na red circle,4294967295\na blue square,\n")
    with pytest.raises(UserError, match=r"prompts.csv's seed 4294967295 and seed 4294967295 with n=2 reach seed "):
        read_prompts(None, str(table), n=2, seed=4294967295)


def test_a_table_without_seeds_and_the_last_seed_is_one_line(cli, tmp_path):
    """prompts=FILE with seed= near the largest seed passed the schema (a table may carry seeds) and nothing read
    the file against seed=: the second image was drawn with seed 2^32, past the largest, without a word."""
    table = tmp_path / "prompts.txt"
    table.write_text("a red circle\n")
    out = tmp_path / "run"
    code, _, err = cli("generate", "model=toy", f"prompts={table}", "seed=4294967295", "n=2", f"out={out}")
    assert code == 2, err
    assert "seed 4294967295 with n=2 reaches seed 4294967296, above the largest seed 4294967295" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_a_network_path_on_a_tiny_pair_is_refused():
    """A tiny pair builds its networks from seeds: a student's path given there was silently not read (the images
    came from the random network while the record named the student)."""
    with pytest.raises(UserError, match="model.distilled.network: a tiny pair builds its networks in memory"):
        compose("generate", ["model=tiny_sd", "+model.distilled.network={path: /somewhere/student}"])
