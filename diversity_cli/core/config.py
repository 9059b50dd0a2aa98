"""Hydra composition for every command: `conf/<command>.yaml` plus groups such as `conf/model/`."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from .errors import UserError, did_you_mean, first_line
from .resources import asset, conf_root
from .schema import check, escape, literal_keys, rules, show
from .schemas import SCHEMAS
from .schemas.generate import pair_auto_k

CONF_ENV = "DIVERSITY_CLI_CONF"

# `${asset:toy/base}` in a config: a folder shipped inside the package, wherever it is installed.
OmegaConf.register_new_resolver("asset", lambda relative: str(asset(relative)), replace=True)
# `${name:lora_${concept}}`: a value as one folder name ("lora_color-red" for concept=color=red).
OmegaConf.register_new_resolver("name", lambda text: re.sub(r"[^\w.-]+", "-", str(text)).strip("-"), replace=True)


def conf_dir() -> Path:
    """The config tree shipped with the toolkit (the repository's `conf/`, packaged inside the wheel)."""
    return conf_root()


def user_conf_dirs() -> list[Path]:
    """Folders of the user's own configs (`$DIVERSITY_CLI_CONF`, several separated by `:`), searched before the
    shipped tree: a user's `model/my_pair.yaml` there makes `model=my_pair` work without editing the package."""
    dirs = [Path(item).expanduser() for item in os.environ.get(CONF_ENV, "").split(os.pathsep) if item.strip()]
    for path in dirs:
        if not path.is_dir():
            raise UserError(f"{CONF_ENV} names {path}, which is not a directory; give folders of YAML configs")
    return dirs


def search_dirs() -> list[Path]:
    """Every config folder, in the order Hydra searches them: the user's, then the shipped one."""
    return [*user_conf_dirs(), conf_dir()]


def available(group: str) -> list[str]:
    """Entries of a config group, e.g. the model pairs under conf/model/, from every folder of the search path."""
    return sorted({p.stem for folder in search_dirs() for p in (folder / group).glob("*.yaml")})


def _searchpath_override() -> list[str]:
    users = user_conf_dirs()
    if not users:
        return []
    return ["hydra.searchpath=[" + ",".join(f"file://{path.resolve()}" for path in users) + "]"]


SWEPT_KEYS = ("method", "k", "base_guidance", "base_steps")  # what `ablate` sweeps


def pair_config(name: str, preset: str | None = None, overrides: Sequence[str] = ()) -> DictConfig | None:
    """A pair's model config by name (at `preset=`, else the default one; with `model.*` `overrides`, such as a
    local copy's path), or None when no config of that name is on the search path."""
    if name not in available("model"):
        return None
    # method=base: the pair's files alone, not generate's hybrid checks (a one-step card schedule refuses k=1)
    chosen = [f"model={name}", "method=base", *([f"preset={preset}"] if preset else []), *overrides]
    return compose("generate", chosen).model


def pair_differences(
    model: DictConfig, skip: tuple[str, ...] = ()
) -> tuple[dict[str, Any], dict[str, Any], list[str]] | None:
    """The pair config `model` against its config file at its preset: (its settings and the file's, as dotted keys,
    and the keys where they differ, those under a top-level key in `skip` left out); None where no config file has
    the pair's name. Interpolations compare as written: `${asset:...}` paths as typed, not resolved."""
    own = pair_config(str(model.name), model.get("requested_preset"))
    if own is None:
        return None
    mine, theirs = (OmegaConf.to_container(m, resolve=False) for m in (model, own))
    keys = [key for key in differing_keys(mine, theirs) if key.split(".")[0] not in skip]
    return flat_keys(mine), flat_keys(theirs), keys


def pair_overrides(model: DictConfig, skip: str | None = None) -> list[str]:
    """The overrides that make the pair config `model` from its config file at its preset (`model.base.guidance=5`,
    `+model.components.path=/x`, `~model.key`, and the preset's `preset=card`), keys under `skip` (`distilled`)
    left out; [] where no config file has the pair's name."""
    found = pair_differences(model, ("preset", "requested_preset", *([skip] if skip else [])))
    if found is None:
        return []
    flat, known, keys = found
    preset = model.get("requested_preset")
    overrides = [f"preset={preset}"] if preset else []
    for key in keys:
        if key not in flat:
            overrides.append(f"~model.{key}")
        else:
            overrides.append(f"{'' if key in known else '+'}model.{key}={show(flat[key])}")
    return overrides


def compose(command: str, overrides: list[str] | None = None, checked: bool = True) -> DictConfig:
    """Compose `conf/<command>.yaml` with Hydra-style overrides (`model=sdxl_dmd2 k=2 n=16`), then check every key
    against the command's schema (core/schemas/): a bad value is one UserError before anything runs.

    Free-text keys (`prompt=`, `concept=`) are taken verbatim, never parsed by Hydra: commas, brackets, quotes and
    `${...}` are part of the text (`prompt=null` alone means no prompt). `checked=False`: the keys alone, for a
    did-you-mean (the schema's checks of a pair's scheduler settings import diffusers, seconds before the answer)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    schema = SCHEMAS.get(command)
    _refuse_deleted_keys(schema, list(overrides or []))
    given = _given_keys(list(overrides or []))
    typed = typed_values(list(overrides or []))  # a schema error echoes these, not Hydra's reading of them
    overrides, texts = _split_literal(list(overrides or []), schema)
    _check_group_choices(overrides)
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            cfg = hydra_compose(config_name=command, overrides=[*_searchpath_override(), *overrides])
    except (HydraException, OmegaConfBaseException, ValueError) as err:
        first = first_line(err)
        ambiguous = re.match(r"Ambiguous value for argument '([^=']+)=(.*)'", first)
        if ambiguous:  # Hydra's wording for a comma: a sweep, which it runs only with -m
            key, value = ambiguous.groups()
            sweep = " (ablate sweeps it: diversity-cli ablate ...)" if key in SWEPT_KEYS else ""
            raise UserError(
                f"{key}={value}: a key takes one value here; a comma-separated list is a sweep{sweep}, or run the "
                "command once per value"
            ) from None
        raise UserError(f"bad override for '{command.replace('_', '-')}': {first}{_parse_hint(first)}") from None
    except yaml.YAMLError as err:  # a config file of the user's (DIVERSITY_CLI_CONF) that is not YAML
        raise UserError(yaml_problem(err)) from None
    OmegaConf.set_readonly(cfg, False)
    for key, value in texts.items():
        OmegaConf.update(cfg, key, None if value == "null" else escape(value), merge=False)
    pair_auto_k(cfg, given)  # the pair's own k=auto settings, under what the user typed
    _refuse_absent_paper_preset(cfg, overrides)
    if schema is not None and checked:
        try:
            check(schema, cfg)
        except UserError as err:
            raise as_typed(err, cfg, typed) from None
    return cfg


def _refuse_absent_paper_preset(cfg: DictConfig, overrides: list[str]) -> None:
    """`preset=paper` typed for a pair the paper's code never ran (the flow-matching pairs sample as their cards
    say): the default's files are absent, so the pair's own preset was composed without a word."""
    typed = [item.partition("=")[2] for item in overrides if item.partition("=")[0].lstrip("+~") == "preset"]
    model = cfg.get("model")
    if typed and typed[-1] == "paper" and isinstance(model, DictConfig) and model.get("preset") not in (None, "paper"):
        raise UserError(
            f"model '{model.name}' has no preset 'paper' (the paper's code does not run it); it samples as its "
            f"{model.preset} preset: leave preset out or write preset={model.preset}"
        )


def _parse_hint(message: str) -> str:
    """What Hydra's parser errors mean for a command line: a word with no `=` (a value's spaces split it from its
    key), or brackets and quotes that do not close."""
    if match := re.match(r"Error parsing override '([^'=]*)'$", message):
        return (
            f": '{match[1]}' is no key=value; a value with spaces is quoted whole on the shell, prompt=\"a red circle\""
        )
    if "no viable alternative" in message or "mismatched input" in message or "extraneous input" in message:
        return "; a list is [a,b] with its brackets closed, and a value with spaces in it quoted, key='[\"a b\",c]'"
    return ""


def flat_keys(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A nested mapping as {dotted key: leaf value}, the form overrides and messages name keys in."""
    if not isinstance(tree, dict):
        return {prefix.rstrip("."): tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(flat_keys(value, f"{prefix}{key}."))
    return flat


def differing_keys(mine: dict, theirs: dict) -> list[str]:
    """The dotted keys whose values differ between two nested settings (one missing counts), sorted."""
    a, b = flat_keys(mine), flat_keys(theirs)
    return sorted(key for key in set(a) | set(b) if a.get(key) != b.get(key))


def value_differences(old: Any, new: Any, where: str = "", skip: tuple[str, ...] = ()) -> list[str]:
    """The dotted keys at which two nested settings differ, each as `key=<then> then, <now> now` (a list as the
    command line writes it, [a,b]); keys named in `skip` are left out at any depth."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = [key for key in dict.fromkeys([*old, *new]) if key not in skip]
        inner = f"{where}." if where else ""
        return [d for key in keys for d in value_differences(old.get(key), new.get(key), f"{inner}{key}", skip)]
    return [] if old == new else [f"{where}={_as_typed(old)} then, {_as_typed(new)} now"]


def _as_typed(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ",".join(map(_as_typed, value)) + "]"
    return str(value)


def yaml_problem(err: Exception) -> str:
    """One line for a config file that does not parse: the file, line and column, and what the parser expected."""
    mark = getattr(err, "problem_mark", None)
    where = f"{mark.name}:{mark.line + 1}:{mark.column + 1}" if mark is not None else "a config file"
    problem = getattr(err, "problem", None) or first_line(err)
    return f"{where} is not valid YAML ({problem}); fix the file or take it off DIVERSITY_CLI_CONF"


def typed_values(overrides: list[str]) -> dict[str, str]:
    """{dotted key: its value as the user typed it} (`n=1e3` -> {"n": "1e3"}; `+`, `++` stripped, `~k` left out;
    the last one wins, as in Hydra)."""
    typed = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and not key.startswith("~"):
            typed[key.lstrip("+")] = value
    return typed


def as_typed(err: UserError, cfg: DictConfig, typed: dict[str, str]) -> UserError:
    """A schema error shows a value as Hydra parsed it (`n=1e3` became 1000.0, `n=TRUE` true): the line echoes
    what the user typed instead, so they recognise their own input; any other message is left as it is."""
    message = str(err)
    key = message.partition("=")[0]
    if key not in typed:
        return err
    from omegaconf.errors import OmegaConfBaseException

    try:
        parsed = f"{key}={show(OmegaConf.select(cfg, key))}"
    except OmegaConfBaseException:  # a value that does not read (a broken interpolation): the message as it was
        return err
    rest = message[len(parsed) :]
    if not message.startswith(parsed) or rest[:1] not in ("", ":", " ") or parsed == f"{key}={typed[key]}":
        return err
    return UserError(f"{key}={typed[key]}{rest}")


def _refuse_deleted_keys(schema: type | None, overrides: list[str]) -> None:
    """`~k`: Hydra deletes the key, and the command then failed reading it (a traceback). A command's own keys are
    set, never deleted; a pair's (`~model.resolution`) are checked as missing by the schema."""
    from dataclasses import fields

    own = {item.name for item in fields(schema)} if schema is not None else set()
    for item in overrides:
        key = item.partition("=")[0].removeprefix("~")
        if item.startswith("~") and key in own:
            raise UserError(f"~{key} deletes a key the command reads; set it instead ({key}=...)")


def _given_keys(overrides: list[str]) -> set[str]:
    """The dotted keys the user set on the command line (`+`, `++` and `~` stripped)."""
    return {item.partition("=")[0].lstrip("+~") for item in overrides}


def _split_literal(overrides: list[str], schema: type | None) -> tuple[list[str], dict[str, str]]:
    """(the overrides Hydra parses, {free-text key: its text as typed}); `a,b` of a list key becomes `[a,b]`."""
    literal = literal_keys(schema) if schema else set()
    lists = {key for key, rule in rules(schema) if rule.kind == "list" and rule.split} if schema else set()
    parsed, texts = [], {}
    for item in overrides:
        key, sep, value = item.partition("=")
        bare = key.lstrip("+")
        if sep and not key.startswith("~") and bare in literal:
            texts[bare] = value
        elif sep and bare in lists and "," in value and not value.lstrip().startswith(("[", "'", '"')):
            parsed.append(f"{key}=[{value}]")  # methods=base,hybrid is a list, not a Hydra sweep
        else:
            parsed.append(item)
    return parsed, texts


def describe(command: str) -> list[tuple[str, str, object, str]]:
    """(key, type, default, help) of every key of a command's config (`conf/<command>.yaml`), sections expanded
    to dotted keys (`grid.thumb`): what `--help` lists. Defaults come from the composed YAML."""
    cfg = compose(command)
    rows = []
    for key, rule in rules(SCHEMAS[command]):
        if rule.kind == "section":
            continue
        default = OmegaConf.select(cfg, key, default=None)
        if OmegaConf.is_config(default):
            default = OmegaConf.to_container(default, resolve=False)
        rows.append((key, rule.describe(), default, rule.help))
    return rows


def _check_group_choices(overrides: list[str]) -> None:
    # Hydra's own message for an unknown group entry is a multi-line listing; users want the valid names.
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.lstrip("+~")
        if sep and not key:  # `=3`: no key at all (the conf folder itself would read as a group)
            raise UserError(f"'{item}' names no key: write key=value (diversity-cli <command> --help lists them)")
        if sep and any((folder / key).is_dir() for folder in search_dirs()) and "," not in value:
            names = available(key)
            if value not in names:
                raise UserError(
                    f"unknown {key} '{value}'{did_you_mean(value, names) or ';'} choose one of: {', '.join(names)}"
                )
