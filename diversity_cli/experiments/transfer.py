"""`diversity-cli transfer-lora`: control distillation (paper Table 1). An adapter trained on one model of a pair
(the source) is applied, without retraining, to the other model and, as the reference, to the source itself;
each target generates the same prompts and seeds without and with it, and the change of CLIP score toward the
adapter's concept text measures how much of the control carried over:

    clip_without, clip_with = mean over the images of CLIPScore(image, concept)    (torchmetrics: 100 x cosine)
    change_pct = 100 * (clip_with - clip_without) / clip_without

On the toy pair (no CLIP there) the toy factor classifier measures it instead: the fraction of images whose
predicted factor has the concept's value (e.g. colour = red), without and with the adapter.

Writes the images into the run directory `out` (`<model>/<role>/...` without the adapter, exactly as
`generate method=base|distilled` makes them, so existing ones are reused; `<model>/<role>+<adapter>_s<scale>/...`
with it; rows in samples.csv), `<out>/transfer.csv` and `<out>/transfer_<adapter>_s<scale>.png` (rows: source ->
target, columns: without / with for the first prompt's first seeds). Reruns resume and never duplicate rows.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ..core.atomic import atomic_path
from ..core.console import progress_bar, stderr_console
from ..core.errors import UserError
from ..core.images import open_rgb
from ..core.prompts import PromptRow, prompt_id, read_prompts
from ..core.record import record_invocation
from ..core.rundir import RunDir, merge_rows
from ..core.schema import check
from ..core.schemas.transfer_lora import TransferLoraConfig
from ..models.adapters import Adapter, applied, read_adapter
from ..models.provenance import pair_provenance
from .generation import Job, pending, sample_batch, settings_hash

COLUMNS = ["adapter", "concept", "source", "target", "n", "clip_without", "clip_with", "change_pct"]
CLASSIFIER_COLUMNS = ["classifier_without", "classifier_with", "classifier_target"]
META = ["model", "scale", "kind", "clip_model"]
KEY = ("adapter", "concept", "source", "target", "model", "scale")
DIRECTIONS = {"base_to_distilled": ("base",), "distilled_to_base": ("distilled",), "both": ("base", "distilled")}
ROLES = ("base", "distilled")


@dataclass(frozen=True)
class Transfer:
    """One adapter and the model it was trained on; its targets are the source itself and the other model."""

    adapter: Adapter
    source: str
    name: str  # the adapter's name in tables and folder names

    @property
    def targets(self) -> tuple[str, str]:
        return self.source, other(self.source)


@dataclass
class Group:
    """The images of one target model without the adapter (transfer None) or with one transfer's adapter."""

    role: str
    tag: str
    settings: str
    jobs: list[Job]
    transfer: Transfer | None = None


def other(role: str) -> str:
    return "distilled" if role == "base" else "base"


def transfer(cfg: DictConfig) -> Path:
    validate(cfg)
    rows = read_prompts(cfg.prompt, cfg.prompts, cfg.limit, n=int(cfg.n), max_images=cfg.get("max_images"))
    transfers = plan_transfers(cfg)  # adapter files are read and recognised before any model loads
    concept = concept_text(cfg, transfers)
    clip_spec = clip_model(cfg)
    target = classifier_target(cfg, concept)
    if clip_spec is not None and not concept:
        raise UserError('concept="..." is needed: the CLIP score is measured toward the adapter\'s concept text')
    rundir = RunDir(cfg.out)
    groups = plan_groups(cfg, rows, transfers)
    todo = {group.tag: pending(rundir, group.jobs, group.settings, bool(cfg.overwrite)) for group in groups}
    scorers = Scorers.load(cfg.device, clip_spec, target)  # a missing CLIP fails now, not after the sampling
    console = stderr_console()
    if any(todo.values()):
        generate(cfg, rundir, groups, todo, console)
    else:
        console.print(f"[green]all images present[/] in {rundir.root}; measuring")
    results = measure(cfg, rundir, groups, concept, scorers)
    path = write_results(rundir.root / "transfer.csv", results)
    for transfer in transfers:
        save_grid(rundir, groups, transfer, rows, int(cfg.grid_seeds), int(cfg.grid_cell), float(cfg.scale))
    show(results, path)
    return path


def validate(cfg: DictConfig) -> None:
    """Every key against the transfer-lora schema (types and ranges), then what needs two keys or the pair."""
    check(TransferLoraConfig, cfg)
    if not cfg.adapter:
        raise UserError("adapter=... is needed: a LoRA / slider / Custom Diffusion weights file, folder or hub id")
    if cfg.direction == "both" and not cfg.reverse_adapter:
        raise UserError("direction=both needs reverse_adapter=...: the adapter trained on the distilled model")
    if cfg.model.family == "pixart":
        raise UserError(f"model={cfg.model.name}: diffusers has no adapter loaders for PixArt; use an SD or SDXL pair")


