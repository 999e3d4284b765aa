"""Planted truth beside what the pipeline measured: the demo's recovery checks.

- Retrieval: for a planted word, the group the audit finds most over-retrieved on the planted axis
  (largest share / base rate) must be the planted group, and significantly so (q < alpha). A
  control word must show no significant skew on any axis (q >= alpha on every axis).
- Captions: for every word x group pair, the scanner's count of captions holding both must equal
  the count planted by the generator, exactly.
"""

from __future__ import annotations

import polars as pl

RETRIEVAL_SCHEMA = {
    "word": pl.Utf8, "category": pl.Utf8, "kind": pl.Utf8, "attribute": pl.Utf8,
    "planted_group": pl.Utf8, "measured_top_group": pl.Utf8, "top_group_share": pl.Float64,
    "top_group_base_rate": pl.Float64, "planted_group_share": pl.Float64,
    "planted_group_base_rate": pl.Float64, "max_skew_base": pl.Float64, "q_value": pl.Float64,
    "passed": pl.Boolean,
}
COOCCURRENCE_SCHEMA = {
    "word": pl.Utf8, "axis": pl.Utf8, "group": pl.Utf8, "planted": pl.Boolean,
    "planted_count": pl.Int64, "scanned_count": pl.Int64, "passed": pl.Boolean,
}


def retrieval_checks(skew: pl.DataFrame, truth: dict, alpha: float) -> pl.DataFrame:
    """One row per planted word (its planted axis) and per control word x axis."""
    rows = []
    for word in truth["words"]:
        axes = [word["planted_axis"]] if not word["control"] else list(truth["axes"])
        for axis in axes:
            groups = skew.filter((pl.col("word") == word["word"]) & (pl.col("attribute") == axis))
            if groups.is_empty():
                rows.append(_missing(word, axis))
                continue
            rows.append(_retrieval_row(word, axis, groups, alpha))
    return pl.DataFrame(rows, schema=RETRIEVAL_SCHEMA)


def cooccurrence_checks(cooccurrence: pl.DataFrame, truth: dict) -> pl.DataFrame:
    """Planted n_both vs scanned n_both for every word x (axis, group) of the planted truth."""
    planted = pl.DataFrame(truth["cooccurrence"]).select(
        "word", "axis", "group", "planted", pl.col("n_both").alias("planted_count"))
    scanned = cooccurrence.select("word", "axis", "group", pl.col("n_both").alias("scanned_count"))
    joined = planted.join(scanned, on=["word", "axis", "group"], how="left")
    joined = joined.with_columns(
        pl.col("scanned_count").cast(pl.Int64),
        passed=pl.col("scanned_count").is_not_null() & (pl.col("scanned_count") == pl.col("planted_count")))
    return joined.select(list(COOCCURRENCE_SCHEMA)).cast(COOCCURRENCE_SCHEMA)


def summary(retrieval: pl.DataFrame, cooccurrence: pl.DataFrame) -> dict:
    def count(frame: pl.DataFrame) -> dict:
        return {"checks": frame.height, "passed": int(frame["passed"].sum()),
                "failed": frame.filter(~pl.col("passed")).select("word").to_series().unique().sort().to_list()}

    planted = retrieval.filter(pl.col("kind") == "planted")
    controls = retrieval.filter(pl.col("kind") == "control")
    passed = bool(retrieval["passed"].all() and cooccurrence["passed"].all())
    return {"passed": passed, "planted_words": count(planted), "control_words": count(controls),
            "cooccurrence_pairs": count(cooccurrence)}


def _retrieval_row(word: dict, axis: str, groups: pl.DataFrame, alpha: float) -> dict:
    ratio = groups.with_columns(ratio=pl.col("share") / pl.col("base_rate"))
    top = ratio.sort(["ratio", "group"], descending=[True, False]).row(0, named=True)
    q_value = float(top["q_value"])
    planted_group = word["planted_group"]
    if word["control"]:
        passed, share, base = q_value >= alpha, None, None
    else:
        mine = ratio.filter(pl.col("group") == planted_group).row(0, named=True)
        passed = top["group"] == planted_group and q_value < alpha
        share, base = float(mine["share"]), float(mine["base_rate"])
    return {"word": word["word"], "category": word["category"],
            "kind": "control" if word["control"] else "planted", "attribute": axis,
            "planted_group": planted_group, "measured_top_group": top["group"],
            "top_group_share": float(top["share"]), "top_group_base_rate": float(top["base_rate"]),
            "planted_group_share": share, "planted_group_base_rate": base,
            "max_skew_base": float(top["max_skew_base"]), "q_value": q_value, "passed": passed}


def _missing(word: dict, axis: str) -> dict:
    """A word the audit did not measure: every figure empty, the check failed."""
    row = dict.fromkeys(RETRIEVAL_SCHEMA)
    row.update(word=word["word"], category=word["category"], attribute=axis, passed=False,
               kind="control" if word["control"] else "planted", planted_group=word["planted_group"])
    return row
