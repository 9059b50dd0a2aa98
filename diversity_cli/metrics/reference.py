"""Reference image sets for `diversity-cli fid`: COCO (captions file + a local image folder), any image folder,
or the toy data generator.

The paper's setting: the 30k COCO captions of `data/coco_30k.csv` (one evaluation seed each) drive
`generate prompts=data/coco_30k.csv`, and the real COCO images named by the same rows' `coco_id` give the
reference statistics. A set knows its own identity (what the cached statistics are keyed by) and yields its
images in batches; preparing them for a feature network is `metrics.quality`'s job.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ..core.errors import UserError
from ..core.fingerprint import file_hash, files_hash
from ..core.images import open_rgb
from ..core.resources import data_file, data_path

COCO_CAPTIONS = data_file("coco_30k.csv")  # the default prompt set of the paper's Tables 2 and 4
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
# How COCO image files are usually named: val2014 / train2014 releases, the 2017 releases, bare ids.
COCO_PATTERNS = (
    "COCO_val2014_{coco_id:012d}.jpg",
    "COCO_train2014_{coco_id:012d}.jpg",
    "{coco_id:012d}.jpg",
    "{coco_id}.jpg",
)


@dataclass
class ReferenceSet:
    """A fixed, ordered list of reference images and what identifies it for the statistics cache."""

    kind: str  # coco | folder | toy
    description: str
    identity: dict[str, Any]
    count: int
    files: list[Path] = field(default_factory=list)  # coco and folder sets
    toy_prompts: list[str] = field(default_factory=list)  # toy sets: scenes of these prompts (none: the dataset)
    toy_per_prompt: int = 0
    toy_seed: int = 0

    def batches(self, batch_size: int, mapper: Callable[..., Iterable[Any]] = map) -> Iterator[list[Any]]:
        """The images in order, `batch_size` at a time: PIL images (files) or uint8 HxWx3 arrays (toy).
        `mapper`: `map` or a thread pool's, to read files in parallel."""
        if self.kind == "toy":
            yield from _toy_batches(self.toy_prompts, self.toy_per_prompt, self.count, self.toy_seed, batch_size)
            return
        for start in range(0, self.count, batch_size):
            yield list(mapper(load_image, self.files[start : start + batch_size]))


def load_image(path: Path):
    """One image as RGB; the single place reference files are read (tests count the calls)."""
    return open_rgb(path)  # a truncated or corrupt file: one line naming it


def identity_id(identity: dict[str, Any]) -> str:
    """A short id of a reference's identity (its images' names and bytes, or the toy scenes' settings)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]


def open_reference(spec: str, cfg: DictConfig, prompts: list[str] | None = None) -> ReferenceSet:
    """`coco`, `toy`, or a folder of images; `cfg` is the fid config (its `coco`, `toy`, `reference_limit`).
    `prompts`: the prompts of the images to compare, for the toy reference (ground-truth scenes of each)."""
    limit = cfg.get("reference_limit")
    if limit is not None and (not isinstance(limit, int) or limit < 2):
        raise UserError(f"reference_limit={limit} must be an integer >= 2 (FID needs at least two images) or null")
    if spec == "coco":
        return coco_reference(cfg.coco, limit)
    if spec == "toy":
        if cfg.toy.mode not in ("prompts", "dataset"):
            raise UserError(f"toy.mode={cfg.toy.mode}: use prompts (scenes of the run's prompts) or dataset")
        chosen = sorted(set(prompts or [])) if cfg.toy.mode == "prompts" else []
        count = limit if limit is not None else int(cfg.toy.count)
        return toy_reference(chosen, int(cfg.toy.per_prompt), count, int(cfg.toy.seed))
    path = Path(str(spec)).expanduser()
    if not path.is_dir():
        raise UserError(f"reference={spec} is neither 'coco', 'toy' nor a folder of images")
    return folder_reference(path, limit)


def folder_reference(folder: Path, limit: int | None = None) -> ReferenceSet:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if limit is not None:
        check_cut(limit, len(files), f"reference folder {folder}")
        files = files[:limit]
    if len(files) < 2:
        raise UserError(f"reference folder {folder} holds {len(files)} image(s); FID needs at least 2")
    return _file_set("folder", f"{len(files)} images in {folder}", folder, files)


def folder_id(folder: Path) -> tuple[str, int]:
    """(identity id, image count) of a folder of reference images, as fid.csv's and diversity.csv's `reference_id`
    name it and the report computes it again; UserError for fewer than 2 images."""
    reference = folder_reference(folder)
    return identity_id(reference.identity), reference.count


def check_cut(limit: int, count: int, what: str, unit: str = "images") -> None:
    """A limit at or above the images there cuts nothing, yet its label (`photos(limit=1000)`) says it did and its
    number stands in a column apart from the same images' unlimited one."""
    if limit >= count:
        raise UserError(
            f"reference_limit={limit}: {what} holds {count} {unit}, so it cuts nothing; leave it out to use them all, "
            f"or give one below {count}"
        )


