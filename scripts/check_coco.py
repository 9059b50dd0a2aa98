"""`make reproduce-table2/4`'s check of COCO_IMAGES before any generation: every COCO image the captions name is in
the folder, as `fid reference=coco` (which takes them all, whatever LIMIT cut the captions to) will ask only after
hours of sampling. One line and exit 2 when not.

    python scripts/check_coco.py /data/val2014 data/coco_30k.csv [coco.pattern=... (the coco.* words of FID_REF)]
"""

from __future__ import annotations

import sys

from omegaconf import OmegaConf

from diversity_cli.core.errors import UserError
from diversity_cli.core.resources import conf_root
from diversity_cli.metrics.reference import coco_reference


def main(images: str, captions: str, *settings: str) -> int:
    coco = OmegaConf.load(conf_root() / "fid.yaml").coco  # fid's own settings (its pattern), no override parsed
    coco.images, coco.captions = images, captions  # as given: a path with a comma is no Hydra sweep here
    for setting in settings:  # FID_REF's own (coco.pattern=...): fid reads the folder with them
        key, sep, value = setting.partition("=")
        if not sep or not key.startswith("coco.") or key.removeprefix("coco.") not in coco:
            print(f"error: {setting}: the check takes fid's coco.<key>=<value> ({', '.join(coco)})", file=sys.stderr)
            return 2
        coco[key.removeprefix("coco.")] = value
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
