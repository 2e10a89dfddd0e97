"""One forward plan per call: the Probe, the session and one survey that every part of a tool call reads.

A tool call (an experiment, an attack, a synthesis) makes ONE :class:`Plan`
and passes it down to everything it does, instead of each helper asking the
plumbing again. The plan holds

- the call's one :class:`~insilico.probe.Probe` (``plan.probe``): every
  record, lesion and stimulation of the call goes through it;
- the call's one :func:`~insilico.session.session` (``with plan.session():``):
  entered once; a nested ``plan.session(grad=...)`` reuses the open one and
  only switches the grad mode;
- one survey of one example batch (:meth:`insilico.Probe.survey`, with FLOPs
  counted when the plan is made with ``flops=True``), made on first need and then read for every unit the call
  touches: one sample's output shape and dtype (:meth:`Plan.shape`,
  :meth:`Plan.call`), call counts, i.e. time steps (:meth:`Plan.count`), the
  stop point, the last call the units need, after which a pass may end
  (:meth:`Plan.stop`, for :meth:`Record.stop_after <insilico.taps.Record.stop_after>`),
  and the FLOPs of one sample's pass up to there (:meth:`Plan.flops`).

Units whose site the survey cannot see (op units inside torch.nn's own
layers, or a survey made without ``ops=True``) get no stop point: the record
then learns it on its first pass (:meth:`Record.forward <insilico.taps.Record.forward>`),
which costs no extra pass.

Example
-------
>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(1568, 2))
>>> plan = Plan(net, torch.rand(1, 3, 16, 16), flops=True)
>>> plan.shape("1[2]"), plan.count("1"), plan.stop(["0", "1[3]"]), plan.flops(["1"]) == 2 * 8 * 14 * 14 * 27
((14, 14), 1, ('1', 0), True)
>>> plan.stop([""]) is None          # the model's own output: the pass runs to the end
True
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from .errors import InsilicoError, UnitError
from .probe import Probe
from .session import Session, device_of, dtype_of, session
from .survey import Call, Survey
from .taps import Record
from .units import Unit, UnitLike, need_tensor


class Plan:
    """The forward plan of one tool call (see the module docstring).

    Parameters
    ----------
    model : nn.Module
        The model the call runs.
    example : tensor, optional
        One example batch, e.g. ``(1, C, H, W)`` (only its first sample is
        surveyed, on the model's device and in its dtype). Needed by
        :meth:`shape`, :meth:`count`, :meth:`stop` and :meth:`flops`; a plan
        without one still gives the call its Probe and session.
    ops : bool
        Survey every op and attention part too (:meth:`insilico.Probe.survey`):
        needed to see op units and functional ops between modules.
    flops : bool
        Count FLOPs in the survey (needed by :meth:`flops`; a plan made
        without surveys again when asked). Off by default: the first FLOP
        count of a process costs about a second of set-up.
    probe : Probe, optional
        The call's Probe, when the caller already has one (with lesions
        attached, say); default a new one.
    """

    def __init__(self, model: nn.Module, example: torch.Tensor | None = None, *, ops: bool = False,
                 flops: bool = False, probe: Probe | None = None):
        if probe is not None and probe.model is not model:
            raise InsilicoError("the plan's probe must be attached to the plan's model")
        self.model = model
        self.probe = probe if probe is not None else Probe(model)
        self.example = example
        self.ops, self.count_flops = bool(ops), bool(flops)
        self._survey: Survey | None = None
        self._open: Session | None = None
        self._learned: dict[tuple, tuple | None] = {}  # units' keys -> the stop point their records learned
        self._parts: dict[str, tuple] = {}  # sizes of parts of structured outputs: key -> (shape, dtype)

    # -- the call's one session -----------------------------------------------------------------
    @contextlib.contextmanager
    def session(self, grad: bool = False) -> Iterator[Session]:
        """The call's :func:`~insilico.session.session`: entered by the outermost ``with``; inside it, a nested
        ``plan.session(grad=...)`` yields the same Session and only sets the grad mode."""
        if self._open is not None:
            with torch.set_grad_enabled(grad):
                yield self._open
            return
        with session(self.model, grad=grad) as opened:
            self._open = opened
            try:
                yield opened
            finally:
                self._open = None

    # -- the one survey -------------------------------------------------------------------------
    @property
    def survey(self) -> Survey:
        """The survey of the example's first sample (made on first use; once ``ops=True`` is needed, made with ops)."""
        if self._survey is None:
            if self.example is None:
                raise InsilicoError("this plan has no example input to survey: make it as Plan(model, example) "
                                    "with one example batch, e.g. (1, C, H, W)")
            x = self.example[:1]
            if torch.is_tensor(x):
                x = x.to(device_of(self.model), dtype_of(self.model)) if x.is_floating_point() else \
                    x.to(device_of(self.model))
            self._survey = self.probe.survey(x, ops=self.ops, flops=self.count_flops, strict=False)
        return self._survey

    def need_ops(self) -> Survey:
        """The survey with every op and attention part logged (surveyed again if the first one had no ops)."""
        if not self.ops:
            self.ops, self._survey = True, None
        return self.survey

    def need_flops(self) -> Survey:
        """The survey with FLOPs counted (surveyed again if the first one did not count them)."""
        if not self.count_flops:
            self.count_flops, self._survey = True, None
        return self.survey

    def call(self, unit: UnitLike) -> Call:
        """The surveyed call a unit reads (shape, dtype, FLOPs up to it). An error of the model before the unit ran
        reaches the caller unchanged; a unit that never ran is a UnitError."""
        return self.survey.reached(unit)

    def count(self, module: str) -> int:
        """How many times ``module`` (a module path or op site) ran in one pass (0: never)."""
        return self.survey.count(module)

    def shape(self, unit: UnitLike) -> tuple:
        """One sample's shape of a unit's values (its index applied), e.g. ``(H, W)`` for a channel.

        :meth:`insilico.Probe.value_spec`, the one shape rule, on the plan's survey: a part of a structured
        output (``"lstm:0"``) is sized by one recording pass of the example, once per part.
        """
        return self._spec(unit)[0]

    def dtype(self, unit: UnitLike) -> torch.dtype:
        """The dtype of a unit's values (as :meth:`shape` finds them)."""
        return self._spec(unit)[1]

    def _spec(self, unit: UnitLike) -> tuple[tuple, torch.dtype]:
        unit = Unit.coerce(unit, self.model)
        if unit.part is not None or unit.op is not None:
            self.need_ops()
        whole_output = unit.output is not None and unit.part is None and unit.op is None  # sized by a recording
        return self.probe.value_spec(unit, self.example, None if whole_output else self.survey, self._parts)

    # -- where a pass may stop, and what it costs -----------------------------------------------
    def stop(self, units: Sequence[UnitLike]) -> tuple[str, int] | None:
        """``(site, call)`` after which a pass has computed every one of ``units``; None: no stop point known
        (the model's own output is read, or a unit's site was not surveyed: a record learns it on its first pass)."""
        index = self._last_call(units)
        if index is None:
            return None
        call = self.survey.calls[index]
        return call.module, call.step

    def flops(self, units: Sequence[UnitLike]) -> float:
        """FLOPs of one sample's pass up to its stop point for ``units`` (the whole pass when it cannot stop).

        Counted by :class:`torch.utils.flop_counter.FlopCounterMode` (matrix
        products and convolutions, 2 per multiply-add; elementwise ops are not counted).
        """
        survey = self.need_flops()
        index = self._last_call(units)
        value = survey.flops if index is None else survey.calls[index].flops
        return float(value or 0.0)

    # -- records that stop where the plan says ---------------------------------------------------
    def record(self, *units: UnitLike, keep_graph: bool = False, reduce: str | None = None,
               stop: bool = True) -> Record:
        """``plan.probe.record(...)`` whose passes end after the last of ``units`` (with ``stop``).

        The stop point is the one a record of the same units in this plan
        learned (:meth:`learn`; "no stop" included, so those passes run
        plainly), else the survey's when the plan has an example
        (:meth:`stop`), else learned on the record's first pass
        (:meth:`Record.forward <insilico.taps.Record.forward>`): pass the record
        to :meth:`learn` after it, and later records of these units skip learning.
        """
        parsed = self.probe.units(*units)
        key = tuple(u.key for u in parsed)
        point = None
        if stop and key in self._learned:
            point = self._learned[key]
            stop = point is not None
        elif stop and self.example is not None:
            point = self.stop(parsed)  # surveyed before the record attaches (a survey pass must not be recorded)
        rec = self.probe.record(*parsed, keep_graph=keep_graph, reduce=reduce, stop=stop)
        if point is not None:
            rec.stop_after(point)
        return rec

    def learn(self, rec: Record, stops: bool | None = None) -> None:
        """Remember where ``rec``'s passes stop (its ``stop_at``; None: they run to the end) for later
        :meth:`record` calls of the same units. ``stops=False`` says they cannot stop whatever ``rec`` saw."""
        key = tuple(tap.unit.key for tap in rec.parts)
        self._learned[key] = None if stops is False else rec.stop_at

    def read(self, units: Sequence[UnitLike], *inputs: Any, keep_graph: bool = False) -> list:
        """The values of ``units`` from one forward pass of ``inputs`` that ends after the last of them
        (:meth:`record`, then :meth:`learn`): a model read again and again (a predictor's trunk) learns once."""
        with self.record(*units, keep_graph=keep_graph) as rec:
            rec.forward(*inputs)
        self.learn(rec)
        return [need_tensor(rec._tap(u).unit, rec[u]) for u in units]  # a tuple output without a part: refused

    def _last_call(self, units: Sequence[UnitLike]) -> int | None:
        """Position in the survey of the last call ``units`` need, or None (no stop point)."""
        if isinstance(units, (str, Unit)):
            units = [units]
        survey = self.survey
        where = {(c.module, c.step): i for i, c in enumerate(survey.calls)}
        last = -1
        for spec in units:
            unit = Unit.coerce(spec, self.model)
            total = survey.count(unit.site)
            if unit.site == "" or total == 0:
                if total == 0 and survey.error is not None:
                    raise survey.error
                return None
            step = total - 1 if unit.step is None else (unit.step if unit.step >= 0 else total + unit.step)
            if (unit.site, step) not in where:
                raise UnitError(f"step {unit.step} of {unit.module!r} never happened: it was called {total} time(s)")
            last = max(last, where[unit.site, step])
        return None if last < 0 else last

    def __repr__(self) -> str:
        state = "not surveyed" if self._survey is None else repr(self._survey)
        return f"Plan({type(self.model).__name__}, {state})"


def plan_for(model: nn.Module, plan: Plan | None = None, example: Any = None, **options) -> Plan:
    """``plan`` when the caller passed one (it must be for ``model``), else a new :class:`Plan` of ``model``."""
    if plan is None:
        return Plan(model, example, **options)
    if plan.model is not model:
        raise InsilicoError("the plan passed down was made for another model: make one Plan per model")
    if plan.example is None and example is not None:
        plan.example = example
    return plan


__all__ = ["Plan", "plan_for"]
