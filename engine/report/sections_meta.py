"""Report sections about the runs themselves: overview, indexes, other results (association
tests and the like), methodology and caveats, and the run manifests."""

from __future__ import annotations

from engine.report import charts, tables
from engine.report.load import ReportInputs, Run
from engine.report.sections_retrieval import Section

OPEN_ROWS = 30
KIND_NAMES = {"index": "face index", "audit": "retrieval audit", "scan": "caption scan",
              "provenance": "provenance linking", "demo": "demo checks", "results": "other results"}


def overview(inputs: ReportInputs) -> Section:
    rows = [{"kind": KIND_NAMES[run.kind], "name": run.label, "directory": str(run.path),
             "created": run.manifest.get("created", "")} for run in inputs.runs]
    findings = [line for run in inputs.runs for line in FINDINGS.get(run.kind, _none)(run)]
    listed = "".join(f"<li>{charts.esc(line)}</li>" for line in findings)
    body = (f"<h3>Key findings</h3><ul>{listed}</ul>" if listed else "") + tables.html_table(rows)
    return Section("overview", "Overview", body)


def _none(_run: Run) -> list[str]:
    return []


def _audit_findings(run: Run) -> list[str]:
    rows = run.summary.get("overall")
    rows = [r for r in rows if {"attribute", "significant", "queries"} <= set(r)] if isinstance(rows, list) else []
    several = len({r.get("template") for r in rows}) > 1
    return [f"{run.label}: {r['significant']} of {r['queries']} words retrieve a {r['attribute']} mix "
            f"significantly different from the index (q < {run.summary.get('alpha', 0.05)})"
            + (f" [{r.get('template')}]" if several else "") for r in rows]


def _provenance_findings(run: Run) -> list[str]:
    summary, lines = run.summary, []
    for row in summary.get("overall_correlations", []):
        if row.get("group") == "(all groups)" and row.get("spearman") is not None:
            lines.append(f"{run.label}: caption skew vs retrieval skew, {row['attribute']}: Spearman "
                         f"{row['spearman']:+.2f} [{tables.number(row.get('spearman_low'), 2)}, "
                         f"{tables.number(row.get('spearman_high'), 2)}] over {row['n_words']} words")
    divergent = summary.get("divergent", {})
    if divergent:
        lines.append(f"{run.label}: the model's skew exceeds its captions for {divergent.get('exceeds', 0)} "
                     f"and contradicts them for {divergent.get('contradicts', 0)} word x attribute pairs")
    return lines


FINDINGS = {"audit": _audit_findings, "provenance": _provenance_findings}


def index_section(run: Run) -> Section:
    return Section(f"index-{run.label}", f"Face index ({run.label})",
                   tables.key_values([("directory", str(run.path))] + tables.flatten(run.manifest)))


def results_section(run: Run) -> Section:
    """Any other stage's tables, and its own SVG charts as images (an SVG shown through <img>
    cannot run script or load anything)."""
    parts = [tables.key_values([("directory", str(run.path))] + tables.flatten(run.manifest, 0))]
    recorded = run.manifest.get("tables")
    recorded = recorded if isinstance(recorded, dict) else {}
    for name, frame in run.tables.items():
        entry = recorded.get(f"{name}.parquet")
        rows = entry.get("rows") if isinstance(entry, dict) else None
        rows = rows if isinstance(rows, int) else frame.height
        table = tables.frame_table(frame, total=rows)
        if rows > OPEN_ROWS:  # long tables start folded
            parts.append(f"<details><summary>{charts.esc(name)} ({rows:,} rows)</summary>{table}</details>")
        else:
            parts.append(f"<h3>{charts.esc(name)}</h3>{table}")
    for name, data in run.charts.items():
        parts.append(charts.svg_figure(name, data))
    stage = run.manifest.get("stage")
    title = f"Results: {stage} ({run.label})" if isinstance(stage, str) else f"Results: {run.label}"
    return Section(f"results-{run.label}", title, "".join(parts))


METHODOLOGY = """
<h3>What the numbers are</h3>
<ul>
<li><b>Retrieval skew.</b> Each taxonomy word becomes a prompt (e.g. "a photo of a nurse"); the
top-k faces the model retrieves from the index are counted by group and compared with the index's
base rates: KL@k, normalised entropy, MaxSkew/MinSkew@k (Geyik et al. 2019) against a uniform and a
base-rate target, NDKL, with a permutation null and Benjamini-Hochberg q-values.</li>
<li><b>Caption co-occurrence.</b> Captions are case-folded and tokenised; a word and a demographic
term co-occur when both occur as whole tokens (multi-word terms as consecutive tokens) in one
caption. Groups are compared with the log-odds ratio with an informative Dirichlet prior and its
z-score (Monroe, Colaresi &amp; Quinn 2008).</li>
<li><b>Provenance.</b> Face-label groups are mapped to caption lexicon groups. For each word and
group, the retrieval share is compared with its index base rate and the caption share with its
corpus base rate (both as log-ratios, smoothed towards the base rate); the captions support the
model's skew when the log-odds z-score for the over-retrieved group passes the threshold.
Rank correlations (Spearman, Kendall tau-b) carry percentile bootstrap intervals over words.</li>
</ul>
<h3>Caveats</h3>
<ul>
<li><b>Perceived, not self-identified, labels.</b> Dataset labels such as FairFace's race and
gender are annotators' perceptions of a face, in a fixed set of categories; they say nothing about
how the people pictured identify, and categories like "Latino_Hispanic" or a binary gender are
simplifications.</li>
<li><b>A reconstructed taxonomy.</b> The So-B-IT word list is a public reconstruction of the paper's
374-word list, not the authors' original file; category membership follows that reconstruction.</li>
<li><b>English-only lexicons.</b> Caption matching uses English terms; non-English captions (about
4% of LAION-2B-en) and non-standard spellings are missed. Ambiguous words ("black", "white") are
counted only in context unless a run chose the counts with ambiguous words.</li>
<li><b>Co-occurrence is not causation.</b> Captions the model was trained on are one source of its
associations; image content, filtering and the model's objective are others. A supported skew is
consistent with the captions, not proven to come from them.</li>
<li><b>Small samples.</b> A top-k of 100 faces and a few caption mentions are noisy; read shares
with their nulls, q-values and intervals.</li>
</ul>
"""


def methodology(inputs: ReportInputs) -> Section:
    settings = []
    for run in inputs.runs:
        for key in ("k", "seed", "seeds", "templates", "taxonomy", "lexicon", "config"):
            if key in run.manifest:
                settings.append((f"{run.label}: {key}", _short(run.manifest[key])))
    return Section("methods", "Methodology and caveats", METHODOLOGY + tables.key_values(settings))


def _short(value) -> str:
    import json

    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 300 else text[:297] + "..."


def manifests(inputs: ReportInputs) -> Section:
    blocks = [tables.json_block(run.manifest, f"{KIND_NAMES[run.kind]}: {run.path}")
              for run in inputs.runs if run.manifest]
    blocks += [tables.json_block(run.summary, f"summary: {run.path}") for run in inputs.runs if run.summary]
    body = ("<p>Everything needed to reproduce these results: models, weights, data, seeds and "
            "package versions, as each stage recorded them.</p>" + "".join(blocks))
    return Section("manifests", "Run manifests", body)
