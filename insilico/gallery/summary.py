"""A layer at a glance: population figures of its units, macaque V1 references, and a sortable unit table.

The layer page (:func:`insilico.gallery.pages.layer_page`) shows, from the
rows of ``units.csv`` (:func:`insilico.gallery.build.unit_row`) and each unit's
tuning record:

- how many units pass the grating responsiveness criteria, and why the others
  fail (the same response to blank, gratings and photos, "not driven by gratings",
  "unreliable across grating phases"; :mod:`insilico.experiments.tuning`); for layers
  without gratings (linear), how many never exceed 0 on any exemplar photo;
- the headline (:func:`headline`): in how many units that are not silent an
  image synthesized *from noise* drives the unit more than its best exemplar
  photo, with the scatter of the two;
- histograms over the *responsive* units of preferred orientation (tuned
  units, OSI >= 1/3), OSI (units whose OSI is 1 by the floor, the orthogonal
  response at the blank's, counted apart: ``osi_saturated``), circular
  variance, orientation bandwidth (half width at half height), preferred SF
  and SF bandwidth (units whose SF peak is bracketed by the tested range),
  F1/F0 with the simple/complex split at 1 (Skottun et al. 1991), and RF size
  over every unit with a field;
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

from ..experiments.selectivity import SILENT, SIMPLE_F1_F0
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
    "sk91": "Skottun, De Valois, Grosof, Movshon, Albrecht &amp; Bonds (1991). Classifying simple and complex cells on "
            "the basis of response modulation. <i>Vision Res.</i> 31:1079&ndash;1086: in cat and monkey striate "
            "cortex the distribution of F1/F0 is bimodal, with a dip near 1 between simple and complex cells.",
}

STATUS_COLOURS = {"responsive": "#2a9d3a", "not driven by gratings": "#e0b01e",
                  "unreliable across grating phases": "#e07b1e", SILENT: "#9a9a9a",
                  "tuning not computed yet": "#dddddd"}

#: The bar's words for the tuning's :data:`SILENT` reason: "silent" on the pages is :func:`is_silent`'s (the
#: headline's) one definition, of which this is a part, so the bar names what the tuning found instead.
SAME_RESPONSE = "centre neuron: same response to blank, gratings and photos"


def _values(rows: Sequence[dict], key: str, keep=None) -> list:
    return [r.get(key) for r in rows if r.get(key) is not None and (keep is None or keep(r))]


def rf_sizes(rows: Sequence[dict]) -> list[float]:
    """RF sizes (px) of a layer's units that are not silent (:func:`is_silent`, the pages' one definition): a silent
    unit's gradient map describes a unit that never fires on the stimulus set (its pre-nonlinearity gradient), not a
    field it responds in."""
    return [float(r["rf_size"]) for r in rows if r.get("rf_size") is not None and not is_silent(r)]


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
        return [(SAME_RESPONSE if k == SILENT else k, found[k], STATUS_COLOURS.get(k, "#b07bd6"))
                for k in order if k in found]
    acts = [r.get("top_exemplar_activation") for r in rows]
    above = sum(a is not None and a > 0 for a in acts)
    zero = sum(a is not None and a <= 0 for a in acts)
    missing = len(rows) - above - zero
    return [(label, n, colour) for label, n, colour in (
        ("above 0 on some photo", above, "#2a9d3a"), ("never above 0 on the photos", zero, "#9a9a9a"),
        ("exemplars not computed yet", missing, "#dddddd")) if n]


def is_silent(row: dict) -> bool:
    """True for a unit the headlines leave out: its best exemplar photo drives it to at most 0 (before the
    nonlinearity: it never fires on the photos, so any image "beats" that photo) or the tuning found the neuron at
    the map's centre silent (:data:`~insilico.experiments.selectivity.SILENT`).

    >>> is_silent({"top_exemplar_activation": -0.2}), is_silent({"top_exemplar_activation": 0.5, "reason": ""})
    (True, False)
    """
    top = row.get("top_exemplar_activation")
    return (top is not None and top <= 0) or row.get("reason") == SILENT


def headline(rows: Sequence[dict]) -> dict:
    """The layer's honest headline: among the units that are not silent (:func:`is_silent`), how many have an image
    synthesized *from noise* that drives them more than their best exemplar photo.

    Not "maximizing image >= best photo": where the image from noise stays below the photo the page shows the
    photo after gradient ascent (a stretched exemplar), which reaches it by construction.

    Returns
    -------
    dict
        ``units`` (all rows), ``silent`` (left out), ``compared`` (not silent, both values known), ``from_noise``
        (of those, from-noise image > best photo), ``stretched_only`` (of the others, the stretched exemplar shown
        instead beats the photo), ``pending`` (not silent, a value missing); ``matched_compared`` (not silent, the
        photo's value and the image from noise at matched contrast known: ``matched_activation``, synthesized with
        its RMS contrast at most the best photo's) and ``matched`` (of those, that image > best photo).

    >>> rows = [{"top_exemplar_activation": 1.0, "from_noise_activation": 2.0},
    ...         {"top_exemplar_activation": 1.0, "from_noise_activation": 0.5, "max_activation": 1.2,
    ...          "maximizing_kind": "stretched exemplar"},
    ...         {"top_exemplar_activation": -0.3, "from_noise_activation": 0.1}]
    >>> h = headline(rows)
    >>> h["from_noise"], h["compared"], h["silent"], h["stretched_only"], h["matched_compared"]
    (1, 2, 1, 1, 0)
    """
    awake = [r for r in rows if not is_silent(r)]
    known = [r for r in awake if r.get("top_exemplar_activation") is not None
             and r.get("from_noise_activation") is not None]
    beats = [r for r in known if r["from_noise_activation"] > r["top_exemplar_activation"]]
    stretched = [r for r in known if r not in beats and r.get("maximizing_kind") == "stretched exemplar"
                 and r.get("max_activation") is not None and r["max_activation"] > r["top_exemplar_activation"]]
    matched = [r for r in awake if r.get("top_exemplar_activation") is not None
               and r.get("matched_activation") is not None]
    return {"units": len(rows), "silent": len(rows) - len(awake), "compared": len(known), "from_noise": len(beats),
            "stretched_only": len(stretched), "pending": len(awake) - len(known), "matched_compared": len(matched),
            "matched": sum(r["matched_activation"] > r["top_exemplar_activation"] for r in matched)}


def headline_text(h: dict) -> str:
    """One sentence (HTML) of :func:`headline`'s counts."""
    text = (f"An image synthesized from noise drives the unit more than its best exemplar photo in "
            f"<b>{h['from_noise']} of {h['compared']}</b> units")
    text += (f" ({h['silent']} silent unit{'s' if h['silent'] != 1 else ''} left out: the best photo drives "
             "it to 0 or below, or its centre neuron gives the same response to blank, gratings and photos)"
             ) if h["silent"] else ""
    rest = h["compared"] - h["from_noise"]
    if rest:  # a stretched exemplar starts at the photo: that it reaches the photo is no finding, so it is not counted
        text += (f"; in the other {rest} it does not (a tie counts as not beating it; the best photo after gradient "
                 "ascent is not counted, since it starts at the photo and so reaches it by construction)")
    text += (f"; {h['pending']} not computed yet" if h["pending"] else "") + "."
    if h.get("matched_compared"):
        text += (f" At matched contrast (an image from noise whose RMS contrast is held, at every step, to at most "
                 f"that of the unit's best photo): <b>{h['matched']} of {h['matched_compared']}</b>.")
    return text


def _activation_panel(rows: Sequence[dict], depth: int) -> tuple[str, str]:
    pairs = [(r.get("top_exemplar_activation"), r.get("from_noise_activation")) for r in rows]
    awake = [not is_silent(r) for r in rows]
    svg = figures.scatter([a if keep else None for (a, _), keep in zip(pairs, awake)],
                          [b if keep else None for (_, b), keep in zip(pairs, awake)], "best exemplar photo",
                          "image from noise", "image from noise vs best photo",
                          links=["../" * depth + r["page"] for r in rows],
                          labels=[f"unit {r['unit']}: from noise {b}, photo {a}" for r, (a, b) in zip(rows, pairs)],
                          note="dashed: equal; silent units left out")
    return svg, headline_text(headline(rows)) + " Click a dot for its unit."


def _tuning_panels(rows: Sequence[dict], tunings: Sequence[dict | None], early: bool) -> list[str]:
    resp = [r for r in rows if r.get("responsive")]
    tuned = [r for r in resp if r.get("preferred_orientation") is not None]
    ref = (lambda text: text) if early else (lambda text: None)
    ori = figures.histogram([float(r["preferred_orientation"]) % 180 for r in tuned], np.arange(0, 181, 15),
                            "preferred orientation (deg; 0 = vertical bars)", "preferred orientation",
                            lines=(0, 90, 180) if early else (), xticks=[0, 45, 90, 135, 180],
                            note=ref("V1 fovea: more at 0° and 90° [1]"))
    record = {id(r): t for r, t in zip(rows, tunings) if t}
    floor = {id(r) for r in resp if (record.get(id(r)) or {}).get("osi_saturated")}
    osi = figures.histogram([r["osi"] for r in resp if r.get("osi") is not None and id(r) not in floor],
                            np.linspace(0, 1, 11), "OSI = (pref - orth) / (pref + orth)", "OSI",
                            lines=(TUNED_OSI,), note=f"dashed: tuned at OSI ≥ {TUNED_OSI:.2f}" if not floor else
                            f"dashed: tuned ≥ {TUNED_OSI:.2f}; +{len(floor)} at the floor (OSI 1)")
    cv = figures.histogram(_values(resp, "circular_variance"), np.linspace(0, 1, 11),
                           "circular variance (0 = sharp)", "circular variance", note=ref("V1 spans nearly all of 0–1 [2]"))
    v1 = MACAQUE_V1["orientation_bandwidth_full_median_deg"]
    narrow = sum(1 for r in tuned if r.get("bandwidth") is None)
    footing = v1_footing_median(rows, tunings)  # V1's median counts every cell: no V1 line over tuned units only
    mine = f"; this layer so: {footing:.0f}°" if footing is not None else ""
    notes = [n for n in (ref(f"V1: median {v1:g}° full width over all cells, untuned ones too [1]{mine}"),
                         f"{narrow} more below the orientation sampling step" if narrow else None) if n]
    bw = figures.histogram(_values(resp, "bandwidth"), np.arange(0, 91, 7.5),
                           "bandwidth: half width at half height (deg)", "orientation bandwidth",
                           xticks=[0, 15, 30, 45, 60, 75, 90], note="; ".join(notes) or None)
    sfs = [float(r["preferred_sf"]) for r in resp if r.get("preferred_sf") is not None and not r.get("sf_peak_at_edge")]
    edge = sum(1 for r in resp if r.get("sf_peak_at_edge"))
    hi = max(sfs + [32.0])
    sf = figures.histogram(sfs, np.geomspace(1, hi, 11), "preferred SF (cycles / image)", "preferred SF", log_x=True,
                           note=f"{edge} more peak at the edge of the tested range" if edge else None)
    sfbw = [record[id(r)].get("sf_bandwidth") for r in resp if id(r) in record]
    sfbw = [v for v in sfbw if v is not None]
    mean = f"; this layer: mean {np.mean(sfbw):.2g} over these {len(sfbw)}" if sfbw else ""  # V1's statistic
    sf_bw = figures.histogram(sfbw, np.arange(0, 6.01, 0.5),
                              "SF bandwidth: full width at half height (octaves)", "SF bandwidth",
                              lines=(MACAQUE_V1["sf_bandwidth_foveal_mean_octaves"],) if early else (),
                              note=ref(f"V1 fovea: mean 1.4 octaves [4]{mean}"))
    return [ori, osi, cv, bw, sf, sf_bw] + _modulation_panel([record[id(r)] for r in resp if id(r) in record], early)


def v1_footing(rows: Sequence[dict], tunings: Sequence[dict | None]) -> str:
    """The layer's median orientation bandwidth on V1's footing (De Valois, Yund &amp; Hepler 1982 count every
    cell, untuned ones at 360° full width: :func:`~insilico.experiments.selectivity.full_bandwidths_like_v1`), as
    a sentence; the histogram shows tuned units only. Empty without tuning records.

    >>> v1_footing([{"responsive": True}] * 3, [{"bandwidth": 10.0}, {"bandwidth": None}, {"bandwidth": 20.0}])
    " On V1's footing (every responsive unit, full widths, untuned ones at 360°) the median orientation bandwidth is 40° (V1: 40°)."
    """
    median = v1_footing_median(rows, tunings)
    if median is None:
        return ""
    return escape(f" On V1's footing (every responsive unit, full widths, untuned ones at 360°) the median "
                  f"orientation bandwidth is {median:.0f}° (V1: "
                  f"{MACAQUE_V1['orientation_bandwidth_full_median_deg']:g}°).", quote=False)


def v1_footing_median(rows: Sequence[dict], tunings: Sequence[dict | None]) -> float | None:
    """The median full orientation bandwidth (degrees) of the responsive units, untuned ones at 360° (De Valois,
    Yund &amp; Hepler 1982's footing: :func:`~insilico.experiments.selectivity.full_bandwidths_like_v1`); None
    without responsive units' tuning records."""
    from ..experiments.selectivity import full_bandwidths_like_v1

    resp = [t for r, t in zip(rows, tunings) if t and r.get("responsive")]
    if not resp:
        return None
    half = np.array([np.nan if t.get("bandwidth") is None else float(t["bandwidth"]) for t in resp])
    return float(np.median(full_bandwidths_like_v1(half, np.ones(len(resp), bool))))


def physiology_text(rows: Sequence[dict], tunings: Sequence[dict | None]) -> str:
    """A sentence on the responsive units' spontaneous activity and why SF bandwidths are missing (empty when the
    tuning records carry neither: a site from before them).

    >>> rows = [{"responsive": True}, {"responsive": True}]
    >>> physiology_text(rows, [{"spontaneous": False, "sf_bandwidth_reason": "wider than the tested SF range"},
    ...                        {"spontaneous": True, "sf_bandwidth_reason": ""}])
    ' Of 2 responsive units, 1 has spontaneous activity (a blank response a stimulus can lower); 1 has no SF bandwidth: wider than the tested SF range (1).'
    """
    resp = [t for r, t in zip(rows, tunings) if t and r.get("responsive")]
    if not resp or not any("spontaneous" in t or "sf_bandwidth_reason" in t for t in resp):
        return ""
    spont = sum(bool(t.get("spontaneous")) for t in resp)
    reasons: dict = {}
    for t in resp:
        if t.get("sf_bandwidth_reason"):
            reasons[t["sf_bandwidth_reason"]] = reasons.get(t["sf_bandwidth_reason"], 0) + 1
    missing = sum(reasons.values())
    text = (f" Of {len(resp)} responsive unit{'s' if len(resp) != 1 else ''}, {spont} {'has' if spont == 1 else 'have'} spontaneous activity (a "
            "blank response a stimulus can lower)")
    if missing:
        text += (f"; {missing} {'has' if missing == 1 else 'have'} no SF bandwidth: "
                 + ", ".join(f"{k} ({n})" for k, n in sorted(reasons.items(), key=lambda kv: -kv[1])))
    edge = sum(bool(t.get("cell_type")) and t.get("cell_type") != "unresolved" and bool(t.get("sf_peak_at_edge"))
               for t in resp)
    if edge:  # Skottun et al. read F1/F0 at the optimal SF; at the range's edge the optimum is not in the range
        text += (f"; the simple/complex call of {edge} is read at an SF at the edge of the tested range, not at a "
                 "bracketed optimum")
    unresolved = sum(t.get("cell_type") == "unresolved" for t in resp)
    if unresolved:
        text += (f"; {unresolved} {'has' if unresolved == 1 else 'have'} no simple/complex call (SF peak at the edge "
                 "of the tested range: F1/F0 not at a bracketed optimum)")
    return escape(text + ".", quote=False)


def modulation_counts(tunings: Sequence[dict]) -> dict:
    """Of responsive units' tuning records: ``simple`` and ``complex`` (Skottun et al. 1991's split of F1/F0 at
    :data:`~insilico.experiments.selectivity.SIMPLE_F1_F0`), ``infinite`` (simple with an evoked mean F0 <= 0:
    no finite ratio) and ``ratios`` (the finite F1/F0 values of those called); ``unresolved``: units with no
    call (SF peak at the edge of the tested range), whose F1/F0 is not drawn.

    >>> modulation_counts([{"cell_type": "simple", "modulation_ratio": 1.6}, {"cell_type": "complex",
    ...                     "modulation_ratio": 0.3}, {"cell_type": ""},
    ...                    {"cell_type": "unresolved", "modulation_ratio": 1.5}])
    {'simple': 1, 'complex': 1, 'infinite': 0, 'ratios': [1.6, 0.3], 'unresolved': 1}
    """
    unresolved = sum(bool(t) and t.get("cell_type") == "unresolved" for t in tunings)
    typed = [t for t in tunings if t.get("cell_type") and t.get("cell_type") != "unresolved"]
    return {"simple": sum(t["cell_type"] == "simple" for t in typed),
            "complex": sum(t["cell_type"] == "complex" for t in typed),
            "infinite": sum(t["cell_type"] == "simple" and t.get("modulation_ratio") is None for t in typed),
            "ratios": [t["modulation_ratio"] for t in typed if t.get("modulation_ratio") is not None],
            "unresolved": unresolved}


def _modulation_panel(tunings: Sequence[dict], early: bool = False) -> list[str]:
    """The F1/F0 histogram with the simple/complex split at 1 (none when the records carry no F1/F0); on ``early``
    layers with V1's distribution beside it (bimodal, both kinds common: Skottun et al. 1991, ``REFERENCES["sk91"]``)."""
    counts = modulation_counts(tunings)
    if not counts["simple"] + counts["complex"]:
        return []
    note = f"simple (F1/F0 > {SIMPLE_F1_F0:g}): {counts['simple']}, complex: {counts['complex']}" + (
        f"; {counts['infinite']} simple with F0 ≤ 0 not drawn" if counts["infinite"] else "") + (
        f"; {counts['unresolved']} with the SF peak at the edge not drawn" if counts["unresolved"] else "") + (
        "; V1: bimodal [5]" if early else "")
    return [figures.histogram(counts["ratios"], np.linspace(0, 2, 11), "F1/F0 (phase modulation)",
                              "F1/F0", lines=(SIMPLE_F1_F0,), note=note, xticks=[0, 0.5, 1, 1.5, 2])]


def layer_summary(rows: Sequence[dict], tunings: Sequence[dict | None], image_size: int | None = None,
                  depth: int = 1, heads: bool = False) -> str:
    """The summary section of a layer page (HTML): status bar, activation scatter, histograms, references.

    ``rows``: the layer's ``units.csv`` rows (:func:`~insilico.gallery.build.unit_row`); ``tunings``: each
    unit's tuning record or None; ``image_size``: the model's input width in pixels (for RF sizes and the
    early-layer test); ``depth``: folders between the page and the site root; ``heads``: the units are attention
    heads, whose value (a norm) is never below 0, so no "above 0 on some photo" bar is drawn (it would be true of
    every head by construction).
    """
    if not rows:
        return ""
    parts = [f"<h2>Summary of {len(rows)} {'heads' if heads else 'units'}</h2>"]
    spatial = any(r.get("responsive") is not None for r in rows) or any(t for t in tunings)
    title = ("responsiveness to gratings (the criteria: methods, at the end of the page)" if spatial
             else "units driven by the exemplar photos (before the nonlinearity)")
    if heads and not spatial:
        parts.append("<p>A head's value is the norm of its output, never below 0: no count of heads driven above 0 "
                     "is shown (every head would be).</p>")
    else:
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
                 f"orientation only those with OSI ≥ {TUNED_OSI:.2f}; RF sizes every unit that is not silent."
                 f"{physiology_text(rows, tunings)}</p>" if spatial else f"<p>{text}</p>")
    parts.append(f'<div class="row">{"".join(panels)}</div>')
    if spatial and early:
        refs = "".join(f"<li>{REFERENCES[k]}</li>" for k in ("dvyh82", "rsh02", "dvat82", "fgnp85", "sk91"))
        parts.append("<p>Red: macaque V1 for comparison (this layer's receptive fields are small, as in an early "
                     "visual area). Preferred SF is in cycles per image: with no visual angle given for the images, "
                     f"the V1 range in cycles per degree [3, 4] cannot be placed on that axis.{v1_footing(rows, tunings)}"
                     f'</p><ol class="refs">{refs}</ol>')
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
  var size = Number(table.getAttribute("data-page-rows")) || 0, page = 0;
  var prev = document.getElementById("unit-prev"), next = document.getElementById("unit-next");
  function filter() {
    var shown = 0, first = page * size;
    Array.prototype.forEach.call(body.rows, function (r) {
      var ok = test(r, box.value);
      r.style.display = ok && (!size || (shown >= first && shown < first + size)) ? "" : "none";
      shown += ok;
    });
    if (size && first >= shown && page > 0) { page = Math.max(0, Math.ceil(shown / size) - 1); return filter(); }
    count.textContent = shown + " of " + body.rows.length + " units" + (size && shown > size ?
      "; rows " + (first + 1) + "\u2013" + Math.min(first + size, shown) : "");
    if (prev) { prev.disabled = page === 0; next.disabled = first + size >= shown; }
  }
  Array.prototype.forEach.call(heads, function (h, i) {
    h.addEventListener("click", function () {
      state.dir = state.col === i ? -state.dir : 1;
      state.col = i;
      sortBy(i, state.dir);
      filter();
    });
  });
  box.addEventListener("input", function () { page = 0; filter(); });
  if (prev) {
    prev.addEventListener("click", function () { page = Math.max(0, page - 1); filter(); });
    next.addEventListener("click", function () { page += 1; filter(); });
  }
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


