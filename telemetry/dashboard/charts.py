"""Charts as inline SVG, rendered on the server. Pure functions of data to markup.

Why SVG from Python rather than a JavaScript chart library: the page paints with the HTML (no
script has to run before a chart shows), the same function draws the live pages and the
self-contained HTML reports, nothing is fetched from a CDN or vendored, and every point and
marker is an element a test can read from the DOM.

Every time chart is a ``<figure class="chart">`` whose attributes give its scales, so a reader
(the hover script, a test) maps pixels back to data:

- ``data-t0``, ``data-t1``: the time range (epoch ms) drawn between x = ``data-px0`` and ``data-px1``
  (SVG user units, the ``viewBox``);
- ``data-v0``, ``data-v1``: the values drawn at y = ``data-py1`` (bottom) and ``data-py0`` (top);
- each series is a ``<path data-series="name" data-n="points">`` whose ``d`` has one vertex per
  point (``M`` starts a run after a gap); its ``data-values`` holds ``[[t, v], ...]`` as JSON;
- bars are ``<rect data-t=... data-v=...>`` in a ``<g class="stack" data-series=...>``;
- each marker is a ``<g class="mark mark-<kind>" data-t="..." data-kind="...">`` with a
  vertical ``<line>`` at its time and a ``<title>``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

__all__ = [
    "WIDTH",
    "Band",
    "Line",
    "Mark",
    "Stack",
    "bar_chart",
    "esc",
    "fmt_value",
    "interval_chart",
    "nice_ticks",
    "sparkline",
    "time_chart",
    "time_ticks",
    "timeline",
]

WIDTH = 720
HEIGHT = 200
WIDE = 1280  # full-width figures (timeline, intervals, bars): text keeps its size on a wide page
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 58, 14, 12, 24


def esc(text: object) -> str:
    """``text`` escaped for HTML text and attribute values (quotes included)."""
    return html.escape(str(text), quote=True)


# -- number and time formats ------------------------------------------------------------------------
def _sig(value: float, digits: int = 3) -> str:
    if value == 0:
        return "0"
    exponent = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - exponent)
    return f"{value:,.{decimals}f}"


def fmt_value(value: float | None, fmt: str) -> str:
    """``value`` for a reader: ``pct`` (0.91 -> 91.0%), ``usd``, ``ms``, ``count``, ``ratio``."""
    if value is None or (isinstance(value, float) and (math.isnan(value) or math.isinf(value))):
        return "-"
    if fmt == "pct":
        return f"{100 * value:.1f}%"
    if fmt == "usd":
        return f"${_sig(value, 3)}" if abs(value) < 1 else f"${value:,.2f}"
    if fmt == "ms":
        return f"{value / 1000:.2f} s" if abs(value) >= 1000 else f"{value:.0f} ms"
    if fmt == "count":
        if abs(value) >= 1_000_000:
            return f"{value / 1_000_000:.1f}M"
        if abs(value) >= 10_000:
            return f"{value / 1000:.0f}k"
        return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"
    return _sig(value, 3)


def _tick_label(value: float, fmt: str, step: float) -> str:
    if fmt == "pct":
        decimals = max(0, -math.floor(math.log10(step * 100))) if step > 0 else 0
        return f"{100 * value:.{decimals}f}%"
    if fmt == "usd":
        decimals = max(0, -math.floor(math.log10(step))) if step > 0 else 2
        return f"${value:,.{decimals}f}"
    if fmt == "ms":
        return f"{value / 1000:g} s" if step >= 1000 else f"{value:,.0f} ms"
    return fmt_value(value, "count")


def nice_ticks(low: float, high: float, count: int = 4, *, integer: bool = False) -> tuple[float, float, float]:
    """``(start, stop, step)``: a 1-2-5 step and the range ``[low, high]`` widened to multiples of it
    (``integer``: a step of at least 1, for counts)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return 0.0, 1.0, 0.25
    if high <= low:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    if integer:
        step = max(1.0, math.ceil(step))
    return math.floor(low / step + 1e-9) * step, math.ceil(high / step - 1e-9) * step, step


