"""Demographic lexicons for the caption scanner: which caption terms name which group.

``load_lexicon("default")`` reads ``lexicon.csv`` beside this file; ``load_lexicon(path)`` a
user's CSV. Columns (a header row names them, in any order):

| column    | required | meaning                                                                |
| --------- | -------- | ---------------------------------------------------------------------- |
| axis      | yes      | race, gender, age, religion, nationality (or your own); ``context``    |
|           |          | rows define context lists instead of groups                            |
| group     | yes      | the group id within the axis (white, female, old, ...)                 |
| term      | yes      | one surface form; several words match consecutive tokens               |
| pos       | no       | ``noun`` (default: its plural is matched too), ``plural``,             |
|           |          | ``adjective``, ``pronoun`` or ``other`` (matched as written)           |
| ambiguous | no       | 1: the term often means something else ("black" the colour, "indian"   |
|           |          | food): counted only in the results *with* ambiguous words              |
| context   | no       | a context list: the ambiguous word followed by one of its nouns        |
|           |          | ("black" + "woman") counts in both results                             |

A context list named by a user's file but not defined in it is taken from the default lexicon.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from engine.errors import InputError

LEXICON_CSV = Path(__file__).resolve().parent / "lexicon.csv"
REQUIRED = ("axis", "group", "term")
COLUMNS = REQUIRED + ("pos", "ambiguous", "context")
POS_VALUES = ("noun", "plural", "adjective", "pronoun", "other")
FLAGS = {"": False, "0": False, "1": True, "false": False, "true": True, "no": False, "yes": True}
CONTEXT_AXIS = "context"
SCHEMA = {"axis": pl.Utf8, "group": pl.Utf8, "term": pl.Utf8, "pos": pl.Utf8,
          "ambiguous": pl.Boolean, "context": pl.Utf8}


@dataclass(frozen=True)
class Lexicon:
    """Group terms (axis, group, term, pos, ambiguous, context) and the context lists they use."""

    name: str  # "default" or the user's path
    entries: pl.DataFrame  # one row per (axis, group, term); schema SCHEMA
    contexts: dict[str, tuple[tuple[str, str], ...]]  # list name -> ((term, pos), ...)

    @property
    def sha256(self) -> str:
        """A hash of the content: the entries and the context lists they use."""
        digest = hashlib.sha256()
        for row in self.entries.iter_rows():
            digest.update(("\t".join(map(str, row)) + "\n").encode("utf-8"))
        for name in sorted(self.contexts):
            digest.update(f"{name}\t{self.contexts[name]}\n".encode("utf-8"))
        return digest.hexdigest()

    def groups(self) -> pl.DataFrame:
        """The (axis, group) pairs, in file order."""
        return self.entries.select("axis", "group").unique(maintain_order=True)

    def describe(self) -> dict:
        return {"name": self.name, "sha256": self.sha256, "terms": self.entries.height,
                "groups": [f"{a}/{g}" for a, g in self.groups().iter_rows()],
                "contexts": {k: [t for t, _ in v] for k, v in self.contexts.items()}}


def load_lexicon(spec: str = "default") -> Lexicon:
    """The built-in lexicon (``default``) or a CSV file; errors name the file and line."""
    path = LEXICON_CSV if spec == "default" else Path(spec)
    if not path.is_file():
        raise InputError(f"lexicon {spec!r} is neither 'default' nor an existing CSV file")
    rows = _read_rows(path)
    contexts: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        if row["axis"] == CONTEXT_AXIS:
            contexts.setdefault(row["group"], []).append((row["term"], row["pos"]))
    entries = [row for row in rows if row["axis"] != CONTEXT_AXIS]
    if not entries:
        raise InputError(f"{path}: the lexicon has no group terms (only context rows)")
    used = {row["context"] for row in entries if row["context"]}
    missing = used - contexts.keys()
    if missing and path != LEXICON_CSV:
        defaults = load_lexicon("default").contexts
        contexts.update({name: list(defaults[name]) for name in missing & defaults.keys()})
    for row in entries:
        if row["context"] and row["context"] not in contexts:
            raise InputError(f"{row['where']}: context list {row['context']!r} is not defined; "
                             f"add rows '{CONTEXT_AXIS},{row['context']},<noun>' or use one of "
                             f"{sorted(contexts) or ['person', 'adult']}")
    frame = pl.DataFrame([{k: r[k] for k in SCHEMA} for r in entries], schema=SCHEMA)
    name = "default" if path == LEXICON_CSV else str(path)
    return Lexicon(name, frame, {k: tuple(v) for k, v in contexts.items() if k in used})


def _read_rows(path: Path) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [h.strip().lower() for h in next(reader, [])]
            _check_header(header, path)
            rows, seen = [], {}
            for cells in reader:
                if not any(c.strip() for c in cells):
                    continue
                where = f"{path}:{reader.line_num}"
                if len(cells) != len(header):
                    raise InputError(f"{where}: expected {len(header)} fields ({', '.join(header)}), "
                                     f"found {len(cells)}")
                row = _row(dict(zip(header, cells)), where)
                key = (row["axis"], row["group"], row["term"].casefold())
                if key in seen:
                    raise InputError(f"{where}: term {row['term']!r} repeats in {row['axis']}/"
                                     f"{row['group']} (first at {seen[key]})")
                seen[key] = where
                rows.append(row)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise InputError(f"cannot read lexicon {path}: {exc.strerror}") from exc
    if not rows:
        raise InputError(f"{path}: the lexicon has a header but no rows")
    return rows


def _check_header(header: list[str], path: Path) -> None:
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise InputError(f"{path}:1: unknown column {unknown[0]!r}; allowed: {', '.join(COLUMNS)}")
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise InputError(f"{path}:1: missing column {missing[0]!r} (a lexicon needs {', '.join(REQUIRED)})")


def _row(cells: dict[str, str], where: str) -> dict:
    row = {k: " ".join(cells.get(k, "").split()) for k in COLUMNS}
    for column in REQUIRED:
        if not row[column]:
            raise InputError(f"{where}: empty {column}")
    row["axis"], row["group"] = row["axis"].lower(), row["group"].lower()
    row["pos"] = row["pos"].lower() or "noun"
    if row["pos"] not in POS_VALUES:
        raise InputError(f"{where}: unknown pos {row['pos']!r}; allowed: {', '.join(POS_VALUES)}")
    flag = row["ambiguous"].lower()
    if flag not in FLAGS:
        raise InputError(f"{where}: ambiguous must be 0 or 1, not {row['ambiguous']!r}")
    row["ambiguous"] = FLAGS[flag]
    if row["context"] and not row["ambiguous"]:
        raise InputError(f"{where}: a context list only applies to an ambiguous term (set ambiguous=1)")
    row["where"] = where
    return row
