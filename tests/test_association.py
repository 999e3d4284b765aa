"""WEAT/iEAT and SC-EAT: hand-computed cases, a brute-force permutation oracle, planted
associations, seeded sampling, bad inputs, and the published iEAT results (golden test)."""

from __future__ import annotations

import csv
import itertools
import math

import numpy as np
import polars as pl
import pytest

from engine.errors import InputError
from engine.faces.association import association_differences, sc_eat, weat
from engine.faces.permutation import PermutationConfig, combination_indicators, permutation_test
from tests.conftest import shared_path


def unit_at(*degrees: float) -> np.ndarray:
    radians = np.radians(degrees)
    return np.stack([np.cos(radians), np.sin(radians)], axis=1)


def brute_force_p(values: np.ndarray, n_first: int, alternative: str) -> float:
    """The definition, one split at a time: share of splits at least as extreme as observed."""
    n = len(values)
    diff = lambda idx: values[list(idx)].mean() - np.delete(values, list(idx)).mean()  # noqa: E731
    observed = diff(range(n_first))
    hits = 0
    splits = list(itertools.combinations(range(n), n_first))
    for split in splits:
        stat = diff(split)
        if alternative == "greater":
            hits += stat >= observed - 1e-12
        elif alternative == "less":
            hits += stat <= observed + 1e-12
        else:
            hits += abs(stat) >= abs(observed) - 1e-12
    return hits / len(splits)


def planted(rng, n: int, dim: int = 64, strength: float = 0.6):
    """X leans towards A's direction, Y towards B's."""
    pole_a, pole_b = rng.normal(size=dim), rng.normal(size=dim)
    noise = lambda k: rng.normal(size=(k, dim))  # noqa: E731
    return (noise(n) + strength * 3 * pole_a, noise(n) + strength * 3 * pole_b,
            noise(n) + 3 * pole_a, noise(n) + 3 * pole_b)


# --- hand-computed ---------------------------------------------------------------------------

def test_weat_hand_computed_case():
    # A = 0 degrees, B = 90 degrees: s(w) = cos(w) - sin(w).
    x, y, a, b = unit_at(0, 30), unit_at(60, 90), unit_at(0), unit_at(90)
    half = (math.sqrt(3) - 1) / 2
    scores = np.array([1, half, -half, -1])
    np.testing.assert_allclose(association_differences(np.concatenate([x, y]), a, b), scores)
    expected_d = (1 + half) / np.std(scores, ddof=1)
    result = weat(x, y, a, b)
    assert result.effect_size == pytest.approx(expected_d, abs=1e-12)
    assert result.statistic == pytest.approx(2 * (1 + half))
    # 6 splits of 4 items; sums 1+h (observed), 1-h, 0, 0, h-1, -1-h.
    assert (result.method, result.permutations, result.p_value) == ("exact", 6, pytest.approx(1 / 6))
    assert weat(x, y, a, b, permutation=PermutationConfig(alternative="less")).p_value == 1.0
    assert weat(x, y, a, b, permutation=PermutationConfig(alternative="two-sided")).p_value == \
        pytest.approx(2 / 6)


def test_sc_eat_hand_computed_case():
    a, b = unit_at(0, 20), unit_at(90, 110)
    w = unit_at(10, 100, 55)
    result = sc_eat(w, a, b)
    for row, angle in enumerate((10, 100, 55)):
        cos_a = np.cos(np.radians([angle - 0, angle - 20]))
        cos_b = np.cos(np.radians([angle - 90, angle - 110]))
        expected = (cos_a.mean() - cos_b.mean()) / np.std(np.concatenate([cos_a, cos_b]), ddof=1)
        assert result.effect_sizes[row] == pytest.approx(expected, abs=1e-12)
        assert result.p_values[row] == pytest.approx(brute_force_p(np.concatenate([cos_a, cos_b]), 2, "greater"))
    assert result.effect_sizes[0] > 0 > result.effect_sizes[1]
    assert result.method == "exact" and result.permutations == 6
    assert "std cos(w, A u B)" in result.variant


# --- permutation machinery against the definition --------------------------------------------

@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
@pytest.mark.parametrize("n_first,n_second", [(5, 5), (3, 6), (7, 2)])
def test_exact_permutation_p_matches_brute_force(alternative, n_first, n_second):
    values = np.random.default_rng(n_first * 10 + n_second).normal(size=n_first + n_second)
    tested = permutation_test(values, n_first, PermutationConfig(alternative=alternative))
    assert tested.method == "exact" and tested.permutations == math.comb(n_first + n_second, n_first)
    assert tested.p_values[0] == pytest.approx(brute_force_p(values, n_first, alternative), abs=1e-12)


def test_many_rows_share_one_matrix_product_and_match_one_by_one():
    values = np.random.default_rng(1).normal(size=(7, 12))
    together = permutation_test(values, 5, PermutationConfig(alternative="two-sided"))
    apart = [permutation_test(row, 5, PermutationConfig(alternative="two-sided")).p_values[0] for row in values]
    np.testing.assert_allclose(together.p_values, apart)


