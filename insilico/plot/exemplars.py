"""Units x exemplars (Zeiler & Fergus): each row a unit's projected maps next to the image patches that drive it."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ..errors import InsilicoError
from .images import _figure, _resize, as_images, mosaic
from .maps import map_to_rgb


def exemplar_grid(
    rows: Any, ax=None, row_titles: Sequence | None = None, show: str = "both", tile: int | None = None, pad: int = 1,
):
    """Units x exemplars: one row per unit (the Zeiler & Fergus figure); returns the Figure.

    Parameters
    ----------
    rows : Projections, or a list of tensors (k, C, h, w), one per row
        From :func:`insilico.project_exemplars`: each row shows the unit's map
        crops (``show="maps"``), image crops (``"images"``), or maps then
        images (``"both"``). A plain list shows the tensors as images.
    row_titles : list of str, optional
        Default: the unit addresses.
    tile : int, optional
        Tile size in pixels (default: the largest crop); crops of different
        units are resized to it (nearest neighbour).

    Example
    -------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import torch
    >>> from insilico import plot
    >>> fig = plot.exemplar_grid([torch.rand(3, 3, 5, 5), torch.rand(3, 3, 7, 7)], row_titles=["a", "b"])
    >>> fig.axes[0].images[0].get_array().shape[:2]
    (15, 23)
    """
    if show not in ("both", "maps", "images"):
        raise InsilicoError(f"show must be 'both', 'maps' or 'images', not {show!r}")
    if hasattr(rows, "exemplars"):  # Projections
        images = rows.image_crops if rows.image_crops is not None else rows.images
        maps = rows.map_crops if rows.map_crops is not None else rows.maps
        if row_titles is None:
            row_titles = rows.units
        parts = []
        for image, m in zip(images, maps):
            shown = torch.from_numpy(map_to_rgb(m)[0])
            parts.append({"both": [shown, image], "maps": [shown], "images": [image]}[show])
    else:
        parts = [[torch.as_tensor(np.asarray(r)) if not torch.is_tensor(r) else r] for r in rows]
    if not parts:
        raise InsilicoError("nothing to draw: no rows")
    size = tile or max(max(t.shape[-2], t.shape[-1]) for row in parts for t in row)
    lines, ncols = [], max(sum(len(t) for t in row) for row in parts)
    for row in parts:
        tiles = torch.cat([_resize(t, (size, size)) for t in row])
        tiles = as_images(tiles)
        if len(tiles) < ncols:
            tiles = np.concatenate([tiles, np.ones((ncols - len(tiles),) + tiles.shape[1:], np.float32)])
        lines.append(tiles)
    grid = mosaic(np.concatenate(lines), ncols, pad)
    fig, ax = _figure(ax, grid.shape)
    ax.imshow(grid, interpolation="nearest")
    if row_titles is not None:
        if len(row_titles) != len(parts):
            raise InsilicoError(f"{len(row_titles)} row titles for {len(parts)} rows")
        for r, title in enumerate(row_titles):
            ax.text(-1.5, r * (size + pad) + size / 2, str(title), ha="right", va="center", fontsize=8)
    ax.set_axis_off()
    return fig
