"""Face sources -> one face table (schema in engine.faces.table).

CONTRACT (stub written before the implementation; the signatures are what other stages use).

``load_source("fairface:/data/fairface", SourceOptions(split="val"))`` and likewise for
``cfd:DIR``, ``folder:DIR``, ``wds:PATTERN`` and ``embeddings:DIR``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl


@dataclass(frozen=True)
class SourceOptions:
    split: str = "val"  # fairface: train | val
    service_test: bool = False  # fairface: only the service_test subset
    expressions: tuple[str, ...] = ("N",)  # cfd: expression codes to keep
    norming: str | None = None  # cfd: path of the norming workbook to join on Model
    labels: str | None = None  # folder: label CSV (default DIR/labels.csv)


@dataclass
class LoadedSource:
    faces: pl.DataFrame  # the face table (engine.faces.table)
    failures: pl.DataFrame  # key, image, reason: items rejected while reading labels
    description: dict  # for the manifest: kind, path, options, counts, label-file checksums
    vectors: np.ndarray | None = None  # precomputed vectors (embeddings: source only)
    extra: dict = field(default_factory=dict)


def load_source(spec: str, options: SourceOptions | None = None) -> LoadedSource:
    """Parse ``KIND:PATH`` and load it; raise InputError with a clear message on bad input."""
    raise NotImplementedError
