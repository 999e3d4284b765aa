"""engine.captions.parquet_pages, the page-by-page reader of one parquet string column, against
pyarrow's reader of the same file: values, nulls, row counts and batch boundaries over a matrix
of writer settings, the fallback (None) for what it does not handle, the wiring through
engine.captions.shards.read_batches (keys aligned with captions), corrupted and truncated files,
and the real LAION sample.

Files are written here by pyarrow (and by polars and DuckDB, independent writers) from captions
drawn with a seeded RNG: lengths 0..300, empty strings, nulls, accented, CJK and 4-byte emoji
characters, values repeated so that dictionaries are used, and some values of about 100 KB.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from functools import cache
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import shared_path
from engine.captions.parquet_pages import (DICTIONARY_PAGE, PLAIN, PLAIN_DICTIONARY, RLE_DICTIONARY,
                                           column_pages, read_pages)
from engine.captions.shards import ReadStats, discover, read_batches

CHARS = list("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 ,.;:!?'\"-()/&%")
CHARS += list("àéîõüßçñøåæœÅΩπΣжЖщ") + list("日本語の写真キャプション中文字") + ["🐱", "🎉", "😀", "🌍", "💡", "𝄞"]
CHARS = np.array(CHARS)
UNCODED = ("none", "snappy", "zstd")  # codecs the page reader decompresses itself
OTHER_CODECS = ("gzip", "brotli", "lz4")  # left to pyarrow
BATCH_ROWS = (1, 7, 100, 1000, 1 << 18)  # 100: several pages per batch, several batches per row group
SMALL_PAGES = {"data_page_size": 4096, "write_batch_size": 16, "max_rows_per_page": 200,
               "row_group_size": 1000}  # many pages of varying sizes, whatever the encoding
DICTIONARY = {"plain": {"use_dictionary": False},
              "dictionary": {"use_dictionary": True},
              "fallback": {"use_dictionary": True, "dictionary_pagesize_limit": 4096}}


# --- data --------------------------------------------------------------------------------------

def text(rng: np.random.Generator, length: int) -> str:
    return "".join(CHARS[rng.integers(0, len(CHARS), length)]) if length else ""


def long_text(rng: np.random.Generator, size: int = 100_000) -> str:
    """A caption of at least ``size`` UTF-8 bytes."""
    value = text(rng, size // 2)
    while len(value.encode()) < size:
        value += text(rng, 1000)
    return value


def captions(seed: int, n: int, nulls: float = 0.08, long_values: int = 0) -> list[str | None]:
    """``n`` captions: some null, some empty, 40% drawn from a pool of 60 (so dictionaries pay),
    the others random of 0..300 characters; ``long_values`` of them about 100 KB."""
    return list(_captions(seed, n, nulls, long_values))


@cache
def _captions(seed: int, n: int, nulls: float, long_values: int) -> tuple[str | None, ...]:
    rng = np.random.default_rng(seed)
    pool = [text(rng, int(rng.integers(0, 120))) for _ in range(60)]
    out: list[str | None] = []
    for _ in range(n):
        draw = rng.random()
        if draw < nulls:
            out.append(None)
        elif draw < nulls + 0.05:
            out.append("")
        elif draw < nulls + 0.45:
            out.append(pool[int(rng.integers(len(pool)))])
        else:
            out.append(text(rng, int(rng.integers(0, 301))))
    for i in rng.choice(n, long_values, replace=False):
        out[int(i)] = long_text(rng)
    return tuple(out)


def write(path: Path, values, *, kind=pa.string(), nullable: bool = True, **options) -> Path:
    """A parquet with a URL column, then TEXT (so the caption is not the first column)."""
    schema = pa.schema([pa.field("URL", pa.string()), pa.field("TEXT", kind, nullable=nullable)])
    urls = [f"http://example.invalid/{i}.jpg" for i in range(len(values))]
    pq.write_table(pa.table([urls, pa.array(values, kind)], schema=schema), path, **options)
    return path


# --- readers -----------------------------------------------------------------------------------

def pages_of(path: Path, column: str = "TEXT"):
    return column_pages(pq.ParquetFile(path), str(path), column)


def fast(path: Path, batch_rows: int = 1000, column: str = "TEXT") -> list[pa.Array]:
    pages = pages_of(path, column)
    assert pages is not None, f"column_pages fell back to pyarrow on {path.name}"
    return list(read_pages(pages, batch_rows))


def oracle(path: Path, column: str = "TEXT") -> pa.Array:
    return pq.read_table(path, columns=[column])[column].combine_chunks()


def joined(batches: list[pa.Array]) -> pa.Array:
    return pa.concat_arrays(batches) if batches else pa.array([], pa.large_string())


def assert_same(got: pa.Array, expected: pa.Array) -> None:
    """Same length, null positions and values (checked row by row, for a short message)."""
    assert len(got) == len(expected), (len(got), len(expected))
    got.validate(full=True)
    got_nulls, expected_nulls = got.is_null().to_pylist(), expected.is_null().to_pylist()
    if got_nulls != expected_nulls:
        row = next(i for i, (a, b) in enumerate(zip(got_nulls, expected_nulls)) if a != b)
        pytest.fail(f"null positions differ first at row {row}: got null={got_nulls[row]}")
    for row, (a, b) in enumerate(zip(got.to_pylist(), expected.to_pylist())):
        if a != b:
            pytest.fail(f"row {row} differs: got {a!r:.80} ({len(a or '')} chars), "
                        f"pyarrow {b!r:.80} ({len(b or '')} chars)")
    assert got.cast(pa.string()).equals(expected.cast(pa.string()))


def assert_reads_like_pyarrow(path: Path, batch_rows: int = 1000) -> list[pa.Array]:
    batches = fast(path, batch_rows)
    assert all(b.type == pa.large_string() for b in batches)
    assert_same(joined(batches), oracle(path))
    assert sum(map(len, batches)) == pq.ParquetFile(path).metadata.num_rows
    return batches


def data_page_rows(path: Path) -> list[list[int]]:
    """Rows of each data page, per row group, as column_pages found them; each row group's
    total is checked against the file's metadata."""
    pages = pages_of(path)
    rows = [[p.num_values for p in chunk if p.kind != DICTIONARY_PAGE] for chunk in pages.row_groups]
    metadata = pq.ParquetFile(path).metadata
    assert [sum(r) for r in rows] == [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]
    return rows


