"""Which example candidates can still become evidence, so the database stores only those.

examples.parquet shows, per (word, group) pair, the first N distinct captions (by caption hash)
in (path, row) order over the whole corpus (engine.captions.reduce.examples). Each file offers
its own first N distinct captions of each pair (engine.captions.kernel.keep_examples); that is
enough: a caption that is not among its file's first N has N distinct captions before it.

Across files the same argument prunes: a candidate with N other distinct captions before it,
among those already stored, can never be chosen, whatever files come later. ``ExampleFrontier``
keeps each pair's first N distinct (position, hash) over the stored candidates and admits a new
candidate only if it enters them. Once the first files of a corpus have filled most pairs,
nearly every later candidate is dropped (one vectorised comparison) before it reaches the
database.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

ROW_BITS = 32  # a position is (path rank << ROW_BITS) | row, as in the reduce


class ExampleFrontier:
    """Per pair, the first ``depth`` distinct caption hashes by position among admitted
    candidates. Positions rank paths among every path the frontier will see (``paths``)."""

    def __init__(self, n_words: int, n_groups: int, depth: int, paths):
        self.n_words, self.depth = n_words, depth
        self.ranks = {path: rank for rank, path in enumerate(sorted(set(paths)))}
        self.count = np.zeros((n_words, n_groups), np.int64)
        self.positions = np.zeros((n_words, n_groups, max(depth, 1)), np.int64)
        self.hashes = np.zeros((n_words, n_groups, max(depth, 1)), np.uint64)

    @classmethod
    def of_database(cls, con, n_words: int, n_groups: int, depth: int, new_paths) -> ExampleFrontier:
        """The frontier of the candidates stored for done shards, ready for files at ``new_paths``."""
        done = dict(con.execute("SELECT shard_id, path FROM shards WHERE status = 'done'").fetchall())
        frontier = cls(n_words, n_groups, depth, list(done.values()) + list(new_paths))
        stored = con.sql('SELECT e.shard_id, e.word_term_id, e.group_term_id, e."row", e.caption_hash '
                         "FROM shard_examples e JOIN shards s USING (shard_id) WHERE s.status = 'done'").to_arrow_table()
        frontier.admit(stored, done)
        return frontier

    def admit(self, candidates: pa.Table, paths: dict[int, str]) -> pa.Table:
        """The candidates (columns shard_id, word_term_id, group_term_id, row, caption_hash, as in
        engine.captions.staging) that enter the frontier, which now includes them; ``paths``:
        the file of each shard id."""
        if not candidates.num_rows:
            return candidates
        shards, words = candidates["shard_id"].to_numpy(), candidates["word_term_id"].to_numpy()
        groups = candidates["group_term_id"].to_numpy() - self.n_words
        rows, hashes = candidates["row"].to_numpy(), candidates["caption_hash"].to_numpy()
        ids = np.unique(shards)
        ranks = np.array([self.ranks[paths[int(i)]] for i in ids], np.int64)[np.searchsorted(ids, shards)]
        positions = (ranks << ROW_BITS) | rows
        full = self.count[words, groups] >= self.depth
        keep = ~(full & (positions > self.positions[words, groups, self.depth - 1]))
        maybe = np.flatnonzero(keep)
        for i in maybe[np.lexsort((positions[maybe], groups[maybe], words[maybe]))].tolist():
            keep[i] = self._offer(words[i], groups[i], int(positions[i]), int(hashes[i]))
        return candidates.filter(pa.array(keep))

    def _offer(self, word: int, group: int, position: int, caption_hash: int) -> bool:
        """Put a candidate into its pair's first ``depth`` distinct; True if it is there now."""
        n = self.count[word, group]
        entries = list(zip(self.positions[word, group, :n].tolist(), self.hashes[word, group, :n].tolist()))
        seen, first = set(), []
        for entry in sorted(entries + [(position, caption_hash)]):  # each hash at its first position
            if entry[1] not in seen and len(first) < self.depth:
                seen.add(entry[1])
                first.append(entry)
        self.count[word, group] = len(first)
        for k, (kept_position, kept_hash) in enumerate(first):
            self.positions[word, group, k], self.hashes[word, group, k] = kept_position, kept_hash
        return (position, caption_hash) in first
