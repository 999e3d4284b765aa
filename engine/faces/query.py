"""Batched top-k search of prompt embeddings against a face index -> a hits table.

Hits table (one row per query and rank): ``query`` (int, the text's position), ``text``,
``rank`` (1..k), ``item_id``, ``score`` (cosine, float32), then the face table's columns
(key, image, source, labels). Every query gets exactly k hits, ties broken by item id.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from engine.errors import InputError, ModelMismatchError
from engine.faces import factories

TIE_MARGIN = 16  # extra neighbours fetched so ties at rank k can be ordered by item id


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k for every query row in one batched search: (scores (q, k) float32, item_ids (q, k)
    int64), by descending score, ties broken by ascending item id, exactly k per query.
    Raises InputError when k exceeds the index size. ``index`` is a FaceIndex or a FAISS index."""
    faiss_index = getattr(index, "faiss_index", index)
    queries = _check_queries(queries, faiss_index.d)
    k = _check_k(k, faiss_index.ntotal)
    total = faiss_index.ntotal
    fetch = min(total, k + max(TIE_MARGIN, k // 8))
    scores, ids = _top(index, faiss_index, queries, fetch)
    # A tie running through the last fetched rank may continue past it: fetch more for those rows.
    # (Rows an approximate index could not fill are answered exactly below: fetching more from
    # the same index would not fill them.)
    while fetch < total:
        open_rows = np.flatnonzero(scores[:, k - 1] == scores[:, -1])
        if open_rows.size == 0:
            break
        fetch = min(total, fetch * 2)
        more_scores, more_ids = _top(index, faiss_index, queries[open_rows], fetch)
        scores, ids = _widen(scores, fetch), _widen(ids, fetch, fill=-1)
        scores[open_rows], ids[open_rows] = more_scores, more_ids
    scores, ids = scores[:, :k], ids[:, :k]
    if (ids < 0).any():  # an approximate index found fewer than k: answer those rows exactly
        rows = np.flatnonzero((ids < 0).any(axis=1))
        scores[rows], ids[rows] = _exact(faiss_index, queries[rows], k)
    return np.ascontiguousarray(scores, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64)


def check_same_model(index, spec) -> None:
    """Raise ModelMismatchError when ``spec`` is not the model that built ``index``."""
    from engine.faces.models import weights_identity

    built = index.manifest["model"]
    asked = spec.describe()
    if built["name"] != asked["name"] or weights_identity(built) != weights_identity(asked):
        raise ModelMismatchError(
            f"index {index.name} was built with {built['name']} ({weights_identity(built)}); "
            f"refusing to query it with {asked['name']} ({weights_identity(asked)}): scores from "
            "different models are not comparable. Query with the index's own model (the default)")


def query_index(index, texts: Sequence[str], k: int, encoder=None) -> pl.DataFrame:
    """Encode ``texts`` with the index's model (or ``encoder``, which must be that model) and
    return the hits table."""
    from engine.faces.embed import Encoder

    encoder = encoder or Encoder.load(index.model_spec)
    check_same_model(index, encoder.spec)
    vectors = encoder.encode_texts(list(texts))
    scores, ids = search(index, vectors, k)
    return hits_table(index.faces, list(texts), scores, ids)


def hits_table(faces: pl.DataFrame, texts: list[str], scores: np.ndarray, ids: np.ndarray) -> pl.DataFrame:
    q, k = ids.shape
    frame = pl.DataFrame({
        "query": np.repeat(np.arange(q, dtype=np.int64), k),
        "text": np.repeat(np.asarray(texts, dtype=object), k).tolist(),
        "rank": np.tile(np.arange(1, k + 1, dtype=np.int64), q),
        "item_id": ids.ravel(), "score": scores.ravel(),
    })
    labels = faces.drop("item_id")[ids.ravel().tolist()]
    return pl.concat([frame, labels], how="horizontal")


def _top(index, faiss_index, queries: np.ndarray, fetch: int):
    """The ``fetch`` best per query from the right backend, ordered by (score desc, id asc)."""
    return _ordered(*_backend(index, faiss_index, fetch).search(queries, fetch))


def _backend(index, faiss_index, k: int):
    """The search backend for ``k`` results; a GPU copy is made once per FaceIndex."""
    cached = getattr(index, "_search_copy", None)
    if cached is not None and k <= factories.GPU_MAX_K:
        return cached
    backend = factories.search_backend(faiss_index, k)
    if factories.is_gpu_index(backend) and hasattr(index, "_search_copy"):
        index._search_copy = backend
    return backend


def _ordered(scores: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row by descending score, then ascending id; missing results (-1) last."""
    missing = ids < 0
    rows = np.repeat(np.arange(ids.shape[0]), ids.shape[1])
    order = np.lexsort((ids.ravel(), -scores.ravel(), missing.ravel(), rows)).reshape(ids.shape)
    order -= np.arange(ids.shape[0])[:, None] * ids.shape[1]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


def _widen(array: np.ndarray, width: int, fill=np.nan) -> np.ndarray:
    out = np.full((array.shape[0], width), fill, dtype=array.dtype)
    out[:, :array.shape[1]] = array
    return out


EXACT_BLOCK = 16_384  # index rows scored at a time by the exact fallback


def _exact(faiss_index, queries: np.ndarray, k: int):
    """Exact top-k by (score desc, id asc), reading the index's vectors back a block at a time
    (an on-disk index never has to fit in memory); for the few rows an approximate index missed."""
    vectors = factories.ReconstructedRows(faiss_index)
    scores = np.empty((len(queries), 0), np.float32)
    ids = np.empty((len(queries), 0), np.int64)
    for start in range(0, len(vectors), EXACT_BLOCK):
        block = vectors[start:start + EXACT_BLOCK]
        scores = np.hstack([scores, queries @ block.T])
        ids = np.hstack([ids, np.broadcast_to(np.arange(start, start + len(block)), (len(queries), len(block)))])
        best = np.lexsort((ids, -scores), axis=-1)[:, :k]  # a total order: keeping the best k is exact
        scores, ids = np.take_along_axis(scores, best, 1), np.take_along_axis(ids, best, 1)
    return scores, ids


def _check_queries(queries, dim: int) -> np.ndarray:
    queries = np.asarray(queries)
    if queries.ndim != 2 or queries.shape[1] != dim:
        raise InputError(f"queries of shape {queries.shape} do not fit an index of dimension {dim}")
    if queries.shape[0] == 0:
        raise InputError("no queries to search")
    return np.ascontiguousarray(queries, dtype=np.float32)


def _check_k(k, total: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    if k > total:
        raise InputError(f"k = {k} exceeds the index size of {total} items")
    return int(k)
