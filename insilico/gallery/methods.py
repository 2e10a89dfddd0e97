"""How a gallery layer's unit pages are made: the method text, said once per layer.

The unit pages of a layer share every method (how the images are
synthesized, how exemplars are ranked and projected, how tuning and receptive
fields are measured), so the layer page states it once
(:func:`methods_html`, anchored ``#methods-features``, ``#methods-exemplars``,
``#methods-tuning``, ``#methods-rf``, ``#methods-lesion``) and each unit page
links to it (:func:`method_link`) instead of repeating ~250 words.

Example
-------
>>> html = methods_html(spatial=True, tuning={"phase_reduce": "max", "margin": 0.2}, input_size=64)
>>> 'id="methods-tuning"' in html and "Zeiler &amp; Fergus" in html and "F1/F0" in html
True
>>> method_link("features.0", "tuning")
'<a class="how" href="../../layers/features.0.html#methods-tuning">how it is measured</a>'
"""
from __future__ import annotations

from html import escape

from ..experiments.receptive_fields import SE_FOLDS, SE_RESAMPLES
from ..experiments.selectivity import SIMPLE_F1_F0
from ..experiments.tuning import TUNED_OSI

#: The sections of :func:`methods_html` (anchor ``methods-<name>``).
SECTIONS = ("features", "exemplars", "tuning", "rf", "lesion")


def method_link(layer_slug: str, section: str) -> str:
    """A unit page's link to its layer page's method text of ``section`` (one of :data:`SECTIONS`)."""
    return (f'<a class="how" href="../../layers/{escape(layer_slug)}.html#methods-{section}">how it is '
            "measured</a>")


def _features() -> str:
    return ("<p>Each unit gets images optimised from noise to drive it (pushed apart from each other by a "
            "diversity term; the last, the inhibiting image, drives it down), and its best exemplar photo after "
            "gradient ascent on its best neuron (the <i>stretched exemplar</i>; the photo itself where no ascent step "
            "improved on it). Values are the channel's largest value over the map for conv channels (the smallest for "
            "the inhibiting image), as the exemplars are ranked, read before the nonlinearity. <b>Maximizing</b> "
            "names only the most activating synthesized image of the unit; the page ranks the images from noise, the "
            "stretched exemplar and the best photo by their values. A stretched exemplar starts at the best photo, "
            "so it reaches the photo's value by construction: the layer's headline counts images <i>from noise</i> "
            "that beat the best photo. That first count is not at matched contrast: those images may use the whole "
            "pixel range (no contrast budget) and usually have more contrast than the photos. So the headline gives a "
            "second count, <i>at matched contrast</i>: one more image per unit synthesized from noise with the same "
            "steps, learning rate, transforms and seed (one image, no diversity term) under a contrast budget: after "
            "every step its RMS contrast (the standard deviation of its pixels over colour and space, pixel values "
            "in [0, 1]) is scaled down about its mean to at most that of the unit's best exemplar photo "
            "(<code>ContrastBudget</code>); the count compares that image's value with the best photo's, both "
            "measured the same way (largest value over the map, no transforms). Its unit page shows it, with both "
            "contrasts. An inhibiting image is scored before the nonlinearity: for a unit without "
            "spontaneous activity (its blank response is its floor, 0 after a ReLU) it lowers the unit's input, "
            "not its firing, which no image can lower below the blank.</p>")


def _exemplars(logit: bool) -> str:
    return ("<p>Rows: the stimuli that drive the unit most (best first); their deconvolution projections (Zeiler "
            "&amp; Fergus) and gradient maps for the neuron at the maximum (grey = 0). Yellow boxes: the unit's "
            "receptive field, measured at the map's centre and moved to the position where each exemplar drives it "
            "most (by the map's stride in input pixels), clipped to the image; where the field reaches past the "
            "image's edge the network sees its zero padding there, and the unit may respond to the border itself. "
            "Under the rows, each exemplar's field is shown enlarged (nearest-neighbour, each input pixel a block), "
            "photo, deconvolution and gradient map."
            + (" Output units are ranked by the raw logit: images with large logits for every class can top the "
               "list, whatever class the model predicts for them." if logit else "") + "</p>")


def _head_exemplars() -> str:
    return ("<p>A head's value at a query token is the Euclidean norm of its output there (its context vector before "
            "the output projection); exemplars are the photos where its best patch query reaches the largest norm "
            "(best first). Under each photo, the head's attention pattern (the softmax weights over the keys, rows "
            "summing to 1) from that best patch query, then from the CLS token (the centre patch where the model has "
            "no prefix tokens), over the image patches only: each pixel's brightness is its patch's attention over "
            "the row's largest (0.1 + 0.9 a / max a, nearest-neighbour upsampling, one block per patch), so "
            "uniform attention draws a flat image; the page gives how peaked it is and the share left on the CLS "
            "and register tokens, which have no place on the image.</p>")


