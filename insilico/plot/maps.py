"""Signed maps (gradient maps, deconvolution projections): display, overlays, and PNG + JSON files.

Signed maps are shown the way Zeiler & Fergus show projections: each map is
divided by its largest absolute value and mapped to ``0.5 + 0.5 * m``, so grey
is zero (:func:`map_to_rgb`). :func:`save_maps` writes a PNG mosaic with a JSON
sidecar that :func:`load_maps` reads back to numbers.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .. import persistence
from .._version import __version__
from ..errors import InsilicoError, StimulusError
from ..jsonfiles import jsonable, write_json
from .images import _figure, _titles, as_images, mosaic

MAPS_FORMAT = "insilico.maps/1"


def map_to_rgb(maps: Any) -> tuple[np.ndarray, np.ndarray]:
    """Signed maps (N, C, H, W) to displayable (N, C, H, W) in [0, 1] (grey = 0), and each map's scale."""
    array = maps.detach().float().cpu().numpy() if torch.is_tensor(maps) else np.asarray(maps, dtype=np.float32)
    if array.ndim == 3:
        array = array[None]
    scale = np.abs(array).reshape(len(array), -1).max(axis=1)
    safe = np.where(scale > 0, scale, 1.0).reshape(-1, 1, 1, 1)
    return 0.5 + 0.5 * array / safe, scale


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
        "settings": jsonable(settings or {}), "shape": [n, c, h, w], "ncols": ncols,
        "scales": [float(s) for s in scale], "encoding": "value = (pixel / 255 - 0.5) * 2 * scale",
        "versions": {"insilico": __version__, "torch": torch.__version__},
    }
    write_json(path.with_suffix(".json"), sidecar)
    return path


def load_maps(path: str | os.PathLike) -> tuple[torch.Tensor, dict]:
    """Read maps saved by :func:`save_maps`: ``(maps (N, C, H, W), sidecar dict)``."""
    from skimage import io

    path = Path(path)
    sidecar_path = path.with_suffix(".json")
    if not sidecar_path.exists():
        raise InsilicoError(f"{path} has no JSON sidecar {sidecar_path.name}: was it written by insilico.plot.save_maps?")
    meta = persistence.read_json(sidecar_path, "maps sidecar")
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