#: A unit table of more rows than this is paginated (:data:`PAGE_ROWS` rows shown at a time), so a 2,048-unit
#: layer's page opens fast.
PAGINATE_ABOVE = 2000
PAGE_ROWS = 500


def unit_table(rows: Sequence[dict], columns: Sequence[str], depth: int = 1) -> str:
    """The sortable, filterable unit table (HTML with its inline script), one row per unit; above
    :data:`PAGINATE_ABOVE` rows it shows :data:`PAGE_ROWS` at a time (sorting and filtering still cover every row).

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
            cls = ' class="t"' if c in ("layer", "reason", "tuned_unit", "preferred_colour", "cell_type") else ""
            cells.append(f'<td{cls} data-v="{escape(key)}">{text}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    many = len(rows) > PAGINATE_ABOVE
    paged = f' data-page-rows="{PAGE_ROWS}"' if many else ""
    pager = (' <button id="unit-prev" type="button">&larr; previous</button> '
             '<button id="unit-next" type="button">next &rarr;</button>') if many else ""
    return (f'<h2>All units</h2><p>The data of <a href="{"../" * depth}units.csv">units.csv</a>; click a column '
            "to sort (again to reverse), type to filter (any text, or e.g. <code>osi&gt;0.5</code>, "
            '<code>responsive=yes</code>).</p><p><input id="unit-filter" type="search" placeholder="filter" '
            f'aria-label="filter units"> <span id="unit-count"></span>{pager}</p>'
            f'<div class="scroll"><table class="units" id="units"{paged}><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>'
            + TABLE_SCRIPT)


__all__ = ["EARLY_RF_FRACTION", "PAGE_ROWS", "PAGINATE_ABOVE", "REFERENCES", "TABLE_STYLE", "headline",
           "headline_text", "is_early", "is_silent", "layer_summary", "modulation_counts", "status_counts", "unit_table"]
