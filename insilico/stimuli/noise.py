"""Noise stimuli: sparse noise (reverse correlation), white noise and 1/f (pink) noise, seeded."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..errors import StimulusError
from .geometry import _finish
from .grids import _Grid, _check_channels, _check_choice, _check_count, _check_luminance, _check_size, _generator, \
    _numbers, _polarity
from .stimulus_set import StimulusSet, _jsonable


def sparse_noise(size: int = 64, n_frames: int = 100, dots: int = 1, dot_size: int = 4, seed: int | None = 0,
                 polarity: Any = "both", contrast: float = 1.0, mean: float = 0.5, channels: int = 1,
                 device: str | torch.device | None = None) -> StimulusSet:
    """Sparse noise: each frame holds exactly ``dots`` square dots on a mean-gray background.

    Dots sit on a lattice of ``dot_size``-pixel cells (centred in the image when
    ``size`` is not a multiple of ``dot_size``) and never overlap. Light dots are
    ``mean * (1 + contrast)``, dark dots ``mean * (1 - contrast)``.

    Parameters
    ----------
    size : int
    n_frames : int
    dots : int
        Dots per frame, at most ``(size // dot_size) ** 2``.
    dot_size : int
        Dot side in pixels.
    seed : int or None
        None draws a fresh seed (recorded in params).
    polarity : {"both", "light", "dark", 1, -1}
        "both" draws each dot's sign at random.
    contrast, mean : float in [0, 1]
    channels : {1, 3}
    device : torch device, optional

    Returns
    -------
    StimulusSet
        params per frame: the keywords plus ``frame``, ``positions`` (list of
        ``[x, y]``, the column and row of each dot's top-left pixel) and
        ``signs`` (+1 light, -1 dark, one per dot).

    Examples
    --------
    >>> s = sparse_noise(size=16, n_frames=3, dots=2, dot_size=2, seed=1)
    >>> len(s), len(s.params[0]["positions"]), int((s.images[0] != 0.5).sum())
    (3, 2, 8)
    """
    size, channels = _check_size(size), _check_channels(channels)
    n = _check_count("n_frames", n_frames)
    dots = _check_count("dots", dots)
    dot_size = _check_count("dot_size", dot_size)
    if dot_size > size:
        raise StimulusError(f"dot_size = {dot_size} exceeds size = {size}; use a smaller dot_size.")
    g = size // dot_size
    if dots > g * g:
        raise StimulusError(f"{dots} dots of {dot_size} px do not fit in a {size} px image without overlap "
                            f"(at most {g * g}); lower dots or dot_size.")
    grid = _Grid(dict(contrast=contrast, mean=mean), sweep=())
    _check_luminance(grid)
    if isinstance(polarity, str) and polarity == "both":
        pol = None
    else:
        pol = _polarity(polarity)
    gen, seed = _generator(seed)
    cells = torch.multinomial(torch.ones(n, g * g), dots, replacement=False, generator=gen)  # (n, dots)
    if pol is None:
        signs = torch.randint(0, 2, (n, dots), generator=gen).float() * 2 - 1
    else:
        signs = torch.full((n, dots), pol)
    low = torch.zeros(n, g * g).scatter_(1, cells, signs).view(n, g, g)
    big = low.repeat_interleave(dot_size, 1).repeat_interleave(dot_size, 2)
    off = (size - g * dot_size) // 2
    rest = size - g * dot_size - off
    big = F.pad(big, (off, rest, off, rest))
    lum = (mean + mean * contrast * big).to(device)
    rows = (cells // g) * dot_size + off
    cols = (cells % g) * dot_size + off
    positions = torch.stack([cols, rows], dim=-1).tolist()
    sign_list = signs.long().tolist()
    base = _jsonable(dict(size=size, n_frames=n, dots=dots, dot_size=dot_size, seed=seed, polarity=polarity,
                          contrast=contrast, mean=mean, channels=channels), "sparse_noise")
    params = [dict(base, frame=i, positions=positions[i], signs=sign_list[i]) for i in range(n)]
    return _finish(lum, channels, params)


def _noise_finish(z: torch.Tensor, mean: float, contrast: float, device) -> torch.Tensor:
    return (mean + mean * contrast * z).clamp_(0, 1).to(device)


def white_noise(size: int = 64, n: int = 100, seed: int | None = 0, distribution: str = "uniform",
                contrast: float = 1.0, mean: float = 0.5, channels: int = 1,
                device: str | torch.device | None = None) -> StimulusSet:
    """Spatially white noise, every pixel (and channel) drawn independently.

    ``distribution``: "uniform" (``mean * (1 + contrast * U(-1, 1))``; the
    defaults give U(0, 1)), "binary" (``mean * (1 +- contrast)``), or "gaussian"
    (``mean * (1 + contrast * z / 3)``, z standard normal, clipped to [0, 1]).

    Parameters
    ----------
    size, n : int
        Image side in pixels; number of images.
    seed : int or None
    distribution : {"uniform", "binary", "gaussian"}
    contrast, mean : float in [0, 1]
    channels : {1, 3}
        With 3, each channel is drawn independently (colour noise).
    device : torch device, optional

    Examples
    --------
    >>> w = white_noise(size=32, n=4, seed=0)
    >>> tuple(w.images.shape), w.params[2]["frame"]
    ((4, 1, 32, 32), 2)
    """
    size, channels, n = _check_size(size), _check_channels(channels), _check_count("n", n)
    grid = _Grid(dict(contrast=contrast, mean=mean, distribution=distribution), sweep=())
    _check_luminance(grid)
    _check_choice(grid, "distribution", ("uniform", "binary", "gaussian"))
    gen, seed = _generator(seed)
    shape = (n, channels, size, size)
    if distribution == "uniform":
        z = torch.rand(shape, generator=gen) * 2 - 1
    elif distribution == "binary":
        z = torch.randint(0, 2, shape, generator=gen).float() * 2 - 1
    else:
        z = torch.randn(shape, generator=gen) / 3
    images = _noise_finish(z, mean, contrast, device)
    base = dict(size=size, n=n, seed=seed, distribution=distribution, contrast=contrast, mean=mean, channels=channels)
    return StimulusSet(images, [dict(base, frame=i) for i in range(n)])


def pink_noise(size: int = 64, n: int = 100, exponent: Any = 1.0, seed: int | None = 0, contrast: float = 1.0,
               mean: float = 0.5, channels: int = 1, device: str | torch.device | None = None) -> StimulusSet:
    """Noise with a ``1 / f**exponent`` amplitude spectrum (exponent 1: pink, "natural" statistics).

    White Gaussian noise is filtered in the Fourier domain (zero DC), then each
    image is scaled so that its largest deviation from ``mean`` is exactly
    ``mean * contrast``: no pixel clips and the spectrum's slope is untouched.

    Parameters
    ----------
    size, n : int
        Image side in pixels; images per exponent.
    exponent : float or list
        Amplitude-spectrum exponent (0 white, 1 pink, 2 brown). A list gives
        ``len(exponent) * n`` images, exponent-major.
    seed : int or None
    contrast, mean : float in [0, 1]
    channels : {1, 3}
        With 3, each channel is drawn independently.
    device : torch device, optional

    Examples
    --------
    >>> p = pink_noise(size=32, n=2, exponent=[1.0, 2.0], seed=0)
    >>> len(p), [q["exponent"] for q in p.params]
    (4, [1.0, 1.0, 2.0, 2.0])
    """
    size, channels, n = _check_size(size), _check_channels(channels), _check_count("n", n)
    grid = _Grid(dict(exponent=exponent, frame=list(range(n)), contrast=contrast, mean=mean),
                 sweep=("exponent", "frame"))
    _numbers(grid, "exponent")
    _check_luminance(grid)
    gen, seed = _generator(seed)
    N = grid.n
    white = torch.randn((N, channels, size, size), generator=gen, dtype=torch.float64)
    f = torch.fft.fftfreq(size, dtype=torch.float64) * size
    radius = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    radius[0, 0] = 1.0
    ex = grid.column("exponent")[:, None, None, None]
    filt = radius[None, None] ** (-ex)
    filt[..., 0, 0] = 0.0
    z = torch.fft.ifft2(torch.fft.fft2(white) * filt).real
    peak = z.abs().amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    images = _noise_finish((z / peak).float(), mean, contrast, device)
    params = [dict(size=size, n=n, exponent=p["exponent"], seed=seed, contrast=contrast, mean=mean,
                   channels=channels, frame=p["frame"]) for p in grid.params()]
    return StimulusSet(images, params)
