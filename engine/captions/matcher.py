"""Match surface forms in Arrow caption columns: compiled vocabulary, counters, matched rows.

``CompiledTerms`` is the vocabulary as flat numpy arrays (small and picklable, so it travels to
pool and Ray workers); ``Matcher`` scans string columns with the compiled kernel
(engine.captions.kernel) and accumulates ``Counts``, which add across batches and files.

Term ids: taxonomy words are ``0 .. n_words-1``; group terms follow (``n_words ..``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

BLOOM_WORDS = 1024  # 64-bit words (65,536 bits); engine.captions.kernel reads the same layout
BLOOM_SHIFT = 54  # a token hash's top 10 bits pick the word,
BLOOM_BIT_SHIFT = 48  # its next 6 bits the bit
SLOT_SHIFT = 32  # the vocabulary table's slot: the hash's bits from 32 up (a product's low bits
# depend only on the low bits of the token; its high bits on all of them)
HASH_SEED = 0xCBF29CE484222325
WORD_PRIME = 0x9E3779B97F4A7C15
MASK64 = (1 << 64) - 1


def token_hash(data: bytes) -> int:
    """The hash the kernel gives a token (engine.captions.kernel.tokenize), in plain Python:
    little-endian 8-byte words of its folded UTF-8 (the last zero-padded), multiplied in, then
    the length XOR-ed in. One multiply per 8 bytes and no finaliser: the filter and the table
    read the product's high bits, and each caption's hash is mixed once (kernel.tokenize)."""
    h = HASH_SEED
    padded = data + bytes(-len(data) % 8)
    for i in range(0, len(padded), 8):
        h = ((h ^ int.from_bytes(padded[i:i + 8], "little")) * WORD_PRIME) & MASK64
    return h ^ len(data)


@dataclass(frozen=True)
class CompiledTerms:
    """Forms as token-id sequences over a hashed vocabulary, and the terms each form counts for."""

    n_words: int
    n_groups: int
    slot_keys: np.ndarray  # uint64 token hash per slot (open addressing, power-of-two size)
    bloom: np.ndarray  # uint64 bits of the vocabulary's token hashes (engine.captions.kernel)
    slot_ids: np.ndarray  # int32 vocabulary id per slot, -1 empty
    vocab_offsets: np.ndarray  # int64, len(vocab) + 1, into vocab_bytes
    vocab_bytes: np.ndarray  # uint8, folded UTF-8 of every vocabulary token, then 8 zero bytes
    # (the kernel compares tokens eight bytes at a time)
    form_offsets: np.ndarray  # int32, n_forms + 1, into form_tokens
    form_tokens: np.ndarray  # int32 vocabulary ids
    first_offsets: np.ndarray  # int32, len(vocab) + 1: forms starting with each token
    first_forms: np.ndarray  # int32 form ids
    single_offsets: np.ndarray  # int32, len(vocab) + 1: the one-token forms of each token
    single_forms: np.ndarray  # int32 form ids (the only candidates when the next token is not
    # in the vocabulary)
    form_term_offsets: np.ndarray  # int32, n_forms + 1, into form_term_ids
    form_term_ids: np.ndarray  # int32 term ids

    @property
    def n_forms(self) -> int:
        return len(self.form_offsets) - 1

    @property
    def n_terms(self) -> int:
        return self.n_words + self.n_groups


def compile_terms(forms: list[tuple[str, ...]], form_terms: list[list[int]], n_words: int,
                  n_groups: int) -> CompiledTerms:
    """Compile forms (tuples of folded tokens) and their term ids into kernel arrays."""
    vocab: dict[str, int] = {}
    for tokens in forms:
        for token in tokens:
            vocab.setdefault(token, len(vocab))
    encoded = [token.encode("utf-8") for token in vocab]
    size = 1 << max(4, (4 * len(vocab)).bit_length())
    slot_keys = np.zeros(size, dtype=np.uint64)
    slot_ids = np.full(size, -1, dtype=np.int32)
    bloom = np.zeros(BLOOM_WORDS, dtype=np.uint64)
    for tid, data in enumerate(encoded):
        h = token_hash(data)
        slot = (h >> SLOT_SHIFT) & (size - 1)
        while slot_ids[slot] >= 0:
            slot = (slot + 1) & (size - 1)
        slot_keys[slot], slot_ids[slot] = h, tid
        bloom[h >> BLOOM_SHIFT] |= np.uint64(1 << ((h >> BLOOM_BIT_SHIFT) & 63))
    form_ids = [[vocab[t] for t in tokens] for tokens in forms]
    starts: list[list[int]] = [[] for _ in vocab]
    singles: list[list[int]] = [[] for _ in vocab]
    for f, ids in enumerate(form_ids):
        starts[ids[0]].append(f)
        if len(ids) == 1:
            singles[ids[0]].append(f)
    return CompiledTerms(
        n_words=n_words, n_groups=n_groups, slot_keys=slot_keys, bloom=bloom, slot_ids=slot_ids,
        vocab_offsets=_offsets(len(d) for d in encoded),
        vocab_bytes=np.frombuffer(b"".join(encoded) + bytes(8), dtype=np.uint8).copy(),
        form_offsets=_offsets(map(len, form_ids), np.int32),
        form_tokens=np.array([i for ids in form_ids for i in ids], dtype=np.int32),
        first_offsets=_offsets(map(len, starts), np.int32),
        first_forms=np.array([f for group in starts for f in group], dtype=np.int32),
        single_offsets=_offsets(map(len, singles), np.int32),
        single_forms=np.array([f for group in singles for f in group], dtype=np.int32),
        form_term_offsets=_offsets(map(len, form_terms), np.int32),
        form_term_ids=np.array([t for terms in form_terms for t in terms], dtype=np.int32))


def _offsets(lengths, dtype=np.int64) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(list(lengths), dtype=np.int64)]).astype(dtype)


@dataclass
class Counts:
    """Additive counts of one or more shards (``a + b`` merges; the sketch merges by maximum)."""

    n_captions: int
    n_form: np.ndarray  # int64 per form: captions containing it
    n_term: np.ndarray  # int64 per term: captions containing any of its forms
    n_pair: np.ndarray  # int64 [n_words, n_groups]: captions with both
    sketch: np.ndarray  # uint8 HyperLogLog registers of caption hashes

    @classmethod
    def zeros(cls, terms: CompiledTerms) -> Counts:
        from engine.captions.kernel import HLL_BITS

        return cls(0, np.zeros(terms.n_forms, np.int64), np.zeros(terms.n_terms, np.int64),
                   np.zeros((terms.n_words, terms.n_groups), np.int64),
                   np.zeros(1 << HLL_BITS, np.uint8))

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.n_captions + other.n_captions, self.n_form + other.n_form,
                      self.n_term + other.n_term, self.n_pair + other.n_pair,
                      np.maximum(self.sketch, other.sketch))


@dataclass(frozen=True)
class Matches:
    """Captions of one batch that contain at least one taxonomy word, and example candidates."""

    rows: np.ndarray  # int64 row within the batch
    caption_hash: np.ndarray  # uint64 hash of the caption's token sequence
    term_offsets: np.ndarray  # int64, len(rows) + 1, into terms
    terms: np.ndarray  # int32 term ids of each caption (words and groups)
    example_pairs: np.ndarray  # (e, 2) int32 (word term id, group term id) of each candidate
    example_rows: np.ndarray  # int64 row within the batch of each candidate

    def term_lists(self) -> pa.ListArray:
        return pa.ListArray.from_arrays(pa.array(self.term_offsets.astype(np.int32)),
                                        pa.array(self.terms))


class Matcher:
    """Scans caption columns with one vocabulary, accumulating counts over every call. With
    ``examples`` > 0 it also picks, over all its calls, the first ``examples`` distinct captions
    (by caption hash) of every (word, group) pair: each call returns those it added."""

    def __init__(self, terms: CompiledTerms, examples: int = 0):
        from engine.captions.charclass import unicode_tables

        self.terms = terms
        self.counts = Counts.zeros(terms)
        self._tables = unicode_tables()
        self._seen = (np.full(terms.n_forms, -1, np.int64), np.full(terms.n_terms, -1, np.int64))
        self._kept = (np.zeros((terms.n_words, terms.n_groups), np.int32),
                      np.zeros((terms.n_words, terms.n_groups, examples), np.uint64))
        self._rows_seen = 0

    def scan(self, column: pa.Array | pa.ChunkedArray) -> Matches:
        """Count one column of captions (nulls count as empty captions); return matched rows."""
        from engine.captions.kernel import scan_rows

        data, offsets = _buffers(column)
        n = len(offsets) - 1
        longest = int(np.diff(offsets).max()) if n else 0
        scratch = (np.zeros(3 * longest + 8, np.uint8),  # case folding grows text 3x at most
                   np.empty(longest + 2, np.int32), np.empty(self.terms.n_terms, np.int32)) + self._seen
        t, c = self.terms, self.counts
        vocab = (t.slot_keys, t.slot_ids, t.vocab_offsets, t.vocab_bytes, t.bloom)
        forms = (t.form_offsets, t.form_tokens, (t.first_offsets, t.first_forms, t.single_offsets, t.single_forms),
                 t.form_term_offsets, t.form_term_ids, t.n_words)
        counters = (c.n_form, c.n_term, c.n_pair, c.sketch) + self._kept
        capacity = max(1024, n // 8)
        out = _output_arrays(capacity, t)
        row = 0
        while row < n:
            row = scan_rows(data, offsets, row, n, self._rows_seen, self._tables, vocab, forms,
                            counters, scratch, out)
            if row < n:
                capacity *= 2
                out = _output_arrays(capacity, t, out)
        self._rows_seen += n
        c.n_captions += n
        rows, hashes, term_offsets, terms, example_pairs, example_rows, size = out
        return Matches(rows[:size[0]].copy(), hashes[:size[0]].copy(),
                       term_offsets[:size[0] + 1].copy(), terms[:size[1]].copy(),
                       example_pairs[:size[2]].copy(), example_rows[:size[2]].copy())


def _output_arrays(capacity: int, terms: CompiledTerms, previous=None) -> tuple:
    """Output arrays for ``capacity`` matched rows, keeping what ``previous`` already holds.
    Room for example candidates: ``capacity`` plus the most one caption can add."""
    examples = capacity + terms.n_words * terms.n_groups
    out = (np.empty(capacity, np.int64), np.empty(capacity, np.uint64),
           np.zeros(capacity + 1, np.int64), np.empty(capacity * 4 + terms.n_terms, np.int32),
           np.empty((examples, 2), np.int32), np.empty(examples, np.int64), np.zeros(3, np.int64))
    if previous is not None:
        rows, terms_used, examples_used = previous[-1]
        for new, old, used in zip(out[:-1], previous[:-1],
                                  (rows, rows, rows + 1, terms_used, examples_used, examples_used)):
            new[:used] = old[:used]
        out[-1][:] = previous[-1]
    return out


def _buffers(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(UTF-8 bytes, int64 offsets) of a string column; the bytes are not copied (``string``
    offsets are widened with numpy, cheaper than an Arrow cast); nulls become empty strings."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if column.null_count:
        column = pc.fill_null(column, "")
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = column.cast(pa.large_string())
    width = np.int64 if pa.types.is_large_string(column.type) else np.int32
    _, offsets_buffer, data_buffer = column.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=width)[column.offset:column.offset + len(column) + 1]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    return data, offsets.astype(np.int64, copy=False)


def distinct_estimate(registers: np.ndarray) -> float:
    """HyperLogLog estimate of the distinct caption hashes behind merged sketch registers
    (Flajolet et al. 2007, with linear counting for small counts)."""
    m = len(registers)
    alpha = 0.7213 / (1 + 1.079 / m)
    estimate = alpha * m * m / float(np.sum(np.ldexp(1.0, -registers.astype(np.int32))))
    zeros = int(np.count_nonzero(registers == 0))
    if estimate <= 2.5 * m and zeros:
        return m * float(np.log(m / zeros))
    return estimate
