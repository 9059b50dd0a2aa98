"""`diversity-cli transfer-lora`: control distillation (paper Table 1). An adapter trained on one model of a pair
(the source) is applied, without retraining, to the other model and, as the reference, to the source itself;
each target generates the same prompts and seeds without and with it, and the change of CLIP score toward the
adapter's concept text measures how much of the control carried over:

    clip_without, clip_with = mean over the images of CLIPScore(image, concept)    (torchmetrics: 100 x cosine)
    change_pct = 100 * (clip_with - clip_without) / clip_without

On the toy pair (no CLIP there) the toy factor classifier measures it instead: the fraction of images whose
predicted factor has the concept's value (e.g. colour = red), without and with the adapter.

One run measures one adapter (`adapter=`; two with direction=both) on its prompts, or a table of adapters
(`adapters=FILE`, a row each: name, concept, prompt, scale, as data/table1_adapters.csv), each on its own prompt.
The unit of work is an (adapter, prompt): that prompt's images with the adapter on both targets, and the scores of
those and of the prompt's images without it. Every image is scored on its own (per-image CLIP scores, classifier
hits), in batches that never cross a unit, and the means are taken over the scores; so `shard=I/N`, which makes
and scores block I of N of the units (prompt-major; the images of a prompt without any adapter go with its first
unit) into shards/samples-<I>-of-<N>.csv and shards/transfer-<I>-of-<N>.json, merges (`merge_transfer`) into the
samples.csv and transfer.csv of one process: the same images byte for byte, the same rows but for timing.

Writes the images into the run directory `out` (`<model>/<role>/...` without the adapter, exactly as
`generate method=base|distilled` makes them, so existing ones are reused; `<model>/<role>+<adapter>_s<scale>/...`
with it; rows in samples.csv), `<out>/transfer.csv` and `<out>/transfer_<model>_<adapter>_s<scale>_<prompt id>.png`
(rows: source -> target, columns: without / with for the adapter's first prompt's first seeds). Reruns resume and
never duplicate rows. Each transfer.csv row names the images it was measured over (`images`: the samples.csv tag and
settings of both groups), so the report tells a row whose images a later run remade with other settings.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ..core.atomic import write_text
from ..core.config import pair_config
from ..core.console import progress_bar, stderr_console
from ..core.errors import UserError, did_you_mean
from ..core.fingerprint import digest
from ..core.images import open_rgb, save_png, sheet_layout
from ..core.marker import csv_with, owned_path, refuse_foreign_outputs
from ..core.pair_settings import image_settings
from ..core.prompts import PromptRow, command_limits, command_seed, prompt_id, read_prompts
from ..core.record import record_invocation
from ..core.resources import data_path
from ..core.rundir import SHARDS, RunDir, merge_rows, shard_writer
from ..core.schema import check
from ..core.schemas.transfer_lora import TransferLoraConfig
from ..metrics.change import change_pct, paired_change_interval
from ..models.adapters import METADATA, Adapter, applied, read_adapter
from ..models.provenance import hashed_provenance, hashed_weights, pair_provenance
from ..toy import is_toy_pair
from .generation import (
    Job,
    clear_remade,
    continued_digest,
    pair_image_keys,
    pending,
    refuse_other_weights,
    sample_batch,
    settings_hash,
    settings_keys,
    weights_part,
)
from .shards import LAUNCH_KEYS, Shard, batch_done, parse_shard

# change_low / change_high: change_pct's 95% paired bootstrap interval over the images (CHANGE_CI)
COLUMNS = [
    "adapter", "concept", "source", "target", "n", "clip_without", "clip_with", "change_pct", "change_low",
    "change_high",
]  # fmt: skip
CLASSIFIER_COLUMNS = ["classifier_without", "classifier_with", "classifier_target"]
# prompts: what the scores are over (`prompts_label`); adapter_hash: the adapter file's bytes (sha1, 12 digits);
# adapter_file: where it was read (the report tells an adapter retrained there since); seed: the first seed of each
# prompt (seed=; empty where every prompt row has its own); images: the samples.csv tag and settings of the images
# the row was measured over, without then with the adapter ("distilled=<settings>; distilled+red_s1=<settings>"),
# so the report tells a row whose images were remade since (other settings) or are gone
META = ["model", "scale", "kind", "clip_model", "prompts", "adapter_hash", "adapter_file", "seed", "images"]
# n and seed: a quick check at n=4 or another seed= is a row beside the n=50 one, not its replacement
KEY = ("adapter", "concept", "source", "target", "model", "scale", "prompts", "classifier_target", "n", "seed")
GRID_LAYOUT = (130, 16)  # px: the grid's label column and its header row
CHANGE_CI = 0.95
OURS = csv_with("adapter", "concept", "source", "target", "change_pct")  # an earlier version's transfer.csv, unlisted
DIRECTIONS = {"base_to_distilled": ("base",), "distilled_to_base": ("distilled",), "both": ("base", "distilled")}
ROLES = ("base", "distilled")
TABLE_COLUMNS = ("name", "concept", "prompt", "scale", "file")  # adapters=FILE: name is required, the rest optional
# Keys that change where or how a run is executed, not what it makes or measures (a shard's fingerprint skips them).
UNKEYED = (*LAUNCH_KEYS, "device", "out", "lock_wait")


@dataclass(frozen=True)
class Transfer:
    """One adapter and the model it was trained on; its targets are the source itself and the other model. It is
    measured on the prompt rows `cases` toward `concept` (and, on the toy pair, the classifier's `target`)."""

    adapter: Adapter
    source: str
    name: str  # the adapter's name in tables and folder names
    concept: str | None = None
    scale: float = 1.0
    cases: tuple[int, ...] = ()
    target: tuple[str, int] | None = None  # the toy classifier's (factor, value index); None: no classifier

    @property
    def targets(self) -> tuple[str, str]:
        return self.source, other(self.source)

    def tag(self, role: str) -> str:
        return f"{role}+{self.name}_s{self.scale:g}"


@dataclass
class Group:
    """The images of one target model without an adapter (transfer None) or with one transfer's adapter."""

    role: str
    tag: str
    settings: str
    jobs: list[Job]
    transfer: int | None = None  # index into Plan.transfers
    keys: dict[str, Any] = field(default_factory=dict)  # the settings `settings` digests (named when they clash)


@dataclass
class Plan:
    """What a run makes and measures, settled before any model loads."""

    rows: list[PromptRow]  # every prompt row once: a job's case is its index here
    transfers: list[Transfer]
    groups: list[Group]
    clip_spec: str | None

    @property
    def units(self) -> list[tuple[int, int]]:
        """(case, transfer index) of every (prompt, adapter), prompt-major: the pieces a shard owns whole."""
        return [(c, t) for c in range(len(self.rows)) for t, tr in enumerate(self.transfers) if c in tr.cases]

    def plain(self) -> dict[str, Group]:
        return {group.role: group for group in self.groups if group.transfer is None}

    def owned(self, units: list[tuple[int, int]]) -> dict[str, list[Job]]:
        """Per group tag, the images `units` make: a transfer's own for its units' prompts, and a prompt's images
        without any adapter with that prompt's first unit (so no two shards make one image)."""
        first: dict[int, tuple[int, int]] = {}
        for unit in self.units:
            first.setdefault(unit[0], unit)
        chosen = set(units)
        owned = {}
        for group in self.groups:
            if group.transfer is None:
                cases = {case for case, unit in first.items() if unit in chosen}
            else:
                cases = {case for case, index in chosen if index == group.transfer}
            owned[group.tag] = [job for job in group.jobs if job.case in cases]
        return owned

    def block(self, shard: Shard | None) -> list[tuple[int, int]]:
        units = self.units
        return units if shard is None else [units[i] for i in shard.block(len(units))]


def other(role: str) -> str:
    return "distilled" if role == "base" else "base"


def transfer(cfg: DictConfig) -> Measured | None:
    """Make and measure the run's units (with shard=I/N only block I of them, whose scores go to
    shards/transfer-<I>-of-<N>.json for `merge_transfer`; None returned)."""
    plan = make_plan(cfg)  # adapter files are read and recognised before any model loads
    refuse_foreign_outputs(Path(cfg.out), outputs(cfg, plan))  # a file of yours there: before any image
    shard = parse_shard(cfg.get("shard"))
    units = plan.block(shard)
    writer = shard_writer(shard)
    rundir = RunDir(cfg.out, writer, lock_wait=cfg.get("lock_wait"))
    console = stderr_console()
    if shard is not None and not units:  # more shards than units: this one has nothing to do
        return save_shard_scores(rundir.root, shard, plan_fingerprint(cfg, plan), {})
    groups = {group.tag: group for group in plan.groups}
    mine = plan.owned(units)
    with rundir.writing():  # one process per samples file: a second one waits (lock_wait) or refuses
        done = {row["path"]: row for row in rundir.read_samples()}  # read once for every group
        todo = {
            tag: pending(
                rundir,
                jobs,
                groups[tag].settings,
                bool(cfg.overwrite),
                _clash_advice(plan, groups[tag]),
                keys=groups[tag].keys,
                done=done,
            )
            for tag, jobs in mine.items()
        }
        needs_classifier = any(t.target is not None for t in plan.transfers)
        scorers = Scorers.load(cfg.device, plan.clip_spec, needs_classifier)  # a missing CLIP fails before sampling
        if any(todo.values()):
            generate(cfg, rundir, plan, todo, console)
        else:
            models = hashed_provenance(cfg.model, roles=("base", "distilled", "components"))  # no pair loaded
            if models is not None:  # weights on this machine, hashed from their files (memoised)
                refuse_kept_of_other_weights(cfg, rundir, plan, todo, models)
            console.print(f"[green]all images present[/] in {rundir.root}; measuring")
            # no model loads, but these numbers are this command's: its record says what made them
            rundir.save_config(config_name(cfg), cfg)
            record_invocation(rundir.root, config=cfg)
    scores = score_units(plan, units, rundir, scorers, int(cfg.batch_size))
    if shard is not None:
        return save_shard_scores(rundir.root, shard, plan_fingerprint(cfg, plan), scores)
    return finish(cfg, rundir, plan, aggregate(cfg, plan, scores, rundir.read_samples()))


def validate(cfg: DictConfig) -> None:
    """Every key against the transfer-lora schema (types and ranges), then what needs two keys or the pair."""
    check(TransferLoraConfig, cfg)
    if cfg.adapters:
        if cfg.adapter:
            raise UserError("give adapter= (one adapter) or adapters= (a table of them), not both")
        if cfg.direction == "both" or cfg.reverse_adapter:
            raise UserError(
                "adapters= runs one direction: direction=base_to_distilled or distilled_to_base (one table per "
                "direction)"
            )
        if cfg.adapter_name or cfg.adapter_file:
            raise UserError("adapter_name= and adapter_file= go with adapter=; in adapters= each row's name and file")
    elif not cfg.adapter:
        raise UserError(
            "adapter=... is needed: a LoRA / slider / Custom Diffusion weights file, folder or hub id "
            "(or adapters=FILE: a table of them)"
        )
    if cfg.direction == "both" and not cfg.reverse_adapter:
        raise UserError("direction=both needs reverse_adapter=...: the adapter trained on the distilled model")
    if cfg.model.family == "pixart":
        raise UserError(f"model={cfg.model.name}: diffusers has no adapter loaders for PixArt; use an SD or SDXL pair")
    toy = is_toy_pair(cfg.model)
    classifier = toy if cfg.classifier == "auto" else bool(cfg.classifier)
    if clip_model(cfg) is None and not classifier:  # every image made, every score column empty
        clip = "a toy pair has no CLIP (clip_model=auto)" if cfg.clip_model == "auto" else "clip_model=none"
        off = "classifier=false" if cfg.classifier != "auto" else "the toy classifier is off on a pair of no toy scenes"
        fix = "keep classifier=auto (the toy classifier) or give" if toy else "give"
        raise UserError(f"{clip} and {off}: transfer-lora would measure nothing; {fix} clip_model=<an open_clip model>")


def _clash_advice(plan: Plan, group: Group) -> str:
    """What to do where a group's images were made otherwise: an adapter's images are in a folder of its name (by
    default its folder's), so another adapter of that name wants a name of its own, not to replace them."""
    if group.transfer is None:
        return ""
    name = plan.transfers[group.transfer].name
    return (
        f"if this is another adapter than the one named {name} there, give it a name of its own (adapter_name=, or "
        "the name column of adapters=) to keep both; else "
    )


def make_plan(cfg: DictConfig) -> Plan:
    """The transfers, the prompt rows (each once) and every group's images; bad input fails here, in one line."""
    validate(cfg)
    clip_spec = clip_model(cfg)
    specs = table_transfers(cfg) if cfg.adapters else single_transfers(cfg)
    rows: dict[PromptRow, int] = {}
    transfers = []
    for spec, prompt_rows in specs:
        cases = [rows.setdefault(row, len(rows)) for row in prompt_rows]
        transfers.append(replace(spec, cases=tuple(dict.fromkeys(cases))))
        if clip_spec is not None and not spec.concept:
            raise UserError(
                f'adapter {spec.name}: concept="..." is needed: the CLIP score is measured toward the adapter\'s '
                "concept text"
            )
    rows_list = list(rows)
    return Plan(rows_list, transfers, plan_groups(cfg, rows_list, transfers), clip_spec)


def single_transfers(cfg: DictConfig) -> list[tuple[Transfer, list[PromptRow]]]:
    """adapter= (and reverse_adapter=): every prompt row of prompt= / prompts= for each, toward one concept."""
    rows = read_prompts(cfg.prompt, cfg.prompts, cfg.limit, **command_limits(cfg))
    transfers = plan_transfers(cfg)
    concept = concept_text(cfg, transfers)
    target = classifier_target(cfg, concept)
    return [(replace(t, concept=concept, scale=float(cfg.scale), target=target), rows) for t in transfers]


def plan_transfers(cfg: DictConfig) -> list[Transfer]:
    sources = DIRECTIONS[cfg.direction]
    specs = [("adapter", cfg.adapter, cfg.adapter_file, cfg.adapter_name)]
    if cfg.direction == "both":
        specs.append(("reverse_adapter", cfg.reverse_adapter, cfg.reverse_adapter_file, None))
    transfers = []
    for source, (key, spec, file, name) in zip(sources, specs, strict=True):
        adapter = read_adapter(str(spec), file)
        refuse_other_source(adapter, source, f"{key}={spec}", _direction_fix(cfg, source))
        refuse_other_base(adapter, cfg.model, f"{key}={spec}")
        transfers.append(Transfer(adapter, source, _safe(name or adapter.name)))
    if len(transfers) == 2 and transfers[0].name == transfers[1].name:  # their images would share folders
        transfers = [replace(t, name=f"{t.name}@{t.source}") for t in transfers]
    return transfers


def table_transfers(cfg: DictConfig) -> list[tuple[Transfer, list[PromptRow]]]:
    """adapters=FILE: one transfer per row, its weights at <adapter_dir>/<name> (default: the table's folder), its
    own concept (else concept=, else train-lora's record), prompt (else prompt= / prompts=) and scale (else
    scale=)."""
    path = data_path(str(cfg.adapters))
    entries = read_adapter_table(path)
    folder = Path(str(cfg.adapter_dir)).expanduser() if cfg.adapter_dir else path.parent
    source = DIRECTIONS[cfg.direction][0]
    shared: list[PromptRow] | None = None
    specs = []
    for line, entry in entries:
        what = f"adapters={path} line {line}: adapter {entry['name']}"
        weights = folder / entry["name"]
        if not weights.exists():  # a row's name is a file or folder in the table's folder, never a hub id
            near = did_you_mean(weights.name, sorted(p.name for p in folder.iterdir())) if folder.is_dir() else ""
            raise UserError(f"{what}: no file or folder {weights}{near or ''} (adapter_dir= sets where they are)")
        adapter = read_adapter(str(weights), entry.get("file") or None)
        fix = _direction_fix(cfg, source) + " (one table per direction)"
        refuse_other_source(adapter, source, what, fix)
        refuse_other_base(adapter, cfg.model, what)
        recorded = adapter.meta.get("concept")
        concept = entry.get("concept") or cfg.concept or (str(recorded) if recorded else None)
        if entry.get("prompt"):
            rows = read_prompts(entry["prompt"], None, **command_limits(cfg))
        else:  # the command's prompts, read once
            shared = shared or read_prompts(cfg.prompt, cfg.prompts, cfg.limit, **command_limits(cfg))
            rows = shared
        scale = _table_scale(entry.get("scale"), cfg, path, line)
        transfer = Transfer(adapter, source, _safe(entry["name"]), concept and str(concept), scale)
        specs.append((replace(transfer, target=classifier_target(cfg, transfer.concept)), rows))
    return specs


# command-line keys an adapters= table's column of the same name sets per row: (key, column, its default)
ROW_SETS = (
    ("scale", "scale", 1.0),
    ("concept", "concept", None),
    ("prompt", "prompt", None),
    ("prompts", "prompt", None),
)


def refuse_overruled(cfg: DictConfig) -> None:
    """scale=, concept=, prompt= or prompts= given beside an adapters= table whose row sets that column to another
    value: the row wins (`table_transfers`), so the command-line value was dropped without a word (a slider asked
    for at scale=-1 ran at +1). Checked before the pair's defaults fill prompt=."""
    if not cfg.get("adapters"):
        return
    path = data_path(str(cfg.adapters))
    for key, column, default in ROW_SETS:
        value = cfg.get(key)
        if value is None or value == default:
            continue
        for line, entry in read_adapter_table(path):
            if entry.get(column) and entry[column] != str(value) and not _same_number(entry[column], value):
                raise UserError(
                    f"{key}={value}: adapters={path} line {line} sets {column} {entry[column]} for adapter "
                    f"{entry['name']}, and a row's own {column} wins; drop {key}= or change the table"
                )


def _same_number(text: str, value: Any) -> bool:
    try:
        return float(text) == float(value)
    except (TypeError, ValueError):
        return False


def refuse_other_source(adapter: Adapter, source: str, what: str, fix: str) -> None:
    """Refuse an adapter whose own record (train-lora's adapter.json) says it was trained on the other model: its
    rows in transfer.csv would name the wrong source. An adapter without that record (e.g. a LoRA from the hub)
    is taken as the direction says, as nothing tells otherwise."""
    trained = adapter.meta.get("trained_on")
    if trained in ROLES and trained != source:
        raise UserError(f"{what} was trained on {trained} ({METADATA}); {fix}")


def refuse_other_base(adapter: Adapter, model: DictConfig, what: str) -> None:
    """Refuse an adapter train-lora made on base weights other than the pair's now (a base retrained or replaced in
    place; adapter.json's `base_weights`): transferred, it would be measured as trained on this base. Checked where
    both are known: a hub LoRA records nothing, a tiny pair's networks have no files to hash."""
    if adapter.meta.get("trained_on", "base") != "base":
        return
    recorded = adapter.meta.get("base_weights")
    now = hashed_weights(model, ("base", "components")) if recorded else None
    if now is None:  # no digests to compare: the pair it names
        _refuse_other_pair(adapter, model, what)
    elif now != recorded:
        raise UserError(
            f"{what} was trained on base weights {recorded} ({METADATA}), but model={model.name}'s base is {now} "
            "now (retrained or replaced in place, or the adapter trained with other model.base / model.components "
            "settings): point model.base at the weights it was trained on, or retrain it (train-lora overwrite=true)"
        )


def _refuse_other_pair(adapter: Adapter, model: DictConfig, what: str) -> None:
    """Refuse an adapter train-lora made on another pair's base (adapter.json's `model`), told before the pair
    loads: its layers do not fit this base (a size mismatch at load) or fit a network it was not trained on. Pairs
    that share their base network and components (the SDXL pairs, toy and toy_dpdmd) take each other's adapters."""
    trained = adapter.meta.get("model")
    if not trained or trained == model.name:
        return
    theirs = pair_config(str(trained))
    if theirs is None or _base_identity(theirs) == _base_identity(model):
        return
    raise UserError(
        f"{what} was trained on model={trained}'s base ({METADATA}), not model={model.name}'s: give "
        f"model={trained}, or a pair with the same base"
    )


def _base_identity(model: DictConfig) -> tuple[str, ...]:
    """What makes a pair's base network and components: an adapter trained on one fits the other."""
    parts = (model.get("family"), model.base.get("network"), model.base.get("seed"), model.get("components"))
    return tuple(
        json.dumps(OmegaConf.to_container(p, resolve=True) if OmegaConf.is_config(p) else p, sort_keys=True)
        for p in parts
    )


def _direction_fix(cfg: DictConfig, source: str) -> str:
    """What direction= expects of an adapter with `source`, and the setting that fits the other model's."""
    if cfg.direction == "both":
        return (
            "direction=both takes adapter= trained on the base model and reverse_adapter= trained on the distilled "
            "model"
        )
    fit = next(name for name, sources in DIRECTIONS.items() if sources == (other(source),))
    return f"direction={cfg.direction} transfers an adapter trained on the {source} model: use direction={fit}"


def read_adapter_table(path: Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of an adapters table: CSV with a header, `#` comment lines and blank lines skipped."""
    if not path.is_file():
        raise UserError(f"adapters={path}: no such file; give a CSV with columns {','.join(TABLE_COLUMNS)}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"adapters={path} is not UTF-8 text; save it as UTF-8") from None
    except OSError as err:
        raise UserError(f"cannot read adapters={path}: {err.strerror or err}") from None
    lines = [
        (i, line) for i, line in enumerate(text.splitlines(), 1) if line.strip() and not line.lstrip().startswith("#")
    ]
    reader = csv.DictReader([line for _, line in lines])
    columns = reader.fieldnames or []
    unknown = [c for c in columns if c not in TABLE_COLUMNS]
    if "name" not in columns or unknown:
        raise UserError(
            f"adapters={path}: columns {','.join(columns) or '(none)'}; a header with name and any of "
            f"{','.join(TABLE_COLUMNS[1:])} is needed"
        )
    entries, names = [], set()
    for (number, _), row in zip(lines[1:], reader, strict=True):
        if None in row or None in row.values():
            raise UserError(f"adapters={path} line {number}: {len(columns)} columns expected")
        row = {key: value.strip() for key, value in row.items()}
        if not row["name"]:
            raise UserError(f"adapters={path} line {number}: the name is empty")
        if _safe(row["name"]) in names:
            raise UserError(f"adapters={path} line {number}: the name {row['name']} is there twice")
        names.add(_safe(row["name"]))
        entries.append((number, row))
    if not entries:
        raise UserError(f"adapters={path} has no adapters; add a row per adapter under the header")
    return entries


def _table_scale(value: str | None, cfg: DictConfig, path: Path, line: int) -> float:
    if not value:
        return float(cfg.scale)
    try:
        scale = float(value)
    except ValueError:
        raise UserError(f"adapters={path} line {line}: scale '{value}' is not a number") from None
    if not math.isfinite(scale) or not -100 <= scale <= 100:
        raise UserError(f"adapters={path} line {line}: scale {value} is outside -100..100")
    return scale


def concept_text(cfg: DictConfig, transfers: list[Transfer]) -> str | None:
    """`concept=`, else the concept train-lora recorded beside the adapter."""
    if cfg.concept:
        return str(cfg.concept)
    recorded = {t.adapter.meta.get("concept") for t in transfers} - {None}
    bare = [t for t in transfers if t.adapter.meta.get("concept") is None]
    if recorded and bare:  # direction=both: one concept for both, and a bare adapter's is not known to be it
        raise UserError(
            f"{bare[0].name} records no concept ({METADATA}) and the other adapter records '{next(iter(recorded))}'; "
            "both are measured toward one concept: give concept=..."
        )
    return str(next(iter(recorded))) if len(recorded) == 1 else None


def clip_model(cfg: DictConfig) -> str | None:
    from ..metrics.preflight import CLIP_SCORE_MODEL

    if cfg.clip_model == "auto":
        return None if is_toy_pair(cfg.model) else CLIP_SCORE_MODEL
    return None if cfg.clip_model in (None, "none", False) else str(cfg.clip_model)


def classifier_target(cfg: DictConfig, concept: str | None) -> tuple[str, int] | None:
    """(factor, value index) the toy classifier counts: `classifier_target=factor=value`, else the one toy factor
    value the concept names ("red", "make shapes red"); None when the classifier is off."""
    enabled = is_toy_pair(cfg.model) if cfg.classifier == "auto" else bool(cfg.classifier)
    if not enabled:
        return None
    from ..toy.data import FACTORS, factor_value, parse_prompt

    if cfg.classifier_target:
        factor, value = factor_value(str(cfg.classifier_target), "classifier_target", bare=False)
        return factor, FACTORS[factor].index(value)
    if not concept:  # a bare adapter file records no concept (train-lora's folder does)
        raise UserError(
            "the adapter records no concept: give concept=<text> (e.g. concept=red), or classifier_target=factor=value"
        )
    named = parse_prompt(concept)
    if len(named) > 1:
        named.pop("count", None)  # "make shapes red": the plural is not the concept
    if len(named) != 1:
        raise UserError(f"concept '{concept}' names {len(named)} toy factor values; set classifier_target=factor=value")
    return next(iter(named.items()))


# --- images -------------------------------------------------------------------------------------------------------


def plan_groups(cfg: DictConfig, rows: list[PromptRow], transfers: list[Transfer]) -> list[Group]:
    """Without-adapter groups for every target (every prompt row), then each transfer's with-adapter groups (its
    prompt rows)."""
    model = str(cfg.model.name)
    roles = [role for role in ROLES if any(role in t.targets for t in transfers)]
    every = range(len(rows))
    done = {row["path"]: row for row in RunDir(cfg.out).read_samples()}  # images digested the old way go on
    groups = []
    for role in roles:
        plain = OmegaConf.create({"model": cfg.model, "method": role})
        jobs = _jobs(cfg, rows, every, f"{model}/{role}")
        groups.append(Group(role, role, settings_hash(plain, done), jobs, keys=settings_keys(plain)))
    for index, transfer in enumerate(transfers):
        for role in transfer.targets:
            tag = transfer.tag(role)
            settings, keys = adapter_settings(cfg, role, transfer.adapter, transfer.scale, done)
            jobs = _jobs(cfg, rows, transfer.cases, f"{model}/{tag}")
            groups.append(Group(role, tag, settings, jobs, index, keys=keys))
    return groups


def _jobs(cfg: DictConfig, rows: list[PromptRow], cases, folder: str) -> list[Job]:
    jobs: dict[str, Job] = {}
    for case in cases:
        row = rows[case]
        first = row.first_seed(cfg.seed)
        for j in range(int(cfg.n)):
            path = f"{folder}/{prompt_id(row.prompt)}/{first + j:06d}.png"
            jobs.setdefault(path, Job(row.prompt, first + j, path, case))
    return list(jobs.values())


def adapter_settings(
    cfg: DictConfig, role: str, adapter: Adapter, scale: float, done: dict[str, dict[str, str]]
) -> tuple[str, dict[str, Any]]:
    """The digest of an adapter's images and the settings it digests: the pair's, keyed as generate keys its images
    (symbolic asset paths, so a moved checkout or an installed wheel still knows its images; no measurement keys;
    guidance a float), and the adapter. Images digested before (`done`: the run's samples rows), over the resolved
    pair as typed, go on under their digest. Images without an adapter are generate's own (`settings_hash`)."""
    adapter_keys = {"method": role, "adapter": adapter.digest, "kind": adapter.kind, "scale": scale}
    now = {"model": pair_image_keys(cfg.model), **adapter_keys}
    before = {"model": image_settings(OmegaConf.to_container(cfg.model, resolve=True)), **adapter_keys}
    return continued_digest(now, before, done), now


def config_name(cfg: DictConfig) -> str:
    """The name transfer-lora's resolved config and versions are saved under in its run (beside generate's)."""
    return f"{cfg.model.name}_transfer"


def refuse_kept_of_other_weights(
    cfg: DictConfig, rundir: RunDir, plan: Plan, todo: dict[str, list[Job]], models: dict
) -> dict[str, str]:
    """Each group's samples.csv settings, "<config>/<weights>" as generate writes them, for the weights `models`
    names now; the images of every group the run keeps (not made again now) that other weights made are refused,
    complete groups included: a base retrained in place would otherwise be scored again under the old images."""
    made_with = {group.tag: f"{group.settings}/{weights_part(cfg.model, group.role, models)}" for group in plan.groups}
    for group in plan.groups:
        # under overwrite=true every shard's images of the group are remade: none is kept
        remade = {job.path for job in (group.jobs if cfg.overwrite else todo.get(group.tag, []))}
        refuse_other_weights(rundir, str(cfg.model.name), group.tag, remade, made_with[group.tag])
    return made_with


def generate(cfg: DictConfig, rundir: RunDir, plan: Plan, todo: dict[str, list[Job]], console) -> None:
    from ..models.loading import load_pair, resolve_device, resolve_dtype

    device = resolve_device(cfg.device)
    pair = load_pair(cfg.model, device, resolve_dtype(cfg.model.dtype, device))
    for transfer in plan.transfers:  # an adapter that does not fit is refused before anything is written
        for role in transfer.targets:
            with applied(pair, role, transfer.adapter, transfer.scale):
                pass
    rundir.root.mkdir(parents=True, exist_ok=True)
    name = config_name(cfg)
    rundir.save_config(name, cfg)
    rundir.save_versions(name, {"device": str(device)})
    models = pair_provenance(cfg.model, pair)  # hub id, revision and weights hash of every network
    made_with = refuse_kept_of_other_weights(cfg, rundir, plan, todo, models)
    if cfg.overwrite:
        clear_remade(rundir, [job for jobs in todo.values() for job in jobs])
    record_invocation(
        rundir.root,
        config=cfg,
        device=str(device),
        dtype=str(pair.dtype),
        models=models,
        image_settings={group.settings: group.keys for group in plan.groups},  # to name what a later run changed
    )
    batch_size = int(cfg.batch_size)
    with progress_bar(console) as progress:
        for group in plan.groups:
            jobs = todo[group.tag]
            if not jobs:
                continue
            task = progress.add_task(f"{cfg.model.name} {group.tag}", total=len(jobs))
            advance = lambda n, t=task: progress.advance(t, n)  # noqa: E731
            settings = made_with[group.tag]
            if group.transfer is None:
                sample_group(pair, rundir, group, settings, jobs, batch_size, advance)
                continue
            transfer = plan.transfers[group.transfer]
            with applied(pair, group.role, transfer.adapter, transfer.scale):
                sample_group(pair, rundir, group, settings, jobs, batch_size, advance)


def sample_group(pair, rundir: RunDir, group: Group, settings: str, jobs: list[Job], batch_size: int, advance) -> None:
    """The jobs' images with the group's model alone (its own scheduler, steps and guidance), as `generate`;
    `settings` is samples.csv's (the group's config and the weights it ran)."""
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
                    "base_guidance": "", "base_steps": "", "tag": group.tag, "settings": settings,
                    "case": job.case,
                }
            )  # fmt: skip
        rundir.write_images([(job.path, image) for job, image in zip(batch, images, strict=True)], records)
        advance(len(batch))
        batch_done()  # a shard job told to stop (SIGUSR2) requeues here, between batches: no image is lost


