"""Inline SVG charts for the gallery's pages, drawn to read like a paper's figure panels.

Every chart is a standalone ``<svg xmlns=...>`` element (valid XML, so it
parses with :mod:`xml.etree.ElementTree`) with a title, labelled axes, ticks
at round values (:func:`nice_ticks`) and, where it applies, a reference line
(the blank-screen baseline) and a marked value (the preferred orientation).

Example
-------
>>> svg = svg_curve([0, 45, 90, 135], [1.0, 3.0, 1.0, 0.5], "orientation (°)", "tuning", baseline=0.8,
...                 mark=(45, "preferred 45°"), x_range=(0, 180), x_ticks=[0, 45, 90, 135, 180])
>>> import xml.etree.ElementTree as ET
>>> ET.fromstring(svg).tag
'{http://www.w3.org/2000/svg}svg'
>>> nice_ticks(0, 13.2)
[0.0, 5.0, 10.0, 15.0]
"""
from __future__ import annotations

import math
from html import escape

import numpy as np

SVG = 'xmlns="http://www.w3.org/2000/svg"'
BLUE, RED, GREEN, GREY = "#1a5fb4", "#c0392b", "#2a9d3a", "#888"


def nice_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """About ``n`` round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) covering ``[lo, hi]``."""
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(n - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw * 0.999)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [float(round(k * step, 12)) for k in range(first, last + 1)]


def _label(value: float) -> str:
    return f"{value:.3g}" if value != 0 else "0"


def log2_ticks(lo: float, hi: float) -> list[float]:
    """Powers of two within ``[lo, hi]`` (the ends too when fewer than three fall inside)."""
    ticks = [2.0 ** k for k in range(math.ceil(math.log2(lo) - 1e-9), math.floor(math.log2(hi) + 1e-9) + 1)]
    return ticks if len(ticks) >= 3 else sorted(set(ticks) | {lo, hi})


