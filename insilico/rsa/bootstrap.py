"""Bootstrap inference for model-to-data RDM similarities: over stimuli, subjects, or both.

Resampled stimuli repeat; pairs of a stimulus with its own copy are left out
of every comparison (masked, batched on the device), as in rsatoolbox.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np
import torch

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
        Percentile interval at level ``level``.
    std : ndarray (n_models,)
        Bootstrap standard error.
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

        A paired bootstrap test: each bootstrap sample scores every model on the same resample, so the
        difference best - model has a percentile interval at ``level``; a model whose interval reaches 0
        (low <= 0) is not distinguishable from the best. With one model, ``[that model]``.

        Example
        -------
        >>> samples = np.array([[0.50, 0.49, 0.10], [0.40, 0.45, 0.12], [0.60, 0.52, 0.11]])
        >>> r = BootstrapResult(["a", "b", "c"], np.array([0.5, 0.48, 0.11]), samples, np.zeros((3, 2)),
        ...                     np.zeros(3), "spearman", "stimuli", 0.95)
        >>> r.names[r.best], r.best_set()
        ('a', ['a', 'b'])
        """
        best = self.best
        alpha = (1 - self.level) / 2
        with np.errstate(all="ignore"):
            low = np.nanquantile(self.samples[:, best:best + 1] - self.samples, alpha, axis=0)
        return [self.names[best]] + [n for i, n in enumerate(self.names) if i != best and not low[i] > 0]

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
    >>> from insilico.rsa import rdm
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
    models, data = aligned(models, data if not isinstance(data, RDM) else [data])  # labelled RDMs in one order
    mv = _vectors(models)
    dv = _vectors(data).to(mv.device)
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
