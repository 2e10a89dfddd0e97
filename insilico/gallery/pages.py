"""The gallery's HTML: index of layers, one grid page per layer, one stable page per unit.

Pages are plain HTML with relative links only, so the site opens from the
file system (``file://``) with no server. Curves (tuning, lesion effects) are
inline SVG (:mod:`.charts`) drawn from the stage JSON; images are the PNGs the
stages wrote, the RF map and the RF outlines over the exemplars are SVG over
them. A unit page gets its layer's context (:func:`unit_context`: the layer's
description, class names of output units, the one lesion scale of the layer).
A section whose stage has not run yet says so instead of showing a broken
image.

Site layout::

    index.html  style.css  gallery.json
    layers/<layer>.html
    units/<layer>/<c>.html      units/<layer>/<c>/{max,diverse-1,...,inhibit,exemplars,rf}.png, <stage>.json
"""
from __future__ import annotations

import os
from html import escape
from pathlib import Path

from .. import persistence
from ..experiments.receptive_fields import SE_FOLDS
from ..experiments.selectivity import LAYER_PRECISION, SILENT
from ..statistics import proportion_interval
from .charts import svg_bars, svg_curve

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
.silent { background: #fff3cd; border-left: 4px solid #e0b01e; padding: 0.4em 0.8em; }
table.meta td { padding: 1px 10px 1px 0; font-size: 0.9em; }
img.wide { width: min(100%, 900px); height: auto; }
svg { background: white; border: 1px solid #ddd; }
.layers li { margin: 0.6em 0; } .layers img { width: 40px; height: 40px; vertical-align: middle; }
.overlay { position: relative; display: inline-block; line-height: 0; }
.overlay.wide { width: min(100%, 900px); } .overlay img { width: 100%; height: auto; }
.overlay svg { position: absolute; left: 0; top: 0; width: 100%; height: 100%; border: 0; background: none; }
svg.rf { background: none; border: 0; } .desc { color: #444; } td.num { text-align: right; }
table.arch th { text-align: left; font-size: 0.85em; padding-right: 10px; } details { margin: 0.6em 0; }
.row.zoom { gap: 6px; } figure.zoom svg { display: block; border: 0; background: #ddd; margin-bottom: 2px; }
a.how { font-weight: normal; font-size: 0.8em; } details.methods h3 { font-size: 1em; margin-bottom: 0.2em; }
details.methods p { max-width: 60em; }
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
# Pages
# ---------------------------------------------------------------------------------------
def _missing(what: str) -> str:
    return f'<p class="missing">{escape(what)}: not computed yet (rerun the build to fill it in)</p>'


def _img(src: str, alt: str, cls: str = "px") -> str:
    """An ``<img>`` the browser loads only when it scrolls into view (a layer of 2,048 units stays fast to open)."""
    return f'<img class="{cls}" src="{escape(src)}" alt="{escape(alt)}" loading="lazy">'


def _figure(src: str, caption: str, strong: bool = False) -> str:
    text = f"<b>{escape(caption)}</b>" if strong else escape(caption)
    return f'<figure>{_img(src, caption)}<figcaption>{text}</figcaption></figure>'


def index_page(title: str, meta: dict, layers: list[dict], card: dict | None = None) -> str:
    """The site's front page: the model card, the layers (with descriptions) and the build settings.

    ``layers``: dicts with ``layer``, ``slug``, ``n``, ``done``, ``shape``, ``thumbs`` (channels with images) and
    optionally ``description`` (:func:`insilico.gallery.describe.describe_layers`' ``text``). ``card``:
    :func:`insilico.gallery.describe.model_card` (without it the settings alone are shown).
    """
    from .describe import READER_SETTINGS

    items = []
    for info in layers:
        thumbs = "".join(_img(f'units/{info["slug"]}/{c}/max.png', f"unit {c}") for c in info["thumbs"][:12])
        what = f' &mdash; {escape(info["description"])}' if info.get("description") else ""
        units = f'{unit_noun(info["layer"])}s'  # heads are named heads (a token layer's noun needs its layout)
        done = (f'all {info["n"]} {units} computed' if info["done"] == info["n"] else
                f'{info["done"]} of {info["n"]} {units} computed (rerun the build to finish)')
        items.append(f'<li><a href="layers/{info["slug"]}.html"><b>{escape(info["layer"])}</b></a>{what}<br>'
                     f'{info["n"]} {units}, output {_shape(info["shape"])}, {done}<br>{thumbs}</li>')
    slugs = {info["layer"]: info["slug"] for info in layers}
    reader = (card or {}).get("settings") or {k: meta[k] for k in READER_SETTINGS if meta.get(k) is not None}
    internals = (card or {}).get("internals") or {k: v for k, v in meta.items() if k not in READER_SETTINGS}
    rows = "".join(f"<tr><td>{escape(READER_SETTINGS.get(k, k))}</td><td>{escape(_setting(k, v))}</td></tr>"
                   for k, v in reader.items())
    more = "".join(f"<tr><td>{escape(str(k))}</td><td>{escape(str(v))}</td></tr>" for k, v in internals.items())
    body = (f"<h1>{escape(title)}</h1><p>Feature visualizations, exemplars, tuning, receptive fields and "
            f"lesion effects of every unit, built offline by <code>insilico gallery build</code>.</p>"
            '<p><a href="model.html">The model and the brain</a>: each layer against human and monkey IT (RSA), '
            "receptive field size across depth.</p>"
            + (_model_card_html(card, slugs) if card else "")
            + f'<h2>Layers</h2><ul class="layers">{"".join(items)}</ul>'
            f'<h2>How this gallery was built</h2><table class="meta">{rows}</table>'
            f'<details><summary>Build internals (to reproduce the site)</summary><table class="meta">{more}'
            f"</table></details>")
    return page(title, body, 0)


def _setting(key: str, value) -> str:
    """A build setting as a reader reads it (yes/no, what a stimulus set is)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key == "stimuli":
        return {"photos": "held-out crops of the bundled photos (never seen in training; one photo per class, so "
                          "a class is one photo's content, not a category of images)",
                "natural": "random crops of scikit-image's photos"}.get(value, str(value))
    return str(value)


def _shape(shape) -> str:
    return " × ".join(str(s) for s in shape) if shape else "?"


def _model_card_html(card: dict, slugs: dict) -> str:
    trained, source = card.get("trained") or {}, card.get("input") or {}
    facts = [("model", escape(trained.get("description", card.get("type", "")))),
             ("size", f"{escape(card.get('type', ''))}, {card['parameters']:,} parameters"),
             ("input", f"{_shape(source.get('size'))} image, {escape(source.get('range', ''))}")]
    if trained.get("training"):
        facts.append(("trained on", escape(trained["training"])))
    if trained.get("held_out_accuracy") is not None:
        chance = f" (chance {trained['chance']:.1%})" if trained.get("chance") is not None else ""
        on = f" on {escape(trained['held_out'])}" if trained.get("held_out") else ""
        n = trained.get("held_out_n")
        ci = "" if not n else " [{:.1%}, {:.1%}] (95% Wilson interval over {} images)".format(
            *proportion_interval(round(trained["held_out_accuracy"] * n), n), n)
        facts.append(("held-out accuracy", f"<b>{trained['held_out_accuracy']:.1%}</b>{ci}{chance}{on}"))
    if card.get("classes"):
        facts.append((f"{len(card['classes'])} classes", escape(", ".join(map(str, card["classes"])))))
    lines = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in facts)
    rows = []
    for r in card.get("architecture", []):
        name = escape(r["address"]) + (f" (×{r['calls']})" if r.get("calls", 1) > 1 else "")
        if r["gallery"] and r.get("layer", r["address"]) in slugs:
            name = f'<a href="layers/{slugs[r.get("layer", r["address"])]}.html"><b>{name}</b></a>'
        rows.append(f'<tr><td>{name}</td><td>{escape(r["module"])}</td><td>{_shape(r["shape"])}</td>'
                    f'<td class="num">{r["parameters"]:,}</td></tr>' if r["parameters"] else
                    f'<tr><td>{name}</td><td>{escape(r["module"])}</td><td>{_shape(r["shape"])}</td><td></td></tr>')
    rows.append(f'<tr><td><b>total</b></td><td></td><td></td><td class="num"><b>{card["parameters"]:,}</b></td></tr>')
    return (f'<h2>Model</h2><table class="meta card">{lines}</table><details open><summary>Architecture: every module in call '
            f'order, with one image\'s output shape (bold: layers shown in this gallery; ×T: called T times per '
            f'forward pass)</summary>'
            f'<table class="meta arch"><tr><th>module</th><th>what</th><th>output</th><th>parameters</th></tr>'
            f'{"".join(rows)}</table></details>')


def layer_page(title: str, layer: str, layer_slug: str, channels: list[int], ready: set,
               rows: list[dict] | None = None, tunings: list | None = None, image_size: int | None = None,
               columns: tuple = (), description: str = "", classes: list | None = None,
               lesion: dict | None = None) -> str:
    """A layer's page: population summary (:func:`.summary.layer_summary`), thumbnail grid, unit table.

    ``lesion``: the split-half reliability of the layer's lesion matrix (:func:`.stages.lesion_reliability`), said
    with how many of its lesion bars differ from 0 (the rows' ``lesion_nonzero`` of ``lesion_bars``).
    ``rows``: the layer's ``units.csv`` rows; ``tunings``: each unit's tuning record or None;
    ``columns``: the table's columns (``units.csv``'s); ``description``: what the layer is
    (:func:`.describe.describe_layers`); ``classes``: class names of an output
    layer's units (shown under their tiles). Without ``rows`` only the grid is drawn.
    """
    from ..units import Unit
    from . import summary
    from .methods import methods_html

    tiles = []
    for c in channels:
        img = _img(f"../units/{layer_slug}/{c}/max.png", f"unit {c}") if c in ready else \
            '<div class="missing">pending</div>'
        name = f"<br>{escape(str(classes[c]))}" if classes and c < len(classes) else ""
        tiles.append(f'<div class="tile"><a href="../units/{layer_slug}/{c}.html">{img}{c}{name}</a></div>')
    tunings = list(tunings or [None] * len(rows or []))
    heads = Unit.parse(layer).part == "heads"  # attention heads (gallery/view.py)
    top = summary.layer_summary(rows, tunings, image_size, heads=heads) if rows else ""
    table = summary.unit_table(rows, columns) if rows else ""
    spatial = any(t for t in tunings) or any(r.get("responsive") is not None for r in rows or [])
    methods = methods_html(spatial, bool(classes), next((t for t in tunings if t), None), image_size,
                           heads=heads)
    body = (f'<nav><a href="../index.html">{escape(title)}</a> / {escape(layer)} &nbsp; '
            f'<a href="../model.html">model vs brain</a> &nbsp; <a href="{escape(layer_slug)}.html#methods">methods</a></nav>'
            f"<h1>{escape(layer)}</h1>"
            + (f'<p class="what">{escape(description)}</p>' if description else "")
            + f"<p>{len(channels)} {'heads' if heads else 'units'}. Click a unit for its page.</p>{top}"
            + _lesion_layer_html(lesion, rows or []) + "<h2>Feature visualizations</h2>"
            "<p>Per unit the image synthesized from noise, or, where it stays below the unit's best photo, the best "
            "photo after gradient ascent (its page ranks both by value)."
            + ("" if spatial else " Deep layers' images at this gallery's few optimisation steps are often "
               "similar textures across units: read a unit by its exemplars and lesion effects as much as by its "
               "image.") + f'</p><div class="grid">{"".join(tiles)}</div>{table}{methods}')
    return page(f"{layer} - {title}", body, 1)


def _lesion_layer_html(lesion: dict | None, rows: list[dict]) -> str:
    """The layer's lesion matrix at a glance: how many bars differ from 0, and its split-half reliability."""
    bars = [(r["lesion_nonzero"], r["lesion_bars"]) for r in rows if r.get("lesion_bars") is not None]
    if not bars and not lesion:
        return ""
    text = "<h2>Lesion matrix</h2><p>"
    if bars:
        text += (f"{sum(a for a, _ in bars)} of {sum(b for _, b in bars)} lesion bars of {len(bars)} units differ "
                 "from 0 (their 95% t interval over the class's images excludes 0; the others are drawn hollow). ")
    if lesion and lesion.get("split_half_r") is not None:
        text += (f"Test-retest: the units &times; classes matrix of lesion effects measured on two halves of the "
                 f"images ({lesion['per_class']} per class, halves stratified by class) correlates at "
                 f"r = {lesion['split_half_r']:.2f} (Pearson, mean over 20 random splits; Spearman-Brown "
                 f"reliability of the whole matrix {lesion['reliability']:.2f}).")
    return text + "</p>"


def lesion_scale(datas) -> float | None:
    """The largest ``|lesion effect|`` over a layer's unit stage dicts: the one scale its lesion charts share."""
    values = [abs(v) for d in datas for v in ((d.get("lesion") or {}).get("probability_change") or [])
              if v is not None]
    return max(values) if values else None


def _largest(datas, channels) -> int | None:
    """The channel whose lesion has the layer's largest ``|effect|``."""
    best = [(max([abs(v) for v in (d.get("lesion") or {}).get("probability_change") or [] if v is not None] or [-1]), c)
            for d, c in zip(datas, channels)]
    return max(best)[1] if best and max(best)[0] >= 0 else None


def unit_context(layer: str, description: str | None = None, classes: list | None = None, datas=(),
                 input_size=None, channels=None, layout: str | None = None) -> dict:
    """What a unit page needs to know about its layer: ``description`` (one line), ``classes`` (class names of
    an output layer's units), ``lesion_scale`` (:func:`lesion_scale` of the layer's unit stage dicts ``datas``)
    and ``lesion_scale_unit`` (its channel; ``channels``: those of ``datas``, default 0, 1, ...),
    ``input_size`` (the model's input (H, W)), ``layout`` (the layer's, :class:`insilico.gallery.view.LayerView`:
    what a unit is called, :func:`unit_noun`)."""
    datas = list(datas)
    channels = list(channels) if channels is not None else list(range(len(datas)))
    return {"layer": layer, "description": description, "classes": classes, "lesion_scale": lesion_scale(datas),
            "lesion_scale_unit": _largest(datas, channels),
            "input_size": list(input_size)[-2:] if input_size is not None else None, "layout": layout}


def unit_noun(layer: str, layout: str | None = None) -> str:
    """What a unit of ``layer`` is called on its page: ``"head"`` (an attention module's heads, ``"attn:heads"``),
    ``"feature"`` (a token layer's, read at the centre patch token), else ``"unit"``.

    >>> unit_noun("blocks.3.attn:heads"), unit_noun("blocks.3", "tokens"), unit_noun("features.0", "map")
    ('head', 'feature', 'unit')
    """
    from ..units import Unit

    if layout == "heads" or Unit.parse(layer).part == "heads":
        return "head"
    return "feature" if layout == "tokens" else "unit"


def unit_page(title: str, layer: str, layer_slug: str, channel: int, data: dict, neighbours: tuple,
              context: dict | None = None) -> str:
    """``data``: stage name -> the unit's stage dict (absent stages are shown as pending); ``context``:
    :func:`unit_context` of its layer (description, class names, the layer's lesion scale). The method text is
    on the layer page (:func:`insilico.gallery.methods.methods_html`); each section links to it."""
    from .methods import method_link

    ctx = context or {}
    prev, nxt = neighbours
    noun = unit_noun(layer, ctx.get("layout"))
    here = f"{noun} {channel}" + (" at the centre patch token" if noun == "feature" else "")
    links = [f'<a href="../../index.html">{escape(title)}</a>',
             f'<a href="../../layers/{layer_slug}.html">{escape(layer)}</a>', here]
    steps = " ".join(
        [f'<a href="{prev}.html">&larr; {noun} {prev}</a>' if prev is not None else "",
         f'<a href="{nxt}.html">{noun} {nxt} &rarr;</a>' if nxt is not None else ""])
    address = f"{layer}[{channel}]"
    classes = ctx.get("classes")
    name = classes[channel] if classes and 0 <= channel < len(classes) else None
    head = f"<h1><code>{escape(address)}</code>" + (f" &mdash; class &ldquo;{escape(str(name))}&rdquo;" if name
                                                      else "") + "</h1>"
    if ctx.get("description"):
        head += f'<p class="desc"><b>{escape(layer)}</b> &mdash; {escape(ctx["description"])}' + (
            f"; this unit is the logit of class &ldquo;{escape(str(name))}&rdquo;" if name else "") + ".</p>"
    head += _silent_note(data)
    rf = data.get("rf")
    notes = output_unit_notes(str(name), data) if name else {}  # an output layer's logit: what is by construction
    sections = [("features", _features_html(channel, data.get("features"), data.get("tuning"))),
                ("exemplars", _exemplars_html(channel, data.get("exemplars"), rf, ctx.get("input_size"))
                 + notes.get("exemplars", "") + time_course_html(data.get("exemplars")))]  # recurrent: time course
    if "tuning" in data or data.get("_spatial"):
        sections.append(("tuning", _tuning_html(data.get("tuning"))))
        sections.append(("rf", _rf_html(channel, rf, ctx.get("input_size"))))
    sections.append(("lesion", _lesion_html(data.get("lesion"), ctx.get("lesion_scale"), layer,
                                            ctx.get("lesion_scale_unit")) + notes.get("lesion", "")))
    sections = [html.replace("</h2>", f" <small>{method_link(layer_slug, name)}</small></h2>", 1)
                for name, html in sections]
    body = f'<nav>{" / ".join(links)} &nbsp; {steps}</nav>{head}' + "".join(sections)
    return page(f"{address}{' ' + str(name) if name else ''} - {title}", body, 2)


def output_unit_notes(name: str, data: dict) -> dict:
    """Notes for the page of the logit of class ``name`` (an output layer's unit): ``"exemplars"``, how many of its
    top exemplars are photos of its class (the raw logit ranks by this logit alone, not by the class winning), and
    ``"lesion"``, that the drop of its own class when it is set to 0 is by construction; "" where a stage is missing.

    >>> notes = output_unit_notes("coffee", {"exemplars": {"labels": ["moon", "coffee", "moon"]}, "lesion": {}})
    >>> "1 of these 3 exemplars is a photo of class “coffee”" in notes["exemplars"], "by construction" in notes["lesion"]
    (True, True)
    """
    ex, les = data.get("exemplars") or {}, data.get("lesion")
    notes = {}
    if ex.get("labels") and ex.get("rows") != "attention":
        n, own = len(ex["labels"]), sum(str(label) == name for label in ex["labels"])
        notes["exemplars"] = escape(
            f"{own} of these {n} exemplars {'is a photo' if own == 1 else 'are photos'} of class “{name}”: the raw "
            "logit ranks photos by this class's logit alone, and a photo of another class can have a larger one "
            "(while the model still chooses its own class).", quote=False).join(("<p>", "</p>"))
    if les is not None:
        notes["lesion"] = escape(
            f"This unit is the logit of “{name}”: set to 0, it lowers the probability of “{name}” wherever that logit "
            f"was above 0, by construction; the bar of “{name}” is no finding, the other classes' bars are.",
            quote=False).join(("<p>", "</p>"))
    return notes


def _silent_note(data: dict) -> str:
    """A banner for a silent unit (the headlines' one definition, :func:`.summary.is_silent`): silent at the map's
    centre on every grating and photo, or never above 0 on the exemplar photos; its images and maps describe a unit
    that is off."""
    tuning, ex = data.get("tuning") or {}, data.get("exemplars") or {}
    acts = [a for a in ex.get("activations", []) if a is not None]
    if tuning.get("reason") == SILENT:
        best = f"; the channel's best position on the photos reaches {acts[0]:.3g}" if acts and acts[0] > 0 else ""
        what = f"the neuron at the map's centre ({tuning.get('unit', '')}) is silent on every grating and photo{best}"
    elif acts and max(acts) <= 0:
        what = f"it never exceeds 0 on the {ex.get('n_stimuli', len(acts))} exemplar photos (best {max(acts):.3g})"
    else:
        return ""
    return f'<p class="silent"><b>Silent unit</b>: {escape(what)}.</p>'


#: What each kind of maximizing candidate is, as a caption says it (``features.json``'s ``maximizing_kind``).
KINDS = {"from noise": "from noise", "stretched exemplar": "stretched exemplar",
         "top exemplar": "best photo (no ascent step improved it)",
         "matched contrast": "from noise at the best photo's contrast"}
#: The kinds that are synthesized images (the best photo itself is not).
SYNTHETIC = ("from noise", "stretched exemplar", "matched contrast")


def ranked_images(d: dict) -> list[dict]:
    """The unit's candidate maximizing images of its ``features.json`` record ``d``, most activating first: dicts
    with ``file`` (max.png, max-other.png, matched.png: the image from noise under the best photo's contrast),
    ``kind`` and ``value``; ``maximizing`` is True on the most activating *synthesized* one (from noise, at matched
    contrast or a stretched exemplar), whichever file it is in.

    >>> d = {"maximizing": 2.0, "maximizing_kind": "from noise", "other": {"kind": "stretched exemplar", "value": 3.0}}
    >>> [(r["kind"], r["maximizing"]) for r in ranked_images(d)]
    [('stretched exemplar', True), ('from noise', False)]
    """
    found = [{"file": "max.png", "kind": d.get("maximizing_kind", "from noise"), "value": d.get("maximizing")}]
    if d.get("other"):
        found.append({"file": "max-other.png", "kind": d["other"].get("kind"), "value": d["other"].get("value")})
    if d.get("matched"):
        found.append({"file": "matched.png", "kind": "matched contrast", "value": d["matched"].get("value")})
    found.sort(key=lambda r: -float("inf") if r["value"] is None else r["value"], reverse=True)
    best = next((r for r in found if r["kind"] in SYNTHETIC and r["value"] is not None), None)
    return [dict(r, maximizing=r is best) for r in found]


def _features_html(c: int, d: dict | None, tuning: dict | None = None) -> str:
    if d is None:
        return "<h2>Feature visualization</h2>" + _missing("feature visualization")

    def label(name, value):
        return f"{name} ({value:.3g})" if value is not None else name

    ranked = ranked_images(d)
    figs = [_figure(f"{c}/{r['file']}", label(("maximizing: " if r["maximizing"] else "") + KINDS.get(
        r["kind"], str(r["kind"])), r["value"]), strong=r["maximizing"]) for r in ranked]
    figs += [_figure(f"{c}/diverse-{j}.png", label(f"diverse {j}", v)) for j, v in enumerate(d["diverse"][1:], start=1)]
    floor = tuning is not None and tuning.get("spontaneous") is False
    figs.append(_figure(f"{c}/inhibit.png", label("inhibiting" + (", before the ReLU" if floor else ""),
                                                   d["inhibiting"])))
    top = d.get("top_exemplar")
    order = [(KINDS.get(r["kind"], str(r["kind"])), r["value"]) for r in ranked if r["value"] is not None]
    if top is not None and not any(r["kind"] == "top exemplar" for r in ranked):
        order.append(("best photo", top))
    order.sort(key=lambda kv: kv[1], reverse=True)
    text = "Ranked by value: " + " &ge; ".join(f"{escape(k)} <b>{v:.4g}</b>" for k, v in order) + "."
    best = next((r for r in ranked if r["maximizing"]), None)
    if best is not None and top is not None and best["value"] < top:
        text += " No synthesized image reaches the best photo."
    matched = d.get("matched") or {}
    if matched.get("contrast") is not None and matched.get("photo_contrast") is not None:
        text += (f" RMS contrast of the image from noise at the best photo's contrast: {matched['contrast']:.3g} "
                 f"(budget: the best photo's, {matched['photo_contrast']:.3g}).")
    if floor:
        text += (" This unit has no spontaneous activity (its blank response is its floor): the inhibiting image "
                 "lowers its input before the ReLU, not its firing.")
    return f'<h2>Feature visualization</h2><p>{text}</p><div class="row">{"".join(figs)}</div>'


def rf_box_at(rf: dict | None, neuron: str, input_size=None, clip: bool = True) -> tuple | None:
    """The RF box ``(y0, y1, x0, x1)`` (inclusive input pixels, clipped to the image unless ``clip=False``) of
    ``neuron`` (``"features.3[1,13,0]"``; a channels-last ``[y, x, c]``, a token ``[t, d]`` by the ``layout``
    and ``shape`` the rf stage stores for them): the box measured at the map's centre (the rf stage) moved by
    ``(position - map_center) * stride``. None for a unit without a map position or an RF."""
    from ..units import Unit

    if not rf or rf.get("stride") is None or rf.get("map_center") is None or rf.get("box") is None:
        return None
    box = rf["box"]
    if len(box) != 4 or any(v is None for v in box):
        return None
    index = Unit.parse(neuron).index or ()
    if "layout" in rf:  # a channels-last stage or a token layer: its position by the layer's view
        from .view import LayerView

        where = LayerView.of("", tuple(rf["shape"]), rf["layout"], rf.get("prefix")).position(tuple(index))
    else:
        where = tuple(index[1:]) if len(index) == 3 and all(isinstance(i, int) for i in index) else None
    h, w = rf.get("input_size") or input_size or (None, None)
    if h is None or where is None:
        return None
    dy = (where[0] - rf["map_center"][0]) * rf["stride"][0]
    dx = (where[1] - rf["map_center"][1]) * rf["stride"][1]
    if not clip:
        return box[0] + dy, box[1] + dy, box[2] + dx, box[3] + dx
    y0, y1 = max(0.0, box[0] + dy), min(h - 1.0, box[1] + dy)
    x0, x1 = max(0.0, box[2] + dx), min(w - 1.0, box[3] + dx)
    return (y0, y1, x0, x1) if y0 <= y1 and x0 <= x1 else None


def time_course_html(d: dict | None) -> str:
    """A recurrent unit's time course (the exemplars stage's ``time_course``, :func:`insilico.gallery.view.add_time_course`):
    its mean over the top exemplars at every time step, the layer's own step marked; "" for other layers."""
    course = (d or {}).get("time_course")
    if not course:
        return ""
    values = course["values"]
    mean = [sum(row[t] for row in values) / len(values) for t in range(len(course["steps"]))]
    step = course["step"]
    curve = svg_curve(course["steps"], mean, "time step (call of the module in one forward pass)",
                      "time course on the top exemplars", ylabel="response (activation)",
                      mark=(step, f"step {step}: this page"), x_ticks=course["steps"])
    table = "; ".join(f"step {t}: {m:.3g}" for t, m in zip(course["steps"], mean))
    return (f"<h2>Time course</h2><p>The unit at every time step of the recurrent layer, mean over its "
            f"{len(values)} top exemplars, each read at the position where it drives the unit most at step {step} "
            f"(the step every other figure on this page shows).</p>{curve}<p>{escape(table)}</p>")


def attention_exemplars_html(c: int, d: dict) -> str:
    """The exemplars of an attention head (``rows="attention"``, :func:`insilico.gallery.view.head_exemplar_pages`):
    the photos, then the head's attention drawn over each, from the query patch where it responds most and from
    the CLS token (the centre patch where the model has no prefix tokens)."""
    cells = ", ".join(f"{escape(str(l))} ({a:.3g})" for l, a in zip(d["labels"], d["activations"]) if a is not None)
    second = "the CLS token" if d.get("second_query") == 0 else f"the centre patch token ({d.get('second_query')})"
    share = [v for v in d.get("prefix_share", []) if v is not None]
    prefix = (f" The drawings leave out the attention on the CLS and register tokens (from the best patch: "
              f"{min(share):.1%} to {max(share):.1%} of it)." if share and max(share) > 0 else "")
    peak = [v for v in d.get("peak", []) if v is not None]
    if peak:
        prefix += (f" From the best patch, the most attended patch gets {min(peak):.3g} to {max(peak):.3g} times the "
                   "mean patch's attention (1: uniform attention, a flat drawing).")
    return (f"<h2>Top {d['k']} exemplars of {d['n_stimuli']} stimuli</h2>"
            "<p>Rows: the photos that drive the head most (the norm of its output at its best patch token), then "
            f"the head's attention over the image patches (bright: attended), from that patch and from {second}."
            f"{escape(prefix)}</p><div class=\"overlay wide\">{_img(f'{c}/exemplars.png', 'exemplars and attention maps')}"
            f"</div><p>{cells}</p>")


def _past_the_edge(rf: dict | None, neurons, size) -> int:
    """How many of ``neurons`` have a receptive field reaching past the image's edge (into the zero padding)."""
    boxes = [rf_box_at(rf, n, size, clip=False) for n in neurons] if size else []
    return sum(b is not None and (b[0] < 0 or b[2] < 0 or b[1] > size[0] - 1 or b[3] > size[1] - 1) for b in boxes)


def _exemplars_html(c: int, d: dict | None, rf: dict | None = None, input_size=None) -> str:
    if d is None:
        return "<h2>Top exemplars</h2>" + _missing("exemplars")
    if d.get("rows") == "attention":  # an attention head (gallery/view.py)
        return attention_exemplars_html(c, d)
    cells = ", ".join(f"{escape(str(l))} ({a:.3g})" for l, a in zip(d["labels"], d["activations"]) if a is not None)
    img = _img(f"{c}/exemplars.png", "exemplars, deconvolution and gradient maps")
    size = (rf or {}).get("input_size") or input_size
    boxes = [rf_box_at(rf, n, size) for n in d.get("neurons", [])][: d["k"]] if size else []
    note, zoom = "", ""
    if any(b is not None for b in boxes):
        h, w, pad, k = size[0], size[1], 2, d["k"]
        width, height = k * (w + pad) - pad, 3 * (h + pad) - pad
        rects = "".join(
            f'<rect x="{j * (w + pad) + b[2]:.1f}" y="{r * (h + pad) + b[0]:.1f}" width="{b[3] - b[2] + 1:.1f}" '
            f'height="{b[1] - b[0] + 1:.1f}"/>' for j, b in enumerate(boxes) if b is not None for r in range(3))
        img = (f'<div class="overlay wide">{img}<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
               f'preserveAspectRatio="none" aria-label="receptive-field outlines"><g fill="none" stroke="#ffd400" '
               f'stroke-width="1.5" vector-effect="non-scaling-stroke">{rects}</g></svg></div>')
        note = f" Yellow: its receptive field ({rf['size']:.3g} px) where each exemplar drives it most."
        edge = _past_the_edge(rf, d.get("neurons", [])[: d["k"]], size)
        if edge:
            note += f" In {edge} of {d['k']} the field reaches past the image's edge (zero padding)."
        zoom = rf_zoom(f"{c}/exemplars.png", boxes, (h, w), k, pad)
    else:
        img = f'<div class="overlay wide">{img}</div>'
    note += exemplar_caveats(d["activations"][: d["k"]], d.get("labels", [])[: d["k"]])
    return (f"<h2>Top {d['k']} exemplars of {d['n_stimuli']} stimuli</h2>"
            f"<p>Rows: photo, deconvolution, gradient map.{escape(note)}</p>{img}{zoom}<p>{cells}</p>")


def exemplar_caveats(values, labels=()) -> str:
    """What a reader must know about a unit's top exemplar values (best first) before reading them as its preferred
    stimuli: how many tie with the best within rounding (:data:`~insilico.experiments.selectivity.LAYER_PRECISION`
    of the best |value|: their order is arbitrary), how many are at or below 0 (a ReLU unit does not fire on
    them, so they are the photos that lower its input least, not photos that drive it) and, with their ``labels``,
    how many share the most common label when at least half do (the bundled photos' crops of one photo overlap:
    not independent stimuli); "" when none of these.

    >>> exemplar_caveats([1.3667798, 1.3667752, 1.3583, 0.9])
    ' 1 of the other 3 ties with the best within rounding (their order is arbitrary).'
    >>> exemplar_caveats([0.07, 0.009, -0.02, -0.04])[:60]
    ' 2 of the 4 are at or below 0 before the nonlinearity (after'
    """
    acts = [float(v) for v in values if v is not None]
    if not acts:
        return ""
    tol = LAYER_PRECISION * max(abs(acts[0]), 1.0)
    tied = sum(abs(v - acts[0]) <= tol for v in acts[1:]) if acts[0] > 0 else 0
    low, n = sum(v <= 0 for v in acts), len(acts)
    text = (f" {tied} of the other {n - 1} {'ties' if tied == 1 else 'tie'} with the best within rounding (their "
            "order is arbitrary).") if tied else ""
    if low:
        text += (f" {low} of the {n} {'is' if low == 1 else 'are'} at or below 0 before the nonlinearity (after a ReLU "
                 "the unit does not fire on such a photo: it is listed because it lowers the unit's input least, not because "
                 "it drives the unit).")
    names = [str(label) for label in labels][:n]
    common = max(set(names), key=names.count) if names else None
    if common is not None and n >= 4 and 2 * names.count(common) >= n:
        text += (f" {names.count(common)} of the {n} share one label (“{common}”): where a label is one photo (the "
                 "bundled photos, one per class) they are overlapping crops of it, not independent stimuli.")
    return text


#: Shown width (CSS pixels) of one enlarged receptive-field crop.
ZOOM_WIDTH = 96


def rf_zoom(src: str, boxes: list, size: tuple, k: int, pad: int = 2, margin: float = 0.25, most: float = 0.6) -> str:
    """Each exemplar's receptive field enlarged: for column ``j`` of the exemplar mosaic ``src`` (3 rows of ``k``
    ``size`` (H, W) tiles, ``pad`` pixels apart: :func:`insilico.plot.images.mosaic`), its RF box ``boxes[j]`` ``(y0, y1, x0, x1)`` plus ``margin`` of
    its size, cut out of the photo, deconvolution and gradient rows by an SVG ``viewBox`` and drawn
    :data:`ZOOM_WIDTH` pixels wide, nearest-neighbour (each input pixel a block). Empty when no box is smaller
    than ``most`` of the image (a field that covers it is readable in the mosaic itself)."""
    h, w = size
    columns = []
    for j, b in enumerate(boxes):
        if b is None or (b[1] - b[0] + 1) * (b[3] - b[2] + 1) > most * h * w:
            continue
        m = max(2.0, margin * max(b[1] - b[0] + 1, b[3] - b[2] + 1))
        y0, y1, x0, x1 = max(0.0, b[0] - m), min(h - 1.0, b[1] + m), max(0.0, b[2] - m), min(w - 1.0, b[3] + m)
        ch, cw = y1 - y0 + 1, x1 - x0 + 1
        shown_h = ZOOM_WIDTH * ch / cw
        tiles = "".join(
            f'<svg xmlns="http://www.w3.org/2000/svg" class="zoom" width="{ZOOM_WIDTH}" height="{shown_h:.0f}" '
            f'viewBox="{j * (w + pad) + x0:.1f} {r * (h + pad) + y0:.1f} {cw:.1f} {ch:.1f}" role="img" '
            f'aria-label="exemplar {j + 1} {what}, enlarged"><image href="{escape(src)}" x="0" y="0" '
            f'width="{k * (w + pad) - pad}" height="{3 * (h + pad) - pad}" preserveAspectRatio="none" '
            f'style="image-rendering:pixelated"/></svg>' for r, what in enumerate(("photo", "deconvolution", "gradient")))
        columns.append(f'<figure class="zoom">{tiles}<figcaption>{j + 1}</figcaption></figure>')
    if not columns:
        return ""
    return ('<p>Receptive fields enlarged (photo, deconvolution, gradient; each input pixel a block):</p>'
            f'<div class="row zoom">{"".join(columns)}</div>')


def _tuning_html(d: dict | None) -> str:
    if d is None:
        return "<h2>Tuning to gratings</h2>" + _missing("tuning curves")
    base = d.get("baseline")
    pref = d.get("preferred_orientation") if d.get("responsive", True) else None
    pref_sf = d.get("preferred_sf") if d.get("responsive", True) else None
    colour = f" ({d['preferred_colour']} gratings)" if len(d.get("colour_peak") or {}) > 1 and d.get(
        "preferred_colour") else ""
    ori = svg_curve(list(d["orientations"]) + [180.0], list(d["curve"]) + list(d["curve"][:1]),
                    "orientation (° counter-clockwise; 0 = vertical bars)", f"orientation tuning at best SF{colour}",
                    baseline=base, ylabel="response (activation)",
                    mark=None if pref is None else (pref, f"preferred {pref:.0f}°"), x_range=(0.0, 180.0),
                    x_ticks=[0, 45, 90, 135, 180])
    sf = svg_curve(d["sfs"], d["sf_curve"], "spatial frequency (cycles / image, log scale)",
                   f"SF tuning at best orientation{colour}", log_x=True, baseline=base, ylabel="response (activation)",
                   mark=None if pref_sf is None else (pref_sf, f"peak at edge: {pref_sf:.3g}"
                                                      if d.get("sf_peak_at_edge") else f"preferred {pref_sf:.3g}"))
    head = f"<h2>Tuning to gratings</h2><p>Response of <code>{escape(d['unit'])}</code> (the map's centre).</p>"
    curves = f'<div class="row">{ori}{sf}</div>'
    if "responsive" in d and not d["responsive"]:
        reason = d["reason"] or "not responsive"
        return head + f"<p><b>{escape(reason)}</b>: no preference or selectivity is reported.</p>{curves}"
    facts = _tuning_facts(d) + _physiology_facts(d)
    return head + f'<p>{escape("; ".join(facts))}.</p>{curves}'


def _tuning_facts(d: dict) -> list[str]:
    """Preference, OSI (or "at the floor"), circular variance, bandwidths, SF and colour of a responsive unit."""
    facts = []
    if d.get("preferred_orientation") is not None:
        facts.append(f"preferred orientation {d['preferred_orientation']:.0f}°")
    elif "responsive" in d:
        facts.append("no preferred orientation (OSI below 1/3)")
    unresolved = d.get("bandwidth") is not None and d.get("bandwidth_resolved") is False
    for key, label, fmt in (("osi", "OSI", ".2f"), ("circular_variance", "circular variance", ".2f"),
                            ("bandwidth", "bandwidth (half width at half height)", ".0f"),
                            ("preferred_sf", "preferred SF", ".3g"), ("sf_bandwidth", "SF bandwidth", ".2f")):
        if key == "bandwidth" and unresolved:
            facts.append(f"{label} below the {d.get('orientation_step', 0):g}° orientation sampling (not resolved)")
        elif key == "osi" and d.get("osi_saturated") and d.get(key) is not None:
            facts.append(f"OSI {d[key]:.2f}, at the floor (the orthogonal response equals the blank's)")
        elif d.get(key) is not None:
            unit = {"bandwidth": "°", "preferred_sf": " cycles/image", "sf_bandwidth": " octaves"}.get(key, "")
            facts.append(f"{label} {d[key]:{fmt}}{unit}")
    if d.get("sf_bandwidth") is None and d.get("sf_bandwidth_reason"):
        facts.append(f"no SF bandwidth ({d['sf_bandwidth_reason']})")
    if d.get("sf_peak_at_edge"):
        facts.append("SF peak at the edge of the tested range (a bound, not a peak)")
    if len(d.get("colour_peak") or {}) > 1 and d.get("preferred_colour"):
        peaks = ", ".join(f"{k} {v:.3g}" for k, v in d["colour_peak"].items() if v is not None)
        facts.append(f"tuned with {d['preferred_colour']} gratings, the colour axis that drives it most "
                     f"(best response above blank: {peaks})")
    return facts


def _physiology_facts(d: dict) -> list[str]:
    """F0, F1, F1/F0 and the simple/complex split, and spontaneous activity (absent from older records)."""
    facts = []
    if d.get("f0") is not None and d.get("f1") is not None:
        ratio = d.get("modulation_ratio")
        kind = f": {d['cell_type']}" if d.get("cell_type") else ""
        if d.get("cell_type") == "unresolved":  # Skottun et al. read F1/F0 at the optimal SF, inside the range
            kind = (": no simple/complex call (the SF peak is at the edge of the tested SFs: F1/F0 is not read at a "
                    "bracketed optimum, where Skottun et al. 1991 read it)")
        elif kind and d.get("sf_peak_at_edge"):  # older records: a call made at the edge
            kind += " (read at the edge of the tested SFs, not at a bracketed optimum)"
        facts.append(f"F0 {d['f0']:.3g}, F1 {d['f1']:.3g}, F1/F0 "
                     + (f"{ratio:.2f}" if ratio is not None else "infinite (F0 ≤ 0)") + kind)
    if "spontaneous" in d:
        facts.append("spontaneous activity (a stimulus can lower it below the blank)" if d["spontaneous"] else
                     "no spontaneous activity (the blank response is its floor)")
    return facts


def _bar_length(size: float) -> int:
    """A round scale-bar length, about a quarter of ``size`` pixels."""
    return max([n for n in (1, 2, 4, 5, 8, 10, 16, 20, 25, 32, 50, 64, 100, 128, 200, 256) if n <= size / 4] or [1])


def _rf_se_text(d: dict) -> str:
    """What the RF size's &plusmn; is: the standard error from a bootstrap over groups of the noise images
    (records with ``se_groups``), or, in older records, half the difference of two halves (one split)."""
    n = d.get("n_images") or "the"
    if d.get("se_groups"):
        fit = ("it matches the spread of the size between independent noise draws" if d["se_groups"] >= SE_FOLDS else
               "with so few groups it runs wider than the spread between independent noise draws")
        return f" (&plusmn;: standard error, a bootstrap over {d['se_groups']} groups of the {n} noise images; {fit})"
    return (f" (&plusmn;: half the difference between the sizes on two halves of the {n} noise images, one split: a "
            "rough guide that can be several times smaller than the spread between noise draws)")


def _rf_html(c: int, d: dict | None, input_size=None) -> str:
    if d is None:
        return "<h2>Receptive field</h2>" + _missing("receptive field")
    se = f" &plusmn; {d['size_se']:.2g}" if d.get("size_se") is not None and d.get("size") is not None else ""
    size = f"size {d['size']:.3g}{se} px" if d.get("size") is not None else "no measurable field"
    hw = d.get("input_size") or input_size
    if not hw:
        figure = f'<div class="row small">{_figure(f"{c}/rf.png", "RF map")}</div>'
    else:
        h, w = hw
        zoom = max(1, round(192 / max(h, w)))
        bar = _bar_length(w)
        box = d.get("box")
        outline = ""
        if box and None not in box:
            outline = (f'<rect x="{box[2] * zoom}" y="{box[0] * zoom}" width="{(box[3] - box[2] + 1) * zoom}" '
                       f'height="{(box[1] - box[0] + 1) * zoom}" fill="none" stroke="#ffd400" stroke-width="1.5"/>')
        figure = (f'<svg xmlns="http://www.w3.org/2000/svg" class="rf" width="{w * zoom + 20}" height="{h * zoom + 44}" '
                  f'viewBox="-10 -10 {w * zoom + 20} {h * zoom + 44}" font-size="10" role="img" aria-label="RF map">'
                  f'<image href="{c}/rf.png" x="0" y="0" width="{w * zoom}" height="{h * zoom}" '
                  f'preserveAspectRatio="none" style="image-rendering:pixelated"/>{outline}'
                  f'<line class="scalebar" x1="0" x2="{bar * zoom}" y1="{h * zoom + 10}" y2="{h * zoom + 10}" '
                  f'stroke="#222" stroke-width="3"/><text x="{bar * zoom + 6}" y="{h * zoom + 14}">{bar} px</text>'
                  f'<text x="{w * zoom}" y="{h * zoom + 28}" text-anchor="end">input {w} × {h} px</text></svg>')
    return (f"<h2>Receptive field</h2><p>The linear (gradient) footprint of <code>{escape(d['neuron'])}</code> "
            f"on white noise; {size}" + (_rf_se_text(d) if se else "")
            + f".</p>{figure}")


def _lesion_html(d: dict | None, scale: float | None = None, layer: str = "", largest: int | None = None) -> str:
    if d is None:
        return "<h2>Lesion</h2>" + _missing("lesion effects")
    what = _lesion_measure_text(d)
    where = f' (<a href="{largest}.html">unit {largest}</a>)' if largest is not None else ""
    shared = f" Full bar: &plusmn;{scale:.3g}, the layer's largest |effect|{where}." if scale else ""
    per = d["n_stimuli"] // max(len(d["classes"]), 1) if d["labelled"] else None
    kind = "held-out stimuli" if "measure" not in d else "of the gallery's images"  # the bundled photos / yours
    n = f"{d['n_stimuli']} {kind}" + (f" ({per} per class)" if per else "")
    axis = {"decision": " of the intact model's choice", "outputs": ""}.get(d.get("measure"),
                                                                          " of the true class" if d["labelled"] else "")
    labels, noise = _lesion_labels(d), _lesion_noise_text(d, per)
    return (f"<h2>Lesion effect per class</h2><p>The unit set to 0 over {n}: "
            f"{what}.{shared}{noise}</p>" + svg_bars(labels, d["probability_change"], "lesion effect",
                                                 scale=scale, xlabel="change in probability" + axis,
                                                 intervals=d.get("interval"), solid=d.get("nonzero")))


def _lesion_labels(d: dict) -> list[str]:
    """The bars' class names, ``(F)`` / ``(C)`` after a class at floor / ceiling at baseline."""
    floor, ceiling = d.get("at_floor") or [False] * len(d["classes"]), d.get("at_ceiling") or [False] * len(d["classes"])
    return [f"{c}{' (F)' if f else ' (C)' if u else ''}" for c, f, u in zip(d["classes"], floor, ceiling)]


def _lesion_noise_text(d: dict, per: int | None) -> str:
    """What a lesion panel's whiskers, hollow bars and F/C flags mean, and how many bars differ from 0."""
    if d.get("interval") is None:
        if per and per < 16:
            return (f" With {per} images per class a bar is an indication, not a measurement: no interval is drawn "
                    "(<code>insilico.lesion_sweep</code> on more images gives intervals).")
        return (" No interval: the bars are per output over all images, not per class of the labels." if
                not d["labelled"] or d.get("measure") == "outputs" else
                " No interval (a panel computed before the gallery kept each image's change: rebuild its lesions).")
    nonzero = sum(bool(v) for v in d.get("nonzero") or [])
    how = ("Student's t over the class's images, each scored with and without the lesion" if d.get("method") == "t"
           else f"{d.get('n_boot', 'many')} bootstrap resamples of the class's images")  # a panel of an older build
    text = (f" Whiskers: the 95% interval of each bar ({how}); hollow bars: the interval includes 0, not "
            f"distinguishable from no effect ({nonzero} of {len(d['classes'])} bars differ from 0)")
    if per and per < 8:
        text += f"; with {per} images per class the interval is rough"
    if "at_floor" in d:
        flagged = sum(map(bool, d["at_floor"])) + sum(map(bool, d["at_ceiling"]))
        text += (f". F / C: classes the intact model gets at most at chance / all right ({flagged} here): their "
                 "accuracy cannot drop / rise, so read their bars with care")
    return text + "."


def _lesion_measure_text(d: dict) -> str:
    """What a lesion panel's bars are (the stage's ``measure``; the bundled photos' panels have none)."""
    measure = d.get("measure")
    if measure == "decision":
        return ("per class of the images' labels (their folders), the mean change in the probability of the class "
                "the intact model chose for each image (the folders' classes are not the model's outputs)")
    if measure == "true class":
        return ("per class of the images' labels (their folders, matched to the model's outputs), the mean change "
                "in the probability of the true class over its own images")
    if measure == "outputs":
        most = f"; the {d['most']} largest |changes| of the unit" if d.get("most") else ""
        return f"the images have no labels: the mean change in each output's probability over all of them{most}"
    return ("mean change in the probability of the true class, per class" if d["labelled"]
            else "mean change in each output's probability")


def read_unit(folder: Path, stages) -> dict:
    """The stage dicts saved for one unit (stages that have not run are absent)."""
    data = {}
    for stage in stages:
        path = folder / f"{stage}.json"
        if path.exists():
            data[stage] = persistence.read_json(path, "gallery cache")
    return data


__all__ = ["STYLE", "exemplar_caveats", "index_page", "output_unit_notes", "layer_page", "lesion_scale", "page", "read_unit", "rf_box_at", "svg_bars", "svg_curve",
           "unit_context", "unit_noun", "unit_page", "write"]
