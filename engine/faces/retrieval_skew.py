"""Skew of every query's top k for every attribute: kernels (skew.py) and nulls (nulls.py) composed
into one long table, ``skew.parquet``, one row per (query, attribute, group).

Queries arrive deduplicated: ``item_ids`` (u, k) and ``query_vectors`` (u, d) hold one row per
distinct prompt vector; ``family`` (u,) numbers the BH family of each row (its template), and the
table is expanded to every (category, word, template) query through ``vector_row``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from engine.faces import nulls, skew
from engine.faces.groups import Attribute

BINARY_GENDER = ("male", "female")  # Bias@K = (N_male - N_female) / (N_male + N_female)

SKEW_SCHEMA = {
    "query_id": pl.Int32, "category": pl.Utf8, "word": pl.Utf8, "template": pl.Utf8,
    "attribute": pl.Utf8, "group": pl.Utf8, "k": pl.Int32,
    # per group
    "count": pl.Int32, "share": pl.Float64, "base_count": pl.Int64, "base_rate": pl.Float64,
    "skew_uniform": pl.Float64, "skew_base": pl.Float64, "casc": pl.Float64,
    "p_group": pl.Float64, "q_group": pl.Float64,
    # per query and attribute (repeated on each group row)
    "n_labelled": pl.Int32, "n_unlabelled": pl.Int32, "entropy": pl.Float64,
    "max_skew_uniform": pl.Float64, "min_skew_uniform": pl.Float64,
    "max_skew_base": pl.Float64, "min_skew_base": pl.Float64,
    "ndkl_uniform": pl.Float64, "ndkl_base": pl.Float64, "kl_base": pl.Float64,
    "bias_at_k": pl.Float64, "p_value": pl.Float64, "q_value": pl.Float64,
}
GROUP_METRICS = ("count", "share", "base_count", "base_rate", "skew_uniform", "skew_base", "casc",
                 "p_group", "q_group")
QUERY_METRICS = tuple(c for c in SKEW_SCHEMA if c not in GROUP_METRICS and c not in
                      ("query_id", "category", "word", "template", "attribute", "group", "k"))


@dataclass(frozen=True)
class SkewSettings:
    k: int
    floor: float  # shares below it are raised to it inside Skew_g (Berg et al.: 1/k)
    null_draws: int
    exact_max: int
    seed: int


@dataclass(frozen=True)
class AttributeSkew:
    attribute: Attribute
    groups: dict[str, np.ndarray]  # GROUP_METRICS -> (u, G)
    queries: dict[str, np.ndarray]  # QUERY_METRICS -> (u,)
    null: nulls.NullDistribution = field(repr=False)


def measure(attribute: Attribute, item_ids: np.ndarray, query_vectors: np.ndarray,
            moments: skew.ItemMoments, family: np.ndarray, settings: SkewSettings) -> AttributeSkew:
    """All metrics of one attribute for every deduplicated query."""
    n_groups, k = len(attribute.groups), settings.k
    sizes = attribute.sizes
    base_rate = sizes / sizes.sum()
    uniform = np.full(n_groups, 1.0 / n_groups)
    labels = attribute.codes[item_ids]  # (u, k)
    counts = skew.group_counts(labels, n_groups)
    share = skew.shares(counts)
    skew_uniform = skew.skew(share, uniform, settings.floor)
    skew_base = skew.skew(share, base_rate, settings.floor)
    kl = skew.kl_divergence(share, base_rate)
    null = kl_null(attribute, base_rate, settings)
    p_group = nulls.group_count_p_values(counts, sizes, len(attribute.codes), k)
    p_value = null.p_values(kl)
    n_labelled = counts.sum(axis=1)
    ndkl = skew.ndkl(labels, n_groups, np.stack([uniform, base_rate]))
    groups = {
        "count": counts, "share": share,
        "base_count": np.broadcast_to(sizes, counts.shape), "base_rate": np.broadcast_to(base_rate, counts.shape),
        "skew_uniform": skew_uniform, "skew_base": skew_base, "casc": skew.casc(query_vectors, moments),
        "p_group": p_group, "q_group": _by_family(p_group, family),
    }
    queries = {
        "n_labelled": n_labelled, "n_unlabelled": k - n_labelled,
        "entropy": skew.normalised_entropy(share),
        "max_skew_uniform": skew_uniform.max(axis=1), "min_skew_uniform": skew_uniform.min(axis=1),
        "max_skew_base": skew_base.max(axis=1), "min_skew_base": skew_base.min(axis=1),
        "ndkl_uniform": ndkl[:, 0], "ndkl_base": ndkl[:, 1],
        "kl_base": kl, "bias_at_k": _bias(attribute, counts), "p_value": p_value,
        "q_value": _by_family(p_value[:, None], family)[:, 0],
    }
    return AttributeSkew(attribute, groups, queries, null)


def kl_null(attribute: Attribute, base_rate: np.ndarray, settings: SkewSettings) -> nulls.NullDistribution:
    """KL@k of random k-subsets; unlabelled items are one more colour, left out of the shares."""
    colours = np.append(attribute.sizes, attribute.n_unlabelled) if attribute.n_unlabelled else attribute.sizes
    n_groups = len(attribute.groups)

    def statistic(counts: np.ndarray) -> np.ndarray:
        return skew.kl_divergence(skew.shares(counts[:, :n_groups]), base_rate)

    seed = [settings.seed, zlib.crc32(attribute.name.encode())]  # independent of attribute order
    return nulls.null_distribution(colours, settings.k, statistic, exact_max=settings.exact_max,
                                   draws=settings.null_draws, seed=seed)


def _bias(attribute: Attribute, counts: np.ndarray) -> np.ndarray:
    if attribute.name != "gender" or not set(BINARY_GENDER) <= set(attribute.groups):
        return np.full(len(counts), np.nan)
    return skew.bias_at_k(counts, attribute.groups.index("male"), attribute.groups.index("female"))


def _by_family(p_values: np.ndarray, family: np.ndarray) -> np.ndarray:
    """BH q-values of each column of ``p_values`` (u, G) within each family of rows."""
    q = np.full(p_values.shape, np.nan)
    for member in np.unique(family):  # one family per template: a handful
        rows = family == member
        for column in range(p_values.shape[1]):
            q[rows, column] = nulls.bh_q_values(p_values[rows, column])
    return q


def skew_frame(results: list[AttributeSkew], queries: pl.DataFrame, k: int) -> pl.DataFrame:
    """The long table (SKEW_SCHEMA): ``queries`` has query_id, category, word, template, vector_row."""
    parts = []
    for result in results:
        u, n_groups = result.groups["count"].shape
        columns = {"vector_row": np.repeat(np.arange(u), n_groups),
                   "attribute": [result.attribute.name] * (u * n_groups),
                   "group": np.tile(np.asarray(result.attribute.groups, dtype=object), u).tolist()}
        columns |= {name: np.asarray(values).reshape(-1) for name, values in result.groups.items()}
        columns |= {name: np.repeat(values, n_groups) for name, values in result.queries.items()}
        parts.append(pl.DataFrame(columns))
    measured = pl.concat(parts, how="vertical_relaxed").with_row_index("order")
    table = queries.join(measured, on="vector_row", how="inner").sort("query_id", "order")
    table = table.with_columns(k=pl.lit(k)).select(list(SKEW_SCHEMA)).cast(SKEW_SCHEMA)
    return table.with_columns(pl.col(pl.Float64).fill_nan(None))
