"""`diversity-cli fid`: distribution quality of a run directory, per (method tag, model): FID and Inception Score
against a reference set, CLIP score against the prompts, and the mean seconds per image (paper Tables 2 and 4).

Writes `<out>/fid.csv` (`method,model,n,fid,is,is_std,clip,seconds_per_image`, then
`reference,features,clip_model,samples`) and prints it. With a feature network other than Inception the FID/IS
columns carry its tag (`fid_toyfeat`, ...): such a number is never called FID. A re-run replaces only the rows of
the groups it evaluated (same method, model, reference and features). How images are resized and quantized:
`metrics.quality`.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from ..core.atomic import atomic_path
from ..core.console import progress_bar, stderr_console
from ..core.device import resolve_device
from ..core.errors import UserError
from ..core.fingerprint import file_stamps
from ..core.marker import csv_with, owned_path, refuse_foreign_outputs
from ..core.record import record_invocation
from ..core.rundir import SHARDS, RunDir, merge_rows, one_setting_per_group, samples_digest
from ..metrics.preflight import fid_clip, fid_features
from ..metrics.quality import (
    QualityScores,
    default_cache_dir,
    load_clip,
    load_extractor,
    merge_states,
    preparation,
    reference_statistics,
    scores_from_state,
)
from ..metrics.reference import ReferenceSet, check_cut, identity_id, load_image, open_reference
from .defaults import apply_defaults
from .shards import LAUNCH_KEYS, Shard, batch_done, parse_shard, saving

COLUMNS = ["method", "model", "n", "fid", "is", "is_std", "clip", "seconds_per_image"]
KEY = ("method", "model", "reference", "features")
# clip_model: the CLIP model of `clip` ("" where none was measured); samples: which images of samples.csv
META = ["reference", "features", "clip_model", "samples", "reference_id"]
OURS = csv_with("method", "model", "n", "fid")  # an earlier version's fid.csv, unlisted


def measure_quality(cfg: DictConfig) -> Path | None:
    apply_defaults(cfg)  # reference=auto: the run's pair names its reference set
    rundir = RunDir(cfg.out)
    groups = measured_groups(cfg, rundir)
    features = fid_features(cfg)
    clip_spec = fid_clip(cfg)
    references = reference_sets(cfg, groups)  # bad input fails before any network is loaded
    refuse_foreign_outputs(rundir.root, {"fid.csv": OURS})
    shard = parse_shard(cfg.get("shard"))
    fingerprint = shard_fingerprint(cfg, rundir, groups, references) if shard else ""

    device = resolve_device(cfg.device)  # not models.loading's: a metric shard needs no diffusers
    extractor = load_extractor(
        features, device, inception_weights=cfg.inception_weights, resolution=cfg.resolution, resize=cfg.resize
    )
    clip = load_clip(clip_spec, device)
    cache_dir = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir()
    batch_size = int(cfg.batch_size)
    label = reference_label(cfg)  # fid.csv's reference column, the same for every group
    console = stderr_console()
    results, statistics, states = [], {}, {}
    # A shard keeps its statistics so far when stopped for a requeue (SIGUSR2) and goes on from them when rerun.
    earlier = load_partial(rundir.root, shard, fingerprint) if shard is not None else {}
    current: dict[str, Any] = {}  # the group being measured: its scores and how many of its batches are in them
    keeper = (
        saving(lambda: save_partial(rundir.root, shard, fingerprint, states, current))
        if shard is not None
        else contextlib.nullcontext()
    )
    # Threads decode and resize images (PIL works outside the GIL): at 30k images that, not the network, is the cost.
    with progress_bar(console) as progress, ThreadPoolExecutor(max(1, int(cfg.workers))) as pool, keeper:
        for (tag, model), rows in groups.items():
            group = f"{tag}\t{model}"
            starts = range(0, len(rows), batch_size)
            starts = starts if shard is None else [starts[i] for i in shard.block(len(starts))]  # whole batches
            before = earlier.get(group)
            if before is not None and before.get("whole"):  # measured before a requeue
                states[group] = {"state": before["state"], "reference": before["reference"]}
                continue
            reference = references[(tag, model)]
            key = repr(sorted(reference.identity.items()))
            if key not in statistics:  # COCO / folder: once for all groups (and from the cache after the first run)
                task = progress.add_task(f"reference: {reference.description}", total=reference.count)
                statistics[key], cached = reference_statistics(
                    extractor, reference.batches(batch_size, pool.map), reference.identity, cache_dir,
                    lambda n, task=task: progress.advance(task, n), pool.map,
                )  # fmt: skip
                state = "cached" if cached else f"computed, cached in {cache_dir}"
                progress.update(
                    task, completed=reference.count, description=f"reference: {reference.description} ({state})"
                )
            scores = QualityScores(extractor, statistics[key], clip, int(cfg.is_splits), pool.map)
            done = 0
            if before is not None:
                scores.restore(before["state"])
                done = before["batches"]
            current.update(group=group, scores=scores, reference=statistics[key], batches=done)
            task = progress.add_task(f"{model} {tag}", total=sum(len(rows[i : i + batch_size]) for i in starts))
            progress.advance(task, sum(len(rows[i : i + batch_size]) for i in starts[:done]))
            for start in starts[done:]:
                batch = rows[start : start + batch_size]
                images = list(pool.map(load_image, [rundir.root / row["path"] for row in batch]))
                scores.update(images, [row["prompt"] for row in batch])
                progress.advance(task, len(batch))
                current["batches"] += 1
                batch_done()  # a shard job told to stop (SIGUSR2) stores the statistics so far and requeues here
            current.clear()
            if shard is not None:
                states[group] = {"state": scores.state(), "reference": statistics[key]}
                continue
            measured = scores.compute(int(cfg.seed))
            reference_id = identity_id(references[(tag, model)].identity)
            results.append(
                result_row(
                    tag, model, rows, measured, extractor.tag, (label, reference_id), features_label(cfg), clip_spec
                )
            )
    rundir.root.mkdir(parents=True, exist_ok=True)
    measured_with = {
        "features": {"network": extractor.name, "tag": extractor.tag},  # the name carries its weights' hash
        "preparation": preparation(extractor.resize, extractor.resolution),
        "clip_model": clip_spec,
        "references": {reference.description: reference.identity for reference in references.values()},
    }
    # a shard's too; the reference's label names the fid.csv rows whose reference the report checks for changes
    record_invocation(
        rundir.root, config=cfg, device=str(device), dtype="float32", reference_label=label, **measured_with
    )
    if shard is not None:  # statistics only: the merge writes fid.csv
        save_shard_state(rundir.root, shard, fingerprint, states, extractor.num_features, measured_with)
        partial_path(rundir.root, shard).unlink(missing_ok=True)
        return None
    path = write_results(rundir.root / "fid.csv", results)
    show(console, results, extractor.tag, path, min(len(r) for r in groups.values()) < extractor.num_features)
    return path


# ------------------------------------------------------------------------------------------- shards and merge


def shard_state_path(root: Path, shard: Shard) -> Path:
    return root / SHARDS / f"fid-{shard.name}.pt"


def partial_path(root: Path, shard: Shard) -> Path:
    return root / SHARDS / f"fid-{shard.name}.partial.pt"


def save_partial(root: Path, shard: Shard, fingerprint: str, finished: dict, current: dict) -> None:
    """shards/fid-<I>-of-<N>.partial.pt: the statistics of every group this shard has finished and of the batches
    done of the group in hand, for a requeued shard to go on from (`load_partial`)."""
    groups = {group: {**entry, "whole": True} for group, entry in finished.items()}
    if current:
        state, reference = current["scores"].state(), current["reference"]
        groups[current["group"]] = {"state": state, "reference": reference, "batches": current["batches"]}
    path = partial_path(root, shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        torch.save({"fingerprint": fingerprint, "groups": groups}, temporary)
    batches = current.get("batches", 0)
    stderr_console().print(
        f"shard {shard}: statistics of {len(finished)} whole group(s) and {batches} batch(es) of the next in {path}"
    )


def load_partial(root: Path, shard: Shard, fingerprint: str) -> dict[str, dict]:
    """What a stopped run of this shard stored (`save_partial`), for these settings and images; else nothing."""
    path = partial_path(root, shard)
    body = _saved_state(path)  # damaged: only lost time, measured again
    if body.get("fingerprint") != fingerprint:
        return {}
    groups = dict(body["groups"])
    stderr_console().print(f"shard {shard}: going on from {path} ({len(groups)} group(s) measured before, in part)")
    return groups


def shard_fingerprint(cfg: DictConfig, rundir: RunDir, groups: dict[tuple[str, str], list], references: dict) -> str:
    """What a shard's statistics depend on: the settings that change a number, every group's images and their
    stamps (`file_stamps`), and the reference sets (a folder's identity holds its images' bytes): an image or
    reference replaced between the shards and the merge makes another fingerprint, so stale statistics are never
    merged."""

    settings = {
        key: value
        for key, value in OmegaConf.to_container(cfg, resolve=True).items()
        if key not in (*LAUNCH_KEYS, "device", "workers", "out")
    }
    # paths and which samples they are (seed, settings): images remade in place make another fingerprint
    images = {
        f"{tag}\t{model}": [[row["path"] for row in rows], samples_of(rows)] for (tag, model), rows in groups.items()
    }
    paths = [rundir.root / row["path"] for rows in groups.values() for row in rows]
    contents = {"stamps": file_stamps(paths), "references": [r.identity for r in references.values()]}
    text = json.dumps({"settings": settings, "images": images, **contents}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def save_shard_state(
    root: Path, shard: Shard, fingerprint: str, states: dict, num_features: int, measured_with: dict
) -> None:
    """shards/fid-<I>-of-<N>.pt: each group's sufficient statistics for this shard's batches (`QualityScores`),
    and what measured them (the feature network with its weights' hash, preparation, CLIP, references)."""
    path = shard_state_path(root, shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    tag = measured_with["features"]["tag"]
    body = {"fingerprint": fingerprint, "groups": states, "num_features": num_features, "tag": tag}
    body["measured_with"] = json.dumps(measured_with, sort_keys=True, default=str)  # weights_only loads a str
    with atomic_path(path) as temporary:
        torch.save(body, temporary)
    stderr_console().print(f"shard {shard}: statistics of {len(states)} group(s) in {path}")


def quality_remaining(cfg: DictConfig, shard: Shard) -> int:
    """0 when shard `shard` already saved statistics for these settings and images, else 1."""
    apply_defaults(cfg)
    rundir = RunDir(cfg.out)
    groups = measured_groups(cfg, rundir)
    references = reference_sets(cfg, groups)  # a bad reference fails here, on the login node, not in every shard
    saved = _saved_state(shard_state_path(Path(cfg.out), shard))
    return 0 if saved.get("fingerprint") == shard_fingerprint(cfg, rundir, groups, references) else 1


def _saved_state(path: Path) -> dict:
    """A shard's saved statistics, or {} when it has none or its file is damaged (its work is left to do)."""
    if not path.is_file():
        return {}
    try:
        body = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a truncated or foreign file: the shard measures again
        return {}
    return body if isinstance(body, dict) else {}


def merge_quality(cfg: DictConfig, count: int) -> Path:
    """fid.csv from the N shards' statistics: sums added, logits concatenated in shard order; the shard files go."""
    apply_defaults(cfg)
    rundir = RunDir(cfg.out)
    groups = measured_groups(cfg, rundir)
    references = reference_sets(cfg, groups)
    fingerprint = shard_fingerprint(cfg, rundir, groups, references)
    paths = [shard_state_path(rundir.root, Shard(i, count)) for i in range(count)]
    saved = []
    for path in paths:
        body = _saved_state(path)
        if body.get("fingerprint") != fingerprint:
            raise UserError(
                f"{path} is missing, damaged or from other settings or images; rerun the same fid command to remake it"
            )
        saved.append(body)
    features = features_label(cfg)
    results, label = [], reference_label(cfg)
    for (tag, model), rows in groups.items():
        parts = [body["groups"][f"{tag}\t{model}"] for body in saved]
        merged = merge_states([part["state"] for part in parts])
        measured = scores_from_state(
            merged, parts[0]["reference"], saved[0]["num_features"], int(cfg.is_splits), int(cfg.seed)
        )
        reference = (label, identity_id(references[(tag, model)].identity))
        results.append(result_row(tag, model, rows, measured, saved[0]["tag"], reference, features, fid_clip(cfg)))
    measured_with = shards_measured_with(paths, saved)
    record_invocation(rundir.root, config=cfg, merged_shards=count, reference_label=label, **measured_with)
    path = write_results(rundir.root / "fid.csv", results)
    for shard_path in paths:
        shard_path.unlink()
    show(stderr_console(), results, saved[0]["tag"], path, False)
    return path


def shards_measured_with(paths: list[Path], saved: list[dict]) -> dict[str, Any]:
    """What every shard measured with, for the merge's record; shards that disagree (feature weights replaced
    between two shards' runs) would merge statistics of two networks: refused."""
    found = {body.get("measured_with") for body in saved}
    if len(found) > 1:
        raise UserError(
            f"the shards in {paths[0].parent} were measured with other feature networks, references or CLIP "
            "models (weights replaced between their runs); delete them and rerun the same fid command"
        )
    (text,) = found
    return json.loads(text) if text else {}


def measured_groups(cfg: DictConfig, rundir: RunDir) -> dict[tuple[str, str], list[dict[str, str]]]:
    """The groups fid measures: an images= folder as one, else the run's (method tag, model) groups. The same for
    every shard and the merge."""
    return folder_groups(cfg) if cfg.get("images") is not None else sample_groups(rundir, cfg.tags)


def folder_groups(cfg: DictConfig) -> dict[tuple[str, str], list[dict[str, str]]]:
    """`images=FOLDER`: a plain folder of images as one group (`images=<name>`; no prompts, no timing); the folder is
    only read: fid.csv goes to `out=`."""
    from ..metrics.embedders import image_files

    folder = Path(str(cfg.images)).expanduser()
    if not folder.is_dir():
        raise UserError(f"images={folder} is not a folder of images")
    paths = image_files(folder)
    if len(paths) < 2:
        raise UserError(f"images={folder} holds {len(paths)} image(s); FID needs at least 2")
    if folder.resolve() == Path(str(cfg.out)).expanduser().resolve():
        raise UserError(f"out= must differ from images={folder}: nothing is written into the scored folder")
    from .diversity import folder_method

    rows = [{"path": str(path.resolve()), "prompt": "", "seconds": ""} for path in paths]
    # named as diversity names it: a folder called `distilled` is not a distilled model's images
    return {(folder_method(folder), ""): rows}


def sample_groups(rundir: RunDir, tags: Any) -> dict[tuple[str, str], list[dict[str, str]]]:
    """samples.csv rows by (method tag, model), in file order; every listed image must exist."""
    rows = rundir.read_samples()
    if not rows:
        raise UserError(f"{rundir.samples_csv} has no samples; run `diversity-cli generate out={rundir.root}` first")
    wanted = None if tags is None else {str(t) for t in (tags if isinstance(tags, (list, ListConfig)) else [tags])}
    groups: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        if wanted is None or row["tag"] in wanted:
            groups[(row["tag"], row["model"])].append(row)
    present = sorted({row["tag"] for row in rows})
    unknown = sorted((wanted or set()) - set(present))
    if unknown:  # one of several unknown: measured without a word, the rest looked like all that was asked
        raise UserError(
            f"tags={','.join(unknown)}: no samples with that tag in {rundir.root}; it has: {', '.join(present)}"
        )
    one_setting_per_group([row for group in groups.values() for row in group], ("model", "tag"))
    missing = [row["path"] for group in groups.values() for row in group if not (rundir.root / row["path"]).is_file()]
    if missing:
        raise UserError(
            f"{len(missing)} image(s) listed in samples.csv are missing (e.g. {missing[0]}); "
            f"rerun the same `generate` command to make them again"
        )
    return dict(groups)


def reference_sets(cfg: DictConfig, groups: dict[tuple[str, str], list]) -> dict[tuple[str, str], ReferenceSet]:
    """Each group's reference: one COCO/folder set shared by all (listed once); toy scenes of the group's prompts."""
    if cfg.reference == "toy":
        return {key: open_reference("toy", cfg, [row["prompt"] for row in rows]) for key, rows in groups.items()}
    shared = open_reference(str(cfg.reference), cfg)
    return dict.fromkeys(groups, shared)


def result_row(
    tag: str,
    model: str,
    rows: list[dict[str, str]],
    scores: dict[str, float | None],
    metric_tag: str,
    reference: tuple[str, str],
    features: str,
    clip_model: str | None,
) -> dict[str, Any]:
    """One fid.csv row. `reference`: its label and the id of the images it held (`identity_id`), by which the
    report tells a row measured against a reference that has changed since, whichever rows a later fid rewrote."""
    seconds = [float(row["seconds"]) for row in rows if row.get("seconds")]
    suffix = f"_{metric_tag}" if metric_tag else ""
    row: dict[str, Any] = {"method": tag, "model": model, "n": len(rows), "clip": _fmt(scores["clip"])}
    head = scores.get("is_images") is not None  # IS columns where the features have a classifier head (empty when
    for name in ("fid", "is", "is_std"):  # too few images: under two a split)
        if scores[name] is not None or not suffix or (head and name != "fid"):
            row[name + suffix] = _fmt(scores[name])
    row["seconds_per_image"] = _fmt(sum(seconds) / len(seconds) if seconds else None)
    row["reference"], row["reference_id"] = reference
    row["features"] = features
    row["clip_model"] = clip_model if scores["clip"] is not None else ""
    row["samples"] = samples_of(rows)
    return row


def samples_of(rows: list[dict[str, str]]) -> str:
    """Which samples a group's images are (`samples_digest`: path, seed, settings); "" for a folder of images."""
    return samples_digest(rows) if rows and "seed" in rows[0] else ""


def _labelled(name: str, changed: dict[str, Any]) -> str:
    """A label with the settings that differ from the defaults: `toy(per_prompt=8)`, `toy(resolution=64)`."""
    return name + (f"({'; '.join(f'{k}={v}' for k, v in changed.items())})" if changed else "")


def features_label(cfg: DictConfig) -> str:
    """fid.csv's `features`: the network, with the image preparation when it is not the default
    (`toy(resolution=64)`): another resolution or resize filter is another number, never under the same label."""
    from ..core.resources import conf_root

    defaults = OmegaConf.load(conf_root() / "fid.yaml")
    changed = {key: cfg[key] for key in ("resolution", "resize") if cfg.get(key) != defaults[key]}
    return _labelled(fid_features(cfg), changed)


def check_reference_limit(cfg: DictConfig) -> None:
    """reference_limit= cuts coco, a folder or the toy dataset's scenes; the toy reference of the run's prompts is
    toy.per_prompt scenes of each, which it never cut: measured without it, the number was labelled as if cut."""
    if str(cfg.reference) == "toy" and cfg.toy.mode == "prompts" and cfg.get("reference_limit") is not None:
        raise UserError(
            f"reference_limit={cfg.reference_limit} does not apply to the toy reference of the run's prompts "
            "(toy.mode=prompts: toy.per_prompt scenes of each); set toy.per_prompt=, or toy.mode=dataset to cut "
            "the toy dataset's scenes"
        )
    limit, count = cfg.get("reference_limit"), cfg.toy.get("count")
    if str(cfg.reference) == "toy" and cfg.toy.mode == "dataset" and isinstance(limit, int) and isinstance(count, int):
        # the limit cuts toy.count's scenes: at or above it, it drew more scenes than toy.count asked for
        check_cut(limit, count, f"the toy dataset reference (toy.count={count})", "scenes")


def check_folder_reference(cfg: DictConfig) -> None:
    """The toy reference of the run's prompts draws scenes of each prompt; a folder of images (images=) has none, so
    it drew scenes of the empty caption, any scene, under the label `toy` of a per-prompt reference. A CLIP score
    named by clip_model= needs prompts too: a folder's was a score against the empty text."""
    if cfg.get("images") is not None and cfg.get("clip_model") not in (None, "auto"):
        raise UserError(
            f"clip_model={cfg.clip_model} scores images against their prompts; images={cfg.images} has none (it "
            "scored them against the empty text): drop clip_model= (a folder gets no CLIP score), or measure the "
            "run directory (out=<run>)"
        )
    if cfg.get("images") is not None and str(cfg.reference) == "toy" and cfg.toy.mode == "prompts":
        raise UserError(
            f"reference=toy draws scenes of each prompt of a run (toy.mode=prompts); images={cfg.images} has no "
            "prompts: give toy.mode=dataset (toy.count scenes of the whole toy world) or reference=<folder of images>"
        )


def reference_label(cfg: DictConfig) -> str:
    """fid.csv's `reference`: coco, toy or the folder, with the settings that change the number when they are
    not the defaults (`toy(per_prompt=8)`, `coco(limit=5000)`), so rows against other references never share a
    label (nor, in fid.csv, a row)."""
    from ..core.resources import conf_root

    reference = str(cfg.reference)
    changed = {}
    if reference == "toy":
        defaults = OmegaConf.load(conf_root() / "fid.yaml").toy
        used = ("mode", "seed", "per_prompt" if cfg.toy.mode == "prompts" else "count")
        # in dataset mode reference_limit is the scene count (`open_reference`): the label names the count used
        limit = cfg.get("reference_limit")
        settings = {**cfg.toy, **({"count": limit} if limit is not None and cfg.toy.mode == "dataset" else {})}
        changed = {key: settings[key] for key in used if settings[key] != defaults[key]}
    elif reference != "coco":
        reference = str(Path(reference).expanduser().resolve())
    if cfg.get("reference_limit") is not None and reference != "toy":
        changed["limit"] = cfg.reference_limit
    return _labelled(reference, changed)


def write_results(path: Path, results: list[dict[str, Any]]) -> Path:
    """Merge into fid.csv: rows with the same (method, model, reference, features) are replaced, others kept."""
    rows = merge_rows(path, results, KEY, OURS)
    extra = [c for r in rows for c in r if c not in COLUMNS and c not in META]
    columns = COLUMNS + list(dict.fromkeys(extra)) + META
    with owned_path(path.parent, path.name, OURS) as temporary, temporary.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def show(console, results: list[dict[str, Any]], metric_tag: str, path: Path, small: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    suffix = f"_{metric_tag}" if metric_tag else ""
    names = ["method", "model", "n", "fid" + suffix, "is" + suffix, "is_std" + suffix, "clip", "seconds_per_image"]
    table = Table(title=f"{path}  (reference: {results[0]['reference']}, features: {results[0]['features']})")
    measured = [name for name in names if any(row.get(name) not in ("", None) for row in results)]
    names = ["method", "model", *[name for name in measured if name not in ("method", "model")]]  # no empty column
    for name in names:
        table.add_column(name, justify="left" if name in ("method", "model") else "right")
    for row in results:
        table.add_row(*(str(row.get(name, "")) for name in names))
    out = Console()
    (out if out.is_terminal else Console(width=160)).print(table)  # a pipe or log gets whole column names
    if small:
        console.print(
            "[yellow]note[/]: fewer images than feature dimensions: FID is biased upward at small n; "
            "compare only numbers with the same n"
        )


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"
