"""The resumable index build: face source -> embedded shards -> one index written atomically.

Work happens in ``INDEXES/.NAME.partial/<config hash>/``: the face table is cut into shards of
``shard_size`` items; each shard's vectors go to ``shard-NNNNN.npy`` and its stats (with the
items that could not be read) to ``shard-NNNNN_stats.json``, written last by engine.batch as the
"done" marker. A rerun with the same configuration skips finished shards, so an interrupted
build continues where it stopped and yields the identical index. A different configuration
(model, source content, shard size, batch size, ...) hashes to a fresh work directory.

With ``on_disk`` the shards are never gathered: engine.faces.large_index turns them into an IVF
index with its lists in ``index.ivfdata`` (resumable too, in ``ivf-<hash>/`` of the work
directory), and the item statistics come from two passes over the memory-mapped shards.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from engine import batch, storage
from engine.errors import InputError, VlauditError
from engine.faces import index as face_index
from engine.faces import table
from engine.faces.images import DEFAULT_MAX_PIXELS
from engine.faces.models import ModelSpec, resolve_weights

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class BuildConfig:
    name: str
    source: str  # KIND:PATH, see engine.faces.sources
    model: ModelSpec
    source_options: object = None  # engine.faces.sources.SourceOptions
    factory: str = "auto"  # Flat (exact), auto, or any FAISS factory string (IVF..., HNSW...)
    on_disk: bool = False  # an IVF index whose lists stay on disk (engine.faces.large_index)
    nlist: int | None = None  # on_disk: inverted lists (None: about 4 sqrt(count))
    nprobe: int | None = None  # on_disk: lists searched per query (None: nlist / 8, at least 8)
    indexes_dir: Path = Path("indexes")
    batch_size: int = 64
    workers: int | None = None  # image-decoding processes; None = one per spare core
    shard_size: int = 4096
    device: str = "auto"
    max_pixels: int = DEFAULT_MAX_PIXELS
    overwrite: bool = False
    progress: bool = True
    executor: batch.ExecutorOptions = batch.ExecutorOptions()  # where shards run: local or ray

    def __post_init__(self):
        if not NAME_PATTERN.match(self.name or ""):
            raise InputError(f"index name {self.name!r}: use letters, digits, '.', '_' and '-' "
                             "(not starting with '.' or '-')")
        for field_name in ("batch_size", "shard_size", "max_pixels"):
            if getattr(self, field_name) < 1:
                raise InputError(f"{field_name} must be at least 1")
        if self.workers is not None and self.workers < 0:
            raise InputError("workers must be 0 (decode in this process) or more")
        if not self.on_disk and (self.nlist is not None or self.nprobe is not None):
            raise InputError("nlist and nprobe set up the on-disk IVF index: add --on-disk")
        if self.on_disk:
            self.on_disk_config()  # validates the factory, nlist and nprobe now
        object.__setattr__(self, "indexes_dir", Path(self.indexes_dir))

    def on_disk_config(self):
        """The engine.faces.large_index.OnDiskConfig of an on_disk build (auto: IVF{nlist},Flat)."""
        from engine.faces.large_index import DEFAULT_FACTORY, OnDiskConfig

        factory = DEFAULT_FACTORY if self.factory == "auto" else self.factory
        return OnDiskConfig(factory=factory, nlist=self.nlist, nprobe=self.nprobe)

    @property
    def out_dir(self) -> Path:
        return self.indexes_dir / self.name

    @property
    def partial_root(self) -> Path:
        return self.indexes_dir / f".{self.name}.partial"


def run_build(config: BuildConfig, loaded=None) -> dict:
    """Build ``config.name`` from its source (or an already ``loaded`` LoadedSource)."""
    started = time.monotonic()
    if config.out_dir.exists() and not config.overwrite:
        raise InputError(f"index {config.out_dir} already exists; pass --overwrite to replace it")
    resolve_weights(config.model)  # a missing model or weights fails before any data is read
    if loaded is None:
        from engine.faces.sources import load_source

        loaded = load_source(config.source, config.source_options)
    faces = table.validate(loaded.faces, config.source)
    if loaded.vectors is not None:
        result = _write_precomputed(config, loaded, faces)
    else:
        result = _embed_and_write(config, loaded, faces)
    return {**result, "seconds": round(time.monotonic() - started, 2)}


def _embed_and_write(config: BuildConfig, loaded, faces: pl.DataFrame) -> dict:
    from engine.faces.embed import Encoder

    # Loaded once per process; the shards run here reuse it (Ray workers load their own).
    encoder = batch.process_cached(Encoder.load, config.model, config.device)
    work_dir = config.partial_root / config_hash(config, encoder, faces)
    tasks = shard_tasks(faces, config.shard_size)
    work = EmbedShard(config.model, config.device, config.batch_size, config.workers,
                      config.max_pixels, config.progress)
    report = batch.run_shards(tasks, work, work_dir, executor=config.executor, gpu=True,
                              desc="shards", progress=config.progress)
    if report.failed:
        first = next(iter(report.failed.values())).strip().splitlines()[-1]
        raise VlauditError(f"{len(report.failed)} of {len(tasks)} shards failed ({first}); finished "
                           f"shards are kept in {work_dir}: rerun the same command to retry the rest")
    kept, failures = split_failures(faces, shard_failures(work_dir, tasks, report.done), loaded.failures)
    devices = sorted({stats["device"] for stats in report.done.values()})
    described = {"model": encoder.describe(), "dataset": _dataset(config, loaded), "failures": failures,
                 "preprocessing": encoder.preprocessing(),
                 "extra": {"build": {**_build_record(config, len(tasks)), "devices": devices}}}
    if config.on_disk:
        written = write_on_disk(config, vector_files(work_dir, tasks), kept, work_dir, **described)
    else:
        _warn_if_large(kept.height, encoder.dim)
        vectors = np.concatenate([np.load(file) for file in vector_files(work_dir, tasks)])
        written = face_index.write_index(config.out_dir, vectors, kept, factory=config.factory, **described)
    shutil.rmtree(config.partial_root, ignore_errors=True)
    return _result(written, shards=len(tasks), resumed=len(report.skipped))


def _write_precomputed(config: BuildConfig, loaded, faces: pl.DataFrame) -> dict:
    """An embeddings: source brings its vectors; check they fit the named model and index them."""
    import open_clip

    from engine.faces.models import register_model_configs

    register_model_configs()
    expected = (open_clip.get_model_config(config.model.name) or {}).get("embed_dim")
    vectors = np.asarray(loaded.vectors, dtype=np.float32)
    if expected is not None and vectors.shape[1] != expected:
        raise InputError(f"{config.source}: vectors have dimension {vectors.shape[1]} but model "
                         f"{config.model.name} embeds to {expected}; name the model that made them")
    described = {"model": config.model.describe(), "dataset": _dataset(config, loaded),
                 "failures": loaded.failures,
                 "extra": {"build": {**_build_record(config, 0), "precomputed": True}}}
    if not config.on_disk:
        written = face_index.write_index(config.out_dir, vectors, faces, factory=config.factory, **described)
        return _result(written, shards=0, resumed=0)
    work_dir = config.partial_root / "precomputed"  # nothing costly to resume: start afresh
    shutil.rmtree(work_dir, ignore_errors=True)
    size = config.shard_size
    shard_files = [storage.write_npy(work_dir / f"shard-{i:05d}.npy", vectors[start:start + size])
                   for i, start in enumerate(range(0, len(vectors), size))]
    written = write_on_disk(config, shard_files, faces, work_dir, **described)
    shutil.rmtree(config.partial_root, ignore_errors=True)
    return _result(written, shards=0, resumed=0)


def write_on_disk(config: BuildConfig, shard_files: list[Path], faces: pl.DataFrame, work_dir: Path,
                  **described) -> face_index.FaceIndex:
    """The index directory of an on-disk IVF index over the shards' vectors (row i = item i)."""
    from engine.faces import large_index
    from engine.faces.skew import ItemStatistics

    on_disk = config.on_disk_config()
    decided_by = [on_disk.factory, on_disk.nlist, on_disk.train_size, on_disk.seed]  # the quantizer
    ivf_dir = work_dir / f"ivf-{storage.sha256_bytes(json.dumps(decided_by).encode())[:12]}"

    def write_vectors(tmp: Path):
        described_index = large_index.build_on_disk(shard_files, tmp, ivf_dir, config=on_disk,
                                                    executor=config.executor, progress=config.progress)
        statistics = ItemStatistics.of_blocks(
            lambda: (rows for rows, _ in large_index.shard_blocks(shard_files)))
        return described_index, statistics

    dim = np.load(shard_files[0], mmap_mode="r").shape[1]
    face_index.write_directory(config.out_dir, table.validate(faces, config.name), write_vectors,
                               dim=dim, **described)
    return face_index.open_index(str(config.out_dir.resolve()), verify=False)


