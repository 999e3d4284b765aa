"""Helpers for the embedding, index and query tests: small images, face tables, a tiny model."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import polars as pl

TINY = "vlaudit-tiny"


def make_images(folder: Path, count: int, *, seed: int = 0, size=(40, 48), fmt: str = "png") -> list[str]:
    """``count`` small random-noise images (each distinct) written as files; their paths."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        path = folder / f"face_{i:03d}.{fmt}"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    return paths


def face_table(references: list[str], source: str = "folder") -> pl.DataFrame:
    """A valid face table over ``references`` with two labelled attributes."""
    n = len(references)
    genders = ["Female", "Male"]
    races = ["Black", "White", "East Asian"]
    return pl.DataFrame({
        "item_id": np.arange(n, dtype=np.int64),
        "key": [Path(r).name for r in references],
        "image": references,
        "source": [source] * n,
        "gender": [genders[i % 2] for i in range(n)],
        "gender_raw": [genders[i % 2][0] for i in range(n)],
        "race": [races[i % 3] for i in range(n)],
        "race_raw": [races[i % 3] for i in range(n)],
    })


def loaded_source(references: list[str], vectors: np.ndarray | None = None):
    from engine.faces.index import empty_failures
    from engine.faces.sources import LoadedSource

    return LoadedSource(faces=face_table(references), failures=empty_failures(),
                        description={"kind": "folder", "path": "generated-in-test"}, vectors=vectors)


def unit_vectors(count: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def tiny_spec():
    from engine.faces.models import ModelSpec

    return ModelSpec(TINY, pretrained="none")


@functools.cache
def tiny_encoder():
    """One random-weight tiny encoder per test session (loading is the slow part)."""
    from engine.faces.embed import Encoder

    return Encoder.load(tiny_spec(), device="cpu")


def brute_force_top_k(vectors: np.ndarray, queries: np.ndarray, k: int):
    """The oracle: full scores, then (descending score, ascending id) per query."""
    scores = queries.astype(np.float64) @ vectors.astype(np.float64).T
    ids = np.arange(vectors.shape[0])
    order = np.array([np.lexsort((ids, -row))[:k] for row in scores])
    return np.take_along_axis(scores, order, 1), order