def coco_reference(conf: DictConfig, limit: int | None = None) -> ReferenceSet:
    """The COCO images named by a captions file: a CSV with a `coco_id` column (like `data/coco_30k.csv`)
    or a COCO annotation JSON (`captions_val2014.json`: its `images[].file_name`), from the folder `images`."""
    if not conf.get("images"):
        raise UserError(
            "reference=coco needs the COCO images: set coco.images=/path/to/val2014 (the folder of "
            "COCO_val2014_*.jpg files; coco_30k.csv's coco_id values are val2014 image ids)"
        )
    folder = Path(str(conf.images)).expanduser()
    if not folder.is_dir():
        raise UserError(f"coco.images={folder} is not a folder; point it at the COCO val2014 images")
    captions = data_path(str(conf.captions))
    names = _names_from_annotations(captions, folder, str(conf.get("pattern") or "auto"))
    if limit is not None:
        check_cut(limit, len(names), f"{captions.name}")
        names = names[:limit]
    files = [folder / name for name in names]
    missing = [p for p in files if not p.is_file()]
    if missing:
        raise UserError(
            f"{len(missing)} of {len(files)} COCO images named by {captions.name} are not in {folder} "
            f"(e.g. {missing[0].name}); download the COCO images there or set coco.pattern to their file names"
        )
    if len(files) < 2:
        raise UserError(f"{captions} names {len(files)} image(s); FID needs at least 2")
    return _file_set("coco", f"{len(files)} COCO images from {folder}", folder, files)


def toy_reference(prompts: list[str], per_prompt: int, count: int, seed: int) -> ReferenceSet:
    """Toy ground truth: `per_prompt` scenes of each prompt (its named factors fixed, the rest uniform), the
    analogue of COCO's real image per caption; with no prompts, `count` scenes of the toy dataset."""
    _toy_data()  # fail now, not after the models are loaded
    if prompts:
        count = per_prompt * len(prompts)
        description = f"{count} toy scenes ({per_prompt} per prompt of {len(prompts)})"
    else:
        description = f"{count} toy dataset scenes"
    if count < 2:
        raise UserError(f"the toy reference would hold {count} image(s); FID needs at least 2 (raise toy.per_prompt)")
    prompt_hash = hashlib.sha1("\n".join(prompts).encode()).hexdigest()
    identity = {"kind": "toy", "count": count, "seed": seed, "prompts": prompt_hash, "per_prompt": per_prompt}
    return ReferenceSet(
        kind="toy",
        description=f"{description}, seed {seed}",
        identity={**identity, "renderer": toy_renderer()},
        count=count,
        toy_prompts=prompts,
        toy_per_prompt=per_prompt,
        toy_seed=seed,
    )


def toy_renderer() -> dict[str, Any]:
    """What the toy scenes' pixels depend on: the renderer's version and its source file's bytes."""
    data = _toy_data()
    return {"version": getattr(data, "RENDERER_VERSION", None), "source": file_hash(data.__file__)}


def _file_set(kind: str, description: str, folder: Path, files: list[Path]) -> ReferenceSet:
    # The images' names and bytes (hashes memoised by path, mtime and size): a changed image, even one rewritten
    # with its old mtime, is a different reference and its statistics are recomputed.
    images = files_hash(files, root=folder, persist=True)
    identity = {"kind": kind, "folder": str(folder.resolve()), "count": len(files), "images": images}
    return ReferenceSet(kind=kind, description=description, identity=identity, count=len(files), files=files)


def _names_from_annotations(captions: Path, folder: Path, pattern: str) -> list[str]:
    if not captions.is_file():
        raise UserError(f"COCO captions file {captions} not found; set coco.captions (default data/coco_30k.csv)")
    if captions.suffix.lower() == ".json":
        return _names_from_json(captions)
    with captions.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if "coco_id" not in (reader.fieldnames or []):
            raise UserError(f"{captions} has no 'coco_id' column; use data/coco_30k.csv or a COCO annotation .json")
        ids = list(dict.fromkeys(int(row["coco_id"]) for row in reader if (row["coco_id"] or "").strip()))
    if not ids:
        raise UserError(f"{captions} lists no coco_id")
    pattern = _pick_pattern(folder, ids[0]) if pattern == "auto" else pattern
    try:
        return [pattern.format(coco_id=i) for i in ids]
    except (KeyError, IndexError, ValueError) as err:
        raise UserError(f"coco.pattern='{pattern}' is not a file-name pattern with {{coco_id}} ({err})") from None


def _names_from_json(captions: Path) -> list[str]:
    try:
        images = json.loads(captions.read_text(encoding="utf-8"))["images"]
        names = [str(entry["file_name"]) for entry in images]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise UserError(f"{captions} is not a COCO annotation file (no images[].file_name)") from None
    return list(dict.fromkeys(names))


def _pick_pattern(folder: Path, first_id: int) -> str:
    for pattern in COCO_PATTERNS:
        if (folder / pattern.format(coco_id=first_id)).is_file():
            return pattern
    return COCO_PATTERNS[0]  # nothing matched: the missing-file error names the val2014 file it wanted


def _toy_data():
    try:
        from ..toy import data
    except ImportError:
        raise UserError(
            "reference=toy needs the toy data generator (diversity_cli.toy.data), which is missing"
        ) from None
    return data


def _toy_batches(prompts: list[str], per_prompt: int, count: int, seed: int, batch_size: int) -> Iterator[list[Any]]:
    data = _toy_data()
    if prompts:  # ground-truth scenes of each prompt, in prompt order
        images = [image for prompt in prompts for image in data.render_prompt_samples(prompt, per_prompt, seed)]
    else:
        images = list(data.generate_dataset(count, seed).images)
    for start in range(0, len(images), batch_size):
        yield images[start : start + batch_size]
