"""Caption-scan test helpers: an independent counting oracle, corpus writers, a loopback server.

The oracle tokenises with the third-party ``regex`` module's Unicode classes (not the scanner's
tables) and finds forms by comparing token tuples in plain Python, so it shares no code with the
compiled matcher.
"""

from __future__ import annotations

import io
import json
import os
import signal
import tarfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import regex
from helpers_faces import serve_directory as loopback_server

TOKEN = regex.compile(r"[\p{L}\p{M}\p{N}]+")


def oracle_tokens(caption: str) -> list[str]:
    return [t.casefold() for t in TOKEN.findall(caption)]


def oracle_forms(caption: str, forms) -> set[tuple[str, ...]]:
    """The forms (token tuples, a set or dict) that occur as consecutive tokens of the caption:
    every n-gram of the caption, looked up."""
    tokens = oracle_tokens(caption)
    longest = max(map(len, forms), default=0)
    return {gram for n in range(1, longest + 1) for i in range(len(tokens) - n + 1)
            if (gram := tuple(tokens[i:i + n])) in forms}


def oracle_counts(captions: Sequence[str], termset) -> dict:
    """Caption counts per form, per term and per (word term, group term), counted in Python, and
    each caption's set of term ids (``captions``)."""
    forms = {tuple(f.split(" ")): i for i, f in termset.forms.select("form_id", "form").iter_rows()}
    terms_of: dict[int, set[int]] = {}
    for form_id, term_id in termset.form_terms.select("form_id", "term_id").iter_rows():
        terms_of.setdefault(form_id, set()).add(term_id)
    n_words = termset.n_words
    per_form, per_term, per_pair, per_caption = Counter(), Counter(), Counter(), []
    for caption in captions:
        found = {forms[f] for f in oracle_forms(caption, forms)}
        terms = set().union(*(terms_of.get(f, set()) for f in found)) if found else set()
        per_form.update(found)
        per_term.update(terms)
        per_pair.update((w, g) for w in terms if w < n_words for g in terms if g >= n_words)
        per_caption.append(terms)
    return {"forms": per_form, "terms": per_term, "pairs": per_pair, "captions": per_caption}


