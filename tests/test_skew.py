"""Skew metrics, nulls and attribute encoding: each against a hand-computed case and an independent
oracle (brute force from the definition, scipy, fairlearn's MetricFrame)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import polars as pl
import pytest
from scipy import stats

from engine.errors import InputError
from engine.faces import groups, nulls, skew


# --- brute-force oracles, written from the definitions in METHODS.md §2 ---------------------------

def ndkl_brute(row, n_groups, target):
    ranked = [g for g in row if g >= 0]
    total, z = 0.0, 0.0
    for i in range(1, len(ranked) + 1):
        d = np.bincount(ranked[:i], minlength=n_groups) / i
        kl = sum(p * math.log(p / t) for p, t in zip(d, target) if p > 0)
        total += kl / math.log2(i + 1)
        z += 1 / math.log2(i + 1)
    return total / z


def casc_brute(query, vectors, codes, group):
    labelled = codes >= 0
    scores = vectors[labelled].astype(np.float64) @ query.astype(np.float64)
    inside = codes[labelled] == group
    return (scores[inside].mean() - scores[~inside].mean()) / scores.std(ddof=1)


# --- counts, shares, entropy, skew, KL ------------------------------------------------------------

def test_counts_and_shares_hand_case():
    labels = np.array([[0, 0, 1, -1], [2, 2, 2, 2], [-1, -1, -1, -1]])
    counts = skew.group_counts(labels, 3)
    assert counts.tolist() == [[2, 1, 0], [0, 0, 4], [0, 0, 0]]
    p = skew.shares(counts)
    np.testing.assert_allclose(p[:2], [[2 / 3, 1 / 3, 0], [0, 0, 1]])
    assert np.isnan(p[2]).all()


def test_entropy_hand_case_and_scipy():
    p = np.array([[0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(skew.normalised_entropy(p), [math.log(2) / math.log(3), 1.0, 0.0], atol=1e-12)
    rng = np.random.default_rng(1)
    random = rng.dirichlet(np.ones(7), size=50)
    random[::5, 2] = 0
    random /= random.sum(1, keepdims=True)
    expected = [stats.entropy(row) / math.log(7) for row in random]
    np.testing.assert_allclose(skew.normalised_entropy(random), expected, rtol=1e-12)


def test_skew_hand_case_with_floor():
    p = np.array([[0.75, 0.25, 0.0]])
    uniform = np.full(3, 1 / 3)
    values = skew.skew(p, uniform, floor=1 / 4)
    np.testing.assert_allclose(values, [[math.log(2.25), math.log(0.75), math.log(0.75)]])
    base = np.array([0.5, 0.25, 0.25])
    np.testing.assert_allclose(skew.skew(p, base, floor=1 / 4), [[math.log(1.5), 0.0, 0.0]], atol=1e-12)


def test_skew_against_base_rate_matches_fairlearn_selection_rates():
    metrics = pytest.importorskip("fairlearn.metrics")
    rng = np.random.default_rng(2)
    n, k, names = 500, 60, np.array(["a", "b", "c", "d"])
    codes = rng.choice(4, size=n, p=[0.4, 0.3, 0.2, 0.1])
    top = rng.choice(n, size=k, replace=False)
    retrieved = np.zeros(n, dtype=int)
    retrieved[top] = 1
    frame = metrics.MetricFrame(metrics=metrics.selection_rate, y_true=retrieved, y_pred=retrieved,
                                sensitive_features=names[codes])
    expected = np.log(frame.by_group[names].to_numpy() / frame.overall)  # ln(p_R(g) / p_D(g))
    counts = skew.group_counts(codes[top][None, :], 4)
    base = np.bincount(codes, minlength=4) / n
    got = skew.skew(skew.shares(counts), base, floor=1 / k)[0]
    present = counts[0] > 0
    np.testing.assert_allclose(got[present], expected[present], rtol=1e-12)
    counts_frame = metrics.MetricFrame(metrics=metrics.count, y_true=retrieved[top], y_pred=retrieved[top],
                                       sensitive_features=names[codes[top]])
    assert counts_frame.by_group.reindex(names, fill_value=0).tolist() == counts[0].tolist()


def test_kl_hand_case_and_scipy():
    p = np.array([[0.5, 0.5, 0.0]])
    base = np.array([0.25, 0.25, 0.5])
    np.testing.assert_allclose(skew.kl_divergence(p, base), [math.log(2)])
    rng = np.random.default_rng(3)
    random = rng.dirichlet(np.ones(5), size=20)
    target = rng.dirichlet(np.ones(5))
    np.testing.assert_allclose(skew.kl_divergence(random, target), [stats.entropy(r, target) for r in random])


# --- NDKL ------------------------------------------------------------------------------------------

def test_ndkl_hand_case():
    # top 1 = group 0: KL((1,0) || (1/2,1/2)) = ln 2, weight 1; top 2 balanced: KL 0
    expected = math.log(2) / (1 + 1 / math.log2(3))
    np.testing.assert_allclose(skew.ndkl(np.array([[0, 1]]), 2, np.array([0.5, 0.5])), [expected])
    # an unlabelled item is dropped from the ranking
    np.testing.assert_allclose(skew.ndkl(np.array([[0, -1, 1]]), 2, np.array([0.5, 0.5])), [expected])


def test_ndkl_matches_brute_force():
    rng = np.random.default_rng(4)
    labels = rng.choice(5, size=(40, 30), p=[0.5, 0.2, 0.1, 0.1, 0.1]) - 1  # -1 = unlabelled
    target = np.array([0.4, 0.3, 0.2, 0.1])
    expected = [ndkl_brute(row, 4, target) for row in labels]
    np.testing.assert_allclose(skew.ndkl(labels, 4, target), expected, rtol=1e-10)
    uniform = [ndkl_brute(row, 4, np.full(4, 0.25)) for row in labels]
    both = skew.ndkl(labels, 4, np.stack([target, np.full(4, 0.25)]))
    np.testing.assert_allclose(both, np.column_stack([expected, uniform]), rtol=1e-10)
    assert np.isnan(skew.ndkl(np.full((1, 3), -1), 4, target)).all()


# --- Bias@K ----------------------------------------------------------------------------------------

def test_bias_at_k_hand_case():
    counts = np.array([[3, 1], [0, 4], [2, 2], [0, 0]])
    got = skew.bias_at_k(counts, 0, 1)
    np.testing.assert_allclose(got[:3], [0.5, -1.0, 0.0])
    assert np.isnan(got[3])


# --- C-ASC -----------------------------------------------------------------------------------------

def test_casc_hand_case():
    vectors = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=np.float32)
    codes = np.array([0, 0, 1, 1])
    query = np.array([[1.0, 0.0]])
    (moments,) = skew.item_moments(skew.ItemStatistics.of(vectors), vectors, [codes], [2])
    # cosines 1, 1, 0, 0: means 1 and 0, std (ddof 1) = sqrt(1/3)
    np.testing.assert_allclose(skew.casc(query, moments), [[math.sqrt(3), -math.sqrt(3)]], rtol=1e-6)


@pytest.mark.parametrize("block", [16_384, 64])
@pytest.mark.parametrize("unlabelled_share", [0.0, 0.2, 0.7])
def test_casc_matches_brute_force_over_all_items(unlabelled_share, block, monkeypatch):
    monkeypatch.setattr(skew.ItemStatistics, "BLOCK", block)  # one block, or several
    rng = np.random.default_rng(5)
    n, d, n_groups = 400, 16, 3
    vectors = rng.normal(size=(n, d)).astype(np.float32) + 0.5  # a common component, as in CLIP
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    codes = rng.choice(n_groups, size=n)
    codes[rng.random(n) < unlabelled_share] = -1
    queries = rng.normal(size=(6, d))
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    (moments,) = skew.item_moments(skew.ItemStatistics.of(vectors), vectors, [codes], [n_groups])
    expected = [[casc_brute(q, vectors, codes, g) for g in range(n_groups)] for q in queries]
    np.testing.assert_allclose(skew.casc(queries, moments), expected, rtol=1e-4)


def test_item_statistics_accumulate_block_by_block(monkeypatch):
    rng = np.random.default_rng(8)
    vectors = (rng.normal(size=(1000, 12)) + 0.5).astype(np.float32)
    whole = skew.ItemStatistics.of(vectors)
    monkeypatch.setattr(skew.ItemStatistics, "BLOCK", 64)
    blocked = skew.ItemStatistics.of(vectors)
    centred = vectors.astype(np.float64) - whole.centre.astype(np.float64)
    scale = np.trace(centred.T @ centred)  # off-diagonal entries near 0: compare on this scale
    np.testing.assert_allclose(blocked.gram, centred.T @ centred, atol=1e-6 * scale)
    np.testing.assert_allclose(whole.gram, centred.T @ centred, atol=1e-6 * scale)
    round_trip = skew.ItemStatistics.from_array(whole.to_array(), whole.count)
    np.testing.assert_array_equal(round_trip.gram, whole.gram)
    np.testing.assert_array_equal(round_trip.mean, whole.mean)


# --- nulls -----------------------------------------------------------------------------------------

def kl_statistic(n_groups, base_rate):
    return lambda counts: skew.kl_divergence(skew.shares(counts[:, :n_groups]), base_rate)


def brute_null_p(colours, k, observed_counts, statistic):
    items = np.repeat(np.arange(len(colours)), colours)
    subsets = list(itertools.combinations(range(len(items)), k))
    values = statistic(np.stack([np.bincount(items[list(s)], minlength=len(colours)) for s in subsets]))
    observed = statistic(np.asarray(observed_counts)[None, :])[0]
    return np.mean(values >= observed - 1e-12)


def test_null_hand_case():
    # 2 items of group a, 2 of b, k = 2: aa (1/6), ab (4/6), bb (1/6); KL(aa) = KL(bb) = ln 2, KL(ab) = 0
    statistic = kl_statistic(2, np.array([0.5, 0.5]))
    null = nulls.null_distribution(np.array([2, 2]), 2, statistic, exact_max=100, draws=0, seed=0)
    observed = statistic(np.array([[2, 0], [1, 1], [0, 2]]))
    np.testing.assert_allclose(null.p_values(observed), [1 / 3, 1.0, 1 / 3])
    groups_p = nulls.group_count_p_values(np.array([[2, 0], [1, 1]]), np.array([2, 2]), 4, 2)
    np.testing.assert_allclose(groups_p, [[1 / 3, 1 / 3], [1.0, 1.0]])


def test_exact_null_matches_enumerating_every_subset():
    colours = np.array([4, 3, 2, 1])  # three groups and one unlabelled item
    base = colours[:3] / colours[:3].sum()
    statistic = kl_statistic(3, base)
    null = nulls.null_distribution(colours, 4, statistic, exact_max=10_000, draws=100, seed=0)
    assert null.method == "exact"
    for observed in ([4, 0, 0, 0], [2, 1, 1, 0], [0, 2, 2, 0], [1, 1, 1, 1], [0, 0, 0, 1]):
        got = null.p_values(statistic(np.array([observed]))[0:1])[0]
        if np.isnan(statistic(np.array([observed]))[0]):
            assert np.isnan(got)
            continue
        assert got == pytest.approx(brute_null_p(colours, 4, observed, statistic), abs=1e-12)


def test_simulated_null_agrees_with_exact_and_is_seeded():
    colours = np.array([300, 200, 100, 50])
    statistic = kl_statistic(4, colours / colours.sum())
    exact = nulls.null_distribution(colours, 20, statistic, exact_max=10**6, draws=0, seed=0)
    simulated = nulls.null_distribution(colours, 20, statistic, exact_max=0, draws=20_000, seed=7)
    assert (exact.method, simulated.method) == ("exact", "simulated")
    observed = statistic(np.array([[20, 0, 0, 0], [8, 6, 4, 2], [5, 5, 5, 5], [10, 4, 3, 3]]))
    p_exact, p_sim = exact.p_values(observed), simulated.p_values(observed)
    np.testing.assert_allclose(p_sim, p_exact, atol=0.015)
    assert p_sim.min() >= 1 / 20_001  # the observed draw counts once
    again = nulls.null_distribution(colours, 20, statistic, exact_max=0, draws=20_000, seed=7)
    np.testing.assert_array_equal(again.p_values(observed), p_sim)


def test_group_count_p_values_match_fishers_exact_test():
    n_items, k = 200, 30
    sizes = np.array([120, 50, 30])
    counts = np.array([[30, 0, 0], [18, 8, 4], [5, 15, 10], [0, 0, 30]])
    got = nulls.group_count_p_values(counts, sizes, n_items, k)
    for row, observed in enumerate(counts):
        for g, c in enumerate(observed):
            table = [[c, k - c], [sizes[g] - c, n_items - sizes[g] - (k - c)]]
            assert got[row, g] == pytest.approx(stats.fisher_exact(table).pvalue, rel=1e-9, abs=1e-300)


def test_hypergeometric_pmf_matches_scipy():
    counts = nulls.compositions(5, np.array([4, 3, 6]))
    expected = stats.multivariate_hypergeom.pmf(counts, m=[4, 3, 6], n=5)
    np.testing.assert_allclose(np.exp(nulls.log_multivariate_hypergeom(counts, np.array([4, 3, 6]))), expected)
    assert expected.sum() == pytest.approx(1.0)


def test_compositions_are_complete_and_bounded():
    all_of_them = nulls.compositions(6, np.array([9, 9, 9]))
    assert len(all_of_them) == nulls.n_compositions(6, 3) == math.comb(8, 2)
    assert (all_of_them.sum(1) == 6).all() and len({tuple(r) for r in all_of_them}) == len(all_of_them)
    bounded = nulls.compositions(6, np.array([1, 9, 2]))
    assert (bounded <= [1, 9, 2]).all() and len(bounded) == 2 * 3  # (a, c) in {0,1} x {0,1,2}


def test_benjamini_hochberg_matches_scipy_and_skips_nan():
    rng = np.random.default_rng(6)
    p = rng.random(50) ** 3
    np.testing.assert_allclose(nulls.bh_q_values(p), stats.false_discovery_control(p), rtol=1e-12)
    hand = nulls.bh_q_values(np.array([0.01, np.nan, 0.04, 0.03]))
    np.testing.assert_allclose(hand, [0.03, np.nan, 0.04, 0.04])
    assert np.isnan(nulls.bh_q_values(np.array([np.nan]))).all()


# --- attributes ------------------------------------------------------------------------------------

def face_table(**labels) -> pl.DataFrame:
    n = len(next(iter(labels.values())))
    frame = pl.DataFrame({"item_id": np.arange(n), "key": [str(i) for i in range(n)], "image": [""] * n,
                          "source": ["test"] * n})
    for name, values in labels.items():
        frame = frame.with_columns(pl.Series(name, values, dtype=pl.Utf8), pl.Series(f"{name}_raw", values, dtype=pl.Utf8))
    return frame


def test_attributes_coarsen_intersect_and_mark_unlabelled():
    faces = face_table(race=["white", "east_asian", "southeast_asian", "latino_hispanic", None, "black"],
                       gender=["male", "female", "female", "male", "female", None])
    race, race4, both = groups.encode(faces, ["race", "race4", "race*gender"])
    assert race.groups == ("white", "black", "latino_hispanic", "east_asian", "southeast_asian")
    assert race.codes.tolist() == [0, 3, 4, 2, -1, 1]
    assert race4.groups == ("white", "black", "asian")
    assert race4.codes.tolist() == [0, 2, 2, -1, -1, 1] and race4.n_unlabelled == 2
    assert both.groups == ("white*male", "latino_hispanic*male", "east_asian*female", "southeast_asian*female")
    assert both.codes.tolist() == [0, 2, 3, 1, -1, -1]
    assert groups.default_names(faces) == ["race", "gender", "race*gender"]


def test_unknown_attribute_names_the_allowed_ones():
    faces = face_table(race=["white", "black"], gender=["male", "female"])
    with pytest.raises(InputError, match=r"unknown attribute 'skin'; this index has race, gender, race4"):
        groups.encode(faces, ["skin"])
    with pytest.raises(InputError, match="unknown attribute 'race\\*race'"):
        groups.encode(faces, ["race*race"])


def test_attribute_with_one_group_is_refused_when_asked_for():
    faces = face_table(race=["white", "black"], gender=["female", "female"])
    with pytest.raises(InputError, match="fewer than two groups"):
        groups.encode(faces, ["gender"])
    assert [a.name for a in groups.encode(faces, ["race", "gender"], explicit=False)] == ["race"]
