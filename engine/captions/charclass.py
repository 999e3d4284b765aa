"""Which code points make up tokens, and how each is case-folded: the tables the matcher reads.

A token is a maximal run of letters, combining marks and digits (Unicode general categories L*,
M* and N*); every other code point separates tokens. Each token code point is replaced by its
full case folding (``str.casefold``: "Straße" -> "strasse", "ΟΔΟΣ" -> "οδοσ"), so tokens compare
case-insensitively. Marks belong to tokens so that decomposed accents ("cafe" + U+0301) and
Indic vowel signs do not split words.

``token_text`` is the reference implementation in plain Python; ``unicode_tables`` gives the same
rules as arrays for the compiled matcher (engine.captions.matcher).
"""

from __future__ import annotations

import contextlib
import functools
import unicodedata
from pathlib import Path

import numpy as np

from engine import storage

TOKEN_CATEGORIES = ("L", "M", "N")
TABLE_NAMES = ("ascii_fold", "fold_offset", "fold_length", "fold_bytes")
MAX_CODE_POINT = 0x110000
# Planes 4-13 have no assigned code points and planes 15-16 are private use: skipping them makes
# the tables four times quicker to build. Plane 14 holds variation selectors (marks).
ASSIGNED_RANGES = (range(0, 0x40000), range(0xE0000, 0xF0000))


def is_token_char(char: str) -> bool:
    return unicodedata.category(char)[0] in TOKEN_CATEGORIES


def token_text(text: str) -> list[str]:
    """The case-folded tokens of ``text``, in order."""
    tokens, current = [], []
    for char in text:
        if is_token_char(char):
            current.append(char)
        elif current:
            tokens.append("".join(current).casefold())
            current = []
    if current:
        tokens.append("".join(current).casefold())
    return tokens


@functools.cache
def unicode_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ascii_fold uint8[128], fold_offset int32, fold_length uint8, fold_bytes uint8).

    ``ascii_fold[b]`` is the folded ASCII byte, 0 for a separator. For any code point,
    ``fold_length[cp] == 0`` marks a separator; otherwise the case folding of ``cp`` is
    ``fold_bytes[fold_offset[cp]:fold_offset[cp] + fold_length[cp]]`` (UTF-8). Built from this
    Python's ``unicodedata`` (under a second), then cached beside the compiled kernel, per
    Unicode version and version of these rules (this file's hash), so later processes (pool and
    Ray workers) load it in milliseconds."""
    rules = storage.sha256_file(__file__)[:16]
    cache = Path(__file__).resolve().parent / "__pycache__" / f"charclass-{unicodedata.unidata_version}-{rules}.npz"
    with contextlib.suppress(Exception):  # absent, unreadable or stale: rebuild it
        with np.load(cache, allow_pickle=False) as stored:
            return tuple(stored[name] for name in TABLE_NAMES)
    tables = build_tables()
    with contextlib.suppress(OSError):  # a read-only install: build in every process
        cache.parent.mkdir(exist_ok=True)
        with storage.atomic_path(cache) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **dict(zip(TABLE_NAMES, tables)))
    return tables


def build_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    offset = np.zeros(MAX_CODE_POINT, dtype=np.int32)
    length = np.zeros(MAX_CODE_POINT, dtype=np.uint8)
    blob = bytearray()
    category = unicodedata.category
    for cp in (cp for block in ASSIGNED_RANGES for cp in block):
        char = chr(cp)
        if category(char)[0] not in TOKEN_CATEGORIES:
            continue
        folded = char.casefold()
        encoded = folded.encode("utf-8") if folded != char or cp >= 0x80 else bytes((cp,))
        offset[cp] = len(blob)
        length[cp] = len(encoded)
        blob += encoded
    ascii_fold = np.array([ord(chr(b).casefold()) if is_token_char(chr(b)) else 0 for b in range(128)],
                          dtype=np.uint8)
    return ascii_fold, offset, length, np.frombuffer(bytes(blob), dtype=np.uint8)
