"""Inline SVG charts: composition bars, heat maps, scatter plots. Strings in, SVG text out.

Every label is escaped here (``esc``), so callers pass raw data. Hover text uses SVG ``<title>``
elements, which browsers show as tooltips without any script.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
           "#9c755f", "#bab0ac", "#a0cbe8", "#ffbe7d", "#8cd17d", "#b6992d", "#499894", "#86bcb6",
           "#d37295", "#fabfd2", "#79706e", "#d4a6c8")  # Tableau 20, reordered: distinct first
FONT = 12


def esc(value) -> str:
    """Text from data, safe inside HTML and SVG text and attributes."""
    return html.escape("" if value is None else str(value), quote=True)


def svg_figure(name: str, data: bytes, caption: bool = True) -> str:
    """A stage's own SVG file as an image: shown through <img>, an SVG cannot run script or load
    anything (the page's CSP allows data: images only)."""
    uri = "data:image/svg+xml;base64," + base64.b64encode(data).decode("ascii")
    label = f"<figcaption>{esc(name)}</figcaption>" if caption else ""
    return f'<figure>{label}<img class="chart-file" alt="{esc(name)}" src="{uri}"></figure>'


def group_colors(groups: Sequence[str]) -> dict[str, str]:
    return {group: PALETTE[i % len(PALETTE)] for i, group in enumerate(groups)}


def _svg(width: float, height: float, body: str, label: str, css_class: str) -> str:
    return (f'<svg class="chart {css_class}" role="img" aria-label="{esc(label)}" '
            f'xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}">{body}</svg>')


def _text(x, y, text, anchor="start", size=FONT, extra="") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"{extra}>'
            f"{esc(text)}</text>")


def legend(colors: dict[str, str]) -> str:
    items = "".join(f'<span class="key"><i style="background:{color}"></i>{esc(group)}</span>'
                    for group, color in colors.items())
    return f'<div class="legend">{items}</div>'


@dataclass(frozen=True)
class BarRow:
    label: str
    shares: dict[str, float]  # group -> share of the row (sums to about 1)
    note: str = ""  # shown right of the bar


def composition_bars(rows: Sequence[BarRow], colors: dict[str, str], label: str,
                     width: int = 640, label_width: int = 150, row_height: int = 18) -> str:
    """One 100% stacked horizontal bar per row; each segment's tooltip gives group and share."""
    bar_width = width - label_width - 90
    parts = []
    for i, row in enumerate(rows):
        y = 4 + i * (row_height + 6)
        parts.append(_text(label_width - 6, y + row_height * 0.72, row.label, "end"))
        x = float(label_width)
        for group, color in colors.items():
            share = row.shares.get(group, 0.0) or 0.0
            if share <= 0:
                continue
            w = share * bar_width
            parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_height}" '
                         f'fill="{color}"><title>{esc(row.label)} - {esc(group)}: '
                         f"{share:.1%}</title></rect>")
            x += w
        parts.append(_text(label_width + bar_width + 6, y + row_height * 0.72, row.note, size=11))
    height = 8 + len(rows) * (row_height + 6)
    return _svg(width, height, "".join(parts), label, "bars")


def _diverging(value: float, limit: float) -> str:
    """White at 0, red for positive, blue for negative, saturating at +-limit."""
    t = max(-1.0, min(1.0, value / limit)) if limit > 0 and math.isfinite(value) else 0.0
    target = (214, 39, 40) if t > 0 else (31, 119, 180)
    r, g, b = (round(255 + (c - 255) * abs(t)) for c in target)
    return f"rgb({r},{g},{b})"


