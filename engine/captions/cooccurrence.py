"""Co-occurrence statistics: counts per word and group -> PMI and informative-prior log-odds.

Input counts are caption counts (a caption counts once per term): ``n_word`` captions with the
word, ``n_group`` captions with any term of the group, ``n_both`` captions with both, out of
``n_captions``. Per (word, group, variant):

- ``pmi = ln(n_both * n_captions / (n_word * n_group))`` (natural log; null when n_both = 0) and
  ``npmi = pmi / -ln(n_both / n_captions)`` (in [-1, 1]; null when n_both = 0 or the pair is
  in every caption).
- ``log_odds`` and ``log_odds_z``: the log-odds ratio with an informative Dirichlet prior of
  Monroe, Colaresi & Quinn (2008, "Fightin' Words", eq. 16-22). The contrast is **the group
  against the other groups of its axis** (same variant): corpus i = the captions mentioning g,
  corpus j = the captions mentioning another group of the axis; the "word counts" are caption
  counts ``y_w^i = n_both(w, g)``, ``y_w^j = sum over g' != g of n_both(w, g')`` and
  ``n^i = sum_w y_w^i``, ``n^j = sum_w y_w^j`` over the distinct taxonomy words. The prior is
  ``alpha_w = alpha_0 * n_word(w) / sum_v n_word(v)`` (the words' frequencies in the whole
  corpus, ``alpha_0 = prior_scale``), and
  ``delta = ln((y^i + a) / (n^i + a0 - y^i - a)) - ln((y^j + a) / (n^j + a0 - y^j - a))``,
  ``var = 1 / (y^i + a) + 1 / (y^j + a)``, ``z = delta / sqrt(var)``. Positive z: the word is
  over-represented in captions about g relative to captions about the axis' other groups. Null
  for an axis with a single group.
"""

from __future__ import annotations

import polars as pl

OUTPUT_COLUMNS = ("category", "word", "axis", "group", "variant", "n_word", "n_group", "n_both",
                  "n_captions", "n_unique_captions_both", "pmi", "npmi", "log_odds", "log_odds_z",
                  "word_is_group_term")
DEFAULT_PRIOR_SCALE = 1000.0


def cooccurrence_table(terms: pl.DataFrame, categories: pl.DataFrame, term_counts: pl.DataFrame,
                       pairs: pl.DataFrame, shared_forms: pl.DataFrame, n_captions: int, *,
                       prior_scale: float = DEFAULT_PRIOR_SCALE) -> pl.DataFrame:
    """One row per (category, word) x (axis, group, variant), zero counts included.

    ``term_counts``: term_id, n; ``pairs``: word_term_id, group_term_id, n_both,
    n_unique_captions_both; ``shared_forms``: word_term_id, group_term_id of pairs where a form of
    the word is itself a form of the group (the co-occurrence is then partly by definition)."""
    counts = terms.join(term_counts, on="term_id", how="left").with_columns(pl.col("n").fill_null(0))
    words = counts.filter(pl.col("kind") == "word").select(
        word_term_id="term_id", word="word", n_word="n")
    groups = counts.filter(pl.col("kind") == "group").select(
        group_term_id="term_id", axis="axis", group="group", variant="variant", n_group="n")
    shared = shared_forms.select("word_term_id", "group_term_id").unique().with_columns(
        word_is_group_term=pl.lit(True))
    table = (words.join(groups, how="cross")
             .join(pairs, on=["word_term_id", "group_term_id"], how="left")
             .join(shared, on=["word_term_id", "group_term_id"], how="left")
             .with_columns(pl.col("n_both", "n_unique_captions_both").fill_null(0).cast(pl.Int64),
                           pl.col("word_is_group_term").fill_null(False),
                           n_word=pl.col("n_word").cast(pl.Int64),
                           n_group=pl.col("n_group").cast(pl.Int64),
                           n_captions=pl.lit(n_captions, dtype=pl.Int64)))
    table = log_odds(pmi(table), prior_scale)
    table = table.join(categories, on="word", how="left")
    return table.select(OUTPUT_COLUMNS).sort("variant", "category", "word", "axis", "group")


def pmi(table: pl.DataFrame) -> pl.DataFrame:
    both, n = pl.col("n_both").cast(pl.Float64), pl.col("n_captions").cast(pl.Float64)
    value = (both * n / (pl.col("n_word") * pl.col("n_group")).cast(pl.Float64)).log()
    table = table.with_columns(pmi=pl.when(pl.col("n_both") > 0).then(value))
    denominator = -(both / n).log()
    return table.with_columns(
        npmi=pl.when((pl.col("n_both") > 0) & (denominator > 0)).then(pl.col("pmi") / denominator))


def log_odds(table: pl.DataFrame, prior_scale: float) -> pl.DataFrame:
    """Monroe et al.'s informative-prior log-odds of each group against its axis' other groups."""
    if prior_scale <= 0:
        raise ValueError(f"prior_scale must be positive, not {prior_scale}")
    words = table.select("word_term_id", "n_word").unique()
    total = words["n_word"].sum()
    n_distinct = max(words.height, 1)
    alpha = (pl.lit(prior_scale) * pl.col("n_word") / total) if total else pl.lit(prior_scale / n_distinct)
    side = ["axis", "variant"]
    table = table.with_columns(
        alpha=alpha,
        y_i=pl.col("n_both").cast(pl.Float64),
        y_j=(pl.col("n_both").sum().over("word_term_id", *side) - pl.col("n_both")).cast(pl.Float64),
        groups_in_axis=pl.col("group").n_unique().over(side))
    table = table.with_columns(
        n_i=pl.col("y_i").sum().over("group_term_id"),
        n_j=pl.col("y_j").sum().over("group_term_id"))
    a, a0 = pl.col("alpha"), pl.lit(prior_scale)
    delta = (((pl.col("y_i") + a) / (pl.col("n_i") + a0 - pl.col("y_i") - a)).log()
             - ((pl.col("y_j") + a) / (pl.col("n_j") + a0 - pl.col("y_j") - a)).log())
    variance = 1 / (pl.col("y_i") + a) + 1 / (pl.col("y_j") + a)
    several = pl.col("groups_in_axis") > 1
    table = table.with_columns(log_odds=pl.when(several).then(delta))
    table = table.with_columns(log_odds_z=pl.col("log_odds") / variance.sqrt())
    return table.drop("alpha", "y_i", "y_j", "n_i", "n_j", "groups_in_axis")
