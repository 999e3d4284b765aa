"""Report sections from a caption scan and a provenance run: top co-occurrences, example
captions as evidence, caption skew beside retrieval skew, and where the two disagree."""

from __future__ import annotations

import polars as pl

from engine.provenance import lexicon_key
from engine.report import charts, tables
from engine.report.load import Run
from engine.report.sections_retrieval import Section

TOP_COOCCURRENCES = 5
EXAMPLES_PER_PAIR = 3
MAX_SCATTERS = 24
CAPTION_COLUMNS = ("caption", "text", "TEXT")
URL_COLUMNS = ("url", "URL")
Z_COLUMN = "log_odds_z"


def _first_present(frame: pl.DataFrame, names) -> str | None:
    return next((name for name in names if name in frame.columns), None)


def examples_html(examples: pl.DataFrame | None, pairs: list[tuple[str, str]],
                  variant: str = "unambiguous") -> str:
    """Example captions for (word, lexicon group) pairs, as text (never markup)."""
    if examples is None or examples.is_empty() or not pairs:
        return ""
    if "variant" in examples.columns:
        examples = examples.filter(pl.col("variant") == variant)
    caption = _first_present(examples, CAPTION_COLUMNS)
    url = _first_present(examples, URL_COLUMNS)
    if caption is None or not {"word", "group"} <= set(examples.columns):
        return ""
    if "axis" in examples.columns:
        examples = examples.with_columns(group=lexicon_key("axis", "group"))
    wanted = pl.DataFrame(pairs, schema=["word", "group"], orient="row")
    found = examples.join(wanted, on=["word", "group"], how="semi")
    blocks = []
    for word, group in dict.fromkeys(pairs):
        rows = found.filter(word=word, group=group).head(EXAMPLES_PER_PAIR).to_dicts()
        if not rows:
            continue
        items = "".join(
            f'<li><q class="caption">{charts.esc(r[caption])}</q>'
            + (f'<span class="url">{charts.esc(r[url])}</span>' if url and r.get(url) else "") + "</li>"
            for r in rows)
        blocks.append(f"<h4>{charts.esc(word)} + {charts.esc(group)}</h4><ul class=\"examples\">{items}</ul>")
    return f'<div class="evidence">{"".join(blocks)}</div>' if blocks else ""


def top_cooccurrences(cooc: pl.DataFrame) -> pl.DataFrame:
    order = Z_COLUMN if Z_COLUMN in cooc.columns else "n_both"
    return (cooc.filter(pl.col("n_both") > 0).sort(order, descending=True)
            .group_by("axis", "group", maintain_order=True).head(TOP_COOCCURRENCES)
            .sort("axis", "group", order, descending=[False, False, True]))


def scan_sections(run: Run) -> list[Section]:
    cooc = run.table("cooccurrence")
    if cooc is None:
        return []
    top = top_cooccurrences(cooc.with_columns(group=lexicon_key("axis", "group")))
    stats = [("directory", str(run.path))] + tables.flatten(run.manifest)
    numeric = [c for c in ("n_word", "n_group", "n_both", "n_unique_captions_both", "pmi", "PMI",
                           "log_odds", Z_COLUMN) if c in top.columns]
    columns = [("axis", "axis"), ("group", "group"), ("word", "word")] + [(c, c) for c in numeric]
    body = (tables.key_values(stats)
            + f"<p>For each demographic group, the {TOP_COOCCURRENCES} taxonomy words most "
              "associated with it in the captions (log-odds ratio with an informative Dirichlet "
              "prior, z-score; Monroe et al. 2008).</p>"
            + tables.html_table(top.to_dicts(), columns))
    evidence = examples_html(run.table("examples"), [(r["word"], r["group"]) for r in top.to_dicts()])
    sections = [Section(f"scan-{run.label}", f"Caption co-occurrence ({run.label})", body)]
    if evidence:
        sections.append(Section(f"scan-{run.label}-examples", f"Example captions ({run.label})",
                                "<p>Captions behind the strongest co-occurrences, shown as text.</p>" + evidence))
    return sections


def _scatters(links: pl.DataFrame, divergent: pl.DataFrame, min_mentions: int) -> str:
    flagged = set(divergent.select("word", "attribute", "group").iter_rows()) if divergent.height else set()
    usable = links.filter(pl.col("caption_total") >= max(min_mentions, 1))
    if "by_definition" in usable.columns:
        usable = usable.filter(~pl.col("by_definition"))
    figures = []
    for (attribute, group), part in tables.by_attribute(usable, "group"):
        if len(figures) >= MAX_SCATTERS:
            break
        words = part.drop_nulls(["caption_log_ratio", "retrieval_log_ratio"]).unique(
            "word", keep="first", maintain_order=True)
        points = [charts.Point(r["caption_log_ratio"], r["retrieval_log_ratio"], r["word"],
                               (r["word"], attribute, group) in flagged) for r in words.to_dicts()]
        if not points:
            continue
        svg = charts.scatter(points, "caption skew (log-ratio)", "retrieval skew (log-ratio)",
                             f"{attribute}: {group}, caption vs retrieval skew")
        title = group if group.startswith(f"{attribute}/") else f"{attribute}: {group}"
        figures.append(f"<figure><figcaption>{charts.esc(title)} ({len(points)} words)</figcaption>"
                       f"{svg}</figure>")
    return f'<div class="grid">{"".join(figures)}</div>'