def assert_whole_pages(batches: list[pa.Array], page_rows: list[list[int]], batch_rows: int) -> None:
    """Every batch ends on a page boundary, takes pages only until it has ``batch_rows`` rows
    (across row groups), and is shorter than that only where the file ends."""
    pages = [rows for group in page_rows for rows in group]
    page_ends = set(np.cumsum(pages).tolist())
    first_row_of_page = {end - rows: rows for end, rows in zip(np.cumsum(pages).tolist(), pages)}
    start = 0
    for i, batch in enumerate(batches):
        end = start + len(batch)
        assert len(batch) > 0 and end in page_ends, f"batch {i} (rows {start}..{end}) splits a page"
        if len(batch) < batch_rows:
            assert end == sum(pages), f"batch {i} has {len(batch)} < {batch_rows} rows before the end"
        taken, row = 0, start
        while row < end:  # rows before the batch's last page stay under batch_rows
            rows = first_row_of_page[row]
            if row + rows < end:
                taken += rows
                assert taken < batch_rows, f"batch {i} kept taking pages past {batch_rows} rows"
            row += rows
        start = end
    assert start == sum(pages)


def via_shards(path: Path, batch_rows: int = 1000) -> tuple[list, ReadStats]:
    sources, ignored = discover([str(path)])
    assert ignored == [] and len(sources) == 1
    stats = ReadStats()
    return list(read_batches(sources[0], stats, batch_rows)), stats


