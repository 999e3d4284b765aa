"""Retrieval-skew metrics for many queries at once: pure numpy, no loop over queries or ranks.

Inputs are, per attribute, the group ids of each query's ranked top k, ``labels`` of shape (q, k)
with -1 for an unlabelled item, and the number of groups G. Unlabelled items are left out of that
attribute's shares (the share denominator is the number of labelled items retrieved). Formulas
and sources: ../shared/METHODS.md §2. Logarithms are natural.

- shares p_R(g) = count_g / labelled count; normalised entropy H = -sum p ln p / ln G, where G
  counts every group of the index (empty ones included);
- Skew_g@k = ln(max(p_R(g), floor) / p*(g)) against a target p* (uniform 1/G, or the base rate
  p_D); MaxSkew/MinSkew are its max/min over groups (Geyik et al. 2019; floor 1/k as in Berg et
  al. 2022);
- NDKL = (1/Z) sum_i KL(D_i || p*) / log2(i+1), D_i the group shares of the top i labelled items;
- KL@k = sum_g p_R(g) ln(p_R(g) / p_D(g));
- C-ASC(g) = (mean cos to items of g - mean cos to the other items) / std of cos over all
  labelled items (ddof 1), from per-group vector sums and the item covariance, so every item counts
  without forming the (q, n) score matrix;
- Bias@K = (N_a - N_b) / (N_a + N_b) for a binary attribute (a = male, b = female).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np


def group_counts(labels: np.ndarray, n_groups: int) -> np.ndarray:
    """(q, G) int64 counts of each group in each row of ``labels`` (q, k); -1 entries are skipped."""
    labels = np.asarray(labels)
    rows = np.broadcast_to(np.arange(labels.shape[0])[:, None], labels.shape)
    known = labels >= 0
    flat = rows[known] * n_groups + labels[known]
    return np.bincount(flat, minlength=labels.shape[0] * n_groups).reshape(labels.shape[0], n_groups)


def shares(counts: np.ndarray) -> np.ndarray:
    """Row-normalised counts (q, G) float64; a row without labelled items is NaN."""
    counts = np.asarray(counts, dtype=np.float64)
    totals = counts.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, counts / totals, np.nan)


def _xlogy_ratio(p: np.ndarray, target: np.ndarray) -> np.ndarray:
    """p * ln(p / target) with 0 where p == 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p > 0, p * np.log(p / target), 0.0)


def normalised_entropy(p: np.ndarray) -> np.ndarray:
    """-sum_g p ln p / ln G over the last axis; G >= 2."""
    n_groups = p.shape[-1]
    entropy = -_xlogy_ratio(p, np.ones(n_groups)).sum(axis=-1)
    return np.where(np.isnan(p).any(axis=-1), np.nan, entropy / np.log(n_groups))


def kl_divergence(p: np.ndarray, target: np.ndarray) -> np.ndarray:
    """sum_g p ln(p / target) over the last axis (target > 0 everywhere)."""
    kl = _xlogy_ratio(p, target).sum(axis=-1)
    return np.where(np.isnan(p).any(axis=-1), np.nan, kl)


def skew(p: np.ndarray, target: np.ndarray, floor: float) -> np.ndarray:
    """Skew_g = ln(max(p_g, floor) / target_g), (q, G); NaN rows stay NaN."""
    return np.log(np.maximum(p, floor) / target)


