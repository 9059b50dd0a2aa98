"""Reading an image file of a run directory or a reference folder: RGB, or one line naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import UserError, first_line


def open_rgb(path: str | Path) -> Any:
    """The image at `path` as an RGB PIL image, fully decoded; a missing, truncated or corrupt file is one line
    naming it (PIL raises OSError, SyntaxError or ValueError depending on where the damage is)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        reason = first_line(err)
        raise UserError(
            f"{path} is not a readable image ({reason}); delete it and rerun the command that made it "
            "(generate makes a missing image again)"
        ) from None


def image_tensor(path: str | Path) -> Any:
    """The image at `path` as a float tensor (3, H, W) in [0, 1]."""
    import numpy as np
    import torch

    array = np.asarray(open_rgb(path), dtype=np.uint8).copy()
    return torch.from_numpy(array).permute(2, 0, 1).float() / 255.0
