"""Distributed throughput: index-build embedding and caption scanning on 1 and 2 workers, local
and on Ray, and the measured per-shard cost extrapolated to LAION-400M and LAION-2B-en.

Both jobs are the real ones: ``engine.faces.build.EmbedShard`` through ``engine.batch.run_shards``
(ViT-B-32 with random weights: real size, speed does not depend on the weights; 224 px JPEGs),
and ``engine.captions.scan.run_scan`` end to end (map on the workers, DuckDB ingest and reduce on
the driver) over parquet shards resampled (seeded, tokens shuffled) from the real LAION sample.
Ray runs on a cluster started here on loopback with 1 or 2 CPUs. Every configuration first runs a
small warm-up job (workers start, models load, kernels compile), then the timed jobs reuse its
workers: the figures are steady-state throughput, best of ``--repeats`` runs (the machine is
shared). Ratios are against the local runner in the same run. Extrapolation: on one Ray worker,
a shard's cost splits into the workers' part P (spread over N workers) and the driver's serial
part S (the scan's per-file DuckDB ingest, timed inside the run; the embedding has none until the
index is written); the scan's fixed per-scan cost (terms, database, reduce; timed on a tiny
corpus) is left out. Hours = items x (S + P / N).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
LAION_SAMPLE = HERE.parent.parent / "shared" / "data" / "laion-sample" / "laion400m_sample_10k.parquet"
LAION = {"LAION-400M": 413_000_000, "LAION-2B-en": 2_320_000_000}  # image-text pairs
SHARD_ROWS = 10_000  # img2dataset's default samples per shard
WORKER_COUNTS = (1, 64, 1024)
CONFIGS = (("local", 1), ("local", 2), ("ray", 1), ("ray", 2))


def embed_job(folder: Path, images: int, shard_size: int, model: str):
    """(tasks, work) of the index build's embedding map over ``images`` generated JPEGs."""
    import polars as pl

    sys.path.insert(0, str(HERE))
    from bench_embed import write_images
    from engine.faces.build import EmbedShard, shard_tasks
    from engine.faces.images import DEFAULT_MAX_PIXELS
    from engine.faces.models import ModelSpec

    folder.mkdir(parents=True, exist_ok=True)
    refs = write_images(folder, images, 224)
    tasks = shard_tasks(pl.DataFrame({"image": refs}), shard_size)
    work = EmbedShard(ModelSpec(model, pretrained="none"), "cpu", batch_size=32, workers=0,
                      max_pixels=DEFAULT_MAX_PIXELS)
    return tasks, work


def caption_corpus(folder: Path, files: int, rows: int, seed: int = 0) -> list[Path]:
    """Parquet shards of captions resampled (seeded) from the real LAION sample: each caption is a
    sampled one with its tokens shuffled, so captions are mostly distinct (no cache can help)."""
    import polars as pl

    if not LAION_SAMPLE.exists():
        raise SystemExit(f"{LAION_SAMPLE} is absent: the scan benchmark resamples real captions")
    sample = pl.read_parquet(LAION_SAMPLE)
    tokens = [str(text).split() for text in sample["TEXT"].to_list()]
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(files):
        picks = rng.integers(0, len(tokens), rows)
        captions = [" ".join(rng.permutation(tokens[p])) for p in picks]
        urls = sample["URL"].gather(picks).to_list()
        paths.append(folder / f"{i:05d}.parquet")
        pl.DataFrame({"TEXT": captions, "URL": urls}).write_parquet(paths[-1])
    return paths


def run_embedding(engine: str, workers: int, tasks, work, root: Path, repeats: int) -> dict:
    from engine import batch

    batch.run_shards(tasks[:workers], work, root / "warm", executor=engine, workers=workers,
                     progress=False)
    times = []
    for repeat in range(repeats):  # fresh output directories: every shard runs each time
        began = time.perf_counter()
        report = batch.run_shards(tasks, work, root / f"timed-{repeat}", executor=engine,
                                  workers=workers, progress=False)
        times.append(time.perf_counter() - began)
    items = sum(stats["embedded"] for stats in report.done.values())
    return {"seconds": round(min(times), 2), "items": items,
            "items_per_s": round(items / min(times), 2), "all_seconds": [round(t, 2) for t in times]}


