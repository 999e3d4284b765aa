"""The compiled inner loop of the caption scan (numba): bytes of captions in, counts out.

One pass over an Arrow string column's UTF-8 bytes. Each caption is first cut into runs of bytes
that may belong to tokens (ASCII letters and digits, any byte >= 0x80), eight bytes at a time with
word-wide bit tricks (SWAR) and no branch per byte. An ASCII run is a token,
lower-cased and hashed straight from the column; a run with other bytes is decoded code point by
code point and case-folded through the tables of engine.captions.charclass. Each token's hash
(8 bytes at a time, then mixed) passes a Bloom filter, and the survivors are looked up in an
open-addressing table of the vocabulary (the tokens of all surface forms; a hash hit is confirmed
byte for byte, so collisions cannot create matches). Surface forms of several tokens match
consecutive tokens. Each caption counts once per form and once per term; a caption with both a
taxonomy word and a group term adds one to each (word, group) pair. Captions with a word are
returned (row, caption hash, term ids), and the first few distinct captions of each pair (by
caption hash, in row order) as example candidates (pair, row). A HyperLogLog sketch of the
caption hashes estimates the number of distinct captions.

The caption hash is the hash of the caption's token sequence: two captions are "the same" when
they have the same tokens after case folding (punctuation and spacing aside).

This module imports numba; only the scan loads it. Everything here is internal to
engine.captions.matcher, which is the interface.
"""

from __future__ import annotations

import sys

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.cpython.unsafe.numbers import leading_zeros
from numba.extending import intrinsic

if sys.byteorder != "little":  # the 8-byte loads read a caption's bytes as little-endian words
    raise ImportError("the caption scan's kernel needs a little-endian CPU (x86-64, ARM64)")

HASH_SEED = np.uint64(0xCBF29CE484222325)
WORD_PRIME = np.uint64(0x9E3779B97F4A7C15)
HLL_BITS = 14  # 16,384 registers: about 0.8% standard error on the distinct-caption estimate
_U0 = np.uint64(0)
_U1 = np.uint64(1)
_HLL_SHIFT = np.uint64(64 - HLL_BITS)
_HLL_KEEP = np.uint64(HLL_BITS)
_HLL_GUARD = np.uint64(1 << (HLL_BITS - 1))
# The Bloom filter's layout, as engine.captions.matcher builds it (a test checks they agree; not
# imported: numba's cache would not notice a change in another module).
_BLOOM_SHIFT = np.uint64(54)  # top 10 bits pick one of 1,024 words
_BLOOM_BIT_SHIFT = np.uint64(48)  # the next 6 bits pick the bit
_SLOT_SHIFT = np.uint64(32)  # the table's slot: bits from 32 up
ONES = np.uint64(0xFFFFFFFFFFFFFFFF)
HIGH = np.uint64(0x8080808080808080)  # the top bit of each byte of a word
_LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)
BIT6 = np.uint64(0x4040404040404040)  # set in letters, clear in digits
_CASE = np.uint64(0x2020202020202020)


