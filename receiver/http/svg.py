"""Small charts as inline SVG for the web page, drawn on the server. Pure: data in, markup out.

The page allows no script and no inline style (its CSP), so a chart is SVG elements with
classes that the stylesheet colours (``ui.css``, ``.chart ...``). Each chart is an image with a
``<title>`` and a ``<desc>`` (``role="img"``, ``aria-labelledby``), every bar carries its own
``<title>`` with the exact figure, and the page puts the same figures in a table beside it, so
nothing is told by colour alone; the stacked series also differ by pattern (hatched, dotted).

Labels can be untrusted (process and robot names come from Orchestrator): every text is escaped
here, stripped of control characters and cut to a bounded length.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

__all__ = ["LABEL_LIMIT", "Bar", "Series", "hbars", "label", "stacked_bars"]

LABEL_LIMIT = 28
"""Characters of a label drawn in a chart (the data table beside it shows the longer text)."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")
_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Series:
    """One stacked series: its name (legend, titles), its CSS class suffix and one value per slot."""

    name: str
    kind: str
    values: Sequence[float]


@dataclass(frozen=True, slots=True)
class Bar:
    """One horizontal bar: a label, its value, and the text shown after it (the value by default)."""

    label: str
    value: float
    text: str | None = None
    kind: str = "bar"


