"""``wds:`` sources: shards written by the real img2dataset from a loopback server, then damaged.

img2dataset starts slowly (spawned workers import torch), so one module-scoped download serves
every test; tests that damage shards work on copies.
"""

from __future__ import annotations

import gzip
import io
import shutil
import tarfile

import polars as pl
import pytest
from PIL import Image

from engine.errors import InputError
from engine.faces import table
from engine.faces.sources import SourceOptions, load_source
from tests.helpers_faces import img2dataset_shards

RACES = ("White", "Black", "East Asian", "Indian", "Latino_Hispanic")
CANONICAL = {"White": "white", "Black": "black", "East Asian": "east_asian", "Indian": "indian",
             "Latino_Hispanic": "latino_hispanic", "Male": "male", "Female": "female"}
SAMPLES = [{"name": f"s{i}", "race": RACES[i % 5], "gender": ("Male", "Female")[i % 2], "age": 20 + i}
           for i in range(10)]
LABELS = SourceOptions(attributes=("race", "gender", "age"))


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """10 labelled samples and 2 broken URLs in 3 shards of 4 (real img2dataset output)."""
    out = img2dataset_shards(tmp_path_factory.mktemp("wds"), SAMPLES, per_shard=4, broken_urls=2)
    assert sorted(p.name for p in out.glob("*.tar")) == ["00000.tar", "00001.tar", "00002.tar"]
    return out


@pytest.fixture
def copied(shards, tmp_path):
    return shutil.copytree(shards, tmp_path / "shards")


def members(path) -> list[tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return tar.getmembers()


def test_wds_samples_become_faces(shards):
    loaded = load_source(f"wds:{shards}/{{00000..00002}}.tar", LABELS)
    faces = loaded.faces
    assert faces.columns[:4] == ["item_id", "key", "image", "source"]
    assert faces["item_id"].to_list() == list(range(10)) and loaded.failures.height == 0
    assert faces["key"].to_list() == sorted(faces["key"].to_list())
    assert table.attributes(faces) == ["race", "gender", "age"]
    by_name = {s["name"]: (i, s) for i, s in enumerate(SAMPLES)}
    for face in faces.iter_rows(named=True):
        i, sample = by_name[face["name"]]
        assert (face["race"], face["race_raw"]) == (CANONICAL[sample["race"]], sample["race"])
        assert face["gender"] == CANONICAL[sample["gender"]]
        assert (face["age"], face["age_raw"]) == ("20-29", str(sample["age"]))  # ages binned
        assert face["image"].startswith(f"tar:{shards}/")
        image = Image.open(io.BytesIO(table.read_image_bytes(face["image"])))
        assert image.format == "JPEG" and image.size == (20 + i % 5, 24)  # as served, not resized
    assert "url" not in faces.columns and "sha256" not in faces.columns
    assert loaded.description["shards"] == 3 and loaded.description["shards_unfinished"] == []
    assert loaded.description["label_vocabulary"] == {"race": "known", "gender": "known", "age": "binned"}


def test_wds_pattern_forms_agree(shards):
    braces = load_source(f"wds:{shards}/{{00000..00002}}.tar", LABELS).faces
    assert load_source(f"wds:{shards}/*.tar", LABELS).faces.equals(braces)
    everything = load_source(f"wds:{shards}").faces
    assert table.attributes(everything) == ["name", "race", "gender", "age"]  # JSON field order
    assert everything.drop("name", "name_raw").equals(braces.drop("name"))


def test_wds_truncated_shards_keep_the_rest(copied):
    last = members(copied / "00001.tar")[-1]
    data = (copied / "00001.tar").read_bytes()
    (copied / "00001.tar").write_bytes(data[: last.offset_data + last.size // 2])
    (copied / "00002.tar").write_bytes((copied / "00002.tar").read_bytes()[:700])
    loaded = load_source(f"wds:{copied}", LABELS)
    failures = loaded.failures
    cut_key = last.name.split(".")[0]
    truncated = failures.filter(pl.col("key") == cut_key)["reason"].to_list()
    assert len(truncated) == 1 and truncated[0].startswith(f"truncated member {last.name}")
    lost = pl.read_parquet(copied / "00002.parquet").filter(pl.col("status") == "success")["key"]
    listed = failures.filter(pl.col("reason").str.contains("00002.parquet lists it"))["key"]
    assert sorted(listed) == sorted(lost) and len(lost) >= 1
    assert loaded.faces.height == 10 - 1 - len(lost)
    assert cut_key not in loaded.faces["key"].to_list()


def rewrite(path, replace: dict[str, bytes], extra: dict[str, bytes]) -> None:
    """Rewrite a tar with some members' content replaced and extra members appended."""
    with tarfile.open(path) as tar:
        content = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(path, "w") as tar:
        for member, data in content + [(tarfile.TarInfo(n), d) for n, d in extra.items()]:
            data = replace.get(member.name, data)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))


def test_wds_corrupt_members_are_recorded(copied):
    shard = copied / "00000.tar"
    names = sorted({m.name.split(".")[0] for m in members(shard)})
    bad_json, pickled, bad_header = names[:3]
    rewrite(shard, {f"{bad_json}.json": b"{not json"}, {f"{pickled}.pickle": b"\x80\x04K\x01."})
    jpg = next(m for m in members(shard) if m.name == f"{bad_header}.jpg")
    with open(shard, "r+b") as fh:
        fh.seek(jpg.offset_data - tarfile.BLOCKSIZE)
        fh.write(b"\xff" * tarfile.BLOCKSIZE)
    (copied / "zz-garbage.tar").write_bytes(b"this is not a tar file" * 100)
    (copied / "zz-gzipped.tar").write_bytes(gzip.compress((copied / "00001.tar").read_bytes()))
    loaded = load_source(f"wds:{copied}", LABELS)
    reasons = dict(loaded.failures.select("key", "reason").iter_rows())
    assert reasons[bad_json].startswith(f"corrupt JSON member {bad_json}.json")
    assert reasons[bad_header] == "sample has no image member"
    assert "unreadable tar data skipped" in reasons["00000.tar"]
    assert "unreadable tar data after byte 0" in reasons["zz-garbage.tar"]
    assert reasons["zz-gzipped.tar"].startswith("compressed shard")
    assert pickled in loaded.faces["key"].to_list()  # other members are never unpickled
    assert loaded.faces.height == 8


def test_wds_bad_patterns_and_empty_sources(shards, tmp_path):
    with pytest.raises(InputError, match=r"no shard file\(s\) \['.*00003.tar'"):
        load_source(f"wds:{shards}/{{00000..00004}}.tar")
    with pytest.raises(InputError, match="no shard file"):
        load_source(f"wds:{tmp_path}/*.tar")
    with pytest.raises(InputError, match="holds no .tar shards"):
        load_source(f"wds:{tmp_path}")
    with tarfile.open(tmp_path / "empty.tar", "w"):
        pass
    with pytest.raises(InputError, match="no items"):
        load_source(f"wds:{tmp_path}/empty.tar")


def test_wds_repeated_keys_are_qualified_by_shard(shards, tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        shutil.copy(shards / "00000.tar", tmp_path / name / "00000.tar")
    faces = load_source(f"wds:{tmp_path}/{{a,b}}/00000.tar", LABELS).faces
    assert faces["key"].n_unique() == faces.height == 8
    assert faces["key"].str.starts_with("a/00000.tar/").sum() == 4
