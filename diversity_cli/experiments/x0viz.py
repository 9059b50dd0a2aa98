"""`diversity-cli x0viz`: what each method has decided at every step (paper Fig. 3, 4, 5).

For each method, the decoded x̂0 prediction ("diffusion target") at every step, beside the decoded noisy latent
x_t, as grids (rows = seeds, columns = steps); and the commitment curve: the distance between each step's x̂0
and the final image against the fraction of steps done. A method has *committed* at the first step where that
distance falls to `threshold` times its first-step value; `generate k=auto` builds on the base model's point.
"""

from __future__ import annotations

import csv
import json
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from omegaconf import DictConfig, OmegaConf

from ..core.atomic import atomic_path
from ..core.config import value_differences
from ..core.console import stderr_console
from ..core.errors import UserError, did_you_mean
from ..core.fingerprint import weights_record
from ..core.marker import RunMarker, claim_outputs, left_as_found, remove_outputs
from ..core.pair_settings import image_settings
from ..core.prompts import PromptRow, command_limits, prompt_id, read_prompts
from ..core.record import read_records, record_invocation
from ..core.schema import check
from ..core.schemas.x0viz import X0vizConfig
from ..models.hub import methods_roles
from ..models.provenance import hashed_provenance, pair_provenance, role_hashes
from ..sampling.commitment import commitment, summarize
from ..sampling.methods import METHODS
from ..sampling.tags import run_tag
from ..sampling.trace import Trace, to_pixels, trace_method
from .defaults import apply_defaults
from .generation import MEASUREMENT_KEYS

if TYPE_CHECKING:
    from ..models.pair import ModelPair

CURVE_COLUMNS = ["method", "prompt", "seed", "step", "timestep", "fraction", "distance"]
# Keys that change x0viz's files beyond which images it traces; those (prompt rows, n, seeds, methods and their
# knobs) are read back from commitment.csv itself, so a prompt file edited in place is told apart too.
FILE_KEYS = ("model", "metric", "threshold", "columns", "cell")
# The keys that choose the traced images: named where commitment.csv traced other ones.
TRACE_KEYS = ("prompt", "prompts", "limit", "n", "seed", "methods", "k", "base_guidance", "base_steps")
# A pair's keys no x0viz file depends on: how other commands measure it, and the prompt, already in `prompt`.
UNUSED_PAIR_KEYS = (*MEASUREMENT_KEYS, "default_prompt")


def visualize(cfg: DictConfig) -> Path:
    check(X0vizConfig, cfg)  # compose has checked a CLI config; library callers get the same checks
    apply_defaults(cfg)  # metric=auto and no prompt: what the pair names
    methods = list(dict.fromkeys(cfg.methods))  # a method listed twice was traced twice, each row counted twice
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UserError(f"unknown method(s) {', '.join(unknown)}; choose from: {', '.join(METHODS)}")
    # a prompt listed twice at the same seed is the same images (generate makes them once): traced once, or the
    # mean curve weighs it twice and the summary counts it twice
    rows = list(dict.fromkeys(read_prompts(cfg.prompt, cfg.prompts, cfg.limit, **command_limits(cfg))))
    out = Path(cfg.out)
    # Every file this run writes: out must be a run directory (or new) and none of them a file of someone else;
    # listed in run.json before anything runs, so overwrite=true replaces only what x0viz wrote.
    stems = [grid_stem(cfg, method, row, rows) for row in rows for method in methods]
    outputs = ["commitment.csv", "commitment_summary.csv", "commitment.png"]
    outputs += [f"{kind}_{stem}.png" for stem in stems for kind in ("x0", "xt")]
    from ..metrics.embedders import EMBEDDERS

    if cfg.metric not in EMBEDDERS:
        near = did_you_mean(str(cfg.metric), EMBEDDERS)
        raise UserError(f"unknown metric '{cfg.metric}'{near or ';'} choose from: {', '.join(EMBEDDERS)}")
    if (out / "commitment.csv").exists() and not cfg.overwrite:
        check_finished(cfg, out, rows, methods, outputs)  # the same run, finished: nothing to do (or a new threshold)
        return out
    if not cfg.overwrite:
        refuse_unfinished_other(out, outputs)
    with left_as_found(out, outputs):
        return _visualize(cfg, out, rows, methods, outputs)


