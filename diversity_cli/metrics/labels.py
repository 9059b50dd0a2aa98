"""How a measured row names what it measured: the metric, with the settings other than the defaults that made it
(`toy_features[distance=euclidean]`, `fid_toyfeat[reference=toy(per_prompt=10)]`). Two rows under one label are
one measurement; rows under two labels are never averaged, plotted or tabulated as one."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def metric_label(row: Mapping[str, str]) -> str:
    """`metric`, or `metric[options]` when the row's `options` names settings other than the defaults."""
    options = row.get("options") or ""
    return f"{row['metric']}[{options}]" if options else str(row["metric"])


def interval_name(levels: Iterable[str]) -> str:
    """The intervals' name from their levels as the CSVs write them ("0.95" -> "95% CI"; several, each: "50%/95% CI";
    none known: "CI")."""
    found = sorted({float(level) for level in levels if str(level)})
    return "/".join(f"{level * 100:g}%" for level in found) + " CI" if found else "CI"
