"""The shard runner every batch job uses: skip finished shards, retry, keep failures as data.

A job is a list of ``ShardTask``s and a ``work`` function ``work(task, out_dir) -> dict``. The
work function writes its own outputs atomically into ``out_dir`` (so a rerun of a shard
overwrites them identically) and returns its stats; the runner then writes
``<shard_id>_stats.json`` last, which marks the shard done (img2dataset's convention), so a rerun
after a crash does only what is missing. A shard that still fails after its retries is recorded
(``<shard_id>_error.json``) and the others go on.

Executors sit behind one seam (``EXECUTORS``): ``local`` runs shards in this process (workers=1)
or in a process pool; ``ray`` runs the same tasks on a Ray cluster (engine.ray_executor, loaded
only when asked for). Commands offer the choice with ``add_engine_arguments`` /
``executor_options``. Work functions build heavy objects (a model) through ``process_cached``
from a small picklable spec, so each worker process loads one model and nothing heavy is pickled.
What every shard shares (a model spec, compiled terms) belongs in the work callable (a frozen
dataclass), which Ray ships once per job; the payload carries only the shard's own input.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import multiprocessing
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from engine import storage
from engine.errors import InputError, MissingDependencyError

log = logging.getLogger(__name__)

WorkFn = Callable[["ShardTask", Path], dict]
OnResult = Callable[[str, "dict | None", "str | None"], None]  # (shard_id, stats, error)
T = TypeVar("T")
ENGINES = ("local", "ray")
WORKER_DEATH_RETRIES = 3  # times unfinished shards are run again after a worker process died


@dataclass(frozen=True)
class ShardTask:
    shard_id: str  # stable and unique within a job; used in marker file names
    payload: Any = None  # picklable input for the work function


@dataclass(frozen=True)
class ExecutorOptions:
    """Where shards run: ``local`` (this machine) or ``ray`` (a Ray cluster)."""

    engine: Literal["local", "ray"] = "local"
    ray_address: str | None = None  # ray: an existing cluster ("HOST:PORT", "ray://...", "auto")

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise InputError(f"unknown engine {self.engine!r}; choose one of {list(ENGINES)}")
        if self.ray_address is not None and self.engine != "ray":
            raise InputError("--ray-address needs --engine ray")
        if self.engine == "ray" and importlib.util.find_spec("ray") is None:
            raise MissingDependencyError(
                "the ray engine needs the package 'ray': pip install 'vlaudit[ray]'")


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
               executor: str | ExecutorOptions = "local", workers: int = 1, retries: int = 1,
               gpu: bool = False, desc: str = "shards", progress: bool = True,
               on_result: OnResult | None = None) -> JobReport:
    """Run every unfinished task; return what was done, skipped and failed.

    ``on_result(shard_id, stats, error)`` is called (in this thread) for each shard as soon as
    its outcome is recorded, skipped ones first: a caller can consume results while later
    shards still run.
    ``workers`` sizes the local process pool (and a Ray cluster started on this machine; a
    running cluster's size is its own). ``gpu=True`` says the work can use a GPU: Ray then gives
    each worker one when the cluster has GPUs."""
    options = executor if isinstance(executor, ExecutorOptions) else ExecutorOptions(engine=executor)
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
    on_result = on_result or (lambda *_: None)
    for shard_id in report.skipped:
        on_result(shard_id, report.done[shard_id], None)
    results = EXECUTORS[options.engine](todo, work, out_dir, workers=workers, retries=retries,
                                        options=options, gpu=gpu)
    for shard_id, stats, error in _with_progress(results, len(todo), desc, progress):
        _record(report, out_dir, shard_id, stats, error, desc)
        on_result(shard_id, stats, error)
    _remove_stale_temporaries(out_dir)
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


_PROCESS_CACHE: dict[tuple, Any] = {}


def process_cached(factory: Callable[..., T], *args: Any) -> T:
    """``factory(*args)``, built once per process and reused by every later shard it runs.

    Pool and Ray workers are long-lived processes, so a work function that gets its model here
    (``process_cached(Encoder.load, spec)``) loads it once per worker; ``args`` must be hashable."""
    key = (factory, args)
    if key not in _PROCESS_CACHE:
        _PROCESS_CACHE[key] = factory(*args)
    return _PROCESS_CACHE[key]


def add_engine_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``--engine local|ray [--ray-address ADDR]`` options of every batch command."""
    group = parser.add_argument_group("execution")
    group.add_argument("--engine", choices=ENGINES, default="local",
                       help="run shards on this machine (default) or on a Ray cluster")
    group.add_argument("--ray-address", metavar="ADDR", default=None,
                       help="Ray cluster to join (HOST:PORT, ray://HOST:PORT or auto); "
                            "without it --engine ray starts a cluster on this machine")
    return parser


def executor_options(args: argparse.Namespace) -> ExecutorOptions:
    """The ExecutorOptions that ``add_engine_arguments`` asked for."""
    return ExecutorOptions(engine=args.engine, ray_address=args.ray_address)


def _local(tasks, work, out_dir, *, workers: int, retries: int, **_) -> Iterable[tuple]:
    """Tasks in this process (one worker) or in a process pool. When a worker dies the pool is
    gone; the shards that had started then run again one at a time, so a shard that kills its
    worker (a poison input, memory) fails alone; those still queued run in parallel again."""
    if workers <= 1:
        for task in tasks:
            yield run_with_retries(task, work, out_dir, retries)
        return
    pending = list(tasks)
    for _round in range(WORKER_DEATH_RETRIES + 1):
        unfinished = yield from _pool_round(pending, work, out_dir, workers, retries)
        if not unfinished:
            return
        started = {task.shard_id for task in unfinished if _started_marker(out_dir, task).exists()}
        pending = [task for task in unfinished if task.shard_id not in started]
        again = (f"the {len(started)} shards it may have been running, one at a time" if started
                 else f"the {len(pending)} unfinished shards")
        log.warning("a worker process died; running again %s", again)
        for task in unfinished:
            if task.shard_id in started:
                yield _alone(task, work, out_dir, workers, retries)
        if not pending:
            return
    for task in pending:
        yield task.shard_id, None, f"worker processes died {WORKER_DEATH_RETRIES + 1} times while it waited"


def _pool_round(tasks, work, out_dir, workers: int, retries: int):
    """Yield the outcome of each task the pool finishes; return those lost when a worker died."""
    futures = {_process_pool(workers).submit(_run_marked, task, work, out_dir, retries): task for task in tasks}
    lost = set()
    for future in as_completed(futures):
        try:
            yield future.result()
        except BrokenProcessPool:
            lost.add(futures[future].shard_id)
    if lost:
        _drop_pool()
    return [task for task in tasks if task.shard_id in lost]  # in task order


def _alone(task, work, out_dir, workers: int, retries: int) -> tuple:
    """Run one task by itself in the pool, again each time its worker dies."""
    for _attempt in range(WORKER_DEATH_RETRIES):
        try:
            return _process_pool(workers).submit(_run_marked, task, work, out_dir, retries).result()
        except BrokenProcessPool:
            _drop_pool()
    _started_marker(out_dir, task).unlink(missing_ok=True)
    return task.shard_id, None, f"worker processes died {WORKER_DEATH_RETRIES + 1} times running it"


def _run_marked(task, work, out_dir, retries: int):
    """``run_with_retries`` in a pool worker, with a marker file while it runs: after a worker
    died, the tasks with a marker are those it may have been running."""
    marker = _started_marker(out_dir, task)
    marker.touch()
    try:
        return run_with_retries(task, work, out_dir, retries)
    finally:
        marker.unlink(missing_ok=True)


def _started_marker(out_dir, task) -> Path:
    return Path(out_dir) / f".{task.shard_id}.started"


_POOL: dict[int, ProcessPoolExecutor] = {}  # one pool per process, reused by later jobs


def _process_pool(workers: int) -> ProcessPoolExecutor:
    """The process pool of ``workers`` processes, kept for later jobs (a job run in rounds, a
    model loaded by process_cached); concurrent.futures shuts it down when the interpreter exits."""
    if workers not in _POOL:
        _drop_pool()
        # spawn, not fork: forking a process that already runs torch threads can hang the child
        context = multiprocessing.get_context("spawn")
        _POOL[workers] = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    return _POOL[workers]


def _drop_pool() -> None:
    for pool in _POOL.values():
        pool.shutdown(wait=False, cancel_futures=True)
    _POOL.clear()


def _ray(tasks, work, out_dir, **kwargs) -> Iterable[tuple]:
    if not tasks:  # nothing to do: don't start or join a cluster
        return iter(())
    from engine import ray_executor

    return ray_executor.run(tasks, work, out_dir, **kwargs)


EXECUTORS: dict[str, Callable[..., Iterable[tuple]]] = {"local": _local, "ray": _ray}


def _record(report: JobReport, out_dir: Path, shard_id: str, stats, error, desc: str) -> None:
    if error is None:
        storage.write_json(stats_path(out_dir, shard_id), stats)
        (out_dir / f"{shard_id}_error.json").unlink(missing_ok=True)
        report.done[shard_id] = stats
    else:
        storage.write_json(out_dir / f"{shard_id}_error.json", {"shard_id": shard_id, "error": error})
        report.failed[shard_id] = error
        log.warning("%s %s failed: %s", desc, shard_id, error.splitlines()[-1] if error else "")


def _remove_stale_temporaries(out_dir: Path) -> None:
    """Temporary files of writers killed mid-write (storage.atomic_path names) and markers of
    tasks whose worker died (_run_marked); all tasks are over."""
    for leftover in [*out_dir.glob(".*.tmp"), *out_dir.glob(".*.started")]:
        if leftover.is_file():
            leftover.unlink(missing_ok=True)


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
