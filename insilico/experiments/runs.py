"""Running a model over stimuli for an experiment: input size, units, batched forward passes.

The experiments share three chores: finding the input size a model takes,
reading a unit address into "which values per stimulus", and running
stimuli through the model in batches under ``torch.no_grad`` with a
progress bar, recording units with a :class:`~insilico.probe.Probe` (which
owns every hook and removes it afterwards).

Example
-------
>>> import torch
>>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU())
>>> values, names = record_units(model, torch.rand(6, 1, 9, 9), ["0"], progress=False)
>>> tuple(values.shape), names[:2]
((6, 4), ['0[0,4,4]', '0[1,4,4]'])
"""
from __future__ import annotations

import contextlib
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import InsilicoError, UnitError
from ..probe import Probe
from ..recording import stimulus_source
from ..units import Unit


def input_shape(model: nn.Module, size: int | None = None, channels: int | None = None) -> tuple[int, int]:
    """``(channels, size)`` of the model's square input: from ``model.input_size`` unless given."""
    known = getattr(model, "input_size", None)
    if known is not None:
        channels = channels or int(known[0])
        size = size or int(known[-1])
    if size is None:
        raise InsilicoError(
            f"{type(model).__name__} has no input_size attribute: pass size= (the image side in pixels)"
        )
    if channels is None:
        channels = _first_conv_channels(model)
    return int(channels), int(size)


def _first_conv_channels(model: nn.Module) -> int:
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Conv1d, nn.Conv3d)):
            return int(module.in_channels)
    return 3


def as_units(units: Any) -> list[Unit]:
    """A list of Units from one address or a list of them."""
    if isinstance(units, (str, Unit)):
        units = [units]
    if not isinstance(units, Sequence) or not units:
        raise UnitError("units must be an address like 'features.0' or a non-empty list of addresses")
    return [Unit.coerce(u) for u in units]


@contextlib.contextmanager
def evaluating(model: nn.Module):
    """Eval mode and no gradients inside; the model's training flag is restored after."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was)


def batches(model: nn.Module, stimuli: Any, batch_size: int, progress: bool, desc: str):
    """Yield ``(start, batch)`` over stimuli, moved to the model's device and dtype."""
    probe = Probe(model)
    source = stimulus_source(stimuli)
    if batch_size < 1:
        raise InsilicoError(f"batch_size must be at least 1, not {batch_size}")
    bar = tqdm(total=len(source), desc=desc, unit="stim", disable=not progress, leave=False)
    try:
        for start in range(0, len(source), batch_size):
            stop = min(start + batch_size, len(source))
            yield start, source.batch(start, stop, probe.device, probe.dtype)
            bar.update(stop - start)
    finally:
        bar.close()


def _centre_plan(probe: Probe, unit: Unit, first: torch.Tensor) -> tuple[Unit, str | None, tuple]:
    """How to record ``unit``: the address, the reduction, and the per-sample output shape."""
    whole = Unit(unit.module, unit.step, None, unit.output)
    with probe.record(whole) as rec:
        probe.model(first)
    value = rec[whole]
    if not torch.is_tensor(value):
        raise UnitError(f"{unit} returns {type(value).__name__}, not a tensor: name a part, e.g. '{unit.module}:0'")
    shape = tuple(value.shape[1:])
    spatial = len(shape) >= 2 and (unit.index is None or len(unit.index) <= 1)
    if spatial:
        return unit, "center", shape
    return unit, None, shape


def record_units(model: nn.Module, stimuli: Any, units: Any, batch_size: int = 256, progress: bool = True,
                 desc: str = "recording") -> tuple[torch.Tensor, list[str]]:
    """Responses ``(N, U)`` of every selected unit, one column per unit, and the units' addresses.

    An address that picks a whole conv layer or channels (``"features.0"``,
    ``"features.0[3]"``) is read at the centre position of its feature map
    (``reduce="center"``, position ``(H // 2, W // 2)``); an address of single
    neurons (``"features.0[3,7,7]"``) or of a linear layer is read as it is.
    All units are recorded in one forward pass per batch.
    """
    parsed = as_units(units)
    probe = Probe(model)
    for unit in parsed:
        unit.resolve(model)
    source = stimulus_source(stimuli)
    columns: list[list[torch.Tensor]] = [[] for _ in parsed]
    names: list[str] = []
    with evaluating(model):
        first = source.batch(0, 1, probe.device, probe.dtype)
        plans = [_centre_plan(probe, u, first) for u in parsed]
        for unit, reduce, shape in plans:
            names.extend(_unit_names(unit, reduce, shape))
        for _, batch in batches(model, stimuli, batch_size, progress, desc):
            handles = []
            try:
                for unit, reduce, _ in plans:
                    handles.append(probe.record(unit, reduce=reduce))
                model(batch)
                for k, ((unit, _, _), handle) in enumerate(zip(plans, handles)):
                    value = handle[unit]
                    columns[k].append(value.reshape(len(value), -1).float().cpu())
            finally:
                for handle in handles:
                    handle.remove()
    values = torch.cat([torch.cat(col) for col in columns], dim=1)
    return values, names


def _unit_names(unit: Unit, reduce: str | None, shape: tuple) -> list[str]:
    """Addresses of the single values recorded for ``unit`` (channel, y, x spelled out)."""
    if reduce == "center":
        centre = tuple(s // 2 for s in shape[1:])
        channels = np.arange(shape[0])
        if unit.index is not None:
            pick = unit.index[0]
            channels = np.atleast_1d(channels[list(pick) if isinstance(pick, tuple) else pick])
        return [_name(unit, (int(c),) + centre) for c in channels]
    if unit.index is None:
        grid = np.indices(shape).reshape(len(shape), -1).T
        return [_name(unit, tuple(int(i) for i in idx)) for idx in grid]
    n = int(np.prod(unit.select(torch.zeros((1,) + shape)).shape[1:]))
    return [str(unit)] if n == 1 else [f"{unit}#{i}" for i in range(n)]


def _name(unit: Unit, index: tuple) -> str:
    return str(Unit(unit.module, unit.step, index, unit.output))


def logits(model: nn.Module, stimuli: Any, batch_size: int = 256, output: Any = None, progress: bool = False,
           desc: str = "forward", probe: Probe | None = None) -> torch.Tensor:
    """The model's outputs (N, classes) over stimuli, or those of the unit ``output`` (e.g. ``"readout@2"``).

    Lesions or stimulation attached with ``probe`` stay active during the passes.
    """
    probe = probe or Probe(model)
    parts = []
    with evaluating(model):
        for _, batch in batches(model, stimuli, batch_size, progress, desc):
            if output is None:
                parts.append(model(batch).float().cpu())
            else:
                with probe.record(output) as rec:
                    model(batch)
                parts.append(rec[output].float().cpu())
    return torch.cat(parts)