def svg_curve(xs, ys, xlabel: str, title: str, log_x: bool = False, width: int = 300, height: int = 200,
              baseline: float | None = None, ylabel: str = "response", mark: tuple[float, str] | None = None,
              x_range: tuple | None = None, x_ticks=None) -> str:
    """A tuning curve: line and dots (None values skipped), labelled axes with round ticks.

    Parameters
    ----------
    xs, ys : sequences
        The curve; ``log_x`` draws x on a log2 axis (ticks at powers of two).
    xlabel, ylabel, title : str
        Axis labels (say the units) and the panel's title.
    baseline : float, optional
        Drawn dashed and labelled "blank" (the response to a blank grey screen).
    mark : (float, str), optional
        An x value drawn as a vertical line, and its label (the preferred orientation).
    x_range, x_ticks : optional
        The x axis's extent and tick values (default: the data's extent, round ticks).
    """
    points = [(float(x), float(y)) for x, y in zip(xs, ys) if y is not None and math.isfinite(float(y))]
    if len(points) < 2:
        return '<p class="missing">no response</p>'
    fx = (lambda v: math.log2(v)) if log_x else (lambda v: v)
    x_lo, x_hi = x_range or (min(p[0] for p in points), max(p[0] for p in points))
    if x_ticks is None:
        x_ticks = log2_ticks(x_lo, x_hi) if log_x else nice_ticks(x_lo, x_hi)
        x_ticks = [t for t in x_ticks if x_lo - 1e-9 <= t <= x_hi + 1e-9]
    values = [p[1] for p in points] + [0.0] + ([baseline] if baseline is not None else [])
    y_ticks = nice_ticks(min(values), max(values))
    y_lo, y_hi = y_ticks[0], y_ticks[-1]
    left, right, top, bottom = 48, 14, 24, 40
    pw, ph = width - left - right, height - top - bottom

    def X(v):
        return left + (fx(v) - fx(x_lo)) / max(fx(x_hi) - fx(x_lo), 1e-12) * pw

    def Y(v):
        return top + ph - (v - y_lo) / max(y_hi - y_lo, 1e-12) * ph

    parts = [f'<text x="{left + pw / 2:.1f}" y="14" text-anchor="middle" font-weight="bold">{escape(title)}</text>']
    for t in y_ticks:
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{Y(t):.1f}" y2="{Y(t):.1f}" stroke="#eee"/>'
                     f'<line x1="{left - 4}" x2="{left}" y1="{Y(t):.1f}" y2="{Y(t):.1f}" stroke="#444"/>'
                     f'<text x="{left - 6}" y="{Y(t) + 3.5:.1f}" text-anchor="end">{_label(t)}</text>')
    for t in x_ticks:
        parts.append(f'<line x1="{X(t):.1f}" x2="{X(t):.1f}" y1="{top + ph}" y2="{top + ph + 4}" stroke="#444"/>'
                     f'<text x="{X(t):.1f}" y="{top + ph + 15}" text-anchor="middle">{_label(t)}</text>')
    if y_lo < 0 < y_hi:
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{Y(0):.1f}" y2="{Y(0):.1f}" stroke="#999"/>')
    if baseline is not None:
        parts.append(f'<line class="baseline" x1="{left}" x2="{left + pw}" y1="{Y(baseline):.1f}" '
                     f'y2="{Y(baseline):.1f}" stroke="{RED}" stroke-dasharray="4 3"/>'
                     f'<text x="{left + pw - 2}" y="{Y(baseline) - 3:.1f}" text-anchor="end" fill="{RED}">blank</text>')
    mark, mark_label = mark if mark is not None else (None, "")
    if mark is not None and x_lo <= mark <= x_hi:
        parts.append(f'<line class="mark" x1="{X(mark):.1f}" x2="{X(mark):.1f}" y1="{top}" y2="{top + ph}" '
                     f'stroke="{GREEN}" stroke-width="1.5" stroke-dasharray="2 2"/>'
                     f'<text x="{X(mark) + (3 if X(mark) < left + pw / 2 else -3):.1f}" y="{top + 9}" '
                     f'text-anchor="{"start" if X(mark) < left + pw / 2 else "end"}" fill="{GREEN}">'
                     f'{escape(mark_label)}</text>')
    coords = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in points)
    dots = "".join(f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="2.4"/>' for x, y in points)
    parts.append(f'<polyline points="{coords}" fill="none" stroke="{BLUE}" stroke-width="1.6"/>'
                 f'<g fill="{BLUE}">{dots}</g>')
    parts.append(f'<path d="M{left},{top} V{top + ph} H{left + pw}" fill="none" stroke="#444"/>'
                 f'<text x="{left + pw / 2:.1f}" y="{height - 6}" text-anchor="middle">{escape(xlabel)}</text>'
                 f'<text transform="translate(12 {top + ph / 2:.1f}) rotate(-90)" text-anchor="middle">'
                 f'{escape(ylabel)}</text>')
    return (f'<svg {SVG} class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'font-size="10" role="img" aria-label="{escape(title)}">{"".join(parts)}</svg>')


def svg_bars(labels, values, title: str, width: int = 560, row: int = 13, scale: float | None = None,
             xlabel: str = "", intervals=None, solid=None) -> str:
    """Horizontal bars around zero, one per label, on a fixed ``scale``.

    ``scale``: the value drawn at full half-width (default: the largest ``|value|`` here). Give the same scale
    to every chart of a layer and their bars compare; an axis at the bottom shows ``-scale .. +scale``.
    ``intervals``: ``(low, high)`` per bar (None entries: none), drawn as a whisker (clipped to the scale);
    ``solid``: per bar, False draws it hollow (e.g. its interval includes 0), with its value in grey.

    >>> import xml.etree.ElementTree as ET
    >>> svg = ET.fromstring(svg_bars(["a", "b"], [0.2, -0.1], "t", intervals=[(0.1, 0.3), (-0.2, 0.05)],
    ...                              solid=[True, False]))
    >>> [r.get("fill") for r in svg.iter("{http://www.w3.org/2000/svg}rect")]
    ['#2a9d3a', 'none']
    """
    vals = np.array([0.0 if v is None else float(v) for v in values])
    scale = float(scale) if scale else float(np.abs(vals).max()) or 1e-9
    scale = max(scale, 1e-12)
    top = 22
    height = top + row * len(vals) + 36
    mid, half = width * 0.55, width * 0.3
    at = lambda v: mid + max(-scale, min(scale, v)) / scale * half  # noqa: E731 - an x on the clipped axis
    bars = []
    for i, (label, v) in enumerate(zip(labels, vals)):
        y = top + i * row
        w = min(abs(v), scale) / scale * half
        x0 = mid if v >= 0 else mid - w
        colour = GREEN if v >= 0 else RED
        full = solid is None or bool(solid[i])
        paint = f'fill="{colour}"' if full else f'fill="none" stroke="{colour}" stroke-width="1"'
        shade = "" if full else f' fill="{GREY}"'
        ci = intervals[i] if intervals is not None else None
        whisker = ""
        if ci is not None and None not in tuple(ci):
            lo, hi = at(float(ci[0])), at(float(ci[1]))
            whisker = (f'<line x1="{lo:.1f}" x2="{hi:.1f}" y1="{y + (row - 3) / 2:.1f}" y2="{y + (row - 3) / 2:.1f}" '
                       f'stroke="#222"/><line x1="{lo:.1f}" x2="{lo:.1f}" y1="{y + 1}" y2="{y + row - 4}" stroke="#222"/>'
                       f'<line x1="{hi:.1f}" x2="{hi:.1f}" y1="{y + 1}" y2="{y + row - 4}" stroke="#222"/>')
        bars.append(f'<text x="{mid - half - 8:.0f}" y="{y + 9}" text-anchor="end">{escape(str(label))}</text>'
                    f'<rect x="{x0:.1f}" y="{y}" width="{max(w, 0.5):.1f}" height="{row - 3}" {paint}/>{whisker}'
                    f'<text x="{width - 4}" y="{y + 9}" text-anchor="end"{shade}>'
                    f'{v:+.3f}</text>')
    axis_y = top + row * len(vals) + 2
    ticks = []
    for t in [t for t in nice_ticks(-scale, scale, 9) if abs(t) <= scale * (1 + 1e-9)]:
        x = mid + t / scale * half
        ticks.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{axis_y}" y2="{axis_y + 4}" stroke="#444"/>'
                     f'<text x="{x:.1f}" y="{axis_y + 14}" text-anchor="middle">{_label(t)}</text>')
    return (f'<svg {SVG} class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'font-size="10" role="img" aria-label="{escape(title)}">'
            f'<text x="{width / 2}" y="13" text-anchor="middle" font-weight="bold">{escape(title)}</text>'
            f'<line x1="{mid}" x2="{mid}" y1="{top - 4}" y2="{axis_y}" stroke="{GREY}"/>{"".join(bars)}'
            f'<line x1="{mid - half:.1f}" x2="{mid + half:.1f}" y1="{axis_y}" y2="{axis_y}" stroke="#444"/>'
            f'{"".join(ticks)}<text x="{mid:.1f}" y="{height - 4}" text-anchor="middle">{escape(xlabel)}</text></svg>')


__all__ = ["log2_ticks", "nice_ticks", "svg_bars", "svg_curve"]
