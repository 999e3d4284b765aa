"""Embedding association tests: WEAT/iEAT for two target sets, SC-EAT for single items.

Formulas (METHODS.md §3; Caliskan et al. 2017, Steed & Caliskan 2021), all in float64 on
L2-normalised vectors:

- s(w, A, B) = mean_a cos(w, a) - mean_b cos(w, b)
- WEAT effect size d = (mean_x s(x) - mean_y s(y)) / std_{w in X u Y} s(w), ddof 1
- SC-EAT for one item w (the single-category variant of Caliskan et al. 2017's WEFAT, as used by
  Wolfe & Caliskan): d = (mean cos(w, A) - mean cos(w, B)) / std_{v in A u B} cos(w, v), ddof 1;
  p from re-splitting A u B into parts of sizes |A| and |B| (engine.faces.permutation).

Targets and attributes may come from different modalities (images and texts embedded by one
model: a cross-modal test); the functions only see vectors. Unequal target sizes are refused
unless ``unequal="resplit"``: the permutation test then re-splits X u Y into parts of sizes |X|
and |Y| (statistic: difference of the parts' means); d is unchanged by the sizes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np

from engine.errors import InputError
from engine.faces.blas_threads import small_products
from engine.faces.permutation import PermutationConfig, permutation_test

log = logging.getLogger(__name__)

UnequalSizes = Literal["error", "resplit"]
SC_EAT_VARIANT = ("wefat: d = (mean cos(w,A) - mean cos(w,B)) / std cos(w, A u B) (ddof 1); "
                  "p by permutation of A u B into |A|, |B|; positive d = closer to A")


@dataclass(frozen=True)
class WeatResult:
    effect_size: float  # d; nan when every s(w) is equal
    p_value: float
    statistic: float  # sum_x s(x) - sum_y s(y)
    n_x: int
    n_y: int
    n_a: int
    n_b: int
    method: str  # exact | sampled
    permutations: int
    alternative: str
    seed: int
    size_variant: str  # equal | unequal-resplit


@dataclass(frozen=True)
class ScEatResult:
    effect_sizes: np.ndarray  # (m,) one per item; nan where cos(w, A u B) is constant
    p_values: np.ndarray | None  # (m,) or None when no test was asked for
    n_a: int
    n_b: int
    method: str | None
    permutations: int | None
    alternative: str | None
    variant: str = SC_EAT_VARIANT


def unit_rows(vectors: np.ndarray, name: str = "vectors") -> np.ndarray:
    """Float64 copy with every row scaled to length 1; refuse empty, non-finite or zero rows."""
    array = np.asarray(vectors, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] == 0:
        raise InputError(f"{name}: expected a non-empty 2-D array of vectors, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise InputError(f"{name}: contains NaN or infinite values")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if (norms == 0).any():
        raise InputError(f"{name}: row {int(np.flatnonzero(norms[:, 0] == 0)[0])} is a zero vector "
                         "(cosine similarity is undefined)")
    return array / norms


def cosine_matrix(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """(len(left), len(right)) cosine similarities, float64."""
    left, right = unit_rows(left, "left"), unit_rows(right, "right")
    with small_products(left.size * len(right)):
        return left @ right.T


def association_differences(items: np.ndarray, attr_a: np.ndarray, attr_b: np.ndarray) -> np.ndarray:
    """s(w, A, B) for every row w of ``items``."""
    _check_dims(items=items, A=attr_a, B=attr_b)
    unit, unit_a, unit_b = unit_rows(items, "items"), unit_rows(attr_a, "A"), unit_rows(attr_b, "B")
    with small_products(unit.size * (len(unit_a) + len(unit_b))):
        return (unit @ unit_a.T).mean(axis=1) - (unit @ unit_b.T).mean(axis=1)


def weat(targets_x: np.ndarray, targets_y: np.ndarray, attr_a: np.ndarray, attr_b: np.ndarray, *,
         permutation: PermutationConfig | None = None,
         unequal: UnequalSizes = "error") -> WeatResult:
    """WEAT/iEAT effect size and permutation p-value for targets X, Y and attributes A, B."""
    permutation = permutation or PermutationConfig()
    _check_dims(X=targets_x, Y=targets_y, A=attr_a, B=attr_b)
    n_x, n_y = len(targets_x), len(targets_y)
    if unequal not in ("error", "resplit"):
        raise InputError(f"unequal must be 'error' or 'resplit', not {unequal!r}")
    if n_x != n_y and unequal == "error":
        raise InputError(f"the target sets differ in size (|X| = {n_x}, |Y| = {n_y}); WEAT re-splits "
                         "X u Y into equal halves. Balance them, or choose the unequal-size variant "
                         "(unequal='resplit', CLI --unequal resplit)")
    scores = association_differences(np.concatenate([targets_x, targets_y]), attr_a, attr_b)
    tested = permutation_test(scores, n_x, permutation)
    return WeatResult(
        effect_size=_effect_size(scores[:n_x], scores[n_x:]),
        p_value=float(tested.p_values[0]),
        statistic=float(scores[:n_x].sum() - scores[n_x:].sum()),
        n_x=n_x, n_y=n_y, n_a=len(attr_a), n_b=len(attr_b),
        method=tested.method, permutations=tested.permutations, alternative=tested.alternative,
        seed=permutation.seed, size_variant="equal" if n_x == n_y else "unequal-resplit",
    )


def sc_eat(items: np.ndarray, attr_a: np.ndarray, attr_b: np.ndarray, *,
           permutation: PermutationConfig | None = None, test: bool = True) -> ScEatResult:
    """SC-EAT effect size (and p-value when ``test``) for every row of ``items`` at once."""
    _check_dims(items=items, A=attr_a, B=attr_b)
    n_a, n_b = len(attr_a), len(attr_b)
    if n_a + n_b < 3:
        raise InputError("SC-EAT needs at least 3 attribute vectors in A u B for a standard deviation")
    sims = cosine_matrix(items, np.concatenate([attr_a, attr_b]))  # (m, |A|+|B|)
    diff = sims[:, :n_a].mean(axis=1) - sims[:, n_a:].mean(axis=1)
    spread = sims.std(axis=1, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        effect = np.where(spread > 0, diff / np.where(spread > 0, spread, 1.0), np.nan)
    if not test:
        return ScEatResult(effect, None, n_a, n_b, None, None, None)
    permutation = permutation or PermutationConfig()
    tested = permutation_test(sims, n_a, permutation)
    return ScEatResult(effect, tested.p_values, n_a, n_b, tested.method, tested.permutations,
                       tested.alternative)


def _effect_size(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    spread = np.concatenate([scores_x, scores_y]).std(ddof=1)
    if not spread > 0:
        log.warning("every association score is equal: the effect size is undefined (nan)")
        return float("nan")
    return float((scores_x.mean() - scores_y.mean()) / spread)


def _check_dims(**sets: np.ndarray) -> None:
    dims = {}
    for name, array in sets.items():
        shape = np.shape(array)
        if len(shape) != 2 or shape[0] == 0:
            raise InputError(f"set {name} must be a non-empty (n, d) array of vectors, got shape {shape}")
        dims[name] = shape[1]
    if len(set(dims.values())) > 1:
        raise InputError(f"the sets have different dimensions {dims}: embed them with one model")
