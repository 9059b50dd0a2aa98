"""`diversity-cli ablate`: sweep the sampler's knobs, generate and measure every point, collect and plot.

A point is one setting of (method, k, base_guidance, base_steps), named by its method tag (`hybrid_k2_g5`).
Every point is its own run directory, `<out>/points/<model>/<tag>/`, so points can run at once (one SLURM job
each) without two processes ever writing the same file: `generate` resumes there, and the measurement of exactly
this run's images (its prompts x n seeds) goes to `<tag>/point.csv`, reused while the images and the measurement
settings are unchanged. A merge step puts every point's rows into `<out>/ablate.csv` (one row per point, prompt,
n, seed and metric; rerunning replaces rows, never duplicates them) and draws `<out>/plots/`.

A sweep at another n shares the point's folder: its images are those of the seeds both n cover (one seed makes one
image), its measurement is of exactly its own n images per prompt, and its rows and plots are its own. So is a
sweep at another seed= (seed variance): its images are others, and its rows and plots stand beside the first's.

`out` and every point's folder are run directories (core/marker.py): ablate writes, replaces and deletes only files
their run.json lists, and checks every file a sweep would write before its first point (`check_outputs`).

The module stays light at import: the CLI imports it before anything is loaded, and bad input answers at once.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from ..core.config import available, conf_dir, pair_differences, search_dirs
from ..core.console import stderr_console
from ..core.errors import UserError, did_you_mean, first_line
from ..core.marker import (
    RunMarker,
    check_folder,
    contained,
    legacy_files,
    owned_path,
    refuse_foreign,
    require_marked,
    write_owned,
)
from ..core.prompts import command_limits, command_seed, read_prompts
from ..core.record import read_records, record_invocation
from ..core.rundir import SAMPLE_COLUMNS, RunDir, read_table, samples_digest
from ..core.schema import escape, literal_keys
from ..core.schema import show as show_value
from ..core.schemas.ablate import AblateConfig
from ..metrics.diversity import MIN_INTERVAL_N, pooled_interval
from ..metrics.labels import interval_name, metric_label
from ..metrics.preflight import other_clip
from ..sampling.methods import USES_BASE_KNOBS
from ..sampling.tags import run_tag
from .defaults import QUALITY_METRICS, apply_defaults
from .launch import queue_settings, refuse_without_slurm
from .sweep import GENERATE_SCALE_OUT, KNOBS, OWN_MEASURE_KEYS, OWN_MEASURE_KEYS_OF, check_grid, expand, grid

COLUMNS = [
    "model",
    "method",
    "k",
    "base_guidance",
    "base_steps",
    # the pair's settings the sweep changed from its config file (`base.guidance=5`): rows of two pair settings in
    # one out= are told apart (`pair_changes`)
    "pair",
    "prompt",
    "n",
    # the prompt's first seed (its images: seed .. seed+n-1); on the FID/IS/CLIP rows (all prompts) the sweep's
    # seed=, empty where every prompt has its own (a table's seed column)
    "seed",
    "metric",
    "value",
    "seconds_per_image",
    "nfe",
    "ci_low",
    "ci_high",
    "ci",  # the interval's level
    "options",  # the embedder's settings other than the defaults (diversity.csv's)
    # a prompt's row: which images of the point it measured (`samples_digest`, paths from out=), so a report finds
    # rows whose images were remade or removed since; empty where not checkable (over all prompts; older rows)
    "samples",
    "run",  # the point's run directory, relative to out (its images, samples.csv, configs)
]
ROWS_VERSION = 2  # of point.csv's rows: 2, FID rows carry their reference in options, no interval over two images
# n, seed and options: another number of images per prompt, other images, or other metric settings, is another
# number beside this one
# pair: a sweep at other settings of the pair (another model.base.guidance) keeps its rows beside the first's
KEY = ("model", "method", "k", "base_guidance", "base_steps", "pair", "prompt", "n", "seed", "metric", "options")
CSV_NAME = "ablate.csv"
ERROR_NAME = "error.txt"  # in a point's folder: why it has no results
POINTS, PLOTS, MULTIRUN, MEASURE = "points", "plots", "multirun", "measure"
PAIR_LABEL = "pair_label"  # sweep.yaml: ablate.csv's `pair` of the sweep, for its multirun jobs (`pair_changes`)
POINT_FILES = ("point.csv", "point.json", ERROR_NAME)  # what ablate itself writes in a point's run directory
OUT_FILES = (CSV_NAME, PLOTS, MULTIRUN)  # ... and at out= (besides run.json and runs/)
MEASURED = ("diversity.csv", "fid.csv")  # what the measuring commands write in a point's measure/ view
BASELINES = ("base", "distilled")
REFUSED_NAME, REFUSED_ENV = "submission_refused.txt", "DIVERSITY_CLI_SUBMISSION_REFUSED"  # see ablate_job
HYDRA_LAUNCHERS = ("submitit_local", "submitit_slurm")  # the plugin's own; conf/hydra/launcher/ adds more
QUALITY_SKIP = ("method", "model", "n", "seconds_per_image")  # fid.csv's other columns that are no metric
MAX_PROMPT_LINES = 8  # more prompts than this: plots show their mean only
DEFAULT_SEED = 0  # conf/generate.yaml's seed: a plot of a sweep at it keeps the name it had before plots named seeds


@dataclass(frozen=True)
class Point:
    """One setting of the sampler. Knobs a method does not use are None, so equal settings are equal points."""

    method: str
    k: int | None = None
    base_guidance: float | None = None
    base_steps: int | None = None

    @classmethod
    def of(cls, method: str, k=None, base_guidance=None, base_steps=None, **_) -> Point:
        if method not in USES_BASE_KNOBS:
            return cls(method)
        return cls(method, int(k), float(base_guidance), None if base_steps is None else int(base_steps))

    @property
    def tag(self) -> str:
        return run_tag(self.method, self.k or 0, self.base_guidance or 0.0, self.base_steps)

    def knobs(self) -> dict:
        return {"method": self.method, "k": self.k, "base_guidance": self.base_guidance, "base_steps": self.base_steps}

    def fields(self) -> dict[str, str]:
        """The point's columns of ablate.csv (empty where the method does not use a knob)."""
        return {
            "method": self.method,
            "k": "" if self.k is None else str(self.k),
            "base_guidance": "" if self.base_guidance is None else f"{self.base_guidance:g}",
            "base_steps": "" if self.base_steps is None else str(self.base_steps),
        }


@dataclass
class Sweep:
    model: str
    points: list[Point]  # the swept points, in grid order
    baselines: list[Point]  # base / distilled when not among the points already
    swept: list[str]  # knobs that take more than one value among the points
    n: int | None = None  # images per prompt and point
    seed: int | None = None  # seed=, where a prompt takes its seeds from it (`command_seed`)

    @property
    def all(self) -> list[Point]:
        return self.points + self.baselines


# -------------------------------------------------------------------------------------------------- command


def ablate(cfg: DictConfig) -> Path:
    """Run a composed ablate config (knobs may hold lists or range strings such as "1..4")."""
    sweep = plan_sweep(cfg)
    out = Path(cfg.out)
    check_outputs(cfg, sweep)  # a file of someone else's anywhere it would write: one line, nothing written
    refuse_other_settings(cfg, sweep)
    _adopt(out, OUT_FILES, _legacy_out(out))
    console = stderr_console()
    record_invocation(out, config=cfg, device=str(cfg.device), points=[point.tag for point in sweep.all])
    if not cfg.merge and cfg.launcher == "local":
        if cfg.launcher_overrides:
            console.print("[yellow]note[/]: hydra.* overrides only apply to launcher=slurm / submitit_local")
        for number, point in enumerate(sweep.all, start=1):
            console.rule(f"point {number}/{len(sweep.all)}: {sweep.model} {point.tag}")
            write_rows(out / CSV_NAME, attempt(cfg, point))
    failed = None
    if not cfg.merge and cfg.launcher != "local":
        failed = launch(cfg, sweep)
    results, missing = collect(out, sweep)
    target = out / CSV_NAME
    failed_now = [p for p in missing if (out / POINTS / sweep.model / p.tag / ERROR_NAME).is_file()]
    if failed_now and target.is_file():  # their rows there are an earlier attempt's: not this sweep's numbers
        # only those of this sweep's n and seeds: a sweep at another n or seed= has its own, no attempt of this one
        drop_points(target, {f"{POINTS}/{sweep.model}/{p.tag}" for p in failed_now}, _own_rows(cfg))
    if results:
        write_rows(target, [row for _, rows in results for row in rows])
        for path in plot(results, sweep, out / PLOTS) if cfg.plots else []:
            console.print(f"plot: {path}")
        show(results, target)
        if note := _same_guidance_note(cfg, sweep):  # after the work: a refusal before it stays one line
            console.print(f"[yellow]note[/]: {note}")
    if failed:
        raise UserError(failed)
    if missing:
        raise UserError(_missing_message(out, sweep, missing, bool(cfg.merge)))
    return target


