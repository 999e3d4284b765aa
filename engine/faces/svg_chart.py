"""Line charts as self-contained SVG text (no plotting library): panels side by side, each with
axes, ticks, a legend and one polyline with markers per series. Missing values break a line."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
_W, _PLOT_H = 420, 210  # one panel, and the height of its plot area
_LEFT, _RIGHT, _TOP, _AXIS = 58, 16, 34, 44  # margins; the legend sits below the x axis
_ROW = 15  # legend row height; one legend entry per row


@dataclass(frozen=True)
class Line:
    name: str
    xs: tuple[float, ...]
    ys: tuple[float | None, ...]
    dashed: bool = False


@dataclass(frozen=True)
class Panel:
    title: str
    x_label: str
    y_label: str
    lines: tuple[Line, ...]
    y_range: tuple[float, float] | None = None  # fixed range, else fitted to the data
    guides: tuple[float, ...] = field(default_factory=tuple)  # horizontal reference lines


def render_svg(panels: list[Panel], title: str) -> str:
    """One SVG document with ``panels`` side by side under ``title``."""
    rows = max(len(p.lines) for p in panels) if panels else 0
    width, height = _W * len(panels), 24 + _TOP + _PLOT_H + _AXIS + rows * _ROW + 8
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="14">{escape(title)}</text>']
    for number, panel in enumerate(panels):
        parts.append(f'<g transform="translate({number * _W},24)">{_panel(panel)}</g>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _panel(panel: Panel) -> str:
    xs = [x for line in panel.lines for x in line.xs]
    ys = [y for line in panel.lines for y in line.ys if _finite(y)] + list(panel.guides)
    x_lo, x_hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    y_lo, y_hi = panel.y_range or _padded(ys)
    plot_w, plot_h = _W - _LEFT - _RIGHT, _PLOT_H
    sx = lambda x: _LEFT + (x - x_lo) / ((x_hi - x_lo) or 1) * plot_w  # noqa: E731
    sy = lambda y: _TOP + (1 - (y - y_lo) / ((y_hi - y_lo) or 1)) * plot_h  # noqa: E731
    out = [f'<text x="{_W / 2}" y="14" text-anchor="middle" font-size="12">{escape(panel.title)}</text>',
           f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>']
    out += _ticks(x_lo, x_hi, y_lo, y_hi, sx, sy)
    out += [f'<line x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{sy(g):.1f}" y2="{sy(g):.1f}" '
            'stroke="#999" stroke-dasharray="2,3"/>' for g in panel.guides if y_lo <= g <= y_hi]
    for number, line in enumerate(panel.lines):
        out += _polyline(line, PALETTE[number % len(PALETTE)], sx, sy)
        out.append(_legend_entry(line, PALETTE[number % len(PALETTE)], number))
    out.append(f'<text x="{_LEFT + plot_w / 2}" y="{_TOP + plot_h + 30}" text-anchor="middle">'
               f'{escape(panel.x_label)}</text>')
    out.append(f'<text transform="translate(14,{_TOP + plot_h / 2}) rotate(-90)" text-anchor="middle">'
               f'{escape(panel.y_label)}</text>')
    return "\n".join(out)


def _ticks(x_lo, x_hi, y_lo, y_hi, sx, sy) -> list[str]:
    out = []
    for x in _nice_ticks(x_lo, x_hi):
        bottom = _TOP + _PLOT_H
        out.append(f'<line x1="{sx(x):.1f}" x2="{sx(x):.1f}" y1="{bottom}" y2="{bottom + 4}" stroke="#333"/>')
        out.append(f'<text x="{sx(x):.1f}" y="{bottom + 15}" text-anchor="middle">{x:g}</text>')
    for y in _nice_ticks(y_lo, y_hi):
        out.append(f'<line x1="{_LEFT - 4}" x2="{_LEFT}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" stroke="#333"/>')
        out.append(f'<text x="{_LEFT - 6}" y="{sy(y) + 4:.1f}" text-anchor="end">{y:g}</text>')
    return out


def _polyline(line: Line, colour: str, sx, sy) -> list[str]:
    dash = ' stroke-dasharray="5,3"' if line.dashed else ""
    out, run = [], []
    for x, y in [*zip(line.xs, line.ys), (None, None)]:
        if x is not None and _finite(y):
            run.append(f"{sx(x):.1f},{sy(y):.1f}")
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.2" fill="{colour}"/>')
            continue
        if len(run) > 1:
            out.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{colour}" '
                       f'stroke-width="1.6"{dash}/>')
        run = []
    return out


def _legend_entry(line: Line, colour: str, number: int) -> str:
    x, y = _LEFT, _TOP + _PLOT_H + _AXIS + 4 + number * _ROW
    dash = ' stroke-dasharray="5,3"' if line.dashed else ""
    return (f'<line x1="{x}" x2="{x + 18}" y1="{y - 4}" y2="{y - 4}" stroke="{colour}" stroke-width="2"{dash}/>'
            f'<text x="{x + 22}" y="{y}">{escape(line.name)}</text>')


def _padded(values: list[float]) -> tuple[float, float]:
    if not values:
        return 0.0, 1.0
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.08 or abs(hi) * 0.1 or 0.1
    return lo - pad, hi + pad


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    span = hi - lo
    if not span > 0:
        return [lo]
    raw = span / count
    step = min((m * 10 ** math.floor(math.log10(raw)) for m in (1, 2, 2.5, 5, 10)),
               key=lambda s: abs(s - raw))
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)
