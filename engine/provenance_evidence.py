"""Per-word verdicts of the provenance stage: the direction of a word's retrieval skew, whether
its captions support or contradict it (and how strongly), and where the model's skew exceeds or
contradicts its captions. Input: the link table of engine.provenance.link."""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    from engine.provenance import ProvenanceConfig

WORD_KEYS = ["category", "word", "attribute"]
STRENGTHS = ((3.29, "strong"), (1.96, "moderate"), (0.0, "weak"))  # |z| cut-offs, two-sided 0.001, 0.05
WORD_COLUMNS = ["word", "category", "attribute", "axis", "group", "face_groups", "retrieval_share",
                "retrieval_base_rate", "retrieval_log_ratio", "retrieval_q", "retrieval_significant",
                "caption_share", "caption_base_rate", "caption_log_ratio", "caption_total", "caption_z",
                "by_definition", "evidence", "strength", "caption_top_group", "same_top_group",
                "amplification", "divergence"]


def strength(z: pl.Expr) -> pl.Expr:
    """weak / moderate / strong by |z| (STRENGTHS); null without a z."""
    expr = pl.lit(None, dtype=pl.Utf8)
    for cut, name in reversed(STRENGTHS):
        expr = pl.when(z.abs() >= cut).then(pl.lit(name)).otherwise(expr)
    return expr


def directions(links: pl.DataFrame) -> pl.DataFrame:
    """Per word and attribute, the link row of the most over-retrieved group (ties: group name),
    with the group the captions over-represent most (``caption_top_group``)."""
    valid = links.filter(pl.col("retrieval_log_ratio").is_not_null())
    top = valid.sort(["retrieval_log_ratio", "group"], descending=[True, False], nulls_last=True)
    top = top.group_by(WORD_KEYS, maintain_order=True).first()
    caption_top = valid.filter(pl.col("caption_total") > 0).sort(
        ["caption_log_ratio", "group"], descending=[True, False], nulls_last=True
    ).group_by(WORD_KEYS, maintain_order=True).agg(caption_top_group=pl.col("group").first())
    return top.join(caption_top, on=WORD_KEYS, how="left")


def word_evidence(links: pl.DataFrame, skew: pl.DataFrame, config: ProvenanceConfig) -> pl.DataFrame:
    """Per word and attribute: the retrieval direction and whether the captions support it."""
    words = directions(links).join(retrieval_significance(skew), on=WORD_KEYS, how="left")
    z, thr = pl.col("caption_z"), config.z_threshold
    evidence = (
        pl.when(pl.col("by_definition")).then(pl.lit("by_definition"))
        .when(pl.col("caption_total") < config.min_caption_mentions).then(pl.lit("insufficient"))
        .when(z.is_null()).then(pl.lit("insufficient"))
        .when(z >= thr).then(pl.lit("supported"))
        .when(z <= -thr).then(pl.lit("contradicted"))
        .otherwise(pl.lit("neutral"))
    )
    skewed = pl.col("retrieval_q").is_null() | (pl.col("retrieval_q") < config.q_threshold)
    words = words.with_columns(evidence=evidence, strength=strength(z), retrieval_significant=skewed)
    divergence = (
        pl.when(~pl.col("retrieval_significant")).then(None)
        .when(pl.col("evidence") == "contradicted").then(pl.lit("contradicts"))
        .when(pl.col("evidence").is_in(["supported", "neutral"])
              & (pl.col("amplification") >= config.amplification_threshold)).then(pl.lit("exceeds"))
    )
    words = words.with_columns(divergence=divergence,
                               same_top_group=pl.col("group") == pl.col("caption_top_group"))
    return words.select(WORD_COLUMNS).sort("category", "word", "attribute")


def retrieval_significance(skew: pl.DataFrame) -> pl.DataFrame:
    """The audit's per-word q-value (else p-value) for each attribute; over several templates the
    smallest, times their number (Bonferroni), capped at 1. Null when the audit has neither."""
    column = next((c for c in ("q_value", "p_value") if c in skew.columns), None)
    if column is None:
        return skew.select(WORD_KEYS).unique().with_columns(retrieval_q=pl.lit(None, dtype=pl.Float64))
    query = [*WORD_KEYS, "template"] if "template" in skew.columns else WORD_KEYS
    per_query = skew.unique(query).select(*WORD_KEYS, q=pl.col(column).cast(pl.Float64))
    return per_query.group_by(WORD_KEYS).agg(
        retrieval_q=(pl.col("q").min() * pl.col("q").count()).clip(upper_bound=1.0))


def divergent_words(words: pl.DataFrame) -> pl.DataFrame:
    """Words whose retrieval skew exceeds or contradicts their captions, strongest first."""
    return words.filter(pl.col("divergence").is_not_null()).sort(
        ["divergence", "amplification"], descending=[False, True])
