"""Rank correlations (Spearman's rho, Kendall's tau-b) with a seeded cluster bootstrap.

Array in, numbers out. Points come as (clusters, members) arrays: a cluster is one word and its
members are that word's groups, so a bootstrap replicate resamples whole words and the
dependence between a word's group shares stays inside a replicate. Both statistics are computed
for all replicates at once (ranks along rows; Kendall from pairwise sign matrices in chunks).
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho for each row pair of two (b, n) arrays (NaN for a constant row)."""
    from scipy.stats import rankdata

    rx = rankdata(x, axis=1, method="average")
    ry = rankdata(y, axis=1, method="average")
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(1) / np.sqrt((rx * rx).sum(1) * (ry * ry).sum(1))


def kendall_rows(x: np.ndarray, y: np.ndarray, max_cells: int = 16_000_000) -> np.ndarray:
    """Kendall's tau-b for each row pair of two (b, n) arrays (NaN for a constant row).

    Pairwise sign matrices, a chunk of rows at a time; above ``max_cells / 4`` pairs per row it
    falls back to scipy's O(n log n) routine row by row."""
    b, n = x.shape
    if n * n > max_cells // 4:
        from scipy.stats import kendalltau

        return np.array([kendalltau(x[i], y[i]).statistic for i in range(b)], dtype=float)
    out = np.empty(b)
    chunk = max(1, max_cells // (n * n))
    pairs = n * (n - 1) / 2
    for start in range(0, b, chunk):
        rows = slice(start, start + chunk)
        sx = np.sign(x[rows, :, None] - x[rows, None, :]).astype(np.int8)
        sy = np.sign(y[rows, :, None] - y[rows, None, :]).astype(np.int8)
        concordance = (sx * sy).sum((1, 2), dtype=np.int64) / 2
        tied_x = ((sx == 0).sum((1, 2)) - n) / 2
        tied_y = ((sy == 0).sum((1, 2)) - n) / 2
        with np.errstate(invalid="ignore", divide="ignore"):
            out[rows] = concordance / np.sqrt((pairs - tied_x) * (pairs - tied_y))
    return out


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
    n_clusters = x.shape[0]
    flat_x, flat_y = x.reshape(1, -1), y.reshape(1, -1)
    row = {"n_clusters": n_clusters, "n_points": int(x.size),
           "spearman": float(spearman_rows(flat_x, flat_y)[0]),
           "kendall": float(kendall_rows(flat_x, flat_y)[0]),
           "spearman_p": None, "kendall_p": None}
    if x.shape[1] == 1 and n_clusters >= 3:
        row["spearman_p"] = float(spearmanr(x[:, 0], y[:, 0]).pvalue)
        row["kendall_p"] = float(kendalltau(x[:, 0], y[:, 0]).pvalue)
    for name in ("spearman", "kendall"):
        row[f"{name}_low"] = row[f"{name}_high"] = None
    if n_boot:
        picks = np.random.default_rng(seed).integers(0, n_clusters, size=(n_boot, n_clusters))
        boot_x, boot_y = x[picks].reshape(n_boot, -1), y[picks].reshape(n_boot, -1)
        for name, stats in (("spearman", spearman_rows(boot_x, boot_y)),
                            ("kendall", kendall_rows(boot_x, boot_y))):
            row[f"{name}_low"], row[f"{name}_high"] = _interval(stats, confidence)
    return row


CORRELATION_SCHEMA = {
    "n_clusters": pl.Int64, "n_points": pl.Int64,
    "spearman": pl.Float64, "spearman_low": pl.Float64, "spearman_high": pl.Float64, "spearman_p": pl.Float64,
    "kendall": pl.Float64, "kendall_low": pl.Float64, "kendall_high": pl.Float64, "kendall_p": pl.Float64,
}


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
        for chosen in [[m] for m in members] + [members]:
            xs = wide[x].select(chosen).to_numpy().astype(float)
            ys = wide[y].select(chosen).to_numpy().astype(float)
            complete = np.isfinite(xs).all(1) & np.isfinite(ys).all(1)
            if complete.sum() < 3:
                continue
            stats = bootstrap_rank_correlation(xs[complete], ys[complete], n_boot=n_boot,
                                               confidence=confidence, seed=seed)
            label = chosen[0] if len(chosen) == 1 and chosen is not members else pooled
            rows.append({**dict(zip(by, key)), member: label,
                         **{k: None if isinstance(v, float) and not math.isfinite(v) else v
                            for k, v in stats.items()}})
    schema = {**{c: points.schema[c] for c in by}, member: pl.Utf8, **CORRELATION_SCHEMA}
    return pl.DataFrame(rows, schema=schema, orient="row" if not rows else None)
