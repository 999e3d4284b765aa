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
from pathlib import Path

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
    manifest."""
    out_dir = Path(out_dir)
    counts = reduce.totals(con)
    n_words = termset.n_words
    table = cooccurrence_table(termset.terms, termset.categories, reduce.term_counts(con),
                               reduce.pair_counts(con, n_words), shared_forms(termset),
                               counts["n_captions"], prior_scale=prior_scale)
    tables = {name: table.filter(pl.col("variant") == variant)
              for variant, name in COOCCURRENCE_FILES.items()}
    tables["terms.parquet"] = form_table(termset, reduce.form_counts(con))
    tables["examples.parquet"] = example_table(termset, reduce.examples(con, examples_per_pair))
    tables["shards.parquet"] = reduce.shards_table(con)
    manifest = _manifest(con, termset, described, counts, tables, prior_scale, examples_per_pair)
    with storage.atomic_dir(out_dir) as tmp:
        for name, frame in tables.items():
            storage.write_parquet(tmp / name, frame)
        manifest["outputs"] = {name: storage.sha256_file(tmp / name) for name in sorted(tables)}
        storage.write_json(tmp / storage.MANIFEST_NAME, manifest)
    log.info("scan outputs written to %s", out_dir)
    return manifest


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


def _manifest(con, termset, described: dict, counts: dict, tables: dict, prior_scale: float,
              examples_per_pair: int) -> dict:
    registers = merged_sketch(con)
    unique = round(distinct_estimate(registers)) if registers is not None else 0
    n = counts["n_captions"]
    word_captions, word_unique = reduce.word_caption_totals(con)
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
