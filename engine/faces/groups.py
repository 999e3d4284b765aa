"""Attributes of a face table as integer group codes: labelled, coarsened, or intersected.

An attribute name is one of the face table's labelled attributes (race, gender, age, or any column
with a ``<name>_raw`` partner), a coarsening defined in taxonomy/axes.csv (race4, age3) of one of
them, or an intersection of such names joined by ``*`` (``race*gender``). Its groups are those
present in the index, in axes.csv order (others alphabetically after); an item with a null label
(or, for a coarsening, a group without counterpart) is unlabelled: code -1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from engine.errors import InputError
from engine.faces.table import attributes as labelled_attributes
from taxonomy import axes

INTERSECTION = "*"
DEFAULT_ATTRIBUTES = ("race", "gender", "age", "race*gender")


@dataclass(frozen=True)
class Attribute:
    name: str
    groups: tuple[str, ...]
    codes: np.ndarray  # (n_items,) int32 group index, -1 unlabelled

    @property
    def sizes(self) -> np.ndarray:
        return np.bincount(self.codes[self.codes >= 0], minlength=len(self.groups))

    @property
    def n_unlabelled(self) -> int:
        return int((self.codes < 0).sum())


def available(faces: pl.DataFrame) -> list[str]:
    """Single attribute names this face table supports (labelled ones and their coarsenings)."""
    labelled = labelled_attributes(faces)
    derived = [c for c, base in axes.coarsenings().items() if base in labelled and c not in labelled]
    return labelled + derived


def default_names(faces: pl.DataFrame) -> list[str]:
    """DEFAULT_ATTRIBUTES that this face table can supply."""
    have = set(available(faces))
    return [n for n in DEFAULT_ATTRIBUTES if all(p in have for p in n.split(INTERSECTION))]


def check_names(faces: pl.DataFrame, names: Sequence[str]) -> list[list[str]]:
    """Each name split into its parts; an unknown name is an error naming the allowed ones."""
    have = available(faces)
    split = []
    for name in names:
        parts = [p.strip() for p in name.split(INTERSECTION)]
        if any(p not in have for p in parts) or len(set(parts)) != len(parts):
            raise InputError(f"unknown attribute {name!r}; this index has {', '.join(have)} "
                             f"(intersections join names with '{INTERSECTION}', e.g. race{INTERSECTION}gender)")
        split.append(parts)
    return split


def encode(faces: pl.DataFrame, names: Sequence[str], *, explicit: bool = True) -> list[Attribute]:
    """Attributes by name; unknown names (or fewer than two groups, when ``explicit``) are errors."""
    result = []
    for name, parts in zip(names, check_names(faces, names)):
        attribute = _intersect([_single(faces, p) for p in parts]) if len(parts) > 1 else _single(faces, name)
        if len(attribute.groups) < 2:
            if explicit:
                raise InputError(f"attribute {name!r} has fewer than two groups in this index "
                                 f"({list(attribute.groups)}): skew is undefined")
            continue
        result.append(attribute)
    return result


def _single(faces: pl.DataFrame, name: str) -> Attribute:
    base = axes.coarsenings().get(name) if name not in faces.columns else None
    labels = faces[base].replace_strict(axes.coarse_map(name), default=None) if base else faces[name]
    labels = labels.cast(pl.Utf8)
    present = set(labels.drop_nulls().unique().to_list())
    ordered = [g for g in axes.group_order(name) if g in present]
    groups = tuple(ordered + sorted(present - set(ordered)))
    lookup = {g: i for i, g in enumerate(groups)}
    codes = labels.replace_strict(lookup, default=-1, return_dtype=pl.Int32).to_numpy()
    return Attribute(name, groups, codes.astype(np.int32))


def _intersect(parts: list[Attribute]) -> Attribute:
    """Cross product of attributes, keeping only combinations present in the index."""
    combined = np.zeros(len(parts[0].codes), dtype=np.int64)
    labelled = np.ones(len(combined), dtype=bool)
    for part in parts:
        combined = combined * len(part.groups) + np.maximum(part.codes, 0)
        labelled &= part.codes >= 0
    present, codes = np.unique(combined[labelled], return_inverse=True)
    names = []
    for value in present:
        labels = []
        for part in reversed(parts):
            value, index = divmod(int(value), len(part.groups))
            labels.append(part.groups[index])
        names.append(INTERSECTION.join(reversed(labels)))
    full = np.full(len(combined), -1, dtype=np.int32)
    full[labelled] = codes
    return Attribute(INTERSECTION.join(p.name for p in parts), tuple(names), full)
