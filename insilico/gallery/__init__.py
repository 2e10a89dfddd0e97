"""Static gallery sites of a model's units, built offline, incrementally and shardably.

``insilico gallery build --model minialex --out gallery/site/minialex`` (or
:func:`build`) writes an HTML site that opens from the file system: an index
with the model card (architecture, parameters, input, training and held-out
accuracy of a bundled model) and the layers, each described from the forward
pass ("conv2: Conv2d 48→96, 5×5, stride 1, before ReLU"), a grid of unit
thumbnails per layer, and a stable page per unit with its maximizing, diverse
and inhibiting images, top exemplars with deconvolution projections and
gradient maps (the RF outlined at each exemplar's best position),
orientation/SF tuning curves (orientation in degrees, SF in cycles per image,
the blank baseline and the preferred value drawn) and the receptive-field map
with a scale bar in input pixels (conv layers), and the per-class effect of
lesioning it, on one scale per layer; output units are named by their class.
Any architecture: a token layer's unit is a feature at the centre patch token,
a channels-last stage's a channel at the centre position (:mod:`.view`), and
with the user's labelled folder the lesion panels are per class of its labels.
Each layer page summarises its units (histograms of the tuning properties,
macaque V1 references on early layers, a sortable unit table); the model page
compares every layer with human and monkey IT (RSA, noise ceiling).

================ ==============================================================
module           concept
================ ==============================================================
settings         :class:`GallerySettings`: what a gallery shows (definition files)
features         feature visualizations of many units in one synthesis
view             :class:`~.view.LayerView`: a layer's units and positions, any layout
stages           one function per page section, run for a chunk of units
build            planning, caching, resuming, sharding; :func:`build`
pages            the HTML (relative links only)
charts           inline SVG charts: labelled axes, round ticks, reference lines
describe         layer descriptions and the model card, from one survey
summary          a layer's population figures, V1 references, the unit table
brain            the model page: RSA of every layer with IT (``brain.json``)
figures          inline SVG figures (histograms, scatter, bars, strips)
================ ==============================================================

Example
-------
>>> import tempfile, insilico
>>> from insilico.gallery import GallerySettings, build
>>> s = GallerySettings(layers=["classifier.6"], units=1, steps=2, exemplars=2, per_class=1, lesion_per_class=1)
>>> summary = build(s, tempfile.mkdtemp(), progress=False)          # doctest: +SKIP
>>> summary["computed"]["features"]                                  # doctest: +SKIP
1
"""
from .build import build, discover_layers, render_site
from .settings import GallerySettings

__all__ = ["GallerySettings", "build", "discover_layers", "render_site"]
