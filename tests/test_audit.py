"""The audit job: a planted-skew index recovered exactly, reproducibility, outputs and their
schemas, the CLI, and bad inputs. The end-to-end tests use the random-weight tiny model."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter

import numpy as np
import polars as pl
import pytest
from scipy import stats

import taxonomy as tx
from engine import cli, storage
from engine.audit import HITS_SCHEMA, AuditConfig, audit, audit_vectors
from engine.errors import InputError
from engine.faces import query
from engine.faces.index import open_index, write_index
from engine.faces.retrieval_skew import SKEW_SCHEMA
from tests.helpers_index import brute_force_top_k, tiny_encoder, tiny_spec, unit_vectors
from tests.test_skew import casc_brute, ndkl_brute

RACES = ["white", "black", "latino_hispanic", "east_asian", "southeast_asian", "indian", "middle_eastern"]
K = 20
# Each word's top k, in rank order: (race, gender, age). None is a missing label.
PLANTED = {
    "nurse": [("white", "female", "20-29")] * 12 + [("black", "female", "30-39")] * 4
             + [("white", "male", "20-29")] * 4,
    "pilot": [("east_asian", "male", "40-49"), ("black", "male", "40-49")] * 10,
    "thief": [("black", "male", "20-29")] * 9 + [("black", None, "20-29")] * 2
             + [("southeast_asian", "female", "30-39")] * 9,
}
WORDS = pl.DataFrame({"category": ["jobs", "jobs", "crime", "care"], "word": ["nurse", "pilot", "thief", "nurse"],
                      "pos": ["noun"] * 4, "article": [""] * 4})


def faces_frame(labels: list[tuple]) -> pl.DataFrame:
    n = len(labels)
    race, gender, age = (list(column) for column in zip(*labels))
    return pl.DataFrame({"item_id": np.arange(n), "key": [f"f{i}" for i in range(n)], "image": [""] * n,
                         "source": ["test"] * n, "race": race, "race_raw": race, "gender": gender,
                         "gender_raw": gender, "age": age, "age_raw": age},
                        schema_overrides={c: pl.Utf8 for c in ("race", "race_raw", "gender", "gender_raw", "age", "age_raw")})


@pytest.fixture(scope="module")
def planted():
    """300 items; word j's planted top k lie along basis vector j with decreasing cosines, the
    rest lie in the other dimensions (cosine exactly 0 with every word)."""
    rng = np.random.default_rng(0)
    n, dim, words = 300, 24, list(PLANTED)
    background = [(rng.choice(RACES), rng.choice(["male", "female", None], p=[0.48, 0.48, 0.04]),
                   rng.choice(["20-29", "30-39", "40-49", "50-59"])) for _ in range(n - K * len(words))]
    positions = rng.permutation(n)  # where each item lands in the index
    labels, vectors = [None] * n, np.zeros((n, dim), dtype=np.float32)
    ranked_ids = {}
    cosines = 0.95 - 0.02 * np.arange(K)
    for j, word in enumerate(words):
        ids = positions[j * K:(j + 1) * K]
        ranked_ids[word] = ids
        for rank, item in enumerate(ids):
            noise = rng.normal(size=dim - len(words))
            vectors[item, :len(words)] = 0
            vectors[item, j] = cosines[rank]
            vectors[item, len(words):] = noise / np.linalg.norm(noise) * math.sqrt(1 - cosines[rank] ** 2)
            labels[item] = PLANTED[word][rank]
    for item, label in zip(positions[K * len(words):], background):
        noise = rng.normal(size=dim - len(words))
        vectors[item, len(words):] = noise / np.linalg.norm(noise)
        labels[item] = label
    prompts = tx.build_prompts(WORDS, tx.load_templates("sobit"))
    embeddings = np.stack([np.eye(dim, dtype=np.float32)[words.index(w)] for w in prompts["word"]])
    return {"faces": faces_frame(labels), "vectors": vectors, "ranked_ids": ranked_ids, "prompts": prompts,
            "embeddings": embeddings}


@pytest.fixture(scope="module")
def planted_result(planted, tmp_path_factory):
    """The planted index written and searched through the index API (exact FAISS search)."""
    path = tmp_path_factory.mktemp("indexes") / "planted"
    write_index(path, planted["vectors"], planted["faces"], model=tiny_spec().describe(),
                dataset={"spec": "planted"})
    index = open_index(str(path))
    config = AuditConfig(k=K, attributes=("race", "gender", "age", "race4", "race*gender"))
    return audit_vectors(planted["prompts"], planted["embeddings"], index.faces, index.vectors(),
                         lambda vectors, k: query.search(index, vectors, k), config)


def rows_of(result, word, attribute, category=None):
    frame = result.skew.filter((pl.col("word") == word) & (pl.col("attribute") == attribute))
    if category:
        frame = frame.filter(pl.col("category") == category)
    return frame


def test_planted_top_k_comes_back_in_order(planted, planted_result):
    for word, ids in planted["ranked_ids"].items():
        hits = planted_result.hits.filter(pl.col("word") == word).sort("query_id", "rank")
        for _, rows in hits.group_by("query_id", maintain_order=True):
            assert rows["item_id"].to_list() == ids.tolist()
            np.testing.assert_allclose(rows["score"].to_numpy(), 0.95 - 0.02 * np.arange(K), atol=1e-6)
    assert planted_result.hits.schema == pl.Schema(HITS_SCHEMA | {a: pl.Utf8 for a in ("race", "gender", "age", "race4")})


@pytest.mark.parametrize("word", list(PLANTED))
def test_planted_counts_and_metrics_are_recovered_exactly(planted, planted_result, word):
    faces = planted["faces"]
    for position, attribute in enumerate(("race", "gender", "age")):
        labels = [label[position] for label in PLANTED[word]]
        counts = Counter(g for g in labels if g is not None)
        everyone = Counter(g for g in faces[attribute].to_list() if g is not None)
        groups = list(dict.fromkeys(g for g in tx.axes.group_order(attribute) if g in everyone))
        rows = rows_of(planted_result, word, attribute, category="crime" if word == "thief" else "jobs")
        assert rows["group"].to_list() == groups
        assert rows["count"].to_list() == [counts.get(g, 0) for g in groups]
        labelled = sum(counts.values())
        assert rows["n_labelled"][0] == labelled and rows["n_unlabelled"][0] == K - labelled
        shares = np.array([counts.get(g, 0) / labelled for g in groups])
        base = np.array([everyone[g] for g in groups]) / sum(everyone.values())
        np.testing.assert_allclose(rows["share"].to_numpy(), shares)
        np.testing.assert_allclose(rows["base_rate"].to_numpy(), base)
        entropy = -sum(p * math.log(p) for p in shares if p > 0) / math.log(len(groups))
        assert rows["entropy"][0] == pytest.approx(entropy, abs=1e-12)
        floored = np.maximum(shares, 1 / K)
        assert rows["max_skew_uniform"][0] == pytest.approx(math.log(floored.max() * len(groups)))
        assert rows["min_skew_uniform"][0] == pytest.approx(math.log(floored.min() * len(groups)))
        assert rows["max_skew_base"][0] == pytest.approx(np.log(floored / base).max())
        assert rows["min_skew_base"][0] == pytest.approx(np.log(floored / base).min())
        np.testing.assert_allclose(rows["skew_base"].to_numpy(), np.log(floored / base))
        assert rows["kl_base"][0] == pytest.approx(stats.entropy(shares, base), abs=1e-12)
        codes = [groups.index(g) if g is not None else -1 for g in labels]
        assert rows["ndkl_base"][0] == pytest.approx(ndkl_brute(codes, len(groups), base))
        assert rows["ndkl_uniform"][0] == pytest.approx(ndkl_brute(codes, len(groups), np.full(len(groups), 1 / len(groups))))
        face_codes = np.array([groups.index(g) if g is not None else -1 for g in faces[attribute].to_list()])
        query_vector = np.eye(planted["vectors"].shape[1])[list(PLANTED).index(word)]
        expected_casc = [casc_brute(query_vector, planted["vectors"], face_codes, g) for g in range(len(groups))]
        np.testing.assert_allclose(rows["casc"].to_numpy(), expected_casc, rtol=1e-5)


def test_planted_bias_at_k_and_intersections(planted_result):
    gender = {w: rows_of(planted_result, w, "gender", "crime" if w == "thief" else "jobs")["bias_at_k"][0]
              for w in PLANTED}
    assert gender == pytest.approx({"nurse": -0.6, "pilot": 1.0, "thief": 0.0})
    assert rows_of(planted_result, "nurse", "race")["bias_at_k"].is_null().all()
    both = rows_of(planted_result, "pilot", "race*gender", "jobs")
    counts = dict(zip(both["group"], both["count"]))
    assert counts["east_asian*male"] == 10 and counts["black*male"] == 10 and sum(counts.values()) == 20
    race4 = dict(zip(*rows_of(planted_result, "thief", "race4").select("group", "count").to_dict().values()))
    assert race4 == {"white": 0, "black": 11, "asian": 9, "indian": 0}


def test_word_in_two_categories_is_reported_for_both(planted_result):
    nurse = planted_result.skew.filter(pl.col("word") == "nurse")
    assert sorted(nurse["category"].unique()) == ["care", "jobs"]
    jobs, care = (nurse.filter(pl.col("category") == c).drop("query_id", "category") for c in ("jobs", "care"))
    assert jobs.equals(care)


def kl_p_oracle(base_counts, n_unlabelled, k, observed_counts):
    """P(KL >= observed) for a random k-subset, summing scipy's multivariate hypergeometric pmf."""
    sizes = list(base_counts) + [n_unlabelled]
    base = np.array(base_counts) / sum(base_counts)

    def kl(counts):
        labelled = sum(counts[:-1])
        return sum(c / labelled * math.log(c / labelled / b) for c, b in zip(counts[:-1], base) if c > 0)

    observed = kl(list(observed_counts) + [k - sum(observed_counts)])
    total = 0.0
    for counts in itertools.product(*(range(min(s, k) + 1) for s in sizes[:-1])):
        rest = k - sum(counts)
        if 0 <= rest <= n_unlabelled and sum(counts) > 0:
            if kl(list(counts) + [rest]) >= observed - 1e-12:
                total += stats.multivariate_hypergeom.pmf(list(counts) + [rest], m=sizes, n=k)
    return total