def _missing_message(out: Path, sweep: Sweep, missing: list[Point], merge: bool) -> str:
    """One line: which points have no results, and the first reason recorded for them."""
    errors = []
    for point in missing:
        folder = out / POINTS / sweep.model / point.tag
        if (folder / ERROR_NAME).is_file():
            errors.append((point, (folder / ERROR_NAME).read_text().strip()))
        elif other := _measured_elsewhere(folder, sweep):  # measured since by a sweep at another n or seed
            errors.append((point, f"its last measurement is at {other}"))
    tags = ", ".join(p.tag for p in missing[:4]) + (" ..." if len(missing) > 4 else "")
    line = f"{len(missing)} of {len(sweep.all)} points have no results ({tags})"
    if errors:
        line += f"; {errors[0][0].tag}: {errors[0][1]}"
    return line + ("; run the sweep without merge=true" if merge else "") + " (finished points are reused)"


def plan_sweep(cfg: DictConfig) -> Sweep:
    """The points of the sweep, every one validated before any model loads."""
    from .diversity import parse_metrics

    launchers = ("local", *HYDRA_LAUNCHERS, *available("hydra/launcher"))
    if cfg.launcher not in launchers:
        names = list(dict.fromkeys(launchers))
        near = did_you_mean(str(cfg.launcher), names)
        raise UserError(f"unknown launcher '{cfg.launcher}'{near or ';'} choose one of: {', '.join(names)}")
    if not cfg.merge and cfg.launcher != "local":
        check_launcher_overrides(cfg)  # before SLURM's commands: a misspelt setting is told anywhere
    if not cfg.merge and _uses_slurm(str(cfg.launcher)):
        refuse_without_slurm(
            str(cfg.launcher), "launcher=local (or launcher=submitit_local: the same jobs as local processes)"
        )
    check_measure(cfg)
    check_scale_out(cfg)
    apply_defaults(cfg)  # metric=auto and no prompt: what the pair names
    parse_metrics(cfg.metric)
    if not isinstance(cfg.n, int) or cfg.n < 2:
        raise UserError(f"n={cfg.n}: diversity compares images, so each point needs n >= 2 samples per prompt")
    # a missing prompt file, or more images than max_images, fails here, not at the first point
    rows = read_prompts(cfg.prompt, cfg.prompts, cfg.limit, **command_limits(cfg))
    cap = int(cfg.max_points)
    axes = {knob: expand(knob, cfg[knob], cap) for knob in KNOBS}
    check_grid(axes, cap)  # before the grid is built: 10^4 x 10^4 values would hang here
    points = list(dict.fromkeys(Point.of(**combo) for combo in grid(axes)))
    baselines = [Point(m) for m in BASELINES if cfg.baselines and Point(m) not in points]
    swept = [knob for knob in KNOBS if len({getattr(p, knob) for p in points} - {None}) > 1]
    from . import generation as generate

    for point in points + baselines:
        generate.validate(point_config(cfg, point))
    images = (len(points) + len(baselines)) * len(rows) * int(cfg.n)
    if images > int(cfg.max_images):  # each point's own check counts its prompts x n only
        raise UserError(
            f"{len(points) + len(baselines)} point(s) x {len(rows)} prompt(s) x n={cfg.n} is {images} images, above "
            f"the cap max_images={cfg.max_images}; sweep fewer points, prompts or a smaller n, or raise the cap with "
            "max_images=N if you mean it"
        )
    return Sweep(str(cfg.model.name), points, baselines, swept, int(cfg.n), command_seed(cfg.seed, rows))


GUIDANCE_EMBEDDED = ("flux",)  # families whose base takes its guidance as an input (FLUX.1-dev, the tiny FLUX)


def _same_guidance_note(cfg: DictConfig, sweep: Sweep) -> str:
    """Base guidances of the sweep at most 1 are one setting on a pair whose base embeds no guidance (every family
    but FLUX.1's, whose dev base does): CFG applies only above 1 (as in the diffusers pipelines and the flow
    samplers), so each runs the conditional branch alone and their points hold the same images; a flat curve there
    is no finding."""
    if cfg.model.family in GUIDANCE_EMBEDDED:
        return ""
    low = dict.fromkeys(p.base_guidance for p in sweep.points if p.base_guidance is not None and p.base_guidance <= 1)
    if len(low) < 2:
        return ""
    shown = ", ".join(f"{float(value):g}" for value in low)
    return (
        f"base_guidance={shown} are all at most 1: the base runs its conditional branch alone at each (classifier-free "
        f"guidance applies above 1, as in diffusers), so {cfg.model.name}'s points there are the same images"
    )


# measure.<command>.* keys ablate sets itself for every point (its own images, in its own process): given there,
# they were ignored without a word, or broke the point after its images were made (a shard= measured half of them)
TOP_LEVEL = {"metric": "metric=", "device": "device="}  # ablate's own key for them


def check_measure(cfg: DictConfig) -> None:
    """measure.diversity.* and measure.fid.* that ablate would not use as given: the keys it sets itself (unless
    equal to what it sets), and a coverage reference naming a method tag (each point is a run directory of its own
    images: no other method's are there)."""
    for command, own in OWN_MEASURE_KEYS_OF.items():
        defaults = _container(OmegaConf.load(conf_dir() / f"{command}.yaml"))
        given = _container(cfg.measure[command])
        for key in (*OWN_MEASURE_KEYS, *own):
            value, default = given.get(key), defaults.get(key)
            same = value in (default, [default]) or (key in TOP_LEVEL and _as_list(value) == _as_list(cfg.get(key)))
            if key in given and not same:  # metric: the schema makes a string a list
                instead = f"use {TOP_LEVEL[key]} instead" if key in TOP_LEVEL else "leave it out"
                raise UserError(f"measure.{command}.{key} is set by ablate for every point; {instead}")
    reference = cfg.measure.diversity.get("reference")
    if reference is not None and not Path(str(reference)).expanduser().is_dir():
        raise UserError(
            f"measure.diversity.reference={reference} is not a folder; an ablate point is a run directory of its own "
            "images, so coverage there is against a folder of reference images (a method tag names none)"
        )


