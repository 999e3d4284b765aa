"""Index files: write/open round trip, manifest, checksums, FAISS kinds and recall, bad input."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from helpers_index import face_table, tiny_spec, unit_vectors

from engine import storage
from engine.errors import InputError
from engine.faces.index import list_indexes, open_index, write_index
from engine.faces.query import search

DATASET = {"kind": "folder", "spec": "folder:generated"}


def _write(indexes_dir, name="synthetic", count=50, dim=16, **kwargs):
    refs = [f"/data/{i}.jpg" for i in range(count)]
    vectors = unit_vectors(count, dim)
    written = write_index(indexes_dir / name, vectors, face_table(refs),
                          model=tiny_spec().describe(), dataset=DATASET, **kwargs)
    return written, vectors


def test_round_trip_keeps_vectors_faces_failures_and_manifest(indexes_dir):
    failures = pl.DataFrame({"key": ["x.jpg"], "image": ["/data/x.jpg"], "reason": ["OSError: truncated"]})
    written, vectors = _write(indexes_dir, failures=failures)
    opened = open_index("synthetic", indexes_dir)
    np.testing.assert_array_equal(opened.vectors(), vectors)
    assert opened.faces.equals(written.faces) and opened.failures().equals(failures)
    manifest = opened.manifest
    assert manifest["count"] == 50 and manifest["dim"] == 16 and manifest["failures"] == 1
    assert manifest["metric"] == "inner_product" and manifest["index"]["exact"] is True
    assert manifest["model"]["random_weights"] is True and manifest["dataset"] == DATASET
    assert set(manifest["attributes"]) == {"gender", "race"}
    assert {"numpy", "polars"} <= set(manifest["packages"])
    for name, digest in manifest["checksums"].items():
        assert storage.sha256_file(opened.path / name) == digest
    assert opened.model_spec == tiny_spec()
    assert not list(indexes_dir.glob(".*"))  # nothing temporary left behind


def test_item_statistics_are_stored_and_equal_a_float64_computation(indexes_dir):
    written, vectors = _write(indexes_dir, count=300)
    opened = open_index("synthetic", indexes_dir)
    assert "item_statistics.npy" in opened.manifest["checksums"]
    stored = opened.item_statistics()
    exact = vectors.astype(np.float64)
    centred = exact - stored.centre.astype(np.float64)
    np.testing.assert_allclose(stored.mean, exact.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(stored.gram, centred.T @ centred, rtol=1e-5, atol=1e-5)  # float32 products
    assert stored.count == 300


def test_index_without_item_statistics_computes_them(indexes_dir):
    """Indexes written before item_statistics.npy existed still audit: it is computed on open."""
    written, _ = _write(indexes_dir)
    manifest = storage.read_json(written.path / "manifest.json")
    del manifest["checksums"]["item_statistics.npy"]
    (written.path / "item_statistics.npy").unlink()
    storage.write_json(written.path / "manifest.json", manifest)
    opened = open_index("synthetic", indexes_dir)
    np.testing.assert_allclose(opened.item_statistics().gram, written.item_statistics().gram, atol=1e-6)


def test_damaged_file_is_detected_by_its_checksum(indexes_dir):
    written, _ = _write(indexes_dir)
    faces = written.path / "faces.parquet"
    faces.write_bytes(faces.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(InputError, match="faces.parquet does not match its checksum"):
        open_index("synthetic", indexes_dir)


def test_missing_index_names_the_available_ones(indexes_dir):
    _write(indexes_dir, name="alpha")
    with pytest.raises(InputError, match="no index 'beta'.*available: alpha"):
        open_index("beta", indexes_dir)
    assert open_index(str(indexes_dir / "alpha")).name == "alpha"  # a path works too


def test_list_summarises_every_index(indexes_dir):
    _write(indexes_dir, name="b")
    _write(indexes_dir, name="a", count=10)
    (indexes_dir / ".a.partial").mkdir()
    listed = list_indexes(indexes_dir)
    assert [e["name"] for e in listed] == ["a", "b"]
    assert listed[0]["count"] == 10 and listed[0]["model"] == "vlaudit-tiny"
    assert list_indexes(indexes_dir / "absent") == []


@pytest.mark.parametrize("vectors, message", [
    (unit_vectors(49, 16), "do not match a face table of 50 rows"),
    (unit_vectors(50, 16) * 3, "must be L2-normalised"),
    (np.full((50, 16), np.nan, dtype=np.float32), "NaN"),
])
def test_bad_vectors_are_refused(indexes_dir, vectors, message):
    refs = [f"/data/{i}.jpg" for i in range(50)]
    with pytest.raises(InputError, match=message):
        write_index(indexes_dir / "bad", vectors, face_table(refs), model={}, dataset={})
    assert not (indexes_dir / "bad").exists()


def test_bad_face_table_is_refused(indexes_dir):
    faces = face_table(["/a.jpg", "/b.jpg"]).with_columns(item_id=pl.Series([1, 0]))
    with pytest.raises(InputError, match="item_id"):
        write_index(indexes_dir / "bad", unit_vectors(2, 4), faces, model={}, dataset={})


@pytest.mark.parametrize("factory", ["IVF4,Flat", "HNSW16,Flat"])
def test_approximate_index_reports_recall_against_exact(indexes_dir, factory):
    written, vectors = _write(indexes_dir, count=400, factory=factory)
    described = written.manifest["index"]
    assert described["factory"] == factory and described["exact"] is False
    recall = described["recall_vs_exact"]
    assert recall["k"] == 10 and recall["queries"] == 400 and 0.5 < recall["recall"] <= 1
    opened = open_index("synthetic", indexes_dir)
    np.testing.assert_allclose(opened.vectors(), vectors, atol=1e-6)
    scores, ids = search(opened, vectors[:5], 3)
    assert ids.shape == (5, 3) and (ids >= 0).all()


def test_auto_factory_is_exact_below_the_threshold(indexes_dir):
    written, _ = _write(indexes_dir, factory="auto")
    assert written.manifest["index"]["factory"] == "Flat"


def test_unknown_factory_is_a_clear_error(indexes_dir):
    with pytest.raises(InputError, match="FAISS cannot build index 'Nonsense99'"):
        _write(indexes_dir, factory="Nonsense99")
    with pytest.raises(InputError, match="cannot train"):
        _write(indexes_dir, count=10, factory="IVF64,Flat")

