"""The reduce, in DuckDB: sum the per-shard counts of every done shard; evidence captions.

Each function reads the scan database (engine.captions.store) and returns a polars DataFrame or
plain numbers; nothing here writes.
"""

from __future__ import annotations

import json
from collections import Counter

import polars as pl

DONE = "SELECT shard_id FROM shards WHERE status = 'done'"


def _frame(con, sql: str, params=()) -> pl.DataFrame:
    return pl.from_arrow(con.sql(sql, params=list(params)).to_arrow_table())


def totals(con) -> dict:
    """Captions and rows over done shards, and shard counts by status."""
    n_captions, rows_total, excluded_rows, skipped_rows = con.execute(
        'SELECT coalesce(sum("rows"), 0), coalesce(sum(rows_total), 0), '
        "coalesce(sum(rows_excluded), 0), coalesce(sum(samples_skipped), 0) "
        "FROM shards WHERE status = 'done'").fetchall()[0]
    excluded, skipped = Counter(), Counter()
    for excluded_json, skipped_json in con.execute(
            "SELECT excluded, skipped FROM shards WHERE status = 'done'").fetchall():
        excluded.update(json.loads(excluded_json or "{}"))
        skipped.update(json.loads(skipped_json or "{}"))
    by_status = dict(con.execute("SELECT status, count(*) FROM shards GROUP BY status").fetchall())
    return {"n_captions": int(n_captions), "rows_total": int(rows_total),
            "rows_excluded": int(excluded_rows), "excluded_by_status": dict(excluded),
            "samples_skipped": int(skipped_rows), "skipped_by_reason": dict(skipped),
            "shards_by_status": by_status}


def term_counts(con) -> pl.DataFrame:
    return _frame(con, f"SELECT term_id, sum(n)::BIGINT AS n FROM shard_term_counts "
                       f"WHERE shard_id IN ({DONE}) GROUP BY term_id")


def form_counts(con) -> pl.DataFrame:
    return _frame(con, f"SELECT form_id, sum(n)::BIGINT AS n_captions FROM shard_form_counts "
                       f"WHERE shard_id IN ({DONE}) GROUP BY form_id")


def pair_counts(con, n_words: int) -> pl.DataFrame:
    """n_both (summed shard counts) and n_unique_captions_both (distinct caption hashes)."""
    both = _frame(con, f"SELECT word_term_id, group_term_id, sum(n)::BIGINT AS n_both "
                       f"FROM shard_pair_counts WHERE shard_id IN ({DONE}) GROUP BY ALL")
    unique = _frame(con, f"""
        WITH words AS (
            SELECT caption_hash, unnest(term_ids) AS word_term_id, term_ids FROM captions
            WHERE shard_id IN ({DONE})),
        pairs AS (
            SELECT caption_hash, word_term_id, unnest(term_ids) AS group_term_id FROM words
            WHERE word_term_id < ?)
        SELECT word_term_id, group_term_id, count(DISTINCT caption_hash) AS n_unique_captions_both
        FROM pairs WHERE group_term_id >= ? GROUP BY ALL""", [n_words, n_words])
    keys = ["word_term_id", "group_term_id"]
    return both.join(unique, on=keys, how="full", coalesce=True).with_columns(
        pl.col("n_both", "n_unique_captions_both").fill_null(0))


def word_caption_totals(con) -> tuple[int, int]:
    """(captions with a taxonomy word, an estimate of the distinct ones among them: DuckDB's
    HyperLogLog, so memory stays flat)."""
    n, unique = con.execute(f"SELECT count(*), approx_count_distinct(caption_hash) FROM captions "
                            f"WHERE shard_id IN ({DONE})").fetchall()[0]
    return int(n), int(unique)


def examples(con, per_pair: int) -> pl.DataFrame:
    """Up to ``per_pair`` distinct captions per (word, group term), first in (path, row) order,
    from the candidates each shard kept while scanning (its first distinct captions of the pair).

    In DuckDB, so memory stays flat however many files: each distinct caption of a pair at its
    first position (packed path rank and row), then a bounded heap per pair; only the chosen
    captions' text is read."""
    return _frame(con, f"""
        WITH ranked AS (SELECT shard_id, path, row_number() OVER (ORDER BY path) AS path_rank
                        FROM shards WHERE shard_id IN ({DONE})),
        firsts AS (
            SELECT word_term_id, group_term_id, min((r.path_rank << 32) + e."row") AS position
            FROM shard_examples e JOIN ranked r USING (shard_id) GROUP BY word_term_id, group_term_id, caption_hash),
        chosen AS (
            SELECT word_term_id, group_term_id, unnest(arg_min(position, position, ?)) AS position
            FROM firsts GROUP BY word_term_id, group_term_id),
        numbered AS (
            SELECT *, position >> 32 AS path_rank, position & 4294967295 AS "row",
                   row_number() OVER (PARTITION BY word_term_id, group_term_id ORDER BY position) AS rank
            FROM chosen)
        SELECT n.word_term_id, n.group_term_id, n.rank, r.path, n."row",
               coalesce(e.key, CAST(e."row" AS VARCHAR)) AS key, e.caption
        FROM numbered n JOIN ranked r USING (path_rank)
        JOIN shard_examples e ON e.shard_id = r.shard_id AND e."row" = n."row"
            AND e.word_term_id = n.word_term_id AND e.group_term_id = n.group_term_id
        ORDER BY n.word_term_id, n.group_term_id, n.rank""", [per_pair]).with_columns(
        pl.col("rank").cast(pl.Int64), pl.col("row").cast(pl.Int64))


def shards_table(con) -> pl.DataFrame:
    return _frame(con, 'SELECT shard_id, path, kind, covers, size, checksum, status, error, '
                       'duplicate_of, rows_total, "rows", rows_excluded, samples_skipped, scanned_at '
                       "FROM shards ORDER BY path")
