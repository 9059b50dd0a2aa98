"""How a measured row names what it measured: the metric, with the settings other than the defaults that made it
(`toy_features[distance=euclidean]`, `fid_toyfeat[reference=toy(per_prompt=10)]`). Two rows under one label are
one measurement; rows under two labels are never averaged, plotted or tabulated as one."""

from __future__ import annotations

from collections.abc import Mapping


def metric_label(row: Mapping[str, str]) -> str:
    """`metric`, or `metric[options]` when the row's `options` names settings other than the defaults."""
    options = row.get("options") or ""
    return f"{row['metric']}[{options}]" if options else str(row["metric"])
