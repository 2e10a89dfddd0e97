"""Running a model over stimuli for an experiment: input size, units, batched forward passes.

The experiments share three chores: finding the input size a model takes,
reading a unit address into "which values per stimulus"
(:func:`insilico.layers.at_centre`, the one centre rule: conv maps at their
centre position, token sequences at their centre patch token), and running
stimuli through the model in batches (:func:`insilico.evaluate.responses`, the
one batched loop) inside the call's :class:`~insilico.plan.Plan`: its one
session (eval mode, no gradients, every module's own flags restored after),
its one Probe (which owns every hook and removes it afterwards) and its one
survey (shapes, the stop point, FLOPs), passed down by the experiment.

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

from ..errors import StimulusError, UnitError
from ..evaluate import responses
from ..layers import at_centre, is_activation, is_conv_linear, is_pass_through
from ..layers.families import family_at
from ..plan import Plan, plan_for
from ..recording import stimulus_source
from ..units import Unit


def as_units(units: Any) -> list[Unit]:
    """A list of Units from one address or a list of them."""
    if isinstance(units, (str, Unit)):
        units = [units]
    if not isinstance(units, Sequence) or not units:
        raise UnitError("units must be an address like 'features.0' or a non-empty list of addresses")
    return [Unit.coerce(u) for u in units]


def sample_shapes(plan: Plan, units: list[Unit]) -> list[tuple]:
    """One sample's output shape of each unit's module (the whole output, whatever the index), from the plan's
    one survey (:meth:`Plan.shape <insilico.plan.Plan.shape>`)."""
    return [plan.shape(Unit(u.module, u.step, None, u.output)) for u in units]


def record_units(model: nn.Module, stimuli: Any, units: Any, batch_size: int = 256, progress: bool = True,
                 desc: str = "recording", plan: Plan | None = None) -> tuple[torch.Tensor, list[str]]:
    """Responses ``(N, U)`` of every selected unit, one column per unit, and the units' addresses.

    Each address is read as :func:`at_centre` says: a whole conv layer or
    channels (``"features.0"``, ``"features.0[3]"``) at the centre of the
    map, a token layer at its centre patch token, single neurons
    (``"features.0[3,7,7]"``) and linear layers as written; only those values
    are kept. All units are recorded in one forward pass per batch, which
    stops after the last of them (the layers above are not run).
    The names spell every value's full index (``"features.0[3,7,7]"``).

    ``plan`` is the call's :class:`~insilico.plan.Plan` (shapes and the stop
    point from its one survey); default, or when the plan surveyed another
    input size, one surveying the first stimulus.
    """
    parsed = as_units(units)
    for unit in parsed:
        unit.resolve(model)
    source = stimulus_source(stimuli, model=model)
    if len(source) == 0:
        raise StimulusError("the stimulus set is empty: give at least one stimulus")
    first = source.batch(0, 1, None, None)
    if plan is None or plan.example is None or tuple(plan.example.shape[1:]) != tuple(first.shape[1:]):
        plan = Plan(model, first, probe=None if plan is None else plan.probe)  # surveyed at this stimulus size
    shapes = sample_shapes(plan, parsed)
    modules = dict(model.named_modules())  # each unit read by the family of the network it lives in
    neurons = [at_centre(u, shape, modules.get(u.module), family_at(model, u)) for u, shape in zip(parsed, shapes)]
    names = [name for u, shape in zip(neurons, shapes) for name in _unit_names(u, shape)]
    columns = responses(model, source, neurons, batch_size=batch_size, plan=plan, progress=progress, desc=desc)
    values = torch.cat([c.reshape(len(c), -1).float().cpu() for c in columns], dim=1)
    return values, names


def _unit_names(unit: Unit, shape: tuple) -> list[str]:
    """Addresses of the single values ``unit`` selects in an output of one-sample ``shape``, index spelled out."""
    if not shape:
        return [str(unit)]
    flat = unit.select(torch.arange(int(np.prod(shape))).reshape((1,) + tuple(shape))).reshape(-1)
    return [_name(unit, tuple(int(i) for i in idx)) for idx in zip(*np.unravel_index(flat.numpy(), shape))]


def _name(unit: Unit, index: tuple) -> str:
    return str(Unit(unit.module, unit.step, index, unit.output))


def after_nonlinearity(model: nn.Module, units: Any, example: torch.Tensor | None = None,
                       plan: Plan | None = None) -> list[Unit]:
    """Each conv / linear unit moved onto the activation module that follows it (same channel and index).

    One :meth:`~insilico.Probe.survey` of ``example`` (with ops; the survey of
    ``plan``, the call's :class:`~insilico.plan.Plan`, when given) gives the
    call order; from a Conv / Linear call the walk skips per-channel modules
    (BatchNorm, GroupNorm, Dropout, Identity: :func:`insilico.layers.is_pass_through`)
    and containers that merely pass the output on (same shape), and stops at
    the first activation (:func:`insilico.layers.is_activation`, the one list):
    ``features.3`` -> ``features.4`` in an AlexNet.
    A functional op in between (a residual ``add``), a shape change or any
    other module stops the walk and the unit stays as given; so do units that
    are not Conv / Linear outputs and units naming an output part.

    Example
    -------
    >>> m = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.ReLU())
    >>> [str(u) for u in after_nonlinearity(m, ["0[1]", "1"], torch.rand(1, 1, 8, 8))]
    ['2[1]', '1']
    """
    parsed = as_units(units)
    modules = dict(model.named_modules())
    if not any(is_conv_linear(modules.get(u.module)) for u in parsed if u.output is None):
        return parsed
    survey = plan_for(model, plan, example, ops=True).need_ops()
    calls = list(survey)
    counts = {c.module: survey.count(c.module) for c in calls}
    out = []
    for unit in parsed:
        module = modules.get(unit.module)
        moved = None
        if unit.output is None and module is not None and is_conv_linear(module):
            mine = [i for i, c in enumerate(calls) if c.module == unit.module]
            if mine:
                start = mine[unit.step if unit.step is not None else -1]
                moved = _following_activation(calls, start, modules, counts, unit)
        out.append(moved or unit)
    return out


def _following_activation(calls, start, modules, counts, unit) -> Unit | None:
    shape = calls[start].shape
    for call in calls[start + 1:]:
        owner = modules.get(call.module.split("/", 1)[0]) if "/" in call.module else None
        if is_activation(owner) or is_pass_through(owner):
            continue  # an op of an activation written in Python (timm's GELUTanh: F.gelu)
        if call.shape != shape or "/" in call.module or ":" in call.module:
            return None
        module = modules.get(call.module)
        if module is None:
            return None
        if is_activation(module):
            step = call.step if counts[call.module] > 1 else None
            return Unit(call.module, step, unit.index, None)
        if is_pass_through(module) or any(True for _ in module.children()):
            continue
        return None
    return None
