"""``vlaudit subset --download`` end to end against a loopback server, and the shards the real
img2dataset writes there, scanned back (per-shard parquet or tar). img2dataset runs once per
module: its worker processes take a while to start."""

from __future__ import annotations

import shutil
import tarfile

import polars as pl
import pytest

from engine.captions.scan import run_scan
from engine.captions.subset import SubsetConfig, run_subset
from engine.cli import main
from engine.errors import InputError
from helpers_captions import (assert_matches_oracle, laion_parquet, loopback_server, scan_config,
                              webdataset_tar, write_images)

CAPTIONS = ["a nurse and a woman", "nurse, woman", "a nurse and a man", "woman doctor",
            "NURSES: two women", "a lone nurse", "an old nurse", "a black woman nurse"]
SERVED = 6  # the last two URLs point at images the server does not have


@pytest.fixture(scope="module")
def downloaded(tmp_path_factory):
    """Scan a LAION-style parquet whose URLs point at a loopback server, then
    ``vlaudit subset --word nurse --download``: the real img2dataset writes the shards."""
    root = tmp_path_factory.mktemp("subset")
    names = write_images(root / "served", SERVED)
    with loopback_server(root / "served") as base:
        urls = [f"{base}/{n}" for n in names] + [f"{base}/absent-{i}.png" for i in range(2)]
        pl.DataFrame({"URL": urls, "TEXT": CAPTIONS}).write_parquet(root / "meta.parquet")
        run_scan(scan_config(root, [root / "meta.parquet"]))
        argv = ["subset", "--db", str(root / "scan.duckdb"), "--word", "Nurses",
                "--out", str(root / "urls.parquet"), "--download", str(root / "images"),
                "--threads", "2", "--image-size", "16", "--json"]
        assert main(argv) == 0
    return root, urls


def test_subset_writes_img2dataset_input_and_downloads_it(downloaded):
    root, urls = downloaded
    with_nurse = [i for i, c in enumerate(CAPTIONS) if "nurse" in c.lower()]
    picked = pl.read_parquet(root / "urls.parquet")
    assert picked.columns[:2] == ["url", "caption"]
    assert picked["caption"].to_list() == [CAPTIONS[i] for i in with_nurse]
    assert picked["url"].to_list() == [urls[i] for i in with_nurse]
    assert picked["source_key"].to_list() == [str(i) for i in with_nurse]  # no key column: the row
    captions = []
    for shard in sorted((root / "images").glob("*.tar")):
        with tarfile.open(shard) as tar:
            captions += [tar.extractfile(m).read().decode() for m in tar if m.name.endswith(".txt")]
    assert sorted(captions) == sorted(CAPTIONS[i] for i in with_nurse if i < SERVED)


def test_the_per_shard_parquet_is_read_and_only_successes_count(tmp_path, downloaded):
    root, _ = downloaded
    manifest = run_scan(scan_config(tmp_path, [root / "images"]))
    table = pl.read_parquet(tmp_path / "out" / "shards.parquet")
    assert set(table["kind"]) == {"img2dataset"} and table["covers"].str.ends_with(".tar").all()
    counts = manifest["counts"]
    served = [c for i, c in enumerate(CAPTIONS) if i < SERVED and "nurse" in c.lower()]
    assert counts["n_captions"] == len(served)
    assert counts["rows_excluded"] == 2 and "success" not in counts["excluded_by_status"]
    assert_matches_oracle(tmp_path / "out", served)


def test_tars_without_their_parquet_give_the_same_counts(tmp_path, downloaded):
    root, _ = downloaded
    tars = tmp_path / "tars"
    tars.mkdir()
    for tar in (root / "images").glob("*.tar"):
        shutil.copy(tar, tars / tar.name)
    run_scan(scan_config(tmp_path, [tars / "*.tar"]))
    table = pl.read_parquet(tmp_path / "out" / "shards.parquet")
    assert set(table["kind"]) == {"webdataset"} and set(table["status"]) == {"done"}
    served = [c for i, c in enumerate(CAPTIONS) if i < SERVED and "nurse" in c.lower()]
    assert_matches_oracle(tmp_path / "out", served)


def test_a_subset_reads_the_keys_back_from_img2dataset_parquet_and_tars(tmp_path, downloaded):
    root, _ = downloaded
    written = pl.concat([pl.read_parquet(p) for p in sorted((root / "images").glob("*.parquet"))])
    nurse = written.filter((pl.col("status") == "success") & pl.col("caption").str.to_lowercase().str.contains("nurse"))
    tars = tmp_path / "tars"
    tars.mkdir()
    for tar in (root / "images").glob("*.tar"):
        shutil.copy(tar, tars / tar.name)
    for name, source in (("parquet", root / "images"), ("tars", tars / "*.tar")):
        run_scan(scan_config(tmp_path / name, [source]))
        out = tmp_path / f"{name}.parquet"
        run_subset(SubsetConfig(db=str(tmp_path / name / "scan.duckdb"), word="nurse", out=str(out)))
        picked = pl.read_parquet(out)
        assert sorted(picked["source_key"]) == sorted(nurse["key"]), name
        assert sorted(picked["caption"]) == sorted(nurse["caption"]), name


def test_a_truncated_img2dataset_tar_fails_alone(tmp_path, downloaded):
    root, _ = downloaded
    whole = next((root / "images").glob("*.tar")).read_bytes()
    data = tmp_path / "data"
    data.mkdir()
    (data / "00000.tar").write_bytes(whole[:len(whole) // 3])
    webdataset_tar(data / "00001.tar", [{"txt": b"a nurse"}])
    manifest = run_scan(scan_config(tmp_path, [data]))
    assert [f["path"].rsplit("/", 1)[1] for f in manifest["failed"]] == ["00000.tar"]
    assert manifest["counts"]["shards_by_status"] == {"done": 1, "failed": 1}


def test_subset_with_a_group_and_its_errors(tmp_path):
    laion_parquet(tmp_path / "meta.parquet", ["a nurse", "nurses and men", "a doctor", "a black man nurse"])
    run_scan(scan_config(tmp_path, [tmp_path / "meta.parquet"]))
    db, out = str(tmp_path / "scan.duckdb"), str(tmp_path / "u.parquet")
    result = run_subset(SubsetConfig(db=db, word="nurse", group="male", out=out))
    assert (result["urls"], result["captions"]) == (2, 2)
    assert pl.read_parquet(out)["url"].str.extract(r"/(\d+)\.jpg$").to_list() == ["1", "3"]
    assert run_subset(SubsetConfig(db=db, word="nurse", group="race/black", out=out))["urls"] == 1
    with pytest.raises(InputError, match="did you mean nurse"):
        run_subset(SubsetConfig(db=db, word="nurze", out=out))
    with pytest.raises(InputError, match="several axes"):
        run_subset(SubsetConfig(db=db, word="nurse", group="indian", out=out))
    with pytest.raises(InputError, match="unknown group 'martian'"):
        run_subset(SubsetConfig(db=db, word="nurse", group="martian", out=out))
    laion_parquet(tmp_path / "meta.parquet", ["changed"])
    with pytest.raises(InputError, match="changed since it was scanned"):
        run_subset(SubsetConfig(db=db, word="nurse", out=out))
