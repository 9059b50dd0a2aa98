"""The toy pair's weights as `make toy-weights` retrains them, from a results folder to the package.

Layout of the results folder (`TOY_OUT`, default results/toy_weights):

    base_eps/    the first train-toy run (ε-prediction); base_v/ continues it (`unet.init_from`), base/ continues that
    base/        a train-toy run: base/base/ (the pipeline folder), MODEL_CARD.md, evaluation.csv, logs/, runs/
    conf/model/  toy_retrained.yaml, toy_retrained_dpdmd.yaml: the shipped toy pairs' settings, this folder's weights
    dmd/         a distill run (distill=dmd): student/, log.csv, run.json, README.md, runs/
    dp_dmd/      a distill run (distill=dp_dmd)
    eval/        the fixed measurement protocol (protocol*.csv) and x0viz's commitment (x0viz*/)
    MODEL_CARD.md   composed from all of the above by `python -m diversity_cli.toy.card`

    python -m diversity_cli.toy.release pairs results/toy_weights [base_guidance=3]   # conf/model/ (before distill)
    python -m diversity_cli.toy.release install results/toy_weights   # into diversity_cli/assets/toy/

`install` copies only safetensors, configs and training logs, refuses past `SIZE_LIMIT` in total or when a part is
missing or unfinished (one line, exit 2, nothing written), and never touches `features/`: the judge stays fixed.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from ..core.atomic import write_text
from ..core.config import value_differences
from ..core.errors import UserError
from ..core.resources import asset, conf_root

PAIR = "toy_retrained"  # the pairs the chain distils and measures with: conf/model/<PAIR>.yaml, <PAIR>_dpdmd.yaml
SHIPPED_PAIRS = {PAIR: "toy", f"{PAIR}_dpdmd": "toy_dpdmd"}
BASE_RUN, DMD_RUN, DP_DMD_RUN, EVAL, CONF = "base", "dmd", "dp_dmd", "eval", "conf"
# eval/: the protocol's per-prompt CSVs (each with its <stem>_fid.csv) and x0viz's run directories
PROTOCOL, PROTOCOL_DPDMD = "protocol.csv", "protocol_dpdmd.csv"
X0VIZ, X0VIZ_DPDMD = "x0viz", "x0viz_dpdmd"
CARD = "MODEL_CARD.md"
SIZE_LIMIT = 40_000_000  # bytes shipped in the package, all parts together
SHIPPED_SUFFIXES = (".safetensors", ".json", ".csv", ".txt")  # weights, configs, logs: never pickles
ASSET = re.compile(r"\$\{asset:toy/([^}]*)\}")


def folders(out: Path) -> dict[str, Path]:
    """Where each shipped asset folder comes from in a results folder (asset name -> its source)."""
    return {
        "base": out / BASE_RUN / "base",
        "dmd_student": out / DMD_RUN / "student",
        "dp_dmd_student": out / DP_DMD_RUN / "student",
    }


def _asset_source(out: Path, relative: str) -> str:
    """`${asset:toy/<relative>}` of a shipped pair, as the same part of this results folder (the judge, features/,
    is not retrained: it stays the shipped one)."""
    for name, source in folders(out).items():
        if relative == name or relative.startswith(name + "/"):
            return str(source.resolve()) + relative[len(name) :]
    return str(asset(f"toy/{relative}"))


def write_pairs(out: Path, base_guidance: float | None = None) -> list[Path]:
    """conf/model/ of `out`: each shipped toy pair's settings with its weights read from `out`, and its base sampled
    at `base_guidance` where given (the CFG the teacher's score, the protocol and x0viz then use). Both schedulers
    read the exported base's scheduler config where the shipped pair names none: a base trained with
    `unet.schedule_shift` carries its shifted betas there, and sampling it on SD's plain schedule would be wrong.
    A folder's pairs are never changed once written: its students and measurements were made with them."""
    planned = {}
    for name, shipped in SHIPPED_PAIRS.items():
        source = conf_root() / "model" / f"{shipped}.yaml"
        model = OmegaConf.to_container(OmegaConf.load(source), resolve=False)
        model = _substitute(model, out)
        model["name"] = name
        if base_guidance is not None:
            model["base"]["guidance"] = float(base_guidance)
        for role in ("base", "distilled"):
            scheduler = model[role]["scheduler"]
            if not scheduler.get("repo") and not scheduler.get("path"):
                scheduler["repo"] = str(folders(out)["base"].resolve())
        path = pair_file(out, name)
        if path.is_file():
            written = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
            changed = value_differences(written, model, skip=LOCATIONS)
            if changed:
                raise UserError(
                    f"{path} was written with other settings ({', '.join(changed)}) and this folder's runs were "
                    "made with them: use a new TOY_OUT for other settings (TOY_GUIDANCE, an edited "
                    f"conf/model/{shipped}.yaml)"
                )
        planned[path] = (source, model)
    told = f" base_guidance={float(base_guidance):g}" if base_guidance is not None else ""
    for path, (source, model) in planned.items():
        command = f"python -m diversity_cli.toy.release pairs {out}{told}"
        header = f"# Generated by `{command}` from {source.name}: do not edit.\n"
        write_text(path, header + OmegaConf.to_yaml(OmegaConf.create(model)))
    return list(planned)


LOCATIONS = ("path", "repo")  # where weights are read from: a copied or moved folder reads its own, same weights


def pair_file(out: Path, name: str) -> Path:
    """Where a results folder keeps the chain's pair `name` (PAIR or its DP-DMD twin)."""
    return out / CONF / "model" / f"{name}.yaml"


def sampled_guidance(pair_file: Path) -> float:
    """The CFG a pair's base samples at (conf/model/<pair>.yaml)."""
    return float(OmegaConf.load(pair_file).base.guidance)


def shipped_guidance(name: str = PAIR) -> float:
    """The CFG at which the shipped pair that the chain's pair `name` stands for samples its base."""
    return sampled_guidance(conf_root() / "model" / f"{SHIPPED_PAIRS[name]}.yaml")


def base_label(pair) -> str:
    """How tables name a pair's base (a dict or config of conf/model/): its sampler as the pair runs it."""
    base = pair["base"]
    scheduler = str(base["scheduler"]["class"]).removesuffix("Scheduler")
    return f"base ({scheduler} {base['steps']}, CFG {float(base['guidance']):g})"


def _substitute(value, out: Path):
    if isinstance(value, dict):
        return {key: _substitute(item, out) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, out) for item in value]
    if isinstance(value, str):
        return ASSET.sub(lambda match: _asset_source(out, match[1]), value)
    return value