def check_launcher_overrides(cfg: DictConfig) -> None:
    """The multirun's `hydra.launcher.*` values against the launcher's queue config: a misspelt key or a value of
    the wrong type failed inside the multirun with Hydra's exception, after run.json and multirun/ were written."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    given = [str(item) for item in cfg.launcher_overrides]
    prefix, params = "hydra.launcher.", OmegaConf.create({})
    try:
        for override in OverridesParser.create().parse_overrides(given):
            if override.is_sweep_override():
                raise UserError(
                    f"{override.input_line}: a hydra setting takes one value here (ablate sweeps its knobs); quote a "
                    "value with commas: key='a,b'"
                )
            if override.key_or_group.startswith(prefix):  # nested ones too: additional_parameters.mail_type=ALL
                key = override.key_or_group.removeprefix(prefix)
                OmegaConf.update(params, key, override.value(), merge=True, force_add=True)
    except UserError:
        raise
    except Exception as err:  # Hydra's grammar error, in one line
        raise UserError(f"launcher overrides: {first_line(err)}") from None
    queue_settings(str(cfg.launcher), params)  # a misspelt key with its nearest one, a mistyped value
    _compose_launcher(str(cfg.launcher), given)  # and whatever else Hydra refuses, as the multirun will compose them


def _compose_launcher(launcher: str, overrides: list[str]) -> None:
    """The multirun's launcher config composed by Hydra itself, as `launch` has it composed: an override it cannot
    apply (`hydra.launcher.additional_parameters={mail_type:ALL}` needs ++) failed inside the multirun."""
    from hydra import compose, initialize

    searchpath = "hydra.searchpath=[" + ",".join(f"file://{path.resolve()}" for path in search_dirs()) + "]"
    try:
        with initialize(version_base="1.3", config_path=None):
            compose(overrides=[searchpath, f"hydra/launcher={launcher}", *overrides], return_hydra_config=True)
    except Exception as err:  # Hydra's exception and its cause, in one line
        cause = f" ({first_line(err.__cause__)})" if err.__cause__ is not None else ""
        hint = "; add a key with +, replace a whole group with ++" if "not in struct" in cause else ""
        raise UserError(f"launcher {launcher}: {first_line(err)}{cause}{hint}") from None


def check_scale_out(cfg: DictConfig) -> None:
    """generate's own scale-out keys: ablate runs each point's images whole, in this process or as one job per
    point (launcher=). Given, they were ignored (shards=2 ran one process without a word) or cut every point to a
    shard whose missing half then failed it, after run.json and the points' folders were written."""
    defaults = OmegaConf.load(conf_dir() / "generate.yaml")
    for key in GENERATE_SCALE_OUT:
        if key in cfg and _container_or_value(cfg[key]) != _container_or_value(defaults.get(key)):
            raise UserError(
                f"{key}={show_value(cfg[key])}: ablate runs every point whole, so it takes no {key}=; to spread the "
                "points over jobs use launcher=slurm (or submitit_local) with hydra.launcher.* settings"
            )


def _container_or_value(value):
    return OmegaConf.to_container(value) if isinstance(value, (DictConfig, ListConfig)) else value


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]


@functools.cache
def _generate_keys() -> list[str]:
    spec = OmegaConf.load(conf_dir() / "generate.yaml")
    return ["model", *(key for key in spec if key != "defaults")]


def _uses_slurm(launcher: str) -> bool:
    paths = [folder / "hydra" / "launcher" / f"{launcher}.yaml" for folder in search_dirs()]
    return launcher == "submitit_slurm" or any(p.is_file() and "submitit_slurm" in p.read_text() for p in paths)


def point_dir(cfg: DictConfig, point: Point) -> Path:
    return Path(cfg.out) / POINTS / str(cfg.model.name) / point.tag


def point_config(cfg: DictConfig, point: Point) -> DictConfig:
    """The `generate` config of one point: the ablate config's generate keys, the point's knobs, its run dir."""
    gen = OmegaConf.masked_copy(cfg, _generate_keys())
    knobs = point.knobs()
    knobs.update(k=point.k or 0, base_guidance=point.base_guidance or 0.0)  # unused by the method, but typed
    for key, value in knobs.items():
        gen[key] = value
    gen.out = str(point_dir(cfg, point))
    return gen


def refuse_other_settings(cfg: DictConfig, sweep: Sweep) -> None:
    """Before any point: images of a point made with other settings (another model.base.guidance, say) are refused
    here in one line with nothing written, as `generate` refuses them. Refused by `generate` inside the point, the
    point was recorded as failed, and a failed point's earlier rows leave ablate.csv: the refusal lost results.
    So are images other weights made (a student retrained in place), where the weights can be hashed unloaded."""
    if cfg.merge or cfg.get("overwrite"):
        return
    from . import generation as generate

    for point in sweep.all:
        gen = point_config(cfg, point)
        run = RunDir(gen.out)
        done = {row["path"]: row for row in run.read_samples()} if run.root.is_dir() else {}
        if not done:
            continue
        jobs = generate.plan_jobs(gen, read_prompts(gen.prompt, gen.prompts, gen.limit))
        settings = generate.settings_hash(gen, done)
        try:
            generate.refuse_clashes(run, jobs, done, settings, keys=generate.settings_keys(gen))
            generate.refuse_kept_of_other_weights(gen, run, set(), settings)
        except UserError as err:
            raise UserError(f"point {point.tag}: {err}") from None


# ------------------------------------------------------------------------------------------------ ownership


def check_outputs(cfg: DictConfig, sweep: Sweep) -> None:
    """Before the first point: every file the sweep would write, replace or delete under `out` (ablate.csv, plots,
    each point's images, samples file, configs, point.csv, point.json, error.txt and measure/ tables) is free or
    one the toolkit wrote there, reached without a symbolic link; with overwrite=true every non-empty folder among
    them is a run directory diversity-cli marked. Otherwise one line naming the first such file, exit 2, nothing
    written."""
    from . import generation as generate

    out = Path(cfg.out)
    check_folder(out)
    overwrite = bool(cfg.get("overwrite"))
    owned = _owned(out, OUT_FILES, _legacy_out(out), overwrite)
    refuse_foreign(out, CSV_NAME, CSV_NAME in owned)
    plots = contained(out, PLOTS)
    if plots.is_dir():
        for path in sorted(plots.glob(f"{sweep.model}_*.png")):  # what this sweep may draw over
            rel = f"{PLOTS}/{path.name}"
            refuse_foreign(out, rel, rel in owned)
    if cfg.merge:
        return  # a merge writes nothing into the points
    rows = read_prompts(cfg.prompt, cfg.prompts, cfg.limit)
    for point in sweep.all:
        gen = point_config(cfg, point)
        root = contained(out, Path(gen.out).relative_to(out))
        if not root.exists():
            continue
        check_folder(root)
        owned = _owned(root, POINT_FILES, _legacy_point(root), overwrite)
        name = f"{cfg.model.name}_{generate.cfg_tag(gen)}"
        for rel in (*POINT_FILES, "samples.csv", "versions.json", "timesteps.csv", f"configs/{name}.yaml"):
            refuse_foreign(root, rel, rel in owned)
        RunDir(root).check_targets(job.path for job in generate.plan_jobs(gen, rows))
        view = contained(root, MEASURE)
        if view.exists():
            check_folder(view)
            owned = _owned(view, (), bool(legacy_files(view)), overwrite)
            for rel in ("samples.csv", *MEASURED):
                refuse_foreign(view, rel, rel in owned or _measured_here(view, rel))


def _owned(root: Path, names: tuple[str, ...], legacy: bool, overwrite: bool) -> set[str]:
    """The files the toolkit wrote in `root`: run.json's list, or in a folder ablate wrote before run.json existed
    (`legacy`), what its first write there adopts (`_adopt`). overwrite=true needs a folder diversity-cli made."""
    marker = RunMarker(root)
    if marker.read() is not None:
        return marker.files()
    if legacy:
        return set(legacy_files(root)) | set(_found(root, names))
    if overwrite and root.is_dir() and any(root.iterdir()):
        require_marked(root, "overwrite=true")
    return set()


def _adopt(root: Path, names: tuple[str, ...], legacy: bool) -> None:
    """A folder ablate wrote before run.json existed becomes a run directory listing what ablate wrote there."""
    if legacy and not (root / "run.json").exists():
        RunMarker(root).claim(adopt=_found(root, names))


def _legacy_out(out: Path) -> bool:
    return (out / CSV_NAME).is_file() and not (out / CSV_NAME).is_symlink()


def _legacy_point(root: Path) -> bool:
    """A point generate wrote before run.json existed: its samples file of ours is there (`legacy_files`)."""
    return bool(legacy_files(root))


