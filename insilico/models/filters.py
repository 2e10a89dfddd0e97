"""First-layer filters: how oriented they are, and a picture of them.

Trained CNNs grow oriented, localized (Gabor-like) first-layer filters; random
initialisations do not. :func:`orientedness` measures this per filter from the
2-D Fourier power of the filter's dominant spatial pattern: the resultant
length of the power-weighted doubled orientation angle, 1 for a perfect
grating or edge, near 0 for isotropic patterns (blobs, white noise).
"""
from __future__ import annotations

import math

import numpy as np
import torch


def _spatial(weight: torch.Tensor) -> torch.Tensor:
    """(O, C, k, k) -> (O, k, k): each filter's dominant spatial pattern across channels."""
    w = weight.detach().float().cpu()
    o, c, kh, kw = w.shape
    u, s, vh = torch.linalg.svd(w.reshape(o, c, kh * kw), full_matrices=False)
    return (s[:, :1, None] * vh[:, :1]).reshape(o, kh, kw)


def orientedness(weight: torch.Tensor, pad: int = 32) -> torch.Tensor:
    """Orientation concentration of each filter's Fourier power, in [0, 1].

    Parameters
    ----------
    weight : Tensor (O, C, k, k)
        Convolution weights (e.g. ``model.features[0].weight``).
    pad : int
        FFT size (zero-padding) used to sample the spectrum.

    Returns
    -------
    Tensor (O,)
        ``|sum P(f) exp(2i theta(f))| / sum P(f)`` over non-zero frequencies f of
        the mean-removed dominant spatial pattern.

    Examples
    --------
    >>> x = torch.arange(7.0)
    >>> grating = torch.cos(x)[None, :].expand(7, 7)          # vertical stripes
    >>> w = torch.stack([grating, torch.randn(7, 7)])[:, None]
    >>> r = orientedness(w)
    >>> round(float(r[0]), 2)                                  # a pure grating (leakage of a 7-px window)
    0.73
    """
    sp = _spatial(weight)
    sp = sp - sp.mean((1, 2), keepdim=True)
    power = torch.fft.fft2(sp, s=(pad, pad)).abs() ** 2
    f = torch.fft.fftfreq(pad)
    fy, fx = torch.meshgrid(f, f, indexing="ij")
    theta = torch.atan2(fy, fx)
    power = power * ((fx != 0) | (fy != 0))
    num = torch.complex(power * torch.cos(2 * theta), power * torch.sin(2 * theta)).sum((1, 2)).abs()
    return num / power.sum((1, 2)).clamp_min(1e-12)


def plot_filters(weight: torch.Tensor, ncols: int | None = None, ax=None, scores: torch.Tensor | None = None):
    """Draw first-layer filters as a grid of RGB (or gray) tiles, zero at mid-gray.

    Parameters
    ----------
    weight : Tensor (O, C, k, k), C in {1, 3}
    ncols : int, optional
        Tiles per row (default: about square).
    ax : matplotlib Axes, optional
        Axes to draw into; a new figure otherwise.
    scores : Tensor (O,), optional
        Shown under each tile (e.g. :func:`orientedness`).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    w = weight.detach().float().cpu()
    o, c, k, _ = w.shape
    ncols = ncols or math.ceil(math.sqrt(o))
    nrows = math.ceil(o / ncols)
    pad = 1
    grid = np.ones((nrows * (k + pad) + pad, ncols * (k + pad) + pad, 3), dtype=np.float32)
    for i in range(o):
        f = w[i]
        f = f / (2 * f.abs().max().clamp_min(1e-12)) + 0.5
        tile = f.permute(1, 2, 0).numpy()
        if c == 1:
            tile = np.repeat(tile, 3, axis=2)
        r, q = divmod(i, ncols)
        grid[pad + r * (k + pad): pad + r * (k + pad) + k, pad + q * (k + pad): pad + q * (k + pad) + k] = tile[:, :, :3]
    if ax is None:
        fig, ax = plt.subplots(figsize=(0.5 * ncols + 0.5, 0.5 * nrows + 0.5))
    else:
        fig = ax.figure
    ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    if scores is not None:
        for i, s in enumerate(scores.tolist()):
            r, q = divmod(i, ncols)
            ax.text(pad + q * (k + pad) + k / 2 - 0.5, pad + r * (k + pad) + k - 0.5, f"{s:.2f}",
                    ha="center", va="top", fontsize=5, color="k")
    return fig
