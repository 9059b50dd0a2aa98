"""Sweep syntax of `ablate`: which sampler knobs take which values.

Users write sweeps the way Hydra's command line does: `k=1..4` (integers, both ends included), `k=1,2,3`,
`base_guidance=range(0,10,2.5)` (Hydra's `range`: end excluded), `method=choice(hybrid,replace_final)`.
Hydra's compose API rejects sweeps (`k=1,2` is an "ambiguous value"), so `split_overrides` takes them out of the
override list first and hands them to compose as plain lists (`k=[1,2]`); `expand` turns a composed value (a
list, a scalar, or a range string such as "1..4" that compose lets through) back into the values of one knob.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from omegaconf import OmegaConf

from ..core.config import conf_dir
from ..core.errors import UserError, did_you_mean
from ..core.schema import convert, literal_keys, rules, show
from ..core.schemas import SCHEMAS
from ..sampling.methods import METHODS
from .shards import LAUNCH_KEYS

KNOBS = ("method", "k", "base_guidance", "base_steps")
# measure.diversity.* / measure.fid.* keys ablate sets for every point itself (`ablate.check_measure` refuses them)
OWN_MEASURE_KEYS = ("out", "images", "device", *LAUNCH_KEYS)
# generate's scale-out keys: ablate runs each point whole, its points spread by its own launcher= (`check_scale_out`)
GENERATE_SCALE_OUT = tuple(key for key in LAUNCH_KEYS if key != "launcher")
OWN_MEASURE_KEYS_OF = {"diversity": ("metric", "prompt"), "fid": ("tags",)}


def measure_keys_set_per_point() -> list[str]:
    """The measure.* keys ablate sets for every point, dotted: not for the user to give (its --help leaves them
    out and names them)."""
    return [
        f"measure.{command}.{key}" for command, own in OWN_MEASURE_KEYS_OF.items() for key in (*OWN_MEASURE_KEYS, *own)
    ]


KNOB_RULES = {key: rule.item for key, rule in rules(SCHEMAS["ablate"]) if key in KNOBS}  # one value's rule
LIST_KEYS = ("metric",)  # a comma in these is a list of values, not a sweep
INT_RANGE = re.compile(r"^\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*$")
FUNCTION = re.compile(r"^\s*(range|choice)\s*\((.*)\)\s*$", re.DOTALL)
NULLS = ("null", "none", "~", "")


@dataclass(frozen=True)
class Overrides:
    compose: list[str]  # for `compose("ablate", ...)`; swept knobs as Hydra lists
    hydra: list[str]  # `hydra.*` / `hydra/...` overrides: they only mean something to the multirun


def split_overrides(overrides: Iterable[str]) -> Overrides:
    """Rewrite sweep arguments into overrides compose accepts; `hydra.` ones go aside for the multirun. Free text
    (`prompt=a circle, red`) passes untouched: compose takes it verbatim."""
    overrides = list(overrides)
    cap = max_points(overrides)
    literal = literal_keys(SCHEMAS["ablate"])
    composed, hydra = [], []
    for item in overrides:
        key, sep, value = item.partition("=")
        bare = key.lstrip("+~")
        if sep and bare in literal:
            composed.append(item)
        elif bare.startswith(("hydra.", "hydra/")) or bare == "hydra":
            hydra.append(item)
        elif sep and bare in KNOBS:
            values = expand(bare, value, cap)
            composed.append(f"{bare}={_hydra_value(values[0]) if len(values) == 1 else _hydra_list(values)}")
        elif sep and bare in LIST_KEYS and _top_level_commas(value):
            composed.append(f"{key}=[{value}]")
        elif sep and _is_sweep(value):
            raise UserError(_not_a_knob(bare, item))
        else:
            composed.append(item)
    return Overrides(composed, hydra)


def _not_a_knob(bare: str, item: str) -> str:
    """The line for a sweep of a key ablate does not sweep: a misspelt knob (base_guidence=0,5) gets its name."""
    if suggestion := did_you_mean(bare, KNOBS):
        return f"cannot sweep '{bare}' ({item}){suggestion} ablate sweeps {', '.join(KNOBS)}"
    return (
        f"cannot sweep '{bare}' ({item}): ablate sweeps {', '.join(KNOBS)}; give {bare} one value "
        f"(a value with commas needs quotes: {bare}='\"a, b\"')"
    )


def expand(knob: str, raw: object, cap: int | None = None) -> list:
    """The values of one knob, in the order written, each once: `1..4`, `1,2`, `range(..)`, `choice(..)`, a list.
    More than `cap` values (max_points) is refused before any is made."""
    if knob not in KNOBS:
        raise UserError(f"unknown knob '{knob}'; ablate sweeps {', '.join(KNOBS)}")
    if isinstance(raw, Sequence) and not isinstance(raw, str):  # a list, or OmegaConf's ListConfig
        _check_count(knob, raw, len(raw), cap)
        items = [_cast(knob, item) for item in raw]
    elif isinstance(raw, str):
        items = _parse(knob, raw.strip(), cap)
    else:
        items = [_cast(knob, raw)]
    values = list(dict.fromkeys(items))
    if not values:
        raise UserError(f"{knob}={raw} gives no value to sweep")
    return values


def max_points(overrides: Sequence[str]) -> int:
    """The sweep's cap: `max_points=N` on the command line, else conf/ablate.yaml's."""
    for item in reversed(overrides):
        key, sep, value = item.partition("=")
        if sep and key.lstrip("+") == "max_points":
            try:
                number = int(value)
            except ValueError:
                raise UserError(f"max_points={value}: max_points is an integer >= 1") from None
            if number < 1:
                raise UserError(f"max_points={value}: max_points is an integer >= 1")
            return number
    return int(OmegaConf.load(conf_dir() / "ablate.yaml").max_points)


def check_grid(axes: dict[str, list], cap: int) -> None:
    """A grid of more than `cap` points is refused before any point runs."""
    size = math.prod(len(values) for values in axes.values())
    if size > cap:
        shape = " x ".join(f"{len(v)} {knob}" for knob, v in axes.items() if len(v) > 1)
        raise UserError(
            f"the sweep has {size} points ({shape}), above the cap max_points={cap}; sweep fewer values, "
            "or raise the cap with max_points=N if you mean it"
        )


def _check_count(knob: str, text: object, count: int, cap: int | None) -> None:
    if cap is not None and count > cap:
        raise UserError(
            f"{knob}={text} has {count} values, above the cap max_points={cap}; sweep fewer values, or raise the "
            "cap with max_points=N if you mean it"
        )


def grid(axes: dict[str, list]) -> list[dict]:
    """Every combination of the knobs' values (a grid), the first knob of KNOBS varying slowest."""
    names = [knob for knob in KNOBS if knob in axes]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(axes[n] for n in names))]