def test_planted_p_values_against_scipy(planted, planted_result):
    genders = planted["faces"]["gender"].to_list()
    base = [genders.count("male"), genders.count("female")]
    for word in PLANTED:
        rows = rows_of(planted_result, word, "gender", "crime" if word == "thief" else "jobs")
        expected = kl_p_oracle(base, genders.count(None), K, rows["count"].to_list())
        assert rows["p_value"][0] == pytest.approx(expected, rel=1e-9)
        for group, count, size in zip(rows["group"], rows["count"], base):
            table = [[count, K - count], [size - count, len(genders) - size - (K - count)]]
            assert rows.filter(pl.col("group") == group)["p_group"][0] == pytest.approx(stats.fisher_exact(table).pvalue, rel=1e-9)
    assert planted_result.summary["attributes"]["gender"]["null"]["method"] == "exact"
    assert rows_of(planted_result, "pilot", "gender")["q_value"][0] < 1e-3


def test_same_seed_same_output_other_seed_other_null(planted):
    faces, vectors = planted["faces"], planted["vectors"]

    def run(seed):
        config = AuditConfig(k=K, attributes=("race", "gender"), seed=seed, exact_max=0, null_draws=999)
        return audit_vectors(planted["prompts"], planted["embeddings"], faces, vectors,
                             lambda q, k: brute_force_top_k(vectors, q, k), config)

    first, again, other = run(3), run(3), run(4)
    assert first.skew.equals(again.skew) and first.summary == again.summary
    assert not first.skew["p_value"].equals(other.skew["p_value"])
    assert first.skew.drop("p_value", "q_value").equals(other.skew.drop("p_value", "q_value"))


