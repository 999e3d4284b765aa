"""Rank correlations (Spearman's rho, Kendall's tau-b) with a seeded cluster bootstrap.

Points come as (clusters, members) arrays: a cluster is one word and its members are that word's
groups, so a replicate resamples whole words and the dependence between a word's groups stays
inside it. A replicate is a vector of cluster multiplicities, and both statistics are computed
from the original points weighted by them, never by materialising resampled arrays:

- Spearman: one sort of the original values; a point's average rank in a replicate is the weight
  below its tie group plus (the group's weight + 1) / 2; rho is the weighted Pearson correlation
  of those ranks.
- Kendall tau-b: sums over point pairs of sign(dx) sign(dy), [dx = 0] and [dy = 0], aggregated
  once into cluster x cluster matrices; a replicate's sums are quadratic forms in its
  multiplicities (a point repeated m times adds m(m-1)/2 pairs tied in both).
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

CORRELATION_SCHEMA = {
    "n_clusters": pl.Int64, "n_points": pl.Int64,
    "spearman": pl.Float64, "spearman_low": pl.Float64, "spearman_high": pl.Float64, "spearman_p": pl.Float64,
    "kendall": pl.Float64, "kendall_low": pl.Float64, "kendall_high": pl.Float64, "kendall_p": pl.Float64,
}


def weighted_ranks(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average ranks of ``values`` (n,) in each sample that holds point p ``weights[b, p]`` times."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    group = np.cumsum(np.r_[True, ordered[1:] != ordered[:-1]]) - 1
    totals = np.add.reduceat(weights[:, order], starts, axis=1)
    group_rank = np.cumsum(totals, axis=1) - totals + (totals + 1) / 2
    ranks = np.empty(weights.shape)
    ranks[:, order] = group_rank[:, group]
    return ranks


def spearman_weighted(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Spearman's rho of points (x, y) (n,) in each weighted sample (b, n); NaN if constant."""
    rx, ry = weighted_ranks(x, weights), weighted_ranks(y, weights)
    total = weights.sum(axis=1, keepdims=True)
    rx -= (weights * rx).sum(axis=1, keepdims=True) / total
    ry -= (weights * ry).sum(axis=1, keepdims=True) / total
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights * rx * ry).sum(1) / np.sqrt((weights * rx * rx).sum(1) * (weights * ry * ry).sum(1))


