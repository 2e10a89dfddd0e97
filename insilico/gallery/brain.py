"""The model page: how each gallery layer compares with inferior temporal cortex, and RF size across depth.

Representational similarity analysis (Kriegeskorte, Mur & Bandettini 2008) as
in Khaligh-Razavi & Kriegeskorte (2014), on the 92 object images of
Kriegeskorte et al. (2008, *Neuron* 60:1126-1141) bundled with insilico
(:func:`insilico.data.kriegeskorte2008`):

- each gallery layer is recorded after its nonlinearity (the unit the tuning
  section reads; :func:`insilico.experiments.runs.after_nonlinearity`) over
  the 92 images, and its RDM is 1 - Pearson r between the response patterns
  (:func:`insilico.rsa.model_rdms`);
- it is compared with the human IT RDMs (fMRI, 4 subjects, each the mean of 2
  sessions) by Spearman's rho, averaged over subjects, and with the monkey IT
  RDM (674 neurons; Kiani et al. 2007), with 95% bootstrap intervals
  (:func:`insilico.rsa.bootstrap`): for human IT over subjects and stimuli
  (:data:`HUMAN_OVER`, the corrected two-factor bootstrap of Schütt et al.
  2023: the claim is about people and objects, not these 4 people), for monkey
  IT over stimuli only (one RDM: its subjects cannot be resampled);
- the human IT noise ceiling (:func:`insilico.rsa.noise_ceiling`; Nili et al.
  2014): lower bound, each subject against the mean of the others; upper
  bound, against the mean of all. Monkey IT is one RDM: no ceiling can be
  estimated, and the human-IT-vs-monkey-IT similarity is given for scale, on
  the layers' footing: monkey IT against each human subject, averaged over
  subjects, with its bootstrap interval over the same resamples
  (:func:`monkey_vs_human`; against the group-average RDM it would read higher,
  0.439 instead of 0.296, and not compare with the layers' bars);
- raw pixels as the floor a layer must beat (:func:`pixel_baseline`: the images'
  pixel vectors scored like a layer, on the same resamples), and the layers a
  paired bootstrap puts above them (:func:`above`): on the bundled model pixels
  score 0.080 with human IT, within every layer's interval.

The numbers are computed once per site and cached in ``brain.json`` at its
root (:func:`ensure`: rank 0 of a sharded build computes it, every rank renders
from disk).

Example
-------
>>> from insilico import models
>>> res = it_rsa(models.load("minialex"), ["features.0", "classifier.4"], n_boot=20)     # doctest: +SKIP
>>> sorted(res["human_it"]), res["human_it_noise_ceiling"]["lower"] < res["human_it_noise_ceiling"]["upper"]  # doctest: +SKIP
(['classifier.4', 'features.0'], True)
"""
from __future__ import annotations

import math
import time
from html import escape
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .. import persistence
from ..errors import InsilicoError
from . import figures

FILE = "brain.json"
#: Bootstrap samples for the confidence intervals.
N_BOOT = 200
#: What the human-IT intervals resample (:func:`insilico.rsa.bootstrap`): subjects and stimuli, corrected two-factor.
HUMAN_OVER = "dual"
COMPARE = "spearman"
RDM_METHOD = "correlation"