def lexicon_csv(path: Path, rows: Sequence[tuple], header=("axis", "group", "term", "pos",
                                                          "ambiguous", "context")) -> Path:
    lines = [",".join(header)] + [",".join(str(c) for c in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def taxonomy_csv(path: Path, rows: Sequence[tuple[str, str, str]]) -> Path:
    lines = ["category,word,pos"] + [",".join(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def laion_parquet(path: Path, captions: Sequence[str | None], column: str = "TEXT",
                  url_column: str = "URL", base_url: str = "http://example.invalid") -> Path:
    urls = [f"{base_url}/{path.stem}/{i}.jpg" for i in range(len(captions))]
    pl.DataFrame({url_column: urls, column: list(captions)}).write_parquet(path)
    return path


def scan_task_killed_by_poison(task, out_dir):
    """engine.captions.staging.scan_task in a worker that a file named ``*poison*`` kills
    (SIGKILL, as a crash or the out-of-memory killer would), whatever else its task holds."""
    from engine.captions.staging import scan_task

    if any("poison" in Path(source.path).name for _, source in task.payload[0]):
        os.kill(os.getpid(), signal.SIGKILL)
    return scan_task(task, out_dir)


def webdataset_tar(path: Path, samples: Sequence[dict]) -> Path:
    """A webdataset tar written by hand: each sample dict maps an extension to bytes."""
    with tarfile.open(path, "w") as tar:
        for i, sample in enumerate(samples):
            for ext, data in sample.items():
                info = tarfile.TarInfo(f"{i:09d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def write_images(directory: Path, count: int) -> list[str]:
    from PIL import Image

    directory.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        pixels = np.random.default_rng(i).integers(0, 255, (24, 20, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(directory / f"{i}.png")
        names.append(f"{i}.png")
    return names


def img2dataset_download(url_parquet: Path, output: Path, per_shard: int) -> Path:
    """Run the real img2dataset (one process) on a parquet of url, caption."""
    from img2dataset import download

    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    download(url_list=str(url_parquet), input_format="parquet", url_col="url", caption_col="caption",
             output_format="webdataset", output_folder=str(output), processes_count=1,
             thread_count=4, number_sample_per_shard=per_shard, image_size=16, resize_mode="no",
             encode_format="jpg", enable_wandb=False, timeout=5, retries=0)
    return output


def img2dataset_shards(workdir: Path, captions: Sequence[str], per_shard: int,
                       broken: int = 0) -> Path:
    """Shards (tar + parquet + stats) written by img2dataset from a loopback server; ``broken``
    extra rows point at absent images, so their status is not success."""
    names = write_images(workdir / "served", len(captions))
    with loopback_server(workdir / "served") as base:
        urls = [f"{base}/{n}" for n in names] + [f"{base}/absent-{i}.png" for i in range(broken)]
        table = pl.DataFrame({"url": urls, "caption": list(captions) + [f"missing picture {i}"
                                                                         for i in range(broken)]})
        table.write_parquet(workdir / "urls.parquet")
        return img2dataset_download(workdir / "urls.parquet", workdir / "shards", per_shard)


def read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def scan_config(tmp_path, sources, **kwargs):
    """A ScanConfig writing scan.duckdb and out/ under ``tmp_path`` (one local worker by default)."""
    from engine.captions.scan import ScanConfig

    kwargs.setdefault("workers", 1)
    return ScanConfig(sources=tuple(map(str, sources)), db=str(tmp_path / "scan.duckdb"),
                      out=str(tmp_path / "out"), progress=False, **kwargs)


def cooccurrence(out: Path, variant: str = "unambiguous") -> pl.DataFrame:
    name = "cooccurrence.parquet" if variant == "unambiguous" else "cooccurrence_with_ambiguous.parquet"
    return pl.read_parquet(out / name)


def assert_matches_oracle(out: Path, captions: list[str], taxonomy="sobit", lexicon="default"):
    """Every count the scan wrote equals the oracle's count over ``captions``."""
    from engine.captions.scan import load_terms

    termset, _ = load_terms(taxonomy, lexicon, False)
    oracle = oracle_counts(captions, termset)
    terms = termset.terms
    word_n = {row["word"]: oracle["terms"][row["term_id"]]
              for row in terms.filter(pl.col("kind") == "word").iter_rows(named=True)}
    group_n = {(r["axis"], r["group"], r["variant"]): oracle["terms"][r["term_id"]]
               for r in terms.filter(pl.col("kind") == "group").iter_rows(named=True)}
    ids = {r["word"] or (r["axis"], r["group"], r["variant"]): r["term_id"] for r in terms.iter_rows(named=True)}
    unique = {}
    for caption, found in zip(captions, oracle["captions"]):
        for w in found:
            for g in found:
                unique.setdefault((w, g), set()).add(tuple(oracle_tokens(caption)))
    for variant in ("unambiguous", "with_ambiguous"):
        table = cooccurrence(out, variant)
        assert set(table["n_captions"]) == {len(captions)}
        for row in table.iter_rows(named=True):
            key = (row["axis"], row["group"], row["variant"])
            pair = (ids[row["word"]], ids[key])
            assert row["n_word"] == word_n[row["word"]], row
            assert row["n_group"] == group_n[key], row
            assert row["n_both"] == oracle["pairs"][pair], row
            assert row["n_unique_captions_both"] == len(unique.get(pair, ())), row
    forms = pl.read_parquet(out / "terms.parquet").unique("form")
    expected = {f: oracle["forms"][i] for i, f in termset.forms.select("form_id", "form").iter_rows()}
    assert dict(forms.select("form", "n_captions").iter_rows()) == expected