def _correlations(correlations: pl.DataFrame) -> str:
    columns = [("scope", "scope"), ("attribute", "attribute"), ("group", "group"),
               ("n_words", "words"), ("spearman", "Spearman"), ("spearman_ci", "interval"),
               ("kendall", "Kendall tau-b"), ("kendall_ci", "interval")]
    rows = [{**r, "spearman_ci": tables.interval(r["spearman_low"], r["spearman_high"]),
             "kendall_ci": tables.interval(r["kendall_low"], r["kendall_high"])}
            for r in correlations.to_dicts()]
    return tables.html_table(rows, columns, {"spearman": tables.signed, "kendall": tables.signed})


WORD_COLUMNS = [("word", "word"), ("category", "category"), ("attribute", "attribute"),
                ("group", "group"), ("retrieval_share", "retrieved"), ("caption_share", "in captions"),
                ("retrieval_log_ratio", "retrieval skew"), ("caption_log_ratio", "caption skew"),
                ("amplification", "amplification"), ("caption_z", "caption z"), ("evidence", "evidence")]
WORD_FORMATS = {"retrieval_share": tables.percent, "caption_share": tables.percent,
                "retrieval_log_ratio": tables.signed, "caption_log_ratio": tables.signed,
                "amplification": tables.signed, "caption_z": tables.signed}
SUPPORTED_ROWS = 15


def _scatter_section(run: Run, links: pl.DataFrame, divergent: pl.DataFrame, config: dict) -> Section:
    intro = ("<p>Each side's skew is ln(share / base rate), with shares smoothed towards the base rate "
             f"({config.get('prior_strength', 'n/a')} pseudo-observations). Points are words; orange "
             "points are words whose retrieval skew exceeds or contradicts their captions. The "
             "diagonal is equal skew. Only words with enough caption mentions are drawn.</p>")
    correlations = run.table("correlations")
    body = (intro + _scatters(links, divergent, config.get("min_caption_mentions", 1))
            + "<h3>Rank correlation</h3><p>Intervals: percentile bootstrap over words.</p>"
            + (_correlations(correlations) if correlations is not None else ""))
    return Section(f"prov-{run.label}-scatter", f"Caption skew vs retrieval skew ({run.label})", body)


def _evidence_section(run: Run, words: pl.DataFrame, divergent: pl.DataFrame, config: dict,
                      scans: list[Run]) -> Section:
    evidence = words.group_by("attribute", "evidence").len().sort("attribute", "evidence")
    supported = words.filter(pl.col("evidence") == "supported").sort("caption_z", descending=True)
    pairs = [(r["word"], group) for r in divergent.head(10).to_dicts()
             for group in (r["group"], r["caption_top_group"]) if group]
    variant = config.get("caption_variant", "unambiguous")
    examples = "".join(examples_html(scan.table("examples"), pairs, variant) for scan in scans)
    kind = [("divergence", "kind")]
    body = ("<h3>Evidence per attribute</h3>"
            + tables.html_table(evidence.to_dicts(), [("attribute", "attribute"), ("evidence", "evidence"),
                                                      ("len", "word x attribute pairs")])
            + "<h3>Words where the model's skew exceeds or contradicts its captions</h3>"
            + tables.html_table(divergent.to_dicts(), WORD_COLUMNS[:4] + kind + WORD_COLUMNS[4:], WORD_FORMATS)
            + ("<h3>Example captions for these words</h3>" + examples if examples else "")
            + f"<h3>Strongest caption support (top {SUPPORTED_ROWS})</h3>"
            + tables.html_table(supported.head(SUPPORTED_ROWS).to_dicts(), WORD_COLUMNS, WORD_FORMATS))
    return Section(f"prov-{run.label}-evidence", f"Caption evidence ({run.label})", body)


def provenance_sections(run: Run, scans: list[Run]) -> list[Section]:
    links, words = run.table("links"), run.table("words")
    if links is None or words is None:
        return []
    divergent = run.table("divergent") if run.table("divergent") is not None else words.head(0)
    config = run.manifest.get("config", {})
    return [_scatter_section(run, links, divergent, config),
            _evidence_section(run, words, divergent, config, scans)]
