"""Provenance: link a model's retrieval skew (audit) to its training captions (scan).

Stage: ``skew.parquet`` (audit) + ``cooccurrence.parquet`` (scan) + a face-group -> lexicon-group
mapping -> ``links.parquet``, ``words.parquet``, ``correlations.parquet``, ``divergent.parquet``,
``summary.json`` and ``manifest.json``.

Both sides are put on one scale. For a word w and a linked group g of one attribute:

- retrieval share  p_R(g|w) = retrieved faces of g / retrieved faces in any linked group,
  retrieval base   p_D(g)   = share of g in the index;
- caption share    p_C(g|w) = captions with w mentioning g / sum over linked groups,
  caption base     p_C(g)   = captions mentioning g / sum over linked groups (whole corpus).

Shares are smoothed towards the base rate with ``prior_strength`` pseudo-observations,
p~ = (n + a * base) / (N + a), so a word without evidence has a log-ratio of exactly 0. Each side's
skew is the log-ratio ln(p~ / base); ``amplification`` = retrieval log-ratio - caption log-ratio
(> 0: the model over-represents g more than its captions do).

Per word and attribute, the retrieval direction is the group with the largest retrieval log-ratio;
the captions *support* it when the scanner's log-odds z-score (Monroe et al. 2008) for that word and
group is >= ``z_threshold``, *contradict* it when <= -``z_threshold``, are *neutral* in between, and
are *insufficient* below ``min_caption_mentions``; a word that is itself a group term (e.g.
"grandmother") is marked *by_definition* and left out of the correlations. Rank correlations
(Spearman, Kendall tau-b) between caption and retrieval log-ratios are given per category and
overall, per group and pooled over groups, with percentile intervals from a seeded bootstrap over
words. ``caption_variant`` picks the scan's counts without (default) or with ambiguous words.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import polars as pl

from engine import storage
from engine.errors import InputError
from engine.provenance_evidence import WORD_KEYS, divergent_words, word_evidence
from engine.captions.outputs import COOCCURRENCE_FILES
from engine.rank_correlation import correlation_table

log = logging.getLogger(__name__)

SKEW_COLUMNS = ("word", "category", "attribute", "group", "count", "base_rate")
COOC_COLUMNS = ("word", "axis", "group", "n_both", "n_group", "log_odds_z")
MAPPING_COLUMNS = ("attribute", "group", "axis", "lexicon_group")
OUTPUT_TABLES = ("links", "words", "correlations", "divergent")
POOLED = "(all groups)"
OVERALL = "(all categories)"


@dataclass(frozen=True)
class ProvenanceConfig:
    prior_strength: float = 1.0  # pseudo-observations pulling shares towards the base rate
    min_caption_mentions: int = 10  # fewer caption mentions of linked groups -> "insufficient"
    z_threshold: float = 1.96  # |log-odds z| needed to call caption evidence support/contradiction
    amplification_threshold: float = math.log(1.5)  # retrieval minus caption log-ratio: "exceeds"
    q_threshold: float = 0.05  # retrieval skew counts as significant below this q-value (if given)
    n_boot: int = 1000
    confidence: float = 0.95
    seed: int = 0
    caption_variant: Literal["unambiguous", "with_ambiguous"] = "unambiguous"  # the scan's table

    def __post_init__(self):
        checks = {
            f"caption_variant must be one of {list(COOCCURRENCE_FILES)}": self.caption_variant in COOCCURRENCE_FILES,
            "prior_strength must be > 0": self.prior_strength > 0,
            "min_caption_mentions must be >= 0": self.min_caption_mentions >= 0,
            "z_threshold must be > 0": self.z_threshold > 0,
            "amplification_threshold must be >= 0": self.amplification_threshold >= 0,
            "q_threshold must be in (0, 1]": 0 < self.q_threshold <= 1,
            "n_boot must be >= 0": self.n_boot >= 0,
            "confidence must be in (0, 1)": 0 < self.confidence < 1,
        }
        failed = [message for message, ok in checks.items() if not ok]
        if failed:
            raise InputError(f"invalid provenance settings: {'; '.join(failed)}")


@dataclass(frozen=True)
class ProvenanceResult:
    links: pl.DataFrame
    words: pl.DataFrame
    correlations: pl.DataFrame
    divergent: pl.DataFrame
    summary: dict


def require_columns(frame: pl.DataFrame, columns, origin: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{origin} lacks columns {missing} (has {frame.columns})")


def _smoothed_log_ratio(count: pl.Expr, total: pl.Expr, base: pl.Expr, a: float) -> pl.Expr:
    share = (count + a * base) / (total + a)
    return pl.when(base > 0).then((share / base).log()).otherwise(None)


def lexicon_key(axis: str, group: str) -> pl.Expr:
    """Lexicon groups as "axis/group" whether a table writes "race/white" or axis race + "white"."""
    return (pl.when(pl.col(group).str.contains("/", literal=True)).then(pl.col(group))
            .otherwise(pl.concat_str(pl.col(axis), pl.lit("/"), pl.col(group))))


def pool_templates(skew: pl.DataFrame) -> pl.DataFrame:
    """One row per (category, word, attribute, group): counts summed over the audit's templates
    (an equal-weight average of their top-k compositions; one template: unchanged)."""
    require_columns(skew, SKEW_COLUMNS, "skew table")
    return skew.group_by([*WORD_KEYS, "group"], maintain_order=True).agg(
        pl.col("count").sum(), pl.col("base_rate").first())


def retrieval_side(skew: pl.DataFrame, mapping: pl.DataFrame) -> pl.DataFrame:
    """Retrieval counts and base rates per word and linked group (face groups summed)."""
    require_columns(mapping, MAPPING_COLUMNS, "group mapping")
    pooled = pool_templates(skew)
    totals = pooled.group_by(WORD_KEYS).agg(retrieved=pl.col("count").sum())
    mapping = mapping.with_columns(lexicon_group=lexicon_key("axis", "lexicon_group"))
    joined = pooled.join(mapping, on=["attribute", "group"], how="inner")
    linked = joined.group_by(*WORD_KEYS, "axis", "lexicon_group").agg(
        face_groups=pl.col("group").sort().str.join("+"),
        retrieval_count=pl.col("count").sum(),
        retrieval_base_rate=pl.col("base_rate").sum(),
    )
    linked = linked.join(totals, on=WORD_KEYS).with_columns(
        retrieval_total=pl.col("retrieval_count").sum().over(WORD_KEYS),
        base_total=pl.col("retrieval_base_rate").sum().over(WORD_KEYS),
    )
    return linked.with_columns(
        retrieval_coverage=pl.col("retrieval_total") / pl.col("retrieved"),
        retrieval_share=pl.col("retrieval_count") / pl.col("retrieval_total"),
        retrieval_base_rate=pl.col("retrieval_base_rate") / pl.col("base_total"),
    ).drop("retrieved", "base_total").rename({"lexicon_group": "group"})


def caption_side(cooc: pl.DataFrame, mapping: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Caption counts per word and linked group, and the corpus base rate of each linked group."""
    require_columns(cooc, COOC_COLUMNS, "co-occurrence table")
    groups = mapping.select("axis", group=lexicon_key("axis", "lexicon_group")).unique()
    rows = cooc.with_columns(group=lexicon_key("axis", "group")).join(groups, on=["axis", "group"], how="semi")
    base = rows.group_by("axis", "group").agg(n_group=pl.col("n_group").max())
    base = base.with_columns(caption_base_rate=pl.col("n_group") / pl.col("n_group").sum().over("axis"))
    definitional = pl.col("word_is_group_term") if "word_is_group_term" in rows.columns else pl.lit(False)
    counts = rows.unique(["word", "axis", "group"]).select(
        "word", "axis", "group", caption_count="n_both", caption_z="log_odds_z",
        by_definition=definitional.fill_null(False))
    return counts, base.drop("n_group")


