"""``vlaudit index build --on-disk``: the embedded shards become an on-disk IVF index directory that
is checksummed, opens wherever it moves, searches like exact search when every list is probed,
audits like an exact index, and resumes after an interrupted build."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers_index import brute_force_top_k, loaded_source, make_images, tiny_encoder, tiny_spec, unit_vectors
from polars.testing import assert_frame_equal

from engine import storage
from engine.cli import main
from engine.faces import large_index
from engine.faces.index import open_index, write_index
from engine.faces.skew import ItemStatistics

COUNT, NLIST, SHARD_SIZE = 30, 4, 8
BROKEN = 13  # this image is garbage: a failure in the middle of the second shard
TINY_ARGS = ["--model", "vlaudit-tiny", "--pretrained", "none", "--device", "cpu", "--workers", "0",
             "--no-progress", "--batch-size", "5", "--shard-size", str(SHARD_SIZE)]
ON_DISK_ARGS = ["--on-disk", "--nlist", str(NLIST), "--nprobe", str(NLIST)]
FILES = {"index.faiss", "index.ivfdata", "faces.parquet", "failures.parquet", "item_statistics.npy"}


def _dataset(root: Path) -> tuple[Path, list[str]]:
    refs = make_images(root / "images", COUNT)
    Path(refs[BROKEN]).write_bytes(b"not an image")
    rows = ["file,gender,race"] + [f"images/{Path(r).name},{'Female' if i % 2 else 'Male'},"
                                   f"{('Black', 'White', 'East Asian')[i % 3]}" for i, r in enumerate(refs)]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root, [r for i, r in enumerate(refs) if i != BROKEN]


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def _build(data: Path, indexes_dir: Path, name: str = "faces", *extra: str) -> tuple[int, str, str]:
    return _cli("index", "build", name, "--source", f"folder:{data}", *TINY_ARGS, *ON_DISK_ARGS, *extra,
                "--indexes-dir", str(indexes_dir), "--json")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("on-disk")
    data, readable = _dataset(root / "data")
    code, out, err = _build(data, root / "indexes")
    assert code == 0, err
    return {"data": data, "indexes": root / "indexes", "readable": readable, "result": json.loads(out)}


def test_the_directory_holds_every_file_with_its_checksum(built):
    result, path = built["result"], built["indexes"] / "faces"
    assert result["count"] == COUNT - 1 and result["failures"] == 1 and result["shards"] == 4
    assert result["on_disk"] and result["nlist"] == NLIST and result["nprobe"] == NLIST
    assert {p.name for p in path.iterdir()} == FILES | {"manifest.json"}
    manifest = storage.read_json(path / "manifest.json")
    assert set(manifest["checksums"]) == FILES
    for name, digest in manifest["checksums"].items():
        assert storage.sha256_file(path / name) == digest
    described = manifest["index"]
    assert described["on_disk"] and described["factory"] == f"IVF{NLIST},Flat" and not described["exact"]
    assert described["nlist"] == NLIST and described["nprobe"] == NLIST
    assert described["recall_vs_exact"] == {"k": 10, "queries": COUNT - 1, "recall": 1.0}  # all lists probed
    assert manifest["count"] == COUNT - 1 and manifest["build"]["shards"] == 4
    assert not list(built["indexes"].glob(".*"))  # no work directory, no temporary left


def test_vectors_failures_and_statistics_are_those_of_the_readable_images(built):
    index = open_index("faces", built["indexes"])
    expected, _ = tiny_encoder().encode_image_refs(built["readable"], 5, 0)
    assert np.abs(index.vectors() - expected).max() < 1e-5
    assert index.faces["key"].to_list() == [f"images/{Path(r).name}" for r in built["readable"]]
    assert index.failures()["key"].to_list() == [f"images/face_{BROKEN:03d}.png"]
    statistics, oracle = index.item_statistics(), ItemStatistics.of(index.vectors())
    assert statistics.count == oracle.count == COUNT - 1
    np.testing.assert_allclose(statistics.mean, oracle.mean, rtol=0, atol=1e-12)
    # the Gram matrix is summed from float32 products of each block: equal to float32 rounding
    np.testing.assert_allclose(statistics.gram, oracle.gram, rtol=0, atol=1e-6 * np.abs(oracle.gram).max())


def test_a_moved_index_opens_and_queries_like_exact_search(built, tmp_path):
    import faiss

    moved = tmp_path / "elsewhere"
    shutil.copytree(built["indexes"] / "faces", tmp_path / "copy")
    moved.mkdir()
    shutil.move(tmp_path / "copy", moved / "renamed")
    index = open_index("renamed", moved)
    lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(index.faiss_index).invlists)
    assert Path(lists.filename) == moved / "renamed" / "index.ivfdata"  # the lists found beside it
    texts = ["a photo of a doctor", "a photo of a nurse", "a photo of a thief"]
    code, out, err = _cli("query", "renamed", *texts, "-k", "6", "--indexes-dir", str(moved), "--json")
    assert code == 0, err
    scores, ids = brute_force_top_k(index.vectors(), tiny_encoder().encode_texts(texts), 6)
    for query, want_ids, want_scores in zip(json.loads(out)["queries"], ids, scores, strict=True):
        assert [hit["item_id"] for hit in query["hits"]] == want_ids.tolist()
        np.testing.assert_allclose([hit["score"] for hit in query["hits"]], want_scores, atol=1e-5)
    code, out, err = _cli("index", "info", "renamed", "--indexes-dir", str(moved), "--json")
    assert code == 0 and json.loads(out)["verified"] and json.loads(out)["index"]["on_disk"], err
    code, out, err = _cli("index", "list", "--indexes-dir", str(moved), "--json")
    assert [(i["name"], i["factory"]) for i in json.loads(out)["indexes"]] == [("renamed", f"IVF{NLIST},Flat")]


def test_a_damaged_list_file_is_refused(built, tmp_path):
    copy = tmp_path / "indexes" / "faces"
    shutil.copytree(built["indexes"] / "faces", copy)
    with open(copy / "index.ivfdata", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01\x02")
    code, _, err = _cli("index", "info", "faces", "--indexes-dir", str(copy.parent))
    assert code == 2 and "index.ivfdata does not match its checksum" in err


def test_the_audit_of_the_on_disk_index_is_that_of_an_exact_index(built, tmp_path, monkeypatch):
    from engine.audit import audit
    from engine.faces.skew import ItemStatistics

    loaded = open_index("faces", built["indexes"])
    exact = write_index(tmp_path / "exact", loaded.vectors(), loaded.faces, model=loaded.manifest["model"],
                        dataset=loaded.manifest["dataset"])
    on_disk = open_index("faces", built["indexes"])
    monkeypatch.setattr(ItemStatistics, "BLOCK", 7)  # vectors read back in several blocks
    words = tmp_path / "words.csv"
    words.write_text("category,word\njobs,nurse\njobs,engineer\ncrime,thief\n", encoding="utf-8")
    settings = {"k": 6, "encoder": tiny_encoder(), "templates": "portrait", "null_draws": 99}
    ours, theirs = audit(on_disk, str(words), **settings), audit(exact, str(words), **settings)
    assert on_disk._vectors is None  # never all in memory at once
    assert ours.hits["item_id"].to_list() == theirs.hits["item_id"].to_list()
    assert_frame_equal(ours.skew, theirs.skew, check_exact=False)
    assert ours.skew.height > 0


def test_an_interrupted_build_resumes_to_the_identical_index(built, tmp_path, monkeypatch):
    real_add = large_index.AddShard.__call__
    added = []

    def crash_on_the_second_block(self, task, out_dir):
        if task.shard_id == "block-00001":
            raise OSError("disk full")
        return real_add(self, task, out_dir)

    monkeypatch.setattr(large_index.AddShard, "__call__", crash_on_the_second_block)
    code, _, err = _build(built["data"], tmp_path / "indexes")
    assert code == 2 and "1 of 4 shards could not be added" in err and "disk full" in err
    assert not (tmp_path / "indexes" / "faces").exists()
    partial = tmp_path / "indexes" / ".faces.partial"
    assert len(list(partial.glob("*/shard-*_stats.json"))) == 4
    assert len(list(partial.glob("*/ivf-*/blocks/block-*_stats.json"))) == 3

    def count_adds(self, task, out_dir):
        added.append(task.shard_id)
        return real_add(self, task, out_dir)

    monkeypatch.setattr(large_index.AddShard, "__call__", count_adds)
    code, out, err = _build(built["data"], tmp_path / "indexes")
    assert code == 0, err
    assert json.loads(out)["resumed_shards"] == 4 and added == ["block-00001"]
    first = storage.read_json(built["indexes"] / "faces" / "manifest.json")
    again = storage.read_json(tmp_path / "indexes" / "faces" / "manifest.json")
    assert again["checksums"] == first["checksums"] and again["index"] == first["index"]
    assert not partial.exists()


def test_precomputed_vectors_can_go_on_disk(tmp_path):
    from engine.faces.build import BuildConfig, run_build

    vectors = unit_vectors(50, 64, seed=3)
    config = BuildConfig(name="pre", source="embeddings:generated", model=tiny_spec(), on_disk=True,
                         nlist=2, shard_size=16, indexes_dir=tmp_path, progress=False)
    result = run_build(config, loaded_source([""] * 50, vectors=vectors))
    assert result["on_disk"] and result["count"] == 50 and result["nprobe"] == 2
    index = open_index("pre", tmp_path)
    np.testing.assert_array_equal(index.vectors(), vectors)
    assert (tmp_path / "pre" / "index.ivfdata").is_file() and not (tmp_path / ".pre.partial").exists()


@pytest.mark.parametrize("extra, message", [
    (["--nlist", "4"], "add --on-disk"),
    (["--on-disk", "--factory", "Flat"], "has no IVF part"),
    (["--on-disk", "--nprobe", "0"], "nprobe must be at least 1"),
    (["--on-disk", "--factory", "IVF8,Flat", "--nlist", "4"], "give the list count once"),
])
def test_bad_on_disk_options_are_refused(tmp_path, extra, message):
    code, _, err = _cli("index", "build", "x", "--source", f"folder:{tmp_path}", *TINY_ARGS, *extra,
                        "--indexes-dir", str(tmp_path / "indexes"))
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "indexes").exists()


def test_item_statistics_of_blocks_equal_those_of_all_vectors(monkeypatch):
    vectors = unit_vectors(70, 12, seed=1) + 0.5  # off-centre, so the centring matters
    pieces = [vectors[:3], vectors[3:3], vectors[3:40], vectors[40:]]
    calls = []

    def blocks():
        calls.append(1)
        return iter(pieces)

    monkeypatch.setattr(ItemStatistics, "BLOCK", 16)  # several runs per piece
    ours = ItemStatistics.of_blocks(blocks)
    oracle = ItemStatistics.of(vectors)
    assert len(calls) == 2 and ours.count == 70
    np.testing.assert_allclose(ours.mean, oracle.mean, rtol=1e-12)
    np.testing.assert_allclose(ours.gram, oracle.gram, rtol=0, atol=1e-6 * np.abs(oracle.gram).max())
    assert not np.allclose(ours.gram, ItemStatistics.of(vectors[:40]).gram, atol=1e-3)  # it can fail
    with pytest.raises(ValueError, match="no vectors"):
        ItemStatistics.of_blocks(lambda: iter([vectors[:0]]))
