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
database; the rest are merged into their pairs with a few sorts, never one by one.
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
        maybe = np.flatnonzero(~(full & (positions > self.positions[words, groups, self.depth - 1])))
        keep = np.zeros(candidates.num_rows, bool)
        keep[self._enter(words[maybe] * self.count.shape[1] + groups[maybe], positions[maybe], hashes[maybe],
                         maybe)] = True
        return candidates.filter(pa.array(keep))

    def _enter(self, pairs, positions, hashes, index) -> np.ndarray:
        """Merge candidates (flat pair index, position, hash, their ``index``) into the stored
        first ``depth`` distinct of their pairs, all at once; return the ``index`` of those now
        there. The same as offering them one by one in position order: a candidate can only
        push out entries after it."""
        if not len(index):
            return index
        counts = self.count.reshape(self.count.size)  # views: pair index = word * groups + group
        stored_pos, stored_hash = self.positions.reshape(counts.size, -1), self.hashes.reshape(counts.size, -1)
        touched = np.unique(pairs)
        n = counts[touched]
        old_pairs = np.repeat(touched, n)
        slots = np.arange(len(old_pairs)) - np.repeat(np.cumsum(n) - n, n)
        pairs = np.concatenate([old_pairs, pairs])
        positions = np.concatenate([stored_pos[old_pairs, slots], positions])
        hashes = np.concatenate([stored_hash[old_pairs, slots], hashes])
        index = np.concatenate([np.full(len(old_pairs), -1, np.int64), index])
        by_hash = np.lexsort((positions, hashes, pairs))  # each hash at its first position in its pair
        p, h = pairs[by_hash], hashes[by_hash]
        first = np.r_[True, (p[1:] != p[:-1]) | (h[1:] != h[:-1])]
        distinct = by_hash[first]
        ordered = distinct[np.lexsort((positions[distinct], pairs[distinct]))]
        p = pairs[ordered]
        starts = np.flatnonzero(np.r_[True, p[1:] != p[:-1]])
        rank = np.arange(len(ordered)) - np.repeat(starts, np.diff(np.r_[starts, len(ordered)]))
        chosen, rank = ordered[rank < self.depth], rank[rank < self.depth]
        counts[touched] = np.bincount(pairs[chosen], minlength=len(counts))[touched]
        stored_pos[pairs[chosen], rank] = positions[chosen]
        stored_hash[pairs[chosen], rank] = hashes[chosen]
        entered = index[chosen]
        return entered[entered >= 0]  # stored entries carry -1