def test_skew_table_schema_and_summary(planted_result):
    assert planted_result.skew.schema == pl.Schema(SKEW_SCHEMA)
    summary = planted_result.summary
    assert set(summary["attributes"]) == {"race", "gender", "age", "race4", "race*gender"}
    assert summary["queries"] == 4 and summary["words"] == 3 and summary["k"] == K
    categories = {(c["category"], c["attribute"]) for c in summary["categories"]}
    assert ("crime", "race") in categories and ("care", "gender") in categories
    json.dumps(summary, allow_nan=False)  # NaN-free, serialisable


# --- end to end through the tiny random-weight model -----------------------------------------------

@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory):
    rng = np.random.default_rng(1)
    n = 90
    labels = [(RACES[i % 7], ["male", "female"][i % 2], ["20-29", "30-39", "70+"][i % 3]) for i in range(n)]
    root = tmp_path_factory.mktemp("tiny")
    write_index(root / "indexes" / "faces", unit_vectors(n, 64, seed=2), faces_frame(labels),
                model=tiny_spec().describe(), dataset={"spec": "generated"})
    words = root / "words.csv"
    words.write_text("category,word,pos\njobs,nurse,noun\njobs,engineer,noun\ntraits,lazy,adjective\n"
                     "traits,honest,adjective\ncrime,thief,noun\n", encoding="utf-8")
    return {"root": root, "indexes": root / "indexes", "words": words, "rng": rng}


