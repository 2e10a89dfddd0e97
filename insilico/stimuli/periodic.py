"""Periodic patterns: sine and square-wave gratings, Gabor patches and plaids.

Every generator takes a scalar or a list for each sweepable keyword and
returns the full factorial :class:`~insilico.stimuli.StimulusSet`.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import StimulusError
from .geometry import _aperture, _apply_wave_shape, _coords, _finish, _sf_cycles_per_image, _wave
from .grids import _Grid, _check_channels, _check_luminance, _check_size, _numbers
from .stimulus_set import StimulusSet


_GRATING_DOC_PARAMS = """
    size : int
        Image side in pixels.
    orientation : float or list, degrees
        Counter-clockwise; 0 = vertical bars (luminance varies along x).
    sf : float or list
        Spatial frequency in cycles per image (``sf_unit="cpi"``) or cycles per
        degree (``sf_unit="cpd"``, needs ``fov``). At most ``size / 2`` cycles per image.
    phase : float or list, degrees
        0 puts a luminance peak on ``center``.
    contrast : float or list in [0, 1]
        Michelson contrast.
    mean : float or list in [0, 1]
        Mean luminance; ``mean * (1 + contrast) <= 1``.
    wave : {"sine", "square"} or list
        Square waves take exactly the two values ``mean * (1 +- contrast)``.
    channels : {1, 3}
    aperture : None, float or list
        Radius of a circular aperture as a fraction of the image side
        (0.5 = inscribed circle); pixels outside equal ``mean``. None: no aperture.
    center : (x, y) or list of pairs
        Fractions of the image side, image coordinates; (0.5, 0.5) = pixel (size//2, size//2).
    fov : float, optional
        Degrees of visual angle spanned by the image side.
    sf_unit : {"cpi", "cpd"}
    device : torch device, optional"""


def gratings(size: int = 64, orientation: Any = 0.0, sf: Any = 4.0, phase: Any = 0.0, contrast: Any = 1.0,
             mean: Any = 0.5, wave: Any = "sine", channels: int = 1, aperture: Any = None,
             center: Any = (0.5, 0.5), fov: float | None = None, sf_unit: str = "cpi",
             device: str | torch.device | None = None) -> StimulusSet:
    """Sine or square-wave gratings over a full factorial parameter grid.

    Luminance = ``mean * (1 + contrast * wave(2*pi*sf*u + phase))`` where ``u``
    is the distance from ``center`` along the grating's normal
    ``(cos(orientation), sin(orientation))`` (y pointing up).

    Parameters
    ----------{params}

    Returns
    -------
    StimulusSet
        ``N = product of the list lengths`` stimuli; params keys are the keyword names.

    Examples
    --------
    >>> g = gratings(size=32, orientation=[0, 45, 90, 135], sf=[2, 4], contrast=0.5)
    >>> tuple(g.images.shape), g.params[1]["orientation"], g.params[1]["sf"]
    ((8, 1, 32, 32), 0, 4)
    >>> round(g.images.max().item(), 6), round(g.images.min().item(), 6)
    (0.75, 0.25)
    """
    size, channels = _check_size(size), _check_channels(channels)
    grid = _Grid(dict(size=size, orientation=orientation, sf=sf, phase=phase, contrast=contrast, mean=mean,
                      wave=wave, channels=channels, aperture=aperture, center=center, fov=fov, sf_unit=sf_unit),
                 sweep=("orientation", "sf", "phase", "contrast", "mean", "wave", "aperture"), pairs=("center",))
    _numbers(grid, "orientation")
    _numbers(grid, "phase")
    _check_luminance(grid)
    sfc = _sf_cycles_per_image(grid, size, sf_unit, fov)
    X, Y = _coords(grid, size, device)
    w = _wave(grid, X, Y, sfc, grid.column("orientation"), grid.column("phase"), X.device)
    w = _apply_wave_shape(grid, w)
    m = grid.column("mean").to(X.device, torch.float32)
    mc = m * grid.column("contrast").to(X.device, torch.float32)
    lum = w.mul_(mc[:, None, None]).add_(m[:, None, None])
    lum = _aperture(lum, grid, X, Y, m)
    return _finish(lum, channels, grid.params())


gratings.__doc__ = gratings.__doc__.format(params=_GRATING_DOC_PARAMS)


def gabors(size: int = 64, orientation: Any = 0.0, sf: Any = 4.0, phase: Any = 0.0, sigma: Any = 0.125,
           contrast: Any = 1.0, mean: Any = 0.5, wave: Any = "sine", aspect: Any = 1.0, channels: int = 1,
           aperture: Any = None, center: Any = (0.5, 0.5), fov: float | None = None, sf_unit: str = "cpi",
           device: str | torch.device | None = None) -> StimulusSet:
    """Gabor patches: a grating multiplied by a Gaussian envelope centred on ``center``.

    Luminance = ``mean * (1 + contrast * envelope * wave)`` with
    ``envelope = exp(-(u**2 + (v / aspect)**2) / (2 * sigma**2))``, ``u`` across
    and ``v`` along the bars, so a phase-0 Gabor peaks at exactly
    ``mean * (1 + contrast)`` on the centre pixel.

    Parameters
    ----------{params}
    sigma : float or list
        Envelope standard deviation as a fraction of the image side.
    aspect : float or list
        Envelope elongation along the bars (1 = circular).

    Examples
    --------
    >>> g = gabors(size=32, orientation=[0, 90], sigma=[0.1, 0.2])
    >>> len(g), g.params[3]["sigma"], round(g.images[0, 0, 16, 16].item(), 6)
    (4, 0.2, 1.0)
    """
    size, channels = _check_size(size), _check_channels(channels)
    grid = _Grid(dict(size=size, orientation=orientation, sf=sf, phase=phase, sigma=sigma, contrast=contrast,
                      mean=mean, wave=wave, aspect=aspect, channels=channels, aperture=aperture, center=center,
                      fov=fov, sf_unit=sf_unit),
                 sweep=("orientation", "sf", "phase", "sigma", "contrast", "mean", "wave", "aspect", "aperture"),
                 pairs=("center",))
    _numbers(grid, "orientation")
    _numbers(grid, "phase")
    _check_luminance(grid)
    for k in ("sigma", "aspect"):
        _numbers(grid, k, 0.0)
        if min(grid.options[k]) <= 0:
            raise StimulusError(f"{k} must be positive, got {min(grid.options[k])!r}.")
    sfc = _sf_cycles_per_image(grid, size, sf_unit, fov)
    X, Y = _coords(grid, size, device)
    dev = X.device
    ori = grid.column("orientation")
    w = _apply_wave_shape(grid, _wave(grid, X, Y, sfc, ori, grid.column("phase"), dev))
    th = torch.deg2rad(ori)
    c = torch.cos(th).to(dev, torch.float32)[:, None, None]
    s = torch.sin(th).to(dev, torch.float32)[:, None, None]
    u = X * c + Y * s
    v = (Y * c - X * s) / grid.column("aspect").to(dev, torch.float32)[:, None, None]
    sig = grid.column("sigma").to(dev, torch.float32)[:, None, None]
    env = torch.exp(-(u * u + v * v) / (2 * sig * sig))
    m = grid.column("mean").to(dev, torch.float32)
    mc = m * grid.column("contrast").to(dev, torch.float32)
    lum = m[:, None, None] + mc[:, None, None] * env * w
    lum = _aperture(lum, grid, X, Y, m)
    return _finish(lum, channels, grid.params())


gabors.__doc__ = gabors.__doc__.format(params=_GRATING_DOC_PARAMS)


def plaids(size: int = 64, orientation: Any = 0.0, angle: Any = 90.0, sf: Any = 4.0, sf2: Any = None,
           phase: Any = 0.0, phase2: Any = None, contrast: Any = 0.5, contrast2: Any = None, mean: Any = 0.5,
           wave: Any = "sine", channels: int = 1, aperture: Any = None, center: Any = (0.5, 0.5),
           fov: float | None = None, sf_unit: str = "cpi", device: str | torch.device | None = None) -> StimulusSet:
    """Plaids: the sum of two gratings, the second at ``orientation + angle``.

    Luminance = ``mean * (1 + contrast * w1 + contrast2 * w2)``: each component
    keeps its own Michelson contrast, so ``contrast + contrast2 <= 1`` and
    ``mean * (1 + contrast + contrast2) <= 1``. ``sf2``, ``phase2`` and
    ``contrast2`` default (None) to the first component's values.

    Parameters
    ----------{params}
    angle : float or list, degrees
        Orientation of the second component relative to the first.
    sf2, phase2, contrast2 : float, list or None
        Second component's values (None: same as the first).

    Examples
    --------
    >>> p = plaids(size=32, orientation=[0, 45], angle=[60, 90], contrast=0.25)
    >>> len(p), p.params[1]["angle"], round(p.images.max().item(), 6)
    (4, 90, 0.75)
    """
    size, channels = _check_size(size), _check_channels(channels)
    grid = _Grid(dict(size=size, orientation=orientation, angle=angle, sf=sf, sf2=sf2, phase=phase, phase2=phase2,
                      contrast=contrast, contrast2=contrast2, mean=mean, wave=wave, channels=channels,
                      aperture=aperture, center=center, fov=fov, sf_unit=sf_unit),
                 sweep=("orientation", "angle", "sf", "sf2", "phase", "phase2", "contrast", "contrast2", "mean",
                        "wave", "aperture"), pairs=("center",))
    for k in ("orientation", "angle", "phase"):
        _numbers(grid, k)
    _numbers(grid, "phase2", allow_none=True)
    _numbers(grid, "contrast", 0.0, 1.0)
    _numbers(grid, "contrast2", 0.0, 1.0, allow_none=True)
    peak = max(c1 + (c1 if c2 is None else c2) for c1 in grid.options["contrast"] for c2 in grid.options["contrast2"])
    _check_luminance(grid, peak=peak, contrast_keys=("contrast", "contrast2"))
    if peak > 1 + 1e-9:
        raise StimulusError(f"contrast + contrast2 = {peak:g} exceeds 1; lower the component contrasts.")
    sf1 = _sf_cycles_per_image(grid, size, sf_unit, fov, "sf")
    sf2c = _sf_cycles_per_image(grid, size, sf_unit, fov, "sf2")
    sf2c = torch.where(torch.isnan(sf2c), sf1, sf2c)
    X, Y = _coords(grid, size, device)
    dev = X.device
    ori, ph = grid.column("orientation"), grid.column("phase")
    ph2 = grid.column("phase2", fn=lambda v: math.nan if v is None else v)
    ph2 = torch.where(torch.isnan(ph2), ph, ph2)
    w1 = _apply_wave_shape(grid, _wave(grid, X, Y, sf1, ori, ph, dev))
    w2 = _apply_wave_shape(grid, _wave(grid, X, Y, sf2c, ori + grid.column("angle"), ph2, dev))
    c1 = grid.column("contrast")
    c2 = grid.column("contrast2", fn=lambda v: math.nan if v is None else v)
    c2 = torch.where(torch.isnan(c2), c1, c2)
    m = grid.column("mean").to(dev, torch.float32)
    mc1 = (m * c1.to(dev, torch.float32))[:, None, None]
    mc2 = (m * c2.to(dev, torch.float32))[:, None, None]
    lum = m[:, None, None] + mc1 * w1 + mc2 * w2
    lum = _aperture(lum, grid, X, Y, m)
    return _finish(lum, channels, grid.params())


plaids.__doc__ = plaids.__doc__.format(params=_GRATING_DOC_PARAMS)
