"""Caption sources: find the files behind paths and globs, and read each as batches of captions.

Kinds (``Source.kind``), chosen by file name and, for parquet, by its schema:

- ``webdataset``: a ``.tar`` as img2dataset writes it. Samples are consecutive members
  ``<key>.<ext>``; the caption is the ``.txt`` member, else the ``caption`` field of the ``.json``
  member. Images are never read, decoded or extracted; nothing is unpickled. A sample without a
  readable caption is skipped and counted with its reason.
- ``img2dataset``: the per-shard ``NNNNN.parquet`` img2dataset writes beside ``NNNNN.tar``
  (columns include ``key``, ``caption``, ``status``). It is read instead of its tar (100x
  smaller); only ``status == "success"`` rows are images the model could have seen, the others
  are counted by status.
- ``parquet``: LAION metadata (``URL``/``TEXT``, or ``url``/``caption``), columns found by name
  case-insensitively; ``SAMPLE_ID`` or ``key`` is the row key when present. Parquet is read a
  batch at a time (bounded memory), only the columns needed; a LAION caption column through
  engine.captions.parquet_pages (a third faster than pyarrow's reader), anything that reader
  does not handle through pyarrow.
- ``text``: one caption per line (UTF-8; blank lines are skipped). Invalid UTF-8 fails the file.

Every reader yields ``CaptionBatch``es (row numbers within the file, keys, captions) and fills a
``ReadStats``. URLs are not read here: they are read back only for the rows a subset asks for
(engine.captions.subset), which keeps the scan to the caption column.
"""

from __future__ import annotations

import glob
import os
import tarfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.captions.webdataset import check_tar_end, sample_caption, tar_samples
from engine.errors import InputError

BATCH_ROWS = 1 << 18  # captions per batch (about 16 MB of LAION text): a 250,000-row LAION file in one
# batch maps 4% faster than in batches of 65,536 (measured, benchmarks/README.md)
SUFFIX_KINDS = {".tar": "webdataset", ".parquet": "parquet", ".txt": "text"}
CAPTION_NAMES = ("caption", "text")
KEY_NAMES = ("key", "sample_id")
URL_NAMES = ("url",)
TEXT_BLOCK = 1 << 24


@dataclass(frozen=True)
class Source:
    path: str  # absolute
    kind: str  # webdataset | img2dataset | parquet | text
    size: int
    mtime_ns: int
    covers: str | None = None  # img2dataset parquet read in place of this tar


@dataclass(frozen=True)
class CaptionBatch:
    rows: pa.Array  # int64 position of each caption in its file (sample / row / line number)
    keys: pa.Array | None  # string keys, or None when the row number is the key
    captions: pa.Array  # string or large_string


@dataclass
class ReadStats:
    rows_total: int = 0  # rows / samples / lines seen
    rows: int = 0  # captions counted
    excluded: Counter = field(default_factory=Counter)  # img2dataset status -> rows not counted
    skipped: Counter = field(default_factory=Counter)  # reason -> samples skipped
    caption_column: str | None = None


def discover(specs: list[str]) -> tuple[list[Source], list[str]]:
    """Sources behind paths, directories and globs (sorted, deduplicated), and ignored files."""
    found: dict[str, None] = {}
    ignored: list[str] = []
    for spec in specs:
        for path in _expand(spec):
            if _kind_of(path):
                found[str(Path(path).resolve())] = None
            else:
                ignored.append(str(path))
    sources = {}
    for path in sorted(found):
        source = _source(Path(path))
        sources.setdefault(source.path, source)
    return sorted(sources.values(), key=lambda s: s.path), ignored


def _expand(spec: str) -> list[str]:
    expanded = os.path.expanduser(spec)
    if any(c in expanded for c in "*?["):
        matches = sorted(p for p in glob.glob(expanded, recursive=True) if os.path.isfile(p))
        if not matches:
            raise InputError(f"no files match {spec!r}")
        return matches
    if os.path.isdir(expanded):
        files = sorted(str(p) for p in Path(expanded).rglob("*") if p.is_file() and _kind_of(p))
        if not files:
            raise InputError(f"directory {spec!r} holds no caption files ({', '.join(SUFFIX_KINDS)})")
        return files
    if not os.path.isfile(expanded):
        raise InputError(f"caption source {spec!r} does not exist")
    if not _kind_of(expanded):
        raise InputError(f"{spec!r} is not a caption source: expected {', '.join(SUFFIX_KINDS)} "
                         "(webdataset tar, parquet, text with one caption per line)")
    return [expanded]