@njit(cache=True, nogil=True, inline="always")
def mix64(x):
    """splitmix64's finaliser: spreads the bits of a hash for the sketch, the filter and the table."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@njit(cache=True, nogil=True, inline="always")
def lookup(h, token, s, length, fold, vocab):
    """Vocabulary id of the token ``token[s:s+length]`` with hash ``h``, or -1. The token is
    compared eight bytes at a time (``vocab_bytes`` padded by 8) after ``lower_word(., fold)``."""
    slot_keys, slot_ids, vocab_offsets, vocab_bytes, _ = vocab
    mask = slot_keys.shape[0] - 1
    i = np.int64((h >> _SLOT_SHIFT) & np.uint64(mask))
    while True:
        tid = slot_ids[i]
        if tid < 0:
            return -1
        if slot_keys[i] == h:
            start = vocab_offsets[tid]
            if vocab_offsets[tid + 1] - start == length:
                diff = _U0
                for k in range(0, length, 8):
                    keep = ONES >> np.uint64(64 - 8 * min(8, length - k))
                    word = lower_word(load_word(token, s + k), fold)
                    diff |= (word ^ load_word(vocab_bytes, start + k)) & keep
                if diff == 0:
                    return tid
        i = (i + 1) & mask


@njit(cache=True, nogil=True, inline="always")
def maybe_vocabulary(bloom, h):
    """Bloom filter on the token hash (65,536 bits): False means certainly not a vocabulary
    token, so most tokens skip the table look-up."""
    return bloom[np.int64(h >> _BLOOM_SHIFT)] & (_U1 << ((h >> _BLOOM_BIT_SHIFT) & np.uint64(63))) != 0


@njit(cache=True, nogil=True, inline="always")
def decode(data, p, end):
    """(code point, next position) of the UTF-8 sequence at ``p``; -1 for an invalid byte."""
    b = np.int64(data[p])
    if b >= 0xF0:
        n, cp = 3, b & 0x07
    elif b >= 0xE0:
        n, cp = 2, b & 0x0F
    elif b >= 0xC0:
        n, cp = 1, b & 0x1F
    else:
        return -1, p + 1
    if p + n >= end:
        return -1, p + 1
    for k in range(1, n + 1):
        c = np.int64(data[p + k])
        if c & 0xC0 != 0x80:
            return -1, p + 1
        cp = (cp << 6) | (c & 0x3F)
    if cp >= 0x110000:
        return -1, p + 1
    return cp, p + n + 1


@njit(cache=True, nogil=True, inline="always")
def push(byte, buf, length, h, word):
    """Append a folded byte to the token: to ``buf`` (read back only by a look-up) and to the
    hash, built eight bytes at a time in a register (loading just-stored bytes as a word would
    stall the CPU). Returns the new (length, h, word)."""
    buf[length] = byte
    word |= np.uint64(byte) << np.uint64(8 * (length & 7))
    length += 1
    if length & 7 == 0:
        return length, (h ^ word) * WORD_PRIME, _U0
    return length, h, word


@njit(cache=True, nogil=True, inline="always")
def tokenize_range(data, start, end, tables, buf, vocab, tok_ids, ntok, caption_hash):
    """Tokenise ``data[start:end]`` code point by code point, appending each token's vocabulary
    id (-1: other) to ``tok_ids`` and its hash to the caption hash; return the new (ntok,
    caption_hash). A token's hash equals engine.captions.matcher.token_hash of its folded bytes."""
    ascii_fold, fold_offset, fold_length, fold_bytes = tables
    length, h, word = 0, HASH_SEED, _U0
    p = start
    while True:
        n = 0
        if p < end and data[p] < 0x80:  # ASCII: one table look-up per byte
            byte = ascii_fold[data[p]]
            p += 1
            if byte:
                length, h, word = push(byte, buf, length, h, word)
                continue
        elif p < end:
            cp, p = decode(data, p, end)
            n = 0 if cp < 0 else np.int64(fold_length[cp])
        if n:
            for k in range(fold_offset[cp], fold_offset[cp] + n):
                length, h, word = push(fold_bytes[k], buf, length, h, word)
            continue
        if length:
            if length & 7:
                h = (h ^ word) * WORD_PRIME
            h ^= np.uint64(length)
            tok_ids[ntok] = -1
            if maybe_vocabulary(vocab[4], h):
                tok_ids[ntok] = lookup(h, buf, 0, length, _U0, vocab)
            ntok += 1
            caption_hash = (caption_hash ^ h) * WORD_PRIME
            length, h, word = 0, HASH_SEED, _U0
        if p >= end:
            break
    return ntok, caption_hash


# --- eight bytes at a time (SWAR): per-byte results in the top bit of each byte ----------------
# Kept in this module: numba's cache only notices changes to the file of the cached function.



