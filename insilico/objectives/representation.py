"""The representation distance: how far each sample's units are from target representations (metamers).

``value[n] = sum_l w[n, l] * (|a_l[n] - t_l[n]| / |t_l[n]|) ** p``, the
relative Euclidean error at one or more units, weighted per sample; the loss
:func:`insilico.metamer` minimises (Freeman & Simoncelli 2011; Feather et al.
2019, 2023), usable with any synthesis (``goal="minimize"``).

Example
-------
>>> import torch
>>> d = RepresentationDistance({"fc": torch.tensor([[3.0, 4.0]])})
>>> d({"fc": torch.tensor([[3.0, 4.5]])}).tolist()
[0.10000000149011612]
"""
from __future__ import annotations

import copy
from typing import Mapping

import torch

from ..errors import InsilicoError
from ..units import Unit
from .core import Activations, Objective


class RepresentationDistance(Objective):
    """Per-sample weighted relative distance to target representations at one or more layers.

    ``value[n] = sum_l weights[n, l] * (|a_l[n] - targets_l[n]| / |targets_l[n]|) ** power``
    with ``|.|`` the Euclidean norm over the unit's values.

    Parameters
    ----------
    targets : dict {unit address: tensor (N, ...)}
        The representation to match at each unit, one row per sample.
    weights : tensor (N, L), optional
        Weight of each of the ``L`` units for each sample (default: 1/L each).
    power : float
        1 (the relative error; default) or 2 (its square: smooth, for L-BFGS).

    Example
    -------
    >>> import torch
    >>> d = RepresentationDistance({"fc": torch.tensor([[3.0, 4.0]])})
    >>> d({"fc": torch.tensor([[3.0, 4.5]])}).tolist()
    [0.10000000149011612]
    """

    def __init__(self, targets: Mapping[str, torch.Tensor], weights: torch.Tensor | None = None, power: float = 1.0):
        if not targets:
            raise InsilicoError("RepresentationDistance needs at least one target: {unit: tensor (N, ...)}")
        self.layers = [Unit.parse(u) for u in targets]
        self.units = tuple(self.layers)
        self.targets = [t.detach() for t in targets.values()]
        n = self.targets[0].shape[0]
        if any(t.shape[0] != n for t in self.targets):
            raise InsilicoError("every target needs the same number of rows (one per sample)")
        for unit, t in zip(self.layers, self.targets):
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise InsilicoError(f"the target representation at {unit} contains NaN or inf: every distance to it "
                                    "would be NaN; record it from finite images (the references pass the image gate)")
        self.norms = [t.reshape(n, -1).norm(dim=1) for t in self.targets]
        weights = torch.full((n, len(self.layers)), 1.0 / len(self.layers)) if weights is None else weights
        self.set_weights(weights)
        self.power = float(power)

    def set_weights(self, weights: torch.Tensor) -> None:
        """Change the weights (N, L) (e.g. between coarse-to-fine stages)."""
        weights = torch.as_tensor(weights, dtype=torch.float32)
        if tuple(weights.shape) != (self.targets[0].shape[0], len(self.layers)):
            raise InsilicoError(f"weights must be (N, L) = {(self.targets[0].shape[0], len(self.layers))}, "
                                f"got {tuple(weights.shape)}")
        for l, norm in enumerate(self.norms):
            dead = (weights[:, l] > 0) & (norm.cpu() == 0)
            if bool(dead.any()):
                rows = dead.nonzero().flatten().tolist()
                raise InsilicoError(
                    f"the reference of sample(s) {rows} gives an all-zero representation at {self.layers[l]}: "
                    "the relative distance is undefined there; match another layer (e.g. before the ReLU)")
        self.weights = weights

    def layer_errors(self, acts: Activations) -> torch.Tensor:
        """Relative errors (N, L) at every unit."""
        columns = []
        for unit, target, norm in zip(self.layers, self.targets, self.norms):
            a = acts[unit]
            target, norm = target.to(a.device, a.dtype), norm.to(a.device, a.dtype)
            columns.append((a - target).reshape(a.shape[0], -1).norm(dim=1) / norm.clamp_min(1e-30))
        return torch.stack(columns, dim=1)

    def subset(self, rows: torch.Tensor) -> RepresentationDistance:
        """The distance for the samples ``rows`` only (their targets and weights)."""
        cut = copy.copy(self)
        cut.targets = [t.index_select(0, rows.to(t.device)) for t in self.targets]
        cut.norms = [n.index_select(0, rows.to(n.device)) for n in self.norms]
        cut.weights = self.weights.index_select(0, rows.to(self.weights.device))
        return cut

    def forward(self, acts, images):
        errors = self.layer_errors(acts)
        weights = self.weights.to(errors.device, errors.dtype)
        return (weights * errors.pow(self.power)).sum(dim=1)

    def __repr__(self) -> str:
        return f"RepresentationDistance({[str(u) for u in self.layers]}, power={self.power:g})"


__all__ = ["RepresentationDistance"]
