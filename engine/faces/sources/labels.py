"""Raw dataset labels -> canonical group names, from the map in taxonomy/labels.csv.

Known datasets (FairFace, CFD) are mapped strictly: a value outside the dataset's vocabulary is an
error naming the allowed values. Free-form sources (folder, wds, embeddings) are mapped openly:
a column whose name is a known attribute (race, gender, age) and whose values are all known labels
of any dataset (or canonical names, or rows of a user's label map) is mapped to canonical groups;
a column with no known value keeps its own vocabulary, normalised (stripped, case-folded, spaces
to underscores); a column mixing known and unknown values is an error, since a typo would
otherwise become a group of its own.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path

import polars as pl

import taxonomy
from engine.errors import InputError
from engine.faces.sources.common import RESERVED, read_label_csv, require_columns

log = logging.getLogger(__name__)

LABEL_MAP = taxonomy.DATA_DIR / "labels.csv"
ATTRIBUTE_ALIASES = {"sex": "gender", "ethnicity": "race", "race7": "race"}


def normalise(text: str) -> str:
    """``" East  Asian "`` -> ``"east_asian"``: strip, case-fold, whitespace runs to underscores."""
    return re.sub(r"\s+", "_", text.strip().casefold())


@functools.cache
def label_map(path: Path = LABEL_MAP) -> pl.DataFrame:
    """A label map CSV (dataset, attribute, raw, group); ``dataset`` is optional in users' maps."""
    frame = read_label_csv(path)
    require_columns(frame, ("attribute", "raw", "group"), path)
    if "dataset" not in frame.columns:
        frame = frame.with_columns(dataset=pl.lit("user"))
    return frame.select("dataset", "attribute", "raw", "group").drop_nulls(["attribute", "raw", "group"])


def dataset_vocabulary(dataset: str, attribute: str) -> dict[str, str]:
    """Exact raw label -> canonical group for one known dataset."""
    rows = label_map().filter((pl.col("dataset") == dataset) & (pl.col("attribute") == attribute))
    return dict(rows.select("raw", "group").iter_rows())


def map_strict(raw: pl.Series, vocabulary: dict[str, str], where: str,
               keys: pl.Series | None = None) -> pl.Series:
    """Map raw labels exactly; unknown values raise InputError naming them and the allowed ones."""
    unknown = sorted(set(raw.drop_nulls().unique().to_list()) - set(vocabulary))
    if unknown:
        example = ""
        if keys is not None:
            first = keys.filter(raw.is_in(unknown)).head(1).to_list()
            example = f" (first at {first[0]})" if first else ""
        raise InputError(f"{where} has unknown value(s) {unknown}{example}; allowed: "
                         f"{', '.join(vocabulary)}")
    return raw.replace_strict(vocabulary, default=None, return_dtype=pl.Utf8)


def open_vocabulary(attribute: str, user_map: str | None = None) -> dict[str, str]:
    """Normalised raw label -> canonical group, over every dataset's labels for one attribute."""
    attribute = ATTRIBUTE_ALIASES.get(attribute, attribute)
    maps = [label_map()] + ([label_map(Path(user_map))] if user_map else [])
    vocabulary: dict[str, str] = {}
    for frame in maps:  # a user's rows come last and win
        rows = frame.filter(pl.col("attribute").map_elements(normalise, return_dtype=pl.Utf8) == attribute)
        for raw, group in rows.select("raw", "group").iter_rows():
            vocabulary[normalise(group)] = group
            vocabulary[normalise(raw)] = group
    return vocabulary


@functools.cache
def age_bins() -> tuple[tuple[int, str], ...]:
    """(lowest age, group) of FairFace's age bins, the canonical age groups, in order."""
    groups = dataset_vocabulary("fairface", "age").values()
    return tuple(sorted((int(re.match(r"\d+", g)[0]), g) for g in groups))


