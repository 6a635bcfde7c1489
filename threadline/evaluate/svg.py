"""Tiny inline SVG charts for the report: lines in the unit square, and a histogram.

Dependency-free and script-free on purpose: the report is one HTML file that opens anywhere,
offline. Every label is escaped; numbers are formatted by us, never taken as text.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

WIDTH, HEIGHT, PAD = 320, 260, 40
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


def _frame(title: str, x_label: str, y_label: str, body: str) -> str:
    w, h, p = WIDTH, HEIGHT, PAD
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" role="img" aria-label="{html.escape(title)}">'
        f"<title>{html.escape(title)}</title>"
        f'<rect x="{p}" y="{p // 2}" width="{w - 1.5 * p:.0f}" height="{h - 1.5 * p:.0f}" '
        'fill="none" stroke="#999"/>'
        f'<text x="{w / 2:.0f}" y="{h - 6}" text-anchor="middle" font-size="11">'
        f"{html.escape(x_label)}</text>"
        f'<text x="12" y="{h / 2:.0f}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 12 {h / 2:.0f})">{html.escape(y_label)}</text>'
        f"{body}</svg>"
    )


def _xy(x: float, y: float) -> tuple[float, float]:
    """Unit-square coordinates to pixels (y grows upwards)."""
    inner_w, inner_h = WIDTH - 1.5 * PAD, HEIGHT - 1.5 * PAD
    return PAD + x * inner_w, PAD // 2 + (1 - y) * inner_h


def unit_lines(title: str, series: Sequence[tuple[str, Sequence[float], Sequence[float]]],
               x_label: str, y_label: str, *, diagonal: bool = True) -> str:
    """Polylines of (label, xs, ys) in [0, 1]², with a legend and the y = x reference line."""
    parts = []
    if diagonal:
        (x0, y0), (x1, y1) = _xy(0, 0), _xy(1, 1)
        parts.append(f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" '
                     'stroke="#bbb" stroke-dasharray="4 3"/>')
    for i, (label, xs, ys) in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        points = " ".join(f"{px:.1f},{py:.1f}" for px, py in (_xy(x, y) for x, y in zip(xs, ys)))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
        if len(xs) <= 20:  # few points (calibration bins): mark them
            parts += [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{colour}"/>'
                      for px, py in (_xy(x, y) for x, y in zip(xs, ys))]
        lx, ly = _xy(0.62, 0.05 + 0.08 * (len(series) - 1 - i))
        parts.append(f'<text x="{lx:.1f}" y="{ly:.1f}" font-size="10" fill="{colour}">'
                     f"{html.escape(label[:24])}</text>")
    return _frame(title, x_label, y_label, "".join(parts))


def histogram(title: str, edges: Sequence[float], counts: Sequence[float], x_label: str) -> str:
    """Bars of `counts` between consecutive `edges`, axis ends labelled."""
    if not counts:
        return _frame(title, x_label, "rows", "")
    top = max(counts) or 1.0
    width = 1.0 / len(counts)
    parts = []
    for i, c in enumerate(counts):
        (x0, y0), (x1, y1) = _xy(i * width, c / top), _xy((i + 1) * width, 0)
        parts.append(f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{max(x1 - x0 - 1, 0.5):.1f}" '
                     f'height="{y1 - y0:.1f}" fill="{COLOURS[0]}"/>')
    (lx, ly), (rx, _) = _xy(0, 0), _xy(1, 0)
    parts.append(f'<text x="{lx:.1f}" y="{ly + 12:.1f}" font-size="10">{edges[0]:.3g}</text>')
    parts.append(f'<text x="{rx:.1f}" y="{ly + 12:.1f}" font-size="10" text-anchor="end">'
                 f"{edges[-1]:.3g}</text>")
    parts.append(f'<text x="{lx + 2:.1f}" y="{_xy(0, 1)[1] + 10:.1f}" font-size="10">'
                 f"max {top:.0f}</text>")
    return _frame(title, x_label, "rows", "".join(parts))


def paired_bars(title: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[float]]],
                x_label: str) -> str:
    """Side-by-side bars per label, one colour per series (shares in [0, 1]), with a legend;
    the first and last labels mark the axis ends."""
    if not labels or not series:
        return _frame(title, x_label, "share", "")
    top = max((max(values) for _, values in series if len(values)), default=0.0) or 1.0
    slot = 1.0 / len(labels)
    bar = slot / (len(series) + 0.5)
    parts = []
    for s, (name, values) in enumerate(series):
        colour = COLOURS[s % len(COLOURS)]
        for i, value in enumerate(values):
            (x0, y0), (x1, y1) = _xy(i * slot + s * bar, value / top), _xy(i * slot + (s + 1) * bar, 0)
            parts.append(f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{max(x1 - x0 - 0.5, 0.5):.1f}" '
                         f'height="{y1 - y0:.1f}" fill="{colour}"/>')
        lx, ly = _xy(0.62, 0.95 - 0.08 * s)
        parts.append(f'<text x="{lx:.1f}" y="{ly:.1f}" font-size="10" fill="{colour}">'
                     f"{html.escape(name[:24])}</text>")
    (lx, ly), (rx, _) = _xy(0, 0), _xy(1, 0)
    parts.append(f'<text x="{lx:.1f}" y="{ly + 12:.1f}" font-size="10">{html.escape(labels[0][:16])}</text>')
    parts.append(f'<text x="{rx:.1f}" y="{ly + 12:.1f}" font-size="10" text-anchor="end">'
                 f"{html.escape(labels[-1][:16])}</text>")
    return _frame(title, x_label, "share", "".join(parts))
