"""Significance of retrieval skew against random k-subsets of the index, with BH q-values.

The null hypothesis: a query's top k is a uniformly random k-subset of the n indexed items. Its
group counts then follow the multivariate hypergeometric law of the index's group sizes (the
unlabelled items of an attribute form one more colour), so one null distribution serves every
query of an attribute.

- KL@k to the base rate is the per-query test statistic (it is 0 for a top k that mirrors the
  index); p = P_null(KL >= observed). Exact by enumerating every count vector when there are at
  most ``exact_max`` of them (e.g. gender, age3 at k = 100), otherwise from ``draws`` seeded
  multivariate-hypergeometric draws, p = (1 + #{draw >= observed}) / (draws + 1).
- Each group's count has an exact two-sided hypergeometric p-value (tables at most as likely as the
  observed one, the rule of Fisher's exact test).
- Benjamini-Hochberg q-values across queries (NaN p-values are left out of the family).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

RELATIVE_TIE = 1e-9  # statistics this close count as equal (the same counts give the same value)


@dataclass(frozen=True)
class NullDistribution:
    values: np.ndarray  # sorted statistic values (NaN-free)
    tail: np.ndarray  # tail[i] = P(statistic >= values[i])
    method: str  # "exact" | "simulated"
    draws: int  # 0 for exact

    def p_values(self, observed: np.ndarray) -> np.ndarray:
        """P_null(statistic >= observed) for each observed value (NaN stays NaN)."""
        observed = np.asarray(observed, dtype=np.float64)
        threshold = observed - RELATIVE_TIE * np.maximum(1.0, np.abs(observed))
        index = np.searchsorted(self.values, np.nan_to_num(threshold, nan=np.inf), side="left")
        tail = np.append(self.tail, 0.0)[index]
        if self.method == "simulated":
            tail = (1.0 + tail * self.draws) / (self.draws + 1.0)
        return np.where(np.isnan(observed), np.nan, tail)


def null_distribution(colour_sizes: np.ndarray, k: int, statistic: Callable[[np.ndarray], np.ndarray], *,
                      exact_max: int, draws: int, seed: int | list[int]) -> NullDistribution:
    """Null distribution of ``statistic(counts (m, C))`` for random k-subsets of items coloured
    with ``colour_sizes`` (C,)."""
    colour_sizes = np.asarray(colour_sizes, dtype=np.int64)
    if n_compositions(k, len(colour_sizes)) <= exact_max:
        counts = compositions(k, colour_sizes)
        weights = np.exp(log_multivariate_hypergeom(counts, colour_sizes))
        method, n_draws = "exact", 0
    else:
        rng = np.random.default_rng(seed)
        counts = rng.multivariate_hypergeometric(colour_sizes, k, size=draws)
        weights = np.full(draws, 1.0 / draws)
        method, n_draws = "simulated", draws
    values = np.asarray(statistic(counts), dtype=np.float64)
    finite = ~np.isnan(values)
    values, weights = values[finite], weights[finite]
    order = np.argsort(values, kind="stable")
    tail = np.cumsum(weights[order][::-1])[::-1]
    return NullDistribution(values[order], np.minimum(tail, 1.0), method, n_draws)


def n_compositions(k: int, parts: int) -> int:
    """Count vectors of ``parts`` non-negative integers summing to k (before size limits)."""
    return math.comb(k + parts - 1, parts - 1)


def compositions(k: int, sizes: np.ndarray) -> np.ndarray:
    """Every count vector (m, C) with sum k and count_c <= sizes_c (stars and bars)."""
    parts = len(sizes)
    bars = np.fromiter(itertools.chain.from_iterable(itertools.combinations(range(k + parts - 1), parts - 1)),
                       dtype=np.int64).reshape(-1, parts - 1)
    edges = np.hstack([np.full((len(bars), 1), -1), bars, np.full((len(bars), 1), k + parts - 1)])
    counts = np.diff(edges, axis=1) - 1
    return counts[(counts <= sizes).all(axis=1)]


def log_comb(n, r) -> np.ndarray:
    """ln C(n, r) for integer arrays, elementwise; -inf where r < 0 or r > n. ``math.lgamma`` runs
    once per distinct argument (counts and group sizes repeat a lot), so no scipy import is needed."""
    n, r = np.broadcast_arrays(np.asarray(n, dtype=np.int64), np.asarray(r, dtype=np.int64))
    valid = (r >= 0) & (r <= n)
    arguments = np.stack([n + 1, np.where(valid, r, 0) + 1, np.where(valid, n - r, 0) + 1])
    distinct, inverse = np.unique(arguments, return_inverse=True)
    lgamma = np.array([math.lgamma(x) for x in distinct.tolist()])[inverse.reshape(arguments.shape)]
    return np.where(valid, lgamma[0] - lgamma[1] - lgamma[2], -np.inf)


def log_multivariate_hypergeom(counts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """ln P(counts) for a k-subset drawn without replacement from colours of ``sizes``."""
    k = int(counts[0].sum()) if len(counts) else 0
    return log_comb(sizes, counts).sum(axis=1) - log_comb(sizes.sum(), k)


def group_count_p_values(counts: np.ndarray, group_sizes: np.ndarray, n_items: int, k: int) -> np.ndarray:
    """Two-sided hypergeometric p-value of each count (q, G): P(X with pmf <= pmf(observed))."""
    support = np.arange(k + 1)[None, :]
    sizes = np.asarray(group_sizes)[:, None]
    pmf = np.exp(log_comb(sizes, support) + log_comb(n_items - sizes, k - support) - log_comb(n_items, k))
    order = np.sort(pmf, axis=1)
    cumulative = np.cumsum(order, axis=1)
    table = np.empty_like(pmf)
    for g in range(pmf.shape[0]):  # G rows, each vectorised over the support
        index = np.searchsorted(order[g], pmf[g] * (1 + 1e-7), side="right") - 1
        table[g] = cumulative[g, index]
    return np.minimum(table[np.arange(pmf.shape[0])[None, :], counts], 1.0)


def bh_q_values(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values of a 1-d family; NaN entries are not in the family."""
    p = np.asarray(p_values, dtype=np.float64)
    q = np.full_like(p, np.nan)
    present = np.flatnonzero(~np.isnan(p))
    if len(present) == 0:
        return q
    order = present[np.argsort(p[present], kind="stable")]
    ranked = p[order] * len(order) / np.arange(1, len(order) + 1)
    q[order] = np.minimum(np.minimum.accumulate(ranked[::-1])[::-1], 1.0)
    return q
