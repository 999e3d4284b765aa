"""Helpers for the association, hypodescent, zero-shot and ranking tests: a small labelled index
embedded with the random-weight tiny model, and morph series written as images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from tests.helpers_index import make_images, tiny_encoder, tiny_spec

RACES = ("white", "black", "east_asian")
GENDERS = ("male", "female")
AGES = ("20-29", "30-39", "70+")


def labelled_faces(references: list[str]) -> pl.DataFrame:
    """A face table with canonical race, gender and age labels (one age left unlabelled)."""
    n = len(references)
    race = [RACES[i % 3] for i in range(n)]
    gender = [GENDERS[i % 2] for i in range(n)]
    age = [None if i == 5 else AGES[(i // 2) % 3] for i in range(n)]
    return pl.DataFrame({
        "item_id": np.arange(n, dtype=np.int64), "key": [Path(r).name for r in references],
        "image": references, "source": ["folder"] * n,
        "race": race, "race_raw": race, "gender": gender, "gender_raw": gender, "age": age, "age_raw": age,
    })


def tiny_index(indexes_dir: Path, name: str = "faces", count: int = 24):
    """An index of ``count`` generated images embedded with the tiny random-weight model."""
    from engine.faces.index import write_index

    references = make_images(indexes_dir.parent / f"{name}-images", count)
    vectors, failed = tiny_encoder().encode_image_refs(references, num_workers=0)
    assert not failed
    return write_index(indexes_dir / name, vectors, labelled_faces(references),
                       model=tiny_spec().describe(), dataset={"kind": "generated-in-test"})


def morph_folder(root: Path, pairs=("Black_to_White", "Asian_to_White"), series: int = 3,
                 steps: int = 5, seed: int = 0) -> Path:
    """Morph series as <source>_to_<target>/<series>/<step>.png of random pixels."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for pair in pairs:
        for number in range(series):
            folder = root / pair / f"{number:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            for step in range(steps):
                pixels = rng.integers(0, 256, size=(48, 40, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{step}.png")
    return root
