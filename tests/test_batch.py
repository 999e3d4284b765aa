"""The shard runner on this machine: skip done, retry, failures as data, resume after a kill."""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from engine import batch
from engine.errors import InputError, MissingDependencyError
from helpers_batch import (attempts, compute_shard, loads_by_process, make_tasks, outputs,
                           shard_vectors)

TESTS = Path(__file__).resolve().parent


def run(tasks, out_dir, **kwargs):
    return batch.run_shards(tasks, compute_shard, out_dir, progress=False, **kwargs)


def test_every_shard_is_written_and_marked_done(tmp_path):
    tasks = make_tasks(4, tmp_path / "markers")
    report = run(tasks, tmp_path / "out")
    assert sorted(report.done) == [t.shard_id for t in tasks]
    assert not report.failed and not report.skipped
    for task in tasks:
        vectors = np.load(tmp_path / "out" / f"{task.shard_id}.npy")
        np.testing.assert_array_equal(vectors, shard_vectors(task.payload["seed"], task.payload["rows"]))
        assert batch.is_done(tmp_path / "out", task.shard_id)
        assert report.done[task.shard_id]["rows"] == task.payload["rows"]


def test_a_rerun_skips_finished_shards(tmp_path):
    markers = tmp_path / "markers"
    tasks = make_tasks(3, markers)
    first = run(tasks, tmp_path / "out")
    second = run(tasks, tmp_path / "out")
    assert sorted(second.skipped) == sorted(first.done)
    assert second.done == first.done  # stats read back from the markers
    assert all(attempts(markers, t.shard_id) == 1 for t in tasks)


def test_a_transient_failure_is_retried(tmp_path):
    markers = tmp_path / "markers"
    tasks = make_tasks(3, markers, fail_times={1: 2})
    report = run(tasks, tmp_path / "out", retries=2)
    assert not report.failed
    assert attempts(markers, "shard-001") == 3
    assert attempts(markers, "shard-000") == 1


def test_a_failing_shard_is_recorded_and_the_others_go_on(tmp_path):
    markers, out = tmp_path / "markers", tmp_path / "out"
    report = run(make_tasks(3, markers, fail={1: True}), out, retries=1)
    assert sorted(report.done) == ["shard-000", "shard-002"]
    assert "planted failure in shard-001" in report.failed["shard-001"]
    assert attempts(markers, "shard-001") == 2
    recorded = (out / "shard-001_error.json").read_text()
    assert "planted failure" in recorded and not batch.is_done(out, "shard-001")
    # once the input is fixed, a rerun does only that shard and clears its error record
    fixed = run(make_tasks(3, markers), out)
    assert fixed.skipped == ["shard-000", "shard-002"] and "shard-001" in fixed.done
    assert not (out / "shard-001_error.json").exists()


def test_each_outcome_is_reported_as_soon_as_it_is_recorded(tmp_path):
    """on_result sees skipped shards first, then each shard once its outcome is on disk."""
    markers, out = tmp_path / "markers", tmp_path / "out"
    run(make_tasks(1, markers), out)
    seen = []

    def on_result(shard_id, stats, error):
        seen.append((shard_id, stats is not None, error is not None,
                     batch.is_done(out, shard_id) or (out / f"{shard_id}_error.json").exists()))

    report = batch.run_shards(make_tasks(3, markers, fail={2: True}), compute_shard, out, retries=0,
                              progress=False, on_result=on_result)
    assert seen[0] == ("shard-000", True, False, True)
    assert sorted(seen[1:]) == [("shard-001", True, False, True), ("shard-002", False, True, True)]
    assert report.skipped == ["shard-000"] and sorted(report.done) == ["shard-000", "shard-001"]


