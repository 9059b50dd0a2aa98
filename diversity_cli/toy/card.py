"""The toy pair's model card, composed by code from what `make toy-weights` wrote (layout: toy/release.py), never by
hand: train-toy's own card of the base run, the distill runs' commands, times and logs, the fixed measurement
protocol's tables (toy/protocol.py), x0viz's commitment, and the v2 targets checked against those figures.

    python -m diversity_cli.toy.card results/toy_weights      # writes results/toy_weights/MODEL_CARD.md

A figure the outputs do not hold is an error (one line, exit 2), never a blank: the card says only what was measured.
"""

from __future__ import annotations

import csv
import json
import math
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..core.atomic import write_text
from ..core.errors import UserError
from ..core.schemas.distill import gan_weight
from .data import FACTORS, parse_prompt
from .protocol import factor_shares, free_path, record_path, total_variation
from .release import (
    BASE_RUN,
    CARD,
    CONF,
    DMD_RUN,
    DP_DMD_RUN,
    EVAL,
    PAIR,
    PROTOCOL,
    PROTOCOL_DPDMD,
    X0VIZ,
    X0VIZ_DPDMD,
    base_label,
    pair_file,
    shipped_guidance,
)

# The v2 toy pair's targets: the base follows every prompt and is near the ground truth; the students keep its
# quality; DP-DMD keeps its diversity without the base at inference.
BASE_ADHERENCE = 0.9  # on every prompt
BASE_FLOOR_FACTOR = 1.15  # fid_toyfeat within this factor of the ground-truth floor
TRUTH_DIVERSITY_BAND = 0.10  # adherent-only diversity within ±10% of the ground truth's, on every prompt
STUDENT_FID_FACTOR = 1.3  # a student's fid_toyfeat at most this factor of the base's
ADHERENCE_SLACK = 0.05  # a student's adherence at least the base's minus this, on every prompt
DP_DMD_DIVERSITY = 0.9  # DP-DMD's diversity at least this factor of the base's, on every prompt

SHIPPED_VAE = "diversity_cli/assets/toy/base/vae"  # the Makefile's TOY_VAE default, as train-toy records it
METHODS = {"base": "base", "dmd": "DMD student", "dp_dmd": "DP-DMD student"}
STUDENTS = {"dmd": ("dmd_student/", DMD_RUN), "dp_dmd": ("dp_dmd_student/", DP_DMD_RUN)}
LOG_TAIL = 0.1  # the training log's figures: means over its last tenth of iterations


@dataclass
class Figures:
    floor: float
    fid: dict[str, float]  # method -> fid_toyfeat
    prompts: list[str]
    rows: dict[str, dict[str, dict[str, float]]]  # method -> prompt -> protocol row
    commitment: dict[str, dict[str, float]]  # method -> x0viz summary row
    commitment_settings: dict  # x0viz's config as its run recorded it (prompts, n, metric, threshold)
    pair: dict  # the chain's pair (base + DMD), as conf/model/ of the results folder holds it
    free: list[dict]  # free-factor shares (protocol.free_factor_rows), methods named as in METHODS, and "truth"
    # fid_toyfeat of the ground truth through the base's VAE: what a model that drew exactly the VAE's latents of
    # the ground truth would score (NaN: measurements made before the protocol took it)
    through_vae: float = math.nan

    @property
    def student_timesteps(self) -> list[int]:
        return [int(t) for t in self.pair["distilled"]["timesteps"]]

    def label(self, method: str) -> str:
        if method == "base":
            return base_label(self.pair)
        return f"{METHODS[method]} ({len(self.student_timesteps)} steps)"


@dataclass(frozen=True)
class Target:
    what: str
    figure: str
    met: bool


# --------------------------------------------------------------------------------------------------- reading


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise UserError(f"the card needs {path}, which is missing; rerun `make toy-weights` (it makes what is missing)")
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _json(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"the card needs {path}, which is missing; rerun `make toy-weights`")
    return json.loads(path.read_text(encoding="utf-8"))


def distill_record(run: Path) -> dict:
    """The distill section of a run's run.json (settings, iterations, seconds, finished)."""
    record = _json(run / "run.json").get("distill")
    if not record or not record.get("finished"):
        raise UserError(f"the distill run {run} is not finished; rerun `make toy-weights`")
    return record


