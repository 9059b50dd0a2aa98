"""Diagnostic, not a toolkit option: classifier-free guidance applied only at timesteps in [LO, HI] (Kynkäänniemi et
al. 2024), every other step conditional only. Runs the toy protocol or any CLI command under that rule:

    LO=0 HI=880 python scripts/guidance_interval.py protocol model=toy methods=base model.base.guidance=4 out=g.csv
    LO=0 HI=880 python scripts/guidance_interval.py cli x0viz model=toy methods=[base] model.base.guidance=4 ...

It wraps the DDPM-family denoiser's prediction, so records and cache keys do not know about the interval: write
into a fresh `out` and keep these results apart from the toolkit's own.
"""

from __future__ import annotations

import os
import sys

import diversity_cli.sampling.denoiser as denoiser

LO, HI = float(os.environ.get("LO", "0")), float(os.environ.get("HI", "1000"))
_predict = denoiser.Denoiser._predict


def _predict_in_interval(self, x, t, cond, uncond):
    if not self.cfg or LO <= float(t.reshape(())) <= HI:
        return _predict(self, x, t, cond, uncond)
    self.cfg = False  # this step conditional only, as at guidance 1
    try:
        return _predict(self, x, t, cond, uncond)
    finally:
        self.cfg = True


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("protocol", "cli"):
        print("usage: LO=<t> HI=<t> python scripts/guidance_interval.py protocol|cli <arguments>", file=sys.stderr)
        return 2
    denoiser.Denoiser._predict = _predict_in_interval
    if argv[0] == "protocol":
        from diversity_cli.toy import protocol

        return protocol.main(argv[1:])
    from diversity_cli.cli import run

    return run(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
