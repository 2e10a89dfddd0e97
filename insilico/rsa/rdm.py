"""The RDM object and computing RDMs from responses (correlation, cosine, Euclidean, crossnobis).

:func:`rdm` takes responses as a probe gives them (a Recording, a dict, a
tensor or array (n_stimuli, ...)) and computes each RDM as one Gram matrix
on the device; :class:`RDM` holds the condensed vector, its labels, and draws
itself (heat map, MDS).
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np
import torch

from ..errors import InsilicoError
from ..results import Result
from ..statistics import require_finite
from .arrays import _as_tensor, _check_choice, _n_from_pairs, _rank, _square
from .crossnobis import _crossnobis
from .plots import _axes


RDM_METHODS = ("correlation", "cosine", "euclidean", "sqeuclidean", "crossnobis")


@dataclasses.dataclass(eq=False, repr=False)
class RDM(Result):
    """A representational dissimilarity matrix over ``n`` stimuli.

    An insilico result (:class:`insilico.results.Result`): ``save(path)``, ``RDM.load(path)``
    (``torch.load(..., weights_only=True)``), ``plot(ax=)``; ``RDM.concat`` of one RDM is that RDM
    (an RDM has no sample axis: the dissimilarities between stimuli of different chunks are unknown).

    Parameters
    ----------
    vector : tensor or array (n (n - 1) / 2,)
        Dissimilarities of the pairs (i, j), i < j, row by row: the order of
        scipy's ``squareform`` and ``pdist``.
    labels : sequence, optional
        One label per stimulus. Without them the RDM is *unlabelled*: its
        ``labels`` read 0 .. n-1 (for plots) but it is matched to other RDMs
        by position; labels given are labels, whatever their values (0 .. n-1
        in another order too) and RDMs are aligned by them (:func:`insilico.rsa.aligned`).
    method : str, optional
        How the dissimilarities were computed.
    name : str, optional
        What was measured (a layer, a brain region).
    labelled : bool, optional
        Whether ``labels`` were given (default: ``labels is not None``).
    ordered : bool
        Whether the stimuli are in an order the user chose (default). False for an RDM of neural data in the
        order the data first showed each stimulus (``rdm(read_neural(data))`` without ``stimuli=`` / ``ids=``):
        it aligns by label with labelled RDMs, and an unlabelled RDM is refused against it
        (:func:`insilico.neural.positional_order`, the rule ``fit_predictor`` keeps).

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
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "rdm.pt")
    >>> r.save(path)
    >>> back = RDM.load(path)
    >>> back.vector.tolist(), back.labels, back.n
    ([1.0, 2.0, 3.0], ['a', 'b', 'c'], 3)
    """

    vector: torch.Tensor
    labels: Sequence | None = None
    method: str | None = None
    name: str | None = None
    labelled: bool | None = None
    ordered: bool = True

    def __post_init__(self):
        vector = _as_tensor(self.vector)
        if vector.ndim != 1:
            raise InsilicoError(f"an RDM vector is 1-D, got shape {tuple(vector.shape)}; use RDM.from_matrix for n x n")
        self.n = _n_from_pairs(vector.numel())
        self.vector = vector
        self.labelled = bool(self.labelled) if self.labelled is not None else self.labels is not None
        self.labels = list(self.labels) if self.labels is not None else list(range(self.n))
        if len(self.labels) != self.n:
            raise InsilicoError(f"{len(self.labels)} labels for an RDM of {self.n} stimuli")

    def table(self) -> dict:
        """One row per pair of stimuli (i < j, in :attr:`vector`'s order): ``stimulus_a``, ``stimulus_b`` (their
        labels) and ``dissimilarity``."""
        i, j = np.triu_indices(self.n, k=1)
        return {"stimulus_a": [self.labels[a] for a in i], "stimulus_b": [self.labels[b] for b in j],
                "dissimilarity": self.vector.detach().cpu().double().numpy()}

    @classmethod
    def concat(cls, results: Sequence[RDM]) -> RDM:
        """One RDM is itself; RDMs of chunks of stimuli cannot be joined (their cross dissimilarities are unknown)."""
        results = list(results)
        if len(results) > 1:
            raise InsilicoError("RDMs of chunks of stimuli cannot be concatenated: the dissimilarities between "
                                "stimuli of different chunks are unknown; compute one RDM over all the stimuli "
                                "(insilico.rsa.rdm), or stack RDMs of the same stimuli: "
                                "torch.stack([r.vector ...])")
        return super().concat(results)

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
        return RDM(self.vector.to(device), self.labels, self.method, self.name, self.labelled, self.ordered)

    def numpy(self) -> np.ndarray:
        """The condensed vector as a NumPy array (``scipy.spatial.distance.squareform`` makes it square)."""
        return self.vector.detach().cpu().numpy()

    def subset(self, index) -> RDM:
        """The RDM of some stimuli (``index``: ints or a boolean mask, in the order given)."""
        idx = torch.as_tensor(np.asarray(index), device=self.device)
        if idx.dtype == torch.bool:
            idx = idx.nonzero().flatten()
        m = self.matrix[idx][:, idx]
        labels = [self.labels[int(k)] for k in idx.tolist()] if self.labelled else None
        return dataclasses.replace(RDM.from_matrix(m, labels, self.method, self.name, check=False),
                                   ordered=self.ordered)

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


def rdm(responses, method: str = "correlation", *, units: Sequence | None = None, labels: Sequence | None = None,
        runs: Sequence | None = None, conditions: Sequence | None = None, noise="shrinkage_diag",
        per_feature: bool | None = None, device=None, dtype: torch.dtype = torch.float64, name: str | None = None):
    """RDMs of response patterns: one per layer, computed on the device.

    Parameters
    ----------
    responses : Recording, NeuralData, dict of tensors, list of tensors, or tensor / array
        Responses (n_stimuli, ...); features are the trailing axes, flattened. Neural data
        (:func:`insilico.neural.read_neural`) are labelled by their stimulus ids, their repetitions
        averaged (or, for ``crossnobis``, the runs); with a ``time_bin`` axis they are refused: one bin
        at a time, ``[rdm(neural.at(t)) for t in neural.time_bins]``.
        For ``crossnobis``: (n_runs, n_stimuli, ...) with every stimulus in
        every run, or (n_observations, ...) with ``runs=`` and ``conditions=``.
        A Recording or dict gives a dict ``{unit: RDM}``, a list a list.
    method : {"correlation", "cosine", "euclidean", "sqeuclidean", "crossnobis"}
    units : list of str, optional
        Which units of a Recording (default: all).
    labels : sequence, optional
        Stimulus labels (default: the Recording's ids when they were given
        (``Recording.labelled``), of the stimuli it holds (an unfinished recording's, also its
        positions 0 .. n-1 when no ids were given); with ``conditions=``, the sorted unique
        conditions; else none: the RDM is unlabelled, matched by position).
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
    from ..neural import NeuralData
    from ..recording import Recording

    if isinstance(responses, NeuralData):  # labelled by its stimulus ids; repetitions are crossnobis's runs
        data = responses if method == "crossnobis" else responses.mean()
        ids = labels if labels is not None else data.stimulus_ids
        one = _rdm_one(np.asarray(data), labels=ids, name=name, **kwargs)  # a time axis refused: pick a bin
        return one if labels is not None or data.ordered else dataclasses.replace(one, ordered=False)
    if isinstance(responses, Recording):
        names = list(units) if units is not None else responses.units
        held = [responses.ids[i] for i in responses.indices]  # an unfinished recording holds some stimuli
        ids = labels if labels is not None else held if responses.labelled or not responses.complete else None
        return {str(u): _rdm_one(responses[u], labels=ids, name=str(u), **kwargs) for u in names}
    if isinstance(responses, Mapping):
        names = list(units) if units is not None else list(responses)
        return {k: _rdm_one(responses[k], labels=labels, name=str(k), **kwargs) for k in names}
    if isinstance(responses, (list, tuple)) and responses and not np.isscalar(responses[0]):
        return [_rdm_one(r, labels=labels, name=name, **kwargs) for r in responses]
    return _rdm_one(responses, labels=labels, name=name, **kwargs)


def _rdm_one(x, method, labels, name, runs, conditions, noise, per_feature, device, dtype) -> RDM:
    x = _as_tensor(x, device=device, dtype=dtype)
    require_finite(x, f"the responses{f' of {name}' if name else ''}")
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
