"""The short summary ``vlaudit scan`` prints (and returns with ``--json``)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

TOP = 8
MIN_BOTH = 5  # pairs rarer than this are left out of the top list


def summarise(manifest: dict, out_dir: str | Path) -> dict:
    """Counts from the manifest plus the strongest word -> group associations (unambiguous)."""
    counts, duplicates = manifest["counts"], manifest["duplicates"]
    table = pl.read_parquet(Path(out_dir) / "cooccurrence.parquet")
    top = (table.filter(pl.col("n_both") >= MIN_BOTH, ~pl.col("word_is_group_term"),
                        pl.col("log_odds_z").is_not_null())
           .unique(["word", "axis", "group"]).sort("log_odds_z", descending=True).head(TOP)
           .select("word", "axis", "group", "n_both", "log_odds_z").to_dicts())
    return {
        "out": str(out_dir), "db": manifest["db"], "n_captions": counts["n_captions"],
        "rows_excluded": counts["rows_excluded"], "samples_skipped": counts["samples_skipped"],
        "shards": counts["shards_by_status"], "scanned_now": manifest["sources"]["scanned_now"],
        "unique_captions_estimate": duplicates["unique_captions_estimate"],
        "duplicate_share_estimate": duplicates["duplicate_share_estimate"],
        "captions_with_word": duplicates["captions_with_word"],
        "failed": manifest["failed"], "top_associations": top,
        "terms_sha256": manifest["terms"]["sha256"]}


def render_summary(result: dict) -> str:
    shards = result["shards"]
    lines = [f"scanned {result['n_captions']:,} captions from {shards.get('done', 0)} files "
             f"({', '.join(f'{n} {s}' for s, n in sorted(shards.items()))}) -> {result['out']}"]
    share = result["duplicate_share_estimate"]
    lines.append(f"  about {result['unique_captions_estimate']:,} distinct captions"
                 + (f" ({share:.0%} duplicates)" if share is not None else "")
                 + f"; {result['captions_with_word']:,} captions mention a taxonomy word")
    if result["rows_excluded"] or result["samples_skipped"]:
        lines.append(f"  not counted: {result['rows_excluded']:,} img2dataset rows without an image, "
                     f"{result['samples_skipped']:,} samples/lines without a caption")
    if result["top_associations"]:
        lines.append("  strongest word -> group associations (log-odds z, context-qualified terms):")
        for row in result["top_associations"]:
            lines.append(f"    {row['word']:<20} {row['axis']}/{row['group']:<16} "
                         f"z={row['log_odds_z']:+.1f}  ({row['n_both']} captions)")
    for failure in result["failed"][:5]:
        lines.append(f"  FAILED {failure['path']}: {failure['error']}")
    if len(result["failed"]) > 5:
        lines.append(f"  ... and {len(result['failed']) - 5} more failed files (see shards.parquet)")
    return "\n".join(lines)
