"""Noise estimates the experiments share: bootstrap intervals, split-half reliability, paired permutation tests.

Every experiment result reports how far its numbers would move on another
sample of stimuli. The rules live here once:

- :func:`interval`: the percentile interval of bootstrap samples (``level``,
  default 95%);
- :func:`resample_within`: bootstrap indices that resample stimuli *within*
  each class (every resample keeps each class's size), so a per-class
  accuracy is never computed on a class that vanished from the resample;
- :func:`split_halves`: random halves of the stimuli, stratified by class;
- :func:`spearman_brown`: the reliability of the whole set from the
  correlation of two halves, ``2 r / (1 + r)``;
- :func:`sign_flip_p`: a paired permutation test (the condition labels of each
  paired trial swapped at random), one-sided, ``p = (1 + #{T* >= T}) / (1 + P)``,
  so its floor is ``1 / (P + 1)`` and a null effect of exactly zero gives 1.

Every random draw comes from a generator seeded from the caller's ``seed``
(:func:`insilico.seeding.derive_seed`): the global random state is never read.
numpy and scipy do the work; nothing here is written by hand that they do.

Example
-------
>>> import numpy as np
>>> rng = rng_for(0, "demo")
>>> idx = resample_within(np.array([0, 0, 1, 1, 1]), 4, rng)
>>> [i.shape for i in idx], spearman_brown(0.5)
([(4, 2), (4, 3)], 0.6666666666666666)
>>> sign_flip_p(np.ones((1, 12)), 99, rng).tolist()   # a perfect effect: the floor 1 / (P + 1)
[0.01]
"""
from __future__ import annotations

import numpy as np

from ..errors import InsilicoError
from ..seeding import derive_seed

#: Confidence level of every interval an experiment reports.
LEVEL = 0.95


def rng_for(seed: int, purpose: str) -> np.random.Generator:
    """A numpy generator of its own for one ``purpose`` of a run seeded ``seed`` (never the global one)."""
    return np.random.default_rng(derive_seed(int(seed), purpose))


def interval(samples: np.ndarray, axis: int = 0, level: float = LEVEL) -> np.ndarray:
    """The ``level`` percentile interval of bootstrap ``samples`` along ``axis``: shape (..., 2) as (low, high).

    Samples that are all equal give a zero-width interval (low == high == the value); NaN samples are skipped.
    """
    alpha = (1.0 - level) / 2.0
    with np.errstate(all="ignore"):
        low = np.nanquantile(samples, alpha, axis=axis)
        high = np.nanquantile(samples, 1.0 - alpha, axis=axis)
    return np.stack([low, high], axis=-1)


def resample_within(classes: np.ndarray, n_boot: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Per class (sorted class values) the bootstrap indices ``(n_boot, n_c)`` into ``classes``: stimuli of the
    class drawn with replacement, the class's size kept."""
    out = []
    for c in np.unique(classes):
        positions = np.flatnonzero(classes == c)
        out.append(positions[rng.integers(0, len(positions), (int(n_boot), len(positions)))])
    return out


def split_halves(classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random half of the stimuli, stratified by class: (N,) bool, True for the first half (``n_c // 2`` of each
    class; a class of one stimulus is in the second half)."""
    first = np.zeros(len(classes), dtype=bool)
    for c in np.unique(classes):
        positions = rng.permutation(np.flatnonzero(classes == c))
        first[positions[: len(positions) // 2]] = True
    return first


def spearman_brown(r: float) -> float:
    """The reliability of the full set from the correlation ``r`` of its two halves: ``2 r / (1 + r)``."""
    return float(2.0 * r / (1.0 + r)) if np.isfinite(r) and r > -1 else float("nan")


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r over the entries finite in both; NaN when fewer than 3 or either is constant."""
    a, b = np.ravel(a), np.ravel(b)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    from scipy.stats import pearsonr

    return float(pearsonr(a, b)[0])


def sign_flip_p(differences: np.ndarray, n_permutations: int, rng: np.random.Generator) -> np.ndarray:
    """One-sided paired permutation p-values that the mean of each row of ``differences`` (rows, trials) is > 0.

    Each trial's two conditions (e.g. stimulated / not) are swapped at random (its difference's sign flipped);
    ``p = (1 + #{permuted mean >= observed mean}) / (1 + n_permutations)``. Rows of zeros give p = 1.
    """
    d = np.atleast_2d(np.asarray(differences, dtype=np.float64))
    if d.shape[1] == 0:
        raise InsilicoError("a permutation test needs at least one trial")
    observed = d.mean(1)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(int(n_permutations), d.shape[1]))
    permuted = signs @ d.T / d.shape[1]                       # (P, rows)
    tolerance = 1e-12 * np.maximum(np.abs(d).max(1), 1e-300)  # rounding of the permuted sums is not an effect
    hits = (permuted >= observed[None] - tolerance[None]).sum(0)
    return (1.0 + hits) / (1.0 + n_permutations)


__all__ = ["LEVEL", "correlation", "interval", "resample_within", "rng_for", "sign_flip_p", "spearman_brown",
           "split_halves"]
