"""What the CLI tells a user before any work: help built from the command's config, Hydra's habits (`--cfg job`,
`--info`, `-m`, `hydra.run.dir`, `+key`) and unknown keys with a "did you mean".

Help lists every key of the composed config with its type, default and the one-line comment the YAML gives it,
so the help can never drift from what the command reads. Groups (`model`, `preset`, `distill`) list their choices.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from ..core.config import available, compose, search_dirs, typed_values
from ..core.errors import UserError
from ..core.pair_settings import pair_reads

GROUPS = ("model", "preset", "distill")  # config groups a user picks by name (listed as choices, not keys)
HELP_FLAGS = ("--help", "-h")
CFG_FLAGS = ("--cfg", "-c")
INFO_FLAGS = ("--info",)
MULTIRUN_FLAGS = ("-m", "--multirun")
_KEY_LINE = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z_\"'][\w.\"'@-]*)\s*:(?P<rest>.*)$")


# --------------------------------------------------------------------------------------------- flags


def hydra_flag(overrides: list[str]) -> tuple[str | None, list[str]]:
    """The Hydra-style flag among the arguments (help, cfg, info, multirun) and the arguments without it."""
    rest = list(overrides)
    for flag in (*HELP_FLAGS, *INFO_FLAGS, *MULTIRUN_FLAGS):
        if flag in rest:
            rest.remove(flag)
            return flag, rest
    for flag in CFG_FLAGS:
        if flag in rest:
            at = rest.index(flag)
            which = rest[at + 1] if at + 1 < len(rest) else ""
            if which not in ("job", "all", "hydra"):
                raise UserError(f"{flag} takes job, all or hydra (e.g. {flag} job); got '{which or 'nothing'}'")
            del rest[at : at + 2]
            return "--cfg", rest
    stray = [item for item in rest if item.startswith("-")]
    if stray:
        raise UserError(f"unknown option {stray[0]}; options: --help, --cfg job, --info (everything else is key=value)")
    return None, rest


def refuse_hydra_keys(command: str, overrides: list[str]) -> None:
    """`hydra.run.dir` and friends: these commands write to `out=`, never to a Hydra output folder; nor do they read
    Hydra's config groups (`hydra/launcher=slurm` ran locally): a launcher is `launcher=`."""
    for item in overrides:
        key, _, value = item.lstrip("+~").partition("=")
        if key == "hydra/launcher":  # Hydra's launcher group: never read, the run stayed local without a word
            raise _launcher_pointer(command, value)
        if key.startswith("hydra/") and command == "ablate":
            continue  # other Hydra groups go to ablate's multirun (launcher_overrides)
        if key.startswith("hydra.launcher.") and command != "ablate" and _takes_launcher(command):
            setting = key.removeprefix("hydra.launcher.")
            raise UserError(
                f"{key} is ablate's spelling; {command} takes the launcher's settings as "
                f"+launcher_params.{setting}={value or '...'} (with launcher=slurm)"
            )
        if not key.startswith(("hydra.", "hydra/")):
            continue
        if command == "ablate" and key.startswith(("hydra.launcher.", "hydra.sweep.", "hydra.sweeper.")):
            continue  # ablate's SLURM multirun takes these (launcher_overrides)
        raise UserError(
            f"{key} is not used: every command writes into its run directory, out=<folder> (e.g. out=results/x)"
        )


def _takes_launcher(command: str) -> bool:
    """The command has a `launcher=` key (it runs as shards or jobs: generate, fid, diversity, ...)."""
    from . import COMMANDS

    config = next((item.config for item in COMMANDS if item.name == command), "")
    path = search_dirs()[-1] / f"{config}.yaml"
    return bool(config) and path.is_file() and "launcher" in OmegaConf.load(path)


def _launcher_pointer(command: str, value: str) -> UserError:
    """`hydra/launcher=X`: Hydra's group, which compose loads and nothing reads; the toolkit's key is launcher=."""
    from . import COMMANDS

    name = value or "slurm"
    if not _takes_launcher(command):
        takers = ", ".join(item.name for item in COMMANDS if _takes_launcher(item.name))
        return UserError(
            f"hydra/launcher={value} is not used: {command} runs in this process (launcher= is for {takers})"
        )
    settings = "hydra.launcher.<key>=..." if command == "ablate" else "+launcher_params.<key>=..."
    return UserError(
        f"hydra/launcher={value} is Hydra's own setting and does not choose where {command} runs; write "
        f"launcher={name} (settings: conf/hydra/launcher/{name}.yaml, per run {settings})"
    )


