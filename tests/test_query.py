"""Queries: exact top-k against numpy brute force, ties by item id, model refusal, hits table."""

from __future__ import annotations

import numpy as np
import pytest
from helpers_index import brute_force_top_k, face_table, tiny_encoder, tiny_spec, unit_vectors

from engine.errors import InputError, ModelMismatchError
from engine.faces.index import write_index
from engine.faces.models import ModelSpec
from engine.faces.query import check_same_model, query_index, search


def _index(indexes_dir, vectors, name="q"):
    refs = [f"/data/{i}.jpg" for i in range(len(vectors))]
    return write_index(indexes_dir / name, vectors, face_table(refs), model=tiny_spec().describe(),
                       dataset={"spec": "folder:generated"})


def test_search_equals_numpy_brute_force(indexes_dir):
    vectors, queries = unit_vectors(300, 32, seed=1), unit_vectors(40, 32, seed=2)
    index = _index(indexes_dir, vectors)
    scores, ids = search(index, queries, 25)
    expected_scores, expected_ids = brute_force_top_k(vectors, queries, 25)
    assert scores.dtype == np.float32 and ids.dtype == np.int64 and ids.shape == (40, 25)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-5)


def test_ties_are_broken_by_item_id_and_exactly_k_come_back(indexes_dir):
    base = unit_vectors(6, 8, seed=3)
    # 40 copies of one vector (all tied), spread over the ids, among distinct others
    vectors = base[np.r_[np.zeros(40, dtype=int), np.arange(1, 6)]]
    order = np.random.default_rng(0).permutation(len(vectors))
    vectors = vectors[order]
    tied_ids = np.sort(np.flatnonzero(order < 40))
    index = _index(indexes_dir, vectors)
    for k in (1, 7, 33, 40, 45):
        scores, ids = search(index, base[:1], k)
        assert ids.shape == (1, k)
        np.testing.assert_array_equal(ids[0, :min(k, 40)], tied_ids[:min(k, 40)])
        assert len(set(ids[0].tolist())) == k
        assert (np.diff(scores[0]) <= 0).all()


def test_batched_search_equals_one_query_at_a_time(indexes_dir):
    vectors, queries = unit_vectors(200, 16, seed=4), unit_vectors(30, 16, seed=5)
    index = _index(indexes_dir, vectors)
    scores, ids = search(index, queries, 10)
    for row, query in enumerate(queries):
        one_scores, one_ids = search(index, query[None], 10)
        np.testing.assert_array_equal(one_ids[0], ids[row])
        np.testing.assert_allclose(one_scores[0], scores[row], atol=1e-6)


@pytest.mark.parametrize("k, queries, message", [
    (0, unit_vectors(2, 16), "positive integer"),
    (51, unit_vectors(2, 16), "exceeds the index size of 50"),
    (5, unit_vectors(2, 8), "do not fit an index of dimension 16"),
    (5, np.zeros((0, 16), dtype=np.float32), "no queries"),
])
def test_bad_search_input(indexes_dir, k, queries, message):
    index = _index(indexes_dir, unit_vectors(50, 16))
    with pytest.raises(InputError, match=message):
        search(index, queries, k)


def test_other_model_is_refused(indexes_dir):
    index = _index(indexes_dir, unit_vectors(10, 64))
    check_same_model(index, tiny_spec())  # the same model passes
    with pytest.raises(ModelMismatchError, match="built with vlaudit-tiny .*refusing.*ViT-B-32"):
        check_same_model(index, ModelSpec("ViT-B-32", pretrained="none"))
    with pytest.raises(ModelMismatchError, match="pretrained tag 'openai'"):
        check_same_model(index, ModelSpec("vlaudit-tiny", pretrained="openai"))


def test_query_encodes_texts_with_the_index_model(indexes_dir):
    vectors = unit_vectors(60, 64, seed=6)
    index = _index(indexes_dir, vectors)
    texts = ["a photo of a doctor", "a photo of an nurse", "a photo of a doctor"]
    hits = query_index(index, texts, 5, encoder=tiny_encoder())
    assert hits.columns[:5] == ["query", "text", "rank", "item_id", "score"]
    assert {"key", "gender", "gender_raw", "race"} <= set(hits.columns)
    assert hits.height == 15 and hits["rank"].to_list()[:5] == [1, 2, 3, 4, 5]
    text_vectors = tiny_encoder().encode_texts(texts)
    _, expected = brute_force_top_k(vectors, text_vectors, 5)
    np.testing.assert_array_equal(hits["item_id"].to_numpy().reshape(3, 5), expected)
    first = hits.filter(hits["query"] == 0)
    assert first["key"].to_list() == [f"{i}.jpg" for i in expected[0]]
    assert first["gender"].to_list() == index.faces["gender"].gather(expected[0]).to_list()


def test_query_with_a_different_encoder_is_refused(indexes_dir):
    index = _index(indexes_dir, unit_vectors(10, 64))
    index.manifest["model"] = ModelSpec("ViT-B-32", pretrained="none").describe()
    with pytest.raises(ModelMismatchError):
        query_index(index, ["a photo"], 3, encoder=tiny_encoder())


def test_cpu_backend_is_the_index_itself():
    import faiss

    from engine.faces import factories

    if factories.gpu_available():
        pytest.skip("a faiss GPU is present: the exact index is searched on a GPU copy")
    for factory in ("Flat", "HNSW8,Flat"):
        index = faiss.index_factory(8, factory, faiss.METRIC_INNER_PRODUCT)
        index.add(unit_vectors(20, 8))
        assert factories.search_backend(index, 5) is index
