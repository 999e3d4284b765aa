"""Tokens, surface forms, the lexicon file and the terms built from taxonomy + lexicon."""

from __future__ import annotations

import polars as pl
import pytest

from engine.captions.charclass import token_text, unicode_tables
from engine.captions.terms import build_terms, plural, term_forms
from engine.errors import InputError
from helpers_captions import lexicon_csv, oracle_tokens
from taxonomy.lexicon import load_lexicon

TRICKY = ["A Black WOMAN, the doctor!", "well-spoken/WELL spoken", "Straße ΟΔΟΣ café",
          "cafe\u0301 e\u0301te\u0301", "東京 2020s ½ x²", "don't_stop", "नमस्ते दुनिया", "İstanbul",
          "", "   ", "emoji 🙂 between🙂words", "ﬁne ǅemal"]


@pytest.mark.parametrize("text", TRICKY)
def test_tokens_are_case_folded_runs_of_letters_marks_and_digits(text):
    assert token_text(text) == oracle_tokens(text)


def test_the_compiled_tables_agree_with_the_reference_for_every_code_point():
    ascii_fold, offset, length, blob = unicode_tables()
    for cp in list(range(0, 0x3000)) + [0x1F642, 0x20000, 0xE0100, 0x10FFFD]:
        char = chr(cp)
        expected = "".join(token_text(char))
        got = bytes(blob[offset[cp]:offset[cp] + length[cp]]).decode("utf-8") if length[cp] else ""
        assert got == expected, hex(cp)
        if cp < 128:
            assert ascii_fold[cp] == (ord(expected) if expected else 0)


@pytest.mark.parametrize("singular, expected", [
    ("woman", "women"), ("man", "men"), ("person", "people"), ("child", "children"),
    ("policeman", "policemen"), ("businesswoman", "businesswomen"), ("human", "humans"),
    ("german", "germans"), ("lady", "ladies"), ("boy", "boys"), ("attourney", "attourneys"),
    ("boss", "bosses"), ("coach", "coaches"), ("monarch", "monarchs"), ("box", "boxes"),
    ("thief", "thieves"), ("chief", "chiefs"), ("hero", "heroes"), ("photo", "photos"),
    ("chinese", "chinese"), ("nurse", "nurses"), ("businessperson", "businesspeople")])
def test_english_plurals(singular, expected):
    assert plural(singular) == expected


def test_forms_pluralise_the_last_token_of_nouns_only():
    assert term_forms("Police Officer", "noun", exact=False) == [("police", "officer"), ("police", "officers")]
    assert term_forms("delivery man", "noun", exact=False)[1] == ("delivery", "men")
    assert term_forms("short", "adjective", exact=False) == [("short",)]
    assert term_forms("nurse", "noun", exact=True) == [("nurse",)]
    assert term_forms("well-spoken", "adjective", exact=False) == [("well", "spoken")]
    with pytest.raises(InputError, match="no letters or digits"):
        term_forms("--", "noun", exact=False)


def _forms(termset, **where) -> set[str]:
    links = termset.form_terms.join(termset.terms, on="term_id").join(termset.forms, on="form_id")
    return set(links.filter(**where)["form"])


def test_ambiguous_words_count_alone_only_with_ambiguous_and_in_context_always(tmp_path):
    lexicon = load_lexicon(str(lexicon_csv(tmp_path / "lex.csv", [
        ("context", "person", "woman", "noun", 0, ""), ("context", "person", "man", "noun", 0, ""),
        ("race", "black", "black", "adjective", 1, "person"),
        ("race", "black", "african american", "noun", 0, ""),
        ("gender", "female", "woman", "noun", 0, "")])))
    words = pl.DataFrame({"category": ["c"], "word": ["nurse"], "pos": ["noun"]})
    terms = build_terms(words, lexicon)
    strict = _forms(terms, group="black", variant="unambiguous")
    loose = _forms(terms, group="black", variant="with_ambiguous")
    assert strict == {"black woman", "black women", "black man", "black men", "african american",
                      "african americans"}
    assert loose == strict | {"black"}
    assert _forms(terms, word="nurse") == {"nurse", "nurses"}
    exact = build_terms(words, lexicon, exact_forms=True)
    assert _forms(exact, group="black", variant="unambiguous") == {"black woman", "black man",
                                                                   "african american"}


def test_default_lexicon_groups_and_the_shared_context_lists():
    lexicon = load_lexicon("default")
    groups = {f"{a}/{g}" for a, g in lexicon.groups().iter_rows()}
    assert {"race/white", "race/black", "race/asian", "race/indian", "race/latino_hispanic",
            "race/middle_eastern", "gender/male", "gender/female", "age/child", "age/old",
            "religion/muslim", "nationality/american"} <= groups
    black = lexicon.entries.filter(pl.col("term") == "black").row(0, named=True)
    assert black["ambiguous"] and black["context"] == "person"
    assert set(lexicon.contexts) == {"person", "adult"}


def test_a_user_lexicon_may_use_the_default_context_lists(tmp_path):
    path = lexicon_csv(tmp_path / "lex.csv", [("race", "white", "white", "adjective", 1, "person")])
    lexicon = load_lexicon(str(path))
    assert "woman" in [term for term, _ in lexicon.contexts["person"]]


@pytest.mark.parametrize("rows, header, message", [
    ([("race", "white")], ("axis", "group"), "missing column 'term'"),
    ([("race", "white", "white", "x")], ("axis", "group", "term", "colour"), "unknown column 'colour'"),
    ([("race", "", "white")], ("axis", "group", "term"), "empty group"),
    ([("race", "white", "white", "verb", 0, "")], None, "unknown pos 'verb'"),
    ([("race", "white", "white", "noun", "maybe", "")], None, "ambiguous must be 0 or 1"),
    ([("race", "white", "white", "noun", 0, "person")], None, "only applies to an ambiguous term"),
    ([("race", "white", "white", "noun", 1, "nobody")], None, "context list 'nobody' is not defined"),
    ([("race", "white", "White", "noun", 0, ""), ("race", "white", "white", "noun", 0, "")], None,
     "repeats in race/white"),
    ([("context", "person", "woman", "noun", 0, "")], None, "no group terms"),
])
def test_bad_lexicons_are_refused_naming_the_line(tmp_path, rows, header, message):
    path = lexicon_csv(tmp_path / "lex.csv", rows, **({"header": header} if header else {}))
    with pytest.raises(InputError, match=message):
        load_lexicon(str(path))


def test_a_missing_lexicon_or_non_utf8_file_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="neither 'default' nor an existing CSV"):
        load_lexicon(str(tmp_path / "absent.csv"))
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"axis,group,term\nrace,white,caf\xe9\n")
    with pytest.raises(InputError, match="not UTF-8"):
        load_lexicon(str(bad))


def test_terms_hash_changes_with_the_terms(tmp_path):
    words = pl.DataFrame({"category": ["c"], "word": ["nurse"], "pos": ["noun"]})
    lexicon = load_lexicon("default")
    assert build_terms(words, lexicon).sha256 == build_terms(words, lexicon).sha256
    assert build_terms(words, lexicon).sha256 != build_terms(words, lexicon, exact_forms=True).sha256