# commands whose runs ablate sweeps (its points are generate runs, measured); the others run one setting a call
SWEPT_BY_ABLATE = ("generate", "diversity", "fid", "x0viz", "ablate")


def multirun_pointer(command: str) -> UserError:
    if command not in SWEPT_BY_ABLATE:  # ablate sweeps sampling knobs, not a training's or a report's settings
        return UserError(
            f"-m/--multirun is not supported: {command} runs one setting a call; run it once per value (each into "
            "its own out=), on a cluster as one job each"
        )
    return UserError(
        f"-m/--multirun is not how {command} sweeps; use `diversity-cli ablate k=1..4 base_guidance=0,5 ...` "
        "(sweeps method, k, base_guidance, base_steps; launcher=slurm for one job per point)"
    )


# ----------------------------------------------------------------------------------------- key checks


def leaf_keys(cfg: DictConfig, prefix: str = "") -> dict[str, Any]:
    """Every key of the config as a dotted path -> its default (unresolved)."""
    keys: dict[str, Any] = {}
    for key in cfg.keys():
        path = f"{prefix}{key}"
        node = cfg._get_node(key)
        if isinstance(node, DictConfig) and len(node) > 0:
            keys.update(leaf_keys(node, path + "."))
        else:
            value = OmegaConf.to_container(node, resolve=False) if isinstance(node, (DictConfig, ListConfig)) else None
            keys[path] = value if value is not None else node._value()
    return keys


def _parent_exists(cfg: DictConfig, key: str) -> bool:
    """`key`'s section exists, or the nearest section above it that exists is an open one (empty by default, as
    `launcher_params`): `+launcher_params.additional_parameters.mail_user=x` adds a group inside it."""
    parent = key.rpartition(".")[0]
    while parent:
        found = OmegaConf.select(cfg, parent, default=None)
        if found is not None:
            return isinstance(found, DictConfig) and (parent == key.rpartition(".")[0] or len(found) == 0)
        parent = parent.rpartition(".")[0]
    return False


def _open_section(cfg: DictConfig, key: str) -> bool:
    """`key` would go inside a section that holds no keys by default (launcher_params, a scheduler's overrides)."""
    parent = key.rpartition(".")[0]
    found = OmegaConf.select(cfg, parent, default=None) if parent else None
    return isinstance(found, DictConfig) and len(found) == 0


def check_keys(config: str, overrides: list[str], only_added: bool = False) -> None:
    """Unknown keys fail with the nearest known ones; `+key` only adds a key inside a section that exists.
    `only_added`: check the `+key` items only (the others go to Hydra, which checks them itself)."""
    choices = [item for item in overrides if item.partition("=")[0].lstrip("+~") in GROUPS]
    cfg = compose(config, choices, checked=False)  # its keys: what the user's are checked against
    known = leaf_keys(cfg)
    sections = {path.rsplit(".", i)[0] for path in known for i in range(1, path.count(".") + 1)}
    for item in overrides:
        raw, sep, _ = item.partition("=")
        key = raw.lstrip("+~")
        if (
            not sep
            or key in GROUPS
            or key.startswith("hydra.")
            or "@" in key
            or (not raw.startswith("+") and only_added)
        ):
            continue
        if raw.startswith("+"):
            if key in known or key in sections:
                raise UserError(f"{key} already exists: write {key}=... without the +")
            if not _parent_exists(cfg, key):
                raise UserError(
                    f"+{key} adds a key no part of '{config.replace('_', '-')}' reads{_suggest(key, known)}"
                )
            continue
        if key not in known and key not in sections:
            if _open_section(cfg, key):  # Hydra sets only keys that exist; + adds one
                raise UserError(f"{key} is not set by default: add it with +{item}")
            hint = _other_choice(config, choices, key) or _suggest(key, known)
            # a pair's file sets some of the keys others read (a network's `path` beside its `repo`): `+` adds one;
            # a key no pair reads is not offered (added, the pair's check refused it)
            added = ""
            if key.startswith("model.") and _parent_exists(cfg, key) and pair_reads(key):
                added = f"{' A' if hint.endswith('?') else '; a'} pair reads it where set: add it with +{item}"
            raise UserError(
                f"unknown key '{key}' for '{config.replace('_', '-')}'{hint}{added} (--help lists every key)"
            )


