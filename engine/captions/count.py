"""The per-file map: one caption source and the compiled terms -> additive counts.

``count_source(source, terms)`` is a pure function of the file and the terms (both picklable), so
any executor can run it where the file is: the local process pool or Ray (engine.batch, through
engine.captions.staging.scan_task). Its ``ShardResult`` adds across files (``Counts.__add__``);
the matched captions and the example candidates are rows to append.
"""

from __future__ import annotations

import logging
import queue
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from engine import storage
from engine.captions.matcher import CompiledTerms, Counts, Matcher
from engine.captions.shards import BATCH_ROWS, CaptionBatch, ReadStats, Source, read_batches

log = logging.getLogger(__name__)

MATCHES_SCHEMA = pa.schema([("row", pa.int64()), ("caption_hash", pa.uint64()), ("term_ids", pa.list_(pa.int32()))])
EXAMPLES_SCHEMA = pa.schema([("word_term_id", pa.int32()), ("group_term_id", pa.int32()), ("row", pa.int64()),
                             ("key", pa.string()), ("caption", pa.large_string()), ("caption_hash", pa.uint64())])


@dataclass
class ShardResult:
    counts: Counts
    matches: pa.Table  # MATCHES_SCHEMA: captions with at least one taxonomy word (see _matched)
    examples: pa.Table  # EXAMPLES_SCHEMA: the first distinct captions of each (word, group) pair
    stats: dict  # rows_total, rows, excluded, skipped, caption_column, checksum, size, mtime_ns


def count_source(source: Source, terms: CompiledTerms, threads: int = 1, examples: int = 0) -> ShardResult:
    """Read one source and count every term and (word, group) pair in its captions; keep the
    first ``examples`` distinct captions (by token-sequence hash, in row order) of every pair.

    With ``threads`` > 1 the batches of the file are matched on that many threads (the compiled
    kernel releases the GIL; reading stays in this thread); the result is the same."""
    stats = ReadStats()
    matchers = [Matcher(terms, examples) for _ in range(max(1, threads))]
    batches = read_batches(source, stats, BATCH_ROWS // len(matchers))  # each thread gets its share of a file
    parts = [part for part in _scan_batches(batches, matchers) if part is not None]
    matches = pa.concat_tables([m for m, _ in parts]) if parts else MATCHES_SCHEMA.empty_table()
    # With threads each matcher chooses among its own batches: more candidates, still bounded;
    # the reduce keeps the first distinct ones over every file (engine.captions.reduce.examples).
    candidates = pa.concat_tables([e for _, e in parts]) if parts else EXAMPLES_SCHEMA.empty_table()
    counts = matchers[0].counts
    for matcher in matchers[1:]:
        counts = counts + matcher.counts
    return ShardResult(counts, matches, candidates, {
        "rows_total": stats.rows_total, "rows": stats.rows, "excluded": dict(stats.excluded),
        "skipped": dict(stats.skipped), "caption_column": stats.caption_column,
        "checksum": storage.xxh3_file(source.path), "size": source.size,
        "mtime_ns": source.mtime_ns})


def _scan_batches(batches, matchers: list[Matcher]):
    """(matched captions, example candidates) of each batch, in batch order; matchers shared by a
    thread pool."""
    if len(matchers) == 1:
        for batch in batches:
            yield _scan_batch(matchers[0], batch)
        return
    idle: queue.SimpleQueue = queue.SimpleQueue()
    for matcher in matchers:
        idle.put(matcher)

    def scan(batch):
        matcher = idle.get()
        try:
            return _scan_batch(matcher, batch)
        finally:
            idle.put(matcher)

    in_flight: deque = deque()
    with ThreadPoolExecutor(len(matchers), thread_name_prefix="caption-scan") as pool:
        for batch in batches:
            in_flight.append(pool.submit(scan, batch))
            while len(in_flight) > 2 * len(matchers):  # bounded memory: a few batches at a time
                yield in_flight.popleft().result()
        while in_flight:
            yield in_flight.popleft().result()


def _scan_batch(matcher: Matcher, batch: CaptionBatch) -> tuple[pa.Table, pa.Table] | None:
    found = matcher.scan(batch.captions)
    if not len(found.rows):
        return None
    return _matched(batch, found), _example_candidates(batch, found)


def _matched(batch: CaptionBatch, found) -> pa.Table:
    """Rows with a taxonomy word: row, hash, term ids (a subset reads their keys back with the URLs)."""
    return pa.Table.from_arrays([batch.rows.take(pa.array(found.rows)), pa.array(found.caption_hash),
                                 found.term_lists()], schema=MATCHES_SCHEMA)


def _keys(batch: CaptionBatch, index: pa.Array) -> pa.Array:
    """The keys of the rows at ``index``; nulls when the source has none (the row is the key)."""
    return batch.keys.take(index) if batch.keys is not None else pa.nulls(len(index), pa.string())


def _example_candidates(batch: CaptionBatch, found) -> pa.Table:
    """The example candidates the matcher picked in this batch, with their caption text."""
    index = pa.array(found.example_rows)
    hashes = found.caption_hash[np.searchsorted(found.rows, found.example_rows)]  # candidates are matched rows
    return pa.Table.from_arrays(
        [pa.array(found.example_pairs[:, 0]), pa.array(found.example_pairs[:, 1]), batch.rows.take(index), _keys(batch, index),
         batch.captions.take(index).cast(pa.large_string()), pa.array(hashes)], schema=EXAMPLES_SCHEMA)