@intrinsic
def load_word(typingctx, data, p):
    """Bytes ``data[p:p+8]`` as one little-endian uint64 (one unaligned load; no bounds check)."""
    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        address = builder.gep(array.data, [args[1]])
        return builder.load(builder.bitcast(address, ir.IntType(64).as_pointer()), align=1)
    return types.uint64(data, p), codegen


def _bytes_between(lo, hi):
    """SWAR constants: adding each to a word of bytes below 0x80 sets a byte's top bit if the
    byte is >= lo, resp. > hi; so the top bit of the XOR of both sums marks lo <= byte <= hi."""
    return np.uint64((0x80 - lo) * 0x0101010101010101), np.uint64((0x7F - hi) * 0x0101010101010101)


_DIGIT = _bytes_between(0x30, 0x39)
_LETTER = _bytes_between(0x61, 0x7A)  # after OR-ing 0x20 into each byte


@njit(cache=True, nogil=True, inline="always")
def token_bytes(w):
    """SWAR: the top bit of each byte of ``w`` set where the byte may be part of a token: an
    ASCII letter or digit, or any byte >= 0x80."""
    x = w & _LOW7
    y = x | _CASE
    return (((x + _DIGIT[0]) ^ (x + _DIGIT[1])) | ((y + _LETTER[0]) ^ (y + _LETTER[1])) | w) & HIGH


@njit(cache=True, nogil=True, inline="always")
def spans(data, start, end, bounds):
    """Runs of ``token_bytes`` in a caption, found eight bytes at a time without a branch per
    byte: each run's start and end go to ``bounds``, alternating. A run is a token if it is
    ASCII; otherwise it holds zero or more tokens. Returns (boundary count, top bits of all
    bytes: 0 for ASCII). Reads up to 7 bytes past ``end``."""
    n, prev, high = _U0, _U0, _U0
    for p in range(start, end, 8):
        w = load_word(data, p)
        if end - p < 8:  # bytes past the caption are separators
            w &= ONES >> np.uint64(64 - 8 * (end - p))
        high |= w
        token = token_bytes(w)
        flips = token ^ ((token << np.uint64(8)) | prev)  # byte k starts or ends a run
        prev = token >> np.uint64(56)
        for k in range(8):
            bounds[n] = p + k  # kept only where a flip counts it
            n += (flips >> np.uint64(8 * k + 7)) & _U1
    bounds[n] = end  # a run reaching the end of a caption of 8k bytes
    return np.int64(n + (prev >> np.uint64(7))), high & HIGH


@njit(cache=True, nogil=True, inline="always")
def lower_word(w, fold):
    """SWAR lower case of eight ASCII letters and digits with ``fold`` = BIT6 (letters have
    bit 6 set, digits not); ``w`` unchanged with ``fold`` = 0."""
    return w | ((w & fold) >> _U1)


@njit(cache=True, nogil=True, inline="always")
def span_hash(data, s, e):
    """(hash, top bits) of the run ``data[s:e]``: if the top bits are 0, the run is an ASCII
    token and the hash is ``tokenize_range``'s, computed a word at a time, the last one masked."""
    h, high = HASH_SEED, _U0
    p = s
    while e - p > 8:
        w = load_word(data, p)
        h = (h ^ lower_word(w, BIT6)) * WORD_PRIME
        high |= w
        p += 8
    w = load_word(data, p) & (ONES >> np.uint64(64 - 8 * (e - p)))
    h = (h ^ lower_word(w, BIT6)) * WORD_PRIME
    return h ^ np.uint64(e - s), (high | w) & HIGH


