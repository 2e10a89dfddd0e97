"""The gallery's HTML: index of layers, one grid page per layer, one stable page per unit.

Pages are plain HTML with relative links only, so the site opens from the
file system (``file://``) with no server. Curves (tuning, lesion effects) are
inline SVG drawn here from the stage JSON; images are the PNGs the stages
wrote. A section whose stage has not run yet says so instead of showing a
broken image.

Site layout::

    index.html  style.css  gallery.json
    layers/<layer>.html
    units/<layer>/<c>.html      units/<layer>/<c>/{max,diverse-1,...,inhibit,exemplars,rf}.png, <stage>.json
"""
from __future__ import annotations

import json
import os
from html import escape
from pathlib import Path

import numpy as np

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
a { color: #1a5fb4; text-decoration: none; } a:hover { text-decoration: underline; }
nav { margin-bottom: 1em; font-size: 0.9em; }
h1 { font-size: 1.5em; margin: 0.2em 0; } h2 { font-size: 1.1em; margin-top: 1.4em; }
img.px { image-rendering: pixelated; background: #ddd; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(84px, 1fr)); gap: 6px; }
.tile { text-align: center; font-size: 0.75em; }
.tile img { width: 80px; height: 80px; display: block; margin: auto; }
.row { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; }
figure { margin: 0; text-align: center; font-size: 0.8em; }
figure img { width: 160px; height: 160px; }
.small figure img { width: 112px; height: 112px; }
.missing { color: #888; font-style: italic; }
table.meta td { padding: 1px 10px 1px 0; font-size: 0.9em; }
img.wide { width: min(100%, 900px); height: auto; }
svg { background: white; border: 1px solid #ddd; }
.layers li { margin: 0.6em 0; } .layers img { width: 40px; height: 40px; vertical-align: middle; }
"""


def page(title: str, body: str, depth: int) -> str:
    """A whole HTML document; ``depth`` is how many folders below the site root it lives."""
    up = "../" * depth
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<link rel="stylesheet" href="{up}style.css"></head>\n<body>\n{body}\n</body></html>\n')


def write(path: Path, text: str) -> None:
    """Write a page atomically (ranks of a sharded build may render the same page)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------
# Charts (inline SVG)
# ---------------------------------------------------------------------------------------
def svg_curve(xs, ys, xlabel: str, title: str, log_x: bool = False, width: int = 260, height: int = 170,
              baseline: float | None = None) -> str:
    """A line with dots; None values are skipped; ``baseline``: a dashed horizontal line at that value."""
    points = [(float(x), float(y)) for x, y in zip(xs, ys) if y is not None]
    if len(points) < 2:
        return '<p class="missing">no response</p>'
    px = np.log2([p[0] for p in points]) if log_x else np.array([p[0] for p in points])
    py = np.array([p[1] for p in points])
    left, right, top, bottom = 40, 10, 22, 30
    sx = (width - left - right) / max(px.max() - px.min(), 1e-9)
    lo, hi = min(py.min(), 0.0), max(py.max(), 0.0)
    if baseline is not None:
        lo, hi = min(lo, baseline), max(hi, baseline)
    sy = (height - top - bottom) / max(hi - lo, 1e-9)
    coords = [(left + (a - px.min()) * sx, height - bottom - (b - lo) * sy) for a, b in zip(px, py)]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.2"/>' for x, y in coords)
    zero = height - bottom - (0 - lo) * sy
    blank = ""
    if baseline is not None:
        level = height - bottom - (baseline - lo) * sy
        blank = (f'<line x1="{left}" x2="{width - right}" y1="{level:.1f}" y2="{level:.1f}" stroke="#c0392b" '
                 f'stroke-dasharray="4 3"/>')
    return (f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-size="10">'
            f'<text x="{width / 2}" y="13" text-anchor="middle">{escape(title)}</text>'
            f'<line x1="{left}" x2="{width - right}" y1="{zero:.1f}" y2="{zero:.1f}" stroke="#bbb"/>{blank}'
            f'<polyline points="{line}" fill="none" stroke="#1a5fb4" stroke-width="1.5"/><g fill="#1a5fb4">{dots}</g>'
            f'<text x="{left}" y="{height - 16}">{points[0][0]:g}</text>'
            f'<text x="{width - right}" y="{height - 16}" text-anchor="end">{points[-1][0]:g}</text>'
            f'<text x="{width / 2}" y="{height - 4}" text-anchor="middle">{escape(xlabel)}</text>'
            f'<text x="2" y="{top + 4}">{hi:.3g}</text><text x="2" y="{height - bottom}">{lo:.3g}</text></svg>')


def svg_bars(labels, values, title: str, width: int = 520, row: int = 13) -> str:
    """Horizontal bars around zero, one per label."""
    vals = np.array([0.0 if v is None else v for v in values])
    height = 24 + row * len(vals)
    mid, half = width * 0.6, width * 0.38 - 10
    scale = half / max(np.abs(vals).max(), 1e-9)
    bars = []
    for i, (label, v) in enumerate(zip(labels, vals)):
        y = 20 + i * row
        x0, w = (mid, v * scale) if v >= 0 else (mid + v * scale, -v * scale)
        colour = "#2a9d3a" if v >= 0 else "#c0392b"
        bars.append(f'<text x="{mid - half - 6:.0f}" y="{y + 9}" text-anchor="end">{escape(str(label))}</text>'
                    f'<rect x="{x0:.1f}" y="{y}" width="{max(w, 0.5):.1f}" height="{row - 3}" fill="{colour}"/>'
                    f'<text x="{width - 4}" y="{y + 9}" text-anchor="end">{v:+.3f}</text>')
    return (f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-size="10">'
            f'<text x="{width / 2}" y="12" text-anchor="middle">{escape(title)}</text>'
            f'<line x1="{mid}" x2="{mid}" y1="16" y2="{height}" stroke="#888"/>{"".join(bars)}</svg>')


# ---------------------------------------------------------------------------------------
# Pages
# ---------------------------------------------------------------------------------------
def _missing(what: str) -> str:
    return f'<p class="missing">{escape(what)}: not computed yet (rerun the build to fill it in)</p>'


def _figure(src: str, caption: str) -> str:
    return f'<figure><img class="px" src="{escape(src)}" alt="{escape(caption)}"><figcaption>{escape(caption)}</figcaption></figure>'


def index_page(title: str, meta: dict, layers: list[dict]) -> str:
    """``layers``: dicts with ``layer``, ``slug``, ``n``, ``done``, ``shape``, ``thumbs`` (channels with images)."""
    items = []
    for info in layers:
        thumbs = "".join(f'<img class="px" src="units/{info["slug"]}/{c}/max.png" alt="unit {c}">'
                         for c in info["thumbs"][:12])
        items.append(f'<li><a href="layers/{info["slug"]}.html"><b>{escape(info["layer"])}</b></a> '
                     f'&mdash; {info["n"]} units, output {escape(str(info["shape"]))}, '
                     f'{info["done"]}/{info["n"]} complete<br>{thumbs}</li>')
    rows = "".join(f"<tr><td>{escape(str(k))}</td><td>{escape(str(v))}</td></tr>" for k, v in meta.items())
    body = (f"<h1>{escape(title)}</h1><p>Feature visualizations, exemplars, tuning, receptive fields and "
            f"lesion effects of every unit, built offline by <code>insilico gallery build</code>.</p>"
            f'<ul class="layers">{"".join(items)}</ul><h2>Settings</h2><table class="meta">{rows}</table>')
    return page(title, body, 0)


def layer_page(title: str, layer: str, layer_slug: str, channels: list[int], ready: set) -> str:
    tiles = []
    for c in channels:
        img = (f'<img class="px" src="../units/{layer_slug}/{c}/max.png" alt="unit {c}">' if c in ready
               else '<div class="missing">pending</div>')
        tiles.append(f'<div class="tile"><a href="../units/{layer_slug}/{c}.html">{img}{c}</a></div>')
    body = (f'<nav><a href="../index.html">{escape(title)}</a> / {escape(layer)}</nav>'
            f"<h1>{escape(layer)}</h1><p>{len(channels)} units; each image maximizes one unit. "
            f'Click a unit for its page.</p><div class="grid">{"".join(tiles)}</div>')
    return page(f"{layer} - {title}", body, 1)


def unit_page(title: str, layer: str, layer_slug: str, channel: int, data: dict, neighbours: tuple) -> str:
    """``data``: stage name -> the unit's stage dict (absent stages are shown as pending)."""
    prev, nxt = neighbours
    links = [f'<a href="../../index.html">{escape(title)}</a>',
             f'<a href="../../layers/{layer_slug}.html">{escape(layer)}</a>', f"unit {channel}"]
    steps = " ".join(
        [f'<a href="{prev}.html">&larr; unit {prev}</a>' if prev is not None else "",
         f'<a href="{nxt}.html">unit {nxt} &rarr;</a>' if nxt is not None else ""])
    address = f"{layer}[{channel}]"
    sections = [_features_html(channel, data.get("features")), _exemplars_html(channel, data.get("exemplars"))]
    if "tuning" in data or data.get("_spatial"):
        sections.append(_tuning_html(data.get("tuning")))
        sections.append(_rf_html(channel, data.get("rf")))
    sections.append(_lesion_html(data.get("lesion")))
    body = (f'<nav>{" / ".join(links)} &nbsp; {steps}</nav><h1><code>{escape(address)}</code></h1>'
            + "".join(sections))
    return page(f"{address} - {title}", body, 2)


def _features_html(c: int, d: dict | None) -> str:
    if d is None:
        return "<h2>Feature visualization</h2>" + _missing("feature visualization")

    def label(name, value):
        return f"{name} ({value:.3g})" if value is not None else name

    kind = d.get("maximizing_kind", "from noise")
    figs = [_figure(f"{c}/max.png", label("maximizing" + (f", {kind}" if kind != "from noise" else ""),
                                          d["maximizing"]))]
    figs += [_figure(f"{c}/diverse-{j}.png", label(f"diverse {j}", v)) for j, v in enumerate(d["diverse"][1:], start=1)]
    if d.get("other"):
        figs.append(_figure(f"{c}/max-other.png", label(d["other"]["kind"], d["other"]["value"])))
    figs.append(_figure(f"{c}/inhibit.png", label("inhibiting", d["inhibiting"])))
    top, best = d.get("top_exemplar"), d["maximizing"]
    below = (f'<p><b>Below the top exemplar</b>: the maximizing image reaches {best:.4g}, the top exemplar '
             f'{top:.4g}.</p>' if top is not None and best is not None and best < top else "")
    other = d.get("other") or {}
    if kind != "from noise" and other.get("kind") == "from noise" and None not in (other.get("value"), top):
        below += (f"<p>The image from noise reaches {other['value']:.4g}, below the top exemplar ({top:.4g}): the "
                  f"maximizing image shown is the {escape(kind)}.</p>")
    measure = ("the largest value over the map for conv channels (the smallest for the inhibiting image), as the "
               "exemplars are ranked" if "measure" in d else "the centre of the map for conv channels")
    stretched = (" The stretched exemplar is the top exemplar after gradient ascent on its best neuron (the exemplar "
                 "itself where no step improved on it); it is shown as the maximizing image where the image from "
                 "noise stays below the top exemplar."
                 if d.get("other") or kind != "from noise" else "")
    return ('<h2>Feature visualization</h2><p>Images optimised from noise to drive the unit (its activation in '
            f'brackets: {measure}); the diverse set is pushed apart; the last one drives it down.{stretched}</p>'
            f'{below}<div class="row">{"".join(figs)}</div>')


def _exemplars_html(c: int, d: dict | None) -> str:
    if d is None:
        return "<h2>Top exemplars</h2>" + _missing("exemplars")
    cells = ", ".join(f"{escape(str(l))} ({a:.3g})" for l, a in zip(d["labels"], d["activations"]) if a is not None)
    return (f"<h2>Top {d['k']} exemplars of {d['n_stimuli']} stimuli</h2>"
            "<p>Rows: the stimuli that drive the unit most (best first); their deconvolution projections "
            "(Zeiler &amp; Fergus) and gradient maps for the neuron at the maximum (grey = 0).</p>"
            f'<img class="px wide" src="{c}/exemplars.png" alt="exemplars, deconvolution and gradient maps">'
            f"<p>{cells}</p>")


def _tuning_html(d: dict | None) -> str:
    if d is None:
        return "<h2>Tuning</h2>" + _missing("tuning curves")
    base = d.get("baseline")
    ori = svg_curve(d["orientations"], d["curve"], "orientation (deg; 0 = vertical bars)",
                    "orientation tuning at best SF", baseline=base)
    sf = svg_curve(d["sfs"], d["sf_curve"], "spatial frequency (cycles / image)", "SF tuning at best orientation",
                   log_x=True, baseline=base)
    reduce = {"max": "maximum", "mean": "mean", "f1": "first harmonic"}.get(d.get("phase_reduce", "max"), "maximum")
    head = (f"<h2>Tuning to gratings</h2><p>Response of <code>{escape(d['unit'])}</code> (the map's centre, after "
            f"the nonlinearity), {reduce} over phase; dashed: the response to a blank grey screen.</p>")
    if "responsive" in d and not d["responsive"]:
        return head + (f'<p><b>{escape(d["reason"] or "not responsive")}</b>: no preference or selectivity is '
                       "reported. A unit counts as responsive when its response varies over the blank, the gratings "
                       f"and the exemplar photos, its best grating response exceeds the blank by {d.get('margin', 0.2):g} "
                       "of its range on the photos, and two halves of the grating phases give the same tuning."
                       f'</p><div class="row">{ori}{sf}</div>')
    facts = []
    if d.get("preferred_orientation") is not None:
        facts.append(f"preferred orientation {d['preferred_orientation']:.0f}°")
    elif "responsive" in d:
        facts.append("no preferred orientation (OSI below 1/3)")
    for key, label, fmt in (("osi", "OSI", ".2f"), ("circular_variance", "circular variance", ".2f"),
                            ("bandwidth", "bandwidth (half width at half height)", ".0f"),
                            ("preferred_sf", "preferred SF", ".3g"), ("sf_bandwidth", "SF bandwidth", ".2f")):
        if d.get(key) is not None:
            unit = {"bandwidth": "°", "preferred_sf": " cycles/image", "sf_bandwidth": " octaves"}.get(key, "")
            facts.append(f"{label} {d[key]:{fmt}}{unit}")
    if d.get("sf_peak_at_edge"):
        facts.append("SF peak at the edge of the tested range (a bound, not a peak)")
    if len(d.get("colour_peak") or {}) > 1 and d.get("preferred_colour"):
        peaks = ", ".join(f"{k} {v:.3g}" for k, v in d["colour_peak"].items() if v is not None)
        facts.append(f"tuned with {d['preferred_colour']} gratings, the colour axis that drives it most "
                     f"(best response above blank: {peaks})")
    return head + f'<p>{escape("; ".join(facts))}.</p><div class="row">{ori}{sf}</div>'


def _rf_html(c: int, d: dict | None) -> str:
    if d is None:
        return "<h2>Receptive field</h2>" + _missing("receptive field")
    size = f"size {d['size']:.3g} px" if d.get("size") is not None else "no measurable field"
    return (f"<h2>Receptive field</h2><p>Mean gradient of <code>{escape(d['neuron'])}</code> over white noise "
            f"(white: positive, black: negative, grey: 0); {size}.</p>"
            f'<div class="row small">{_figure(f"{c}/rf.png", "RF map")}</div>')


def _lesion_html(d: dict | None) -> str:
    if d is None:
        return "<h2>Lesion</h2>" + _missing("lesion effects")
    what = ("mean change in the probability of the true class, per class" if d["labelled"]
            else "mean change in each output's probability")
    return (f"<h2>Lesion effect per class</h2><p>The unit set to 0 over {d['n_stimuli']} held-out stimuli: "
            f"{what}.</p>" + svg_bars(d["classes"], d["probability_change"], "lesion effect"))


def read_unit(folder: Path, stages) -> dict:
    """The stage dicts saved for one unit (stages that have not run are absent)."""
    data = {}
    for stage in stages:
        path = folder / f"{stage}.json"
        if path.exists():
            data[stage] = json.loads(path.read_text())
    return data


__all__ = ["STYLE", "index_page", "layer_page", "page", "read_unit", "svg_bars", "svg_curve", "unit_page", "write"]