def heatmap(rows: Sequence[str], columns: Sequence[str], values: dict[tuple[str, str], float],
            label: str, fmt: str = "{:+.1f}", unit: str = "", cell: int = 58) -> str:
    """Rows x columns of coloured cells (diverging around 0) with the value written in each."""
    label_width = 12 + 7 * max((len(r) for r in rows), default=4)
    header = 70
    finite = [abs(v) for v in values.values() if v is not None and math.isfinite(v)]
    limit = max(finite, default=1.0) or 1.0
    parts = []
    for j, column in enumerate(columns):
        x = label_width + j * cell + cell / 2
        parts.append(_text(x, header - 8, column, "start", 11,
                           f' transform="rotate(-35 {x:.1f} {header - 8})"'))
    for i, row in enumerate(rows):
        y = header + i * 24
        parts.append(_text(label_width - 6, y + 16, row, "end"))
        for j, column in enumerate(columns):
            value = values.get((row, column))
            x = label_width + j * cell
            shown = "" if value is None or not math.isfinite(value) else fmt.format(value)
            fill = _diverging(value if shown else 0.0, limit)
            parts.append(f'<rect x="{x}" y="{y}" width="{cell - 2}" height="22" fill="{fill}">'
                         f"<title>{esc(row)} x {esc(column)}: {esc(shown or 'n/a')}{esc(unit)}"
                         f"</title></rect>")
            parts.append(_text(x + cell / 2 - 1, y + 15, shown, "middle", 11))
    width = label_width + len(columns) * cell + 10 + 6 * max((len(c) for c in columns), default=0)  # slanted labels
    return _svg(width, header + len(rows) * 24 + 6, "".join(parts), label, "heatmap")


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str
    highlight: bool = False


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    span = high - low
    step = 10 ** math.floor(math.log10(span / count)) if span > 0 else 1.0
    for factor in (1, 2, 5, 10):
        if span / (step * factor) <= count:
            step *= factor
            break
    start = math.ceil(low / step) * step
    return [start + i * step for i in range(int((high - start) / step + 1e-9) + 1)]


def scatter(points: Sequence[Point], x_label: str, y_label: str, label: str,
            size: int = 300, margin: int = 44) -> str:
    """One dot per point on shared-range axes, a y = x reference line and zero lines."""
    values = [v for p in points for v in (p.x, p.y) if math.isfinite(v)] or [0.0]
    low, high = min(min(values), 0.0), max(max(values), 0.0)
    pad = (high - low) * 0.08 or 1.0
    low, high = low - pad, high + pad
    inner = size - 2 * margin

    def sx(v):
        return margin + (v - low) / (high - low) * inner

    def sy(v):
        return size - margin - (v - low) / (high - low) * inner

    parts = [f'<rect x="{margin}" y="{margin}" width="{inner}" height="{inner}" class="plot"/>',
             f'<line x1="{sx(low):.1f}" y1="{sy(low):.1f}" x2="{sx(high):.1f}" y2="{sy(high):.1f}" class="diag"/>',
             f'<line x1="{sx(0):.1f}" y1="{margin}" x2="{sx(0):.1f}" y2="{size - margin}" class="zero"/>',
             f'<line x1="{margin}" y1="{sy(0):.1f}" x2="{size - margin}" y2="{sy(0):.1f}" class="zero"/>']
    for tick in _ticks(low, high):
        parts.append(_text(sx(tick), size - margin + 14, f"{tick:g}", "middle", 10))
        parts.append(_text(margin - 4, sy(tick) + 3, f"{tick:g}", "end", 10))
    for p in sorted(points, key=lambda p: p.highlight):
        if math.isfinite(p.x) and math.isfinite(p.y):
            parts.append(f'<circle cx="{sx(p.x):.1f}" cy="{sy(p.y):.1f}" r="{4 if p.highlight else 3}" '
                         f'class="{"dot hi" if p.highlight else "dot"}"><title>{esc(p.label)}: '
                         f"x {p.x:+.2f}, y {p.y:+.2f}</title></circle>")
    parts.append(_text(size / 2, size - 8, x_label, "middle", 11))
    parts.append(_text(12, size / 2, y_label, "middle", 11, f' transform="rotate(-90 12 {size / 2})"'))
    return _svg(size, size, "".join(parts), label, "scatter")
