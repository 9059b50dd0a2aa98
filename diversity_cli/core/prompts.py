"""Prompt sources: one prompt, a text file (one per line), or a CSV with `prompt` and an optional seed column."""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

SEED_COLUMNS = ("seed", "evaluation_seed")  # the paper's coco_30k.csv uses evaluation_seed


@dataclass(frozen=True)
class PromptRow:
    prompt: str
    seed: int | None = None  # per-row seed from a CSV; None: use the command's seed


def read_prompts(prompt: str | None, prompts: str | None, limit: int | None = None) -> list[PromptRow]:
    if prompt is not None and prompts is not None:
        raise UserError('give either prompt="..." or prompts=FILE, not both')
    if prompt is not None:
        if not str(prompt).strip():
            raise UserError('prompt is empty; give prompt="a photo of ..."')
        rows = [PromptRow(str(prompt))]
    elif prompts is not None:
        rows = _read_file(Path(prompts))
    else:
        raise UserError('no prompt given; add prompt="a photo of ..." or prompts=FILE (.txt or .csv)')
    return rows[:limit] if limit is not None else rows


def _read_file(path: Path) -> list[PromptRow]:
    if not path.is_file():
        raise UserError(f"prompt file {path} not found")
    if path.suffix.lower() == ".csv":
        rows = _read_csv(path)
    else:
        lines = path.read_text(encoding="utf-8").splitlines()
        # Blank lines and `#` comment lines are not prompts (data/*.txt files say what they are in comments).
        rows = [PromptRow(line.strip()) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not rows:
        raise UserError(f"prompt file {path} has no prompts; put one prompt per line (or a CSV `prompt` column)")
    return rows


def _read_csv(path: Path) -> list[PromptRow]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        if "prompt" not in fields:
            raise UserError(f"{path} has no 'prompt' column (columns: {', '.join(fields) or 'none'})")
        seed_column = next((c for c in SEED_COLUMNS if c in fields), None)
        rows = []
        for line, record in enumerate(reader, start=2):
            text = (record["prompt"] or "").strip()
            if not text:
                continue
            seed = None
            if seed_column and (record[seed_column] or "").strip():
                try:
                    seed = int(record[seed_column])
                except ValueError:
                    raise UserError(f"{path}:{line}: seed '{record[seed_column]}' is not an integer") from None
            rows.append(PromptRow(text, seed))
    return rows


def prompt_id(prompt: str) -> str:
    """A readable, collision-safe folder name for a prompt."""
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:48] or "prompt"
    return f"{slug}-{hashlib.sha1(prompt.encode()).hexdigest()[:6]}"
