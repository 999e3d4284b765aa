"""The HTML report: result directories (index, audit, scan, provenance, other results) -> one
self-contained HTML file with inline CSS and SVG charts, no script and no network at view time.

``run_report(["runs/audit", "runs/scan", "runs/provenance"], "report.html")``; the pieces:
load.py (find and read runs), charts.py (SVG), tables.py (HTML tables), sections_*.py (one
concept each), page.py (assembly and the atomic write).
"""

from engine.report.page import build_report, run_report

__all__ = ["build_report", "run_report"]
