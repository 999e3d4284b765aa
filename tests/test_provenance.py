"""Provenance linking: hand-computed shares and log-ratios, evidence labels, rank correlations
against scipy, the bootstrap against a plain loop, outputs on disk, the CLI, and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
from scipy import stats

from engine import cli, storage
from engine.errors import InputError
from engine.provenance import (OVERALL, POOLED, ProvenanceConfig, link, load_group_mapping,
                               provenance, rank_correlations, run_provenance)
from engine.rank_correlation import (bootstrap_rank_correlation, kendall_clusters, pair_sums,
                                     spearman_weighted)

MAPPING = pl.DataFrame({
    "attribute": ["gender", "gender", "race", "race", "race"],
    "group": ["female", "male", "white", "east_asian", "southeast_asian"],
    "axis": ["gender", "gender", "race", "race", "race"],
    "lexicon_group": ["gender/woman", "gender/man", "race/white", "race/asian", "race/asian"],
})


def skew_rows(word, category, attribute, counts: dict, base: dict) -> list[dict]:
    k = sum(counts.values())
    return [{"word": word, "category": category, "attribute": attribute, "group": g, "count": c,
             "share": c / k, "base_rate": base[g]} for g, c in counts.items()]


def cooc_rows(word, axis, n_both: dict, n_group: dict, z: dict) -> list[dict]:
    return [{"word": word, "category": "c", "axis": axis, "group": g, "n_word": 999,
             "n_group": n_group[g], "n_both": n, "n_captions": 10**6, "log_odds_z": z[g]}
            for g, n in n_both.items()]


GENDER_BASE = {"female": 0.5, "male": 0.5}
CAPTION_GENDER = {"woman": 10_000, "man": 30_000}


def nurse_tables():
    skew = pl.DataFrame(
        skew_rows("nurse", "occupation", "gender", {"female": 80, "male": 20}, GENDER_BASE)
        + skew_rows("nurse", "occupation", "race",
                    {"white": 30, "east_asian": 10, "southeast_asian": 20, "black": 40},
                    {"white": 0.2, "east_asian": 0.1, "southeast_asian": 0.1, "black": 0.6}))
    cooc = pl.DataFrame(
        cooc_rows("nurse", "gender", {"woman": 300, "man": 100}, CAPTION_GENDER, {"woman": 5.0, "man": -5.0})
        + cooc_rows("nurse", "race", {"white": 5, "asian": 15, "black": 7},
                    {"white": 900, "asian": 100, "black": 300}, {"white": -1.0, "asian": 2.5, "black": 0.1}))
    return skew, cooc


def test_link_matches_hand_computed_shares_and_log_ratios():
    skew, cooc = nurse_tables()
    links = link(skew, cooc, MAPPING, ProvenanceConfig(prior_strength=1.0))
    woman = links.filter(pl.col("group") == "gender/woman").row(0, named=True)
    assert woman["face_groups"] == "female" and woman["retrieval_share"] == pytest.approx(0.8)
    assert woman["retrieval_log_ratio"] == pytest.approx(math.log((80 + 0.5) / 101 / 0.5))
    assert woman["caption_share"] == pytest.approx(0.75)
    assert woman["caption_base_rate"] == pytest.approx(0.25)
    caption_lr = math.log((300 + 0.25) / 401 / 0.25)
    assert woman["caption_log_ratio"] == pytest.approx(caption_lr)
    assert woman["amplification"] == pytest.approx(woman["retrieval_log_ratio"] - caption_lr)
    assert woman["share_log_ratio"] == pytest.approx(math.log(0.8 / 0.75))

    # race: East + Southeast Asian add up; Black is not in the mapping, so the linked shares are
    # renormalised over the 60 mapped faces and base rates over the mapped 0.4 of the index.
    asian = links.filter(pl.col("group") == "race/asian").row(0, named=True)
    assert asian["face_groups"] == "east_asian+southeast_asian"
    assert asian["retrieval_count"] == 30 and asian["retrieval_total"] == 60
    assert asian["retrieval_coverage"] == pytest.approx(0.6)
    assert asian["retrieval_base_rate"] == pytest.approx(0.5)
    assert asian["retrieval_log_ratio"] == pytest.approx(math.log((30 + 0.5) / 61 / 0.5))
    # caption side: only linked lexicon groups (white, asian) count; black is left out
    assert asian["caption_total"] == 20 and asian["caption_share"] == pytest.approx(0.75)
    assert asian["caption_base_rate"] == pytest.approx(0.1)
    assert set(links["group"]) == {"gender/woman", "gender/man", "race/white", "race/asian"}


def test_no_evidence_means_zero_log_ratio():
    skew = pl.DataFrame(skew_rows("ghost", "c", "gender", {"female": 50, "male": 50}, GENDER_BASE))
    cooc = pl.DataFrame(cooc_rows("other", "gender", {"woman": 1, "man": 1}, CAPTION_GENDER,
                                  {"woman": 0.0, "man": 0.0}))
    links = link(skew, cooc, MAPPING)
    assert links["caption_total"].to_list() == [0, 0]
    assert links["caption_log_ratio"].to_list() == [0.0, 0.0]
    assert links["retrieval_log_ratio"].to_list() == [pytest.approx(0.0)] * 2


@pytest.mark.parametrize(("z_woman", "total", "evidence", "strength"), [
    (5.0, 400, "supported", "strong"), (2.5, 400, "supported", "moderate"),
    (0.5, 400, "neutral", "weak"), (-3.0, 400, "contradicted", "moderate"),
    (5.0, 4, "insufficient", "strong"),
])
def test_evidence_labels(z_woman, total, evidence, strength):
    skew = pl.DataFrame(skew_rows("nurse", "occupation", "gender", {"female": 80, "male": 20}, GENDER_BASE))
    cooc = pl.DataFrame(cooc_rows("nurse", "gender", {"woman": total // 2, "man": total // 2},
                                  CAPTION_GENDER, {"woman": z_woman, "man": -z_woman}))
    words = provenance(skew, cooc, MAPPING, ProvenanceConfig(n_boot=0)).words
    row = words.row(0, named=True)
    assert (row["group"], row["evidence"], row["strength"]) == ("gender/woman", evidence, strength)
    assert row["caption_total"] == total


def test_divergence_exceeds_and_contradicts_and_q_values():
    rows = (skew_rows("amplified", "c", "gender", {"female": 95, "male": 5}, GENDER_BASE)
            + skew_rows("against", "c", "gender", {"female": 70, "male": 30}, GENDER_BASE)
            + skew_rows("mirrored", "c", "gender", {"female": 70, "male": 30}, GENDER_BASE)
            + skew_rows("noise", "c", "gender", {"female": 99, "male": 1}, GENDER_BASE))
    skew = pl.DataFrame(rows).with_columns(
        q_value=pl.when(pl.col("word") == "noise").then(0.5).otherwise(0.001))
    cooc = pl.DataFrame(
        # captions lean to women exactly as the caption base rate: no support, model amplifies
        cooc_rows("amplified", "gender", {"woman": 250, "man": 750}, CAPTION_GENDER, {"woman": 0.0, "man": 0.0})
        # captions associate the word with men: the model's female skew contradicts them
        + cooc_rows("against", "gender", {"woman": 10, "man": 990}, CAPTION_GENDER, {"woman": -6.0, "man": 6.0})
        # captions skew female more strongly than retrieval: supported, not exceeded
        + cooc_rows("mirrored", "gender", {"woman": 900, "man": 100}, CAPTION_GENDER, {"woman": 9.0, "man": -9.0})
        + cooc_rows("noise", "gender", {"woman": 250, "man": 750}, CAPTION_GENDER, {"woman": 0.0, "man": 0.0}))
    result = provenance(skew, cooc, MAPPING, ProvenanceConfig(n_boot=0))
    words = {r["word"]: r for r in result.words.to_dicts()}
    assert words["amplified"]["divergence"] == "exceeds" and words["amplified"]["evidence"] == "neutral"
    assert words["against"]["divergence"] == "contradicts" and not words["against"]["same_top_group"]
    assert words["mirrored"]["divergence"] is None and words["mirrored"]["evidence"] == "supported"
    assert words["noise"]["retrieval_significant"] is False and words["noise"]["divergence"] is None
    assert result.divergent["word"].to_list() == ["against", "amplified"]
    assert result.summary["divergent"] == {"exceeds": 1, "contradicts": 1}


def random_links(n_words=30, seed=1, categories=("a", "b")):
    rng = np.random.default_rng(seed)
    skew, cooc = [], []
    for i in range(n_words):
        female = int(rng.integers(0, 101))
        skew += skew_rows(f"w{i:02d}", categories[i % len(categories)], "gender",
                          {"female": female, "male": 100 - female}, GENDER_BASE)
        both = {"woman": int(rng.integers(5, 60)) + female // 2, "man": int(rng.integers(5, 60))}
        cooc += cooc_rows(f"w{i:02d}", "gender", both, CAPTION_GENDER, {"woman": 0.0, "man": 0.0})
    return link(pl.DataFrame(skew), pl.DataFrame(cooc), MAPPING)


def test_rank_correlations_match_scipy():
    links = random_links()
    table = rank_correlations(links, ProvenanceConfig(n_boot=50))
    for scope, part in [(OVERALL, links), ("a", links.filter(pl.col("category") == "a"))]:
        for group in ("gender/woman", POOLED):
            rows = part if group == POOLED else part.filter(pl.col("group") == group)
            rows = rows.sort("word", "group")
            x, y = rows["caption_log_ratio"].to_numpy(), rows["retrieval_log_ratio"].to_numpy()
            got = table.filter(scope=scope, group=group).row(0, named=True)
            assert got["spearman"] == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
            assert got["kendall"] == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
            assert got["n_words"] == part["word"].n_unique()
            assert got["spearman_low"] <= got["spearman"] <= got["spearman_high"]
    woman = table.filter(scope=OVERALL, group="gender/woman").row(0, named=True)
    woman_rows = links.filter(group="gender/woman")
    assert woman["kendall_p"] == pytest.approx(stats.kendalltau(
        woman_rows["caption_log_ratio"], woman_rows["retrieval_log_ratio"]).pvalue)
    assert table.filter(scope=OVERALL, group=POOLED)["spearman_p"].to_list() == [None]


def test_weighted_kernels_match_scipy_on_repeated_points():
    """A replicate with multiplicities equals scipy on the explicitly repeated points (with ties)."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 4, size=(9, 3)).astype(float)  # 9 clusters x 3 members, many ties
    y = rng.integers(0, 3, size=(9, 3)).astype(float)
    counts = rng.integers(0, 3, size=(6, 9)).astype(float)
    counts[0] = 1
    weights = np.repeat(counts, 3, axis=1)
    taus = kendall_clusters(x, y, counts)
    rhos = spearman_weighted(x.ravel(), y.ravel(), weights)
    for row, tau, rho in zip(counts.astype(int), taus, rhos):
        rx, ry = np.repeat(x, row, axis=0).ravel(), np.repeat(y, row, axis=0).ravel()
        assert tau == pytest.approx(stats.kendalltau(rx, ry).statistic, abs=1e-12)
        assert rho == pytest.approx(stats.spearmanr(rx, ry).statistic, abs=1e-12)
    # pair sums in small row chunks give the same as in one block
    np.testing.assert_allclose(pair_sums(x, y, max_cells=10), pair_sums(x, y))
    constant = np.ones((5, 1))
    assert np.isnan(kendall_clusters(constant, x[:5, :1], np.ones((1, 5))))[0]
    assert np.isnan(spearman_weighted(constant.ravel(), x[:5, 0], np.ones((1, 5))))[0]