def shard_tasks(faces: pl.DataFrame, shard_size: int) -> list[batch.ShardTask]:
    references = faces["image"].to_list()
    return [batch.ShardTask(f"shard-{start // shard_size:05d}",
                            (start, tuple(references[start:start + shard_size])))
            for start in range(0, len(references), shard_size)]


@dataclass(frozen=True)
class EmbedShard:
    """The work function of one shard: picklable, loads (or reuses) its encoder lazily."""

    model: ModelSpec
    device: str
    batch_size: int
    workers: int | None
    max_pixels: int
    progress: bool = False

    def __call__(self, task: batch.ShardTask, out_dir: Path) -> dict:
        from engine.faces.embed import Encoder

        start, references = task.payload
        encoder = batch.process_cached(Encoder.load, self.model, self.device)
        began = time.monotonic()
        vectors, failed = encoder.encode_image_refs(
            references, self.batch_size, self.workers, max_pixels=self.max_pixels, progress=self.progress)
        storage.write_npy(Path(out_dir) / f"{task.shard_id}.npy", vectors)
        return {"start": start, "items": len(references), "embedded": len(vectors),
                "failed": [[start + position, reason] for position, reason in failed],
                "device": encoder.device, "seconds": round(time.monotonic() - began, 3)}



def gather_shards(work_dir: Path, tasks, done: dict) -> tuple[np.ndarray, dict[int, str]]:
    """Concatenate the shards' vectors in order; item_id -> reason for unreadable items."""
    failed = shard_failures(work_dir, tasks, done)
    return np.concatenate([np.load(file) for file in vector_files(work_dir, tasks)]), failed