def it_rsa(model: nn.Module, layers: Sequence[str], shape: tuple = (3, 64, 64), n_boot: int = N_BOOT,
           seed: int = 0) -> dict:
    """RSA of each layer against human and monkey IT on the 92 images (see the module docstring).

    Parameters
    ----------
    model : nn.Module
    layers : list of str
        Unit addresses (conv / linear layers are read after their nonlinearity).
    shape : (C, H, W)
        The model's input; the images are resized (and converted) to it.
    n_boot : int
        Bootstrap samples (95% intervals; human IT: over subjects and stimuli, :data:`HUMAN_OVER`; monkey IT:
        over stimuli).

    Returns
    -------
    dict (JSON-able)
        ``layers``, ``units`` (layer -> the recorded unit), ``human_it`` and ``monkey_it`` (layer ->
        ``similarity``, ``ci``), ``human_it_noise_ceiling`` (``lower``, ``upper``), ``monkey_it_vs_human_it``
        and ``monkey_it_vs_human_it_ci`` (:func:`monkey_vs_human`: per subject, as the layers),
        ``best_layer`` (region -> layer), ``best_layers`` (region -> the layers a paired bootstrap cannot tell
        from the best, the best first: :meth:`~insilico.rsa.BootstrapResult.best_set`), ``pixels`` (region ->
        ``similarity``, ``ci`` of raw pixels: :func:`pixel_baseline`), ``above_pixels`` (region -> the layers a paired
        bootstrap puts above pixels: :func:`above`), ``over`` (region -> what its intervals resample), ``compare``,
        ``rdm_method``, ``n_boot``, ``seed``, ``image_size``,
        ``seconds``.
    """
    from .. import data, rsa
    from ..experiments.runs import after_nonlinearity
    from .stages import _fit

    start = time.perf_counter()
    d = data.kriegeskorte2008(size=int(shape[-1]))
    images = _fit(d.images, tuple(shape))
    units = [str(u) for u in after_nonlinearity(model, list(layers), images[:1])]
    found = rsa.model_rdms(model, images, units=units, method=RDM_METHOD, labels=d.categories, progress=False)
    rdms = {layer: r.to("cpu") for layer, r in zip(layers, found.values())}
    subjects = d.human_it_subjects()
    human = rsa.bootstrap(rdms, subjects, COMPARE, over=HUMAN_OVER, n_boot=n_boot, seed=seed, progress=False)
    monkey = rsa.bootstrap(rdms, [d.monkey_it], COMPARE, over="stimuli", n_boot=n_boot, seed=seed + 1,
                           progress=False)
    ceiling = rsa.noise_ceiling(subjects, COMPARE)
    pixels = pixel_baseline(images, d, n_boot, seed)

    def table(res):
        return {n: {"similarity": float(e), "ci": [float(c[0]), float(c[1])]}
                for n, e, c in zip(res.names, res.estimate, res.ci)}

    return {"layers": list(layers), "units": dict(zip(layers, units)), "compare": COMPARE, "rdm_method": RDM_METHOD,
            "n_boot": n_boot, "seed": seed, "image_size": int(shape[-1]),
            "over": {"human_it": HUMAN_OVER, "monkey_it": "stimuli"},
            "human_it": table(human), "monkey_it": table(monkey),
            "human_it_noise_ceiling": {"lower": ceiling.lower, "upper": ceiling.upper},
            **monkey_vs_human(d, n_boot, seed),
            "best_layer": {"human_it": human.names[int(np.argmax(human.estimate))],
                           "monkey_it": monkey.names[int(np.argmax(monkey.estimate))]},
            "best_layers": {"human_it": human.best_set(), "monkey_it": monkey.best_set()},  # paired bootstrap
            "pixels": {r: table(pixels[r])["pixels"] for r in ("human_it", "monkey_it")},
            "above_pixels": {"human_it": above(human, pixels["human_it"]), "monkey_it": above(monkey, pixels["monkey_it"])},
            "seconds": round(time.perf_counter() - start, 2)}


