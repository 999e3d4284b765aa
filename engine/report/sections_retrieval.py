"""Report sections from an audit: most skewed words, category x group heat map, composition bars."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from engine.report import charts, tables
from engine.report.load import Run

DISPLAY_METRICS = {"entropy": "entropy", "max_skew_base": "MaxSkew (base)", "min_skew_base": "MinSkew (base)",
                   "ndkl_base": "NDKL (base)", "bias_at_k": "Bias@k", "q_value": "q"}
TOP_PER_CATEGORY = 3
BARS_PER_CATEGORY = 12


@dataclass(frozen=True)
class Section:
    anchor: str
    title: str
    body: str


def query_keys(skew: pl.DataFrame) -> list[str]:
    """What identifies one measured query: category, word, (template,) attribute."""
    return ["category", "word", *(["template"] if "template" in skew.columns else []), "attribute"]


def word_metrics(skew: pl.DataFrame) -> pl.DataFrame:
    """Per query and attribute: KL@k to the base rate, the most over-represented group, the
    audit's own metrics where present (DISPLAY_METRICS), and a display label."""
    keys = query_keys(skew)
    ratio = pl.when(pl.col("base_rate") > 0).then(pl.col("share") / pl.col("base_rate"))
    terms = pl.when((pl.col("share") > 0) & (pl.col("base_rate") > 0)).then(
        pl.col("share") * (pl.col("share") / pl.col("base_rate")).log()).otherwise(0.0)
    ranked = skew.with_columns(ratio=ratio, kl_term=terms).sort(
        ["ratio", "group"], descending=[True, False], nulls_last=True)
    metrics = ranked.group_by(keys, maintain_order=True).agg(
        kl=pl.col("kl_term").sum(), top_group=pl.col("group").first(),
        top_share=pl.col("share").first(), top_base_rate=pl.col("base_rate").first(),
        k=pl.col("count").sum(), *[pl.col(c).first() for c in DISPLAY_METRICS if c in skew.columns])
    several = "template" in keys and skew["template"].n_unique() > 1
    label = pl.format("{} [{}]", "word", "template") if several else pl.col("word")
    return metrics.with_columns(label=label).sort(keys)


def most_skewed(metrics: pl.DataFrame) -> str:
    """Per attribute: the ``TOP_PER_CATEGORY`` words of each category with the largest KL@k."""
    columns = [("category", "category"), ("label", "word"), ("top_group", "most over-represented"),
               ("top_share", "share in top k"), ("top_base_rate", "base rate"), ("kl", "KL@k")]
    columns += [(c, title) for c, title in DISPLAY_METRICS.items() if c in metrics.columns]
    formats = {"top_share": tables.percent, "top_base_rate": tables.percent}
    parts = []
    for (attribute,), part in tables.by_attribute(metrics):
        top = part.sort("kl", descending=True).group_by("category", maintain_order=True).head(
            TOP_PER_CATEGORY).sort("category", "kl", descending=[False, True])
        parts.append(f"<h3>{charts.esc(attribute)}</h3>")
        parts.append(tables.html_table(top.to_dicts(), columns, formats))
    return "".join(parts)


def heatmaps(skew: pl.DataFrame) -> str:
    """Per attribute: mean over a category's words of (share - base rate), in percentage points."""
    gap = skew.with_columns(gap=(pl.col("share") - pl.col("base_rate")) * 100)
    mean = gap.group_by("attribute", "category", "group").agg(pl.col("gap").mean())
    parts = []
    for (attribute,), part in tables.by_attribute(mean):
        categories = sorted(part["category"].unique().to_list())
        groups = list(dict.fromkeys(skew.filter(pl.col("attribute") == attribute)["group"].to_list()))
        values = {(r["category"], r["group"]): r["gap"] for r in part.to_dicts()}
        svg = charts.heatmap(categories, groups, values, f"{attribute}: category x group heat map",
                             unit=" pp")
        parts.append(f'<figure><figcaption>{charts.esc(attribute)}: mean share in the top k minus '
                     f"base rate (percentage points)</figcaption>{svg}</figure>")
    return "".join(parts)


