"""``vlaudit scan``: caption sources -> DuckDB database -> co-occurrence outputs.

Flow: discover the source files (engine.captions.shards) -> register them in the database
(engine.captions.store; files already done and unchanged are skipped) -> group them into map
tasks (one large file, or many small ones) -> map each task (engine.captions.staging.scan_task)
through the shard runner (engine.batch: local process pool or Ray) -> ingest each mapped task
into the database, in file order, while later tasks map (engine.captions.ingest) -> reduce the
database into the output directory (engine.captions.outputs).

Interrupting a scan loses at most the tasks being mapped: a rerun ingests the tasks already
staged, scans the rest, and gives the same result as an uninterrupted run.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from engine import batch, storage
from engine.captions import staging, store
from engine.captions.cooccurrence import DEFAULT_PRIOR_SCALE
from engine.captions.evidence import ExampleFrontier
from engine.captions.ingest import InOrderIngest, Task
from engine.captions.shards import Source, discover
from engine.errors import InputError

log = logging.getLogger(__name__)

CLUSTER_ROUND_TASKS = 1024  # a cluster's round: enough tasks for every worker; bounds staging
TASK_BYTES = 32 << 20  # source bytes per map task (about one LAION parquet of 250,000 captions)


@dataclass(frozen=True)
class ScanConfig:
    sources: tuple[str, ...]
    db: str
    out: str
    taxonomy: str = "sobit"
    lexicon: str = "default"
    exact_forms: bool = False
    workers: int = 0  # local processes, each mapping one file at a time; 0: one per CPU and task
    threads: int = 0  # matching threads per file; 0: the CPUs divided among the workers
    executor: batch.ExecutorOptions = field(default_factory=batch.ExecutorOptions)
    examples_per_pair: int = 3
    prior_scale: float = DEFAULT_PRIOR_SCALE
    progress: bool = True
    memory_limit: str = "512MB"  # DuckDB's limit; larger reduces spill to disk beside the database

    def __post_init__(self):
        if not self.sources:
            raise InputError("give at least one caption source (file, directory or glob)")
        if self.workers < 0:
            raise InputError(f"--workers must be 0 (one per CPU) or more, not {self.workers}")
        if self.threads < 0:
            raise InputError(f"--threads must be 0 (automatic) or more, not {self.threads}")
        if self.examples_per_pair < 0:
            raise InputError(f"--examples must be 0 or more, not {self.examples_per_pair}")
        if not self.prior_scale > 0:
            raise InputError(f"--prior-scale must be positive, not {self.prior_scale}")


def load_terms(taxonomy_spec: str, lexicon_spec: str, exact_forms: bool):
    """(TermSet, description for the manifest) from a taxonomy and a lexicon spec."""
    import taxonomy
    from engine.captions.terms import build_terms
    from taxonomy.lexicon import load_lexicon

    words = taxonomy.load(taxonomy_spec)
    lexicon = load_lexicon(lexicon_spec)
    termset = build_terms(words.words, lexicon, exact_forms=exact_forms)
    described = {"taxonomy": words.describe(), "lexicon": lexicon.describe(),
                 "exact_forms": exact_forms}
    return termset, described


def run_scan(config: ScanConfig) -> dict:
    """Scan, ingest and reduce; return the manifest (also written to ``config.out``)."""
    from engine.captions.outputs import STAGE, write_outputs

    storage.check_replaceable(config.out, STAGE)
    termset, described = load_terms(config.taxonomy, config.lexicon, config.exact_forms)
    sources, ignored = discover(list(config.sources))
    if ignored:
        log.warning("ignored %d files that are not caption sources, e.g. %s", len(ignored), ignored[0])
    con = store.connect(config.db, memory_limit=config.memory_limit)
    try:
        store.prepare(con, termset, {
            "terms_sha256": termset.sha256, "taxonomy": described["taxonomy"]["name"],
            "lexicon": described["lexicon"]["name"], "exact_forms": str(config.exact_forms),
            "examples_per_pair": str(config.examples_per_pair)})
        todo = store.register(con, sources)
        log.info("%d source files, %d to scan", len(sources), len(todo))
        ingested = _map_and_ingest(con, todo, termset.compile(), config)
        described["sources"] = {"specs": list(config.sources), "files": len(sources),
                                "scanned_now": ingested, "ignored": ignored}
        described["db"] = str(Path(config.db).resolve())
        return write_outputs(con, termset, config.out, described,
                             examples_per_pair=config.examples_per_pair,
                             prior_scale=config.prior_scale)
    finally:
        con.close()


def staging_dir(db: str | Path) -> Path:
    """Where the map stages shard results before ingestion: beside the database file."""
    db = Path(db)
    return db.with_name(db.name + ".staging")


def remove_database(db: str | Path) -> None:
    """Delete a scan database with its write-ahead log and staging directory (a fresh start)."""
    db = Path(db)
    for path in (db, db.with_name(db.name + ".wal")):
        path.unlink(missing_ok=True)
    shutil.rmtree(staging_dir(db), ignore_errors=True)


def parallelism(config: ScanConfig, tasks: int) -> tuple[int, int]:
    """(worker processes, matching threads per file). Processes scale best (each reads and
    matches its own files); with fewer tasks than CPUs the spare CPUs become threads. On Ray each
    actor holds one CPU: one thread."""
    cpus = os.cpu_count() or 1
    workers = config.workers or max(1, min(cpus, tasks))
    if config.threads:
        return workers, config.threads
    return workers, 1 if config.executor.engine == "ray" else max(1, cpus // workers)


def plan_tasks(todo: list[tuple[int, Source]], task_bytes: int | None = None) -> list[Task]:
    """Consecutive files grouped into map tasks of up to ``task_bytes`` (default ``TASK_BYTES``)
    of source (a larger file is a task alone): many small files cost the driver a few
    statements, not a few per file."""
    task_bytes = TASK_BYTES if task_bytes is None else task_bytes
    groups, size = [[]], 0
    for shard_id, source in todo:
        if groups[-1] and size + source.size > task_bytes:
            groups, size = groups + [[]], 0
        groups[-1].append((shard_id, source))
        size += source.size
    return [Task(f"files-{files[0][0]:08d}-{files[-1][0]:08d}", files) for files in groups if files]


def _map_and_ingest(con, todo, compiled, config: ScanConfig) -> dict[str, int]:
    """Map the files in tasks and ingest each task, in order, while later ones still map. The
    files of a group that failed as a whole (its worker died: a file that crashes the reader,
    memory) are then mapped one per task, so only the file at fault fails."""
    staging_path = staging_dir(config.db)
    tasks = plan_tasks(todo)
    staging.remove_other_tasks(staging_path, {task.task_id for task in tasks})
    frontier = ExampleFrontier.of_database(con, compiled.n_words, compiled.n_groups, config.examples_per_pair,
                                           [source.path for _, source in todo])
    ingest = InOrderIngest(con, staging_path, tasks, frontier)
    _map_tasks(tasks, ingest, compiled, config)
    if ingest.failed_groups:
        singles = plan_tasks([file for task in ingest.failed_groups for file in task.files], task_bytes=0)
        log.warning("%d file groups failed as a whole; mapping their %d files one by one",
                    len(ingest.failed_groups), len(singles))
        ingest.requeue(singles)
        _map_tasks(singles, ingest, compiled, config)
    return _finish(staging_path, ingest.statuses)


def _map_tasks(tasks: list[Task], ingest: InOrderIngest, compiled, config: ScanConfig) -> None:
    """Map ``tasks`` and ingest them. Locally the shard runner works in a background thread and
    reports each task as it finishes (no waiting for the slowest task of a round); a cluster
    client stays on the main thread, mapping rounds of tasks and ingesting each round after it."""
    workers, threads = parallelism(config, len(tasks))

    def map_tasks(round_, on_result):
        for task in round_:
            staging.drop_stale(ingest.staging, task.task_id, task.files)
        shard_tasks = [batch.ShardTask(task.task_id, (task.files, compiled, threads, config.examples_per_pair))
                       for task in round_]
        batch.run_shards(shard_tasks, staging.scan_task, ingest.staging, executor=config.executor,
                         workers=min(workers, len(round_)), desc="caption file groups",
                         progress=config.progress, on_result=on_result)

    if config.executor.engine != "local":
        for start in range(0, len(tasks), CLUSTER_ROUND_TASKS):
            map_tasks(tasks[start:start + CLUSTER_ROUND_TASKS], ingest.finished)
            ingest.ready()
    else:
        ingest.con.execute("SET threads = 1")  # inserts beside local workers that use every core: no hand-offs
        _stream(lambda on_result: map_tasks(tasks, on_result), ingest, in_flight=workers)
        ingest.con.execute("RESET threads")  # the reduce has the machine to itself


def _stream(map_all, ingest: InOrderIngest, in_flight: int) -> None:
    """Run ``map_all(on_result)`` in a background thread and ingest here as tasks finish: all
    that finished while the last ingest ran go in together."""
    finished: queue.SimpleQueue = queue.SimpleQueue()
    with ThreadPoolExecutor(1, thread_name_prefix="caption-map") as mapper:
        mapping = mapper.submit(map_all, lambda *outcome: finished.put(outcome))
        mapping.add_done_callback(lambda _: finished.put(None))
        running = True
        while running:
            outcomes = [finished.get()]
            while outcomes[-1] is not None and not finished.empty():
                outcomes.append(finished.get())
            running = outcomes[-1] is not None
            for outcome in outcomes[:len(outcomes) - (not running)]:
                ingest.finished(*outcome)
            ingest.ready(in_flight=in_flight if running else None)
        mapping.result()  # the runner's own error, if any


def _finish(staging_path: Path, statuses: dict[str, int]) -> dict[str, int]:
    if staging_path.exists() and not any(staging_path.iterdir()):
        staging_path.rmdir()
    return statuses
