"""Noise ceilings: the best similarity any model could reach with a group of subjects' RDMs.

The lower bound pools the other subjects (leave one out), the upper bound all
of them, with the pooling that suits the comparison method (rsatoolbox's
``pool_rdm``; Nili et al. 2014).
"""
from __future__ import annotations

import dataclasses

import torch

from ..errors import InsilicoError
from ..results import Result
from .arrays import _rank
from .compare import _compare_method, _similarity, _vectors, aligned


def _pool(v: torch.Tensor, method: str) -> torch.Tensor:
    """The average RDM that best represents several under ``method`` (rsatoolbox's pool_rdm)."""
    if method in ("spearman", "rho_a", "kendall_a"):
        return _rank(v).mean(0)
    if method in ("pearson", "whitened_pearson"):
        z = v - v.mean(1, keepdim=True)
        z = z / z.std(1, unbiased=False, keepdim=True)
        m = z.mean(0)
        return m - m.min()
    if method in ("cosine", "whitened_cosine"):
        return (v / v.pow(2).mean(1, keepdim=True).sqrt()).mean(0)
    return v.mean(0)


@dataclasses.dataclass
class NoiseCeiling(Result):
    """Bounds on the best achievable similarity with the group of subjects.

    ``lower``: mean similarity of each subject with the pooled RDM of the
    others (leave one subject out); ``upper``: with the pooled RDM of all
    subjects, itself included. A true model is expected between them.
    Saves and loads like every insilico result (:class:`insilico.results.Result`).
    """

    lower: float
    upper: float
    method: str

    def __iter__(self):
        return iter((self.lower, self.upper))

    def table(self) -> list:
        """One row: ``lower``, ``upper``, ``method``."""
        return [{"lower": float(self.lower), "upper": float(self.upper), "method": self.method}]

    def plot(self, ax=None):
        """The ceiling as a grey band; returns the Figure."""
        from .plots import _axes

        fig, ax = _axes(ax, (3, 3))
        ax.axhspan(self.lower, self.upper, color="0.8", label="noise ceiling")
        ax.set_ylabel(f"RDM similarity ({self.method})")
        ax.legend(fontsize=7, frameon=False)
        return fig


def noise_ceiling(subjects, method: str = "spearman") -> NoiseCeiling:
    """Leave-one-subject-out noise ceiling of a set of subject RDMs.

    Parameters
    ----------
    subjects : list of RDM, or tensor (n_subjects, n_pairs)
        At least 2. Labelled RDMs are aligned by label (another order is
        reordered, other stimuli refused: see :mod:`insilico.rsa.compare`).
    method : str
        The comparison method (see :func:`compare`).

    Returns
    -------
    NoiseCeiling
        ``lower, upper = noise_ceiling(...)`` unpacks.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> truth = torch.rand(45, generator=g, dtype=torch.float64)
    >>> subs = truth + 0.3 * torch.randn(6, 45, generator=g, dtype=torch.float64)
    >>> lo, hi = noise_ceiling(subs, "pearson")
    >>> lo < hi
    True
    """
    method = _compare_method(method)
    (subjects,) = aligned(subjects)  # labelled RDMs in one stimulus order
    v = _vectors(subjects)
    k = v.shape[0]
    if k < 2:
        raise InsilicoError("a noise ceiling needs at least 2 subjects' RDMs")
    pooled = _pool(v, method)
    upper = _similarity(pooled[None], v, method)[0].mean()
    lower = torch.stack([_similarity(_pool(v[torch.arange(k) != s], method)[None], v[s:s + 1], method)[0, 0]
                         for s in range(k)]).mean()
    return NoiseCeiling(float(lower), float(upper), method)
