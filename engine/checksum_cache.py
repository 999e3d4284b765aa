"""sha256 of large files, remembered between runs so opening a large index does not rehash it.

Opening an index verifies every file against the checksums in its manifest. For a file of many
gigabytes (a large exact index, an on-disk IVF's lists) that would cost seconds to minutes on every
``query`` and ``audit``. A file's digest is therefore remembered, keyed by its resolved path, with
its size, modification time and inode: while those are unchanged the remembered digest is used,
any change rehashes the file. This guards against damaged or replaced files, as the checksums
do; it is not a defence against deliberate tampering that restores a file's modification time.

The record lives in ``$VLAUDIT_CACHE_DIR`` (default ``$XDG_CACHE_HOME/vlaudit`` or
``~/.cache/vlaudit``), file ``checksums.json``; files under ``REMEMBER_FROM`` bytes are always
hashed (cheap), and an unwritable cache directory only means files are hashed every time.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from engine import storage

log = logging.getLogger(__name__)

REMEMBER_FROM = 16 << 20  # bytes
CACHE_FILE = "checksums.json"
MAX_ENTRIES = 10_000


def cache_dir() -> Path:
    if os.environ.get("VLAUDIT_CACHE_DIR"):
        return Path(os.environ["VLAUDIT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vlaudit"


def sha256(path: str | os.PathLike) -> str:
    """The file's sha256, from the record when its size, mtime and inode are unchanged."""
    path = Path(path).resolve()
    stat = path.stat()
    if stat.st_size < REMEMBER_FROM:
        return storage.sha256_file(path)
    remembered = _read().get(str(path))
    if remembered and remembered["identity"] == [stat.st_size, stat.st_mtime_ns, stat.st_ino]:
        return remembered["sha256"]
    digest = storage.sha256_file(path)
    remember(path, digest)
    return digest


def remember(path: str | os.PathLike, digest: str) -> None:
    """Record a digest just computed elsewhere (an index build hashes its files as it writes)."""
    path = Path(path).resolve()
    stat = path.stat()
    if stat.st_size >= REMEMBER_FROM:
        record = _read()
        record[str(path)] = {"identity": [stat.st_size, stat.st_mtime_ns, stat.st_ino], "sha256": digest}
        _write(record)


def _read() -> dict:
    try:
        return storage.read_json(cache_dir() / CACHE_FILE)
    except (OSError, ValueError):
        return {}


def _write(record: dict) -> None:
    if len(record) > MAX_ENTRIES:  # forget the oldest entries (insertion order)
        record = dict(list(record.items())[-MAX_ENTRIES:])
    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
        storage.write_json(cache_dir() / CACHE_FILE, record)
    except OSError as exc:
        log.debug("cannot remember checksums in %s: %s", cache_dir(), exc)
