"""HTML tables and value formatting. Every cell is escaped."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence

import polars as pl

from engine.report.charts import esc

Formatter = Callable[[object], str]


ATTRIBUTE_ORDER = ("race", "race4", "gender", "age", "age3")  # then intersections, then the rest


def by_attribute(frame: pl.DataFrame, *more: str) -> list[tuple[tuple, pl.DataFrame]]:
    """``frame`` split by attribute (and ``more`` columns): race, gender, age first, as readers
    look for them; intersections (``race*gender``) and other attributes after."""
    def rank(item):
        attribute = item[0][0]
        known = ATTRIBUTE_ORDER.index(attribute) if attribute in ATTRIBUTE_ORDER else len(ATTRIBUTE_ORDER)
        return known, "*" in attribute, item[0]

    return sorted(frame.partition_by("attribute", *more, as_dict=True).items(), key=rank)


def number(value, digits: int = 3) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        value += 0.0  # no "-0.000"
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value else f"{value:.{digits}f}"
    return str(value)


def percent(value) -> str:
    return "" if value is None else f"{value:.1%}"


def signed(value) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:+.2f}"


def interval(low, high) -> str:
    if low is None or high is None:
        return ""
    return f"[{low:+.2f}, {high:+.2f}]"


def html_table(rows: Sequence[dict], columns: Sequence[tuple[str, str]] | None = None,
               formats: dict[str, Formatter] | None = None, css_class: str = "data",
               caption: str = "") -> str:
    """A table of ``rows`` (dicts); ``columns`` are (key, heading) pairs, default every key."""
    if not rows:
        return '<p class="empty">No rows.</p>'
    columns = columns or [(key, key) for key in rows[0]]
    formats = formats or {}
    head = "".join(f"<th>{esc(title)}</th>" for _key, title in columns)
    body = []
    for row in rows:
        cells = []
        for key, _title in columns:
            value = row.get(key)
            text = formats.get(key, number)(value)
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            cells.append(f'<td class="num">{esc(text)}</td>' if numeric else f"<td>{esc(text)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return (f'<div class="table-wrap"><table class="{css_class}">{cap}<thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def frame_table(frame: pl.DataFrame, limit: int = 200, caption: str = "", total: int | None = None) -> str:
    """Any table as HTML (first ``limit`` rows of ``total``; nested values as JSON)."""
    rows = [{k: _plain(v) for k, v in row.items()} for row in frame.head(limit).to_dicts()]
    total = frame.height if total is None else total
    more = f'<p class="note">First {min(limit, frame.height):,} of {total:,} rows.</p>' if total > limit else ""
    return html_table(rows, caption=caption) + more


def _plain(value):
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str)
    return value


def flatten(manifest: dict, depth: int = 1, prefix: str = "",
            skip: tuple[str, ...] = ("packages", "checksums", "outputs", "files")) -> list[tuple[str, object]]:
    """Scalar entries of a manifest, nested dicts as "a.b" up to ``depth`` levels; bookkeeping
    entries (``skip``) are left to the full manifest."""
    pairs = []
    for key, value in manifest.items():
        name = f"{prefix}{key}"
        if key in skip:
            continue
        if isinstance(value, dict) and depth > 0:
            pairs.extend(flatten(value, depth - 1, f"{name}.", skip))
        elif isinstance(value, (str, int, float, bool)):
            pairs.append((name, value))
    return pairs


def key_values(pairs: Sequence[tuple[str, object]]) -> str:
    """A two-column table of labelled values, skipping empty ones."""
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(number(v) if not isinstance(v, str) else v)}</td></tr>"
                   for k, v in pairs if v not in (None, "", [], {}))
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def json_block(obj, summary: str) -> str:
    text = json.dumps(obj, indent=2, sort_keys=True, default=str)
    return f"<details><summary>{esc(summary)}</summary><pre>{esc(text)}</pre></details>"
