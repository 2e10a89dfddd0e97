"""Inline SVG figures for the gallery's layer and model pages: histograms, scatter, bars with a band, strips.

Hand-drawn SVG rather than matplotlib PNGs: a layer page has a dozen small
panels and a site has hundreds of pages, and SVG text costs nothing to render
here, stays sharp at any zoom and needs no image file next to the page (the
site opens from ``file://``). Tick positions come from matplotlib's
:class:`~matplotlib.ticker.MaxNLocator`. Every function returns one ``<svg>``
string with a title, labelled axes and ticks; reference ranges are drawn as a
red band or red dashed lines with a legend line under the title.

Example
-------
>>> svg = histogram([0.1, 0.2, 0.25, 0.9], bins=[0, 0.25, 0.5, 0.75, 1], xlabel="OSI", title="OSI")
>>> svg.startswith("<svg") and svg.count("<rect") == 3          # bins with 2, 1, 0 and 1 values
True
"""
from __future__ import annotations

from html import escape
from typing import Sequence

import numpy as np

FILL, REF, BEST, INK = "#5c7fa8", "#c0392b", "#e08a1e", "#333"


def ticks(lo: float, hi: float, n: int = 5, log: bool = False, integer: bool = False) -> list[float]:
    """Round tick values within [lo, hi] (powers of 2 on a log axis; whole numbers with ``integer``)."""
    if log:
        a, b = np.floor(np.log2(lo)), np.ceil(np.log2(hi))
        step = max(1, int(np.ceil((b - a) / n)))
        return [float(2 ** k) for k in np.arange(a, b + 1, step) if lo * 0.999 <= 2 ** k <= hi * 1.001]
    from matplotlib.ticker import MaxNLocator

    return [float(t) for t in MaxNLocator(n, integer=integer).tick_values(lo, hi) if lo - 1e-9 * abs(hi - lo) <= t <= hi + 1e-9 * abs(hi - lo)]


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.2g}"


class _Frame:
    """Axes of a small panel: data -> pixel maps, ticks, labels."""

    def __init__(self, width, height, xlim, ylim, log_x=False, left=40, right=10, top=30, bottom=34):
        self.w, self.h, self.log_x = width, height, log_x
        self.l, self.r, self.t, self.b = left, right, top, bottom
        self.xlim, self.ylim = xlim, ylim
        self.parts: list[str] = []

    def _u(self, x):
        return np.log2(x) if self.log_x else x

    def x(self, v) -> float:
        a, b = self._u(self.xlim[0]), self._u(self.xlim[1])
        return self.l + (self._u(v) - a) / max(b - a, 1e-12) * (self.w - self.l - self.r)

    def y(self, v) -> float:
        a, b = self.ylim
        return self.h - self.b - (v - a) / max(b - a, 1e-12) * (self.h - self.t - self.b)

    def add(self, text: str) -> None:
        self.parts.append(text)

    def axes(self, xlabel: str, ylabel: str, xticks=None, yticks=None, xtick_labels=None) -> None:
        x0, x1, y0 = self.l, self.w - self.r, self.h - self.b
        self.add(f'<line x1="{x0}" x2="{x1}" y1="{y0}" y2="{y0}" stroke="{INK}"/>'
                 f'<line x1="{x0}" x2="{x0}" y1="{self.t}" y2="{y0}" stroke="{INK}"/>')
        xticks = ticks(*self.xlim, log=self.log_x) if xticks is None else xticks
        for i, t in enumerate(xticks):
            px = self.x(t)
            label = xtick_labels[i] if xtick_labels else _fmt(t)
            self.add(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{y0}" y2="{y0 + 3}" stroke="{INK}"/>'
                     f'<text x="{px:.1f}" y="{y0 + 12}" text-anchor="middle">{escape(label)}</text>')
        for t in ticks(*self.ylim, n=4) if yticks is None else yticks:
            py = self.y(t)
            self.add(f'<line x1="{x0 - 3}" x2="{x0}" y1="{py:.1f}" y2="{py:.1f}" stroke="{INK}"/>'
                     f'<text x="{x0 - 5}" y="{py + 3:.1f}" text-anchor="end">{_fmt(t)}</text>')
        self.add(f'<text x="{(x0 + x1) / 2:.0f}" y="{self.h - 4}" text-anchor="middle">{escape(xlabel)}</text>'
                 f'<text transform="translate(10 {(self.t + y0) / 2:.0f}) rotate(-90)" text-anchor="middle">'
                 f"{escape(ylabel)}</text>")

    def svg(self, title: str, note: str | None = None, label: str = "") -> str:
        head = f'<text x="{self.w / 2:.0f}" y="12" text-anchor="middle" font-weight="bold">{escape(title)}</text>'
        if note:
            head += f'<text x="{self.w / 2:.0f}" y="24" text-anchor="middle" fill="{REF}">{escape(note)}</text>'
        aria = escape(label or title)
        return (f'<svg class="fig" width="{self.w}" height="{self.h}" viewBox="0 0 {self.w} {self.h}" font-size="10" '
                f'role="img" aria-label="{aria}">{head}{"".join(self.parts)}</svg>')


