"""Representational similarity analysis: RDMs, RDM comparison, bootstrap, noise ceilings.

Responses flow in as they come out of a probe: a :class:`~insilico.Recording`
(one RDM per unit, many layers in one call), a dict of tensors, or one tensor or
array (stimuli, ...) whose trailing axes are flattened into features. The work
runs on the device of the input tensors (or ``device=``), in float64 unless
``dtype=`` says otherwise; RDMs are small and come back as :class:`RDM` objects
holding a condensed vector on that device.

Dissimilarities (``rdm(..., method=)``)

=============== ================================================================
correlation     1 - Pearson r between the two response patterns (scipy's ``correlation``)
cosine          1 - cosine similarity (scipy's ``cosine``)
euclidean       plain Euclidean distance ||x_i - x_j|| (scipy's ``euclidean``)
sqeuclidean     squared Euclidean; with ``per_feature=True`` divided by the number
                of features, which is what rsatoolbox calls "euclidean"
crossnobis      cross-validated squared Mahalanobis distance over runs, with a
                shrinkage noise covariance (Walther et al. 2016); divided by the
                number of features like rsatoolbox's, unless ``per_feature=False``
=============== ================================================================

Comparisons (``compare(a, b, method=)``): ``spearman``, ``kendall_a`` (Kendall's
tau-a), ``rho_a`` (Spearman's rho-a, the expected rho under random tie
breaking), ``pearson``, ``cosine``, ``whitened_pearson`` and
``whitened_cosine`` (Diedrichsen et al. 2021; rsatoolbox's ``corr_cov`` and
``cosine_cov`` for i.i.d. patterns). rsatoolbox's names (``corr``, ``tau-a``,
``rho-a``, ``corr_cov``, ``cosine_cov``) are accepted as aliases.

Why by hand: rsatoolbox, the reference, is NumPy-only and forms the features x
features noise covariance (657 GiB for one crossnobis RDM in a user report);
here every RDM is one Gram matrix on the device, and the shrinkage noise
precision is applied through the Woodbury identity, never as a P x P matrix
when there are fewer residuals than features.

Example
-------
>>> import torch
>>> from insilico import rsa
>>> x = torch.randn(6, 20, dtype=torch.float64)
>>> r = rsa.rdm(x, "correlation")
>>> tuple(r.matrix.shape), tuple(r.vector.shape)
((6, 6), (15,))
>>> round(rsa.compare(r, r, "spearman"), 6)
1.0
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..errors import InsilicoError

RDM_METHODS = ("correlation", "cosine", "euclidean", "sqeuclidean", "crossnobis")
COMPARE_METHODS = ("spearman", "kendall_a", "rho_a", "pearson", "cosine", "whitened_pearson", "whitened_cosine")
NOISE_METHODS = ("shrinkage_diag", "shrinkage_eye", "diag")
_ALIASES = {
    "corr": "pearson", "correlation": "pearson", "tau-a": "kendall_a", "tau_a": "kendall_a", "kendall": "kendall_a",
    "rho-a": "rho_a", "corr_cov": "whitened_pearson", "cosine_cov": "whitened_cosine",
}


# ---------------------------------------------------------------------------------------
# The RDM object
# ---------------------------------------------------------------------------------------
class RDM:
    """A representational dissimilarity matrix over ``n`` stimuli.

    Parameters
    ----------
    vector : tensor or array (n (n - 1) / 2,)
        Dissimilarities of the pairs (i, j), i < j, row by row: the order of
        scipy's ``squareform`` and ``pdist``.
    labels : sequence, optional
        One label per stimulus (default 0 .. n-1).
    method : str, optional
        How the dissimilarities were computed.
    name : str, optional
        What was measured (a layer, a brain region).

    Attributes
    ----------
    vector : tensor (n (n - 1) / 2,)
    matrix : tensor (n, n)
        Symmetric, zero diagonal.

    Examples
    --------
    >>> r = RDM.from_matrix([[0, 1, 2], [1, 0, 3], [2, 3, 0]], labels=["a", "b", "c"])
    >>> r.vector.tolist(), r.n
    ([1.0, 2.0, 3.0], 3)
    """

    def __init__(self, vector, labels: Sequence | None = None, method: str | None = None, name: str | None = None):
        vector = _as_tensor(vector)
        if vector.ndim != 1:
            raise InsilicoError(f"an RDM vector is 1-D, got shape {tuple(vector.shape)}; use RDM.from_matrix for n x n")
        self.n = _n_from_pairs(vector.numel())
        self.vector = vector
        self.labels = list(labels) if labels is not None else list(range(self.n))
        if len(self.labels) != self.n:
            raise InsilicoError(f"{len(self.labels)} labels for an RDM of {self.n} stimuli")
        self.method, self.name = method, name

    @classmethod
    def from_matrix(cls, matrix, labels=None, method=None, name=None, check: bool = True) -> RDM:
        """An RDM from a square matrix (its upper triangle is kept).

        Parameters
        ----------
        matrix : tensor or array (n, n)
        check : bool
            Raise unless the matrix is symmetric with a zero diagonal (to 1e-6).
        """
        m = _as_tensor(matrix)
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise InsilicoError(f"an RDM matrix is square, got shape {tuple(m.shape)}")
        if check and m.numel() and (not torch.allclose(m, m.T, atol=1e-6) or m.diagonal().abs().max() > 1e-6):
            raise InsilicoError("the matrix is not symmetric with a zero diagonal; pass check=False to use its upper triangle")
        i, j = torch.triu_indices(m.shape[0], m.shape[0], 1, device=m.device)
        return cls(m[i, j], labels, method, name)

    @property
    def matrix(self) -> torch.Tensor:
        return _square(self.vector, self.n)

    @property
    def device(self) -> torch.device:
        return self.vector.device

    def to(self, device) -> RDM:
        """A copy on ``device``."""
        return RDM(self.vector.to(device), self.labels, self.method, self.name)

    def numpy(self) -> np.ndarray:
        """The condensed vector as a NumPy array (``scipy.spatial.distance.squareform`` makes it square)."""
        return self.vector.detach().cpu().numpy()

    def subset(self, index) -> RDM:
        """The RDM of some stimuli (``index``: ints or a boolean mask, in the order given)."""
        idx = torch.as_tensor(np.asarray(index), device=self.device)
        if idx.dtype == torch.bool:
            idx = idx.nonzero().flatten()
        m = self.matrix[idx][:, idx]
        return RDM.from_matrix(m, [self.labels[int(k)] for k in idx.tolist()], self.method, self.name, check=False)

    def plot(self, ax=None, rank: bool = False, cmap: str = "viridis", colorbar: bool = True, title: str | None = None,
             ticks: bool | None = None):
        """Heat map of the matrix with a colour bar; returns the Figure.

        Parameters
        ----------
        ax : matplotlib Axes, optional
        rank : bool
            Show percentiles of the dissimilarities (as in Kriegeskorte et al. 2008).
        ticks : bool, optional
            Label rows and columns with the stimulus labels (default: when n <= 30).
        """
        fig, ax = _axes(ax, (4.2, 3.6))
        values = self.vector.detach().cpu().double()
        if rank:
            values = _rank(values[None])[0] / max(len(values), 1) * 100
        image = ax.imshow(_square(values, self.n).numpy(), cmap=cmap, interpolation="nearest")
        if colorbar:
            fig.colorbar(image, ax=ax, label="percentile of dissimilarity" if rank else (self.method or "dissimilarity"))
        if ticks if ticks is not None else self.n <= 30:
            ax.set_xticks(range(self.n), [str(s) for s in self.labels], rotation=90, fontsize=7)
            ax.set_yticks(range(self.n), [str(s) for s in self.labels], fontsize=7)
        else:
            ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(title if title is not None else (self.name or ""))
        return fig

    def mds(self, ax=None, groups: Sequence | None = None, annotate: bool = False, title: str | None = None):
        """Classical (Torgerson) multidimensional scaling to 2-D; returns the Figure.

        Deterministic (an eigendecomposition, no random start). ``groups`` colours
        the points (default: the labels, when they repeat).
        """
        fig, ax = _axes(ax, (4, 4))
        xy = mds_coordinates(self).numpy()
        groups = list(groups) if groups is not None else (self.labels if len(set(map(str, self.labels))) < self.n else None)
        if groups is None:
            ax.scatter(xy[:, 0], xy[:, 1], s=14)
        else:
            for g in dict.fromkeys(map(str, groups)):
                sel = np.array([str(v) == g for v in groups])
                ax.scatter(xy[sel, 0], xy[sel, 1], s=14, label=g)
            ax.legend(fontsize=7, frameon=False)
        if annotate:
            for k, lab in enumerate(self.labels):
                ax.annotate(str(lab), xy[k], fontsize=6)
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_title(title if title is not None else f"MDS {self.name or ''}".strip())
        return fig

    def __repr__(self) -> str:
        name = f" {self.name!r}" if self.name else ""
        return f"RDM({self.n} stimuli{name}, method={self.method!r}, device={self.device.type})"


def mds_coordinates(rdm: RDM, dims: int = 2) -> torch.Tensor:
    """Classical MDS coordinates (n, dims) of an RDM's stimuli (Torgerson scaling)."""
    d2 = rdm.matrix.detach().cpu().double() ** 2
    n = d2.shape[0]
    h = torch.eye(n, dtype=d2.dtype) - 1.0 / n
    b = -0.5 * h @ d2 @ h
    w, v = torch.linalg.eigh(b)
    w, v = w.flip(0)[:dims], v.flip(1)[:, :dims]
    return v * w.clamp(min=0).sqrt()