def plan_transfers(cfg: DictConfig) -> list[Transfer]:
    sources = DIRECTIONS[cfg.direction]
    specs = [(cfg.adapter, cfg.adapter_file, cfg.adapter_name)]
    if cfg.direction == "both":
        specs.append((cfg.reverse_adapter, cfg.reverse_adapter_file, None))
    transfers = []
    for source, (spec, file, name) in zip(sources, specs, strict=True):
        adapter = read_adapter(str(spec), file)
        transfers.append(Transfer(adapter, source, _safe(name or adapter.name)))
    if len(transfers) == 2 and transfers[0].name == transfers[1].name:  # their images would share folders
        transfers = [Transfer(t.adapter, t.source, f"{t.name}@{t.source}") for t in transfers]
    return transfers


def concept_text(cfg: DictConfig, transfers: list[Transfer]) -> str | None:
    """`concept=`, else the concept train-lora recorded beside the adapter."""
    if cfg.concept:
        return str(cfg.concept)
    recorded = {t.adapter.meta.get("concept") for t in transfers} - {None}
    return str(next(iter(recorded))) if len(recorded) == 1 else None


def is_toy(cfg: DictConfig) -> bool:
    return str(cfg.model.name).startswith("toy")


def clip_model(cfg: DictConfig) -> str | None:
    from ..metrics.quality import DEFAULT_CLIP

    if cfg.clip_model == "auto":
        return None if is_toy(cfg) else DEFAULT_CLIP
    return None if cfg.clip_model in (None, "none", False) else str(cfg.clip_model)


def classifier_target(cfg: DictConfig, concept: str | None) -> tuple[str, int] | None:
    """(factor, value index) the toy classifier counts: `classifier_target=factor=value`, else the one toy factor
    value the concept names ("red", "make shapes red"); None when the classifier is off."""
    enabled = is_toy(cfg) if cfg.classifier == "auto" else bool(cfg.classifier)
    if not enabled:
        return None
    from ..toy.data import FACTORS, parse_prompt

    if cfg.classifier_target:
        factor, _, value = str(cfg.classifier_target).partition("=")
        if factor not in FACTORS or value not in FACTORS[factor]:
            raise UserError(f"classifier_target={cfg.classifier_target}: use factor=value with a toy factor value")
        return factor, FACTORS[factor].index(value)
    named = parse_prompt(concept or "")
    if len(named) > 1:
        named.pop("count", None)  # "make shapes red": the plural is not the concept
    if len(named) != 1:
        raise UserError(f"concept '{concept}' names {len(named)} toy factor values; set classifier_target=factor=value")
    return next(iter(named.items()))


# --- images -------------------------------------------------------------------------------------------------------


def plan_groups(cfg: DictConfig, rows: list[PromptRow], transfers: list[Transfer]) -> list[Group]:
    """Without-adapter groups for every target, then each transfer's with-adapter groups."""
    model = str(cfg.model.name)
    scale = float(cfg.scale)
    roles = [role for role in ROLES if any(role in t.targets for t in transfers)]
    groups = [Group(role, role, _plain_settings(cfg, role), _jobs(cfg, rows, f"{model}/{role}")) for role in roles]
    for transfer in transfers:
        for role in transfer.targets:
            tag = f"{role}+{transfer.name}_s{scale:g}"
            settings = _adapter_settings(cfg, role, transfer.adapter, scale)
            groups.append(Group(role, tag, settings, _jobs(cfg, rows, f"{model}/{tag}"), transfer))
    return groups


def _jobs(cfg: DictConfig, rows: list[PromptRow], folder: str) -> list[Job]:
    jobs: dict[str, Job] = {}
    for row in rows:
        first = row.seed if row.seed is not None else int(cfg.seed)
        for j in range(int(cfg.n)):
            path = f"{folder}/{prompt_id(row.prompt)}/{first + j:06d}.png"
            jobs.setdefault(path, Job(row.prompt, first + j, path))
    return list(jobs.values())


def _plain_settings(cfg: DictConfig, role: str) -> str:
    # generate's own fingerprint: images of `generate method=base|distilled` in the same folder are these images
    return settings_hash(OmegaConf.create({"model": cfg.model, "method": role}))


def _adapter_settings(cfg: DictConfig, role: str, adapter: Adapter, scale: float) -> str:
    keys = {
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "method": role,
        "adapter": adapter.digest,
        "kind": adapter.kind,
        "scale": scale,
    }
    return hashlib.sha1(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:12]