def scanned_groups(mapping: pl.DataFrame, cooc: pl.DataFrame) -> pl.DataFrame:
    """The mapping rows whose lexicon group the scan counted: both sides share one set of groups."""
    require_columns(cooc, COOC_COLUMNS, "co-occurrence table")
    scanned = cooc.select("axis", lexicon_group=lexicon_key("axis", "group")).unique()
    return mapping.with_columns(lexicon_group=lexicon_key("axis", "lexicon_group")).join(
        scanned, on=["axis", "lexicon_group"], how="semi")


def link(skew: pl.DataFrame, cooc: pl.DataFrame, mapping: pl.DataFrame,
         config: ProvenanceConfig = ProvenanceConfig()) -> pl.DataFrame:
    """One row per word x attribute x linked group with both sides' shares and log-ratios."""
    mapping = scanned_groups(mapping, cooc)
    retrieval = retrieval_side(skew, mapping)
    counts, base = caption_side(cooc, mapping)
    keys = ["word", "axis", "group"]
    table = retrieval.join(base, on=["axis", "group"], how="left").join(counts, on=keys, how="left")
    table = table.with_columns(pl.col("caption_count").fill_null(0), pl.col("by_definition").fill_null(False))
    table = table.with_columns(caption_total=pl.col("caption_count").sum().over(WORD_KEYS))
    a = config.prior_strength
    table = table.with_columns(
        caption_share=pl.when(pl.col("caption_total") > 0)
        .then(pl.col("caption_count") / pl.col("caption_total")),
        retrieval_log_ratio=_smoothed_log_ratio(pl.col("retrieval_count"), pl.col("retrieval_total"),
                                                pl.col("retrieval_base_rate"), a),
        caption_log_ratio=_smoothed_log_ratio(pl.col("caption_count"), pl.col("caption_total"),
                                              pl.col("caption_base_rate").fill_null(0), a),
    )
    table = table.with_columns(
        share_log_ratio=(pl.col("retrieval_share") + 1e-12).log() - (pl.col("caption_share") + 1e-12).log(),
        amplification=pl.col("retrieval_log_ratio") - pl.col("caption_log_ratio"),
    )
    order = ["word", "category", "attribute", "axis", "group", "face_groups", "retrieval_count",
             "retrieval_total", "retrieval_coverage", "retrieval_share", "retrieval_base_rate",
             "caption_count", "caption_total", "caption_share", "caption_base_rate",
             "retrieval_log_ratio", "caption_log_ratio", "share_log_ratio", "amplification", "caption_z",
             "by_definition"]
    return table.select(order).sort("category", "word", "attribute", "group")


