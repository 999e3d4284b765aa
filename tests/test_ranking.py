"""Ranking fairness: AUC with ties 1/2 against hand counts, pair loops and Mann-Whitney U; the
weighted bootstrap against explicit resamples; planted orderings; the rankfair job end to end."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from scipy.stats import mannwhitneyu

from engine.errors import InputError
from engine.faces.ranking import BootstrapConfig, auc, bootstrap_auc, ranking_table, weighted_auc
from tests.helpers_manifest import assert_manifest_header


def pair_loop_auc(a, b) -> float:
    return sum((x > y) + 0.5 * (x == y) for x in a for y in b) / (len(a) * len(b))


def test_auc_hand_computed_with_a_tie():
    # pairs (3,1) (3,2) (2,1) win, (2,2) ties: 3.5 of 4
    assert auc([3, 2], [1, 2]) == 0.875
    assert auc([1, 2], [3, 2]) == 0.125
    assert auc([5, 5], [5, 5]) == 0.5


def test_auc_matches_pair_loop_and_mann_whitney_with_many_ties():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 6, 40).astype(float), rng.integers(0, 5, 55).astype(float)
    value = auc(a, b)
    assert value == pytest.approx(pair_loop_auc(a, b))
    assert value == pytest.approx(mannwhitneyu(a, b).statistic / (len(a) * len(b)))
    assert value + auc(b, a) == pytest.approx(1.0)


def test_weighted_auc_equals_auc_of_the_resample_it_stands_for():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 8, 12).astype(float), np.sort(rng.integers(0, 8, 9).astype(float))
    below, upto = np.searchsorted(b, a, "left"), np.searchsorted(b, a, "right")
    weights_a = rng.multinomial(12, np.full(12, 1 / 12), size=5)
    weights_b = rng.multinomial(9, np.full(9, 1 / 9), size=5)
    fast = weighted_auc(below, upto, weights_a, weights_b)
    for row in range(5):
        explicit = auc(np.repeat(a, weights_a[row]), np.repeat(b, weights_b[row]))
        assert fast[row] == pytest.approx(explicit)


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(2)
    a, b = rng.normal(0.3, 1, 80), rng.normal(0, 1, 70)
    config = BootstrapConfig(resamples=500, seed=3)
    low, high = bootstrap_auc(a, b, config)
    assert (low, high) == bootstrap_auc(a, b, config)
    assert (low, high) != bootstrap_auc(a, b, BootstrapConfig(resamples=500, seed=4))
    assert low < auc(a, b) < high and high - low < 0.3
    wide = bootstrap_auc(a[:10], b[:10], config)
    assert wide[1] - wide[0] > high - low
    assert np.isnan(bootstrap_auc(a, b, BootstrapConfig(resamples=0))[0])


def test_resamples_are_stratified_by_group_and_skip_unlabelled_faces():
    from engine.faces.ranking import _stratified_weights

    codes = np.array([0, 0, 0, 1, 1, -1, 2, 0])
    weights = _stratified_weights(codes, 400, np.random.default_rng(5)).astype(int)
    for group in (0, 1, 2):
        assert (weights[:, codes == group].sum(axis=1) == (codes == group).sum()).all()
    assert (weights[:, codes == -1] == 0).all()
    # each face of a group of 4 is drawn 4 * 1/4 = 1 time on average
    assert weights[:, codes == 0].mean() == pytest.approx(1.0, abs=0.1)


def test_ranking_table_finds_a_planted_ordering_and_skips_unlabelled_faces():
    groups = ["a", "b", "c", None, "a", "b", "c", None]
    scores = np.array([[3.0, 2.0, 1.0, 9.0, 3.5, 2.5, 1.5, -9.0],   # a > b > c
                       [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]])  # no preference
    table = ranking_table(scores, ["ordered", "flat"], {"letter": groups}, {"letter": ["a", "b", "c"]},
                          BootstrapConfig(resamples=50))
    rows = {(r["prompt"], r["group_a"], r["group_b"]): r for r in table.to_dicts()}
    assert rows[("ordered", "a", "b")]["auc"] == 1.0 and rows[("ordered", "a", "b")]["misrank"] == 0.0
    assert rows[("ordered", "b", "c")]["auc"] == 1.0
    assert rows[("ordered", "c", "rest")]["auc"] == 0.0 and rows[("ordered", "c", "rest")]["n_b"] == 4
    assert rows[("ordered", "b", "rest")]["auc"] == 0.5  # above c, below a: half the pairs
    assert all(r["auc"] == 0.5 for key, r in rows.items() if key[0] == "flat")
    assert table.height == 2 * (3 + 3)
    only_pairs = ranking_table(scores, ["ordered", "flat"], {"letter": groups}, {"letter": ["a", "b", "c"]},
                               BootstrapConfig(resamples=0), comparisons="pairs")
    assert set(only_pairs["group_b"]) == {"b", "c"}


@pytest.mark.parametrize("kwargs,message", [
    ({"resamples": -1}, "resamples"), ({"level": 1.0}, "level"), ({"seed": -1}, "seed"),
])
def test_bad_bootstrap_settings_are_refused(kwargs, message):
    with pytest.raises(InputError, match=message):
        BootstrapConfig(**kwargs)


def test_bad_ranking_inputs_are_refused():
    with pytest.raises(InputError, match="at least one face"):
        auc([], [1.0])
    with pytest.raises(InputError, match="two groups"):
        ranking_table(np.ones((1, 2)), ["p"], {"g": ["a", "a"]}, {"g": ["a"]}, BootstrapConfig())
    with pytest.raises(InputError, match="prompts, faces"):
        ranking_table(np.ones((2, 2)), ["p"], {"g": ["a", "b"]}, {"g": ["a", "b"]}, BootstrapConfig())


def test_rankfair_job_end_to_end_with_the_tiny_model(indexes_dir, tmp_path, capsys):
    from engine.cli import main
    from engine.faces.index import open_index
    from tests.helpers_association import tiny_index
    from tests.helpers_index import tiny_encoder

    tiny_index(indexes_dir)
    out = tmp_path / "rank"
    code = main(["rankfair", "faces", "--indexes-dir", str(indexes_dir), "--occupation", "nurse",
                 "--occupation", "plumber", "--attribute", "gender", "--attribute", "race",
                 "--bootstrap", "100", "--out", str(out), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["prompts"] == 2
    assert_manifest_header(json.loads((out / "manifest.json").read_text()), "rankfair")
    table = pl.read_parquet(out / "ranking.parquet")
    assert table.height == 2 * (1 + 3 + 3)  # gender: 1 pair; race: 3 pairs + 3 against the rest
    # the oracle: the same model's prompt and face embeddings, pairs counted one by one
    index = open_index("faces", indexes_dir)
    prompts = tiny_encoder().encode_texts(["a photo of a nurse", "a photo of a plumber"])
    scores = prompts.astype(np.float64) @ index.vectors().astype(np.float64).T
    gender = np.asarray(index.faces["gender"].to_list())
    row = table.filter(prompt="plumber", attribute="gender").row(0, named=True)
    expected = pair_loop_auc(scores[1][gender == row["group_a"]], scores[1][gender == row["group_b"]])
    assert row["auc"] == pytest.approx(expected, abs=1e-6)
    assert row["ci_low"] <= row["auc"] <= row["ci_high"]
    assert set(table["text"]) == {"a photo of a nurse", "a photo of a plumber"}
    assert main(["rankfair", "faces", "--indexes-dir", str(indexes_dir), "--attribute", "height",
                 "--out", str(out)]) == 2
    assert "no labels for ['height']" in capsys.readouterr().err