def composition(skew: pl.DataFrame, metrics: pl.DataFrame) -> str:
    """Per attribute and category: stacked group shares of the most skewed words vs base rates."""
    keys = [k for k in query_keys(skew) if k != "attribute"]
    parts = []
    for (attribute,), part in tables.by_attribute(skew):
        groups = list(dict.fromkeys(part["group"].to_list()))  # the audit's display order
        colors = charts.group_colors(groups)
        base = dict(part.group_by("group").agg(pl.col("base_rate").first()).iter_rows())
        shares = {(*(r[k] for k in keys), r["group"]): r["share"] for r in part.select(*keys, "group", "share").to_dicts()}
        ranked = metrics.filter(pl.col("attribute") == attribute).sort("kl", descending=True)
        blocks = []
        for i, ((category,), words) in enumerate(sorted(ranked.partition_by("category", as_dict=True).items())):
            rows = [charts.BarRow("index base rate", base)] + [
                charts.BarRow(w["label"], {g: shares.get((*(w[k] for k in keys), g)) or 0.0 for g in groups},
                              f"KL {w['kl']:.2f}")
                for w in words.head(BARS_PER_CATEGORY).to_dicts()]
            svg = charts.composition_bars(rows, colors, f"{attribute} composition, {category}")
            more = f" ({BARS_PER_CATEGORY} of {words.height} words)" if words.height > BARS_PER_CATEGORY else ""
            opened = " open" if i == 0 else ""
            blocks.append(f"<details{opened}><summary>{charts.esc(category)}{more}</summary>{svg}</details>")
        parts.append(f"<h3>{charts.esc(attribute)}</h3>{charts.legend(colors)}{''.join(blocks)}")
    return "".join(parts)


def _provenance_of(manifest: dict) -> list[tuple[str, object]]:
    """Index, model, taxonomy and templates an audit ran with, from its manifest."""
    def get(*path):
        value = manifest
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    template_texts = [t.get("template") for t in get("templates", "templates") or [] if isinstance(t, dict)]
    return [("index", get("index", "name")), ("model", get("index", "manifest", "model", "name")),
            ("weights", get("index", "manifest", "model", "pretrained")),
            ("taxonomy", get("taxonomy", "name")), ("template set", get("templates", "name")),
            ("template mode", get("templates", "mode")), ("templates", " | ".join(filter(None, template_texts)))]


def audit_sections(run: Run) -> list[Section]:
    skew = run.table("skew")
    if skew is None or skew.is_empty():
        return []
    metrics = word_metrics(skew)
    tag = f"audit-{run.label}"
    summary = tables.key_values([("directory", str(run.path)), *_provenance_of(run.manifest),
                                 ("words", skew["word"].n_unique()), ("categories", skew["category"].n_unique()),
                                 ("attributes", ", ".join(a for (a,), _ in tables.by_attribute(skew))),
                                 ("k", metrics["k"].max())])
    intro = ("<p>KL@k = sum over groups of p(g) ln(p(g) / base rate(g)) for the top-k retrieved faces; "
             "the audit's own metrics follow it (q: Benjamini-Hochberg over words, against random "
             "k-subsets of the index). Ranked by KL@k within each category.</p>")
    return [
        Section(f"{tag}-top", f"Most skewed words per category ({run.label})", summary + intro + most_skewed(metrics)),
        Section(f"{tag}-heat", f"Category x group heat map ({run.label})", heatmaps(skew)),
        Section(f"{tag}-bars", f"Group composition of retrieved faces ({run.label})",
                "<p>Each bar shows the groups among a word's top-k faces; the first bar is the "
                "index's base rate. Hover a segment for its share.</p>" + composition(skew, metrics)),
    ]