def _kind_of(path) -> str | None:
    return SUFFIX_KINDS.get(Path(path).suffix.lower())


def _source(path: Path) -> Source:
    """A tar with img2dataset's parquet beside it is read through the parquet."""
    kind = _kind_of(path)
    if kind == "webdataset":
        sibling = path.with_suffix(".parquet")
        if sibling.is_file() and _is_img2dataset(sibling):
            return _stat(sibling, "img2dataset", covers=str(path))
    if kind == "parquet" and _is_img2dataset(path):
        tar = path.with_suffix(".tar")
        return _stat(path, "img2dataset", covers=str(tar) if tar.is_file() else None)
    return _stat(path, kind)


def _stat(path: Path, kind: str, covers: str | None = None) -> Source:
    st = path.stat()
    return Source(str(path), kind, st.st_size, st.st_mtime_ns, covers)


def _is_img2dataset(path: Path) -> bool:
    try:
        names = {n.lower() for n in pq.read_schema(path).names}
    except (OSError, pa.ArrowException):
        return False  # unreadable: read as plain parquet, which records the error
    return {"status", "key", "caption"} <= names


def read_batches(source: Source, stats: ReadStats, batch_rows: int = BATCH_ROWS) -> Iterator[CaptionBatch]:
    """The captions of one source, in file order, in batches of up to ``batch_rows`` (text files:
    blocks of ``TEXT_BLOCK`` bytes); raises on a file that cannot be read."""
    yield from READERS[source.kind](Path(source.path), stats, batch_rows)


def column_names(schema: pa.Schema, path: Path) -> dict[str, str | None]:
    """Actual names of the caption, key, url and status columns (matched case-insensitively)."""
    lower: dict[str, list[str]] = {}
    for name in schema.names:
        lower.setdefault(name.lower(), []).append(name)

    def pick(candidates):
        for candidate in candidates:
            names = lower.get(candidate, [])
            if len(names) > 1:
                raise InputError(f"{path}: columns {names} differ only in case; rename one")
            if names:
                return names[0]
        return None

    found = {"caption": pick(CAPTION_NAMES), "key": pick(KEY_NAMES), "url": pick(URL_NAMES),
             "status": pick(("status",))}
    if found["caption"] is None:
        raise InputError(f"{path}: no caption column (looked for TEXT or caption, any case); "
                         f"columns are {schema.names}")
    return found


def _read_parquet(path: Path, stats: ReadStats, batch_rows: int) -> Iterator[CaptionBatch]:
    import pyarrow.compute as pc

    parquet = pq.ParquetFile(path)
    names = column_names(parquet.schema_arrow, path)
    stats.caption_column = names["caption"]
    if names["status"] is None:  # LAION metadata: the caption column page by page, if it can
        from engine.captions.parquet_pages import column_pages

        pages = column_pages(parquet, str(path), names["caption"])
        if pages is not None:
            yield from _read_pages(pages, parquet, names["key"], stats, batch_rows)
            return
    wanted = [n for n in (names["caption"], names["key"], names["status"]) if n]
    position = 0
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=wanted):
        rows = pa.array(np.arange(position, position + batch.num_rows, dtype=np.int64))
        position += batch.num_rows
        stats.rows_total += batch.num_rows
        if names["status"]:
            status = batch.column(names["status"])
            success = pc.fill_null(pc.equal(status, "success"), False)
            stats.excluded.update(_value_counts(pc.filter(status, pc.invert(success))))
            batch, rows = batch.filter(success), rows.filter(success)
        stats.rows += batch.num_rows
        keys = batch.column(names["key"]).cast(pa.string()) if names["key"] else None
        yield CaptionBatch(rows, keys, batch.column(names["caption"]))