def age_bin(value: str) -> str | None:
    """The canonical age group of an age in years (``"34"`` -> ``"30-39"``); None if not a number."""
    try:
        years = float(value)
    except ValueError:
        return None
    if not math.isfinite(years) or years < 0:
        return None
    return [group for lowest, group in age_bins() if lowest <= years][-1]


def map_open(raw: pl.Series, attribute: str, where: str, user_map: str | None = None) -> tuple[pl.Series, str]:
    """Canonical groups of a free-form label column, and how they were found: "known" (known
    spellings), "binned" (ages in years, some or all, put in the canonical age bins) or "open"."""
    values = raw.drop_nulls().unique().sort().to_list()
    vocabulary = open_vocabulary(attribute, user_map)
    found = {v: vocabulary.get(normalise(v)) for v in values}
    binned = set()
    if ATTRIBUTE_ALIASES.get(attribute, attribute) == "age":
        binned = {v for v, group in found.items() if group is None and age_bin(v)}
        found.update({v: age_bin(v) for v in binned})
    known = [v for v in values if found[v]]
    if known and len(known) < len(values):
        unknown = [v for v in values if not found[v]]
        raise InputError(
            f"{where} mixes known {attribute} labels {known[:5]} with unknown value(s) {unknown[:10]}; "
            f"allowed: {', '.join(sorted(set(vocabulary.values())))} (or their dataset spellings"
            f"{'; or ages in years' if attribute == 'age' else ''}). Fix the values, or map them with a "
            "label map CSV (attribute,raw,group) via the label_map option (--label-map)")
    mode = "binned" if binned else "known" if known else "open"
    table = {v: (found[v] if known else normalise(v)) or None for v in values}
    return raw.replace_strict(table, default=None, return_dtype=pl.Utf8), mode


def attribute_name(column: str) -> str:
    return normalise(column)


def label_columns(labels: pl.DataFrame, wanted: Sequence[str] | None, origin: str,
                  taken: frozenset[str] = RESERVED) -> tuple[list[str], list[str]]:
    """Split label columns into attributes (``wanted``, default all) and extra columns."""
    names = {c: attribute_name(c) for c in labels.columns}
    clashes = sorted(c for c, n in names.items() if n in taken or n.endswith("_raw")
                     or list(names.values()).count(n) > 1)
    if clashes:
        raise InputError(f"{origin}: label column(s) {clashes} clash with the face table's own columns "
                         f"({', '.join(sorted(taken))}, *_raw) or with each other; rename them")
    if wanted is None:
        return list(names), []
    by_name = {n: c for c, n in names.items()}
    missing = [w for w in wanted if attribute_name(w) not in by_name]
    if missing:
        raise InputError(f"{origin}: no label column(s) {missing}; it has {list(names)}")
    attrs = [by_name[attribute_name(w)] for w in wanted]
    return attrs, [c for c in names if c not in attrs]


def canonicalise(base: pl.DataFrame, labels: pl.DataFrame, wanted: Sequence[str] | None, origin: str,
                 user_map: str | None = None) -> tuple[pl.DataFrame, list[str], dict[str, str]]:
    """Add to ``base`` (key, image, ...) an ``<attr>``/``<attr>_raw`` pair per attribute of the
    row-aligned free-form ``labels``, then the extra label columns; return it, the attribute
    names and how each was mapped ("known" | "open")."""
    attrs, extras = label_columns(labels, wanted, origin, RESERVED | set(base.columns))
    columns, modes = [], {}
    for column in attrs:
        name = attribute_name(column)
        raw = labels[column].cast(pl.Utf8)
        canonical, modes[name] = map_open(raw, name, f"{origin}: column {column!r}", user_map)
        columns += [canonical.alias(name), raw.alias(f"{name}_raw")]
        log.info("%s: %s labels mapped (%s vocabulary)", origin, name, modes[name])
    columns += [labels[c].alias(attribute_name(c)) for c in extras]
    return base.with_columns(columns), [attribute_name(c) for c in attrs], modes
