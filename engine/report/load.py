"""Find and read the result directories a report covers.

Each directory is recognised by the ``stage`` its ``manifest.json`` names, or else by the files
its stage writes; a directory that is none of them but holds such directories (e.g. ``runs/`` with
``audit/``, ``scan/``, ``provenance/``) is searched one level down. Any other stage's directory
with a ``manifest.json`` and parquet tables (association tests, hypodescent, classification...)
is shown generically as "results"; the demo's checks have their own section.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from engine import storage
from engine.errors import InputError

log = logging.getLogger(__name__)

# kind -> (files that identify it, tables read if present); checked in this order
KINDS = {
    "provenance": (("links.parquet", "words.parquet"),
                   ("links", "words", "correlations", "divergent")),
    "audit": (("skew.parquet",), ("skew",)),
    "scan": (("cooccurrence.parquet",), ("cooccurrence", "examples")),
    "index": (("faces.parquet", "manifest.json"), ()),
    "demo": (("retrieval_checks.parquet", "cooccurrence_checks.parquet"),
             ("retrieval_checks", "cooccurrence_checks")),
}
ORDER = ("demo", "index", "audit", "scan", "provenance", "results")
DRAWS_CHARTS = ("demo", "results")  # stages whose own SVG charts are shown
MAX_GENERIC_ROWS = 500
MAX_CHART_BYTES = 2 << 20


@dataclass(frozen=True)
class Run:
    """One result directory: its stage, manifest, summary and tables."""

    kind: str
    path: Path
    manifest: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    charts: dict[str, bytes] = field(default_factory=dict)  # SVG files a stage drew itself

    @property
    def label(self) -> str:
        return self.path.name or str(self.path)

    def table(self, name: str) -> pl.DataFrame | None:
        return self.tables.get(name)


@dataclass(frozen=True)
class ReportInputs:
    runs: tuple[Run, ...]

    def of(self, kind: str) -> list[Run]:
        return [run for run in self.runs if run.kind == kind]


def _read_json(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is not readable JSON: {exc}") from exc


def _read_parquet(path: Path, limit: int | None = None) -> pl.DataFrame:
    try:
        return pl.read_parquet(path, n_rows=limit)
    except Exception as exc:  # polars raises several types for bad files
        raise InputError(f"{path} is not a readable parquet table: {exc}") from exc


def detect_kind(directory: Path) -> str | None:
    stage = storage.manifest_stage(directory)
    if stage in KINDS:
        return stage
    for kind, (markers, _tables) in KINDS.items():
        if all((directory / marker).exists() for marker in markers):
            return kind
    if (directory / "index.faiss").exists():
        return "index"
    if (directory / "manifest.json").exists() and any(directory.glob("*.parquet")):
        return "results"
    return None


def load_run(directory: Path, kind: str) -> Run:
    manifest = _read_json(directory / "manifest.json")
    summary = _read_json(directory / "summary.json")
    charts = {}
    if kind in DRAWS_CHARTS:
        charts = {p.name: p.read_bytes() for p in sorted(directory.glob("*.svg"))
                  if p.stat().st_size <= MAX_CHART_BYTES}
    if kind == "results":
        tables = {p.stem: _read_parquet(p, MAX_GENERIC_ROWS) for p in sorted(directory.glob("*.parquet"))}
    else:
        names = KINDS[kind][1]
        tables = {name: _read_parquet(directory / f"{name}.parquet")
                  for name in names if (directory / f"{name}.parquet").exists()}
    return Run(kind, directory, manifest, summary, tables, charts)


def find_runs(directory: str | Path) -> list[Run]:
    """The runs in ``directory`` itself, or else in its immediate subdirectories."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"{directory} is not a directory")
    kind = detect_kind(directory)
    if kind:
        return [load_run(directory, kind)]
    found = [load_run(sub, kind) for sub in sorted(directory.iterdir())
             if sub.is_dir() and (kind := detect_kind(sub))]
    if not found:
        raise InputError(
            f"{directory} holds no results: expected the output directory of `vlaudit index build` "
            "(faces.parquet), `audit` (skew.parquet), `scan` (cooccurrence.parquet), `provenance` "
            "(links.parquet) or another stage (manifest.json + parquet tables), or a directory of them")
    return found


def load_inputs(directories) -> ReportInputs:
    runs = [run for directory in directories for run in find_runs(directory)]
    unique = {run.path.resolve(): run for run in runs}
    ordered = sorted(unique.values(), key=lambda run: (ORDER.index(run.kind), str(run.path)))
    log.info("report inputs: %s", ", ".join(f"{r.kind}:{r.path}" for r in ordered))
    return ReportInputs(tuple(ordered))
