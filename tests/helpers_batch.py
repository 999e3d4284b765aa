"""Shard jobs for the runner tests: deterministic work with planted failures, crashes and delays.

The work function records what happened as empty marker files in ``payload["markers"]``
(``attempt-<shard>-<pid>-<n>``, ``finished-<shard>-<pid>``, ``node-<ray node id>``, and
``load-<pid>-<random>`` per model load), so tests can see which process ran a shard and how
often, while the outputs and stats stay identical between runs.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from pathlib import Path

import numpy as np

from engine import batch, storage
from engine.batch import ShardTask

DIM = 16


def make_tasks(count: int, markers: Path, **per_shard) -> list[ShardTask]:
    """``count`` shards; ``per_shard`` maps an option name to {shard index: value}."""
    tasks = []
    for i in range(count):
        payload = {"seed": i, "rows": 5 + i, "markers": str(markers)}
        payload.update({name: values[i] for name, values in per_shard.items() if i in values})
        tasks.append(ShardTask(f"shard-{i:03d}", payload))
    return tasks


def shard_vectors(seed: int, rows: int, projection: np.ndarray | None = None) -> np.ndarray:
    """The shard's output: projected, L2-normalised float32 rows (an embedding stand-in)."""
    data = np.random.default_rng(seed).standard_normal((rows, 64)).astype(np.float32)
    vectors = data @ (load_projection() if projection is None else projection)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def load_projection(markers: str | None = None) -> np.ndarray:
    """The "model" of the stand-in job; records each load as ``load-<pid>-<random>``."""
    if markers is not None:
        Path(markers).mkdir(parents=True, exist_ok=True)
        (Path(markers) / f"load-{os.getpid()}-{uuid.uuid4().hex[:8]}").touch()
    return np.random.default_rng(12345).standard_normal((64, DIM)).astype(np.float32)


def loads_by_process(markers: Path) -> dict[int, int]:
    """How often each process loaded the model."""
    found: dict[int, int] = {}
    for marker in Path(markers).glob("load-*"):
        pid = int(marker.name.split("-")[1])
        found[pid] = found.get(pid, 0) + 1
    return found


def compute_shard(task: ShardTask, out_dir: Path) -> dict:
    options = task.payload
    markers = Path(options["markers"])
    markers.mkdir(parents=True, exist_ok=True)
    attempt = len(list(markers.glob(f"attempt-{task.shard_id}-*"))) + 1
    (markers / f"attempt-{task.shard_id}-{os.getpid()}-{attempt}").touch()
    time.sleep(options.get("delay", 0.0))
    if options.get("fail"):
        raise ValueError(f"planted failure in {task.shard_id}")
    if attempt <= options.get("fail_times", 0):
        raise OSError(f"transient failure {attempt} in {task.shard_id}")
    projection = batch.process_cached(load_projection, options["markers"])  # once per process
    vectors = shard_vectors(options["seed"], options["rows"], projection)
    out = Path(out_dir) / f"{task.shard_id}.npy"
    if attempt <= options.get("die_times", 0):  # die mid-write, leaving a temporary file
        with storage.atomic_path(out) as tmp, open(tmp, "wb") as fh:
            np.save(fh, vectors[:1])
            fh.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    storage.write_npy(out, vectors)
    (markers / f"finished-{task.shard_id}-{os.getpid()}").touch()
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():  # inside a Ray worker
        (markers / f"node-{sys.modules['ray'].get_runtime_context().get_node_id()}").touch()
    return {"rows": int(vectors.shape[0]), "sha256": storage.sha256_file(out)}


def attempts(markers: Path, shard_id: str) -> int:
    return len(list(Path(markers).glob(f"attempt-{shard_id}-*")))


def finishers(markers: Path, shard_id: str) -> set[int]:
    """Pids of the processes that finished ``shard_id``."""
    return {int(p.name.rsplit("-", 1)[1]) for p in Path(markers).glob(f"finished-{shard_id}-*")}


def outputs(out_dir: Path) -> dict[str, bytes]:
    """Every output and stats file of a job directory, by name (markers excluded)."""
    return {p.name: p.read_bytes() for p in sorted(Path(out_dir).iterdir()) if p.is_file()}


def ray_nodes_used(markers: Path) -> int:
    return len(list(Path(markers).glob("node-*")))
