"""One flat UTF-8 column of a parquet file, read page by page: the LAION metadata fast path.

pyarrow's reader spends most of a LAION metadata file's read in its snappy codec (26 of 35 ms
per 250,000 captions here); cramjam's snappy decompresses the same pages in 16 ms. This module
walks the column chunks itself: page headers (Thrift compact protocol), definition levels, and
PLAIN or dictionary-encoded values, into the Arrow ``large_string`` arrays pyarrow would give
(same values, same nulls).

``column_pages(parquet, path, name)`` reads every page header first and returns None for
anything it does not handle (nested or non-string columns, other codecs or encodings, headers it
cannot parse); the caller then reads the file with pyarrow, whose errors name what is wrong. So
a file is read by one reader or the other, never half by each. A page that does not decode
raises ``ValueError`` naming the file.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.captions.parquet_decode import copy_dictionary, copy_plain, plain_values, rle_hybrid
from engine.captions.parquet_thrift import read_struct

DICTIONARY_PAGE, DATA_PAGE, DATA_PAGE_V2 = 2, 0, 3  # parquet.thrift PageType
PLAIN, PLAIN_DICTIONARY, RLE, RLE_DICTIONARY = 0, 2, 3, 8  # parquet.thrift Encoding
CODECS = ("UNCOMPRESSED", "SNAPPY", "ZSTD")
VALUE_ENCODINGS = (PLAIN, PLAIN_DICTIONARY, RLE_DICTIONARY)
MAX_PAGE = 1 << 30  # larger pages are left to pyarrow


@dataclass(frozen=True)
class Page:
    kind: int  # DICTIONARY_PAGE, DATA_PAGE or DATA_PAGE_V2
    start: int  # file offset of the page's data (after its header)
    compressed_size: int
    uncompressed_size: int
    num_values: int  # levels (rows of a flat column), nulls included
    encoding: int
    levels_size: int = 0  # DATA_PAGE_V2: bytes of (uncompressed) levels before the values
    values_compressed: bool = True  # DATA_PAGE_V2's is_compressed


@dataclass(frozen=True)
class ColumnPages:
    path: str
    codec: str
    nullable: bool  # max definition level 1 (else 0)
    row_groups: list[list[Page]]  # each chunk's pages, its dictionary page first


def column_pages(parquet: pq.ParquetFile, path: str, name: str) -> ColumnPages | None:
    """The pages of column ``name`` in every row group, or None if this reader does not handle
    the column or one of its pages (pyarrow then reads the file)."""
    index = parquet.schema_arrow.get_field_index(name)
    if index < 0 or not pa.types.is_string(parquet.schema_arrow.field(index).type) \
            and not pa.types.is_large_string(parquet.schema_arrow.field(index).type):
        return None
    leaf = [i for i in range(len(parquet.schema)) if parquet.schema.column(i).path == name]
    if len(leaf) != 1:
        return None
    column = parquet.schema.column(leaf[0])
    if column.physical_type != "BYTE_ARRAY" or column.max_repetition_level != 0 \
            or column.max_definition_level > 1:
        return None
    codec, row_groups = None, []
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        for g in range(parquet.metadata.num_row_groups):
            chunk = parquet.metadata.row_group(g).column(leaf[0])
            if chunk.file_path or (codec or chunk.compression) != chunk.compression \
                    or chunk.compression not in CODECS:
                return None
            codec = chunk.compression
            try:
                pages = _chunk_pages(data, chunk)
            except (IndexError, ValueError, RecursionError):  # a header that does not parse
                pages = None
            if pages is None:
                return None
            row_groups.append(pages)
    return ColumnPages(path, codec or "UNCOMPRESSED", column.max_definition_level == 1, row_groups)


def _chunk_pages(data, chunk) -> list[Page] | None:
    start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
    if start is None or start < 4 or start + chunk.total_compressed_size > len(data):
        return None
    position, end = start, start + chunk.total_compressed_size
    pages, values = [], 0
    while position < end:
        header, position = read_struct(data, position)
        page = _page(header, position)
        if page is None or (page.kind == DICTIONARY_PAGE and pages):
            return None
        pages.append(page)
        values += page.num_values if page.kind != DICTIONARY_PAGE else 0
        position += page.compressed_size
    return pages if position == end and values == chunk.num_values else None


def _page(header: dict, start: int) -> Page | None:
    """The page a parsed header describes; None for a page kind, encoding or field this reader
    does not take (required fields missing, of another type or out of range)."""
    sizes = _fields(header, 1, 2, 3)
    if sizes is None or max(sizes[1:]) > MAX_PAGE:
        return None
    kind, uncompressed, compressed = sizes
    if kind == DICTIONARY_PAGE:
        fields = _fields(header.get(7), 1, 2)
        if fields is None or fields[1] not in (PLAIN, PLAIN_DICTIONARY):
            return None
        return Page(kind, start, compressed, uncompressed, fields[0], PLAIN)
    if kind == DATA_PAGE:
        fields = _fields(header.get(5), 1, 2, 3)
        if fields is None or fields[1] not in VALUE_ENCODINGS or fields[2] != RLE:
            return None
        return Page(kind, start, compressed, uncompressed, fields[0], fields[1])
    if kind == DATA_PAGE_V2:
        fields = _fields(header.get(8), 1, 2, 3, 4, 5, 6)
        compressed_values = header[8].get(7, True) if fields else None  # optional, default true
        if fields is None or fields[3] not in VALUE_ENCODINGS or fields[5] != 0 \
                or fields[2] != fields[0] or fields[4] > min(compressed, uncompressed) \
                or not isinstance(compressed_values, bool):
            return None
        return Page(kind, start, compressed, uncompressed, fields[0], fields[3], fields[4], compressed_values)
    return None  # index pages, or a page kind this reader does not know


def _fields(struct: dict | None, *ids: int) -> tuple[int, ...] | None:
    """The struct's fields ``ids`` if each is a non-negative integer, else None."""
    if not isinstance(struct, dict):
        return None
    values = tuple(struct.get(i) for i in ids)
    ok = all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values)
    return values if ok else None