# ---------------------------------------------------------------------------------------
# Computing RDMs
# ---------------------------------------------------------------------------------------
def rdm(responses, method: str = "correlation", *, units: Sequence | None = None, labels: Sequence | None = None,
        runs: Sequence | None = None, conditions: Sequence | None = None, noise="shrinkage_diag",
        per_feature: bool | None = None, device=None, dtype: torch.dtype = torch.float64, name: str | None = None):
    """RDMs of response patterns: one per layer, computed on the device.

    Parameters
    ----------
    responses : Recording, dict of tensors, list of tensors, or tensor / array
        Responses (n_stimuli, ...); features are the trailing axes, flattened.
        For ``crossnobis``: (n_runs, n_stimuli, ...) with every stimulus in
        every run, or (n_observations, ...) with ``runs=`` and ``conditions=``.
        A Recording or dict gives a dict ``{unit: RDM}``, a list a list.
    method : {"correlation", "cosine", "euclidean", "sqeuclidean", "crossnobis"}
    units : list of str, optional
        Which units of a Recording (default: all).
    labels : sequence, optional
        Stimulus labels (default: the Recording's ids, or 0 .. n-1; with
        ``conditions=``, the sorted unique conditions).
    runs, conditions : sequence, optional
        Run (fold) and stimulus label of each observation, for crossnobis on
        (n_observations, ...) data; observations of one stimulus in one run are averaged.
    noise : {"shrinkage_diag", "shrinkage_eye", "diag"}, None, or array (P, P)
        Crossnobis noise: estimated from the residuals around each stimulus's
        mean over runs (degrees of freedom (n_runs - 1) x n_stimuli), with
        Schäfer-Strimmer shrinkage towards the diagonal (default) or Ledoit-Wolf
        shrinkage towards a multiple of the identity (rsatoolbox's
        ``cov_from_residuals`` estimators);
        None for the identity (cross-validated Euclidean); or a precision matrix.
    per_feature : bool, optional
        Divide squared distances by the number of features (default: True for
        crossnobis, as rsatoolbox; False for sqeuclidean).
    device : optional
        Where to compute (default: the device of the input tensors; CPU for arrays).
    dtype : torch.dtype
        Precision of the computation and of the result (float64 default;
        float32 is about twice as fast).

    Returns
    -------
    RDM, or dict / list of RDM

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.spatial.distance import pdist
    >>> x = np.random.default_rng(0).normal(size=(5, 8))
    >>> bool(np.allclose(rdm(x, "euclidean").vector, pdist(x)))
    True
    >>> runs = np.random.default_rng(1).normal(size=(3, 5, 8))    # 3 runs of 5 stimuli
    >>> rdm(runs, "crossnobis").n
    5
    """
    method = _check_choice(method, RDM_METHODS, "method")
    kwargs = dict(method=method, runs=runs, conditions=conditions, noise=noise, per_feature=per_feature,
                  device=device, dtype=dtype)
    from ..recording import Recording

    if isinstance(responses, Recording):
        names = list(units) if units is not None else responses.units
        ids = labels if labels is not None else responses.ids
        return {str(u): _rdm_one(responses[u], labels=ids, name=str(u), **kwargs) for u in names}
    if isinstance(responses, Mapping):
        names = list(units) if units is not None else list(responses)
        return {k: _rdm_one(responses[k], labels=labels, name=str(k), **kwargs) for k in names}
    if isinstance(responses, (list, tuple)) and responses and not np.isscalar(responses[0]):
        return [_rdm_one(r, labels=labels, name=name, **kwargs) for r in responses]
    return _rdm_one(responses, labels=labels, name=name, **kwargs)


