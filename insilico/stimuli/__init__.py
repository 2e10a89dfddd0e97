"""Parametric stimuli for in-silico electrophysiology.

Every generator returns a :class:`StimulusSet`: ``.images``, a float tensor
``(N, C, H, W)`` in pixel space ``[0, 1]``, and ``.params``, one dict per
stimulus keyed by the generator's keyword names. Parametric generators take a
scalar or a list (tuple, array, range) for each sweepable keyword and return
the full factorial grid, ordered like ``itertools.product`` over the keywords
in signature order (the last keyword varies fastest). ``center`` is the
exception: one ``(x, y)`` pair is one value, a list of pairs a sweep.

Conventions shared by the parametric generators
-----------------------------------------------
- Images are square, ``size`` x ``size`` pixels.
- Lengths (``aperture``, ``sigma``, bar ``length``/``width``, edge ``position``)
  are fractions of the image side: ``aperture=0.5`` is the circle inscribed in
  the image.
- ``center=(x, y)`` is a fraction of the image side in image coordinates
  (x to the right, y downwards); ``(0.5, 0.5)`` is the centre pixel
  ``(size // 2, size // 2)``.
- Orientation is in degrees, counter-clockwise as seen on screen:
  0 = vertical bars (luminance varies along x), 90 = horizontal bars,
  45 = bars running from top-left to bottom-right ("\\").
- Spatial frequency ``sf`` is in cycles per image (``sf_unit="cpi"``, default)
  or in cycles per degree (``sf_unit="cpd"``, needs ``fov``, the degrees of
  visual angle spanned by the image side).
- Phase is in degrees: phase 0 puts a luminance peak on ``center``.
- Luminance is ``mean * (1 + contrast * wave)`` with ``wave`` in ``[-1, 1]``,
  so ``contrast`` is the Michelson contrast and ``mean`` the mean luminance,
  both exactly; ``mean * (1 + contrast)`` must not exceed 1. Outside a circular
  ``aperture`` every pixel equals ``mean``.
- ``channels=3`` repeats the achromatic image over RGB (the noise generators
  draw each channel independently instead).

Rendering is written by hand because no library renders batched parameter
grids: each generator builds parameter tensors of length N and broadcasts them
against one coordinate grid, so there is no Python loop per stimulus.
Photographs come from scikit-image (its bundled files only, read from disk, so
no download is ever attempted) and ``skimage.io``.

Modules (one concept each; every public name is re-exported here)
-----------------------------------------------------------------
================ ==============================================================
module           concept
================ ==============================================================
stimulus_set     :class:`StimulusSet`: the container (indexing, concat,
                 ``table``/``where`` queries, save/load, plot)
grids            the factorial parameter grid and the argument checks
geometry         coordinates, oriented waves, apertures, rendering on a grid
periodic         :func:`gratings`, :func:`gabors`, :func:`plaids`
shapes           :func:`bars`, :func:`edges`
noise            :func:`sparse_noise`, :func:`white_noise`, :func:`pink_noise`
images           image arrays to pixel-space tensors (dtype, colour, resize)
photos           :data:`PHOTOS`, :func:`natural_images`, ``bundled_photo_path``
folder           :func:`from_folder`: the user's own image files
files            image files as a streamed stimulus set (folder, glob, list;
                 the ImageFolder layout's labels): what ``stimulus_source`` reads
labels           class labels: :func:`labelled` (a labels CSV, a class-names
                 file), the per-class accuracy rules of the tools
================ ==============================================================
"""
from __future__ import annotations

from .folder import from_folder
from .labels import labelled
from .noise import pink_noise, sparse_noise, white_noise
from .periodic import gabors, gratings, plaids
from .photos import PHOTOS, bundled_photo_path, natural_images  # noqa: F401 (bundled_photo_path: insilico.models)
from .shapes import bars, edges
from .stimulus_set import StimulusSet

__all__ = [
    "StimulusSet",
    "PHOTOS",
    "gratings",
    "gabors",
    "plaids",
    "bars",
    "edges",
    "sparse_noise",
    "white_noise",
    "pink_noise",
    "natural_images",
    "from_folder",
    "labelled",
]
