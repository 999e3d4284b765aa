"""Write one analysis run's outputs: parquet tables, other files, summary.json, manifest.json.

Each file is written atomically (engine.storage); ``manifest.json`` is written last and lists
every file with its sha256, so its presence marks a complete run. Other files already in the
output directory are left alone.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from engine import storage

SUMMARY_NAME = "summary.json"


def write_run(out_dir: str | Path, *, stage: str, tables: dict[str, pl.DataFrame], summary: dict,
              manifest: dict, files: dict[str, str] | None = None) -> dict[str, str]:
    """Write ``tables`` as ``<name>.parquet``, ``files`` (name -> text), the summary and the
    manifest (headed by ``stage``); return name -> path of everything written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, frame in tables.items():
        written[f"{name}.parquet"] = storage.write_parquet(out_dir / f"{name}.parquet", frame)
    for name, text in (files or {}).items():
        written[name] = storage.write_text(out_dir / name, text)
    written[SUMMARY_NAME] = storage.write_json(out_dir / SUMMARY_NAME, summary)
    record = {
        **storage.manifest_header(stage),
        **manifest,
        "tables": {f"{name}.parquet": _schema(frame) for name, frame in tables.items()},
        "files": {name: storage.sha256_file(path) for name, path in written.items()},
    }
    written[storage.MANIFEST_NAME] = storage.write_json(out_dir / storage.MANIFEST_NAME, record)
    return {name: str(path) for name, path in written.items()}


def _schema(frame: pl.DataFrame) -> dict:
    return {"rows": frame.height, "columns": {name: str(dtype) for name, dtype in frame.schema.items()}}
