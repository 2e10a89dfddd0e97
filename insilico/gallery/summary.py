"""A layer at a glance: population figures of its units, macaque V1 references, and a sortable unit table.

The layer page (:func:`insilico.gallery.pages.layer_page`) shows, from the
rows of ``units.csv`` (:func:`insilico.gallery.build.unit_row`) and each unit's
tuning record:

- how many units pass the grating responsiveness criteria, and why the others
  fail ("silent on the stimulus set", "not driven by gratings", "unreliable
  across grating phases"; :mod:`insilico.experiments.tuning`); for layers
  without gratings (linear), how many never exceed 0 on any exemplar photo;
- the maximizing image's activation against the top natural exemplar's;
- histograms over the *responsive* units of preferred orientation (tuned
  units, OSI >= 1/3), OSI, circular variance, orientation bandwidth (half width
  at half height), preferred SF and SF bandwidth (units whose SF peak is
  bracketed by the tested range), and RF size over every unit with a field;
- for early layers (spatial, median RF at most :data:`EARLY_RF_FRACTION` of the
  image), macaque V1 reference values next to the histograms
  (:data:`insilico.experiments.tuning.MACAQUE_V1`; sources in :data:`REFERENCES`);
- a table with the columns of ``units.csv``, sortable (click a header) and
  filterable (free text, or ``column>value`` / ``<`` / ``=``) by a few lines of
  inline JavaScript, each row linking to its unit page.

Example
-------
>>> rows = [{"layer": "conv", "unit": 0, "page": "units/conv/0.html", "responsive": True, "osi": 0.5,
...          "preferred_orientation": 90.0, "rf_size": 9.0, "max_activation": 2.0, "top_exemplar_activation": 1.0}]
>>> html = layer_summary(rows, [None], image_size=64)
>>> "OSI (n = 1)" in html and "De Valois, Yund" in html
True
"""
from __future__ import annotations

from html import escape
from typing import Sequence

import numpy as np

from ..experiments.selectivity import SILENT
from ..experiments.tuning import MACAQUE_V1, TUNED_OSI
from . import figures

#: A spatial layer is "early" (compared with V1) when its median RF is at most this fraction of the image width.
EARLY_RF_FRACTION = 0.25

#: The sources of the reference values drawn on early layers (abstract-level facts only).
REFERENCES = {
    "dvyh82": "De Valois, Yund &amp; Hepler (1982). The orientation and direction selectivity of cells in macaque "
              "visual cortex. <i>Vision Res.</i> 22:531&ndash;544: full orientation bandwidths from 6&deg; to "
              "360&deg; (untuned), median near 40&deg;; more foveal cells prefer horizontal and vertical than "
              "oblique orientations.",
    "rsh02": "Ringach, Shapley &amp; Hawken (2002). Orientation selectivity in macaque V1: diversity and laminar "
             "dependence. <i>J. Neurosci.</i> 22:5639&ndash;5651: circular variance spans nearly the whole range "
             "from 0 (sharp) to 1 (unselective), differing between cortical layers.",
    "dvat82": "De Valois, Albrecht &amp; Thorell (1982). Spatial frequency selectivity of cells in macaque visual "
              "cortex. <i>Vision Res.</i> 22:545&ndash;559: a broad range of peak SFs at any one eccentricity.",
    "fgnp85": "Foster, Gaska, Nagler &amp; Pollen (1985). Spatial and temporal frequency selectivity of neurones in "
              "visual cortical areas V1 and V2 of the macaque monkey. <i>J. Physiol.</i> 365:331&ndash;363: peak SF "
              "0.5&ndash;8 cycles/deg at 2&ndash;5&deg; eccentricity; foveal SF bandwidth 1.4 octaves on average.",
}

STATUS_COLOURS = {"responsive": "#2a9d3a", "not driven by gratings": "#e0b01e",
                  "unreliable across grating phases": "#e07b1e", "silent on the stimulus set": "#9a9a9a",
                  "tuning not computed yet": "#dddddd"}


def _values(rows: Sequence[dict], key: str, keep=None) -> list:
    return [r.get(key) for r in rows if r.get(key) is not None and (keep is None or keep(r))]


def rf_sizes(rows: Sequence[dict]) -> list[float]:
    """RF sizes (px) of a layer's units that are not silent: a silent unit's gradient map describes a unit that
    never fires on the stimulus set (its pre-nonlinearity gradient), not a field it responds in."""
    return [float(r["rf_size"]) for r in rows if r.get("rf_size") is not None and r.get("reason") != SILENT]