def test_bootstrap_matches_a_plain_loop_and_is_seeded():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(20, 3))
    y = x + rng.normal(size=(20, 3))
    got = bootstrap_rank_correlation(x, y, n_boot=200, confidence=0.9, seed=11)
    picks = np.random.default_rng(11).integers(0, 20, size=(200, 20))
    taus = [stats.kendalltau(x[p].ravel(), y[p].ravel()).statistic for p in picks]
    rhos = [stats.spearmanr(x[p].ravel(), y[p].ravel()).statistic for p in picks]
    assert (got["kendall_low"], got["kendall_high"]) == pytest.approx(tuple(np.percentile(taus, [5, 95])))
    assert (got["spearman_low"], got["spearman_high"]) == pytest.approx(tuple(np.percentile(rhos, [5, 95])))
    assert bootstrap_rank_correlation(x, y, n_boot=200, confidence=0.9, seed=11) == got
    assert bootstrap_rank_correlation(x, y, n_boot=200, confidence=0.9, seed=12) != got


def write_inputs(tmp_path, skew, cooc):
    audit, scan = tmp_path / "audit", tmp_path / "scan"
    storage.write_parquet(audit / "skew.parquet", skew)
    storage.write_parquet(scan / "cooccurrence.parquet", cooc)
    mapping = tmp_path / "groups.csv"
    MAPPING.write_csv(mapping)
    return audit, scan, mapping


