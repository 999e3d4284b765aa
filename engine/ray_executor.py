"""The ``ray`` entry of engine.batch.EXECUTORS: the same shard tasks on a Ray cluster.

Shards go to a pool of long-lived Ray actors, one per CPU of the cluster (one per GPU when the
job can use GPUs and the cluster has them). Each actor runs ``batch.run_with_retries`` exactly as
the local executor does, so the outputs are the same bit for bit, and a work function that loads
its model through ``batch.process_cached`` loads it once per actor. The connection and the idle
actors are kept for the next job of the same process (a scan runs in rounds), and released at
exit or by ``disconnect()``.

Failures are retried on two levels: an exception in the work function by ``run_with_retries``
(the job's ``retries``), a worker process or node that dies by this dispatcher, which hands the
shard to another actor (up to ``batch.WORKER_DEATH_RETRIES`` times) and starts a replacement.
Work functions write their outputs atomically, so a shard run twice leaves the same files.

Outputs go to ``out_dir``; on a cluster of several machines it must be storage that every node
mounts at the same path, which each worker checks before it takes a shard. The driver writes the
``_stats.json`` markers, as in a local run, so an interrupted job resumes the same way.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path

from engine import batch
from engine.errors import InputError, require

log = logging.getLogger(__name__)

CPUS_PER_WORKER = 1
STARTUP_PATIENCE_S = 120  # warn when no worker has started by then
CLIENT_JOIN_ATTEMPTS = 4  # connections a Ray client server may abort before the join fails
# Ray swaps 127.0.0.1 for the machine's public address; on Linux any 127/8 address is loopback,
# elsewhere Ray keeps single-machine clusters on 127.0.0.1 by itself.
LOCAL_NODE_IP = "127.0.0.2" if sys.platform.startswith("linux") else None


class ShardWorker:
    """One worker process of the pool; whatever it caches (a model) lives as long as it does."""

    def ready(self, probe: str) -> bool:
        """Whether this worker sees the driver's output directory (via a file put there)."""
        return os.path.exists(probe)

    def run(self, task: batch.ShardTask, work, out_dir: str, retries: int) -> tuple:
        return batch.run_with_retries(task, work, Path(out_dir), retries)


def run(tasks: Sequence[batch.ShardTask], work, out_dir: Path, *, workers: int, retries: int,
        options, gpu: bool) -> Iterator[tuple]:
    """Yield (shard_id, stats, error) per task as shards finish, like the local executor."""
    ray = require("ray", "the ray engine (--engine ray)", extra="ray")
    _join(ray, options.ray_address, workers)
    with _probe_file(out_dir) as probe:
        gpus = 1 if gpu and ray.cluster_resources().get("GPU", 0) >= 1 else 0
        size = min(len(tasks), pool_size(ray.cluster_resources(), gpus))
        log.info("running %d shards on %d Ray workers%s", len(tasks), size, " with GPUs" if gpus else "")
        actor_class = ray.remote(ShardWorker).options(
            num_cpus=CPUS_PER_WORKER, num_gpus=gpus, max_restarts=0, max_concurrency=1)
        pool = _Pool(ray, actor_class, size, tasks, (ray.put(work), str(out_dir), retries), probe,
                     idle=_SESSION.take_idle(ray, gpus))
        completed = False
        try:
            yield from _dispatch(ray, pool)
            completed = True
        finally:
            _SESSION.keep_idle(ray, gpus, pool.close(keep_idle=completed))