def refuse_unfinished_other(out: Path, outputs: list[str]) -> None:
    """A run stopped before its curve left grids; one with other prompts or methods would finish beside them, and the
    folder would show grids its curve never traced. Resuming with the same settings remakes exactly its own."""
    if not out.is_dir():
        return
    stray = [name for name in RunMarker(out).files() if name.startswith(("x0_", "xt_")) and name not in outputs]
    if stray:
        raise UserError(
            f"{out} holds grids of an x0viz run stopped before its curve, with other prompts or methods (e.g. "
            f"{stray[0]}); rerun it with its settings to finish it, or add overwrite=true to replace it"
        )


def check_finished(cfg: DictConfig, out: Path, rows: list[PromptRow], methods: list[str], outputs: list[str]) -> None:
    """`out` holds a finished x0viz run (its commitment.csv) and overwrite=true is not given: made with these
    settings and whole, it is this run, said so with nothing written and no model loaded; else one line saying
    what differs (or what is missing), nothing written either. A run stopped before its curve has no
    commitment.csv and is traced again."""
    record = last_trace_record(out)
    refusal = f"{out} already holds an x0viz run (commitment.csv)"
    if record is None:  # no record of its settings (written by hand, or before runs/ existed): nothing to compare
        raise UserError(f"{refusal}; use another out= or overwrite=true")
    differences = setting_differences(cfg, record) + trace_differences(cfg, record, out, rows, methods)
    if differences and all(difference.startswith("threshold=") for difference in differences):
        summarize_again(cfg, out, record, len(rows))
        return
    if differences:
        raise UserError(
            f"{refusal} made with different settings ({'; '.join(differences)}); use another out= or overwrite=true"
        )
    missing = [name for name in outputs if not (out / name).is_file()]
    if missing:
        raise UserError(f"{out} holds this x0viz run but {out / missing[0]} is missing; overwrite=true makes it again")
    stderr_console().print(f"[green]nothing to do[/]: {out} holds this x0viz run")


def summarize_again(cfg: DictConfig, out: Path, record: dict, prompts: int) -> None:
    """A finished run asked for at another threshold: its curves (commitment.csv) are the same, only where they
    commit moves, so its summary and plot are made again from them, with no model loaded. Recorded as a trace
    of its models, so the next run compares with the threshold it shows."""
    numbers = {"seed": int, "step": int, "timestep": int, "fraction": float, "distance": float}
    with (out / "commitment.csv").open(newline="") as f:
        records = [{key: numbers.get(key, str)(value) for key, value in row.items()} for row in csv.DictReader(f)]
    metric = str((record.get("metric") or {}).get("name") or cfg.metric)
    measured = {"model": str(cfg.model.name), "metric": metric, "prompts": prompts, "n": int(cfg.n)}
    summary = [{**row, **measured} for row in summarize(records, float(cfg.threshold))]
    _write_csv(out / "commitment_summary.csv", summary)
    plot_curves(records, out / "commitment.png", float(cfg.threshold), metric)
    kept = {key: record[key] for key in ("device", "dtype", "models", "metric") if key in record}
    record_invocation(out, config=cfg, summarized_from="commitment.csv", **kept)
    stderr_console().print(f"threshold={cfg.threshold:g}: {out}'s curves summarized again (no image traced)")
    _print_summary(summary, out)


