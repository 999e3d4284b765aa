"""Prompt templates and the prompt table: taxonomy words -> the texts the model encodes.

A template set is a CSV (``id,pos,template``) in taxonomy/templates/ or a user's path. ``pos`` is
adjective, noun or any; ``template`` holds ``{word}`` once and optionally ``{article}`` (or
``{Article}``, capitalised) directly before it, filled with "a" or "an" by the word's sound.
Several templates for one word are either averaged ("ensemble": the mean of their L2-normalised
embeddings, re-normalised, as open_clip's zero-shot classifier does) or run one by one ("each").
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from engine.errors import InputError

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE_POS = ("adjective", "noun", "any")
PLACEHOLDERS = ("word", "article", "Article")
Mode = Literal["ensemble", "each"]
MODES = ("ensemble", "each")
PROMPT_SCHEMA = {"prompt_id": pl.Int32, "query_id": pl.Int32, "category": pl.Utf8, "word": pl.Utf8,
                 "pos": pl.Utf8, "template_set": pl.Utf8, "template_id": pl.Utf8,
                 "template": pl.Utf8, "query_template": pl.Utf8, "text": pl.Utf8}

# Spellings whose first letter misleads: "a university", "an hour", "a one-off", "an unidentified".
_AN_SOUND = re.compile(r"^(hour|honest|honor|honour|heir|unid|unim|unin|x-)", re.IGNORECASE)
_A_SOUND = re.compile(r"^(uni|use|usu|ura|ure|uri|uro|uti|uku|ubiq|eu|ewe|one\b|once|ouija)", re.IGNORECASE)
_VOWEL_LETTER_NAMES = set("AEFHILMNORSX")  # letters whose name starts with a vowel sound: "an FBI"


@dataclass(frozen=True)
class Template:
    id: str
    pos: str  # adjective | noun | any
    text: str  # with {word} and optionally {article} / {Article}

    def render(self, word: str, article: str = "") -> str:
        article = article or indefinite_article(word)
        return self.text.format(word=word, article=article, Article=article.capitalize())


@dataclass(frozen=True)
class TemplateSet:
    name: str
    templates: tuple[Template, ...]
    source: str

    def for_pos(self, pos: str) -> tuple[Template, ...]:
        return tuple(t for t in self.templates if t.pos in (pos, "any"))

    def describe(self) -> dict:
        return {"name": self.name, "source": self.source,
                "templates": [{"id": t.id, "pos": t.pos, "template": t.text} for t in self.templates]}


def builtin_template_sets() -> list[str]:
    return sorted(p.stem for p in TEMPLATES_DIR.glob("*.csv"))


def load_templates(spec: str = "sobit") -> TemplateSet:
    """A built-in template set by name (see ``builtin_template_sets()``) or a CSV path."""
    path = TEMPLATES_DIR / f"{spec}.csv"
    if spec in builtin_template_sets():
        return TemplateSet(spec, _read_templates(path), f"taxonomy/templates/{path.name}")
    path = Path(spec)
    if not path.is_file():
        raise InputError(f"template set {spec!r} is neither a built-in set "
                         f"({', '.join(builtin_template_sets())}) nor an existing CSV file")
    return TemplateSet(path.stem, _read_templates(path), str(path))


def _read_templates(path: Path) -> tuple[Template, ...]:
    table = pl.read_csv(path, infer_schema_length=0)
    missing = [c for c in ("id", "pos", "template") if c not in table.columns]
    if missing:
        raise InputError(f"template file {path} lacks column(s) {missing}; expected id,pos,template")
    templates = []
    for line, (tid, pos, text) in enumerate(table.select("id", "pos", "template").iter_rows(), start=2):
        where = f"{path}:{line}"
        if not tid or pos not in TEMPLATE_POS or not text:
            raise InputError(f"{where}: need an id, a pos in {list(TEMPLATE_POS)} and a template")
        _check_template(text.strip(), where)
        templates.append(Template(tid.strip(), pos, text.strip()))
    keys = [(t.id, t.pos) for t in templates]
    if len(set(keys)) != len(keys):
        raise InputError(f"template file {path}: an (id, pos) pair appears twice")
    if not templates:
        raise InputError(f"template file {path} has no templates")
    return tuple(templates)


def _check_template(text: str, where: str) -> None:
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:
        raise InputError(f"{where}: malformed template {text!r}: {exc}") from exc
    unknown = [f for f in fields if f not in PLACEHOLDERS]
    if unknown or fields.count("word") != 1:
        raise InputError(f"{where}: template {text!r} must hold {{word}} exactly once and no other "
                         f"placeholder than {{article}} / {{Article}} (found {fields})")
    if re.search(r"\{[aA]rticle\}(?! \{word\})", text):
        raise InputError(f"{where}: in {text!r}, {{article}} must come directly before {{word}}")


def indefinite_article(word: str) -> str:
    """"a" or "an" by the sound of the word's start (spelling rules plus known exceptions)."""
    first = word.split(maxsplit=1)[0] if word.strip() else ""
    if not first:
        return "a"
    if len(first) > 1 and first.isupper() and first.isalpha():  # an acronym, read letter by letter
        return "an" if first[0] in _VOWEL_LETTER_NAMES else "a"
    if _AN_SOUND.match(first):
        return "an"
    if _A_SOUND.match(first):
        return "a"
    return "an" if first[0].lower() in "aeiou" else "a"


