"""``folder:DIR``: any images plus a label CSV (default ``DIR/labels.csv``).

The CSV has a ``file`` column (a path relative to DIR, or absolute) and any label columns. All
label columns are attributes unless the ``attributes`` option names a subset; the rest are kept as
extra columns. Labels are mapped by engine.faces.sources.labels.canonicalise.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from engine.errors import InputError
from engine.faces.sources.common import (LoadedSource, SourceOptions, build_table, describe,
                                         join_paths, read_label_csv, require_columns, require_unique,
                                         split_missing_images)
from engine.faces.sources.labels import canonicalise

FILE_COLUMN = "file"


def load(location: str, options: SourceOptions) -> LoadedSource:
    directory = Path(location).expanduser().absolute()
    if not directory.is_dir():
        raise InputError(f"folder:{location}: no such directory")
    label_file = Path(options.labels).expanduser().absolute() if options.labels else directory / "labels.csv"
    labels = read_label_csv(label_file)
    require_columns(labels, (FILE_COLUMN,), label_file)
    require_unique(labels[FILE_COLUMN], label_file)
    files = labels[FILE_COLUMN].to_list()
    base = pl.DataFrame({"key": files, "image": join_paths(directory, files)},
                        schema={"key": pl.Utf8, "image": pl.Utf8})
    frame, attrs, modes = canonicalise(base, labels.drop(FILE_COLUMN), options.attributes,
                                       str(label_file), options.label_map)
    frame, failures = split_missing_images(frame)
    faces = build_table("folder", frame, attrs, f"folder:{location}", failures)
    chosen = {"labels": str(label_file), "attributes": options.attributes, "label_map": options.label_map}
    label_files = [label_file] + ([Path(options.label_map)] if options.label_map else [])
    description = describe("folder", str(directory), faces, failures, chosen, label_files,
                           label_vocabulary=modes)
    return LoadedSource(faces=faces, failures=failures, description=description)