_TIME_STEPS_MS = (60_000, 300_000, 900_000, 1_800_000, 3_600_000, 3 * 3_600_000, 6 * 3_600_000, 12 * 3_600_000,
                  86_400_000, 2 * 86_400_000, 7 * 86_400_000)  # fmt: skip


def time_ticks(t0: int, t1: int, count: int = 6) -> list[tuple[int, str]]:
    """Ticks on round UTC times between ``t0`` and ``t1``, labelled ``HH:MM`` or ``Mon DD``."""
    span = max(1, t1 - t0)
    step = next((s for s in _TIME_STEPS_MS if span / s <= count), _TIME_STEPS_MS[-1])
    first = -(-t0 // step) * step
    ticks = []
    for t in range(first, t1 + 1, step):
        when = datetime.fromtimestamp(t / 1000, UTC)
        label = when.strftime("%b %d") if step >= 86_400_000 or (when.hour == 0 and when.minute == 0) else when.strftime("%H:%M")
        ticks.append((t, label))
    return ticks


def _iso(t_ms: int) -> str:
    return datetime.fromtimestamp(t_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


# -- series -------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Line:
    """A line over time; None values break it. ``css`` names its color class (``c0`` .. ``c7``)."""

    name: str
    points: Sequence[tuple[int, float | None]]
    css: str = "c0"


@dataclass(frozen=True, slots=True)
class Band:
    """A shaded interval over time, ``(t, low, high)`` per point."""

    name: str
    points: Sequence[tuple[int, float, float]]
    css: str = "c0"


@dataclass(frozen=True, slots=True)
class Stack:
    """One layer of stacked bars: ``(bucket start, value)`` per bucket."""

    name: str
    points: Sequence[tuple[int, float | None]]
    css: str = "c0"


@dataclass(frozen=True, slots=True)
class Mark:
    """A vertical marker: ``kind`` picks its style (``firing``, ``resolved``, ``model``, ``tier-up``, ``gate``)."""

    t_ms: int
    kind: str
    label: str


@dataclass(frozen=True, slots=True)
class _Scale:
    t0: int
    t1: int
    v0: float
    v1: float
    px0: float = PAD_LEFT
    px1: float = WIDTH - PAD_RIGHT
    py0: float = PAD_TOP
    py1: float = HEIGHT - PAD_BOTTOM

    def x(self, t: float) -> float:
        return self.px0 + (t - self.t0) / max(1, self.t1 - self.t0) * (self.px1 - self.px0)

    def y(self, v: float) -> float:
        span = self.v1 - self.v0 or 1.0
        return self.py1 - (v - self.v0) / span * (self.py1 - self.py0)


def _f(value: float) -> str:
    return f"{value:.1f}"


def _path(scale: _Scale, points: Sequence[tuple[int, float | None]]) -> str:
    parts: list[str] = []
    pen_down = False
    for t, v in points:
        if v is None:
            pen_down = False
            continue
        parts.append(f"{'L' if pen_down else 'M'}{_f(scale.x(t))},{_f(scale.y(v))}")
        pen_down = True
    return " ".join(parts)


def _band_path(scale: _Scale, points: Sequence[tuple[int, float, float]], bucket_ms: int | None) -> str:
    runs: list[list[tuple[int, float, float]]] = []
    for p in points:
        if runs and bucket_ms and p[0] - runs[-1][-1][0] > bucket_ms:
            runs.append([p])
        elif runs:
            runs[-1].append(p)
        else:
            runs.append([p])
    shapes = []
    for run in runs:
        upper = [f"{_f(scale.x(t))},{_f(scale.y(hi))}" for t, _, hi in run]
        lower = [f"{_f(scale.x(t))},{_f(scale.y(lo))}" for t, lo, _ in reversed(run)]
        shapes.append("M" + " L".join(upper + lower) + " Z")
    return " ".join(shapes)


def _values_json(points: Sequence[tuple[int, float | None]]) -> str:
    return orjson.dumps([[t, None if v is None else round(v, 9)] for t, v in points]).decode()


def _legend(items: Sequence[tuple[str, str]]) -> str:
    return "".join(f'<span class="key"><i class="sw {esc(css)}"></i>{esc(name)}</span>' for name, css in items)


def _marks_svg(scale: _Scale, marks: Sequence[Mark]) -> str:
    out = []
    for m in marks:
        if not scale.t0 <= m.t_ms <= scale.t1:
            continue
        x = _f(scale.x(m.t_ms))
        out.append(
            f'<g class="mark mark-{esc(m.kind)}" data-t="{m.t_ms}" data-kind="{esc(m.kind)}">'
            f'<title>{esc(_iso(m.t_ms))}: {esc(m.label)}</title>'
            f'<line x1="{x}" x2="{x}" y1="{_f(scale.py0)}" y2="{_f(scale.py1)}"/>'
            f'<path class="flag" d="M{x},{_f(scale.py0 - 2)} l4,-5 l-8,0 z"/></g>'
        )  # fmt: skip
    return "".join(out)


def _axes(scale: _Scale, fmt: str, step: float) -> str:
    out = []
    v = scale.v0
    while v <= scale.v1 + step * 1e-6:
        y = _f(scale.y(v))
        out.append(f'<line class="grid" x1="{_f(scale.px0)}" x2="{_f(scale.px1)}" y1="{y}" y2="{y}"/>'
                   f'<text class="ylab" x="{_f(scale.px0 - 6)}" y="{y}" dy="0.32em">{esc(_tick_label(v, fmt, step))}</text>')  # fmt: skip
        v += step
    for t, label in time_ticks(scale.t0, scale.t1):
        x = _f(scale.x(t))
        out.append(f'<line class="tick" x1="{x}" x2="{x}" y1="{_f(scale.py1)}" y2="{_f(scale.py1 + 4)}"/>'
                   f'<text class="xlab" x="{x}" y="{_f(scale.py1 + 16)}">{esc(label)}</text>')  # fmt: skip
    out.append(f'<line class="axis" x1="{_f(scale.px0)}" x2="{_f(scale.px1)}" y1="{_f(scale.py1)}" y2="{_f(scale.py1)}"/>')
    return "".join(out)


def time_chart(chart_id: str, title: str, *, t0: int, t1: int, lines: Sequence[Line] = (), bands: Sequence[Band] = (),
               stacks: Sequence[Stack] = (), bucket_ms: int | None = None, marks: Sequence[Mark] = (),
               fmt: str = "count", zero: bool = True, ceiling: float | None = None, subtitle: str = "",
               empty: str = "no data in this window") -> str:  # fmt: skip
    """A time chart over ``[t0, t1)``: bands under lines, or stacked bars (``bucket_ms`` wide), and markers.

    ``zero``: the value axis starts at 0; ``ceiling`` caps it (1.0 for rates). ``fmt`` formats
    values (:func:`fmt_value`)."""
    values: list[float] = [v for s in lines for _, v in s.points if v is not None]
    values += [x for b in bands for _, lo, hi in b.points for x in (lo, hi)]
    totals: dict[int, float] = {}
    for s in stacks:
        for t, v in s.points:
            totals[t] = totals.get(t, 0.0) + (v or 0.0)
    values += list(totals.values())
    has_data = bool(values)
    low = min(values) if values else 0.0
    high = max(values) if values else 1.0
    if zero:
        low = min(0.0, low)
    v0, v1, step = nice_ticks(low, high, integer=fmt == "count")
    if ceiling is not None:
        v1 = min(v1, ceiling) if v1 > ceiling and high <= ceiling else v1
        v0 = max(v0, 0.0) if low >= 0 else v0
        if v1 <= v0:
            v1 = v0 + step
    scale = _Scale(t0, t1, v0, v1)
    body: list[str] = [_axes(scale, fmt, step)]
    for b in bands:
        body.append(f'<path class="band {esc(b.css)}" data-series="{esc(b.name)}" data-n="{len(b.points)}" '
                    f'd="{_band_path(scale, b.points, bucket_ms)}"/>')  # fmt: skip
    if stacks:
        width = scale.x(t0 + (bucket_ms or 60_000)) - scale.x(t0)
        base: dict[int, float] = {}
        for s in stacks:
            rects = []
            for t, v in s.points:
                if not v:
                    continue
                y_low = base.get(t, 0.0)
                base[t] = y_low + v
                top, bottom = scale.y(y_low + v), scale.y(y_low)
                rects.append(f'<rect x="{_f(scale.x(t) + 0.5)}" y="{_f(top)}" width="{_f(max(0.8, width - 1))}" '
                             f'height="{_f(max(0.0, bottom - top))}" data-t="{t}" data-v="{v:g}"/>')  # fmt: skip
            body.append(f'<g class="stack {esc(s.css)}" data-series="{esc(s.name)}" data-n="{len(rects)}" '
                        f'data-values="{esc(_values_json(s.points))}">{"".join(rects)}</g>')  # fmt: skip
    for line in lines:
        pts = line.points
        present = [(t, v) for t, v in pts if v is not None]
        body.append(f'<path class="line {esc(line.css)}" data-series="{esc(line.name)}" data-n="{len(present)}" '
                    f'data-values="{esc(_values_json(pts))}" d="{_path(scale, pts)}"/>')  # fmt: skip
        lonely = [(t, v) for i, (t, v) in enumerate(pts) if v is not None
                  and (i == 0 or pts[i - 1][1] is None) and (i + 1 == len(pts) or pts[i + 1][1] is None)]  # fmt: skip
        body += [f'<circle class="dot {esc(line.css)}" cx="{_f(scale.x(t))}" cy="{_f(scale.y(v))}" r="2"/>' for t, v in lonely]
    body.append(_marks_svg(scale, marks))
    if not has_data:
        body.append(f'<text class="empty" x="{WIDTH / 2:.0f}" y="{HEIGHT / 2:.0f}">{esc(empty)}</text>')
    body.append(f'<line class="cursor" x1="0" x2="0" y1="{_f(scale.py0)}" y2="{_f(scale.py1)}"/>')
    keys = [(b.name, f"{b.css} band") for b in bands] + [(s.name, s.css) for s in stacks] + [(x.name, x.css) for x in lines]
    sub = f'<span class="sub">{esc(subtitle)}</span>' if subtitle else ""
    return (
        f'<figure class="chart" id="{esc(chart_id)}" data-chart="{esc(chart_id)}" data-fmt="{esc(fmt)}" '
        f'data-t0="{t0}" data-t1="{t1}" data-v0="{v0:.12g}" data-v1="{v1:.12g}" data-px0="{scale.px0:g}" '
        f'data-px1="{scale.px1:g}" data-py0="{scale.py0:g}" data-py1="{scale.py1:g}" data-bucket="{bucket_ms or 0}">'
        f'<figcaption><span class="title">{esc(title)}</span>{sub}<span class="legend">{_legend(keys)}</span></figcaption>'
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{esc(title)}">'
        f'{"".join(body)}</svg><div class="tip" hidden></div></figure>'
    )


def sparkline(spark_id: str, series: Sequence[tuple[str, Sequence[tuple[int, float | None]], str]], *, t0: int, t1: int,
              width: int = 132, height: int = 30, title: str = "") -> str:  # fmt: skip
    """Small lines (``(name, points, css)``), each scaled to its own min..max: the shape, not the level."""
    paths = []
    for name, points, css in series:
        vals = [v for _, v in points if v is not None]
        lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
        if hi - lo < 1e-12:
            lo, hi = lo - 1.0, hi + 1.0
        scale = _Scale(t0, t1, lo, hi, 2, width - 2, 3, height - 3)
        paths.append(f'<path class="spark {esc(css)}" data-series="{esc(name)}" data-n="{len(vals)}" '
                     f'data-values="{esc(_values_json(points))}" d="{_path(scale, points)}"/>')  # fmt: skip
    return (f'<svg class="sparkline" id="{esc(spark_id)}" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-label="{esc(title)}"><title>{esc(title)}</title>{"".join(paths)}</svg>')  # fmt: skip


def timeline(chart_id: str, title: str, lanes: Sequence[tuple[str, Sequence[tuple[int, int | None, str, str]]]], *,
             t0: int, t1: int, empty: str = "no alerts in this window") -> str:  # fmt: skip
    """One lane per label; a bar per ``(start, end or None = still open, css, tooltip)`` clipped to the window."""
    label_w, lane_h = 300, 22
    height = max(1, len(lanes)) * lane_h + PAD_BOTTOM + 6
    scale = _Scale(t0, t1, 0, 1, label_w, WIDE - PAD_RIGHT, 4, height - PAD_BOTTOM)
    body = []
    for t, label in time_ticks(t0, t1):
        x = _f(scale.x(t))
        body.append(f'<line class="grid" x1="{x}" x2="{x}" y1="4" y2="{_f(scale.py1)}"/>'
                    f'<text class="xlab" x="{x}" y="{_f(scale.py1 + 16)}">{esc(label)}</text>')  # fmt: skip
    for i, (label, bars) in enumerate(lanes):
        y = 4 + i * lane_h
        short = label if len(label) <= 44 else label[:43] + "…"
        body.append(f'<text class="lane" x="{label_w - 8}" y="{y + lane_h / 2:.1f}" dy="0.32em"><title>{esc(label)}</title>{esc(short)}</text>')
        for start, end, css, tip in bars:
            a, b = max(start, t0), min(end if end is not None else t1, t1)
            if b < a:
                continue
            x0, x1 = scale.x(a), scale.x(b)
            body.append(f'<rect class="span {esc(css)}" x="{_f(x0)}" y="{y + 4}" width="{_f(max(2.0, x1 - x0))}" '
                        f'height="{lane_h - 8}" data-t0="{start}" data-t1="{end if end is not None else ""}" '
                        f'data-lane="{esc(label)}"><title>{esc(tip)}</title></rect>')  # fmt: skip
    if not lanes:
        body.append(f'<text class="empty" x="{WIDE / 2:.0f}" y="{height / 2:.0f}">{esc(empty)}</text>')
    return (f'<figure class="chart timeline" id="{esc(chart_id)}" data-chart="{esc(chart_id)}" data-t0="{t0}" '
            f'data-t1="{t1}" data-px0="{scale.px0:g}" data-px1="{scale.px1:g}"><figcaption><span class="title">'
            f'{esc(title)}</span></figcaption><svg viewBox="0 0 {WIDE} {height}" role="img" aria-label="{esc(title)}">'
            f'{"".join(body)}</svg></figure>')  # fmt: skip


def interval_chart(chart_id: str, title: str, rows: Sequence[tuple[str, float | None, float | None, float | None]], *,
                   fmt: str = "pct", target: float | None = None) -> str:  # fmt: skip
    """Horizontal dot-and-whisker rows ``(label, value, low, high)`` on a 0..1 axis (pass rates and
    their 95% intervals); ``target`` draws a dashed reference line."""
    label_w, row_h = 300, 26
    height = len(rows) * row_h + PAD_BOTTOM + 8
    scale = _Scale(0, 1, 0, 1, label_w, WIDE - PAD_RIGHT, 4, height - PAD_BOTTOM)
    body = []
    for i in range(0, 11, 2):
        x = _f(label_w + i / 10 * (scale.px1 - label_w))
        body.append(f'<line class="grid" x1="{x}" x2="{x}" y1="4" y2="{_f(scale.py1)}"/>'
                    f'<text class="xlab" x="{x}" y="{_f(scale.py1 + 16)}">{i * 10}%</text>')  # fmt: skip

    def px(v: float) -> float:
        return label_w + max(0.0, min(1.0, v)) * (scale.px1 - label_w)

    for i, (label, value, low, high) in enumerate(rows):
        y = 4 + i * row_h + row_h / 2
        body.append(f'<text class="lane" x="{label_w - 8}" y="{y:.1f}" dy="0.32em">{esc(label)}</text>')
        if low is not None and high is not None:
            body.append(f'<line class="whisker" x1="{_f(px(low))}" x2="{_f(px(high))}" y1="{y:.1f}" y2="{y:.1f}"/>')
        if value is not None:
            body.append(f'<circle class="point" cx="{_f(px(value))}" cy="{y:.1f}" r="4" data-label="{esc(label)}" '
                        f'data-v="{value:g}"><title>{esc(label)}: {esc(fmt_value(value, fmt))} '
                        f'[{esc(fmt_value(low, fmt))}, {esc(fmt_value(high, fmt))}]</title></circle>')  # fmt: skip
    if target is not None:
        x = _f(px(target))
        body.append(f'<line class="target" x1="{x}" x2="{x}" y1="2" y2="{_f(scale.py1)}"><title>target '
                    f'{esc(fmt_value(target, fmt))}</title></line>')  # fmt: skip
    return (f'<figure class="chart intervals" id="{esc(chart_id)}" data-chart="{esc(chart_id)}"><figcaption>'
            f'<span class="title">{esc(title)}</span></figcaption><svg viewBox="0 0 {WIDE} {height}" role="img" '
            f'aria-label="{esc(title)}">{"".join(body)}</svg></figure>')  # fmt: skip


def bar_chart(chart_id: str, title: str, rows: Sequence[tuple[str, float | None, str]], *, fmt: str = "usd",
              value_text: Callable[[float | None], str] | None = None) -> str:  # fmt: skip
    """Horizontal bars ``(label, value, css)`` from 0; None is shown as "unknown", never as 0."""
    label_w, row_h = 300, 26
    height = len(rows) * row_h + 10
    known = [v for _, v, _ in rows if v is not None]
    top = max(known) if known else 1.0
    _, v1, _ = nice_ticks(0.0, top if top > 0 else 1.0)
    span = WIDE - PAD_RIGHT - 120 - label_w
    text = value_text or (lambda v: fmt_value(v, fmt))
    body = []
    for i, (label, value, css) in enumerate(rows):
        y = 4 + i * row_h
        body.append(f'<text class="lane" x="{label_w - 8}" y="{y + row_h / 2:.1f}" dy="0.32em">{esc(label)}</text>')
        if value is None:
            body.append(f'<text class="value unknown" x="{label_w + 4}" y="{y + row_h / 2:.1f}" dy="0.32em">unknown</text>')
            continue
        w = max(0.0, value) / v1 * span if v1 > 0 else 0.0
        body.append(f'<rect class="bar {esc(css)}" x="{label_w}" y="{y + 5}" width="{_f(w)}" height="{row_h - 10}" '
                    f'data-label="{esc(label)}" data-v="{value:g}"/><text class="value" x="{_f(label_w + w + 6)}" '
                    f'y="{y + row_h / 2:.1f}" dy="0.32em">{esc(text(value))}</text>')  # fmt: skip
    return (f'<figure class="chart bars" id="{esc(chart_id)}" data-chart="{esc(chart_id)}"><figcaption>'
            f'<span class="title">{esc(title)}</span></figcaption><svg viewBox="0 0 {WIDE} {height}" role="img" '
            f'aria-label="{esc(title)}">{"".join(body)}</svg></figure>')  # fmt: skip
