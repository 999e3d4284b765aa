"""Batched top-k search of prompt embeddings against a face index.

CONTRACT (stub written before the implementation; the signatures are what other stages use).
"""

from __future__ import annotations

import numpy as np


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k for every query row in one batched search: (scores (q, k) float32, item_ids (q, k)
    int64), by descending score, ties broken by ascending item id, exactly k per query.
    Raises InputError when k exceeds the index size."""
    raise NotImplementedError


def check_same_model(index, spec) -> None:
    """Raise ModelMismatchError when ``spec`` is not the model that built ``index``."""
    raise NotImplementedError
