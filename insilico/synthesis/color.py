"""Colour decorrelation: the 3x3 matrix that gives optimised images natural colour statistics.

Neighbouring colour channels of natural photos are strongly correlated. Like
lucid, we optimise images in a *decorrelated* colour space and map to RGB with
a square root of the photos' colour covariance, so that white noise in the
optimised space has the colour covariance of photos in RGB.

How the matrix is estimated (:func:`estimate_color_sqrt`):

1. Read scikit-image's bundled colour photos (:data:`PHOTOS`; files inside the
   wheel, no download) as RGB in [0, 1].
2. Covariance of the pixel colours, each photo weighted equally: the pooled mean
   ``mu`` is the mean of the photos' mean colours, and
   ``cov = mean_photos(E[(x - mu)(x - mu)^T])``.
3. Symmetric square root by eigendecomposition, ``cov = V diag(w) V^T`` and
   ``sqrt = V diag(sqrt(w)) V^T``, so ``sqrt @ sqrt.T == cov``.

The result is shipped as :data:`COLOR_SQRT` so nothing is read at run time;
``tests/synthesis/test_synthesis.py`` recomputes it. Parameterizations use
:func:`normalized_color_matrix`, the same matrix divided by its largest column
norm (so a unit-variance input never gives an RGB channel more than unit
variance), which only rescales the covariance.

Example
-------
>>> import torch
>>> from insilico.synthesis.color import COLOR_SQRT
>>> cov = COLOR_SQRT @ COLOR_SQRT.T
>>> bool(cov[0, 1] > 0.5 * (cov[0, 0] * cov[1, 1]) ** 0.5)    # red and green correlate
True
"""
from __future__ import annotations

import numpy as np
import torch

#: scikit-image's bundled colour photos used to estimate the colour covariance.
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")

#: Symmetric square root of the colour covariance of :data:`PHOTOS` (pixel values in [0, 1]),
#: as computed by ``estimate_color_sqrt()``; rows/columns are R, G, B.
COLOR_SQRT = torch.tensor(
    [
        [0.25206383, 0.11316225, 0.03983555],
        [0.11316225, 0.15827241, 0.11175582],
        [0.03983555, 0.11175582, 0.18226585],
    ]
)


def photo_pixels(names: tuple[str, ...] = PHOTOS) -> list[np.ndarray]:
    """RGB pixels (P, 3) in [0, 1] of scikit-image's bundled photos ``names``."""
    import skimage.data

    return [getattr(skimage.data, name)()[..., :3].reshape(-1, 3).astype(np.float64) / 255.0 for name in names]


def color_covariance(pixels: list[np.ndarray]) -> np.ndarray:
    """Colour covariance (3, 3) of several images' pixels (P_i, 3), each image weighted equally."""
    mu = np.mean([p.mean(axis=0) for p in pixels], axis=0)
    return np.mean([(p - mu).T @ (p - mu) / len(p) for p in pixels], axis=0)


def estimate_color_sqrt(names: tuple[str, ...] = PHOTOS) -> torch.Tensor:
    """Symmetric square root (3, 3) of the colour covariance of bundled photos; see the module docstring.

    Examples
    --------
    >>> import torch
    >>> torch.allclose(estimate_color_sqrt(), COLOR_SQRT, atol=1e-6)
    True
    """
    values, vectors = np.linalg.eigh(color_covariance(photo_pixels(names)))
    root = vectors @ np.diag(np.sqrt(np.clip(values, 0, None))) @ vectors.T
    return torch.tensor(root, dtype=torch.float32)


def normalized_color_matrix(matrix: torch.Tensor | None = None) -> torch.Tensor:
    """``matrix`` (default :data:`COLOR_SQRT`) divided by its largest column norm."""
    matrix = COLOR_SQRT if matrix is None else torch.as_tensor(matrix, dtype=torch.float32)
    return matrix / matrix.norm(dim=0).max()