def rank_correlations(links: pl.DataFrame, config: ProvenanceConfig = ProvenanceConfig()) -> pl.DataFrame:
    """Caption vs retrieval log-ratio correlations for each scope (overall, each category),
    attribute and linked group, plus all groups pooled (the bootstrap resamples words)."""
    usable = links.filter(~pl.col("by_definition"),
                          pl.col("caption_total") >= max(config.min_caption_mentions, 1),
                          pl.col("retrieval_log_ratio").is_not_null(),
                          pl.col("caption_log_ratio").is_not_null())
    overall = usable.unique(["word", "attribute", "group"], keep="first", maintain_order=True)
    scoped = pl.concat([overall.with_columns(scope=pl.lit(OVERALL)),
                        usable.with_columns(scope=pl.col("category"))])
    table = correlation_table(scoped, "caption_log_ratio", "retrieval_log_ratio", by=["scope", "attribute"],
                              cluster="word", member="group", pooled=POOLED, n_boot=config.n_boot,
                              confidence=config.confidence, seed=config.seed)
    return table.rename({"n_clusters": "n_words"}).sort(
        pl.col("scope") != OVERALL, "scope", "attribute", pl.col("group") == POOLED, "group")


def provenance(skew: pl.DataFrame, cooc: pl.DataFrame, mapping: pl.DataFrame,
               config: ProvenanceConfig = ProvenanceConfig()) -> ProvenanceResult:
    """All provenance tables and the summary from in-memory tables (no I/O)."""
    links = link(skew, cooc, mapping, config)
    if links.is_empty():
        raise InputError("no word x group could be linked: check that the group mapping's "
                         "attribute/group match the audit and its axis/lexicon_group the scan")
    words = word_evidence(links, skew, config)
    correlations = rank_correlations(links, config)
    divergent = divergent_words(words)
    summary = summarise(skew, scanned_groups(mapping, cooc), links, words, correlations, divergent)
    return ProvenanceResult(links, words, correlations, divergent, summary)


