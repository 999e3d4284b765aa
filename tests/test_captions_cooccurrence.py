"""PMI and Monroe et al.'s informative-prior log-odds against a hand-written computation."""

from __future__ import annotations

import math

import polars as pl
import pytest

from engine.captions.cooccurrence import OUTPUT_COLUMNS, cooccurrence_table

TERMS = pl.DataFrame(
    [(0, "word", "nurse", None, None, None), (1, "word", "doctor", None, None, None),
     (2, "word", "chef", None, None, None),
     (3, "group", None, "gender", "female", "unambiguous"), (4, "group", None, "gender", "male", "unambiguous"),
     (5, "group", None, "race", "black", "unambiguous")],
    schema={"term_id": pl.Int32, "kind": pl.Utf8, "word": pl.Utf8, "axis": pl.Utf8, "group": pl.Utf8,
            "variant": pl.Utf8}, orient="row")
CATEGORIES = pl.DataFrame({"word": ["nurse", "doctor", "chef", "chef"],
                           "category": ["occupation", "occupation", "occupation", "hobby"]})
N_WORD = {0: 40, 1: 100, 2: 10}
N_GROUP = {3: 300, 4: 250, 5: 30}
BOTH = {(0, 3): 30, (0, 4): 4, (1, 3): 20, (1, 4): 60, (2, 4): 3, (1, 5): 2}
N = 10_000


def table(prior_scale=100.0) -> pl.DataFrame:
    counts = pl.DataFrame({"term_id": list(N_WORD) + list(N_GROUP),
                           "n": list(N_WORD.values()) + list(N_GROUP.values())},
                          schema={"term_id": pl.Int32, "n": pl.Int64})
    pairs = pl.DataFrame([(w, g, n, n - 1) for (w, g), n in BOTH.items()], orient="row",
                         schema={"word_term_id": pl.Int32, "group_term_id": pl.Int32,
                                 "n_both": pl.Int64, "n_unique_captions_both": pl.Int64})
    shared = pl.DataFrame({"word_term_id": [2], "group_term_id": [4]},
                          schema={"word_term_id": pl.Int32, "group_term_id": pl.Int32})
    return cooccurrence_table(TERMS, CATEGORIES, counts, pairs, shared, N, prior_scale=prior_scale)


def expected_log_odds(w: int, g: int, others: list[int], a0: float) -> tuple[float, float]:
    """Monroe, Colaresi & Quinn (2008), eq. 16 and 20, written out term by term."""
    alpha = a0 * N_WORD[w] / sum(N_WORD.values())
    y_i = BOTH.get((w, g), 0)
    y_j = sum(BOTH.get((w, o), 0) for o in others)
    n_i = sum(BOTH.get((v, g), 0) for v in N_WORD)
    n_j = sum(BOTH.get((v, o), 0) for v in N_WORD for o in others)
    delta = (math.log((y_i + alpha) / (n_i + a0 - y_i - alpha))
             - math.log((y_j + alpha) / (n_j + a0 - y_j - alpha)))
    return delta, delta / math.sqrt(1 / (y_i + alpha) + 1 / (y_j + alpha))


@pytest.mark.parametrize("prior_scale", [1.0, 100.0, 5000.0])
def test_every_cell_against_the_formulas(prior_scale):
    result = table(prior_scale)
    assert result.columns == list(OUTPUT_COLUMNS)
    assert result.height == 4 * 3  # (3 words, chef in two categories) x 3 groups, zeros included
    for row in result.iter_rows(named=True):
        w = {"nurse": 0, "doctor": 1, "chef": 2}[row["word"]]
        g = {"female": 3, "male": 4, "black": 5}[row["group"]]
        both = BOTH.get((w, g), 0)
        assert (row["n_word"], row["n_group"], row["n_both"], row["n_captions"]) == (N_WORD[w], N_GROUP[g], both, N)
        assert row["n_unique_captions_both"] == max(both - 1, 0)
        if both:
            pmi = math.log(both * N / (N_WORD[w] * N_GROUP[g]))
            assert row["pmi"] == pytest.approx(pmi)
            assert row["npmi"] == pytest.approx(pmi / -math.log(both / N))
        else:
            assert row["pmi"] is None and row["npmi"] is None
        if row["axis"] == "gender":
            delta, z = expected_log_odds(w, g, [7 - g], prior_scale)
            assert row["log_odds"] == pytest.approx(delta) and row["log_odds_z"] == pytest.approx(z)
        else:  # an axis with one group has nothing to contrast with
            assert row["log_odds"] is None and row["log_odds_z"] is None
        assert row["word_is_group_term"] == ((w, g) == (2, 4))


def test_a_hand_computed_cell():
    row = table(100.0).filter(word="nurse", group="female").row(0, named=True)
    # alpha = 100 * 40/150; y_i = 30, n_i = 50; y_j = 4, n_j = 67:
    # ln(56.667/93.333) - ln(30.667/136.333) = -0.4990 + 1.4919 = 0.9929
    alpha = 80 / 3
    delta = math.log((30 + alpha) / (50 + 100 - 30 - alpha)) - math.log((4 + alpha) / (67 + 100 - 4 - alpha))
    assert row["log_odds"] == pytest.approx(delta) and delta == pytest.approx(0.9929, abs=1e-4)
    assert row["pmi"] == pytest.approx(math.log(30 * 10_000 / (40 * 300)))
    # symmetric contrast between two groups: female and male log-odds of a word are opposite
    male = table(100.0).filter(word="nurse", group="male").row(0, named=True)
    assert male["log_odds"] == pytest.approx(-row["log_odds"])