def _other_choice(config: str, choices: list[str], key: str) -> str:
    """Where `key` belongs to another choice of a group the command composes (`lambda_div` to distill=dp_dmd), the
    choice to add: a did-you-mean would offer the nearest keys of this one."""
    from ..core.config import available, conf_dir

    chosen = {item.partition("=")[0].lstrip("+~") for item in choices}
    defaults = OmegaConf.load(conf_dir() / f"{config}.yaml").get("defaults") or []
    groups = {name for entry in defaults if isinstance(entry, DictConfig) for name in entry}
    for group in ("distill",):  # a model's keys live under model.*, where the nearest ones are the right advice
        if group in chosen or group not in groups:
            continue
        for choice in available(group):
            if key in leaf_keys(compose(config, [*choices, f"{group}={choice}"], checked=False)):
                return f"; {key} is a setting of {group}={choice}: add {group}={choice}"
    return ""


def _suggest(key: str, known: dict[str, Any]) -> str:
    names = list(known)
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.6)
    if not close:  # a wrong section but a right leaf (e.g. metric vs measure.diversity.metric)
        leaf = key.rpartition(".")[2]
        close = [name for name in names if name.rpartition(".")[2] == leaf][:3]
    return f"; did you mean {' or '.join(close)}?" if close else ""


# --------------------------------------------------------------------------------------------------- help


def yaml_comments(path: Path) -> dict[str, str]:
    """dotted key -> the first line of the comment beside it in a YAML file (continuation lines ignored)."""
    comments: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in path.read_text().splitlines():
        match = _KEY_LINE.match(line)
        if not match or line.lstrip().startswith(("#", "-")):
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = match["key"].strip("\"'")
        stack.append((indent, key))
        rest = match["rest"]
        if "#" in rest and not rest.strip().startswith(('"', "'")):
            comments[".".join(name for _, name in stack)] = rest.split("#", 1)[1].strip()
    return comments


def config_comments(config: str) -> dict[str, str]:
    """Comments of the command's YAML and of the files its `defaults` list pulls in (`diversity@measure.diversity`)."""
    root = search_dirs()[-1]
    comments: dict[str, str] = {}
    path = root / f"{config}.yaml"
    if not path.is_file():
        return comments
    raw = OmegaConf.load(path)
    for entry in raw.get("defaults") or []:
        if isinstance(entry, str) and entry != "_self_" and (root / f"{entry.split('@')[0]}.yaml").is_file():
            name, _, package = entry.partition("@")
            prefix = f"{package}." if package else ""
            comments.update({prefix + k: v for k, v in config_comments(name).items()})
    comments.update(yaml_comments(path))
    return comments


def _type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "dict"
    if value is None:
        return "any"
    return "str"


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        text = "[" + ", ".join(_show(item) for item in value) + "]"
    elif isinstance(value, dict):
        text = "{" + ", ".join(f"{key}: {_show(item)}" for key, item in value.items()) + "}"
    else:
        text = " ".join(str(value).split())
    return text if len(text) <= 40 else text[:37] + "..."


def _comment_for(key: str, comments: dict[str, str]) -> str:
    parts = key.split(".")
    for cut in range(len(parts), 0, -1):  # a leaf without a comment takes its section's
        found = comments.get(".".join(parts[:cut]))
        if found:
            return found if cut == len(parts) else f"({'.'.join(parts[:cut])}: {found})"
    return ""


def schema_rules(config: str) -> dict[str, tuple[str, str]]:
    """dotted key -> (type in words, one-line help) from the command's typed schema, when it has one."""
    try:
        from ..core.schema import rules
        from ..core.schemas import SCHEMAS
    except ImportError:
        return {}
    schema = SCHEMAS.get(config)
    return {key: (rule.describe(), rule.help) for key, rule in rules(schema)} if schema else {}


