"""DP-DMD ablation on the toy: which diversity weight and anchor make the student's first step carry diversity.

Each ablation point is a finished `diversity-cli distill` run directory (config.yaml, log.csv, student/). For each,
this reads its settings (method, lambda_div, anchor_k and the teacher timestep it lands on) and the end of its
training log (first-step MSE against the constant-predictor floor: a first step at the floor is one constant for
every prompt and noise; below it, it reads its prompt, its noise or both),
then measures its student under the toy protocol (toy/protocol.py) as the distilled model of `model`, and its first
step against a DP-DMD anchor (its own; a DMD run's, the first DP-DMD run's) with many noises per prompt, which
separates reading the noise from reading the prompt (experiments/first_step.py):

    python -m diversity_cli.experiments.dp_dmd_ablation model=toy out=results/toy_ablation \
        runs=results/toy_weights/dmd,results/toy_weights/dp_dmd,...

Writes `ablation.csv`, `ablation.md` and `provenance.json` under `out`.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from ..core.arguments import key_values
from ..core.atomic import write_text
from ..core.errors import UserError
from ..core.fingerprint import folder_hash
from ..core.schemas.distill import gan_weight
from ..models.provenance import pair_provenance
from ..toy.protocol import fid_row, finite_mean, measure, write_csv
from ..training.generator import teacher_ode_scheduler
from .first_step import anchor_fit
from .toy_table import write_provenance

TAIL = 100  # log rows averaged for "where training ended": the losses are noisy per iteration


def anchor_timestep(settings) -> int | None:
    """The teacher timestep DP-DMD's anchor lands on: index anchor_k of the teacher ODE's grid (the grid does not
    depend on the betas, so the training schedule's defaults give it), 0 when anchor_k runs the whole ODE."""
    if settings.get("method") != "dp_dmd":
        return None
    steps, k = int(settings.teacher_ode.steps), int(settings.anchor_k)
    scheduler = teacher_ode_scheduler({}, OmegaConf.to_container(settings.teacher_ode.overrides, resolve=True))
    scheduler.set_timesteps(steps)
    return 0 if k >= steps else int(scheduler.timesteps[k])


def training_tail(log: Path, tail: int = TAIL) -> dict:
    """Mean first-step loss, its floor and the DMD loss over the last `tail` logged iterations."""
    with log.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))[-tail:]
    if not rows:
        raise UserError(f"{log} has no logged iterations")

    def mean(column: str) -> float | None:
        values = [float(r[column]) for r in rows if r.get(column)]
        return sum(values) / len(values) if values else None

    return {
        "iterations": int(rows[-1]["iteration"]),
        "dmd_loss": mean("dmd_loss"),
        "first_step_loss": mean("first_step_loss"),
        "first_step_floor": mean("first_step_floor"),
    }


def point(run: Path) -> dict:
    """Settings and training tail of one distill run directory."""
    config, log = run / "config.yaml", run / "log.csv"
    if not (config.is_file() and log.is_file() and (run / "student").is_dir()):
        raise UserError(f"{run} is not a finished distill run (config.yaml, log.csv and student/ are needed)")
    try:
        record = json.loads((run / "run.json").read_text(encoding="utf-8")).get("distill") or {}
    except (OSError, ValueError):
        record = {}
    if record.get("finished") is False:  # a killed extension: student/ is an earlier length's, log.csv runs past it
        raise UserError(
            f"{run} is an unfinished distill run (run.json: finished false): its student/ is not the run its log "
            "and config describe; rerun its distill command to finish it"
        )
    settings = OmegaConf.load(config)
    dp = settings.get("method") == "dp_dmd"
    return {
        "run": str(run),
        "method": settings.get("method"),
        "lambda_div": float(settings.lambda_div) if dp else None,
        "anchor_k": int(settings.anchor_k) if dp else None,
        "anchor_timestep": anchor_timestep(settings),
        "lr_generator": float(settings.lr.generator),
        "lr_fake": float(settings.lr.fake),
        "gan_weight": gan_weight(settings),
        **training_tail(log),
    }


def measure_point(
    model: str, run: Path, classifier, weights: dict, anchor: DictConfig | None = None, log=print
) -> dict:
    """The protocol's numbers of `run`'s student as the distilled model of `model` (its base unchanged), and its
    first step's fit to the DP-DMD anchor of the distill config `anchor` (none: not measured); the pair's weights
    (source and hash per role) go into `weights`."""
    from ..core.config import compose
    from ..models.loading import load_pair

    cfg = compose("generate", [f"model={model}", f"model.distilled.network.path={run / 'student'}"])
    refuse_other_teacher(cfg.model, OmegaConf.load(run / "config.yaml").model, run, model)
    torch.manual_seed(0)
    pair = load_pair(cfg.model, torch.device("cpu"), torch.float32)
    weights[str(run)] = pair_provenance(cfg.model, pair)
    fid_rows, prompt_rows, _free = measure(pair, ["distilled"], classifier, log)
    k = len(prompt_rows)
    adherent, adherent_prompts = finite_mean(prompt_rows, "adherent_diversity")
    return {
        "fid_toyfeat": fid_row(fid_rows, "distilled")["fid_toyfeat"],
        "fid_floor": fid_row(fid_rows, "truth")["fid_toyfeat"],
        "adherence": sum(r["adherence"] for r in prompt_rows) / k,
        "adherence_min": min(r["adherence"] for r in prompt_rows),
        "diversity": sum(r["diversity"] for r in prompt_rows) / k,
        "adherent_diversity": adherent,
        "adherent_prompts": adherent_prompts,
        "truth_diversity": sum(r["truth_diversity"] for r in prompt_rows) / k,
        **({} if anchor is None else {f"fit_{key}": value for key, value in anchor_fit(pair, anchor).items()}),
    }


