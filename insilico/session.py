"""One session for every tool: eval mode, grad mode, device and dtype, restored exactly afterwards.

Every tool in insilico runs the model(s) inside :func:`session`. On entry it
puts every module in eval mode (BatchNorm statistics never move, dropout is
off) and stops gradients to the parameters; on exit, also after an exception
or a KeyboardInterrupt, every module gets its *own* ``training`` flag back and
every parameter its own ``requires_grad`` (a frozen BatchNorm inside a
training model stays frozen: ``model.train(was)`` would unfreeze it). Inside,
gradients with respect to the inputs work whatever the caller's grad mode
(``grad=True`` enables them under an outer ``torch.no_grad()``), or are off
(``grad=False``, the default for recording).

The model's device and dtype are the device and dtype: :func:`device_of` and
:func:`dtype_of` read them, :meth:`Session.inputs` moves stimuli there.

Example
-------
>>> import torch
>>> from torch import nn
>>> m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
>>> _ = m.train(); _ = m[1].eval()           # fine-tuning with a frozen BatchNorm
>>> with torch.no_grad(), session(m, grad=True) as s:
...     x = s.inputs(torch.rand(2, 3, 8, 8)).requires_grad_()
...     m(x).sum().backward()
...     (m.training, m[0].weight.grad is None, x.grad is not None)
(False, True, True)
>>> m.training, m[1].training, m[0].weight.requires_grad
(True, False, True)
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from .errors import InsilicoError
from .performance import kernels_for


def device_of(model: nn.Module) -> torch.device:
    """The model's device: of its first parameter or buffer (CPU if it has none)."""
    for tensor in _tensors(model):
        return tensor.device
    return torch.device("cpu")


def dtype_of(model: nn.Module) -> torch.dtype:
    """The model's floating dtype: of its first floating parameter or buffer (float32 if none)."""
    for tensor in _tensors(model):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def result_dtype(dtype: torch.dtype) -> torch.dtype:
    """The floating dtype a tool's results keep for values of ``dtype``: float64 stays float64 (float64 in,
    float64 out); anything else (float16, bfloat16, float32, integers) is float32, which numpy and the
    statistics downstream take.

    Example
    -------
    >>> result_dtype(torch.float64), result_dtype(torch.bfloat16), result_dtype(torch.float32)
    (torch.float64, torch.float32, torch.float32)
    """
    return torch.float64 if dtype == torch.float64 else torch.float32


class Session:
    """What :func:`session` yields: the models, their device and dtype, and a way to move inputs there."""

    def __init__(self, models: tuple[nn.Module, ...]):
        self.models = models
        self.device = device_of(models[0])
        self.dtype = dtype_of(models[0])

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` on the model's device; floating tensors also in the model's dtype.

        A tensor made under ``torch.inference_mode()`` is copied into a normal one (autograd refuses
        inference tensors), so gradient tools take stimuli made anywhere.
        """
        x = x.to(self.device, self.dtype) if x.is_floating_point() else x.to(self.device)
        return x.clone() if x.is_inference() else x


@contextlib.contextmanager
def session(*models: nn.Module, grad: bool = False) -> Iterator[Session]:
    """Run ``models`` in eval mode with frozen parameters; restore every module's and parameter's own flags.

    Parameters
    ----------
    *models : nn.Module
        One or more models (a predictor and its trunk, two models to adjudicate).
    grad : bool
        True: gradients with respect to inputs are enabled inside, even under
        an outer ``torch.no_grad()`` (gradient maps, synthesis). False
        (default): no autograd graph at all (recording, evaluation).

    Yields
    ------
    Session
        ``.device``, ``.dtype`` (of the first model) and ``.inputs(x)``.

    Raises
    ------
    InsilicoError
        When given no model or something that is not an ``nn.Module``.
    """
    if not models:
        raise InsilicoError("session needs at least one model")
    for model in models:
        if not isinstance(model, nn.Module):
            raise InsilicoError(f"a model must be a torch.nn.Module, got {type(model).__name__}")
    modules = list(dict.fromkeys(m for model in models for m in model.modules()))
    # model.parameters() in its order, from the modules at hand (a second traversal costs as much as a small pass)
    params = list(dict.fromkeys(p for m in modules for p in m._parameters.values() if p is not None))
    modes = [m.training for m in modules]
    flags = [p.requires_grad for p in params]
    try:
        for module in modules:
            _set_training(module, False)
        for p in params:
            p.requires_grad_(False)
        with torch.set_grad_enabled(grad), torch.inference_mode(False), kernels_for(dtype_of(models[0]),
                                                                                    device_of(models[0])):
            yield Session(models)
    finally:
        for module, mode in zip(modules, modes):
            _set_training(module, mode)
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def _set_training(module: nn.Module, mode: bool) -> None:
    """``module.training = mode``; past ``nn.Module.__setattr__``'s checks for parameters, buffers and modules
    (a bool is none of them, and they cost more than a small model's pass on thousands of modules) unless the
    module's class has its own ``__setattr__``."""
    if type(module).__setattr__ is nn.Module.__setattr__:
        object.__setattr__(module, "training", mode)
    else:
        module.training = mode


def _tensors(module: nn.Module):
    yield from module.parameters()
    yield from module.buffers()


__all__ = ["Session", "device_of", "dtype_of", "result_dtype", "session"]
