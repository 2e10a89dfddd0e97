"""The optimizers of the synthesis engine, by name or as a factory.

=========== ====================================================================
``"adam"``  :class:`torch.optim.Adam` (element-wise: samples do not interact)
``"sgd"``   :class:`torch.optim.SGD` (element-wise)
``"lbfgs"`` :class:`~insilico.synthesis.lbfgs.BatchLBFGS`: one curvature history
            and one backtracking line search per sample
factory     ``(params, lr=..., **options) -> torch.optim.Optimizer``, e.g. the
            signed step :class:`insilico.design.adversarial.SignSGD`
=========== ====================================================================

Example
-------
>>> import torch
>>> p = [torch.zeros(2, 3, requires_grad=True)]
>>> type(make_optimizer("lbfgs", p, 1.0)).__name__, optimizer_name(torch.optim.RMSprop)
('BatchLBFGS', 'RMSprop')
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from .lbfgs import BatchLBFGS

OPTIMIZERS = ("adam", "sgd", "lbfgs")


def optimizer_name(factory: Callable) -> str:
    """A custom optimizer's name for the settings (a factory, class or functools.partial of one)."""
    return getattr(getattr(factory, "func", factory), "__name__", type(factory).__name__)


def make_optimizer(optimizer: str | Callable, params: Sequence[torch.Tensor], lr: float,
                   options: dict | None = None) -> torch.optim.Optimizer:
    """The optimizer named ``optimizer`` (one of ``OPTIMIZERS``) or made by the factory, for ``params``."""
    options = dict(options or {})
    if callable(optimizer):
        return optimizer(list(params), lr=lr, **options)
    if optimizer == "adam":
        return torch.optim.Adam(list(params), lr=lr, **options)
    if optimizer == "sgd":
        return torch.optim.SGD(list(params), lr=lr, **options)
    return BatchLBFGS(list(params), lr=lr, **options)


__all__ = ["OPTIMIZERS", "make_optimizer", "optimizer_name"]