def pool_size(resources: dict, gpus_per_worker: int) -> int:
    """How many workers the cluster holds at once."""
    if gpus_per_worker:
        return max(1, int(resources.get("GPU", 0) // gpus_per_worker))
    cpus = int(resources.get("CPU", 0) // CPUS_PER_WORKER)
    if cpus < 1:
        raise InputError("the Ray cluster has no CPU to run shard workers on")
    return cpus


def disconnect() -> None:
    """Stop the idle workers and leave the cluster this process joined (also done at exit)."""
    import ray

    _SESSION.keep_idle(ray, 0, [])
    if _SESSION.key is not None and ray.is_initialized():
        ray.shutdown()
    _SESSION.key = None


def _dispatch(ray, pool: "_Pool") -> Iterator[tuple]:
    """Hand shards to ready actors; replace dead actors and give their shard to another one."""
    while pool.busy():
        for ref in _next_ready(ray, pool.waiting):
            actor, task = pool.waiting.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayActorError as exc:  # the process or its node died
                result = pool.on_death(actor, task, exc)
            except ray.exceptions.RayError as exc:  # raised past run_with_retries
                result = task and (task.shard_id, None, f"{type(exc).__name__}: {exc}")
                pool.give_work(actor)
            else:
                if task is None and not result:
                    raise InputError(f"a Ray worker cannot see {pool.call_args[1]}: on a cluster of "
                                     "several machines the output must be on storage every node "
                                     "mounts at the same path")
                pool.give_work(actor)
            if task is not None and result:
                yield result


def _next_ready(ray, waiting: dict) -> list:
    refs = list(waiting)
    ready, rest = ray.wait(refs, num_returns=1, timeout=STARTUP_PATIENCE_S)
    if not ready and all(task is None for _, task in waiting.values()):
        log.warning("no Ray worker has started in %d s; the cluster may lack free CPUs (or GPUs)",
                    STARTUP_PATIENCE_S)
    if not ready:
        ready, rest = ray.wait(refs, num_returns=1)
    if rest:  # also take whatever else has finished meanwhile
        more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
        ready += more
    return ready


class _Pool:
    """The actors, what each is doing, and the shards still to hand out."""

    def __init__(self, ray, actor_class, size: int, tasks, call_args: tuple, probe: str, idle: list):
        self.ray, self.actor_class, self.size = ray, actor_class, size
        self.call_args, self.probe = call_args, probe  # (work, out_dir, retries) for each shard
        self.queue = deque(tasks)
        self.waiting: dict = {}  # object ref -> (actor, shard, or None while the actor starts)
        self.finished: list = idle[size:]  # actors with nothing left to do
        self.startup_deaths = 0
        self.deaths_by_shard: dict[str, int] = {}
        for actor in idle[:size]:  # an earlier job's workers: their caches (models) are warm
            self.waiting[actor.ready.remote(probe)] = (actor, None)
        for _ in range(size - len(self.waiting)):
            self.start_actor()

    def busy(self) -> bool:
        return bool(self.queue) or any(task is not None for _, task in self.waiting.values())

    def start_actor(self) -> None:
        actor = self.actor_class.remote()
        self.waiting[actor.ready.remote(self.probe)] = (actor, None)

    def give_work(self, actor) -> None:
        if not self.queue:
            self.finished.append(actor)
            return
        task = self.queue.popleft()
        self.waiting[actor.run.remote(task, *self.call_args)] = (actor, task)

    def on_death(self, actor, task, exc):
        """Replace the actor and requeue its shard; a failure once the shard has died too often."""
        self.ray.kill(actor)  # it may only be unreachable; don't let it hold its resources
        self.start_actor()
        if task is None:
            self.startup_deaths += 1
            if self.startup_deaths > self.size + batch.WORKER_DEATH_RETRIES:
                raise RuntimeError(f"Ray workers keep dying while starting: {exc}") from exc
            return None
        count = self.deaths_by_shard[task.shard_id] = self.deaths_by_shard.get(task.shard_id, 0) + 1
        log.warning("the worker running shard %s died (%d of %d tries)",
                    task.shard_id, count, batch.WORKER_DEATH_RETRIES + 1)
        if count > batch.WORKER_DEATH_RETRIES:
            return task.shard_id, None, f"its worker process died {count} times: {type(exc).__name__}: {exc}"
        self.queue.appendleft(task)
        return None

    def close(self, *, keep_idle: bool) -> list:
        """Stop the actors still starting or working; return the idle ones to keep (if asked)."""
        for actor, _ in self.waiting.values():
            self.ray.kill(actor)
        self.waiting.clear()
        if keep_idle:
            return self.finished
        for actor in self.finished:
            self.ray.kill(actor)
        return []


class _Session:
    """The cluster this process joined and the idle workers kept between jobs (a scan runs in
    rounds; each round would otherwise start its workers, and load their models, again)."""

    def __init__(self):
        self.key: str | None = None  # "local:<workers>" or the address we joined; None: not by us
        self.idle: tuple[int, list] = (0, [])  # (GPUs per worker, idle actors)
        self.exit_hook = False

    def take_idle(self, ray, gpus: int) -> list:
        """The idle actors fit for ``gpus``; others are stopped (they hold cluster resources)."""
        kept_gpus, actors = self.idle
        self.idle = (0, [])
        if kept_gpus == gpus:
            return actors
        for actor in actors:
            ray.kill(actor)
        return []

    def keep_idle(self, ray, gpus: int, actors: list) -> None:
        for actor in self.idle[1]:  # whatever was kept before is replaced
            ray.kill(actor)
        self.idle = (gpus, actors)


_SESSION = _Session()


def _join(ray, address: str | None, workers: int) -> None:
    """Join ``address`` or start a cluster on this machine, and stay connected for later jobs;
    a connection the caller made is used as it is."""
    key = address or f"local:{workers}"  # a local cluster of another size is started afresh
    if ray.is_initialized():
        if _SESSION.key in (None, key):
            return
        disconnect()  # our connection to another cluster
    if address is None:  # a cluster for this process only: no usage stats, no dashboard, loopback
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        kwargs = {"address": "local", "include_dashboard": False, "_node_ip_address": LOCAL_NODE_IP,
                  "num_cpus": workers if workers > 1 else None}
    else:
        kwargs = {"address": address}
    _init(ray, kwargs, address)
    _SESSION.key = key
    if not _SESSION.exit_hook:
        atexit.register(disconnect)
        _SESSION.exit_hook = True


def _init(ray, kwargs: dict, address: str | None) -> None:
    """``ray.init``, tried again when a Ray client server aborts the connection: the server forks
    a process per client, and a few percent of those crash at birth (ray-project/ray#63202); the
    next connection gets a new one. An address nobody answers is not tried again."""
    for attempt in range(1, CLIENT_JOIN_ATTEMPTS + 1):
        try:
            ray.init(**kwargs, log_to_driver=False, logging_level=logging.WARNING)
            return
        except ConnectionError as exc:
            ray.shutdown()  # a failed ray:// join leaves client mode on, and the next ray.init would fail
            if not isinstance(exc, ConnectionAbortedError) or attempt == CLIENT_JOIN_ATTEMPTS:
                tries = f" (tried {attempt} times)" if attempt > 1 else ""
                raise InputError(f"cannot join the Ray cluster at {address}{tries}: {exc}") from exc
            log.warning("the Ray client server at %s aborted the connection (attempt %d of %d); "
                        "connecting again", address, attempt, CLIENT_JOIN_ATTEMPTS)


@contextlib.contextmanager
def _probe_file(out_dir: Path):
    """A file in ``out_dir`` that every worker must see: on several machines the output has to
    be on storage every node mounts at the same path."""
    probe = Path(out_dir) / f".ray-probe-{uuid.uuid4().hex}.tmp"
    probe.write_text("")
    try:
        yield str(probe)
    finally:
        probe.unlink(missing_ok=True)
