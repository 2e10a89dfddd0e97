"""The batched evaluate loops: a model's outputs, and units' records, over a stimulus set, in memory.

Every tool that runs a model over stimuli without gradients takes its loop
from here: :func:`predict` (the model's outputs, e.g. logits, or one unit's)
and :func:`responses` (units' records). Both run on
:func:`insilico.recording.batches` (the one gated batch iterator: image gate,
empty-set error, device and dtype, progress bar) inside the call's
:class:`~insilico.plan.Plan` (its one Probe and one session: eval mode, no
gradients, every module's own flags restored after), so lesions or
stimulation attached with the plan's Probe stay active during the passes,
and a record ends each pass at the plan's stop point (the layers above the
units are not run). Streaming to disk, resuming and sharding are
:func:`insilico.recording.record_stimuli`'s.

Example
-------
>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(18, 4))
>>> x = torch.rand(5, 1, 5, 5)
>>> predict(net, x, batch_size=2).shape, predict(net, x, output="1[0]").shape
(torch.Size([5, 4]), torch.Size([5, 3, 3]))
>>> [tuple(r.shape) for r in responses(net, x, ["0[1]", "1"], batch_size=2)]
[(5, 3, 3), (5, 2, 3, 3)]
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from .plan import Plan, plan_for
from .recording import batches, stimulus_source
from .session import result_dtype
from .units import Unit, UnitLike, need_tensor


def predict(model: nn.Module, stimuli: Any, *, batch_size: int = 256, output: UnitLike | None = None,
            plan: Plan | None = None, progress: bool = False, desc: str = "forward") -> torch.Tensor:
    """The model's outputs over ``stimuli`` (e.g. logits ``(N, classes)``), or those of the unit ``output``.

    Parameters
    ----------
    model : nn.Module
    stimuli : tensor (N, C, H, W), StimulusSet, Dataset, raw(...)
        Anything :func:`insilico.recording.batches` reads.
    batch_size : int
        Stimuli per forward pass.
    output : str or Unit, optional
        A unit whose values are returned instead of the model's output (``"readout@2"``).
    plan : Plan, optional
        The call's plan: its Probe (lesions or stimulation attached to it stay
        active) and its session; default a new one.
    progress, desc : bool, str
        Progress bar and its label.

    Returns
    -------
    tensor (N, ...)
        On the CPU; float64 for a float64 model, else float32 (:func:`insilico.session.result_dtype`).

    Raises
    ------
    StimulusError
        An empty stimulus set, or a batch failing the image gate.
    """
    plan = plan_for(model, plan)
    parts = []
    stimuli = stimulus_source(stimuli, model=model)  # image files are fitted to the model's input
    with plan.session() as s:
        for _, batch in batches(stimuli, batch_size, s.device, s.dtype, progress, desc):
            if output is None:
                out = need_tensor(Unit(""), model(batch))  # a model returning a tuple: its parts ':0', ':1'
            else:
                with plan.probe.record(output) as rec:
                    model(batch)
                out = need_tensor(rec._tap(output).unit, rec[output])
            parts.append(out.to(result_dtype(out.dtype)).cpu())  # float64 in, float64 out
    return torch.cat(parts)


def responses(model: nn.Module, stimuli: Any, units: Sequence[UnitLike], *, batch_size: int = 256,
              plan: Plan | None = None, stop: bool = True, reduce: str | None = None, progress: bool = False,
              desc: str = "recording") -> list[torch.Tensor]:
    """Each unit's values over ``stimuli``, ``(N, *unit shape)``, in the order of ``units``, on the model's device.

    All units are recorded in one forward pass per batch. With ``stop``
    (default) the pass ends after the last of them (:meth:`Plan.record
    <insilico.plan.Plan.record>`): where an earlier record of these units in
    the plan learned, else at the survey's stop point when the plan has an
    example, else learned on the first batch (and kept in the plan). ``reduce`` is :meth:`insilico.Probe.record`'s.

    Raises
    ------
    StimulusError
        An empty stimulus set, or a batch failing the image gate.
    UnitError
        An unknown unit, or one never called in the forward pass.
    """
    plan = plan_for(model, plan)
    parsed = [Unit.coerce(u, model) for u in units]
    stimuli = stimulus_source(stimuli, model=model)  # image files are fitted to the model's input
    with plan.session() as s, plan.record(*parsed, stop=stop, reduce=reduce) as rec:
        for _, batch in batches(stimuli, batch_size, s.device, s.dtype, progress, desc):
            rec.forward(batch)
    if stop:
        plan.learn(rec)  # a later record of these units in this call (a synthesis's) stops there without learning
    return [need_tensor(u, rec[u]) for u in parsed]  # a tuple output without a part: refused with its parts


__all__ = ["predict", "responses"]
