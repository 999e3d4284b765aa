"""Synthetic result directories for the report tests: an index manifest, an audit, a scan, a
provenance run and an association-test result, with hostile text (markup in captions and words)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from engine import storage
from engine.provenance import ProvenanceConfig, run_provenance

HOSTILE_CAPTION = "<script>document.title='PWNED';window.__pwned=1</script> nurse & woman"
HOSTILE_IMG = '<img src=x onerror="window.__pwned=2"> portrait of a nurse, a woman'
HOSTILE_SVG = ('<svg xmlns="http://www.w3.org/2000/svg" width="200" height="80"><script>window.__pwned=3'
               '</script><rect width="200" height="80" fill="#4e79a7"/><text x="10" y="45">chart</text></svg>')
HOSTILE_WORD = "<marquee>loud</marquee>"
CATEGORIES = {"occupation": ["nurse", "engineer", "ceo", "teacher", "farmer", HOSTILE_WORD],
              "trait": ["kind", "angry", "smart", "lazy", "brave", "shy"]}
FACE_GROUPS = {"gender": {"female": 0.5, "male": 0.5},
               "race": {"white": 0.3, "black": 0.3, "east_asian": 0.2, "indian": 0.2}}
LEXICON = {"female": "woman", "male": "man", "white": "white", "black": "black",
           "east_asian": "asian", "indian": "indian"}
AXES = {"gender": "gender", "race": "race"}


def mapping_frame() -> pl.DataFrame:
    rows = [{"attribute": a, "group": g, "axis": AXES[a], "lexicon_group": LEXICON[g]}
            for a, groups in FACE_GROUPS.items() for g in groups]
    return pl.DataFrame(rows)


def skew_frame(rng: np.random.Generator, k: int = 100) -> pl.DataFrame:
    rows = []
    for category, words in CATEGORIES.items():
        for word in words:
            for attribute, base in FACE_GROUPS.items():
                counts = rng.multinomial(k, rng.dirichlet(np.ones(len(base)) * 2))
                for (group, rate), count in zip(base.items(), counts):
                    rows.append({"word": word, "category": category, "attribute": attribute,
                                 "group": group, "count": int(count), "share": count / k,
                                 "base_rate": rate, "template": "sobit", "entropy": 0.9,
                                 "ndkl_base": 0.1, "q_value": 0.01})
    return pl.DataFrame(rows)


def cooc_frame(skew: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """Caption counts that follow the retrieval shares loosely (plus noise)."""
    rows = []
    for row in skew.to_dicts():
        group = LEXICON[row["group"]]
        n_both = int(rng.poisson(5 + 60 * row["share"]))
        rows.append({"word": row["word"], "category": row["category"], "axis": AXES[row["attribute"]],
                     "group": group, "n_word": 500, "n_group": 10_000, "n_both": n_both,
                     "n_captions": 1_000_000, "n_unique_captions_both": n_both, "pmi": 0.0,
                     "log_odds": 0.0, "log_odds_z": float((row["share"] - row["base_rate"]) * 12
                                                          + rng.normal())})
    return pl.DataFrame(rows)


def examples_frame(cooc: pl.DataFrame) -> pl.DataFrame:
    rows = []
    for i, row in enumerate(cooc.to_dicts()):
        caption = f"a {row['word']} who is {row['group']}"
        rows.append({"word": row["word"], "axis": row["axis"], "group": row["group"],
                     "key": f"{i:09d}", "url": f"https://example.com/{i}.jpg", "caption": caption})
    for hostile in (HOSTILE_CAPTION, HOSTILE_IMG):
        for group in ("woman", "man"):
            rows.append({"word": "nurse", "axis": "gender", "group": group, "key": "x",
                         "url": "javascript:alert(1)", "caption": hostile})
    return pl.DataFrame(rows)


def make_runs(root: Path, seed: int = 0) -> dict[str, Path]:
    """Write index, audit, scan, provenance and association directories under ``root``."""
    rng = np.random.default_rng(seed)
    dirs = {name: root / name for name in ("index", "audit", "scan", "provenance", "eat", "hypo")}
    storage.write_json(dirs["index"] / "manifest.json", {
        "stage": "index", "model": {"name": "ViT-B-32", "pretrained": "laion2b_s34b_b79k"}, "count": 1200, "dim": 512,
        "dataset": {"source": "fairface:<val>", "split": "val"}, "created": "2025-01-01T00:00:00+00:00"})
    storage.write_parquet(dirs["index"] / "faces.parquet", pl.DataFrame({"item_id": [0], "key": ["a.jpg"]}))
    skew = skew_frame(rng)
    storage.write_parquet(dirs["audit"] / "skew.parquet", skew)
    storage.write_json(dirs["audit"] / "manifest.json", {
        "stage": "audit", "k": 100, "seed": 0, "taxonomy": {"name": "sobit", "sha256": "0" * 64},
        "index": {"name": "fairface-val", "manifest": {"model": {"name": "ViT-B-32", "pretrained": "openai"}}},
        "templates": {"name": "sobit", "mode": "ensemble",
                      "templates": [{"id": "0", "pos": "noun", "template": "a photo of {article} {word}"}]}})
    storage.write_json(dirs["audit"] / "summary.json", {"words": skew["word"].n_unique(), "alpha": 0.05, "overall": [
        {"attribute": "gender", "template": "sobit", "queries": 12, "significant": 5}]})
    cooc = cooc_frame(skew, rng)
    storage.write_parquet(dirs["scan"] / "cooccurrence.parquet", cooc)
    storage.write_parquet(dirs["scan"] / "examples.parquet", examples_frame(cooc))
    storage.write_json(dirs["scan"] / "manifest.json", {"captions": 1_000_000, "lexicon": "default"})
    run_provenance(dirs["audit"], dirs["scan"], dirs["provenance"],
                   ProvenanceConfig(n_boot=50, min_caption_mentions=5), mapping=mapping_frame())
    storage.write_parquet(dirs["eat"] / "results.parquet", pl.DataFrame({
        "test": ["flowers-insects", HOSTILE_WORD], "d": [1.21, -0.3], "p": [0.001, 0.7],
        "n_x": [8, 8], "n_y": [8, 8], "sided": ["one", "one"]}))
    storage.write_parquet(dirs["eat"] / "items.parquet", pl.DataFrame({"item": [f"i{i}" for i in range(40)],
                                                                      "sc_eat": np.linspace(-1, 1, 40)}))
    storage.write_json(dirs["eat"] / "manifest.json", {"stage": "eat", "permutations": 12870,
                                                       "tables": {"items.parquet": {"rows": 40}}})
    storage.write_parquet(dirs["hypo"] / "steps.parquet", pl.DataFrame({"step": [0, 10, 20], "minority": [1.0, 0.7, 0.1]}))
    storage.write_text(dirs["hypo"] / "chart_black_to_white.svg", HOSTILE_SVG)
    storage.write_json(dirs["hypo"] / "manifest.json", {"stage": "hypodescent"})
    return dirs
