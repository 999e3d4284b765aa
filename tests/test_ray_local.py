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