def summarise(skew, mapping, links, words, correlations, divergent, top: int = 10) -> dict:
    unlinked = skew.join(mapping, on=["attribute", "group"], how="anti")  # also: no caption counts
    unlinked = unlinked.group_by("attribute").agg(pl.col("group").unique().sort()).sort("attribute")
    evidence = words.group_by("attribute", "evidence").len().sort("attribute", "evidence")
    return {
        "words": links["word"].n_unique(),
        "attributes": sorted(links["attribute"].unique().to_list()),
        "linked_groups": links.select("attribute", "group").unique().height,
        "unlinked_face_groups": {r["attribute"]: r["group"] for r in unlinked.to_dicts()},
        "evidence": {f"{r['attribute']}:{r['evidence']}": r["len"] for r in evidence.to_dicts()},
        "divergent": {kind: divergent.filter(pl.col("divergence") == kind).height
                      for kind in ("exceeds", "contradicts")},
        "top_divergent": divergent.sort("amplification", descending=True).head(top).select(
            "word", "category", "attribute", "group", "divergence", "retrieval_log_ratio",
            "caption_log_ratio", "amplification", "caption_z").to_dicts(),
        "overall_correlations": correlations.filter(pl.col("scope") == OVERALL).to_dicts(),
    }


def load_group_mapping(path: str | Path | None = None) -> pl.DataFrame:
    """Face group -> caption lexicon group: columns attribute, group, axis, lexicon_group. Default:
    the taxonomy's demographic axes (taxonomy/axes.csv); else a CSV with those columns."""
    if path is None:
        from taxonomy import axes

        table, origin = axes.lexicon_groups(), "taxonomy/axes.csv"
    else:
        path, origin = Path(path), str(path)
        if not path.exists():
            raise InputError(f"group mapping {path} does not exist")
        table = pl.read_csv(path, infer_schema_length=0)
    require_columns(table, MAPPING_COLUMNS, f"group mapping {origin}")
    table = table.select(MAPPING_COLUMNS).filter(pl.all_horizontal(pl.all().fill_null("") != ""))
    table = table.unique(maintain_order=True)
    ambiguous = table.filter(pl.len().over("attribute", "group") > 1)
    if not ambiguous.is_empty():
        first = ambiguous.row(0, named=True)
        raise InputError(f"group mapping {origin}: face group {first['attribute']}={first['group']!r} "
                         "maps to several lexicon groups; map each face group to at most one")
    return table


def _input_record(directory: Path, table: str) -> dict:
    manifest = directory / storage.MANIFEST_NAME
    return {"path": str(directory), "table": table, "sha256": storage.sha256_file(directory / table),
            "manifest_sha256": storage.sha256_file(manifest) if manifest.exists() else None}


def _read_table(directory: Path, name: str, producer: str) -> pl.DataFrame:
    path = Path(directory) / name
    if not path.exists():
        raise InputError(f"{directory} has no {name}: pass the output directory of `vlaudit {producer}`")
    return pl.read_parquet(path)


def run_provenance(audit_dir: str | Path, scan_dir: str | Path, out_dir: str | Path,
                   config: ProvenanceConfig = ProvenanceConfig(),
                   mapping: pl.DataFrame | None = None) -> ProvenanceResult:
    """Read an audit and a scan directory, link them, write the tables to ``out_dir`` atomically."""
    audit_dir, scan_dir = Path(audit_dir), Path(scan_dir)
    skew = _read_table(audit_dir, "skew.parquet", "audit")
    cooc_file = COOCCURRENCE_FILES[config.caption_variant]
    cooc = _read_table(scan_dir, cooc_file, "scan")  # one file per variant
    mapping = load_group_mapping() if mapping is None else mapping
    result = provenance(skew, cooc, mapping, config)
    manifest = {
        **storage.manifest_header("provenance"), "config": asdict(config),
        "inputs": {"audit": _input_record(audit_dir, "skew.parquet"),
                   "scan": _input_record(scan_dir, cooc_file)},
        "mapping": mapping.to_dicts(), "tables": [f"{name}.parquet" for name in OUTPUT_TABLES],
    }
    storage.check_replaceable(out_dir, "provenance")
    with storage.atomic_dir(out_dir) as tmp:
        for name in OUTPUT_TABLES:
            storage.write_parquet(tmp / f"{name}.parquet", getattr(result, name))
        storage.write_json(tmp / "summary.json", result.summary)
        storage.write_json(tmp / storage.MANIFEST_NAME, manifest)
    log.info("provenance: %d words linked, written to %s", result.summary["words"], out_dir)
    return result