def pixel_baseline(images: torch.Tensor, d, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Raw pixels as a model (the 92 images as the model sees them, each a vector of pixel values; its RDM
    1 - Pearson r like the layers'), bootstrapped against human IT (``seed``, :data:`HUMAN_OVER`) and monkey IT
    (``seed + 1``, stimuli): the same resamples as the layers' (:func:`insilico.rsa.bootstrap` draws them from the
    seed and the sizes alone), so a
    layer can be tested against pixels pair by pair (:func:`above`). A layer that does not beat pixels is not shown
    to share more of IT's representational geometry than the images' pixels do. ``d``: :func:`insilico.data.kriegeskorte2008`.

    Returns ``{"human_it": BootstrapResult, "monkey_it": BootstrapResult}`` (one model, ``"pixels"``).
    """
    from .. import rsa

    found = {"pixels": rsa.rdm(images.flatten(1).double(), method=RDM_METHOD, labels=d.categories)}
    return {"human_it": rsa.bootstrap(found, d.human_it_subjects(), COMPARE, over=HUMAN_OVER, n_boot=n_boot,
                                      seed=seed, progress=False),
            "monkey_it": rsa.bootstrap(found, [d.monkey_it], COMPARE, over="stimuli", n_boot=n_boot, seed=seed + 1,
                                       progress=False)}


def above(layers, pixels, level: float = 0.95) -> list[str]:
    """The layers of the bootstrap result ``layers`` whose similarity exceeds ``pixels``' (a one-model result on
    the same resamples): the lower ``(1 - level) / 2`` quantile of the paired difference is above 0.

    >>> from types import SimpleNamespace as S
    >>> above(S(names=["a", "b"], samples=np.array([[0.3, 0.1], [0.4, 0.2], [0.35, 0.05]])),
    ...       S(samples=np.array([[0.1], [0.2], [0.1]])))
    ['a']
    """
    diff = np.asarray(layers.samples) - np.asarray(pixels.samples)[:, :1]
    low = np.nanquantile(diff, (1 - level) / 2, axis=0)
    return [n for n, lo in zip(layers.names, low) if lo > 0]


def monkey_vs_human(d, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Monkey IT vs human IT on the footing of the layers' human-IT scores: :func:`insilico.rsa.bootstrap` of the
    monkey RDM against the 4 subjects' RDMs (mean over subjects; the same ``seed`` and :data:`HUMAN_OVER`, so the
    same resamples of subjects and stimuli, as the layers' bootstrap). ``d``: :func:`insilico.data.kriegeskorte2008`.

    Returns ``{"monkey_it_vs_human_it": rho, "monkey_it_vs_human_it_ci": [lo, hi], "monkey_it_vs_human_it_footing":
    "mean over subjects"}``.

    >>> from insilico import data
    >>> round(monkey_vs_human(data.kriegeskorte2008(size=64), n_boot=10)["monkey_it_vs_human_it"], 3)
    0.296
    """
    from .. import rsa

    res = rsa.bootstrap({"monkey IT": d.monkey_it}, d.human_it_subjects(), COMPARE, over=HUMAN_OVER, n_boot=n_boot,
                        seed=seed, progress=False)
    return {"monkey_it_vs_human_it": float(res.estimate[0]),
            "monkey_it_vs_human_it_ci": [float(res.ci[0][0]), float(res.ci[0][1])],
            "monkey_it_vs_human_it_footing": "mean over subjects"}


def read(root: Path) -> dict | None:
    """The cached ``brain.json`` of a site, or None; a ``null`` number (NaN when written) is NaN again."""
    path = Path(root) / FILE
    return _nan_for_null(persistence.read_json(path, "gallery cache")) if path.exists() else None


def _nan_for_null(value):
    if isinstance(value, dict):
        return {k: _nan_for_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_for_null(v) for v in value]
    return math.nan if value is None else value


def ensure(work, layers: Sequence[str], rank: int = 0) -> dict | None:
    """Compute ``brain.json`` if it is missing or was made for other layers (rank 0 only); return what is on disk.

    A model the 92 images cannot be shown to (an :class:`~insilico.errors.InsilicoError`, e.g. inputs under
    8 pixels) gets ``{"layers", "unavailable": reason}``, which the model page prints.
    """
    from ..sharding import write_json

    cached = read(work.root)
    if cached is not None and cached.get("layers") == list(layers) and (
            "unavailable" in cached or "over" in cached):  # older files: intervals over stimuli only (or no pixels)
        return cached
    if rank != 0:
        return cached
    try:
        with torch.no_grad():
            result = it_rsa(work.model, layers, work.shape, seed=work.settings.seed)
    except InsilicoError as error:       # e.g. images too small for the 92 objects: the page says why
        result = {"layers": list(layers), "unavailable": str(error)}
    write_json(work.root / FILE, result)
    return result


def _bars(res: dict, region: str, title: str, ceiling: dict | None) -> str:
    layers = res["layers"]
    rows = [res[region][layer] for layer in layers]
    best = layers.index(res["best_layer"][region])
    band = (ceiling["lower"], ceiling["upper"]) if ceiling else None
    return figures.layer_bars(layers, [r["similarity"] for r in rows], [r["ci"] for r in rows], title,
                              "RDM similarity (Spearman rho)", band=band, band_label="noise ceiling" if band else "",
                              best=best, note=f"best: {layers[best]}")