def pair_sums(x: np.ndarray, y: np.ndarray, max_cells: int = 4_000_000) -> np.ndarray:
    """(3, clusters, clusters): sums over point pairs p != q (p in one cluster, q in the other) of
    sign(dx) sign(dy), [dx = 0] and [dy = 0], for points laid out as (clusters, members)."""
    n_clusters, members = x.shape
    xf, yf, n = x.ravel(), y.ravel(), x.size
    sums = np.zeros((3, n_clusters, n_clusters))
    step = max(1, max_cells // (n * members))  # clusters per block of rows
    for first in range(0, n_clusters, step):
        last = min(first + step, n_clusters)
        rows = np.arange(first * members, last * members)
        sx, sy = np.sign(xf[rows, None] - xf[None, :]), np.sign(yf[rows, None] - yf[None, :])
        tied_x, tied_y = sx == 0, sy == 0
        tied_x[rows - rows[0], rows] = tied_y[rows - rows[0], rows] = False  # no pair with itself
        for k, pairs in enumerate((sx * sy, tied_x, tied_y)):
            sums[k, first:last] = pairs.reshape(last - first, members, n_clusters, members).sum((1, 3))
    return sums


def kendall_clusters(x: np.ndarray, y: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of points (clusters, members) for each row of cluster multiplicities
    ``counts`` (b, clusters); NaN where x or y is constant."""
    members = x.shape[1]
    concordance, tied_x, tied_y = pair_sums(x, y)
    counts = np.asarray(counts, dtype=float)
    n = counts.sum(1) * members
    pairs = n * (n - 1) / 2
    repeats = (counts * (counts - 1) / 2).sum(1) * members  # copies of one point: tied in x and y

    def form(matrix):
        return 0.5 * ((counts @ matrix) * counts).sum(1)

    with np.errstate(invalid="ignore", divide="ignore"):
        return form(concordance) / np.sqrt((pairs - form(tied_x) - repeats) * (pairs - form(tied_y) - repeats))


def _interval(stats: np.ndarray, confidence: float) -> tuple[float, float]:
    finite = stats[np.isfinite(stats)]
    if not finite.size:
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_rank_correlation(x: np.ndarray, y: np.ndarray, *, n_boot: int = 1000,
                               confidence: float = 0.95, seed: int = 0) -> dict:
    """Spearman and Kendall between x and y, both (clusters, members), with percentile intervals
    from ``n_boot`` replicates that resample clusters; p-values (scipy) when members == 1."""
    from scipy.stats import kendalltau, spearmanr

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.ndim == 1:
        x, y = x[:, None], y[:, None]
    n_clusters, members = x.shape
    counts = np.ones((1, n_clusters))  # row 0: the sample itself
    if n_boot:
        picks = np.random.default_rng(seed).integers(0, n_clusters, size=(n_boot, n_clusters))
        flat = (picks + n_clusters * np.arange(n_boot)[:, None]).ravel()
        drawn = np.bincount(flat, minlength=n_boot * n_clusters).reshape(n_boot, n_clusters)
        counts = np.vstack([counts, drawn.astype(float)])
    stats = {"spearman": spearman_weighted(x.ravel(), y.ravel(), np.repeat(counts, members, axis=1)),
             "kendall": kendall_clusters(x, y, counts)}
    row = {"n_clusters": n_clusters, "n_points": int(x.size), "spearman_p": None, "kendall_p": None}
    for name, values in stats.items():
        row[name] = float(values[0])
        row[f"{name}_low"], row[f"{name}_high"] = _interval(values[1:], confidence) if n_boot else (None, None)
    if members == 1 and n_clusters >= 3:
        row["spearman_p"] = float(spearmanr(x[:, 0], y[:, 0]).pvalue)
        row["kendall_p"] = float(kendalltau(x[:, 0], y[:, 0]).pvalue)
    return row


def correlation_table(points: pl.DataFrame, x: str, y: str, *, by: list[str], cluster: str, member: str,
                      pooled: str, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0) -> pl.DataFrame:
    """Rank correlation of columns ``x`` and ``y`` for each ``by`` group: one row per ``member``
    (its points, one per cluster) and one for all members pooled. Clusters lacking a member are
    left out of the pooled row; rows with fewer than 3 clusters are skipped; NaN becomes null."""
    rows = []
    for key, part in sorted(points.partition_by(by, as_dict=True).items()):
        wide = {name: part.pivot(on=member, index=cluster, values=name, sort_columns=True).sort(cluster)
                for name in (x, y)}
        members = [c for c in wide[x].columns if c != cluster]
        pooled_row = [(pooled, members)] if len(members) > 1 else []
        for label, chosen in [(m, [m]) for m in members] + pooled_row:
            xs = wide[x].select(chosen).to_numpy().astype(float)
            ys = wide[y].select(chosen).to_numpy().astype(float)
            complete = np.isfinite(xs).all(1) & np.isfinite(ys).all(1)
            if complete.sum() < 3:
                continue
            stats = bootstrap_rank_correlation(xs[complete], ys[complete], n_boot=n_boot,
                                               confidence=confidence, seed=seed)
            rows.append({**dict(zip(by, key)), member: label,
                         **{k: None if isinstance(v, float) and not math.isfinite(v) else v
                            for k, v in stats.items()}})
    schema = {**{c: points.schema[c] for c in by}, member: pl.Utf8, **CORRELATION_SCHEMA}
    return pl.DataFrame(rows, schema=schema)