@dataclass(frozen=True)
class Copy:
    source: Path
    target: str  # relative to the asset folder

    @property
    def size(self) -> int:
        return self.source.stat().st_size


def plan_install(out: Path) -> list[Copy]:
    """Every file `install` copies, or UserError naming what is missing or unfinished."""
    sources = folders(out)
    pairs = [pair_file(out, name) for name in SHIPPED_PAIRS]
    missing = [str(path) for path in [*sources.values(), *pairs, out / CARD] if not path.exists()]
    if missing:
        raise UserError(f"toy-weights-install: {', '.join(missing)} missing; run `make toy-weights` first")
    for run in (DMD_RUN, DP_DMD_RUN):
        marker = out / run / "run.json"
        record = json.loads(marker.read_text(encoding="utf-8")).get("distill") if marker.is_file() else None
        if not record or not record.get("finished"):
            raise UserError(f"toy-weights-install: the distill run {out / run} is unfinished; rerun `make toy-weights`")
    for name, shipped in SHIPPED_PAIRS.items():
        made, ships = sampled_guidance(pair_file(out, name)), shipped_guidance(name)
        if made != ships:
            raise UserError(
                f"toy-weights-install: {out} sampled its base at CFG {made:g}, conf/model/{shipped}.yaml at {ships:g}; "
                f"set base.guidance: {made:g} there first, so the card describes the shipped pair"
            )
    copies = []
    for name, source in sources.items():
        for path in sorted(source.rglob("*")):
            if path.is_file() and path.suffix in SHIPPED_SUFFIXES:
                copies.append(Copy(path, f"{name}/{path.relative_to(source).as_posix()}"))
    logs = {
        "base": out / BASE_RUN / "logs" / "unet.csv",
        "dmd_student": out / DMD_RUN / "log.csv",
        "dp_dmd_student": out / DP_DMD_RUN / "log.csv",
    }
    copies += [Copy(path, f"{name}/train_log.csv") for name, path in logs.items() if path.is_file()]
    # Each student's quality measured while it trained (distill monitor.every), where the chain measured it.
    for name, run in (("dmd_student", DMD_RUN), ("dp_dmd_student", DP_DMD_RUN)):
        quality = [out / run / "quality.csv", out / run / "quality.png"]
        copies += [Copy(path, f"{name}/train_{path.name}") for path in quality if path.is_file()]
    copies.append(Copy(out / CARD, CARD))
    total = sum(copy.size for copy in copies)
    if total > SIZE_LIMIT:
        largest = max(copies, key=lambda copy: copy.size)
        raise UserError(
            f"toy-weights-install: {total / 1e6:.1f} MB would ship, over the {SIZE_LIMIT / 1e6:.0f} MB limit "
            f"(largest: {largest.target}, {largest.size / 1e6:.1f} MB); nothing was copied"
        )
    return copies


