"""`diversity-cli diversity`: sample diversity of a run directory (per model, method tag and prompt) or a folder.

For each metric every image is embedded once (and cached in the user cache by the image's bytes and the
embedder's fingerprint: options, weights, libraries; each shard of a sharded run writes its own cache file); each
group's mean pairwise distance, its bootstrap interval, the Vendi score and, with a reference set, precision /
recall / density / coverage all come from those embeddings.
Results go to `diversity.csv`; a rerun replaces only the rows it recomputes.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from ..core.atomic import atomic_path
from ..core.cache import cache_dir
from ..core.device import resolve_device
from ..core.errors import UserError, did_you_mean
from ..core.fingerprint import digest, file_hash, file_stamps, packages, weights_fingerprint, weights_record
from ..core.marker import csv_with, owned_path, refuse_foreign_outputs
from ..core.record import record_invocation
from ..core.resources import shipped_config
from ..core.rundir import (
    RunDir,
    configs_per_group,
    no_samples,
    one_setting_per_group,
    read_table,
    samples_digest,
)
from ..core.schema import check
from ..core.schemas.common import ADHERENT, OTHER_DIVERSITY_METRICS
from ..core.schemas.diversity import DiversityConfig
from ..metrics import preflight
from ..metrics.coverage import PRDC, prdc, prdc_from_distances
from ..metrics.diversity import MIN_INTERVAL_N, PairwiseDiversity, VendiScore, pairwise_estimate, wilson_interval
from ..metrics.embedders import EMBEDDERS, Embedder, get_embedder, image_files, load_image, load_images, toy_module
from ..metrics.reference import folder_id
from .defaults import apply_defaults
from .shards import LAUNCH_KEYS, Shard, batch_done, parse_shard, saving

# ci: the interval's level; options: the embedder's settings that differ from conf/diversity.yaml's (what was measured);
# samples: which images of samples.csv the group held (`samples_digest`; empty for a folder of images);
# reference_id: which images precision/recall/density/coverage were measured against (a folder's `identity_id`, a
# tag's `samples_digest`), so the report can tell a reference changed since under the same options (which name only
# its folder or tag)
COLUMNS = [
    "method", "model", "prompt", "n", "metric", "value", "ci_low", "ci_high", "ci", "options", "samples", "reference_id"
]  # fmt: skip
CSV_NAME = "diversity.csv"
OURS = csv_with("method", "model", "prompt", "metric", "value")  # an earlier version's diversity.csv, unlisted


@dataclass
class Group:
    method: str  # the method tag (hybrid_k1, distilled, ...) or an image folder's (`folder_method`)
    model: str
    prompt: str
    paths: list[Path]
    reference: list[Path] = field(default_factory=list)
    samples: str = ""  # samples_digest of the samples.csv rows behind `paths`
    reference_id: str = ""  # which images `reference` holds: a folder's `folder_id`, or its tag's samples_digest
    reference_name: str = ""  # what the row's options name: the tag, or the folder's absolute path

    @property
    def label(self) -> str:
        return " / ".join(part for part in (self.model, self.method, self.prompt[:40]) if part)


# ------------------------------------------------------------------------------------------------- inputs


def parse_metrics(value: object) -> list[str]:
    """`metric=dreamsim`, `metric=[pixel,lpips]` or `metric="pixel,lpips"` -> names, in order, once each."""
    items = list(value) if isinstance(value, (list, tuple, ListConfig)) else str(value).split(",")
    names = list(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))
    known = [*EMBEDDERS, *OTHER_DIVERSITY_METRICS]
    for name in names:
        base = name.removeprefix("vendi_")
        if name not in known and not (name.startswith("vendi_") and base in EMBEDDERS):
            near = did_you_mean(name, [*known, *(f"vendi_{embedder}" for embedder in EMBEDDERS)])
            raise UserError(
                f"unknown metric '{name}'{near or ';'} choose from: {', '.join(known)} (or vendi_<embedder>)"
            )
    if not names:
        raise UserError(f"no metric given; choose from: {', '.join(known)}")
    return names


def row_metric(name: str, cfg: DictConfig) -> str:
    """The metric column of the rows a requested metric `name` gives under `cfg` (`vendi` -> vendi_<embedder>;
    with adherent_only, every diversity number -> <metric>@adherent; toy_adherence stays over all images)."""
    label = f"vendi_{vendi_base(name, cfg)}" if name.startswith("vendi") else name
    return label + ADHERENT if cfg.get("adherent_only") and name != "toy_adherence" else label


def vendi_base(name: str, cfg: DictConfig) -> str:
    base = name.removeprefix("vendi_") if name.startswith("vendi_") else str(cfg.vendi_base)
    if base not in EMBEDDERS:
        raise UserError(f"vendi_base '{base}' is not an embedder; choose one of: {', '.join(EMBEDDERS)}")
    return base


def validate(cfg: DictConfig) -> None:
    """Every key against the diversity schema (compose has checked a CLI config; library callers such as ablate's
    measurements get the same checks), then what needs two keys."""
    check(DiversityConfig, cfg)
    if cfg.out is None and cfg.images is None:
        raise UserError("give out=<run directory of generate> or images=<folder of images>")
    if cfg.images is None and cfg.get("prompt") is not None:  # a run's rows name their prompts: it would be ignored
        raise UserError(
            f"prompt={cfg.prompt!r} names the prompt of an images= folder; a run directory's groups are each "
            "measured under their own prompt (samples.csv): drop prompt=, or give images=<folder>"
        )
    if cfg.images is not None and cfg.get("adherent_only") and not cfg.get("prompt"):
        # said after the work, it came as notes and then a line blaming too few on-prompt images
        raise UserError(
            f"adherent_only=true keeps the images that follow their prompt; images={cfg.images} names none: add "
            "prompt=<the prompt they were made from>, or measure the run directory (out=<run>)"
        )


def collect_groups(cfg: DictConfig) -> tuple[Path, list[Group], list[str]]:
    """(where diversity.csv goes, the groups, notes on what was left out)."""
    notes: list[str] = []
    if cfg.images is not None:
        folder = Path(cfg.images)
        if cfg.out is None:  # a user's folder is read, never written
            raise UserError(f"images={folder} needs out=<folder for diversity.csv>; nothing is written into {folder}")
        if not folder.is_dir():
            raise UserError(f"images={folder} is not a folder")
        paths = image_files(folder)
        if not paths:
            raise UserError(f"no images (.png/.jpg/.webp) under {folder}")
        group = Group(folder_method(folder), "", str(cfg.prompt or ""), paths)
        if cfg.reference is not None:
            _attach_folder(Path(str(cfg.reference)), [group])
        return Path(cfg.out), [group], notes

    run = RunDir(cfg.out)
    rows = run.read_samples()
    if not rows:
        raise UserError(no_samples(run.root))
    one_setting_per_group(rows, ("model", "tag", "prompt"))
    by_key: dict[tuple[str, str, str], list[dict[str, str]]] = {}
    missing = 0
    for row in rows:
        if not (run.root / row["path"]).is_file():
            missing += 1
            continue
        key = (row["model"], row.get("tag") or row["method"], row["prompt"])
        by_key.setdefault(key, []).append(row)
    if missing:
        notes.append(f"{missing} image(s) listed in samples.csv are missing on disk and left out")
    notes += mixed_settings_notes(by_key)
    groups = [
        Group(tag, model, prompt, [run.root / row["path"] for row in kept], samples=samples_digest(kept))
        for (model, tag, prompt), kept in sorted(by_key.items())
    ]
    if cfg.reference is not None:
        _attach_references(cfg, run, groups, by_key, notes)
    return run.root, groups, notes


# The method column of an images= folder's row in a run directory of generate: a method tag never holds `=`, so the
# row cannot be read as one of the run's methods (a folder named hybrid_k1 filled the report's Hybrid row).
FOLDER_METHOD = "images={}"


def folder_method(folder: Path) -> str:
    """The method column of an images= folder's row, `images=<name>`: never a method tag, whatever the folder is
    called (a folder named `distilled` filled the paper's Distilled row of the report), in a run directory or not."""
    return FOLDER_METHOD.format(folder.resolve().name)


def mixed_settings_notes(by_key: dict[tuple[str, str, str], list[dict[str, str]]]) -> list[str]:
    """A method whose prompts were made with different configs (another guidance for some prompts): each prompt's
    number is of one setting, but a mean over prompts (Table 3's average) would mix them. Said, not refused: the
    config fingerprint covers the whole pair, so two may also differ in what does not change the images (a label,
    the base's guidance for distilled images)."""
    configs = configs_per_group(row for rows in by_key.values() for row in rows)
    return [
        f"{model} / {tag}: its prompts were made with {len(found)} different configs (samples.csv's settings "
        f"{', '.join(found[:3])}); each prompt's number is of one, a mean over prompts would mix them"
        for (model, tag), found in configs.items()
        if len(found) > 1
    ]


def _reference_folder(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise UserError(f"reference={folder} is not a folder of images")
    paths = image_files(folder)
    if not paths:
        raise UserError(f"no images under reference={folder}")
    return paths


def _attach_references(cfg: DictConfig, run: RunDir, groups: list[Group], by_key: dict, notes: list[str]) -> None:
    """A method tag of the run directory: each group's reference is that tag's images of its model and prompt."""
    reference = str(cfg.reference)
    tags = sorted({tag for _, tag, _ in by_key})
    if reference not in tags:
        if not Path(reference).is_dir():
            raise UserError(
                f"reference={reference} is neither a method tag of {run.root} ({', '.join(tags)}) nor a folder"
            )
        _attach_folder(Path(reference), groups)
        return
    for group in groups:
        if group.method != reference:  # a set against itself says nothing
            rows = by_key.get((group.model, reference, group.prompt), [])
            group.reference, group.reference_name = [run.root / row["path"] for row in rows], reference
            group.reference_id = samples_digest(rows)  # as the report checks that group's images (`held_images`)
            if not group.reference:
                notes.append(f"no '{reference}' images for {group.label}: no coverage for it")


def _attach_folder(folder: Path, groups: list[Group]) -> None:
    """Every group measured against the images of `folder`, named in the rows by its absolute path: a relative one
    was looked up from wherever the report ran (another folder of that name read as this one, changed)."""
    paths = _reference_folder(folder)
    try:  # its id as fid's rows name theirs, which the report computes again to tell it changed
        measured = folder_id(folder)[0]
    except UserError:  # one image, which fid cannot open and no coverage can use (it needs more than coverage_k)
        measured = ""
    for group in groups:
        group.reference, group.reference_id = paths, measured
        group.reference_name = str(folder.expanduser().resolve())


# ---------------------------------------------------------------------------------------------- embedding


# Everything besides the embedder's own options and weights that changes an embedding: how an image file becomes
# the tensor the embedder gets (`load_image`), and the libraries the embedders run on.
IMAGE_PREPARATION = "PIL convert('RGB') -> uint8 HxWx3 -> float32 CHW / 255 in [0,1], stored size; embedder resizes"
EMBEDDING_PACKAGES = (
    "diversity-cli",
    "torch",
    "torchvision",
    "numpy",
    "pillow",
    "dreamsim",
    "open-clip-torch",
    "transformers",
    "torchmetrics",
    "peft",
)


def embedding_key(embedder: Embedder, name: str) -> dict:
    """What an embedding depends on besides the image: the embedder and its options, the bytes of its weights
    (files or in-memory networks it lists in `weights`), the image preparation and the library versions."""
    return {
        "embedder": getattr(embedder, "cache_key", name),
        "weights": weights_fingerprint(getattr(embedder, "weights", ())),
        "preparation": IMAGE_PREPARATION,
        "packages": packages(*EMBEDDING_PACKAGES),
    }


def embedder_record(embedder: Embedder, name: str) -> dict:
    """What the run record says of an embedder: its options, each weights source with its hash, the cache key."""
    key = embedding_key(embedder, name)
    return {
        "options": key["embedder"],
        "weights": weights_record(getattr(embedder, "weights", ())),
        "preparation": key["preparation"],
        "cache_fingerprint": digest(key),
    }


class EmbeddingCache:
    """Embeddings of one embedder fingerprint (`embedding_key`) in the user cache, each keyed by the image file's
    bytes (sha256): other weights, options, libraries or image bytes are a miss, a moved or re-touched identical
    file is a hit. A process writes one file, `embeddings/<fingerprint>.pt`, or as shard I of N of a sharded run
    its own `embeddings/<fingerprint>.<I>-of-<N>.pt`, so shards running at once never rewrite one file (nor lose
    each other's additions); every reader reads them all."""

    def __init__(self, folder: Path | None, key: dict, writer: str | None = None):
        self.key = key
        self.fingerprint = digest(key)
        self.folder = folder
        name = f"{self.fingerprint}.pt" if writer is None else f"{self.fingerprint}.{writer}.pt"
        self.path = folder / name if folder is not None else None
        self.items: dict[str, torch.Tensor] = {}
        for path in self.files():
            self.items.update(self._read(path))
        self.new: dict[str, torch.Tensor] = {}

    def files(self) -> list[Path]:
        """Every file of this fingerprint: the unsharded one, then the shards' (their embeddings are the same)."""
        if self.folder is None or not self.folder.is_dir():
            return []
        main = self.folder / f"{self.fingerprint}.pt"
        shards = sorted(self.folder.glob(f"{self.fingerprint}.*-of-*.pt"))
        return [path for path in [main, *shards] if path.is_file()]

    def _read(self, path: Path) -> dict[str, torch.Tensor]:
        if not path.is_file():
            return {}
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a damaged cache is only lost time: start afresh
            return {}
        # The file name is a digest of the key; the key stored inside guards against a collision.
        return dict(saved["items"]) if isinstance(saved, dict) and saved.get("key") == digest_text(self.key) else {}

    def get(self, path: Path) -> torch.Tensor | None:
        return self.items.get(file_hash(path))

    def put(self, path: Path, embedding: torch.Tensor) -> None:
        self.new[file_hash(path)] = embedding.clone()
        self.items[file_hash(path)] = self.new[file_hash(path)]

    def save(self) -> None:
        """Add this run's new embeddings to its own file (re-read first: another run may have added its own)."""
        if self.path is None or not self.new:
            return
        items = {**self._read(self.path), **self.new}
        with atomic_path(self.path) as temporary:
            torch.save({"key": digest_text(self.key), "items": items}, temporary)
        self.new = {}


def digest_text(key: dict) -> str:
    return json.dumps(key, sort_keys=True, default=str)


def embed_paths(embedder: Embedder, paths: list[Path], batch_size: int, cache: EmbeddingCache, progress=None):
    """Embeddings (N,D) of image files, each embedded once; images of different sizes go in separate batches."""
    found = {path: cache.get(path) for path in paths}
    todo = [path for path, emb in found.items() if emb is None]
    task = progress.add_task(f"embedding {embedder.name}", total=len(todo)) if progress is not None and todo else None
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        images = [load_image(path) for path in chunk]
        by_size: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            by_size.setdefault(tuple(image.shape), []).append(i)
        for indices in by_size.values():
            embeddings = embedder(torch.stack([images[i] for i in indices]))
            broken = (~torch.isfinite(embeddings).reshape(len(indices), -1).all(1)).nonzero().flatten().tolist()
            if broken:  # refused before the cache keeps it: a cached NaN would come back on every rerun
                raise UserError(
                    f"{embedder.name} returned non-finite embeddings for {len(broken)} image(s), first "
                    f"{chunk[indices[broken[0]]]} (try device=cpu or float32 weights); nothing written"
                )
            for i, embedding in zip(indices, embeddings, strict=True):
                found[chunk[i]] = embedding
                cache.put(chunk[i], embedding)
        if task is not None:
            progress.advance(task, len(chunk))
        batch_done()  # a shard job told to stop (SIGUSR2) saves the new embeddings (`saving` below) and requeues
    cache.save()
    dims = {found[path].shape for path in paths}
    if len(dims) > 1:
        raise UserError(
            f"{embedder.name} gives different embedding sizes for images of different sizes; "
            f"resize them to one size (lpips: embedders.lpips.resize=N)"
        )
    return torch.stack([found[path] for path in paths])


# ------------------------------------------------------------------------------------------------ results


ROUGH_BOOTSTRAP = 200  # fewer resamples: the interval's ends move visibly with the bootstrap's seed, said

# Embedder settings that say where a file is or how fast it runs, not what is measured.
NOT_MEASURED = ("batch_size", "cache_dir")


def embedder_options(name: str, options: dict) -> str:
    """The settings of embedder `name` that differ from the shipped defaults, as `distance=euclidean; size=16`: a
    diversity.csv row says what it measured, and a number made with other settings is never read as the usual
    one ("" for the defaults)."""
    defaults = shipped_config("diversity").embedders.get(name) or {}
    changed = {
        key: value
        for key, value in options.items()
        if key not in NOT_MEASURED and (key not in defaults or defaults[key] != value)
    }
    return "; ".join(f"{key}={value}" for key, value in sorted(changed.items()))


def _row(group: Group, metric: str, value: float, low: float | None = None, high: float | None = None) -> dict:
    return {
        "method": group.method,
        "model": group.model,
        "prompt": group.prompt,
        "n": len(group.paths),
        "metric": metric,
        "value": value,
        "ci_low": low,
        "ci_high": high,
        "samples": group.samples,
    }


def embedder_rows(
    cfg, name: str, embedder: Embedder, groups: list[Group], metrics: list[str], notes, shard: Shard | None = None
):
    """Rows of every metric computed from this embedder's embeddings: pairwise diversity, coverage, Vendi. A
    shard keeps its embeddings in its own cache file (`EmbeddingCache`)."""
    cacheable = bool(cfg.cache) and getattr(embedder, "cacheable", True)
    folder = cache_dir("embeddings") if cacheable else None
    cache = EmbeddingCache(folder, embedding_key(embedder, name), shard.name if shard is not None else None)
    paths = list(dict.fromkeys(p for g in groups for p in (*g.paths, *g.reference)))
    with _progress() as progress, saving(cache.save):
        table = dict(zip(paths, embed_paths(embedder, paths, int(cfg.batch_size), cache, progress), strict=True))
    vendi = any(m.startswith("vendi") and vendi_base(m, cfg) == name for m in metrics)
    rows = []
    for group in groups:
        embeddings = torch.stack([table[p] for p in group.paths])
        if name in metrics:
            metric = PairwiseDiversity(embedder.distance, int(cfg.bootstrap), float(cfg.ci), int(cfg.seed))
            metric.update(embeddings)
            estimate = metric.compute()
            rows.append(_row(group, name, estimate.value, estimate.ci_low, estimate.ci_high))
            rows += coverage_rows(cfg, name, embedder, group, embeddings, table, notes)
        if vendi:
            score = VendiScore(float(cfg.ci), interval=int(cfg.bootstrap) > 0)  # bootstrap=0: no intervals
            score.update(embeddings)
            estimate = score.compute()
            rows.append(_row(group, f"vendi_{name}", estimate.value, estimate.ci_low, estimate.ci_high))
    return rows


def streamed_rows(cfg, name: str, embedder, groups: list[Group], metrics: list[str], notes) -> list[dict]:
    """Rows of an embedder that hands over distances instead of embeddings (LPIPS: every layer's features of a
    1024 px image are hundreds of MiB, so only blocks of them ever exist). No Vendi: it needs embeddings."""
    if any(m.startswith("vendi") and vendi_base(m, cfg) == name for m in metrics):
        notes.append(f"vendi_{name}: {name} hands over distances, not embeddings; Vendi needs embeddings")
    rows = []
    for group in groups:
        if name not in metrics:
            continue
        dist = embedder.distances(group.paths)
        estimate = pairwise_estimate(dist, int(cfg.bootstrap), float(cfg.ci), int(cfg.seed))
        rows.append(_row(group, name, estimate.value, estimate.ci_low, estimate.ci_high))
        k = int(cfg.coverage_k)
        if not group.reference:
            continue
        if len(group.paths) <= k or len(group.reference) <= k:
            notes.append(f"{group.label}: coverage needs more than coverage_k={k} images in both sets")
            continue
        real, cross = embedder.distances(group.reference), embedder.distances(group.reference, group.paths)
        values = prdc_from_distances(real, dist, cross, k)
        notes += small_sets_note(group, k)
        rows += [{**_row(group, f"{name}_{key}", values[key]), **against(cfg, group)} for key in PRDC]
    return rows


def coverage_rows(cfg, name: str, embedder: Embedder, group: Group, embeddings, table, notes) -> list[dict]:
    if not group.reference:
        return []
    k = int(cfg.coverage_k)
    if len(group.paths) <= k or len(group.reference) <= k:
        notes.append(f"{group.label}: coverage needs more than coverage_k={k} images in both sets")
        return []
    reference = torch.stack([table[p] for p in group.reference])
    values = prdc(reference, embeddings, k, embedder.distance)
    notes += small_sets_note(group, k)
    return [{**_row(group, f"{name}_{key}", values[key]), **against(cfg, group)} for key in PRDC]


def against(cfg: DictConfig, group: Group) -> dict[str, str]:
    """What a precision/recall/density/coverage number was measured against, for its row's options: the reference
    set (a method tag of the run, or a folder) and the balls' k. Against another reference it is another number,
    a row of its own. Its `reference_id` names the images the reference held, which the options cannot."""
    named = f"reference={group.reference_name or cfg.reference}; coverage_k={int(cfg.coverage_k)}"
    return {"against": named, "reference_id": group.reference_id}


def with_options(row: dict, options: str, interval: str = "") -> dict:
    """The row with its `options`: the embedder's settings other than the defaults, the bootstrap's where the row
    has an interval (`interval_options`), then what it was measured against (`against`)."""
    row = dict(row)
    interval = interval if row.get("ci_low") not in (None, "") else ""
    return {**row, "options": "; ".join(part for part in (options, interval, row.pop("against", "")) if part)}


def interval_options(cfg: DictConfig) -> str:
    """The bootstrap's settings that differ from the shipped defaults (`bootstrap=3; seed=5`), for the rows whose
    interval is a bootstrap's: one from 3 resamples read as the usual 95% interval of 1000."""
    defaults = shipped_config("diversity")
    changed = {key: cfg[key] for key in ("bootstrap", "seed") if int(cfg[key]) != int(defaults[key])}
    return "; ".join(f"{key}={value}" for key, value in changed.items())


def small_sets_note(group: Group, k: int) -> list[str]:
    """Where a k-nearest-neighbour ball reaches a quarter or more of its set, every ball covers much of the other
    set too and precision, recall and coverage read near 1 whatever the samples: said beside the numbers."""
    smallest = min(len(group.paths), len(group.reference))
    if smallest - 1 >= 4 * k:
        return []
    return [
        f"{group.label}: precision/recall/density/coverage from {len(group.paths)} images and "
        f"{len(group.reference)} reference images at coverage_k={k}: each ball holds the {k} nearest of "
        f"{smallest - 1} other points, so the rates tend to 1 whatever the samples (Naeem et al. use 10,000 of each)"
    ]


def toy_coverage_rows(groups: list[Group], device: torch.device, path: str | None, notes: list[str]) -> list[dict]:
    """Share of each prompt's allowed toy modes that some image of the group shows (the toy classifier's call)."""
    module = toy_module()
    classifier = module.load_classifier(device, path)
    rows = []
    for group in groups:
        if not group.prompt:
            notes.append(f"{group.label}: toy_coverage needs the prompt (images=: add prompt=...)")
            continue
        value = module.mode_coverage(load_images(group.paths), group.prompt, classifier)
        rows.append(_row(group, "toy_coverage", float(value)))
    return rows


def toy_adherence_rows(groups: list[Group], device: torch.device, notes: list[str], ci: float) -> list[dict]:
    """Share of each group's images that follow its prompt, by the toy pair's frozen judge (`toy.adherence`): the
    quality beside toy diversity, so variety off the prompt cannot pass for diversity. Its interval at level `ci`
    is the share's Wilson score interval (each image a hit or a miss)."""
    from ..toy.adherence import toy_adherence
    from ..toy.data import words_outside

    classifier = toy_module().load_classifier(device)  # the shipped judge, whichever features the metric used
    rows = []
    for group in groups:
        if not group.prompt:
            notes.append(f"{group.label}: toy_adherence needs the prompt (images=: add prompt=...)")
            continue
        unknown = words_outside(group.prompt)
        if unknown:
            notes.append(
                f"{group.label}: {', '.join(unknown)} not in the toy language: toy_adherence checks only the words the "
                "judge knows (a prompt of none of them is followed by every image)"
            )
        share = float(toy_adherence(group.paths, group.prompt, classifier))
        rows.append(_row(group, "toy_adherence", share, *wilson_interval(share, len(group.paths), ci)))
    return rows


def adherent_groups(
    groups: list[Group], device: torch.device, min_n: int, notes: list[str]
) -> tuple[list[Group], list[Group]]:
    """(kept, skipped): each group cut to the images the toy pair's frozen judge finds on-prompt
    (`adherent_only=true`), so a diversity number cannot count variety off the prompt; groups left with fewer than
    `min_n` are skipped (their earlier on-prompt numbers no longer describe the run)."""
    from ..toy.adherence import select_adherent

    judge = toy_module().load_classifier(device)
    kept, skipped = [], []
    for group in groups:
        if not group.prompt:
            notes.append(f"{group.label}: adherent_only needs the prompt (images=: add prompt=...); skipped")
            continue
        paths = select_adherent(group.paths, group.prompt, judge)
        notes.append(f"{group.label}: adherent_only kept {len(paths)} of {len(group.paths)} images")
        if len(paths) < min_n:
            notes.append(f"skipped {group.label}: {len(paths)} on-prompt image(s) < min_n={min_n}")
            skipped.append(group)
            continue
        kept.append(replace(group, paths=paths))
    return kept, skipped


def clip_score_rows(groups: list[Group], device: torch.device, batch_size: int, notes: list[str]) -> list[dict]:
    """CLIP score of each group's images against its prompt (torchmetrics' CLIPScore, as `fid` computes it): the
    quality beside a real pair's diversity, per prompt."""
    from ..metrics.quality import load_clip

    metric = load_clip(preflight.CLIP_SCORE_MODEL, device)  # read here: tests put an offline stand-in there
    rows = []
    for group in groups:
        if not group.prompt:
            notes.append(f"{group.label}: clip_score needs the prompt (images=: add prompt=...)")
            continue
        metric.reset()
        for start in range(0, len(group.paths), batch_size):
            chunk = group.paths[start : start + batch_size]
            images = [(load_image(path) * 255).round().to(torch.uint8).to(device) for path in chunk]
            metric.update(images, [group.prompt] * len(chunk))
        rows.append(_row(group, "clip_score", float(metric.compute())))
    return rows


def write_rows(
    path: Path,
    rows: list[dict],
    skipped: Iterable[Group] = (),
    adherent_skipped: Iterable[tuple[str, str, str]] = (),
) -> list[dict]:
    """Merge into diversity.csv: rows with the same method/model/prompt/metric/options are replaced, others kept,
    except those of `skipped` groups (now too few images: their old numbers no longer describe the run). Options
    are part of the key: coverage against another reference, or a distance measured otherwise, is another number
    beside this one (it replaced it). `adherent_skipped`: the (method, model, prompt) of groups whose on-prompt
    (`@adherent`) rows go (too few on-prompt images now), their other rows kept."""
    new = [{key: _fmt(row.get(key)) for key in COLUMNS} for row in rows]
    new_keys = {row_key(r) for r in new}
    gone = {(g.method, g.model, g.prompt) for g in skipped}
    off_prompt = set(adherent_skipped)
    kept = []
    refuse_foreign_outputs(path.parent, {path.name: OURS})  # before it is read as ours
    if path.is_file():  # a damaged row (a field more or less) is one line naming it, not rewritten shifted
        kept = [
            r
            for r in read_table(path)
            if row_key(r) not in new_keys
            and (r["method"], r["model"], r["prompt"]) not in gone
            and not (r["metric"].endswith(ADHERENT) and (r["method"], r["model"], r["prompt"]) in off_prompt)
        ]
    merged = kept + new
    with owned_path(path.parent, path.name, OURS) as temporary, temporary.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(merged)
    return merged


def refuse_non_finite(rows: list[dict]) -> None:
    """A NaN or infinite number (a network that overflowed in half precision, a broken weights file) is refused
    before anything is written: as an empty cell it read as 'not measured'."""
    for row in rows:
        bad = [
            key
            for key in ("value", "ci_low", "ci_high")
            if isinstance(row.get(key), float) and not math.isfinite(row[key])
        ]
        if bad:
            raise UserError(
                f"{row['metric']} of {row['model']} / {row['method']} / {row['prompt']}: {bad[0]} is "
                f"{row[bad[0]]} (its network returned non-finite numbers; try device=cpu or float32 weights); "
                "nothing written"
            )


def _fmt(value: object) -> object:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.6g}" if isinstance(value, float) else value


# -------------------------------------------------------------------------------------------------- command


@dataclass(frozen=True)
class Written:
    """diversity.csv, and which of its rows this command measured: the file keeps earlier runs' rows (other
    options, images since changed), which an end-of-run summary must not show as just measured."""

    path: Path
    rows: frozenset[tuple[str, ...]]

    def __fspath__(self) -> str:
        return str(self.path)


def row_key(row: dict) -> tuple[str, ...]:
    """What one diversity.csv row is a number of: its group, metric and settings (`options`, "" in rows before
    it). A row measured again under the same key replaces it; `Written.rows` names this run's rows by it."""
    return tuple(str(row.get(column) or "") for column in ("model", "method", "prompt", "metric", "options"))


def measure_diversity(cfg: DictConfig) -> Written | None:
    """diversity.csv of the run's groups; with shard=I/N only block I of the (model, method, prompt) groups, whose
    rows go to shards/diversity-<I>-of-<N>.json for `merge_diversity` (None returned)."""
    validate(cfg)
    apply_defaults(cfg)  # metric=auto: the run's pair names its metric (pixel for a plain folder)
    metrics = parse_metrics(cfg.metric)
    root, groups, notes = collect_groups(cfg)
    refuse_foreign_outputs(root, {CSV_NAME: OURS})  # a diversity.csv of yours there: before any measurement
    if (root / CSV_NAME).is_file():
        read_table(root / CSV_NAME)  # a damaged row too: told before hours of measuring, not when merging into it
    min_n = max(2, int(cfg.min_n))
    small = [g for g in groups if len(g.paths) < min_n]
    notes += skipped_notes(small, min_n)
    groups = [g for g in groups if len(g.paths) >= min_n]
    if not groups:
        _report(notes)
        raise UserError(f"no group has at least min_n={min_n} images; nothing to measure")
    shard = parse_shard(cfg.get("shard"))
    if shard is not None:  # whole groups: every image of a prompt in one shard (pairwise distances need them all)
        fingerprint = groups_fingerprint(cfg, groups)
        groups = [groups[i] for i in shard.block(len(groups))]
        if not groups:
            return save_shard_rows(root, shard, fingerprint, [])

    device = resolve_device(str(cfg.device))
    adherence: list[dict] = []
    off_prompt: list[Group] = []  # adherent_only: groups too few of whose images are on-prompt
    if cfg.adherent_only:  # adherence over every image first, then diversity over the on-prompt ones only
        adherence = toy_adherence_rows(groups, device, notes, float(cfg.ci))
        groups, off_prompt = adherent_groups(groups, device, min_n, notes)
        if not groups and shard is None:  # a shard goes on: its adherence rows and skipped groups are for the merge
            _report(notes)
            raise UserError(f"adherent_only: no group has at least min_n={min_n} on-prompt images; nothing to measure")
    if 0 < int(cfg.bootstrap) < ROUGH_BOOTSTRAP:
        notes.append(
            f"bootstrap={cfg.bootstrap}: an interval from so few resamples is rough (the default is 1000); its rows "
            f"say bootstrap={cfg.bootstrap} in their options"
        )
    pairs = [g for g in groups if len(g.paths) < MIN_INTERVAL_N]
    if pairs and int(cfg.bootstrap) > 0 and any(m in EMBEDDERS for m in metrics):
        notes.append(
            f"{len(pairs)} group(s) of 2 images (e.g. {pairs[0].label}): one pair, so no interval (one needs "
            f"n >= {MIN_INTERVAL_N})"
        )
    wanted = [m for m in metrics if m in EMBEDDERS]
    wanted += [vendi_base(m, cfg) for m in metrics if m.startswith("vendi")]
    if not groups:  # a shard whose every group is off-prompt (adherent_only): its adherence rows only
        metrics, wanted = [], []
    rows: list[dict] = []
    used: dict[str, dict] = {}  # the embedders' provenance, for the run record
    for name in dict.fromkeys(wanted):
        options = OmegaConf.to_container(cfg.embedders.get(name) or {}, resolve=True)
        options.setdefault("batch_size", int(cfg.batch_size))
        embedder = get_embedder(name, device, **options)
        if hasattr(embedder, "distances"):  # LPIPS: distances streamed per layer and block, no embeddings kept
            found = streamed_rows(cfg, name, embedder, groups, metrics, notes)
        else:
            found = embedder_rows(cfg, name, embedder, groups, metrics, notes, shard)
        # the shipped defaults read once an embedder, not once a row; Vendi's interval is a jackknife: no bootstrap
        measured_with, bootstrap = embedder_options(name, options), interval_options(cfg)
        rows += [
            with_options(row, measured_with, "" if row["metric"].startswith("vendi") else bootstrap) for row in found
        ]
        used[name] = embedder_record(embedder, name)
    if "toy_coverage" in metrics:
        rows += toy_coverage_rows(groups, device, (cfg.embedders.get("toy_features") or {}).get("path"), notes)
    if "clip_score" in metrics:
        rows += clip_score_rows(groups, device, int(cfg.batch_size), notes)
        used["clip_score"] = {"model": preflight.CLIP_SCORE_MODEL}
    if cfg.adherent_only:  # every number measured on the kept images says so; adherence is over all of them
        rows = [{**row, "metric": row["metric"] + ADHERENT} for row in rows] + adherence
    elif "toy_adherence" in metrics or "toy_features" in metrics:  # toy diversity never comes without it
        rows += toy_adherence_rows(groups, device, notes, float(cfg.ci))

    refuse_non_finite(rows)
    rows.sort(key=lambda r: (r["model"], r["method"], r["prompt"]))  # stable: metrics keep their order
    rows = [{**row, "ci": float(cfg.ci) if row.get("ci_low") is not None else None} for row in rows]
    record_invocation(root, config=cfg, device=str(device), dtype="float32", embedders=used)  # a shard's too
    if shard is not None:
        return save_shard_rows(root, shard, fingerprint, rows, used, _keys(off_prompt))
    target = root / CSV_NAME
    write_rows(target, rows, skipped=small, adherent_skipped=_keys(off_prompt))
    _print_table(rows, target)
    _report(notes + removed_note(small) + removed_note(off_prompt, ADHERENT))
    return Written(target, frozenset(row_key(row) for row in rows))


# ------------------------------------------------------------------------------------------- shards and merge


def groups_fingerprint(cfg: DictConfig, groups: list[Group]) -> str:
    """What a shard's rows depend on: the settings that change a number, every group's images and references and
    their stamps (`file_stamps`): an image replaced between the shards and the merge makes another fingerprint
    (stale rows are never merged)."""
    settings = {
        key: value
        for key, value in OmegaConf.to_container(cfg, resolve=True).items()
        if key not in (*LAUNCH_KEYS, "device", "out")
    }
    # paths and which samples they are (seed, settings): images remade in place make another fingerprint
    images = [[g.model, g.method, g.prompt, [str(p) for p in g.paths], g.samples] for g in groups]
    files = [path for g in groups for path in (*g.paths, *g.reference)]
    key = {"settings": settings, "images": images, "stamps": file_stamps(files)}
    return hashlib.sha1(digest_text(key).encode()).hexdigest()[:16]


def _keys(groups: Iterable[Group]) -> list[tuple[str, str, str]]:
    return [(g.method, g.model, g.prompt) for g in groups]


def shard_rows_path(root: Path, shard: Shard) -> Path:
    return root / "shards" / f"diversity-{shard.name}.json"


def save_shard_rows(
    root: Path,
    shard: Shard,
    fingerprint: str,
    rows: list[dict],
    used: dict | None = None,
    off_prompt: list[tuple[str, str, str]] | None = None,
) -> None:
    """The shard's rows, its embedders' records (options, weights with their hashes) and, with adherent_only, the
    groups it left with too few on-prompt images (the merge removes their earlier @adherent rows)."""
    from ..core.atomic import write_text

    body = {"fingerprint": fingerprint, "rows": [{key: _fmt(row.get(key)) for key in COLUMNS} for row in rows]}
    body["embedders"] = used or {}
    body["off_prompt"] = [list(key) for key in off_prompt or []]
    write_text(shard_rows_path(root, shard), json.dumps(body, indent=1) + "\n")


def _shard_fingerprint(cfg: DictConfig) -> tuple[Path, str, list[Group]]:
    """(where diversity.csv goes, the shards' fingerprint, the groups too small to measure)."""
    validate(cfg)
    apply_defaults(cfg)
    root, groups, _ = collect_groups(cfg)
    min_n = max(2, int(cfg.min_n))
    small = [g for g in groups if len(g.paths) < min_n]
    return root, groups_fingerprint(cfg, [g for g in groups if len(g.paths) >= min_n]), small


def diversity_remaining(cfg: DictConfig, shard: Shard) -> int:
    """0 when shard `shard` already saved its rows for these settings and images, else 1."""
    root, fingerprint, _ = _shard_fingerprint(cfg)
    return int(_saved_rows(shard_rows_path(root, shard)).get("fingerprint") != fingerprint)


def _saved_rows(path: Path) -> dict:
    """A shard's saved rows, or {} when it has none or its file is damaged (its work is left to do)."""
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, truncated or not JSON: the shard measures again
        return {}
    return body if isinstance(body, dict) else {}


def merge_diversity(cfg: DictConfig, count: int) -> Path:
    """diversity.csv from the N shards' rows, in the unsharded order; the shard files go."""
    root, fingerprint, small = _shard_fingerprint(cfg)  # small: skipped by every shard, their old rows go
    paths = [shard_rows_path(root, Shard(i, count)) for i in range(count)]
    rows, used, off_prompt = [], {}, []
    for path in paths:
        body = _saved_rows(path)
        if body.get("fingerprint") != fingerprint:
            raise UserError(
                f"{path} is missing, damaged or from other settings or images; rerun the same diversity command"
            )
        rows += body["rows"]
        off_prompt += [tuple(key) for key in body.get("off_prompt") or []]
        for name, record in (body.get("embedders") or {}).items():
            # what the embeddings depend on (options, weights' bytes, preparation), not where the weights were
            # read (a node-local HF_HOME): weights replaced between two shards' runs
            if used.setdefault(name, record).get("cache_fingerprint") != record.get("cache_fingerprint"):
                raise UserError(
                    f"the shards in {path.parent} measured {name} with other weights or options; delete them "
                    "and rerun the same diversity command"
                )
    rows.sort(key=lambda r: (r["model"], r["method"], r["prompt"]))  # stable, as in one process
    target = root / CSV_NAME
    record_invocation(root, config=cfg, merged_shards=count, embedders=used)
    write_rows(target, rows, skipped=small, adherent_skipped=off_prompt)
    _report(skipped_notes(small, int(cfg.min_n)) + removed_note(small) + removed_note(off_prompt, ADHERENT))
    for path in paths:
        path.unlink()
    _print_table(rows, target)
    return target


def _progress():
    from ..core.console import progress_bar

    return progress_bar(transient=True)  # elapsed, remaining, it/s; plain wide lines off a terminal


def _print_table(rows: Iterable[dict], target: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"diversity ({target})")
    shown = [column for column in COLUMNS if column not in ("samples", "reference_id")]  # digests for the report
    for column in shown:
        table.add_column(column, justify="right" if column in ("n", "value", "ci_low", "ci_high", "ci") else "left")
    for row in rows:
        table.add_row(*(_cell(column, row.get(column)) for column in shown))
    Console(width=160).print(table)


def _cell(column: str, value: object) -> str:
    if value is None:
        return ""
    if column == "ci" and isinstance(value, float):  # the interval's level: 95%, not 0.9500
        return f"{value * 100:g}%"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def skipped_notes(small: list[Group], min_n: int) -> list[str]:
    return [f"skipped {g.label}: {len(g.paths)} image(s) < min_n={max(2, min_n)}" for g in small]


def removed_note(small: list[Group] | list[tuple[str, str, str]], metric: str = "") -> list[str]:
    """Said once the earlier rows (of `metric`: those ending so) of the skipped groups are gone from diversity.csv
    (not when nothing is written)."""
    which = f"{metric} rows" if metric else "rows"
    return [f"earlier {which} (if any) of the {len(small)} skipped group(s) left diversity.csv"] if small else []


def _report(notes: list[str]) -> None:
    from rich.console import Console

    console = Console(stderr=True)
    for note in notes:
        console.print(f"[yellow]note[/]: {note}")
