"""Drawing for the job report (``report.py``): line charts, bar charts and tables as inline SVG and HTML.

Everything is drawn here, in Python, as static markup: the report must open from a shared file system in any
browser with no server, no network and no script to fail, so there is no JavaScript and nothing is fetched.
Hovering a line or a bar shows its numbers (an SVG ``<title>``). Each plot is a ``<figure class="plot">``
whose ``data-points`` attribute counts the data points drawn, for tests and for a reader's curiosity.
"""
from __future__ import annotations

import html
import math
from typing import Callable, Sequence

WIDTH = 960                 # the SVG's own units; it scales to the page width
HEIGHT = 280
MARGIN = (16, 24, 40, 76)   # top, right, bottom, left: room for the axes' labels
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")

Series = tuple[str, Sequence[tuple[float, float]]]


def escape(text: object) -> str:
    return html.escape(str(text), quote=True)


def nice_step(span: float, count: int) -> float:
    """A round step (1, 2 or 5 times a power of ten) that cuts ``span`` into about ``count`` parts."""
    if span <= 0:
        return 1.0
    raw = span / count
    power = 10 ** math.floor(math.log10(raw))
    return next(factor * power for factor in (1, 2, 5, 10) if factor * power >= raw)


def duration_text(seconds: float) -> str:
    """``0.25 ms``, ``3.1 s``, ``2:05`` (m:ss), ``1:02:05`` (h:mm:ss)."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    if seconds < 60:
        return f"{seconds:.3g} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def number_text(value: float) -> str:
    """``0.25``, ``12.5``, ``1,250``: three significant digits below 1000, whole numbers with commas above."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def bytes_text(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(count) < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.3g} {unit}"
        count /= 1000
    return f"{count:.3g} TB"


def _ticks(low: float, high: float, count: int) -> list[float]:
    step = nice_step(high - low, count)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def line_chart(series: Sequence[Series], x_range: tuple[float, float], x_label: str, y_label: str,
               y_text: Callable[[float], str] = number_text) -> tuple[str, int]:
    """An SVG of one polyline per series over ``x_range`` (seconds), y from 0; ``(markup, points drawn)``."""
    top, right, bottom, left = MARGIN
    x0, x1 = x_range
    x1 = max(x1, x0 + 1e-9)
    y_max = max([y for _, points in series for _, y in points] + [0.0])
    y_max = y_max * 1.05 if y_max > 0 else 1.0
    plot_w, plot_h = WIDTH - left - right, HEIGHT - top - bottom

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        return top + plot_h - y / y_max * plot_h

    parts = [f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(y_label)}">']
    parts += _axes(x0, x1, y_max, px, py, x_label, y_label, y_text)
    drawn = 0
    for index, (label, points) in enumerate(series):
        color = PALETTE[index % len(PALETTE)]
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        peak = max((y for _, y in points), default=0.0)
        parts.append(f'<polyline class="series" fill="none" stroke="{color}" stroke-width="1.8" '
                     f'data-label="{escape(label)}" points="{coords}"><title>{escape(label)}: peak '
                     f'{escape(y_text(peak))}</title></polyline>')
        drawn += len(points)
    parts.append("</svg>")
    return "".join(parts) + _legend(label for label, _ in series), drawn


def _axes(x0, x1, y_max, px, py, x_label, y_label, y_text):
    top, right, bottom, left = MARGIN
    base, parts = HEIGHT - bottom, []
    for y in _ticks(0.0, y_max, 5):
        parts.append(f'<line class="grid" x1="{left}" x2="{WIDTH - right}" y1="{py(y):.1f}" y2="{py(y):.1f}"/>'
                     f'<text class="tick" x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end">'
                     f'{escape(y_text(y))}</text>')
    for offset in _ticks(0.0, x1 - x0, 8):   # time since the start, at round offsets
        x = px(x0 + offset)
        parts.append(f'<line class="tick-mark" x1="{x:.1f}" x2="{x:.1f}" y1="{base}" y2="{base + 5}"/>'
                     f'<text class="tick" x="{x:.1f}" y="{base + 18}" text-anchor="middle">'
                     f'{escape(duration_text(offset) if offset > 0 else "0")}</text>')
    parts.append(f'<line class="axis" x1="{left}" x2="{WIDTH - right}" y1="{base}" y2="{base}"/>'
                 f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{base}"/>'
                 f'<text class="label" x="{WIDTH - right}" y="{HEIGHT - 4}" text-anchor="end">{escape(x_label)}</text>'
                 f'<text class="label" x="12" y="{top + 4}" transform="rotate(-90 12 {top + 4})" '
                 f'text-anchor="end">{escape(y_label)}</text>')
    return parts


