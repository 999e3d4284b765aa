"""The compiled inner loop of the caption scan (numba): bytes of captions in, counts out.

One pass over an Arrow string column's UTF-8 bytes: decode code points, case-fold them through
the tables of engine.captions.charclass, hash each token (8 bytes at a time, then mixed), pass
it through a Bloom filter and look the survivors up in an open-addressing table of the
vocabulary (the tokens of all surface forms; a hash hit is confirmed byte by byte, so collisions
cannot create matches). Surface forms of several tokens match
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

import numpy as np
from numba import njit

HASH_SEED = np.uint64(0xCBF29CE484222325)
WORD_PRIME = np.uint64(0x9E3779B97F4A7C15)
HLL_BITS = 14  # 16,384 registers: about 0.8% standard error on the distinct-caption estimate
_U0 = np.uint64(0)
_U1 = np.uint64(1)
_TOP_BIT = np.uint64(1 << 63)
_HLL_SHIFT = np.uint64(64 - HLL_BITS)
_HLL_KEEP = np.uint64(HLL_BITS)
_HLL_GUARD = np.uint64(1 << (HLL_BITS - 1))
BLOOM_WORDS = 1024  # 64-bit words: 65,536 bits
_BLOOM_SHIFT = np.uint64(54)  # top 10 bits pick the word
_BLOOM_BIT = np.uint64(63)  # low 6 bits pick the bit


@njit(cache=True, nogil=True, inline="always")
def mix64(x):
    """splitmix64's finaliser: spreads the bits of a hash for the sketch, the filter and the table."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@njit(cache=True, nogil=True, inline="always")
def lookup(h, buf, length, slot_keys, slot_ids, vocab_offsets, vocab_bytes):
    """Vocabulary id of the token in ``buf[:length]`` with hash ``h``, or -1."""
    mask = slot_keys.shape[0] - 1
    i = np.int64(h & np.uint64(mask))
    while True:
        tid = slot_ids[i]
        if tid < 0:
            return -1
        if slot_keys[i] == h:
            start = vocab_offsets[tid]
            if vocab_offsets[tid + 1] - start == length:
                same = True
                for k in range(length):
                    if vocab_bytes[start + k] != buf[k]:
                        same = False
                        break
                if same:
                    return tid
        i = (i + 1) & mask


@njit(cache=True, nogil=True, inline="always")
def maybe_vocabulary(bloom, h):
    """Bloom filter on the token hash (65,536 bits): False means certainly not a vocabulary
    token, so most tokens skip the table look-up."""
    return bloom[np.int64(h >> _BLOOM_SHIFT)] & (_U1 << (h & _BLOOM_BIT)) != 0


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
def tokenize(data, start, end, ascii_fold, fold_offset, fold_length, fold_bytes, buf,
             slot_keys, slot_ids, vocab_offsets, vocab_bytes, bloom, tok_ids):
    """Fill ``tok_ids`` with the vocabulary id (-1: other) of each token; return (count, hash).
    A token's hash equals engine.captions.matcher.token_hash of its folded bytes."""
    ntok, length, h, word = 0, 0, HASH_SEED, _U0
    caption_hash = HASH_SEED
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
            h = mix64(h ^ np.uint64(length))
            tok_ids[ntok] = -1
            if maybe_vocabulary(bloom, h):
                tok_ids[ntok] = lookup(h, buf, length, slot_keys, slot_ids, vocab_offsets, vocab_bytes)
            ntok += 1
            caption_hash = (caption_hash ^ h) * WORD_PRIME
            length, h, word = 0, HASH_SEED, _U0
        if p >= end:
            break
    return ntok, mix64(caption_hash ^ np.uint64(ntok))


@njit(cache=True, nogil=True, inline="always")
def match_forms(tok_ids, ntok, stamp, form_offsets, form_tokens, first_offsets, first_forms,
                form_term_offsets, form_term_ids, form_seen, term_seen, n_form, caption_terms):
    """Mark the forms found among the tokens; collect the caption's distinct terms. Return count."""
    nterms = 0
    for i in range(ntok):
        t = tok_ids[i]
        if t < 0:
            continue
        for k in range(first_offsets[t], first_offsets[t + 1]):
            f = first_forms[k]
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
    index = x >> _HLL_SHIFT
    w = (x << _HLL_KEEP) | _HLL_GUARD
    rank = 1
    while w & _TOP_BIT == 0:
        rank += 1
        w = w << _U1
    if sketch[index] < rank:
        sketch[index] = rank


@njit(cache=True, nogil=True)
def scan_rows(data, offsets, start, stop, row_base, tables, vocab, forms, counters, scratch, out):
    """Scan rows ``start:stop`` of one string column; return the first row not scanned.

    Stops early (returning that row) when the output arrays are full; the caller grows them and
    calls again. ``tables``, ``vocab``, ``forms``, ``counters``, ``scratch``, ``out`` are tuples
    of arrays (see engine.captions.matcher)."""
    ascii_fold, fold_offset, fold_length, fold_bytes = tables
    slot_keys, slot_ids, vocab_offsets, vocab_bytes, bloom = vocab
    form_offsets, form_tokens, first_offsets, first_forms, form_term_offsets, form_term_ids, n_words = forms
    n_form, n_term, n_pair, sketch, kept, kept_hash = counters
    buf, tok_ids, caption_terms, form_seen, term_seen = scratch
    out_rows, out_hash, out_term_offsets, out_terms, ex_pairs, ex_rows, out_size = out
    n_terms_total = n_term.shape[0]
    most_pairs = n_words * (n_terms_total - n_words)  # new example candidates of one caption, at most
    for r in range(start, stop):
        if (out_size[0] >= out_rows.shape[0] or out_size[1] + n_terms_total > out_terms.shape[0]
                or out_size[2] + most_pairs > ex_rows.shape[0]):
            return r
        ntok, caption_hash = tokenize(data, offsets[r], offsets[r + 1], ascii_fold, fold_offset,
                                      fold_length, fold_bytes, buf, slot_keys, slot_ids,
                                      vocab_offsets, vocab_bytes, bloom, tok_ids)
        add_to_sketch(sketch, caption_hash)
        stamp = row_base + r
        nterms = match_forms(tok_ids, ntok, stamp, form_offsets, form_tokens, first_offsets,
                             first_forms, form_term_offsets, form_term_ids, form_seen, term_seen,
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