@njit(cache=True, nogil=True, inline="always")
def tokenize(data, bounds, nspans, tables, buf, vocab, tok_ids, mixed):
    """Fill ``tok_ids`` with the vocabulary id (-1: other) of each token of the runs found by
    ``spans``; return (count, caption hash). ASCII runs are hashed from the column a word at a
    time; with ``mixed`` (a constant: False compiles that branch away), runs with other bytes go
    code point by code point."""
    ntok, caption_hash = 0, HASH_SEED
    for i in range(nspans):
        s, e = bounds[2 * i], bounds[2 * i + 1]
        h, high = span_hash(data, s, e)
        if mixed and high:
            ntok, caption_hash = tokenize_range(data, s, e, tables, buf, vocab, tok_ids, ntok,
                                                caption_hash)
            continue
        tok_ids[ntok] = -1
        if maybe_vocabulary(vocab[4], h):
            tok_ids[ntok] = lookup(h, data, s, e - s, BIT6, vocab)
        caption_hash = (caption_hash ^ h) * WORD_PRIME
        ntok += 1
    return ntok, mix64(caption_hash ^ np.uint64(ntok))


@njit(cache=True, nogil=True)  # not inlined: keeps the slow paths out of the ASCII loop
def tokenize_other(data, start, end, bounds, nspans, tables, buf, vocab, tok_ids):
    """``tokenize`` for a caption with non-ASCII bytes or at the very end of the column (no
    room for 8-byte loads: ``spans`` skipped, code point by code point)."""
    if end + 8 > data.shape[0]:
        ntok, caption_hash = tokenize_range(data, start, end, tables, buf, vocab, tok_ids, 0,
                                            HASH_SEED)
        return ntok, mix64(caption_hash ^ np.uint64(ntok))
    return tokenize(data, bounds, nspans, tables, buf, vocab, tok_ids, True)


@njit(cache=True, nogil=True, inline="always")
def match_forms(tok_ids, ntok, stamp, form_offsets, form_tokens, starts, form_term_offsets,
                form_term_ids, form_seen, term_seen, n_form, caption_terms):
    """Mark the forms found among the tokens; collect the caption's distinct terms. Return count.
    ``starts``: the forms starting with each token, all of them and the one-token ones (the only
    candidates when the next token is not in the vocabulary: most tokens, most forms skipped)."""
    first_offsets, first_forms, single_offsets, single_forms = starts
    nterms = 0
    for i in range(ntok):
        t = tok_ids[i]
        if t < 0:
            continue
        offsets, forms = (first_offsets, first_forms) if i + 1 < ntok and tok_ids[i + 1] >= 0 \
            else (single_offsets, single_forms)
        for k in range(offsets[t], offsets[t + 1]):
            f = forms[k]
            fs = form_offsets[f]
            fl = form_offsets[f + 1] - fs
            if i + fl > ntok or form_seen[f] == stamp:
                continue
            ok = True
            for j in range(1, fl):
                if tok_ids[i + j] != form_tokens[fs + j]:
                    ok = False
                    break
            if not ok:
                continue
            form_seen[f] = stamp
            n_form[f] += 1
            for m in range(form_term_offsets[f], form_term_offsets[f + 1]):
                term = form_term_ids[m]
                if term_seen[term] != stamp:
                    term_seen[term] = stamp
                    caption_terms[nterms] = term
                    nterms += 1
    return nterms


@njit(cache=True, nogil=True, inline="always")
def count_terms(caption_terms, nterms, n_words, n_term, n_pair):
    """Add the caption's terms and (word, group) pairs to the counters; return its word count."""
    words = 0
    for k in range(nterms):
        t = caption_terms[k]
        n_term[t] += 1
        if t < n_words:
            words += 1
    if 0 < words < nterms:
        for a in range(nterms):
            w = caption_terms[a]
            if w >= n_words:
                continue
            for b in range(nterms):
                g = caption_terms[b]
                if g >= n_words:
                    n_pair[w, g - n_words] += 1
    return words


