"""FAISS index kinds: exact inner product by default, IVF/HNSW on request or above a size.

An approximate index is only as good as its recall, so every non-exact build measures
recall@k against exact search on a sample of the indexed vectors and records it.
Search backends: when faiss has GPU support and a GPU is present, an exact index is searched on
a GPU copy; otherwise every kind is searched by faiss on the CPU. (A numpy-sgemm + torch top-k
search was tried: faster only while other jobs competed for the cores, 20% slower on a quiet
machine, see benchmarks/README.md.)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from engine.errors import InputError

log = logging.getLogger(__name__)

EXACT = "Flat"
AUTO = "auto"
AUTO_EXACT_LIMIT = 1_000_000  # up to this many vectors "auto" stays exact
AUTO_APPROXIMATE = "HNSW32,Flat"
RECALL_K, RECALL_QUERIES, RECALL_SEED = 10, 1000, 0
RECALL_BLOCK = 16_384  # indexed rows scored at a time for the exact answers
DEFAULT_SEARCH_PARAMS = {"IVF": "nprobe={nprobe}", "HNSW": "efSearch=128"}
GPU_MAX_K = 2048  # faiss GPU k-selection limit


@dataclass
class BuiltIndex:
    index: object
    factory: str
    search_params: str
    recall: dict | None

    def describe(self) -> dict:
        return {"factory": self.factory, "exact": self.factory == EXACT, "metric": "inner_product",
                "search_params": self.search_params, "recall_vs_exact": self.recall}


def choose_factory(factory: str, count: int) -> str:
    if factory == AUTO:
        return EXACT if count <= AUTO_EXACT_LIMIT else AUTO_APPROXIMATE
    return factory


def build(vectors: np.ndarray, factory: str = EXACT) -> BuiltIndex:
    """Build, train if needed, fill, and (for approximate kinds) measure recall."""
    factory = choose_factory(factory or EXACT, vectors.shape[0])
    index = _create(factory, vectors.shape[1])
    if not index.is_trained:
        try:
            index.train(vectors)
        except RuntimeError as exc:
            raise InputError(f"cannot train FAISS index {factory!r} on {len(vectors)} vectors: "
                             f"{_first_line(exc)}") from exc
    index.add(vectors)
    if factory == EXACT:
        return BuiltIndex(index, factory, "", None)
    params = _default_search_params(index)
    apply_search_params(index, params)
    recall = measure_recall(index, vectors)
    log.info("index %s: recall@%d vs exact = %.4f", factory, recall["k"], recall["recall"])
    return BuiltIndex(index, factory, params, recall)


def _create(factory: str, dim: int):
    import faiss

    if factory == EXACT:
        return faiss.IndexFlatIP(dim)
    try:
        return faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise InputError(f"FAISS cannot build index {factory!r}: {_first_line(exc)}; try Flat (exact), "
                         "IVF1024,Flat or HNSW32,Flat") from exc


def _default_search_params(index) -> str:
    import faiss

    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        nprobe = min(ivf.nlist, max(8, ivf.nlist // 8))
        return DEFAULT_SEARCH_PARAMS["IVF"].format(nprobe=nprobe)
    if "HNSW" in type(index).__name__:
        return DEFAULT_SEARCH_PARAMS["HNSW"]
    return ""


def apply_search_params(index, params: str) -> None:
    import faiss

    if params:
        faiss.ParameterSpace().set_index_parameters(index, params)


def measure_recall(index, vectors: np.ndarray, k: int = RECALL_K) -> dict:
    """recall@k of ``index`` against exact inner-product search, queries sampled from the data."""
    rng = np.random.default_rng(RECALL_SEED)
    sample = rng.choice(len(vectors), size=min(RECALL_QUERIES, len(vectors)), replace=False)
    blocks = ((vectors[start:start + RECALL_BLOCK], start) for start in range(0, len(vectors), RECALL_BLOCK))
    return recall_at_k(index, vectors[np.sort(sample)], blocks, min(k, len(vectors)))


def recall_at_k(index, queries: np.ndarray, blocks, k: int) -> dict:
    """recall@k of ``index`` for ``queries``; the exact answers come from one pass over
    ``blocks``: (float32 rows, id of the first) in row order, so the vectors need not fit in
    memory together."""
    import faiss

    exact = faiss.ResultHeap(len(queries), k, keep_max=True)
    for rows, offset in blocks:
        scores = queries @ rows.T
        best = np.argpartition(-scores, k - 1, axis=1)[:, :k] if scores.shape[1] > k else \
            np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
        exact.add_result(np.take_along_axis(scores, best, 1), best + offset)
    exact.finalize()
    _, found = index.search(queries, k)
    hits = sum(len(set(t) & set(f)) for t, f in zip(exact.I.tolist(), found.tolist(), strict=True))
    return {"k": k, "queries": len(queries), "recall": hits / (k * len(queries))}


def reconstruct_all(index) -> np.ndarray:
    """Every vector of the index, in id order, in memory."""
    return ReconstructedRows(index)[:]


class ReconstructedRows:
    """An index's vectors read back a block of rows at a time (``len()`` and row slices): what
    the audit needs from an on-disk index, whose vectors need not fit in memory."""

    def __init__(self, index):
        import faiss

        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None:
            ivf.make_direct_map()
        self.index = index

    def __len__(self) -> int:
        return self.index.ntotal

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop, step = rows.indices(len(self))
        if step != 1:
            raise IndexError("only contiguous row slices are read back")
        return self.index.reconstruct_n(start, max(0, stop - start)).astype(np.float32, copy=False)


def search_backend(index, k: int):
    """What to search with (anything with faiss's ``search(queries, k)``): a GPU copy of an exact
    index when faiss and a GPU allow it, else the index itself."""
    import faiss

    exact = isinstance(index, faiss.IndexFlat) and index.metric_type == faiss.METRIC_INNER_PRODUCT
    if exact and k <= GPU_MAX_K and gpu_available():
        return faiss.index_cpu_to_gpu(_gpu_resources(), 0, index)
    return index


def is_gpu_index(index) -> bool:
    return type(index).__name__.startswith("GpuIndex")


def gpu_available() -> bool:
    import faiss

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


_GPU_RESOURCES = []


def _gpu_resources():
    import faiss

    if not _GPU_RESOURCES:
        _GPU_RESOURCES.append(faiss.StandardGpuResources())
    return _GPU_RESOURCES[0]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[-1][:300] if text else type(exc).__name__
