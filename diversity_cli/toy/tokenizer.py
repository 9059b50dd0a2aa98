"""A CLIP tokenizer for the toy language, built offline: every vocabulary word is one token.

CLIP's tokenizer is byte-pair encoding over characters with an end-of-word marker. Its vocabulary here holds the
printable ASCII characters (alone and word-final), so any ASCII text encodes, and merges learned from the toy
vocabulary, so each toy word becomes a single token. Non-ASCII characters become the unknown token.
"""

from __future__ import annotations

import json
import string
from collections import Counter
from pathlib import Path

from ..core.atomic import write_text
from .data import VOCABULARY

MAX_LENGTH = 20  # the longest toy caption is 13 tokens with its start and end tokens
END_OF_WORD = "</w>"
SPECIAL = ["<|startoftext|>", "<|endoftext|>"]


def learn_merges(words: list[str]) -> list[tuple[str, str]]:
    """Byte-pair merges, most frequent pair first, until every word is a single symbol."""
    pieces = {word: [*word[:-1], word[-1] + END_OF_WORD] for word in words}
    merges: list[tuple[str, str]] = []
    while any(len(p) > 1 for p in pieces.values()):
        pairs = Counter(pair for p in pieces.values() for pair in zip(p, p[1:], strict=False))
        best = max(pairs, key=lambda pair: (pairs[pair], pair))  # ties broken by the pair itself: deterministic
        merges.append(best)
        for word, p in pieces.items():
            pieces[word] = _merge(p, best)
    return merges


def _merge(symbols: list[str], pair: tuple[str, str]) -> list[str]:
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


def write_tokenizer_files(folder: str | Path) -> Path:
    """vocab.json and merges.txt of the toy tokenizer in `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = [c for c in string.printable if not c.isspace()]
    merges = learn_merges(VOCABULARY)
    tokens = chars + [c + END_OF_WORD for c in chars] + ["".join(pair) for pair in merges] + SPECIAL
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    write_text(folder / "vocab.json", json.dumps(vocab, indent=0))
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    write_text(folder / "merges.txt", "\n".join(lines) + "\n")
    return folder


def build_tokenizer(folder: str | Path):
    """Write the tokenizer files to `folder` and load them as a CLIPTokenizer (padding to MAX_LENGTH)."""
    from transformers import CLIPTokenizer

    write_tokenizer_files(folder)
    # Given file paths in its constructor, transformers 5's CLIPTokenizer silently ends up with a 2-token
    # vocabulary; from_pretrained on the folder reads them properly.
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=MAX_LENGTH)