def run_scanning(engine: str, workers: int, warm: list[Path], timed: list[Path], root: Path,
                 repeats: int) -> dict:
    """The whole scan (map on the workers, ingest and reduce on the driver), timed, with the time
    the driver spends ingesting shards; and the fixed per-scan cost as the time of a tiny scan."""
    from engine import batch
    from engine.captions.scan import ScanConfig, run_scan

    def scan(name: str, files: list[Path]) -> tuple[float, float, dict]:
        config = ScanConfig(sources=tuple(map(str, files)), db=str(root / f"{name}.duckdb"),
                            out=str(root / name), workers=workers,
                            executor=batch.ExecutorOptions(engine=engine), progress=False)
        with timed_calls() as driver:
            began = time.perf_counter()
            manifest = run_scan(config)
            seconds = time.perf_counter() - began
        return seconds, driver["seconds"], manifest

    scan("warm", warm)  # workers start, kernels compile
    fixed = min(scan(f"fixed-{repeat}", warm)[0] for repeat in range(repeats))
    runs = [scan(f"timed-{repeat}", timed) for repeat in range(repeats)]
    seconds, driver, manifest = min(runs, key=lambda run: run[0])
    items = manifest["counts"]["n_captions"]
    return {"seconds": round(seconds, 2), "items": items, "items_per_s": round(items / seconds, 1),
            "fixed_seconds": round(fixed, 2), "driver_ingest_seconds": round(driver, 2),
            "all_seconds": [round(run[0], 2) for run in runs]}


@contextlib.contextmanager
def timed_calls():
    """Add up the time spent in the driver's per-shard ingest (the scan's serial part)."""
    from engine.captions import staging, store

    spent = {"seconds": 0.0}
    originals = {(store, "ingest"): store.ingest, (staging, "read_staged"): staging.read_staged}

    def timing(function):
        def wrapper(*args, **kwargs):
            began = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent["seconds"] += time.perf_counter() - began
        return wrapper

    for (module, name), function in originals.items():
        setattr(module, name, timing(function))
    try:
        yield spent
    finally:
        for (module, name), function in originals.items():
            setattr(module, name, function)


def on_engine(engine: str, workers: int, measure):
    """Run ``measure()`` with the local runner, or on a fresh loopback Ray cluster of ``workers`` CPUs."""
    if engine == "local":
        return measure()
    import ray

    from engine import ray_executor

    ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False,
             _node_ip_address=ray_executor.LOCAL_NODE_IP, logging_level="WARNING")
    try:
        return measure()
    finally:
        ray_executor.disconnect()
        ray.shutdown()


def extrapolate(serial: float, parallel: float) -> dict:
    """Hours for each LAION set on N workers: items x (serial + parallel / N)."""
    return {name: {f"{n}_workers_h": round(items * (serial + parallel / n) / 3600, 2)
                   for n in WORKER_COUNTS} for name, items in LAION.items()}


def summarise(job: str, results: dict) -> dict:
    """Ratios in this run; the per-item cost on one Ray worker split into the driver's serial part
    and the workers' part, extrapolated with the workers' part spread over N workers."""
    local1, ray1, ray2 = (results[k]["items_per_s"] for k in ("local-1", "ray-1", "ray-2"))
    one = results["ray-1"]
    serial = one.get("driver_ingest_seconds", 0.0) / one["items"]
    parallel = (one["seconds"] - one.get("fixed_seconds", 0.0)) / one["items"] - serial
    return {"job": job, "runs": results,
            "ray_1_vs_local_1": round(ray1 / local1, 3), "ray_2_vs_ray_1": round(ray2 / ray1, 3),
            "per_shard_s_1_worker": round(SHARD_ROWS * parallel, 3),
            "driver_s_per_shard": round(SHARD_ROWS * serial, 3),
            "extrapolated": extrapolate(serial, parallel)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=32)
    parser.add_argument("--caption-files", type=int, default=8)
    parser.add_argument("--captions-per-file", type=int, default=100_000)
    parser.add_argument("--only", choices=("embed", "scan"), default=None)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per configuration (best kept)")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # loopback-only clusters, no token in ~/.ray
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    out = {"machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()}, "jobs": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.only in (None, "embed"):
            tasks, work = embed_job(root / "images", args.images, args.shard_size, args.model)
            results = {f"{engine}-{n}": on_engine(engine, n, lambda e=engine, n=n: run_embedding(
                e, n, tasks, work, root / f"embed-{e}-{n}", args.repeats)) for engine, n in CONFIGS}
            out["jobs"].append(summarise(f"embed {args.model} (images)", results))
        if args.only in (None, "scan"):
            files = caption_corpus(root / "captions", args.caption_files, args.captions_per_file)
            warm = caption_corpus(root / "warm-captions", 2, 2_000, seed=1)
            results = {f"{engine}-{n}": on_engine(engine, n, lambda e=engine, n=n: run_scanning(
                e, n, warm, files, root / f"scan-{e}-{n}", args.repeats)) for engine, n in CONFIGS}
            out["jobs"].append(summarise("scan (captions)", results))
    out["machine"]["load_average_after"] = os.getloadavg()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