def build_prompts(words: pl.DataFrame, templates: TemplateSet, mode: Mode = "ensemble") -> pl.DataFrame:
    """One row per (word row, template) with the query it belongs to (schema PROMPT_SCHEMA).

    A query is one (category, word) in "ensemble" mode and one (category, word, template id) in
    "each" mode; ``query_template`` names it: the set name, or "<set>/<template id>".
    """
    if mode not in MODES:
        raise InputError(f"template mode must be one of {list(MODES)}, not {mode!r}")
    rows, queries = [], {}
    articles = words["article"] if "article" in words.columns else pl.Series([""] * words.height)
    for (category, word, pos), article in zip(words.select("category", "word", "pos").iter_rows(), articles):
        chosen = templates.for_pos(pos)
        if not chosen:
            raise InputError(f"template set {templates.name!r} has no template for pos {pos!r} "
                             f"(word {word!r} in {category!r})")
        for template in chosen:
            label = templates.name if mode == "ensemble" else f"{templates.name}/{template.id}"
            query_id = queries.setdefault((category, word, label), len(queries))
            rows.append((len(rows), query_id, category, word, pos, templates.name, template.id,
                         template.text, label, template.render(word, article or "")))
    return pl.DataFrame(rows, schema=PROMPT_SCHEMA, orient="row")


def query_vectors(prompt_vectors: np.ndarray, query_ids: np.ndarray) -> np.ndarray:
    """One unit vector per query: the mean of its prompts' L2-normalised vectors, re-normalised."""
    prompt_vectors = np.asarray(prompt_vectors, dtype=np.float32)
    norms = np.linalg.norm(prompt_vectors, axis=1, keepdims=True)
    unit = prompt_vectors / np.maximum(norms, np.finfo(np.float32).tiny)
    n_queries = int(query_ids.max()) + 1 if len(query_ids) else 0
    sums = np.zeros((n_queries, unit.shape[1]), dtype=np.float64)
    np.add.at(sums, query_ids, unit)
    return (sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def words_without_tokens(words: Sequence[str], tokenize: Callable[[list[str]], object]) -> list[str]:
    """The words a tokenizer turns into nothing (their tokens equal those of an empty string)."""
    words = list(dict.fromkeys(words))
    if not words:
        return []
    empty = np.asarray(tokenize([""]))[0]
    tokens = np.asarray(tokenize(words))
    return [w for w, row in zip(words, tokens) if np.array_equal(row, empty)]
