"""``vlaudit scan``: caption sources -> DuckDB database -> co-occurrence outputs.

Flow: discover the source files (engine.captions.shards) -> register them in the database
(engine.captions.store; files already done and unchanged are skipped) -> run the per-shard map
(engine.captions.count.scan_task) through the shard runner (engine.batch: local process pool or
Ray) in rounds of a few files per worker -> ingest each round into the database (transactions of
bounded size) while the next round maps -> reduce the database into the output directory
(engine.captions.outputs).

Interrupting a scan loses at most the shards of the current round that were not yet staged: a
rerun ingests staged shards, scans the rest, and gives the same result as an uninterrupted run.
"""

from __future__ import annotations

import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from engine import batch, storage
from engine.captions import count, store
from engine.captions.cooccurrence import DEFAULT_PRIOR_SCALE
from engine.captions.shards import discover
from engine.errors import InputError

log = logging.getLogger(__name__)

CLUSTER_ROUND_FILES = 1024  # a cluster's round: enough files for every worker; bounds staging
COMMIT_BYTES = 64 << 20  # staged matches per ingest transaction: bounds the driver's memory


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
    round_files: int = 0  # files per round (ingested while the next maps); 0: 4 per local worker
    memory_limit: str = "512MB"  # DuckDB's limit; larger reduces spill to disk beside the database

    @property
    def example_candidates(self) -> int:
        """Distinct captions kept per pair and file: twice those shown, so captions repeated
        across files rarely leave a pair short of examples."""
        return 2 * self.examples_per_pair

    def __post_init__(self):
        if not self.sources:
            raise InputError("give at least one caption source (file, directory or glob)")
        if self.workers < 0:
            raise InputError(f"--workers must be 0 (one per CPU) or more, not {self.workers}")
        if self.threads < 0:
            raise InputError(f"--threads must be 0 (automatic) or more, not {self.threads}")
        if self.examples_per_pair < 0:
            raise InputError(f"--examples must be 0 or more, not {self.examples_per_pair}")
        if self.round_files < 0:
            raise InputError(f"round_files must be 0 (automatic) or positive, not {self.round_files}")
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
    """Map the files round by round; while a round maps (in a background thread driving the
    shard runner), the previous round is ingested here, so the database work overlaps the scan."""
    staging = staging_dir(config.db)
    workers, threads = parallelism(config, len(todo))
    local = config.executor.engine == "local"
    size = config.round_files or (4 * workers if local else CLUSTER_ROUND_FILES)
    rounds = [todo[start:start + size] for start in range(0, len(todo), size)]
    statuses: dict[str, int] = {}

    def map_round(round_):
        tasks = [batch.ShardTask(_task_id(shard_id), (source, compiled, threads, config.example_candidates))
                 for shard_id, source in round_]
        for task, (_, source) in zip(tasks, round_):
            count.drop_stale(staging, task.shard_id, source)
        return batch.run_shards(tasks, count.scan_task, staging, executor=config.executor,
                                workers=min(workers, len(tasks)), desc="caption files",
                                progress=config.progress)

    if not local:  # a cluster client stays on the main thread
        for round_ in rounds:
            _ingest_round(con, staging, map_round(round_), round_, statuses)
        return _finish(staging, statuses)
    with ThreadPoolExecutor(1, thread_name_prefix="caption-map") as mapper:
        pending = mapper.submit(map_round, rounds[0]) if rounds else None
        for index, round_ in enumerate(rounds):
            report = pending.result()
            if index + 1 < len(rounds):
                pending = mapper.submit(map_round, rounds[index + 1])
            _ingest_round(con, staging, report, round_, statuses)
    return _finish(staging, statuses)


def _finish(staging: Path, statuses: dict[str, int]) -> dict[str, int]:
    if staging.exists() and not any(staging.iterdir()):
        staging.rmdir()
    return statuses


def _ingest_round(con, staging: Path, report, round_: list, statuses: dict[str, int]) -> None:
    for group in _commit_groups(staging, round_):  # in id order: duplicates resolve alike
        with store.transaction(con):
            done = [_staged_output(staging, report, shard_id) for shard_id, _ in group
                    if _task_id(shard_id) in report.done]
            for status in store.ingest(con, done) if done else []:
                statuses[status] = statuses.get(status, 0) + 1
            for shard_id, source in group:
                if _task_id(shard_id) not in report.done:
                    _record_failure(con, report, shard_id, source)
                    statuses["failed"] = statuses.get("failed", 0) + 1
        for shard_id, _ in group:  # after the commit: a crash before it ingests them again
            count.remove_staged(staging, _task_id(shard_id))


def _commit_groups(staging: Path, round_: list) -> list[list]:
    """Consecutive shards whose staged results add up to about ``COMMIT_BYTES``: one transaction
    each (DuckDB holds what a transaction inserts until it commits, so this bounds memory)."""
    groups, size = [[]], 0
    for shard_id, source in round_:
        staged = count.staged_paths(staging, _task_id(shard_id))
        size += sum(staged[name].stat().st_size for name in ("matches", "examples") if staged[name].exists())
        groups[-1].append((shard_id, source))
        if size >= COMMIT_BYTES:
            groups, size = groups + [[]], 0
    return [group for group in groups if group]


def _staged_output(staging: Path, report, shard_id: int) -> store.ShardOutput:
    task_id = _task_id(shard_id)
    return store.ShardOutput(shard_id, report.done[task_id], count.read_staged_counts(staging, task_id),
                             count.read_staged_table(staging, task_id, "matches"),
                             count.read_staged_table(staging, task_id, "examples"))


def _record_failure(con, report, shard_id: int, source) -> None:
    error = report.failed.get(_task_id(shard_id), "not run")
    store.record_failure(con, shard_id, error)
    log.warning("%s failed: %s", source.path, _last_line(error))


def _task_id(shard_id: int) -> str:
    return f"shard-{shard_id:08d}"


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else text
