"""``--engine ray`` without an address: a Ray cluster started on this machine for the run (after
the two-node cluster of test_ray.py is gone), giving the local runner's outputs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine import batch
from helpers_batch import compute_shard, make_tasks, outputs

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'vlaudit[ray]')")


FAILED_JOIN = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {tests!r})
    from pathlib import Path
    import ray
    from engine import batch, ray_executor
    from engine.errors import InputError
    from helpers_batch import compute_shard, make_tasks
    from ray._private import client_mode_hook

    options = batch.ExecutorOptions(engine="ray", ray_address="ray://127.0.0.1:{port}")
    try:
        batch.run_shards(make_tasks(1, Path({tmp!r}) / "m"), compute_shard, Path({tmp!r}) / "out",
                         executor=options, progress=False)
        error = None
    except InputError as exc:
        error = str(exc)
    print(json.dumps({{"error": error, "initialized": ray.is_initialized(), "session": ray_executor._SESSION.key,
                      "client_mode": client_mode_hook.is_client_mode_enabled}}))
""")


def test_a_failed_join_is_a_clear_error_and_leaves_nothing_behind(tmp_path, monkeypatch):
    """A ray:// address nobody answers (Ray client gives up after 30 s): a clear error, and the
    process is left as it was, so a later job can still start or join a cluster. In its own
    process: the gRPC threads of Ray's client outlive the failed connection, and a cluster
    started later by the same pytest process could then fail to come up."""
    from helpers_ray import free_port

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    script = FAILED_JOIN.format(tests=str(Path(__file__).parent), port=free_port(), tmp=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    state = json.loads(done.stdout.strip().splitlines()[-1])
    assert state["error"] and "cannot join the Ray cluster" in state["error"]
    assert not state["initialized"] and not state["session"] and not state["client_mode"]


def test_a_cluster_started_for_the_run_gives_the_local_outputs(tmp_path, monkeypatch):
    from engine import ray_executor

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # no token written to ~/.ray by a test
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))  # workers import helpers_batch
    batch.run_shards(make_tasks(4, tmp_path / "m1"), compute_shard, tmp_path / "local", progress=False)
    try:
        report = batch.run_shards(make_tasks(4, tmp_path / "m2"), compute_shard, tmp_path / "ray",
                                  executor="ray", workers=2, progress=False)
        assert ray.cluster_resources()["CPU"] == 2  # sized by workers
        node_ips = {node["NodeManagerAddress"] for node in ray.nodes()}
    finally:
        ray_executor.disconnect()
    assert len(report.done) == 4 and not report.failed
    assert outputs(tmp_path / "ray") == outputs(tmp_path / "local")
    assert node_ips == {ray_executor.LOCAL_NODE_IP}  # loopback only
    assert not ray.is_initialized()


class StartsOnTry:
    """A stand-in for the ray module whose ``init`` fails until try ``works_on`` (a raylet
    missing its start-up deadline cannot be produced on demand)."""

    def __init__(self, works_on: int):
        self.works_on, self.inits, self.shutdowns = works_on, 0, 0

    def is_initialized(self):
        return False

    def init(self, **kwargs):
        self.inits += 1
        if self.inits < self.works_on:
            raise Exception("The current node timed out during startup.")

    def shutdown(self):
        self.shutdowns += 1


def fresh_session():
    from engine import ray_executor

    session = ray_executor._Session()
    session.exit_hook = True  # no exit hook for a stand-in
    return session


def test_a_cluster_for_the_run_that_fails_to_start_is_started_once_more(monkeypatch):
    from engine import ray_executor

    monkeypatch.setattr(ray_executor, "_SESSION", fresh_session())
    second_time = StartsOnTry(works_on=2)
    ray_executor._join(second_time, None, workers=2)
    assert (second_time.inits, second_time.shutdowns) == (2, 1) and ray_executor._SESSION.key == "local:2"
    monkeypatch.setattr(ray_executor, "_SESSION", fresh_session())
    never = StartsOnTry(works_on=99)
    with pytest.raises(Exception, match="timed out during startup"):
        ray_executor._join(never, None, workers=2)
    assert (never.inits, never.shutdowns) == (ray_executor.LOCAL_START_ATTEMPTS, ray_executor.LOCAL_START_ATTEMPTS)
    assert ray_executor._SESSION.key is None
