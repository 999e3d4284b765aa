"""Face sources -> one face table (schema in engine.faces.table).

``load_source("fairface:/data/fairface", SourceOptions(split="val"))`` and likewise for
``cfd:DIR``, ``folder:DIR``, ``wds:PATTERN`` and ``embeddings:DIR``. Each kind is one module with a
``load(location, options) -> LoadedSource``; ``LOADERS`` maps kind names to them.
"""

from __future__ import annotations

import importlib
import logging

from engine.errors import InputError
from engine.faces.sources.common import LoadedSource, SourceOptions, failures_frame

__all__ = ["KINDS", "LoadedSource", "SourceOptions", "failures_frame", "load_source", "parse_spec"]

log = logging.getLogger(__name__)

LOADERS = {  # kind -> module with load(location: str, options: SourceOptions) -> LoadedSource
    "fairface": "engine.faces.sources.fairface",
    "cfd": "engine.faces.sources.cfd",
    "folder": "engine.faces.sources.folder",
    "wds": "engine.faces.sources.wds",
    "embeddings": "engine.faces.sources.embeddings",
}
KINDS = tuple(LOADERS)


def parse_spec(spec: str) -> tuple[str, str]:
    """``"KIND:LOCATION"`` -> (kind, location); InputError naming the kinds on a bad spec."""
    kind, sep, location = spec.partition(":")
    if not sep or kind not in LOADERS or not location:
        raise InputError(f"source {spec!r} is not KIND:PATH with KIND one of {', '.join(KINDS)} "
                         "(e.g. fairface:/data/fairface, wds:'shards/{00000..00009}.tar')")
    return kind, location


def load_source(spec: str, options: SourceOptions | None = None) -> LoadedSource:
    """Parse ``KIND:PATH`` and load it; raise InputError with a clear message on bad input."""
    kind, location = parse_spec(spec)
    loaded = importlib.import_module(LOADERS[kind]).load(location, options or SourceOptions())
    log.info("%s: %d faces, %d failures", spec, loaded.faces.height, loaded.failures.height)
    return loaded
