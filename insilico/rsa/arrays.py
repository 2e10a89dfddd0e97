"""RDM arrays: condensed vectors and square matrices, input coercion, ranks.

The small conversions every part of :mod:`insilico.rsa` shares: a condensed
vector holds the pairs (i, j), i < j, row by row (scipy's ``squareform`` /
``pdist`` order); :func:`_square` makes it square; :func:`_rank` gives average
ranks like scipy's ``rankdata``, batched on the device.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import InsilicoError


def _as_tensor(x, device=None, dtype=None) -> torch.Tensor:
    """``x`` (a tensor, array or list; of an RDM, its ``.vector``) as a detached tensor; integer input becomes float64."""
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


def _check_choice(value, choices, what) -> str:
    if value not in choices:
        raise InsilicoError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")
    return value
