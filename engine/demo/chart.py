"""One SVG chart of the demo's retrieval checks: per word, the retrieved share of its group beside
the index base rate and (planted words) the planted caption rate. Plain SVG text, no library."""

from __future__ import annotations

from xml.sax.saxutils import escape

_ROW, _BAR, _LEFT, _PLOT, _TOP = 34, 9, 210, 360, 46
COLOURS = {"retrieved": "#4e79a7", "base": "#bab0ac", "planted": "#f28e2b"}


def retrieval_chart(rows: list[dict], planted_rate: float) -> str:
    """``rows``: the retrieval checks (word, kind, attribute, measured_top_group, top_group_share,
    top_group_base_rate, planted_group, planted_group_share, planted_group_base_rate, passed)."""
    height = _TOP + _ROW * len(rows) + 30
    width = _LEFT + _PLOT + 80
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
             '<text x="8" y="16" font-size="13" font-weight="bold">Top-k share of each word\'s group: '
             'retrieved vs index base rate vs planted caption rate</text>']
    parts += _legend()
    for i, row in enumerate(rows):
        parts += _row(row, _TOP + i * _ROW, planted_rate)
    axis_y = _TOP + _ROW * len(rows)
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        x = _LEFT + tick * _PLOT
        parts.append(f'<line x1="{x:.1f}" y1="{_TOP - 4}" x2="{x:.1f}" y2="{axis_y}" stroke="#e3e6ea"/>')
        parts.append(f'<text x="{x:.1f}" y="{axis_y + 14}" text-anchor="middle">{tick:g}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _legend() -> list[str]:
    parts, x = [], 8
    for name, label in (("retrieved", "retrieved share (top k)"), ("base", "index base rate"),
                        ("planted", "planted caption rate")):
        parts.append(f'<rect x="{x}" y="24" width="10" height="10" fill="{COLOURS[name]}"/>')
        parts.append(f'<text x="{x + 14}" y="33">{escape(label)}</text>')
        x += 170
    return parts


def _row(row: dict, y: float, planted_rate: float) -> list[str]:
    planted = row["kind"] == "planted"
    group = row["planted_group"] if planted else row["measured_top_group"]
    share = row["planted_group_share"] if planted else row["top_group_share"]
    base = row["planted_group_base_rate"] if planted else row["top_group_base_rate"]
    verdict = "pass" if row["passed"] else "FAIL"
    label = f'{row["word"]} ({row["kind"]}) {row["attribute"]}={group}'
    parts = [f'<text x="8" y="{y + 12}">{escape(label)}</text>',
             f'<text x="{_LEFT + _PLOT + 8}" y="{y + 12}" fill="{"#2a7d2a" if row["passed"] else "#c0392b"}">'
             f'{verdict}</text>']
    bars = [("retrieved", share), ("base", base)] + ([("planted", planted_rate)] if planted else [])
    for j, (name, value) in enumerate(bars):
        if value is None:
            continue
        top = y + j * _BAR
        parts.append(f'<rect x="{_LEFT}" y="{top:.1f}" width="{value * _PLOT:.1f}" height="{_BAR - 1}" '
                     f'fill="{COLOURS[name]}"><title>{escape(name)}: {value:.2f}</title></rect>')
    return parts
