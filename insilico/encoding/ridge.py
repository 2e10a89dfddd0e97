"""Encoding models: cross-validated ridge regression from model features to neural responses.

:class:`RidgeCV` fits every target (neuron, voxel, electrode) at once with its
own ridge penalty, chosen by inner cross-validation. Per fold it makes ONE
eigendecomposition (of ``X'X`` in the primal form, or of the kernel ``XX'`` in
the dual form, chosen automatically when features outnumber stimuli) and
reuses it for every alpha: held-out predictions are ``A diag(1/(λ+α)) B`` with
``A`` and ``B`` computed once. Targets go through in batches
(``n_targets_batch``), so memory stays bounded for 100,000 voxels. Everything
runs on the device of the input tensors, in their precision.

sklearn's ``RidgeCV`` picks one alpha for all targets unless asked, refits per
alpha with ``cv=``, and runs on the CPU; himalaya (the model for this module's
design) needs its own backend switch. Here inputs are tensors, arrays or
:class:`~insilico.Recording` units, and outputs follow the input type.

Noise ceilings (:func:`split_half_ceiling`) come from repeated measurements:
the split-half correlation per target, Spearman-Brown corrected to the
reliability ``ρ`` of the mean over all repetitions. A perfect model's expected
Pearson r with that mean is ``sqrt(ρ)`` (its R² is ``ρ``), which is the ceiling
used to normalise scores (Brain-Score divides by ``ρ`` itself; pass
``kind="reliability"`` to :meth:`EncodingResult.normalized` for that).

Example
-------
>>> import torch
>>> from insilico.encoding import RidgeCV
>>> g = torch.Generator().manual_seed(0)
>>> X = torch.randn(200, 30, generator=g, dtype=torch.float64)
>>> Y = X @ torch.randn(30, 4, generator=g, dtype=torch.float64) + torch.randn(200, 4, generator=g, dtype=torch.float64)
>>> model = RidgeCV(alphas=[0.1, 1.0, 10.0, 100.0], cv=5).fit(X[:150], Y[:150])
>>> tuple(model.alpha_.shape), bool((model.score(X[150:], Y[150:]) > 0.9).all())
((4,), True)
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Sequence

import numpy as np
import torch

from ..errors import InsilicoError
from ..results import Result
from ..statistics import spearman_brown

SOLVERS = ("auto", "primal", "dual")


# ---------------------------------------------------------------------------------------
# Folds
# ---------------------------------------------------------------------------------------
def kfold(n: int, k: int = 5, shuffle: bool = False, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` (train, test) index pairs covering ``n`` samples once each (like sklearn's KFold).

    Examples
    --------
    >>> [len(test) for _, test in kfold(10, 3)]
    [4, 3, 3]
    """
    if not 2 <= k <= n:
        raise InsilicoError(f"k-fold cross-validation needs 2 <= k <= n_samples, got k={k} for {n} samples")
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    sizes = np.full(k, n // k)
    sizes[: n % k] += 1
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    folds = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        test = np.sort(order[a:b])
        folds.append((np.setdiff1d(np.arange(n), test), test))
    return folds


def _folds(cv, n: int, groups=None) -> list[tuple[np.ndarray, np.ndarray]]:
    if isinstance(cv, (int, np.integer)):
        return kfold(n, int(cv))
    if hasattr(cv, "split"):
        args = (np.zeros((n, 1)),) if groups is None else (np.zeros((n, 1)), None, groups)
        folds = [(np.asarray(a), np.asarray(b)) for a, b in cv.split(*args)]
    else:
        try:
            folds = [(np.asarray(a), np.asarray(b)) for a, b in cv]
        except TypeError:
            raise InsilicoError(
                f"cv={cv!r} is not a number of folds, a splitter with .split, or a list of (train, test) indices"
            ) from None
    if not folds:
        raise InsilicoError("cv gave no folds")
    for a, b in folds:
        if len(a) == 0 or len(b) == 0:
            raise InsilicoError("every fold needs training and test samples")
    return folds


# ---------------------------------------------------------------------------------------
# The solver
# ---------------------------------------------------------------------------------------
class _Basis:
    """One fold's decomposition: predictions for penalty α are A diag(1/(λ+α)) project(Yc) + ȳ."""

    def __init__(self, lam, a, project):
        self.lam, self.a, self.project = lam, a, project


def _basis(x, gram, train, test, fit_intercept: bool, dual: bool) -> _Basis:
    xt = x[train]
    mean = xt.mean(0) if fit_intercept else torch.zeros_like(xt[0])
    if dual:
        g_tt = gram[train][:, train]
        g_st = gram[test][:, train] if test is not None else None
        if fit_intercept:
            r_t = g_tt.mean(1)
            mu = r_t.mean()
            g_tt = g_tt - r_t[:, None] - r_t[None, :] + mu
            if g_st is not None:
                g_st = g_st - g_st.mean(1, keepdim=True) - r_t[None, :] + mu
        lam, q = torch.linalg.eigh(g_tt)
        a = g_st @ q if g_st is not None else None
        return _Basis(lam.clamp(min=0), a, lambda yc: q.T @ yc), q, mean
    xc = xt - mean
    lam, v = torch.linalg.eigh(xc.T @ xc)
    a = (x[test] - mean) @ v if test is not None else None
    return _Basis(lam.clamp(min=0), a, lambda yc: v.T @ (xc.T @ yc)), v, mean


def solve_ridge_cv(X, Y, alphas, folds, fit_intercept: bool = True, solver: str = "auto",
                   n_targets_batch: int | None = None, progress: bool = False) -> dict:
    """Ridge regression with a penalty per target chosen by cross-validation (pure function).

    Parameters
    ----------
    X : tensor (n_samples, n_features)
    Y : tensor (n_samples, n_targets)
    alphas : tensor (n_alphas,), positive
    folds : list of (train, test) index arrays, or None for efficient leave-one-out
    fit_intercept : bool
    solver : {"auto", "primal", "dual"}
        "auto": dual (kernel) form when n_features > n_samples.
    n_targets_batch : int, optional
        Targets solved together (default: as many as fit in about 400 MB).

    Returns
    -------
    dict
        ``coef`` (n_features, n_targets), ``intercept`` (n_targets,), ``alpha``
        (n_targets,), ``cv_mse`` (n_alphas, n_targets) mean squared error of the
        held-out predictions, ``dual`` (bool).
    """
    from tqdm.auto import tqdm

    n, p = X.shape
    t = Y.shape[1]
    solver = _check_choice(solver, SOLVERS, "solver")
    dual = solver == "dual" or (solver == "auto" and p > n)
    alphas = alphas.to(X.device, X.dtype)
    if n_targets_batch is None:
        n_targets_batch = max(1, int(5e7 // (n + min(n, p) + 1)))
    gram = X @ X.T if dual or folds is None else None
    sse = torch.zeros(len(alphas), t, dtype=X.dtype, device=X.device)
    count = 0
    steps = (len(folds) if folds is not None else 1) * math.ceil(t / n_targets_batch)
    bar = tqdm(total=steps, desc="ridge cv", disable=not progress)
    if folds is None:  # leave-one-out from one decomposition of the centred kernel (exact, intercept included)
        basis, q, _ = _basis(X, gram, torch.arange(n, device=X.device), None, fit_intercept, dual=True)
        lam = basis.lam
        for b0 in range(0, t, n_targets_batch):
            y = Y[:, b0:b0 + n_targets_batch]
            yc = y - y.mean(0) if fit_intercept else y
            qy = q.T @ yc
            for k, alpha in enumerate(alphas):
                shrink = lam / (lam + alpha)
                resid = yc - q @ (shrink[:, None] * qy)
                h = (q.pow(2) * shrink).sum(1) + (1.0 / n if fit_intercept else 0.0)
                sse[k, b0:b0 + y.shape[1]] = (resid / (1 - h)[:, None]).pow(2).sum(0)
            bar.update()
        count = n
    else:
        for train, test in folds:
            train_t = torch.as_tensor(train, device=X.device)
            test_t = torch.as_tensor(test, device=X.device)
            basis, _, _ = _basis(X, gram, train_t, test_t, fit_intercept, dual)
            for b0 in range(0, t, n_targets_batch):
                y_tr = Y[train_t, b0:b0 + n_targets_batch]
                y_te = Y[test_t, b0:b0 + n_targets_batch]
                mean = y_tr.mean(0) if fit_intercept else torch.zeros_like(y_tr[0])
                proj = basis.project(y_tr - mean)
                target = y_te - mean
                for k, alpha in enumerate(alphas):
                    pred = (basis.a * (1.0 / (basis.lam + alpha))) @ proj
                    sse[k, b0:b0 + y_tr.shape[1]] += (target - pred).pow(2).sum(0)
                bar.update()
            count += len(test)
    bar.close()
    cv_mse = sse / count
    best = cv_mse.argmin(0)
    coef, intercept = _refit(X, Y, gram, alphas[best], fit_intercept, dual, n_targets_batch)
    return dict(coef=coef, intercept=intercept, alpha=alphas[best], cv_mse=cv_mse, dual=dual)


def solve_ridge(X, Y, alpha, fit_intercept: bool = True, solver: str = "auto", n_targets_batch: int | None = None):
    """Ridge coefficients for fixed penalties: one alpha, or one per target.

    Returns
    -------
    coef : tensor (n_features, n_targets)
    intercept : tensor (n_targets,)
    """
    n, p = X.shape
    dual = solver == "dual" or (_check_choice(solver, SOLVERS, "solver") == "auto" and p > n)
    alpha = torch.as_tensor(alpha, device=X.device, dtype=X.dtype).expand(Y.shape[1])
    gram = X @ X.T if dual else None
    return _refit(X, Y, gram, alpha, fit_intercept, dual, n_targets_batch or Y.shape[1])


def _refit(X, Y, gram, alpha_per_target, fit_intercept, dual, n_targets_batch):
    n, p = X.shape
    basis, vecs, x_mean = _basis(X, gram, torch.arange(n, device=X.device), None, fit_intercept, dual)
    coef = torch.empty(p, Y.shape[1], dtype=X.dtype, device=X.device)
    xc = X - x_mean if dual else None
    for b0 in range(0, Y.shape[1], n_targets_batch):
        y = Y[:, b0:b0 + n_targets_batch]
        yc = y - y.mean(0) if fit_intercept else y
        g = 1.0 / (basis.lam[:, None] + alpha_per_target[None, b0:b0 + y.shape[1]])
        weights = vecs @ (g * basis.project(yc))
        coef[:, b0:b0 + y.shape[1]] = xc.T @ weights if dual else weights
    y_mean = Y.mean(0) if fit_intercept else torch.zeros(Y.shape[1], dtype=X.dtype, device=X.device)
    return coef, y_mean - x_mean @ coef


# ---------------------------------------------------------------------------------------
# Estimator
# ---------------------------------------------------------------------------------------
class RidgeCV:
    """Ridge regression with a penalty per target chosen by inner cross-validation.

    Parameters
    ----------
    alphas : sequence of float
        Candidate penalties (sklearn's default (0.1, 1, 10); for neural data a
        wider grid such as ``np.logspace(-2, 6, 9)`` is usually better).
    cv : None, int, splitter with ``.split``, or list of (train, test) indices
        None: exact efficient leave-one-out (like sklearn's default); int: that
        many contiguous folds (sklearn's KFold); any sklearn splitter works.
    fit_intercept : bool
        Fit an unpenalised intercept (default True, as sklearn).
    alpha_per_target : bool
        One alpha per target (default True). False: the alpha with the lowest
        error summed over targets, for all.
    solver : {"auto", "primal", "dual"}
        "auto" uses the dual (kernel) form when features outnumber samples.
    n_targets_batch : int, optional
        Targets solved together; lower it to save memory.
    device : optional
        Where to compute (default: where ``X`` is; CPU for arrays).
    progress : bool

    Attributes
    ----------
    alpha_ : array or tensor (n_targets,), or float for a 1-D target
    coef_ : (n_targets, n_features), or (n_features,) for a 1-D target
    intercept_ : (n_targets,) or float
    cv_mse_ : (n_alphas, n_targets)
        Mean squared error of the inner cross-validated predictions, per alpha and target.
    dual_ : bool
        Whether the kernel form was used.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X, w = rng.normal(size=(100, 5)), rng.normal(size=(5, 3))
    >>> model = RidgeCV(alphas=[0.01, 1, 100], cv=4).fit(X, X @ w)
    >>> model.alpha_.tolist(), model.predict(X).shape
    ([0.01, 0.01, 0.01], (100, 3))
    """

    def __init__(self, alphas: Sequence[float] = (0.1, 1.0, 10.0), cv=None, fit_intercept: bool = True,
                 alpha_per_target: bool = True, solver: str = "auto", n_targets_batch: int | None = None,
                 device=None, progress: bool = False):
        self.alphas, self.cv, self.fit_intercept = alphas, cv, fit_intercept
        self.alpha_per_target, self.solver, self.n_targets_batch = alpha_per_target, solver, n_targets_batch
        self.device, self.progress = device, progress

    def fit(self, X, y, groups=None) -> RidgeCV:
        """Fit on features ``X`` (n_samples, ...) and targets ``y`` (n_samples,) or (n_samples, n_targets)."""
        x, self._numpy = _features(X, self.device)
        yt, _ = _features(y, x.device, flatten=False, dtype=x.dtype)
        self._1d = yt.ndim == 1
        yt = yt[:, None] if self._1d else yt.reshape(yt.shape[0], -1)
        if x.shape[0] != yt.shape[0]:
            raise InsilicoError(f"X has {x.shape[0]} samples and y {yt.shape[0]}; they must match")
        alphas = torch.as_tensor(np.asarray(self.alphas, dtype=float).ravel(), dtype=x.dtype)
        if alphas.numel() == 0 or (alphas <= 0).any():
            raise InsilicoError(f"alphas must be positive numbers, got {list(np.ravel(self.alphas))}")
        folds = None if self.cv is None else _folds(self.cv, x.shape[0], groups)
        out = solve_ridge_cv(x, yt, alphas, folds, self.fit_intercept, self.solver, self.n_targets_batch,
                             self.progress)
        alpha = out["alpha"]
        coef, intercept = out["coef"], out["intercept"]
        if not self.alpha_per_target:
            best = alphas.to(x.device)[out["cv_mse"].sum(1).argmin()]
            alpha = best.expand(yt.shape[1]).clone()
            coef, intercept = _refit(x, yt, x @ x.T if out["dual"] else None, alpha, self.fit_intercept,
                                     out["dual"], self.n_targets_batch or yt.shape[1])
        self._coef, self._intercept, self._alpha = coef, intercept, alpha
        self.dual_ = out["dual"]
        self.n_features_in_ = x.shape[1]
        self.cv_mse_ = self._out(out["cv_mse"], keep_2d=True)
        self.alpha_ = self._out(alpha)
        self.coef_ = self._out(coef.T)
        self.intercept_ = self._out(intercept)
        return self

    def predict(self, X):
        """Predicted targets (n_samples, n_targets), or (n_samples,) for a 1-D target."""
        self._check_fitted()
        x, _ = _features(X, self._coef.device, dtype=self._coef.dtype)
        if x.shape[1] != self.n_features_in_:
            raise InsilicoError(f"X has {x.shape[1]} features; the model was fitted on {self.n_features_in_}")
        return self._out(x @ self._coef + self._intercept, keep_2d=True, squeeze=self._1d)

    def score(self, X, y):
        """R² per target on (held-out) data: array (n_targets,), or a float for a 1-D target."""
        pred, _ = _features(self.predict(X), self._coef.device, flatten=False, dtype=self._coef.dtype)
        yt, _ = _features(y, self._coef.device, flatten=False, dtype=self._coef.dtype)
        return self._out(r2_score(yt.reshape(pred.shape), pred))

    def _check_fitted(self):
        if not hasattr(self, "_coef"):
            raise InsilicoError("this RidgeCV is not fitted yet; call .fit(X, y) first")

    def _out(self, value, keep_2d=False, squeeze=None):
        squeeze = self._1d if squeeze is None else squeeze
        if squeeze and not keep_2d and value.ndim >= 1:
            value = value[0]
        elif squeeze and value.ndim == 2 and value.shape[1] == 1:
            value = value[:, 0]
        if value.ndim == 0:
            return float(value)
        return value.detach().cpu().numpy() if self._numpy else value

    def __repr__(self) -> str:
        return f"RidgeCV(alphas={list(np.ravel(self.alphas))}, cv={self.cv!r}, fit_intercept={self.fit_intercept})"


# ---------------------------------------------------------------------------------------
# Scores and ceilings
# ---------------------------------------------------------------------------------------
def r2_score(y, pred):
    """Coefficient of determination per target (column): 1 - SSE / SS around the mean of ``y``.

    NaN, with a ``RuntimeWarning``, for a target whose data are constant over the
    samples (up to rounding): there is no variance to explain.

    Examples
    --------
    >>> float(r2_score(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 2.0, 4.0])))
    0.5
    """
    y, numpy = _features(y, None, flatten=False)
    pred, _ = _features(pred, y.device, flatten=False, dtype=y.dtype)
    ss = (y - y.mean(0)).pow(2).sum(0)
    out = 1 - (y - pred).pow(2).sum(0) / ss
    flat = _constant(ss.sqrt(), y)
    out = torch.where(flat, torch.full_like(out, float("nan")), out)
    _warn_undefined(len(y), flat, torch.zeros_like(flat), "R2", correlation=False)
    return out.cpu().numpy() if numpy else out


#: Fewest samples a correlation is scored on: over 2, r is +1 or -1 whatever the prediction.
MIN_SCORED = 3


def pearson_r(y, pred):
    """Pearson correlation per target (column) between data and predictions.

    Parameters
    ----------
    y, pred : tensor or array (n_samples,) or (n_samples, n_targets)

    Returns
    -------
    tensor or array (n_targets,) (a scalar for 1-D inputs)
        NaN, with a ``RuntimeWarning`` that says why, for a target whose data or
        predictions are constant over the samples (up to rounding): r is undefined
        there. Fewer than :data:`MIN_SCORED` samples warn too (r is +-1 over 2).

    Examples
    --------
    >>> round(float(pearson_r(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 4.0, 7.0]))), 4)
    0.9934
    """
    y, numpy = _features(y, None, flatten=False)
    pred, _ = _features(pred, y.device, flatten=False, dtype=y.dtype)
    a, b = y - y.mean(0), pred - pred.mean(0)
    na, nb = a.norm(dim=0), b.norm(dim=0)
    out = (a * b).sum(0) / (na * nb)
    flat_y, flat_pred = _constant(na, y), _constant(nb, pred)
    out = torch.where(flat_y | flat_pred, torch.full_like(out, float("nan")), out)
    _warn_undefined(len(y), flat_y, flat_pred, "r")
    return out.cpu().numpy() if numpy else out


def _constant(spread: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Columns whose spread around their mean is rounding only: exactly constant columns leave at most
    ~5 eps sqrt(n) max|v| after centring (measured for n = 3 .. 1e5, float32 and float64); 8 gives margin."""
    eps = torch.finfo(values.dtype).eps
    return spread <= 8 * eps * math.sqrt(len(values)) * values.abs().amax(0)


def _warn_undefined(n: int, flat_y: torch.Tensor, flat_pred: torch.Tensor, score: str,
                    correlation: bool = True) -> None:
    if correlation and n < MIN_SCORED:
        warnings.warn(f"a correlation over {n} samples is +-1 or undefined whatever the prediction: score on at "
                      f"least {MIN_SCORED} samples (more held-out samples, or fewer folds)", RuntimeWarning,
                      stacklevel=3)
        return
    for flat, what in ((flat_y, "data"), (flat_pred, "predictions")):
        if bool(flat.any()):
            targets = flat.reshape(-1).nonzero().flatten().tolist()
            shown = f"{targets[:10]}{' ...' if len(targets) > 10 else ''}"
            warnings.warn(f"{score} is undefined (NaN) for target(s) {shown}: "
                          f"the {what} are constant (to rounding) over these {n} samples", RuntimeWarning, stacklevel=3)


@dataclasses.dataclass(eq=False)
class Ceiling(Result):
    """Noise ceiling per target from repeated measurements.

    Saves, loads, concatenates (over chunks of targets) and plots like every
    insilico result (:class:`insilico.results.Result`).

    Attributes
    ----------
    split_half : (n_targets,)  mean correlation between the means of random halves of the repetitions
    reliability : (n_targets,) Spearman-Brown corrected: reliability of the mean over all repetitions
    r : (n_targets,)           sqrt(max(reliability, 0)): a perfect model's expected Pearson r
    r2 : (n_targets,)          reliability: a perfect model's expected R² (the explainable variance)
    """

    sample_fields = ("split_half", "reliability", "r", "r2")

    split_half: np.ndarray
    reliability: np.ndarray
    r: np.ndarray
    r2: np.ndarray

    def table(self) -> dict:
        """One row per target: ``target`` (its index), ``split_half``, ``reliability``, ``r``, ``r2``."""
        return {"target": np.arange(len(self.r)), **{k: np.asarray(getattr(self, k)) for k in self.sample_fields}}

    def plot(self, ax=None):
        """Histogram of the ceiling r over targets; returns the Figure."""
        fig, ax = _axes(ax)
        values = np.asarray(self.r, float)
        ax.hist(values[np.isfinite(values)], bins=20, color="0.5")
        ax.set_xlabel("noise ceiling (r)")
        ax.set_ylabel("targets")
        return fig


def split_half_ceiling(repetitions, n_splits: int = 20, seed: int = 0) -> Ceiling:
    """Split-half noise ceiling with the Spearman-Brown correction.

    Parameters
    ----------
    repetitions : tensor or array (n_repetitions, n_stimuli, n_targets) or (n_repetitions, n_stimuli)
        At least 2 repetitions of every stimulus.
    n_splits : int
        Random half splits averaged over.
    seed : int

    Returns
    -------
    Ceiling (NumPy arrays)

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> signal = rng.normal(size=(100, 3))
    >>> reps = signal + rng.normal(size=(6, 100, 3))       # noise variance = signal variance
    >>> c = split_half_ceiling(reps)
    >>> bool(np.all(np.abs(c.reliability - 6 / 7) < 0.1))   # true reliability of a 6-repetition mean
    True
    """
    x, _ = _features(repetitions, None, flatten=False, dtype=torch.float64)
    if x.ndim == 2:
        x = x[..., None]
    x = x.reshape(x.shape[0], x.shape[1], -1)
    k = x.shape[0]
    if k < 2:
        raise InsilicoError("a split-half ceiling needs at least 2 repetitions of each stimulus")
    rng = np.random.default_rng(seed)
    rs = []
    for _ in range(n_splits):
        order = torch.as_tensor(rng.permutation(k))
        half = k // 2
        rs.append(pearson_r(x[order[:half]].mean(0), x[order[half:2 * half]].mean(0)))
    split = torch.stack(rs).mean(0)
    # halves hold k//2 repetitions each; the full mean has k: correct by k / (k // 2)
    rel = spearman_brown(split, k / (k // 2))
    to = lambda v: v.cpu().numpy()  # noqa: E731
    return Ceiling(to(split), to(rel), to(rel.clamp(min=0).sqrt()), to(rel))


@dataclasses.dataclass(eq=False)
class EncodingResult(Result):
    """Held-out scores of an encoding model, per target.

    Saves, loads and plots like every insilico result
    (:class:`insilico.results.Result`); ``concat`` joins results of chunks
    of targets fitted on the same folds.

    Attributes
    ----------
    r : (n_targets,)     Pearson r between held-out predictions and data, mean over outer folds
    r2 : (n_targets,)    R² on held-out data, mean over outer folds
    alpha : (n_folds, n_targets) penalties chosen by the inner cross-validation
    predictions : (n_samples, n_targets) held-out predictions (NaN where a sample was never held out)
    settings : dict      the alphas tried and the number of outer folds and samples
    """

    r: np.ndarray
    r2: np.ndarray
    alpha: np.ndarray
    predictions: np.ndarray
    settings: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def concat(cls, results: Sequence["EncodingResult"]) -> "EncodingResult":
        """Join results over chunks of targets (axis 0 of r, r2; axis 1 of alpha and predictions)."""
        results = list(results)
        if not results:
            raise InsilicoError("EncodingResult.concat needs at least one result")
        return cls(np.concatenate([x.r for x in results]), np.concatenate([x.r2 for x in results]),
                   np.concatenate([x.alpha for x in results], axis=1),
                   np.concatenate([x.predictions for x in results], axis=1), dict(results[0].settings))

    def table(self) -> dict:
        """One row per target: ``target`` (its index), held-out ``r`` and ``r2``, and ``alpha_<k>`` the penalty
        outer fold ``k`` chose."""
        alpha = np.asarray(self.alpha).reshape(-1, len(self.r))
        return {"target": np.arange(len(self.r)), "r": np.asarray(self.r), "r2": np.asarray(self.r2),
                **{f"alpha_{k}": a for k, a in enumerate(alpha)}}

    def plot(self, ax=None, ceiling: "Ceiling | None" = None):
        """Held-out r per target, sorted (with the ceiling's r per target, dashed); returns the Figure."""
        fig, ax = _axes(ax)
        order = np.argsort(-np.nan_to_num(np.asarray(self.r, float), nan=-np.inf))
        ax.plot(np.asarray(self.r)[order], "k.-", label="held-out r")
        if ceiling is not None:
            ax.plot(np.asarray(ceiling.r)[order], "--", color="0.5", label="noise ceiling")
        ax.set_xlabel("target (sorted by r)")
        ax.set_ylabel("r")
        ax.legend(fontsize=7, frameon=False)
        return fig

    def normalized(self, ceiling: Ceiling, kind: str = "r", min_ceiling: float = 0.1) -> np.ndarray:
        """Ceiling-normalised score per target (NaN where the ceiling is below ``min_ceiling``).

        ``kind="r"``: r / ceiling.r; ``"r2"``: R² / ceiling.r2; ``"reliability"``:
        r / reliability (Brain-Score's convention).
        """
        score, ceil = {"r": (self.r, ceiling.r), "r2": (self.r2, ceiling.r2),
                       "reliability": (self.r, ceiling.reliability)}[_check_choice(kind, ("r", "r2", "reliability"), "kind")]
        ceil = np.asarray(ceil, dtype=float)
        return np.where(ceil >= min_ceiling, score / np.where(ceil > 0, ceil, 1), np.nan)

    def summary(self, ceiling: Ceiling | None = None, min_ceiling: float = 0.1) -> dict:
        """Medians over targets: r, R², and with a ceiling the ceiling and normalised r."""
        out = dict(n_targets=int(len(self.r)), median_r=float(np.nanmedian(self.r)),
                   median_r2=float(np.nanmedian(self.r2)))
        if ceiling is not None:
            norm = self.normalized(ceiling, "r", min_ceiling)
            out.update(median_ceiling_r=float(np.nanmedian(ceiling.r)),
                       median_normalized_r=float(np.nanmedian(norm)) if np.isfinite(norm).any() else float("nan"),
                       n_targets_above_ceiling_threshold=int(np.isfinite(norm).sum()))
        return out


def cross_validate(features, responses, cv=5, alphas: Sequence[float] = tuple(10.0 ** np.arange(-2, 7)),
                   inner_cv=5, units: Sequence[str] | None = None, groups=None, **ridge):
    """Held-out encoding scores: outer folds for testing, inner folds for choosing alphas.

    Parameters
    ----------
    features : tensor / array (n_stimuli, ...), or Recording
        A Recording gives a dict ``{unit: EncodingResult}`` (``units=`` picks some).
    responses : tensor / array (n_stimuli, n_targets)
        Measured responses (e.g. averaged over repetitions).
    cv : int, splitter, or list of (train, test)
        Outer folds.
    alphas : sequence of float
        Default 1e-2 .. 1e6.
    inner_cv : int, splitter, list, or None (leave-one-out)
    **ridge
        More :class:`RidgeCV` arguments (``fit_intercept``, ``solver``, ``device``...).

    Returns
    -------
    EncodingResult or dict of them

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(120, 10)); Y = X[:, :2] + 0.5 * rng.normal(size=(120, 2))
    >>> res = cross_validate(X, Y, cv=4, inner_cv=3)
    >>> bool((res.r > 0.8).all()), res.alpha.shape
    (True, (4, 2))
    """
    from ..recording import Recording

    if isinstance(features, Recording):
        names = list(units) if units is not None else features.units
        return {str(u): cross_validate(features[u], responses, cv, alphas, inner_cv, groups=groups, **ridge)
                for u in names}
    x, _ = _features(features, ridge.get("device"))
    y, _ = _features(responses, x.device, flatten=False, dtype=x.dtype)
    y = y[:, None] if y.ndim == 1 else y.reshape(y.shape[0], -1)
    n = x.shape[0]
    rs, r2s, alphas_used = [], [], []
    pred_all = torch.full(y.shape, float("nan"), dtype=x.dtype, device=x.device)
    for train, test in _folds(cv, n, groups):
        inner = _folds(inner_cv, len(train)) if inner_cv is not None else None
        model = RidgeCV(alphas=alphas, cv=inner, **ridge).fit(x[train], y[train])
        pred = model.predict(x[test])
        pred = pred if pred.ndim == 2 else pred[:, None]
        pred_all[torch.as_tensor(test, device=x.device)] = pred
        rs.append(pearson_r(y[test], pred))
        r2s.append(r2_score(y[test], pred))
        alphas_used.append(torch.as_tensor(model._alpha).reshape(-1))
    to = lambda v: v.detach().cpu().numpy()  # noqa: E731
    settings = {"alphas": [float(a) for a in alphas], "n_folds": len(rs), "n_samples": int(n)}
    return EncodingResult(to(torch.stack(rs).mean(0)), to(torch.stack(r2s).mean(0)), to(torch.stack(alphas_used)),
                          to(pred_all), settings)


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------
def _axes(ax):
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax.figure, ax
    return plt.subplots(figsize=(5, 3.5))


def _features(x, device=None, flatten: bool = True, dtype=None) -> tuple[torch.Tensor, bool]:
    numpy = not torch.is_tensor(x)
    t = torch.as_tensor(np.asarray(x)) if numpy else x.detach()
    if dtype is not None:
        t = t.to(dtype)
    elif not t.is_floating_point():
        t = t.double() if numpy else t.float()
    if device is not None:
        t = t.to(device)
    if flatten:
        if t.ndim < 2:
            raise InsilicoError(f"features must be (n_samples, n_features, ...), got shape {tuple(t.shape)}")
        t = t.reshape(t.shape[0], -1)
    if not torch.isfinite(t).all():
        raise InsilicoError("the data contain NaN or inf; remove or impute them first")
    return t, numpy


def _check_choice(value, choices, what) -> str:
    if value not in choices:
        raise InsilicoError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")
    return value


__all__ = ["RidgeCV", "solve_ridge_cv", "solve_ridge", "kfold", "r2_score", "pearson_r", "MIN_SCORED", "spearman_brown",
           "split_half_ceiling", "Ceiling", "cross_validate", "EncodingResult", "SOLVERS"]
