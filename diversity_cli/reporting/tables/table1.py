"""Table 1: control transfer, the % change of CLIP score an adapter trained on one model brings to another, from
transfer.csv."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ...models.adapters import adapter_digest
from .common import STALE, Line, RunData, Table, as_number, md_code, md_literal, origin, shows_group


def table1_records(run: RunData, paper: list[Line], cfg: Any) -> list[Line]:
    """transfer.csv -> Table 1 cells: rows by adapter concept, columns by `source->target` of each pair."""
    targets = dict(cfg.targets)
    conditions = {line.condition.lower(): line for line in paper if line.table == "1"}
    adapters = {str(k).lower(): str(v) for k, v in dict(cfg.adapters).items()}
    records = []
    # newest first: a rerun's row moves to the end of transfer.csv, and a cell shows the first row it meets (the
    # other rows of the cell, other scales or prompts, are named in the table's notes)
    for row in reversed(run.transfer):
        model = row.get("model", "")
        # direction=both names the adapters <name>@base and <name>@distilled
        name = row["adapter"].split("@")[0]
        label = adapters.get(name.lower()) or row["concept"]
        known = conditions.get(label.lower())
        method, condition = (known.method, known.condition) if known else (name, row["concept"])
        if row.get("classifier_target"):
            condition = f"{condition} ({row['classifier_target']})" if not known else condition

        def role(name: str, model: str = model) -> str:
            return "base" if name == "base" else str(targets.get(model, f"{model}:{name}"))

        slot = f"clip_change_pct:{role(row['source'])}->{role(row['target'])}"
        # the scale, and the adapter file's hash: two files under one name (or one retrained) are told apart
        at = ", ".join(
            f"{what} {row[key]}" for what, key in (("scale", "scale"), ("adapter", "adapter_hash")) if row.get(key)
        )
        at = f" ({at})" if at else ""
        clip = f"[{row['clip_model']}]" if row.get("clip_model") else ""
        # what the number is over: the concept scored, the prompts (rows written before they were recorded: none)
        over = f", concept '{row['concept']}'" if row.get("concept") else ""
        over += f", prompts '{row['prompts']}'" if row.get("prompts") else ""
        values = [(f"clip_change_pct{clip}", row.get("change_pct", ""))]
        values += [(c, row.get(c, "")) for c in ("classifier_without", "classifier_with")]
        for metric, value in values:
            if value != "" and as_number(value) is not None:
                low, high = wilson_interval(value, row.get("n", "")) if metric.startswith("classifier") else ("", "")
                records.append(
                    Line(
                        "1",
                        method,
                        condition,
                        slot,
                        measured_metric=metric,
                        measured=value,
                        n=row.get("n", ""),
                        ci_low=low,
                        ci_high=high,
                        ci=WILSON_LEVEL if low else "",
                        model=model,
                        measured_as=f"{model} / {row['adapter']}{at}: {row['source']} -> {row['target']}{over}",
                        **origin(run, "transfer.csv"),
                    )
                )
    return records


WILSON_LEVEL = "0.95"


def wilson_interval(fraction: str, n: str, z: float = 1.959964) -> tuple[str, str]:
    """The 95% Wilson score interval of a share of n images (the toy classifier's hits): 0.125 of 24 images is
    [0.04, 0.31], which a bare 0.125 does not say. Empty when n is unknown."""
    share, count = as_number(fraction), as_number(n)
    if share is None or not count:
        return "", ""
    centre = (share + z * z / (2 * count)) / (1 + z * z / count)
    half = z * math.sqrt(share * (1 - share) / count + z * z / (4 * count * count)) / (1 + z * z / count)
    return f"{max(0.0, centre - half):.4g}", f"{min(1.0, centre + half):.4g}"


def build(runs: list[RunData], paper: list[Line], cfg: Any) -> list[Line]:
    """Table 1's measured cells, run by run."""
    return [line for run in runs for line in table1_records(run, paper, cfg)]


# ---------------------------------------------------------------------------------------- adapters since changed


def adapter_notes(runs: list[RunData], table: Table) -> list[str]:
    """Notes per run whose Table 1 cells were measured with an adapter file that has changed since (retrained,
    replaced: out of date), or that is not where transfer.csv read it (moved, or measured on another machine: not
    checked): transfer.csv's `adapter_hash` against the file it names (`adapter_file`)."""
    notes = []
    for run in runs:
        found = [(text, now) for key, text, now in changed_adapters(run) if shows_group(table, run, key)]
        changed = [md_literal(f"{text}, now {now}") for text, now in found if now is not None]
        absent = [md_literal(f"{text}, not found here (moved, or measured on another machine)") for text, now in found
                  if now is None]  # fmt: skip
        if changed:
            notes.append(
                f"{STALE} {md_literal(run.root)}/transfer.csv was measured with adapter files that have changed "
                f"since ({'; '.join(changed)}): its numbers are of the older adapters; rerun the "
                f"{md_code('diversity-cli transfer-lora')} command that wrote it with overwrite=true "
                f"(out={md_literal(run.root)})"
            )
        if absent:
            notes.append(f"{md_literal(run.root)}/transfer.csv: whether its adapters changed since is not checked "
                         f"({'; '.join(absent)})")  # fmt: skip
    return notes


def changed_adapters(run: RunData) -> list[tuple[tuple[str, str], str, str | None]]:
    """((model, adapter name), what transfer.csv recorded, the file's hash now; None when it is not there) for each
    adapter file and hash of transfer.csv's rows that the file (`adapter_file`) no longer has. Every row is checked,
    not only an adapter's newest: an older row (another concept, scale or prompts) is shown or named as well. Rows
    written before transfer.csv named the file are not checked."""
    recorded = dict.fromkeys(
        (row.get("model", ""), row["adapter"], row["adapter_file"], row.get("adapter_hash"))
        for row in run.transfer
        if row.get("adapter_file")
    )
    now: dict[str, str | None] = {}  # each file hashed once
    found = []
    for model, name, file, digest in recorded:
        path = Path(file)
        if file not in now:
            now[file] = adapter_digest(path) if path.is_file() else None
        if now[file] != digest:
            found.append(((model, name), f"{name} ({path}): {digest} in transfer.csv", now[file]))
    return found