def key_rows(config: str, groups: list[str] | None = None) -> list[tuple[str, str, str, str]]:
    """(key, type, default, help) for every key of the command except the groups' own contents: type and help
    from the typed schema, else from the value and the comment beside the key in the YAML. `groups`: choices of
    its config groups (`distill=dp_dmd`), whose keys join the list."""
    cfg = compose(config, list(groups or []), checked=False)  # its keys and defaults: the checks import diffusers
    comments = config_comments(config)
    typed = schema_rules(config)
    rows = []
    for key, value in leaf_keys(cfg).items():
        if key.split(".")[0] in GROUPS and key != "preset":
            continue
        same = re.fullmatch(r"\$\{([\w.]+)\}", value) if isinstance(value, str) else None  # `${diversity_metrics}`
        kind = typed[same.group(1)][0] if same and same.group(1) in typed else _type(_resolved(cfg, key, value))
        kind, meaning = typed.get(key, (kind, _comment_for(key, comments)))
        if kind.startswith("list[") and "|" not in kind and isinstance(value, str) and "${" not in value:
            value = [value]  # as the schema's check would make it (`metric: auto` is [auto]), unchecked here
        rows.append((key, kind, _default(cfg, key, value), meaning or _comment_for(key, comments)))
    return rows


def _default(cfg: DictConfig, key: str, value: Any) -> str:
    """A default as shown: one that follows other keys (`results/${name:${mode}_${concept}}`) as its value now
    and the keys it follows, `results/lora_red (from mode, concept)`."""
    if not (isinstance(value, str) and "${" in value):
        return _show(value)
    follows = [name for name in re.findall(r"\$\{(?:\w+:)*([A-Za-z_][\w.]*)\}", value) if name in leaf_keys(cfg)]
    if not follows:
        return _show(value)
    return f"{_show(_resolved(cfg, key, value))} (from {', '.join(dict.fromkeys(follows))})"


def _resolved(cfg: DictConfig, key: str, value: Any) -> Any:
    """The value a default that follows other keys (`${diversity_metrics}`) takes now, as plain data: its type and
    how it shows are those of what it follows, not of the string that names it."""
    if not (isinstance(value, str) and "${" in value):
        return value
    found = OmegaConf.select(cfg, key)
    return OmegaConf.to_container(found, resolve=True) if isinstance(found, (DictConfig, ListConfig)) else found


def group_choices(config: str) -> dict[str, list[str]]:
    """The config groups this command takes and their entries (model pairs, presets, distillation methods)."""
    defaults = OmegaConf.load(search_dirs()[-1] / f"{config}.yaml").get("defaults") or []
    groups = []
    for entry in defaults:
        if hasattr(entry, "keys"):
            groups += [str(key) for key in entry.keys() if str(key) in GROUPS]
    return {group: available(group) for group in groups}