def _found(root: Path, names: tuple[str, ...]) -> list[str]:
    """The regular files at or under each of `names` in `root` (never through a link) that look as ablate writes
    them (a table with its columns, a point.json with its signature)."""
    found = []
    for name in names:
        base = root / name
        if base.is_symlink():
            continue
        candidates = [base] if base.is_file() else sorted(base.rglob("*")) if base.is_dir() else []
        found += [str(p.relative_to(root)) for p in candidates if p.is_file() and not p.is_symlink() and _ours(p)]
    return found


def _ours(path: Path) -> bool:
    try:
        if path.name in ("point.csv", CSV_NAME):
            with path.open(encoding="utf-8") as f:
                return f.readline().rstrip("\r\n") == ",".join(COLUMNS)
        if path.name == "point.json":
            return "signature" in json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, TypeError):
        return False
    return True


def _measured_here(view: Path, rel: str) -> bool:
    """A table the measuring command wrote into a measure/ view before ablate listed it in run.json: its header is
    the one that command writes (as `legacy_files` tells a samples file of ours)."""
    path = view / rel
    if rel not in MEASURED or path.is_symlink() or not path.is_file():
        return False
    from . import diversity, fid

    try:
        with path.open(encoding="utf-8") as f:
            header = f.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError):
        return False
    # diversity.csv's columns added since (ci, options, samples, reference_id) come last: an older header is a prefix
    if rel == diversity.CSV_NAME:
        columns = header.split(",")
        return len(columns) >= 8 and columns == diversity.COLUMNS[: len(columns)]
    # fid.csv ends in its META columns, as many as existed when it was written (an early one: ...,features,samples)
    endings = [fid.META[:count] for count in range(2, len(fid.META) + 1)] + [["reference", "features", "samples"]]
    columns = header.split(",")
    return header.startswith("method,model,n,") and any(columns[-len(end) :] == end for end in endings)


def _remove_owned(root: Path, rel: str) -> None:
    """Delete `rel` only when the toolkit wrote it (listed in run.json); a file of someone else's is refused."""
    marker = RunMarker(root)
    path = contained(root, rel)
    if not path.exists() and not path.is_symlink():
        return
    refuse_foreign(root, rel, rel in marker.files() or _measured_here(root, rel))
    path.unlink()
    if marker.read() is not None:
        marker.forget(rel)


def _listed(root: Path, rel: str) -> None:
    """List `rel` in root's run.json before a library writes it there (a kill in between leaves a listed file
    missing, never a stray one)."""
    marker = RunMarker(root)
    marker.claim()
    marker.record(rel)


# ------------------------------------------------------------------------------------------------ one point


def attempt(cfg: DictConfig, point: Point) -> list[dict[str, str]]:
    """`run_point`, but a point that cannot run (a knob its pair cannot do) is recorded and the sweep goes on."""
    root = point_dir(cfg, point)
    try:
        rows = run_point(cfg, point)
    except UserError as err:
        write_owned(root, ERROR_NAME, f"{err}\n")
        stderr_console().print(f"[red]error[/] at {point.tag}: {err}")
        return []
    _remove_owned(root, ERROR_NAME)
    return rows


def run_point(cfg: DictConfig, point: Point) -> list[dict[str, str]]:
    """Generate (resuming) and measure one point; its rows also go to `<point>/point.csv`."""
    from . import generation as generate

    gen = point_config(cfg, point)
    root = Path(gen.out)
    _adopt(root, POINT_FILES, _legacy_point(root))  # before generate marks it: its point.csv stays ours
    generate.generate(gen)
    return measure(cfg, point, gen)


def measure(cfg: DictConfig, point: Point, gen: DictConfig) -> list[dict[str, str]]:
    """Diversity (and FID/CLIP with fid=true) of exactly this run's images, reused when nothing changed.

    The measuring commands work on a run directory; `<point>/measure/` is one whose samples.csv lists just this
    run's images (paths lead back into the point's folder), so older images of other n or prompts stay out.
    """
    from . import generation as generate
    from .diversity import parse_metrics

    root = Path(gen.out)
    view = root / MEASURE
    prompts = read_prompts(gen.prompt, gen.prompts, gen.limit)
    jobs, seed = generate.plan_jobs(gen, prompts), command_seed(cfg.seed, prompts)
    made = {row["path"]: row for row in RunDir(root).read_samples()}
    lost = [job.path for job in jobs if job.path not in made]
    if lost:
        raise UserError(f"{root}: {len(lost)} image(s) of this point were not generated (e.g. {lost[0]})")
    rows = [{**made[job.path], "path": os.path.relpath(root / job.path, view)} for job in jobs]
    metrics = parse_metrics(cfg.metric)
    signature = _signature(cfg, metrics, rows, [root / job.path for job in jobs])
    # a multirun job is handed its sweep's (it runs inside Hydra, which composes no second config: "?" there)
    pair = cfg.get(PAIR_LABEL) if cfg.get(PAIR_LABEL) is not None else pair_changes(cfg.model)
    labels = {"pair": pair, "samples": _digests(cfg, point, jobs, made)}
    cached = _cached(root, signature)
    if cached is not None and _embedder_weights_changed(view):
        cached = None
    if cached is not None and cfg.fid and not (view / "fid.csv").is_file():
        cached = None  # the report reads a point's FID from its fid.csv (with the reference fid recorded there)
    if cached is not None:
        stderr_console().print(f"[green]measured before[/]: {point.tag} ({len(cached)} rows in {root / 'point.csv'})")
        # the same images: this sweep's seed (an earlier version left the FID rows' seed empty), and the labels
        # (the signature holds the images' settings and bytes: the same pair, the same digests)
        return _seeded(_labelled(cached, labels), seed)

    _write_view(view, rows)
    found = _diversity(cfg, view, metrics)
    order = {prompt: number for number, prompt in enumerate(dict.fromkeys(job.prompt for job in jobs))}
    found.sort(key=lambda row: order.get(row["prompt"], len(order)))  # the prompts' own order; stable per metric
    if cfg.fid:
        found += _quality(cfg, view)
    seconds = [float(r["seconds"]) for r in rows if r.get("seconds")]
    shared = {
        "model": str(cfg.model.name),
        **point.fields(),
        "seconds_per_image": f"{sum(seconds) / len(seconds):.4g}" if seconds else "",
        "nfe": rows[0]["nfe"],
        "run": f"{POINTS}/{cfg.model.name}/{point.tag}",
    }
    first_seed: dict[str, int] = {}
    for job in jobs:
        first_seed[job.prompt] = min(job.seed, first_seed.get(job.prompt, job.seed))
    results = [{**shared, "seed": first_seed.get(row["prompt"], ""), **row} for row in found]
    results = _seeded([{column: row.get(column, "") for column in COLUMNS} for row in _labelled(results, labels)], seed)
    _write_csv(root, "point.csv", results)
    # n and seed: which sweep's numbers point.csv holds (another n or seed= into the same out= measures it again)
    measured = {"signature": signature, **point.knobs(), "n": int(cfg.n), "seed": seed}
    write_owned(root, "point.json", json.dumps(measured, indent=2) + "\n")
    return results


def pair_changes(model: DictConfig) -> str:
    """The pair's settings that differ from its config file at its preset, as `key=value` joined by `; `
    (`base.guidance=5`; `~key` for one deleted), "" when none: what ablate.csv's `pair` column names. Keys that
    change no image (what the pair is measured with) are left out; "?" when no config file has the pair's name."""
    from .generation import MEASUREMENT_KEYS

    try:
        found = pair_differences(model, MEASUREMENT_KEYS)
    except UserError:
        found = None
    if found is None:
        return "?"
    flat, _, changed = found
    return "; ".join(f"{key}={show_value(flat[key])}" if key in flat else f"~{key}" for key in changed)


