"""Remembered checksums: a large unchanged file is hashed once; any change rehashes it."""

from __future__ import annotations

import os

import pytest

from engine import checksum_cache, storage


@pytest.fixture
def counted(monkeypatch):
    calls = []
    real = storage.sha256_file

    def sha256_file(path, *args, **kwargs):
        calls.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(storage, "sha256_file", sha256_file)
    monkeypatch.setattr(checksum_cache, "REMEMBER_FROM", 1024)
    return calls


def test_an_unchanged_large_file_is_hashed_once(tmp_path, counted):
    big = tmp_path / "index.faiss"
    big.write_bytes(os.urandom(4096))
    first = checksum_cache.sha256(big)
    assert checksum_cache.sha256(big) == first == storage.sha256_bytes(big.read_bytes())
    assert len(counted) == 1


def test_a_changed_file_is_hashed_again(tmp_path, counted):
    big = tmp_path / "index.faiss"
    big.write_bytes(b"a" * 4096)
    before = checksum_cache.sha256(big)
    big.write_bytes(b"b" * 4096)  # same size; a new modification time
    os.utime(big, ns=(big.stat().st_atime_ns, big.stat().st_mtime_ns + 1_000_000))
    after = checksum_cache.sha256(big)
    assert after != before and after == storage.sha256_bytes(b"b" * 4096)
    assert len(counted) == 2


def test_small_files_are_always_hashed(tmp_path, counted):
    small = tmp_path / "manifest.json"
    small.write_text("{}")
    checksum_cache.sha256(small)
    checksum_cache.sha256(small)
    assert len(counted) == 2


def test_an_unwritable_cache_only_means_hashing_every_time(tmp_path, counted, monkeypatch):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    monkeypatch.setenv("VLAUDIT_CACHE_DIR", str(blocker / "cache"))
    big = tmp_path / "index.faiss"
    big.write_bytes(os.urandom(4096))
    assert checksum_cache.sha256(big) == checksum_cache.sha256(big)
    assert len(counted) == 2


def test_a_damaged_index_file_is_still_refused_after_being_remembered(indexes_dir, monkeypatch):
    """The remembered digest of the intact file does not hide a later change."""
    from helpers_index import face_table, tiny_spec, unit_vectors

    from engine.errors import InputError
    from engine.faces.index import open_index, write_index

    monkeypatch.setattr(checksum_cache, "REMEMBER_FROM", 0)
    write_index(indexes_dir / "x", unit_vectors(50, 16), face_table([f"/d/{i}.jpg" for i in range(50)]),
                model=tiny_spec().describe(), dataset={"kind": "folder", "spec": "folder:x"})
    open_index("x", indexes_dir)
    target = indexes_dir / "x" / "index.faiss"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 1_000_000))  # a later write
    with pytest.raises(InputError, match="index.faiss does not match its checksum"):
        open_index("x", indexes_dir)
