"""Adjudication objectives: stimuli that make two models (or two representations) disagree.

- :class:`Controversy` (Golan, Raju & Kriegeskorte 2020): the log of
  ``min(p_A(i), 1 - p_B(i), 1 - p_A(j), p_B(j))`` per sample, so that model A
  sees class ``i`` and model B class ``j``; used by :func:`insilico.controversial`.
- :class:`MADObjective` (maximum differentiation, Wang & Simoncelli 2008):
  push one representation distance up or down while holding the other; used by
  :func:`insilico.mad`.

Both read several units in one forward pass (the models side by side in a
:class:`insilico.models.ModelGroup`, or two layers of one model)
and take their per-sample settings (model and class pairs, references, held
levels) as tensors, so a batch mixes any pairs; ``subset(rows)`` cuts them for
the engine's compaction of stopped samples.

Example
-------
>>> import torch
>>> obj = Controversy(["a", "b"], torch.tensor([0]), torch.tensor([1]), torch.tensor([0]), torch.tensor([1]))
>>> acts = {"a": torch.tensor([[4.0, 0.0]]), "b": torch.tensor([[0.0, 4.0]])}
>>> round(float(obj(acts).exp()), 4)
0.982
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from .core import Objective
from ..errors import InsilicoError
from ..units import Unit

#: What each of the four MAD images per reference does: (held distance, pushed distance, direction).
ROLES = ((0, 1, +1.0), (0, 1, -1.0), (1, 0, +1.0), (1, 0, -1.0))
ROLE_NAMES = ("d1 held, d2 max", "d1 held, d2 min", "d2 held, d1 max", "d2 held, d1 min")


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x <= 0, accurate at both ends."""
    x = x.clamp(max=-1e-12)
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


class Controversy(Objective):
    """``log min(p_A(i), 1 - p_B(i), 1 - p_A(j), p_B(j))`` per sample, for models and classes given per sample.

    Parameters
    ----------
    units : list of str
        Where each model's logits are (e.g. ``["minialex", "blt"]`` in a :class:`ModelGroup`).
    model_a, model_b : tensor (N,)
        Indices into ``units`` of each sample's model A and B.
    class_i, class_j : tensor (N,)
        The class A should see, and the class B should see.

    Raises
    ------
    InsilicoError
        At call time: a model output that is not logits (N, K), or a class index >= K.

    Example
    -------
    >>> acts = {"a": torch.tensor([[4.0, 0.0]]), "b": torch.tensor([[0.0, 4.0]])}
    >>> obj = Controversy(["a", "b"], torch.tensor([0]), torch.tensor([1]), torch.tensor([0]), torch.tensor([1]))
    >>> round(float(obj(acts).exp()), 4)      # min(p_a(0), 1 - p_b(0), 1 - p_a(1), p_b(1))
    0.982
    """

    def __init__(self, units: Sequence[str], model_a: torch.Tensor, model_b: torch.Tensor,
                 class_i: torch.Tensor, class_j: torch.Tensor):
        self.units = tuple(Unit.parse(u) for u in units)
        self.model_a, self.model_b = model_a.long(), model_b.long()
        self.class_i, self.class_j = class_i.long(), class_j.long()

    def subset(self, rows: torch.Tensor) -> Controversy:
        """The objective for the samples ``rows`` (their model and class pairs)."""
        cut = [t.index_select(0, rows.to(t.device)) for t in (self.model_a, self.model_b, self.class_i, self.class_j)]
        return Controversy([str(u) for u in self.units], *cut)

    def terms(self, acts) -> torch.Tensor:
        """The four log-terms (N, 4): log p_A(i), log(1 - p_B(i)), log(1 - p_A(j)), log p_B(j)."""
        logits = [acts[u] for u in self.units]
        if any(l.ndim != 2 for l in logits):
            raise InsilicoError(f"controversial stimuli need logits (N, classes) from every model; got shapes "
                                f"{[tuple(l.shape) for l in logits]}")
        k = min(l.shape[1] for l in logits)
        logp = torch.stack([l[:, :k].float().log_softmax(dim=1) for l in logits])  # (M, N, K)
        a, b, i, j = (t.to(logp.device) for t in (self.model_a, self.model_b, self.class_i, self.class_j))
        if int(torch.maximum(i, j).max()) >= k:
            raise InsilicoError(f"class index {int(torch.maximum(i, j).max())} out of range: the models have {k} classes")
        rows = torch.arange(logp.shape[1], device=logp.device)
        la, lb = logp[a, rows], logp[b, rows]
        ai, aj = la.gather(1, i[:, None])[:, 0], la.gather(1, j[:, None])[:, 0]
        bi, bj = lb.gather(1, i[:, None])[:, 0], lb.gather(1, j[:, None])[:, 0]
        return torch.stack([ai, _log1mexp(bi), _log1mexp(aj), bj], dim=1)

    def forward(self, acts, images):
        return self.terms(acts).amin(dim=1)

    def __repr__(self) -> str:
        return f"Controversy({[str(u) for u in self.units]}, {self.model_a.shape[0]} samples)"


