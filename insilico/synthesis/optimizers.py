"""The optimizers of the synthesis engine, by name or as a factory, and the one torch does not have.

=========== ====================================================================
``"adam"``  :class:`torch.optim.Adam` (element-wise: samples do not interact)
``"sgd"``   :class:`torch.optim.SGD` (element-wise)
``"lbfgs"`` :class:`~insilico.synthesis.lbfgs.BatchLBFGS`: one curvature history
            and one backtracking line search per sample
factory     ``(params, lr=..., **options) -> torch.optim.Optimizer``, e.g.
            ``functools.partial(SignSGD, norm="inf")``
=========== ====================================================================

:class:`SignSGD` is the PGD/FGSM update (Madry et al. 2018; Goodfellow et al.
2015): a signed-gradient step (L-infinity) or a normalised-gradient step (L2),
with one step factor per sample so that several epsilons share one run.
Written here because torch has no per-sample steepest descent and the attack
libraries (torchattacks, foolbox) inline it in their attack loops.

Example
-------
>>> import torch
>>> p = torch.nn.Parameter(torch.zeros(1, 2))
>>> opt = SignSGD([p], lr=0.5)
>>> p.grad = torch.tensor([[2.0, -3.0]])
>>> opt.step()
>>> p.tolist()
[[-0.5, 0.5]]
>>> type(make_optimizer("lbfgs", [p], 1.0)).__name__, optimizer_name(SignSGD)
('BatchLBFGS', 'SignSGD')
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..errors import InsilicoError
from .lbfgs import BatchLBFGS

#: Optimizers the engine knows by name (any other is a factory).
OPTIMIZERS = ("adam", "sgd", "lbfgs")

#: Spellings of the two norms, and the name each one means.
NORMS = {"inf": "inf", "linf": "inf", "l_inf": "inf", "∞": "inf", "l∞": "inf", "l2": "l2", "2": "l2"}


def norm_name(norm) -> str:
    """``"inf"`` or ``"l2"`` for any accepted spelling; :class:`InsilicoError` for others."""
    key = NORMS.get(str(norm).lower())
    if key is None:
        raise InsilicoError(f"norm must be 'inf' or 'l2', not {norm!r}")
    return key


class SignSGD(torch.optim.Optimizer):
    """Steepest descent under a norm: ``p -= lr * scale_i * sign(g)`` (L-inf) or ``* g / |g_i|`` (L2).

    Row ``i`` of each parameter (axis 0 = sample) has its own step factor
    ``scale[i]``, so several epsilons share one run. This is the PGD/FGSM
    update (Madry et al. 2018; Goodfellow et al. 2015).

    Parameters
    ----------
    params : iterable of tensors
        Parameters whose axis 0 is the sample, shape (N, ...).
    lr : float
        Step size (multiplied by ``scale``); must be > 0.
    norm : {"inf", "l2"}
        Sign of the gradient, or the gradient divided by its per-sample L2 norm.
    scale : tensor (N,), optional
        Per-sample step factors (default 1).

    Raises
    ------
    InsilicoError
        ``lr <= 0`` or an unknown norm.

    Example
    -------
    >>> p = torch.nn.Parameter(torch.zeros(2, 3))
    >>> opt = SignSGD([p], lr=0.1, scale=torch.tensor([1.0, 2.0]))
    >>> p.grad = torch.tensor([[1.0, -2.0, 0.0], [3.0, 4.0, -5.0]])
    >>> opt.step()
    >>> p.tolist()
    [[-0.10000000149011612, 0.10000000149011612, 0.0], [-0.20000000298023224, -0.20000000298023224, 0.20000000298023224]]
    """

    def __init__(self, params, lr: float, norm: str = "inf", scale: torch.Tensor | None = None):
        if lr <= 0:
            raise InsilicoError(f"step size must be > 0, got {lr}")
        super().__init__(params, dict(lr=float(lr), norm=norm_name(norm)))
        self.scale = scale

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group["norm"] == "inf":
                    direction = g.sign()
                else:
                    direction = g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (g.ndim - 1))
                step = group["lr"] if self.scale is None else (
                    group["lr"] * self.scale.to(p.device, p.dtype).view(-1, *[1] * (p.ndim - 1)))
                p.sub_(direction * step)
        return loss


def optimizer_name(factory: Callable) -> str:
    """A custom optimizer's name for the settings (a factory, class or functools.partial of one)."""
    return getattr(getattr(factory, "func", factory), "__name__", type(factory).__name__)


#: The largest learning rate a synthesis takes (a million times the pixel range; larger ones overflow float32
#: optimizer steps: Adam refuses lr=1e99 with a raw RuntimeError).
LR_MAX = 1e6


def make_optimizer(optimizer: str | Callable, params: Sequence[torch.Tensor], lr: float,
                   options: dict | None = None) -> torch.optim.Optimizer:
    """The optimizer named ``optimizer`` (one of ``OPTIMIZERS``) or made by the factory, for ``params``.

    Raises
    ------
    InsilicoError
        ``lr`` above :data:`LR_MAX` (or not a positive finite number).
    """
    if not 0 < float(lr) <= LR_MAX:
        raise InsilicoError(f"lr must be > 0 and <= {LR_MAX:g}, not {lr!r}: a step moves each parameter by about "
                            "lr, and the pixels span [0, 1]")
    options = dict(options or {})
    if callable(optimizer):
        return optimizer(list(params), lr=lr, **options)
    if optimizer == "adam":
        return torch.optim.Adam(list(params), lr=lr, **options)
    if optimizer == "sgd":
        return torch.optim.SGD(list(params), lr=lr, **options)
    return BatchLBFGS(list(params), lr=lr, **options)


__all__ = ["LR_MAX", "NORMS", "OPTIMIZERS", "SignSGD", "make_optimizer", "norm_name", "optimizer_name"]