def is_early(rows: Sequence[dict], image_size: int | None) -> bool:
    """True when the layer has RF sizes and their median is at most :data:`EARLY_RF_FRACTION` of the image."""
    sizes = rf_sizes(rows)
    return bool(sizes and image_size and np.median(sizes) <= EARLY_RF_FRACTION * image_size)


def status_counts(rows: Sequence[dict]) -> list[tuple[str, int, str]]:
    """``(label, count, colour)`` of the grating responsiveness outcomes (spatial layers), or of units whose
    best exemplar photo drives them above 0 or not (layers without gratings)."""
    if any(r.get("responsive") is not None for r in rows):
        found = {}
        for r in rows:
            label = ("responsive" if r.get("responsive") else r.get("reason") or "not responsive"
                     ) if r.get("responsive") is not None else "tuning not computed yet"
            found[label] = found.get(label, 0) + 1
        order = list(STATUS_COLOURS) + sorted(set(found) - set(STATUS_COLOURS))
        return [(k, found[k], STATUS_COLOURS.get(k, "#b07bd6")) for k in order if k in found]
    acts = [r.get("top_exemplar_activation") for r in rows]
    above = sum(a is not None and a > 0 for a in acts)
    zero = sum(a is not None and a <= 0 for a in acts)
    missing = len(rows) - above - zero
    return [(label, n, colour) for label, n, colour in (
        ("above 0 on some photo", above, "#2a9d3a"), ("never above 0 on the photos", zero, "#9a9a9a"),
        ("exemplars not computed yet", missing, "#dddddd")) if n]


def _activation_panel(rows: Sequence[dict], depth: int) -> tuple[str, str]:
    pairs = [(r.get("top_exemplar_activation"), r.get("max_activation")) for r in rows]
    known = [(a, b) for a, b in pairs if a is not None and b is not None]
    beats = sum(b >= a for a, b in known)
    svg = figures.scatter([a for a, _ in pairs], [b for _, b in pairs], "top exemplar activation",
                          "maximizing image activation", "maximizing image vs best photo",
                          links=["../" * depth + r["page"] for r in rows],
                          labels=[f"unit {r['unit']}: image {b}, photo {a}" for r, (a, b) in zip(rows, pairs)],
                          note="dashed: equal")
    noise = [(r.get("top_exemplar_activation"), r.get("from_noise_activation")) for r in rows]
    noise = sum(b >= a for a, b in noise if a is not None and b is not None)
    kinds = [r.get("maximizing_kind") for r in rows]
    text = (f"The maximizing image drives the unit at least as much as its best exemplar photo in "
            f"<b>{beats} of {len(known)}</b> units (dots above the dashed line; click a dot for its unit)"
            + (f"; the image synthesized from noise does in {noise}, a stretched exemplar (the top photo after "
               f"gradient ascent) in {kinds.count('stretched exemplar')} more, and in "
               f"{kinds.count('top exemplar')} no ascent step improved on the photo itself, which is then shown"
               if any(kinds) else "") + ".")
    return svg, text


def _tuning_panels(rows: Sequence[dict], tunings: Sequence[dict | None], early: bool) -> list[str]:
    resp = [r for r in rows if r.get("responsive")]
    tuned = [r for r in resp if r.get("preferred_orientation") is not None]
    ref = (lambda text: text) if early else (lambda text: None)
    ori = figures.histogram([float(r["preferred_orientation"]) % 180 for r in tuned], np.arange(0, 181, 15),
                            "preferred orientation (deg; 0 = vertical bars)", "preferred orientation",
                            lines=(0, 90, 180) if early else (), xticks=[0, 45, 90, 135, 180],
                            note=ref("V1 fovea: more at 0° and 90° [1]"))
    osi = figures.histogram(_values(resp, "osi"), np.linspace(0, 1, 11), "OSI = (pref - orth) / (pref + orth)", "OSI",
                            lines=(TUNED_OSI,), note=f"dashed: tuned at OSI ≥ {TUNED_OSI:.2f}")
    cv = figures.histogram(_values(resp, "circular_variance"), np.linspace(0, 1, 11),
                           "circular variance (0 = sharp)", "circular variance", note=ref("V1 spans nearly all of 0–1 [2]"))
    half = MACAQUE_V1["orientation_bandwidth_full_median_deg"] / 2
    narrow = sum(1 for r in tuned if r.get("bandwidth") is None)
    notes = [n for n in (ref(f"V1 median {half:g}° (40° full width) [1]"),
                         f"{narrow} more below the orientation sampling step" if narrow else None) if n]
    bw = figures.histogram(_values(resp, "bandwidth"), np.arange(0, 91, 7.5),
                           "bandwidth: half width at half height (deg)", "orientation bandwidth",
                           lines=(half,) if early else (), xticks=[0, 15, 30, 45, 60, 75, 90],
                           note="; ".join(notes) or None)
    sfs = [float(r["preferred_sf"]) for r in resp if r.get("preferred_sf") is not None and not r.get("sf_peak_at_edge")]
    edge = sum(1 for r in resp if r.get("sf_peak_at_edge"))
    hi = max(sfs + [32.0])
    sf = figures.histogram(sfs, np.geomspace(1, hi, 11), "preferred SF (cycles / image)", "preferred SF", log_x=True,
                           note=f"{edge} more peak at the edge of the tested range" if edge else None)
    by_unit = {t.get("unit"): t for t in tunings if t}
    sfbw = [by_unit[r["tuned_unit"]].get("sf_bandwidth") for r in resp if r.get("tuned_unit") in by_unit]
    sf_bw = figures.histogram([v for v in sfbw if v is not None], np.arange(0, 6.01, 0.5),
                              "SF bandwidth: full width at half height (octaves)", "SF bandwidth",
                              lines=(MACAQUE_V1["sf_bandwidth_foveal_mean_octaves"],) if early else (),
                              note=ref("V1 fovea: mean 1.4 octaves [4]"))
    return [ori, osi, cv, bw, sf, sf_bw]


