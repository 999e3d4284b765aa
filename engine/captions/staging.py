"""A map task and its result on disk: a group of caption files -> the rows they add to the database.

``scan_task`` is the engine.batch work function of ``vlaudit scan``. A task is a group of
consecutive files (one large file, or many small ones such as img2dataset's 10,000-row parquet
shards): the worker maps each file (engine.captions.count.count_source) and stages the group's
rows in one file, ``<task>.arrows``: an Arrow IPC stream per database table, laid out like that
table (engine.captions.store.SHARD_TABLES, ``shard_id`` first). The driver appends them in a few
statements per commit (engine.captions.ingest), so its work per file stays small however small
the files are. A file that cannot be read is recorded in the task's stats and the others go on.
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

import numpy as np
import pyarrow as pa

from engine import storage
from engine.captions.count import EXAMPLES_SCHEMA, MATCHES_SCHEMA, ShardResult, count_source
from engine.captions.store import SHARD_TABLES

log = logging.getLogger(__name__)

_SHARD_ID = pa.field("shard_id", pa.int32())
SCHEMAS = {
    "shard_form_counts": pa.schema([_SHARD_ID, ("form_id", pa.int32()), ("n", pa.int64())]),
    "shard_term_counts": pa.schema([_SHARD_ID, ("term_id", pa.int32()), ("n", pa.int64())]),
    "shard_pair_counts": pa.schema([_SHARD_ID, ("word_term_id", pa.int32()), ("group_term_id", pa.int32()),
                                    ("n", pa.int64())]),
    "shard_sketches": pa.schema([_SHARD_ID, ("registers", pa.binary())]),
    "captions": pa.schema([_SHARD_ID, *MATCHES_SCHEMA]),
    "shard_examples": pa.schema([_SHARD_ID, *EXAMPLES_SCHEMA]),
}


def scan_task(task, out_dir: Path) -> dict:
    """Payload (files: [(shard_id, Source)], CompiledTerms, threads, examples) -> staged tables;
    returns ``{"files": {shard_id: read stats, or {"error", "size", "mtime_ns"}}}``."""
    files, terms, threads, examples = task.payload
    results, outcomes = [], {}
    for shard_id, source in files:
        try:
            result = count_source(source, terms, threads, examples)
        except Exception:  # a file's failure is data; the group goes on
            outcomes[str(shard_id)] = {"error": traceback.format_exc(limit=3), "size": source.size,
                                       "mtime_ns": source.mtime_ns}
            continue
        results.append((shard_id, result))
        outcomes[str(shard_id)] = result.stats
        log.debug("%s: %d captions, %d with a word", source.path, result.stats["rows"], result.matches.num_rows)
    write_staged(Path(out_dir), task.shard_id, staged_tables(results))
    return {"files": outcomes}


def staged_tables(results: list[tuple[int, ShardResult]]) -> dict[str, pa.Table]:
    """The rows the mapped files add to each database table: counts as their non-zero entries."""
    def stacked(name, tables):
        return pa.concat_tables(tables) if tables else SCHEMAS[name].empty_table()

    counts = [(shard_id, result.counts) for shard_id, result in results]
    return {
        "shard_form_counts": stacked("shard_form_counts", [_nonzero(i, c.n_form, "shard_form_counts") for i, c in counts]),
        "shard_term_counts": stacked("shard_term_counts", [_nonzero(i, c.n_term, "shard_term_counts") for i, c in counts]),
        "shard_pair_counts": stacked("shard_pair_counts", [_nonzero(i, c.n_pair, "shard_pair_counts") for i, c in counts]),
        "shard_sketches": pa.table({"shard_id": pa.array([i for i, _ in counts], pa.int32()),
                                    "registers": pa.array([c.sketch.tobytes() for _, c in counts], pa.binary())}),
        "captions": stacked("captions", [_with_shard_id(i, result.matches) for i, result in results]),
        "shard_examples": stacked("shard_examples", [_with_shard_id(i, result.examples) for i, result in results]),
    }


def _nonzero(shard_id: int, array: np.ndarray, table: str) -> pa.Table:
    """Non-zero entries of a count array: its indices and counts. A pair array is [words,
    groups]: its columns are group terms, whose ids follow the words'."""
    index = np.nonzero(array)
    columns = [np.full(len(index[0]), shard_id, np.int32)] + [idx.astype(np.int32) for idx in index]
    if len(index) == 2:
        columns[2] += np.int32(array.shape[0])
    return pa.Table.from_arrays(columns + [array[index].astype(np.int64)], schema=SCHEMAS[table])


