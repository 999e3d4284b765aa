"""Permutation tests over re-splits of a pooled sample into two parts of fixed sizes.

The pooled values are ordered ``[first part | second part]`` (the observed split). A re-split is
a 0/1 indicator row over the pooled items with ``n_first`` ones; the statistic of every re-split is
the sum of the values it selects, computed for a whole chunk of re-splits as one matrix product
``values @ indicators.T``. Because the sum over all items is fixed, that sum is a monotone
function of the difference of the two parts' means, so the p-value is the same as for the mean
difference (and for the WEAT/SC-EAT effect sizes, whose denominator does not change).

Exact enumeration of every split when C(n, n_first) <= ``exact_max`` (default 10,000, the iEAT
code's rule); otherwise ``permutations`` splits in all: the observed split counted once plus
``permutations - 1`` seeded random splits, so the smallest p-value is 1 / permutations. Ties count
as exceeding (the conservative rule of the WEAT/iEAT code); a tie is a difference within the
floating-point error of the sums.

Random splits come as a grid (``_sampled_sums``): split (i, j) is sigma_i(T_j) for about
sqrt(permutations) random permutations sigma_i and as many random subsets T_j. Every split is
uniformly distributed and any two are independent, so the p-value estimate has the same mean and
variance as with independently drawn splits, while all statistics of a block cost one matrix
product and only O(sqrt(permutations) * n) random numbers.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from engine.errors import InputError
from engine.faces.blas_threads import small_products

Alternative = Literal["greater", "less", "two-sided"]
ALTERNATIVES = ("greater", "less", "two-sided")
DEFAULT_EXACT_MAX = 10_000  # iEAT/WEAT code: enumerate when C(2n, n) <= 10,000 splits
DEFAULT_PERMUTATIONS = 10_000  # iEAT/WEAT code: 10,000 splits, the observed one included
_CELLS_PER_CHUNK = 1 << 22  # array cells per matrix product (32 MB of float64)
_MAX_BIT_ITEMS = 22  # exact splits from bit patterns up to 2**22 integers


@dataclass(frozen=True)
class PermutationConfig:
    """How p-values are computed. ``permutations`` counts the observed split (iEAT's rule)."""

    alternative: Alternative = "greater"
    permutations: int = DEFAULT_PERMUTATIONS
    exact_max: int = DEFAULT_EXACT_MAX
    seed: int = 0

    def __post_init__(self):
        if self.alternative not in ALTERNATIVES:
            raise InputError(f"alternative must be one of {list(ALTERNATIVES)}, not {self.alternative!r}")
        if not isinstance(self.permutations, int) or self.permutations < 2:
            raise InputError(f"permutations must be an integer >= 2, not {self.permutations!r}")
        if not isinstance(self.exact_max, int) or self.exact_max < 0:
            raise InputError(f"exact_max must be an integer >= 0, not {self.exact_max!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise InputError(f"seed must be an integer >= 0, not {self.seed!r}")


@dataclass(frozen=True)
class PermutationResult:
    p_values: np.ndarray  # (m,) one per row of values
    method: Literal["exact", "sampled"]
    permutations: int  # splits the p-values are over (all of them, or the sampled ones + observed)
    alternative: Alternative


def count_splits(n_first: int, n_second: int) -> int:
    return math.comb(n_first + n_second, n_first)


def permutation_test(values: np.ndarray, n_first: int, config: PermutationConfig) -> PermutationResult:
    """p-values for each row of ``values`` (m, n) whose first ``n_first`` columns are the first
    part. The alternative "greater" asks whether the first part's mean is larger than chance."""
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    n_items = values.shape[1]
    if not 1 <= n_first < n_items:
        raise InputError(f"each part needs at least one item (got {n_first} of {n_items})")
    total = count_splits(n_first, n_items - n_first)
    exact = total <= config.exact_max
    observed = values[:, :n_first].sum(axis=1)
    centre = values.sum(axis=1) * (n_first / n_items)  # the sum where the mean difference is 0
    tolerance = 4 * n_items * np.finfo(np.float64).eps * np.abs(values).sum(axis=1)
    hits = np.zeros(values.shape[0], dtype=np.int64)
    blocks = (_exact_sums(values, n_first, total) if exact
              else _sampled_sums(values, n_first, config.permutations - 1, config.seed))
    with small_products(values.size * (total if exact else config.permutations)):
        for rows, sums in blocks:
            hits[rows] += _count_extreme(sums, observed[rows], centre[rows], tolerance[rows],
                                         config.alternative)
    if exact:
        return PermutationResult(hits / total, "exact", total, config.alternative)
    return PermutationResult((hits + 1) / config.permutations, "sampled", config.permutations,
                             config.alternative)


def combination_indicators(n_items: int, n_first: int) -> np.ndarray:
    """All C(n_items, n_first) splits as float64 0/1 rows, from the bit patterns of the integers
    below 2**n_items that have n_first bits set (no Python loop over splits; n_items <= 22)."""
    if n_items > _MAX_BIT_ITEMS:
        raise InputError(f"bit enumeration handles at most {_MAX_BIT_ITEMS} items, not {n_items}")
    codes = np.arange(1 << n_items, dtype=np.uint32)
    codes = codes[_popcount(codes) == n_first]
    bits = np.unpackbits(codes.astype("<u4").view(np.uint8).reshape(-1, 4), axis=1, bitorder="little")
    return bits[:, :n_items].astype(np.float64)


def _popcount(codes: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(codes)
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
    return table[codes.view(np.uint8)].reshape(len(codes), -1).sum(axis=1)


def _exact_sums(values: np.ndarray, n_first: int, total: int):
    """(rows, sums) blocks over every split: one matrix product of values and split indicators."""
    n_items = values.shape[1]
    bits_pay = n_items <= _MAX_BIT_ITEMS and (1 << n_items) <= 64 * total  # few wasted patterns
    if bits_pay and total * n_items <= _CELLS_PER_CHUNK:
        indicators = combination_indicators(n_items, n_first)
        for rows in _row_blocks(values.shape[0], total):
            yield rows, values[rows] @ indicators.T
        return
    combos = itertools.combinations(range(n_items), n_first)  # many items: stream the splits
    chunk = max(1, _CELLS_PER_CHUNK // n_items)
    while True:
        block = np.fromiter(itertools.chain.from_iterable(itertools.islice(combos, chunk)), dtype=np.int64)
        if block.size == 0:
            return
        yield slice(None), values @ _indicators(block.reshape(-1, n_first), n_items).T


def _sampled_sums(values: np.ndarray, n_first: int, count: int, seed: int):
    """(rows, sums) blocks over ``count`` seeded random splits, generated as a grid: split (i, j)
    takes the items sigma_i(T_j) for random permutations sigma_i and random n_first-subsets T_j.

    Each split is uniform, and any two are independent (given one factor, the other makes each
    uniform), so the count of extreme splits has the mean and variance of independent sampling.
    The statistics of a block of sigmas are one matrix product: values[:, sigma] @ T^T."""
    rng = np.random.default_rng(seed)
    n_items = values.shape[1]
    n_subsets = math.isqrt(count - 1) + 1 if count > 1 else 1
    n_perms = -(-count // n_subsets)
    perms = rng.permuted(np.tile(np.arange(n_items), (n_perms, 1)), axis=1)
    picks = rng.permuted(np.tile(np.arange(n_items), (n_subsets, 1)), axis=1)[:, :n_first]
    subsets_t = np.ascontiguousarray(_indicators(picks, n_items).T)  # (n_items, n_subsets)
    row_block = max(1, _CELLS_PER_CHUNK // (n_items + n_subsets))
    for rows in _row_blocks(values.shape[0], n_subsets, limit=row_block):
        chosen = values[rows]
        perm_block = max(1, _CELLS_PER_CHUNK // (len(chosen) * (n_items + n_subsets)))
        for start in range(0, n_perms, perm_block):
            block = perms[start:start + perm_block]
            permuted = chosen[:, block].reshape(-1, n_items)  # (rows x sigmas, n_items), 2-D for BLAS
            sums = (permuted @ subsets_t).reshape(len(chosen), -1)
            yield rows, sums[:, :count - start * n_subsets]


def _row_blocks(n_rows: int, width: int, limit: int | None = None):
    """Slices of rows so that rows x width stays within the cell budget."""
    step = max(1, min(limit or n_rows, _CELLS_PER_CHUNK // max(1, width)))
    return [slice(start, min(start + step, n_rows)) for start in range(0, n_rows, step)]


def _count_extreme(sums, observed, centre, tolerance, alternative: str) -> np.ndarray:
    observed, centre, tolerance = observed[:, None], centre[:, None], tolerance[:, None]
    if alternative == "greater":
        extreme = sums >= observed - tolerance
    elif alternative == "less":
        extreme = sums <= observed + tolerance
    else:
        extreme = np.abs(sums - centre) >= np.abs(observed - centre) - tolerance
    return extreme.sum(axis=1)


def _indicators(chosen: np.ndarray, n_items: int) -> np.ndarray:
    rows = np.zeros((chosen.shape[0], n_items), dtype=np.float64)
    np.put_along_axis(rows, chosen, 1.0, axis=1)
    return rows
