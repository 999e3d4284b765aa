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
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from engine.errors import InputError

Alternative = Literal["greater", "less", "two-sided"]
ALTERNATIVES = ("greater", "less", "two-sided")
DEFAULT_EXACT_MAX = 10_000  # iEAT/WEAT code: enumerate when C(2n, n) <= 10,000 splits
DEFAULT_PERMUTATIONS = 10_000  # iEAT/WEAT code: 10,000 splits, the observed one included
_CELLS_PER_CHUNK = 1 << 22  # rows x splits per matrix product (32 MB of float64)
_MAX_CHUNK = 1 << 15  # splits per chunk


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
    chunk = max(1, min(_MAX_CHUNK, _CELLS_PER_CHUNK // max(1, values.shape[0])))
    splits = (_all_splits(n_items, n_first, chunk) if exact
              else _sampled_splits(n_items, n_first, config.permutations - 1, chunk, config.seed))
    for indicators in splits:
        sums = values @ indicators.T  # (m, chunk): the split statistics as one matrix product
        hits += _count_extreme(sums, observed, centre, tolerance, config.alternative)
    if exact:
        return PermutationResult(hits / total, "exact", total, config.alternative)
    return PermutationResult((hits + 1) / config.permutations, "sampled", config.permutations,
                             config.alternative)


def _count_extreme(sums, observed, centre, tolerance, alternative: str) -> np.ndarray:
    observed, centre, tolerance = observed[:, None], centre[:, None], tolerance[:, None]
    if alternative == "greater":
        extreme = sums >= observed - tolerance
    elif alternative == "less":
        extreme = sums <= observed + tolerance
    else:
        extreme = np.abs(sums - centre) >= np.abs(observed - centre) - tolerance
    return extreme.sum(axis=1)


def _all_splits(n_items: int, n_first: int, chunk: int) -> Iterator[np.ndarray]:
    """Every split in lexicographic order (the observed one first), as indicator chunks."""
    combos = itertools.combinations(range(n_items), n_first)
    while True:
        block = np.fromiter(itertools.chain.from_iterable(itertools.islice(combos, chunk)),
                            dtype=np.int64)
        if block.size == 0:
            return
        yield _indicators(block.reshape(-1, n_first), n_items)


def _sampled_splits(n_items: int, n_first: int, count: int, chunk: int, seed: int) -> Iterator[np.ndarray]:
    """``count`` uniformly random splits from a seeded generator, in chunks of ``chunk``."""
    rng = np.random.default_rng(seed)
    for start in range(0, count, chunk):
        keys = rng.random((min(chunk, count - start), n_items))
        chosen = np.argpartition(keys, n_first - 1, axis=1)[:, :n_first]  # a uniform random subset
        yield _indicators(chosen, n_items)


def _indicators(chosen: np.ndarray, n_items: int) -> np.ndarray:
    rows = np.zeros((chosen.shape[0], n_items), dtype=np.float64)
    np.put_along_axis(rows, chosen, 1.0, axis=1)
    return rows