def vector_files(work_dir: Path, tasks) -> list[Path]:
    """The embedded shards' .npy files, in item order."""
    return [work_dir / f"{task.shard_id}.npy" for task in tasks]


def shard_failures(work_dir: Path, tasks, done: dict) -> dict[int, str]:
    """item_id -> reason for the items no shard could embed, once each shard's file is checked
    against its stats (through a memory map: nothing is read but the header)."""
    failed = {}
    for task in tasks:
        stats = done[task.shard_id]
        rows = len(np.load(work_dir / f"{task.shard_id}.npy", mmap_mode="r"))
        if rows != stats["embedded"]:
            raise VlauditError(f"{work_dir}/{task.shard_id}.npy holds {rows} vectors, its stats "
                               f"say {stats['embedded']}; delete {work_dir} and rebuild")
        failed.update({int(item): reason for item, reason in stats["failed"]})
    return failed


def split_failures(faces: pl.DataFrame, failed: dict[int, str],
                   source_failures: pl.DataFrame | None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The embedded faces (item_id renumbered 0..n-1) and every failure: (key, image, reason)."""
    is_failed = np.zeros(faces.height, dtype=bool)
    is_failed[list(failed)] = True
    if is_failed.all():
        reasons = sorted(set(failed.values()))[:3]
        raise InputError(f"none of the {faces.height} images could be read; reasons include {reasons}")
    kept = faces.filter(pl.Series(~is_failed)).with_columns(
        item_id=pl.int_range(0, pl.len(), dtype=pl.Int64))
    embed_failures = faces[np.flatnonzero(is_failed)].select("key", "image").with_columns(
        reason=pl.Series([failed[i] for i in sorted(failed)], dtype=pl.Utf8))
    frames = [embed_failures]
    if source_failures is not None and source_failures.height:
        frames.insert(0, source_failures.select("key", "image", "reason").cast(pl.Utf8))
    if failed:
        log.warning("%d of %d images could not be read; see failures.parquet", len(failed), faces.height)
    return kept, pl.concat(frames)


def config_hash(config: BuildConfig, encoder, faces: pl.DataFrame) -> str:
    """Everything that decides the vectors: model weights, preprocessing, the items, the batching."""
    items = hashlib.sha256()
    for key, image in zip(faces["key"].to_list(), faces["image"].to_list(), strict=True):
        items.update(f"{key}\t{image}\n".encode())
    model = config.model.describe()
    decided_by = {"model": [model["name"], model["pretrained"], model["checkpoint_sha256"]],
                  "device": encoder.device, "preprocessing": encoder.preprocessing(),
                  "items": items.hexdigest(), "shard_size": config.shard_size,
                  "batch_size": config.batch_size, "max_pixels": config.max_pixels}
    return storage.sha256_bytes(json.dumps(decided_by, sort_keys=True).encode())[:16]


def _warn_if_large(count: int, dim: int) -> None:
    """Advice, when the vectors and their in-memory index would fill this machine's memory: the
    index kind itself never depends on the machine."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows)
        return
    if count * dim * 4 * 2 > memory:
        log.warning("%d vectors of dimension %d take %.1f GB, and the index as much again, on a machine "
                    "with %.1f GB: if the build runs out of memory, rerun with --on-disk", count, dim,
                    count * dim * 4 / 1e9, memory / 1e9)


def _dataset(config: BuildConfig, loaded) -> dict:
    described = dict(loaded.description or {})
    described.setdefault("spec", config.source)
    if config.source_options is not None:
        described.setdefault("options", dataclasses.asdict(config.source_options))
    return described


def _build_record(config: BuildConfig, shards: int) -> dict:
    return {"shards": shards, "shard_size": config.shard_size, "batch_size": config.batch_size,
            "max_pixels": config.max_pixels, "engine": config.executor.engine}


def _result(written, *, shards: int, resumed: int) -> dict:
    model = written.manifest["model"]
    return {"name": written.name, "path": str(written.path), "count": written.manifest["count"],
            "dim": written.manifest["dim"], "failures": written.manifest["failures"],
            "model": model["name"], "pretrained": model.get("pretrained"),
            "checkpoint": model.get("checkpoint"), "random_weights": model.get("random_weights"),
            "factory": written.manifest["index"]["factory"],
            "recall_vs_exact": written.manifest["index"]["recall_vs_exact"],
            **{key: written.manifest["index"][key] for key in ("on_disk", "nlist", "nprobe")
               if key in written.manifest["index"]},
            "shards": shards, "resumed_shards": resumed}