def as_bytes(values) -> list[bytes | None]:
    """Values as bytes (no UTF-8 check, so a corrupted page's bytes compare too)."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        binary = pa.large_binary() if pa.types.is_large_string(values.type) else pa.binary()
        return values.view(binary).to_pylist()
    return [None if v is None else v.encode() for v in values]


# --- the matrix of writer settings ---------------------------------------------------------------

@pytest.mark.parametrize("version", ["1.0", "2.0"])
@pytest.mark.parametrize("dictionary", list(DICTIONARY))
@pytest.mark.parametrize("compression", UNCODED)
def test_pages_read_like_pyarrow(tmp_path, compression, dictionary, version):
    path = write(tmp_path / "t.parquet", captions(1, 3000), compression=compression,
                 data_page_version=version, **DICTIONARY[dictionary], **SMALL_PAGES)
    pages = pages_of(path)
    assert pages is not None and pages.codec == ("UNCOMPRESSED" if compression == "none" else compression.upper())
    assert len(pages.row_groups) == 3 and all(len(chunk) > 5 for chunk in pages.row_groups)
    encodings = {p.encoding for chunk in pages.row_groups for p in chunk if p.kind != DICTIONARY_PAGE}
    has_dictionary = [chunk[0].kind == DICTIONARY_PAGE for chunk in pages.row_groups]
    if dictionary == "plain":
        assert encodings == {PLAIN} and not any(has_dictionary)
    elif dictionary == "dictionary":
        assert encodings <= {PLAIN_DICTIONARY, RLE_DICTIONARY} and all(has_dictionary)
    else:  # the writer gave up on the dictionary mid-chunk: dictionary pages, then PLAIN ones
        assert PLAIN in encodings and encodings - {PLAIN} and all(has_dictionary)
    page_rows = data_page_rows(path)
    for batch_rows in BATCH_ROWS:
        batches = assert_reads_like_pyarrow(path, batch_rows)
        assert_whole_pages(batches, page_rows, batch_rows)


@pytest.mark.parametrize("version", ["1.0", "2.0"])
@pytest.mark.parametrize("use_dictionary", [True, False])
@pytest.mark.parametrize("nulls", ["none", "some", "most", "all"])
def test_nulls_are_where_pyarrow_puts_them(tmp_path, nulls, use_dictionary, version):
    values = captions(2, 2500, nulls={"none": 0.0, "some": 0.2, "most": 0.95, "all": 1.0}[nulls])
    path = write(tmp_path / "t.parquet", values, compression="snappy", use_dictionary=use_dictionary,
                 data_page_version=version, **SMALL_PAGES)
    assert pages_of(path).nullable
    for batch_rows in (7, 1 << 18):
        got = joined(assert_reads_like_pyarrow(path, batch_rows))
        assert got.null_count == sum(v is None for v in values)


@pytest.mark.parametrize("version", ["1.0", "2.0"])
@pytest.mark.parametrize("use_dictionary", [True, False])
@pytest.mark.parametrize("compression", UNCODED)
def test_a_required_field_has_no_definition_levels(tmp_path, compression, use_dictionary, version):
    path = write(tmp_path / "t.parquet", captions(3, 2500, nulls=0.0), nullable=False,
                 compression=compression, use_dictionary=use_dictionary, data_page_version=version,
                 **SMALL_PAGES)
    assert pq.ParquetFile(path).schema.column(1).max_definition_level == 0
    assert not pages_of(path).nullable
    for batch_rows in (1, 1000):
        assert joined(assert_reads_like_pyarrow(path, batch_rows)).null_count == 0


@pytest.mark.parametrize("version", ["1.0", "2.0"])
@pytest.mark.parametrize("use_dictionary", [True, False])
@pytest.mark.parametrize("compression", UNCODED)
def test_values_of_100_kb(tmp_path, compression, use_dictionary, version):
    """Values far larger than a page (PLAIN: pages of one value, written one row at a time); 12
    of them per row group overflow the 1 MB dictionary page limit: the writer falls back to PLAIN."""
    values = captions(4, 900, long_values=24)
    assert max(len((v or "").encode()) for v in values) >= 100_000
    path = write(tmp_path / "t.parquet", values, compression=compression, data_page_version=version,
                 use_dictionary=use_dictionary, data_page_size=1024, write_batch_size=1, row_group_size=450)
    page_rows = data_page_rows(path)
    if use_dictionary:
        for chunk in pages_of(path).row_groups:
            assert chunk[0].kind == DICTIONARY_PAGE and {p.encoding for p in chunk[1:]} - {PLAIN}
            assert chunk[-1].encoding == PLAIN
    else:
        assert 1 in {rows for group in page_rows for rows in group}
    for batch_rows in (1, 7, 1 << 18):
        assert_whole_pages(assert_reads_like_pyarrow(path, batch_rows), page_rows, batch_rows)


@pytest.mark.parametrize("version", ["1.0", "2.0"])
@pytest.mark.parametrize("use_dictionary", [True, False])
@pytest.mark.parametrize("batch_rows", BATCH_ROWS)
def test_batches_are_whole_pages_in_order(tmp_path, batch_rows, use_dictionary, version):
    """Pages of exactly 37 rows (the writer's row limit), row groups of 500: the page sizes are
    known without reading the file back."""
    n, group, per_page = 1234, 500, 37
    path = write(tmp_path / "t.parquet", captions(5, n), use_dictionary=use_dictionary,
                 data_page_version=version, row_group_size=group, max_rows_per_page=per_page,
                 data_page_size=1 << 20)
    groups = [min(group, n - start) for start in range(0, n, group)]
    expected_pages = [[per_page] * (g // per_page) + ([g % per_page] if g % per_page else []) for g in groups]
    assert data_page_rows(path) == expected_pages
    batches = assert_reads_like_pyarrow(path, batch_rows)
    assert_whole_pages(batches, expected_pages, batch_rows)
    if batch_rows == 1:
        assert [len(b) for b in batches] == [rows for g in expected_pages for rows in g]


@pytest.mark.parametrize("options", [
    {"write_page_checksum": True, "write_page_index": True},
    {"write_statistics": False},
    {"store_schema": False},
    {"compression": "zstd", "compression_level": 19, "data_page_version": "2.0"},
    {"use_dictionary": True, "dictionary_pagesize_limit": 1 << 20},
], ids=["checksum+page-index", "no-statistics", "no-arrow-schema", "zstd-19-v2", "big-dictionary"])
def test_header_fields_the_reader_skips(tmp_path, options):
    path = write(tmp_path / "t.parquet", captions(6, 3000), data_page_size=2048, write_batch_size=64,
                 row_group_size=1000, **options)
    assert_reads_like_pyarrow(path, 100)


def test_one_value_everywhere_and_a_dictionary_of_70000(tmp_path):
    """A dictionary of one value, and one of 70,000 (indices 17 bits wide)."""
    same = write(tmp_path / "same.parquet", ["the same caption 🐱"] * 5000, **SMALL_PAGES)
    assert_reads_like_pyarrow(same, 7)
    many = [f"caption {i} 🐱" for i in np.random.default_rng(7).permutation(70_000)] * 2
    wide = write(tmp_path / "wide.parquet", many, row_group_size=len(many),
                 dictionary_pagesize_limit=16 << 20)
    pages = pages_of(wide)
    assert pages.row_groups[0][0].kind == DICTIONARY_PAGE and pages.row_groups[0][0].num_values == 70_000
    assert_reads_like_pyarrow(wide, 1 << 18)


def test_large_string_column(tmp_path):
    path = write(tmp_path / "t.parquet", captions(8, 3000), kind=pa.large_string(), **SMALL_PAGES)
    assert pq.ParquetFile(path).schema_arrow.field("TEXT").type == pa.large_string()
    assert_reads_like_pyarrow(path, 1000)


@pytest.mark.parametrize("compression", ["snappy", "zstd", "uncompressed"])
def test_files_written_by_polars_and_duckdb(tmp_path, compression):
    values = captions(9, 3000)
    frame = pl.DataFrame({"URL": [str(i) for i in range(len(values))], "TEXT": values})
    polars_file = tmp_path / "polars.parquet"
    frame.write_parquet(polars_file, compression=compression, row_group_size=1000, data_page_size=2048,
                        statistics=True)
    assert_reads_like_pyarrow(polars_file, 100)
    few = pl.DataFrame({"TEXT": [values[i % 30] for i in range(len(values))]})  # dictionary-encoded
    for name, source in (("duckdb.parquet", frame), ("duckdb-few.parquet", few)):
        duckdb_file = tmp_path / name
        with duckdb.connect() as con:
            con.register("source", source.to_arrow())
            con.execute(f"COPY (SELECT * FROM source) TO '{duckdb_file}' "
                        f"(FORMAT parquet, COMPRESSION {compression}, ROW_GROUP_SIZE 1024)")
        assert_reads_like_pyarrow(duckdb_file, 100)


# --- not handled: None, and read_batches falls back to pyarrow -----------------------------------

def assert_shards_read_like_pyarrow(path: Path, batch_rows: int = 500) -> None:
    batches, stats = via_shards(path, batch_rows)
    expected = oracle(path)
    assert_same(pa.concat_arrays([b.captions.cast(pa.large_string()) for b in batches]), expected)
    rows = pa.concat_arrays([b.rows for b in batches]).to_pylist()
    assert rows == list(range(len(expected)))
    assert stats.rows_total == stats.rows == len(expected)


@pytest.mark.parametrize("compression", OTHER_CODECS)
def test_other_codecs_are_left_to_pyarrow(tmp_path, compression):
    path = write(tmp_path / "t.parquet", captions(10, 3000), compression=compression, **SMALL_PAGES)
    assert pages_of(path) is None
    assert_shards_read_like_pyarrow(path)


@pytest.mark.parametrize("encoding", ["DELTA_BYTE_ARRAY", "DELTA_LENGTH_BYTE_ARRAY"])
@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_delta_encodings_are_left_to_pyarrow(tmp_path, encoding, version):
    path = write(tmp_path / "t.parquet", captions(11, 3000), use_dictionary=False,
                 column_encoding={"TEXT": encoding}, data_page_version=version, **SMALL_PAGES)
    assert pages_of(path) is None
    assert_shards_read_like_pyarrow(path)


def test_columns_that_are_not_flat_strings_are_left_to_pyarrow(tmp_path):
    values = captions(12, 500)
    table = pa.table({
        "binary": pa.array([None if v is None else v.encode() for v in values], pa.binary()),
        "category": pa.array(values).dictionary_encode(),
        "nested": pa.array([{"TEXT": v, "n": i} for i, v in enumerate(values)],
                           pa.struct([("TEXT", pa.string()), ("n", pa.int64())])),
        "tags": pa.array([None if v is None else v.split(" ") for v in values], pa.list_(pa.string())),
        "count": pa.array(range(len(values)), pa.int64()),
        "TEXT": pa.array(values),
    })
    path = tmp_path / "t.parquet"
    pq.write_table(table, path)
    for column in ("binary", "category", "nested", "tags", "count", "absent"):
        assert pages_of(path, column) is None, column
    # the flat string column after the nested ones: its leaf, not its field index, is read
    assert_reads_like_pyarrow(path, 100)
    category = tmp_path / "category.parquet"
    pq.write_table(pa.table({"TEXT": pa.array(values).dictionary_encode()}), category)
    assert pq.read_schema(category).field("TEXT").type == pa.dictionary(pa.int32(), pa.string())
    assert pages_of(category) is None
    assert_shards_read_like_pyarrow(category)


@pytest.mark.parametrize("row_groups", [0, 1])
def test_a_file_without_rows(tmp_path, row_groups):
    path = tmp_path / "empty.parquet"
    schema = pa.schema([("URL", pa.string()), ("TEXT", pa.string()), ("SAMPLE_ID", pa.int64())])
    with pq.ParquetWriter(path, schema) as writer:
        if row_groups:
            writer.write_table(schema.empty_table())
    assert pq.ParquetFile(path).metadata.num_row_groups == row_groups
    pages = pages_of(path)
    assert pages is not None
    assert sum(map(len, read_pages(pages, 7))) == 0
    batches, stats = via_shards(path)
    assert sum(len(b.rows) for b in batches) == 0 and stats.rows_total == stats.rows == 0


# --- through engine.captions.shards.read_batches ---------------------------------------------------

@pytest.mark.parametrize("batch_rows", BATCH_ROWS)
@pytest.mark.parametrize("key", ["SAMPLE_ID", "key"])
@pytest.mark.parametrize("compression", ["snappy", "gzip"])
def test_read_batches_keeps_keys_with_their_captions(tmp_path, compression, key, batch_rows):
    """Keys (read by pyarrow in its own batches) sliced to the page-aligned caption batches:
    row by row, (row, key, caption) is pyarrow's."""
    n = 2345
    values = captions(13, n)
    rng = np.random.default_rng(13)
    keys = rng.permutation(10 * n)[:n].astype(np.int64)
    table = pa.table({"URL": [f"http://example.invalid/{i}" for i in range(n)], "TEXT": values,
                      key: pa.array(keys) if key == "SAMPLE_ID" else pa.array([f"{k:09d}" for k in keys])})
    path = tmp_path / "laion.parquet"
    pq.write_table(table, path, compression=compression, data_page_size=2048, write_batch_size=64,
                   row_group_size=1000)
    assert (pages_of(path) is not None) == (compression == "snappy")
    batches, stats = via_shards(path, batch_rows)
    expected = pq.read_table(path, columns=["TEXT", key])
    expected_rows = list(zip(range(n), expected[key].cast(pa.string()).to_pylist(), expected["TEXT"].to_pylist()))
    got_rows = []
    for batch in batches:
        assert len(batch.rows) == len(batch.keys) == len(batch.captions) > 0
        got_rows += zip(batch.rows.to_pylist(), batch.keys.to_pylist(), batch.captions.to_pylist())
    assert len(got_rows) == n
    for got, want in zip(got_rows, expected_rows):
        assert got == want, f"row {want[0]}: got {got!r:.120}, pyarrow {want!r:.120}"
    assert stats.rows_total == stats.rows == n and stats.caption_column == "TEXT"
    if compression == "snappy":
        assert_whole_pages([b.captions for b in batches], data_page_rows(path), batch_rows)


def test_img2dataset_parquet_still_excludes_failed_rows(tmp_path):
    n = 1500
    values = captions(14, n)
    rng = np.random.default_rng(14)
    status = rng.choice(["success", "success", "success", "failed_to_download", "failed_to_resize"], n).tolist()
    status[5] = None
    table = pa.table({"key": [f"{i:09d}" for i in range(n)], "caption": values, "status": status,
                      "url": [f"http://example.invalid/{i}" for i in range(n)]})
    path = tmp_path / "00000.parquet"
    pq.write_table(table, path, data_page_size=2048, write_batch_size=64, row_group_size=500)
    sources, _ = discover([str(path)])
    assert sources[0].kind == "img2dataset"
    batches, stats = via_shards(path, 400)
    success = [i for i, s in enumerate(status) if s == "success"]
    assert pa.concat_arrays([b.rows for b in batches]).to_pylist() == success
    assert sum((b.keys.to_pylist() for b in batches), []) == [f"{i:09d}" for i in success]
    assert sum((b.captions.to_pylist() for b in batches), []) == [values[i] for i in success]
    assert (stats.rows_total, stats.rows) == (n, len(success))
    assert sum(stats.excluded.values()) == n - len(success)
    failed = Counter(s for s in status if s not in (None, "success"))
    assert {k: stats.excluded[k] for k in failed} == dict(failed)


# --- corrupted and truncated files ------------------------------------------------------------------

def corruptible(path: Path, use_dictionary: bool, version: str) -> tuple[list, int, int, int]:
    """A valid snappy LAION-like file; (its captions, start of the caption chunk of row group
    0, start of its data pages, end of the chunk)."""
    values = captions(15, 3000)
    table = pa.table({"URL": [f"http://example.invalid/{i}" for i in range(len(values))], "TEXT": values,
                      "SAMPLE_ID": pa.array(range(len(values)), pa.int64())})
    pq.write_table(table, path, compression="snappy", use_dictionary=use_dictionary,
                   data_page_version=version, data_page_size=2048, write_batch_size=64, row_group_size=2000)
    chunk = pq.ParquetFile(path).metadata.row_group(0).column(1)
    assert chunk.path_in_schema == "TEXT"
    start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
    return values, start, chunk.data_page_offset, start + chunk.total_compressed_size


def outcome(read) -> tuple[str, object]:
    try:
        return "ok", read()
    except Exception as error:  # any exception is an acceptable refusal
        return "error", error


def read_fast(path: Path) -> list[bytes | None]:
    batches, _ = via_shards(path, 500)
    return as_bytes(pa.concat_arrays([b.captions.cast(pa.large_string()) for b in batches]))


def other_readers(path: Path) -> list[list[bytes | None]]:
    """What polars and DuckDB (readers independent of pyarrow) make of the file, if they can."""
    readings = []
    status, values = outcome(lambda: pl.read_parquet(path, columns=["TEXT"])["TEXT"].to_list())
    if status == "ok":
        readings.append(as_bytes(values))
    status, rows = outcome(lambda: duckdb.sql(f"SELECT TEXT FROM read_parquet('{path}')").fetchall())
    if status == "ok":
        readings.append(as_bytes([row[0] for row in rows]))
    return readings


def check_corrupted(path: Path, original: list) -> tuple[bool, str | None]:
    """(whether the reader raised, what went wrong or None). Raising is always acceptable;
    returned values must be pyarrow's. Where pyarrow itself refuses the file, returned values are
    accepted only if they are the file's original captions or what polars or DuckDB read."""
    fast_status, got = outcome(lambda: read_fast(path))
    if fast_status == "error":
        return True, None
    arrow_status, expected = outcome(lambda: as_bytes(oracle(path)))
    if arrow_status == "ok":
        if got == expected:
            return False, None
        rows = [i for i, (a, b) in enumerate(zip(got, expected)) if a != b]
        return False, (f"{len(rows)} rows differ from pyarrow's (first {rows[:5]}), "
                       f"{len(got)} rows vs pyarrow's {len(expected)}")
    if got == as_bytes(original) or any(got == reading for reading in other_readers(path)):
        return False, None
    return False, f"pyarrow raises {expected!r:.160} but the reader returned {len(got)} rows"


@pytest.mark.parametrize("version", ["1.0", "2.0"])
@pytest.mark.parametrize(("region", "use_dictionary"), [("data pages", True), ("data pages", False),
                                                        ("dictionary page", True)])
def test_corrupted_pages_raise_or_read_like_pyarrow(tmp_path, region, use_dictionary, version):
    """1 to 3 random bytes overwritten inside the caption column's pages of a snappy file, 60
    times: reading raises, or gives exactly pyarrow's values, never other values silently."""
    good = tmp_path / "good.parquet"
    original, start, data_start, end = corruptible(good, use_dictionary, version)
    low, high = (data_start, end) if region == "data pages" else (start, data_start)
    assert high - low > 1000
    content = good.read_bytes()
    rng = np.random.default_rng([16, int(use_dictionary), int(version[0]), low])
    bad, failures, refused = tmp_path / "bad.parquet", [], 0
    for trial in range(60):
        corrupted = bytearray(content)
        for position in rng.integers(low, high, int(rng.integers(1, 4))):
            corrupted[int(position)] = int(rng.integers(256))
        bad.write_bytes(bytes(corrupted))
        raised, problem = check_corrupted(bad, original)
        refused += raised
        if problem:
            changed = [(i, content[i], corrupted[i]) for i in range(low, high) if content[i] != corrupted[i]]
            failures.append(f"trial {trial}, bytes (offset, was, now) {changed}: {problem}")
    assert not failures, "\n".join(failures)
    assert refused > 0  # the corruption did reach what the reader decodes


@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_a_definition_level_out_of_range_is_refused(tmp_path, version):
    """100 non-null rows, uncompressed PLAIN: the definition levels are one RLE run of 100 times
    level 1 (bytes C8 01 01). Level 2 or 255 does not exist in a flat column, and a run of 50
    leaves rows without a level; pyarrow refuses all three, so must this reader."""
    path = tmp_path / "levels.parquet"
    pq.write_table(pa.table({"TEXT": ["abc"] * 100}), path, compression="none", use_dictionary=False,
                   data_page_version=version, write_statistics=False)
    assert fast(path) and oracle(path).to_pylist() == ["abc"] * 100
    content = bytearray(path.read_bytes())
    offset = pq.ParquetFile(path).metadata.row_group(0).column(0).data_page_offset
    run = content.index(b"\xc8\x01\x01", offset)
    for replacement in (b"\xc8\x01\x02", b"\xc8\x01\xff", b"\x64\x01\x01"):
        content[run:run + 3] = replacement
        path.write_bytes(bytes(content))
        with pytest.raises(Exception):
            oracle(path)
        with pytest.raises(Exception):
            read_fast(path)



def test_a_page_that_does_not_decompress_fails_naming_the_file(tmp_path):
    """A snappy page whose bytes are overwritten: the error is a ValueError with the file's path
    (the scan records it as the file's error), not cramjam's bare exception."""
    path = write(tmp_path / "broken.parquet", captions(9, 2000), compression="snappy", use_dictionary=False)
    pages = pages_of(path)
    page = next(p for p in pages.row_groups[0] if p.kind != DICTIONARY_PAGE)
    content = bytearray(path.read_bytes())
    content[page.start:page.start + 16] = b"\xff" * 16  # snappy's length header, then literals
    path.write_bytes(bytes(content))
    with pytest.raises(ValueError, match="broken.parquet"):
        list(read_pages(pages, 1000))

READ_IN_CHILD = """
import sys
import pyarrow.parquet as pq
from engine.captions.parquet_pages import column_pages, read_pages
path = sys.argv[1]
try:
    pages = column_pages(pq.ParquetFile(path), path, "TEXT")
    print("fallback" if pages is None else f"returned {sum(map(len, read_pages(pages, 1000)))} rows")
except Exception as error:
    print("raised", type(error).__name__, error)
"""


def read_in_child(path: Path, timeout: float = 10) -> str:
    """column_pages + read_pages in a child process: a hang or a crash there fails the test
    instead of taking pytest down."""
    repo = Path(__file__).resolve().parents[1]
    try:
        child = subprocess.run([sys.executable, "-c", READ_IN_CHILD, str(path)], cwd=repo, capture_output=True,
                               text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": str(repo)})
    except subprocess.TimeoutExpired:
        child = None
    if child is None:
        pytest.fail(f"reading {path.name} did not finish in {timeout} s")
    assert child.returncode == 0, (f"the reader crashed (killed by signal {-child.returncode})" if child.returncode < 0
                                   else f"the reader failed (exit {child.returncode}): {child.stderr[-500:]}")
    return child.stdout.strip()


@pytest.mark.parametrize("bit_width", [0, 32])
def test_a_bit_packed_run_of_2_to_the_59_groups_is_refused(tmp_path, bit_width):
    """A dictionary-encoded page (uncompressed, required column, 100 distinct values: indices 7
    bits wide, first run bit-packed with 63 groups) whose bit width byte becomes 0 or 32 and
    whose first run header becomes a bit-packed run of 2**59 groups (a 9-byte varint, the bytes
    that follow still in the page). pyarrow refuses the page; this reader must raise (or leave
    the file to pyarrow), in bounded time and without reading past the page."""
    path = tmp_path / "indices.parquet"
    schema = pa.schema([pa.field("TEXT", pa.string(), nullable=False)])
    pq.write_table(pa.table([[f"value {i % 100}" for i in range(1000)]], schema=schema), path,
                   compression="none", write_statistics=False)
    assert read_in_child(path) == "returned 1000 rows"
    content = bytearray(path.read_bytes())
    first_eight = np.packbits([(v >> b) & 1 for v in range(8) for b in range(7)], bitorder="little")
    body = content.index(b"\x07\x7f" + first_eight.tobytes(),
                         pq.ParquetFile(path).metadata.row_group(0).column(0).data_page_offset)
    header, varint = (1 << 60) | 1, bytearray()
    while header >= 0x80:
        varint.append(header & 0x7F | 0x80)
        header >>= 7
    varint.append(header)
    content[body:body + 1 + len(varint)] = bytes([bit_width]) + varint
    path.write_bytes(bytes(content))
    with pytest.raises(Exception):
        oracle(path)
    result = read_in_child(path)
    assert result.startswith(("raised", "fallback")), result


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.6, 0.9, 0.999])
def test_a_truncated_file_raises(tmp_path, fraction):
    good = tmp_path / "good.parquet"
    corruptible(good, True, "1.0")
    content = good.read_bytes()
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(content[:int(len(content) * fraction)])
    with pytest.raises(Exception):
        read_fast(cut)