def _digests(cfg: DictConfig, point: Point, jobs: list, made: dict[str, dict[str, str]]) -> dict[str, str]:
    """prompt -> `samples_digest` of the point's images of it, paths from out= (as a report reads a point's
    samples), for each prompt whose seeds run first .. first+n-1: the images `seed_window` finds again. A prompt
    listed twice at other seeds gets none (its row is not checked)."""
    prefix = f"{POINTS}/{cfg.model.name}/{point.tag}"
    by_prompt: dict[str, list[dict[str, str]]] = {}
    for job in jobs:
        by_prompt.setdefault(job.prompt, []).append({**made[job.path], "path": f"{prefix}/{job.path}"})
    found = {}
    for prompt, rows in by_prompt.items():
        seeds = sorted(int(row["seed"]) for row in rows)
        if seeds == list(range(seeds[0], seeds[0] + len(seeds))):
            found[prompt] = samples_digest(rows)
    return found


def _labelled(rows: list[dict[str, str]], labels: dict) -> list[dict[str, str]]:
    """The rows with the sweep's `pair` and each prompt's `samples` digest."""
    digests = labels["samples"]
    return [{**row, "pair": labels["pair"], "samples": digests.get(row.get("prompt") or "", "")} for row in rows]


def _seeded(rows: list[dict[str, str]], seed: int | None) -> list[dict[str, str]]:
    """The rows, those over all prompts (FID/IS/CLIP) naming the sweep's seed=: they are no prompt's, and without
    it two sweeps' FIDs at two seeds would be one row. Also for a point.csv written before they named it."""
    if seed is None:
        return rows
    return [{**row, "seed": str(seed)} if not row.get("prompt") and not row.get("seed") else row for row in rows]


def _diversity(cfg: DictConfig, view: Path, metrics: list[str]) -> list[dict[str, str]]:
    from . import diversity

    settings = _copy(cfg.measure.diversity)
    settings.update(out=str(view), images=None, prompt=None, metric=metrics, device=cfg.device)  # the run's prompts
    if settings.get("quality") == "auto":  # the point's pair is known: asking the run's would compose inside Hydra
        settings.quality = str(cfg.model.get("default_quality") or "none")
    _remove_owned(view, diversity.CSV_NAME)  # its rows are then exactly this measurement's
    _listed(view, diversity.CSV_NAME)
    path = Path(diversity.measure_diversity(settings))
    keep = ("prompt", "n", "metric", "value", "ci_low", "ci_high", "ci", "options")
    return [{key: row.get(key, "") for key in keep} for row in _read_csv(path)]


def _quality(cfg: DictConfig, view: Path) -> list[dict[str, str]]:
    """FID / IS / CLIP of the point's images, one row each; the prompt column stays empty (over all prompts)."""
    from . import fid

    settings = _copy(cfg.measure.fid)
    settings.update(out=str(view), device=cfg.device, tags=None)
    _remove_owned(view, "fid.csv")
    _listed(view, "fid.csv")
    rows = []
    for row in _read_csv(fid.measure_quality(settings)):
        for metric, value in row.items():
            skip = metric in QUALITY_SKIP or metric in fid.META or metric.startswith("is_std")
            if not skip and value not in ("", None):
                name = "clip_score" if metric == "clip" else metric  # `clip` names the diversity embedder
                options = _quality_options(name, row)
                rows.append({"prompt": "", "n": row["n"], "metric": name, "value": value, "options": options})
    return rows


def _quality_options(metric: str, row: dict[str, str]) -> str:
    """fid.csv's settings that made this number, as ablate.csv's `options`, when they are not the defaults: the
    reference (`reference=toy(per_prompt=10)`, a folder) for an FID, the feature network's image preparation
    (`features=toy(resolution=64)`) for an FID or IS; for a CLIP score its CLIP model where not the published one's."""
    options = []
    if metric.startswith("fid") and row.get("reference") not in (None, "", "toy", "coco"):
        options.append(f"reference={row['reference']}")
    if metric.startswith(("fid", "is")) and "(" in (row.get("features") or ""):
        options.append(f"features={row['features']}")
    if metric == "clip_score" and other_clip(row.get("clip_model")):
        options.append(f"clip_model={row['clip_model']}")
    return ",".join(options)


