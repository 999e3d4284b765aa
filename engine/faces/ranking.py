"""Ranking fairness per query (Tanjim et al.; METHODS.md §2): how a prompt's score ranking orders
the faces of two groups.

AUC(a, b) = P(score of a random face of group a > score of a random face of group b), ties
counting 1/2 (the Mann-Whitney statistic over n_a * n_b pairs); misrank rate = 1 - AUC, the
share of (a, b) pairs the ranking puts b first. 0.5 = no preference. The interval is a percentile
bootstrap resampling faces within each group (seeded), computed for all resamples at once with
multinomial weights over the sorted scores.
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
_CELLS_PER_CHUNK = 1 << 23  # resamples x items per block of the bootstrap


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


def auc(scores_a: np.ndarray, scores_b: np.ndarray) -> float:
    """P(a > b) + P(a == b) / 2 over every pair of an a-score and a b-score."""
    below, upto = _positions(np.asarray(scores_a, float), np.sort(np.asarray(scores_b, float)))
    return float((below + upto).sum() / (2.0 * len(scores_a) * len(scores_b)))


def bootstrap_auc(scores_a: np.ndarray, scores_b: np.ndarray, config: BootstrapConfig) -> tuple[float, float]:
    """Percentile interval of the AUC over ``config.resamples`` within-group resamples."""
    if config.resamples == 0:
        return float("nan"), float("nan")
    a = np.asarray(scores_a, float)
    b = np.sort(np.asarray(scores_b, float))
    below, upto = _positions(a, b)
    rng = np.random.default_rng(config.seed)
    chunk = max(1, _CELLS_PER_CHUNK // (len(a) + len(b)))
    values = []
    for start in range(0, config.resamples, chunk):
        count = min(chunk, config.resamples - start)
        weights_a = rng.multinomial(len(a), np.full(len(a), 1 / len(a)), size=count)
        weights_b = rng.multinomial(len(b), np.full(len(b), 1 / len(b)), size=count)
        values.append(weighted_auc(below, upto, weights_a, weights_b))
    tail = (1 - config.level) / 2
    low, high = np.quantile(np.concatenate(values), [tail, 1 - tail])
    return float(low), float(high)


def weighted_auc(below: np.ndarray, upto: np.ndarray, weights_a: np.ndarray,
                 weights_b: np.ndarray) -> np.ndarray:
    """AUC of each resample (row of the weights: how often each face was drawn), the b-weights
    ordered as the sorted b-scores; ``below``/``upto`` from ``_positions``."""
    cumulative = np.concatenate([np.zeros((len(weights_b), 1)), np.cumsum(weights_b, axis=1)], axis=1)
    credit = cumulative[:, below] + cumulative[:, upto]  # 2 x (b below) + (b tied), per a-face
    return (weights_a * credit).sum(axis=1) / (2.0 * weights_a.sum(axis=1) * weights_b.sum(axis=1))


def ranking_table(scores: np.ndarray, prompts: list[str], groups: dict[str, list[str | None]],
                  order: dict[str, list[str]], config: BootstrapConfig,
                  comparisons: Comparisons = "both") -> pl.DataFrame:
    """AUC, misrank rate and interval for every prompt (row of ``scores``), attribute and pair of
    groups. ``groups[attribute]`` labels every face (None: unlabelled); ``order`` lists groups."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] != len(prompts):
        raise InputError(f"scores must be (prompts, faces); got {scores.shape} for {len(prompts)} prompts")
    rows = []
    for attribute, labels in groups.items():
        labels = np.asarray(labels, dtype=object)
        for group_a, group_b in _comparisons(order[attribute], comparisons):
            in_a = labels == group_a
            in_b = (labels != None) & ~in_a if group_b == REST else labels == group_b  # noqa: E711
            for prompt, row in zip(prompts, scores):
                value = auc(row[in_a], row[in_b])
                low, high = bootstrap_auc(row[in_a], row[in_b], config)
                rows.append((prompt, attribute, group_a, group_b, int(in_a.sum()), int(in_b.sum()),
                             value, 1 - value, low, high))
    return pl.DataFrame(rows, schema=RANKING_COLUMNS, orient="row")


def _comparisons(groups: list[str], comparisons: Comparisons) -> list[tuple[str, str]]:
    pairs = list(itertools.combinations(groups, 2)) if comparisons in ("pairs", "both") else []
    if comparisons in ("rest", "both") and len(groups) > 2:
        pairs += [(g, REST) for g in groups]
    if not pairs:
        raise InputError(f"need at least two groups to compare, got {groups}")
    return pairs


def _positions(a: np.ndarray, b_sorted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each a-score: how many b-scores are below it, and how many are below or equal."""
    if len(a) == 0 or len(b_sorted) == 0:
        raise InputError("both groups need at least one face to compare rankings")
    return np.searchsorted(b_sorted, a, "left"), np.searchsorted(b_sorted, a, "right")
