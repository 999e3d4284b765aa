"""``vlaudit scan``: caption sources -> DuckDB database -> co-occurrence outputs.

Flow: discover the source files (engine.captions.shards) -> register them in the database
(engine.captions.store; files already done and unchanged are skipped) -> run the per-shard map
(engine.captions.count.scan_task) through the shard runner (engine.batch: local process pool or
Ray) -> ingest each mapped file into the database, in file order, while later files map
(transactions of bounded size) -> reduce the database into the output directory
(engine.captions.outputs).

Interrupting a scan loses at most the files being mapped: a rerun ingests the files already
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
from engine.captions import count, store
from engine.captions.cooccurrence import DEFAULT_PRIOR_SCALE
from engine.captions.evidence import ExampleFrontier
from engine.captions.shards import discover
from engine.errors import InputError

log = logging.getLogger(__name__)

CLUSTER_ROUND_FILES = 1024  # a cluster's round: enough files for every worker; bounds staging
COMMIT_BYTES = 64 << 20  # staged matches per ingest transaction: bounds the driver's memory
INGEST_BYTES = 16 << 20  # staged matches worth a transaction (about 8 LAION files of 250,000)


@dataclass(frozen=True)
class ScanConfig:
    sources: tuple[str, ...]
    db: str
    out: str
    taxonomy: str = "sobit"
    lexicon: str = "default"
    exact_forms: bool = False
    workers: int = 0  # local processes, each mapping one file at a time; 0: one per CPU and file
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
            "lexicon": described["lexicon"]["name"], "exact_forms": str(config.exact_forms)})
        todo = store.register(con, sources)
        log.info("%d source files, %d to scan", len(sources), len(todo))
        con.execute("SET threads = 1")  # inserts beside the busy map workers: no thread hand-offs
        ingested = _map_and_ingest(con, todo, termset.compile(), config)
        con.execute("RESET threads")  # the reduce has the machine to itself
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


def parallelism(config: ScanConfig, files: int) -> tuple[int, int]:
    """(worker processes, matching threads per file). Processes scale best (each reads and
    matches its own file); with fewer files than CPUs the spare CPUs become threads. On Ray each
    actor holds one CPU: one thread."""
    cpus = os.cpu_count() or 1
    workers = config.workers or max(1, min(cpus, files))
    if config.threads:
        return workers, config.threads
    return workers, 1 if config.executor.engine == "ray" else max(1, cpus // workers)


def _map_and_ingest(con, todo, compiled, config: ScanConfig) -> dict[str, int]:
    """Map the files and ingest each into the database as soon as it and every file before it
    are mapped, while later files still map. Locally the shard runner works in a background
    thread and reports each file as it finishes (no waiting for the slowest file of a round); a
    cluster client stays on the main thread, mapping rounds of files and ingesting each after it."""
    staging = staging_dir(config.db)
    workers, threads = parallelism(config, len(todo))
    frontier = ExampleFrontier.of_database(con, compiled.n_words, compiled.n_groups, config.examples_per_pair,
                                           [source.path for _, source in todo])
    ingest = _InOrderIngest(con, staging, todo, frontier)

    def map_files(files, on_result):
        tasks = [batch.ShardTask(_task_id(shard_id), (source, compiled, threads, config.examples_per_pair))
                 for shard_id, source in files]
        for task, (_, source) in zip(tasks, files):
            count.drop_stale(staging, task.shard_id, source)
        batch.run_shards(tasks, count.scan_task, staging, executor=config.executor,
                         workers=min(workers, len(tasks)), desc="caption files",
                         progress=config.progress, on_result=on_result)

    if config.executor.engine != "local":
        for start in range(0, len(todo), CLUSTER_ROUND_FILES):
            map_files(todo[start:start + CLUSTER_ROUND_FILES], ingest.finished)
            ingest.ready()
        return _finish(staging, ingest.statuses)
    finished: queue.SimpleQueue = queue.SimpleQueue()
    with ThreadPoolExecutor(1, thread_name_prefix="caption-map") as mapper:
        mapping = mapper.submit(map_files, todo, lambda *outcome: finished.put(outcome))
        mapping.add_done_callback(lambda _: finished.put(None))
        while (outcome := finished.get()) is not None:
            ingest.finished(*outcome)
            while not finished.empty() and (outcome := finished.get()) is not None:
                ingest.finished(*outcome)  # all that finished meanwhile go in one ingest
            ingest.ready(in_flight=workers if outcome is not None else None)
            if outcome is None:
                break
        mapping.result()  # the runner's own error, if any
    return _finish(staging, ingest.statuses)


def _finish(staging: Path, statuses: dict[str, int]) -> dict[str, int]:
    if staging.exists() and not any(staging.iterdir()):
        staging.rmdir()
    return statuses


class _InOrderIngest:
    """Mapped files into the database in file order: a file goes in once it and every file
    before it have finished mapping, so duplicate files resolve alike in every run. A commit
    group is one transaction with the files' statuses; its staged results are removed after."""

    def __init__(self, con, staging: Path, todo: list, frontier: ExampleFrontier):
        self.con, self.staging, self.todo, self.frontier = con, staging, todo, frontier
        self.outcomes: dict[str, tuple[dict | None, str | None]] = {}  # task id -> (stats, error)
        self.staged_bytes = 0  # of the finished files not yet in the database
        self.next = 0  # todo[:next] are in the database
        self.statuses: dict[str, int] = {}

    def finished(self, task_id: str, stats: dict | None, error: str | None) -> None:
        self.outcomes[task_id] = (stats, error)
        self.staged_bytes += _staged_size(self.staging, task_id)

    def ready(self, in_flight: int | None = None) -> None:
        """Ingest the files that can go in. With ``in_flight``, only once they are worth a
        transaction (DuckDB writes large appends straight to the database file, small ones twice:
        log, then checkpoint): about ``INGEST_BYTES`` staged, or at most ``in_flight`` files
        still mapping (the last files then go in while those finish)."""
        end = self.next
        while end < len(self.todo) and _task_id(self.todo[end][0]) in self.outcomes:
            end += 1
        files = self.todo[self.next:end]
        unfinished = len(self.todo) - end
        waiting = in_flight is not None and unfinished > in_flight
        if not files or (waiting and self.staged_bytes < INGEST_BYTES):
            return
        self.next = end
        for group in _commit_groups(self.staging, files):
            self._ingest(group)

    def _ingest(self, group: list) -> None:
        outcomes = [(shard_id, source, *self.outcomes.pop(_task_id(shard_id))) for shard_id, source in group]
        with store.transaction(self.con):
            done = [_staged_output(self.staging, shard_id, source.path, stats)
                    for shard_id, source, stats, error in outcomes if error is None]
            for status in store.ingest(self.con, done, self.frontier) if done else []:
                self._count(status)
            for shard_id, source, _, error in outcomes:
                if error is not None:
                    _record_failure(self.con, shard_id, source, error)
                    self._count("failed")
        for shard_id, _ in group:  # after the commit: a crash before it ingests them again
            self.staged_bytes -= _staged_size(self.staging, _task_id(shard_id))
            count.remove_staged(self.staging, _task_id(shard_id))

    def _count(self, status: str) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1


