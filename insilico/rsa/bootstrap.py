"""Bootstrap inference for model-to-data RDM similarities: over stimuli, subjects, or both.

Resampled stimuli repeat; pairs of a stimulus with its own copy are left out
of every comparison (masked, batched on the device), as in rsatoolbox.
``over="dual"`` is the corrected two-factor bootstrap of Schütt, Kipnis, Diedrichsen & Kriegeskorte (2023,
*eLife* 12:e82566; rsatoolbox's ``eval_dual_bootstrap``): resampling subjects and stimuli together counts the
subject-by-stimulus noise about three times, so the variance is ``2 (V_subjects + V_stimuli) - V_both`` from
the three bootstraps on the same resamples, kept within ``[max(V_subjects, V_stimuli), V_both]``.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np
import torch

from ..statistics import holm
from ..errors import InsilicoError
from ..results import Result
from .arrays import _check_choice, _n_from_pairs, _rank, _square
from .compare import _compare_method, _similarity, _vectors, aligned
from .noise_ceiling import NoiseCeiling, noise_ceiling
from .plots import plot_comparison
from .rdm import RDM


@dataclasses.dataclass(eq=False)
class BootstrapResult(Result):
    """Model-to-data similarities with bootstrap confidence intervals.

    Saves, loads and concatenates (over models, bootstrapped with the same
    seed) like every insilico result (:class:`insilico.results.Result`).

    Attributes
    ----------
    names : list of str
    estimate : ndarray (n_models,)
        Mean similarity over the data RDMs (subjects), on all stimuli.
    samples : ndarray (n_boot, n_models)
    ci : ndarray (n_models, 2)
        Percentile interval at level ``level``; ``over="dual"``: ``estimate -+ z std`` (normal), from the
        corrected variance.
    std : ndarray (n_models,)
        Bootstrap standard error (``over="dual"``: the corrected one; ``samples`` are then the two-factor
        resamples, whose spread is wider, so paired tests on them, :meth:`best_set`, are conservative).
    ceiling : NoiseCeiling or None
        On all stimuli and subjects, when there are several subjects.
    best : int
        Position of the model with the highest ``estimate`` (a point estimate: see :meth:`best_set`).
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

    @classmethod
    def concat(cls, results) -> "BootstrapResult":
        """Join results over models (axis 1 of ``samples``); the first result's settings and ceiling are kept."""
        results = list(results)
        if not results:
            raise InsilicoError("BootstrapResult.concat needs at least one result")
        first = results[0]
        return dataclasses.replace(
            first, names=[n for r in results for n in r.names],
            estimate=np.concatenate([r.estimate for r in results]),
            samples=np.concatenate([r.samples for r in results], axis=1),
            ci=np.concatenate([r.ci for r in results]), std=np.concatenate([r.std for r in results]))

    @property
    def best(self) -> int:
        """Position of the model with the highest estimate."""
        return int(np.nanargmax(self.estimate))

    def best_set(self) -> list[str]:
        """The models not distinguishable from the best (the best first, then in their order).

        A paired bootstrap test of each other model against the best, corrected for testing them all: each
        bootstrap sample scores every model on the same resample; the one-sided p-value that the best is no
        better is ``(1 + #{best - model <= 0}) / (1 + n_boot)``, and a model leaves the set only where its
        Holm-adjusted p-value (:func:`insilico.statistics.holm`, over the other models) is below
        ``(1 - level) / 2``, the one-sided tail of the interval. Uncorrected, one of 7 layers tied with the
        best would leave the set by chance far more often than the level says. With one model, ``[that model]``.

        Example
        -------
        >>> rng = np.random.default_rng(0)
        >>> common = rng.normal(0, 0.05, (500, 1))                  # each resample moves every model together
        >>> samples = common + np.array([0.50, 0.49, 0.10]) + rng.normal(0, 0.02, (500, 3))
        >>> r = BootstrapResult(["a", "b", "c"], np.array([0.5, 0.49, 0.1]), samples, np.zeros((3, 2)),
        ...                     np.zeros(3), "spearman", "stimuli", 0.95)
        >>> r.names[r.best], r.best_set()
        ('a', ['a', 'b'])
        """
        best, others = self.best, [i for i in range(len(self.names)) if i != self.best]
        if not others:
            return [self.names[best]]
        diff = self.samples[:, best:best + 1] - self.samples[:, others]
        valid = np.isfinite(diff)
        p = (1 + ((diff <= 0) & valid).sum(0)) / (1 + valid.sum(0))
        adjusted = holm(p)
        alpha = (1 - self.level) / 2
        return [self.names[best]] + [self.names[i] for i, q in zip(others, adjusted) if not q < alpha]

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
        The similarity of a model is its mean over subjects. Labelled RDMs are
        aligned by label (another order is reordered, other stimuli refused: see
        :mod:`insilico.rsa.compare`).
    method : str
        See :func:`compare`.
    over : {"stimuli", "subjects", "both", "dual"}
        What is resampled with replacement. Resampled stimuli drop the pairs of a
        stimulus with its own copy (rsatoolbox does the same). ``"both"``: subjects and stimuli together,
        percentile intervals (wide: the naive two-factor bootstrap); ``"dual"``: the same resamples, the
        variance corrected as Schütt et al. (2023) derive (module docstring) and a normal interval: what
        generalises to new subjects *and* new stimuli. The resamples depend on ``seed``, ``n_boot`` and the
        sizes only, so two calls with the same seed are paired whatever the models.
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
    >>> from insilico.rsa import rdm
    >>> g = torch.Generator().manual_seed(0)
    >>> truth = torch.rand(20, 3, generator=g, dtype=torch.float64)
    >>> res = bootstrap({"true": rdm(truth), "random": rdm(torch.rand(20, 3, generator=g))},
    ...                 [rdm(truth + 0.1 * torch.randn(20, 3, generator=g)) for _ in range(3)],
    ...                 n_boot=50, progress=False)
    >>> bool(res.estimate[0] > res.estimate[1]), res.ci.shape
    (True, (2, 2))
    """
    method = _compare_method(method)
    over = _check_choice(over, ("stimuli", "subjects", "both", "dual"), "over")
    names = [str(k) for k in models] if isinstance(models, Mapping) else [
        (r.name if isinstance(r, RDM) and r.name else f"model {i}") for i, r in enumerate(models)]
    models, data = aligned(models, data if not isinstance(data, RDM) else [data])  # labelled RDMs in one order
    mv = _vectors(models)
    dv = _vectors(data).to(mv.device)
    if mv.shape[1] != dv.shape[1]:
        raise InsilicoError(f"model RDMs have {mv.shape[1]} pairs and data RDMs {dv.shape[1]}: use the same stimuli")
    n, k = _n_from_pairs(mv.shape[1]), dv.shape[0]
    if over in ("subjects", "both", "dual") and k < 2:
        raise InsilicoError(f"bootstrapping subjects (over={over!r}) needs several data RDMs (one per subject), "
                            f"not {k}: pass over='stimuli' for one data RDM")
    rng = np.random.default_rng(seed)  # every resample drawn first: the same for any models (paired calls)
    stims = np.stack([rng.integers(0, n, n) if over != "subjects" else np.arange(n) for _ in range(n_boot)])
    subjs = np.stack([rng.integers(0, k, k) if over not in ("stimuli",) else np.arange(k) for _ in range(n_boot)])
    full = _similarity(mv, dv, method)                         # (models, subjects) on all stimuli
    estimate = full.mean(1).cpu().numpy()
    per_subject = _resampled(mv, dv, stims, method, progress)  # (n_boot, models, subjects)
    pick = np.broadcast_to(subjs[:, None, :], (n_boot, mv.shape[0], k))
    samples = np.take_along_axis(per_subject, pick, 2).mean(2)  # subjects and stimuli as drawn
    alpha = (1 - level) / 2
    ci = np.stack([np.nanquantile(samples, alpha, axis=0), np.nanquantile(samples, 1 - alpha, axis=0)], 1)
    std = np.nanstd(samples, 0, ddof=1)
    if over == "dual":
        std = np.sqrt(dual_variance(np.nanvar(samples, 0, ddof=1), np.nanvar(per_subject.mean(2), 0, ddof=1),
                                    np.var(full.cpu().numpy()[:, subjs].mean(2), 1, ddof=1)))
        from scipy.stats import norm

        ci = estimate[:, None] + np.outer(std, [-1.0, 1.0]) * norm.ppf(1 - alpha)
    ceiling = noise_ceiling(dv, method) if k > 1 else None
    return BootstrapResult(names, estimate, samples, ci, std, method, over, level, ceiling)


def dual_variance(both: np.ndarray, stimuli: np.ndarray, subjects: np.ndarray) -> np.ndarray:
    """The corrected two-factor bootstrap variance (Schütt et al. 2023; rsatoolbox's ``_dual_bootstrap``):
    ``2 (subjects + stimuli) - both``, kept within ``[max(subjects, stimuli), both]``, from the variances of the
    bootstraps over both factors, over stimuli only and over subjects only (same shapes).

    >>> float(dual_variance(np.array(3.0), np.array(1.0), np.array(1.0)))  # noise counted 3x in "both": 3 - 2 = 1
    1.0
    >>> float(dual_variance(np.array(5.0), np.array(1.0), np.array(0.5)))  # never below a one-factor variance
    1.0
    """
    corrected = 2 * (np.asarray(subjects) + np.asarray(stimuli)) - np.asarray(both)
    return np.minimum(np.maximum(corrected, np.maximum(subjects, stimuli)), both)


def _resampled(mv: torch.Tensor, dv: torch.Tensor, stims: np.ndarray, method: str, progress: bool) -> np.ndarray:
    """Each model's similarity with each data RDM on each stimulus resample: ``(n_boot, models, subjects)``,
    in chunks of resamples at once (the pairs of a stimulus with its own copy dropped)."""
    from tqdm.auto import tqdm

    n, k = stims.shape[1], dv.shape[0]
    mm, dm = _square(mv, n), _square(dv, n)
    ia, ib = (torch.as_tensor(i, device=mv.device) for i in np.triu_indices(n, 1))
    chunk = max(1, int(2e7 // ((mv.shape[0] + k) * mv.shape[1])))
    out = np.empty((len(stims), mv.shape[0], k))
    bar = tqdm(total=len(stims), desc="bootstrap", disable=not progress)
    for b0 in range(0, len(stims), chunk):  # a chunk of bootstrap samples at once: (B, models, pairs)
        stim = torch.as_tensor(stims[b0:b0 + chunk], device=mv.device)
        sa, sb = stim[:, ia], stim[:, ib]                      # (B, pairs)
        keep = sa != sb                                        # a stimulus paired with its own copy is dropped
        s_models = mm[:, sa, sb].transpose(0, 1)               # (B, models, pairs)
        s_data = dm[:, sa, sb].transpose(0, 1)                 # (B, subjects, pairs)
        out[b0:b0 + len(stim)] = _similarity_masked(s_models, s_data, keep, method).cpu().numpy()
        bar.update(len(stim))
    bar.close()
    return out


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