def _for_scale(res: dict) -> str:
    """The monkey-vs-human figure as the page states it, with its footing."""
    rho = res["monkey_it_vs_human_it"]
    if "monkey_it_vs_human_it_ci" not in res:  # a brain.json from before the per-subject figure
        return (f"rho {rho:.3f} against the group-average RDM (not the layers' per-subject footing: rebuild the site "
                "for the comparable figure)")
    lo, hi = res["monkey_it_vs_human_it_ci"]
    return (f"rho {rho:.3f} [{lo:.3f}, {hi:.3f}], monkey IT against each human subject, mean over the 4 subjects, "
            "as the layers are scored")


def pixels_text(res: dict) -> str:
    """The pixel baseline as the page states it (empty for a ``brain.json`` from before it): pixels' rho per region
    and which layers a paired bootstrap puts above pixels.

    >>> res = {"layers": ["a", "b"], "pixels": {"human_it": {"similarity": 0.08, "ci": [0.03, 0.14]},
    ...        "monkey_it": {"similarity": 0.14, "ci": [0.07, 0.22]}}, "above_pixels": {"human_it": [], "monkey_it": ["b"]}}
    >>> text = pixels_text(res)
    >>> "human IT rho 0.080 [0.030, 0.140], no layer above it" in text, "1 of 2 layers (b) above it" in text
    (True, True)
    """
    if "pixels" not in res:
        return ""
    parts = []
    for r, name in (("human_it", "human IT"), ("monkey_it", "monkey IT")):
        p, up = res["pixels"][r], res["above_pixels"][r]
        which = ("no layer" if not up else "every layer" if len(up) == len(res["layers"]) else
                 f"{len(up)} of {len(res['layers'])} layers ({', '.join(up)})")
        parts.append(f"{name} rho {p['similarity']:.3f} [{p['ci'][0]:.3f}, {p['ci'][1]:.3f}], {which} above it")
    return escape("Raw pixels (each image as a vector of pixel values, its RDM and rho computed like a layer's, on "
                  f"the same bootstrap resamples): {'; '.join(parts)} (paired bootstrap, 95%). A layer not above "
                  "pixels is not shown to share more of IT's geometry than the images themselves.", quote=False)


def intervals_text(res: dict) -> str:
    """What the page's RSA intervals resample, in words (a ``brain.json`` from before ``over``: stimuli only).

    >>> "human IT over subjects and stimuli together" in intervals_text({"n_boot": 200, "over": {"human_it": "dual"}})
    True
    """
    if "over" not in res:
        return f"95% bootstrap intervals over stimuli ({res['n_boot']} samples)"
    return (f"95% bootstrap intervals; human IT over subjects and stimuli together ({res['n_boot']} samples, the "
            "variance corrected for counting the subject-by-stimulus noise more than once, a normal interval: Schütt, "
            "Kipnis, Diedrichsen &amp; Kriegeskorte 2023), so they speak for other people and other objects, not only "
            "these 4 subjects; monkey IT over stimuli only (a single RDM: no subjects to resample)")


