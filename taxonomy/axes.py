"""Demographic axes: the canonical face-label groups, their coarsenings and caption-lexicon groups.

``axes.csv`` has one row per (attribute, group), in display order:

| column           | meaning                                                                  |
| ---------------- | ------------------------------------------------------------------------ |
| attribute        | face-table attribute (race, gender, age) or a coarsening (race4, age3)   |
| group            | canonical group name as the face sources write it (taxonomy/labels.csv)  |
| coarse_attribute | the coarsening this group folds into (race -> race4, age -> age3)        |
| coarse_group     | its group there; empty: no counterpart (the face counts as unlabelled)   |
| axis             | caption-lexicon axis (race, gender, age) for the provenance step         |
| lexicon_group    | ``<axis>/<group>`` of the caption lexicon (taxonomy/lexicon.csv)         |
"""

from __future__ import annotations

import functools
from pathlib import Path

import polars as pl

from engine.errors import InputError

AXES_CSV = Path(__file__).resolve().parent / "axes.csv"
AXES_COLUMNS = ("attribute", "group", "coarse_attribute", "coarse_group", "axis", "lexicon_group")


@functools.cache
def load_axes(path: Path = AXES_CSV) -> pl.DataFrame:
    """The axes table, checked: known columns, unique (attribute, group), coarse groups defined."""
    table = pl.read_csv(path, infer_schema_length=0).with_columns(pl.all().fill_null(""))
    missing = [c for c in AXES_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"axes file {path} lacks column(s) {missing}")
    repeated = table.filter(pl.len().over("attribute", "group") > 1)
    if not repeated.is_empty():
        raise InputError(f"axes file {path}: group {repeated.row(0, named=True)['group']!r} repeats")
    defined = set(table.select("attribute", "group").iter_rows())
    targets = table.filter(pl.col("coarse_group") != "").select("coarse_attribute", "coarse_group")
    undefined = [t for t in targets.iter_rows() if t not in defined]
    if undefined:
        raise InputError(f"axes file {path}: coarse group {undefined[0]} has no row of its own")
    return table.select(AXES_COLUMNS)


def group_order(attribute: str) -> list[str]:
    """Canonical groups of an attribute in display order (empty for attributes axes.csv lacks)."""
    rows = load_axes().filter(pl.col("attribute") == attribute)
    return rows["group"].to_list()


def coarsenings() -> dict[str, str]:
    """Coarse attribute -> the attribute it is derived from, e.g. {"race4": "race", "age3": "age"}."""
    rows = load_axes().filter(pl.col("coarse_attribute") != "")
    return dict(rows.select("coarse_attribute", "attribute").unique(maintain_order=True).iter_rows())


def coarse_map(coarse_attribute: str) -> dict[str, str | None]:
    """Base group -> coarse group (None: no counterpart) for one coarsening."""
    rows = load_axes().filter(pl.col("coarse_attribute") == coarse_attribute)
    return {g: (c or None) for g, c in rows.select("group", "coarse_group").iter_rows()}


def lexicon_groups() -> pl.DataFrame:
    """Face group -> caption-lexicon group: attribute, group, axis, lexicon_group (linked rows only)."""
    return load_axes().filter(pl.col("lexicon_group") != "").select(
        "attribute", "group", "axis", "lexicon_group")
