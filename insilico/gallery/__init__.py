"""Static gallery sites of a model's units, built offline, incrementally and shardably.

``insilico gallery build --model minialex --out gallery/site/minialex`` (or
:func:`build`) writes an HTML site that opens from the file system: an index
of layers, a grid of unit thumbnails per layer, and a stable page per unit
with its maximizing, diverse and inhibiting images, top exemplars with
deconvolution projections and gradient maps, orientation/SF tuning curves and
receptive-field map (conv layers), and the per-class effect of lesioning it.
Each layer page summarises its units (histograms of the tuning properties,
macaque V1 references on early layers, a sortable unit table); the model page
compares every layer with human and monkey IT (RSA, noise ceiling).

================ ==============================================================
module           concept
================ ==============================================================
settings         :class:`GallerySettings`: what a gallery shows (definition files)
features         feature visualizations of many units in one synthesis
stages           one function per page section, run for a chunk of units
build            planning, caching, resuming, sharding; :func:`build`
pages            the HTML (relative links only) and inline SVG charts
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