def last_trace_record(out: Path) -> dict | None:
    """The record of the run whose commitment.csv `out` holds: the last x0viz record with its config and models,
    which a run writes once its pair has loaded, before its first trace (an overwrite removes the earlier curve
    before that). Library callers record as `library`: an x0viz record is told by its config's keys."""
    traced = [
        record
        for record in read_records(out)
        if isinstance(record.get("config"), dict)
        and "models" in record
        and {"threshold", "cell"} <= record["config"].keys()
    ]
    return traced[-1] if traced else None


def grid_stem(cfg: DictConfig, method: str, row: PromptRow, rows: list[PromptRow]) -> str:
    """`<model>_<tag>_<prompt>` of a row's grids; a prompt on several rows (a table's rows at other seeds) adds its
    row's first seed, `_seed10`, so each row's grid is its own file (one overwrote the other)."""
    stem = f"{cfg.model.name}_{run_tag(method, cfg.k, cfg.base_guidance, cfg.base_steps)}_{prompt_id(row.prompt)}"
    if sum(other.prompt == row.prompt for other in rows) > 1:
        stem += f"_seed{row.first_seed(cfg.seed)}"
    return stem


def setting_differences(cfg: DictConfig, record: dict) -> list[str]:
    """The FILE_KEYS on which `cfg` and the record differ, then the networks whose weights did."""
    now, then = _plain(OmegaConf.to_container(cfg, resolve=True)), record["config"]
    differences = []
    for key in FILE_KEYS:
        old, new = then.get(key), now.get(key)
        if key == "model":
            old, new = _pair_settings(old), _pair_settings(new)
        differences += value_differences(old, new, key)
    return differences + weights_differences(cfg.model, record.get("models") or {}, recorded_roles(cfg))


def recorded_roles(cfg: DictConfig) -> tuple[str, ...]:
    """The networks x0viz loads for `cfg.methods` (a student's traces alone read no base), as its record names
    their weights."""
    return (*methods_roles(cfg.model, cfg.methods), "components")


def weights_differences(model: DictConfig, recorded: dict, roles: tuple[str, ...]) -> list[str]:
    """The networks whose weights' hash now (from their files, memoised) is not the recorded one: a student
    retrained in place under the same path. A tiny pair (its networks built from the seeds in its settings) and
    weights not on this machine cannot be hashed without loading: not checked."""
    now = hashed_provenance(model, roles)
    if now is None:
        return []
    then, now = role_hashes(recorded, roles), role_hashes(now, roles)
    differences = []
    for key in dict.fromkeys([*then, *now]):  # a role's scheduler config (`base scheduler`) after the networks
        what = "model." + (key.replace(" ", ".") + " config" if " " in key else f"{key} weights")
        if then.get(key) != now.get(key):
            differences.append(f"{what} {then.get(key)} then, {now.get(key)} now")
    return differences


def trace_differences(cfg: DictConfig, record: dict, out: Path, rows: list[PromptRow], methods: list[str]) -> list[str]:
    """Where commitment.csv traced other images (method, prompt, seed, in their order) than `cfg` would: the
    TRACE_KEYS that differ, or the prompt rows themselves when only a prompt file's contents changed."""
    if _traced(out / "commitment.csv") == _planned(cfg, rows, methods):
        return []
    now, then = _plain(OmegaConf.to_container(cfg, resolve=True)), record["config"]
    named = [d for key in TRACE_KEYS for d in value_differences(then.get(key), now.get(key), key)]
    return named or ["the prompts or seeds of its prompt rows"]


def _planned(cfg: DictConfig, rows: list[PromptRow], methods: list[str]) -> list[tuple[str, str, str]]:
    """(method tag, prompt, seed) of every image `_visualize` traces, in the order it writes their rows."""
    tags = [run_tag(m, cfg.k, cfg.base_guidance, cfg.base_steps) for m in methods]
    return [
        (tag, row.prompt, str(row.first_seed(cfg.seed) + j)) for row in rows for tag in tags for j in range(int(cfg.n))
    ]