# --- measuring ----------------------------------------------------------------------------------------------------


@dataclass
class Scorers:
    """What measures the images: torchmetrics' CLIPScore toward a concept, the toy factor classifier, or both."""

    device: torch.device
    clip: Any = None
    classifier: Any = None

    @classmethod
    def load(cls, device: str, clip_spec: str | None, classifier: bool) -> Scorers:
        from ..metrics.quality import load_clip
        from ..models.loading import resolve_device

        resolved = resolve_device(device)
        judge = None
        if classifier:
            from ..toy.features import load_classifier

            judge = load_classifier(resolved)
        return cls(resolved, load_clip(clip_spec, resolved), judge)

    def score(self, images: list, transfer: Transfer) -> list[dict[str, float | int | None]]:
        """Per image: its CLIP score toward the transfer's concept, and 1/0 for the classifier seeing its target."""
        clips: list[float | None] = [None] * len(images)
        hits: list[int | None] = [None] * len(images)
        if self.clip is not None:
            clips = list(clip_scores(self.clip, images, transfer.concept or ""))
        if self.classifier is not None and transfer.target is not None:
            hits = list(classifier_hits(self.classifier, images, transfer.target, self.device))
        return [{"clip": clip, "classifier": hit} for clip, hit in zip(clips, hits, strict=True)]