def _tuning(tuning: dict, input_size: int | None) -> str:
    reduce = {"max": "the maximum", "mean": "the mean", "f1": "the first harmonic"}.get(
        tuning.get("phase_reduce", "max"), "the maximum")
    width = (f" (cycles across the {input_size}-pixel image: {input_size} cycles/image = 1 cycle/pixel)"
             if input_size else "")
    return (f"<p>The response of the neuron at the map's centre, after the nonlinearity, to full-field sine gratings, "
            f"{reduce} over phase; dashed red: the response to a blank grey screen; green: the preferred value where "
            "one is reported (the peak of a von Mises fit for orientation, of a log-Gaussian fit for SF, accepted "
            "within one sampling step of the sampled peak). Spatial frequency is in cycles per image"
            f"{escape(width)}; the orientation curve repeats its 0° point at 180°.</p>"
            "<p>A unit is <i>responsive</i> when its response varies over the blank, the gratings and the exemplar "
            "photos by more than rounding, its best grating response exceeds the blank by "
            f"{tuning.get('margin', 0.2):g} of its range on the photos, and two halves of the grating phases give the "
            "same tuning; only responsive units get a preference or an index. A unit whose centre neuron gave the same "
            "response to the blank, every grating and every photo is not responsive (its exemplars rank the channel's "
            "best position, which can lie elsewhere in the map); it is one of the two ways a unit is <i>silent</i> on "
            "these pages, the other a best exemplar photo that drives it to 0 or below. "
            f"Tuned: OSI ≥ {TUNED_OSI:.2f}. <i>OSI at the floor</i>: the "
            "orthogonal response equals the blank's, so OSI = 1 whatever the curve's shape (after a ReLU whose blank "
            "response is 0; circular variance is the graded measure). <i>F0</i> is the mean response over the "
            "grating's phases at the preferred orientation and SF minus the blank's, <i>F1</i> the amplitude of its "
            f"first harmonic; F1/F0 &gt; {SIMPLE_F1_F0:g} is a simple cell, else complex (Skottun et al. 1991), "
            "except where the SF peak is at the edge of the tested SFs: Skottun et al. read F1/F0 at the optimal SF, "
            "which is then not bracketed, so such a unit gets no call (as it gets no SF bandwidth). "
            "<i>Spontaneous activity</i>: the blank response lies above the lowest response to any stimulus. An SF "
            "bandwidth is given only when the SF curve falls to half height on both sides within the tested SFs and "
            "is wider than one SF step; otherwise the page says why.</p>")


def _rf() -> str:
    return ("<p>The mean gradient of the neuron at the map's centre, before its nonlinearity, over white-noise "
            "images, over the whole input (white: positive, black: negative, grey: 0): the unit's <i>linear "
            "(gradient) footprint</i>, not a map of where the rectified unit fires. Yellow: the box around the peak "
            "where the mean absolute gradient exceeds 10% of its peak; the size is the geometric mean of its height "
            f"and width, &plusmn; its standard error: the SD of the size over {SE_RESAMPLES} bootstrap resamples of "
            f"{SE_FOLDS} groups of the noise images, times sqrt({SE_FOLDS}/{SE_FOLDS - 1}) (on the bundled model, with "
            f"{SE_FOLDS} groups, it matches the spread of the size between independent draws of noise images; with "
            "fewer images than groups it runs wider; pages built before it give half the difference of two halves, "
            "one split, and say so). It leaves out any bias of a small sample. The scale bar is in pixels of the "
            "model's input.</p>")


def _lesion() -> str:
    return ("<p>The unit set to 0 at every position on the lesion images (held-out photos, a few per class), many "
            "lesions per forward pass; each bar is the mean change, over one class's images, in the output "
            "probability the panel names. Its whisker is the 95% Student's t interval of that mean over the class's "
            "images (each image scored with and without the lesion; <code>insilico.statistics.class_mean_interval</code>"
            "; a percentile bootstrap of a handful of values would be narrower than the truth); a bar whose interval "
            "includes 0 is drawn hollow, not distinguishable from no effect. The bars are not corrected for "
            "testing many at once: <code>lesion_sweep</code> on more images gives q-values over the matrix. Classes the intact model gets at most at chance (F) or all right (C) are "
            "flagged: their accuracy cannot drop / rise. The layer page gives the split-half (test-retest) "
            "reliability of the units &times; classes matrix. All units of a layer share one scale (the largest "
            "|effect| of any of them), so bars compare across its units.</p>")


def methods_html(spatial: bool, logit: bool = False, tuning: dict | None = None, input_size: int | None = None,
                 lesion: bool = True, heads: bool = False) -> str:
    """The layer page's method section (HTML): features, exemplars, and for ``spatial`` layers tuning and RF,
    then lesions; ``logit``: the units are an output layer's logits; ``tuning``: one unit's tuning record (its
    ``phase_reduce`` and ``margin``); ``input_size``: the model's input width (pixels); ``heads``: the units are
    attention heads (their exemplars show attention maps, :func:`_head_exemplars`)."""
    exemplars = _head_exemplars() if heads else _exemplars(logit)
    parts = [("features", "Feature visualization", _features()), ("exemplars", "Top exemplars", exemplars)]
    if spatial:
        parts += [("tuning", "Tuning to gratings", _tuning(tuning or {}, input_size)), ("rf", "Receptive field", _rf())]
    if lesion:
        parts.append(("lesion", "Lesion effects", _lesion()))
    body = "".join(f'<h3 id="methods-{name}">{title}</h3>{text}' for name, title, text in parts)
    return f'<details class="methods" id="methods" open><summary><b>How each unit page is made</b></summary>{body}</details>'


__all__ = ["SECTIONS", "method_link", "methods_html"]
