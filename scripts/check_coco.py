"""`make reproduce-table2/4`'s check of COCO_IMAGES before any generation: every COCO image the captions name is in
the folder, as `fid reference=coco` (which takes them all, whatever LIMIT cut the captions to) will ask only after
hours of sampling. One line and exit 2 when not.

    python scripts/check_coco.py /data/val2014 data/coco_30k.csv [coco.pattern=... (the coco.* words of FID_REF)]
"""

from __future__ import annotations

import sys

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf

from diversity_cli.core.errors import UserError
from diversity_cli.core.resources import conf_root
from diversity_cli.metrics.reference import coco_reference


def main(images: str, captions: str, *settings: str) -> int:
    coco = OmegaConf.load(conf_root() / "fid.yaml").coco  # fid's own settings (its pattern), no override parsed
    coco.images, coco.captions = images, captions  # as given: a path with a comma is no Hydra sweep here
    for setting in settings:  # FID_REF's own (coco.pattern=...): fid reads the folder with them
        key = setting.partition("=")[0].removeprefix("coco.")
        if "=" not in setting or not setting.startswith("coco.") or key not in coco:
            print(f"error: {setting}: the check takes fid's coco.<key>=<value> ({', '.join(coco)})", file=sys.stderr)
            return 2
        try:  # as fid reads its command line (Hydra): `coco.pattern='COCO_val2014_{coco_id:012d}.jpg'`, quotes off
            override = OverridesParser.create().parse_override(setting)
        except HydraException:
            override = None
        if override is None or override.is_sweep_override() or not isinstance(override.value(), (str, int, float)):
            print(f"error: {setting}: fid reads no such value; quote one with braces, commas or spaces, as "
                  "coco.pattern='COCO_val2014_{coco_id:012d}.jpg'", file=sys.stderr)  # fmt: skip
            return 2
        coco[key] = override.value()
    try:
        found = coco_reference(coco)
    except UserError as err:
        print(f"error: COCO_IMAGES={images}: {err}", file=sys.stderr)
        return 2
    print(f"COCO_IMAGES: {found.description}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: python scripts/check_coco.py COCO_IMAGES CAPTIONS [coco.<key>=<value> ...]")
    sys.exit(main(*sys.argv[1:]))
