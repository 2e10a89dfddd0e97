"""Comparing RDMs: rank, linear and whitened similarities, batched over many RDMs.

``spearman``, ``kendall_a`` (Kendall's tau-a), ``rho_a`` (Spearman's rho-a),
``pearson``, ``cosine``, ``whitened_pearson`` and ``whitened_cosine``
(Diedrichsen et al. 2021; rsatoolbox's ``corr_cov`` and ``cosine_cov``);
rsatoolbox's names are accepted as aliases. NaN or inf dissimilarities are
refused with the fix (drop those pairs from every RDM), never scored as numbers.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import torch

from ..errors import InsilicoError
from .arrays import _as_tensor, _check_choice, _n_from_pairs, _rank, _square
from .rdm import RDM


COMPARE_METHODS = ("spearman", "kendall_a", "rho_a", "pearson", "cosine", "whitened_pearson", "whitened_cosine")


_ALIASES = {
    "corr": "pearson", "correlation": "pearson", "tau-a": "kendall_a", "tau_a": "kendall_a", "kendall": "kendall_a",
    "rho-a": "rho_a", "corr_cov": "whitened_pearson", "cosine_cov": "whitened_cosine",
}


def compare(a, b, method: str = "spearman") -> float:
    """Similarity of two RDMs.

    Parameters
    ----------
    a, b : RDM, or condensed vectors, or square matrices
    method : {"spearman", "kendall_a", "rho_a", "pearson", "cosine", "whitened_pearson", "whitened_cosine"}

    Returns
    -------
    float

    Examples
    --------
    >>> round(compare([1, 2, 3], [1, 2, 4], "spearman"), 6), round(compare([1, 2, 3], [1, 2, 2], "kendall_a"), 6)
    (1.0, 0.666667)
    """
    return float(compare_all([a], [b], method)[0, 0])


def compare_all(models, data, method: str = "spearman") -> torch.Tensor:
    """Similarities of every RDM in ``models`` with every RDM in ``data``, batched.

    Parameters
    ----------
    models, data : RDM, list or dict of RDMs, or tensor (k, n_pairs) of condensed vectors

    Returns
    -------
    tensor (n_models, n_data), float64

    Examples
    --------
    >>> v = torch.rand(3, 10, dtype=torch.float64)
    >>> tuple(compare_all(v, v[:2], "pearson").shape)
    (3, 2)
    """
    method = _compare_method(method)
    va, vb = _vectors(models), _vectors(data)
    if va.shape[1] != vb.shape[1]:
        raise InsilicoError(f"RDMs of different sizes ({va.shape[1]} and {vb.shape[1]} pairs) cannot be compared")
    return _similarity(va, vb.to(va.device), method)


def _similarity(va: torch.Tensor, vb: torch.Tensor, method: str) -> torch.Tensor:
    """(k, d) x (m, d) -> (k, m)."""
    if method == "kendall_a":
        return torch.tensor([[_tau_a(x, y) for y in vb.cpu().numpy()] for x in va.cpu().numpy()],
                            dtype=torch.float64, device=va.device)
    if method in ("spearman", "rho_a"):
        va, vb = _rank(va), _rank(vb)
    if method in ("whitened_pearson", "whitened_cosine"):
        if method == "whitened_pearson":
            va, vb = va - va.mean(1, keepdim=True), vb - vb.mean(1, keepdim=True)
        va, vb = _double_centred(va), _double_centred(vb)
        return _cosine(va, vb)
    if method in ("spearman", "pearson", "rho_a"):
        va, vb = va - va.mean(1, keepdim=True), vb - vb.mean(1, keepdim=True)
    if method == "rho_a":
        d = va.shape[1]
        return va @ vb.T * 12 / (d ** 3 - d)
    return _cosine(va, vb)


def _cosine(va, vb):
    na, nb = va.norm(dim=1), vb.norm(dim=1)
    out = va @ vb.T / (na[:, None] * nb[None, :])
    return torch.where((na[:, None] > 0) & (nb[None, :] > 0), out, torch.zeros_like(out))


def _double_centred(v: torch.Tensor) -> torch.Tensor:
    """Flattened -1/2 H D H of each RDM: its second-moment matrix, whose entries are i.i.d. under
    i.i.d. pattern noise (Diedrichsen et al. 2021); the Frobenius product counts each pair twice."""
    n = _n_from_pairs(v.shape[1])
    m = -0.5 * _square(v, n)
    m = m - m.mean(-1, keepdim=True) - m.mean(-2, keepdim=True) + m.mean((-1, -2), keepdim=True)
    return m.reshape(v.shape[0], -1)


def _tau_a(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-a: (concordant - discordant) / (n (n-1) / 2), from scipy's O(n log n) tau-b."""
    from scipy.stats import kendalltau

    n0 = len(x) * (len(x) - 1) / 2

    def tied(v):
        _, c = np.unique(v, return_counts=True)
        return float((c * (c - 1) / 2).sum())

    t1, t2 = tied(x), tied(y)
    if t1 == n0 or t2 == n0:
        return 0.0
    tau_b = kendalltau(x, y).statistic
    return float(tau_b * math.sqrt((n0 - t1) * (n0 - t2)) / n0)


def _vectors(x) -> torch.Tensor:
    """RDMs as condensed float64 vectors (k, n_pairs); InsilicoError for NaN or inf dissimilarities.

    NaN is never scored as a number (a NaN pair would be ranked, or zeroed, and
    the similarity would look valid): every comparison, ceiling and bootstrap
    refuses it with the fix, as :func:`rdm` refuses NaN responses.
    """
    v = _condensed(x)
    if not torch.isfinite(v).all():
        bad = int((~torch.isfinite(v)).sum())
        raise InsilicoError(
            f"the RDMs contain {bad} NaN or inf dissimilarit{'y' if bad == 1 else 'ies'}; they cannot be compared "
            "as numbers: drop those pairs from every RDM (keep = torch.isfinite(a) & torch.isfinite(b); "
            "compare(a[keep], b[keep])) or impute them first")
    return v


def _condensed(x) -> torch.Tensor:
    if isinstance(x, RDM):
        return x.vector.double()[None]
    if isinstance(x, Mapping):
        x = list(x.values())
    if isinstance(x, (list, tuple)) and x and isinstance(x[0], RDM):
        return torch.stack([r.vector.to(x[0].device).double() for r in x])
    t = _as_tensor(x, dtype=torch.float64)
    if t.ndim == 1:
        return t[None]
    if t.ndim == 2 and t.shape[0] == t.shape[1] and t.shape[0] > 1 and _is_rdm_matrix(t):
        i, j = torch.triu_indices(t.shape[0], t.shape[0], 1, device=t.device)
        return t[i, j][None]
    if t.ndim == 2:
        return t
    if t.ndim == 3 and t.shape[1] == t.shape[2]:
        i, j = torch.triu_indices(t.shape[1], t.shape[1], 1, device=t.device)
        return t[:, i, j]
    raise InsilicoError(f"cannot read RDMs from shape {tuple(t.shape)}: pass RDMs, condensed vectors or square matrices")


def _is_rdm_matrix(t: torch.Tensor) -> bool:
    return bool(torch.allclose(t, t.T) and t.diagonal().abs().max() == 0)


def _compare_method(method: str) -> str:
    return _check_choice(_ALIASES.get(method, method), COMPARE_METHODS, "comparison method")