def generate(cfg: DictConfig, rundir: RunDir, groups: list[Group], todo: dict[str, list[Job]], console) -> None:
    from ..models.loading import load_pair, resolve_device, resolve_dtype

    device = resolve_device(cfg.device)
    pair = load_pair(cfg.model, device, resolve_dtype(cfg.model.dtype, device))
    rundir.root.mkdir(parents=True, exist_ok=True)
    name = f"{cfg.model.name}_transfer"
    rundir.save_config(name, cfg)
    rundir.save_versions(name, {"device": str(device)})
    models = pair_provenance(cfg.model, pair)  # hub id, revision and weights hash of every network
    record_invocation(rundir.root, config=cfg, device=str(device), dtype=str(pair.dtype), models=models)
    with progress_bar(console) as progress:
        for group in groups:
            jobs = todo[group.tag]
            if not jobs:
                continue
            task = progress.add_task(f"{cfg.model.name} {group.tag}", total=len(jobs))
            if group.transfer is None:
                sample_group(pair, rundir, group, jobs, int(cfg.batch_size), lambda n, t=task: progress.advance(t, n))
                continue
            with applied(pair, group.role, group.transfer.adapter, float(cfg.scale)):
                sample_group(pair, rundir, group, jobs, int(cfg.batch_size), lambda n, t=task: progress.advance(t, n))


def sample_group(pair, rundir: RunDir, group: Group, jobs: list[Job], batch_size: int, advance) -> None:
    """The jobs' images with the group's model alone (its own scheduler, steps and guidance), as `generate`."""
    from ..sampling.plan import make_plan

    for start in range(0, len(jobs), batch_size):
        batch = jobs[start : start + batch_size]
        plan = make_plan(pair, group.role)  # schedulers carry step state: fresh per batch
        # Encoded after the adapter is on: it may touch the text encoders.
        images, seconds = sample_batch(pair, plan, [job.prompt for job in batch], [job.seed for job in batch])
        records = []
        for job in batch:
            records.append(
                {
                    "method": group.role, "model": pair.name, "prompt": job.prompt, "seed": job.seed, "k": "",
                    "steps": plan.steps, "nfe": plan.nfe, "seconds": f"{seconds:.4f}", "path": job.path,
                    "base_guidance": "", "base_steps": "", "tag": group.tag, "settings": group.settings,
                }
            )  # fmt: skip
        rundir.write_images([(job.path, image) for job, image in zip(batch, images, strict=True)], records)
        advance(len(batch))


# --- measuring ----------------------------------------------------------------------------------------------------


@dataclass
class Scorers:
    """What measures the images: torchmetrics' CLIPScore toward the concept, the toy factor classifier, or both."""

    device: torch.device
    clip: Any = None
    clip_spec: str | None = None
    classifier: Any = None
    target: tuple[str, int] | None = None

    @classmethod
    def load(cls, device: str, clip_spec: str | None, target: tuple[str, int] | None) -> Scorers:
        from ..metrics.quality import load_clip
        from ..models.loading import resolve_device

        resolved = resolve_device(device)
        classifier = None
        if target is not None:
            from ..toy.features import load_classifier

            classifier = load_classifier(resolved)
        return cls(resolved, load_clip(clip_spec, resolved), clip_spec, classifier, target)

    def score(self, images: list, concept: str | None, batch_size: int) -> dict[str, float | None]:
        clip = clip_mean(self.clip, images, concept or "", batch_size) if self.clip is not None else None
        fraction = None
        if self.classifier is not None and self.target is not None:
            fraction = classifier_fraction(self.classifier, images, self.target, self.device)
        return {"clip": clip, "classifier": fraction}


def measure(
    cfg: DictConfig, rundir: RunDir, groups: list[Group], concept: str | None, scorers: Scorers
) -> list[dict[str, Any]]:
    """One row per (transfer, target): the scores of the target's images without and with the adapter."""
    scores = {
        group.tag: scorers.score(
            [_load_image(rundir.root / job.path) for job in group.jobs], concept, int(cfg.batch_size)
        )
        for group in groups
    }
    plain = {group.role: group for group in groups if group.transfer is None}
    results = []
    for group in groups:
        if group.transfer is None:
            continue
        without, with_ = scores[plain[group.role].tag], scores[group.tag]
        row: dict[str, Any] = {
            "adapter": group.transfer.name,
            "concept": concept or "",
            "source": group.transfer.source,
            "target": group.role,
            "n": len(group.jobs),
            "clip_without": _fmt(without["clip"]),
            "clip_with": _fmt(with_["clip"]),
            "change_pct": _fmt(change_pct(without["clip"], with_["clip"])),
        }
        if scorers.target is not None:
            from ..toy.data import FACTORS

            factor, value = scorers.target
            row["classifier_without"] = _fmt(without["classifier"])
            row["classifier_with"] = _fmt(with_["classifier"])
            row["classifier_target"] = f"{factor}={FACTORS[factor][value]}"
        row.update(
            model=cfg.model.name, scale=f"{float(cfg.scale):g}", kind=group.transfer.adapter.kind,
            clip_model=scorers.clip_spec or "",
        )  # fmt: skip
        results.append(row)
    return results


