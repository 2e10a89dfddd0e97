"""Population control (Bashivan, Kar & DiCarlo 2019): the objective that drives one target of a predicted population.

``mode="stretch"`` maximizes the target's (standardised) predicted response;
``mode="one_hot"`` maximizes its softmax-style control score

``control_k = z_k - T * log mean_{j != k} exp(z_j / T)``

(:func:`control_score`), where ``z`` standardises each target's response by
its statistics over natural images and the temperature ``T`` moves the score
from "above the mean of the others" (large T) to "above the strongest other"
(small T). The tool that synthesizes with it is
:func:`insilico.design.population_control.population_control`.

Example
-------
>>> import torch
>>> objective = PopulationControl([0, 1], mode="one_hot")
>>> objective({"": torch.tensor([[3.0, 0.0, 0.0], [1.0, 1.0, 1.0]])}).tolist()
[3.0, 0.0]
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from ..errors import InsilicoError
from ..units import Unit
from .core import Objective

#: The control modes: push the target up ("stretch"), or up and the others down ("one_hot").
MODES = ("stretch", "one_hot")


def control_score(responses: torch.Tensor, targets: torch.Tensor, mean=None, std=None,
                  temperature: float = 1.0) -> torch.Tensor:
    """One-hot control score of each row's target: ``z_k - T log mean_{j != k} exp(z_j / T)``.

    Parameters
    ----------
    responses : tensor (N, n_targets)
    targets : tensor (N,) of int
        The target of each row.
    mean, std : tensor (n_targets,), optional
        Standardisation of each target (its statistics over natural images); default none.
    temperature : float
        Softness of the maximum over the other targets (default 1).

    Example
    -------
    >>> r = torch.tensor([[3.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    >>> control_score(r, torch.tensor([0, 1]), temperature=1.0).tolist()
    [3.0, 0.0]
    """
    z = responses
    if mean is not None:
        z = z - torch.as_tensor(mean, device=z.device, dtype=z.dtype)
    if std is not None:
        z = z / torch.as_tensor(std, device=z.device, dtype=z.dtype)
    n_targets = z.shape[1]
    if n_targets < 2:
        raise InsilicoError("a one-hot control score needs at least 2 targets")
    t = torch.as_tensor(targets, device=z.device).long().view(-1, 1)
    own = z.gather(1, t)[:, 0]
    mask = torch.zeros_like(z, dtype=torch.bool).scatter_(1, t, True)
    others = (z / temperature).masked_fill(mask, float("-inf"))
    soft_max = temperature * (torch.logsumexp(others, dim=1) - math.log(n_targets - 1))
    return own - soft_max


class PopulationControl(Objective):
    """Per-sample control of one target of a predictor's output (``unit``, default the model output ``""``).

    ``mode="stretch"``: the target's standardised response; ``"one_hot"``:
    :func:`control_score`. Sample ``i`` controls ``targets[i]``.
    """

    def __init__(self, targets: Sequence[int] | torch.Tensor, mode: str = "stretch", mean=None, std=None,
                 temperature: float = 1.0, unit: str = ""):
        if mode not in MODES:
            raise InsilicoError(f"mode must be one of {MODES}, not {mode!r}")
        self.targets = torch.as_tensor(targets).long().reshape(-1)
        self.mode, self.temperature = mode, float(temperature)
        self.mean = None if mean is None else torch.as_tensor(mean).detach()
        self.std = None if std is None else torch.as_tensor(std).detach()
        self.unit = Unit.parse(unit)
        self.units = (self.unit,)

    def forward(self, acts, images):
        r = acts[self.unit]
        if r.ndim != 2:
            raise InsilicoError(f"population control needs (N, n_targets) responses; {self.unit!s} gives "
                                f"{tuple(r.shape)}")
        t = self.targets.to(r.device)
        if self.mode == "one_hot":
            return control_score(r, t, self.mean, self.std, self.temperature)
        own = r.gather(1, t.view(-1, 1))[:, 0]
        if self.mean is not None:
            own = own - self.mean.to(r.device, r.dtype)[t]
        if self.std is not None:
            own = own / self.std.to(r.device, r.dtype)[t]
        return own

    def subset(self, rows: torch.Tensor) -> PopulationControl:
        return PopulationControl(self.targets[rows.cpu()], self.mode, self.mean, self.std, self.temperature,
                                 str(self.unit))

    def __repr__(self) -> str:
        return f"PopulationControl({self.mode}, {len(self.targets)} targets, T={self.temperature})"


__all__ = ["MODES", "PopulationControl", "control_score"]