def _records(run: Path, command: str) -> list[dict]:
    """Every invocation record of `command` in a run directory (runs/<time>-<command>-<pid>.json), oldest first."""
    found = []
    for path in sorted((run / "runs").glob(f"*-{command}-*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("command_line"):
            found.append(record)
    if not found:
        raise UserError(f"{run}/runs/ holds no record of {command}; rerun `make toy-weights`")
    return found


def command_of(run: Path, command: str) -> str:
    """The command line of the first invocation of `command` recorded in a run directory."""
    return shlex.join(_records(run, command)[0]["command_line"])


def commands_of(run: Path, command: str) -> str:
    """Every invocation's command line, as markdown code, oldest first: a distill run resumed or extended to more
    iterations (a larger `iterations=`) shows each command that trained it."""
    return ", then ".join(f"`{shlex.join(record['command_line'])}`" for record in _records(run, command))


def load_figures(out: Path) -> Figures:
    """The protocol's and x0viz's figures of the base, the DMD and the DP-DMD student of a `make toy-weights`
    folder, its pair as its conf/model/ holds it."""
    pair = pair_file(out, PAIR)
    if not pair.is_file():
        raise UserError(f"the card needs {pair}, which is missing; rerun `make toy-weights`")
    return measured_figures(out / EVAL, OmegaConf.to_container(OmegaConf.load(pair), resolve=False))


SAMPLED = ("steps", "guidance")  # how the base was sampled: measurements made otherwise describe another base


def _setting(base: dict[str, float]) -> str:
    return f"{base['steps']:g} steps, CFG {base['guidance']:g}"


def _recorded_base(what: str, record: dict | None) -> dict[str, float]:
    """The base's steps and CFG a measurement's record holds, or a UserError naming the record."""
    try:
        return {key: float(record["model"]["base"][key]) for key in SAMPLED}
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{what} holds no model.base steps and guidance; rerun that measurement") from None


def _protocol_record(evaluation: Path, name: str) -> tuple[Path, dict | None]:
    """(where, the record) of the protocol CSV `name` under `evaluation`; None where it wrote none (a protocol run
    before it recorded what made its CSVs)."""
    path = evaluation / record_path(Path(name)).name
    if not path.is_file():
        return path, None
    try:
        return path, json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(f"{path} is not a protocol record; rerun the protocol") from None


def recorded_pair(evaluation: Path) -> dict:
    """The pair the protocol measured the base and the DMD student with, as its record holds it."""
    path, record = _protocol_record(evaluation, PROTOCOL)
    if record is None:
        raise UserError(f"{path} is missing: rerun the protocol (it records the pair it measured)")
    _recorded_base(str(path), record)
    return record["model"]


def _sampled_alike(evaluation: Path, pair: dict) -> None:
    """Every measurement sampled the base as `pair` does: figures made at other steps or another CFG, or before the
    folder's pair was what it is, would describe another base. x0viz always records its pair; protocol CSVs made
    before the protocol wrote its record carry none and are taken as they are."""
    made = {}
    for name in (PROTOCOL, PROTOCOL_DPDMD):
        path, record = _protocol_record(evaluation, name)
        if record is not None:
            made[str(path)] = _recorded_base(str(path), record)
    for folder in (X0VIZ, X0VIZ_DPDMD):
        config = _records(evaluation / folder, "x0viz")[-1].get("config", {})
        made[f"x0viz under {evaluation / folder}"] = _recorded_base(f"x0viz's record in {evaluation / folder}", config)
    want = _recorded_base("the pair", {"model": pair})
    for what, got in made.items():
        if got != want:
            raise UserError(
                f"{what} sampled the base at {_setting(got)}, the pair at {_setting(want)}; remeasure with the pair"
            )


def measured_figures(evaluation: Path, pair: dict) -> Figures:
    """The figures of the measurements under `evaluation` (the protocol's CSVs, x0viz's run directories, laid out
    as `make toy-weights` leaves eval/), the base sampled as `pair` does."""
    sources = [(PROTOCOL, {"base": "base", "distilled": "dmd"}), (PROTOCOL_DPDMD, {"distilled": "dp_dmd"})]
    rows: dict[str, dict[str, dict[str, float]]] = {}
    fid: dict[str, float] = {}
    free: list[dict] = []
    floor = through_vae = math.nan
    prompts: list[str] = []
    for name, methods in sources:
        path = evaluation / name
        for row in read_csv(path):
            if row["method"] in methods:
                prompt = row["prompt"]
                prompts += [prompt] if prompt not in prompts else []
                numbers = {key: _number(value) for key, value in row.items() if key not in ("method", "prompt")}
                rows.setdefault(methods[row["method"]], {})[prompt] = numbers
        for row in read_csv(path.with_name(path.stem + "_fid.csv")):
            if row["method"] == "truth" and name == PROTOCOL:
                floor = _number(row["fid_toyfeat"])
            elif row["method"] == "truth_vae" and name == PROTOCOL:
                through_vae = _number(row["fid_toyfeat"])
            elif row["method"] in methods:
                fid[methods[row["method"]]] = _number(row["fid_toyfeat"])
        for row in read_csv(free_path(path)):
            method = "truth" if row["method"] == "truth" else methods.get(row["method"])
            if method and (method != "truth" or name == PROTOCOL):
                free.append({**row, "method": method, "share": _number(row["share"])})
    commitment: dict[str, dict[str, float]] = {}
    for folder, methods in ((X0VIZ, {"base": "base", "distilled": "dmd"}), (X0VIZ_DPDMD, {"distilled": "dp_dmd"})):
        for row in read_csv(evaluation / folder / "commitment_summary.csv"):
            if row["method"] in methods:
                commitment[methods[row["method"]]] = {
                    key: _number(value) for key, value in row.items() if key != "method"
                }
    shared = {r["method"] for r in free}
    missing = [m for m in METHODS if m not in rows or m not in fid or m not in commitment or m not in shared]
    missing += [] if "truth" in shared else ["the ground truth's free-factor shares"]
    if missing or math.isnan(floor):
        raise UserError(f"the measurements under {evaluation} lack {', '.join(missing) or 'the ground-truth floor'}")
    _sampled_alike(evaluation, pair)
    settings = _records(evaluation / X0VIZ, "x0viz")[-1].get("config", {})  # the run that wrote the summary
    return Figures(floor, fid, prompts, rows, commitment, settings, pair, free, through_vae)


# --------------------------------------------------------------------------------------------------- targets


def _worst(values: dict[str, float], key) -> tuple[str, float]:
    """(prompt, value) of the prompt that does worst by `key` (a missing figure, NaN, is the worst of all)."""
    prompt = min(values, key=lambda p: -math.inf if math.isnan(values[p]) else key(values[p]))
    return prompt, values[prompt]


def commits_within_first_step(committed_timestep: float, student_timesteps: list[int]) -> bool:
    """The base has committed by the student's second timestep: k=auto would give it exactly the first step."""
    from ..sampling.autok import k_from_commitment

    return k_from_commitment(student_timesteps, int(committed_timestep)) == 1


def targets(fig: Figures) -> list[Target]:
    base = fig.rows["base"]
    found = []
    adherence = {p: base[p]["adherence"] for p in fig.prompts}
    prompt, worst = _worst(adherence, lambda v: v)
    below = sum(1 for v in adherence.values() if not v >= BASE_ADHERENCE)
    found.append(
        Target(
            f"base adherence ≥ {BASE_ADHERENCE} on every prompt",
            f"lowest {worst:.3f} ({prompt}); {below} of {len(adherence)} prompts below",
            below == 0,
        )
    )
    ratio = fig.fid["base"] / fig.floor
    ceiling = (
        ""
        if math.isnan(fig.through_vae)
        else f"; the ground truth through the VAE alone: {fig.through_vae / fig.floor:.2f}× the floor"
    )
    found.append(
        Target(
            f"base fid_toyfeat ≤ {BASE_FLOOR_FACTOR}× the ground-truth floor",
            f"{fig.fid['base']:.2f} = {ratio:.2f}× the floor {fig.floor:.2f}{ceiling}",
            ratio <= BASE_FLOOR_FACTOR,
        )
    )
    off = {p: base[p]["adherent_diversity"] / base[p]["truth_diversity"] - 1 for p in fig.prompts}
    prompt, worst = _worst(off, lambda v: -abs(v))
    outside = sum(1 for v in off.values() if not abs(v) <= TRUTH_DIVERSITY_BAND)
    found.append(
        Target(
            f"base adherent-only diversity within ±{TRUTH_DIVERSITY_BAND:.0%} of the ground truth's on every prompt",
            f"furthest {worst:+.1%} ({prompt}); {outside} of {len(off)} prompts outside",
            outside == 0,
        )
    )
    committed = fig.commitment["base"]["committed_timestep"]
    found.append(
        Target(
            f"base commits within the first distilled step (by t={fig.student_timesteps[1]}, so k=1 is the hand-over)",
            f"t={committed:.0f}",
            commits_within_first_step(committed, fig.student_timesteps),
        )
    )
    for student, label in (("dmd", "DMD"), ("dp_dmd", "DP-DMD")):
        ratio = fig.fid[student] / fig.fid["base"]
        found.append(
            Target(
                f"{label} fid_toyfeat ≤ {STUDENT_FID_FACTOR}× the base's",
                f"{fig.fid[student]:.2f} = {ratio:.2f}× the base's {fig.fid['base']:.2f}",
                ratio <= STUDENT_FID_FACTOR,
            )
        )
        margin = {p: fig.rows[student][p]["adherence"] - base[p]["adherence"] for p in fig.prompts}
        prompt, worst = _worst(margin, lambda v: v)
        below = sum(1 for v in margin.values() if not v >= -ADHERENCE_SLACK - 1e-9)
        found.append(
            Target(
                f"{label} adherence ≥ the base's − {ADHERENCE_SLACK} on every prompt",
                f"worst {worst:+.3f} ({prompt}); {below} of {len(margin)} prompts below",
                below == 0,
            )
        )
    kept = {p: fig.rows["dp_dmd"][p]["diversity"] / base[p]["diversity"] for p in fig.prompts}
    prompt, worst = _worst(kept, lambda v: v)
    below = sum(1 for v in kept.values() if not v >= DP_DMD_DIVERSITY)
    found.append(
        Target(
            f"DP-DMD diversity ≥ {DP_DMD_DIVERSITY}× the base's on every prompt (no base at inference)",
            f"lowest {worst:.2f}× ({prompt}); {below} of {len(kept)} prompts below",
            below == 0,
        )
    )
    return found


# ----------------------------------------------------------------------------------------------------- card


def _demoted(markdown: str) -> list[str]:
    """train-toy's card one heading level down, to sit inside this one."""
    return [("#" + line if line.startswith("#") else line) for line in markdown.rstrip().splitlines()]


def _log_tail(path: Path) -> str:
    rows = read_csv(path)
    if not rows:
        return "no rows logged"
    tail = rows[-max(1, math.ceil(len(rows) * LOG_TAIL)) :]
    shown = []
    for column in ("generator_loss", "dmd_loss", "first_step_loss", "first_step_floor", "fake_loss"):
        values = [_number(row.get(column)) for row in tail]
        values = [v for v in values if not math.isnan(v)]
        if values:
            shown.append(f"{column} {sum(values) / len(values):.4g}")
    return f"iterations {tail[0]['iteration']}..{tail[-1]['iteration']}: " + ", ".join(shown)


def _student_row(out: Path, student: str) -> tuple[list[str], list[str]]:
    folder, run_name = STUDENTS[student]
    run = out / run_name
    record = distill_record(run)
    settings = record["config"]
    seconds, iterations = float(record["seconds"]), int(record["iterations"])
    gan = gan_weight(settings)
    if student == "dmd":
        what = f"DMD (DMD2 with its GAN term, weight {gan:g})" if gan > 0 else "DMD (DMD2 without GAN)"
    else:
        anchor = re.search(r"x̂0 at t=(\d+)", (run / "README.md").read_text(encoding="utf-8"))
        at = f" (t={anchor[1]})" if anchor else ""
        what = (
            f"DP-DMD (first step: L2 to the teacher's {settings['teacher_ode']['steps']}-step DDIM x̂0 at "
            f"anchor_k={settings['anchor_k']}{at}, λ_div={settings['lambda_div']:g}; DMD on the rest)"
        )
    row = (
        f"| `{folder}` | {what} | {commands_of(run, 'distill')} | {seconds:.0f} s ({seconds / iterations:.2f} "
        f"s/iteration, {iterations} iterations) |"
    )
    log = f"- `{folder}train_log.csv` (the run's log.csv), {_log_tail(run / 'log.csv')}"
    return [row], [log, *_quality_line(run / "quality.csv", folder)]


def _make_number(value: float) -> str:
    """A number as the Makefile writes it: 2e-5, not 2e-05."""
    mantissa, exponent = f"{float(value):.6e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _lr(record: dict) -> str:
    return _make_number(record["config"]["lr"]["generator"])


def _vae(base_config: DictConfig) -> tuple[str, str]:
    """` TOY_VAE=<folder>` for a base trained on a VAE other than the shipped one (the Makefile's default), and the
    card's sentence on its instruments: where the VAE came from (the train-toy run that made it, with its steps,
    where one did) beside the fixed judge."""
    reuse = base_config.get("vae", {}).get("reuse")
    judge = "The judge (`features/`) is reused from the shipped pair"
    if not reuse:
        return "", (
            f"{judge}, a fixed instrument, and the VAE was trained by the base's own train-toy run (which the "
            "command above does not repeat: it reuses `TOY_VAE`); every number below is measured through them."
        )
    origin = "reused from the shipped pair"
    if reuse != SHIPPED_VAE:
        made = Path(reuse).parent.parent / "train_toy.yaml"
        steps = OmegaConf.load(made).vae.steps if made.is_file() else None
        origin = f"reused from `{reuse}`" + (f" (train-toy, {steps} VAE steps)" if steps else "")
    variable = f" TOY_VAE={reuse}" if reuse != SHIPPED_VAE else ""
    return variable, (
        f"{judge} and the VAE {origin}; neither is retrained here: they are fixed instruments, and every number "
        "below is measured through them."
    )


def _guidance_variable(fig: Figures) -> str:
    """` TOY_GUIDANCE=G` for a chain whose base sampled at another CFG than the shipped pair's (the default)."""
    guidance = float(fig.pair["base"]["guidance"])
    return f" TOY_GUIDANCE={guidance:g}" if guidance != shipped_guidance() else ""


def _gan(record: dict) -> str:
    """` DMD_GAN=W` for a student trained with the GAN term, nothing for one without (the Makefile's default)."""
    weight = gan_weight(record["config"])
    return f" DMD_GAN={_make_number(weight)}" if weight > 0 else ""


def _quality_line(path: Path, folder: str) -> list[str]:
    """The student's quality during training (distill's monitor), its lowest fid_toyfeat beside its last."""
    rows = read_csv(path) if path.is_file() else []
    if not rows:
        return []
    fid = {int(r["iteration"]): _number(r["fid_toyfeat"]) for r in rows}
    adherence = {int(r["iteration"]): _number(r["adherence_mean"]) for r in rows}
    best, last = min(fid, key=fid.get), max(fid)
    first = rows[0]
    floor, base = _number(first["fid_floor"]), _number(first["base_fid_toyfeat"])
    return [
        f"- `{folder}train_quality.csv` / `.png`, measured while it trained ({len(rows)} points; fid_toyfeat over "
        f"{first['n_fid']} captions, where the floor is {floor:.1f} and the base {base:.1f}; adherence at "
        f"n={first['n_per_prompt']} per prompt): fid_toyfeat lowest {fid[best]:.1f} at iteration {best}, "
        f"{fid[last]:.1f} at the last ({last}); adherence {adherence[best]:.3f} and {adherence[last]:.3f} there"
    ]


def _fid_rows(fig: Figures) -> list[str]:
    lines = [f"| ground truth (floor) | {fig.floor:.2f} | 1.00 | |"]
    if not math.isnan(fig.through_vae):
        lines.append(f"| ground truth through the VAE | {fig.through_vae:.2f} | {fig.through_vae / fig.floor:.2f} | |")
    for method in METHODS:
        summary = fig.commitment[method]
        committed = (
            f"t={summary['committed_timestep']:.0f} (after step {summary['committed_step'] + 1:.0f} of "
            f"{summary['steps']:.0f})"
        )
        lines.append(
            f"| {fig.label(method)} | {fig.fid[method]:.2f} | {fig.fid[method] / fig.floor:.2f} | {committed} |"
        )
    return lines


def _prompt_rows(fig: Figures) -> list[str]:
    def three(prompt: str, key: str) -> str:
        return " / ".join(f"{fig.rows[m][prompt][key]:.3f}" for m in METHODS)

    return [
        f"| {p} | {three(p, 'adherence')} | {three(p, 'diversity')} | {three(p, 'adherent_diversity')} | "
        f"{fig.rows['base'][p]['truth_diversity']:.3f} |"
        for p in fig.prompts
    ]


def _factor_rows(fig: Figures) -> list[str]:
    """Per prompt, each factor it names: the fraction of samples showing the named value, base / DMD / DP-DMD."""
    lines = []
    for prompt in fig.prompts:
        named = parse_prompt(prompt)
        cells = [
            f"{factor} " + " / ".join(f"{fig.rows[m][prompt][f'{factor}_adherence']:.2f}" for m in METHODS)
            for factor in FACTORS
            if factor in named
        ]
        lines.append(f"| {prompt} | {', '.join(cells) or '(names no factor)'} |")
    return lines


def _free_rows(fig: Figures) -> list[str]:
    """Per factor: how many fid captions leave it free, each method's total variation distance to the ground
    truth's value shares there, and the value the students over-draw most (shares truth / base / DMD / DP-DMD)."""
    lines = []
    for factor in FACTORS:
        share = factor_shares(fig.free, factor)
        n = next(int(r["n"]) for r in fig.free if r["factor"] == factor)
        excess = {v: max(share[(m, v)] - share[("truth", v)] for m in METHODS) for v in FACTORS[factor]}
        value = max(excess, key=excess.get)
        distances = " / ".join(f"{total_variation(fig.free, m, factor):.2f}" for m in METHODS)
        shares = " / ".join(f"{share[(m, value)]:.2f}" for m in ("truth", *METHODS))
        lines.append(f"| {factor} | {n} | {distances} | {value}: {shares} |")
    return lines


def _train_seconds(base_run: Path) -> float:
    done = [json.loads(path.read_text(encoding="utf-8")) for path in (base_run / "checkpoints").glob("*.done.json")]
    return sum(float(info.get("seconds", 0.0)) for info in done)


def _loading_note(base_run: Path, base_text: str) -> list[str]:
    """How to load a coordinate UNet in plain diffusers, for a base whose own card predates the note."""
    from ..models.coord_unet import CoordUNet2DConditionModel, unet_class
    from .train import COORDINATE_NOTE

    coordinates = unet_class(base_run / "base" / "unet") is CoordUNet2DConditionModel
    return COORDINATE_NOTE if coordinates and COORDINATE_NOTE[0] not in base_text else []


def _started_from(run: Path) -> str | None:
    """The `unet.init_from` a train-toy run continued, if any."""
    return OmegaConf.load(run / "train_toy.yaml").unet.get("init_from")


def base_chain(base_run: Path) -> list[Path]:
    """The train-toy runs the base was made by, first to last: a run whose `unet.init_from` is another train-toy
    run's exported base continued that run's training, so its time and command belong to the base too."""
    chain = [base_run]
    while len(chain) < 10:
        start = _started_from(chain[0])
        earlier = Path(start).parent if start else None
        if earlier is None or not (earlier / "train_toy.yaml").is_file() or earlier in chain:
            break
        chain.insert(0, earlier)
    return chain


def earlier_release(chain: list[Path]) -> tuple[list[str], dict[str, float]]:
    """What the chain's first run started from when that is not a train-toy run here: an installed release's base
    (a copy of `assets/toy/`, its card beside `base/`). Its card's base-training lines and seconds carry over, so
    the total time and the recipe stay whole; weights with no card are named as untraced."""
    start = _started_from(chain[0])
    if not start:
        return [], {}
    release_card = _text(Path(start).parent / CARD)
    if not release_card:
        return [f"- `{start}`: weights with no card beside them; how they were trained is not recorded here."], {}
    parts = release_card.split("## Toy base model", 1)
    head, body = parts[0], parts[-1]
    stages = [line for line in head.splitlines() if line.startswith("- `")]
    command = next(
        (line.removeprefix("- command: ") for line in body.splitlines() if line.startswith("- command:")), ""
    )
    times = re.search(r"Training time: (.*?); [0-9.]+ h (?:in all|of training)", head, re.S)
    seconds = {
        f"earlier release {name}": float(value)
        for name, value in re.findall(
            r"(train-toy [^,]*?) ([0-9.]+) s", times.group(1).replace("\n", " ") if times else ""
        )
    }
    return [*stages, f"- `{start}` (an earlier release's base; its card's command): {command}"], seconds


def _earlier_stages(chain: list[Path]) -> list[str]:
    """One line per earlier train-toy run of the chain, with the command its own card records."""
    lines = []
    for run in chain[:-1]:
        card = run / CARD
        command = next(
            (line.removeprefix("- command: ") for line in _text(card).splitlines() if line.startswith("- command:")),
            "(its card is missing)",
        )
        lines.append(f"- `{run}`: {command}")
    return lines


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def build_card(out: Path) -> tuple[str, list[Target]]:
    """The card's text and the targets it checks."""
    fig = load_figures(out)
    base_run = out / BASE_RUN
    base_card = base_run / CARD
    if not base_card.is_file():
        raise UserError(
            f"the card needs {base_card} (train-toy's own card), which is missing; rerun `make toy-weights`"
        )
    base_config = OmegaConf.load(base_run / "train_toy.yaml")
    dmd, dp_dmd = distill_record(out / DMD_RUN), distill_record(out / DP_DMD_RUN)
    conf = f"DIVERSITY_CLI_CONF={out / CONF}"
    vae_variable, instruments = _vae(base_config)
    rows, logs = [], []
    for student in STUDENTS:
        row, log = _student_row(out, student)
        rows += row
        logs += log
    found = targets(fig)
    met = sum(1 for target in found if target.met)
    x0viz = fig.commitment_settings
    n = int(fig.rows["base"][fig.prompts[0]]["n"])
    prompts = x0viz.get("prompts") or x0viz.get("prompt")
    commitment = f"{prompts}, n={x0viz.get('n')} seeds each, {x0viz.get('metric')}, threshold {x0viz.get('threshold')}"
    chain = base_chain(base_run)
    released, released_seconds = earlier_release(chain)
    base_text = base_card.read_text(encoding="utf-8")
    dmd_seconds, dp_seconds = float(dmd["seconds"]), float(dp_dmd["seconds"])
    seconds = {
        **released_seconds,
        **{f"train-toy {run.name} (its stages)": _train_seconds(run) for run in chain},
        "distill DMD": dmd_seconds,
        "distill DP-DMD": dp_seconds,
    }
    lines = [
        "# Toy pair: base model, DMD and DP-DMD students",
        "",
        f"Composed by `python -m diversity_cli.toy.card {out}` (the last step of `make toy-weights`) from that run's",
        "own outputs: train-toy's card, the distill runs' records and logs, the fixed measurement protocol's CSVs and",
        "x0viz's commitment summaries. Not edited by hand: rerun the step to remake it.",
        "",
        "```",
        f"make toy-weights TOY_OUT={out} SEED={base_config.seed} DMD_ITERS={dmd['iterations']} "
        f"DPDMD_ITERS={dp_dmd['iterations']} LAMBDA={dp_dmd['config']['lambda_div']:g} "
        f"DMD_LR={_lr(dmd)} DPDMD_LR={_lr(dp_dmd)}{_gan(dmd)}{vae_variable}{_guidance_variable(fig)}",
        "make toy-weights-install      # copies the weights and this card into diversity_cli/assets/toy/",
        "```",
        "",
        f"{instruments} Training time: "
        + ", ".join(f"{name} {value:.0f} s" for name, value in seconds.items())
        + f"; {sum(seconds.values()) / 3600:.2f} h of training, "
        + f"{(sum(seconds.values()) - min(dmd_seconds, dp_seconds)) / 3600:.2f} h of wall time "
        + "(make toy-weights trains the two students side by side).",
        "",
        f"## Targets of the v2 toy pair, against the figures below ({met} of {len(found)} met)",
        "",
        "| target | measured | |",
        "| --- | --- | --- |",
        *[f"| {t.what} | {t.figure} | {'met' if t.met else 'not met'} |" for t in found],
        "",
        *(
            [
                "The base continues earlier train-toy runs (`unet.init_from`), oldest first; its own card follows.",
                "",
                *released,
                *_earlier_stages(chain),
                "",
            ]
            if len(chain) > 1 or released
            else []
        ),
        *_demoted(base_text),
        *_loading_note(base_run, base_text),
        "",
        f"## Students ({len(fig.student_timesteps)} steps, LCM schedule "
        f"{'/'.join(map(str, fig.student_timesteps))}), distilled from the base above by `diversity-cli distill`",
        "",
        f"The pairs `{PAIR}` (base + DMD) and `{PAIR}_dpdmd` (base + DP-DMD) are the shipped toy pairs' settings with",
        f"this run's weights (`{out / CONF}/model/`, written by `python -m diversity_cli.toy.release pairs`); the",
        f"commands ran with `{conf}`.",
        "",
        "| folder | method | command | training time |",
        "| --- | --- | --- | --- |",
        *rows,
        "",
        *logs,
        "",
        "## Measured under the fixed protocol",
        "",
        "The judge is the frozen feature network (`features/`). Commands:",
        "",
        "```",
        f"{conf} python -m diversity_cli.toy.protocol model={PAIR} methods=base,distilled out={out / EVAL / PROTOCOL}",
        f"{conf} python -m diversity_cli.toy.protocol model={PAIR}_dpdmd methods=distilled "
        f"out={out / EVAL / PROTOCOL_DPDMD}",
        f"{conf} {command_of(out / EVAL / X0VIZ, 'x0viz')}",
        f"{conf} {command_of(out / EVAL / X0VIZ_DPDMD, 'x0viz')}",
        "```",
        "",
        "fid_toyfeat: Fréchet distance of the judge's features, 1000 generated images (1000 toy captions drawn as the",
        "training data draws them, one seed each) against 1000 reference scenes; the floor is one ground-truth scene",
        "per caption against the same reference. Through the VAE: those ground-truth scenes encoded by the base's VAE",
        "(posterior mean) and decoded, what a model that drew exactly the VAE's latents of the ground truth would",
        "score.",
        f"Commitment: x0viz over {commitment}; the toy pairs' `auto_k` settings are the same, so `k=auto` finds the",
        "base's point.",
        "",
        f"| method | fid_toyfeat | × floor | x̂0 commitment (x0viz, {x0viz.get('metric')}, threshold "
        f"{x0viz.get('threshold')}) |",
        "| --- | --- | --- | --- |",
        *_fid_rows(fig),
        "",
        f"Per prompt, n={n} (seeds 0..{n - 1}); adherence: all named factors right by the judge; diversity: mean",
        "pairwise cosine distance of the judge's features; adherent-only: the same over the samples that follow the",
        "prompt.",
        "",
        "| prompt | adherence base / DMD / DP-DMD | diversity base / DMD / DP-DMD | adherent-only diversity base / DMD "
        "/ DP-DMD | truth diversity |",
        "| --- | --- | --- | --- | --- |",
        *_prompt_rows(fig),
        "",
        f"Per named factor: the fraction of the {n} samples whose predicted value of that factor is the prompt's",
        "(base / DMD / DP-DMD).",
        "",
        "| prompt | per named factor |",
        "| --- | --- |",
        *_factor_rows(fig),
        "",
        "Free factors: over the fid_toyfeat images whose caption leaves a factor unnamed, the share of each of its",
        "values the judge sees, against the ground truth's (one scene per caption). A model can follow every named",
        "factor and still collapse the free ones onto one value: diversity lost, which fid_toyfeat counts.",
        "",
        "| factor | captions leaving it free | total variation to the ground truth base / DMD / DP-DMD | most "
        "over-drawn value: share truth / base / DMD / DP-DMD |",
        "| --- | --- | --- | --- |",
        *_free_rows(fig),
        "",
    ]
    return "\n".join(lines), found


def write_card(out: Path) -> tuple[Path, list[Target]]:
    text, found = build_card(out)
    path = out / CARD
    write_text(path, text)
    return path, found


def _print_targets(found: list[Target]) -> None:
    for target in found:
        print(f"{'met    ' if target.met else 'NOT MET'}  {target.what}: {target.figure}")


def print_targets(evaluation: Path) -> list[Target]:
    """The nine targets of the measurements under `evaluation` alone (no training records, no card written),
    against the pair the protocol recorded."""
    fig = measured_figures(evaluation, recorded_pair(evaluation))
    found = targets(fig)
    print(f"{fig.label('base')}, {fig.label('dmd')}, {fig.label('dp_dmd')}: measured under {evaluation}")
    _print_targets(found)
    print(f"{sum(1 for target in found if target.met)} of {len(found)} targets met")
    return found


def main(argv: list[str] | None = None) -> int:
    """`TOY_OUT`: compose its card. `targets EVAL`: the targets only, for measurements laid out as a chain's eval/
    (the shipped pair at another CFG, say)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (1, 2) or (len(args) == 2 and args[0] != "targets"):
        print("usage: python -m diversity_cli.toy.card TOY_OUT | targets EVAL_FOLDER", file=sys.stderr)
        return 2
    try:
        if len(args) == 2:
            print_targets(Path(args[1]))
            return 0
        path, found = write_card(Path(args[0]))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    _print_targets(found)
    print(f"wrote {path} ({sum(1 for target in found if target.met)} of {len(found)} targets met)")
    return 0


if __name__ == "__main__":
    from ..core.errors import run_main

    raise SystemExit(run_main(main))
