"""Small charts drawn on the server as inline SVG (no chart library, no script).

Two shapes cover the console's needs: a line per series over days (stock level per site)
and paired bars per day (quantity in and out: the movement rate). Numbers become
coordinates; every text that reaches the SVG (site names, dates) is escaped. Colours are
SVG presentation attributes, not ``style``, so the console's Content-Security-Policy
(no inline styles) holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Final

from markupsafe import Markup, escape

WIDTH: Final = 720
HEIGHT: Final = 200
PAD_LEFT: Final = 48
PAD_BOTTOM: Final = 24
PAD_TOP: Final = 12
PALETTE: Final = ("#1d3557", "#e76f51", "#2a9d8f", "#8e44ad", "#f4a261", "#6c757d")
MAX_SERIES: Final = len(PALETTE)
"""Series drawn at most (the rest are left out and the legend says so)."""


def _frame(label: str, body: list[str], top: float, days: Sequence[datetime]) -> Markup:
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="{PAD_LEFT}" y1="{PAD_TOP}" x2="{PAD_LEFT}" y2="{PAD_TOP + plot_h}" '
        'stroke="#999"/>',
        f'<line x1="{PAD_LEFT}" y1="{PAD_TOP + plot_h}" x2="{WIDTH}" y2="{PAD_TOP + plot_h}" '
        'stroke="#999"/>',
        f'<text x="{PAD_LEFT - 4}" y="{PAD_TOP + 10}" text-anchor="end" font-size="11">'
        f"{_number(top)}</text>",
        f'<text x="{PAD_LEFT - 4}" y="{PAD_TOP + plot_h}" text-anchor="end" '
        'font-size="11">0</text>',
    ]
    if days:
        parts.append(
            f'<text x="{PAD_LEFT}" y="{HEIGHT - 6}" font-size="11">'
            f"{escape(days[0].strftime('%Y-%m-%d'))}</text>"
        )
        parts.append(
            f'<text x="{WIDTH}" y="{HEIGHT - 6}" text-anchor="end" font-size="11">'
            f"{escape(days[-1].strftime('%Y-%m-%d'))}</text>"
        )
    # Every text in it went through escape(); the rest are numbers and fixed markup.
    return Markup("".join([*parts, *body, "</svg>"]))  # noqa: S704


def _number(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def _scale(top: float) -> float:
    return top if top > 0 else 1.0


def line_chart(
    label: str, days: Sequence[datetime], series: Mapping[str, Sequence[float]]
) -> Markup:
    """One line per series (at most ``MAX_SERIES``) over ``days``, with a legend."""
    names = sorted(series)[:MAX_SERIES]
    top = _scale(max((max(series[n], default=0) for n in names), default=0))
    plot_w = WIDTH - PAD_LEFT - 8
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    step = plot_w / max(1, len(days) - 1)
    body: list[str] = []
    for index, name in enumerate(names):
        colour = PALETTE[index]
        points = " ".join(
            f"{PAD_LEFT + i * step:.1f},{PAD_TOP + plot_h - plot_h * value / top:.1f}"
            for i, value in enumerate(series[name])
        )
        body.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        body.append(
            f'<text x="{PAD_LEFT + 8 + 90 * index}" y="{PAD_TOP + 10}" fill="{colour}" '
            f'font-size="12">{escape(name)}</text>'
        )
    if len(series) > MAX_SERIES:
        body.append(
            f'<text x="{WIDTH - 4}" y="{PAD_TOP + 10}" text-anchor="end" font-size="11">'
            f"{len(series) - MAX_SERIES} more not drawn</text>"
        )
    return _frame(label, body, top, days)


def bar_chart(
    label: str, days: Sequence[datetime], inbound: Sequence[float], outbound: Sequence[float]
) -> Markup:
    """Quantity in (first bar) and out (second bar) per day."""
    top = _scale(max([*inbound, *outbound], default=0))
    plot_w = WIDTH - PAD_LEFT - 8
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    slot = plot_w / max(1, len(days))
    bar = max(1.0, slot * 0.4)
    body: list[str] = []
    for i, (came, went) in enumerate(zip(inbound, outbound, strict=True)):
        for offset, value, colour in ((0.1, came, PALETTE[2]), (0.5, went, PALETTE[1])):
            height = plot_h * value / top
            body.append(
                f'<rect x="{PAD_LEFT + i * slot + slot * offset:.1f}" '
                f'y="{PAD_TOP + plot_h - height:.1f}" width="{bar:.1f}" height="{height:.1f}" '
                f'fill="{colour}"/>'
            )
    body.append(
        f'<text x="{PAD_LEFT + 8}" y="{PAD_TOP + 10}" fill="{PALETTE[2]}" font-size="12">in</text>'
        f'<text x="{PAD_LEFT + 40}" y="{PAD_TOP + 10}" fill="{PALETTE[1]}" font-size="12">'
        "out</text>"
    )
    return _frame(label, body, top, days)


RANKED: Final = 20
"""Bars a ranking chart draws at most (the largest values)."""
ROW_H: Final = 18
LABEL_W: Final = 200


def ranking_chart(label: str, names: Sequence[str], values: Sequence[float]) -> Markup:
    """Horizontal bars of the ``RANKED`` largest ``values``, each named (a report's top)."""
    ranked = sorted(zip(names, values, strict=True), key=lambda pair: -pair[1])[:RANKED]
    top = _scale(max((value for _, value in ranked), default=0))
    height = PAD_TOP + ROW_H * len(ranked) + 8
    plot_w = WIDTH - LABEL_W - 60
    parts = [
        f'<svg class="chart ranking" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for index, (name, value) in enumerate(ranked):
        y = PAD_TOP + index * ROW_H
        width = plot_w * max(value, 0) / top
        parts.append(
            f'<text x="{LABEL_W - 6}" y="{y + 13}" text-anchor="end" font-size="12">'
            f"{escape(name[:32])}</text>"
            f'<rect x="{LABEL_W}" y="{y + 2}" width="{width:.1f}" height="{ROW_H - 5}" '
            f'fill="{PALETTE[0]}"/>'
            f'<text x="{LABEL_W + width + 4:.1f}" y="{y + 13}" font-size="12">'
            f"{_number(value)}</text>"
        )
    parts.append("</svg>")
    # Every text in it went through escape(); the rest are numbers and fixed markup.
    return Markup("".join(parts))  # noqa: S704
