"""Images as one mosaic in one axes: array conversion, tiling, and :func:`image_grid`.

A grid of images is drawn as ONE mosaic image in one axes, so a grid fits in
any subplot of a larger figure and a thousand tiles cost one ``imshow``.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ..errors import InsilicoError, StimulusError


def as_images(images: Any) -> np.ndarray:
    """(N, H, W, 3) float array in [0, 1] from (N, C, H, W) / (C, H, W) / list of (C, H, W); C = 1 or 3."""
    if isinstance(images, (list, tuple)):
        images = [torch.as_tensor(np.asarray(i)) if not torch.is_tensor(i) else i for i in images]
        images = _pad_to_same(images)
    array = images.detach().float().cpu().numpy() if torch.is_tensor(images) else np.asarray(images, dtype=np.float32)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[1] not in (1, 3):
        raise StimulusError(f"images must be (N, C, H, W) with C = 1 or 3; got shape {array.shape}")
    array = np.nan_to_num(array).transpose(0, 2, 3, 1)
    if array.shape[3] == 1:
        array = np.repeat(array, 3, axis=3)
    return np.clip(array, 0.0, 1.0)


def mosaic(tiles: np.ndarray, ncols: int | None = None, pad: int = 1, fill: float = 1.0) -> np.ndarray:
    """Tile (N, H, W, ...) into one (rows*(H+pad)-pad, ncols*(W+pad)-pad, ...) array."""
    n, h, w = tiles.shape[:3]
    ncols = min(n, ncols or int(np.ceil(np.sqrt(n))))
    nrows = int(np.ceil(n / ncols))
    out = np.full((nrows * (h + pad) - pad, ncols * (w + pad) - pad) + tiles.shape[3:], fill, dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, ncols)
        out[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = tiles[i]
    return out


def _pad_to_same(images: list) -> torch.Tensor:
    h = max(i.shape[-2] for i in images)
    w = max(i.shape[-1] for i in images)
    return torch.stack([
        torch.nn.functional.pad(i.float(), (0, w - i.shape[-1], 0, h - i.shape[-2]), value=1.0) for i in images
    ])


def _resize(tiles: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(tiles.shape[-2:]) == tuple(size):
        return tiles.float()
    return torch.nn.functional.interpolate(tiles.float(), size=size, mode="nearest")


def new_axes(ax=None, figsize=(5, 3.5), close: bool = False):
    """``(figure, ax)``: the given axis and its figure, or a new figure with one axis (every result's ``.plot``);
    ``close``: the new figure is closed in pyplot (returned, not shown again by a notebook)."""
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize)
    if close:
        plt.close(fig)
    return fig, ax


def _figure(ax, shape, scale=0.02):
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax.figure, ax
    h, w = shape[:2]
    fig, ax = plt.subplots(figsize=(min(16, max(2.5, w * scale + 1)), min(16, max(2.5, h * scale + 1))))
    return fig, ax


def _titles(ax, titles, n, ncols, h, w, pad, fontsize=8):
    if titles is None:
        return
    if len(titles) != n:
        raise InsilicoError(f"{len(titles)} titles for {n} images")
    ncols = min(n, ncols or int(np.ceil(np.sqrt(n))))
    for i, title in enumerate(titles):
        r, c = divmod(i, ncols)
        ax.text(c * (w + pad) + w / 2 - 0.5, r * (h + pad) - 0.5, str(title),
                ha="center", va="bottom", fontsize=fontsize, clip_on=False)

def image_grid(images: Any, titles: Sequence | None = None, ncols: int | None = None, ax=None, pad: int = 1):
    """Show images (N, C, H, W) in [0, 1] as a grid in one axes; returns the Figure.

    Parameters
    ----------
    images : tensor or array (N, C, H, W), or a list of (C, H, W) (padded to the largest)
    titles : list of str, optional
        One per image, written above it.
    ncols : int, optional
        Columns (default: about square).
    ax : matplotlib Axes, optional
    pad : int
        White pixels between tiles.

    Example
    -------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt, torch
    >>> from insilico import plot
    >>> fig, (a, b) = plt.subplots(1, 2)
    >>> plot.image_grid(torch.rand(4, 1, 5, 5), ax=b) is fig
    True
    """
    tiles = as_images(images)
    n, h, w = tiles.shape[:3]
    grid = mosaic(tiles, ncols, pad)
    fig, ax = _figure(ax, grid.shape)
    ax.imshow(grid, interpolation="nearest")
    _titles(ax, titles, n, ncols, h, w, pad)
    ax.set_axis_off()
    return fig
