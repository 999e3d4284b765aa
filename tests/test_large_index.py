"""On-disk IVF indexes built shard by shard: same lists as an in-memory build, exact when every list
is probed, movable, resumable, and identical whatever the executor."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from engine.errors import InputError
from engine.faces import large_index
from engine.faces.large_index import OnDiskConfig, build_on_disk, read_on_disk
from helpers_large_index import DIM, lists_of, write_shards

NLIST = 8


@pytest.fixture
def built(tmp_path):
    files, rows = write_shards(tmp_path / "shards")
    config = OnDiskConfig(nlist=NLIST, train_size=300, fan_in=2)  # fan_in 2: several merge rounds
    described = build_on_disk(files, tmp_path / "index", tmp_path / "work", config=config)
    return files, rows, described, tmp_path


def test_the_merged_lists_equal_an_in_memory_build(built):
    import faiss

    files, rows, described, tmp_path = built
    index = read_on_disk(tmp_path / "index" / "index.faiss")
    assert index.ntotal == len(rows) == described["count"] and described["nlist"] == NLIST
    memory = faiss.read_index(str(tmp_path / "work" / "trained.index"))
    memory.add_with_ids(rows, np.arange(len(rows), dtype=np.int64))
    ours, theirs = lists_of(index), lists_of(memory)
    assert all(np.array_equal(a[0], b[0]) and a[1] == b[1] for a, b in zip(ours, theirs))
    assert sorted(np.concatenate([ids for ids, _ in ours]).tolist()) == list(range(len(rows)))


def test_probing_every_list_is_exact_search(built):
    files, rows, _, tmp_path = built
    index = read_on_disk(tmp_path / "index" / "index.faiss")
    import faiss

    faiss.extract_index_ivf(index).nprobe = NLIST
    queries = rows[::37]
    scores, ids = index.search(queries, 5)
    exact = queries.astype(np.float64) @ rows.astype(np.float64).T
    expected = np.argsort(-exact, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(exact, expected, 1), atol=1e-5)


def test_the_index_directory_can_move(built):
    files, rows, _, tmp_path = built
    moved = tmp_path / "elsewhere" / "index"
    shutil.move(tmp_path / "index", moved)
    index = read_on_disk(moved / "index.faiss")
    _, ids = index.search(rows[:3], 1)
    assert ids[:, 0].tolist() == [0, 1, 2]


def test_a_rerun_resumes_and_the_files_are_identical(built):
    files, rows, described, tmp_path = built
    blocks = {p: p.stat().st_mtime_ns for p in (tmp_path / "work" / "blocks").iterdir()}
    again = build_on_disk(files, tmp_path / "index2", tmp_path / "work",
                          config=OnDiskConfig(nlist=NLIST, train_size=300, fan_in=2))
    assert again == described
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "work" / "blocks").iterdir()} == blocks
    fresh = build_on_disk(files, tmp_path / "index3", tmp_path / "work3", workers=2,
                          config=OnDiskConfig(nlist=NLIST, train_size=300, fan_in=64))
    for name in ("index.faiss", "index.ivfdata"):
        first = (tmp_path / "index" / name).read_bytes()
        assert first == (tmp_path / "index2" / name).read_bytes() == (tmp_path / "index3" / name).read_bytes()
    assert fresh == described
    assert not list((tmp_path / "work").glob("merge-*"))


def test_default_nlist_grows_with_the_square_root():
    assert large_index.default_nlist(1_000_000) == 4096
    assert large_index.default_nlist(2_320_000_000) == 1 << 18  # capped
    assert large_index.default_nlist(100) == 2  # enough rows per list to train


@pytest.mark.parametrize("settings, message", [
    ({"factory": "HNSW32,Flat"}, "no IVF part"), ({"fan_in": 1}, "fan_in"), ({"nlist": 0}, "nlist"),
])
def test_bad_configs_are_refused(settings, message):
    with pytest.raises(InputError, match=message):
        OnDiskConfig(**settings)


def test_bad_shards_and_codecs_are_refused(tmp_path):
    files, _ = write_shards(tmp_path / "shards", sizes=(50, 50))
    np.save(tmp_path / "wide.npy", np.zeros((3, DIM + 1), dtype=np.float32))
    with pytest.raises(InputError, match="one width"):
        build_on_disk(files + [tmp_path / "wide.npy"], tmp_path / "i", tmp_path / "w")
    with pytest.raises(InputError, match="cannot train 128 lists"):
        build_on_disk(files, tmp_path / "i", tmp_path / "w", config=OnDiskConfig(nlist=128))
    with pytest.raises(InputError, match="cannot live on disk"):
        build_on_disk(files, tmp_path / "i", tmp_path / "w2",
                      config=OnDiskConfig(factory="IVF{nlist},PQ4x4fs", nlist=4))


def test_recall_is_measured_like_the_in_memory_measure_at_the_chosen_nprobe(built):
    import faiss

    from engine.faces import factories

    files, rows, described, tmp_path = built
    assert described["recall_vs_exact"] == {"k": 10, "queries": len(rows), "recall": 1.0}  # nprobe = nlist
    index = read_on_disk(tmp_path / "index" / "index.faiss")
    memory = faiss.read_index(str(tmp_path / "work" / "trained.index"))  # the same lists, in memory
    memory.add_with_ids(rows, np.arange(len(rows), dtype=np.int64))
    counts = [len(np.load(f)) for f in files]
    for nprobe in (1, 2):
        faiss.extract_index_ivf(index).nprobe = faiss.extract_index_ivf(memory).nprobe = nprobe
        ours = large_index.measure_recall(index, files, counts)
        assert ours == factories.measure_recall(memory, rows) and ours["queries"] == len(rows)
        assert 0 < ours["recall"] < 1
    assert large_index.measure_recall(index, files, counts, queries=50)["queries"] == 50


def test_the_list_count_comes_from_the_factory_or_nlist():
    assert OnDiskConfig(factory="IVF64,Flat").lists_for(10) == 64
    assert OnDiskConfig(nlist=16).lists_for(10**6) == 16
    assert OnDiskConfig().lists_for(10**6) == 4096
    with pytest.raises(InputError, match="give the list count once"):
        OnDiskConfig(factory="IVF64,SQ8", nlist=32)
