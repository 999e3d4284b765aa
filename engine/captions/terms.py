"""Terms and their surface forms: taxonomy words and lexicon groups -> forms the matcher looks for.

Tokens are case-folded maximal runs of letters, marks and digits (engine.captions.charclass); a
form of several tokens matches consecutive tokens ("well-spoken" matches "well spoken" and
"Well, spoken"). Each term has surface forms:

- as written, and for nouns (taxonomy ``pos`` noun; lexicon ``pos`` noun) the plural of the last
  token by the English rules in ``plural`` ("police officer" -> "police officers", "man" -> "men");
  with ``exact_forms`` only the forms as written;
- for an ambiguous lexicon term with a context list: the term followed by each context noun (and
  its plural): "black" -> "black woman", "black women", "black people", ...

Terms: one per distinct taxonomy word (``kind`` word) and two per lexicon group (``kind`` group):
variant ``unambiguous`` (ambiguous terms count only inside their context forms) and variant
``with_ambiguous`` (they count alone too).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import polars as pl

from engine.captions.charclass import token_text
from engine.errors import InputError

VARIANTS = ("unambiguous", "with_ambiguous")
IRREGULAR = {"man": "men", "woman": "women", "person": "people", "child": "children",
             "foot": "feet", "tooth": "teeth", "mouse": "mice", "goose": "geese", "ox": "oxen",
             "wife": "wives", "housewife": "housewives", "thief": "thieves", "knife": "knives",
             "life": "lives", "half": "halves", "self": "selves", "wolf": "wolves", "leaf": "leaves",
             "elf": "elves", "calf": "calves", "shelf": "shelves", "loaf": "loaves",
             "hero": "heroes", "potato": "potatoes", "tomato": "tomatoes", "echo": "echoes",
             "alumnus": "alumni", "alumna": "alumnae", "criterion": "criteria", "cactus": "cacti"}
INVARIANT = {"sheep", "fish", "deer", "series", "species", "aircraft", "police", "staff", "people",
             "chinese", "japanese", "vietnamese", "portuguese", "swiss", "offspring", "personnel"}
MAN_EXCEPTIONS = {"human", "german", "roman", "shaman", "talisman", "caiman", "cayman", "ottoman",
                  "walkman", "doberman", "norman", "desman"}
CH_AS_K = {"monarch", "patriarch", "matriarch", "stomach", "epoch", "czech", "tech", "eunuch"}
PLURAL_POS = {"noun"}


def plural(token: str) -> str:
    """English plural of one (case-folded) token: irregular forms, then the regular rules."""
    if token in IRREGULAR:
        return IRREGULAR[token]
    if token in INVARIANT or not token.isalpha():
        return token
    if token.endswith("person"):
        return token[:-6] + "people"  # businessperson, salesperson
    if token.endswith("man") and token not in MAN_EXCEPTIONS and len(token) > 3:
        return token[:-3] + "men"  # policeman, businesswoman, handyman
    if token.endswith(("s", "x", "z", "sh")) or (token.endswith("ch") and token not in CH_AS_K):
        return token + "es"
    if token.endswith("y") and len(token) > 1 and token[-2] not in "aeiou":
        return token[:-1] + "ies"
    return token + "s"


def term_forms(term: str, pos: str, exact: bool) -> list[tuple[str, ...]]:
    """The token tuples a term matches: as written, plus the plural of its last token for nouns."""
    tokens = tuple(token_text(term))
    if not tokens:
        raise InputError(f"term {term!r} has no letters or digits to match")
    forms = [tokens]
    if not exact and pos in PLURAL_POS:
        plural_form = tokens[:-1] + (plural(tokens[-1]),)
        if plural_form != tokens:
            forms.append(plural_form)
    return forms


@dataclass(frozen=True)
class TermSet:
    """Every term, every surface form and which terms each form counts for."""

    terms: pl.DataFrame  # term_id, kind, word, axis, group, variant
    categories: pl.DataFrame  # word, category (taxonomy rows; a word may sit in several)
    forms: pl.DataFrame  # form_id, form (tokens joined by spaces), n_tokens
    form_terms: pl.DataFrame  # form_id, term_id, origin (written | plural | context)

    @property
    def n_words(self) -> int:
        return self.terms.filter(pl.col("kind") == "word").height

    @property
    def sha256(self) -> str:
        """Identity of the matching configuration: same hash, same counts for the same captions."""
        digest = hashlib.sha256()
        for frame in (self.terms, self.forms, self.form_terms):
            digest.update(json.dumps(frame.rows(), default=str).encode("utf-8"))
        return digest.hexdigest()

    def compile(self):
        """The kernel's arrays (engine.captions.matcher.CompiledTerms)."""
        from engine.captions.matcher import compile_terms

        mapping = self.form_terms.group_by("form_id").agg(pl.col("term_id").unique().sort())
        by_form = dict(mapping.iter_rows())
        forms = [tuple(f.split(" ")) for f in self.forms.sort("form_id")["form"]]
        terms = [by_form.get(i, []) for i in range(len(forms))]
        n_groups = self.terms.height - self.n_words
        return compile_terms(forms, terms, self.n_words, n_groups)