def distance(act: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Mean squared difference per sample (N,) between responses ``act`` and ``ref`` (N, ...)."""
    return (act - ref).pow(2).reshape(act.shape[0], -1).mean(dim=1)


class MADObjective(Objective):
    """``sign * log(d_push / c_push) - lam * log(d_held / c_held)^2`` per sample.

    Parameters
    ----------
    units : (Unit, Unit)
        The two representations.
    references : (tensor (N, ...), tensor (N, ...))
        Each sample's reference response of each unit.
    levels : tensor (N, 2)
        ``d_1``, ``d_2`` at the start image (the held level; the push's scale).
    held : tensor (N,) of 0/1
        Which distance each sample holds (the other is pushed).
    sign : tensor (N,)
        +1 to maximize the pushed distance, -1 to minimize it.
    lam : float
        Weight of the penalty on the held distance (a penalty, as plenoptic's
        ``MADCompetition``, rather than Wang & Simoncelli's projection).

    Example
    -------
    >>> obj = MADObjective(("a", "b"), [torch.zeros(1, 2), torch.zeros(1, 2)], torch.tensor([[1.0, 1.0]]),
    ...                    held=torch.tensor([0]), sign=torch.tensor([1.0]), lam=10.0)
    >>> acts = {"a": torch.ones(1, 2), "b": torch.full((1, 2), 2.0)}   # d_1 = 1 (held), d_2 = 4 (pushed)
    >>> round(float(obj(acts)), 4)                                      # log(4 / 1) - 10 * log(1 / 1)^2
    1.3863
    """

    def __init__(self, units, references, levels, held, sign, lam: float):
        self.pair = tuple(Unit.parse(u) for u in units)
        self.units = tuple(dict.fromkeys(self.pair))
        self.references = references
        self.levels, self.held, self.sign, self.lam = levels, held.long(), sign, float(lam)

    def subset(self, rows: torch.Tensor) -> MADObjective:
        """The objective for the samples ``rows`` (their references, levels and roles)."""
        cut = lambda t: t.index_select(0, rows.to(t.device))
        return MADObjective(self.pair, [cut(r) for r in self.references], cut(self.levels), cut(self.held),
                            cut(self.sign), self.lam)

    def distances(self, acts) -> torch.Tensor:
        """(N, 2): d_1 and d_2 of the batch."""
        out = []
        for unit, ref in zip(self.pair, self.references):
            act = acts[unit]
            ref = ref.to(act.device, act.dtype)
            out.append(distance(act, ref))
        return torch.stack(out, dim=1)

    def forward(self, acts, images):
        d = self.distances(acts).clamp_min(1e-30)
        levels, held, sign = (t.to(d.device) for t in (self.levels, self.held, self.sign))
        ratio = (d / levels.to(d.dtype).clamp_min(1e-30)).log()
        push = ratio.gather(1, (1 - held)[:, None])[:, 0]
        keep = ratio.gather(1, held[:, None])[:, 0]
        return sign.to(d.dtype) * push - self.lam * keep.pow(2)

    def __repr__(self) -> str:
        return f"MADObjective({[str(u) for u in self.pair]}, lam={self.lam})"


__all__ = ["Controversy", "MADObjective", "ROLES", "ROLE_NAMES", "distance"]
