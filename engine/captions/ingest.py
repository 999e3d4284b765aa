"""The driver's side of a scan: mapped tasks into the database, in file order, as they finish.

A task (engine.captions.staging) is a group of consecutive files. It goes into the database once
it and every task before it have finished mapping, so duplicate files resolve alike in every
run. Finished tasks wait until their staged rows are worth a transaction (DuckDB writes large
appends straight to the database file, small ones twice: log, then checkpoint), then a commit
group of them is written in one transaction with the files' statuses, and their staged files are
removed after the commit: a crash before it ingests them again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from engine.captions import staging, store
from engine.captions.evidence import ExampleFrontier
from engine.captions.shards import Source

log = logging.getLogger(__name__)

COMMIT_BYTES = 64 << 20  # staged rows per transaction: bounds the driver's memory
INGEST_BYTES = 32 << 20  # staged rows worth a transaction (about 20 LAION files of 250,000; half
# as much cost the driver 0.7 s more CPU at 50M captions: each commit has a large fixed cost)
INGEST_PARTS = 4  # or a quarter of the tasks, whichever comes first: a scan of a few files still
# ingests while it maps, so less is left for the end (5M captions: median 1.38 s, not 1.43 s)


@dataclass(frozen=True)
class Task:
    task_id: str
    files: list[tuple[int, Source]]  # (shard id, source), consecutive in scan order


class InOrderIngest:
    """Finished tasks (``finished``) into the database in task order (``ready``)."""

    def __init__(self, con, staging_dir: Path, tasks: list[Task], frontier: ExampleFrontier):
        self.con, self.staging, self.tasks, self.frontier = con, staging_dir, tasks, frontier
        self.outcomes: dict[str, tuple[dict | None, str | None]] = {}  # task id -> (stats, error)
        self.sizes: dict[str, int] = {}  # task id -> bytes staged, for the finished tasks not yet in
        self.staged_bytes = 0  # their sum
        self.next = 0  # tasks[:next] are in the database
        self.statuses: dict[str, int] = {}
        self.failed_groups: list[Task] = []  # tasks of several files that failed as a whole

    def finished(self, task_id: str, stats: dict | None, error: str | None) -> None:
        """engine.batch's on_result: a task's outcome (its stats, or the error that stopped it)."""
        self.outcomes[task_id] = (stats, error)
        self.sizes[task_id] = staging.staged_bytes(self.staging, task_id)
        self.staged_bytes += self.sizes[task_id]

    def ready(self, in_flight: int | None = None) -> None:
        """Ingest the tasks that can go in. With ``in_flight``, only once they are worth a
        transaction: about ``INGEST_BYTES`` staged, or at most ``in_flight`` tasks still mapping
        (the last ones then go in while those finish)."""
        end = self.next
        while end < len(self.tasks) and self.tasks[end].task_id in self.outcomes:
            end += 1
        waiting = in_flight is not None and len(self.tasks) - end > in_flight
        worth = self.staged_bytes >= INGEST_BYTES or end - self.next >= len(self.tasks) / INGEST_PARTS
        if end == self.next or (waiting and not worth):
            return
        for group in self._commit_groups(self.tasks[self.next:end]):
            self._ingest(group)
        self.next = end

    def _ingest(self, group: list[Task]) -> None:
        mapped, failed, tables = [], [], []
        for task in group:
            stats, error = self.outcomes.pop(task.task_id)
            per_file = stats["files"] if error is None else {}
            for shard_id, source in task.files:
                outcome = per_file.get(str(shard_id), {"error": error or "not mapped"})
                if "error" in outcome:
                    failed.append((shard_id, source, outcome["error"]))
                else:
                    mapped.append(store.MappedFile(shard_id, source.path, outcome))
            if error is None:
                tables.append(staging.read_staged(self.staging, task.task_id))
            elif len(task.files) > 1:
                self.failed_groups.append(task)
        with store.transaction(self.con):
            if mapped:
                stacked = {name: pa.concat_tables([t[name] for t in tables]) for name in store.SHARD_TABLES}
                for status in store.ingest(self.con, mapped, stacked, self.frontier):
                    self._count(status)
            for shard_id, source, error in failed:
                log.warning("%s failed: %s", source.path, store.record_failure(self.con, shard_id, error))
                self._count("failed")
        for task in group:
            self.staged_bytes -= self.sizes.pop(task.task_id)
            staging.remove_staged(self.staging, task.task_id)

    def requeue(self, tasks: list[Task]) -> None:
        """Map ``tasks`` after the others: the files of the failed groups, one task each. Their
        failures so far are not counted; their new outcomes are."""
        self.statuses["failed"] -= sum(len(task.files) for task in tasks)
        self.tasks, self.failed_groups = self.tasks + tasks, []

    def _commit_groups(self, tasks: list[Task]) -> list[list[Task]]:
        """Consecutive tasks whose staged rows add up to about ``COMMIT_BYTES``: one transaction
        each (DuckDB holds what a transaction inserts until it commits, so this bounds memory)."""
        groups, size = [[]], 0
        for task in tasks:
            size += self.sizes[task.task_id]
            groups[-1].append(task)
            if size >= COMMIT_BYTES:
                groups, size = groups + [[]], 0
        return [group for group in groups if group]

    def _count(self, status: str) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
