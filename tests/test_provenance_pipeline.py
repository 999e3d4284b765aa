"""The real pipeline on small data: a planted-skew index audited by engine.audit, a caption corpus
scanned by engine.captions, both linked by engine.provenance (default axes.csv mapping) and shown
by engine.report. The planted answers: captions and retrieval agree for "nurse" (women) and
"pilot" (men); for "thief" the model retrieves Black men while the captions pair the word with
white men, a contradiction."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

import taxonomy as tx
from engine import storage
from engine.audit import AuditConfig, audit_vectors
from engine.captions.scan import ScanConfig, run_scan
from engine.faces import query
from engine.faces.index import open_index, write_index
from engine.provenance import ProvenanceConfig, run_provenance
from engine.report import build_report
from helpers_index import tiny_spec

K = 20
WORDS = pl.DataFrame({"category": ["jobs", "jobs", "crime"], "word": ["nurse", "pilot", "thief"]})
# each word's top k: (race, gender) in rank order
PLANTED = {
    "nurse": [("white", "female"), ("black", "female"), ("east_asian", "female"), ("white", "male")] * 5,
    "pilot": [("white", "male"), ("black", "male"), ("east_asian", "male"), ("black", "female")] * 5,
    "thief": [("black", "male")] * 16 + [("white", "male")] * 4,
}
HOSTILE = "<script>window.__pwned=1</script> a nurse, a woman"
# after 30 repeats of another caption: examples are the first *distinct* captions of each pair
CAPTIONS = (["a nurse and a woman at work"] * 30 + [HOSTILE] + ["a nurse with a man"] * 5
            + ["the pilot is a man"] * 30 + ["a pilot and a woman"] * 5
            + ["a white man arrested as a thief"] * 30 + ["a black man, not a thief"] * 2
            + ["a woman smiling"] * 40 + ["a man walking"] * 40 + ["a white woman"] * 20
            + ["a black woman"] * 20 + ["an asian man"] * 10)


def planted_index(root):
    rng = np.random.default_rng(0)
    words, n_background = list(PLANTED), 140
    dim = len(words) + 8
    labels, vectors = [], []
    for j, word in enumerate(words):
        for rank, label in enumerate(PLANTED[word]):
            vector = np.zeros(dim, dtype=np.float32)
            vector[j] = 0.95 - 0.02 * rank
            vector[-1] = np.sqrt(1 - vector[j] ** 2)
            labels.append(label)
            vectors.append(vector)
    races, genders = ["white", "black", "east_asian", "indian"], ["female", "male"]
    for _ in range(n_background):
        noise = rng.normal(size=8)
        vectors.append(np.r_[np.zeros(len(words)), noise / np.linalg.norm(noise)].astype(np.float32))
        labels.append((races[rng.integers(4)], genders[rng.integers(2)]))
    n = len(labels)
    race, gender = (list(c) for c in zip(*labels))
    faces = pl.DataFrame({"item_id": np.arange(n), "key": [f"f{i}" for i in range(n)], "image": [""] * n,
                          "source": ["test"] * n, "race": race, "race_raw": race,
                          "gender": gender, "gender_raw": gender})
    write_index(root / "index", np.stack(vectors), faces, model=tiny_spec().describe(),
                dataset={"spec": "planted"})
    return open_index(str(root / "index")), np.eye(dim, dtype=np.float32)[: len(words)]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    index, word_vectors = planted_index(root)
    prompts = tx.build_prompts(WORDS.with_columns(pos=pl.lit("noun"), article=pl.lit("")),
                               tx.load_templates("sobit"))
    embeddings = word_vectors[[list(PLANTED).index(w) for w in prompts["word"]]]
    config = AuditConfig(k=K, attributes=("race", "gender"), null_draws=999, exact_max=0)
    result = audit_vectors(prompts, embeddings, index.faces, index.vectors(),
                           lambda vectors, k: query.search(index, vectors, k), config)
    result.write(root / "audit")
    corpus = root / "captions.txt"
    corpus.write_text("\n".join(CAPTIONS) + "\n", encoding="utf-8")
    words_csv = root / "words.csv"
    WORDS.write_csv(words_csv)
    run_scan(ScanConfig(sources=(str(corpus),), db=str(root / "scan.duckdb"), out=str(root / "scan"),
                        taxonomy=str(words_csv), workers=1, progress=False, prior_scale=10.0))
    provenance = run_provenance(root / "audit", root / "scan", root / "provenance",
                                ProvenanceConfig(n_boot=100, min_caption_mentions=5))
    return root, provenance


def test_planted_directions_are_linked_to_their_captions(pipeline):
    root, result = pipeline
    words = {(r["word"], r["attribute"]): r for r in result.words.to_dicts()}
    cooc = pl.read_parquet(root / "scan" / "cooccurrence.parquet")
    nurse = words[("nurse", "gender")]
    assert nurse["group"] == "gender/female" and nurse["retrieval_share"] == pytest.approx(15 / 20)
    women = cooc.filter(word="nurse", axis="gender", group="female").row(0, named=True)
    men = cooc.filter(word="nurse", axis="gender", group="male").row(0, named=True)
    assert women["n_both"] == 31 and men["n_both"] == 5  # the hostile caption names a nurse and a woman
    assert nurse["caption_share"] == pytest.approx(31 / 36)
    assert nurse["caption_z"] == pytest.approx(women["log_odds_z"])
    assert nurse["evidence"] == "supported" and nurse["divergence"] is None
    assert words[("pilot", "gender")]["group"] == "gender/male"
    assert words[("pilot", "gender")]["evidence"] == "supported"
    thief = words[("thief", "race")]
    assert thief["group"] == "race/black" and thief["caption_top_group"] == "race/white"
    assert thief["evidence"] == "contradicted" and thief["divergence"] == "contradicts"
    assert ("thief", "race") in set(result.divergent.select("word", "attribute").iter_rows())
    manifest = storage.read_json(root / "provenance" / "manifest.json")
    assert manifest["inputs"]["scan"]["table"] == "cooccurrence.parquet"


def test_report_over_the_real_outputs(pipeline):
    root, _ = pipeline
    text, inputs = build_report([root])
    assert [run.kind for run in inputs.runs] == ["index", "audit", "scan", "provenance"]
    for anchor in ("index-index", "audit-audit-top", "audit-audit-heat", "audit-audit-bars",
                   "prov-provenance-scatter", "prov-provenance-evidence", "scan-scan", "scan-scan-examples"):
        assert f'id="{anchor}"' in text
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in text and "<script" not in text
    assert "a white man arrested as a thief" in text  # the evidence behind the contradiction
