"""Tables 2 and 4: FID, IS, CLIP score and seconds per image of each method, from fid.csv. Table 2 compares base,
distilled and hybrid; Table 4 the hybrid against skipping the first timestep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...metrics.preflight import other_clip
from .common import (
    Line,
    RunData,
    as_number,
    choose_model,
    fid_references,
    label_folder,
    load_run,
    match_tag,
    md_code,
    md_literal,
    origin,
    preferred_tags,
    row_change,
    tag_rank,
)


def _steps(run: RunData) -> dict[tuple[str, str], str]:
    """(model, tag) -> "4 steps, 5 NFE" from samples.csv, for "measured as"."""
    found: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for row in run.samples:
        found.setdefault((row["model"], row.get("tag") or row["method"]), set()).add((row["steps"], row["nfe"]))
    return {
        key: "; ".join(f"{steps} steps, {nfe} NFE" for steps, nfe in sorted(values)) for key, values in found.items()
    }


def prompt_sets(run: RunData) -> dict[tuple[str, str], frozenset[str]]:
    """(model, tag) -> the prompts of its images in samples.csv: what an FID of the group is over."""
    found: dict[tuple[str, str], set[str]] = {}
    for row in run.samples:
        found.setdefault((row["model"], row.get("tag") or row["method"]), set()).add(row["prompt"])
    return {key: frozenset(prompts) for key, prompts in found.items()}


def prompt_notes(runs: list[RunData], table: Any) -> list[str]:
    """A note where the table's FID cells are over different prompt sets (a hybrid of one prompt beside a
    skip_first of two): each FID is against other images (the toy reference is each group's prompts' scenes), so
    the cells are not comparable; n alone did not show it."""
    sets = {str(run.root): prompt_sets(run) for run in runs}
    over: dict[str, frozenset[str]] = {}
    for line in table.measured:
        if line.metric != "fid" or " / " not in line.measured_as:
            continue
        tag = line.measured_as.split(" / ", 1)[1].split(" (", 1)[0]
        prompts = sets.get(line.run, {}).get((line.model, tag))
        if prompts:
            over[f"{line.model} / {tag}"] = prompts
    if len(set(over.values())) < 2:
        return []
    each = "; ".join(f"{md_literal(group)}: {len(prompts)} prompt(s)" for group, prompts in over.items())
    return [
        f"the FID cells are over different prompts ({each}): each is measured against other images, so compare "
        "only cells over the same prompts (generate every method with the same prompts=)"
    ]


def reference_notes(runs: list[RunData], table: Any) -> list[str]:
    """What each FID column was measured against, as the fid run recorded it (`6 images in /data/ref`, `200 toy
    scenes (100 per prompt of 2)`): a label such as `ref=refA` or a bare `toy` gave no size, so an FID against 6
    images read like one against thousands. From fid's records that name their reference's label."""
    notes = []
    for run in runs:
        if not any(line.run == str(run.root) and line.metric == "fid" for line in table.measured):
            continue
        shown = {row.get("reference", "") for row in run.fid}
        for label, (_, used) in fid_references(run).items():
            if label in shown:
                descriptions = list(dict.fromkeys(str(description) for description in used))
                # a folder moved or deleted since: whether its images changed cannot be checked, which is said
                gone = label.startswith("/") and not Path(label_folder(label)).is_dir()
                unchecked = " (not found on this machine now: whether it changed since is not checked)" if gone else ""
                notes.append(
                    f"FID of {md_literal(run.root)} against {md_literal(label)}: "
                    f"{md_literal('; '.join(descriptions))}{unchecked}"
                )
    return notes


def quality_slot(column: str) -> str | None:
    """fid.csv column -> the paper metric it measures: fid / fid_<features> -> fid, is / is_<features> -> is."""
    if column in ("clip", "seconds_per_image", "fid", "is"):
        return column
    if column.startswith("fid_"):
        return "fid"
    if column.startswith("is_") and not column.startswith("is_std"):
        return "is"
    return None


def quality_records(table: str, run: RunData, cfg: Any) -> list[Line]:
    """fid.csv -> Table 2 / 4 cells: one row per method tag of the paper's pair (or its stand-in). A paper row several
    of the pair's tags could fill (`hybrid_k1` and the toy demo's `hybrid_k1_bs5` in Hybrid) shows one
    (`preferred_tags`); the others get rows of their own, as other pairs' tags do, so nothing measured is hidden."""
    rows = dict(cfg.rows)
    mapped = [r for r in run.fid if match_tag(r["method"], rows)]
    model = choose_model(((r["model"], match_tag(r["method"], rows)) for r in mapped), cfg.get("model"))
    shows = preferred_tags(
        ((r["model"], match_tag(r["method"], rows)), r["method"], tag_rank(r["method"], rows) or 0) for r in mapped
    )
    steps = _steps(run)
    records = []
    for row in mapped:  # other method tags belong to other tables (Table 4's skip_first is not a Table 2 row)
        label = match_tag(row["method"], rows) if row["model"] == model else None
        label = label if shows.get((row["model"], label)) == row["method"] else None
        method = label or f"{row['model']} / {row['method']}"
        reference = row.get("reference", "")
        features = row.get("features", "")  # "toy(resolution=64)": a preparation other than the default
        preparation = features[features.index("(") + 1 : -1] if features.endswith(")") and "(" in features else ""
        change = row_change(run, "fid.csv", row)  # each of its cells is out of date with it, no other row's
        for column, value in row.items():
            slot = quality_slot(column)
            if slot is None or as_number(value) is None:
                continue
            details = []
            if slot == "fid" and reference not in ("", "coco", "toy"):  # toy(...) / coco(...): other settings
                details.append(f"ref={reference if reference.startswith(('toy(', 'coco(')) else Path(reference).name}")
            if slot in ("fid", "is") and preparation:  # the features saw other images: another number
                details.append(preparation)
            if slot == "clip" and other_clip(row.get("clip_model")):  # another CLIP model: another scale
                details.append(row["clip_model"])
            name = column + (f"[{'; '.join(details)}]" if details else "")
            step = steps.get((row["model"], row["method"]), "")
            records.append(
                Line(
                    table,
                    method,
                    "all",
                    slot,
                    measured_metric=name,
                    measured=value,
                    n=row.get("n", ""),
                    model=row["model"],
                    measured_as=f"{row['model']} / {row['method']}" + (f" ({step})" if step else ""),
                    rank=(tag_rank(row["method"], rows) or 0) if label else 0,
                    change=change,
                    **origin(run, "fid.csv"),
                )
            )
    return _current_first(records)


