"""Bars and edges: light or dark shapes on a mean-luminance background.

Every generator takes a scalar or a list for each sweepable keyword and
returns the full factorial :class:`~insilico.stimuli.StimulusSet`.
"""
from __future__ import annotations

from typing import Any

import torch

from .geometry import _aperture, _coords, _finish, _rotated
from .grids import _Grid, _check_channels, _check_luminance, _check_size, _numbers, _polarity
from .stimulus_set import StimulusSet


def bars(size: int = 64, orientation: Any = 0.0, length: Any = 0.5, width: Any = 0.0625, center: Any = (0.5, 0.5),
         polarity: Any = 1, contrast: Any = 1.0, mean: Any = 0.5, channels: int = 1,
         device: str | torch.device | None = None) -> StimulusSet:
    """Light or dark bars on a mean-luminance background.

    A pixel belongs to the bar when its centre lies in ``[-length/2, length/2)``
    from ``center`` along the bar and in ``[-width/2, width/2)`` across it, so
    a bar ``k / size`` wide covers exactly ``k`` pixels when ``center`` is on
    the pixel grid. Bar pixels are ``mean * (1 + polarity * contrast)``, all
    others ``mean``.

    Parameters
    ----------
    size : int
        Image side in pixels.
    orientation : float or list, degrees
        Counter-clockwise; 0 = vertical bar.
    length, width : float or list
        Fractions of the image side (``width=1/size`` is one pixel wide).
    center : (x, y) or list of pairs
        Bar centre, fractions of the image side, image coordinates.
    polarity : {1, -1, "light", "dark"} or list
    contrast, mean : float or list in [0, 1]
    channels : {1, 3}
    device : torch device, optional

    Examples
    --------
    >>> b = bars(size=32, orientation=[0, 90], polarity=["light", "dark"], width=2 / 32)
    >>> len(b), sorted(set(b.images[3].unique().tolist()))
    (4, [0.0, 0.5])
    """
    size, channels = _check_size(size), _check_channels(channels)
    grid = _Grid(dict(size=size, orientation=orientation, length=length, width=width, center=center,
                      polarity=polarity, contrast=contrast, mean=mean, channels=channels),
                 sweep=("orientation", "length", "width", "polarity", "contrast", "mean"), pairs=("center",))
    _numbers(grid, "orientation")
    _numbers(grid, "length", 0.0)
    _numbers(grid, "width", 0.0)
    _check_luminance(grid)
    pol = grid.column("polarity", fn=_polarity)
    X, Y = _coords(grid, size, device)
    dev = X.device
    u, v = _rotated(grid, X, Y)  # across and along the bar
    # half-open intervals [-w/2, w/2): a bar k pixels wide covers exactly k pixel centres on the grid
    eps = 1e-4 / size
    half_w = (grid.column("width") / 2).to(dev, torch.float32)[:, None, None]
    half_l = (grid.column("length") / 2).to(dev, torch.float32)[:, None, None]
    inside = (u >= -half_w - eps) & (u < half_w - eps) & (v >= -half_l - eps) & (v < half_l - eps)
    m = grid.column("mean").to(dev, torch.float32)
    on = (m * (1 + pol.to(dev, torch.float32) * grid.column("contrast").to(dev, torch.float32)))
    lum = torch.where(inside, on[:, None, None], m[:, None, None])
    return _finish(lum, channels, grid.params())


def edges(size: int = 64, orientation: Any = 0.0, position: Any = 0.0, polarity: Any = 1, contrast: Any = 1.0,
          mean: Any = 0.5, channels: int = 1, aperture: Any = None, center: Any = (0.5, 0.5),
          device: str | torch.device | None = None) -> StimulusSet:
    """Luminance edges (step functions) with exactly two luminance values.

    Pixels with ``u >= position`` (``u``: distance from ``center`` along the
    normal ``(cos(orientation), sin(orientation))``, y up) are
    ``mean * (1 + polarity * contrast)``, the others ``mean * (1 - polarity * contrast)``.

    Parameters
    ----------
    size : int
    orientation : float or list, degrees
        Counter-clockwise; 0 = vertical edge, light on the right for polarity 1.
    position : float or list
        Offset of the edge from ``center`` along the normal, fraction of the image side.
    polarity : {1, -1, "light", "dark"} or list
    contrast, mean : float or list in [0, 1]
    channels : {1, 3}
    aperture : None, float or list
        Circular aperture radius, fraction of the image side.
    center : (x, y) or list of pairs
    device : torch device, optional

    Examples
    --------
    >>> e = edges(size=16, orientation=[0, 90])
    >>> float(e.images[0, 0, 0, 0]), float(e.images[0, 0, 0, -1])
    (0.0, 1.0)
    """
    size, channels = _check_size(size), _check_channels(channels)
    grid = _Grid(dict(size=size, orientation=orientation, position=position, polarity=polarity, contrast=contrast,
                      mean=mean, channels=channels, aperture=aperture, center=center),
                 sweep=("orientation", "position", "polarity", "contrast", "mean", "aperture"), pairs=("center",))
    _numbers(grid, "orientation")
    _numbers(grid, "position")
    _check_luminance(grid)
    pol = grid.column("polarity", fn=_polarity)
    X, Y = _coords(grid, size, device)
    dev = X.device
    u, _ = _rotated(grid, X, Y)
    side = torch.where(u >= grid.column("position").to(dev, torch.float32)[:, None, None] - 1e-4 / size, 1.0, -1.0)
    m = grid.column("mean").to(dev, torch.float32)
    mc = m * grid.column("contrast").to(dev, torch.float32) * pol.to(dev, torch.float32)
    lum = m[:, None, None] + mc[:, None, None] * side
    lum = _aperture(lum, grid, X, Y, m)
    return _finish(lum, channels, grid.params())
