"""Shard jobs on a real Ray cluster (a head and a worker node, separate processes on loopback):
the same outputs as the local runner, bit for bit, even when a worker process is killed."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl
import pytest

from engine import batch, ray_executor
from engine.errors import InputError
from helpers_batch import (attempts, compute_shard, finishers, loads_by_process, make_tasks, outputs,
                           ray_nodes_used)

pytest.importorskip("ray", reason="ray is not installed (pip install 'vlaudit[ray]')")

from helpers_index import loaded_source, make_images, tiny_spec  # noqa: E402
from helpers_large_index import write_shards  # noqa: E402
from helpers_ray import BlockingImage, LocalCluster  # noqa: E402

from engine.faces.build import run_build  # noqa: E402
from engine.faces.index import open_index  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(cpus=(1, 1)) as running:
        try:
            yield running
        finally:
            ray_executor.disconnect()  # this process's driver and its idle workers


def on_ray(cluster, tasks, out_dir, **kwargs):
    options = batch.ExecutorOptions(engine="ray", ray_address=cluster.address)
    return batch.run_shards(tasks, compute_shard, out_dir, executor=options, progress=False, **kwargs)


def local(tasks, out_dir, **kwargs):
    return batch.run_shards(tasks, compute_shard, out_dir, progress=False, **kwargs)


def without_errors(files: dict) -> dict:
    return {name: data for name, data in files.items() if not name.endswith("_error.json")}


def test_a_job_on_ray_matches_the_local_run_bit_for_bit(cluster, tmp_path):
    plan = {"fail_times": {1: 1}, "fail": {4: True}}
    expected = local(make_tasks(6, tmp_path / "local-markers", **plan), tmp_path / "local", retries=1)
    markers = tmp_path / "markers"
    slow = {i: 1.0 for i in range(6)}  # long enough for both workers to take shards
    report = on_ray(cluster, make_tasks(6, markers, delay=slow, **plan), tmp_path / "ray", retries=1)
    assert report.done == expected.done and sorted(report.failed) == ["shard-004"]
    assert "planted failure in shard-004" in report.failed["shard-004"]
    assert without_errors(outputs(tmp_path / "ray")) == without_errors(outputs(tmp_path / "local"))
    assert attempts(markers, "shard-001") == 2  # retried inside the worker
    ran_on = set().union(*(finishers(markers, f"shard-{i:03d}") for i in (0, 1, 2, 3, 5)))
    assert os.getpid() not in ran_on and ray_nodes_used(markers) == 2  # both nodes' workers
    # a rerun with the input fixed runs only the failed shard
    rerun = on_ray(cluster, make_tasks(6, markers), tmp_path / "ray")
    assert sorted(rerun.skipped) == ["shard-000", "shard-001", "shard-002", "shard-003", "shard-005"]
    assert not rerun.failed and attempts(markers, "shard-000") == 1
    # one model per worker: each worker loaded it once, and the rerun reused the same workers
    loads = loads_by_process(markers)
    assert set(loads.values()) == {1} and len(loads) == 2
    assert finishers(markers, "shard-004") <= set(loads)


def test_a_worker_killed_mid_job_still_gives_the_complete_identical_result(cluster, tmp_path):
    delays = {i: 0.3 for i in range(8)} | {2: 4.0}
    local(make_tasks(8, tmp_path / "local-markers"), tmp_path / "local")
    markers = tmp_path / "markers"
    killed = []
    killer = threading.Thread(target=kill_when_started, args=(markers, "shard-002", killed))
    killer.start()
    report = on_ray(cluster, make_tasks(8, markers, delay=delays), tmp_path / "ray")
    killer.join()
    assert killed, "the worker running shard-002 was never seen"
    assert not report.failed and len(report.done) == 8
    assert outputs(tmp_path / "ray") == outputs(tmp_path / "local")
    assert attempts(markers, "shard-002") == 2 and killed[0] not in finishers(markers, "shard-002")


def kill_when_started(markers, shard_id: str, killed: list, timeout: float = 120) -> None:
    """SIGKILL the process that starts ``shard_id`` while it is still working on it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        started = list(markers.glob(f"attempt-{shard_id}-*")) if markers.exists() else []
        if started:
            pid = int(started[0].name.split("-")[-2])
            time.sleep(0.5)
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            return
        time.sleep(0.05)