def test_end_to_end_with_the_tiny_model(tiny_index, tmp_path):
    index = open_index("faces", tiny_index["indexes"])
    encoder = tiny_encoder()
    result = audit(index, str(tiny_index["words"]), k=12, encoder=encoder, templates="portrait",
                   template_mode="each")
    assert result.prompts.height == 10 and result.prompts["query_id"].n_unique() == 10
    assert result.prompts["text"][0] == "a photo of a nurse"
    np.testing.assert_allclose(result.prompt_embeddings, encoder.encode_texts(result.prompts["text"].to_list()), atol=1e-6)
    scores, ids = brute_force_top_k(index.vectors(), result.prompt_embeddings, 12)
    hits = result.hits.sort("query_id", "rank")
    np.testing.assert_array_equal(hits["item_id"].to_numpy().reshape(10, 12), ids)
    np.testing.assert_allclose(hits["score"].to_numpy().reshape(10, 12), scores, atol=1e-5)
    assert set(result.skew["template"]) == {"portrait/photo", "portrait/portrait"}
    out = result.write(tmp_path / "out")
    manifest = storage.read_json(out / "manifest.json")
    assert manifest["taxonomy"]["sha256"] == tx.load(str(tiny_index["words"])).sha256
    assert manifest["templates"]["mode"] == "each" and manifest["k"] == 12
    assert manifest["index"]["manifest"]["model"]["name"] == "vlaudit-tiny"
    for name, digest in manifest["outputs"].items():
        assert storage.sha256_file(out / name) == digest
    assert pl.read_parquet(out / "skew.parquet").equals(result.skew)
    assert pl.read_parquet(out / "prompts.parquet").equals(result.prompts)
    np.testing.assert_array_equal(np.load(out / "prompt_embeddings.npy"), result.prompt_embeddings)


def cli_run(capsys, *argv):
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_writes_outputs_and_prints_the_summary(tiny_index, tmp_path, capsys):
    common = ["audit", "faces", "--taxonomy", str(tiny_index["words"]), "-k", "9",
              "--indexes-dir", str(tiny_index["indexes"]), "--device", "cpu"]
    code, out, err = cli_run(capsys, *common, "--out", str(tmp_path / "a"), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["k"] == 9 and summary["words"] == 5 and "race*gender" in summary["attributes"]
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["queries"] == 5
    code, text, err = cli_run(capsys, *common, "--out", str(tmp_path / "b"))
    assert code == 0, err
    assert "over-represented" in text and "crime" in text
    first, second = (pl.read_parquet(tmp_path / d / "skew.parquet") for d in ("a", "b"))
    assert first.equals(second)  # same seed, same output


@pytest.mark.parametrize("extra, message", [
    (["--attributes", "race,skin"], "unknown attribute 'skin'; this index has race, gender, age, race4, age3"),
    (["-k", "500"], "k = 500 exceeds the index size of 90 items"),
    (["--templates", "nope"], "neither a built-in set"),
    (["--taxonomy", "sobit:official"], "unknown So-B-IT version"),
])
def test_cli_bad_inputs(tiny_index, tmp_path, capsys, extra, message):
    argv = ["audit", "faces", "--taxonomy", str(tiny_index["words"]), "--indexes-dir", str(tiny_index["indexes"]),
            "--out", str(tmp_path / "out"), "--device", "cpu", "-k", "5", *extra]
    code, _, err = cli_run(capsys, *argv)
    assert code == 2 and message in err
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_word_that_tokenises_to_nothing_is_refused(tiny_index, tmp_path):
    words = tmp_path / "words.csv"
    words.write_text("category,word\njobs,nurse\njobs,&nbsp;\n", encoding="utf-8")
    index = open_index("faces", tiny_index["indexes"])
    with pytest.raises(InputError, match=r"\['&nbsp;'\] tokenise to nothing"):
        audit(index, str(words), k=5, encoder=tiny_encoder())


@pytest.mark.parametrize("settings, message", [
    ({"k": 0}, "k must be a positive integer"), ({"null_draws": 5}, "null_draws"),
    ({"skew_floor": 2.0}, "skew_floor"), ({"template_mode": "mean"}, "template_mode"),
    ({"attributes": ()}, "non-empty"), ({"attributes": "race"}, "non-empty"),
])
def test_config_validation(settings, message):
    with pytest.raises(InputError, match=message):
        AuditConfig(**settings)
