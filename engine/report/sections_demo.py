"""The demo's answer first: did the pipeline recover the truth planted in the toy world?

Reads the demo's ``checks`` directory (engine.demo.run: retrieval_checks.parquet,
cooccurrence_checks.parquet, summary.json, retrieval_checks.svg) and shows a verdict, the chart,
one row per planted and control word, and the caption pairs whose counts differ (all, folded).
"""

from __future__ import annotations

import polars as pl

from engine.report import charts, tables
from engine.report.load import Run
from engine.report.sections_retrieval import Section

WORD_COLUMNS = (("word", "word"), ("kind", "kind"), ("attribute", "axis"), ("planted_group", "planted group"),
                ("measured_top_group", "most over-retrieved"), ("planted_group_share", "planted share"),
                ("planted_group_base_rate", "base rate"), ("q_value", "q"), ("verdict", "recovered"))
PAIR_COLUMNS = (("word", "word"), ("axis", "axis"), ("group", "group"), ("planted", "planted"),
                ("planted_count", "planted captions"), ("scanned_count", "scanned captions"),
                ("verdict", "equal"))


def demo_section(run: Run) -> Section:
    summary = run.summary
    parts = [_verdict(summary, run.manifest.get("alpha"))]
    for name, data in run.charts.items():
        parts.append(charts.svg_figure(name, data, caption=False))
    words = run.table("retrieval_checks")
    if words is not None:
        parts.append("<h3>Words: planted skew recovered, controls not significant</h3>"
                     + tables.html_table(_with_verdict(words).to_dicts(), WORD_COLUMNS))
    pairs = run.table("cooccurrence_checks")
    if pairs is not None:
        parts.append(_pairs(_with_verdict(pairs)))
    return Section(f"demo-{run.label}", "Demo: planted truth vs measured", "".join(parts))


def _verdict(summary: dict, alpha) -> str:
    if not summary:
        return '<p class="empty">No summary.json: the checks did not finish.</p>'
    lines = [f"{_count(summary.get('planted_words'))} planted words: the planted group is the most "
             f"over-retrieved one, with q &lt; {charts.esc(alpha)}",
             f"{_count(summary.get('control_words'))} control-word checks show no significant skew",
             f"{_count(summary.get('cooccurrence_pairs'))} word x group caption counts equal the planted ones"]
    head = "All checks passed." if summary.get("passed") else "Some checks FAILED."
    return f"<p><b>{head}</b></p><ul>{''.join(f'<li>{line}</li>' for line in lines)}</ul>"


def _count(part) -> str:
    if not isinstance(part, dict):
        return "?"
    failed = part.get("failed") or []
    text = f"{part.get('passed', '?')} of {part.get('checks', '?')}"
    return text + (f" (failing: {charts.esc(', '.join(map(str, failed)))})" if failed else "")


def _with_verdict(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(verdict=pl.when(pl.col("passed")).then(pl.lit("yes")).otherwise(pl.lit("NO")))


def _pairs(pairs: pl.DataFrame) -> str:
    failed = pairs.filter(~pl.col("passed"))
    head = (f"<h3>Caption counts: {pairs.height - failed.height} of {pairs.height} pairs equal</h3>")
    shown = tables.html_table(failed.to_dicts(), PAIR_COLUMNS, caption="pairs that differ") if failed.height else ""
    every = tables.html_table(pairs.to_dicts(), PAIR_COLUMNS)
    return f"{head}{shown}<details><summary>every pair ({pairs.height:,})</summary>{every}</details>"