@pytest.fixture
def only_provenance_command(monkeypatch):
    """The real CLI entry point with just this stage's command (others may not be importable)."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("provenance",))


def test_run_writes_tables_and_cli(tmp_path, capsys, only_provenance_command):
    audit, scan, mapping = write_inputs(tmp_path, *nurse_tables())
    out = tmp_path / "prov"
    run_provenance(audit, scan, out, ProvenanceConfig(n_boot=10), mapping=load_group_mapping(mapping))
    for name in ("links", "words", "correlations", "divergent"):
        assert pl.read_parquet(out / f"{name}.parquet").columns
    manifest = storage.read_json(out / "manifest.json")
    assert manifest["stage"] == "provenance" and manifest["config"]["n_boot"] == 10
    assert manifest["inputs"]["audit"]["sha256"] == storage.sha256_file(audit / "skew.parquet")

    code = cli.main(["provenance", "--audit", str(audit), "--scan", str(scan), "--out", str(out),
                     "--groups", str(mapping), "--bootstrap", "20", "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert code == 0 and printed["words"] == 1 and printed["attributes"] == ["gender", "race"]
    assert storage.read_json(out / "summary.json")["words"] == 1


def test_bad_inputs(tmp_path, capsys, only_provenance_command):
    skew, cooc = nurse_tables()
    with pytest.raises(InputError, match="lacks columns"):
        link(skew.drop("base_rate"), cooc, MAPPING)
    with pytest.raises(InputError, match="no word x group could be linked"):
        provenance(skew, cooc, MAPPING.with_columns(attribute=pl.lit("age")))
    with pytest.raises(InputError, match="n_boot"):
        ProvenanceConfig(n_boot=-1)
    ambiguous = tmp_path / "ambiguous.csv"
    pl.concat([MAPPING, MAPPING.head(1).with_columns(lexicon_group=pl.lit("gender/girl"))]).write_csv(ambiguous)
    with pytest.raises(InputError, match="several lexicon groups"):
        load_group_mapping(ambiguous)
    audit, scan, mapping = write_inputs(tmp_path, skew, cooc)
    code = cli.main(["provenance", "--audit", str(scan), "--scan", str(scan), "--out",
                     str(tmp_path / "o"), "--groups", str(mapping)])
    assert code == 2 and "no skew.parquet" in capsys.readouterr().err
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "precious.txt").write_text("keep me")
    with pytest.raises(InputError, match="not an earlier provenance output"):
        run_provenance(audit, scan, occupied, mapping=load_group_mapping(mapping))
    assert (occupied / "precious.txt").read_text() == "keep me"


def test_templates_pool_categories_repeat_and_real_axes_mapping():
    """Two templates are pooled (counts summed, q Bonferroni-corrected); a word in two categories
    counts once overall; the default mapping is the taxonomy's axes.csv; the scan may write its
    groups either as "race/white" or as axis race + "white"."""
    mapping = load_group_mapping()
    assert {"attribute", "group", "axis", "lexicon_group"} == set(mapping.columns)
    rows = []
    rng = np.random.default_rng(2)
    for i in range(8):
        female = int(rng.integers(0, 101))
        for template, shift, q in (("sobit/0", 0, 0.01), ("sobit/1", 10, 0.2)):
            f = min(100, female + shift)
            for category in (["c1", "c2"] if i == 0 else ["c1"]):
                rows += [{"word": f"w{i}", "category": category, "template": template, "attribute": "gender",
                          "group": g, "count": c, "base_rate": 0.5, "q_value": q}
                         for g, c in (("female", f), ("male", 100 - f))]
    skew = pl.DataFrame(rows)
    lexicon = mapping.filter(attribute="gender").select("group", "lexicon_group")
    prefixed = dict(lexicon.iter_rows())
    cooc = pl.DataFrame([
        {"word": f"w{i}", "axis": "gender", "group": prefixed[g] if i % 2 else prefixed[g].split("/")[1],
         "n_both": int(rng.integers(10, 90)), "n_group": 5000, "log_odds_z": 0.0}
        for i in range(8) for g in ("female", "male")])
    result = provenance(skew, cooc, mapping, ProvenanceConfig(n_boot=20))
    w0 = result.links.filter(word="w0", category="c1", group=prefixed["female"]).row(0, named=True)
    first = skew.filter(word="w0", category="c1", group="female")["count"].to_list()
    assert w0["retrieval_count"] == sum(first) and w0["retrieval_total"] == 200
    assert result.links["caption_total"].min() > 0  # both spellings of the groups joined
    assert result.words.filter(word="w0", category="c1")["retrieval_q"].to_list() == [pytest.approx(0.02)]
    overall = result.correlations.filter(scope=OVERALL, group=POOLED).row(0, named=True)
    assert overall["n_words"] == 8
    assert result.correlations.filter(scope="c1", group=POOLED)["n_words"].to_list() == [8]


def test_lexicon_group_missing_from_scan_is_left_out_on_both_sides():
    mapping = pl.concat([MAPPING, pl.DataFrame({"attribute": ["race"], "group": ["indian"], "axis": ["race"],
                                                "lexicon_group": ["race/indian"]})])
    skew = pl.DataFrame(skew_rows("judge", "c", "race", {"white": 50, "indian": 50},
                                  {"white": 0.5, "indian": 0.5}))
    cooc = pl.DataFrame(cooc_rows("judge", "race", {"white": 20, "asian": 5}, {"white": 900, "asian": 100},
                                  {"white": 1.0, "asian": -1.0}))
    result = provenance(skew, cooc, mapping, ProvenanceConfig(n_boot=0))
    assert set(result.links["group"]) == {"race/white"}
    assert result.links["retrieval_total"].to_list() == [50]  # indian faces are not linked
    assert result.summary["unlinked_face_groups"] == {"race": ["indian"]}
