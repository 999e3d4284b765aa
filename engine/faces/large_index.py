"""IVF indexes larger than memory: train on a sample, fill shard by shard in parallel, merge on disk.

The embedded shards (``.npy`` files, row-aligned, in item order) never have to fit in memory
together:

1. **train**: a seeded sample of rows, read through memory maps, trains the IVF coarse quantizer
   (and any codec) once -> ``trained.index``;
2. **fill**: one batch task per shard (engine.batch: a local process pool or Ray workers) adds the
   shard's vectors, with their global ids, to the trained index and writes only its inverted
   lists -> ``block-NNNNN.ivl``; resumable and idempotent like every batch job;
3. **merge**: the blocks' inverted lists are memory-mapped and merged, ``fan_in`` at a time, into
   one ``OnDiskInvertedLists`` file, ``index.ivfdata``, referenced by ``index.faiss``.

Every step is deterministic, so the files are identical whatever executor filled the blocks. The
index file names its data file relative to itself: open it with ``read_on_disk`` (FAISS's
``IO_FLAG_ONDISK_SAME_DIR``), which keeps the lists on disk and lets the directory move.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine import batch, storage
from engine.errors import InputError
from engine.faces import factories
from engine.faces.factories import RECALL_K, RECALL_QUERIES, RECALL_SEED

log = logging.getLogger(__name__)

INDEX_FILE, DATA_FILE, TRAINED_FILE = "index.faiss", "index.ivfdata", "trained.index"
MIN_POINTS_PER_CENTROID = 39  # FAISS warns below this many training points per list
DEFAULT_FACTORY = "IVF{nlist},Flat"


def factory_nlist(factory: str) -> int | None:
    """The list count written into a factory string (``IVF1024,Flat`` -> 1024), if any."""
    found = re.search(r"IVF(\d+)", factory)
    return int(found.group(1)) if found else None


@dataclass(frozen=True)
class OnDiskConfig:
    """How to build the on-disk IVF index (``{nlist}`` in the factory is filled in)."""

    factory: str = DEFAULT_FACTORY  # any IVF factory without fast-scan codes, e.g. IVF{nlist},PQ64
    nlist: int | None = None  # None: the factory's, else a power of two near 4 * sqrt(count)
    train_size: int | None = None  # None: 64 rows per list (all rows when fewer)
    nprobe: int | None = None  # None: nlist / 8, at least 8 (at most nlist)
    fan_in: int = 256  # block files merged at once (each is one memory map)
    seed: int = 0
    recall_queries: int = RECALL_QUERIES  # sampled rows whose recall vs exact search is measured; 0: none

    def __post_init__(self):
        for name in ("nlist", "train_size", "nprobe"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"{name} must be at least 1")
        if self.fan_in < 2:
            raise InputError("fan_in must be at least 2")
        if self.recall_queries < 0:
            raise InputError("recall_queries must be 0 (no recall measured) or more")
        if "IVF" not in self.factory:
            raise InputError(f"on-disk indexes are IVF indexes; {self.factory!r} has no IVF part")
        fixed = factory_nlist(self.factory)
        if fixed is not None and self.nlist is not None and fixed != self.nlist:
            raise InputError(f"the factory {self.factory!r} has {fixed} lists but nlist is {self.nlist}; "
                             "give the list count once (IVF{nlist},... takes nlist)")

    def lists_for(self, count: int) -> int:
        """The number of inverted lists for ``count`` rows."""
        return factory_nlist(self.factory) or self.nlist or default_nlist(count)


def build_on_disk(shard_files: Sequence[str | Path], out_dir: str | Path, work_dir: str | Path, *,
                  config: OnDiskConfig = OnDiskConfig(), executor: str | batch.ExecutorOptions = "local",
                  workers: int = 1, progress: bool = False) -> dict:
    """Write ``index.faiss`` + ``index.ivfdata`` into ``out_dir`` from the shards' vectors (ids =
    row positions across the shards, in order); return the index description for a manifest,
    with the recall measured at the chosen nprobe."""
    import faiss

    shard_files = [Path(f) for f in shard_files]
    counts, dim = _shard_shapes(shard_files)
    total = int(sum(counts))
    nlist = config.lists_for(total)
    work_dir = Path(work_dir)
    trained_file = work_dir / TRAINED_FILE
    factory = config.factory.format(nlist=nlist)
    if not trained_file.exists():
        sample = training_sample(shard_files, counts, config.train_size or 64 * nlist, config.seed)
        storage_write_index(train(sample, factory, nlist), trained_file)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int)
    tasks = [batch.ShardTask(f"block-{i:05d}", (str(path), int(offset)))
             for i, (path, offset) in enumerate(zip(shard_files, offsets))]
    report = batch.run_shards(tasks, AddShard(str(trained_file)), work_dir / "blocks",
                              executor=executor, workers=workers, desc="IVF blocks", progress=progress)
    if report.failed:
        first = next(iter(report.failed.values())).strip().splitlines()[-1]
        raise InputError(f"{len(report.failed)} of {len(tasks)} shards could not be added ({first}); "
                         "rerun to retry them")
    blocks = [work_dir / "blocks" / f"{task.shard_id}.ivl" for task in tasks]
    index = merge_blocks(trained_file, blocks, Path(out_dir), work_dir, config.fan_in)
    nprobe = min(nlist, config.nprobe or max(8, nlist // 8))
    faiss.extract_index_ivf(index).nprobe = nprobe
    recall = measure_recall(index, shard_files, counts, config.recall_queries) if config.recall_queries else None
    return {"factory": factory, "exact": False, "metric": "inner_product", "on_disk": True,
            "data_file": DATA_FILE, "nlist": nlist, "nprobe": nprobe, "count": int(index.ntotal),
            "dim": dim, "train_size": min(total, config.train_size or 64 * nlist), "seed": config.seed,
            "search_params": f"nprobe={nprobe}", "recall_vs_exact": recall}


def measure_recall(index, shard_files: Sequence[Path], counts: Sequence[int],
                   queries: int = RECALL_QUERIES, k: int = RECALL_K) -> dict:
    """recall@k of ``index`` against exact inner-product search, as factories.measure_recall
    measures it (the same seeded sample of indexed rows as queries), the exact answers read from
    the memory-mapped shards."""
    total = int(sum(counts))
    sample = training_sample(shard_files, counts, queries, RECALL_SEED)
    return factories.recall_at_k(index, sample, shard_blocks(shard_files), min(k, total))


def shard_blocks(shard_files: Sequence[Path], rows: int = 16_384):
    """(float32 rows, global offset of the first) in row order, ``rows`` at a time, read through
    memory maps: the shards never have to fit in memory together."""
    offset = 0
    for path in shard_files:
        mapped = np.load(path, mmap_mode="r")
        for start in range(0, len(mapped), rows):
            yield np.asarray(mapped[start:start + rows], dtype=np.float32), offset + start
        offset += len(mapped)


def default_nlist(count: int) -> int:
    """A power of two near 4 * sqrt(count), with enough rows per list to train (FAISS's advice)."""
    wanted = 2 ** round(math.log2(max(1.0, 4 * math.sqrt(count))))
    return int(max(1, min(wanted, count // MIN_POINTS_PER_CENTROID, 1 << 18)))


def training_sample(shard_files: Sequence[Path], counts: Sequence[int], size: int, seed: int) -> np.ndarray:
    """``size`` rows drawn without replacement (seeded) across the shards, in row order."""
    total = int(sum(counts))
    rows = np.sort(np.random.default_rng(seed).choice(total, size=min(size, total), replace=False))
    starts = np.concatenate([[0], np.cumsum(counts)])
    parts = []
    for i, path in enumerate(shard_files):
        local = rows[(rows >= starts[i]) & (rows < starts[i + 1])] - starts[i]
        if len(local):
            parts.append(np.asarray(np.load(path, mmap_mode="r")[local], dtype=np.float32))
    return np.concatenate(parts)


def train(sample: np.ndarray, factory: str, nlist: int):
    """An empty, trained IVF index (inner product) for ``factory``."""
    import faiss

    if len(sample) < nlist:
        raise InputError(f"{len(sample)} training rows cannot train {nlist} lists; lower nlist")
    try:
        index = faiss.index_factory(sample.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise InputError(f"FAISS cannot build {factory!r}: {str(exc).strip().splitlines()[-1]}") from exc
    ivf = faiss.extract_index_ivf(index)
    if not isinstance(faiss.downcast_InvertedLists(ivf.invlists), faiss.ArrayInvertedLists):
        raise InputError(f"{factory!r} keeps its lists in a layout that cannot live on disk; "
                         "use plain codes such as Flat, SQ8 or PQ64")
    ivf.cp.seed = 1234  # FAISS's default k-means seed, pinned
    index.train(sample)
    return index


@dataclass(frozen=True)
class AddShard:
    """The work function of one block: the shard's vectors added to the trained index."""

    trained_file: str

    def __call__(self, task: batch.ShardTask, out_dir: Path) -> dict:
        import faiss

        path, offset = task.payload
        vectors = np.ascontiguousarray(np.load(path), dtype=np.float32)
        index = batch.process_cached(_read_index, self.trained_file)  # once per worker
        try:
            index.add_with_ids(vectors, np.arange(offset, offset + len(vectors), dtype=np.int64))
            target = Path(out_dir) / f"{task.shard_id}.ivl"
            with storage.atomic_path(target) as tmp:
                writer = faiss.FileIOWriter(str(tmp))
                faiss.write_InvertedLists(faiss.extract_index_ivf(index).invlists, writer)
                del writer  # closes the file
        finally:
            index.reset()  # back to the empty trained index for the next shard
        return {"rows": len(vectors), "offset": offset}


def merge_blocks(trained_file: Path, blocks: Sequence[Path], out_dir: Path, work_dir: Path,
                 fan_in: int):
    """Merge the blocks' lists into ``out_dir/index.ivfdata``; write and return the index."""
    import faiss

    index = _read_index(str(trained_file))
    ivf = faiss.extract_index_ivf(index)
    out_dir.mkdir(parents=True, exist_ok=True)
    merged, total = _merge(_merge_rounds(blocks, ivf, work_dir, fan_in), ivf, out_dir / DATA_FILE)
    ivf.replace_invlists(merged, True)
    merged.this.disown()  # now owned by the index
    index.ntotal = ivf.ntotal = total
    merged.filename = DATA_FILE  # relative: found beside index.faiss by read_on_disk
    storage_write_index(index, out_dir / INDEX_FILE)
    for leftover in work_dir.glob("merge-*.ivfdata"):
        leftover.unlink()
    return index


def read_on_disk(index_file: str | Path, *, mmap: bool = False):
    """Open an on-disk IVF index; its lists stay on disk, found beside ``index_file``."""
    import faiss

    flags = faiss.IO_FLAG_ONDISK_SAME_DIR | (faiss.IO_FLAG_MMAP if mmap else 0)
    with _stdout_to_stderr(discard=True):  # FAISS prints the data file it picks on stdout
        index = faiss.read_index(str(index_file), flags)
    log.debug("opened %s, its lists in %s", index_file, Path(index_file).with_name(DATA_FILE))
    return index


def storage_write_index(index, path: Path) -> None:
    import faiss

    with storage.atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))


def _merge_rounds(blocks: Sequence[Path], ivf, work_dir: Path, fan_in: int) -> list:
    """Merge groups of ``fan_in`` blocks into intermediate on-disk lists until at most ``fan_in``
    remain; return those, opened (blocks are memory-mapped only while their group merges)."""
    if len(blocks) <= fan_in:
        return [_read_block(path) for path in blocks]
    merged = []
    for start in range(0, len(blocks), fan_in):
        group = [_read_block(path) for path in blocks[start:start + fan_in]]
        merged.append(_merge(group, ivf, work_dir / f"merge-0-{start // fan_in:05d}.ivfdata")[0])
    return _merge_more(merged, ivf, work_dir, fan_in, 1)


def _merge_more(level: list, ivf, work_dir: Path, fan_in: int, round_number: int) -> list:
    while len(level) > fan_in:
        level = [_merge(level[start:start + fan_in], ivf,
                        work_dir / f"merge-{round_number}-{start // fan_in:05d}.ivfdata")[0]
                 for start in range(0, len(level), fan_in)]
        round_number += 1
    return level


def _merge(sources: list, ivf, target: Path):
    import faiss

    target.unlink(missing_ok=True)
    lists = faiss.OnDiskInvertedLists(ivf.nlist, ivf.code_size, str(target))
    pointers = faiss.InvertedListsPtrVector()
    for source in sources:
        pointers.push_back(source)
    with _stdout_to_stderr():  # FAISS prints each file it resizes on stdout
        total = lists.merge_from_multiple(pointers.data(), pointers.size(), False)
    return lists, int(total)


def _read_block(path: Path):
    import faiss

    return faiss.read_InvertedLists(faiss.FileIOReader(str(path)), faiss.IO_FLAG_MMAP)


def _read_index(path: str):
    import faiss

    return faiss.read_index(path)


def _shard_shapes(shard_files: Sequence[Path]) -> tuple[list[int], int]:
    if not shard_files:
        raise InputError("no shards to index")
    shapes = [np.load(path, mmap_mode="r").shape for path in shard_files]
    dims = {shape[1] for shape in shapes if len(shape) == 2}
    if len(dims) != 1 or any(len(shape) != 2 for shape in shapes):
        raise InputError(f"shards must be 2-d arrays of one width; found shapes {sorted(set(shapes))[:4]}")
    return [shape[0] for shape in shapes], dims.pop()


@contextlib.contextmanager
def _stdout_to_stderr(discard: bool = False):
    """Send what C code prints on stdout to stderr (or nowhere), so ``--json`` output stays clean."""
    sys.stdout.flush()
    saved = os.dup(1)
    target = os.open(os.devnull, os.O_WRONLY) if discard else 2
    os.dup2(target, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        if discard:
            os.close(target)