def _current_first(records: list[Line]) -> list[Line]:
    """The cells in fid.csv's order (the table's columns keep theirs), but of a cell two rows fill (seconds_per_image,
    the CLIP score, beside FIDs against two references) the current row's first: the first is shown, and a row over
    images added or remade since is not the group's."""
    groups: dict[tuple[str, str], list[int]] = {}
    for index, line in enumerate(records):
        groups.setdefault((line.method, line.measured_metric), []).append(index)
    ordered = [sorted(indices, key=lambda i: bool(records[i].change)) for indices in groups.values()]
    return [records[i] for indices in ordered for i in indices]


def build(table: str, runs: list[RunData], paper: list[Line], cfg: Any) -> list[Line]:
    """Table 2's or 4's (`table`: "2" / "4") measured cells, run by run; the paper's cells are not needed."""
    return [line for run in runs for line in quality_records(table, run, cfg)]


def _fid_points(run: RunData) -> list[str]:
    """The points (`points/<model>/<tag>`) whose FID ablate.csv holds, in its order."""
    points = (row.get("run", "") for row in run.ablate if quality_slot(row.get("metric", "")) == "fid")
    return [point for point in dict.fromkeys(points) if point]


def lost_point_notes(runs: list[RunData]) -> list[str]:
    """A note per ablation whose FID points' measurement folders are gone: ablate.csv still holds their numbers,
    which the table cannot show without the reference and images fid recorded there."""
    notes = []
    for run in runs:
        lost = [point for point in _fid_points(run) if not (run.root / point / "measure" / "fid.csv").is_file()]
        if lost:
            rerun = md_code(f"diversity-cli ablate out={run.root}")
            notes.append(
                f"{md_literal(run.root)}/ablate.csv holds FIDs of {', '.join(md_literal(p) for p in lost)}, whose "
                f"measure/fid.csv is gone: not shown; rerun the sweep ({rerun} with fid=true at its settings) to "
                "measure them again"
            )
    return notes


def with_ablate_points(runs: list[RunData]) -> list[RunData]:
    """The runs Tables 2 and 4 read: each run, then the points of an ablation that measured FID (`ablate
    fid=true`). A point's measurement folder (`points/<model>/<tag>/measure`) is a run of its own, with fid.csv,
    the samples it measured and fid's record: ablate.csv's FID rows name neither the reference nor the images, so
    the tables read it there, as they read a fid run, and name it as the run of its cells."""
    expanded = []
    for run in runs:
        expanded.append(run)
        for point in _fid_points(run):
            folder = run.root / point / "measure"
            if (folder / "fid.csv").is_file():
                expanded.append(load_run(folder))
    return expanded
