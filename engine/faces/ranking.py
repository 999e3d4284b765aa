"""Ranking fairness per query (Tanjim et al.; METHODS.md §2): how a prompt's score ranking orders
the faces of two groups.

AUC(a, b) = P(score of a random face of group a > score of a random face of group b), ties
counting 1/2 (the Mann-Whitney statistic over n_a * n_b pairs); misrank rate = 1 - AUC, the
share of (a, b) pairs the ranking puts b first. 0.5 = no preference.

The interval is a percentile bootstrap over faces resampled within each group (stratified; "rest"
keeps its groups' sizes). One set of seeded resamples per attribute serves every prompt and pair
(a paired bootstrap), and each resample's AUC is computed from multinomial weights over the
sorted scores (``weighted_auc``), so no resample is materialised.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from engine.errors import InputError

Comparisons = Literal["pairs", "rest", "both"]
REST = "rest"
RANKING_COLUMNS = {"prompt": pl.Utf8, "attribute": pl.Utf8, "group_a": pl.Utf8, "group_b": pl.Utf8,
                   "n_a": pl.Int64, "n_b": pl.Int64, "auc": pl.Float64, "misrank": pl.Float64,
                   "ci_low": pl.Float64, "ci_high": pl.Float64}
_CELLS_PER_CHUNK = 1 << 23  # resamples x faces per block of bootstrap weights


@dataclass(frozen=True)
class BootstrapConfig:
    resamples: int = 1000
    level: float = 0.95
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.resamples, int) or self.resamples < 0:
            raise InputError(f"resamples must be an integer >= 0 (0: no interval), not {self.resamples!r}")
        if not 0 < self.level < 1:
            raise InputError(f"the interval level must be between 0 and 1, not {self.level!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise InputError(f"seed must be an integer >= 0, not {self.seed!r}")


@dataclass(frozen=True)
class _Plan:
    """One comparison for one prompt: the faces of a, those of b by ascending score, and for each
    a-face how many b-scores lie below it and below or at it."""

    faces_a: np.ndarray
    faces_b_sorted: np.ndarray
    below: np.ndarray
    upto: np.ndarray

    @property
    def auc(self) -> float:
        return float((self.below + self.upto).sum() / (2.0 * len(self.faces_a) * len(self.faces_b_sorted)))


def auc(scores_a: np.ndarray, scores_b: np.ndarray) -> float:
    """P(a > b) + P(a == b) / 2 over every pair of an a-score and a b-score."""
    return _plan(*_pooled(scores_a, scores_b)).auc


def bootstrap_auc(scores_a: np.ndarray, scores_b: np.ndarray, config: BootstrapConfig) -> tuple[float, float]:
    """Percentile interval of the AUC over ``config.resamples`` within-group resamples."""
    scores, in_a, in_b = _pooled(scores_a, scores_b)
    codes = np.where(in_a, 0, 1)
    low, high = _intervals([[_plan(scores, in_a, in_b)]], codes, config, np.random.default_rng(config.seed))
    return float(low[0, 0]), float(high[0, 0])


def weighted_auc(below: np.ndarray, upto: np.ndarray, weights_a: np.ndarray,
                 weights_b: np.ndarray) -> np.ndarray:
    """AUC of each resample (row of the weights: how often each face was drawn), the b-weights
    ordered as the sorted b-scores; ``below``/``upto`` count b-scores below / at most each a.
    Integer counts, exact integer sums."""
    cumulative = np.zeros((len(weights_b), weights_b.shape[1] + 1), dtype=np.int32)  # counts <= faces
    np.cumsum(weights_b, axis=1, dtype=np.int32, out=cumulative[:, 1:])
    credit = np.take(cumulative, below, axis=1)  # 2 x (b below) + (b tied), per a-face
    credit += np.take(cumulative, upto, axis=1)
    pairs = (weights_a * credit).sum(axis=1, dtype=np.int64)
    return pairs / (2.0 * weights_a.sum(axis=1, dtype=np.int64) * cumulative[:, -1])


def ranking_table(scores: np.ndarray, prompts: list[str], groups: dict[str, list[str | None]],
                  order: dict[str, list[str]], config: BootstrapConfig,
                  comparisons: Comparisons = "both") -> pl.DataFrame:
    """AUC, misrank rate and interval for every prompt (row of ``scores``), attribute and pair of
    groups. ``groups[attribute]`` labels every face (None: unlabelled); ``order`` lists groups."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] != len(prompts):
        raise InputError(f"scores must be (prompts, faces); got {scores.shape} for {len(prompts)} prompts")
    rng, rows = np.random.default_rng(config.seed), []
    for attribute, labels in groups.items():
        labels = np.asarray(labels, dtype=object)
        pairs = _comparisons(order[attribute], comparisons)
        plans = []
        for group_a, group_b in pairs:
            in_a = labels == group_a
            in_b = (labels != None) & ~in_a if group_b == REST else labels == group_b  # noqa: E711
            plans.append([_plan(row, in_a, in_b) for row in scores])
        codes = np.array([order[attribute].index(g) if g in order[attribute] else -1 for g in labels])
        low, high = _intervals(plans, codes, config, rng)
        for k, (group_a, group_b) in enumerate(pairs):
            for p, prompt in enumerate(prompts):
                plan = plans[k][p]
                rows.append((prompt, attribute, group_a, group_b, len(plan.faces_a), len(plan.faces_b_sorted),
                             plan.auc, 1 - plan.auc, float(low[k, p]), float(high[k, p])))
    return pl.DataFrame(rows, schema=RANKING_COLUMNS, orient="row")


