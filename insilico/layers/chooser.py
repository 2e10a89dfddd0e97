"""The one layer chooser: "which layers" of a model, by named kind, in call order.

Tools that default to "every layer" (metamer validity, the gallery, receptive
field sizes, the CLI) ask :func:`choose_layers` with a kind instead of keeping
a rule of their own:

============= ===============================================================
kind          modules (the lists of :mod:`insilico.layers.modules`)
============= ===============================================================
"weights"     every module with parameters of its own (conv, linear, norm, ...)
"conv_linear" Conv1d/2d/3d and Linear modules (the units of a network figure)
"conv"        Conv1d/2d/3d modules
"spatial"     Conv2d and 2-d pooling modules (units with a receptive field)
"local"       "spatial" without the adaptive pools (a local receptive field)
"activations" nonlinearity modules (ReLU, GELU, timm's GELUTanh, ...)
============= ===============================================================

Layers come in the order of their first call in one surveyed forward pass
(:meth:`insilico.Probe.survey`); modules that never run are left out. A module
called T times per pass (recurrence) is named at one call: ``step="last"``
(default, ``@T-1``) or ``"first"`` (``@0``), or by its path alone
(``step="every"``: a lesion or stimulation then acts at every call).

Example
-------
>>> import torch
>>> m = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.ReLU(),
...                         torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(18, 3))
>>> x = torch.rand(1, 1, 8, 8)
>>> choose_layers(m, x, "weights"), choose_layers(m, x, "conv_linear"), choose_layers(m, x, "spatial")
(['0', '1', '5'], ['0', '5'], ['0', '3'])
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ..errors import InsilicoError
from ..probe import Probe
from ..session import device_of, dtype_of
from ..survey import Survey
from .families import family_at
from .layout import LAYOUTS, layout_of
from .modules import CONV, LOCAL, SPATIAL, is_activation, is_conv_linear

KINDS: dict[str, Callable[[nn.Module], bool]] = {
    "weights": lambda m: any(True for _ in m.parameters(recurse=False)),
    "conv_linear": is_conv_linear,
    "conv": lambda m: isinstance(m, CONV),
    "spatial": lambda m: isinstance(m, SPATIAL),
    "local": lambda m: isinstance(m, LOCAL),
    "activations": is_activation,
}
STEPS = ("last", "first", "every")


def choose_layers(model: nn.Module, example: Any = None, kind: str = "weights", step: str = "last",
                  layouts: tuple[str, ...] | None = None) -> list[str]:
    """Unit addresses of the layers of ``kind`` that run on ``example``, in call order.

    Parameters
    ----------
    model : nn.Module
    example : tensor, Survey, (C, H, W) or None
        One input batch (e.g. ``(1, C, H, W)``) to survey the model with, a
        :class:`~insilico.survey.Survey` made already, one image's shape (a
        gray image of it), or None: a gray image of ``model.input_size``.
    kind : {"weights", "conv_linear", "conv", "spatial", "local", "activations"}
        Which modules count as layers (see the module docstring).
    step : {"last", "first", "every"}
        The call that names a module called several times per pass
        (``"every"``: its path alone).
    layouts : tuple of str, optional
        Keep only the layers whose output has one of these layouts
        (:func:`~insilico.layers.layout.layout_of`, with the model's family):
        ``("map", "vector")`` leaves out token and channels-last layers.

    Raises
    ------
    InsilicoError
        Unknown kind, step or layout, no example and no ``model.input_size``,
        or no module of that kind (and layout) ran.
    """
    if kind not in KINDS:
        raise InsilicoError(f"layer kind must be one of {tuple(KINDS)}, not {kind!r}")
    if step not in STEPS:
        raise InsilicoError(f"step must be one of {STEPS}, not {step!r}")
    if layouts is not None and not set(layouts) <= set(LAYOUTS):
        raise InsilicoError(f"layouts must be among {LAYOUTS}, not {tuple(layouts)!r}")
    modules = dict(model.named_modules())
    wanted = [name for name, module in modules.items() if name and KINDS[kind](module)]
    if isinstance(example, Survey):
        survey = example
    else:
        survey = Probe(model).survey(_example(model, example), modules=wanted)
    layers = [name for name in survey.modules() if name in set(wanted)]
    if layouts is not None:
        last = {c.module: c.shape for c in survey}
        layers = [n for n in layers
                  if last[n] is not None and layout_of(last[n], modules[n], family_at(model, n)) in layouts]
    if not layers:
        what = f"{kind!r} layer" + (f" with a {' or '.join(layouts)} output" if layouts is not None else "")
        raise InsilicoError(f"{type(model).__name__} has no {what} that runs in its forward pass; "
                            "name the layers explicitly")
    if step == "every":
        return layers
    return [survey.address(name, -1 if step == "last" else 0) for name in layers]


def _example(model: nn.Module, example: Any) -> Any:
    if example is None:
        shape = getattr(model, "input_size", None)
        if shape is None:
            raise InsilicoError(f"{type(model).__name__} has no input_size attribute: pass an example batch "
                                "(1, C, H, W) or its shape (C, H, W) to choose layers, or set model.input_size")
        return example_input(model, shape)
    if isinstance(example, (tuple, list)) and example and all(isinstance(v, int) for v in example):
        return example_input(model, example)
    return example


def example_input(model: nn.Module, shape, fill: float = 0.5) -> torch.Tensor:
    """A gray batch of one image ``(1, *shape)`` on the model's device and dtype, for surveys."""
    return torch.full((1, *shape), fill, device=device_of(model), dtype=dtype_of(model))


__all__ = ["KINDS", "STEPS", "choose_layers", "example_input"]
