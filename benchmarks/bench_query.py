"""Batched query: one FAISS search for 1,000 prompts vs a per-prompt numpy loop, same run.

Target: 1,000 prompt vectors against 100,000 indexed 512-d vectors, top-k, at least 20x faster
through engine.faces.query.search (one batched exact inner-product search, ties by item id)
than a loop that scores and ranks one prompt at a time with numpy under the same contract
(exactly k, descending score, ties by ascending id: a stable argsort of each prompt's scores).
Also reported, not the target: a hand-optimised loop that partially sorts with argpartition
(its tie order at rank k is arbitrary, so it does not meet the contract). All must return
equally good lists: the same ids, except where float32 rounding swaps items whose scores
differ by < 1e-5.
Prompt vectors are random unit vectors: encoding is measured by bench_prompts.py.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def unit_rows(count: int, dim: int, rng) -> np.ndarray:
    rows = rng.standard_normal((count, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def per_prompt_loop(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """The baseline: for each prompt, all scores, then a stable sort (ties by ascending id)."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for row, query in enumerate(queries):
        out[row] = np.argsort(-(vectors @ query), kind="stable")[:k]
    return out


def per_prompt_partial_loop(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """For reference: each prompt's k best by argpartition, then ordered (ties at rank k arbitrary)."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for row, query in enumerate(queries):
        scores = vectors @ query
        best = np.argpartition(-scores, k - 1)[:k]
        out[row] = best[np.lexsort((best, -scores[best]))]
    return out


def rank_score_gap(vectors, queries, ids_a, ids_b) -> float:
    """Largest difference, at any rank, between the exact (float64) scores of two top-k lists."""
    gaps = [np.abs(vectors[a].astype(np.float64) @ q - vectors[b].astype(np.float64) @ q).max()
            for q, a, b in zip(queries.astype(np.float64), ids_a, ids_b, strict=True)]
    return float(max(gaps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--prompts", type=int, default=1_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("-k", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=10,
                        help="batched searches (median kept), each followed by 1/rounds of the loops")
    args = parser.parse_args()

    import faiss

    from engine.faces.query import search

    rng = np.random.default_rng(0)
    vectors, queries = unit_rows(args.items, args.dim, rng), unit_rows(args.prompts, args.dim, rng)
    index = faiss.IndexFlatIP(args.dim)
    index.add(vectors)
    search(index, queries[:10], args.k)  # warm up
    # Interleave: the whole batched search, then one chunk of each loop, round after round, so
    # load from other processes (a shared machine) falls on all three alike.
    batched_times, loop_s, partial_s = [], 0.0, 0.0
    looped, partial = [], []
    for chunk in np.array_split(np.arange(args.prompts), args.rounds):
        began = time.perf_counter()
        _, batched = search(index, queries, args.k)
        batched_times.append(time.perf_counter() - began)
        began = time.perf_counter()
        looped.append(per_prompt_loop(vectors, queries[chunk], args.k))
        loop_s += time.perf_counter() - began
        began = time.perf_counter()
        partial.append(per_prompt_partial_loop(vectors, queries[chunk], args.k))
        partial_s += time.perf_counter() - began
    batched_s = float(np.median(batched_times))
    looped, partial = np.concatenate(looped), np.concatenate(partial)
    gap = max(rank_score_gap(vectors, queries, batched, looped),
              rank_score_gap(vectors, queries, batched, partial))
    result = {
        "items": args.items, "prompts": args.prompts, "dim": args.dim, "k": args.k,
        "threads": faiss.omp_get_max_threads(), "batched_s_median": round(batched_s, 3),
        "batched_s_range": [round(min(batched_times), 3), round(max(batched_times), 3)],
        "numpy_loop_s": round(loop_s, 3), "speedup": round(loop_s / batched_s, 1),
        "numpy_argpartition_loop_s": round(partial_s, 3),
        "speedup_vs_argpartition_loop": round(partial_s / batched_s, 1),
        "identical_rows": float(np.mean((batched == looped).all(axis=1))),
        "max_rank_score_gap": gap, "target_speedup": 20.0,
    }
    result["pass"] = result["speedup"] >= 20 and gap < 1e-5
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