def command_help(
    name: str,
    description: str,
    config: str,
    pair_lines: list[str],
    arguments: list[str] | None = None,
    set_by_it: Iterable[str] = (),
    not_taken: dict[str, str] | None = None,
) -> str:
    """The whole `diversity-cli COMMAND --help` text; a group chosen among `arguments` (`distill=dp_dmd`) lists
    the keys that choice brings (a choice it does not have: the defaults' keys). `set_by_it`: keys of its config the
    command sets itself (ablate's measure.diversity.out for every point): named apart, not listed as keys to give.
    `not_taken`: keys of its config it refuses, each with why (ablate's shards=: it runs every point whole)."""
    choices = group_choices(config)
    chosen = [arg for arg in arguments or [] if arg.partition("=")[0] in choices and arg.partition("=")[0] != "model"]
    try:
        rows = key_rows(config, chosen)
    except UserError:
        chosen, rows = [], key_rows(config)
    set_by_it, not_taken = sorted(set_by_it), not_taken or {}  # each read twice below
    hidden = {*set_by_it, *not_taken}
    rows = [row for row in rows if row[0] not in hidden]
    width = min(36, max((len(row[0]) for row in rows), default=10))  # a longer key overflows its column
    kinds = min(24, max((len(row[1]) for row in rows), default=5))
    lines = [f"Usage: diversity-cli {name} [key=value ...] [--cfg job] [--info]", "", description, ""]
    for group, names in choices.items():
        if group == "model":
            lines.append("model=<pair> (default toy), one of:")
            lines += [f"  {line}" for line in pair_lines]
            # a pair's own keys (steps, guidance, schedulers, weights' places) are not listed below
            lines.append(f"  its keys: model.<key>=... (`diversity-cli {name} model=<pair> --cfg job` prints them)")
        else:
            keyed = group not in ("model", "preset")  # their keys are the pair's (model.*), not listed here
            hint = f" ({group}=<name> --help: that one's keys)" if keyed else ""
            lines.append(f"{group}=<name>, one of: {', '.join(names)}{hint}")
        lines.append("")
    lines.append("Keys (key  type  default  meaning):")
    for key, kind, default, meaning in rows:
        lines.append(f"  {key:<{width}}  {kind:<{kinds}}  {default:<16}  {meaning}".rstrip())
    if set_by_it:
        lines += ["", f"Set by {name} itself (not keys to give): {', '.join(set_by_it)}"]
    for why in dict.fromkeys(not_taken.values()):
        keys = sorted(key for key, reason in not_taken.items() if reason == why)
        lines += ["", f"Not taken by {name} ({why}): {', '.join(keys)}"]
    lines += [
        "",
        "--cfg job: print the composed config and exit; --info: the config search path.",
        "Lists: key=[a,b]; nested keys: section.key=value; +section.key=value adds a key inside a section.",
    ]
    return "\n".join(lines)


def info(config: str) -> str:
    """`--info`: where configs come from and what each group offers."""
    lines = ["Config search path (first wins):"]
    lines += [f"  {folder}" for folder in search_dirs()]
    lines.append(f"Primary config: {config}.yaml")
    for group, names in group_choices(config).items():
        lines.append(f"Group {group}: {', '.join(names)}")
    lines.append("Add folders with DIVERSITY_CLI_CONF=/my/conf[:/other] (e.g. /my/conf/model/my_pair.yaml).")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ ignored keys

# A command's keys that only some of its methods (modes) read: key -> (the key that chooses, the choices that read
# it), e.g. generate's {"k": ("method", ("hybrid", "replace_final"))}; `key=value` for one value of it, checked first
# where listed first (generate's "k=auto": the hybrid's alone).
ReadOnlyBy = dict[str, tuple[str, tuple[str, ...]]]


def refuse_ignored(config: str, cfg: DictConfig, arguments: list[str], read_only_by: ReadOnlyBy) -> None:
    """A key set on the command line that the chosen method (mode) never reads is refused: the run would not be
    the one the user believes they measured. A value equal to the default changes nothing and passes, so a script
    holding the knobs fixed over every method (`for m in base hybrid: method=$m k=1`) keeps working; so does the
    default itself. An ablate sweep over methods passes when one of them reads the key."""
    given = typed_values(arguments)
    for entry, (chooser, readers) in read_only_by.items():
        key, _, value = entry.partition("=")
        if key not in given or (value and str(given[key]) != value):
            continue
        chosen = cfg.get(chooser)
        chosen = [str(item) for item in chosen] if isinstance(chosen, ListConfig) else [str(chosen)]
        if any(item in readers for item in chosen):
            continue
        if _as_default(config, cfg, arguments, key):
            continue
        options = f"{chooser}={' or '.join(readers)}"
        raise UserError(
            f"{key}={given[key]} applies to {options} only; {chooser}={','.join(chosen)} ignores it "
            f"(drop {key}={given[key]}, or choose {options})"
        )


def _as_default(config: str, cfg: DictConfig, arguments: list[str], key: str) -> bool:
    """`key` holds what the command's config gives it when not set (with the same model, preset and distill)."""
    choices = [item for item in arguments if item.partition("=")[0].lstrip("+~") in GROUPS]
    default = OmegaConf.select(compose(config, choices), key, default=None)
    value = OmegaConf.select(cfg, key, default=None)  # a dotted key (auto_k.n) too
    value = OmegaConf.to_container(value) if isinstance(value, ListConfig) else value
    return value == default