def _with_shard_id(shard_id: int, table: pa.Table) -> pa.Table:
    return table.add_column(0, _SHARD_ID, pa.array(np.full(table.num_rows, shard_id, np.int32)))


# --- the file of a task ------------------------------------------------------------------------

STAGED_SUFFIX = ".arrows"  # Arrow IPC streams


def staged_path(out_dir: Path, task_id: str) -> Path:
    return Path(out_dir) / f"{task_id}{STAGED_SUFFIX}"


def write_staged(out_dir: Path, task_id: str, tables: dict[str, pa.Table]) -> None:
    """One Arrow IPC stream per table, back to back in ``SHARD_TABLES`` order, in one file
    written atomically; uncompressed (it lives until the task is ingested). One file instead of
    one per table: five fewer creates, renames, maps and unlinks per task."""
    with storage.atomic_path(staged_path(out_dir, task_id)) as tmp:
        with pa.OSFile(str(tmp), "wb") as sink:
            for name in SHARD_TABLES:
                with pa.ipc.new_stream(sink, SCHEMAS[name]) as writer:
                    writer.write_table(tables[name])


def read_staged(out_dir: Path, task_id: str) -> dict[str, pa.Table]:
    """A task's staged tables, memory-mapped (no copy): each stream ends where the next begins."""
    with pa.memory_map(str(staged_path(out_dir, task_id))) as source:
        return {name: pa.ipc.open_stream(source).read_all() for name in SHARD_TABLES}


def staged_bytes(out_dir: Path, task_id: str) -> int:
    path = staged_path(out_dir, task_id)
    return path.stat().st_size if path.exists() else 0


def drop_stale(out_dir: Path, task_id: str, files: list) -> None:
    """Remove a task's staged result if it was made for other files, from an earlier version of
    one of them (size or mtime differ), or is incomplete: the task maps again."""
    from engine.batch import stats_path

    marker = stats_path(out_dir, task_id)
    if not marker.exists():
        return
    staged = storage.read_json(marker).get("files", {})
    current = {str(shard_id): (source.size, source.mtime_ns) for shard_id, source in files}
    made_for = {shard_id: (stats.get("size"), stats.get("mtime_ns")) for shard_id, stats in staged.items()}
    if made_for != current or not staged_path(out_dir, task_id).exists():
        remove_staged(out_dir, task_id)


def remove_staged(out_dir: Path, task_id: str) -> None:
    """The staged file and the runner's markers of one task (after it is in the database)."""
    for name in _task_files(task_id):
        (Path(out_dir) / name).unlink(missing_ok=True)


def remove_other_tasks(out_dir: Path, task_ids: set[str]) -> None:
    """Everything in the staging directory but the files of the tasks in this plan: tasks an
    earlier run grouped otherwise, its unfinished writes, files of another vlaudit version. Runs
    before the map starts (the database's lock keeps other scans out)."""
    if not Path(out_dir).is_dir():
        return
    keep = {name for task_id in task_ids for name in _task_files(task_id)}
    for path in Path(out_dir).iterdir():
        if path.is_file() and path.name not in keep:
            path.unlink(missing_ok=True)


def _task_files(task_id: str) -> tuple[str, ...]:
    """Names of a task's files: its staged tables and engine.batch's markers."""
    return f"{task_id}{STAGED_SUFFIX}", f"{task_id}_stats.json", f"{task_id}_error.json"
