"""The audit's summary: per-attribute base rates and nulls, aggregates per category, the most skewed
words, and the short table the terminal shows. Reads only the skew table and attribute results."""

from __future__ import annotations

import math
from collections import Counter

import polars as pl

from engine.faces.groups import INTERSECTION
from engine.faces.retrieval_skew import QUERY_METRICS

KEYS = ("query_id", "category", "word", "template", "attribute")
AGGREGATED = ("entropy", "max_skew_uniform", "min_skew_uniform", "max_skew_base", "min_skew_base",
              "ndkl_uniform", "ndkl_base", "kl_base")
UNLABELLED_NOTE = ("Items without a label for an attribute (null, or no counterpart in a coarsening) are "
                   "left out of that attribute's shares, base rates and C-ASC; n_unlabelled counts them "
                   "in each top k. The null draws random k-subsets of all items, unlabelled included.")


def metrics_table(skew: pl.DataFrame) -> pl.DataFrame:
    """One row per (query, attribute) with the per-query metrics and the most over-represented group."""
    top = (skew.sort("skew_base", descending=True, nulls_last=True, maintain_order=True)
           .unique(list(KEYS), keep="first", maintain_order=True)
           .select(*KEYS, top_group="group", top_share="share", top_base_rate="base_rate"))
    metrics = skew.unique(list(KEYS), keep="first", maintain_order=True).select(*KEYS, "k", *QUERY_METRICS)
    return metrics.join(top, on=list(KEYS), how="left", maintain_order="left")


def summarise(skew: pl.DataFrame, results, config, top: int = 3) -> dict:
    metrics = metrics_table(skew)
    significant = (pl.col("q_value") < config.alpha).sum().alias("significant")
    means = [pl.col(m).mean().alias(f"mean_{m}") for m in AGGREGATED]
    overall = metrics.group_by("attribute", "template", maintain_order=True).agg(
        pl.len().alias("queries"), *means, significant)
    categories = metrics.group_by("category", "attribute", "template", maintain_order=True).agg(
        pl.len().alias("words"), *means, significant)
    ranked = metrics.sort("kl_base", descending=True, nulls_last=True, maintain_order=True)
    most = ranked.group_by("category", "attribute", "template", maintain_order=True).head(top)
    bias = metrics.filter(pl.col("bias_at_k").is_not_null()).group_by("template", maintain_order=True).agg(
        queries=pl.len(), mean=pl.col("bias_at_k").mean(), mean_abs=pl.col("bias_at_k").abs().mean())
    return _clean({
        "k": config.k, "queries": metrics["query_id"].n_unique(), "words": metrics["word"].n_unique(),
        "categories_count": metrics["category"].n_unique(), "alpha": config.alpha,
        "skew_floor": config.floor, "seed": config.seed, "template_mode": config.template_mode,
        "attributes": {r.attribute.name: _attribute(r) for r in results},
        "unlabelled": UNLABELLED_NOTE,
        "overall": overall.to_dicts(), "categories": categories.to_dicts(),
        "most_skewed": most.select("category", "attribute", "template", "word", "kl_base", "q_value",
                                   "top_group", "top_share", "top_base_rate").to_dicts(),
        "bias_at_k": bias.to_dicts(),
    })


def _attribute(result) -> dict:
    sizes = result.attribute.sizes
    total = int(sizes.sum())
    return {"groups": list(result.attribute.groups),
            "base_counts": dict(zip(result.attribute.groups, sizes.tolist())),
            "base_rates": {g: c / total for g, c in zip(result.attribute.groups, sizes.tolist())},
            "unlabelled_items": result.attribute.n_unlabelled,
            "null": {"method": result.null.method, "draws": result.null.draws}}


def _clean(value):
    """JSON-safe: NaN/inf -> None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def render(summary: dict, rows_per_category: int = 3) -> str:
    """Most skewed words per category (by KL@k to the base rate), for the terminal."""
    header = ("category", "word", "attribute", "over-represented (share, base rate)", "KL@k", "q")
    rows, seen = [], Counter()
    for row in sorted(summary["most_skewed"], key=lambda r: (r["category"], -(r["kl_base"] or 0))):
        if INTERSECTION in row["attribute"] or seen[row["category"]] >= rows_per_category:
            continue
        seen[row["category"]] += 1
        group = f"{row['top_group']} ({_pct(row['top_share'])}, {_pct(row['top_base_rate'])})"
        rows.append((row["category"], row["word"], row["attribute"], group,
                     _number(row["kl_base"], ".3f"), _number(row["q_value"], ".2g")))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    table = ["  ".join(cell.rjust(w) if i >= 4 else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths)))
             for r in [header, *rows]]
    lines = [f"audit of {summary.get('index', {}).get('name', '?')}: {summary['words']} words, "
             f"{summary['queries']} queries, k = {summary['k']}; attributes: {', '.join(summary['attributes'])}",
             "", *table, "", f"significant (q < {summary['alpha']}) per attribute: " + ", ".join(
                 f"{o['attribute']} [{o['template']}] {o['significant']}/{o['queries']}" for o in summary["overall"])]
    return "\n".join(lines)


def _number(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"
