"""One point of an `ablate` sweep as a Hydra job: what `ablate launcher=slurm` runs, one SLURM job per point.

`ablate` writes the sweep's composed config to `<out>/multirun/<time>/sweep.yaml` (with `points`: tag -> knobs)
and starts the multirun, roughly:

    python -m diversity_cli.experiments.ablate_job --multirun --config-path <out>/multirun/<time> --config-name sweep \
        hydra.searchpath=[file://<repo>/conf] hydra/launcher=slurm point=hybrid_k1,hybrid_k2,base,distilled

A job generates its point (resuming) and measures it into `<out>/points/<model>/<tag>/point.csv`; rerunning a job
redoes nothing that is finished. The same command line reruns chosen points by hand; `diversity-cli ablate ...
merge=true` then collects them into ablate.csv.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from ..core import config  # noqa: F401 (registers ${asset:...}, which sweep.yaml's shipped paths are written in)
from ..core.errors import UserError


@hydra.main(config_path=None, config_name=None, version_base="1.3")
def main(cfg: DictConfig) -> None:
    import sys

    from ..core.record import begin, finish
    from .ablate import Point, attempt

    if cfg.get("point") is None or cfg.point not in cfg.get("points", {}):
        known = ", ".join(cfg.get("points") or {})
        raise UserError(f"point={cfg.get('point')} is not a point of this sweep ({known})")
    # A point its pair cannot do is written to <point>/error.txt and the job ends normally: the multirun then waits
    # for every job, and the merge reports it (a job that raised would end the wait while others still run).
    # Its records say how it ended, as a command's do (else they said "running" for ever)
    begin("ablate", [f"point={cfg.point}"], ["python", "-m", "diversity_cli.experiments.ablate_job", *sys.argv[1:]])
    code = 1
    try:
        code = 0 if attempt(cfg, Point.of(**cfg.points[cfg.point])) else 2
    except KeyboardInterrupt:
        code = 130
        raise
    finally:
        finish(code)


def run() -> None:
    """main(), its launcher's failure said in one line: `ablate` runs this under HYDRA_FULL_ERROR=1, so Hydra hands
    the exception here instead of printing a traceback. sbatch refusing the array (no cluster reachable from here, a
    partition it does not know) is written where `ablate` reads it, to clean up what it made and say why."""
    import os
    import sys
    from pathlib import Path

    from submitit.core.utils import FailedJobError

    from ..core.errors import first_line
    from .ablate import REFUSED_ENV

    try:
        main()
    except FailedJobError as err:
        refused = os.environ.get(REFUSED_ENV)
        if refused:
            Path(refused).write_text(first_line(err) + "\n", encoding="utf-8")
            sys.exit(1)
        print(f"error: the cluster refused the submission ({first_line(err)})", file=sys.stderr)
        sys.exit(1)
    except UserError as err:
        print(f"error: {first_line(err)}", file=sys.stderr)
        sys.exit(2)
    except Exception as err:  # a job's failure: its full log is in the sweep folder's .submitit/
        print(f"error: {type(err).__name__}: {first_line(err)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run()
