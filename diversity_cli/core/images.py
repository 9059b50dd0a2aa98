"""Reading an image file of a run directory or a reference folder: RGB, or one line naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import UserError, first_line
from .marker import Recognizer, owned_path

SOFTWARE = "diversity-cli"  # a PNG's Software chunk: tells a picture of ours from a file of yours at its name


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


def sheet_layout(label_width: int, header: int, cell: int) -> Recognizer:
    """A picture this toolkit drew: tagged so, or (drawn before run.json listed them) an untagged RGB PNG laid out as
    its sheets are: a label column `label_width` wide, a header row `header` high, cells of `cell` px."""

    def ours(path: Path) -> bool:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                software, (width, height) = str(image.info.get("Software", "")), image.size
                if image.format != "PNG" or image.mode != "RGB":
                    return False
        except (OSError, UnidentifiedImageError):
            return False
        if software:
            return software.startswith(SOFTWARE)
        return (
            width > label_width
            and (width - label_width) % cell == 0
            and height > header
            and (height - header) % cell == 0
        )

    return ours


def save_png(image: Any, root: Path, rel: str, recognize: Recognizer) -> Path:
    """`image` as `root/rel`, tagged as ours, listed in run.json and written atomically; a file of someone else
    there is refused (one line)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Software", SOFTWARE)
    with owned_path(root, rel, recognize) as temporary:
        image.save(temporary, format="PNG", pnginfo=info)
    return root / rel


def image_tensor(path: str | Path) -> Any:
    """The image at `path` as a float tensor (3, H, W) in [0, 1]."""
    import numpy as np
    import torch

    array = np.asarray(open_rgb(path), dtype=np.uint8).copy()
    return torch.from_numpy(array).permute(2, 0, 1).float() / 255.0
