"""The face table: the one shape every face source produces and every later stage reads.

One row per face, in a deterministic order (the order rows are embedded and indexed):

| column      | type  | meaning                                                              |
| ----------- | ----- | -------------------------------------------------------------------- |
| item_id     | int64 | 0..n-1, the row's position; equals the FAISS id                      |
| key         | str   | the source's own id for the item (relative file name, sample key)    |
| image       | str   | an image reference readable by ``read_image_bytes`` ("" if none)    |
| source      | str   | the source kind: fairface, cfd, folder, wds, embeddings              |
| <attr>      | str   | canonical group of each labelled attribute (e.g. race, gender, age)  |
| <attr>_raw  | str   | the label exactly as the dataset wrote it                            |

Further columns (split, expression, norming ratings, ...) may follow. Missing labels are null.

Image references are either a file path, or ``tar:<path>:<offset>:<size>`` for a member of an
uncompressed tar (webdataset shards), so any worker can read one image with a single seek.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from engine.errors import InputError

BASE_COLUMNS = {"item_id": pl.Int64, "key": pl.Utf8, "image": pl.Utf8, "source": pl.Utf8}
TAR_PREFIX = "tar:"


def tar_reference(path: str, offset: int, size: int) -> str:
    return f"{TAR_PREFIX}{path}:{offset}:{size}"


def read_image_bytes(reference: str) -> bytes:
    """The encoded bytes of one image reference (a file path or a tar member reference)."""
    if reference.startswith(TAR_PREFIX):
        path, offset, size = reference[len(TAR_PREFIX):].rsplit(":", 2)
        with open(path, "rb") as fh:
            fh.seek(int(offset))
            data = fh.read(int(size))
        if len(data) != int(size):
            raise OSError(f"truncated tar member in {path} at offset {offset}")
        return data
    with open(reference, "rb") as fh:
        return fh.read()


def attributes(faces: pl.DataFrame) -> list[str]:
    """The labelled attributes of a face table: columns that have a ``<name>_raw`` partner."""
    return [c for c in faces.columns if f"{c}_raw" in faces.columns]


def validate(faces: pl.DataFrame, origin: str) -> pl.DataFrame:
    """Check the base columns and the item_id order; raise InputError naming ``origin``."""
    missing = [c for c in BASE_COLUMNS if c not in faces.columns]
    if missing:
        raise InputError(f"{origin}: face table lacks columns {missing}")
    if faces.height == 0:
        raise InputError(f"{origin}: the source has no items")
    ids = faces["item_id"].to_numpy()
    if not np.array_equal(ids, np.arange(faces.height)):
        raise InputError(f"{origin}: item_id must be 0..n-1 in row order")
    return faces.cast(BASE_COLUMNS, strict=False)