def _signature(cfg: DictConfig, metrics: list[str], rows: list[dict[str, str]], images: list[Path]) -> str:
    """What a point's measurement depends on: its images (settings, seeds, timing, bytes), the metric settings and
    the toy judge's weights (a classifier retrained in place)."""
    from ..core.fingerprint import file_hashes, folder_hash
    from ..toy.features import ASSETS

    ignore = ("out", "images", "metric", "device", "batch_size", "workers", "tags")
    judge = (_container(cfg.measure.diversity).get("embedders") or {}).get("toy_features") or {}
    toy = any(metric.startswith("toy") for metric in metrics)
    record = {
        "rows": ROWS_VERSION,  # point.csv's rows as this code writes them: an older point's are measured again
        "samples": [{k: r[k] for k in ("path", "prompt", "seed", "settings", "seconds")} for r in rows],
        "bytes": file_hashes(images),
        "judge": folder_hash(judge.get("path") or ASSETS / "features") if toy else None,
        "metric": metrics,
        "diversity": {k: v for k, v in _container(cfg.measure.diversity).items() if k not in ignore},
        "fid": {k: v for k, v in _container(cfg.measure.fid).items() if k not in ignore} if cfg.fid else None,
    }
    return hashlib.sha1(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def _cached(root: Path, signature: str) -> list[dict[str, str]] | None:
    marker, table = root / "point.json", root / "point.csv"
    if not (marker.is_file() and table.is_file()):
        return None
    try:
        if json.loads(marker.read_text()).get("signature") != signature:
            return None
    except json.JSONDecodeError:
        return None
    return _read_csv(table)


def _embedder_weights_changed(view: Path) -> bool:
    """Whether a weights file or folder the point's last diversity measurement read (its run record in `view`)
    holds other bytes now, or is gone: a DreamSim, CLIP or DINO checkpoint replaced in its cache. The signature
    cannot hold them without loading each embedder; networks held in memory are keyed there (the toy judge's
    folder) or by package versions. A point measured before records carried weights is taken as it is."""
    from ..core.fingerprint import folder_hash

    records = [record for record in read_records(view) if record.get("embedders")]
    if not records:
        return False
    for used in records[-1]["embedders"].values():
        for weights in used.get("weights", []) if isinstance(used, dict) else []:
            source = Path(str(weights.get("source", "")))
            if str(source).startswith("in-memory"):
                continue
            if not source.exists() or folder_hash(source) != weights.get("weights_hash"):
                return True
    return False


def _write_view(view: Path, rows: list[dict[str, str]]) -> None:
    run = RunDir(view)
    wanted = [{column: str(row.get(column, "")) for column in SAMPLE_COLUMNS} for row in rows]
    if run.read_samples() == wanted:
        return
    run.replace_samples(wanted)  # atomic: never unlink-then-rewrite (a kill in between lost the whole file)


# ---------------------------------------------------------------------------------------- multirun (SLURM)


ASSET_PATH = re.compile(r"\$\{asset:[^${}]*\}")


def kept_asset_paths(raw: Any, resolved: Any) -> Any:
    """`resolved`, with each value `raw` writes as a shipped asset's path (`${asset:toy/base/unet}`) kept so: images
    are keyed by that symbolic path (a moved checkout keeps its images), so a job must read the one a local run
    reads, or it refuses the local run's images as made with other settings, and the local run the job's."""
    if isinstance(raw, dict) and isinstance(resolved, dict):
        return {key: kept_asset_paths(raw.get(key), value) for key, value in resolved.items()}
    if isinstance(raw, list) and isinstance(resolved, list) and len(raw) == len(resolved):
        return [kept_asset_paths(r, v) for r, v in zip(raw, resolved, strict=True)]
    return raw if isinstance(raw, str) and ASSET_PATH.fullmatch(raw) else resolved


def launch(cfg: DictConfig, sweep: Sweep) -> str | None:
    """One Hydra multirun job per point (`python -m diversity_cli.experiments.ablate_job`); waits for them all.

    The jobs read this sweep's composed config from `<out>/multirun/<time>/sweep.yaml`, so each one runs exactly
    what this command would run locally. Returns a message when some job failed.
    """
    out = Path(cfg.out).resolve()
    folder = out / MULTIRUN / time.strftime("%Y-%m-%d_%H-%M-%S")
    made = [path for path in (out / MULTIRUN, folder) if not path.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    job = kept_asset_paths(OmegaConf.to_container(cfg, resolve=False), OmegaConf.to_container(cfg, resolve=True))
    job.update(out=str(out), launcher="local", merge=False, point=None)
    if job.get("prompts") and Path(job["prompts"]).exists():
        job["prompts"] = str(Path(job["prompts"]).resolve())  # a job may start elsewhere
    job["points"] = {point.tag: point.knobs() for point in sweep.all}
    job[PAIR_LABEL] = pair_changes(cfg.model)
    for key in literal_keys(AblateConfig):  # free text stays text: a prompt's `${...}` is not resolved by the job
        *parents, leaf = key.split(".")
        holder = functools.reduce(lambda node, name: node.get(name) or {}, parents, job)
        if isinstance(holder.get(leaf), str):
            holder[leaf] = escape(holder[leaf])
    write_owned(out, str((folder / "sweep.yaml").relative_to(out)), OmegaConf.to_yaml(OmegaConf.create(job)))
    argv = [
        sys.executable,
        "-m",
        "diversity_cli.experiments.ablate_job",
        "--multirun",
        "--config-path",
        str(folder),
        "--config-name",
        "sweep",
        "hydra.searchpath=[" + ",".join(f"file://{path.resolve()}" for path in search_dirs()) + "]",
        f"hydra/launcher={cfg.launcher}",
        f"hydra.sweep.dir={folder}",
        f"point={','.join(point.tag for point in sweep.all)}",
        *cfg.launcher_overrides,
    ]
    stderr_console().print(f"multirun: {len(sweep.all)} jobs through {cfg.launcher}; logs in {folder}")
    refused = folder / REFUSED_NAME
    # HYDRA_FULL_ERROR: Hydra hands the launcher's exception to the job script, which says it in one line (Hydra
    # itself prints a traceback); a submission sbatch refused is written to `refused` for this process to say.
    env = {**os.environ, "HYDRA_FULL_ERROR": "1", REFUSED_ENV: str(refused)}
    done = subprocess.run(argv, check=False, env=env)
    if refused.is_file():
        reason = refused.read_text(encoding="utf-8").strip()
        # submitit makes a folder per job id it submitted: an array split over several sbatch calls may have some
        # queued before one was refused, and their logs stay (with this folder); else nothing ran and all goes
        if any(path.is_dir() for path in (folder / ".submitit").glob("*")):
            raise UserError(
                f"launcher={cfg.launcher}: the cluster refused part of the submission ({reason}); jobs submitted "
                f"before it may be running (logs under {folder}); when they are done, add merge=true"
            )
        for path in reversed(made):  # the folders made for it go (submitit's pickles too)
            shutil.rmtree(path, ignore_errors=True)
        raise UserError(
            f"launcher={cfg.launcher}: the cluster refused the submission ({reason}); check its settings "
            "(hydra.launcher.partition=...), or use launcher=submitit_local (the same jobs as local processes)"
        )
    if done.returncode != 0:
        return (
            f"the multirun stopped at a failed job (exit {done.returncode}) and other jobs may still be running; "
            f"logs under {folder}; when they are done, add merge=true or rerun the command (finished points are reused)"
        )
    return None


# -------------------------------------------------------------------------------------------- merge, plots


def collect(out: Path, sweep: Sweep) -> tuple[list[tuple[Point, list[dict[str, str]]]], list[Point]]:
    """Each point's finished rows (point.csv with its point.json written after it), and the points without. A point
    whose last attempt failed (error.txt) is without: its point.csv, if any, is an earlier sweep's. So is one last
    measured at another n or seed (a sweep at another n or seed= into the same out= since): its numbers are not
    this sweep's."""
    results, missing = [], []
    for point in sweep.all:
        folder = out / POINTS / sweep.model / point.tag
        done = (folder / "point.json").is_file() and (folder / "point.csv").is_file()
        if done and not (folder / ERROR_NAME).is_file() and not _measured_elsewhere(folder, sweep):
            results.append((point, _seeded(measurements(_read_csv(folder / "point.csv")), sweep.seed)))
        else:
            missing.append(point)
    return results, missing


def _measured_elsewhere(folder: Path, sweep: Sweep) -> str | None:
    """`n=3, not n=2` or `seed=0, not seed=100`: a point's last measurement is another sweep's; None when it is
    this sweep's, or not known to be another's."""
    for column, wanted in (("n", sweep.n), ("seed", sweep.seed)):
        found = _measured_at(folder, column)
        if found is not None and wanted is not None and found != wanted:
            return f"{column}={found}, not {column}={wanted}"
    return None


def _measured_at(folder: Path, column: str) -> int | None:
    """The n or seed of a point's last measurement: its point.json's; for one written before point.json held it,
    the value its prompts' rows agree on (not its FID/IS/CLIP rows, over all prompts); None when not known, or (the
    seed) when seed= chose none of its images."""
    try:
        measured = json.loads((folder / "point.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        measured = None
    if isinstance(measured, dict) and column in measured:
        return measured[column] if isinstance(measured[column], int) else None
    table = folder / "point.csv"
    values = {row.get(column, "") for row in _read_csv(table) if row.get("prompt")} if table.is_file() else set()
    only = values.pop() if len(values) == 1 else ""
    return int(only) if only.isdigit() else None


def _own_rows(cfg: DictConfig) -> dict[str, set[str]]:
    """The `n` and `seed` of this sweep's rows: each prompt's images and first seed, and those of all of a point's
    (its FID/IS/CLIP rows: all its images, and seed= where a prompt's seeds start at it, else none); a row without
    a seed (written before rows named one) is taken for this sweep's, as `write_rows` takes it."""
    from collections import Counter

    from . import generation as generate

    rows = read_prompts(cfg.prompt, cfg.prompts, cfg.limit)
    jobs = generate.plan_jobs(point_config(cfg, Point("base")), rows)
    counts = {str(count) for count in Counter(job.prompt for job in jobs).values()} | {str(len(jobs))}
    return {"n": counts, "seed": {str(row.first_seed(cfg.seed)) for row in rows} | {""}}


def measurements(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Rows as this code writes them, from files an earlier version wrote: fid.csv's bookkeeping columns were copied
    in as metrics (`samples`, a digest), and two images got a bootstrap interval of width 0."""
    from . import fid

    kept = [dict(row) for row in rows if row.get("metric") not in fid.META]
    for row in kept:
        if str(row.get("n", "")).isdigit() and int(row["n"]) < MIN_INTERVAL_N:
            row["ci_low"] = row["ci_high"] = ""
    return kept


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    """Merge rows into ablate.csv: a row with the key of an existing one replaces it in place; untouched if same.
    A row without a seed (an earlier version's FID/IS/CLIP rows) is replaced by one like it in all else, as before
    rows named their seed: which sweep's it is, is not known."""
    existing = _read_csv(path) if path.is_file() else []
    merged = [{column: row.get(column, "") for column in COLUMNS} for row in measurements(existing)]
    index = {_key(row): i for i, row in enumerate(merged)}
    for row in rows:
        row = {column: str(row.get(column, "")) for column in COLUMNS}
        key, unseeded = _key(row), _key({**row, "seed": ""})
        found = index.get(key)
        if found is None and unseeded in index:
            found = index.pop(unseeded)
        if found is None:
            found = _same_images_unknown_pair(row, merged, index)
        if found is not None:
            merged[found] = row
            index[key] = found
        else:
            index[key] = len(merged)
            merged.append(row)
    if merged != existing or not path.is_file():
        _write_csv(path.parent, path.name, merged)
    return path


def _same_images_unknown_pair(row: dict[str, str], merged: list[dict[str, str]], index: dict) -> int | None:
    """The index of an earlier row like `row` but for a `pair` not known (written before rows named it, or `?` by a
    version whose multirun jobs could not compose the pair) over the very images `row` measured (its `samples`
    digest): the same measurement, so replaced. Over other images it is another, kept beside; None then."""
    for pair in ("", "?"):
        old = index.get(_key({**row, "pair": pair}))
        if old is not None and row["samples"] and merged[old].get("samples") == row["samples"]:
            return index.pop(_key({**row, "pair": pair}))
    return None


def _key(row: dict[str, str]) -> tuple[str, ...]:
    return tuple(row[k] for k in KEY)


def drop_points(path: Path, runs: set[str], only: dict[str, set[str]] | None = None) -> None:
    """ablate.csv without the rows of these points (`run` column), whose last attempt failed: with `only`, those
    whose every column it names holds one of its values (this sweep's n and seeds)."""

    def dropped(row: dict[str, str]) -> bool:
        theirs = all(row.get(column, "") in values for column, values in (only or {}).items())
        return row.get("run") in runs and theirs

    rows = _read_csv(path)
    kept = [row for row in rows if not dropped(row)]
    if len(kept) != len(rows):
        _write_csv(path.parent, path.name, [{column: row.get(column, "") for column in COLUMNS} for row in kept])


def plot_name(sweep: Sweep, metric: str, knob: str | None) -> str:
    """`<model>_<metric>_vs_<knob>_<sweep>.png`: the sweep's id (its n, its seed= unless the default, and a hash of
    its points: `n8-1a2b3c`, `n8-s100-1a2b3c`) keeps two sweeps that share `out` (k=1..4, then method=replace_final
    k=1..3; or the same points at another n or seed) from drawing over each other's plots. A sweep at the default
    seed keeps the name it had before plots named seeds."""
    import hashlib

    points = ",".join(sorted(point.tag for point in sweep.points))
    counts = "" if sweep.n is None else f"n{sweep.n}-"
    seed = "" if sweep.seed in (None, DEFAULT_SEED) else f"s{sweep.seed}-"
    sweep_id = counts + seed + hashlib.sha1(points.encode()).hexdigest()[:6]
    what = f"vs_{knob}" if knob else "by_method"
    named = re.sub(r"[^\w.=+-]+", "_", metric).strip("_")  # `toy_features[distance=euclidean]`: a file name
    # options naming a folder (an FID's reference=/data/...) would make it long: the metric and a digest instead
    metric = named if len(named) <= 48 else f"{metric.split('[')[0]}_{hashlib.sha1(metric.encode()).hexdigest()[:8]}"
    return f"{sweep.model}_{metric}_{what}_{sweep_id}.png"


def interval_level(results: list[tuple[Point, list[dict[str, str]]]], metric: str) -> str:
    """The level of the intervals a plot's bars draw, from its rows' `ci` ("95% CI"; levels that differ, each)."""
    return interval_name(row.get("ci") or "" for _, rows in results for row in rows if metric_label(row) == metric)


def plot(results: list[tuple[Point, list[dict[str, str]]]], sweep: Sweep, folder: Path) -> list[Path]:
    """One PNG per metric and swept knob: value against the knob with its bootstrap interval, one line per prompt
    and their mean (or, for a grid, one mean line per value of the other knobs); points without that knob
    (baselines) as horizontal lines. When only the method varies, one bar chart of every point. `folder` is a
    folder of the run directory `folder.parent` (`<out>/plots`): each plot is listed in its run.json."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    metrics = list(dict.fromkeys(metric_label(row) for _, rows in results for row in rows))
    knobs = [knob for knob in sweep.swept if knob != "method"]
    paths = []
    for metric in metrics:
        values = [(point, _measured(rows, metric)) for point, rows in results]
        values = [(point, by_prompt) for point, by_prompt in values if by_prompt]
        for knob in knobs or [None]:
            fig = plot_figure(values, sweep, metric, knob, interval_level(results, metric))
            name = plot_name(sweep, metric, knob)
            with owned_path(folder.parent, f"{folder.name}/{name}") as temporary:
                # "tight": any text reaching past the figure's edge widens the image instead of being cut off by it
                fig.savefig(temporary, dpi=120, format="png", bbox_inches="tight")
            plt.close(fig)
            paths.append(folder / name)
    return paths


PLOT_SIZE = (6.4, 4.2)  # inches, before the legend beside the axes widens it
TITLE_CHARS = 64  # a title line this long at fontsize 10 stays within the axes
LABEL_CHARS = 40  # a legend line at fontsize 7, or the y label (a metric with its options), this long at most


def plot_figure(values: list[tuple[Point, Measured]], sweep: Sweep, metric: str, knob: str | None, level: str) -> Any:
    """One of `plot`'s plots as a matplotlib Figure: `metric` against `knob` (a bar per point where None), its bars
    intervals of `level` ("95% CI"), its legend beside the axes."""
    import textwrap

    import matplotlib.pyplot as plt

    # constrained layout keeps the legend beside the axes, and the wrapped title and labels, inside the figure
    fig, ax = plt.subplots(figsize=PLOT_SIZE, layout="constrained")
    if knob is None:
        _bars(ax, values, metric)
    else:
        _lines(ax, values, knob, [other for other in sweep.swept if other != knob], metric)
    ax.set_ylabel(textwrap.fill(metric, LABEL_CHARS))
    what = f"{metric} vs {knob}" if knob else metric
    what += held_knobs([point for point, _ in values], [knob, *sweep.swept])
    over = "" if sweep.n is None else f", n={sweep.n}"  # the images per prompt every value rests on
    over += "" if sweep.seed is None else f", seed={sweep.seed}"  # ... and which ones
    ax.set_title(_title(f"{sweep.model}: {what}{over}", f"(bars: {level} of each value)"), fontsize=10)
    return fig


def held_knobs(points: list[Point], varied: list[str | None]) -> str:
    """` (base_steps=5)`: the knobs not swept that every point using them holds at one value (a k sweep of the
    toy's 5-step hybrid read as the paper's one-step hand-over); "" for none."""
    held = {}
    for name in ("k", "base_guidance", "base_steps"):
        values = {point.fields()[name] for point in points} - {""}
        if name not in varied and len(values) == 1:
            held[name] = values.pop()
    return f" ({', '.join(f'{name}={value}' for name, value in held.items())})" if held else ""


def _title(head: str, tail: str) -> str:
    """`head` wrapped at TITLE_CHARS, `tail` after it on its last line where it fits, else on a line of its own:
    on one line, a long metric (its options) ran past the figure's edges."""
    import textwrap

    lines = textwrap.wrap(head, TITLE_CHARS)
    if len(lines[-1]) + 1 + len(tail) <= TITLE_CHARS:
        return "\n".join([*lines[:-1], f"{lines[-1]} {tail}"])
    return "\n".join([*lines, tail])


Measured = dict[str, tuple[float, float | None, float | None]]  # prompt -> (value, ci_low, ci_high)


def _measured(rows: list[dict[str, str]], metric: str) -> Measured:
    def number(text: str | None) -> float | None:
        return float(text) if text not in (None, "") else None

    return {
        row["prompt"]: (float(row["value"]), number(row.get("ci_low")), number(row.get("ci_high")))
        for row in rows
        if metric_label(row) == metric and row["value"] != ""
    }


def _errors(items: list[tuple[float, float | None, float | None]]):
    """Error-bar extents (below, above) of values with intervals; None when any value has none."""
    if not items or any(low is None or high is None for _, low, high in items):
        return None
    return [[max(0.0, v - low) for v, low, _ in items], [max(0.0, high - v) for v, _, high in items]]


def _lines(ax, values: list[tuple[Point, Measured]], knob: str, others: list[str], metric: str) -> None:
    from matplotlib.ticker import MaxNLocator

    series: dict[str, list[tuple[float, Measured]]] = {}
    flat = []
    for point, by_prompt in values:
        x = getattr(point, knob)
        if x is None:  # a baseline, or a method without this knob: a level to compare against
            flat.append((point.tag, by_prompt))
            continue
        label = ", ".join(f"{o}={point.fields()[o]}" for o in others if point.fields()[o] != "")
        series.setdefault(f"{metric}, {point.method}" + (f", {label}" if label else ""), []).append((x, by_prompt))
    prompts = {prompt for line in series.values() for _, by_prompt in line for prompt in by_prompt}
    per_prompt = len(series) == 1 and 1 < len(prompts) <= MAX_PROMPT_LINES
    for label, line in series.items():
        line.sort(key=lambda item: item[0])
        if per_prompt:
            for prompt in sorted(prompts):
                got = [(x, by_prompt[prompt]) for x, by_prompt in line if prompt in by_prompt]
                ax.errorbar([x for x, _ in got], [v[0] for _, v in got], yerr=_errors([v for _, v in got]),
                            marker="o", markersize=3, linewidth=1, alpha=0.6, capsize=2, label=prompt[:40])  # fmt: skip
        if len(prompts) == 1:  # one measurement per x: its own bootstrap interval
            items = [next(iter(by_prompt.values())) for _, by_prompt in line]
            ax.errorbar([x for x, _ in line], [v for v, _, _ in items], yerr=_errors(items), marker="o",
                        linewidth=2.4, capsize=3, label=label)  # fmt: skip
        else:  # a mean over prompts has no single interval: the per-prompt lines carry theirs
            mean_label = f"{label} (mean of {len(prompts)} prompts)"
            ax.plot([x for x, _ in line], [_mean(by_prompt) for _, by_prompt in line], marker="o", linewidth=2.4,
                    color="black" if per_prompt else None, label=mean_label)  # fmt: skip
    for number, (tag, by_prompt) in enumerate(flat):
        colour = f"C{(number + 6) % 10}"
        ax.axhline(_mean(by_prompt), linestyle=("--", ":", "-.")[number % 3], color=colour, label=f"{metric}, {tag}")
        if len(by_prompt) == 1 and None not in (interval := next(iter(by_prompt.values())))[1:]:
            # its interval, as the points carry theirs: a bare level read as exact beside error bars as wide
            ax.axhspan(interval[1], interval[2], color=colour, alpha=0.12, lw=0)
    if knob in ("k", "base_steps"):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(knob)
    _legend_beside(ax)


def _bars(ax, values: list[tuple[Point, Measured]], metric: str) -> None:
    tags = [point.tag for point, _ in values]
    means = [_mean(by_prompt) for _, by_prompt in values]
    single = all(len(by_prompt) == 1 for _, by_prompt in values)
    errors = _errors([next(iter(by_prompt.values())) for _, by_prompt in values]) if single else None
    ax.bar(range(len(tags)), means, yerr=errors, capsize=3, color="C0", label=metric)
    ax.set_xticks(range(len(tags)), tags, rotation=30, ha="right")
    _legend_beside(ax)


def _legend_beside(ax: Any) -> None:
    """`ax`'s legend right of the axes, each entry wrapped at LABEL_CHARS, and the figure widened by its width:
    inside the axes a long legend (a line per prompt, per value of a grid's other knob) hid the curves."""
    import textwrap

    handles, labels = ax.get_legend_handles_labels()
    wrapped = [textwrap.fill(label, LABEL_CHARS, subsequent_indent="  ") for label in labels]
    legend = ax.legend(handles, wrapped, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0, fontsize=7)
    fig = ax.figure
    fig.set_figwidth(fig.get_figwidth() + legend.get_window_extent(fig.canvas.get_renderer()).width / fig.dpi)


def _values(rows: list[dict[str, str]], metric: str) -> dict[str, float]:
    return {row["prompt"]: float(row["value"]) for row in rows if metric_label(row) == metric and row["value"] != ""}


def _mean(by_prompt: dict) -> float:
    """Mean over prompts of plain values or of (value, ci_low, ci_high) triples."""
    values = [v[0] if isinstance(v, tuple) else v for v in by_prompt.values()]
    return sum(values) / len(values)


def show(results: list[tuple[Point, list[dict[str, str]]]], target: Path) -> None:
    """Per point and metric: the mean over prompts with its interval and the images per prompt it rests on, the
    quality measured beside it (each prompt's toy_adherence or clip_score: variety off the prompt must not pass for
    diversity), and the cost (seconds per image, network evaluations)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    columns = ("point", "metric", "mean", "interval", "prompts", "n", "quality", "s/image", "nfe")
    lines = []
    for point, rows in results:
        quality = [row for row in rows if _beside(row)]
        shown = [row for row in rows if not _beside(row)] or quality  # quality alone (metric=toy_adherence): its rows
        beside = "" if shown is quality else _quality_cell(quality)
        for metric in dict.fromkeys(metric_label(row) for row in shown):
            mine = [row for row in shown if metric_label(row) == metric and row["value"] != ""]
            first = next(row for row in shown if metric_label(row) == metric)
            mean = f"{_mean(_values(mine, metric)):.4f}" if mine else ""
            counts = "/".join(dict.fromkeys(row["n"] for row in mine)) or first["n"]
            lines.append((point.tag, metric, mean, _interval_cell(mine), str(len(_values(mine, metric))), counts,
                          beside, first["seconds_per_image"], first["nfe"]))  # fmt: skip
    # an interval or quality column no point has (n=2, a pair measuring none) is left out: a long metric name
    # (an FID's reference folder) keeps the width
    kept = [i for i, name in enumerate(columns) if name not in ("interval", "quality") or any(x[i] for x in lines)]
    table = Table(title=f"ablate ({target})")
    for i in kept:
        table.add_column(columns[i], justify="left" if columns[i] in ("point", "metric", "quality") else "right")
    for line in lines:
        table.add_row(*(Text(line[i]) for i in kept))  # data, not markup: `metric[options]` would vanish as a tag
    Console(width=160).print(table)


def _beside(row: dict[str, str]) -> bool:
    """A prompt's quality row (toy_adherence, clip_score), shown beside that point's diversity, not as a number of
    its own; a CLIP score over all prompts (fid=true) stays a row."""
    return row["metric"] in QUALITY_METRICS and bool(row.get("prompt"))


def _quality_cell(rows: list[dict[str, str]]) -> str:
    """`toy_adherence 0.938`: each quality metric's mean over the prompts."""
    labels = dict.fromkeys(metric_label(row) for row in rows if row["value"] != "")
    return "; ".join(f"{label} {_mean(_values(rows, label)):.3f}" for label in labels)


def _interval_cell(rows: list[dict[str, str]]) -> str:
    """The interval of a point's value: one prompt's bootstrap interval, or the pooled interval of the mean over
    several (as Figure 7 and Table 3 average); its level named when not 95%; empty where a prompt has none."""
    if not rows or any(row.get("ci_low") in (None, "") or row.get("ci_high") in (None, "") for row in rows):
        return ""
    lows, highs = ([float(row[key]) for row in rows] for key in ("ci_low", "ci_high"))
    _, low, high = pooled_interval([float(row["value"]) for row in rows], lows, highs)
    levels = {float(row.get("ci") or 0.95) for row in rows}
    named = "" if levels == {0.95} else f" {levels.pop():.0%} CI" if len(levels) == 1 else " (CIs of several levels)"
    return f"[{low:.4f}, {high:.4f}]{named}"


# ------------------------------------------------------------------------------------------------- helpers


def _read_csv(path: Path) -> list[dict[str, str]]:
    return read_table(path)  # a damaged row is one line naming it


def _write_csv(root: Path, rel: str, rows: list[dict[str, str]]) -> None:
    """`root/rel`, written atomically (readers never see half a file) and listed in root's run.json."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_owned(root, rel, buffer.getvalue())


def _container(node) -> dict:
    return OmegaConf.to_container(node, resolve=True) if node is not None else {}


def _copy(node) -> DictConfig:
    copy = OmegaConf.create(_container(node))
    OmegaConf.set_struct(copy, False)
    return copy
