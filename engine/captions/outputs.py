"""The scan's output directory: co-occurrence tables, form counts, evidence, shards, manifest.

Files (written into a temporary directory that then replaces ``out`` whole):

- ``cooccurrence.parquet``: the ``unambiguous`` variant (ambiguous words count only in context);
  ``cooccurrence_with_ambiguous.parquet``: the same with ambiguous single words counted alone.
  Columns: engine.captions.cooccurrence.OUTPUT_COLUMNS.
- ``terms.parquet``: every surface form with its caption count and the term it belongs to.
- ``examples.parquet``: up to N distinct evidence captions per word x group x variant.
- ``shards.parquet``: every source file in the database with its status and counts.
- ``manifest.json``: sources, taxonomy/lexicon hashes, counts, duplicates, statistics, outputs.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from engine import storage
from engine.captions import reduce
from engine.captions.cooccurrence import cooccurrence_table
from engine.captions.matcher import distinct_estimate
from engine.captions.store import merged_sketch

log = logging.getLogger(__name__)

STAGE = "scan"
COOCCURRENCE_FILES = {"unambiguous": "cooccurrence.parquet",
                      "with_ambiguous": "cooccurrence_with_ambiguous.parquet"}


def write_outputs(con, termset, out_dir: str | Path, described: dict, *, examples_per_pair: int,
                  prior_scale: float) -> dict:
    """Reduce the database into ``out_dir`` (run_scan checked it may be replaced); return the
    manifest. Every read of the database comes first; DuckDB then checkpoints it (writes what
    the scan logged into the file, else done when it closes) while the tables are built and written."""
    out_dir = Path(out_dir)
    reduced = Reduced.of(con, termset.n_words, examples_per_pair)
    with ThreadPoolExecutor(1, thread_name_prefix="checkpoint") as background:
        checkpoint = background.submit(_checkpoint, con)
        tables = _tables(termset, reduced, prior_scale)
        manifest = _manifest(termset, described, reduced, tables, prior_scale, examples_per_pair)
        with storage.atomic_dir(out_dir) as tmp:
            for name, frame in tables.items():
                storage.write_parquet(tmp / name, frame)
            manifest["outputs"] = {name: storage.sha256_file(tmp / name) for name in sorted(tables)}
            storage.write_json(tmp / storage.MANIFEST_NAME, manifest)
        checkpoint.result()
    log.info("scan outputs written to %s", out_dir)
    return manifest


@dataclass(frozen=True)
class Reduced:
    """What the outputs need from the database (engine.captions.reduce)."""

    counts: dict
    term_counts: pl.DataFrame
    pair_counts: pl.DataFrame
    form_counts: pl.DataFrame
    examples: pl.DataFrame
    shards: pl.DataFrame
    sketch: np.ndarray | None
    word_captions: tuple[int, int]  # captions with a word, distinct estimate

    @classmethod
    def of(cls, con, n_words: int, examples_per_pair: int) -> Reduced:
        return cls(reduce.totals(con), reduce.term_counts(con), reduce.pair_counts(con, n_words),
                   reduce.form_counts(con), reduce.examples(con, examples_per_pair), reduce.shards_table(con),
                   merged_sketch(con), reduce.word_caption_totals(con))


def _checkpoint(con) -> None:
    cursor = con.cursor()  # its own connection to the database: this runs in another thread
    try:
        cursor.execute("CHECKPOINT")
    finally:
        cursor.close()


def _tables(termset, reduced: Reduced, prior_scale: float) -> dict[str, pl.DataFrame]:
    table = cooccurrence_table(termset.terms, termset.categories, reduced.term_counts, reduced.pair_counts,
                               shared_forms(termset), reduced.counts["n_captions"], prior_scale=prior_scale)
    tables = {name: table.filter(pl.col("variant") == variant) for variant, name in COOCCURRENCE_FILES.items()}
    tables["terms.parquet"] = form_table(termset, reduced.form_counts)
    tables["examples.parquet"] = example_table(termset, reduced.examples)
    tables["shards.parquet"] = reduced.shards
    return tables


def shared_forms(termset) -> pl.DataFrame:
    """(word term, group term) pairs where a form of one contains a form of the other ("muslim"
    the word and the group; "young" in "young woman"; "american" in "anti-american"): their
    co-occurrence is partly by construction."""
    links = termset.form_terms.join(termset.terms.select("term_id", "kind"), on="term_id").join(
        termset.forms.select("form_id", "form"), on="form_id")
    forms = {kind: _forms_by_tokens(links.filter(pl.col("kind") == kind)) for kind in ("word", "group")}
    pairs = set()
    for outer, inner in (("group", "word"), ("word", "group")):
        for tokens, outer_ids in forms[outer].items():
            for part in _subsequences(tokens):
                for inner_id in forms[inner].get(part, ()):
                    pairs.update((i, inner_id) if outer == "word" else (inner_id, i) for i in outer_ids)
    return pl.DataFrame(sorted(pairs), schema={"word_term_id": pl.Int32, "group_term_id": pl.Int32},
                        orient="row")


def _forms_by_tokens(links: pl.DataFrame) -> dict[tuple[str, ...], list[int]]:
    found: dict[tuple[str, ...], list[int]] = {}
    for form, term_id in links.select("form", "term_id").iter_rows():
        found.setdefault(tuple(form.split(" ")), []).append(term_id)
    return found


def _subsequences(tokens: tuple[str, ...]):
    for start in range(len(tokens)):
        for end in range(start + 1, len(tokens) + 1):
            yield tokens[start:end]


def form_table(termset, form_counts: pl.DataFrame) -> pl.DataFrame:
    """One row per surface form and term it counts for (both variants folded into ``ambiguous``)."""
    links = termset.form_terms.join(termset.terms, on="term_id").join(termset.forms, on="form_id")
    table = links.group_by("form_id", "form", "n_tokens", "kind", "word", "axis", "group").agg(
        ambiguous=(pl.col("kind").first() == "group") & ~(pl.col("variant") == "unambiguous").any(),
        origin=pl.col("origin").first())
    table = table.join(form_counts, on="form_id", how="left").with_columns(
        pl.col("n_captions").fill_null(0).cast(pl.Int64))
    return table.select("form", "n_tokens", "n_captions", "kind", "word", "axis", "group",
                        "ambiguous", "origin").sort("kind", "word", "axis", "group", "form")


def example_table(termset, rows: pl.DataFrame) -> pl.DataFrame:
    terms = termset.terms
    words = terms.select(word_term_id="term_id", word="word")
    groups = terms.select(group_term_id="term_id", axis="axis", group="group", variant="variant")
    table = rows.join(words, on="word_term_id").join(groups, on="group_term_id")
    return table.select("word", "axis", "group", "variant", pl.col("rank").cast(pl.Int32), "path",
                        "row", "key", "caption").sort("variant", "word", "axis", "group", "rank")


def _manifest(termset, described: dict, reduced: Reduced, tables: dict, prior_scale: float,
              examples_per_pair: int) -> dict:
    unique = round(distinct_estimate(reduced.sketch)) if reduced.sketch is not None else 0
    counts = reduced.counts
    n = counts["n_captions"]
    word_captions, word_unique = reduced.word_captions
    shards = tables["shards.parquet"]
    return {
        **storage.manifest_header(STAGE),
        **described,
        "terms": {"words": termset.n_words, "groups": termset.terms.height - termset.n_words,
                  "forms": termset.forms.height, "sha256": termset.sha256},
        "counts": counts,
        "duplicates": {
            "unique_captions_estimate": min(unique, n),
            "duplicate_share_estimate": round(1 - min(unique, n) / n, 4) if n else None,
            "method": "HyperLogLog (16,384 registers, ~0.8% error) over hashes of each caption's "
                      "case-folded token sequence",
            "captions_with_word": word_captions, "captions_with_word_unique_estimate": word_unique,
            "duplicate_files": shards.filter(pl.col("status") == "duplicate").select(
                "path", "duplicate_of").to_dicts()},
        "failed": shards.filter(pl.col("status") == "failed").select("path", "error").to_dicts(),
        "statistics": {
            "pmi": "ln(n_both * n_captions / (n_word * n_group))",
            "log_odds": {"reference": "Monroe, Colaresi & Quinn 2008, informative Dirichlet prior",
                         "contrast": "group vs the other groups of its axis (same variant)",
                         "prior": "alpha_w = prior_scale * n_word(w) / sum n_word",
                         "prior_scale": prior_scale}},
        "examples_per_pair": examples_per_pair,
    }