def anchor_of(run: Path, anchored: list[Path]) -> DictConfig | None:
    """The distill config whose anchor `run`'s first step is measured against: its own for a DP-DMD run, the first
    DP-DMD run's for a DMD one (none without one)."""
    source = run if run in anchored else (anchored[0] if anchored else None)
    return None if source is None else OmegaConf.load(source / "config.yaml")


def refuse_other_teacher(model, trained_on, run: Path, name: str) -> None:
    """The student is measured as the distilled model of `model`: its base and shared components (VAE, text
    encoder) must be the ones it was distilled from (the run's config.yaml), or it is decoded and judged with
    another model's parts."""

    def parts(conf) -> dict[str, str]:
        network, shared = conf.base.network, conf.components
        return {
            "model.base.network": str(network.get("path") or network.get("repo")),
            "model.components": str(shared.get("path") or shared.get("repo")),
        }

    def same(a: str, b: str) -> bool:  # a folder moved with the install (the shipped toy's) is the same by content
        if a == b:
            return True
        return Path(a).is_dir() and Path(b).is_dir() and folder_hash(a) == folder_hash(b)

    here, there = parts(model), parts(trained_on)
    differ = [key for key in here if not same(here[key], there[key])]
    if differ:
        key = differ[0]
        raise UserError(
            f"{run} was distilled from {key}={there[key]}, but model={name} has {here[key]}: its student would be "
            "measured on another base; give model= a pair config (conf/model/<name>.yaml) whose base is its teacher"
        )


def _cell(value, spec: str = ".3f") -> str:
    return "" if value is None else format(value, spec)


def _fresh(row: dict) -> str:
    if row.get("fit_mse") is None:
        return ""
    return f"{row['fit_mse']:.3f} / {row['fit_prompt_floor']:.3f} ({row['fit_noise_share']:.2f})"


def markdown(rows: list[dict], command: str) -> str:
    lines = [
        f"Measured by `{command}`; first-step MSE / floor: mean of the last {TAIL} logged iterations of log.csv "
        "(a first-step MSE at its floor means the first step predicts a constant). Fresh noises: the first step "
        "against the anchor (a DMD run: the first DP-DMD run's) over many noises per prompt, none drawn in training: "
        "below the per-prompt floor (the best first step that ignores its noise) it follows its noise as the "
        "anchor does; noise share: its variance across noises over the anchor's.",
        "",
        "| run | method | lambda_div | anchor_k (teacher t) | iterations | lr generator / fake | GAN weight "
        "| first-step MSE / floor | fresh noises: MSE / per-prompt floor (noise share) | fid_toyfeat "
        "| adherence mean (worst) | diversity | adherent-only diversity (prompts with 2+ adherent samples) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        anchor = f"{r['anchor_k']} (t={r['anchor_timestep']})" if r["anchor_k"] is not None else ""
        first = (
            f"{r['first_step_loss']:.4f} / {r['first_step_floor']:.4f}"
            if r["first_step_loss"] is not None and r["first_step_floor"] is not None
            else ""
        )
        lines.append(
            f"| {Path(r['run']).name} | {r['method']} | {_cell(r['lambda_div'], 'g')} | {anchor} | {r['iterations']} "
            f"| {r['lr_generator']:g} / {r['lr_fake']:g} | {r['gan_weight']:g} | {first} | {_fresh(r)} "
            f"| {r['fid_toyfeat']:.1f} "
            f"| {r['adherence']:.3f} ({r['adherence_min']:.2f}) | {r['diversity']:.3f} "
            f"| {r['adherent_diversity']:.3f} ({r['adherent_prompts']}) |"
        )
    lines += ["", f"Ground truth's diversity over the same prompts: {rows[0]['truth_diversity']:.3f}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from ..toy.features import load_classifier

    args = key_values(argv if argv is not None else sys.argv[1:], ("model", "out", "runs"), "dp_dmd_ablation")
    if args is None:
        print(__doc__.strip())
        return 0
    if "runs" not in args:
        raise UserError("dp_dmd_ablation takes runs=<dir>,<dir>,... and optional model=<pair> out=<folder>")
    model, out = args.get("model", "toy"), Path(args.get("out", "results/toy_ablation"))
    runs = [Path(r) for r in args["runs"].split(",") if r]
    points = [point(run) for run in runs]  # every run checked before any is measured
    classifier = load_classifier("cpu")
    weights: dict[str, dict] = {}
    anchored = [Path(p["run"]) for p in points if p["method"] == "dp_dmd"]  # a DMD run's first step: against the first
    rows = [
        {**p, **measure_point(model, Path(p["run"]), classifier, weights, anchor_of(Path(p["run"]), anchored))}
        for p in points
    ]
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "ablation.csv", rows)
    command = f"python -m diversity_cli.experiments.dp_dmd_ablation model={model} out={out} runs={args['runs']}"
    write_text(out / "ablation.md", markdown(rows, command))
    write_provenance(out, command, weights)
    print((out / "ablation.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    from ..core.errors import run_main

    raise SystemExit(run_main(main))
