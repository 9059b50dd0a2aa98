"""Prompt sources: one prompt, a text file (one per line), or a CSV with `prompt` and an optional seed column."""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserError
from .resources import data_path
from .schemas.common import SEED_MAX

SEED_COLUMNS = ("seed", "evaluation_seed")  # the paper's coco_30k.csv uses evaluation_seed


@dataclass(frozen=True)
class PromptRow:
    prompt: str
    seed: int | None = None  # per-row seed from a CSV; None: use the command's seed

    def first_seed(self, default: int) -> int:
        """The seed of this row's first sample (sample j uses it + j): the row's own, else the command's."""
        return self.seed if self.seed is not None else int(default)


def command_seed(seed: int, rows: list[PromptRow]) -> int | None:
    """`seed=` where some prompt row takes its seeds from it; None where every row has its own (a table's seed
    column): seed= then chooses none of the images, and runs at two seeds= made the same ones."""
    return int(seed) if any(row.seed is None for row in rows) else None


def read_prompts(
    prompt: str | None,
    prompts: str | None,
    limit: int | None = None,
    *,
    n: int | None = None,
    max_images: int | None = None,
    seed: int | None = None,
) -> list[PromptRow]:
    """The prompt rows of a command. With `n` (samples per prompt) and `max_images`, more than `max_images`
    images in all is refused here, before any work, naming the key that lifts the cap; with `n`, a row whose last
    seed (its own, else the command's `seed`, + n - 1) is above the largest seed too."""
    if prompt is not None and prompts is not None:
        raise UserError('give either prompt="..." or prompts=FILE, not both')
    if limit is not None and prompts is None:  # said, not passed over: the user meant some file's first rows
        raise UserError(f"limit={limit} takes the first rows of a prompt file (prompts=FILE); a single prompt has one")
    if prompt is not None:
        if not str(prompt).strip():
            raise UserError('prompt is empty; give prompt="a photo of ..."')
        # as a file's lines are: "a cat " and the line "a cat" are one prompt, their images in one folder
        rows = [PromptRow(str(prompt).strip())]
    elif prompts is not None:
        rows = _read_file(data_path(prompts), typed=str(prompts))  # data/...: else the shipped copy
    else:
        raise UserError('no prompt given; add prompt="a photo of ..." or prompts=FILE (.txt or .csv)')
    rows = rows[:limit] if limit is not None else rows
    if n is not None:
        _check_last_seeds(rows, prompts, seed, n)
    if n is not None and max_images is not None and len(rows) * n > max_images:
        raise UserError(
            f"{len(rows)} prompt(s) x n={n} is {len(rows) * n} images, above the cap max_images={max_images}; "
            f"use fewer prompts (limit=) or a smaller n, or raise the cap with max_images=N if you mean it"
        )
    return rows


def _check_last_seeds(rows: list[PromptRow], prompts: str | None, seed: int | None, n: int) -> None:
    """Every row's last seed (its own or the command's `seed`, + n - 1) at most SEED_MAX; a line naming each source
    that passes it (the table's seeds, seed=), so one fix is enough."""
    table = max((row.seed for row in rows if row.seed is not None), default=None)
    command = int(seed) if seed is not None and any(row.seed is None for row in rows) else None
    over = []
    if table is not None and table + n - 1 > SEED_MAX:
        over.append((f"prompt file {prompts}'s seed {table}", "its seeds"))
    if command is not None and command + n - 1 > SEED_MAX:
        over.append((f"seed {command}", "seed="))
    if over:
        what = " and ".join(name for name, _ in over)
        fix = " and ".join(key for _, key in over)
        top = max(table or 0, command or 0)
        verb = "reach" if len(over) > 1 else "reaches"
        raise UserError(
            f"{what} with n={n} {verb} seed {top + n - 1}, above the largest seed {SEED_MAX}; give {fix} "
            f"<= {SEED_MAX - n + 1}"
        )


def command_limits(cfg: Any) -> dict[str, Any]:
    """read_prompts' checks for a command that makes `n` images per prompt from `seed` (or a table's seeds)."""
    return {"n": int(cfg.n), "max_images": cfg.get("max_images"), "seed": cfg.get("seed")}


PROMPT_SUFFIXES = (".txt", ".csv", "")  # a prompt per line, a table with a prompt column, a bare name as .txt
# (a name whose last dot is followed by more than letters, `prompts_v1.2`, is a bare name too)


