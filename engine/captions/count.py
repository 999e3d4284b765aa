"""The per-shard map: one caption source and the compiled terms -> additive counts.

``count_source(source, terms)`` is a pure function of the file and the terms (both picklable), so
any executor can run it where the file is: the local process pool or Ray (engine.batch). Its
``ShardResult`` adds across files (``Counts.__add__``); the matched captions are rows to append.
``scan_task`` is the engine.batch work function: it runs the map and stages the result as files
in the job directory, from which the driver ingests it into DuckDB (engine.captions.store).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine import storage
from engine.captions.matcher import CompiledTerms, Counts, Matcher
from engine.captions.shards import CaptionBatch, ReadStats, Source, read_batches

log = logging.getLogger(__name__)

MATCHES_SCHEMA = pa.schema([("row", pa.int64()), ("key", pa.string()), ("caption", pa.large_string()),
                            ("caption_hash", pa.uint64()), ("term_ids", pa.list_(pa.int32()))])
COUNT_ARRAYS = ("n_form", "n_term", "n_pair", "sketch")


@dataclass
class ShardResult:
    counts: Counts
    matches: pa.Table  # MATCHES_SCHEMA: captions with at least one taxonomy word
    stats: dict  # rows_total, rows, excluded, skipped, caption_column, checksum


def count_source(source: Source, terms: CompiledTerms) -> ShardResult:
    """Read one source and count every term and (word, group) pair in its captions."""
    stats = ReadStats()
    matcher = Matcher(terms)
    parts = []
    for batch in read_batches(source, stats):
        found = matcher.scan(batch.captions)
        if len(found.rows):
            parts.append(_matched(batch, found))
    matches = pa.concat_tables(parts) if parts else MATCHES_SCHEMA.empty_table()
    return ShardResult(matcher.counts, matches, {
        "rows_total": stats.rows_total, "rows": stats.rows, "excluded": dict(stats.excluded),
        "skipped": dict(stats.skipped), "caption_column": stats.caption_column,
        "checksum": storage.sha256_file(source.path), "size": source.size,
        "mtime_ns": source.mtime_ns})


def _matched(batch: CaptionBatch, found) -> pa.Table:
    index = pa.array(found.rows)
    rows = batch.rows.take(index)
    keys = batch.keys.take(index) if batch.keys is not None else rows.cast(pa.string())
    return pa.Table.from_arrays(
        [rows, keys, batch.captions.take(index), pa.array(found.caption_hash), found.term_lists()],
        schema=MATCHES_SCHEMA)


# --- staging: the work function and its files --------------------------------------------------

def scan_task(task, out_dir: Path) -> dict:
    """engine.batch work function: payload (Source, CompiledTerms) -> staged files, stats."""
    source, terms = task.payload
    result = count_source(source, terms)
    write_staged(Path(out_dir), task.shard_id, result)
    log.debug("%s: %d captions, %d with a word", source.path, result.stats["rows"],
              result.matches.num_rows)
    return result.stats


def staged_paths(out_dir: Path, shard_id: str) -> dict[str, Path]:
    return {"counts": out_dir / f"{shard_id}.counts.npz",
            "matches": out_dir / f"{shard_id}.matches.parquet"}


def write_staged(out_dir: Path, shard_id: str, result: ShardResult) -> None:
    paths = staged_paths(out_dir, shard_id)
    with storage.atomic_path(paths["counts"]) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, n_captions=np.int64(result.counts.n_captions),
                                **{k: getattr(result.counts, k) for k in COUNT_ARRAYS})
    with storage.atomic_path(paths["matches"]) as tmp:
        pq.write_table(result.matches, tmp, compression="zstd")


def read_staged_counts(out_dir: Path, shard_id: str) -> Counts:
    with np.load(staged_paths(out_dir, shard_id)["counts"], allow_pickle=False) as data:
        return Counts(int(data["n_captions"]), *(data[k] for k in COUNT_ARRAYS))


def drop_stale(out_dir: Path, shard_id: str, source: Source) -> None:
    """Remove a staged result made from an earlier version of the file (size or mtime differ)."""
    from engine.batch import stats_path

    marker = stats_path(out_dir, shard_id)
    if marker.exists():
        stats = storage.read_json(marker)
        if (stats.get("size"), stats.get("mtime_ns")) != (source.size, source.mtime_ns):
            remove_staged(out_dir, shard_id)


def remove_staged(out_dir: Path, shard_id: str) -> None:
    """Staged files and the runner's markers of one shard (after it is in the database)."""
    for path in staged_paths(out_dir, shard_id).values():
        path.unlink(missing_ok=True)
    for suffix in ("_stats.json", "_error.json"):
        (out_dir / f"{shard_id}{suffix}").unlink(missing_ok=True)