def ndkl(labels: np.ndarray, n_groups: int, target: np.ndarray) -> np.ndarray:
    """Normalised discounted KL of each ranked row of ``labels`` (q, k) against ``target``: (G,)
    gives (q,), several targets (T, G) give (q, T).

    Unlabelled items are dropped from the ranking (rank i counts labelled items only), so a row
    reads as the ranked list of its labelled items. Rows without labelled items are NaN.
    KL(D || t) = sum D ln D - D . ln t: the first term is shared by every target.
    """
    labels = np.asarray(labels)
    targets = np.atleast_2d(target)
    known = labels >= 0
    onehot = (labels[..., None] == np.arange(n_groups)) & known[..., None]
    cumulative = np.cumsum(onehot, axis=1, dtype=np.float64)  # (q, k, G)
    rank = np.cumsum(known, axis=1, dtype=np.float64)  # labelled items so far
    with np.errstate(divide="ignore", invalid="ignore"):
        distribution = np.nan_to_num(cumulative / rank[..., None])
        weight = np.where(known, 1.0 / np.log2(rank + 1.0), 0.0)
    per_rank = _xlogy_ratio(distribution, np.ones(n_groups)).sum(axis=-1)[..., None] - distribution @ np.log(targets).T
    z = weight.sum(axis=1)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        result = np.where(z > 0, np.einsum("qk,qkt->qt", weight, per_rank) / z, np.nan)
    return result[:, 0] if np.ndim(target) == 1 else result


def bias_at_k(counts: np.ndarray, first: int, second: int) -> np.ndarray:
    """(N_first - N_second) / (N_first + N_second) per row; NaN when both are 0."""
    a = counts[:, first].astype(np.float64)
    b = counts[:, second].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a + b > 0, (a - b) / (a + b), np.nan)


@dataclass(frozen=True)
class ItemMoments:
    """What C-ASC needs from the labelled items of one attribute."""

    group_sums: np.ndarray  # (G, d) float64: sum of the vectors of each group
    group_sizes: np.ndarray  # (G,) int64
    covariance: np.ndarray  # (d, d) float64 over all labelled items, ddof 1