# ------------------------------------------------------------------------------------------------ parsing


def _parse(knob: str, text: str, cap: int | None = None) -> list:
    if text.startswith("[") and text.endswith("]"):  # Hydra's list, as typed: k=[1,2]
        parts = _split(text[1:-1]) if text[1:-1].strip() else []
        _check_count(knob, text, len(parts), cap)
        return [_cast(knob, part) for part in parts]
    match = INT_RANGE.match(text)
    if match:
        first, last = int(match[1]), int(match[2])
        if first > last:
            raise UserError(
                f"{knob}={text} is an empty range: a..b counts up and includes both ends (e.g. {knob}=1..4)"
            )
        _check_count(knob, text, last - first + 1, cap)
        return [_cast(knob, value) for value in range(first, last + 1)]
    match = FUNCTION.match(text)
    if match:
        args = _split(match[2])
        if match[1] == "choice":
            _check_count(knob, text, len(args), cap)
            return [_cast(knob, arg) for arg in args]
        return [_cast(knob, value) for value in _range(knob, text, args, cap)]
    if _top_level_commas(text):
        parts = _split(text)
        _check_count(knob, text, len(parts), cap)
        return [_cast(knob, part) for part in parts]
    return [_cast(knob, text)]


def _range(knob: str, text: str, args: list[str], cap: int | None = None) -> list[float | int]:
    """Hydra's `range(start, stop[, step])`: like Python's, end excluded, floats allowed."""
    try:
        numbers = [float(arg) for arg in args]
    except ValueError:
        raise UserError(f"{knob}={text}: range() takes numbers, e.g. range(1,5) or range(0,10,2.5)") from None
    if not 1 <= len(numbers) <= 3:
        raise UserError(f"{knob}={text}: range() takes 1 to 3 numbers: range(stop), range(start, stop[, step])")
    start, stop, step = (0.0, numbers[0], 1.0) if len(numbers) == 1 else (*numbers[:2], 1.0)
    if len(numbers) == 3:
        step = numbers[2]
    if step == 0:
        raise UserError(f"{knob}={text}: range() step must not be 0")
    count = max(0, math.ceil((stop - start) / step - 1e-9)) if math.isfinite((stop - start) / step) else -1
    if count < 0:
        raise UserError(f"{knob}={text}: range() takes finite numbers")
    _check_count(knob, text, count, cap)
    if count == 0:
        raise UserError(f"{knob}={text} is an empty range (range's end is excluded: range(1,5) is 1,2,3,4)")
    integral = all(float(n).is_integer() for n in (start, step))
    return [int(start + i * step) if integral else round(start + i * step, 10) for i in range(count)]


