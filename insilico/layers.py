"""The one layer chooser: "which layers" of a model, by named kind, in call order.

Tools that default to "every layer" (metamer validity, the gallery, receptive
field sizes, the CLI) ask :func:`choose_layers` with a kind instead of keeping
a rule of their own:

============= ===============================================================
kind          modules
============= ===============================================================
"weights"     every module with parameters of its own (conv, linear, norm, ...)
"conv_linear" Conv1d/2d/3d and Linear modules (the units of a network figure)
"spatial"     Conv2d and 2-d pooling modules (units with a receptive field)
============= ===============================================================

Layers come in the order of their first call in one surveyed forward pass
(:meth:`insilico.Probe.survey`); modules that never run are left out. A module
called T times per pass (recurrence) is named at one call: ``step="last"``
(default, ``@T-1``) or ``"first"`` (``@0``).

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

from .errors import InsilicoError
from .survey import Survey

_CONV_LINEAR = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_SPATIAL = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)

KINDS: dict[str, Callable[[nn.Module], bool]] = {
    "weights": lambda m: any(True for _ in m.parameters(recurse=False)),
    "conv_linear": lambda m: isinstance(m, _CONV_LINEAR),
    "spatial": lambda m: isinstance(m, _SPATIAL),
}


def choose_layers(model: nn.Module, example: Any, kind: str = "weights", step: str = "last") -> list[str]:
    """Unit addresses of the layers of ``kind`` that run on ``example``, in call order.

    Parameters
    ----------
    model : nn.Module
    example : tensor or Survey
        One input batch (e.g. ``(1, C, H, W)``) to survey the model with, or
        a :class:`~insilico.survey.Survey` made already.
    kind : {"weights", "conv_linear", "spatial"}
        Which modules count as layers (see the module docstring).
    step : {"last", "first"}
        The call that names a module called several times per pass.

    Raises
    ------
    InsilicoError
        Unknown kind or step, or no module of that kind ran.
    """
    if kind not in KINDS:
        raise InsilicoError(f"layer kind must be one of {tuple(KINDS)}, not {kind!r}")
    if step not in ("last", "first"):
        raise InsilicoError(f"step must be 'last' or 'first', not {step!r}")
    modules = dict(model.named_modules())
    wanted = [name for name, module in modules.items() if name and KINDS[kind](module)]
    if isinstance(example, Survey):
        survey = example
    else:
        from .probe import Probe

        survey = Probe(model).survey(example, modules=wanted)
    layers = [name for name in survey.modules() if name in set(wanted)]
    if not layers:
        raise InsilicoError(f"{type(model).__name__} has no {kind!r} layer that runs in its forward pass; "
                            "name the layers explicitly")
    return [survey.address(name, -1 if step == "last" else 0) for name in layers]


def example_input(model: nn.Module, shape, fill: float = 0.5) -> torch.Tensor:
    """A gray batch of one image ``(1, *shape)`` on the model's device and dtype, for surveys."""
    from .session import device_of, dtype_of

    return torch.full((1, *shape), fill, device=device_of(model), dtype=dtype_of(model))


__all__ = ["KINDS", "choose_layers", "example_input"]
