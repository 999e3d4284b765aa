"""FAISS index + face table + manifest on disk: write, open, verify, list.

Layout of ``indexes/NAME/``: ``index.faiss``, ``faces.parquet`` (row-aligned with the index,
schema in faces.table), ``failures.parquet`` (key, image, reason), ``item_statistics.npy`` (the
vectors' mean and centred Gram matrix, (d + 1, d) float64, for C-ASC: skew.ItemStatistics),
``manifest.json``; an on-disk IVF index (engine.faces.large_index) adds ``index.ivfdata``, its
inverted lists. The directory is written whole and atomically; the manifest holds the sha256
of the other files. (Indexes written before item_statistics.npy existed compute it when audited.)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from engine import checksum_cache, storage
from engine.errors import InputError
from engine.faces import factories, table

log = logging.getLogger(__name__)

FORMAT = "vlaudit-index/1"
INDEX_FILE, FACES_FILE, FAILURES_FILE = "index.faiss", "faces.parquet", "failures.parquet"
STATISTICS_FILE = "item_statistics.npy"
DATA_FILES = (INDEX_FILE, FACES_FILE, FAILURES_FILE, STATISTICS_FILE)
FAILURE_SCHEMA = {"key": pl.Utf8, "image": pl.Utf8, "reason": pl.Utf8}
NORM_TOLERANCE = 1e-2


@dataclass
class FaceIndex:
    path: Path
    manifest: dict
    faces: pl.DataFrame
    faiss_index: object
    _vectors: np.ndarray | None = field(default=None, repr=False)
    _statistics: object = field(default=None, repr=False)
    _search_copy: object = field(default=None, repr=False)  # GPU copy, made on first search

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def model_spec(self):
        """The engine.faces.embed.ModelSpec that built this index."""
        from engine.faces.models import ModelSpec

        return ModelSpec.from_manifest(self.manifest["model"])

    def vectors(self) -> np.ndarray:
        """All indexed vectors (n, d) float32 in item_id order (an on-disk index's are read from
        its inverted lists, so they must fit in memory)."""
        if self._vectors is None:
            self._vectors = factories.reconstruct_all(self.faiss_index)
        return self._vectors

    def item_vectors(self):
        """The vectors as the audit reads them: the array when the index is in memory, else read
        back block by block (factories.ReconstructedRows), so an on-disk index is audited without
        holding all its vectors."""
        if self._vectors is None and self.manifest.get("index", {}).get("on_disk"):
            return factories.ReconstructedRows(self.faiss_index)
        return self.vectors()

    def item_statistics(self):
        """The vectors' skew.ItemStatistics: read from the index directory, or computed (once per
        FaceIndex) for an index written before the file existed."""
        from engine.faces.skew import ItemStatistics

        if self._statistics is None:
            file = self.path / STATISTICS_FILE
            if STATISTICS_FILE in self.manifest.get("checksums", {}):
                self._statistics = ItemStatistics.from_array(np.load(file), self.faces.height)
            else:
                log.info("index %s has no %s: computing it", self.name, STATISTICS_FILE)
                self._statistics = ItemStatistics.of(self.vectors())
        return self._statistics

    def failures(self) -> pl.DataFrame:
        return pl.read_parquet(self.path / FAILURES_FILE)


def empty_failures() -> pl.DataFrame:
    return pl.DataFrame(schema=FAILURE_SCHEMA)


def write_index(out_dir: str | Path, vectors: np.ndarray, faces: pl.DataFrame, *,
                model: dict, dataset: dict, failures: pl.DataFrame | None = None,
                factory: str = "Flat", preprocessing: dict | None = None,
                extra: dict | None = None) -> FaceIndex:
    """Write an index directory atomically from vectors and their face table (also used by tests
    and by other stages to make synthetic indexes). ``model`` is ModelSpec.describe() output."""
    import faiss

    from engine.faces.skew import ItemStatistics

    out_dir = Path(out_dir)
    faces = table.validate(faces, f"index {out_dir.name}")
    vectors = _check_vectors(vectors, faces.height)
    built = factories.build(vectors, factory)

    def write_vectors(tmp: Path):
        faiss.write_index(built.index, str(tmp / INDEX_FILE))
        return built.describe(), ItemStatistics.of(vectors)

    manifest, statistics = write_directory(out_dir, faces, write_vectors, dim=vectors.shape[1], model=model,
                                           dataset=dataset, failures=failures,
                                           preprocessing=preprocessing, extra=extra)
    return FaceIndex(out_dir, manifest, faces, built.index, _statistics=statistics)


def write_directory(out_dir: Path, faces: pl.DataFrame, write_vectors, *, dim: int, model: dict,
                    dataset: dict, failures: pl.DataFrame | None = None, preprocessing: dict | None = None,
                    extra: dict | None = None) -> tuple[dict, object]:
    """Write an index directory atomically around ``write_vectors(tmp) -> (index description,
    skew.ItemStatistics)``, which writes ``index.faiss`` (and the description's ``data_file``, if
    any) into ``tmp``; return the manifest and the statistics. ``faces`` must be validated."""
    failures = _check_failures(failures)
    with storage.atomic_dir(out_dir) as tmp:
        described, statistics = write_vectors(tmp)
        storage.write_parquet(tmp / FACES_FILE, faces)
        storage.write_parquet(tmp / FAILURES_FILE, failures)
        storage.write_npy(tmp / STATISTICS_FILE, statistics.to_array())
        files = (*DATA_FILES, *([described["data_file"]] if described.get("data_file") else []))
        manifest = {
            **storage.manifest_header("index"), "format": FORMAT, "name": out_dir.name,
            "model": model, "preprocessing": preprocessing, "dim": int(dim),
            "metric": "inner_product", "normalized": True, "count": faces.height,
            "failures": failures.height, "dataset": dataset, "index": described,
            "attributes": table.attributes(faces),
            "checksums": {name: storage.sha256_file(tmp / name) for name in files},
            **(extra or {}),
        }
        storage.write_json(tmp / storage.MANIFEST_NAME, manifest)
    for name, digest in manifest["checksums"].items():  # the first open need not hash them again
        checksum_cache.remember(out_dir / name, digest)
    log.info("wrote index %s: %d items, %d failures", out_dir, faces.height, failures.height)
    return manifest, statistics


def open_index(name: str, indexes_dir: str | Path = "indexes", *, verify: bool = True) -> FaceIndex:
    """Open ``indexes_dir/name`` (or a path to an index directory); check its checksums."""
    path = resolve_index_path(name, indexes_dir)
    manifest = storage.read_json(path / storage.MANIFEST_NAME)
    if verify:
        verify_checksums(path, manifest)
    faiss_index = read_faiss_index(path, manifest)
    faces = pl.read_parquet(path / FACES_FILE)
    if not faiss_index.ntotal == faces.height == manifest["count"]:
        raise InputError(f"index {path}: {faiss_index.ntotal} vectors, {faces.height} face rows and a "
                         f"manifest count of {manifest['count']} disagree; rebuild the index")
    factories.apply_search_params(faiss_index, manifest["index"].get("search_params", ""))
    return FaceIndex(path, manifest, faces, faiss_index)


def read_faiss_index(path: Path, manifest: dict):
    """The FAISS index of the directory ``path``; an on-disk IVF index keeps its lists in
    ``index.ivfdata`` beside ``index.faiss``, wherever the directory has moved."""
    import faiss

    if manifest["index"].get("on_disk"):
        from engine.faces.large_index import read_on_disk

        return read_on_disk(path.resolve() / INDEX_FILE)
    return faiss.read_index(str(path / INDEX_FILE))


def resolve_index_path(name: str, indexes_dir: str | Path = "indexes") -> Path:
    direct = Path(name)
    if (direct / storage.MANIFEST_NAME).is_file() and (direct.is_absolute() or "/" in name):
        return direct
    path = Path(indexes_dir) / name
    if not (path / storage.MANIFEST_NAME).is_file():
        known = [entry["name"] for entry in list_indexes(indexes_dir)]
        raise InputError(f"no index {name!r} in {indexes_dir}; "
                         f"{'available: ' + ', '.join(known) if known else 'it holds no indexes'} "
                         "(build one with `vlaudit index build`, or pass --indexes-dir)")
    return path


def verify_checksums(path: Path, manifest: dict) -> None:
    for name, expected in manifest.get("checksums", {}).items():
        file = path / name
        if not file.is_file():
            raise InputError(f"index {path}: {name} is missing; rebuild the index")
        if checksum_cache.sha256(file) != expected:
            raise InputError(f"index {path}: {name} does not match its checksum in manifest.json "
                             "(the file was changed or damaged); rebuild the index")


def list_indexes(indexes_dir: str | Path = "indexes") -> list[dict]:
    """A summary of every index under ``indexes_dir``, by name."""
    root = Path(indexes_dir)
    if not root.is_dir():
        return []
    found = []
    for path in sorted(root.iterdir()):
        manifest_path = path / storage.MANIFEST_NAME
        if path.name.startswith(".") or not manifest_path.is_file():
            continue
        found.append(summarize(storage.read_json(manifest_path), path))
    return found


def summarize(manifest: dict, path: Path) -> dict:
    model = manifest.get("model", {})
    return {"name": path.name, "path": str(path), "count": manifest.get("count"),
            "dim": manifest.get("dim"), "failures": manifest.get("failures"),
            "model": model.get("name"), "pretrained": model.get("pretrained"),
            "checkpoint_sha256": model.get("checkpoint_sha256"),
            "random_weights": model.get("random_weights"),
            "factory": manifest.get("index", {}).get("factory"),
            "source": manifest.get("dataset", {}).get("spec"), "created": manifest.get("created")}


def _check_vectors(vectors: np.ndarray, rows: int) -> np.ndarray:
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape[0] != rows:
        raise InputError(f"vectors of shape {vectors.shape} do not match a face table of {rows} rows")
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if not np.isfinite(vectors).all():
        raise InputError("vectors contain NaN or infinite values")
    norms = np.linalg.norm(vectors, axis=1)
    worst = float(np.abs(norms - 1).max())
    if worst > NORM_TOLERANCE:
        raise InputError(f"vectors must be L2-normalised (inner product = cosine); a row's norm is off "
                         f"by {worst:.3g}")
    return vectors


def _check_failures(failures: pl.DataFrame | None) -> pl.DataFrame:
    if failures is None:
        return empty_failures()
    missing = [c for c in FAILURE_SCHEMA if c not in failures.columns]
    if missing:
        raise InputError(f"failures table lacks columns {missing}")
    return failures.select(list(FAILURE_SCHEMA)).cast(FAILURE_SCHEMA)
