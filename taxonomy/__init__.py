"""Word lists, prompt templates and demographic lexicons as data files, plus their loader.

``load_taxonomy("sobit")`` gives the base So-B-IT reconstruction (see taxonomy/README.md);
``load_taxonomy("sobit:ameliagmz")`` another public version; ``load_taxonomy("path.csv")`` a
user's own list. The result is a polars DataFrame with columns category, word, pos.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from engine.errors import InputError

DATA_DIR = Path(__file__).resolve().parent
SOBIT_VERSIONS = ("base", "ameliagmz", "broken_mirror")


def load_taxonomy(spec: str = "sobit") -> pl.DataFrame:
    """Words by category: ``sobit``, ``sobit:<version>``, or a CSV path (category,word[,pos])."""
    if spec == "sobit" or spec.startswith("sobit:"):
        version = spec.partition(":")[2] or "base"
        if version not in SOBIT_VERSIONS:
            raise InputError(f"unknown So-B-IT version {version!r}; choose one of {list(SOBIT_VERSIONS)}")
        table = pl.read_csv(DATA_DIR / "sobit.csv", infer_schema_length=0)
        table = table.filter(pl.col(version) == "1").select("category", "word", "pos")
        return table.with_columns(pl.col("pos").fill_null("").replace("", "noun"))
    path = Path(spec)
    if not path.exists():
        raise InputError(f"taxonomy {spec!r} is neither 'sobit[:version]' nor an existing file")
    table = pl.read_csv(path, infer_schema_length=0)
    if "pos" not in table.columns:
        table = table.with_columns(pos=pl.lit("noun"))
    return table.select("category", "word", "pos")
