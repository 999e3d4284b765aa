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
    """(captions with a taxonomy word, distinct ones among them)."""
    n, unique = con.execute(f"SELECT count(*), count(DISTINCT caption_hash) FROM captions "
                            f"WHERE shard_id IN ({DONE})").fetchall()[0]
    return int(n), int(unique)


def examples(con, n_words: int, per_pair: int) -> pl.DataFrame:
    """Up to ``per_pair`` distinct captions per (word, group term), first in (path, row) order
    (only captions with a group term keep their text, so only they are read). Aggregates, no
    sorts: the first occurrence of each distinct caption, then the first few of those."""
    return _frame(con, f"""
        WITH words AS (
            SELECT shard_id, "row", caption_hash, term_ids, unnest(term_ids) AS word_term_id
            FROM captions WHERE caption IS NOT NULL AND shard_id IN ({DONE})),
        pairs AS (
            SELECT shard_id, "row", caption_hash, word_term_id, unnest(term_ids) AS group_term_id
            FROM words WHERE word_term_id < ?),
        firsts AS (
            SELECT word_term_id, group_term_id,
                   min({{'path': s.path, 'row': p."row", 'shard_id': p.shard_id}}) AS first
            FROM pairs p JOIN shards s USING (shard_id) WHERE group_term_id >= ?
            GROUP BY word_term_id, group_term_id, caption_hash),
        picks AS (
            SELECT word_term_id, group_term_id, min_by(first, first, ?) AS picks
            FROM firsts GROUP BY word_term_id, group_term_id),
        ranked AS (
            SELECT word_term_id, group_term_id, unnest(picks) AS pick,
                   unnest(range(1, len(picks) + 1)) AS rank FROM picks)
        SELECT r.word_term_id, r.group_term_id, r.rank, r.pick.path AS path, r.pick.row AS "row",
               coalesce(c.key, CAST(c."row" AS VARCHAR)) AS key, c.caption
        FROM ranked r JOIN captions c ON c.shard_id = r.pick.shard_id AND c."row" = r.pick.row
        """, [n_words, n_words, per_pair])


def shards_table(con) -> pl.DataFrame:
    return _frame(con, 'SELECT shard_id, path, kind, covers, size, checksum, status, error, '
                       'duplicate_of, rows_total, "rows", rows_excluded, samples_skipped, scanned_at '
                       "FROM shards ORDER BY path")