def layer_summary(rows: Sequence[dict], tunings: Sequence[dict | None], image_size: int | None = None,
                  depth: int = 1) -> str:
    """The summary section of a layer page (HTML): status bar, activation scatter, histograms, references.

    ``rows``: the layer's ``units.csv`` rows (:func:`~insilico.gallery.build.unit_row`); ``tunings``: each
    unit's tuning record or None; ``image_size``: the model's input width in pixels (for RF sizes and the
    early-layer test); ``depth``: folders between the page and the site root.
    """
    if not rows:
        return ""
    parts = [f"<h2>Summary of {len(rows)} units</h2>"]
    spatial = any(r.get("responsive") is not None for r in rows) or any(t for t in tunings)
    title = ("responsiveness to gratings (the criteria are on each unit's page, tuning section)" if spatial
             else "units driven by the exemplar photos (before the nonlinearity)")
    parts.append(f'<div class="row">{figures.stacked(status_counts(rows), title)}</div>')
    scatter, text = _activation_panel(rows, depth)
    rf = rf_sizes(rows)
    panels = [scatter]
    if rf:
        panels.append(figures.histogram(rf, np.linspace(0, image_size or max(rf), 13), "RF size (px, 10% of peak)",
                                        "receptive field size", band=None, note=f"image: {image_size} px"
                                        if image_size else None))
    early = is_early(rows, image_size)
    if spatial:
        panels += _tuning_panels(rows, tunings, early)
    parts.append(f"<p>{text} Tuning histograms count the units that pass the responsiveness criteria; preferred "
                 f"orientation only those with OSI ≥ {TUNED_OSI:.2f}; RF sizes every unit that is not silent.</p>"
                 if spatial else f"<p>{text}</p>")
    parts.append(f'<div class="row">{"".join(panels)}</div>')
    if spatial and early:
        refs = "".join(f"<li>{REFERENCES[k]}</li>" for k in ("dvyh82", "rsh02", "dvat82", "fgnp85"))
        parts.append("<p>Red: macaque V1 for comparison (this layer's receptive fields are small, as in an early "
                     "visual area). Preferred SF is in cycles per image: with no visual angle given for the images, "
                     "the V1 range in cycles per degree [3, 4] cannot be placed on that axis.</p>"
                     f'<ol class="refs">{refs}</ol>')
    elif spatial:
        parts.append("<p>No V1 reference is drawn: the receptive fields here are large "
                     f"(median over {EARLY_RF_FRACTION:.0%} of the image), unlike an early visual area.</p>")
    return "".join(parts)