def _traced(path: Path) -> list[tuple[str, str, str]]:
    """(method, prompt, seed) of each image commitment.csv holds (its first step's rows); unreadable: none."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            return [
                (r.get("method"), r.get("prompt"), r.get("seed")) for r in csv.DictReader(f) if r.get("step") == "0"
            ]
    except (OSError, ValueError, csv.Error):
        return []


def _pair_settings(model: object) -> object:
    if not isinstance(model, dict):
        return model
    return image_settings({key: value for key, value in model.items() if key not in UNUSED_PAIR_KEYS})


def _plain(value: object) -> object:
    """`value` as the record holds it (a JSON round trip): tuples as lists, other objects as text."""
    return json.loads(json.dumps(value, default=str))


def _visualize(cfg: DictConfig, out: Path, rows: list, methods: list[str], outputs: list[str]) -> Path:
    """The traces, grids and curves of `visualize`, into `out` (checked), writing exactly `outputs`."""
    from ..metrics.embedders import get_embedder, pairwise_distances
    from ..models.loading import load_pair, resolve_device, resolve_dtype

    earlier: list[str] = []
    if cfg.overwrite and out.is_dir() and any(out.iterdir()):
        # All of the earlier run goes, its grids this one will not remake too (the report would show them as this
        # run's), and its curve: a run stopped before it writes its own must not leave the old one beside its record.
        listed = RunMarker(out).files()
        earlier = [name for name in listed if name.startswith(("x0_", "xt_")) or name in outputs[:3]]
    claim_outputs(out, outputs)
    RunMarker(out).record(*outputs)

    device = resolve_device(cfg.device)
    embedder = get_embedder(cfg.metric, device)
    pair = load_pair(cfg.model, device, resolve_dtype(cfg.model.dtype, device), methods_roles(cfg.model, methods))
    knobs = dict(k=cfg.k, base_guidance=cfg.base_guidance, base_steps=cfg.base_steps)
    check_plans(pair, methods, knobs)
    # Only now that the metric, the pair and every plan are good: a setting refused there must not cost the earlier
    # grids.
    if earlier:
        remove_outputs(out, earlier)  # only in a folder diversity-cli marked, only the files it lists
        RunMarker(out).record(*outputs)  # removal unlists what it removes: this run's files are listed again
    out.mkdir(parents=True, exist_ok=True)
    metric = {"name": embedder.name, "weights": weights_record(getattr(embedder, "weights", ()))}
    models = pair_provenance(cfg.model, pair, recorded_roles(cfg))  # hub id, revision, weights hash of each read
    record_invocation(out, config=cfg, device=str(device), dtype=str(pair.dtype), models=models, metric=metric)
    records = []
    for row in rows:
        seeds = [row.first_seed(cfg.seed) + j for j in range(int(cfg.n))]  # a table's row seed, as generate takes it
        for method in methods:
            trace, final = trace_method(pair, method, row.prompt, seeds, **knobs)
            targets = [to_pixels(pair, x0) for x0 in trace.targets]
            final_images = to_pixels(pair, final)
            tag = run_tag(method, cfg.k, cfg.base_guidance, cfg.base_steps)
            stem = grid_stem(cfg, method, row, rows)
            save_grid(targets, trace, out / f"x0_{stem}.png", int(cfg.columns), int(cfg.cell), "x0", seeds)
            # The VP latent the network sees, decoded as it is: the standard view, mostly noise early (Fig. 4a).
            noisy = [to_pixels(pair, x) for x in trace.noisy]
            save_grid(noisy, trace, out / f"xt_{stem}.png", int(cfg.columns), int(cfg.cell), "x_t", seeds)
            distances = commitment(targets, final_images, embedder, partial(pairwise_distances, kind=embedder.distance))
            steps = len(trace.timesteps)
            for step, timestep in enumerate(trace.timesteps):
                for j, seed in enumerate(seeds):
                    records.append(
                        {
                            "method": tag,
                            "prompt": row.prompt,
                            "seed": seed,
                            "step": step,
                            "timestep": timestep,
                            "fraction": (step + 1) / steps,
                            "distance": float(distances[step, j]),
                        }
                    )
    _write_csv(out / "commitment.csv", records)
    # what each commitment was measured with and over: the number is quoted apart from run.json
    measured = {"model": str(cfg.model.name), "metric": embedder.name, "prompts": len(rows), "n": int(cfg.n)}
    summary = [{**row, **measured} for row in summarize(records, float(cfg.threshold))]
    _write_csv(out / "commitment_summary.csv", summary)
    plot_curves(records, out / "commitment.png", float(cfg.threshold), embedder.name)
    _print_summary(summary, out)
    return out


def check_plans(pair: ModelPair, methods: list[str], knobs: dict) -> None:
    """Build each method's plan once before any trace. Whether the base knobs fit the pair (a base_steps count its
    scheduler cannot lay exactly over the hand-over span) is known only from the loaded schedulers; refused here,
    before the first grid, a bad knob writes nothing (a fresh out= is removed again by `visualize`)."""
    from ..sampling.plan import make_plan

    for method in methods:
        make_plan(pair, method, **knobs)


def save_grid(
    images: list[torch.Tensor], trace: Trace, path: Path, columns: int, cell: int, label: str, seeds: list[int]
) -> None:
    """Rows = seeds, each named at its left, columns = (a spread of) steps, each headed by its timestep and model."""
    from PIL import Image, ImageDraw

    picks = _spread(len(images), columns)
    rows = images[0].shape[0]
    header = 14
    names = [f"seed {seed}" for seed in seeds]
    gutter = 4 + max(round(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(name)) for name in names)
    sheet = Image.new("RGB", (gutter + cell * len(picks), header + cell * rows), "white")
    draw = ImageDraw.Draw(sheet)
    for r, name in enumerate(names):
        draw.text((2, header + r * cell + cell // 2 - 5), name, fill="black")
    for col, step in enumerate(picks):
        role = "B" if trace.roles[step] == "base" else "D"
        left = gutter + col * cell
        draw.text((left + 2, 1), f"{label} t={trace.timesteps[step]} {role}", fill="black")
        for r in range(rows):
            array = (images[step][r].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype("uint8")
            tile = Image.fromarray(array).resize((cell, cell), Image.Resampling.BICUBIC)
            sheet.paste(tile, (left, header + r * cell))
    with atomic_path(path) as temporary:
        sheet.save(temporary, format="PNG")


def plot_curves(records: list[dict], path: Path, threshold: float, metric: str) -> None:
    """Each method's mean x̂0-to-final distance, relative to its first step, against the share of steps done;
    `metric` names the embedder on the y axis, since the curve's shape depends on what the distance measures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    frame = pd.DataFrame(records)
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for method, group in frame.groupby("method", sort=False):
        curve = group.groupby("fraction").distance.mean()
        ax.plot(curve.index * 100, curve.values / curve.values[0], marker="o", ms=3, label=method)
    ax.axhline(threshold, color="grey", ls=":", lw=1, label=f"threshold {threshold:g}")
    ax.set_xlabel("% of steps done")
    ax.set_ylabel(f"distance(x̂0, final) / first step [{metric}]")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as temporary:
        fig.savefig(temporary, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)


def _spread(total: int, columns: int) -> list[int]:
    if total <= columns:
        return list(range(total))
    return sorted({round(i * (total - 1) / (columns - 1)) for i in range(columns)})


def _write_csv(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as temporary, temporary.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _print_summary(summary: list[dict], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"commitment ({out})")
    columns = ("method", "steps", "committed_fraction", "committed_timestep", "first_step_distance")
    for column in columns:
        table.add_column(column)
    for row in summary:
        table.add_row(*(str(row[c]) for c in columns))
    Console(stderr=True).print(table)