def _finite(values) -> np.ndarray:
    v = np.array([np.nan if x is None else float(x) for x in values], float)
    return v[np.isfinite(v)]


#: Width (px) of one character of a figure's 10-px sans-serif text, rounded up (Chromium measures 4.9 to 5.2).
CHAR_WIDTH = 5.4


def fits(text: str | None, width: int) -> int:
    """``width``, or wider where one line of ``text`` (a title or note) would not fit in it.

    >>> fits("V1: median 40° full width over all cells, untuned ones too [1]; this layer so: 120°", 270)
    464
    """
    return max(width, int(CHAR_WIDTH * len(text or "")) + 16)


def histogram(values: Sequence, bins: Sequence[float], xlabel: str, title: str, log_x: bool = False,
              band: tuple | None = None, lines: Sequence[float] = (), note: str | None = None,
              width: int = 270, height: int = 175, xticks=None) -> str:
    """Counts of ``values`` (None/NaN dropped) in ``bins`` (edges); ``band`` = (lo, hi): a shaded reference
    range, ``lines``: dashed reference values, ``note``: the reference's legend (red, under the title; the figure
    widens to fit it, :func:`fits`, since an SVG cuts a centred line wider than itself at both ends)."""
    width = fits(note, width)
    v = _finite(values)
    edges = np.asarray(bins, float)
    counts, _ = np.histogram(np.clip(v, edges[0], edges[-1]), edges)
    f = _Frame(width, height, (edges[0], edges[-1]), (0, max(1, counts.max())), log_x=log_x,
               top=30 if note else 20)
    if band is not None:
        a, b = max(band[0], edges[0]), min(band[1], edges[-1])
        f.add(f'<rect x="{f.x(a):.1f}" y="{f.t}" width="{max(f.x(b) - f.x(a), 1):.1f}" '
              f'height="{f.h - f.t - f.b}" fill="{REF}" opacity="0.13"/>')
    for a, b, n in zip(edges[:-1], edges[1:], counts):
        if n:
            f.add(f'<rect x="{f.x(a) + 0.5:.1f}" y="{f.y(n):.1f}" width="{max(f.x(b) - f.x(a) - 1, 0.5):.1f}" '
                  f'height="{f.y(0) - f.y(n):.1f}" fill="{FILL}"><title>{_fmt(a)}–{_fmt(b)}: {n}</title></rect>')
    for line in lines:
        px = f.x(line)
        f.add(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{f.t}" y2="{f.h - f.b}" stroke="{REF}" stroke-dasharray="4 3"/>')
    f.axes(xlabel, "units", xticks=xticks, yticks=ticks(0, max(1, counts.max()), n=4, integer=True))
    if not len(v):
        f.add(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#888">no units</text>')
    return f.svg(f"{title} (n = {len(v)})", note)


def scatter(xs: Sequence, ys: Sequence, xlabel: str, ylabel: str, title: str, diagonal: bool = True,
            links: Sequence[str] | None = None, labels: Sequence[str] | None = None, width: int = 270,
            height: int = 215, note: str | None = None) -> str:
    """Points (x, y), skipped where either is None; ``diagonal``: the line y = x and equal axes;
    ``links``: one href per point (the dot links there)."""
    pts = [(float(x), float(y), i) for i, (x, y) in enumerate(zip(xs, ys))
           if x is not None and y is not None and np.isfinite(float(x)) and np.isfinite(float(y))]
    if not pts:
        return f'<p class="missing">{escape(title)}: no values</p>'
    px, py = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    lo, hi = min(px.min(), py.min(), 0.0), max(px.max(), py.max())
    pad = 0.05 * max(hi - lo, 1e-9)
    xlim = (lo - pad, hi + pad) if diagonal else (px.min() - pad, px.max() + pad)
    ylim = (lo - pad, hi + pad) if diagonal else (py.min() - pad, py.max() + pad)
    f = _Frame(width, height, xlim, ylim, left=44, top=30 if note else 20)
    if diagonal:
        f.add(f'<line x1="{f.x(xlim[0]):.1f}" y1="{f.y(xlim[0]):.1f}" x2="{f.x(xlim[1]):.1f}" y2="{f.y(xlim[1]):.1f}" '
              f'stroke="{REF}" stroke-dasharray="4 3"/>')
    for x, y, i in pts:
        tip = escape(labels[i]) if labels else f"{_fmt(x)}, {_fmt(y)}"
        dot = f'<circle cx="{f.x(x):.1f}" cy="{f.y(y):.1f}" r="2.6" fill="{FILL}" opacity="0.75"><title>{tip}</title></circle>'
        f.add(f'<a href="{escape(links[i])}">{dot}</a>' if links else dot)
    f.axes(xlabel, ylabel)
    return f.svg(title, note)


def stacked(parts: Sequence[tuple[str, int, str]], title: str, width: int = 520, height: int = 58) -> str:
    """One horizontal bar split into ``(label, count, colour)`` parts, with a legend under it."""
    total = max(sum(n for _, n, _ in parts), 1)
    legend, lx = [], 10.0
    for label, n, colour in parts:
        text = f"{label}: {n} ({100 * n / total:.0f}%)"
        legend.append(f'<rect x="{lx:.0f}" y="40" width="9" height="9" fill="{colour}"/>'
                      f'<text x="{lx + 12:.0f}" y="48">{escape(text)}</text>')
        lx += 22 + 5.6 * len(text)
    width = max(width, int(lx))
    x, bars = 10.0, []
    for label, n, colour in parts:
        w = (width - 20) * n / total
        if n:
            bars.append(f'<rect x="{x:.1f}" y="18" width="{w:.1f}" height="14" fill="{colour}">'
                        f"<title>{escape(label)}: {n}</title></rect>")
        x += w
    return (f'<svg class="fig" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-size="10" '
            f'role="img" aria-label="{escape(title)}"><text x="10" y="12" font-weight="bold">{escape(title)}</text>'
            f'{"".join(bars)}{"".join(legend)}</svg>')


def layer_bars(names: Sequence[str], values: Sequence[float], cis: Sequence | None, title: str, ylabel: str,
               band: tuple | None = None, band_label: str = "", best: int | None = None, note: str | None = None,
               width: int = 460, height: int = 260) -> str:
    """One bar per layer (in depth order) with optional error bars ``cis`` [(lo, hi)], a grey band
    (e.g. a noise ceiling) and the ``best`` bar highlighted."""
    vals = np.array([np.nan if v is None else v for v in values], float)
    lows = [c[0] for c in cis] if cis is not None else []
    highs = [c[1] for c in cis] if cis is not None else []
    top = np.nanmax([*vals, *highs, *(band or ()), 0.05])
    bottom = min(np.nanmin([*vals, *lows, 0.0]), 0.0)
    f = _Frame(width, height, (0, len(vals)), (bottom, top * 1.08), left=46, bottom=64, top=30 if note else 20)
    if band is not None:
        f.add(f'<rect x="{f.l}" y="{f.y(band[1]):.1f}" width="{f.w - f.l - f.r}" '
              f'height="{f.y(band[0]) - f.y(band[1]):.1f}" fill="#999" opacity="0.3"><title>{escape(band_label)}: '
              f'{band[0]:.3f}–{band[1]:.3f}</title></rect>'
              f'<text x="{f.w - f.r - 3}" y="{f.y(band[1]) - 3:.1f}" text-anchor="end" fill="#555">{escape(band_label)}</text>')
    slot = (f.w - f.l - f.r) / max(len(vals), 1)
    for i, (name, v) in enumerate(zip(names, vals)):
        cx = f.l + (i + 0.5) * slot
        if np.isfinite(v):
            colour = BEST if i == best else FILL
            y0, y1 = sorted((f.y(0), f.y(v)))
            f.add(f'<rect x="{cx - slot * 0.35:.1f}" y="{y0:.1f}" width="{slot * 0.7:.1f}" height="{max(y1 - y0, 0.5):.1f}" '
                  f'fill="{colour}"><title>{escape(name)}: {v:.3f}</title></rect>')
            if cis is not None and cis[i] is not None:
                a, b = f.y(cis[i][0]), f.y(cis[i][1])
                f.add(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{a:.1f}" y2="{b:.1f}" stroke="{INK}"/>'
                      f'<line x1="{cx - 3:.1f}" x2="{cx + 3:.1f}" y1="{a:.1f}" y2="{a:.1f}" stroke="{INK}"/>'
                      f'<line x1="{cx - 3:.1f}" x2="{cx + 3:.1f}" y1="{b:.1f}" y2="{b:.1f}" stroke="{INK}"/>')
        weight = ' font-weight="bold"' if i == best else ""
        f.add(f'<text transform="translate({cx + 3:.1f} {f.h - f.b + 8}) rotate(-40)" text-anchor="end"{weight}>'
              f"{escape(name)}</text>")
    f.add(f'<line x1="{f.l}" x2="{f.w - f.r}" y1="{f.y(0):.1f}" y2="{f.y(0):.1f}" stroke="#888"/>')
    f.axes("", ylabel, xticks=[])
    return f.svg(title, note)


def strips(groups: Sequence[tuple[str, Sequence[float]]], ylabel: str, title: str, hline: float | None = None,
           hline_label: str = "", width: int = 460, height: int = 250) -> str:
    """Per group (e.g. layer, in depth order) every value as a jittered dot, its median as a bar;
    ``hline``: a dashed reference level (e.g. the image size)."""
    data = [(name, _finite(v)) for name, v in groups]
    top = max([v.max() for _, v in data if len(v)] + [hline or 0, 1])
    f = _Frame(width, height, (0, len(data)), (0, top * 1.08), left=46, bottom=64)
    slot = (f.w - f.l - f.r) / max(len(data), 1)
    rng = np.random.default_rng(0)
    if hline is not None:
        f.add(f'<line x1="{f.l}" x2="{f.w - f.r}" y1="{f.y(hline):.1f}" y2="{f.y(hline):.1f}" stroke="{REF}" '
              f'stroke-dasharray="4 3"/><text x="{f.l + 4}" y="{f.y(hline) - 3:.1f}" fill="{REF}">'
              f"{escape(hline_label)}</text>")
    for i, (name, v) in enumerate(data):
        cx = f.l + (i + 0.5) * slot
        for value, jitter in zip(v, rng.uniform(-0.25, 0.25, len(v))):
            f.add(f'<circle cx="{cx + jitter * slot:.1f}" cy="{f.y(value):.1f}" r="1.8" fill="{FILL}" opacity="0.45"/>')
        if len(v):
            m = float(np.median(v))
            f.add(f'<line x1="{cx - slot * 0.35:.1f}" x2="{cx + slot * 0.35:.1f}" y1="{f.y(m):.1f}" y2="{f.y(m):.1f}" '
                  f'stroke="{INK}" stroke-width="2"><title>{escape(name)}: median {m:.3g}</title></line>')
        f.add(f'<text transform="translate({cx + 3:.1f} {f.h - f.b + 8}) rotate(-40)" text-anchor="end">'
              f"{escape(name)}</text>")
    f.axes("", ylabel, xticks=[])
    return f.svg(title)


__all__ = ["fits", "histogram", "layer_bars", "scatter", "stacked", "strips", "ticks"]
