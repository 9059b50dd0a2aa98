"""`diversity-cli models`: the model pairs, one line each: base, student, resolution, and whether the weights are
on this machine (checked on the local disk only, as every command's preflight does)."""

from __future__ import annotations

from ..core.config import available, compose
from ..core.errors import UserError
from ..models.preflight import pair_missing


def pair_rows() -> list[dict[str, str]]:
    rows = []
    for name in available("model"):
        try:
            model = compose("generate", [f"model={name}"]).model
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


def pair_lines() -> list[str]:
    rows = pair_rows()
    width = {key: max(len(key), *(len(row[key]) for row in rows)) for key in rows[0]}
    lines = ["  ".join(f"{key:<{width[key]}}" for key in width).rstrip()]
    lines += ["  ".join(f"{row[key]:<{width[key]}}" for key in width).rstrip() for row in rows]
    return lines


def main(overrides: list[str]) -> None:
    if overrides:
        raise UserError(f"models takes no arguments (got {' '.join(overrides)}); it lists the model pairs")
    print("\n".join(pair_lines()))
    print("weights: `diversity-cli generate model=<pair>` checks them before it loads anything; see README")