@dataclass(frozen=True)
class ItemStatistics:
    """The mean of all item vectors and the Gram matrix of the vectors centred on it: the part of
    C-ASC that depends on every item but on no label. Computed once per index (written with it,
    engine.faces.index) and shared by every attribute and audit. Centring keeps the float32
    products accurate; the Gram matrix is accumulated in float64 block by block."""

    mean: np.ndarray  # (d,) float64
    gram: np.ndarray  # (d, d) float64, sum over items of (x - centre)(x - centre)^T
    count: int

    BLOCK = 16_384  # rows centred at a time

    @property
    def centre(self) -> np.ndarray:
        """The float32 point the vectors are centred on (the mean, rounded)."""
        return self.mean.astype(np.float32)

    @classmethod
    def of(cls, vectors: np.ndarray) -> "ItemStatistics":
        return cls.of_blocks(lambda: [vectors])

    @classmethod
    def of_blocks(cls, blocks: Callable[[], Iterable[np.ndarray]]) -> "ItemStatistics":
        """The statistics of vectors too many to hold at once: ``blocks()`` yields them in row
        order as pieces (e.g. memory-mapped shards) and is called twice, for the mean, then for
        the Gram matrix."""
        total, count = None, 0
        for rows in cls._pieces(blocks()):
            summed = rows.sum(axis=0, dtype=np.float64)
            total, count = (summed if total is None else total + summed), count + len(rows)
        if not count:
            raise ValueError("no vectors to summarise")
        mean = total / count
        centre = mean.astype(np.float32)
        gram = np.zeros((len(mean),) * 2)
        for rows in cls._pieces(blocks()):
            centred = rows - centre
            gram += centred.T @ centred
        return cls(mean, gram, count)

    @classmethod
    def _pieces(cls, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Non-empty float32 runs of at most BLOCK rows, read one at a time."""
        for block in blocks:
            for start in range(0, len(block), cls.BLOCK):
                yield np.asarray(block[start:start + cls.BLOCK], dtype=np.float32)

    def to_array(self) -> np.ndarray:
        """(d + 1, d) float64: the mean, then the Gram matrix (one .npy file)."""
        return np.vstack([self.mean, self.gram])

    @classmethod
    def from_array(cls, array: np.ndarray, count: int) -> "ItemStatistics":
        return cls(np.asarray(array[0], dtype=np.float64), np.asarray(array[1:], dtype=np.float64), count)


def item_moments(statistics: ItemStatistics, vectors, codes: list[np.ndarray],
                 n_groups: list[int]) -> list[ItemMoments]:
    """Group sums and covariance of the labelled items (``codes`` >= 0) of several attributes, in
    one pass over the centred vectors, block by block. ``vectors`` is anything with ``len()`` and
    row slices giving float32 arrays (an array, or an on-disk index read back block by block)."""
    onehot = np.concatenate([(c[:, None] == np.arange(g)).astype(np.float32) for c, g in zip(codes, n_groups)], axis=1)
    sizes = onehot.sum(axis=0).astype(np.int64)
    masks = {np.packbits(c >= 0).tobytes(): c >= 0 for c in codes}  # attributes may share one
    partial = {key: _Unlabelled(len(statistics.mean)) for key, labelled in masks.items() if not labelled.all()}
    centre = statistics.centre
    centred_sums = np.zeros((onehot.shape[1], len(centre)))
    for start in range(0, len(vectors), ItemStatistics.BLOCK):
        rows = slice(start, start + ItemStatistics.BLOCK)
        centred = np.asarray(vectors[rows], dtype=np.float32) - centre
        centred_sums += onehot[rows].T @ centred
        for key, unlabelled in partial.items():
            unlabelled.add(centred[~masks[key][rows]])
    sums = centred_sums + sizes[:, None] * centre.astype(np.float64)  # (sum G, d)
    covariances = {key: _labelled_covariance(statistics, labelled, partial.get(key))
                   for key, labelled in masks.items()}
    edges = np.cumsum([0, *n_groups])
    return [ItemMoments(sums[a:b], sizes[a:b], covariances[np.packbits(c >= 0).tobytes()])
            for c, a, b in zip(codes, edges[:-1], edges[1:])]


class _Unlabelled:
    """Gram matrix, sum and count of the centred vectors of the unlabelled items, accumulated."""

    def __init__(self, dim: int):
        self.gram, self.sum, self.count = np.zeros((dim, dim)), np.zeros(dim), 0

    def add(self, centred: np.ndarray) -> None:
        self.gram += centred.T @ centred
        self.sum += centred.sum(axis=0, dtype=np.float64)
        self.count += len(centred)


def _labelled_covariance(statistics: ItemStatistics, labelled: np.ndarray, unlabelled: _Unlabelled | None) -> np.ndarray:
    """Covariance (ddof 1) of the labelled items: the unlabelled rows' part is taken out of the
    whole Gram matrix (cheap when few are unlabelled), then the shift to the labelled mean."""
    centre = statistics.centre.astype(np.float64)
    gram, labelled_sum = statistics.gram, statistics.count * statistics.mean  # sum of all vectors
    if unlabelled is not None:
        gram = gram - unlabelled.gram
        labelled_sum = labelled_sum - (unlabelled.sum + unlabelled.count * centre)
    n = int(labelled.sum())
    shift = labelled_sum / max(n, 1) - centre  # labelled mean minus the centre
    return (gram - n * np.outer(shift, shift)) / max(n - 1, 1)


def casc(queries: np.ndarray, moments: ItemMoments) -> np.ndarray:
    """C-ASC (q, G): (mean cos in g - mean cos outside g) / std of cos over all labelled items."""
    q = np.asarray(queries, dtype=np.float64)
    sizes = moments.group_sizes.astype(np.float64)
    n = sizes.sum()
    inside = q @ moments.group_sums.T  # (q, G) sums of cosines
    total = inside.sum(axis=1, keepdims=True)
    variance = ((q @ moments.covariance) * q).sum(axis=1)  # var of cos over labelled items
    std = np.sqrt(np.maximum(variance, 0.0))[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_in = inside / sizes
        mean_out = (total - inside) / (n - sizes)
        return (mean_in - mean_out) / std
