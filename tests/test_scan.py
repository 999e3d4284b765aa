"""``vlaudit scan`` end to end: every source kind, counts against the oracle, rescans, failures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from engine.captions.scan import run_scan
from engine.cli import main
from engine.errors import InputError
from helpers_captions import (assert_matches_oracle, cooccurrence, laion_parquet, scan_config as config,
                              taxonomy_csv, webdataset_tar)

CAPTIONS_A = ["A Black woman, the nurse!", "black dress for a nurse", "the nurses and their men",
              "Police officers: two MEN and a woman", "woman", "a caring nurse", "human resources",
              "white man with an old woman", "Nurse's day", "a Black woman, the nurse!", None]
CAPTIONS_B = ["surgeon and nurse, both women", "a doctor; an old man", "DOCTOR-WOMAN",
              "young women doctors", "germany's manpower", "a caring doctor"]
LINES = ["the doctor is a woman", "", "nurses (men)", "  ", "an elderly nurse\r", "sexy nurse costume"]


def test_mixed_sources_are_counted_like_the_oracle(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    laion_parquet(data / "part-0.parquet", CAPTIONS_A)
    laion_parquet(data / "rerelease.parquet", CAPTIONS_B, column="caption", url_column="url")
    (data / "captions.txt").write_text("\n".join(LINES) + "\n", encoding="utf-8")
    webdataset_tar(data / "shard.tar", [
        {"txt": "a nurse and a man".encode(), "jpg": b"\xff\xd8 not decoded"},
        {"json": json.dumps({"caption": "woman doctor", "url": "http://x/1"}).encode()},
        {"json": b"{}"}, {"jpg": b"no caption"}, {"txt": b"caf\xe9 nurse"}])
    (data / "notes.md").write_text("not a caption source")
    manifest = run_scan(config(tmp_path, [data, data / "*.parquet"], workers=2))
    captions = [c or "" for c in CAPTIONS_A] + CAPTIONS_B + [line.rstrip("\r") for line in LINES
                                                            if line.strip()]
    captions += ["a nurse and a man", "woman doctor"]
    assert manifest["counts"]["n_captions"] == len(captions)
    assert_matches_oracle(tmp_path / "out", captions)
    shards = pl.read_parquet(tmp_path / "out" / "shards.parquet")
    assert shards["status"].to_list() == ["done"] * 4
    tar = shards.filter(pl.col("kind") == "webdataset").row(0, named=True)
    assert (tar["rows_total"], tar["rows"], tar["samples_skipped"]) == (5, 2, 3)
    assert manifest["counts"]["skipped_by_reason"] == {
        "json without caption": 1, "no txt or json member": 1, "caption member is not UTF-8": 1,
        "blank line": 2}
    assert manifest["sources"]["ignored"] == []  # the directory walk keeps caption files only
    examples = pl.read_parquet(tmp_path / "out" / "examples.parquet")
    black = examples.filter(word="nurse", axis="race", group="black", variant="unambiguous")
    assert black["caption"].to_list() == ["A Black woman, the nurse!"]  # its duplicate is left out
    assert black["key"].to_list() == ["0"] and black["path"][0].endswith("part-0.parquet")
    female = examples.filter(word="nurse", axis="gender", group="female", variant="unambiguous")
    assert female["caption"].to_list() == ["A Black woman, the nurse!", "surgeon and nurse, both women"]
    assert female["rank"].to_list() == [1, 2]  # in (path, row) order


def test_the_ambiguous_colour_word_counts_only_in_the_variant_with_ambiguous_words(tmp_path):
    laion_parquet(tmp_path / "c.parquet", ["black dress nurse", "black woman nurse", "white nurse shoes"])
    run_scan(config(tmp_path, [tmp_path / "c.parquet"]))
    strict, loose = (cooccurrence(tmp_path / "out", v).filter(word="nurse", axis="race")
                     for v in ("unambiguous", "with_ambiguous"))
    assert dict(strict.select("group", "n_both").iter_rows())["black"] == 1
    assert dict(loose.select("group", "n_both").iter_rows())["black"] == 2
    assert dict(loose.select("group", "n_both").iter_rows())["white"] == 1
    assert dict(strict.select("group", "n_both").iter_rows())["white"] == 0


def test_broken_files_are_recorded_and_the_rest_go_on_then_retried(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    laion_parquet(data / "good.parquet", CAPTIONS_B)
    webdataset_tar(data / "full.tar", [{"txt": f"nurse {i} woman".encode()} for i in range(40)])
    whole = (data / "full.tar").read_bytes()
    (data / "cut.tar").write_bytes(whole[:len(whole) // 2])
    (data / "corrupt.parquet").write_bytes(b"PAR1" + b"\x00garbage" * 50 + b"PAR1")
    (data / "latin1.txt").write_bytes("a nurse\ncaf\xe9 woman\n".encode("latin-1"))
    manifest = run_scan(config(tmp_path, [data]))
    status = dict(pl.read_parquet(tmp_path / "out" / "shards.parquet").select(
        pl.col("path").str.extract(r"([^/]+)$"), "status").iter_rows())
    assert status == {"corrupt.parquet": "failed", "cut.tar": "failed", "full.tar": "done",
                      "good.parquet": "done", "latin1.txt": "failed"}
    errors = {Path(f["path"]).name: f["error"] for f in manifest["failed"]}
    assert "truncated tar" in errors["cut.tar"] and "invalid UTF-8" in errors["latin1.txt"]
    assert manifest["counts"]["n_captions"] == len(CAPTIONS_B) + 40
    (data / "cut.tar").write_bytes(whole)  # fixed: the rescan retries only the failed files
    (data / "corrupt.parquet").unlink()
    (data / "latin1.txt").write_text("a nurse\ncafé woman\n", encoding="utf-8")
    manifest = run_scan(config(tmp_path, [data]))
    assert manifest["sources"]["scanned_now"] == {"done": 1, "duplicate": 1}  # cut.tar == full.tar now
    assert manifest["counts"]["n_captions"] == len(CAPTIONS_B) + 40 + 2
    assert manifest["duplicates"]["duplicate_files"][0]["path"].endswith("full.tar") or \
        manifest["duplicates"]["duplicate_files"][0]["path"].endswith("cut.tar")


def test_rescans_skip_finished_files_pick_up_new_and_changed_ones(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    laion_parquet(data / "a.parquet", CAPTIONS_A)
    first = run_scan(config(tmp_path, [data / "*.parquet"]))
    assert first["sources"]["scanned_now"] == {"done": 1}
    laion_parquet(data / "b.parquet", CAPTIONS_B)
    shutil.copy(data / "a.parquet", data / "a-copy.parquet")
    second = run_scan(config(tmp_path, [data / "*.parquet"]))
    assert second["sources"]["scanned_now"] == {"done": 1, "duplicate": 1}
    captions = [c or "" for c in CAPTIONS_A] + CAPTIONS_B
    assert_matches_oracle(tmp_path / "out", captions)
    laion_parquet(data / "b.parquet", CAPTIONS_B[:2])  # rewritten: scanned again, old counts gone
    third = run_scan(config(tmp_path, [data / "*.parquet"]))
    assert third["sources"]["scanned_now"] == {"done": 1}
    assert_matches_oracle(tmp_path / "out", [c or "" for c in CAPTIONS_A] + CAPTIONS_B[:2])
    assert run_scan(config(tmp_path, [data / "*.parquet"]))["sources"]["scanned_now"] == {}


def test_a_file_that_kills_its_worker_fails_alone_not_its_group(tmp_path, monkeypatch):
    """Small files are mapped in groups; when a worker dies on a group, its files are mapped
    again one per task: only the file at fault is recorded failed, the rest are counted."""
    from engine import batch
    from engine.captions import scan, staging
    from helpers_captions import scan_task_killed_by_poison

    data = tmp_path / "data"
    data.mkdir()
    corpus = [CAPTIONS_A[:4], CAPTIONS_A[4:8], ["a nurse and a woman"] * 3, CAPTIONS_B[:3], CAPTIONS_B[3:]]
    names = ["part-0", "part-1", "part-2-poison", "part-3", "part-4"]
    paths = [laion_parquet(data / f"{name}.parquet", captions) for name, captions in zip(names, corpus)]
    monkeypatch.setattr(scan, "TASK_BYTES", sum(p.stat().st_size for p in paths[:3]))  # [0, 1, 2] [3, 4]
    monkeypatch.setattr(staging, "scan_task", scan_task_killed_by_poison)
    monkeypatch.setattr(batch, "WORKER_DEATH_RETRIES", 1)  # fewer deaths, each a new pool: a faster test
    manifest = run_scan(config(tmp_path, [data], workers=2))
    assert manifest["sources"]["scanned_now"] == {"done": 4, "failed": 1}
    shards = pl.read_parquet(tmp_path / "out" / "shards.parquet")
    assert shards.filter(status="failed")["path"].to_list() == [str(paths[2])]
    assert "worker processes died" in shards.filter(status="failed")["error"][0]
    assert_matches_oracle(tmp_path / "out", [c or "" for i, captions in enumerate(corpus) if i != 2 for c in captions])
    assert not (tmp_path / "scan.duckdb.staging").exists()


def test_a_database_keeps_one_term_configuration(tmp_path):
    laion_parquet(tmp_path / "c.parquet", CAPTIONS_B)
    run_scan(config(tmp_path, [tmp_path / "c.parquet"]))
    with pytest.raises(InputError, match="holds counts for other terms"):
        run_scan(config(tmp_path, [tmp_path / "c.parquet"], exact_forms=True))


def test_examples_are_distinct_captions_even_behind_many_duplicates(tmp_path):
    """A pair whose first captions are one caption repeated still shows three distinct ones,
    also when the repeats run on across files."""
    repeated = ["A nurse and a woman."] * 30
    laion_parquet(tmp_path / "a.parquet", repeated)
    laion_parquet(tmp_path / "b.parquet", repeated + ["a NURSE and a woman", "the nurse is a woman",
                                                      "woman, nurse", "nurse woman again"])
    run_scan(config(tmp_path, [tmp_path / "*.parquet"], examples_per_pair=3))
    examples = pl.read_parquet(tmp_path / "out" / "examples.parquet").filter(
        word="nurse", axis="gender", group="female", variant="unambiguous")
    assert examples["caption"].to_list() == ["A nurse and a woman.", "the nurse is a woman", "woman, nurse"]
    assert [Path(p).name for p in examples["path"]] == ["a.parquet", "b.parquet", "b.parquet"]
    assert examples["row"].to_list() == [0, 31, 32]  # "a NURSE and a woman" has the same tokens


def test_examples_are_the_first_distinct_captions_over_all_files(tmp_path):
    """Each file offers only its first N distinct captions of a pair, and the database keeps only
    those that can still be chosen; that is exact: the examples equal a brute-force pick over the
    whole corpus in (path, row) order, with captions repeated within and across files, and
    after a rescan adds files that sort before those already scanned."""
    import re

    import numpy as np

    rng = np.random.default_rng(3)
    pool = [" ".join(rng.choice(["nurse", "Doctor", "woman", "MAN", "the", "and", "is"], size=rng.integers(2, 6)))
            + rng.choice(["", "!", ",", " ."]) for _ in range(40)]
    files = {f"part-{f}.parquet": [pool[i] for i in rng.integers(0, len(pool), 60)] for f in range(5)}
    for name, captions in files.items():
        laion_parquet(tmp_path / name, captions)
    run_scan(config(tmp_path, [tmp_path / "part-[34].parquet"], examples_per_pair=3))
    run_scan(config(tmp_path, [tmp_path / "*.parquet"], examples_per_pair=3, workers=2))
    examples = pl.read_parquet(tmp_path / "out" / "examples.parquet").filter(variant="unambiguous")
    for word, group, token in (("nurse", "female", "woman"), ("doctor", "male", "man"), ("nurse", "male", "man")):
        expected, seen = [], set()
        for name in sorted(files):
            for row, caption in enumerate(files[name]):
                tokens = tuple(re.findall(r"[a-z0-9]+", caption.lower()))
                if word in tokens and token in tokens and tokens not in seen and len(expected) < 3:
                    seen.add(tokens)
                    expected.append((name, row, caption))
        chosen = examples.filter(word=word, axis="gender", group=group).sort("rank")
        assert [(Path(p).name, r, c) for p, r, c in chosen.select("path", "row", "caption").iter_rows()] == expected
        assert len(expected) == 3


def test_more_examples_than_the_database_kept_are_refused(tmp_path):
    """Each file kept --examples candidates per pair when it was scanned: asking for more later
    could not be answered exactly, so it is refused; fewer is fine."""
    laion_parquet(tmp_path / "c.parquet", CAPTIONS_A)
    run_scan(config(tmp_path, [tmp_path / "c.parquet"], examples_per_pair=2))
    with pytest.raises(InputError, match="keeps 2 example captions"):
        run_scan(config(tmp_path, [tmp_path / "c.parquet"], examples_per_pair=3))
    run_scan(config(tmp_path, [tmp_path / "c.parquet"], examples_per_pair=1))
    examples = pl.read_parquet(tmp_path / "out" / "examples.parquet")
    assert examples.height and examples["rank"].max() == 1


def test_a_database_from_an_earlier_format_is_refused(tmp_path):
    import duckdb

    laion_parquet(tmp_path / "c.parquet", CAPTIONS_B)
    run_scan(config(tmp_path, [tmp_path / "c.parquet"]))
    with duckdb.connect(str(tmp_path / "scan.duckdb")) as con:
        con.execute("DELETE FROM scan_config WHERE key = 'db_format'")
    with pytest.raises(InputError, match="written by an earlier vlaudit"):
        run_scan(config(tmp_path, [tmp_path / "c.parquet"]))


@pytest.mark.parametrize("sources, message", [
    (["absent.parquet"], "does not exist"), (["*.nothing"], "no files match"),
    (["notes.md"], "is not a caption source")])
def test_bad_source_arguments_are_clear_errors(tmp_path, monkeypatch, sources, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.md").write_text("x")
    with pytest.raises(InputError, match=message):
        run_scan(config(tmp_path, sources))


def test_an_output_directory_of_something_else_is_refused(tmp_path):
    laion_parquet(tmp_path / "c.parquet", CAPTIONS_B)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "precious.txt").write_text("keep me")
    with pytest.raises(InputError, match="not an earlier scan output"):
        run_scan(config(tmp_path, [tmp_path / "c.parquet"]))
    assert (tmp_path / "out" / "precious.txt").exists()


def test_user_terms_with_quotes_and_sql_are_data_not_sql(tmp_path):
    taxonomy = taxonomy_csv(tmp_path / "words.csv", [("odd", "o'reilly", "noun"),
                                                     ("odd", "x; DROP TABLE shards", "noun")])
    lexicon = tmp_path / "lex.csv"
    lexicon.write_text('axis,group,term\ngender,"f\'); DROP TABLE captions; --",woman\n', encoding="utf-8")
    laion_parquet(tmp_path / "c.parquet", ["O'Reilly and a woman", "x; drop table shards woman"])
    run_scan(config(tmp_path, [tmp_path / "c.parquet"], taxonomy=str(taxonomy), lexicon=str(lexicon)))
    table = cooccurrence(tmp_path / "out")
    assert set(table["n_both"]) == {1}
    assert set(table["group"]) == {"f'); drop table captions; --"}


def test_the_cli_prints_a_summary_and_json(tmp_path, capsys):
    laion_parquet(tmp_path / "c.parquet", CAPTIONS_A * 3)
    argv = ["scan", str(tmp_path / "c.parquet"), "--db", str(tmp_path / "s.duckdb"),
            "--out", str(tmp_path / "out"), "--workers", "1"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "scanned 33 captions from 1 files" in text
    assert main(argv + ["--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_captions"] == 33 and result["scanned_now"] == {}
    assert main(["scan", str(tmp_path / "absent.tar"), "--db", str(tmp_path / "s.duckdb"),
                 "--out", str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_matching_threads_change_nothing(tmp_path, monkeypatch):
    import numpy as np

    from engine.captions import count
    from engine.captions.count import count_source
    from engine.captions.scan import load_terms
    from engine.captions.shards import discover

    rng = np.random.default_rng(3)
    words = ["nurse", "woman", "men", "black", "old", "man", "doctor", "the", "dress"]
    captions = [" ".join(rng.choice(words, size=4)) for _ in range(140_000)]
    monkeypatch.setattr(count, "BATCH_ROWS", 1 << 16)  # 3 batches on one thread, 7 on three
    laion_parquet(tmp_path / "big.parquet", captions)
    termset, _ = load_terms("sobit", "default", False)
    compiled = termset.compile()
    source = discover([str(tmp_path / "big.parquet")])[0][0]
    one, three = count_source(source, compiled, 1), count_source(source, compiled, 3)
    for name in ("n_form", "n_term", "n_pair", "sketch"):
        assert (getattr(one.counts, name) == getattr(three.counts, name)).all(), name
    assert one.counts.n_captions == three.counts.n_captions == len(captions)
    assert one.matches.equals(three.matches) and one.stats == three.stats


def test_a_subset_of_text_lines_has_captions_but_no_urls(tmp_path):
    from engine.captions.subset import SubsetConfig, run_subset

    (tmp_path / "c.txt").write_text("a nurse\n\nnurse and a woman\nno match\n", encoding="utf-8")
    run_scan(config(tmp_path, [tmp_path / "c.txt"]))
    result = run_subset(SubsetConfig(db=str(tmp_path / "scan.duckdb"), word="nurse",
                                     out=str(tmp_path / "u.parquet")))
    assert (result["captions"], result["without_url"], result["urls"]) == (2, 2, 0)


def test_staged_tables_are_laid_out_like_the_database_tables(tmp_path):
    """A task's staged rows go into the same-named tables with `INSERT ... SELECT *`: same columns."""
    from engine.captions import staging, store

    laion_parquet(tmp_path / "c.parquet", CAPTIONS_A)
    run_scan(config(tmp_path, [tmp_path / "c.parquet"]))
    with store.connect(tmp_path / "scan.duckdb", read_only=True) as con:
        for name in store.SHARD_TABLES:
            columns = [row[0] for row in con.execute(f"DESCRIBE {name}").fetchall()]
            assert columns == staging.SCHEMAS[name].names, name
    assert tuple(staging.SCHEMAS) == store.SHARD_TABLES


