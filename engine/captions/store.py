"""The scan database (one DuckDB file): sources, per-shard counts, matched captions.

Tables (created on first use):

- ``scan_config(key, value)``: the matching configuration the counts belong to (terms hash,
  taxonomy and lexicon names and hashes, exact forms, example candidates kept per pair and file).
  A database holds one configuration.
- ``terms``, ``forms``, ``form_terms``, ``word_categories``: the terms (engine.captions.terms).
- ``shards``: one row per source file: path, kind, covers (the tar an img2dataset parquet stands
  for), size, mtime_ns, checksum (xxh3_128 of the bytes), status (pending | done | failed | duplicate), error,
  duplicate_of, rows_total, rows (captions counted), rows_excluded and excluded (img2dataset
  status -> rows), samples_skipped and skipped (reason -> samples), caption_column, scanned_at.
- ``shard_form_counts(shard_id, form_id, n)``, ``shard_term_counts(shard_id, term_id, n)``,
  ``shard_pair_counts(shard_id, word_term_id, group_term_id, n)``, ``shard_sketches(shard_id,
  registers)``: the additive map output, non-zero entries only; totals are sums over done shards.
- ``captions(shard_id, row, caption_hash, term_ids)``: captions with a taxonomy word: their term
  ids and token-sequence hash. ``vlaudit subset`` reads their URLs, captions and keys back from
  the source files.
- ``shard_examples(shard_id, word_term_id, group_term_id, row, key, caption, caption_hash)``: the
  first few distinct captions of each (word, group) pair in each shard that can still be chosen,
  with their text: the evidence examples.parquet is chosen from (engine.captions.count picks
  them while scanning, engine.captions.evidence drops those that can no longer be chosen).
- ``scan_config`` also records ``db_format``: a database written by an incompatible version is
  refused with a clear message.

A commit group of shards (about 64 MB of staged results) is written in one transaction together
with their statuses, so an interrupted scan leaves each shard either fully in or not at all (its
staged result is then ingested again).
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine import storage
from engine.captions.evidence import ExampleFrontier
from engine.captions.shards import Source
from engine.errors import InputError

log = logging.getLogger(__name__)

DDL = """
CREATE TABLE IF NOT EXISTS scan_config (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS terms (term_id INTEGER PRIMARY KEY, kind VARCHAR, word VARCHAR,
    axis VARCHAR, "group" VARCHAR, variant VARCHAR);
CREATE TABLE IF NOT EXISTS forms (form_id INTEGER PRIMARY KEY, form VARCHAR, n_tokens INTEGER);
CREATE TABLE IF NOT EXISTS form_terms (form_id INTEGER, term_id INTEGER, origin VARCHAR);
CREATE TABLE IF NOT EXISTS word_categories (word VARCHAR, category VARCHAR);
CREATE TABLE IF NOT EXISTS shards (shard_id INTEGER PRIMARY KEY, path VARCHAR UNIQUE, kind VARCHAR,
    covers VARCHAR, size BIGINT, mtime_ns BIGINT, checksum VARCHAR, status VARCHAR, error VARCHAR,
    duplicate_of INTEGER, rows_total BIGINT, "rows" BIGINT, rows_excluded BIGINT, excluded VARCHAR,
    samples_skipped BIGINT, skipped VARCHAR, caption_column VARCHAR, scanned_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS shard_form_counts (shard_id INTEGER, form_id INTEGER, n BIGINT);
CREATE TABLE IF NOT EXISTS shard_term_counts (shard_id INTEGER, term_id INTEGER, n BIGINT);
CREATE TABLE IF NOT EXISTS shard_pair_counts (shard_id INTEGER, word_term_id INTEGER,
    group_term_id INTEGER, n BIGINT);
CREATE TABLE IF NOT EXISTS shard_sketches (shard_id INTEGER, registers BLOB);
CREATE TABLE IF NOT EXISTS captions (shard_id INTEGER, "row" BIGINT, caption_hash UBIGINT, term_ids INTEGER[]);
CREATE TABLE IF NOT EXISTS shard_examples (shard_id INTEGER, word_term_id INTEGER, group_term_id INTEGER,
    "row" BIGINT, key VARCHAR, caption VARCHAR, caption_hash UBIGINT);
"""
DB_FORMAT = "3"  # 2: example candidates per shard (shard_examples), captions without text; 3: nor keys
SHARD_TABLES = ("shard_form_counts", "shard_term_counts", "shard_pair_counts", "shard_sketches",
                "captions", "shard_examples")


def connect(path: str | Path, *, read_only: bool = False, memory_limit: str = "512MB"):
    """Open (or create) the database; a clear error when another process holds it.

    DuckDB keeps to ``memory_limit`` and spills larger sorts and aggregates to its temporary
    directory beside the database (``FILE.duckdb.tmp``), so the reduce needs the same memory for
    any corpus size."""
    import duckdb

    path = Path(path)
    if read_only and not path.exists():
        raise InputError(f"database {path} does not exist; create it with `vlaudit scan ... --db {path}`")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        raise InputError(f"cannot open database {path}: {exc} (is another scan using it?)") from exc
    con.execute("SET enable_progress_bar = false")  # never on a --json stdout
    try:
        con.execute("SET memory_limit = ?", [memory_limit])
    except duckdb.Error as exc:
        con.close()
        raise InputError(f"--memory-limit {memory_limit!r} is not a size DuckDB understands "
                         "(e.g. 2GB, 500MB)") from exc
    if not read_only:
        con.execute(DDL)
    return con


def prepare(con, termset, config: dict[str, str]) -> None:
    """Record the terms on first use; refuse a database scanned with other terms, or one that
    kept fewer example candidates than ``config["examples_per_pair"]`` asks for."""
    stored = dict(con.execute("SELECT key, value FROM scan_config").fetchall())
    config = config | {"db_format": DB_FORMAT}
    if stored and stored.get("db_format") != DB_FORMAT:
        raise InputError(f"this database was written by an earlier vlaudit (database format "
                         f"{stored.get('db_format', '1')}, this version writes {DB_FORMAT}); scan into a new --db file")
    if stored and stored.get("terms_sha256") != config["terms_sha256"]:
        raise InputError(
            "this database holds counts for other terms (taxonomy "
            f"{stored.get('taxonomy')!r}, lexicon {stored.get('lexicon')!r}, exact forms "
            f"{stored.get('exact_forms')}); scan into a new --db file, or use the same --taxonomy, "
            "--lexicon and --exact-forms as before")
    kept, asked = int(stored.get("examples_per_pair", 0)), int(config["examples_per_pair"])
    if stored and "examples_per_pair" in stored and asked > kept:
        raise InputError(f"this database keeps {kept} example captions per word x group from each file, "
                         f"fewer than --examples {asked}; use --examples {kept} or less, or a new --db file")
    if stored:
        return
    with transaction(con):
        for table, frame in (("terms", termset.terms), ("forms", termset.forms),
                             ("form_terms", termset.form_terms),
                             ("word_categories", termset.categories.unique(maintain_order=True))):
            _insert_arrow(con, table, frame.to_arrow())
        con.executemany("INSERT INTO scan_config VALUES (?, ?)", sorted(config.items()))


def register(con, sources: list[Source]) -> list[tuple[int, Source]]:
    """Add new sources, reset changed ones; return the (shard_id, source) pairs still to scan.
    A few set-based statements, however many files (a LAION-scale scan registers 10^5 shards)."""
    known = {row[0]: row[1:] for row in con.execute(
        "SELECT path, shard_id, size, mtime_ns, status FROM shards").fetchall()}
    next_id = con.execute("SELECT coalesce(max(shard_id), -1) + 1 FROM shards").fetchall()[0][0]
    todo, changed, new = [], [], []
    for source in sources:
        shard_id, size, mtime_ns, status = known.get(source.path, (None, None, None, None))
        unchanged = (size, mtime_ns) == (source.size, source.mtime_ns)
        if shard_id is not None and unchanged and status in ("done", "duplicate"):
            continue
        if shard_id is None:
            shard_id, next_id = next_id, next_id + 1
            new.append(shard_id)
        elif not unchanged:
            log.info("%s changed since it was scanned; scanning it again", source.path)
            changed.append(shard_id)
        todo.append((shard_id, source))
    rows = pa.table({"shard_id": pa.array([shard_id for shard_id, _ in todo], pa.int32()),
                     "path": [source.path for _, source in todo], "kind": [source.kind for _, source in todo],
                     "covers": pa.array([source.covers for _, source in todo], pa.string()),
                     "size": pa.array([source.size for _, source in todo], pa.int64()),
                     "mtime_ns": pa.array([source.mtime_ns for _, source in todo], pa.int64())})
    with transaction(con):
        for shard_id in changed:
            clear_shard(con, shard_id)
        con.register("_registered", rows)
        try:
            con.execute("INSERT INTO shards (shard_id, path, status) SELECT shard_id, path, 'pending' "
                        "FROM _registered WHERE shard_id IN (SELECT unnest(?::INTEGER[]))", [new])
            con.execute("UPDATE shards SET kind = r.kind, covers = r.covers, size = r.size, mtime_ns = r.mtime_ns, "
                        "status = 'pending' FROM _registered r WHERE shards.shard_id = r.shard_id")
        finally:
            con.unregister("_registered")
    return todo


def clear_shard(con, shard_id: int) -> None:
    for table in SHARD_TABLES:
        con.execute(f"DELETE FROM {table} WHERE shard_id = ?", [shard_id])  # table: a constant


@contextlib.contextmanager
def transaction(con):
    """One transaction (one commit, one disk sync); rolled back on error."""
    con.execute("BEGIN")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


@dataclass(frozen=True)
class MappedFile:
    """A file the map read: its shard, path and read statistics (engine.captions.shards.ReadStats)."""

    shard_id: int
    path: str
    stats: dict


def ingest(con, files: list[MappedFile], tables: dict[str, pa.Table],
           frontier: ExampleFrontier | None = None) -> list[str]:
    """Append the files' rows (``tables``: SHARD_TABLES name -> rows, ``shard_id`` first, as
    engine.captions.staging writes them) and set their statuses, inside ``transaction``: one
    insert per table for the whole group. A pending shard has no rows yet (register() cleared
    changed files). A file with the checksum of a done shard (or of an earlier one in the group)
    is a duplicate: recorded, its rows left out. With a ``frontier``, only the example candidates
    that can still be chosen are stored. Return the statuses, in order."""
    twins = _done_checksums(con, [file.stats["checksum"] for file in files])
    statuses = []
    for file in files:
        twin = twins.get(file.stats["checksum"])
        statuses.append(("duplicate", twin) if twin is not None else ("done", None))
        if twin is None:
            twins[file.stats["checksum"]] = file.shard_id
    duplicates = pa.array([file.shard_id for file, (status, _) in zip(files, statuses) if status == "duplicate"],
                          pa.int32())
    for name in SHARD_TABLES:
        rows = tables[name]
        if len(duplicates):
            rows = rows.filter(pc.invert(pc.is_in(rows["shard_id"], value_set=duplicates)))
        if name == "shard_examples" and frontier is not None:
            rows = frontier.admit(rows, {file.shard_id: file.path for file in files})
        if rows.num_rows:
            _insert_arrow(con, name, rows)
    _update_shards(con, files, statuses)
    return [status for status, _ in statuses]


def _done_checksums(con, checksums: list[str]) -> dict[str, int]:
    """checksum -> the first done shard with it, for the given checksums."""
    rows = con.execute("SELECT checksum, min(shard_id) FROM shards WHERE status = 'done' "
                       "AND checksum IN (SELECT unnest(?::VARCHAR[])) GROUP BY checksum", [checksums]).fetchall()
    return dict(rows)


def _update_shards(con, shards: list[MappedFile], statuses: list[tuple[str, int | None]]) -> None:
    now = storage.utc_now()
    updates = pa.table({
        "shard_id": pa.array([shard.shard_id for shard in shards], pa.int32()),
        "status": [status for status, _ in statuses],
        "duplicate_of": pa.array([twin for _, twin in statuses], pa.int32()),
        "checksum": [shard.stats["checksum"] for shard in shards],
        "rows_total": pa.array([shard.stats["rows_total"] for shard in shards], pa.int64()),
        "rows": pa.array([shard.stats["rows"] for shard in shards], pa.int64()),
        "rows_excluded": pa.array([sum(shard.stats["excluded"].values()) for shard in shards], pa.int64()),
        "excluded": [json.dumps(shard.stats["excluded"], sort_keys=True) for shard in shards],
        "samples_skipped": pa.array([sum(shard.stats["skipped"].values()) for shard in shards], pa.int64()),
        "skipped": [json.dumps(shard.stats["skipped"], sort_keys=True) for shard in shards],
        "caption_column": pa.array([shard.stats["caption_column"] for shard in shards], pa.string()),
    })
    con.register("_updates", updates)
    try:
        con.execute(
            "UPDATE shards SET status = u.status, error = NULL, duplicate_of = u.duplicate_of, "
            'checksum = u.checksum, rows_total = u.rows_total, "rows" = u."rows", '
            "rows_excluded = u.rows_excluded, excluded = u.excluded, samples_skipped = u.samples_skipped, "
            "skipped = u.skipped, caption_column = u.caption_column, scanned_at = ? "
            "FROM _updates u WHERE shards.shard_id = u.shard_id", [now])
    finally:
        con.unregister("_updates")


def record_failure(con, shard_id: int, error: str) -> str:
    """Mark a shard failed with the last line of its error (a traceback's message); return it."""
    lines = [line for line in error.strip().splitlines() if line.strip()]
    message = lines[-1] if lines else error
    con.execute("UPDATE shards SET status = 'failed', error = ?, scanned_at = ? WHERE shard_id = ?",
                [message, storage.utc_now(), shard_id])
    return message


def _insert_arrow(con, table: str, data: pa.Table) -> None:
    """Append an Arrow table to ``table`` (a name from this module, never user input)."""
    con.register("_staged", data)
    try:
        con.execute(f"INSERT INTO {table} SELECT * FROM _staged")
    finally:
        con.unregister("_staged")


def merged_sketch(con) -> np.ndarray | None:
    """The HyperLogLog registers of every done shard, merged (element-wise maximum)."""
    merged = None
    cursor = con.execute("SELECT registers FROM shard_sketches JOIN shards USING (shard_id) "
                         "WHERE status = 'done'")
    while rows := cursor.fetchmany(1024):
        for (blob,) in rows:
            registers = np.frombuffer(blob, dtype=np.uint8)
            merged = registers.copy() if merged is None else np.maximum(merged, registers)
    return merged