def _cast(knob: str, value: object):
    text = str(value).strip().strip("'\"")
    if knob == "method":
        if text not in METHODS:
            raise UserError(
                f"unknown method '{text}'{did_you_mean(text, METHODS) or ';'} choose from: {', '.join(METHODS)}"
            )
        return text
    if knob == "base_steps" and (value is None or text.lower() in NULLS):
        return None  # the base runs on the distilled model's scheduler
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if knob == "base_guidance":
        if not math.isfinite(number):
            raise UserError(f"base_guidance={text} must be a number (a CFG scale, e.g. 0, 5 or 7.5)")
        return _in_range(knob, text, number)
    if not number.is_integer():
        hint = "; ablate sweeps explicit k (k=auto is for generate)" if text == "auto" else ""
        raise UserError(f"{knob}={text} must be an integer{hint}")
    if knob == "base_steps" and number < 1:
        raise UserError(f"base_steps={text} gives the base model no step; use an integer >= 1 or null")
    return _in_range(knob, text, int(number))


def _in_range(knob: str, text: str, value: float | int) -> float | int:
    """`value`, or the schema's out-of-range line naming the value as typed (it said `-1.0` for `-1`, and the
    `k[1]` of a list the user never wrote)."""
    try:
        convert(KNOB_RULES[knob], knob, value)
    except UserError as error:
        raise UserError(str(error).replace(f"{knob}={show(value)}", f"{knob}={text}", 1)) from None
    return value


def _split(text: str) -> list[str]:
    """Split at commas outside quotes and brackets."""
    parts, depth, quote, current = [], 0, "", []
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return parts


def _top_level_commas(text: str) -> bool:
    return not text.strip().startswith(("'", '"', "[", "{")) and len(_split(text)) > 1


def _is_sweep(value: str) -> bool:
    return bool(INT_RANGE.match(value) or FUNCTION.match(value) or _top_level_commas(value))


def _hydra_value(value: object) -> str:
    if value is None:
        return "null"
    return repr(value) if isinstance(value, float) else str(value)


def _hydra_list(values: list) -> str:
    return "[" + ",".join(_hydra_value(v) for v in values) + "]"
