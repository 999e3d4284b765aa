"""Caption scan throughput and memory, against DuckDB's plain read and a Python ``re`` loop.

Targets (issue 4), full base So-B-IT taxonomy x default lexicon, on a corpus of >= 5 million
captions resampled from the real LAION sample (benchmarks/build_caption_corpus.py):

- scan throughput >= 0.25x DuckDB's own plain read of the same parquet files
  (``SELECT count(*), sum(length(TEXT)) FROM read_parquet(...)``), timed in the same run;
- scan throughput >= 20x a straightforward Python loop (``re`` tokens, n-gram look-ups in a dict
  of surface forms, per-caption sets of terms, counters; captions already in a list), timed on
  the first ``--python-rows`` captions of the same corpus; its counts must equal the compiled
  matcher's;
- peak memory (RSS of the scan process tree, sampled from /proc) bounded and independent of the
  corpus size: a 5M and a 50M corpus, each scanned by ``vlaudit scan`` in a subprocess.

The throughput ratio is also measured at scale (``--scale-rows``, 50M captions: DuckDB's read
and the best of ``--scale-repeats`` scans of the same 200 files, in the same process as the 5M
run), where the fixed start and finish of a scan (terms, database, reduce: about 0.4 s) weigh
ten times less; and on small files (``--small-rows``, 2M captions in files of 10,000 rows, the size of img2dataset's shards),
where the cost per file shows.

The scan is ``engine.captions.scan.run_scan`` end to end (read, match, ingest into a new DuckDB
file, reduce, write the outputs) with its default parallelism (one worker process per CPU). A
warm-up scan of the real LAION sample (two files) first starts the worker pool and loads the
compiled kernel, as in any long-running process; the cold command-line runs of the memory part
include all start-up. The LAION-2B-en estimate is 2.32e9 captions at the measured rate; "per core"
uses the CPU time of the whole process tree.

    python benchmarks/bench_scan.py                 # 5M throughput + 5M/50M memory
    python benchmarks/bench_scan.py --no-memory     # throughput only (5M, 50M, small files)
    python benchmarks/bench_scan.py --no-memory --no-scale   # 5M throughput only
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from build_caption_corpus import SAMPLE, build  # noqa: E402

LAION_2B_EN = 2_320_000_000


def corpus(root: Path, rows: int, rows_per_file: int = 250_000) -> Path:
    suffix = "" if rows_per_file == 250_000 else f"-{rows_per_file // 1000}k"
    path = root / f"captions-{rows // 1_000_000}m{suffix}"
    started = time.perf_counter()
    build(path, rows, rows_per_file, seed=0, duplicates=0.35, replace=0.3)
    print(f"corpus {path}: ready in {time.perf_counter() - started:.0f} s", flush=True)
    return path


def duckdb_read(files: list[str], repeats: int = 3) -> float:
    import duckdb

    con = duckdb.connect()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        con.execute("SELECT count(*), sum(length(TEXT)) FROM read_parquet(?)", [files]).fetchall()
        best = min(best, time.perf_counter() - started)
    return best


def timed_scan(sources: list[str], work: Path, workers: int = 0) -> dict:
    from engine.captions.scan import ScanConfig, run_scan

    config = ScanConfig(sources=tuple(sources), db=str(work / "scan.duckdb"), out=str(work / "out"),
                        progress=False, workers=workers)
    cpu = _tree_cpu(os.getpid())
    started = time.perf_counter()
    manifest = run_scan(config)
    return {"seconds": time.perf_counter() - started, "cpu_seconds": _tree_cpu(os.getpid()) - cpu,
            "captions": manifest["counts"]["n_captions"]}


def warm_up(work: Path) -> None:
    """Two small files of real captions: the pool of worker processes starts (as many as the
    timed scans use: one per CPU), kernels load."""
    import polars as pl

    sample = pl.read_parquet(SAMPLE)
    for part in range(2):
        sample[part::2].write_parquet(work / f"warm-{part}.parquet")
    timed_scan([str(work / "warm-*.parquet")], work / "warm", workers=os.cpu_count() or 1)


def python_loop(captions: list[str]) -> tuple[float, dict]:
    """The baseline: the same counts with Python's re, dicts and sets, one caption at a time."""
    from engine.captions.scan import load_terms

    termset, _ = load_terms("sobit", "default", False)
    terms_of = collections.defaultdict(set)
    forms = dict(termset.forms.select("form_id", "form").iter_rows())
    for form_id, term_id in termset.form_terms.select("form_id", "term_id").iter_rows():
        terms_of[tuple(forms[form_id].split(" "))].add(term_id)
    longest = max(map(len, terms_of))
    n_words = termset.n_words
    token = re.compile(r"[^\W_]+")
    started = time.perf_counter()
    per_term, per_pair = collections.Counter(), collections.Counter()
    for caption in captions:
        tokens = token.findall(caption.casefold())
        found = set()
        for i in range(len(tokens)):
            for n in range(1, min(longest, len(tokens) - i) + 1):
                found |= terms_of.get(tuple(tokens[i:i + n]), set())
        per_term.update(found)
        per_pair.update((w, g) for w in found if w < n_words for g in found if g >= n_words)
    return time.perf_counter() - started, {"terms": per_term, "pairs": per_pair}


