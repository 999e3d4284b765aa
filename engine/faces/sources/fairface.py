"""``fairface:DIR``: the official label CSVs with the ``train/`` and ``val/`` image folders.

``DIR/fairface_label_{train,val}.csv`` has columns ``file,age,gender,race,service_test`` with
``file`` relative to DIR (``val/1.jpg``). Labels are mapped strictly through FairFace's own
vocabulary; age bins mangled by spreadsheets (``03-Sep`` for 3-9, ``Oct-19`` for 10-19) are
repaired with a warning and counted in the description.
"""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl

from engine.errors import InputError
from engine.faces.sources.common import (LoadedSource, SourceOptions, build_table, describe,
                                         join_paths, read_label_csv, require_columns, require_unique,
                                         split_missing_images)
from engine.faces.sources.labels import dataset_vocabulary, map_strict

log = logging.getLogger(__name__)

LABEL_FILES = {"train": "fairface_label_train.csv", "val": "fairface_label_val.csv"}
COLUMNS = ("file", "age", "gender", "race", "service_test")
ATTRIBUTES = ("race", "gender", "age")
AGE_REPAIRS = {"03-sep": "3-9", "9-mar": "3-9", "oct-19": "10-19", "19-oct": "10-19"}
BOOLEANS = {"true": True, "false": False, "1": True, "0": False}


def repair_ages(age: pl.Series, origin: Path) -> tuple[pl.Series, dict[str, int]]:
    """Undo spreadsheet date conversion of age bins; return the repaired column and counts."""
    folded = age.str.to_lowercase()
    mangled = folded.is_in(list(AGE_REPAIRS))
    counts = dict(sorted(age.filter(mangled).value_counts().rows()))
    if counts:
        log.warning("%s: repaired %d spreadsheet-mangled age bins (%s)", origin, sum(counts.values()),
                    ", ".join(f"{raw}->{AGE_REPAIRS[raw.lower()]}: {n}" for raw, n in counts.items()))
    repaired = pl.select(pl.when(mangled).then(folded.replace_strict(AGE_REPAIRS, default=None))
                         .otherwise(age)).to_series()
    return repaired.alias("age"), counts


def parse_service_test(column: pl.Series, origin: Path) -> pl.Series:
    unknown = sorted(set(column.drop_nulls().str.to_lowercase().unique().to_list()) - set(BOOLEANS))
    if unknown or column.null_count():
        raise InputError(f"{origin}: column 'service_test' has value(s) {unknown or ['(empty)']}; "
                         "allowed: True, False")
    return column.str.to_lowercase().replace_strict(BOOLEANS, return_dtype=pl.Boolean)


def labelled_rows(labels: pl.DataFrame, directory: Path, label_file: Path) -> tuple[pl.DataFrame, dict]:
    """key, image, race/gender/age with their raw labels, split-independent extras."""
    keys = labels["file"]
    ages, repairs = repair_ages(labels["age"], label_file)
    columns = {"key": keys, "image": join_paths(directory, keys.to_list())}
    for attr in ATTRIBUTES:
        lookup = ages if attr == "age" else labels[attr]
        vocabulary = dataset_vocabulary("fairface", attr)
        columns[attr] = map_strict(lookup, vocabulary, f"{label_file}: column {attr!r}", keys)
        columns[f"{attr}_raw"] = labels[attr]
    extras = [c for c in labels.columns if c not in COLUMNS]
    frame = pl.DataFrame(columns).with_columns(labels.select("service_test", *extras))
    return frame, repairs


def load(location: str, options: SourceOptions) -> LoadedSource:
    directory = Path(location).expanduser().absolute()
    if not directory.is_dir():
        raise InputError(f"fairface:{location}: no such directory")
    label_file = Path(options.labels) if options.labels else directory / LABEL_FILES[options.split]
    if not label_file.is_file():
        raise InputError(f"fairface:{location}: label file {label_file} not found (FairFace ships "
                         f"{' and '.join(LABEL_FILES.values())} beside train/ and val/)")
    labels = read_label_csv(label_file)
    require_columns(labels, COLUMNS, label_file)
    require_unique(labels["file"], label_file)
    labels = labels.with_columns(parse_service_test(labels["service_test"], label_file))
    if options.service_test:
        labels = labels.filter(pl.col("service_test"))
    frame, repairs = labelled_rows(labels, directory, label_file)
    frame = frame.with_columns(split=pl.lit(options.split))
    frame, failures = split_missing_images(frame)
    origin = f"fairface:{location} ({label_file.name}{', service_test' if options.service_test else ''})"
    faces = build_table("fairface", frame, ATTRIBUTES, origin, failures)
    chosen = {"split": options.split, "service_test": options.service_test, "labels": str(label_file)}
    description = describe("fairface", str(directory), faces, failures, chosen, [label_file],
                           age_repairs=repairs, age_repaired=sum(repairs.values()))
    return LoadedSource(faces=faces, failures=failures, description=description)
