"""Figures for images, gradient maps and exemplars (matplotlib).

Every function draws into ``ax`` when given one (else a new figure) and returns
the :class:`~matplotlib.figure.Figure`. A grid of images is drawn as ONE
mosaic image in one axes, so a grid fits in any subplot of a larger figure and
a thousand tiles cost one ``imshow``.

- :func:`image_grid`: any stack of images (N, C, H, W) in [0, 1], with titles.
- :func:`map_overlay`: gradient maps as a signed heat map over grey images.
- :func:`exemplar_grid`: units x exemplars (Zeiler & Fergus): each row a
  unit's projected maps next to the image patches that drive it.
- :func:`save_maps` / :func:`load_maps`: maps as a PNG mosaic with a JSON
  sidecar (unit, method, settings, per-map scale), read back to numbers.

============ ===================================================================
module       concept
============ ===================================================================
images       :func:`image_grid`, :func:`as_images`, :func:`mosaic`: images as
             one mosaic in one axes
maps         :func:`map_overlay`, :func:`map_to_rgb`, :func:`save_maps`,
             :func:`load_maps`: signed maps, shown and stored
exemplars    :func:`exemplar_grid`: units x exemplars
============ ===================================================================

Signed maps are shown the way Zeiler & Fergus show projections: each map is
divided by its largest absolute value and mapped to ``0.5 + 0.5 * m``, so grey
is zero (:func:`map_to_rgb`).

Example
-------
>>> import matplotlib; matplotlib.use("Agg")
>>> import torch
>>> from insilico import plot
>>> fig = plot.image_grid(torch.rand(6, 3, 8, 8), titles=list("abcdef"), ncols=3)
>>> len(fig.axes)
1
"""
from __future__ import annotations

from .exemplars import exemplar_grid
from .images import as_images, image_grid, mosaic
from .maps import MAPS_FORMAT, load_maps, map_overlay, map_to_rgb, save_maps

__all__ = ["MAPS_FORMAT", "as_images", "exemplar_grid", "image_grid", "load_maps", "map_overlay", "map_to_rgb",
           "mosaic", "save_maps"]