def _rdm_one(x, method, labels, name, runs, conditions, noise, per_feature, device, dtype) -> RDM:
    x = _as_tensor(x, device=device, dtype=dtype)
    if not torch.isfinite(x).all():
        raise InsilicoError(f"the responses{f' of {name}' if name else ''} contain NaN or inf; remove or impute them first")
    if method == "crossnobis":
        if runs is not None or conditions is not None:
            x, cond_labels = _by_run(x, runs, conditions)
            labels = labels if labels is not None else cond_labels
        if x.ndim < 3:
            raise InsilicoError(
                "crossnobis needs repeated measurements: pass (n_runs, n_stimuli, ...) responses, "
                "or (n_observations, ...) with runs= and conditions=")
        if x.shape[0] < 2:
            raise InsilicoError("crossnobis needs at least 2 runs to cross-validate over")
        x = x.reshape(x.shape[0], x.shape[1], -1)
        vec = _crossnobis(x, noise, True if per_feature is None else per_feature)
    else:
        if x.ndim < 2:
            raise InsilicoError(f"responses must be (n_stimuli, ...), got shape {tuple(x.shape)}")
        x = x.reshape(x.shape[0], -1)
        vec = _distances(x, method, bool(per_feature))
    if x.shape[-2] < 2:
        raise InsilicoError("an RDM needs at least 2 stimuli")
    return RDM(vec, labels, method, name)