# ---------------------------------------------------------------------------------------
# The unit table
# ---------------------------------------------------------------------------------------
TABLE_SCRIPT = """<script>
(function () {
  var table = document.getElementById("units"), body = table.tBodies[0], heads = table.tHead.rows[0].cells;
  var box = document.getElementById("unit-filter"), count = document.getElementById("unit-count");
  var state = {col: -1, dir: 1};
  function key(cell) {
    var v = cell.getAttribute("data-v");
    if (v === null || v === "") return null;
    return isNaN(Number(v)) ? v.toLowerCase() : Number(v);
  }
  function sortBy(i, dir) {
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[i]), y = key(b.cells[i]);
      if (x === null || y === null) return (x === null) - (y === null);
      return (x < y ? -1 : x > y ? 1 : 0) * dir;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    for (var j = 0; j < heads.length; j++) heads[j].removeAttribute("aria-sort");
    heads[i].setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
  }
  function test(row, query) {
    var m = /^\\s*([a-z_]+)\\s*(<=|>=|<|>|=)\\s*(\\S+)\\s*$/i.exec(query);
    if (!m) return row.textContent.toLowerCase().indexOf(query.toLowerCase()) >= 0;
    var i = -1;
    for (var j = 0; j < heads.length; j++) if (heads[j].getAttribute("data-col") === m[1]) i = j;
    if (i < 0) return false;
    var x = key(row.cells[i]), y = isNaN(Number(m[3])) ? m[3].toLowerCase() : Number(m[3]);
    y = {"yes": 1, "true": 1, "no": 0, "false": 0}.hasOwnProperty(y) ? {"yes": 1, "true": 1, "no": 0, "false": 0}[y] : y;
    if (x === null) return false;
    return {"<": x < y, ">": x > y, "<=": x <= y, ">=": x >= y, "=": x === y}[m[2]];
  }
  function filter() {
    var shown = 0;
    Array.prototype.forEach.call(body.rows, function (r) {
      var ok = test(r, box.value);
      r.style.display = ok ? "" : "none";
      shown += ok;
    });
    count.textContent = shown + " of " + body.rows.length + " units";
  }
  Array.prototype.forEach.call(heads, function (h, i) {
    h.addEventListener("click", function () {
      state.dir = state.col === i ? -state.dir : 1;
      state.col = i;
      sortBy(i, state.dir);
    });
  });
  box.addEventListener("input", filter);
  filter();
})();
</script>"""

#: Table columns: units.csv's, without the page path (the unit number links to the page).
TABLE_STYLE = """
table.units { border-collapse: collapse; font-size: 0.8em; margin-top: 0.5em; }
table.units th { cursor: pointer; background: #eee; position: sticky; top: 0; padding: 3px 6px; user-select: none; }
table.units th[aria-sort=ascending]::after { content: " \\25B2"; } table.units th[aria-sort=descending]::after { content: " \\25BC"; }
table.units td { padding: 2px 6px; border-bottom: 1px solid #eee; text-align: right; white-space: nowrap; }
div.scroll { overflow-x: auto; max-width: 100%; }
table.units td.t { text-align: left; }
ol.refs { font-size: 0.8em; color: #444; } svg.fig { margin: 2px; }
"""


def _cell(value) -> tuple[str, str]:
    """(shown text, sort key) of a table value."""
    if value is None or (isinstance(value, float) and value != value):
        return "", ""
    if isinstance(value, bool):
        return ("yes" if value else "no"), ("1" if value else "0")
    if isinstance(value, float):
        return f"{value:.3g}", f"{value:.9g}"
    return str(value), str(value)


def unit_table(rows: Sequence[dict], columns: Sequence[str], depth: int = 1) -> str:
    """The sortable, filterable unit table (HTML with its inline script), one row per unit.

    ``columns``: the ``units.csv`` columns to show (``page`` is used as the link of the ``unit`` cell).
    """
    shown = [c for c in columns if c != "page"]
    head = "".join(f'<th data-col="{escape(c)}" title="click to sort">{escape(c)}</th>' for c in shown)
    body = []
    for r in rows:
        cells = []
        for c in shown:
            text, key = _cell(r.get(c))
            if c == "unit" and r.get("page"):
                text = f'<a href="{escape("../" * depth + r["page"])}">{escape(text)}</a>'
            else:
                text = escape(text)
            cls = ' class="t"' if c in ("layer", "reason", "tuned_unit", "preferred_colour") else ""
            cells.append(f'<td{cls} data-v="{escape(key)}">{text}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<h2>All units</h2><p>The data of <a href="{"../" * depth}units.csv">units.csv</a>; click a column '
            "to sort (again to reverse), type to filter (any text, or e.g. <code>osi&gt;0.5</code>, "
            '<code>responsive=yes</code>).</p><p><input id="unit-filter" type="search" placeholder="filter" '
            'aria-label="filter units"> <span id="unit-count"></span></p>'
            f'<div class="scroll"><table class="units" id="units"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>'
            + TABLE_SCRIPT)


__all__ = ["EARLY_RF_FRACTION", "REFERENCES", "TABLE_STYLE", "is_early", "layer_summary", "status_counts",
           "unit_table"]
