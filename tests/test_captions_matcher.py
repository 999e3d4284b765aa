"""The compiled matcher against the independent Python oracle (tests/helpers_captions.py)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from engine.captions.matcher import Counts, Matcher, distinct_estimate
from engine.captions.terms import build_terms
from helpers_captions import lexicon_csv, oracle_counts
from taxonomy.lexicon import load_lexicon

WORDS = pl.DataFrame({  # tokens of 1-16 bytes: the hash takes 8 at a time; non-ASCII folding
    "category": ["occupation", "occupation", "occupation", "behavioral", "appearance", "occupation",
                 "education", "occupation"],
    "word": ["nurse", "Police Officer", "delivery man", "well-spoken", "old", "CEO",
             "underrepresented", "Café Owner"],
    "pos": ["noun", "noun", "noun", "adjective", "adjective", "noun", "adjective", "noun"]})
LEXICON_ROWS = [
    ("context", "person", "woman", "noun", 0, ""), ("context", "person", "man", "noun", 0, ""),
    ("context", "person", "person", "noun", 0, ""),
    ("race", "black", "black", "adjective", 1, "person"), ("race", "black", "african american", "noun", 0, ""),
    ("race", "white", "white", "adjective", 1, "person"),
    ("gender", "female", "woman", "noun", 0, ""), ("gender", "female", "she", "pronoun", 1, ""),
    ("gender", "male", "man", "noun", 0, ""), ("age", "old", "old", "adjective", 1, "person"),
]
VOCABULARY = ["nurse", "nurses", "Nurse's", "police", "officer", "officers", "delivery", "man", "men",
              "MEN", "woman", "Women", "womanly", "Germany", "human", "black", "Black", "white",
              "african", "American", "african-american", "well", "spoken", "WELL-SPOKEN", "old",
              "person", "people", "she", "CEO", "ceos", "the", "a", "photo", "of", "in", "dress",
              "shoes", "car", "café", "CAFÉ", "cafe\u0301", "owners", "ΟΔΟΣ", "東京", "2020", "🙂",
              "it's", "new", "UNDERREPRESENTED", "underrepresente", "under-represented"]
SEPARATORS = [" ", "  ", ", ", "-", "/", "\n", "...", "_", "'", " — ", "\u00a0", ""]


@pytest.fixture(scope="module")
def termset(tmp_path_factory):
    lexicon = load_lexicon(str(lexicon_csv(tmp_path_factory.mktemp("lex") / "lex.csv", LEXICON_ROWS)))
    return build_terms(WORDS, lexicon)


def random_captions(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    captions = []
    for _ in range(n):
        words = rng.choice(VOCABULARY, size=rng.integers(0, 12))
        seps = rng.choice(SEPARATORS, size=len(words))
        captions.append("".join(w + s for w, s in zip(words, seps)))
    return captions


def scan(termset, captions, batches=1) -> tuple[Counts, list]:
    matcher = Matcher(termset.compile())
    matched = []
    for part in np.array_split(np.arange(len(captions)), batches):
        column = pa.array([captions[i] for i in part], pa.large_string())
        found = matcher.scan(column)
        lists = found.term_lists().to_pylist()
        matched += [(int(part[r]), int(h), sorted(t)) for r, h, t in zip(found.rows, found.caption_hash, lists)]
    return matcher.counts, matched


def as_arrays(termset, oracle) -> dict[str, np.ndarray]:
    n_forms, n_terms, n_words = termset.forms.height, termset.terms.height, termset.n_words
    forms, terms = np.zeros(n_forms, np.int64), np.zeros(n_terms, np.int64)
    pairs = np.zeros((n_words, n_terms - n_words), np.int64)
    for f, n in oracle["forms"].items():
        forms[f] = n
    for t, n in oracle["terms"].items():
        terms[t] = n
    for (w, g), n in oracle["pairs"].items():
        pairs[w, g - n_words] = n
    return {"n_form": forms, "n_term": terms, "n_pair": pairs}


@pytest.mark.parametrize("seed, batches", [(0, 1), (1, 3)])
def test_counts_equal_the_oracle_on_random_captions(termset, seed, batches):
    captions = random_captions(3000, seed)
    counts, matched = scan(termset, captions, batches)
    oracle = oracle_counts(captions, termset)
    expected = as_arrays(termset, oracle)
    assert counts.n_captions == len(captions)
    for name, array in expected.items():
        np.testing.assert_array_equal(getattr(counts, name), array, err_msg=name)
    assert expected["n_pair"].sum() > 100  # the corpus does plant co-occurrences
    n_words = termset.n_words
    with_word = [(i, sorted(terms)) for i, terms in enumerate(oracle["captions"])
                 if any(t < n_words for t in terms)]
    assert [(m[0], m[2]) for m in matched] == with_word


def test_the_kernel_reads_the_bloom_filter_the_matcher_builds():
    from engine.captions import kernel, matcher

    assert int(kernel._BLOOM_SHIFT) == matcher.BLOOM_SHIFT
    assert int(kernel._BLOOM_BIT_SHIFT) == matcher.BLOOM_BIT_SHIFT
    assert int(kernel._SLOT_SHIFT) == matcher.SLOT_SHIFT
    assert 1 << (64 - matcher.BLOOM_SHIFT) == matcher.BLOOM_WORDS


def noisy_captions(n: int, seed: int) -> list[str]:
    """Vocabulary words in random case glued to letters and digits (tokens of 1-40 bytes: the
    8-byte word paths and their edges), punctuation, control bytes, accents and other scripts."""
    rng = np.random.default_rng(seed)
    pieces = [" ", ",", "-", "'", "@", "[", "`", "{", "/", ":", "\x7f", "\x00", "é", "É", "ß", "\u0301",
              "日本", "ΟΔΟΣ", "🙂"]
    captions = []
    for _ in range(n):
        parts = []
        for _ in range(rng.integers(0, 12)):
            kind = rng.random()
            if kind < 0.5:
                word = str(rng.choice(VOCABULARY))
                parts.append("".join(c.upper() if rng.random() < 0.3 else c for c in word))
            elif kind < 0.8:
                parts.append("".join(rng.choice(list("abcxyzABCXYZ0123456789"), size=rng.integers(1, 41))))
            else:
                parts.append(str(rng.choice(pieces)))
            parts.append(str(rng.choice(pieces[:10])) if rng.random() < 0.8 else "")
        captions.append("".join(parts))
    return captions


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noisy_captions_in_every_column_layout_equal_the_oracle(termset, seed):
    """string and large_string, sliced columns (offset > 0), and data buffers that end exactly at
    the last caption (the kernel reads 8 bytes at a time and must not run past them)."""
    captions = noisy_captions(400, seed)
    expected = as_arrays(termset, oracle_counts(captions, termset))
    for kind in (pa.string(), pa.large_string()):
        for start in (0, 3):
            column = pa.array(["pad"] * start + captions, kind).slice(start)
            tight = pa.array(column.to_pylist(), kind)  # no spare bytes after the last caption
            for layout in (column, tight):
                matcher = Matcher(termset.compile())
                matcher.scan(layout)
                for name, array in expected.items():
                    np.testing.assert_array_equal(getattr(matcher.counts, name), array, err_msg=name)


def term_names(termset, caption) -> set[str]:
    counts, _ = scan(termset, [caption])
    names = set()
    for row in termset.terms.filter(pl.Series(counts.n_term > 0)).iter_rows(named=True):
        names.add(row["word"] or f"{row['group']}:{row['variant'][0]}")
    return names


@pytest.mark.parametrize("caption, expected", [
    ("Woman in a red dress", {"female:u", "female:w"}),
    ("womanly shoes for Germany's human-made cars", set()),  # no "man" inside other words
    ("MEN, women & the police officers", {"male:u", "male:w", "female:u", "female:w", "Police Officer"}),
    ("black dress, white shoes", {"black:w", "white:w"}),  # colours: only with ambiguous words
    ("a Black woman and an old man", {"black:u", "black:w", "female:u", "female:w", "male:u",
                                      "male:w", "old", "old:u", "old:w"}),
    ("African-American nurse", {"black:u", "black:w", "nurse"}),
    ("well\u00a0spoken, she said", {"well-spoken", "female:w"}),
    ("deliverymen", set()),  # one token, not "delivery men"
    ("delivery men", {"delivery man", "male:u", "male:w"}),
    ("CEOs meet", {"CEO"}),
    ("UNDERREPRESENTED café OWNERS", {"underrepresented", "Café Owner"}),
    ("nurse nurse NURSE", {"nurse"}),  # a caption counts once per term
])
def test_planted_captions(termset, caption, expected):
    assert term_names(termset, caption) == expected


def test_nulls_empty_and_invalid_utf8_bytes_do_not_break_the_scan(termset):
    column = pa.array([None, "", "nurse", None, "a black man"], pa.large_string())
    counts = Matcher(termset.compile())
    found = counts.scan(column)
    assert counts.counts.n_captions == 5 and list(found.rows) == [2]
    # bytes that are not UTF-8 inside an Arrow buffer are separators, never a crash
    raw = b"nurse\xff\xfeman\xc3"
    column = pa.Array.from_buffers(pa.large_string(), 1, [None, pa.py_buffer(np.array([0, len(raw)], np.int64)),
                                                        pa.py_buffer(raw)])
    matcher = Matcher(termset.compile())
    found = matcher.scan(column)
    assert list(found.rows) == [0]
    assert matcher.counts.n_term[found.terms].all()


def test_a_long_caption_and_output_growth(termset):
    captions = ["nurse " * 5000 + "woman", *(["a nurse and a man"] * 5000)]
    counts, matched = scan(termset, captions)
    assert len(matched) == 5001 and counts.n_pair.sum() == 2 * 5001  # two variants of each group


def test_distinct_estimate_is_close_for_known_cardinalities(termset):
    for distinct in (50, 20000):
        captions = [f"caption number {i % distinct}" for i in range(40000)]
        counts, _ = scan(termset, captions)
        estimate = distinct_estimate(counts.sketch)
        assert abs(estimate - distinct) / distinct < 0.03


def test_counts_add_across_shards(termset):
    captions = random_captions(400, 5)
    whole, _ = scan(termset, captions)
    left, _ = scan(termset, captions[:150])
    right, _ = scan(termset, captions[150:])
    merged = left + right
    for name in ("n_form", "n_term", "n_pair", "sketch"):
        np.testing.assert_array_equal(getattr(merged, name), getattr(whole, name))
    assert merged.n_captions == whole.n_captions
