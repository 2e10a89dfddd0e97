"""Learning rules: backpropagation, and feedback alignment (Lillicrap et al. 2016).

Feedback alignment sends the error backwards through FIXED RANDOM matrices
instead of the transposed forward weights. For a linear layer ``y = x W^T + b``
(``W`` of shape (out, in)) backpropagation gives ``dL/dx = dL/dy @ W``;
feedback alignment gives ``dL/dx = dL/dy @ B`` with ``B`` a random matrix of
``W``'s shape drawn once and never trained. The weights' own gradients
(``dL/dW = dL/dy^T x``, ``dL/db = sum dL/dy``) are the ordinary ones, so every
layer still descends its local gradient; only the signal sent to the layers
below is random. A convolution is the same with ``B`` a random kernel of the
weight's shape (its transposed convolution carries the error down).

Why by hand: neither torch nor a well-kept library ships the rule; it is one
custom ``torch.autograd.Function`` per layer kind. Layers other than linear and
convolution (normalisation, pooling, activations) pass the error back exactly.

Example
-------
>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 2))
>>> net = feedback_alignment(net, seed=0)
>>> type(net[0]).__name__, tuple(net[0].feedback.shape)
('FALinear', (2, 3))
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InsilicoError
from ..seeding import derive_seed, generator

#: The learning rules a :class:`~insilico.lab.Variant` names.
RULES = ("backprop", "feedback_alignment")


class _LinearFA(torch.autograd.Function):
    """``x W^T + b`` whose backward sends ``grad_output @ B`` to the input (B fixed and random)."""

    @staticmethod
    def forward(ctx, x, weight, bias, feedback):
        ctx.save_for_backward(x, weight, bias, feedback)
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight, bias, feedback = ctx.saved_tensors
        grad_x = grad @ feedback if ctx.needs_input_grad[0] else None
        flat_g, flat_x = grad.reshape(-1, grad.shape[-1]), x.reshape(-1, x.shape[-1])
        grad_w = flat_g.T @ flat_x if ctx.needs_input_grad[1] else None
        grad_b = flat_g.sum(0) if bias is not None and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None


class _Conv2dFA(torch.autograd.Function):
    """A 2-d convolution whose backward carries the error down through the random kernel ``B``."""

    @staticmethod
    def forward(ctx, x, weight, bias, feedback, stride, padding, dilation, groups):
        ctx.save_for_backward(x, weight, bias, feedback)
        ctx.conf = (stride, padding, dilation, groups)
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad):
        x, weight, bias, feedback = ctx.saved_tensors
        conf = ctx.conf
        grad_x = torch.nn.grad.conv2d_input(x.shape, feedback, grad, *conf) if ctx.needs_input_grad[0] else None
        grad_w = torch.nn.grad.conv2d_weight(x, weight.shape, grad, *conf) if ctx.needs_input_grad[1] else None
        grad_b = grad.sum((0, 2, 3)) if bias is not None and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None, None, None, None, None


class FALinear(nn.Linear):
    """``nn.Linear`` trained by feedback alignment: buffer ``feedback`` (out, in) is the fixed backward matrix."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _LinearFA.apply(x, self.weight, self.bias, self.feedback)


class FAConv2d(nn.Conv2d):
    """``nn.Conv2d`` (zero padding) trained by feedback alignment: buffer ``feedback`` is the fixed backward kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Conv2dFA.apply(x, self.weight, self.bias, self.feedback, self.stride, self.padding, self.dilation,
                               self.groups)


def _swap(old: nn.Module, kind: type, feedback: torch.Tensor) -> nn.Module:
    """A ``kind`` module holding ``old``'s very parameters (same names, so addresses and state keys stay)."""
    new = kind.__new__(kind)
    new.__dict__.update(old.__dict__)
    new._parameters = dict(old._parameters)
    new._buffers = dict(old._buffers)
    new._modules = dict(old._modules)
    new.register_buffer("feedback", feedback)
    return new


def feedback_alignment(model: nn.Module, seed: int = 0, scale: float = 1.0) -> nn.Module:
    """Put every ``nn.Linear`` and ``nn.Conv2d`` of ``model`` on feedback alignment, in place; returns ``model``.

    Each layer gets a buffer ``feedback`` of its weight's shape, drawn uniformly from
    ``[-s, s]`` with ``s = scale / sqrt(fan_in)`` (the scale of torch's default init) from a generator
    seeded with ``derive_seed(seed, address)``, so a layer's matrix depends only on the seed and its
    address. Module addresses and parameter names are unchanged.

    Raises
    ------
    InsilicoError
        A convolution with non-zero padding mode other than ``"zeros"`` (its backward is not written), or
        a model with no linear or convolution layer.
    """
    swapped = 0
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            address = f"{name}.{child_name}" if name else child_name
            if type(child) is nn.Linear:
                kind = FALinear
            elif type(child) is nn.Conv2d:
                if child.padding_mode != "zeros" or isinstance(child.padding, str):
                    raise InsilicoError(f"feedback alignment: {address} uses padding {child.padding!r} / mode "
                                        f"{child.padding_mode!r}; only numeric zero padding is supported")
                kind = FAConv2d
            else:
                continue
            w = child.weight
            bound = scale / math.sqrt(w[0].numel())
            gen = generator(derive_seed(seed, address))
            feedback = (torch.rand(w.shape, generator=gen) * 2 - 1).mul_(bound).to(w.device, w.dtype)
            setattr(module, child_name, _swap(child, kind, feedback))
            swapped += 1
    if not swapped:
        raise InsilicoError("feedback alignment: the model has no nn.Linear or nn.Conv2d layer to train by it")
    return model


__all__ = ["FAConv2d", "FALinear", "RULES", "feedback_alignment"]
