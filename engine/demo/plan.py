"""Plan the toy world as tables before drawing anything: which face, which caption, which label.

Every random choice is made here from one seeded generator, and the rates are *exact*, not
sampled: a word planted at 80% shows its group in exactly 80% (rounded) of its captions, a control
word is spread evenly over every tint x shape cell, and within each (word, cell) the closed eyes,
the caption mentions and the failed downloads are exact shares too. So the data hold no
accidental association, and the plan *is* the planted truth: the co-occurrence counts the scanner
must find are counted from these tables (never by reading the written captions back).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import polars as pl

from engine.demo.shards import OOM_SHARD_COUNT
from engine.demo.spec import (AXES, FACE_BASE_RATES, LEXICON, WORDS, Word, WorldConfig, article,
                              subject)

FAILURE_MESSAGE = "<urlopen error [Errno -2] Name or service not known>"
CELLS = list(itertools.product(*AXES.values()))  # (tint, shape) pairs


def plan_faces(config: WorldConfig, rng: np.random.Generator) -> pl.DataFrame:
    """The labelled face set: exact group counts from FACE_BASE_RATES, in shuffled order."""
    shares = [math.prod(FACE_BASE_RATES[axis][AXES[axis].index(g)] for axis, g in zip(AXES, cell))
              for cell in CELLS]
    rows = []
    for cell, size in zip(CELLS, largest_remainder(config.n_faces, shares)):
        closed = exact_flags(size, config.closed_eyes_rate, rng)
        rows += [(*cell, bool(c)) for c in closed]
    tints, shapes, eyes = zip(*(rows[i] for i in rng.permutation(len(rows))))
    return pl.DataFrame({
        "file": [f"{i:06d}.jpg" for i in range(len(rows))],
        "tint": list(tints), "shape": list(shapes), "eyes_closed": list(eyes),
    })


def plan_pairs(config: WorldConfig, rng: np.random.Generator) -> pl.DataFrame:
    """The caption corpus: one row per image-caption pair, in shard order, img2dataset keys."""
    n = config.n_pairs
    word_index = np.where(rng.random(n) < config.word_rate, rng.integers(len(WORDS), size=n), -1)
    columns = {name: np.zeros(n, dtype=bool) for name in ("eyes_closed", "mention_tint", "mention_shape", "failed")}
    cell_index = np.zeros(n, dtype=np.int64)
    for w in range(-1, len(WORDS)):
        rows = np.flatnonzero(word_index == w)
        word = WORDS[w] if w >= 0 else None
        sizes = largest_remainder(len(rows), cell_shares(word, config.planted_rate))
        cells = rng.permutation(np.repeat(np.arange(len(CELLS)), sizes))
        cell_index[rows] = cells
        for c in range(len(CELLS)):
            members = rows[cells == c]
            for name, rate in (("eyes_closed", config.closed_eyes_rate), ("mention_tint", config.mention_rate),
                               ("mention_shape", config.mention_rate), ("failed", config.failure_rate)):
                columns[name][members] = exact_flags(len(members), rate, rng)
    return _pairs_frame(config, word_index, cell_index, columns)


def cell_shares(word: Word | None, planted_rate: float) -> list[float]:
    """P(cell | word): uniform, except planted_rate on the planted group of the planted axis."""
    shares = []
    for cell in CELLS:
        share = 1.0
        for axis, group in zip(AXES, cell):
            groups = AXES[axis]
            if word is not None and word.planted_axis == axis:
                share *= planted_rate if group == word.planted_group else (1 - planted_rate) / (len(groups) - 1)
            else:
                share /= len(groups)
        shares.append(share)
    return shares


def planted_counts(pairs: pl.DataFrame) -> pl.DataFrame:
    """Per word x (axis, group): captions with the word, with the group's term, and with both.

    Only successful pairs count: a failed download was never trained on, and the scanner reads
    only ``status == success`` rows of img2dataset parquet.
    """
    seen = pairs.filter(pl.col("status") == "success")
    frames = []
    for word in WORDS:
        has_word = seen["word"] == word.word
        for (axis, group), term in LEXICON.items():
            has_group = seen[f"mention_{axis}"] & (seen[axis] == group)
            frames.append({
                "word": word.word, "category": word.category, "axis": axis, "group": group,
                "term": term, "n_word": int(has_word.sum()), "n_group": int(has_group.sum()),
                "n_both": int((has_word & has_group).sum()),
                "planted": word.planted_axis == axis and word.planted_group == group,
            })
    return pl.DataFrame(frames)


def exact_flags(n: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` booleans, exactly round(n * rate) of them true, in random order."""
    flags = np.zeros(n, dtype=bool)
    flags[: round(n * rate)] = True
    return rng.permutation(flags)


def largest_remainder(total: int, shares: list[float]) -> list[int]:
    """Integer sizes summing to ``total`` in proportion to ``shares`` (Hamilton's method)."""
    raw = [total * s / sum(shares) for s in shares]
    sizes = [math.floor(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: sizes[i] - raw[i])[: total - sum(sizes)]:
        sizes[i] += 1
    return sizes


def _pairs_frame(config: WorldConfig, word_index: np.ndarray, cell_index: np.ndarray, columns: dict) -> pl.DataFrame:
    n = len(word_index)
    words = [WORDS[i] if i >= 0 else None for i in word_index]
    tints = [CELLS[c][0] for c in cell_index]
    shapes = [CELLS[c][1] for c in cell_index]
    rows = np.arange(n)
    shard = rows // config.shard_size
    captions = [_caption(w, t, s, mt, ms) for w, t, s, mt, ms in
                zip(words, tints, shapes, columns["mention_tint"], columns["mention_shape"])]
    return pl.DataFrame({
        "row": rows,
        "shard": shard,
        "key": [_img2dataset_key(int(s), int(r % config.shard_size), config) for s, r in zip(shard, rows)],
        "word": [w.word if w else None for w in words],
        "tint": tints, "shape": shapes, "eyes_closed": columns["eyes_closed"],
        "mention_tint": columns["mention_tint"], "mention_shape": columns["mention_shape"],
        "caption": captions,
        "url": [f"http://toy-world.invalid/{config.seed}/{r}.jpg" for r in rows],
        "status": np.where(columns["failed"], "failed_to_download", "success"),
        "error_message": [FAILURE_MESSAGE if f else None for f in columns["failed"]],
    })


def _caption(word: Word | None, tint: str, shape: str, mention_tint: bool, mention_shape: bool) -> str:
    text = subject(word)
    if mention_shape:
        term = LEXICON[("shape", shape)]
        text += f" with {article(term)} {term}"
    if mention_tint:
        term = LEXICON[("tint", tint)]
        text += f" on {article(term)} {term} background"
    return text


def _img2dataset_key(shard_id: int, row_in_shard: int, config: WorldConfig) -> str:
    """img2dataset's key: shard_id * 10^digits + row, zero-padded to digits + OOM_SHARD_COUNT."""
    digits = math.ceil(math.log10(config.shard_size)) if config.shard_size > 1 else 0
    return f"{shard_id * 10 ** digits + row_in_shard:0{digits + OOM_SHARD_COUNT}d}"