def test_a_job_killed_mid_write_resumes_to_the_same_result(tmp_path):
    clean = tmp_path / "clean"
    run(make_tasks(5, tmp_path / "clean-markers"), clean)
    markers, out = tmp_path / "markers", tmp_path / "out"
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(TESTS)!r})
        from engine import batch
        from helpers_batch import compute_shard, make_tasks
        tasks = make_tasks(5, {str(markers)!r}, die_times={{3: 1}})
        batch.run_shards(tasks, compute_shard, {str(out)!r}, progress=False)
    """)
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert killed.returncode < 0  # SIGKILLed inside shard 3, its output half written
    assert [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert not batch.is_done(out, "shard-003")
    report = run(make_tasks(5, markers, die_times={3: 1}), out)
    assert sorted(report.skipped) == ["shard-000", "shard-001", "shard-002"]
    assert outputs(out) == outputs(clean)  # no leftover temporary file either
    assert attempts(markers, "shard-000") == 1


def test_a_process_pool_gives_the_same_outputs(tmp_path):
    run(make_tasks(4, tmp_path / "m1"), tmp_path / "serial")
    report = run(make_tasks(4, tmp_path / "m2", fail={2: True}), tmp_path / "pool", workers=2,
                 retries=0)
    assert sorted(report.failed) == ["shard-002"]
    serial = {k: v for k, v in outputs(tmp_path / "serial").items() if "002" not in k}
    pooled = {k: v for k, v in outputs(tmp_path / "pool").items() if "002" not in k}
    assert pooled == serial


def test_a_pool_worker_killed_mid_job_still_gives_the_complete_identical_result(tmp_path):
    run(make_tasks(5, tmp_path / "m1"), tmp_path / "serial")
    markers = tmp_path / "m2"
    report = run(make_tasks(5, markers, die_times={2: 1}), tmp_path / "pool", workers=2)
    assert not report.failed and len(report.done) == 5
    assert outputs(tmp_path / "pool") == outputs(tmp_path / "serial")
    assert attempts(markers, "shard-002") == 2


def test_a_shard_that_always_kills_its_worker_fails_alone(tmp_path):
    """Shards running beside it when it kills the pool run again one at a time, and the queued
    ones in parallel: none of them is blamed for its deaths."""
    run(make_tasks(6, tmp_path / "m1"), tmp_path / "serial")
    markers = tmp_path / "m2"
    slow = {i: 0.3 for i in range(6) if i != 1}  # in flight when shard 1 dies
    report = run(make_tasks(6, markers, die_times={1: 99}, delay=slow), tmp_path / "pool", workers=2)
    assert list(report.failed) == ["shard-001"]
    assert "died 4 times running it" in report.failed["shard-001"]
    assert attempts(markers, "shard-001") == batch.WORKER_DEATH_RETRIES + 1
    assert sorted(report.done) == [f"shard-{i:03d}" for i in range(6) if i != 1]
    serial = {k: v for k, v in outputs(tmp_path / "serial").items() if "001" not in k}
    assert {k: v for k, v in outputs(tmp_path / "pool").items() if "001" not in k} == serial
    assert all(attempts(markers, f"shard-{i:03d}") <= 2 for i in slow)
    assert not list((tmp_path / "pool").glob(".*"))  # no markers or temporaries left


def test_pool_workers_load_their_model_once_and_serve_later_jobs(tmp_path):
    markers = tmp_path / "markers"
    run(make_tasks(6, markers), tmp_path / "first", workers=2)
    run(make_tasks(4, markers), tmp_path / "second", workers=2)  # e.g. the next round of a scan
    loads = loads_by_process(markers)
    assert set(loads.values()) == {1} and len(loads) <= 2


def test_duplicate_shard_ids_are_refused(tmp_path):
    task = make_tasks(1, tmp_path)[0]
    with pytest.raises(ValueError, match="duplicate shard id"):
        run([task, task], tmp_path / "out")


def test_engine_options_are_validated():
    with pytest.raises(InputError, match="unknown engine 'spark'"):
        batch.ExecutorOptions(engine="spark")
    with pytest.raises(InputError, match="--ray-address needs --engine ray"):
        batch.ExecutorOptions(engine="local", ray_address="127.0.0.1:6379")


def test_the_engine_arguments_become_executor_options():
    parser = batch.add_engine_arguments(argparse.ArgumentParser())
    assert batch.executor_options(parser.parse_args([])) == batch.ExecutorOptions()
    if batch.importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed (pip install 'vlaudit[ray]')")
    args = parser.parse_args(["--engine", "ray", "--ray-address", "127.0.0.1:6379"])
    assert batch.executor_options(args) == batch.ExecutorOptions("ray", "127.0.0.1:6379")


def test_asking_for_ray_without_it_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail as if not installed
    with pytest.raises(MissingDependencyError, match=r"vlaudit\[ray\]"):
        batch.ExecutorOptions(engine="ray")
    with pytest.raises(MissingDependencyError, match=r"vlaudit\[ray\]"):
        run(make_tasks(1, tmp_path / "m"), tmp_path / "out", executor="ray")
    from engine import ray_executor

    jobs = ray_executor.run(make_tasks(1, tmp_path / "m"), compute_shard, tmp_path / "out",
                            workers=1, retries=0, options=batch.ExecutorOptions(), gpu=False)
    with pytest.raises(MissingDependencyError, match=r"vlaudit\[ray\]"):
        next(jobs)


def test_process_cached_builds_once_per_process():
    built = []

    def factory(name):
        built.append(name)
        return object()

    first = batch.process_cached(factory, "model-a")
    assert batch.process_cached(factory, "model-a") is first
    assert batch.process_cached(factory, "model-b") is not first
    assert built == ["model-a", "model-b"]
