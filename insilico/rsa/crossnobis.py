"""Crossnobis distances and shrinkage noise covariances (Walther et al. 2016; Schäfer & Strimmer 2005).

The cross-validated squared Mahalanobis distance is a mean over pairs of runs
of ``(b_ki - b_kj)' Λ (b_li - b_lj)`` for the noise precision Λ. The noise
covariance is a shrinkage estimate from residuals (rsatoolbox's
``cov_from_residuals`` estimators). Why by hand: rsatoolbox forms the P x P
covariance (657 GiB for one RDM in a user report); here the precision is
applied through a Cholesky factor, or through the Woodbury identity with an
(rn x rn) inverse only when there are fewer residuals than features.
"""
from __future__ import annotations

import torch

from ..errors import InsilicoError
from .arrays import _as_tensor, _check_choice


NOISE_METHODS = ("shrinkage_diag", "shrinkage_eye", "diag")


def _crossnobis(x: torch.Tensor, noise, per_feature: bool) -> torch.Tensor:
    """x: (R, N, P). Mean over pairs of runs k != l of (b_ki - b_kj)' Λ (b_li - b_lj)."""
    r, n, p = x.shape
    parts = _whiten(x, noise)  # list of (sign, (R, N, Q)) with x Λ y' = sum sign * f(x) f(y)'
    kernel = torch.zeros(n, n, dtype=x.dtype, device=x.device)
    for sign, z in parts:
        s = z.sum(0)
        kernel += sign * (s @ s.T - torch.einsum("kiq,kjq->ij", z, z)) / (r * (r - 1))
    d = kernel.diagonal()
    i, j = torch.triu_indices(n, n, 1, device=x.device)
    vec = (d[:, None] + d[None, :] - kernel - kernel.T)[i, j]
    return vec / p if per_feature else vec


def noise_covariance(residuals, method: str = "shrinkage_diag", dof: int | None = None) -> torch.Tensor:
    """A shrinkage estimate of the noise covariance (P, P) from residuals (n, P).

    The same estimators as rsatoolbox's ``cov_from_residuals``: ``shrinkage_diag``
    (Schäfer & Strimmer 2005), ``shrinkage_eye`` (Ledoit & Wolf 2004), ``diag``.
    Columns are centred first; ``dof`` defaults to n - 1. Forms the P x P matrix:
    for RDMs, :func:`rdm` applies the same estimate without forming it.

    Examples
    --------
    >>> res = torch.randn(50, 4, dtype=torch.float64)
    >>> tuple(noise_covariance(res).shape)
    (4, 4)
    """
    res = _as_tensor(residuals, dtype=torch.float64)
    res = res - res.mean(0, keepdim=True)
    a, c = _shrinkage(res, _check_choice(method, NOISE_METHODS, "noise"), dof if dof is not None else res.shape[0] - 1)
    return torch.diag(a) + c * res.T @ res


def _shrinkage(res: torch.Tensor, method: str, dof: int) -> tuple[torch.Tensor, float]:
    """Σ = diag(a) + c R'R for residuals R (n, P), computed from n x n Gram matrices only."""
    n, p = res.shape
    sq = res.pow(2)
    var = sq.sum(0) / dof
    if method == "diag":
        return var, 0.0
    if method == "shrinkage_eye":
        gram = res @ res.T
        s_fro2 = gram.pow(2).sum() / n ** 2
        b2 = ((sq.sum(1).pow(2).sum() / n - s_fro2) / n).item()
        m = (sq.sum() / n / p).item()
        d2 = (s_fro2 - p * m * m).item()
        b2 = min(b2, d2)
        shrink = b2 / d2 if d2 > 0 else 1.0
        return torch.full((p,), shrink * m * n / dof, dtype=res.dtype, device=res.device), (1 - shrink) / dof
    # shrinkage_diag
    std = (sq.sum(0) / dof).sqrt()
    std = torch.where(std > 0, std, torch.ones_like(std))
    z = res / std
    z2 = z.pow(2)
    s_all = (z @ z.T).pow(2).sum() / (n - 1) ** 2
    s_diag = z2.sum(0).pow(2).sum() / (n - 1) ** 2
    s2_all = z2.sum(1).pow(2).sum() / (n - 1)
    s2_diag = z2.pow(2).sum() / (n - 1)
    var_hat_off = n / dof ** 2 * ((s2_all - s2_diag) - (s_all - s_diag))
    lamb = float(var_hat_off / (s_all - s_diag)) if float(s_all - s_diag) > 0 else 1.0
    lamb = min(max(lamb, 0.0), 1.0)
    return lamb * var, (1 - lamb) / dof


def _whiten(x: torch.Tensor, noise) -> list:
    """Linear maps f (with signs) such that x Λ y' = Σ sign · f(x) f(y)' for the noise precision Λ."""
    r, n, p = x.shape
    if noise is None:
        return [(1.0, x)]
    if not isinstance(noise, str):
        prec = _as_tensor(noise, device=x.device, dtype=x.dtype)
        if prec.shape != (p, p):
            raise InsilicoError(f"a noise precision matrix must be ({p}, {p}) for {p} features, got {tuple(prec.shape)}")
        return [(1.0, x @ _cholesky(prec, "noise precision"))]
    method = _check_choice(noise, NOISE_METHODS, "noise")
    res = (x - x.mean(0, keepdim=True)).reshape(r * n, p)
    a, c = _shrinkage(res, method, (r - 1) * n)
    a = a.clamp(min=max(float(a.max()), 1e-300) * 1e-10)  # dead features (zero noise) would get infinite precision
    if c == 0:
        return [(1.0, x / a.sqrt())]
    if p <= r * n:  # small enough: whiten with the Cholesky factor of the P x P covariance
        cov = torch.diag(a) + c * res.T @ res
        low = _cholesky(cov, "noise covariance")
        z = torch.linalg.solve_triangular(low, x.reshape(r * n, p).T, upper=False).T
        return [(1.0, z.reshape(r, n, p))]
    # Woodbury: Λ = A⁻¹ - A⁻¹R'(I/c + R A⁻¹ R')⁻¹ R A⁻¹, with an (rn x rn) inverse only
    ra = res / a
    inner = torch.eye(r * n, dtype=x.dtype, device=x.device) / c + ra @ res.T
    low = _cholesky(inner, "noise covariance")
    g = x.reshape(r * n, p) @ ra.T
    f2 = torch.linalg.solve_triangular(low, g.T, upper=False).T
    return [(1.0, x / a.sqrt()), (-1.0, f2.reshape(r, n, -1))]


def _cholesky(m: torch.Tensor, what: str) -> torch.Tensor:
    low, info = torch.linalg.cholesky_ex(m)
    if int(info) != 0:
        raise InsilicoError(f"the {what} is not positive definite; use a shrinkage estimate (noise='shrinkage_diag')")
    return low