def _distances(x: torch.Tensor, method: str, per_feature: bool) -> torch.Tensor:
    n, p = x.shape
    i, j = torch.triu_indices(n, n, 1, device=x.device)
    if method in ("correlation", "cosine"):
        if method == "correlation":
            x = x - x.mean(1, keepdim=True)
        norm = x.norm(dim=1, keepdim=True)
        if (norm == 0).any():
            bad = (norm.flatten() == 0).nonzero().flatten()[:5].tolist()
            raise InsilicoError(
                f"stimuli {bad} have {'constant' if method == 'correlation' else 'all-zero'} responses, so their "
                f"{method} distance is undefined; drop them or use method='euclidean'")
        x = x / norm
        return (1 - x @ x.T)[i, j].clamp(min=0)
    x = x - x.mean(0, keepdim=True)  # distances do not change; the Gram trick loses less precision
    sq = x.pow(2).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2 * x @ x.T)[i, j].clamp(min=0)
    if per_feature:
        d2 = d2 / p
    return d2 if method == "sqeuclidean" else d2.sqrt()


def _by_run(x, runs, conditions):
    """(n_obs, ...) with run and condition labels -> (n_runs, n_conditions, ...) cell means."""
    if runs is None or conditions is None:
        raise InsilicoError("pass both runs= and conditions= (one label per observation) for crossnobis")
    runs, conditions = np.asarray(runs), np.asarray(conditions)
    if len(runs) != x.shape[0] or len(conditions) != x.shape[0]:
        raise InsilicoError(f"runs and conditions need one label per observation ({x.shape[0]})")
    run_values, run_idx = np.unique(runs, return_inverse=True)
    cond_values, cond_idx = np.unique(conditions, return_inverse=True)
    flat = x.reshape(x.shape[0], -1)
    cell = torch.as_tensor(run_idx * len(cond_values) + cond_idx, device=x.device)
    counts = torch.bincount(cell, minlength=len(run_values) * len(cond_values))
    if (counts == 0).any():
        missing = int((counts == 0).nonzero()[0])
        raise InsilicoError(
            f"condition {cond_values[missing % len(cond_values)]!r} is missing from run "
            f"{run_values[missing // len(cond_values)]!r}; crossnobis needs every condition in every run")
    sums = torch.zeros(len(counts), flat.shape[1], dtype=x.dtype, device=x.device).index_add_(0, cell, flat)
    means = sums / counts[:, None].to(x.dtype)
    return means.reshape(len(run_values), len(cond_values), *x.shape[1:]), list(cond_values.tolist())


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


