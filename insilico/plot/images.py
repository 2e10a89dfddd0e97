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

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import InsilicoError, StimulusError

MAPS_FORMAT = "insilico.maps/1"


# ---------------------------------------------------------------------------------------
# Arrays
# ---------------------------------------------------------------------------------------
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


def map_to_rgb(maps: Any) -> tuple[np.ndarray, np.ndarray]:
    """Signed maps (N, C, H, W) to displayable (N, C, H, W) in [0, 1] (grey = 0), and each map's scale."""
    array = maps.detach().float().cpu().numpy() if torch.is_tensor(maps) else np.asarray(maps, dtype=np.float32)
    if array.ndim == 3:
        array = array[None]
    scale = np.abs(array).reshape(len(array), -1).max(axis=1)
    safe = np.where(scale > 0, scale, 1.0).reshape(-1, 1, 1, 1)
    return 0.5 + 0.5 * array / safe, scale


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


# ---------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------
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


def map_overlay(
    images: Any, maps: Any, ax=None, alpha: float = 0.6, cmap: str = "bwr",
    titles: Sequence | None = None, ncols: int | None = None, pad: int = 1,
):
    """Gradient maps as signed heat maps over grey versions of their images; returns the Figure.

    Each map (N, C, H, W) is summed over channels and divided by its largest
    absolute value; red is positive, blue negative (``cmap``), transparent-ish
    where ``alpha`` says.

    Example
    -------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import torch
    >>> from insilico import plot
    >>> fig = plot.map_overlay(torch.rand(2, 3, 6, 6), torch.randn(2, 3, 6, 6))
    >>> len(fig.axes[0].images)
    2
    """
    grey = as_images(images).mean(axis=3)
    heat = maps.detach().float().cpu().numpy() if torch.is_tensor(maps) else np.asarray(maps, dtype=np.float32)
    if heat.ndim == 3:
        heat = heat[None]
    heat = heat.sum(axis=1)
    if heat.shape != grey.shape:
        raise InsilicoError(f"maps {heat.shape} and images {grey.shape} differ in number or size")
    scale = np.abs(heat).reshape(len(heat), -1).max(axis=1).reshape(-1, 1, 1)
    heat = heat / np.where(scale > 0, scale, 1.0)
    n, h, w = grey.shape
    background = mosaic(grey, ncols, pad)
    fig, ax = _figure(ax, background.shape)
    ax.imshow(background, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.imshow(mosaic(heat, ncols, pad, fill=0.0), cmap=cmap, vmin=-1, vmax=1, alpha=alpha, interpolation="nearest")
    _titles(ax, titles, n, ncols, h, w, pad)
    ax.set_axis_off()
    return fig


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


# ---------------------------------------------------------------------------------------
# Saving maps
# ---------------------------------------------------------------------------------------
def save_maps(
    path: str | os.PathLike, maps: Any, unit: Any = None, method: str | None = None,
    settings: dict | None = None, ncols: int | None = None,
) -> Path:
    """Write maps (N, C, H, W) as a PNG mosaic plus a JSON sidecar; returns the PNG's path.

    The PNG shows :func:`map_to_rgb` of each map (grey = 0); the sidecar
    (same name, ``.json``) holds ``unit``, ``method``, ``settings``, the shape,
    the mosaic layout and each map's scale, so :func:`load_maps` recovers the
    values to 8-bit precision.

    Example
    -------
    >>> import tempfile, torch
    >>> from insilico import plot
    >>> folder = tempfile.mkdtemp()
    >>> png = plot.save_maps(f"{folder}/m.png", torch.randn(2, 3, 4, 4), unit="fc[1]", method="gradient")
    >>> plot.load_maps(png)[1]["unit"]
    'fc[1]'
    """
    from skimage import io

    path = Path(path)
    if path.suffix.lower() != ".png":
        path = path.with_suffix(".png")
    shown, scale = map_to_rgb(maps)
    n, c, h, w = shown.shape
    if c not in (1, 3):
        raise StimulusError(f"maps must have 1 or 3 channels to be saved as PNG, not {c}")
    ncols = min(n, ncols or int(np.ceil(np.sqrt(n))))
    grid = mosaic(shown.transpose(0, 2, 3, 1), ncols, pad=0, fill=0.5)
    pixels = np.round(np.clip(grid, 0, 1) * 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    io.imsave(path, pixels[..., 0] if c == 1 else pixels, check_contrast=False)
    units = [str(u) for u in unit] if isinstance(unit, (list, tuple)) else (None if unit is None else str(unit))
    sidecar = {
        "format": MAPS_FORMAT, "image": path.name, "unit": units, "method": method,
        "settings": _jsonable(settings or {}), "shape": [n, c, h, w], "ncols": ncols,
        "scales": [float(s) for s in scale], "encoding": "value = (pixel / 255 - 0.5) * 2 * scale",
        "versions": {"insilico": _version(), "torch": torch.__version__},
    }
    path.with_suffix(".json").write_text(json.dumps(sidecar, indent=1))
    return path


def load_maps(path: str | os.PathLike) -> tuple[torch.Tensor, dict]:
    """Read maps saved by :func:`save_maps`: ``(maps (N, C, H, W), sidecar dict)``."""
    from skimage import io

    path = Path(path)
    sidecar_path = path.with_suffix(".json")
    if not sidecar_path.exists():
        raise InsilicoError(f"{path} has no JSON sidecar {sidecar_path.name}: was it written by insilico.plot.save_maps?")
    meta = json.loads(sidecar_path.read_text())
    if meta.get("format") != MAPS_FORMAT:
        raise InsilicoError(f"{sidecar_path} is not an {MAPS_FORMAT} sidecar")
    n, c, h, w = meta["shape"]
    pixels = io.imread(path.with_suffix(".png")).astype(np.float32) / 255.0
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    maps = np.empty((n, c, h, w), dtype=np.float32)
    for i in range(n):
        r, col = divmod(i, meta["ncols"])
        maps[i] = pixels[r * h : (r + 1) * h, col * w : (col + 1) * w, :c].transpose(2, 0, 1)
    maps = (maps - 0.5) * 2 * np.asarray(meta["scales"], dtype=np.float32).reshape(-1, 1, 1, 1)
    return torch.from_numpy(maps), meta


def _jsonable(value):
    from ..recording import _jsonable as jsonable

    return jsonable(value)


def _version() -> str:
    from .. import __version__

    return __version__
