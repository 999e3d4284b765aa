"""The shard runner every batch job uses: skip finished shards, retry, keep failures as data.

A job is a list of ``ShardTask``s and a ``work`` function ``work(task, out_dir) -> dict``. The
work function writes its own outputs atomically into ``out_dir`` and returns its stats; the
runner then writes ``<shard_id>_stats.json`` last, which marks the shard done (img2dataset's
convention), so a rerun after a crash does only what is missing. A shard that still fails after
its retries is recorded (``<shard_id>_error.json``) and the others go on.

Executors sit behind one seam (``EXECUTORS``): ``local`` runs shards in this process (workers=1)
or in a process pool; a distributed engine registers another entry.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import storage

log = logging.getLogger(__name__)

WorkFn = Callable[["ShardTask", Path], dict]


@dataclass(frozen=True)
class ShardTask:
    shard_id: str  # stable and unique within a job; used in marker file names
    payload: Any = None  # picklable input for the work function


@dataclass
class JobReport:
    done: dict[str, dict] = field(default_factory=dict)  # shard_id -> stats
    skipped: list[str] = field(default_factory=list)  # finished by an earlier run
    failed: dict[str, str] = field(default_factory=dict)  # shard_id -> error message


def stats_path(out_dir: Path, shard_id: str) -> Path:
    return Path(out_dir) / f"{shard_id}_stats.json"


def is_done(out_dir: Path, shard_id: str) -> bool:
    return stats_path(out_dir, shard_id).exists()


def run_shards(tasks: Sequence[ShardTask], work: WorkFn, out_dir: str | Path, *,
               executor: str = "local", workers: int = 1, retries: int = 1,
               desc: str = "shards", progress: bool = True) -> JobReport:
    """Run every unfinished task; return what was done, skipped and failed."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_unique(tasks)
    report = JobReport()
    todo = []
    for task in tasks:
        if is_done(out_dir, task.shard_id):
            report.skipped.append(task.shard_id)
            report.done[task.shard_id] = storage.read_json(stats_path(out_dir, task.shard_id))
        else:
            todo.append(task)
    if report.skipped:
        log.info("%d of %d %s already done; resuming", len(report.skipped), len(tasks), desc)
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose one of {sorted(EXECUTORS)}")
    results = EXECUTORS[executor](todo, work, out_dir, workers=workers, retries=retries)
    for shard_id, stats, error in _with_progress(results, len(todo), desc, progress):
        if error is None:
            storage.write_json(stats_path(out_dir, shard_id), stats)
            (out_dir / f"{shard_id}_error.json").unlink(missing_ok=True)
            report.done[shard_id] = stats
        else:
            storage.write_json(out_dir / f"{shard_id}_error.json", {"shard_id": shard_id, "error": error})
            report.failed[shard_id] = error
            log.warning("%s %s failed: %s", desc, shard_id, error.splitlines()[-1] if error else "")
    return report


def run_with_retries(task: ShardTask, work: WorkFn, out_dir: Path, retries: int):
    """Run one task; return (shard_id, stats, None) or (shard_id, None, error text)."""
    error = None
    for attempt in range(retries + 1):
        try:
            return task.shard_id, work(task, out_dir), None
        except Exception:  # a shard's failure is data; the job goes on
            error = traceback.format_exc(limit=3)
            log.info("shard %s attempt %d failed", task.shard_id, attempt + 1)
    return task.shard_id, None, error


def _local(tasks, work, out_dir, *, workers: int, retries: int) -> Iterable[tuple]:
    if workers <= 1:
        for task in tasks:
            yield run_with_retries(task, work, out_dir, retries)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run_with_retries, t, work, out_dir, retries) for t in tasks]
        for future in as_completed(futures):
            yield future.result()


EXECUTORS: dict[str, Callable[..., Iterable[tuple]]] = {"local": _local}


def _check_unique(tasks: Sequence[ShardTask]) -> None:
    seen = set()
    for task in tasks:
        if task.shard_id in seen:
            raise ValueError(f"duplicate shard id {task.shard_id!r}")
        seen.add(task.shard_id)


def _with_progress(results: Iterable[tuple], total: int, desc: str, enabled: bool):
    if not enabled or total == 0:
        yield from results
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, unit="shard", leave=False) as bar:
        for item in results:
            bar.update(1)
            yield item
