"""One picture of a run: a row per method (tag) of one pair and prompt, the same seeds in columns, so the eye
compares methods at equal noise. The one helper for `generate`'s end-of-run sheet and the demo's."""

from __future__ import annotations

from pathlib import Path

from ..core.images import open_rgb, save_png, sheet_layout
from ..core.prompts import prompt_id
from ..core.rundir import RunDir

LABEL_WIDTH = 150  # px left of each row for its method tag
HEADER = 18  # px above the first row for the seeds
CELL = 96  # px per image


def sheet_path(root: Path, model: str, prompt: str) -> Path:
    return root / f"contact_sheet_{model}_{prompt_id(prompt)}.png"


def sheet_rows(
    root: str | Path,
    model: str,
    prompt: str,
    seeds: list[int] | None = None,
    columns: int = 8,
    tags: list[str] | None = None,
):
    """(tags in first-written order, or `tags` as given, seeds shown, {(tag, seed): image path}) of one pair and
    prompt."""
    run = RunDir(root)
    paths: dict[tuple[str, int], Path] = {}
    found: dict[str, None] = {}
    for row in run.read_samples():
        if row.get("model") != model or row.get("prompt") != prompt:
            continue
        tag = row.get("tag") or row["method"]
        path = run.root / row["path"]
        if path.is_file():
            found.setdefault(tag)
            paths[(tag, int(row["seed"]))] = path
    shown = list(seeds) if seeds is not None else sorted({seed for _, seed in paths})
    return list(found) if tags is None else list(tags), shown[:columns], paths


def contact_sheet(
    root: str | Path,
    model: str,
    prompt: str,
    seeds: list[int] | None = None,
    columns: int = 8,
    cell: int = CELL,
    target: Path | None = None,
    tags: list[str] | None = None,
) -> Path | None:
    """Write the sheet (atomically) and return its path; None when the run holds no image of this pair and prompt
    (or of one of `tags`: the rows wanted, in this order)."""
    from PIL import Image, ImageDraw

    tags, shown, paths = sheet_rows(root, model, prompt, seeds, columns, tags)
    present = {tag for tag, _ in paths}
    if not tags or not shown or not present.issuperset(tags):
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
    save_png(sheet, target.parent, target.name, sheet_layout(LABEL_WIDTH, HEADER, CELL))
    return target


USAGE = "usage: python -m diversity_cli.reporting.contact_sheet RUN_DIR MODEL PROMPT [TAG ...]"


def main(argv: list[str] | None = None) -> int:
    """`python -m diversity_cli.reporting.contact_sheet RUN_DIR MODEL PROMPT [TAG ...]`: the sheet of a run
    directory, rows in the order of the tags given (`make demo`: base distilled hybrid_k1); prints its path."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if len(args) < 3:
        print(USAGE, file=sys.stderr)
        return 2
    # the prompt as generate stores it (stripped), as its samples.csv names it
    root, model, prompt, tags = args[0], args[1], args[2].strip(), args[3:] or None
    if not Path(root).is_dir():
        print(f"RUN_DIR {root} is not a directory; give a run directory of generate", file=sys.stderr)
        return 2
    sheet = contact_sheet(root, model, prompt, tags=tags)
    if sheet is None:
        rows = " / ".join(tags) if tags else "any method"
        print(f"{root} holds no image of {model} for '{prompt}' ({rows}); {held(root, model, prompt)}", file=sys.stderr)
        return 2
    print(f"contact sheet ({' / '.join(tags or sheet_rows(root, model, prompt)[0])}, same seeds): {sheet}")
    return 0


def held(root: str | Path, model: str, prompt: str) -> str:
    """What the run holds instead, for a sheet it cannot draw: the tags of this pair and prompt, else the pair's
    prompts, else the pairs (a few of each)."""
    rows = RunDir(root).read_samples()
    if not rows:
        return "it has no samples.csv rows: run generate first"
    here = [row for row in rows if row.get("model") == model]
    if not here:
        return f"its pairs: {_few(row.get('model', '') for row in rows)}"
    tags = [row.get("tag") or row["method"] for row in here if row.get("prompt") == prompt]
    if tags:
        return f"its tags of {model} for this prompt: {_few(tags)}"
    return f"its prompts of {model}: {_few(repr(row.get('prompt', '')) for row in here)}"


def _few(items, most: int = 5) -> str:
    found = list(dict.fromkeys(items))
    return ", ".join(found[:most]) + (f" and {len(found) - most} more" if len(found) > most else "")


if __name__ == "__main__":
    from ..core.errors import run_main

    raise SystemExit(run_main(main))