@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_a_file_truncated_after_its_pages_were_listed_raises(tmp_path, version):
    """The footer was read, then the file lost its tail: the listed pages run past its end."""
    path = tmp_path / "t.parquet"
    write(path, captions(17, 3000), compression="snappy", data_page_version=version, **SMALL_PAGES)
    parquet = pq.ParquetFile(path)
    pages = column_pages(parquet, str(path), "TEXT")
    last = pages.row_groups[-1][-1]
    for size in (last.start + last.compressed_size - 1, last.start, pages.row_groups[0][-1].start + 3):
        with open(path, "r+b") as handle:
            handle.truncate(size)
        with pytest.raises(Exception):
            list(read_pages(pages, 1000))
        status, listed = outcome(lambda: column_pages(parquet, str(path), "TEXT"))
        assert status == "error" or listed is None, "pages listed past the end of the file"


# --- the real LAION sample ----------------------------------------------------------------------

def test_the_real_laion_sample_reads_like_pyarrow():
    sample = shared_path("data", "laion-sample", "laion400m_sample_10k.parquet")
    for batch_rows in (1000, 1 << 18):
        batches = assert_reads_like_pyarrow(sample, batch_rows)
        assert sum(map(len, batches)) == 10_000
    batches, stats = via_shards(sample)
    assert pa.concat_arrays([b.rows for b in batches]).to_pylist() == list(range(10_000))
    assert sum((b.captions.to_pylist() for b in batches), []) == oracle(sample).to_pylist()
    assert stats.rows_total == stats.rows == 10_000 and stats.caption_column == "TEXT"
