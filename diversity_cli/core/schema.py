"""Typed configs: every key of a command's config has a rule (type, range, choices, help), checked once when the
config is composed, so bad input fails with one line before any model loads.

A command's schema is a dataclass (one module per command under `core/schemas/`) whose fields carry a `Rule` in
their metadata; the YAML under `conf/` keeps the defaults. Fields are built with the helpers below (`flag`,
`integer`, `number`, `choice`, `text`, `path`, `out_dir`, `device`, `items`, `anything`, `section`), each with a
one-line help that `--help` shows. `check(schema, cfg)` converts what Hydra parsed into the declared type in place
(`overwrite=no` -> False, `methods=base` -> [base]) or raises `UserError` naming the key, the value and what is
allowed. Keys a schema does not declare pass through unchecked (tests/test_config_schema.py makes sure there are
none); declared keys absent from a config (e.g. a `distill=dp_dmd`-only key) are skipped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import UserError, did_you_mean, first_line

TRUE = ("true", "yes", "on")
FALSE = ("false", "no", "off")
DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
INTERPOLATION = re.compile(r"(\\*)\$\{")


@dataclass(frozen=True)
class Rule:
    """What one key accepts. `kind`: flag | int | float | choice | text | name | path | out | device | list | any |
    section. `also`: extra literal values besides the type (e.g. k's "auto"); `cap`: the root key whose value
    bounds this one (e.g. n <= max_images)."""

    kind: str
    help: str
    null: bool = False
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    options: tuple = ()
    also: tuple = ()
    item: Rule | None = None  # list items
    split: bool = False  # list: a string "a,b" is the list [a, b]
    min_items: int = 0
    max_items: int | None = None
    cap: str | None = None
    literal: bool = False  # text: taken verbatim from the command line (commas, brackets, quotes, ${...})
    schema: type | None = None  # section: its dataclass

    def describe(self) -> str:
        """The type in words, as `--help` shows it."""
        words = {
            "flag": "bool",
            "text": "text",
            "name": "str",
            "spec": "str",
            "path": "path",
            "out": "folder",
            "device": "auto|cpu|cuda[:N]|mps",
            "any": "any",
            "section": "section",
        }.get(self.kind)
        if self.kind in ("int", "float"):
            words = self.kind + self._range()
        elif self.kind == "choice":
            words = "|".join(map(str, self.options))
        elif self.kind == "list":
            words = f"list[{self.item.describe() if self.item else 'any'}]"
        elif self.kind == "sweep":
            words = f"{self.item.describe()} (or a sweep: 1..4, a,b, range(..), choice(..))"
        extra = [str(a) for a in self.also] + (["null"] if self.null and self.kind != "sweep" else [])
        return " | ".join([words or self.kind, *extra])

    def _range(self) -> str:
        """ " from 1 to 64", " >= 0", " > 0 and < 1", plus the cap key: " <= max_images"."""
        low = None if self.low is None else f"{'>' if self.low_open else '>='} {_num(self.low)}"
        high = None if self.high is None else f"{'<' if self.high_open else '<='} {_num(self.high)}"
        if low and high:
            closed = not (self.low_open or self.high_open)
            words = f" from {_num(self.low)} to {_num(self.high)}" if closed else f" {low} and {high}"
        else:
            words = f" {low or high}" if low or high else ""
        return words + (f" <= {self.cap}" if self.cap else "")


def _rule(kind: str, help: str, **options: Any) -> Any:
    return field(metadata={"rule": Rule(kind, help, **options)})


def flag(help: str, also=()) -> Any:
    """true / false (also yes / no, on / off); anything else is an error."""
    return _rule("flag", help, also=tuple(also))


def integer(
    help: str, low: int | None = None, high: int | None = None, null: bool = False, cap: str | None = None, also=()
) -> Any:
    return _rule("int", help, low=low, high=high, null=null, cap=cap, also=tuple(also))


def number(
    help: str,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    null: bool = False,
) -> Any:
    return _rule("float", help, low=low, high=high, low_open=low_open, high_open=high_open, null=null)


def choice(help: str, options: Sequence, null: bool = False) -> Any:
    return _rule("choice", help, options=tuple(options), null=null)


def text(help: str, null: bool = True) -> Any:
    """Free text (a prompt, a concept), taken verbatim from the command line."""
    return _rule("text", help, null=null, literal=True)


def name(help: str, null: bool = False, also=()) -> Any:
    """A non-empty name or specification (a model id, an embedder, `module:factory`)."""
    return _rule("name", help, null=null, also=tuple(also))


def spec(help: str, null: bool = False) -> Any:
    """A specification holding `=` (`color=red`), taken as typed, so Hydra does not read the `=`; a pair of quotes
    around it, the only form Hydra let through, is dropped."""
    return _rule("spec", help, null=null, literal=True)


def path(help: str, null: bool = False) -> Any:
    """A file or folder to read (its existence is checked by the command that reads it)."""
    return _rule("path", help, null=null)


def out_dir(help: str, null: bool = False) -> Any:
    """A folder the command writes: not empty, not an existing file."""
    return _rule("out", help, null=null)


def device(help: str = "where to run: auto (a GPU when there is one), cpu, cuda, cuda:N or mps") -> Any:
    return _rule("device", help)


def items(
    help: str,
    item: Rule | None = None,
    split: bool = False,
    min_items: int = 0,
    null: bool = False,
    also=(),
    max_items: int | None = None,
) -> Any:
    """A list; a single value becomes a one-item list (with `split`, a string "a,b" becomes [a, b])."""
    return _rule(
        "list", help, item=item, split=split, min_items=min_items, max_items=max_items, null=null, also=tuple(also)
    )


def sweep(help: str, item: Rule) -> Any:
    """An `ablate` knob: one value or a list of values, each as `item`; sweep strings (1..4, range(..), a,b) are
    left to the sweep parser."""
    return _rule("sweep", help, item=item, null=item.null)


def anything(help: str) -> Any:
    """An open value (a model pair's settings, a table mapping): checked where it is used."""
    return _rule("any", help)


def section(schema: type, help: str, null: bool = False) -> Any:
    return _rule("section", help, schema=schema, null=null)


def item_int(low: int | None = None, high: int | None = None) -> Rule:
    return Rule("int", "", low=low, high=high)


def item_float(low: float | None = None, high: float | None = None, high_open: bool = False) -> Rule:
    return Rule("float", "", low=low, high=high, high_open=high_open)


def item_choice(options: Sequence) -> Rule:
    return Rule("choice", "", options=tuple(options))


ITEM_NAME = Rule("name", "")
ITEM_TEXT = Rule("text", "")


# ------------------------------------------------------------------------------------------------ checking


def rules(schema: type, prefix: str = "") -> list[tuple[str, Rule]]:
    """Every key of a schema, dotted (`grid.thumb`), sections expanded, in declaration order."""
    found = []
    for item in fields(schema):
        rule = item.metadata["rule"]
        found.append((prefix + item.name, rule))
        if rule.kind == "section":
            found += rules(rule.schema, f"{prefix}{item.name}.")
    return found


def literal_keys(schema: type) -> set[str]:
    """Dotted keys whose command-line value is taken verbatim (free text)."""
    return {key for key, rule in rules(schema) if rule.literal}


def check(schema: type, cfg: DictConfig, root: DictConfig | None = None, prefix: str = "") -> None:
    """Check and convert `cfg` against `schema` in place; the first bad key raises UserError (one line)."""
    root = cfg if root is None else root
    for item in fields(schema):
        if item.name not in cfg:
            continue
        rule: Rule = item.metadata["rule"]
        key = prefix + item.name
        value = _value(cfg, item.name, key)
        if rule.kind == "section":
            if value is None and rule.null:
                continue
            if not isinstance(value, DictConfig):
                raise UserError(f"{key}={show(value)}: {key} is a group of settings, not one value ({key}.<name>=...)")
            refuse_unknown_keys(value, [item.name for item in fields(rule.schema)], key)
            check(rule.schema, value, root, key + ".")
            continue
        converted = convert(rule, key, value, root)
        if converted is not value:
            cfg[item.name] = converted
    for extra in getattr(schema, "checks", ()):
        extra(cfg, root)


def refuse_unknown_keys(cfg: DictConfig, allowed: Sequence[str], where: str, why: str = "no such setting") -> None:
    """`cfg` (the group at `where`) holds only `allowed` keys: another is one line with the nearest one suggested
    (`+auto_k.nn=3` was added, read by nothing, and said nothing)."""
    for key in cfg:
        if key not in allowed:
            hint = did_you_mean(str(key), allowed, where)
            raise UserError(f"{where}.{key}: {why} ({where} holds {', '.join(allowed)}){hint}")


def convert(rule: Rule, key: str, value: Any, root: DictConfig | None = None) -> Any:
    """`value` as the rule's type (the same object when nothing changes), or UserError."""
    if value is None:
        if rule.null or rule.kind == "any":
            return None
        if rule.kind in ("list", "sweep"):
            raise UserError(f"{key}=null: {key} needs a value ({rule.describe()})")
    if rule.also and isinstance(value, str) and value in rule.also:
        return value
    convert_one = CONVERTERS[rule.kind]
    return convert_one(rule, key, value, root)


def _flag(rule: Rule, key: str, value: Any, root) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE + FALSE:
        return value.strip().lower() in TRUE
    allowed = "true, false" + "".join(f" or {a}" for a in rule.also) if rule.also else "true or false"
    raise UserError(f"{key}={show(value)}: {key} is {allowed} (also yes/no, on/off)")


def _int(rule: Rule, key: str, value: Any, root) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{key}={show(value)}: {key} is {_article(rule)}")
    _bounds(rule, key, value, root)
    return value


def _float(rule: Rule, key: str, value: Any, root) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{key}={show(value)}: {key} is {_article(rule)}")
    _bounds(rule, key, value, root)
    return value


def _bounds(rule: Rule, key: str, value: float, root) -> None:
    too_low = rule.low is not None and (value <= rule.low if rule.low_open else value < rule.low)
    too_high = rule.high is not None and (value >= rule.high if rule.high_open else value > rule.high)
    if too_low or too_high:
        raise UserError(f"{key}={show(value)} is out of range: {key} is {_article(rule)}")
    cap = root.get(rule.cap) if rule.cap and root is not None else None
    # a cap below 1 is its own key's error (checked after this one), not a cap `value` is above
    if isinstance(cap, int) and not isinstance(cap, bool) and 1 <= cap < value:
        raise UserError(
            f"{key}={show(value)} is above the cap {rule.cap}={root[rule.cap]}; lower {key}, or raise the cap with "
            f"{rule.cap}=N if you mean it"
        )


def _article(rule: Rule) -> str:
    kind = {"int": "an integer", "float": "a number"}[rule.kind]
    words = rule._range().replace(f" <= {rule.cap}", "") if rule.cap else rule._range()
    extra = "".join(f" or {a}" for a in rule.also) + (" or null" if rule.null else "")
    return f"{kind}{words}{extra}"


def _choice(rule: Rule, key: str, value: Any, root) -> Any:
    if isinstance(value, str) and value in rule.options:
        return value
    allowed = ", ".join(map(str, rule.options)) + (", null" if rule.null else "")
    leaf = "value" if key.endswith("]") else key.split(".")[-1]
    shown = show(value)
    quoted = shown if shown.startswith("'") else f"'{shown}'"
    near = did_you_mean(str(value), [str(option) for option in rule.options])
    raise UserError(f"{key}={shown}: unknown {leaf} {quoted}{near or ';'} choose one of: {allowed}")


def _text(rule: Rule, key: str, value: Any, root) -> Any:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UserError(f'{key}={show(value)}: {key} is one piece of text (give it in quotes: {key}="...")')
    if not str(value).strip():
        raise UserError(f'{key} is empty; give some text ({key}="a photo of ...")' + (" or null" if rule.null else ""))
    return value if isinstance(value, str) else str(value)


def _spec(rule: Rule, key: str, value: Any, root) -> Any:
    if not isinstance(value, str):  # null where it is required, a number: said as a name's would be
        return _name(rule, key, value, root)
    text = value.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    return _name(rule, key, text, root)


def _name(rule: Rule, key: str, value: Any, root) -> Any:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise UserError(f"{key}={show(value)}: {key} is a name ({rule.describe()})")
    return value if isinstance(value, str) else str(value)


def _path(rule: Rule, key: str, value: Any, root) -> Any:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        what = "the folder to write" if rule.kind == "out" else "a file or folder"
        raise UserError(f"{key}={show(value)}: {key} is a path ({what})" + (" or null" if rule.null else ""))
    return value if isinstance(value, str) else str(value)


def _out(rule: Rule, key: str, value: Any, root) -> Any:
    from pathlib import Path

    value = _path(rule, key, value, root)
    target = Path(value).expanduser()
    if target.exists() and not target.is_dir():
        raise UserError(f"{key}={value} is an existing file; {key} names a folder to write into")
    return value


def _device(rule: Rule, key: str, value: Any, root) -> Any:
    if isinstance(value, str) and DEVICE.match(value.strip()):
        return value
    raise UserError(f"{key}={show(value)}: {key} is auto, cpu, cuda, cuda:N (a GPU index) or mps")


def _list(rule: Rule, key: str, value: Any, root) -> Any:
    if isinstance(value, str) and rule.split:
        parts = [part.strip() for part in value.split(",")]
        values: list = [part for part in parts if part] if len(parts) > 1 else [value]
    elif isinstance(value, (ListConfig, list, tuple)):
        values = list(value)
    elif isinstance(value, (DictConfig, dict)):
        raise UserError(f"{key}={show(value)}: {key} is a list ({key}=[a,b])")
    else:
        values = [value]
    if len(values) < rule.min_items:
        raise UserError(f"{key}={show(value)}: {key} needs at least {rule.min_items} item(s) ({key}=[a,b])")
    if rule.max_items is not None and len(values) > rule.max_items:
        raise UserError(f"{key}={show(value)}: {key} takes at most {rule.max_items} item(s)")
    if rule.item is not None:
        values = [convert(rule.item, f"{key}[{i}]", v, root) for i, v in enumerate(values)]
    if isinstance(value, ListConfig) and values == list(value):
        return value
    return values


def _sweep(rule: Rule, key: str, value: Any, root) -> Any:
    if isinstance(value, str) and re.search(r"\.\.|\(|,", value):
        return value
    values = list(value) if isinstance(value, (ListConfig, list, tuple)) else [value]
    if not values:
        raise UserError(f"{key}=[]: give {key} at least one value")
    for i, one in enumerate(values):
        convert(rule.item, key if len(values) == 1 else f"{key}[{i}]", one, root)
    return value


def _same(rule: Rule, key: str, value: Any, root) -> Any:
    return value


CONVERTERS: dict[str, Callable[[Rule, str, Any, Any], Any]] = {
    "flag": _flag,
    "int": _int,
    "float": _float,
    "choice": _choice,
    "text": _text,
    "name": _name,
    "spec": _spec,
    "path": _path,
    "out": _out,
    "device": _device,
    "list": _list,
    "sweep": _sweep,
    "any": _same,
}


def _value(cfg: DictConfig, name: str, key: str) -> Any:
    try:
        return cfg[name]
    except OmegaConfBaseException as err:
        first = first_line(err)
        raise UserError(f"{key}: {first}") from None


def show(value: Any) -> str:
    """A value as the user would type it, on one line and not too long."""
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=False)
    text = value if isinstance(value, str) else _typed(value)
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    if isinstance(value, str) and (not text or text != text.strip() or not _reads_as_text(text)):
        text = repr(text)
    return text if len(text) <= 80 else text[:77] + "..."


def _reads_as_text(text: str) -> bool:
    """Whether `key=text` on the command line gives this text back: '4', 'true' or 'null' typed in quotes would read
    as a number, a flag or nothing unquoted, so a message shows them quoted (n='4' is text, not the integer 4)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_override(f"key={text}").value() == text
    except (HydraException, ValueError):
        return True  # not an override Hydra reads at all: shown as typed


def _typed(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_typed(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_typed(item)}" for key, item in value.items()) + "}"
    return str(value)


def escape(value: str) -> str:
    """Free text stored in an OmegaConf config without `${...}` being resolved as an interpolation."""
    return INTERPOLATION.sub(lambda match: match[1] * 2 + "\\${", value)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"
