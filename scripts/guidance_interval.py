"""Diagnostic, not a toolkit option: classifier-free guidance applied only at timesteps in [LO, HI] (Kynkäänniemi et
al. 2024), every other step conditional only. Runs the toy protocol or x0viz under that rule:

    LO=0 HI=880 python scripts/guidance_interval.py protocol model=toy methods=base model.base.guidance=4 out=g.csv
    LO=0 HI=880 python scripts/guidance_interval.py x0viz model=toy methods=[base] model.base.guidance=4 ...

It wraps the DDPM-family denoiser's prediction in this process, so records and cache keys do not know about the
interval: only the protocol and x0viz run (no devices=, whose workers would sample without it), every cache goes to
a fresh temporary folder, and outputs belong in a fresh `out`, apart from the toolkit's own.
"""

from __future__ import annotations

import os
import sys
import tempfile

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
    if not argv or argv[0] not in ("protocol", "x0viz") or any(a.lstrip("+").startswith("devices=") for a in argv):
        print("usage: LO=<t> HI=<t> python scripts/guidance_interval.py protocol|x0viz <arguments> (no devices=)",
              file=sys.stderr)  # fmt: skip
        return 2
    denoiser.Denoiser._predict = _predict_in_interval
    # a k=auto commitment or an embedding cached under the plain-CFG key would be reused by later plain runs
    with tempfile.TemporaryDirectory(prefix="guidance_interval_cache_") as cache:
        os.environ["DIVERSITY_CLI_CACHE"] = cache
        if argv[0] == "protocol":
            from diversity_cli.toy import protocol

            return protocol.main(argv[1:])
        from diversity_cli.cli import run

        return run(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