def install(out: Path, target: Path) -> list[Copy]:
    """Replace base/, dmd_student/, dp_dmd_student/ and MODEL_CARD.md of `target` (the package's assets/toy/) by
    those of `out`. Each folder is staged whole beside its place and swapped in, so a failure leaves the old one."""
    copies = plan_install(out)
    target.mkdir(parents=True, exist_ok=True)
    for name in folders(out):
        staged = target / f".incoming-{name}"
        shutil.rmtree(staged, ignore_errors=True)
        for copy in copies:
            if copy.target.startswith(name + "/"):
                destination = target / copy.target.replace(name, staged.name, 1)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(copy.source, destination)
        old = target / f".outgoing-{name}"
        shutil.rmtree(old, ignore_errors=True)
        if (target / name).exists():
            (target / name).rename(old)
        staged.rename(target / name)
        shutil.rmtree(old, ignore_errors=True)
    write_text(target / CARD, (out / CARD).read_text(encoding="utf-8"))
    return copies


def _parse_base_guidance(args: list[str]) -> float | None:
    """`base_guidance=G` (a finite number above 0) or nothing -> G or None; anything else is a UserError."""
    if not args:
        return None
    key, _, value = args[0].partition("=")
    try:
        guidance = float(value) if key == "base_guidance" and len(args) == 1 else math.nan
    except ValueError:
        guidance = math.nan
    if not (math.isfinite(guidance) and guidance > 0):
        raise UserError(f"pairs: '{' '.join(args)}' is not base_guidance=G with G a number above 0 (the base's CFG)")
    return guidance


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (2, 3) or args[0] not in ("pairs", "install"):
        print(
            "usage: python -m diversity_cli.toy.release pairs TOY_OUT [base_guidance=G] | install TOY_OUT [ASSETS]",
            file=sys.stderr,
        )
        return 2
    out = Path(args[1])
    try:
        if args[0] == "pairs":
            for path in write_pairs(out, _parse_base_guidance(args[2:])):
                print(f"wrote {path}")
            return 0
        target = Path(args[2]) if len(args) == 3 else asset("toy")
        copies = install(out, target)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    total = sum(copy.size for copy in copies)
    print(f"installed {len(copies)} files ({total / 1e6:.1f} MB) from {out} into {target}")
    return 0


if __name__ == "__main__":
    from ..core.errors import run_main

    raise SystemExit(run_main(main))
