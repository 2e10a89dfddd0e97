"""Running a model over stimuli for an experiment: input size, units, batched forward passes.

The experiments share three chores: finding the input size a model takes,
reading a unit address into "which values per stimulus", and running
stimuli through the model in batches (:func:`insilico.recording.batches`, the
one batched loop) inside a :func:`~insilico.session.session` (eval mode, no
gradients, every module's own flags restored after) with a progress bar,
recording units with a :class:`~insilico.probe.Probe` (which owns every hook
and removes it afterwards).

Example
-------
>>> import torch
>>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU())
>>> values, names = record_units(model, torch.rand(6, 1, 9, 9), ["0"], progress=False)
>>> tuple(values.shape), names[:2]
((6, 4), ['0[0,4,4]', '0[1,4,4]'])
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import InsilicoError, StimulusError, UnitError
from ..probe import Probe
from ..recording import batches, stimulus_source
from ..session import result_dtype, session
from ..units import Unit


def input_shape(model: nn.Module, size: int | Sequence[int] | None = None,
                channels: int | None = None) -> tuple[int, int]:
    """``(channels, side)`` of the model's square input.

    ``size`` has the one meaning ``input_size`` has everywhere in insilico:
    ``(C, H, W)`` as ``model.input_size`` spells it. A bare int is still read
    as the image side (pixels), for compatibility; by default the model's
    ``input_size`` is used.

    Raises
    ------
    InsilicoError
        No size given and none on the model; a size that is not ``(C, H, W)``
        or an int; a non-square ``(C, H, W)`` (these experiments use square images).
    """
    known = getattr(model, "input_size", None)
    if size is None:
        size = known
        if size is None:
            raise InsilicoError(f"{type(model).__name__} has no input_size attribute: pass input_size=(C, H, W) "
                                "(or the image side in pixels)")
    if isinstance(size, (int, np.integer)):
        side = int(size)
        if channels is None and known is not None and len(known) == 3:
            channels = int(known[0])
    else:
        try:
            dims = tuple(int(v) for v in size)
        except (TypeError, ValueError):
            raise InsilicoError(f"input_size must be (C, H, W) or an int side, not {size!r}") from None
        if len(dims) != 3:
            raise InsilicoError(f"input_size must be (C, H, W) as model.input_size spells it, not {size!r}")
        if dims[1] != dims[2]:
            raise InsilicoError(f"input_size {dims}: these experiments use square images, give H == W")
        channels = channels or dims[0]
        side = dims[2]
    if side < 1:
        raise InsilicoError(f"the image side must be at least 1 pixel, not {side}")
    if channels is None:
        channels = _first_conv_channels(model)
    return int(channels), side


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


def _plans(probe: Probe, units: list[Unit], first: torch.Tensor) -> list[tuple[Unit, str | None, tuple]]:
    """How to record each unit: the address, the reduction, and the per-sample output shape.

    Shapes come from one :meth:`~insilico.Probe.survey` of ``first`` (one
    stimulus); units naming a part of a structured output (``"lstm:0"``) are
    sized by one recording pass instead, as a survey sees whole outputs only.
    """
    wholes = [Unit(u.module, u.step, None, u.output) for u in units]
    plain = [w for w in wholes if w.output is None]
    parts = [w for w in wholes if w.output is not None]
    shapes = {}
    if plain:
        survey = probe.survey(first, modules=list(dict.fromkeys(w.module for w in plain)))
        shapes.update({w.key: survey.shape(w) for w in plain})
    if parts:
        with probe.record(*parts) as rec:
            probe.model(first)
        for w in parts:
            value = rec[w]
            if not torch.is_tensor(value):
                raise UnitError(f"{w} returns {type(value).__name__}, not a tensor: name a part, e.g. '{w}:0'")
            shapes[w.key] = tuple(value.shape[1:])
    plans = []
    for unit, whole in zip(units, wholes):
        shape = shapes[whole.key]
        spatial = len(shape) >= 2 and (unit.index is None or len(unit.index) <= 1)
        plans.append((unit, "center" if spatial else None, shape))
    return plans


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
    with session(model) as s:
        if len(source) == 0:
            raise StimulusError("the stimulus set is empty: give at least one stimulus")
        plans = _plans(probe, parsed, source.batch(0, 1, s.device, s.dtype))
        for unit, reduce, shape in plans:
            names.extend(_unit_names(unit, reduce, shape))
        for _, batch in batches(source, batch_size, s.device, s.dtype, progress, desc):
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

    On the CPU, float64 for a float64 model, else float32 (:func:`insilico.session.result_dtype`).

    Lesions or stimulation attached with ``probe`` stay active during the passes.
    """
    probe = probe or Probe(model)
    parts = []
    with session(model) as s:
        for _, batch in batches(stimuli, batch_size, s.device, s.dtype, progress, desc):
            if output is None:
                out = model(batch)
            else:
                with probe.record(output) as rec:
                    model(batch)
                out = rec[output]
            parts.append(out.to(result_dtype(out.dtype)).cpu())  # float64 in, float64 out
    return torch.cat(parts)