def test_a_task_is_staged_in_one_file_that_reads_back_table_by_table(tmp_path):
    """Six tables (empty ones too) in one file, back to back, read back equal; a new plan clears
    everything in the staging directory that is not one of its tasks' files."""
    from engine.captions import staging
    from engine.captions.count import count_source
    from engine.captions.scan import load_terms
    from engine.captions.shards import discover

    laion_parquet(tmp_path / "c.parquet", CAPTIONS_A)
    compiled = load_terms("sobit", "default", False)[0].compile()
    result = count_source(discover([str(tmp_path / "c.parquet")])[0][0], compiled, examples=2)
    tables = staging.staged_tables([(7, result)])
    assert tables["captions"].num_rows and tables["shard_examples"].num_rows
    empty = staging.staged_tables([])
    out = tmp_path / "staging"
    out.mkdir()
    staging.write_staged(out, "full", tables)
    staging.write_staged(out, "empty", empty)
    for task_id, written in (("full", tables), ("empty", empty)):
        back = staging.read_staged(out, task_id)
        assert list(back) == list(written)
        for name in written:
            assert back[name].equals(written[name]), (task_id, name)
    assert [p.name for p in out.iterdir() if p.name.startswith("full")] == ["full.arrows"]

    leftovers = ["other.arrows", "other_stats.json", ".full.arrows.x1.tmp", "full.captions.arrow"]
    for name in leftovers + ["full_stats.json"]:
        (out / name).write_bytes(b"")
    staging.remove_other_tasks(out, {"full", "empty"})
    assert sorted(p.name for p in out.iterdir()) == ["empty.arrows", "full.arrows", "full_stats.json"]
    staging.remove_staged(out, "full")
    assert sorted(p.name for p in out.iterdir()) == ["empty.arrows"]