def test_sampled_p_is_seeded_reproducible_and_near_the_exact_one():
    values = np.random.default_rng(2).normal(size=16) + np.r_[np.full(8, 0.4), np.zeros(8)]
    exact = permutation_test(values, 8, PermutationConfig(exact_max=20_000))
    sampled = PermutationConfig(exact_max=0, permutations=20_000, seed=7)
    first, again = permutation_test(values, 8, sampled), permutation_test(values, 8, sampled)
    other_seed = permutation_test(values, 8, PermutationConfig(exact_max=0, permutations=20_000, seed=8))
    assert exact.method == "exact" and exact.permutations == 12_870
    assert first.method == "sampled" and first.permutations == 20_000
    assert first.p_values[0] == again.p_values[0]
    assert first.p_values[0] != other_seed.p_values[0]
    sigma = math.sqrt(exact.p_values[0] * (1 - exact.p_values[0]) / 20_000)
    assert abs(first.p_values[0] - exact.p_values[0]) < 5 * sigma


def test_sampled_p_counts_the_observed_split_once():
    values = np.r_[np.full(30, 5.0), np.zeros(30)] + np.random.default_rng(3).normal(0, 0.01, 60)
    tested = permutation_test(values, 30, PermutationConfig(permutations=1000))
    assert tested.method == "sampled" and tested.p_values[0] == 1 / 1000


@pytest.mark.parametrize("n_items,n_first", [(4, 2), (9, 1), (12, 5), (16, 8)])
def test_enumerated_splits_are_every_combination_once(n_items, n_first):
    rows = combination_indicators(n_items, n_first)
    expected = {tuple(int(i in c) for i in range(n_items))
                for c in itertools.combinations(range(n_items), n_first)}
    assert len(rows) == len(expected) and set(map(tuple, rows.astype(int))) == expected


def test_many_items_stream_their_splits_and_still_match_brute_force():
    values = np.random.default_rng(11).normal(size=30)  # 2**30 bit patterns would not pay: streamed
    for n_first in (1, 2):
        tested = permutation_test(values, n_first, PermutationConfig(alternative="two-sided"))
        assert tested.method == "exact" and tested.permutations == math.comb(30, n_first)
        assert tested.p_values[0] == pytest.approx(brute_force_p(values, n_first, "two-sided"))


def test_sampled_splits_have_the_mean_and_variance_of_independent_draws():
    values = np.random.default_rng(12).normal(size=12)  # 924 splits: the exact p is known
    exact = permutation_test(values, 6, PermutationConfig()).p_values[0]
    draws = 1000
    estimates = np.array([permutation_test(values, 6, PermutationConfig(exact_max=0, permutations=draws,
                                                                         seed=seed)).p_values[0]
                          for seed in range(60)])
    binomial_sd = math.sqrt(exact * (1 - exact) / draws)
    assert abs(estimates.mean() - exact) < 4 * binomial_sd / math.sqrt(60) + 1 / draws
    assert 0.6 < estimates.std(ddof=1) / binomial_sd < 1.5


def test_sampled_many_rows_match_one_by_one():
    values = np.random.default_rng(13).normal(size=(5, 40))
    config = PermutationConfig(permutations=3000, seed=2, alternative="less")
    together = permutation_test(values, 20, config)
    apart = [permutation_test(row, 20, config).p_values[0] for row in values]
    np.testing.assert_allclose(together.p_values, apart)


def test_threshold_decides_exact_or_sampled():
    values = np.random.default_rng(4).normal(size=14)  # C(14, 7) = 3,432 splits
    assert permutation_test(values, 7, PermutationConfig(exact_max=3432)).method == "exact"
    assert permutation_test(values, 7, PermutationConfig(exact_max=3431)).method == "sampled"


# --- planted associations ---------------------------------------------------------------------

def test_planted_association_is_found_and_reverses_with_the_targets():
    x, y, a, b = planted(np.random.default_rng(5), 20)
    found = weat(x, y, a, b)
    assert found.effect_size > 1.5 and found.p_value <= 0.001 and found.method == "sampled"
    reversed_ = weat(y, x, a, b)
    assert reversed_.effect_size == pytest.approx(-found.effect_size)
    assert reversed_.p_value > 0.99
    assert weat(y, x, a, b, permutation=PermutationConfig(alternative="two-sided")).p_value <= 0.002


def test_no_planted_association_gives_no_signal():
    rng = np.random.default_rng(6)
    x, y, a, b = (rng.normal(size=(20, 64)) for _ in range(4))
    result = weat(x, y, a, b, permutation=PermutationConfig(alternative="two-sided"))
    assert abs(result.effect_size) < 1.0 and result.p_value > 0.01


def test_effect_size_ignores_vector_lengths():
    x, y, a, b = planted(np.random.default_rng(7), 6)
    scale = np.random.default_rng(8).uniform(0.1, 10, size=(6, 1))
    assert weat(x * scale, y, a * scale, b).effect_size == pytest.approx(weat(x, y, a, b).effect_size)


