"""A scan killed mid-way (SIGKILL) resumes and gives exactly the result of an uninterrupted scan;
the real LAION sample is counted like the oracle."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
from polars.testing import assert_frame_equal

from conftest import shared_path
from engine.captions import scan
from engine.captions import staging as staging_module
from engine.captions.scan import load_terms, run_scan
from helpers_captions import laion_parquet, oracle_counts, scan_config

TESTS = Path(__file__).resolve().parent
FILES = 16
WORDS = ["nurse", "doctor", "woman", "man", "black", "white", "old", "young", "girl", "the", "a",
         "dress", "police", "officer", "CEO", "caring", "people", "kids", "men", "women", "shoes"]

SLOW_SCAN = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from engine.captions import ingest, scan, staging
    from engine.captions.scan import run_scan
    from helpers_captions import scan_config
    from pathlib import Path

    real_map, real_ingest = staging.scan_task, ingest.InOrderIngest._ingest

    def slow_map(task, out_dir):  # slow tasks, so the kill lands mid-scan
        time.sleep(0.1)
        return real_map(task, out_dir)

    def slower_ingest(self, group):  # and the ingest lags: some tasks are staged, not yet in
        real_ingest(self, group)
        time.sleep(0.4)

    staging.scan_task, ingest.InOrderIngest._ingest = slow_map, slower_ingest
    scan.TASK_BYTES = 1  # a task per file,
    ingest.INGEST_BYTES = 0  # each ingested as soon as it can go in
    run_scan(scan_config(Path({root!r}), [{data!r}]))
""")


def write_corpus(data: Path) -> None:
    rng = np.random.default_rng(7)
    data.mkdir()
    for f in range(FILES):
        captions = [" ".join(rng.choice(WORDS, size=rng.integers(1, 9))) for _ in range(500)]
        laion_parquet(data / f"part-{f:03d}.parquet", captions)


def outputs(out: Path) -> dict[str, pl.DataFrame]:
    return {name: pl.read_parquet(out / name) for name in (
        "cooccurrence.parquet", "cooccurrence_with_ambiguous.parquet", "terms.parquet",
        "examples.parquet")}


def test_a_killed_scan_resumes_to_the_same_result(tmp_path, monkeypatch):
    data = tmp_path / "data"
    write_corpus(data)
    killed = tmp_path / "killed"
    script = SLOW_SCAN.format(tests=str(TESTS), root=str(killed), data=str(data))
    process = subprocess.Popen([sys.executable, "-c", script])
    staging, seen = killed / "scan.duckdb.staging", set()
    deadline = time.monotonic() + 120
    while len(seen) < 5 and process.poll() is None and time.monotonic() < deadline:
        if staging.exists():
            seen |= {p.name for p in staging.glob("*_stats.json")}
        time.sleep(0.01)
    process.kill()
    assert process.wait() == -9, "the scan finished before it could be killed"
    with duckdb.connect(str(killed / "scan.duckdb"), read_only=True) as con:
        done_ids = {row[0] for row in con.execute("SELECT shard_id FROM shards WHERE status = 'done'").fetchall()}
    done = len(done_ids)
    assert 0 < done < FILES
    # mapped, not yet in the database (a kill between a commit and the clean-up leaves both)
    staged = {p.name.removesuffix("_stats.json") for p in staging.glob("*_stats.json")
              if int(p.name.split("-")[1]) not in done_ids}
    monkeypatch.setattr(scan, "TASK_BYTES", 1)  # the same tasks: those staged go in without mapping again
    mapped, real = [], staging_module.scan_task
    monkeypatch.setattr(staging_module, "scan_task", lambda task, out: mapped.append(task.shard_id) or real(task, out))
    resumed = run_scan(scan_config(killed, [data]))  # one worker: the map runs in this process
    assert resumed["sources"]["scanned_now"]["done"] == FILES - done
    assert staged and not staged & set(mapped) and len(mapped) == FILES - done - len(staged)
    clean = run_scan(scan_config(tmp_path / "clean", [data]))
    for name, frame in outputs(tmp_path / "clean" / "out").items():
        assert_frame_equal(outputs(killed / "out")[name], frame, check_exact=True)
    assert resumed["counts"] == clean["counts"]
    assert resumed["duplicates"]["unique_captions_estimate"] == clean["duplicates"]["unique_captions_estimate"]
    assert not staging.exists()


def test_the_real_laion_sample_is_counted_like_the_oracle(tmp_path):
    sample = shared_path("data", "laion-sample", "laion400m_sample_10k.parquet")
    manifest = run_scan(scan_config(tmp_path, [sample]))
    captions = pl.read_parquet(sample)["TEXT"].fill_null("").to_list()
    assert manifest["counts"]["n_captions"] == len(captions) == 10_000
    termset, _ = load_terms("sobit", "default", False)
    oracle = oracle_counts(captions, termset)
    forms = pl.read_parquet(tmp_path / "out" / "terms.parquet").unique("form")
    by_form = dict(forms.select("form", "n_captions").iter_rows())
    for form_id, form in termset.forms.select("form_id", "form").iter_rows():
        assert by_form[form] == oracle["forms"][form_id], form
    # mostly colours: the bare word is far more frequent than its person-noun contexts
    assert by_form["black"] > 300 and by_form["black woman"] + by_form["black man"] < 20
    table = pl.read_parquet(tmp_path / "out" / "cooccurrence.parquet")
    loose = pl.read_parquet(tmp_path / "out" / "cooccurrence_with_ambiguous.parquet")
    black = (table.filter(axis="race", group="black")["n_group"][0],
             loose.filter(axis="race", group="black")["n_group"][0])
    assert black[0] < black[1] / 10
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["taxonomy"]["name"] == "sobit:base"
