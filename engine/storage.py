"""Atomic writes, checksums and run manifests shared by every stage.

Every output is written to a temporary name in the destination directory and then
``os.replace``d, so a reader never sees a half-written file and a crash leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from engine import __version__

MANIFEST_NAME = "manifest.json"
_VERSIONED = ("vlaudit", "torch", "open_clip_torch", "faiss-cpu", "faiss-gpu", "duckdb", "polars",
              "pyarrow", "numpy", "webdataset", "img2dataset")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it into place, else remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, _default_mode(0o666))
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; on success it replaces ``path`` whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, _default_mode(0o777))
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _default_mode(base: int) -> int:
    """The mode a plain open()/mkdir() would give (mkstemp/mkdtemp make private 0600/0700)."""
    umask = os.umask(0)
    os.umask(umask)
    return base & ~umask


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_parquet(path: str | os.PathLike, frame) -> Path:
    """Write a polars DataFrame atomically (zstd, statistics on)."""
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp, compression="zstd", statistics=True)
    return Path(path)


def write_npy(path: str | os.PathLike, array) -> Path:
    import numpy as np

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)
    return Path(path)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def xxh3_file(path: str | os.PathLike, window: int = 1 << 26) -> str:
    """``xxh3_128:<hex>`` of the file's bytes, hashed through 64 MB memory-mapped windows (no
    copies, bounded memory). Ten times quicker than sha256, which would cost a tenth of the scan;
    it identifies changed and duplicate files (the caption scan), it does not authenticate them."""
    import mmap

    import xxhash

    digest = xxhash.xxh3_128()
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        for offset in range(0, size, window):
            with mmap.mmap(fh.fileno(), min(window, size - offset), access=mmap.ACCESS_READ,
                           offset=offset) as view:
                digest.update(view)
    return f"xxh3_128:{digest.hexdigest()}"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide a result, for manifests."""
    found = {}
    for name in _VERSIONED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def manifest_header(stage: str) -> dict[str, Any]:
    """The keys every output manifest starts with: ``stage`` (the command that wrote it: index,
    audit, scan, provenance, eat, ...), ``vlaudit`` (its version), ``created`` (UTC) and
    ``packages`` (the versions that decide a result)."""
    return {"stage": stage, "vlaudit": __version__, "created": utc_now(), "packages": package_versions()}


def manifest_stage(directory: str | os.PathLike) -> str | None:
    """The ``stage`` a directory's manifest names; None when it has no readable manifest."""
    try:
        stage = read_json(Path(directory) / MANIFEST_NAME).get("stage")
    except (OSError, ValueError, AttributeError):
        return None
    return stage if isinstance(stage, str) else None


def check_replaceable(out_dir: str | os.PathLike, stage: str) -> None:
    """An output directory is replaced whole: refuse one that holds anything but an earlier
    output of ``stage`` (a new or empty directory is fine)."""
    from engine.errors import InputError

    out_dir = Path(out_dir)
    if not out_dir.exists():
        return
    if not out_dir.is_dir() or (any(out_dir.iterdir()) and manifest_stage(out_dir) != stage):
        raise InputError(f"--out {out_dir} exists and is not an earlier {stage} output; "
                         "choose a new or empty directory")


def _json_default(obj: Any):
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
