"""A pair's student against DP-DMD's anchor: does its first step follow its noise as the teacher's anchor does?

    python -m diversity_cli.experiments.first_step model=toy_dpdmd teacher_ode.steps=8 anchor_k=2 [noises=16] \
        [seed=0] [out=results/first_step.csv]

The anchor is distill=dp_dmd's with these overrides (distill's keys: anchor_k, teacher_ode.*, student_timesteps,
teacher_guidance), the teacher the pair's base, the student its distilled network (a DMD student is measured
against the same anchor for comparison). Prints one row (training/first_step.py says what each column means) over
the toy protocol's prompts, each with `noises` noises no training batch drew.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from omegaconf import DictConfig

from ..core.errors import UserError
from ..models.pair import ModelPair
from ..toy.protocol import PROMPTS, write_csv
from ..training.distill import settings, validate
from ..training.first_step import first_step_fit

OWN_KEYS = ("noises", "seed", "out")


def anchor_fit(pair: ModelPair, distill_cfg: DictConfig, noises: int = 16, seed: int = 0) -> dict:
    """first_step_fit of `pair`'s student under the DP-DMD anchor of `distill_cfg` (a distill config whose method
    is dp_dmd), over the protocol's prompts; with the anchor it was measured against."""
    if distill_cfg.get("method") != "dp_dmd":
        raise UserError(f"the anchor comes from a dp_dmd distill config, not method={distill_cfg.get('method')}")
    chosen = settings(distill_cfg, pair)
    fit = first_step_fit(pair, chosen, PROMPTS, noises, seed)
    # every setting the anchor reads: two checks at one anchor_k and other guidances read as one anchor
    anchor = (
        f"anchor_k={chosen.anchor_k} of teacher_ode.steps={chosen.ode_steps}, CFG {chosen.ode_guidance:g}, "
        f"student from t={chosen.student_timesteps[0]}"
    )
    return {"anchor": anchor, **fit.row()}


def main(argv: list[str] | None = None) -> int:
    from ..core.config import compose, pair_overrides
    from ..models.loading import load_pair

    argv = list(argv if argv is not None else sys.argv[1:])
    own = {key: value for key, _, value in (a.partition("=") for a in argv) if key in OWN_KEYS}
    overrides = [a for a in argv if a.partition("=")[0] not in OWN_KEYS]
    if any("=" not in a or a.startswith(("distill=", "method=")) for a in overrides):
        raise UserError("first_step takes model=<pair> and distill=dp_dmd's keys (anchor_k=2 teacher_ode.steps=8 ...)")
    try:
        noises, seed = int(own.get("noises", 16)), int(own.get("seed", 0))
    except ValueError:
        raise UserError("noises= and seed= are whole numbers (noises >= 2)") from None
    if noises < 2:
        raise UserError(f"noises={noises}: the variances need at least 2 noises per prompt")
    cfg = compose("distill", ["distill=dp_dmd", *overrides])
    validate(cfg)  # what distill refuses (anchor_k past the teacher's ODE, a flow-matching pair) is refused here
    torch.manual_seed(0)
    pair = load_pair(cfg.model, torch.device("cpu"), torch.float32)
    # the network measured: a student given on the command line is not the one the pair's label names
    given = [item for item in pair_overrides(cfg.model) if item.lstrip("+").startswith("model.distilled.")]
    student = str(cfg.model.distilled.label) + (f" ({', '.join(given)})" if given else "")
    row = {"model": cfg.model.name, "student": student, **anchor_fit(pair, cfg, noises, seed)}
    if own.get("out"):
        write_csv(Path(own["out"]), [row])
    shown = (f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}" for key, value in row.items())
    print(" ".join(shown))
    return 0


if __name__ == "__main__":
    from ..core.errors import run_main

    raise SystemExit(run_main(main))