def _read_file(path: Path, typed: str) -> list[PromptRow]:
    if path.is_dir():
        raise UserError(f"prompt file {path} is a folder; give a .txt file (one prompt per line) or a .csv")
    if not path.is_file():
        shipped = " (nor among the shipped data/)" if path != Path(typed) else ""
        raise UserError(f"prompt file {typed} not found{shipped}")
    # README.md's 1362 lines were taken as prompts, markup and all; `prompts_v1.2` is a bare name with a dot
    if path.suffix.lower() not in PROMPT_SUFFIXES and path.suffix[1:].isalpha():
        raise UserError(
            f"prompt file {typed} is a {path.suffix} file; give a .txt file (one prompt per line) or a .csv"
        )
    try:
        if path.suffix.lower() == ".csv":
            rows = _read_csv(path)
        else:
            # utf-8-sig: a byte-order mark (Windows editors write one) is not part of the first prompt.
            lines = path.read_text(encoding="utf-8-sig").splitlines()
            # Blank lines and `#` comment lines are not prompts (data/*.txt files say what they are in comments).
            rows = [PromptRow(line.strip()) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    except UnicodeDecodeError as err:
        raise UserError(
            f"prompt file {path} is not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}); "
            "save it as UTF-8"
        ) from None
    except OSError as err:
        raise UserError(f"cannot read prompt file {path}: {err.strerror or err}") from None
    except csv.Error as err:
        raise UserError(f"{path} is not a readable CSV: {err}") from None
    if not rows:
        raise UserError(f"prompt file {path} has no prompts; put one prompt per line (or a CSV `prompt` column)")
    return rows


def _read_csv(path: Path) -> list[PromptRow]:
    # Strictly, so a quote out of place is a line naming it and not a prompt that swallows the rows after it; a
    # hand-edited file's spaces after a closing quote (`"a circle" ,1`) are dropped first, as a lenient read did.
    text = _SPACE_AFTER_QUOTE.sub('"', path.read_text(encoding="utf-8-sig"))
    lines = _CountedLines(text)
    reader = csv.DictReader(lines, strict=True)
    start = 1  # the line the next record begins on: where a quoted field that never closes opened
    try:
        fields = reader.fieldnames or []
        start = reader.line_num + 1
        if "prompt" not in fields:
            raise UserError(f"{path} has no 'prompt' column (columns: {', '.join(fields) or 'none'})")
        seed_column = next((c for c in SEED_COLUMNS if c in fields), None)
        rows = []
        for record in reader:
            line = reader.line_num
            start = line + 1
            if None in record or None in record.values():
                found = len(fields) + len(record.get(None) or []) - sum(v is None for v in record.values())
                raise UserError(
                    f"{path}:{line}: this row has {found} field(s), the header has {len(fields)}; quote a prompt "
                    'that holds commas ("a circle, red")'
                )
            prompt = (record["prompt"] or "").strip()
            if not prompt:
                continue
            seed = None
            if seed_column and (record[seed_column] or "").strip():
                try:
                    seed = int(record[seed_column])
                except ValueError:
                    raise UserError(f"{path}:{line}: seed '{record[seed_column]}' is not an integer") from None
                if seed < 0:
                    raise UserError(f"{path}:{line}: seed {seed} is negative; seeds are integers >= 0")
            rows.append(PromptRow(prompt, seed))
    except csv.Error as err:
        raise UserError(_quote_fault(path, start, lines.count, str(err))) from None
    return rows


class _CountedLines:
    """A text's lines, counting those read: the csv reader's own count stops at the last whole record, so a fault
    inside a record would be told on the line before it."""

    def __init__(self, text: str) -> None:
        self._lines = io.StringIO(text, newline="")
        self.count = 0

    def __iter__(self) -> _CountedLines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.count += 1
        return line


# Spaces between a closing quote and the next comma or the line's end (`"a circle" ,1`).
_SPACE_AFTER_QUOTE = re.compile(r'"[ \t]+(?=,|\r?\n|$)', re.MULTILINE)


def _quote_fault(path: Path, start: int, line: int, error: str) -> str:
    """The line for a quote strict reading refused: one that never closes, or text after a closing quote (a quote
    that closed a field opened lines before, or a prompt quoted in part)."""
    quote_inside = 'quote the whole prompt and double each quote inside it ("a 5"" square")'
    if "end of data" in error:
        return (
            f"{path}:{start}: a quoted field opens on this line and its quote never closes; close it, or {quote_inside}"
        )
    if "expected after" not in error:
        return f"{path}:{line}: not a readable CSV row ({error})"
    if start < line:
        return (
            f"{path}:{start}: a quoted field opens on this line and closes on line {line} with text after the quote: "
            f"a quote is missing or out of place; {quote_inside}"
        )
    return f"{path}:{line}: text follows a closing quote; {quote_inside}"


def prompt_id(prompt: str) -> str:
    """A readable, collision-safe folder name for a prompt."""
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:48] or "prompt"
    return f"{slug}-{hashlib.sha1(prompt.encode()).hexdigest()[:6]}"
