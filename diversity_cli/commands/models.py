"""`diversity-cli models`: the model pairs, one line each: base, student, resolution, and whether the weights are
on this machine (checked on the local disk only, as every command's preflight does). `diversity-cli models <pair>`:
what that pair needs that is not here, and how to provide it; it exits 1 when anything is missing."""

from __future__ import annotations

from collections.abc import Sequence

import typer

from ..core.config import available, compose, pair_config
from ..core.errors import UserError, did_you_mean
from ..models.preflight import pair_missing
from .usage import check_keys


def pair_rows(checked: bool = True) -> list[dict[str, str]]:
    """A row per pair. `checked=False` (a command's --help): its keys alone, not the schema's checks of its
    scheduler settings, which import diffusers (seconds for a help text); `models` checks them."""
    rows = []
    for name in available("model"):
        try:
            model = compose("generate", [f"model={name}"], checked=checked).model
        except UserError:  # a pair file of the user's that does not compose: listed as such, the others still are
            broken = f"config does not read: `diversity-cli generate model={name} --cfg job` says why"
            rows.append({"pair": name, "base": "", "student": "", "px": "", "weights": broken})
            continue
        missing = pair_missing(model)
        rows.append(
            {
                "pair": name,
                "base": str(model.base.get("label", "")),
                "student": str(model.distilled.get("label", "")),
                "px": str(model.get("resolution", "")),
                "weights": "built offline"
                if model.get("tiny")
                else ("present" if not missing else f"{len(missing)} missing"),
            }
        )
    return rows


def pair_lines(checked: bool = True) -> list[str]:
    rows = pair_rows(checked)
    width = {key: max(len(key), *(len(row[key]) for row in rows)) for key in rows[0]}
    lines = ["  ".join(f"{key:<{width[key]}}" for key in width).rstrip()]
    lines += ["  ".join(f"{row[key]:<{width[key]}}" for key in width).rstrip() for row in rows]
    return lines


def missing_lines(name: str, preset: str | None = None, overrides: Sequence[str] = ()) -> list[str]:
    """What one pair's networks and components need that is not on this machine, each with how to provide it, at
    `preset` (its default where None: the preset decides files, e.g. the card's fp16 variant) and with `overrides`
    (`model.distilled.network.repo=<a local copy>`, as the lines suggest): one line when nothing is."""
    model = pair_config(name, preset, overrides)
    missing = pair_missing(model)
    said = [f"preset={model.get('preset')}"] if model.get("preset") else []
    at = f" ({', '.join([*said, *overrides])})" if said or overrides else ""
    if not missing:
        return [f"{name}{at}: every file is on this machine (or built offline)"]
    return [f"{name}{at}: {len(missing)} missing", *(f"  {item.line()}" for item in missing)]


def main(overrides: list[str]) -> None:
    presets = [item.removeprefix("preset=") for item in overrides if item.startswith("preset=")]
    settings = [item for item in overrides if item.lstrip("+~").startswith("model.")]  # a local copy's path, say
    overrides = [item for item in overrides if not item.startswith("preset=") and item not in settings]
    names, pairs = [item.removeprefix("model=") for item in overrides], available("model")
    if settings and not names:
        raise UserError(f"models takes {settings[0]} after a pair: `diversity-cli models sdxl_dmd2 {settings[0]}`")
    if len(presets) > 1 or (presets and not names) or (presets and not presets[0]):
        raise UserError("models takes preset= once, after a pair: `diversity-cli models sdxl_dmd2 preset=card`")
    if len(names) > 1:
        raise UserError(f"models takes one pair at most (got {' '.join(overrides)}); the pairs: {', '.join(pairs)}")
    if names and names[0] not in pairs:
        near = did_you_mean(names[0], pairs) or ";"
        raise UserError(f"unknown pair '{names[0]}'{near} the pairs: {', '.join(pairs)}")
    if names:
        if settings:  # a key the pair has not: the nearest ones, as generate tells them (not Hydra's bare refusal)
            try:
                check_keys("generate", [f"model={names[0]}", *settings])
            except UserError as err:  # about the pair, not a command the user did not run
                raise UserError(str(err).replace("for 'generate'", f"of {names[0]}")) from None
        lines = missing_lines(names[0], presets[0] if presets else None, settings)
        print("\n".join(lines))
        if len(lines) > 1:  # a script (the Makefile's reproduce targets) checks every file before any work
            raise typer.Exit(1)
        return
    print("\n".join(pair_lines()))
    print("weights: `diversity-cli models <pair>` names what is missing and how to provide it; see README")