_ACTIVATIONS = {"ReLU", "ReLU6", "GELU", "SiLU", "ELU", "SELU", "CELU", "LeakyReLU", "PReLU", "Tanh", "Sigmoid",
                "Softplus", "Mish", "Hardswish", "Hardtanh", "GLU"}


def layer_units(model: torch.nn.Module, example: torch.Tensor) -> list[str]:
    """The layers of a model worth an RDM: every activation module, and the last layer (the output).

    Modules called several times per forward pass (recurrent networks) are
    addressed at their last call (``"@-1"``); modules never called are left
    out. Without activation modules (functional ReLUs), every convolution and
    linear layer is used instead.

    Parameters
    ----------
    model : nn.Module
    example : tensor
        One input batch for a trial forward pass (e.g. ``stimuli[:1]``).

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Dropout(), torch.nn.Linear(8, 2))
    >>> layer_units(net, torch.rand(1, 4))
    ['1', '3']
    """
    from torch import nn

    from ..probe import Probe

    skip = (nn.Dropout, nn.Identity, nn.Flatten)
    leaves = [(n, m) for n, m in model.named_modules() if n and not list(m.children())]
    names = [n for n, m in leaves if type(m).__name__ in _ACTIVATIONS]
    last = [n for n, m in leaves if not isinstance(m, skip)][-1:]
    names += [n for n in last if n not in names]
    if len(names) <= 1:
        names = [n for n, m in leaves if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))] or names
    if not names:
        raise InsilicoError("found no layers to record in this model; pass units= explicitly")
    survey = Probe(model).survey(example, modules=names)  # in a session: every module's own mode kept
    return [n if survey.count(n) == 1 else f"{n}@-1" for n in names if survey.count(n) > 0]


def model_rdms(model: torch.nn.Module, stimuli, units: Sequence[str] | None = None, method: str = "correlation",
               labels: Sequence | None = None, batch_size: int = 64, progress: bool = True, **options) -> dict:
    """Record a model's layers over a stimulus set and compute one RDM per layer.

    Parameters
    ----------
    model : nn.Module
        Taking pixel-space stimuli; recorded in eval mode, on its own device.
    stimuli : tensor (N, C, H, W) or anything :meth:`Probe.record_stimuli` takes
    units : list of str, optional
        Default: :func:`layer_units` (every activation, and the output).
    method : str
        See :func:`rdm`; computed on the model's device.
    **options
        More :func:`rdm` arguments (``dtype``...).

    Returns
    -------
    dict unit -> RDM, in layer order

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 2))
    >>> rdms = model_rdms(net, torch.rand(5, 3, 8, 8), progress=False)
    >>> list(rdms), rdms["1"].n
    (['1', '3'], 5)
    """
    from ..probe import Probe

    probe = Probe(model)
    example = stimuli[:1] if torch.is_tensor(stimuli) else None
    if units is None:
        if example is None:
            raise InsilicoError("pass units= when the stimuli are not a tensor")
        units = layer_units(model, example.to(probe.device, probe.dtype))
    rec = probe.record_stimuli(stimuli, list(units), batch_size=batch_size, progress=progress)
    options.setdefault("device", probe.device)
    return rdm(rec, method, labels=labels, **options)


# ---------------------------------------------------------------------------------------
# Comparing RDMs
# ---------------------------------------------------------------------------------------
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


def _rank(v: torch.Tensor) -> torch.Tensor:
    """Average ranks (1-based, ties share their mean rank) along the last axis, like scipy's rankdata."""
    k, d = v.shape
    sorted_v, order = v.sort(dim=1)
    pos = torch.arange(d, device=v.device, dtype=torch.float64).expand(k, d)
    starts = torch.ones(k, d, dtype=torch.bool, device=v.device)
    starts[:, 1:] = sorted_v[:, 1:] != sorted_v[:, :-1]
    ends = torch.ones_like(starts)
    ends[:, :-1] = starts[:, 1:]
    first = torch.where(starts, pos, torch.zeros_like(pos)).cummax(1).values          # start of each tie run
    last = torch.where(ends, pos, torch.full_like(pos, d)).flip(1).cummin(1).values.flip(1)  # its end
    return torch.empty_like(pos).scatter_(1, order, (first + last) / 2 + 1)


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