def test_sc_eat_finds_items_near_a_and_matches_weat_scores():
    x, y, a, b = planted(np.random.default_rng(9), 10)
    result = sc_eat(np.concatenate([x, y]), a, b, permutation=PermutationConfig(permutations=2000))
    assert (result.effect_sizes[:10] > 0).all() and (result.effect_sizes[10:] < 0).all()
    assert (result.p_values[:10] < 0.01).all() and result.method == "sampled"
    quiet = sc_eat(x, a, b, test=False)
    assert quiet.p_values is None
    np.testing.assert_allclose(quiet.effect_sizes, result.effect_sizes[:10])


# --- unequal sizes and bad inputs -------------------------------------------------------------

def test_unequal_targets_are_refused_or_resplit():
    rng = np.random.default_rng(10)
    x, y, a, b = rng.normal(size=(4, 8)), rng.normal(size=(7, 8)), rng.normal(size=(5, 8)), rng.normal(size=(5, 8))
    with pytest.raises(InputError, match="differ in size.*resplit"):
        weat(x, y, a, b)
    result = weat(x, y, a, b, unequal="resplit")
    scores = association_differences(np.concatenate([x, y]), a, b)
    assert result.size_variant == "unequal-resplit" and result.permutations == math.comb(11, 4)
    assert result.p_value == pytest.approx(brute_force_p(scores, 4, "greater"))
    assert result.effect_size == pytest.approx((scores[:4].mean() - scores[4:].mean()) / scores.std(ddof=1))


@pytest.mark.parametrize("sets,message", [
    ((np.ones((3, 4)), np.ones((3, 5)), np.ones((2, 4)), np.ones((2, 4))), "different dimensions"),
    ((np.ones((0, 4)), np.ones((3, 4)), np.ones((2, 4)), np.ones((2, 4))), "non-empty"),
    ((np.full((3, 4), np.nan), np.ones((3, 4)), np.ones((2, 4)), np.ones((2, 4))), "NaN"),
    ((np.ones((3, 4)), np.zeros((3, 4)), np.ones((2, 4)), np.ones((2, 4))), "zero vector"),
    ((np.ones(4), np.ones((3, 4)), np.ones((2, 4)), np.ones((2, 4))), "2-D|shape"),
])
def test_bad_vectors_are_refused(sets, message):
    with pytest.raises(InputError, match=message):
        weat(*sets)


@pytest.mark.parametrize("kwargs,message", [
    ({"alternative": "bigger"}, "alternative"), ({"permutations": 1}, "permutations"),
    ({"exact_max": -1}, "exact_max"), ({"seed": -3}, "seed"),
])
def test_bad_permutation_settings_are_refused(kwargs, message):
    with pytest.raises(InputError, match=message):
        PermutationConfig(**kwargs)


def test_constant_scores_give_nan_effect_size():
    same = np.tile([1.0, 0.0], (3, 1))
    assert math.isnan(weat(same, same, unit_at(0), unit_at(90)).effect_size)


# --- golden: the published iEAT results -------------------------------------------------------

def golden_cases():
    root = shared_path("golden", "ieat")
    tests = {row["test"]: row for row in csv.DictReader(open(root / "tests.csv", newline=""))}
    published = [row for row in csv.DictReader(open(root / "results-full.csv", newline=""))
                 if row["Model"] == "igpt"]
    file_of = lambda directory: root / "embeddings" / f"{directory.replace('/', '_')}_igpt_l_32.csv"  # noqa: E731
    cases = []
    for row in published:
        test = tests[row["Test"]]
        # the published rows name each set by its leaf directory; tests.csv by parent/leaf
        assert [test[k].split("/")[-1] for k in "XYAB"] == [row[k] for k in "XYAB"]
        cases.append((row["Test"], [str(file_of(test[k])) for k in "XYAB"],
                      float(row["d"]), float(row["p"]), int(row["n_t"])))
    return cases


def test_golden_ieat_published_results(tmp_path):
    from engine.faces.eat_suite import EatConfig, run_suite

    cases = golden_cases()
    assert len(cases) == 39
    suite = tmp_path / "ieat.csv"
    with open(suite, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["test", "X", "Y", "A", "B"])
        writer.writerows([name, *files] for name, files, *_ in cases)
    summary = run_suite(EatConfig(suite=suite, out_dir=tmp_path / "out"))
    results = {row["test"]: row for row in pl.read_parquet(tmp_path / "out" / "results.parquet").to_dicts()}
    assert summary["failures"] == 0 and len(results) == 39
    for name, _, published_d, published_p, n in cases:
        row = results[name]
        assert row["n_x"] == row["n_y"] == n
        assert row["d"] == pytest.approx(published_d, abs=1e-6), name
        splits = math.comb(2 * n, n)
        if splits <= 10_000:  # the iEAT code enumerates these: p must be equal
            assert (row["method"], row["permutations"]) == ("exact", splits)
            assert round(row["p"] * splits) == round(published_p * splits), name
        else:  # two independent 10,000-split estimates: within Monte-Carlo error
            assert (row["method"], row["permutations"]) == ("sampled", 10_000)
            sigma = math.sqrt(2 * published_p * (1 - published_p) / 10_000)
            assert abs(row["p"] - published_p) <= 4.5 * sigma + 2e-4, name
