"""Morph series for the hypodescent analysis: a table, or a folder laid out by pair and series.

A table (CSV or parquet; a folder holding ``morphs.csv`` or ``morphs.parquet`` counts as one)
has one row per image with the columns of MORPH_COLUMNS (aliases in ``_ALIASES``); image paths
are relative to the table. ``mixing_ratio`` is the share of the target face in the image (0 = the
source face, 1 = the target face); when absent it is ``step / last step`` of the series.

A folder without a table is read as ``<source>_to_<target>/<series id>/<step>.<ext>``, e.g.
``Black_to_White/0007/10.jpg``.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from engine.errors import InputError
from engine.faces.embedding_inputs import IMAGE_EXTENSIONS

MORPH_COLUMNS = {"series_id": pl.Utf8, "step": pl.Int64, "mixing_ratio": pl.Float64,
                 "source_group": pl.Utf8, "target_group": pl.Utf8, "image": pl.Utf8}
_ALIASES = {
    "series_id": ("series_id", "series"),
    "step": ("step", "frame"),
    "mixing_ratio": ("mixing_ratio", "ratio", "mix"),
    "source_group": ("source_group", "source", "minority"),
    "target_group": ("target_group", "target"),
    "image": ("image", "file", "path"),
}
TABLE_NAMES = ("morphs.csv", "morphs.parquet")
PAIR_SEPARATOR = "_to_"


def read_morphs(path: str | Path) -> pl.DataFrame:
    """The morph table (MORPH_COLUMNS), sorted by pair, series and step; images as full paths."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"morph series {path} do not exist")
    if path.is_dir():
        table_file = next((path / n for n in TABLE_NAMES if (path / n).is_file()), None)
        table = _read_table(table_file) if table_file else _read_layout(path)
    else:
        table = _read_table(path)
    return _validated(table, str(path))


def _read_table(path: Path) -> pl.DataFrame:
    if path.suffix.lower() not in (".csv", ".parquet"):
        raise InputError(f"morph table {path}: use a .csv or .parquet file")
    raw = pl.read_parquet(path) if path.suffix.lower() == ".parquet" else pl.read_csv(path, infer_schema_length=0)
    lower = {c.lower(): c for c in raw.columns}
    picked = {}
    for name, aliases in _ALIASES.items():
        found = next((lower[a] for a in aliases if a in lower), None)
        if found is not None:
            picked[name] = pl.col(found).alias(name)
        elif name != "mixing_ratio":
            raise InputError(f"morph table {path}: no {name} column (accepted names: {list(aliases)})")
    table = raw.select(list(picked.values()))
    base = path.parent
    return table.with_columns(pl.col("image").cast(pl.Utf8).map_elements(
        lambda p: p if Path(p).is_absolute() else str(base / p), return_dtype=pl.Utf8))


def _read_layout(folder: Path) -> pl.DataFrame:
    rows = []
    for pair_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        source, separator, target = pair_dir.name.partition(PAIR_SEPARATOR)
        if not separator or not source or not target:
            raise InputError(f"{pair_dir}: pair folders are named <source>{PAIR_SEPARATOR}<target>, "
                             f"e.g. Black{PAIR_SEPARATOR}White (or give a morphs.csv table)")
        for series_dir in sorted(p for p in pair_dir.iterdir() if p.is_dir()):
            for image in sorted(series_dir.iterdir()):
                if image.suffix.lower() not in IMAGE_EXTENSIONS:
                    continue
                if not image.stem.isdigit():
                    raise InputError(f"{image}: morph images are named by their step number (0.jpg, 1.jpg, ...)")
                rows.append((series_dir.name, int(image.stem), source, target, str(image)))
    if not rows:
        raise InputError(f"{folder}: no morph images found (expected <source>{PAIR_SEPARATOR}<target>/"
                         "<series>/<step>.jpg or a morphs.csv table)")
    return pl.DataFrame(rows, schema=["series_id", "step", "source_group", "target_group", "image"],
                        orient="row")


def _validated(table: pl.DataFrame, origin: str) -> pl.DataFrame:
    if table.height == 0:
        raise InputError(f"morph series {origin}: no rows")
    try:
        table = table.with_columns(pl.col("step").cast(pl.Int64), pl.col("series_id").cast(pl.Utf8))
    except pl.exceptions.InvalidOperationError as exc:
        raise InputError(f"morph series {origin}: step must be an integer ({exc})") from exc
    if table.select(pl.any_horizontal(pl.all().is_null().any())).item():
        raise InputError(f"morph series {origin}: empty cells in {[c for c in table.columns if table[c].null_count()]}")
    if "mixing_ratio" not in table.columns:
        last = pl.col("step").max().over("source_group", "target_group", "series_id")
        table = table.with_columns((pl.col("step") / pl.when(last > 0).then(last).otherwise(1)).alias("mixing_ratio"))
    table = table.with_columns(pl.col("mixing_ratio").cast(pl.Float64, strict=False))
    bad = table.filter(~pl.col("mixing_ratio").is_between(0, 1) | pl.col("mixing_ratio").is_null())
    if bad.height:
        raise InputError(f"morph series {origin}: mixing_ratio must be a number in [0, 1]; "
                         f"e.g. series {bad['series_id'][0]} step {bad['step'][0]}")
    repeated = table.filter(pl.struct("source_group", "target_group", "series_id", "step").is_duplicated())
    if repeated.height:
        raise InputError(f"morph series {origin}: series {repeated['series_id'][0]} has step "
                         f"{repeated['step'][0]} twice")
    same = table.filter(pl.col("source_group") == pl.col("target_group"))
    if same.height:
        raise InputError(f"morph series {origin}: source and target group are both {same['source_group'][0]!r}")
    return table.select(list(MORPH_COLUMNS)).cast(MORPH_COLUMNS).sort(
        "source_group", "target_group", "series_id", "step")