def label(text: str, limit: int = LABEL_LIMIT) -> str:
    """``text`` as one line of at most ``limit`` characters (cut with an ellipsis), not yet escaped."""
    flat = " ".join(_CONTROL.sub(" ", text[: limit * 4]).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "\u2026"


def _e(text: str) -> str:
    return escape(text, quote=True)


def _number(value: float) -> str:
    return f"{value:g}" if value != int(value) else f"{int(value)}"


def _nice_max(value: float) -> float:
    """The axis top: ``value`` rounded up to 1, 2 or 5 times a power of ten."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)  # pragma: no cover - the loop ends at 10


def _open(chart_id: str, width: int, height: int, title: str, desc: str) -> list[str]:
    return [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-labelledby="{chart_id}-t {chart_id}-d">',
        f'<title id="{chart_id}-t">{_e(title)}</title>',
        f'<desc id="{chart_id}-d">{_e(desc)}</desc>',
    ]


def _patterns(chart_id: str) -> str:
    """Fills that tell the series apart without colour: hatched (failed), dotted (suppressed)."""
    return (
        "<defs>"
        f'<pattern id="{chart_id}-failed" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)">'
        '<rect class="s-failed" width="6" height="6"/><line class="hatch" x1="0" y1="0" x2="0" y2="6"/></pattern>'
        f'<pattern id="{chart_id}-suppressed" width="5" height="5" patternUnits="userSpaceOnUse">'
        '<rect class="s-suppressed" width="5" height="5"/><circle class="dot" cx="2.5" cy="2.5" r="1"/></pattern>'
        "</defs>"
    )


def _paint(chart_id: str, kind: str) -> str:
    """The class (and pattern) of a series' shapes: a CSS rule's fill would hide a pattern attribute."""
    if kind in ("failed", "suppressed"):
        return f'class="p-{kind}" fill="url(#{chart_id}-{kind})"'
    return f'class="s-{_e(kind)}"'


def _empty(parts: list[str], width: int, height: int, text: str) -> Markup:
    parts.append(
        f'<text class="empty-note" x="{width / 2:g}" y="{height / 2:g}" text-anchor="middle">{_e(text)}</text>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text above went through _e


def stacked_bars(
    slots: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    desc: str,
    empty: str = "No events in this range.",
    width: int = 1040,
    height: int = 230,
    every: int = 1,
    first: int = 0,
) -> Markup:
    """A column per slot, its series stacked from the bottom in the given order, with a y axis and a legend.

    Args:
        slots: the slot labels (x axis), one per column.
        series: what is stacked; each has one value per slot.
        title: the chart's accessible name.
        desc: one sentence of what it shows.
        empty: the text drawn when every value is 0.
        width: drawing width in px.
        height: drawing height in px.
        every: label every n-th slot only (the labels stay readable with many slots).
        first: the first slot labelled (then every n-th after it).

    Returns:
        The ``<svg>`` element, every text escaped.
    """
    chart_id = f"c{next(_ids)}"
    parts = _open(chart_id, width, height, title, desc)
    totals = [sum(s.values[i] for s in series) for i in range(len(slots))]
    if not slots or max(totals, default=0) <= 0:
        return _empty(parts, width, height, empty)
    parts.append(_patterns(chart_id))
    left, right, top, bottom = 44, 8, 26, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = _nice_max(max(totals))
    scale = plot_h / top_value
    for fraction in (0.0, 0.5, 1.0):  # grid lines with their values
        y = top + plot_h - fraction * plot_h
        parts.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}"/>')
        tick = _number(top_value * fraction)
        parts.append(f'<text class="axis" x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{tick}</text>')
    step = plot_w / len(slots)
    bar_w = max(1.0, step * 0.78)
    for i, slot in enumerate(slots):
        x = left + i * step + (step - bar_w) / 2
        y = top + plot_h
        slot_text = _e(label(slot, 40))
        for s in series:
            value = s.values[i]
            if value <= 0:
                continue
            h = value * scale
            y -= h
            parts.append(
                f'<rect {_paint(chart_id, s.kind)} x="{x:.1f}" y="{y:.1f}" '
                f'width="{bar_w:.1f}" height="{h:.1f}"><title>{slot_text}: {_number(value)} {_e(s.name)}</title></rect>'
            )
        if (i - first) % every == 0:
            parts.append(
                f'<text class="axis" x="{x + bar_w / 2:.1f}" y="{height - 8}" text-anchor="middle">{slot_text}</text>'
            )
    x = left
    for s in series:  # the legend, in stacking order
        parts.append(f'<rect {_paint(chart_id, s.kind)} x="{x}" y="6" width="12" height="12"/>')
        name = _e(label(s.name, 20))
        parts.append(f'<text class="legend" x="{x + 16}" y="16">{name} ({_number(sum(s.values))})</text>')
        x += 24 + 8 * len(label(s.name, 20)) + 8 * len(_number(sum(s.values)))
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text above went through _e


def hbars(
    bars: Sequence[Bar],
    *,
    title: str,
    desc: str,
    empty: str = "Nothing in this range.",
    width: int = 370,
    row: int = 22,
    fmt: Callable[[float], str] = _number,
) -> Markup:
    """A horizontal bar per item, longest = full width, its label on the left and its value after it.

    Args:
        bars: the items, in the order drawn (the caller sorts).
        title: the chart's accessible name.
        desc: one sentence of what it shows.
        empty: the text drawn when there is no bar.
        width: drawing width in px.
        row: height of one bar's row in px.
        fmt: how a value is written (a bar's ``text`` wins).

    Returns:
        The ``<svg>`` element, every text escaped.
    """
    chart_id = f"c{next(_ids)}"
    height = max(60, row * len(bars) + 8)
    parts = _open(chart_id, width, height, title, desc)
    if not bars or max(b.value for b in bars) <= 0:
        return _empty(parts, width, height, empty)
    label_w, value_w = 150, 64
    plot_w = width - label_w - value_w
    top_value = max(b.value for b in bars)
    for i, bar in enumerate(bars):
        y = 4 + i * row
        w = max(1.0, bar.value / top_value * plot_w) if bar.value > 0 else 0.0
        name = _e(label(bar.label, 22))
        text = _e(bar.text if bar.text is not None else fmt(bar.value))
        parts.append(f'<text class="axis" x="{label_w - 6}" y="{y + row * 0.65:.1f}" text-anchor="end">{name}</text>')
        parts.append(
            f'<rect class="s-{_e(bar.kind)}" x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{row - 6}">'
            f"<title>{name}: {text}</title></rect>"
        )
        parts.append(f'<text class="value" x="{label_w + w + 4:.1f}" y="{y + row * 0.65:.1f}">{text}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text above went through _e