def build_terms(words: pl.DataFrame, lexicon, *, exact_forms: bool = False) -> TermSet:
    """Terms from a taxonomy table (category, word, pos) and a taxonomy.lexicon.Lexicon."""
    builder = _Builder()
    word_ids: dict[tuple[str, ...], int] = {}
    categories = []
    for category, word, pos in words.select("category", "word", "pos").iter_rows():
        forms = term_forms(word, pos or "noun", exact_forms)
        if forms[0] not in word_ids:
            word_ids[forms[0]] = builder.term("word", word, None, None, None)
            for k, form in enumerate(forms):
                builder.link(form, [word_ids[forms[0]]], "written" if k == 0 else "plural")
        categories.append((builder.terms[word_ids[forms[0]]][2], category))
    if not word_ids:
        raise InputError("the taxonomy has no words")
    contexts = {name: [f for term, pos in nouns for f in term_forms(term, pos, exact_forms)]
                for name, nouns in lexicon.contexts.items()}
    group_ids = {}
    for axis, group in lexicon.groups().iter_rows():
        group_ids[(axis, group)] = {v: builder.term("group", None, axis, group, v) for v in VARIANTS}
    for row in lexicon.entries.iter_rows(named=True):
        ids = group_ids[(row["axis"], row["group"])]
        both, loose = [ids[v] for v in VARIANTS], [ids["with_ambiguous"]]
        forms = term_forms(row["term"], row["pos"], exact_forms)
        for k, form in enumerate(forms):
            builder.link(form, loose if row["ambiguous"] else both, "written" if k == 0 else "plural")
        for noun in contexts.get(row["context"] or "", []):
            builder.link(forms[0] + noun, both, "context")
    return builder.done(pl.DataFrame(categories, schema=["word", "category"], orient="row"))


class _Builder:
    def __init__(self):
        self.terms: list[tuple] = []
        self.forms: dict[tuple[str, ...], int] = {}
        self.links: dict[tuple[int, int], str] = {}

    def term(self, kind, word, axis, group, variant) -> int:
        self.terms.append((len(self.terms), kind, word, axis, group, variant))
        return len(self.terms) - 1

    def link(self, form: tuple[str, ...], term_ids: list[int], origin: str) -> None:
        form_id = self.forms.setdefault(form, len(self.forms))
        for term_id in term_ids:
            self.links.setdefault((form_id, term_id), origin)

    def done(self, categories: pl.DataFrame) -> TermSet:
        terms = pl.DataFrame(self.terms, orient="row", schema={
            "term_id": pl.Int32, "kind": pl.Utf8, "word": pl.Utf8, "axis": pl.Utf8,
            "group": pl.Utf8, "variant": pl.Utf8})
        forms = pl.DataFrame([(i, " ".join(f), len(f)) for f, i in self.forms.items()], orient="row",
                             schema={"form_id": pl.Int32, "form": pl.Utf8, "n_tokens": pl.Int32})
        links = pl.DataFrame([(f, t, o) for (f, t), o in self.links.items()], orient="row",
                             schema={"form_id": pl.Int32, "term_id": pl.Int32, "origin": pl.Utf8})
        return TermSet(terms, categories, forms, links)