def _legend(labels) -> str:
    items = [f'<span class="key"><i style="background:{PALETTE[i % len(PALETTE)]}"></i>{escape(label)}</span>'
             for i, label in enumerate(labels)]
    return f'<div class="legend">{"".join(items)}</div>'


def bar_chart(rows: Sequence[tuple[str, float, str]], value_text: Callable[[float], str]) -> tuple[str, int]:
    """Horizontal bars, one per ``(label, share 0..1, hover text)``: ``(markup, bars drawn)``."""
    row_h, label_w, right = 22, 150, 70
    height = row_h * len(rows) + 8
    bar_w = WIDTH - label_w - right
    parts = [f'<svg viewBox="0 0 {WIDTH} {height}" role="img" aria-label="busy share per rank">']
    for i, (label, share, hover) in enumerate(rows):
        y = 4 + i * row_h
        width = max(0.0, min(share, 1.0)) * bar_w
        parts.append(f'<text class="tick" x="{label_w - 8}" y="{y + 15}" text-anchor="end">{escape(label)}</text>'
                     f'<rect class="track" x="{label_w}" y="{y + 2}" width="{bar_w}" height="{row_h - 6}"/>'
                     f'<rect class="bar" x="{label_w}" y="{y + 2}" width="{width:.1f}" height="{row_h - 6}">'
                     f'<title>{escape(hover)}</title></rect>'
                     f'<text class="tick" x="{label_w + bar_w + 6}" y="{y + 15}">{escape(value_text(share))}</text>')
    parts.append("</svg>")
    return "".join(parts), len(rows)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], numeric_from: int = 1) -> str:
    """An HTML table; columns from ``numeric_from`` on are right-aligned."""
    head = "".join(f'<th{_num(i, numeric_from)}>{escape(h)}</th>' for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f"<td{_num(i, numeric_from)}>{escape(cell)}</td>" for i, cell in enumerate(row))
                   + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _num(column: int, numeric_from: int) -> str:
    return ' class="num"' if column >= numeric_from else ""


def figure(plot_id: str, title: str, body: str, points: int, note: str = "") -> str:
    """One section of the report: a heading, the plot or table, an optional note below it."""
    note_html = f'<p class="note">{escape(note)}</p>' if note else ""
    return (f'<figure class="plot" id="{escape(plot_id)}" data-points="{points}"><figcaption>{escape(title)}'
            f'</figcaption>{body}{note_html}</figure>')


STYLE = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:24px auto;max-width:1000px;
color:#222;background:#fff;padding:0 12px}
h1{font-size:22px;margin:0 0 4px} .sub{color:#666;margin:0 0 16px}
dl.facts{display:grid;grid-template-columns:max-content auto;gap:2px 16px;margin:0 0 16px}
dl.facts dt{color:#666} dl.facts dd{margin:0}
figure.plot{margin:0 0 28px;padding:12px;border:1px solid #ddd;border-radius:6px}
figcaption{font-weight:600;font-size:16px;margin-bottom:8px}
svg{width:100%;height:auto;display:block} svg text{font-size:12px;fill:#333}
svg .grid{stroke:#eee} svg .axis,svg .tick-mark{stroke:#999} svg .label{fill:#666}
svg .track{fill:#f2f2f2} svg .bar{fill:#1f77b4}
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;margin-top:4px;font-size:12px}
.key i{display:inline-block;width:12px;height:3px;margin-right:6px;vertical-align:middle}
table{border-collapse:collapse;width:100%;font-size:13px} th,td{padding:3px 8px;border-bottom:1px solid #eee;
text-align:left;vertical-align:top} td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f7f7f7} .note{color:#666;font-size:12px;margin:6px 0 0} .empty{color:#888;font-style:italic}
.warn{background:#fff6e0;border:1px solid #f0d58c;padding:6px 10px;border-radius:4px}
"""


def page(title: str, subtitle: str, facts: Sequence[tuple[str, str]], warnings: Sequence[str],
         sections: Sequence[str]) -> str:
    """The whole self-contained HTML document."""
    facts_html = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts)
    warn_html = "".join(f'<p class="warn">{escape(w)}</p>' for w in warnings)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
            f'<style>{STYLE}</style></head><body><h1>{escape(title)}</h1><p class="sub">{escape(subtitle)}</p>'
            f'<dl class="facts">{facts_html}</dl>{warn_html}{"".join(sections)}</body></html>\n')
