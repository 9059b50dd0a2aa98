"""Table 1: control transfer, the % change of CLIP score an adapter trained on one model brings to another (on the
toy pair: the toy classifier's share of images showing the concept, without and with it), from transfer.csv."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ...metrics.diversity import wilson_interval
from ...models.adapters import adapter_digest
from .common import (
    STALE,
    TITLES,
    Line,
    RunData,
    Table,
    as_number,
    held_images,
    md_code,
    md_literal,
    origin,
    shows_group,
)


def table1_records(run: RunData, paper: list[Line], cfg: Any) -> list[Line]:
    """transfer.csv -> Table 1 cells: rows by adapter concept, columns by `source->target` of each pair."""
    targets = dict(cfg.targets)
    conditions = {line.condition.lower(): line for line in paper if line.table == "1"}
    adapters = {str(k).lower(): str(v) for k, v in dict(cfg.adapters).items()}
    records = []
    changed = images_changed(run)
    hashes = adapter_hashes_now(run)
    # newest first: a rerun's row moves to the end of transfer.csv, and a cell shows the first row it meets (the
    # other rows of the cell, other scales or prompts, are named in the table's notes)
    for index, row in reversed(list(enumerate(run.transfer))):
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
        clip = f"[{row['clip_model']}]" if row.get("clip_model") else ""
        # what the number is over: the concept scored, the prompts (rows written before they were recorded: none)
        over = f", concept '{row['concept']}'" if row.get("concept") else ""
        over += f", prompts '{row['prompts']}'" if row.get("prompts") else ""
        over += f" [{IMAGES_MARK}]" if changed.get(index) else ""  # beside the cell, the notes say what changed
        retrained = hashes.get(row.get("adapter_file", "")) not in (None, row.get("adapter_hash"))
        over += f" [{ADAPTER_MARK}]" if retrained else ""  # a file of another hash there now: an older adapter's
        values = [(f"clip_change_pct{clip}", row.get("change_pct", ""))]
        values += [(c, row.get(c, "")) for c in ("classifier_without", "classifier_with")]
        for metric, value in values:
            if value != "" and as_number(value) is not None:
                if metric.startswith("classifier"):
                    low, high = share_interval(value, row.get("n", ""))
                else:  # transfer.csv's paired bootstrap interval (rows written before it: none)
                    low, high = row.get("change_low", ""), row.get("change_high", "")
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
                        measured_as=f"{row_label(row)}{over}",
                        **origin(run, "transfer.csv"),
                    )
                )
    return records


def row_label(row: dict[str, str]) -> str:
    """A transfer.csv row as its cells' "measured as" begins: `model / adapter (scale, adapter hash): source ->
    target`; the scale and the adapter file's hash tell two files under one name (or one retrained) apart."""
    at = ", ".join(
        f"{what} {row[key]}" for what, key in (("scale", "scale"), ("adapter", "adapter_hash")) if row.get(key)
    )
    at = f" ({at})" if at else ""
    return f"{row.get('model', '')} / {row['adapter']}{at}: {row['source']} -> {row['target']}"


def title(table: Table) -> str:
    """Table 1's heading, naming what its measured cells are: the paper's % change of CLIP score, or (the toy pair
    has no CLIP model) the toy classifier's shares, or both; a share is no CLIP score."""
    metrics = {line.measured_metric for line in table.measured}
    shares = any(metric.startswith("classifier") for metric in metrics)
    if not shares:
        return TITLES["1"]
    if any(metric.startswith("clip_change_pct") for metric in metrics):
        return (
            "Table 1: control transfer, % change of CLIP score with the adapter and, where the toy classifier "
            "counted, the share of images showing the concept without / with it (source -> target model)"
        )
    return (
        "Table 1: control transfer, share of images the toy classifier sees showing the concept, without / with "
        "the adapter (source -> target model; the paper's columns: % change of CLIP score)"
    )


WILSON_LEVEL = "0.95"


def share_interval(fraction: str, n: str) -> tuple[str, str]:
    """A classifier share's 95% Wilson score interval as table cells; empty when n is unknown."""
    share, count = as_number(fraction), as_number(n)
    if share is None or not count:
        return "", ""
    low, high = wilson_interval(share, int(count))
    return f"{low:.4g}", f"{high:.4g}"


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
    now = adapter_hashes_now(run)
    found = []
    for model, name, file, digest in recorded:
        if now[file] != digest:
            found.append(((model, name), f"{name} ({Path(file)}): {digest} in transfer.csv", now[file]))
    return found


ADAPTER_MARK = "out of date: its adapter file changed since"  # after a cell's "measured as"; the notes say how


def adapter_hashes_now(run: RunData) -> dict[str, str | None]:
    """transfer.csv's adapter files -> each one's hash now (None: not there), hashed once a report."""

    def hashes() -> dict[str, str | None]:
        files = {row["adapter_file"] for row in run.transfer if row.get("adapter_file")}
        return {file: adapter_digest(Path(file)) if Path(file).is_file() else None for file in files}

    return run.once("adapter hashes", hashes)


# ------------------------------------------------------------------------------------------ images since changed

IMAGES_MARK = "out of date: its images changed since"  # after a cell's "measured as"; the notes say how
# prompts_label of several prompts: the first, their count and a digest; its other prompts are not named
SEVERAL_PROMPTS = re.compile(r" \(\+\d+ more; [0-9a-f]{8}\)$")


def images_changed(run: RunData) -> dict[int, str | None]:
    """Per transfer.csv row (its index in the file): what changed since in the images it was measured over ("" for
    nothing), checked against the run's samples.csv and disk; None for a row that names no images (`images`: rows
    written before transfer.csv recorded them), which is not checked."""
    held = held_images(run)
    return {index: _row_images(row, held) for index, row in enumerate(run.transfer)}


def _row_images(row: dict[str, str], held: dict[tuple[str, ...], list[dict[str, str]]]) -> str | None:
    """What changed in one row's groups of images (`images`: "<tag>=<settings>; ..."), given the run's samples rows
    whose image is on disk (`held_images`): images of its tag, prompt and seeds (seed= to seed= + n) that samples.csv
    now gives other settings (remade: overwrite=true with other sampler or model settings), or fewer of them than it
    measured. A row over several prompts names only its first (`prompts_label`): every image of its tags is checked
    then, and only for other settings or none."""
    if not row.get("images"):
        return None
    prompt = row.get("prompts", "")
    one_prompt = not SEVERAL_PROMPTS.search(prompt)
    first, n = as_number(row.get("seed")), as_number(row.get("n"))
    seeds = {str(seed) for seed in range(int(first), int(first + n))} if first is not None and n is not None else None
    expected = len(seeds) if one_prompt and seeds is not None else None  # its images known one by one: n of them
    found = []
    for part in row["images"].split("; "):
        tag, _, recorded = part.partition("=")
        kept = [
            sample
            for sample in held.get((row.get("model", ""), tag), [])
            if (not one_prompt or sample["prompt"] == prompt) and (seeds is None or sample["seed"] in seeds)
        ]
        other = sorted({sample.get("settings", "") for sample in kept} - set(recorded.split("|")))
        if other:
            found.append(f"{tag} images remade with settings {', '.join(other)} (measured: {recorded})")
        elif expected is not None and len(kept) < expected:
            found.append(f"{tag}: {len(kept)} of its {expected} image(s) left in the run")
        elif not kept:
            found.append(f"{tag}: none of its images left in the run")
    return "; ".join(found)


def image_notes(runs: list[RunData], table: Table) -> list[str]:
    """Notes per run whose Table 1 cells were measured over images the run no longer holds as they were (remade
    with other settings by a later transfer-lora or generate with overwrite=true, or removed): transfer.csv's
    `images` against samples.csv and the disk. Rows that name no images (an earlier version's) are said to be
    unchecked. Only the adapters the table shows are named, as in `adapter_notes`."""
    notes = []
    for run in runs:
        found = [
            (run.transfer[index], text)
            for index, text in images_changed(run).items()
            if shows_group(table, run, (run.transfer[index].get("model", ""), run.transfer[index]["adapter"]))
        ]
        changed = [md_literal(f"{row_label(row)}: {text}") for row, text in found if text]
        if changed:
            notes.append(
                f"{STALE} {md_literal(run.root)}/transfer.csv has rows measured over images the run no longer holds "
                f"as they were ({'; '.join(changed)}): their cells (marked {md_literal(IMAGES_MARK)}) are of the "
                f"images as they were then; rerun each row's {md_code('diversity-cli transfer-lora')} command with "
                "the settings the run's images have now and overwrite=true, or measure other settings into another out="
            )
        unchecked = [row for row, text in found if text is None]
        if unchecked:
            notes.append(
                f"{md_literal(run.root)}/transfer.csv: {len(unchecked)} row(s) written before transfer.csv named "
                "the images of each row (its `images` column): whether the run still holds their images is not "
                "checked"
            )
    return notes
