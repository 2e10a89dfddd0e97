"""Comparing RDMs: rank, linear and whitened similarities, batched over many RDMs.

``spearman``, ``kendall_a`` (Kendall's tau-a), ``rho_a`` (Spearman's rho-a),
``pearson``, ``cosine``, ``whitened_pearson`` and ``whitened_cosine``
(Diedrichsen et al. 2021; rsatoolbox's ``corr_cov`` and ``cosine_cov``);
rsatoolbox's names are accepted as aliases. NaN or inf dissimilarities are
refused with the fix (drop those pairs from every RDM), never scored as numbers.

Labels: wherever two RDMs meet (:func:`compare`, :func:`compare_all`,
:func:`~insilico.rsa.bootstrap`, :func:`~insilico.rsa.noise_ceiling`), RDMs that
carry stimulus labels are put in one order, that of the first labelled RDM: the
same stimuli in another order are reordered, other stimuli (a label in one RDM
and not the other, or repeated labels in another order) are refused with an
:class:`~insilico.errors.InsilicoError` that names them. An RDM of neural data in the order the data first
showed each stimulus (``rdm(read_neural(data))``, ``RDM.ordered`` False) is never matched by position: against
an unlabelled RDM or vectors it is refused (a :class:`~insilico.errors.StimulusError` that says how to name the
order) unless its ids are ``0 .. n-1`` (then put in that order), the rule ``fit_predictor`` keeps. RDMs made without
labels (``RDM.labelled`` False: no ``labels=``, or a Recording whose stimulus
ids were not given), condensed vectors and square matrices carry no labels and
are matched by position. Labels given are labels whatever their values: ids
``0 .. n-1`` in another order align by label too.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import torch

from ..errors import InsilicoError
from ..neural import positional_order
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

    Raises
    ------
    InsilicoError
        The RDMs label different stimuli, or repeat labels in another order
        (labelled RDMs are aligned by label first; see the module docstring).
    StimulusError
        An RDM of neural data in their first-presentation order against an unlabelled one (module docstring).

    Examples
    --------
    >>> round(compare([1, 2, 3], [1, 2, 4], "spearman"), 6), round(compare([1, 2, 3], [1, 2, 2], "kendall_a"), 6)
    (1.0, 0.666667)
    >>> a = RDM.from_matrix([[0, 1, 2], [1, 0, 3], [2, 3, 0]], labels=["cat", "dog", "car"])
    >>> round(compare(a, a.subset([2, 0, 1]), "pearson"), 6)        # the same stimuli in another order
    1.0
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
    va, vb = (_vectors(c) for c in aligned(models, data))
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


def aligned(*collections) -> list:
    """``collections`` (RDMs, lists or dicts of RDMs, tensors) with every labelled RDM in one stimulus order.

    The order is that of the first labelled RDM (``RDM.labelled``: labels were given); an RDM with the
    same labels in another order is reordered (:meth:`RDM.subset`); other labels are refused. Unlabelled
    RDMs and tensors are left as they are (matched by position).

    Raises
    ------
    InsilicoError
        Two labelled RDMs label different stimuli, or repeat labels in different orders.

    Examples
    --------
    >>> a = RDM.from_matrix([[0, 1, 2], [1, 0, 3], [2, 3, 0]], labels=["x", "y", "z"])
    >>> _, b = aligned(a, a.subset([1, 2, 0]))
    >>> b.labels, b.vector.tolist()
    (['x', 'y', 'z'], [1.0, 2.0, 3.0])
    """
    if any(_by_position(c) for c in collections):  # an RDM of a trial order meets one matched by position
        collections = [_each(c, _in_positional_order) for c in collections]
    labelled = [r for c in collections for r in _rdms_in(c) if not _positional(r)]
    if not labelled:
        return list(collections)
    reference = labelled[0]
    return [_each(c, lambda x: _in_order(x, reference) if isinstance(x, RDM) else x) for c in collections]


def _each(c, one):
    """``one`` applied to each member of a collection (dict, list, tuple) or to a single value."""
    if isinstance(c, Mapping):
        return {k: one(v) for k, v in c.items()}
    if isinstance(c, (list, tuple)):
        return [one(v) for v in c]
    return one(c)


def _by_position(c) -> bool:
    """Whether ``c`` holds something matched by position: an unlabelled RDM, or vectors / matrices (no RDM)."""
    if c is None:
        return False
    if isinstance(c, RDM):
        return _positional(c)
    if isinstance(c, (Mapping, list, tuple)):
        values = list(c.values()) if isinstance(c, Mapping) else list(c)
        if values and all(v is None or isinstance(v, (RDM, Mapping, list, tuple)) for v in values):
            return any(_by_position(v) for v in values)
        return bool(values)  # numbers: a condensed vector
    return True  # a tensor or array


def _in_positional_order(x):
    """A labelled RDM of neural data in their first-presentation order, put where a positional match can read it
    (its ids are positions) or refused (:func:`insilico.neural.positional_order`, the rule of ``fit_predictor``)."""
    if not isinstance(x, RDM) or _positional(x) or x.ordered:
        return x
    ids = positional_order(x.labels, x.ordered, f"the RDM {_describe(x)} is compared with an unlabelled RDM or "
                           "vectors, matched by position", "or give the other RDM labels (rdm(..., labels=ids)) "
                           "so the two align by label")
    position = {str(k): i for i, k in enumerate(x.labels)}
    return x.subset([position[i] for i in ids])


def _rdms_in(x) -> list:
    values = list(x.values()) if isinstance(x, Mapping) else list(x) if isinstance(x, (list, tuple)) else [x]
    return [v for v in values if isinstance(v, RDM)]


def _positional(r: RDM) -> bool:
    """No labels were given: the RDM is matched by position (its ``labels`` are only 0 .. n-1 for plots)."""
    return not r.labelled


def _key(label):
    try:
        hash(label)
        return label
    except TypeError:
        return repr(label)


def _in_order(r: RDM, reference: RDM) -> RDM:
    """``r`` in ``reference``'s stimulus order; InsilicoError if they label different stimuli."""
    if _positional(r) or list(r.labels) == list(reference.labels):
        return r
    mine, theirs = [_key(k) for k in r.labels], [_key(k) for k in reference.labels]
    names = f"{_describe(r)} and {_describe(reference)}"
    if set(mine) != set(theirs):
        only_r, only_ref = [k for k in mine if k not in set(theirs)], [k for k in theirs if k not in set(mine)]
        raise InsilicoError(
            f"the RDMs {names} label different stimuli: {len(only_r)} labels only in the first "
            f"{_few(only_r)}, {len(only_ref)} only in the second {_few(only_ref)}; compare RDMs of the same stimuli "
            "(rdm.subset(index) keeps some stimuli, in the order given)")
    if len(set(mine)) < len(mine) or len(set(theirs)) < len(theirs):
        raise InsilicoError(
            f"the RDMs {names} repeat labels, in different orders, so which stimulus is which is not known: "
            "give each stimulus its own label (rdm(..., labels=ids)), or put both RDMs in the same order")
    position = {k: i for i, k in enumerate(mine)}
    return r.subset([position[k] for k in theirs])


def _describe(r: RDM) -> str:
    return f"{r.name!r}" if r.name else f"(unnamed, {r.n} stimuli)"


def _few(labels: list) -> str:
    shown = ", ".join(repr(k) for k in labels[:4])
    return f"({shown}{', ...' if len(labels) > 4 else ''})"


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
