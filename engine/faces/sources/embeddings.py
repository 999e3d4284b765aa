"""``embeddings:DIR``: precomputed image embeddings as clip-retrieval writes them.

``DIR/img_emb/img_emb_{i}.npy`` is row-aligned with ``DIR/metadata/metadata_{i}.parquet``. The
metadata's ``image_path`` (else ``key``) is the item key; its other columns, minus clip-retrieval's
and img2dataset's bookkeeping, are the labels. Vectors come back as float32, L2-normalised (the
description says whether that was done on load); rows with a zero or non-finite vector are failures.
``image`` is the file ``image_path`` names when it exists (as written, or relative to DIR), else "".
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import polars as pl

from engine.errors import InputError
from engine.faces.sources.common import (LoadedSource, SourceOptions, build_table, describe,
                                         existing_files, failures_frame)
from engine.faces.sources.labels import canonicalise
from engine.faces.sources.wds import BOOKKEEPING

log = logging.getLogger(__name__)

KEY_COLUMNS = ("image_path", "key")
NORM_TOLERANCE = 1e-3
PART = re.compile(r"_(\d+)\.(npy|parquet)$")


def _parts(folder: Path, prefix: str, suffix: str) -> dict[int, Path]:
    found = {}
    for path in folder.glob(f"{prefix}_*.{suffix}"):
        match = PART.search(path.name)
        if match:
            found[int(match[1])] = path
    return found


def embedding_files(directory: Path) -> list[tuple[Path, Path]]:
    """(npy, parquet) pairs in part order; InputError naming any part without its partner."""
    vectors = _parts(directory / "img_emb", "img_emb", "npy")
    metadata = _parts(directory / "metadata", "metadata", "parquet")
    if not vectors:
        raise InputError(f"embeddings:{directory}: no img_emb/img_emb_<n>.npy files (clip-retrieval layout)")
    unpaired = sorted(str(p) for n, p in {**vectors, **metadata}.items() if n not in vectors or n not in metadata)
    if unpaired:
        raise InputError(f"embeddings:{directory}: part(s) without their partner file: {unpaired[:5]}")
    return [(vectors[n], metadata[n]) for n in sorted(vectors)]


def read_part(npy: Path, parquet: Path) -> tuple[np.ndarray, pl.DataFrame]:
    try:
        array = np.load(npy, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputError(f"{npy}: not a readable numeric .npy array ({exc})") from exc
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"{npy}: expected a 2-D float array, found {array.dtype} {array.shape}")
    try:
        meta = pl.read_parquet(parquet)
    except Exception as exc:  # polars/pyarrow raise many types on a damaged file
        raise InputError(f"{parquet}: not a readable parquet file ({exc})") from exc
    if meta.height != array.shape[0]:
        raise InputError(f"{npy} has {array.shape[0]} rows but {parquet} has {meta.height}")
    return np.asarray(array, dtype=np.float32), meta


def image_references(paths: list[str | None], directory: Path) -> list[str]:
    """The existing file each image_path names (as written, else relative to DIR), or ""."""
    written = [str(Path(p).expanduser().absolute()) if p else "" for p in paths]
    relative = [str(directory / p) if p else "" for p in paths]
    as_written, under_dir = existing_files(written), existing_files(relative)
    return [w if a else (r if u else "") for w, r, a, u in zip(written, relative, as_written, under_dir)]


def normalised(vectors: np.ndarray) -> tuple[np.ndarray, bool]:
    """Unit-length rows, and whether they had to be scaled."""
    norms = np.linalg.norm(vectors, axis=1)
    if np.all(np.abs(norms - 1) <= NORM_TOLERANCE):
        return vectors, False
    return vectors / norms[:, None], True


def load(location: str, options: SourceOptions) -> LoadedSource:
    directory = Path(location).expanduser().absolute()
    if not directory.is_dir():
        raise InputError(f"embeddings:{location}: no such directory")
    parts = [read_part(npy, parquet) for npy, parquet in embedding_files(directory)]
    dims = sorted({v.shape[1] for v, _ in parts})
    if len(dims) > 1:
        raise InputError(f"embeddings:{location}: parts have different dimensions {dims}")
    vectors = np.concatenate([v for v, _ in parts])
    meta = pl.concat([m for _, m in parts], how="diagonal_relaxed")
    key_column = next((c for c in KEY_COLUMNS if c in meta.columns), None)
    if key_column is None:
        raise InputError(f"{directory / 'metadata'}: the metadata has no {' or '.join(KEY_COLUMNS)} "
                         f"column; it has {meta.columns}")
    keys = meta[key_column].cast(pl.Utf8)
    base = pl.DataFrame({"key": keys, "image": image_references(keys.to_list(), directory),
                         "__row": np.arange(len(keys))})
    usable = np.isfinite(vectors).all(axis=1) & (np.linalg.norm(vectors, axis=1) > 0)
    failures = failures_frame(base.filter(~pl.Series(usable)).select(
        "key", "image", reason=pl.lit("embedding vector is zero or not finite")).rows())
    labels = meta.drop([c for c in meta.columns if c in BOOKKEEPING or c in KEY_COLUMNS])
    frame, attrs, modes = canonicalise(base, labels, options.attributes, f"embeddings:{location}",
                                       options.label_map)
    frame = frame.filter(pl.Series(usable))
    faces = build_table("embeddings", frame, attrs, f"embeddings:{location}", failures)
    vectors, rescaled = normalised(vectors[faces["__row"].to_numpy()])
    faces = faces.drop("__row")
    if rescaled:
        log.info("embeddings:%s: vectors were not unit length; L2-normalised them on load", location)
    chosen = {"attributes": options.attributes, "label_map": options.label_map}
    description = describe(
        "embeddings", str(directory), faces, failures, chosen,
        [Path(options.label_map)] if options.label_map else [], label_vocabulary=modes,
        vectors={"dim": dims[0], "parts": len(parts), "normalised_on_load": rescaled},
        images_found=int((faces["image"] != "").sum()))
    return LoadedSource(faces=faces, failures=failures, description=description,
                        vectors=np.ascontiguousarray(vectors, dtype=np.float32))
