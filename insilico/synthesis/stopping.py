"""Stopping rules: small pure functions that say, per sample, whether to stop.

One contract for every rule::

    rule(trace, state) -> BoolTensor (N,)

``trace`` is the objective's values so far, ``(T, N)`` (row ``t`` = step
``t``, on the synthesis device; samples already stopped hold NaN after their
last step); ``state`` is a :class:`StopState` with the step count, the goal
(+1 maximize, -1 minimize) and the last step's largest pixel change per
sample. A rule returns True for the samples that should stop now. Rules work
on device tensors and never call ``.item()``, so checking them does not force
a GPU synchronisation.

The engine freezes each sample the first time any rule fires for it, and
reports which rule did (``result.stop_reasons``). Running out of the step
budget of ``run(steps=...)`` is reported as ``"steps"``.

Rules are frozen dataclasses (so their settings can be saved as JSON); any
function with the same contract works too.

Example
-------
>>> import torch
>>> trace = torch.tensor([[0.0, 0.0], [1.0, 5.0], [2.0, 9.0]])
>>> state = StopState(step=3, goal=1.0, pixel_change=torch.zeros(2))
>>> TargetReached(8.0)(trace, state).tolist()
[False, True]
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch

Rule = Callable[[torch.Tensor, "StopState"], torch.Tensor]


@dataclasses.dataclass
class StopState:
    """What a rule may look at besides the trace.

    Attributes
    ----------
    step : int
        Updates made so far (the values in ``trace[-1]`` are those of the
        images after ``step`` updates).
    goal : float
        +1.0 when the objective is maximized, -1.0 when minimized.
    pixel_change : tensor (N,)
        Largest absolute pixel change of each sample in the last step.
    """

    step: int
    goal: float
    pixel_change: torch.Tensor


@dataclasses.dataclass(frozen=True)
class MaxSteps:
    """Stop every sample after ``steps`` steps in total (counting earlier runs)."""

    steps: int

    def __call__(self, trace: torch.Tensor, state: StopState) -> torch.Tensor:
        return torch.full((trace.shape[1],), state.step >= self.steps, dtype=torch.bool, device=trace.device)


@dataclasses.dataclass(frozen=True)
class TargetReached:
    """Stop a sample once its latest objective value reaches ``target`` (>= when maximizing, <= when minimizing)."""

    target: float

    def __call__(self, trace: torch.Tensor, state: StopState) -> torch.Tensor:
        return state.goal * trace[-1] >= state.goal * self.target


@dataclasses.dataclass(frozen=True)
class Plateau:
    """Stop a sample when the mean objective of the last ``window`` steps improved by less than ``tol``.

    Compares the means of the last two windows of ``window`` steps (means,
    because random transforms make single values noisy). ``relative=True``
    (default) measures the improvement relative to the older window's
    magnitude. Needs ``2 * window`` steps before it can fire.

    Parameters
    ----------
    tol : float
        Default 1e-3.
    window : int
        Default 32.
    relative : bool
        Default True.
    """

    tol: float = 1e-3
    window: int = 32
    relative: bool = True

    def __call__(self, trace: torch.Tensor, state: StopState) -> torch.Tensor:
        if trace.shape[0] < 2 * self.window:
            return torch.zeros(trace.shape[1], dtype=torch.bool, device=trace.device)
        recent = trace[-self.window:].mean(dim=0)
        older = trace[-2 * self.window: -self.window].mean(dim=0)
        gain = state.goal * (recent - older)
        if self.relative:
            gain = gain / older.abs().clamp_min(1e-12)
        return gain < self.tol


@dataclasses.dataclass(frozen=True)
class PixelChange:
    """Stop a sample when no pixel changed by more than ``tol`` in the last step (default 1e-4)."""

    tol: float = 1e-4

    def __call__(self, trace: torch.Tensor, state: StopState) -> torch.Tensor:
        return state.pixel_change <= self.tol


def rule_name(rule: Rule) -> str:
    """How a rule is reported: its class name in snake case, or a function's ``__name__``."""
    if dataclasses.is_dataclass(rule):
        name = type(rule).__name__
        return "".join("_" + ch.lower() if ch.isupper() else ch for ch in name).lstrip("_")
    return getattr(rule, "__name__", type(rule).__name__)


def rule_spec(rule: Rule) -> dict:
    """JSON-able description of a rule."""
    if dataclasses.is_dataclass(rule):
        return {"rule": type(rule).__name__, **dataclasses.asdict(rule)}
    return {"rule": rule_name(rule)}


RULES = {cls.__name__: cls for cls in (MaxSteps, TargetReached, Plateau, PixelChange)}


def from_spec(spec: dict) -> Rule:
    """A built-in rule back from :func:`rule_spec` (custom functions cannot be rebuilt)."""
    spec = dict(spec)
    name = spec.pop("rule")
    if name not in RULES:
        from ..errors import InsilicoError

        raise InsilicoError(f"stopping rule {name!r} is not built in; pass it again with stop=[...]")
    return RULES[name](**spec)


__all__ = ["MaxSteps", "PixelChange", "Plateau", "Rule", "StopState", "TargetReached", "from_spec", "rule_name",
           "rule_spec"]
