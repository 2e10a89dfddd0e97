"""Sizing an experiment's stimulus set to a time budget, from the model's arithmetic.

A stimulus grid that is right for a 5-layer network at 64 px (thousands of
gratings in a second) takes minutes through a ResNet or a ViT at 224 px. The
experiments therefore size their default grids to a time budget:

1. :func:`forward_flops` counts the floating-point operations of ONE
   stimulus's forward pass up to the last unit recorded (the pass stops
   there, as the experiments' recordings do), with
   :class:`torch.utils.flop_counter.FlopCounterMode`;
2. :func:`seconds_per_stimulus` turns them into seconds with a nominal
   throughput for the device kind (:data:`THROUGHPUT`: a 2-core laptop CPU,
   a GPU) plus a per-pixel cost for making and moving the stimulus;
3. :func:`fit` takes the largest grid of a ladder (largest first) whose
   count x seconds per stimulus fits the budget; the smallest grid when none
   does (and says so).

The estimate is computed, not timed: the same call picks the same grid on
every machine of a device kind, whatever else the machine is doing, and the
choice is recorded with the result. Explicit grid arguments always win.

Example
-------
>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU())
>>> flops = forward_flops(net, ["1"], torch.rand(1, 3, 16, 16))
>>> flops == 2 * 8 * 14 * 14 * 3 * 3 * 3
True
>>> fit([(4, 4), (2, 2)], lambda g: g[0] * g[1], seconds=0.5, budget=4.0)
((2, 2), True)
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..plan import Plan, plan_for
from ..units import Unit
from .runs import as_units

#: Nominal floating-point operations per second of a batched forward pass, per device kind. The CPU value is
#: what 2 cores of a laptop reach on convolutions (float32, large batches); measured, it is conservative.
THROUGHPUT = {"cpu": 4e10, "cuda": 2e12, "mps": 2e11}
#: Seconds per input value (pixel x channel) to make a stimulus, move it and run the cheap ops the count skips.
SECONDS_PER_VALUE = 2e-8
#: Default time budget of an experiment's stimulus set (seconds of forward passes).
DEFAULT_BUDGET = 8.0


def forward_flops(model: nn.Module, units: Sequence[Any], example: torch.Tensor | None = None,
                  plan: Plan | None = None) -> float:
    """FLOPs of one forward pass of ``example`` (1, C, H, W), stopped after the last of ``units`` is computed.

    Counted by :class:`torch.utils.flop_counter.FlopCounterMode` (matrix
    products and convolutions, 2 per multiply-add) during the one survey of
    ``plan`` (the call's :class:`~insilico.plan.Plan`; default one surveying
    ``example``): :meth:`Plan.flops <insilico.plan.Plan.flops>`. Elementwise
    ops are not counted (:data:`SECONDS_PER_VALUE` stands in for them).
    """
    plan = plan_for(model, plan, example, flops=True)
    return plan.flops([Unit(u.module, u.step, None, u.output) for u in as_units(list(units))])


def seconds_per_stimulus(model: nn.Module, units: Sequence[Any], example: torch.Tensor | None = None,
                         plan: Plan | None = None) -> dict:
    """Estimated seconds per stimulus: ``{"seconds", "flops", "device"}`` (see the module docstring)."""
    plan = plan_for(model, plan, example, flops=True)
    flops = forward_flops(model, units, plan=plan)
    device = next((p.device.type for p in model.parameters()), "cpu")
    rate = THROUGHPUT.get(device, THROUGHPUT["cpu"])
    seconds = flops / rate + plan.example[:1].numel() * SECONDS_PER_VALUE
    return {"seconds": seconds, "flops": flops, "device": device}


def fit(ladder: Sequence[Any], count: Callable[[Any], int], seconds: float, budget: float) -> tuple[Any, bool]:
    """The first (largest) entry of ``ladder`` whose ``count(entry) * seconds`` is within ``budget``.

    Returns ``(entry, fits)``; when none fits, the last (smallest) entry and False.
    """
    if not ladder:
        raise ValueError("the ladder of grids is empty")
    if not (budget > 0 and math.isfinite(budget)):
        raise ValueError(f"the time budget must be a positive number of seconds, not {budget!r}")
    for entry in ladder:
        if count(entry) * seconds <= budget:
            return entry, True
    return ladder[-1], False


__all__ = ["DEFAULT_BUDGET", "THROUGHPUT", "SECONDS_PER_VALUE", "forward_flops", "seconds_per_stimulus", "fit"]
