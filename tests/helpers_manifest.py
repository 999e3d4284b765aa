"""The keys every stage's manifest.json starts with (engine.storage.manifest_header)."""

from __future__ import annotations

import datetime as dt

from engine import __version__

OLD_SYNONYMS = {"kind", "command", "versions"}


def assert_manifest_header(manifest: dict, stage: str) -> None:
    """``manifest`` names its stage, the vlaudit version, a UTC time and the package versions,
    and none of the old synonyms for them."""
    assert manifest["stage"] == stage and manifest["vlaudit"] == __version__
    assert dt.datetime.fromisoformat(manifest["created"]).utcoffset() == dt.timedelta(0)
    assert {"numpy", "polars"} <= set(manifest["packages"])
    assert not OLD_SYNONYMS & set(manifest), sorted(OLD_SYNONYMS & set(manifest))