# ---------------------------------------------------------------------------------------
# Inference: noise ceilings and bootstrap
# ---------------------------------------------------------------------------------------
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
class NoiseCeiling:
    """Bounds on the best achievable similarity with the group of subjects.

    ``lower``: mean similarity of each subject with the pooled RDM of the
    others (leave one subject out); ``upper``: with the pooled RDM of all
    subjects, itself included. A true model is expected between them.
    """

    lower: float
    upper: float
    method: str

    def __iter__(self):
        return iter((self.lower, self.upper))


def noise_ceiling(subjects, method: str = "spearman") -> NoiseCeiling:
    """Leave-one-subject-out noise ceiling of a set of subject RDMs.

    Parameters
    ----------
    subjects : list of RDM, or tensor (n_subjects, n_pairs)
        At least 2.
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
    v = _vectors(subjects)
    k = v.shape[0]
    if k < 2:
        raise InsilicoError("a noise ceiling needs at least 2 subjects' RDMs")
    pooled = _pool(v, method)
    upper = _similarity(pooled[None], v, method)[0].mean()
    lower = torch.stack([_similarity(_pool(v[torch.arange(k) != s], method)[None], v[s:s + 1], method)[0, 0]
                         for s in range(k)]).mean()
    return NoiseCeiling(float(lower), float(upper), method)


@dataclasses.dataclass
class BootstrapResult:
    """Model-to-data similarities with bootstrap confidence intervals.

    Attributes
    ----------
    names : list of str
    estimate : ndarray (n_models,)
        Mean similarity over the data RDMs (subjects), on all stimuli.
    samples : ndarray (n_boot, n_models)
    ci : ndarray (n_models, 2)
        Percentile interval at level ``level``.
    std : ndarray (n_models,)
        Bootstrap standard error.
    ceiling : NoiseCeiling or None
        On all stimuli and subjects, when there are several subjects.
    """

    names: list
    estimate: np.ndarray
    samples: np.ndarray
    ci: np.ndarray
    std: np.ndarray
    method: str
    over: str
    level: float
    ceiling: NoiseCeiling | None = None

    def table(self) -> list[dict]:
        """One dict per model: name, estimate, ci_low, ci_high, std (for CSV or pandas)."""
        return [dict(name=n, estimate=float(e), ci_low=float(c[0]), ci_high=float(c[1]), std=float(s))
                for n, e, c, s in zip(self.names, self.estimate, self.ci, self.std)]

    def plot(self, ax=None, **kwargs):
        """Bar plot with the intervals and the noise ceiling (see :func:`plot_comparison`)."""
        return plot_comparison(self, ax=ax, **kwargs)


def bootstrap(models, data, method: str = "spearman", over: str = "stimuli", n_boot: int = 1000,
              level: float = 0.95, seed: int = 0, progress: bool = True) -> BootstrapResult:
    """Compare model RDMs with data RDMs, with bootstrap confidence intervals.

    Parameters
    ----------
    models : dict name -> RDM, or list of RDM
    data : RDM or list of RDM (one per subject)
        The similarity of a model is its mean over subjects.
    method : str
        See :func:`compare`.
    over : {"stimuli", "subjects", "both"}
        What is resampled with replacement. Resampled stimuli drop the pairs of a
        stimulus with its own copy (rsatoolbox does the same).
    n_boot : int
    level : float
        Confidence level of the percentile intervals.
    seed : int
    progress : bool

    Returns
    -------
    BootstrapResult

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> truth = torch.rand(20, 3, generator=g, dtype=torch.float64)
    >>> res = bootstrap({"true": rdm(truth), "random": rdm(torch.rand(20, 3, generator=g))},
    ...                 [rdm(truth + 0.1 * torch.randn(20, 3, generator=g)) for _ in range(3)],
    ...                 n_boot=50, progress=False)
    >>> bool(res.estimate[0] > res.estimate[1]), res.ci.shape
    (True, (2, 2))
    """
    from tqdm.auto import tqdm

    method = _compare_method(method)
    over = _check_choice(over, ("stimuli", "subjects", "both"), "over")
    names = [str(k) for k in models] if isinstance(models, Mapping) else [
        (r.name if isinstance(r, RDM) and r.name else f"model {i}") for i, r in enumerate(models)]
    mv = _vectors(models)
    dv = _vectors(data if not isinstance(data, RDM) else [data]).to(mv.device)
    if mv.shape[1] != dv.shape[1]:
        raise InsilicoError(f"model RDMs have {mv.shape[1]} pairs and data RDMs {dv.shape[1]}: use the same stimuli")
    n, k = _n_from_pairs(mv.shape[1]), dv.shape[0]
    if over in ("subjects", "both") and k < 2:
        raise InsilicoError("bootstrapping subjects needs several data RDMs (one per subject)")
    mm, dm = _square(mv, n), _square(dv, n)
    rng = np.random.default_rng(seed)
    estimate = _similarity(mv, dv, method).mean(1).cpu().numpy()
    ia, ib = (torch.as_tensor(i, device=mv.device) for i in np.triu_indices(n, 1))
    chunk = max(1, int(2e7 // ((mv.shape[0] + k) * mv.shape[1])))
    samples = np.empty((n_boot, mv.shape[0]))
    bar = tqdm(total=n_boot, desc="bootstrap", disable=not progress)
    for b0 in range(0, n_boot, chunk):  # a chunk of bootstrap samples at once: (B, models, pairs)
        size = min(chunk, n_boot - b0)
        stim = np.stack([rng.integers(0, n, n) if over in ("stimuli", "both") else np.arange(n) for _ in range(size)])
        subj = np.stack([rng.integers(0, k, k) if over in ("subjects", "both") else np.arange(k) for _ in range(size)])
        stim = torch.as_tensor(stim, device=mv.device)
        sa, sb = stim[:, ia], stim[:, ib]                      # (B, pairs)
        keep = sa != sb                                        # a stimulus paired with its own copy is dropped
        s_models = mm[:, sa, sb].transpose(0, 1)               # (B, models, pairs)
        s_data = dm[torch.as_tensor(subj, device=mv.device)[:, :, None], sa[:, None, :], sb[:, None, :]]
        samples[b0:b0 + size] = _similarity_masked(s_models, s_data, keep, method).mean(2).cpu().numpy()
        bar.update(size)
    bar.close()
    alpha = (1 - level) / 2
    ci = np.stack([np.nanquantile(samples, alpha, axis=0), np.nanquantile(samples, 1 - alpha, axis=0)], 1)
    ceiling = noise_ceiling(dv, method) if k > 1 else None
    return BootstrapResult(names, estimate, samples, ci, np.nanstd(samples, 0, ddof=1), method, over, level, ceiling)


def _similarity_masked(va: torch.Tensor, vb: torch.Tensor, keep: torch.Tensor, method: str) -> torch.Tensor:
    """Batched similarities over the kept pairs only: (B, k, d) x (B, m, d), mask (B, d) -> (B, k, m)."""
    if method in ("whitened_pearson", "whitened_cosine"):
        raise InsilicoError(f"{method} needs complete RDMs; bootstrap subjects only (over='subjects') with it")
    if method == "kendall_a":
        out = torch.empty(va.shape[0], va.shape[1], vb.shape[1], dtype=torch.float64)
        for b in range(va.shape[0]):
            sel = keep[b]
            out[b] = _similarity(va[b][:, sel], vb[b][:, sel], method)
        return out.to(va.device)
    w = keep[:, None, :].to(va.dtype)
    count = w.sum(2, keepdim=True)
    if method in ("spearman", "rho_a"):  # dropped pairs rank last (inf), so kept pairs get ranks 1..count
        big = torch.tensor(float("inf"), dtype=va.dtype, device=va.device)
        ra = _rank(torch.where(w > 0, va, big).reshape(-1, va.shape[2])).reshape(va.shape)
        rb = _rank(torch.where(w > 0, vb, big).reshape(-1, vb.shape[2])).reshape(vb.shape)
        va, vb = ra, rb
    if method in ("spearman", "pearson", "rho_a"):
        va = va - (va * w).sum(2, keepdim=True) / count
        vb = vb - (vb * w).sum(2, keepdim=True) / count
    va, vb = va * w, vb * w
    dot = va @ vb.transpose(1, 2)
    if method == "rho_a":
        c = count[:, :, 0][:, :, None]
        return dot * 12 / (c ** 3 - c)
    na, nb = va.norm(dim=2), vb.norm(dim=2)
    out = dot / (na[:, :, None] * nb[:, None, :])
    return torch.where((na[:, :, None] > 0) & (nb[:, None, :] > 0), out, torch.zeros_like(out))


# ---------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------
def plot_comparison(results, ax=None, ceiling: NoiseCeiling | tuple | None = None, title: str | None = None,
                    ylabel: str | None = None, color: str = "tab:blue"):
    """Bar plot of model-to-brain similarities with error bars and the noise ceiling drawn.

    Parameters
    ----------
    results : BootstrapResult, or dict name -> float (or (value, ci_low, ci_high))
        One bar per model (layer).
    ax : matplotlib Axes, optional
    ceiling : NoiseCeiling or (lower, upper), optional
        Drawn as a grey band (default: the result's own ceiling).

    Returns
    -------
    matplotlib Figure
    """
    fig, ax = _axes(ax, (max(3.0, 0.45 * _count(results) + 1.5), 3.2))
    if isinstance(results, BootstrapResult):
        names, values = results.names, results.estimate
        err = np.abs(results.ci.T - values[None])
        ceiling = ceiling if ceiling is not None else results.ceiling
        ylabel = ylabel or f"RDM similarity ({results.method})"
    else:
        names = list(results)
        vals = [np.atleast_1d(np.asarray(v, dtype=float)) for v in results.values()]
        values = np.array([v[0] for v in vals])
        err = np.array([[v[0] - v[1], v[2] - v[0]] if len(v) == 3 else [0, 0] for v in vals]).T
    x = np.arange(len(names))
    if ceiling is not None:
        lo, hi = tuple(ceiling)
        ax.axhspan(lo, hi, color="0.8", zorder=0, label="noise ceiling")
    ax.bar(x, values, color=color, zorder=2)
    if np.any(err):
        ax.errorbar(x, values, yerr=err, fmt="none", ecolor="k", capsize=2, zorder=3)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(ylabel or "RDM similarity")
    if ceiling is not None:
        ax.legend(fontsize=7, frameon=False, loc="upper left")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def _count(results) -> int:
    return len(results.names) if isinstance(results, BootstrapResult) else len(results)


def _axes(ax, size):
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=size)
    plt.close(fig)  # returned, not shown: notebooks display the returned Figure
    return fig, ax


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------
def _as_tensor(x, device=None, dtype=None) -> torch.Tensor:
    if isinstance(x, RDM):
        x = x.vector
    if not torch.is_tensor(x):
        x = torch.as_tensor(np.asarray(x, dtype=float) if not isinstance(x, np.ndarray) or x.dtype == object else x)
    x = x.detach()
    if dtype is not None and x.dtype != dtype:
        x = x.to(dtype)
    elif dtype is None and not x.is_floating_point():
        x = x.double()
    return x.to(device) if device is not None else x


def _n_from_pairs(m: int) -> int:
    n = int(round((1 + math.sqrt(1 + 8 * m)) / 2))
    if n * (n - 1) // 2 != m:
        raise InsilicoError(f"{m} is not n (n - 1) / 2 for any n: not a condensed RDM vector")
    return n


def _square(v: torch.Tensor, n: int) -> torch.Tensor:
    """Condensed (..., n(n-1)/2) -> square (..., n, n)."""
    i, j = torch.triu_indices(n, n, 1, device=v.device)
    m = torch.zeros(*v.shape[:-1], n, n, dtype=v.dtype, device=v.device)
    m[..., i, j] = v
    m[..., j, i] = v
    return m


def _compare_method(method: str) -> str:
    return _check_choice(_ALIASES.get(method, method), COMPARE_METHODS, "comparison method")


def _check_choice(value, choices, what) -> str:
    if value not in choices:
        raise InsilicoError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")
    return value


__all__ = ["RDM", "rdm", "compare", "compare_all", "noise_ceiling", "NoiseCeiling", "bootstrap", "BootstrapResult",
           "plot_comparison", "mds_coordinates", "noise_covariance", "layer_units", "model_rdms", "RDM_METHODS",
           "COMPARE_METHODS"]