def _read_pages(pages, parquet: pq.ParquetFile, key: str | None, stats: ReadStats,
                batch_rows: int) -> Iterator[CaptionBatch]:
    """Batches from engine.captions.parquet_pages (whole pages: their sizes vary), with the
    keys read by pyarrow alongside."""
    from engine.captions.parquet_pages import read_pages

    keys = _column_slices(parquet, key, batch_rows) if key else None
    position = 0
    for captions in read_pages(pages, batch_rows):
        n = len(captions)
        rows = pa.array(np.arange(position, position + n, dtype=np.int64))
        position += n
        stats.rows_total += n
        stats.rows += n
        yield CaptionBatch(rows, keys.send(n).cast(pa.string()) if keys else None, captions)


def _column_slices(parquet: pq.ParquetFile, name: str, batch_rows: int):
    """A started generator that answers ``send(n)`` with the next ``n`` values of column ``name``."""
    kind = parquet.schema_arrow.field(name).type
    batches = (batch.column(0) for batch in parquet.iter_batches(batch_size=batch_rows, columns=[name]))

    def slices():
        held, wanted = pa.chunked_array([], kind), (yield)
        while True:
            while len(held) < wanted:
                held = pa.chunked_array(held.chunks + [next(batches)], kind)
            part, held = held.slice(0, wanted).combine_chunks(), held.slice(wanted)
            wanted = yield part
    started = slices()
    next(started)
    return started


def _value_counts(values: pa.Array) -> Counter:
    counts = Counter()
    for item in values.value_counts().to_pylist():
        counts[str(item["values"])] += item["counts"]
    return counts


def _read_text(path: Path, stats: ReadStats, _batch_rows: int) -> Iterator[CaptionBatch]:
    stats.caption_column = "line"
    line_no, done_bytes, carry = 0, 0, b""
    with open(path, "rb") as fh:
        while True:
            block = fh.read(TEXT_BLOCK)
            data = carry + block
            cut = len(data) if not block else data.rfind(b"\n") + 1
            carry, data = data[cut:], data[:cut]
            if data:
                lines = _decode(data, path, done_bytes).split("\n")
                if lines[-1] == "":
                    lines.pop()
                done_bytes += len(data)
                yield _text_batch(lines, line_no, stats)
                line_no += len(lines)
            if not block:
                return


def _decode(data: bytes, path: Path, offset: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ValueError(f"{path}: invalid UTF-8 at byte {offset + exc.start} "
                         f"(line {line} of this block): {exc.reason}") from None


def _text_batch(lines: list[str], first: int, stats: ReadStats) -> CaptionBatch:
    rows, captions = [], []
    for i, line in enumerate(lines):
        line = line.rstrip("\r")
        if line.strip():
            rows.append(first + i)
            captions.append(line)
    stats.rows_total += len(lines)
    stats.rows += len(captions)
    if len(captions) < len(lines):
        stats.skipped["blank line"] += len(lines) - len(captions)
    return CaptionBatch(pa.array(rows, pa.int64()), None, pa.array(captions, pa.large_string()))


def _read_tar(path: Path, stats: ReadStats, batch_rows: int) -> Iterator[CaptionBatch]:
    stats.caption_column = "txt|json.caption"
    rows, keys, captions = [], [], []
    for row, key, caption in _tar_samples(path, stats):
        rows.append(row), keys.append(key), captions.append(caption)
        if len(rows) >= batch_rows:
            yield _tar_batch(rows, keys, captions)
            rows, keys, captions = [], [], []
    if rows:
        yield _tar_batch(rows, keys, captions)


def _tar_batch(rows, keys, captions) -> CaptionBatch:
    return CaptionBatch(pa.array(rows, pa.int64()), pa.array(keys, pa.string()),
                        pa.array(captions, pa.large_string()))


def _tar_samples(path: Path, stats: ReadStats) -> Iterator[tuple[int, str, str]]:
    """(sample number, key, caption) per sample with a caption; members are read, never extracted."""
    with tarfile.open(path, "r:") as tar:
        row = -1
        for key, members in tar_samples(tar):
            row += 1
            stats.rows_total += 1
            caption, reason = sample_caption(tar, members)
            if caption is None:
                stats.skipped[reason] += 1
                continue
            stats.rows += 1
            yield row, key, caption
        check_tar_end(tar, path)


READERS: dict[str, Callable[[Path, ReadStats, int], Iterator[CaptionBatch]]] = {
    "webdataset": _read_tar, "img2dataset": _read_parquet, "parquet": _read_parquet,
    "text": _read_text}