# --- pages -> Arrow ---------------------------------------------------------------------------

def read_pages(pages: ColumnPages, batch_rows: int) -> Iterator[pa.Array]:
    """The column as ``large_string`` arrays of about ``batch_rows`` rows (whole pages)."""
    decompress = _decompressor(pages.codec)
    with open(pages.path, "rb") as handle:
        mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    data = np.frombuffer(mapping, np.uint8)
    scratch = np.empty(max((p.uncompressed_size for c in pages.row_groups for p in c), default=0), np.uint8)
    group, dictionary = -1, None
    for batch in _batches(pages.row_groups, batch_rows):
        out = _Batch([page for _, page in batch])
        for g, page in batch:
            if g != group:  # a new row group: its dictionary, if it has one
                group, dictionary = g, _dictionary(data, pages.row_groups[g][0], decompress, pages.path)
            out.add(_page_bytes(data, page, decompress, scratch, pages.path), page, pages.nullable,
                    dictionary, pages.path)
        _release(mapping, batch[0][1].start, batch[-1][1].start + batch[-1][1].compressed_size)
        yield out.array()


def _release(mapping: mmap.mmap, start: int, end: int) -> None:
    """Unmap pages already read from this process (they stay in the page cache), so its
    resident memory does not grow with the file (a LAION-2B metadata file is 1-2 GB)."""
    if hasattr(mmap, "MADV_DONTNEED"):
        start -= start % mmap.PAGESIZE
        mapping.madvise(mmap.MADV_DONTNEED, start, end - start)


def _batches(row_groups: list[list[Page]], batch_rows: int) -> Iterator[list[tuple[int, Page]]]:
    """(row group, data page) of consecutive pages of about ``batch_rows`` rows."""
    batch, rows = [], 0
    for g, chunk in enumerate(row_groups):
        for page in chunk:
            if page.kind == DICTIONARY_PAGE:
                continue
            batch.append((g, page))
            rows += page.num_values
            if rows >= batch_rows:
                yield batch
                batch, rows = [], 0
    if batch:
        yield batch


def _decompressor(codec: str):
    import cramjam

    def uncompressed(source, out):
        if len(source) == len(out):
            out[:] = source
        return len(source)
    return {"UNCOMPRESSED": uncompressed, "SNAPPY": cramjam.snappy.decompress_raw_into,
            "ZSTD": cramjam.zstd.decompress_into}[codec]


def _page_bytes(data: np.ndarray, page: Page, decompress, out: np.ndarray, path: str) -> np.ndarray:
    """A page's bytes after decompression into ``out`` (DATA_PAGE_V2: levels, then values)."""
    stored = data[page.start:page.start + page.compressed_size]
    if len(stored) != page.compressed_size:
        raise ValueError(f"{path}: a page runs past the end of the file")
    size, levels = page.uncompressed_size, page.levels_size
    out = out[:size]
    out[:levels] = stored[:levels]
    if page.kind == DATA_PAGE_V2 and not page.values_compressed:
        written = len(stored) - levels
        if written == size - levels:
            out[levels:] = stored[levels:]
    elif size > levels:
        try:
            written = decompress(stored[levels:], out[levels:])
        except Exception as exc:  # cramjam's DecompressionError, or a page larger than stated
            raise ValueError(f"{path}: a page does not decompress: {exc}") from exc
    else:
        written = 0
    if written != size - levels:
        raise ValueError(f"{path}: a page of {size - levels} bytes decompressed to {written}")
    return out