def change_pct(without: float | None, with_: float | None) -> float | None:
    """100 * (with - without) / without: the paper's % change of CLIP score (Table 1)."""
    if without is None or with_ is None or without == 0:
        return None
    return 100.0 * (with_ - without) / without


def clip_mean(clip, images: list, concept: str, batch_size: int) -> float:
    """Mean CLIP score of the images against the concept text (torchmetrics CLIPScore, 100 x cosine)."""
    clip.reset()
    device = clip.device
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        tensors = [torch.from_numpy(np.array(image)).permute(2, 0, 1).to(device) for image in chunk]
        clip.update(tensors, [concept] * len(chunk))
    return float(clip.compute())


@torch.no_grad()
def classifier_fraction(classifier, images: list, target: tuple[str, int], device: torch.device) -> float:
    """Fraction of the images the toy classifier sees with the target factor value."""
    factor, value = target
    batch = torch.from_numpy(np.stack([np.asarray(image) for image in images])).permute(0, 3, 1, 2)
    predicted = classifier.predict(batch.to(device).float() / 255.0)[factor]
    return float((predicted == value).float().mean())


def write_results(path: Path, results: list[dict[str, Any]]) -> Path:
    """Merge into transfer.csv: rows with the same (adapter, concept, source, target, model, scale) are replaced."""
    rows = merge_rows(path, results, KEY)
    extra = [c for c in CLASSIFIER_COLUMNS if any(r.get(c) for r in rows)]
    with atomic_path(path) as temporary, temporary.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS + extra + META, restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


# --- output -------------------------------------------------------------------------------------------------------


def save_grid(
    rundir: RunDir, groups: list[Group], transfer: Transfer, rows: list[PromptRow], seeds: int, cell: int, scale: float
) -> Path | None:
    """Rows: source -> target; columns: without / with the adapter for the first prompt's first `seeds` seeds."""
    if seeds == 0:
        return None
    from PIL import Image, ImageDraw

    plain = {g.role: g for g in groups if g.transfer is None}
    adapted = {g.role: g for g in groups if g.transfer == transfer}
    prompt = rows[0].prompt
    picks = [j for j in plain[transfer.source].jobs if j.prompt == prompt][:seeds]
    paths = {g.tag: {(j.prompt, j.seed): j.path for j in g.jobs} for g in groups}
    label_width, header = 130, 16
    sheet = Image.new("RGB", (label_width + 2 * cell * len(picks), header + cell * 2), "white")
    draw = ImageDraw.Draw(sheet)
    for col, job in enumerate(picks):
        for half, what in enumerate(("without", "with")):
            draw.text((label_width + (2 * col + half) * cell + 3, 2), f"seed {job.seed} {what}", fill="black")
    for r, role in enumerate(transfer.targets):
        draw.text((4, header + r * cell + cell // 2 - 6), f"{transfer.source} -> {role}", fill="black")
        for col, job in enumerate(picks):
            for half, group in enumerate((plain[role], adapted[role])):
                image = _load_image(rundir.root / paths[group.tag][(job.prompt, job.seed)])
                tile = image.resize((cell, cell), Image.Resampling.BICUBIC)
                sheet.paste(tile, (label_width + (2 * col + half) * cell, header + r * cell))
    path = rundir.root / f"transfer_{transfer.name}_s{scale:g}.png"
    with atomic_path(path) as temporary:
        sheet.save(temporary, format="PNG")
    return path


def show(results: list[dict[str, Any]], path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    names = ["adapter", "source", "target", "n", "clip_without", "clip_with", "change_pct"]
    if any(r.get("classifier_target") for r in results):
        names += CLASSIFIER_COLUMNS
    table = Table(title=str(path))
    for name in names:
        table.add_column(name, justify="right" if name in ("n",) or "clip" in name or "pct" in name else "left")
    for row in results:
        table.add_row(*(str(row.get(name, "")) for name in names))
    out = Console()
    (out if out.is_terminal else Console(width=160)).print(table)


def _load_image(path: Path):

    if not path.is_file():
        raise UserError(f"image {path} is missing; rerun the same transfer-lora command to make it again")
    return open_rgb(path)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.@" else "-" for c in name) or "adapter"


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"