def test_small_files_are_mapped_in_groups_and_counted_alike(tmp_path):
    """Many small files (img2dataset's 10,000-row shards) go into a few map tasks; the counts
    equal one big file's, and a broken file in a group is recorded while its neighbours count."""
    from engine.captions.scan import plan_tasks
    from engine.captions.shards import discover

    data = tmp_path / "data"
    data.mkdir()
    captions = CAPTIONS_A[:-1] + CAPTIONS_B
    for i, caption in enumerate(captions):
        laion_parquet(data / f"part-{i:02d}.parquet", [caption])
    (data / "part-99.parquet").write_bytes(b"PAR1 not really")
    laion_parquet(tmp_path / "all.parquet", captions)
    tasks = plan_tasks(list(enumerate(discover([str(data)])[0])))
    assert len(tasks) == 1 and len(tasks[0].files) == len(captions) + 1
    grouped = run_scan(config(tmp_path / "grouped", [data], workers=2))
    whole = run_scan(config(tmp_path / "whole", [tmp_path / "all.parquet"]))
    assert grouped["sources"]["scanned_now"] == {"done": len(captions), "failed": 1}
    assert grouped["counts"]["n_captions"] == whole["counts"]["n_captions"] == len(captions)
    assert cooccurrence(tmp_path / "grouped" / "out").equals(cooccurrence(tmp_path / "whole" / "out"))
