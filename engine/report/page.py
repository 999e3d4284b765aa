"""Assemble the sections into one self-contained HTML page and write it atomically.

The page has no script and loads nothing: styles are inline, charts are inline SVG, and a
Content-Security-Policy forbids scripts and every network fetch, so even a caption that slipped
past escaping could not run or call out.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from engine import __version__, storage
from engine.report import sections_captions, sections_demo, sections_meta, sections_retrieval
from engine.report.charts import esc
from engine.report.load import ReportInputs, load_inputs
from engine.report.sections_retrieval import Section

log = logging.getLogger(__name__)

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; base-uri 'none'"

STYLE = """
:root { --ink:#1d2330; --muted:#5b6475; --line:#dde2ea; --bg:#f7f8fa; --accent:#4e79a7; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--ink); background:var(--bg); }
header { background:#1d2330; color:#fff; padding:20px 32px; }
header h1 { margin:0 0 4px; font-size:22px; } header p { margin:0; color:#c9d1de; }
nav { position:sticky; top:0; background:#fff; border-bottom:1px solid var(--line); padding:8px 32px; z-index:1;
      white-space:nowrap; overflow-x:auto; }
nav a { color:var(--accent); margin-right:16px; text-decoration:none; font-size:13px; }
main { max-width:1180px; margin:0 auto; padding:8px 32px 48px; }
section { background:#fff; border:1px solid var(--line); border-radius:8px; padding:16px 22px; margin:18px 0; }
h2 { margin:0 0 10px; font-size:18px; } h3 { font-size:15px; margin:18px 0 8px; } h4 { margin:10px 0 4px; font-size:13px; }
.table-wrap { overflow-x:auto; }
table { border-collapse:collapse; font-size:12.5px; margin:6px 0 12px; }
th, td { border-bottom:1px solid var(--line); padding:4px 10px; text-align:left; vertical-align:top; }
thead th { background:#eef1f5; position:sticky; top:0; }
td.num { text-align:right; font-variant-numeric:tabular-nums; }
table.kv th { color:var(--muted); font-weight:500; }
caption { text-align:left; color:var(--muted); }
figure { margin:8px 0 16px; } img.chart-file { max-width:100%; height:auto; } figcaption { color:var(--muted); font-size:12.5px; margin-bottom:4px; }
.grid { display:flex; flex-wrap:wrap; gap:8px 24px; }
svg.chart text { fill:var(--ink); font-family:inherit; }
svg.chart .plot { fill:#fafbfc; stroke:var(--line); }
svg.chart .diag { stroke:#aab3c2; stroke-dasharray:4 3; } svg.chart .zero { stroke:#cfd5df; }
svg.chart .dot { fill:var(--accent); fill-opacity:.75; } svg.chart .dot.hi { fill:#f28e2b; fill-opacity:.95; }
.legend { display:flex; flex-wrap:wrap; gap:4px 14px; margin:4px 0 8px; font-size:12px; }
.legend .key i { display:inline-block; width:11px; height:11px; margin-right:5px; vertical-align:-1px; border-radius:2px; }
details { margin:4px 0; } summary { cursor:pointer; color:var(--accent); }
pre { background:#f3f5f8; padding:10px; border-radius:6px; overflow-x:auto; font-size:12px; white-space:pre-wrap; word-break:break-word; }
ul.examples { margin:0 0 8px; padding-left:18px; } q.caption { quotes:"\\201C" "\\201D"; }
.url { display:block; color:var(--muted); font-size:11.5px; word-break:break-all; }
.note, .empty { color:var(--muted); font-size:12.5px; }
footer { color:var(--muted); font-size:12px; text-align:center; padding:12px; }
"""


def collect_sections(inputs: ReportInputs) -> list[Section]:
    """The sections the given runs support, in reading order."""
    sections = [sections_meta.overview(inputs)]
    sections += [sections_demo.demo_section(run) for run in inputs.of("demo")]  # the demo's answer first
    sections += [sections_meta.index_section(run) for run in inputs.of("index")]
    for run in inputs.of("audit"):
        sections += sections_retrieval.audit_sections(run)
    scans = inputs.of("scan")
    for run in inputs.of("provenance"):
        sections += sections_captions.provenance_sections(run, scans)
    for run in scans:
        sections += sections_captions.scan_sections(run)
    sections += [sections_meta.results_section(run) for run in inputs.of("results")]
    sections += [sections_meta.methodology(inputs), sections_meta.manifests(inputs)]
    return sections


def render_page(sections: list[Section], title: str, subtitle: str) -> str:
    nav = "".join(f'<a href="#{esc(s.anchor)}">{esc(s.title)}</a>' for s in sections)
    body = "".join(f'<section id="{esc(s.anchor)}"><h2>{esc(s.title)}</h2>{s.body}</section>'
                   for s in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header><nav>{nav}</nav>"
        f"<main>{body}</main><footer>vlaudit {esc(__version__)} - self-contained report; "
        "nothing on this page loads from the network.</footer></body></html>\n"
    )


def build_report(directories, title: str = "vlaudit report") -> tuple[str, ReportInputs]:
    """The report for the result directories given, as HTML text (no I/O but reading inputs)."""
    inputs = load_inputs(directories)
    subtitle = f"{len(inputs.runs)} result sets, generated {storage.utc_now()}"
    return render_page(collect_sections(inputs), title, subtitle), inputs


def run_report(directories, out: str | Path, title: str = "vlaudit report") -> dict:
    """Write the report for ``directories`` to ``out`` atomically; return what it covers."""
    text, inputs = build_report(directories, title)
    path = Path(out)
    with storage.atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o666 & ~_umask())  # a document to share, not a private temp file
    log.info("report written to %s (%d bytes)", path, len(text))
    return {"out": str(path), "bytes": len(text.encode("utf-8")),
            "runs": [{"kind": run.kind, "path": str(run.path)} for run in inputs.runs]}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
