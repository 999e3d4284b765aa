"""What every face source shares: its options, its result, and the step that finishes a face table.

A source loader turns its layout into a polars frame with ``key``, ``image``, one ``<attr>`` and
``<attr>_raw`` pair per labelled attribute, and any extra columns; ``build_table`` then sorts it by
key, numbers the rows and checks the schema of engine.faces.table.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from engine import storage
from engine.errors import InputError
from engine.faces import table

log = logging.getLogger(__name__)

SPLITS = ("train", "val")
RATERS = ("us", "india")
CFD_EXPRESSIONS = ("N", "A", "F", "HC", "HO")  # neutral, angry, fear, happy closed / open mouth
ALL = "ALL"
FAILURE_SCHEMA = {"key": pl.Utf8, "image": pl.Utf8, "reason": pl.Utf8}
RESERVED = frozenset(table.BASE_COLUMNS)


def _as_tuple(value) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    return tuple(str(v).strip() for v in value if str(v).strip())


@dataclass(frozen=True)
class SourceOptions:
    split: Literal["train", "val"] = "val"  # fairface: train | val
    service_test: bool = False  # fairface: only the service_test subset
    expressions: tuple[str, ...] = ("N",)  # cfd: expression codes to keep ("all" keeps every one)
    norming: str | None = None  # cfd: path of the norming workbook to join on Model
    norming_raters: Literal["us", "india"] = "us"  # cfd: which CFD-INDIA norming sheet to join
    labels: str | None = None  # folder: label CSV (default DIR/labels.csv); fairface: label CSV
    attributes: tuple[str, ...] | None = None  # folder/wds/embeddings: label columns to audit
    label_map: str | None = None  # folder/wds/embeddings: CSV attribute,raw,group of extra mappings

    def __post_init__(self):
        if self.split not in SPLITS:
            raise InputError(f"split must be one of {list(SPLITS)}, not {self.split!r}")
        if self.norming_raters not in RATERS:
            raise InputError(f"norming_raters must be one of {list(RATERS)}, not {self.norming_raters!r}")
        expressions = tuple(e.upper() for e in _as_tuple(self.expressions))
        unknown = [e for e in expressions if e not in CFD_EXPRESSIONS and e != ALL]
        if unknown or not expressions:
            raise InputError(f"unknown CFD expression code(s) {unknown}; allowed: "
                             f"{', '.join(CFD_EXPRESSIONS)} or 'all'")
        object.__setattr__(self, "expressions", expressions)
        if self.attributes is not None:
            object.__setattr__(self, "attributes", _as_tuple(self.attributes))


@dataclass
class LoadedSource:
    faces: pl.DataFrame  # the face table (engine.faces.table)
    failures: pl.DataFrame  # key, image, reason: items rejected while reading labels
    description: dict  # for the manifest: kind, path, options, counts, label-file checksums
    vectors: np.ndarray | None = None  # precomputed vectors (embeddings: source only)
    extra: dict = field(default_factory=dict)


def failures_frame(rows: Sequence[tuple[str, str, str]] = ()) -> pl.DataFrame:
    """A failures table (key, image, reason) from (key, image, reason) tuples."""
    return pl.DataFrame(list(rows), schema=FAILURE_SCHEMA, orient="row")


def read_label_csv(path: Path) -> pl.DataFrame:
    """A label CSV as strings (empty cells null, cells stripped); InputError naming the file."""
    if not path.is_file():
        raise InputError(f"label file {path} not found")
    try:
        frame = pl.read_csv(path, infer_schema_length=0, encoding="utf8")
    except (pl.exceptions.PolarsError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable CSV file ({exc})") from exc
    frame = frame.rename({c: c.strip().lstrip("\ufeff") for c in frame.columns})
    stripped = [pl.col(c).str.strip_chars().replace("", None) for c in frame.columns]
    return frame.with_columns(stripped)


def require_columns(frame: pl.DataFrame, columns: Sequence[str], origin: Path | str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{origin}: missing column(s) {missing}; it has {frame.columns}")


def require_unique(values: pl.Series, origin: Path | str) -> None:
    """Every value present and none repeated (line numbers count the CSV header as line 1)."""
    empty = values.is_null().arg_true().head(3).to_list()
    if empty:
        raise InputError(f"{origin}: column {values.name!r} is empty on line(s) {[i + 2 for i in empty]}")
    duplicated = values.filter(values.is_duplicated()).unique().sort()
    if len(duplicated):
        raise InputError(f"{origin}: {len(duplicated)} value(s) of {values.name!r} occur more than once, "
                         f"e.g. {duplicated.head(3).to_list()}")


def join_paths(directory: Path, files: Sequence[str]) -> list[str]:
    """``directory/file`` for each file (absolute files stay as they are); fast on large lists."""
    base = str(directory)
    return [os.path.join(base, f) for f in files]


def existing_files(paths: Sequence[str]) -> list[bool]:
    """Which paths name existing entries, listing each directory once (fast on large datasets)."""
    listings: dict[str, set[str]] = {}
    found = []
    for path in paths:
        directory, _, name = path.rpartition(os.sep)
        if directory not in listings:
            try:
                listings[directory] = set(os.listdir(directory or "."))
            except OSError:
                listings[directory] = set()
        found.append(name in listings[directory])
    return found


def split_missing_images(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rows whose image file exists, and failures for the others."""
    present = pl.Series(existing_files(frame["image"].to_list()), dtype=pl.Boolean)
    missing = frame.filter(~present)
    failures = missing.select("key", "image", reason=pl.lit("image file not found"))
    return frame.filter(present), failures


def build_table(kind: str, frame: pl.DataFrame, attrs: Sequence[str], origin: str,
                failures: pl.DataFrame | None = None) -> pl.DataFrame:
    """Sort by key, number the rows and order the columns as engine.faces.table declares."""
    if frame.height == 0:
        why = ""
        if failures is not None and failures.height:
            reasons = failures["reason"].value_counts(sort=True).head(3).rows()
            why = f"; {failures.height} rejected (" + "; ".join(f"{n} x {r}" for r, n in reasons) + ")"
        raise InputError(f"{origin}: the source has no items{why}")
    labelled = [c for a in attrs for c in (a, f"{a}_raw")]
    extras = [c for c in frame.columns if c not in RESERVED and c not in labelled]
    faces = (frame.sort("key", maintain_order=True)
             .with_row_index("item_id")
             .with_columns(pl.col("item_id").cast(pl.Int64), source=pl.lit(kind))
             .select("item_id", "key", "image", "source", *labelled, *extras))
    return table.validate(faces, origin)


def describe(kind: str, path: str, faces: pl.DataFrame, failures: pl.DataFrame,
             options: dict, label_files: Sequence[Path] = (), **details) -> dict:
    """The manifest entry of a loaded source: what was read, with which options, and counts."""
    groups = {a: dict(sorted((str(g), n) for g, n in faces[a].value_counts().rows()))
              for a in table.attributes(faces)}
    return {
        "kind": kind,
        "path": path,
        "options": options,
        "count": faces.height,
        "failures": failures.height,
        "attributes": table.attributes(faces),
        "groups": groups,
        "label_files": {str(p): storage.sha256_file(p) for p in label_files},
        **details,
    }