def rsa_html(res: dict | None) -> str:
    """The RSA section of the model page (figure, table, method, references)."""
    head = "<h2>Which layer represents the 92 objects most like inferior temporal cortex?</h2>"
    if res is None:
        return head + '<p class="missing">RSA with IT: not computed yet (rerun the build to fill it in)</p>'
    if "unavailable" in res:
        return head + f'<p class="missing">RSA with IT is not available for this model: {escape(res["unavailable"])}</p>'
    ceiling = res["human_it_noise_ceiling"]
    figs = (_bars(res, "human_it", "layer vs human IT (fMRI, 4 subjects)", ceiling)
            + _bars(res, "monkey_it", "layer vs monkey IT (674 neurons)", None))
    rows = "".join(
        f"<tr><td>{escape(layer)}</td><td><code>{escape(res['units'][layer])}</code></td>"
        + "".join(f"<td>{res[r][layer]['similarity']:.3f}</td><td>[{res[r][layer]['ci'][0]:.3f}, "
                  f"{res[r][layer]['ci'][1]:.3f}]</td>" for r in ("human_it", "monkey_it")) + "</tr>"
        for layer in res["layers"]) + (
        "<tr><td><i>raw pixels</i></td><td>(baseline)</td>" + "".join(
            f"<td>{res['pixels'][r]['similarity']:.3f}</td><td>[{res['pixels'][r]['ci'][0]:.3f}, "
            f"{res['pixels'][r]['ci'][1]:.3f}]</td>" for r in ("human_it", "monkey_it")) + "</tr>"
        if "pixels" in res else "")
    best_h, best_m = res["best_layer"]["human_it"], res["best_layer"]["monkey_it"]
    close = {r: [l for l in res["best_layers"][r] if l != res["best_layer"][r]] if "best_layers" in res  # paired test
             else [l for l in res["layers"] if l != res["best_layer"][r]
                   and res[r][l]["similarity"] >= res[r][res["best_layer"][r]]["ci"][0]] for r in ("human_it", "monkey_it")}
    caveat = pixels_text(res) + " " + " ".join(
        f"For {name}, {len(close[r])} other layer{'s' if len(close[r]) != 1 else ''} cannot be told from the best "
        "layer (95% bootstrap): the ranking among them is not reliable on 92 images." for r, name in
        (("human_it", "human IT"), ("monkey_it", "monkey IT")) if close[r])
    return (head + f'<div class="row">{figs}</div>'
            f"<p>Best layer: <b>{escape(best_h)}</b> for human IT (rho {res['human_it'][best_h]['similarity']:.3f}; "
            f"noise ceiling {ceiling['lower']:.3f}&ndash;{ceiling['upper']:.3f}), <b>{escape(best_m)}</b> for monkey "
            f"IT (rho {res['monkey_it'][best_m]['similarity']:.3f}). A model that explained human IT as well as the "
            "data allow would reach the grey band. Monkey IT is a single RDM, so it has no noise ceiling; for scale, "
            f"monkey IT vs human IT: {_for_scale(res)}. {caveat}</p>"
            '<table class="meta"><tr><th>layer</th><th>recorded at</th><th>human IT</th><th>95% CI</th>'
            f"<th>monkey IT</th><th>95% CI</th></tr>{rows}</table>"
            "<p>Method: each layer is read after its nonlinearity over the 92 images "
            f"({res['image_size']} px); its RDM is 1 &minus; Pearson r between response patterns; layer and brain "
            "RDMs are compared by Spearman's rho (human IT: mean over the 4 subjects, each the mean of 2 sessions); "
            f"error bars: {intervals_text(res)}. Noise ceiling: lower bound, "
            "each subject against the mean of the others; upper bound, against the mean of all (Nili et al. 2014). "
            f"Computed in {res['seconds']:.1f} s with <code>insilico.rsa</code>.</p>"
            '<ol class="refs"><li>Kriegeskorte, Mur, Ruff, Kiani, Bodurka, Esteky, Tanaka &amp; Bandettini (2008). '
            "Matching categorical object representations in inferior temporal cortex of man and monkey. "
            "<i>Neuron</i> 60:1126&ndash;1141 (images and RDMs).</li>"
            "<li>Kiani, Esteky, Mirpour &amp; Tanaka (2007). Object category structure in response patterns of "
            "neuronal population in monkey inferior temporal cortex. <i>J. Neurophysiol.</i> 97:4296&ndash;4309 "
            "(monkey IT recordings).</li>"
            "<li>Khaligh-Razavi &amp; Kriegeskorte (2014). Deep supervised, but not unsupervised, models may explain "
            "IT cortical representation. <i>PLoS Comput. Biol.</i> 10:e1003915 (the layer-by-layer analysis).</li>"
            "<li>Nili, Wingfield, Walther, Su, Marslen-Wilson &amp; Kriegeskorte (2014). A toolbox for "
            "representational similarity analysis. <i>PLoS Comput. Biol.</i> 10:e1003553 (noise ceiling).</li></ol>")


#: A layer whose median RF is at least this fraction of the image width is said to fill it (its sizes are cut there).
FILLS_IMAGE = 0.85