def score_units(
    plan: Plan, units: list[tuple[int, int]], rundir: RunDir, scorers: Scorers, batch_size: int
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per transfer name, per image path: the scores of the images the units made (`Plan.owned`): a unit's images
    with its adapter toward its concept, and a prompt's images without an adapter, in its first unit, toward the
    concept of every adapter measured on that prompt; so a shard reads only images it made. Batches never cross
    a (group, prompt, adapter), so no score depends on how the units were sharded (a network's output can depend
    on its batch in the last bit)."""
    plain = plan.plain()
    first: dict[int, tuple[int, int]] = {}
    for unit in plan.units:
        first.setdefault(unit[0], unit)
    scores: dict[str, dict[str, dict[str, Any]]] = {}

    def measure(group: Group, case: int, transfer: Transfer) -> None:
        jobs = [job for job in group.jobs if job.case == case]
        table = scores.setdefault(transfer.name, {})
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start : start + batch_size]
            images = [_load_image(rundir.root / job.path) for job in chunk]
            for job, value in zip(chunk, scorers.score(images, transfer), strict=True):
                table[job.path] = value

    for case, index in units:
        if first[case] == (case, index):
            for other_transfer in (t for t in plan.transfers if case in t.cases):
                for role in other_transfer.targets:
                    measure(plain[role], case, other_transfer)
        for group in (g for g in plan.groups if g.transfer == index):
            measure(group, case, plan.transfers[index])
    return scores


def aggregate(
    cfg: DictConfig, plan: Plan, scores: dict[str, dict[str, dict[str, Any]]], samples: list[dict[str, str]]
) -> list[dict[str, Any]]:
    """One row per (transfer, target): the mean scores of the target's images without and with the adapter, and
    which images those are (`images_label`, from the run's `samples` rows)."""
    plain = plan.plain()
    settings = {row["path"]: row.get("settings", "") for row in samples}
    results = []
    for group in plan.groups:
        if group.transfer is None:
            continue
        transfer = plan.transfers[group.transfer]
        table = scores[transfer.name]
        cases = set(transfer.cases)
        bare = [job for job in plain[group.role].jobs if job.case in cases]
        without = _means([table[job.path] for job in bare])
        with_ = _means([table[job.path] for job in group.jobs])
        interval = _change_interval(bare, group.jobs, table, CHANGE_CI)
        row: dict[str, Any] = {
            "adapter": transfer.name,
            "concept": transfer.concept or "",
            "source": transfer.source,
            "target": group.role,
            "n": len(group.jobs),
            "clip_without": _fmt(without["clip"]),
            "clip_with": _fmt(with_["clip"]),
            "change_pct": _fmt(change_pct(without["clip"], with_["clip"])),
            "change_low": _fmt(interval[0] if interval else None),
            "change_high": _fmt(interval[1] if interval else None),
            "classifier_target": "",  # part of the row's key: set below when the toy classifier counts
        }
        if transfer.target is not None:
            from ..toy.data import FACTORS

            factor, value = transfer.target
            row["classifier_without"] = _fmt(without["classifier"])
            row["classifier_with"] = _fmt(with_["classifier"])
            row["classifier_target"] = f"{factor}={FACTORS[factor][value]}"
        seed = command_seed(cfg.seed, [plan.rows[case] for case in transfer.cases])  # empty: each row has its own
        images = images_label([(plain[group.role].tag, bare), (group.tag, group.jobs)], settings)
        row.update(
            model=cfg.model.name, scale=f"{transfer.scale:g}", kind=transfer.adapter.kind,
            clip_model=plan.clip_spec or "", prompts=prompts_label([job.prompt for job in group.jobs]),
            adapter_hash=transfer.adapter.digest, adapter_file=str(transfer.adapter.path.resolve()),
            seed="" if seed is None else str(seed), images=images,
        )  # fmt: skip
        results.append(row)
    return results


def images_label(groups: list[tuple[str, list[Job]]], settings: dict[str, str]) -> str:
    """transfer.csv's `images`: each group's tag and the settings samples.csv gives its images ("<config>/<weights>",
    as generate writes them), "; " between groups. Read from samples.csv rather than this run's settings: images
    kept from an earlier run (or `generate`) are measured as they are. Several settings in one group (images of an
    older version beside newer ones) are all named, "|" between them."""
    parts = []
    for tag, jobs in groups:
        found = sorted({settings.get(job.path, "") for job in jobs})
        parts.append(f"{tag}={'|'.join(found)}")
    return "; ".join(parts)


def prompts_label(prompts: list[str]) -> str:
    """transfer.csv's `prompts`: the prompt, or the first of several with their count and a digest of them all (two
    prompt sets never share a label, so their rows stay apart)."""
    unique = list(dict.fromkeys(prompts))
    if len(unique) == 1:
        return unique[0]
    return f"{unique[0]} (+{len(unique) - 1} more; {digest(unique)[:8]})"


def _change_interval(bare: list[Job], adapted: list[Job], table: dict, ci: float) -> tuple[float, float] | None:
    """change_pct's paired bootstrap interval: each image with the adapter beside its twin without it (the same
    prompt row and seed); None where an image has no CLIP score (the toy: no CLIP model)."""
    twin = {(job.case, job.seed): table[job.path]["clip"] for job in bare}
    pairs = [(twin.get((job.case, job.seed)), table[job.path]["clip"]) for job in adapted]
    if not pairs or any(a is None or b is None for a, b in pairs):
        return None
    without, with_ = zip(*pairs, strict=True)
    return paired_change_interval(without, with_, ci)


def _means(values: list[dict[str, Any]]) -> dict[str, float | None]:
    """Mean CLIP score (CLIPScore's compute: max(mean, 0); the sum exact, `math.fsum`) and classifier fraction."""
    clips = [value["clip"] for value in values]
    hits = [value["classifier"] for value in values]
    clip = max(math.fsum(clips) / len(clips), 0.0) if clips and None not in clips else None
    fraction = sum(hits) / len(hits) if hits and None not in hits else None
    return {"clip": clip, "classifier": fraction}


def clip_scores(clip, images: list, concept: str) -> list[float]:
    """Each image's CLIP score toward the concept text: torchmetrics CLIPScore's own per-image update (100 x cosine
    of the projected embeddings), before it sums them in float32."""
    from torchmetrics.functional.multimodal.clip_score import _clip_score_update

    device = clip.device
    tensors = [torch.from_numpy(np.array(image)).permute(2, 0, 1).to(device) for image in images]
    with torch.no_grad():
        scores, _ = _clip_score_update(tensors, [concept] * len(images), clip.model, clip.processor)
    return [float(score) for score in scores.detach().cpu()]


@torch.no_grad()
def classifier_hits(classifier, images: list, target: tuple[str, int], device: torch.device) -> list[int]:
    """1 for each image the toy classifier sees with the target factor value, else 0."""
    factor, value = target
    batch = torch.from_numpy(np.stack([np.asarray(image) for image in images])).permute(0, 3, 1, 2)
    predicted = classifier.predict(batch.to(device).float() / 255.0)[factor]
    return [int(p == value) for p in predicted.tolist()]


def write_results(path: Path, results: list[dict[str, Any]]) -> Path:
    """Merge into transfer.csv: rows with the same `KEY` (adapter, concept, roles, model, scale, prompts, classifier
    target, n, seed) are replaced; a replaced row moves to the end, so the last row of a cell is the newest."""
    rows = merge_rows(path, results, KEY, OURS)
    # a row written before rows named their seed is replaced by one like it in all else: which seed it is, is unknown
    fresh = {_unseeded(row) for row in results}
    rows = [row for row in rows if row.get("seed", "") != "" or row in results or _unseeded(row) not in fresh]
    extra = [c for c in CLASSIFIER_COLUMNS if any(r.get(c) for r in rows)]
    with owned_path(path.parent, path.name, OURS) as temporary, temporary.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS + extra + META, restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


@dataclass(frozen=True)
class Measured:
    """What a transfer-lora run leaves: transfer.csv (which keeps other runs' rows too), this run's rows, its grids."""

    path: Path
    rows: list[dict[str, Any]]
    grids: list[Path]


def _unseeded(row: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(row.get(key, "")) for key in KEY if key != "seed")


def finish(cfg: DictConfig, rundir: RunDir, plan: Plan, results: list[dict[str, Any]]) -> Measured:
    """transfer.csv and a grid per transfer; the command's summary shows the rows."""
    path = write_results(rundir.root / "transfer.csv", results)
    model = str(cfg.model.name)
    grids = [
        save_grid(rundir, plan, transfer, int(cfg.grid_seeds), int(cfg.grid_cell), grid_name(model, plan, transfer))
        for transfer in plan.transfers
    ]
    return Measured(path, results, [grid for grid in grids if grid is not None])


# --- shards and merge ---------------------------------------------------------------------------------------------


def plan_fingerprint(cfg: DictConfig, plan: Plan) -> str:
    """What a shard's scores depend on: the settings that change an image or a number, and every group's images."""
    settings = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k not in UNKEYED}
    groups = [[group.tag, group.settings, [job.path for job in group.jobs]] for group in plan.groups]
    return digest({"settings": settings, "groups": groups})


def scores_path(root: Path, shard: Shard) -> Path:
    return root / SHARDS / f"transfer-{shard.name}.json"


def save_shard_scores(root: Path, shard: Shard, fingerprint: str, scores: dict) -> None:
    """shards/transfer-<I>-of-<N>.json: the per-image scores of this shard's units, for `merge_transfer`."""
    write_text(scores_path(root, shard), json.dumps({"fingerprint": fingerprint, "scores": scores}, indent=1) + "\n")
    stderr_console().print(
        f"shard {shard}: scores of {sum(map(len, scores.values()))} image(s) in {scores_path(root, shard)}"
    )


def _saved_scores(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (ValueError, OSError):  # torn or unreadable: made again
        return {}


def transfer_remaining(cfg: DictConfig, shard: Shard) -> int:
    """Images shard `shard` still has to make, plus 1 while its scores are missing or from other settings.
    Read-only: a launcher asks this to submit only the shards with work left."""
    plan = make_plan(cfg)
    root = Path(cfg.out)
    done = {row["path"] for row in RunDir(root).read_samples()}
    jobs = [job for jobs in plan.owned(plan.block(shard)).values() for job in jobs]
    missing = sum(1 for job in jobs if job.path not in done or not (root / job.path).exists())
    stale = _saved_scores(scores_path(root, shard)).get("fingerprint") != plan_fingerprint(cfg, plan)
    return missing + int(stale)


def merge_transfer(cfg: DictConfig, count: int) -> Measured:
    """After every shard has finished: samples.csv from the shards' samples files, transfer.csv and the grids from
    their scores (the means over every image, as one process takes them); the score files go."""
    plan = make_plan(cfg)
    rundir = RunDir(cfg.out, lock_wait=cfg.get("lock_wait"))
    fingerprint = plan_fingerprint(cfg, plan)
    paths = [scores_path(rundir.root, Shard(i, count)) for i in range(count)]
    scores: dict[str, dict[str, dict[str, Any]]] = {}
    for path in paths:
        body = _saved_scores(path)
        if body.get("fingerprint") != fingerprint:
            raise UserError(f"{path} is missing or from other settings; rerun the same transfer-lora command")
        for name, table in body["scores"].items():
            scores.setdefault(name, {}).update(table)
    rundir.merge_shards()
    results = aggregate(cfg, plan, scores, rundir.read_samples())
    record_invocation(rundir.root, config=cfg, merged_shards=count)
    measured = finish(cfg, rundir, plan, results)
    for path in paths:
        path.unlink()
    stderr_console().print(f"merged {count} shard(s) into {rundir.root / 'samples.csv'} and {measured.path}")
    return measured


# --- output -------------------------------------------------------------------------------------------------------


def save_grid(rundir: RunDir, plan: Plan, transfer: Transfer, seeds: int, cell: int, name: str) -> Path | None:
    """`name` in the run: rows source -> target; columns without / with the adapter for its first prompt's first
    `seeds` seeds."""
    if seeds == 0:
        return None
    from PIL import Image, ImageDraw

    index = plan.transfers.index(transfer)
    plain = plan.plain()
    adapted = {g.role: g for g in plan.groups if g.transfer == index}
    picks = [j for j in plain[transfer.source].jobs if j.case == transfer.cases[0]][:seeds]
    paths = {g.tag: {(j.prompt, j.seed): j.path for j in g.jobs} for g in plan.groups}
    label_width, header = GRID_LAYOUT
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
    return save_png(sheet, rundir.root, name, sheet_layout(label_width, header, cell))


def grid_name(model: str, plan: Plan, transfer: Transfer) -> str:
    """`transfer_<model>_<adapter>_s<scale>_<prompt id>.png`: the grid of another pair or prompt (its first) into
    the same out= is a file of its own, not drawn over this one."""
    prompt = plan.rows[transfer.cases[0]].prompt
    return f"transfer_{model}_{transfer.name}_s{transfer.scale:g}_{prompt_id(prompt)}.png"


def outputs(cfg: DictConfig, plan: Plan) -> dict[str, Any]:
    """transfer.csv and each transfer's grid, with how an earlier version's unlisted one is known."""
    grids = plan.transfers if int(cfg.grid_seeds) > 0 else []
    layout = sheet_layout(*GRID_LAYOUT, int(cfg.grid_cell))
    return {"transfer.csv": OURS, **{grid_name(str(cfg.model.name), plan, transfer): layout for transfer in grids}}


def _load_image(path: Path):

    if not path.is_file():
        raise UserError(f"image {path} is missing; rerun the same transfer-lora command to make it again")
    return open_rgb(path)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.@" else "-" for c in name) or "adapter"


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"