def compiled_counts(captions: list[str]) -> dict:
    import numpy as np
    import pyarrow as pa

    from engine.captions.matcher import Matcher
    from engine.captions.scan import load_terms

    termset, _ = load_terms("sobit", "default", False)
    matcher = Matcher(termset.compile())
    matcher.scan(pa.array(captions, pa.large_string()))
    n_words = termset.n_words
    pairs = {(int(w), int(g) + n_words): int(matcher.counts.n_pair[w, g])
             for w, g in zip(*np.nonzero(matcher.counts.n_pair))}
    return {"terms": {i: int(n) for i, n in enumerate(matcher.counts.n_term) if n}, "pairs": pairs}


def peak_rss(argv: list[str]) -> tuple[float, float]:
    """(seconds, peak summed RSS in MB of the process and its children) of a command."""
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    peak = [0]

    def sample():
        while process.poll() is None:
            peak[0] = max(peak[0], _tree_rss(process.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    started = time.perf_counter()
    sampler.start()
    if process.wait() != 0:
        raise RuntimeError(f"{argv} failed")
    sampler.join()
    return time.perf_counter() - started, peak[0] / 1e6


def _tree(root: int, field) -> float:
    """Sum of ``field(stat fields)`` over a process and its descendants, from /proc."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    values: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            children[int(stat[1])].append(int(entry))
            values[int(entry)] = field(stat)
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += values.get(pid, 0)
        todo += children.get(pid, [])
    return total


def _tree_rss(root: int) -> int:
    return int(_tree(root, lambda stat: int(stat[21]) * resource.getpagesize()))


def _tree_cpu(root: int) -> float:
    """User + system CPU seconds of a process and its live descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    return _tree(root, lambda stat: (int(stat[11]) + int(stat[12])) / ticks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "vlaudit-bench")
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--memory-rows", type=int, default=50_000_000)
    parser.add_argument("--python-rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=2, help="best of N for the scan and the loop")
    parser.add_argument("--scale-rows", type=int, default=50_000_000)
    parser.add_argument("--scale-repeats", type=int, default=3,
                        help="best of N at --scale-rows (single runs there vary by 2 s)")
    parser.add_argument("--small-rows", type=int, default=2_000_000, help="captions in 10,000-row files")
    parser.add_argument("--no-memory", action="store_true", help="skip the 5M/50M memory runs")
    parser.add_argument("--no-scale", action="store_true", help="skip the throughput ratios at --scale-rows and on small files")
    args = parser.parse_args()
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    small = corpus(args.root, args.rows)
    files = sorted(str(p) for p in small.glob("*.parquet"))
    results = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "captions": args.rows}

    with tempfile.TemporaryDirectory(dir=args.root) as work:
        warm_up(Path(work))
        duck = duckdb_read(files)
        scans = [timed_scan([str(small)], Path(work) / f"scan-{i}") for i in range(args.repeats)]
        scan = min(scans, key=lambda s: s["seconds"])
        if not args.no_scale:
            large = corpus(args.root, args.scale_rows)
            large_duck = duckdb_read(sorted(str(p) for p in large.glob("*.parquet")), repeats=2)
            large_scan = min((timed_scan([str(large)], Path(work) / f"scan-scale-{i}") for i in range(args.scale_repeats)),
                             key=lambda s: s["seconds"])
            shards = corpus(args.root, args.small_rows, rows_per_file=10_000)
            shards_duck = duckdb_read(sorted(str(p) for p in shards.glob("*.parquet")))
            shards_scan = min((timed_scan([str(shards)], Path(work) / f"scan-small-{i}") for i in range(args.repeats)),
                              key=lambda s: s["seconds"])
    import polars as pl

    sample = pl.read_parquet(files[0], columns=["TEXT"])["TEXT"].fill_null("").head(args.python_rows).to_list()
    loop_seconds, loop_counts = min((python_loop(sample) for _ in range(args.repeats)),
                                    key=lambda run: run[0])
    agree = loop_counts["pairs"] == collections.Counter(compiled_counts(sample)["pairs"])
    rate = scan["captions"] / scan["seconds"]
    results |= {
        "duckdb_read_seconds": duck, "duckdb_captions_per_s": args.rows / duck,
        "scan_seconds": scan["seconds"], "scan_cpu_seconds": scan["cpu_seconds"],
        "scan_captions_per_s": rate, "ratio_to_duckdb": rate / (args.rows / duck),
        "python_loop_captions_per_s": len(sample) / loop_seconds,
        "ratio_to_python_loop": rate / (len(sample) / loop_seconds),
        "python_loop_pair_counts_equal": agree,
        "laion2b_en_hours": LAION_2B_EN / rate / 3600,
        "captions_per_cpu_second": scan["captions"] / scan["cpu_seconds"],
        "laion2b_en_core_hours": LAION_2B_EN / (scan["captions"] / scan["cpu_seconds"]) / 3600,
    }
    if not args.no_scale:
        large_rate = large_scan["captions"] / large_scan["seconds"]
        results |= {
            "scale_captions": large_scan["captions"], "scale_duckdb_read_seconds": large_duck,
            "scale_scan_seconds": large_scan["seconds"], "scale_scan_captions_per_s": large_rate,
            "scale_ratio_to_duckdb": large_rate / (large_scan["captions"] / large_duck),
            "scale_laion2b_en_hours": LAION_2B_EN / large_rate / 3600,
            "scale_laion2b_en_core_hours": LAION_2B_EN / (large_scan["captions"] / large_scan["cpu_seconds"]) / 3600,
            "small_files_captions": shards_scan["captions"], "small_files_scan_seconds": shards_scan["seconds"],
            "small_files_captions_per_s": shards_scan["captions"] / shards_scan["seconds"],
            "small_files_ratio_to_duckdb": shards_duck / shards_scan["seconds"],
        }
    print(json.dumps(results, indent=2), flush=True)
    if not args.no_memory:
        for rows in (args.rows, args.memory_rows):
            path = corpus(args.root, rows)
            with tempfile.TemporaryDirectory(dir=args.root) as work:
                argv = [sys.executable, "-m", "engine", "scan", str(path), "--db", f"{work}/scan.duckdb",
                        "--out", f"{work}/out", "--json"]
                seconds, rss = peak_rss(argv)
            results[f"peak_rss_mb_{rows // 1_000_000}m"] = round(rss)
            results[f"cli_seconds_{rows // 1_000_000}m"] = round(seconds, 1)
            print(f"{rows:,} captions: peak RSS {rss:.0f} MB, {seconds:.1f} s", flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