def rf_html(groups: Sequence[tuple[str, Sequence[float]]], image_size: int | None) -> str:
    """RF size (px) of every unit, per spatial layer in depth order, against the image size."""
    head = "<h2>Receptive field size across depth</h2>"
    groups = [(name, [v for v in values if v is not None]) for name, values in groups]
    groups = [(name, values) for name, values in groups if values]
    if not groups:
        return head + '<p class="missing">no receptive fields measured (no spatial layers, or not computed yet)</p>'
    medians = ", ".join(f"{escape(name)} {np.median(v):.3g}" for name, v in groups)
    svg = figures.strips(groups, "RF size (px)", "RF size per unit (bar: median)", hline=image_size,
                         hline_label=f"image width {image_size} px" if image_size else "")
    full = [name for name, v in groups if image_size and np.median(v) >= FILLS_IMAGE * image_size]
    cut = (f" {', '.join(escape(n) for n in full)}: the median field spans {FILLS_IMAGE:.0%} or more of the image, so "
           "many fields reach its edge, where the map (and the size) is cut: there the size is a lower bound, and "
           "the growth across depth stops at the image by construction." if full else "")
    return (head + f'<div class="row">{svg}</div><p>RF size: geometric mean of the height and width of the '
            "region around the peak where the unit's mean absolute gradient on white noise exceeds 10% of its peak "
            f"(the unit at the centre of its map; each unit's page has its map). Medians (px): "
            f"{medians}.{cut} Linear layers see the whole image.</p>")


def layers_html(layer_rows: Sequence[tuple[str, Sequence[dict]]]) -> str:
    """One line per layer: units, grating responsiveness, silent units, median RF, images that beat the photos."""
    from .stages import slug
    from .summary import headline, rf_sizes, status_counts

    lines = []
    for layer, rows in layer_rows:
        counts = {label: n for label, n, _ in status_counts(rows)}
        h = headline(rows)
        sizes = rf_sizes(rows)
        spatial = any(r.get("responsive") is not None for r in rows)
        cells = [f'<a href="layers/{escape(slug(layer))}.html">{escape(layer)}</a>', str(len(rows)),
                 f"{counts.get('responsive', 0)}" if spatial else "&ndash;", str(h["silent"]),
                 f"{np.median(sizes):.3g}" if sizes else "&ndash;", f"{h['from_noise']} / {h['compared']}",
                 f"{h['matched']} / {h['matched_compared']}" if h.get("matched_compared") else "&ndash;"]
        lines.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return ("<h2>Layers at a glance</h2><table class=\"meta\"><tr><th>layer</th><th>units</th><th>responsive to "
            "gratings</th><th>silent</th><th>median RF (px)</th><th>image from noise &gt; best photo</th>"
            "<th>at matched contrast</th></tr>"
            f"{''.join(lines)}</table><p>Silent (one definition on every page of this site): the unit's best "
            "exemplar photo drives it to 0 or below (before the nonlinearity), or the neuron at the map's centre "
            "gives the same response to the blank, every grating and every photo; silent units are left out of the "
            "two counts. Image from noise &gt; best photo: units whose image synthesized from noise drives them more "
            "than their best exemplar photo, of the units that are not silent (the stretched photo shown where "
            "noise falls short beats the photo by construction, so it is not counted). At matched contrast: the "
            "same, with an image from noise whose RMS contrast is held at every step to at most that of the unit's "
            "best photo (the images from noise of the first count use the whole pixel range and have more "
            "contrast than the photos). Each layer's page has the distributions.</p>")


def model_page(title: str, res: dict | None, layer_rows: Sequence[tuple[str, Sequence[dict]]],
               image_size: int | None) -> str:
    """``model.html``: RSA with IT (``res``: ``brain.json``), the layers at a glance and RF size across depth.

    ``layer_rows``: ``(layer, its units.csv rows)`` in depth order.
    """
    from .pages import page
    from .summary import rf_sizes

    rf_groups = [(layer, rf_sizes(rows)) for layer, rows in layer_rows]
    body = (f'<nav><a href="index.html">{escape(title)}</a> / model vs brain</nav><h1>{escape(title)}: the model '
            f"and the brain</h1>{rsa_html(res)}{layers_html(layer_rows)}{rf_html(rf_groups, image_size)}")
    return page(f"model vs brain - {title}", body, 0)


__all__ = ["FILE", "HUMAN_OVER", "N_BOOT", "above", "ensure", "intervals_text", "it_rsa", "layers_html", "model_page",
           "pixel_baseline", "pixels_text", "read", "rf_html", "rsa_html"]