def _staged_size(staging: Path, task_id: str) -> int:
    staged = count.staged_paths(staging, task_id)
    return sum(staged[name].stat().st_size for name in ("matches", "examples") if staged[name].exists())


def _commit_groups(staging: Path, files: list) -> list[list]:
    """Consecutive files whose staged results add up to about ``COMMIT_BYTES``: one transaction
    each (DuckDB holds what a transaction inserts until it commits, so this bounds memory)."""
    groups, size = [[]], 0
    for shard_id, source in files:
        size += _staged_size(staging, _task_id(shard_id))
        groups[-1].append((shard_id, source))
        if size >= COMMIT_BYTES:
            groups, size = groups + [[]], 0
    return [group for group in groups if group]


def _staged_output(staging: Path, shard_id: int, path: str, stats: dict) -> store.ShardOutput:
    task_id = _task_id(shard_id)
    return store.ShardOutput(shard_id, path, stats, count.read_staged_counts(staging, task_id),
                             count.read_staged_table(staging, task_id, "matches"),
                             count.read_staged_table(staging, task_id, "examples"))


def _record_failure(con, shard_id: int, source, error: str) -> None:
    store.record_failure(con, shard_id, error)
    log.warning("%s failed: %s", source.path, _last_line(error))


def _task_id(shard_id: int) -> str:
    return f"shard-{shard_id:08d}"


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else text
