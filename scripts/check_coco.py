"""`make reproduce-table2/4`'s check of COCO_IMAGES before any generation: every COCO image the captions name (the
first LIMIT of them) is in the folder, as `fid reference=coco` will ask only after hours of sampling. One line and
exit 2 when not.

    python scripts/check_coco.py /data/val2014 data/coco_30k.csv [LIMIT]
"""

from __future__ import annotations

import sys

from diversity_cli.core.config import compose
from diversity_cli.core.errors import UserError
from diversity_cli.metrics.reference import coco_reference


def main(images: str, captions: str, limit: str = "") -> int:
    cfg = compose("fid", [f"coco.images={images}", f"coco.captions={captions}"], checked=False)
    try:
        found = coco_reference(cfg.coco, int(limit) if limit.strip() else None)
    except UserError as err:
        print(f"error: COCO_IMAGES={images}: {err}", file=sys.stderr)
        return 2
    print(f"COCO_IMAGES: {found.description}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
