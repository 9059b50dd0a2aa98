"""One picture of a run: a row per method (tag) of one pair and prompt, the same seeds in columns, so the eye
compares methods at equal noise. The one helper for `generate`'s end-of-run sheet and the demo's."""

from __future__ import annotations

from pathlib import Path

from ..core.atomic import atomic_path
from ..core.images import open_rgb
from ..core.prompts import prompt_id
from ..core.rundir import RunDir

LABEL_WIDTH = 150  # px left of each row for its method tag
HEADER = 18  # px above the first row for the seeds


def sheet_path(root: Path, model: str, prompt: str) -> Path:
    return root / f"contact_sheet_{model}_{prompt_id(prompt)}.png"


def sheet_rows(root: str | Path, model: str, prompt: str, seeds: list[int] | None = None, columns: int = 8):
    """(tags in first-written order, seeds shown, {(tag, seed): image path}) of one pair and prompt."""
    run = RunDir(root)
    paths: dict[tuple[str, int], Path] = {}
    tags: dict[str, None] = {}
    for row in run.read_samples():
        if row.get("model") != model or row.get("prompt") != prompt:
            continue
        tag = row.get("tag") or row["method"]
        path = run.root / row["path"]
        if path.is_file():
            tags.setdefault(tag)
            paths[(tag, int(row["seed"]))] = path
    shown = list(seeds) if seeds is not None else sorted({seed for _, seed in paths})
    return list(tags), shown[:columns], paths


def contact_sheet(
    root: str | Path,
    model: str,
    prompt: str,
    seeds: list[int] | None = None,
    columns: int = 8,
    cell: int = 96,
    target: Path | None = None,
) -> Path | None:
    """Write the sheet (atomically) and return its path; None when the run holds no image of this pair and prompt."""
    from PIL import Image, ImageDraw

    tags, shown, paths = sheet_rows(root, model, prompt, seeds, columns)
    if not tags or not shown:
        return None
    sheet = Image.new("RGB", (LABEL_WIDTH + cell * len(shown), HEADER + cell * len(tags)), "white")
    draw = ImageDraw.Draw(sheet)
    for column, seed in enumerate(shown):
        draw.text((LABEL_WIDTH + column * cell + 4, 3), f"seed {seed}", fill="black")
    for row, tag in enumerate(tags):
        top = HEADER + row * cell
        draw.text((6, top + cell // 2 - 6), tag, fill="black")
        for column, seed in enumerate(shown):
            path = paths.get((tag, seed))
            if path is None:  # this method has no image of that seed: the gap stays visible
                continue
            tile = open_rgb(path).resize((cell, cell), Image.Resampling.NEAREST)
            sheet.paste(tile, (LABEL_WIDTH + column * cell, top))
    target = target or sheet_path(Path(root), model, prompt)
    with atomic_path(target) as temporary:
        sheet.save(temporary, format="PNG")
    return target