@njit(cache=True, nogil=True, inline="always")
def keep_examples(caption_terms, nterms, n_words, caption_hash, row, kept, kept_hash, ex_pairs,
                  ex_rows, out_size):
    """Add the caption as an example candidate of each of its pairs that has fewer than
    ``kept_hash.shape[2]`` distinct captions so far and none with this caption hash."""
    depth = kept_hash.shape[2]
    for a in range(nterms):
        w = caption_terms[a]
        if w >= n_words:
            continue
        for b in range(nterms):
            g = caption_terms[b] - n_words
            if g < 0 or kept[w, g] >= depth:
                continue
            n = kept[w, g]
            seen = False
            for k in range(n):
                if kept_hash[w, g, k] == caption_hash:
                    seen = True
                    break
            if seen:
                continue
            kept_hash[w, g, n] = caption_hash
            kept[w, g] = n + 1
            i = out_size[2]
            ex_pairs[i, 0] = w
            ex_pairs[i, 1] = g + n_words
            ex_rows[i] = row
            out_size[2] = i + 1


@njit(cache=True, nogil=True, inline="always")
def add_to_sketch(sketch, x):
    """HyperLogLog: the top bits of ``x`` pick a register, which keeps the highest rank (leading
    zeros + 1) of the remaining bits seen; the guard bit caps the rank."""
    index = x >> _HLL_SHIFT
    rank = leading_zeros((x << _HLL_KEEP) | _HLL_GUARD) + _U1
    if sketch[index] < rank:
        sketch[index] = rank


@njit(cache=True, nogil=True)
def scan_rows(data, offsets, start, stop, row_base, tables, vocab, forms, counters, scratch, out):
    """Scan rows ``start:stop`` of one string column; return the first row not scanned.

    Stops early (returning that row) when the output arrays are full; the caller grows them and
    calls again. ``tables``, ``vocab``, ``forms``, ``counters``, ``scratch``, ``out`` are tuples
    of arrays (see engine.captions.matcher)."""
    form_offsets, form_tokens, starts, form_term_offsets, form_term_ids, n_words = forms
    n_form, n_term, n_pair, sketch, kept, kept_hash = counters
    buf, tok_ids, caption_terms, form_seen, term_seen = scratch
    out_rows, out_hash, out_term_offsets, out_terms, ex_pairs, ex_rows, out_size = out
    n_terms_total = n_term.shape[0]
    bounds = np.empty(buf.shape[0], np.int64)  # room for every run boundary of a caption
    most_pairs = n_words * (n_terms_total - n_words)  # new example candidates of one caption, at most
    for r in range(start, stop):
        if (out_size[0] >= out_rows.shape[0] or out_size[1] + n_terms_total > out_terms.shape[0]
                or out_size[2] + most_pairs > ex_rows.shape[0]):
            return r
        s, e = offsets[r], offsets[r + 1]
        n, high = spans(data, s, e, bounds) if e + 8 <= data.shape[0] else (0, HIGH)
        if high == 0:  # pure ASCII: the fast path alone
            ntok, caption_hash = tokenize(data, bounds, n >> 1, tables, buf, vocab, tok_ids,
                                          False)
        else:
            ntok, caption_hash = tokenize_other(data, s, e, bounds, n >> 1, tables, buf,
                                                vocab, tok_ids)
        add_to_sketch(sketch, caption_hash)
        stamp = row_base + r
        nterms = match_forms(tok_ids, ntok, stamp, form_offsets, form_tokens, starts,
                             form_term_offsets, form_term_ids, form_seen, term_seen,
                             n_form, caption_terms)
        if nterms == 0 or count_terms(caption_terms, nterms, n_words, n_term, n_pair) == 0:
            continue
        keep_examples(caption_terms, nterms, n_words, caption_hash, r, kept, kept_hash, ex_pairs,
                      ex_rows, out_size)
        k = out_size[0]
        out_rows[k] = r
        out_hash[k] = caption_hash
        base = out_size[1]
        for j in range(nterms):
            out_terms[base + j] = caption_terms[j]
        out_size[1] = base + nterms
        out_term_offsets[k + 1] = base + nterms
        out_size[0] = k + 1
    return stop
