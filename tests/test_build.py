"""The resumable build: shards, failures, precomputed vectors, and crash-then-resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from helpers_index import loaded_source, make_images, tiny_encoder, tiny_spec, unit_vectors

from engine.errors import InputError
from engine.faces.build import BuildConfig, run_build
from engine.faces.index import open_index


def _config(indexes_dir: Path, name: str, **kwargs) -> BuildConfig:
    settings = {"shard_size": 4, "batch_size": 3, "workers": 1, "device": "cpu", "progress": False,
                **kwargs}
    return BuildConfig(name=name, source="folder:generated", model=tiny_spec(),
                       indexes_dir=indexes_dir, **settings)


def test_build_embeds_every_readable_image_and_records_the_rest(tmp_path, indexes_dir):
    refs = make_images(tmp_path / "img", 9)
    broken = tmp_path / "img" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    refs.insert(5, str(broken))
    result = run_build(_config(indexes_dir, "faces"), loaded_source(refs))
    assert result["count"] == 9 and result["failures"] == 1 and result["shards"] == 3
    assert result["dim"] == 64 and result["model"] == "vlaudit-tiny" and result["random_weights"]
    index = open_index("faces", indexes_dir)
    assert index.faces["item_id"].to_list() == list(range(9))
    assert "broken.png" not in index.faces["key"].to_list()
    failures = index.failures()
    assert failures["key"].to_list() == ["broken.png"] and failures["reason"][0]
    expected, _ = tiny_encoder().encode_image_refs([r for r in refs if r != str(broken)], 3, 0)
    assert np.abs(index.vectors() - expected).max() < 1e-5
    manifest = index.manifest
    preprocessing = manifest["preprocessing"]
    assert preprocessing["size"] == [64, 64] and "Normalize" in preprocessing["transform"]
    assert manifest["build"]["shards"] == 3 and manifest["model"]["precision"] == "float32"
    assert not (indexes_dir / ".faces.partial").exists()  # work files are gone after success


def test_existing_index_needs_overwrite(tmp_path, indexes_dir):
    refs = make_images(tmp_path / "img", 4)
    run_build(_config(indexes_dir, "faces"), loaded_source(refs))
    with pytest.raises(InputError, match="already exists; pass --overwrite"):
        run_build(_config(indexes_dir, "faces"), loaded_source(refs))
    assert run_build(_config(indexes_dir, "faces", overwrite=True), loaded_source(refs))["count"] == 4


def test_no_readable_image_is_an_error(tmp_path, indexes_dir):
    bad = tmp_path / "bad.jpg"
    bad.write_text("no image here")
    with pytest.raises(InputError, match="none of the 1 images could be read"):
        run_build(_config(indexes_dir, "faces"), loaded_source([str(bad)]))
    assert not (indexes_dir / "faces").exists()


@pytest.mark.parametrize("settings, message", [
    ({"name": "../escape"}, "index name"), ({"name": ".hidden"}, "index name"),
    ({"batch_size": 0}, "batch_size must be at least 1"), ({"workers": -1}, "workers"),
])
def test_bad_config_is_refused(indexes_dir, settings, message):
    with pytest.raises(InputError, match=message):
        _config(indexes_dir, **{"name": "ok", **settings})


def test_precomputed_vectors_are_indexed_without_embedding(indexes_dir):
    vectors = unit_vectors(6, 64)
    result = run_build(_config(indexes_dir, "pre"), loaded_source([""] * 6, vectors=vectors))
    assert result["count"] == 6 and result["shards"] == 0
    np.testing.assert_array_equal(open_index("pre", indexes_dir).vectors(), vectors)
    with pytest.raises(InputError, match="dimension 32 but model vlaudit-tiny embeds to 64"):
        run_build(_config(indexes_dir, "pre2"), loaded_source([""] * 6, vectors=unit_vectors(6, 32)))


CRASHY_BUILD = """
import sys
import polars as pl
from engine.faces.build import BuildConfig, run_build
from engine.faces.index import empty_failures
from engine.faces.models import ModelSpec
from engine.faces.sources import LoadedSource

faces = pl.read_parquet(sys.argv[1])
loaded = LoadedSource(faces=faces, failures=empty_failures(), description={"kind": "folder"})
run_build(BuildConfig(name="crashy", source="folder:generated", indexes_dir=sys.argv[2],
                      model=ModelSpec("vlaudit-tiny", pretrained="none"), shard_size=4,
                      batch_size=3, workers=1, device="cpu", progress=False), loaded)
"""


def test_killed_build_resumes_to_the_identical_index(tmp_path, indexes_dir):
    refs = make_images(tmp_path / "img", 11)
    reference = run_build(_config(indexes_dir, "reference"), loaded_source(refs))
    # The third shard reads image 9 from a FIFO nobody writes to: the build blocks there for sure,
    # after the first shards are done, and is then killed (process group: decode workers too).
    blocking = Path(refs[9])
    saved = blocking.read_bytes()
    blocking.unlink()
    os.mkfifo(blocking)
    faces_file = tmp_path / "faces.parquet"
    loaded_source(refs).faces.write_parquet(faces_file)
    process = subprocess.Popen([sys.executable, "-c", CRASHY_BUILD, str(faces_file), str(indexes_dir)],
                               start_new_session=True, stderr=subprocess.PIPE)
    partial = indexes_dir / ".crashy.partial"
    try:
        deadline = time.monotonic() + 240
        while not list(partial.glob("*/shard-00000_stats.json")):
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "the build never finished its first shard"
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert not (indexes_dir / "crashy").exists()
    assert not list(partial.glob("*/shard-00002_stats.json"))
    blocking.unlink()
    blocking.write_bytes(saved)

    resumed = run_build(_config(indexes_dir, "crashy"), loaded_source(refs))
    assert resumed["resumed_shards"] >= 1 and resumed["count"] == reference["count"] == 11
    a, b = open_index("reference", indexes_dir), open_index("crashy", indexes_dir)
    assert (a.path / "index.faiss").read_bytes() == (b.path / "index.faiss").read_bytes()
    np.testing.assert_array_equal(a.vectors(), b.vectors())
    assert a.faces.equals(b.faces) and a.failures().equals(b.failures())
    assert a.manifest["checksums"] == b.manifest["checksums"]
    assert isinstance(b.faces, pl.DataFrame) and not partial.exists()
