"""Embedded shards for the on-disk index tests: clustered unit vectors in uneven .npy shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np

DIM = 24


def write_shards(folder: Path, sizes=(150, 90, 200, 1, 120), seed: int = 0) -> tuple[list[Path], np.ndarray]:
    """Clustered unit vectors cut into shards of uneven sizes; the files and all rows in order."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((12, DIM))
    rows = centres[rng.integers(0, 12, sum(sizes))] + 0.4 * rng.standard_normal((sum(sizes), DIM))
    rows = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    files, start = [], 0
    for i, size in enumerate(sizes):
        files.append(folder / f"shard-{i:05d}.npy")
        np.save(files[-1], rows[start:start + size])
        start += size
    return files, rows


def lists_of(index) -> list[tuple[np.ndarray, bytes]]:
    """Every inverted list's ids and codes, in list order."""
    import faiss

    invlists = faiss.extract_index_ivf(index).invlists
    found = []
    for list_no in range(invlists.nlist):
        size = invlists.list_size(list_no)
        ids = faiss.rev_swig_ptr(invlists.get_ids(list_no), size).copy() if size else np.empty(0)
        codes = faiss.rev_swig_ptr(invlists.get_codes(list_no), size * invlists.code_size).tobytes() \
            if size else b""
        found.append((ids, codes))
    return found
