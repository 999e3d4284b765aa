"""Fixtures shared by every test module. Topic-specific helpers live in tests/helpers_*.py."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path under ../shared/, or skip the test saying what is missing and why."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data {path} is absent (../shared/ is not checked out beside the repo)")
    return path


@pytest.fixture(autouse=True)
def _checksum_cache(tmp_path_factory, monkeypatch):
    """Remembered checksums go to a temporary directory, never the user's cache."""
    monkeypatch.setenv("VLAUDIT_CACHE_DIR", str(tmp_path_factory.mktemp("vlaudit-cache")))


@pytest.fixture
def indexes_dir(tmp_path: Path) -> Path:
    path = tmp_path / "indexes"
    path.mkdir()
    return path