def _intervals(plans: list[list[_Plan]], codes: np.ndarray, config: BootstrapConfig, rng):
    """(low, high) arrays (comparisons, prompts) from resamples shared by every plan."""
    shape = (len(plans), len(plans[0]))
    if config.resamples == 0:
        return np.full(shape, np.nan), np.full(shape, np.nan)
    values = np.empty(shape + (config.resamples,))
    chunk = max(1, _CELLS_PER_CHUNK // max(1, int((codes >= 0).sum())))
    for start in range(0, config.resamples, chunk):
        count = min(chunk, config.resamples - start)
        weights = _stratified_weights(codes, count, rng)
        for k, per_prompt in enumerate(plans):
            weights_a = np.take(weights, per_prompt[0].faces_a, axis=1)  # group a: the same faces for every prompt
            for p, plan in enumerate(per_prompt):
                values[k, p, start:start + count] = weighted_auc(
                    plan.below, plan.upto, weights_a, np.take(weights, plan.faces_b_sorted, axis=1))
    tail = (1 - config.level) / 2
    return np.quantile(values, tail, axis=2), np.quantile(values, 1 - tail, axis=2)


def _stratified_weights(codes: np.ndarray, count: int, rng) -> np.ndarray:
    """(count, faces) draw counts: each resample draws every group's faces with replacement, as
    many as the group has; unlabelled faces (code -1) get 0."""
    weights = np.zeros((count, len(codes)), dtype=np.uint8)  # a face drawn 256 times: p < 1e-300
    offsets = np.arange(count)[:, None]
    for group in np.unique(codes[codes >= 0]):
        members = np.flatnonzero(codes == group)
        draws = rng.integers(0, len(members), size=(count, len(members))) + offsets * len(members)
        weights[:, members] = np.bincount(draws.ravel(), minlength=count * len(members)).reshape(count, -1)
    return weights


def _plan(scores: np.ndarray, in_a: np.ndarray, in_b: np.ndarray) -> _Plan:
    faces_a, faces_b = np.flatnonzero(in_a), np.flatnonzero(in_b)
    if len(faces_a) == 0 or len(faces_b) == 0:
        raise InputError("both groups need at least one face to compare rankings")
    faces_b = faces_b[np.argsort(scores[faces_b], kind="stable")]
    b_sorted, a_scores = scores[faces_b], scores[faces_a]
    return _Plan(faces_a, faces_b, np.searchsorted(b_sorted, a_scores, "left"),
                 np.searchsorted(b_sorted, a_scores, "right"))


def _pooled(scores_a, scores_b):
    a, b = np.asarray(scores_a, float), np.asarray(scores_b, float)
    in_a = np.r_[np.ones(len(a), bool), np.zeros(len(b), bool)]
    return np.concatenate([a, b]), in_a, ~in_a


def _comparisons(groups: list[str], comparisons: Comparisons) -> list[tuple[str, str]]:
    pairs = list(itertools.combinations(groups, 2)) if comparisons in ("pairs", "both") else []
    if comparisons in ("rest", "both") and len(groups) > 2:
        pairs += [(g, REST) for g in groups]
    if not pairs:
        raise InputError(f"need at least two groups to compare, got {groups}")
    return pairs