def test_an_index_build_on_ray_matches_the_local_build_despite_a_killed_worker(cluster, tmp_path):
    refs = make_images(tmp_path / "img", 14)
    (tmp_path / "img" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    refs.insert(6, str(tmp_path / "img" / "broken.png"))
    local_dir, ray_dir = tmp_path / "local-indexes", tmp_path / "ray-indexes"
    run_build(build_config(local_dir), loaded_source(refs))
    blocking = BlockingImage(refs[9])  # in the third shard; its reader is the worker we kill
    on_cluster = batch.ExecutorOptions(engine="ray", ray_address=cluster.address)
    with ThreadPoolExecutor(1) as side:
        killed = side.submit(blocking.kill_reader)
        result = run_build(build_config(ray_dir, executor=on_cluster), loaded_source(refs))
        assert killed.result() != os.getpid()
    assert result["count"] == 14 and result["failures"] == 1 and result["shards"] == 4
    ours, theirs = open_index("faces", ray_dir), open_index("faces", local_dir)
    for name in ("index.faiss", "faces.parquet", "failures.parquet"):
        assert (ours.path / name).read_bytes() == (theirs.path / name).read_bytes(), name
    assert ours.manifest["checksums"] == theirs.manifest["checksums"]
    assert ours.manifest["build"]["engine"] == "ray"


def build_config(indexes_dir, **settings):
    from engine.faces.build import BuildConfig

    return BuildConfig(name="faces", source="folder:generated", model=tiny_spec(),
                       indexes_dir=indexes_dir, shard_size=4, batch_size=3, workers=0,
                       device="cpu", progress=False, **settings)


def test_an_on_disk_ivf_index_filled_on_ray_is_identical(cluster, tmp_path):
    from engine.faces.large_index import OnDiskConfig, build_on_disk

    files, _ = write_shards(tmp_path / "shards")
    config = OnDiskConfig(nlist=8, train_size=300, fan_in=2)
    on_cluster = batch.ExecutorOptions(engine="ray", ray_address=cluster.address)
    local_description = build_on_disk(files, tmp_path / "local", tmp_path / "local-work", config=config)
    ray_description = build_on_disk(files, tmp_path / "ray", tmp_path / "ray-work", config=config,
                                    executor=on_cluster)
    assert ray_description == local_description
    for name in ("index.faiss", "index.ivfdata"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()


def test_a_caption_scan_on_ray_matches_the_local_scan(cluster, tmp_path):
    from engine.captions.scan import ScanConfig, run_scan

    sources = write_caption_corpus(tmp_path / "captions")
    on_cluster = batch.ExecutorOptions(engine="ray", ray_address=cluster.address)
    manifests = {}
    for name, executor in (("local", batch.ExecutorOptions()), ("ray", on_cluster)):
        config = ScanConfig(sources=(str(sources),), db=str(tmp_path / f"{name}.duckdb"),
                            out=str(tmp_path / name), workers=1, executor=executor, progress=False)
        manifests[name] = run_scan(config)
    assert manifests["ray"]["counts"] == manifests["local"]["counts"]
    assert manifests["ray"]["counts"]["n_captions"] == 7 * 150 - 1  # one blank line skipped
    tables = {name: dict(manifest["outputs"]) for name, manifest in manifests.items()}
    for outputs_ in tables.values():
        del outputs_["shards.parquet"]  # records when each file was scanned; compared below
    assert tables["ray"] == tables["local"]  # sha256 of every co-occurrence, term and example table
    assert manifests["ray"]["duplicates"] == manifests["local"]["duplicates"]
    shards = [pl.read_parquet(tmp_path / name / "shards.parquet").drop("scanned_at")
              for name in ("local", "ray")]
    assert shards[0].equals(shards[1]) and shards[0]["status"].to_list() == ["done"] * 7


def test_a_caption_scan_through_a_ray_client_address_matches_the_local_scan(cluster, tmp_path):
    """``--ray-address ray://HOST:PORT``: the driver joins through Ray client mode."""
    from engine.captions.scan import ScanConfig, run_scan

    sources = write_caption_corpus(tmp_path / "captions", files=3)
    manifests = {}
    for name, executor in (("local", batch.ExecutorOptions()),
                           ("client", batch.ExecutorOptions(engine="ray", ray_address=cluster.client_address))):
        config = ScanConfig(sources=(str(sources),), db=str(tmp_path / f"{name}.duckdb"),
                            out=str(tmp_path / name), workers=1, executor=executor, progress=False)
        manifests[name] = run_scan(config)
    ray_executor.disconnect()  # the next test joins the cluster directly
    assert manifests["client"]["counts"] == manifests["local"]["counts"]
    outputs_ = {name: {k: v for k, v in manifest["outputs"].items() if k != "shards.parquet"}
                for name, manifest in manifests.items()}
    assert outputs_["client"] == outputs_["local"]


CAPTION_WORDS = ["nurse", "doctor", "criminal", "ceo", "teacher", "a", "the", "photo", "of", "with",
                 "black dress", "red", "woman", "women", "man", "men", "black woman", "asian man",
                 "old woman", "young man", "muslim", "christian", "african american", "girl", "boy"]


def write_caption_corpus(folder, files: int = 7, rows: int = 150, seed: int = 0):
    """LAION-style parquet shards and a text file of captions drawn (seeded) from CAPTION_WORDS."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(files):
        captions = [" ".join(rng.choice(CAPTION_WORDS, size=rng.integers(2, 9))).capitalize()
                    for _ in range(rows)]
        if i == files - 1:
            captions[7] = " "
            (folder / "extra.txt").write_text("\n".join(captions) + "\n", encoding="utf-8")
        else:
            urls = [f"http://127.0.0.1/{i}/{j}.jpg" for j in range(rows)]
            pl.DataFrame({"TEXT": captions, "URL": urls}).write_parquet(folder / f"part-{i:05d}.parquet")
    return folder


def test_pool_size_follows_cpus_or_gpus():
    assert ray_executor.pool_size({"CPU": 6.0}, gpus_per_worker=0) == 6
    assert ray_executor.pool_size({"CPU": 6.0, "GPU": 2.0}, gpus_per_worker=1) == 2
    with pytest.raises(InputError, match="no CPU"):
        ray_executor.pool_size({"CPU": 0.0}, gpus_per_worker=0)