class _Batch:
    """Rows of consecutive pages gathered into one Arrow array: the bytes of each value copied
    once, from the decompressed page (or its dictionary) to their place in the array."""

    def __init__(self, pages: list[Page]):
        self.rows = sum(page.num_values for page in pages)
        self.offsets = np.zeros(self.rows + 1, np.int64)
        self.valid = np.ones(self.rows, np.bool_)
        self.out = np.empty(sum(page.uncompressed_size for page in pages), np.uint8)
        self.row = 0

    def add(self, raw, page: Page, nullable: bool, dictionary, path: str) -> None:
        valid = self.valid[self.row:self.row + page.num_values]
        position = _levels(raw, page, nullable, valid, path)
        used = self.offsets[self.row]
        if page.encoding == PLAIN:
            self._reserve(used + page.uncompressed_size)
            used = copy_plain(raw, position, valid, self.out, used, self.offsets[self.row:])
            if used < 0:
                raise ValueError(f"{path}: a PLAIN page ends inside its values")
        else:
            if dictionary is None:
                raise ValueError(f"{path}: a dictionary-encoded page without a dictionary")
            values, starts, lengths = dictionary
            indices = _dictionary_indices(raw, position, int(np.count_nonzero(valid)), path)
            if len(indices) and (indices.min() < 0 or indices.max() >= len(starts)):
                raise ValueError(f"{path}: a dictionary index out of range")
            self._reserve(used + int(lengths[indices].sum()))
            used = copy_dictionary(values, starts, lengths, indices, valid, self.out, used,
                                    self.offsets[self.row:])
        self.row += page.num_values

    def _reserve(self, size: int) -> None:
        if size > len(self.out):
            grown = np.empty(max(size, 2 * len(self.out)), np.uint8)
            grown[:len(self.out)] = self.out
            self.out = grown

    def array(self) -> pa.Array:
        nulls = self.rows - int(np.count_nonzero(self.valid))
        bitmap = pa.py_buffer(np.packbits(self.valid, bitorder="little")) if nulls else None
        data = pa.py_buffer(self.out[:self.offsets[-1]])
        return pa.Array.from_buffers(pa.large_string(), self.rows, [bitmap, pa.py_buffer(self.offsets), data], nulls)


def _levels(raw, page: Page, nullable: bool, valid: np.ndarray, path: str) -> int:
    """Fill ``valid`` (one flag per row) from the page's definition levels; return where the
    values start."""
    if not nullable:
        return page.levels_size
    if page.kind == DATA_PAGE_V2:
        start, size = 0, page.levels_size
        position = size
    else:
        if len(raw) < 4:
            raise ValueError(f"{path}: a page too short for its definition levels")
        size = int(raw[:4].view(np.uint32)[0])
        start, position = 4, 4 + size
    levels = valid.view(np.uint8)
    if position > len(raw) or rle_hybrid(raw, start, start + size, 1, levels) != len(valid) \
            or (len(levels) and levels.max() > 1):
        raise ValueError(f"{path}: malformed definition levels")
    return position


def _dictionary(data: np.ndarray, page: Page, decompress, path: str):
    """(page bytes, start and length of each of its PLAIN values) of a dictionary page; None
    for a row group without one."""
    if page.kind != DICTIONARY_PAGE:
        return None
    raw = _page_bytes(data, page, decompress, np.empty(page.uncompressed_size, np.uint8), path)
    starts, lengths, end = plain_values(raw, 0, page.num_values)
    if end < 0:
        raise ValueError(f"{path}: a dictionary page ends inside its values")
    return raw, starts, lengths


def _dictionary_indices(raw, position: int, n: int, path: str) -> np.ndarray:
    indices = np.empty(n, np.int32)
    if n == 0:
        return indices
    if position >= len(raw) or raw[position] > 32:
        raise ValueError(f"{path}: malformed dictionary indices")
    if rle_hybrid(raw, position + 1, len(raw), int(raw[position]), indices.view(np.uint32)) != n:
        raise ValueError(f"{path}: fewer dictionary indices than values")
    return indices
