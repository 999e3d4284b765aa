"""ExampleFrontier against a brute-force pick: batches of candidates from files in any order."""

import numpy as np
import pyarrow as pa
import pytest

from engine.captions.evidence import ROW_BITS, ExampleFrontier


def first_distinct(candidates, depth):
    """Per pair, the first ``depth`` distinct hashes by position: {pair: [(position, hash)]}."""
    chosen = {}
    for pair, position, caption_hash in sorted(candidates):
        kept = chosen.setdefault(pair, [])
        if len(kept) < depth and caption_hash not in {h for _, h in kept}:
            kept.append((position, caption_hash))
    return chosen


def table(rows):
    names = ("shard_id", "word_term_id", "group_term_id", "row", "caption_hash")
    types = (pa.int32(), pa.int32(), pa.int32(), pa.int64(), pa.uint64())
    return pa.table({name: pa.array([r[k] for r in rows], kind) for k, (name, kind) in enumerate(zip(names, types))})


@pytest.mark.parametrize("seed", range(40))
def test_admitted_candidates_are_exactly_those_that_enter_the_first_distinct(seed):
    rng = np.random.default_rng(seed)
    n_words, n_groups, depth = int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(1, 4))
    paths = [f"part-{i}.parquet" for i in range(int(rng.integers(1, 6)))]
    hashes = [1, 7, 2**63 + 5, 2**64 - 1]  # equal hashes: the same caption; the top bit set too
    frontier = ExampleFrontier(n_words, n_groups, depth, paths)
    admitted = []  # (pair, position, hash) of every admitted candidate so far
    for files in np.array_split(rng.permutation(len(paths)), int(rng.integers(1, len(paths) + 1))):
        rows = {}
        for shard in files.tolist():
            for _ in range(int(rng.integers(0, 12))):
                key = (shard, int(rng.integers(0, n_words)), n_words + int(rng.integers(0, n_groups)),
                       int(rng.integers(0, 20)))
                rows[key] = key + (hashes[int(rng.integers(0, len(hashes)))],)
        batch = [((w, g), (shard << ROW_BITS) | row, h) for shard, w, g, row, h in rows.values()]
        entering = first_distinct(admitted + batch, depth)
        expected = sorted(c for c in batch if (c[1], c[2]) in entering.get(c[0], []))
        kept = frontier.admit(table(list(rows.values())), dict(enumerate(paths))).to_pylist()
        got = sorted(((r["word_term_id"], r["group_term_id"]), (r["shard_id"] << ROW_BITS) | r["row"],
                      r["caption_hash"]) for r in kept)
        assert got == expected
        admitted += got
    final = first_distinct(admitted, depth)  # the frontier holds the first distinct of all
    for (word, group), kept in final.items():
        n = frontier.count[word, group - n_words]
        assert list(zip(frontier.positions[word, group - n_words, :n].tolist(),
                        frontier.hashes[word, group - n_words, :n].tolist())) == kept
