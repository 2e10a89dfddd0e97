"""Learning-rate schedules of the synthesis engine: a factor of the base rate against the step.

A schedule is a name or any function ``step -> factor``; the engine sets each
step's rate to ``lr * factor(step)``.

=============== ================================================================
``"constant"``  1 at every step (default)
``"cosine"``    ``(1 + cos(pi * step / total)) / 2``: from 1 down to 0 over ``total`` steps
``"linear"``    ``1 - step / total``: from 1 down to 0 over ``total`` steps
:class:`Halving` ``factor ** (step // stage_steps)``: constant stages, each half the
                last (metamers with Adam, as Feather et al.)
=============== ================================================================

Example
-------
>>> [round(lr_factor("cosine", s, 4), 3) for s in range(5)]
[1.0, 0.854, 0.5, 0.146, 0.0]
>>> [Halving(10)(s) for s in (0, 9, 10, 25)]
[1.0, 1.0, 0.5, 0.25]
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

SCHEDULES = ("constant", "cosine", "linear")


def lr_factor(schedule: str | Callable[[int], float], step: int, total: int) -> float:
    """The factor of the base learning rate at ``step`` (0-based) of a schedule over ``total`` steps."""
    if callable(schedule):
        return float(schedule(step))
    progress = min(step / max(1, total), 1.0)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "linear":
        return 1.0 - progress
    return 1.0


@dataclasses.dataclass(frozen=True)
class Halving:
    """Learning-rate factor ``factor ** (step // stage_steps)``: stages of constant rate, each half the last.

    Example
    -------
    >>> [Halving(10)(s) for s in (0, 9, 10, 25)]
    [1.0, 1.0, 0.5, 0.25]
    """

    stage_steps: int
    factor: float = 0.5

    def __call__(self, step: int) -> float:
        return float(self.factor ** (int(step) // max(1, int(self.stage_steps))))


__all__ = ["Halving", "SCHEDULES", "lr_factor"]
