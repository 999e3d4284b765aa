"""``cfd:DIR``: Chicago Face Database images, labelled from their file names.

Layout ``DIR/Images/{CFD,CFD-MR,CFD-INDIA}/<model>/<file>.jpg`` (``DIR`` may also be the
``Images`` folder itself). Names are ``CFD-{race}{gender}-{model}-{image}[-{n}]-{expression}.jpg``
(``CFD-AF-200-228-N.jpg``; an ``M`` race code is multiracial, CFD-MR). Image files whose names do
not follow the pattern are recorded as failures. The optional norming workbook is joined on its
``Model`` column (see engine.faces.sources.norming).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import polars as pl

from engine.errors import InputError
from engine.faces.sources.common import (ALL, CFD_EXPRESSIONS, LoadedSource, SourceOptions,
                                         build_table, describe, failures_frame)
from engine.faces.sources.labels import dataset_vocabulary, map_strict

NAME = re.compile(r"CFD-(?P<race>[A-Z])(?P<gender>[A-Z])-(?P<model>\d+)-(?P<image_number>\d+)"
                  r"(?:-(?P<image_variant>\d+))?-(?P<expression>[A-Z]+)\.jpe?g", re.IGNORECASE)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
ATTRIBUTES = ("race", "gender")
PATTERN_TEXT = "CFD-{race}{gender}-{model}-{image}[-{n}]-{expression}.jpg"


def images_root(directory: Path) -> Path:
    root = directory / "Images"
    return root if root.is_dir() else directory


def image_files(root: Path) -> list[str]:
    """Image paths under ``root``, relative to it, in a deterministic order."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders.sort()
        rel = Path(folder).relative_to(root)
        found += [(rel / f).as_posix() for f in sorted(files) if f.lower().endswith(IMAGE_SUFFIXES)]
    return found


def parse_names(root: Path, files: list[str]) -> tuple[list[dict], list[tuple[str, str, str]]]:
    """One row per file named by the CFD pattern; failures for the others."""
    rows, failures = [], []
    for key in files:
        match = NAME.fullmatch(key.rsplit("/", 1)[-1])
        if match is None:
            failures.append((key, str(root / key), f"file name does not follow {PATTERN_TEXT}"))
            continue
        parts = {k: (v.upper() if v else v) for k, v in match.groupdict().items()}
        subset = key.split("/", 1)[0] if "/" in key else ""
        rows.append({"key": key, "image": str(root / key), **parts, "subset": subset,
                     "model": f"{parts['race']}{parts['gender']}-{parts['model']}"})
    return rows, failures


def labelled(rows: list[dict], origin: str) -> pl.DataFrame:
    """Map race and gender codes to canonical groups; check expression codes."""
    frame = pl.DataFrame(rows, schema={
        "key": pl.Utf8, "image": pl.Utf8, "race": pl.Utf8, "gender": pl.Utf8, "model": pl.Utf8,
        "image_number": pl.Utf8, "image_variant": pl.Utf8, "expression": pl.Utf8, "subset": pl.Utf8})
    code = {e: e for e in CFD_EXPRESSIONS}
    map_strict(frame["expression"], code, f"{origin}: expression code in file names", frame["key"])
    mapped = {}
    for attr in ATTRIBUTES:
        vocabulary = dataset_vocabulary("cfd", attr)
        where = f"{origin}: {attr} code in file names"
        mapped[attr] = map_strict(frame[attr], vocabulary, where, frame["key"])
        mapped[f"{attr}_raw"] = frame[attr]
    return frame.with_columns(**mapped)


def load(location: str, options: SourceOptions) -> LoadedSource:
    directory = Path(location).expanduser().absolute()
    if not directory.is_dir():
        raise InputError(f"cfd:{location}: no such directory")
    root = images_root(directory)
    origin = f"cfd:{location}"
    rows, rejected = parse_names(root, image_files(root))
    if not rows:
        raise InputError(f"{origin}: no Chicago Face Database images found under {root} "
                         f"(expected Images/{{CFD,CFD-MR,CFD-INDIA}}/<model>/{PATTERN_TEXT})")
    frame = labelled(rows, origin)
    found = dict(sorted(frame["expression"].value_counts().rows()))
    if ALL not in options.expressions:
        frame = frame.filter(pl.col("expression").is_in(list(options.expressions)))
    failures = failures_frame(rejected)
    details = {"expressions_found": found}
    label_files = []
    if options.norming:
        from engine.faces.sources.norming import join_norming

        frame, details["norming"] = join_norming(frame, Path(options.norming), options.norming_raters)
        label_files.append(Path(options.norming))
    faces = build_table("cfd", frame, ATTRIBUTES, f"{origin} (expressions {','.join(options.expressions)})",
                        failures)
    chosen = {"expressions": list(options.expressions), "norming": options.norming,
              "norming_raters": options.norming_raters if options.norming else None}
    description = describe("cfd", str(directory), faces, failures, chosen, label_files, **details)
    return LoadedSource(faces=faces, failures=failures, description=description)
