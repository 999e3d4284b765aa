"""Taxonomies: words by category, from the So-B-IT reconstruction or a user's own files.

A taxonomy is a table (category, word, pos, article), one row per (category, word). The same word
may sit in several categories (base So-B-IT has five such words), so rows are keyed by the pair.
``pos`` (adjective | noun) picks the prompt template; ``article`` ("a" | "an" | "" = automatic)
overrides the indefinite article where the spelling misleads.

User files: a CSV with a header naming some of ``category, word, pos, article`` (``word`` always;
``category`` unless the file sits in a directory, where it defaults to the file name), or a
directory of such CSVs and ``.txt`` files (one word per line, ``#`` comments; the category is the
file name). Errors name the file and line.
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from engine.errors import InputError

DATA_DIR = Path(__file__).resolve().parent
SOBIT_CSV = DATA_DIR / "sobit.csv"
SOBIT_VERSIONS = ("base", "ameliagmz", "broken_mirror")
COLUMNS = ("category", "word", "pos", "article")
POS_NAMES = {"adjective": "adjective", "adj": "adjective", "noun": "noun", "": "noun"}  # empty: noun
ARTICLES = ("a", "an", "")
SCHEMA = {"category": pl.Utf8, "word": pl.Utf8, "pos": pl.Utf8, "article": pl.Utf8}


@dataclass(frozen=True)
class Taxonomy:
    """A loaded taxonomy: its words and where they came from."""

    name: str  # "sobit:base", or the user's path
    words: pl.DataFrame  # category, word, pos, article (schema SCHEMA), in file order
    files: tuple[str, ...]

    @property
    def sha256(self) -> str:
        """A hash of the content (not of the files), stable across file layouts."""
        digest = hashlib.sha256()
        for row in self.words.iter_rows():
            digest.update(("\t".join(row) + "\n").encode("utf-8"))
        return digest.hexdigest()

    def describe(self) -> dict:
        return {"name": self.name, "files": list(self.files), "sha256": self.sha256,
                "rows": self.words.height, "words": self.words["word"].n_unique(),
                "categories": self.words["category"].unique(maintain_order=True).to_list()}


def load(spec: str = "sobit") -> Taxonomy:
    """``sobit`` / ``sobit:<version>`` (see taxonomy/README.md), a CSV file or a directory."""
    if spec == "sobit" or spec.startswith("sobit:"):
        return _load_sobit(spec.partition(":")[2] or "base")
    path = Path(spec)
    if path.is_dir():
        return _load_directory(path)
    if path.is_file():
        return Taxonomy(str(path), _frame(_read_csv(path, default_category=None)), (str(path),))
    raise InputError(f"taxonomy {spec!r} is neither 'sobit' / 'sobit:<version>' "
                     f"({', '.join(SOBIT_VERSIONS)}) nor an existing file or directory")


def load_taxonomy(spec: str = "sobit") -> pl.DataFrame:
    """Words by category as a polars DataFrame (category, word, pos)."""
    return load(spec).words.select("category", "word", "pos")


def _load_sobit(version: str) -> Taxonomy:
    if version not in SOBIT_VERSIONS:
        raise InputError(f"unknown So-B-IT version {version!r}; choose one of {list(SOBIT_VERSIONS)}")
    table = pl.read_csv(SOBIT_CSV, infer_schema_length=0).filter(pl.col(version) == "1")
    words = table.select(
        "category", "word", pos=pl.col("pos").fill_null("").replace("", "noun"), article=pl.lit(""))
    return Taxonomy(f"sobit:{version}", words, (f"taxonomy/{SOBIT_CSV.name}",))


def _load_directory(path: Path) -> Taxonomy:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".csv", ".txt"))
    if not files:
        raise InputError(f"taxonomy directory {path} has no .csv or .txt files")
    rows: list[tuple[str, str, str, str, str]] = []
    for file in files:
        read = _read_txt if file.suffix.lower() == ".txt" else _read_csv
        rows += read(file, default_category=file.stem)
    return Taxonomy(str(path), _frame(rows), tuple(str(f) for f in files))


def _read_txt(path: Path, default_category: str) -> list[tuple[str, str, str, str, str]]:
    with _open(path) as fh:
        lines = fh.read().splitlines()
    rows = []
    for line_no, line in enumerate(lines, start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            rows.append((default_category, _word(line, f"{path}:{line_no}"), "noun", "", f"{path}:{line_no}"))
    if not rows:
        raise InputError(f"{path}: the file has no words")
    return rows


def _read_csv(path: Path, default_category: str | None) -> list[tuple[str, str, str, str, str]]:
    with _open(path) as fh:
        reader = csv.reader(fh)
        header = [h.strip().lower() for h in next(reader, [])]
        _check_header(header, path, category_optional=default_category is not None)
        rows = []
        for cells in reader:
            where = f"{path}:{reader.line_num}"
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                raise InputError(f"{where}: expected {len(header)} fields ({', '.join(header)}), "
                                 f"found {len(cells)}")
            rows.append(_row(dict(zip(header, cells)), default_category, where))
    if not rows:
        raise InputError(f"{path}: the file has a header but no words")
    return rows


def _open(path: Path):
    try:
        return open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"cannot read taxonomy file {path}: {exc.strerror}") from exc


def _check_header(header: list[str], path: Path, category_optional: bool) -> None:
    if not header:
        raise InputError(f"{path}: the file is empty (expected a header: {', '.join(COLUMNS)})")
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise InputError(f"{path}:1: unknown column {unknown[0]!r}; allowed columns: {', '.join(COLUMNS)}")
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise InputError(f"{path}:1: column {repeated[0]!r} appears more than once")
    required = ("word",) if category_optional else ("category", "word")
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(f"{path}:1: missing column {missing[0]!r} (the header is {', '.join(header)})")


def _row(cells: dict[str, str], default_category: str | None, where: str) -> tuple[str, str, str, str, str]:
    category = _clean(cells.get("category", "")) or default_category
    if not category:
        raise InputError(f"{where}: empty category")
    pos = _clean(cells.get("pos", "")).lower()
    if pos not in POS_NAMES:
        raise InputError(f"{where}: unknown pos {pos!r}; allowed: adjective, noun (or empty for noun)")
    article = _clean(cells.get("article", "")).lower()
    if article not in ARTICLES:
        raise InputError(f"{where}: unknown article {article!r}; allowed: a, an (or empty for automatic)")
    return category, _word(cells["word"], where), POS_NAMES[pos], article, where


def _word(text: str, where: str) -> str:
    word = _clean(text)
    if not word:
        raise InputError(f"{where}: empty word")
    return word


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _frame(rows: list[tuple[str, str, str, str, str]]) -> pl.DataFrame:
    """The words table, after refusing duplicate (category, word) pairs (case-insensitive)."""
    first_seen: dict[tuple[str, str], str] = {}
    for category, word, _, _, where in rows:
        key = (category.casefold(), word.casefold())
        if key in first_seen:
            raise InputError(f"{where}: duplicate word {word!r} in category {category!r} "
                             f"(first at {first_seen[key]})")
        first_seen[key] = where
    return pl.DataFrame([r[:4] for r in rows], schema=SCHEMA, orient="row")
