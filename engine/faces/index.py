"""FAISS index + face table + manifest on disk: build, open, describe.

CONTRACT (stub written before the implementation; the signatures are what other stages use).

Layout of ``indexes/NAME/``: ``index.faiss``, ``faces.parquet`` (row-aligned with the index,
schema in faces.table), ``failures.parquet`` (key, image, reason), ``manifest.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl


@dataclass
class FaceIndex:
    path: Path
    manifest: dict
    faces: pl.DataFrame
    faiss_index: object

    @property
    def model_spec(self):
        """The engine.faces.embed.ModelSpec that built this index."""
        raise NotImplementedError

    def vectors(self) -> np.ndarray:
        """All indexed vectors (n, d) float32 in item_id order."""
        raise NotImplementedError


def open_index(name: str, indexes_dir: str | Path = "indexes") -> FaceIndex:
    """Open ``indexes_dir/name`` (or a path to an index directory)."""
    raise NotImplementedError


def write_index(out_dir: str | Path, vectors: np.ndarray, faces: pl.DataFrame, *,
                model: dict, dataset: dict, failures: pl.DataFrame | None = None,
                factory: str = "Flat") -> FaceIndex:
    """Write an index directory atomically from vectors and their face table (also used by tests
    and by other stages to make synthetic indexes). ``model`` is ModelSpec.describe() output."""
    raise NotImplementedError
