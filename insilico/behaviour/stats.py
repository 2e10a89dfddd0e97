"""The statistics the behaviour tools share: bootstrap intervals over images, a seeded generator, axes.

Every interval in :mod:`insilico.behaviour` is a percentile bootstrap over
images (resampled with replacement, ``n_boot`` times; Efron & Tibshirani 1993):
the images are the random sample a behavioural experiment draws, so they are
what is resampled (the rows of one call of :func:`bootstrap` are resampled
together, which keeps two observers' trials on one image paired).

Example
-------
>>> import numpy as np
>>> x = np.arange(10.0)
>>> low, high = bootstrap(lambda idx: x[idx].mean(), 10, n_boot=200, seed=0)
>>> bool(low < x.mean() < high)
True
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import InsilicoError
from ..seeding import fresh_seed


def rng(seed: int | None) -> np.random.Generator:
    """A numpy generator of its own (``None``: fresh entropy); numpy's global state is never touched."""
    return np.random.default_rng(fresh_seed() if seed is None else int(seed))


def bootstrap(statistic: Callable[[np.ndarray], float], n: int, n_boot: int = 1000, seed: int | None = 0,
              ci: float = 0.95) -> tuple[float, float]:
    """Percentile interval of ``statistic(index)`` over ``n_boot`` resamplings of ``n`` images.

    ``statistic`` takes an index array (n,) drawn with replacement and returns a float (NaN where undefined,
    e.g. a class absent from a resample: such draws are left out). Returns ``(low, high)``; ``(nan, nan)``
    when ``n_boot`` is 0 or every draw was undefined.

    Raises
    ------
    InsilicoError
        ``ci`` outside (0, 1), or a negative ``n_boot``.
    """
    if not 0 < ci < 1:
        raise InsilicoError(f"ci must be between 0 and 1 (e.g. 0.95), not {ci}")
    if n_boot < 0:
        raise InsilicoError(f"n_boot must be >= 0, not {n_boot}")
    g = rng(seed)
    values = np.array([statistic(g.integers(0, n, n)) for _ in range(n_boot)], dtype=float)
    values = values[np.isfinite(values)]
    if not len(values):
        return float("nan"), float("nan")
    tail = (1 - ci) / 2 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def axes(ax=None, figsize=(5, 3.5)):
    """``(figure, ax)``: the given axis and its figure, or a new figure (closed: returned, not shown)."""
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize)
    plt.close(fig)
    return fig, ax


__all__ = ["axes", "bootstrap", "rng"]
