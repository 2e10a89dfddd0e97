"""Taps and records: what :meth:`insilico.Probe.record` keeps of each unit, safe from later in-place ops.

A tap keeps one unit's values from every call it is asked for (copies of
every tensor the output holds, detached or with the graph); a
:class:`Record` is the handle over a request's taps, read with unit
addresses, and can end each forward pass after the last recorded unit.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any, Callable

import torch
from torch import nn

from .errors import InsilicoError, UnitError
from .hooks import HookOwner, StopForward, _SiteHandle
from .layout import POOLS, pool, read_layout
from .units import Unit, UnitLike, describe, need_tensor

REDUCTIONS = POOLS


class _Tap:
    """Keeps a unit's values from every call it is asked for."""

    def __init__(self, unit: Unit, keep_graph: bool, reduce: str | None, model: nn.Module | None = None):
        self.unit, self.keep_graph, self.reduce, self.model = unit, keep_graph, reduce, model
        self.layouts: dict[tuple, tuple] = {}  # output shape -> (layout, prefix), read once (reduce=)
        self.data: dict[int, list] = {}
        self.calls_per_pass = 0
        self.error: Exception | None = None
        self.stop_at: tuple[str, int] | None = None
        self.log: list | None = None  # (site, step) of every call, while the owning record learns where to stop
        self.hint: Callable[[], str] = str  # extra words for "never called" (the ops that did run)

    def __call__(self, output, step):
        self.calls_per_pass = max(self.calls_per_pass, step + 1)
        if self.log is not None:
            self.log.append((self.unit.site, step))
        if self.unit.step is not None and self.unit.step >= 0 and step != self.unit.step:
            return
        value = self.unit.pick(output)
        if self.reduce is not None:
            value = _reduce(need_tensor(self.unit, value, f" for reduce={self.reduce!r}"), self.reduce, self.unit,
                            self.model, self.layouts)
        if torch.is_tensor(value):
            value = self.unit.select(value)
        self.data.setdefault(step, []).append(_copy(value, self.keep_graph))

    def steps_seen(self) -> str:
        return f"called {self.calls_per_pass} time(s) per forward pass (steps 0..{self.calls_per_pass - 1})"

    def _check_called(self) -> None:
        if self.error is not None:
            raise self.error
        if not self.data and self.calls_per_pass == 0:
            raise UnitError(
                f"{self.unit.site!r} was never called while recording: is it used in the model's forward(), "
                f"and did a forward pass run inside the with block?{self.hint()}"
            )

    def value(self) -> Any:
        """The recorded values, concatenated over forward passes."""
        self._check_called()
        step = self.unit.step
        if step is None:
            if self.calls_per_pass > 1:
                raise UnitError(
                    f"{self.unit.module!r} was {self.steps_seen()}: ask for one call as "
                    f"'{self.unit.replace(step=0)}' (or @-1 for the last), or for all of them with rec.steps(...)"
                )
            step = 0
        if step < 0:
            step += self.calls_per_pass
        if step not in self.data:
            raise UnitError(f"step {self.unit.step} of {self.unit.module!r} never happened: it was {self.steps_seen()}")
        if len(self.data[step]) > 1:
            _batch_first(self.data[step][0], self.unit, "join the forward passes")
        return _concat(self.data[step])

    def stack(self) -> Any:
        """Every step's values stacked on axis 1: (N, T, ...); a tuple, list or dict output stacked part by part."""
        self._check_called()
        steps = sorted(self.data)
        _batch_first(self.data[steps[0]][0], self.unit, "stack the steps")
        return _stack([_concat(self.data[s]) for s in steps], steps, self.unit)


class Record(_SiteHandle):
    """Values recorded by :meth:`Probe.record`; index it with a unit address: ``rec["features.3[12]"]``."""

    def __init__(self, probe: HookOwner, parts: list, stop: bool = False):
        super().__init__(probe, parts)
        self.stop = stop
        self.stop_at: tuple[str, int] | None = None

    def forward(self, *inputs: Any, **kwargs) -> Any:
        """Run the model on ``inputs``; with ``stop=True`` the pass ends after the last recorded call.

        Returns the model's output, or None when the pass was stopped. The
        first pass runs the whole model to learn the call order; if the model
        fails after every recorded unit ran (layers after them that do not take
        this input size), the pass counts as stopped there. Any other error of
        the model reaches the caller unchanged.
        """
        if not self.stop or self.stop_at is not None:
            try:
                return self.probe.model(*inputs, **kwargs)
            except StopForward:
                return None
        log: list = []
        for tap in self.parts:
            tap.log = log
        try:
            output = self.probe.model(*inputs, **kwargs)
        except Exception:
            if not log or not all(tap.data for tap in self.parts):
                raise
            output = None
        finally:
            for tap in self.parts:
                tap.log = None
        self._plan(log)
        return output

    def _plan(self, log: list) -> None:
        counts: dict[str, int] = {}
        for site, step in log:
            counts[site] = max(counts.get(site, 0), step + 1)
        needed = []
        for tap in self.parts:
            total = counts.get(tap.unit.site, 0)
            step = tap.unit.step
            step = total - 1 if step is None else (step if step >= 0 else total + step)
            if (tap.unit.site, step) in log:
                needed.append(log.index((tap.unit.site, step)))
        if needed and "" not in counts:
            self.stop_after(log[max(needed)])

    def stop_after(self, point: tuple[str, int]) -> None:
        """End every pass after call ``point = (site, call index)`` (a module path, an op path or
        ``"attn:heads"``: :attr:`Unit.site`), with no learning pass.

        ``point`` is the ``stop_at`` that an earlier record of the same units
        learned on its first pass (a tool that records again, e.g. each run of
        a synthesis, skips relearning it). Needs ``stop=True``.
        """
        if not self.stop:
            raise InsilicoError("stop_after needs a record made with stop=True")
        point = (str(point[0]), int(point[1]))
        for tap in self.parts:
            tap.stop_at = point
        self.stop_at = point

    def __exit__(self, kind, error, traceback) -> bool:
        self.remove()
        return kind is not None and issubclass(kind, StopForward)

    def _tap(self, spec: UnitLike) -> _Tap:
        unit = Unit.coerce(spec, self.probe.model)
        for tap in self.parts:
            if tap.unit == unit:
                return tap
        raise UnitError(f"{unit} was not recorded; recorded: {', '.join(self.keys())}")

    def __getitem__(self, spec: UnitLike) -> Any:
        return self._tap(spec).value()

    def steps(self, spec: UnitLike) -> Any:
        """All calls of a (recurrent) module stacked on axis 1: (N, T, ...).

        A module returning a tuple, list or dict (an LSTM cell's ``(h, c)``) gives the same structure with
        each part stacked; ``rec.steps("cell:0")`` (recorded as ``"cell:0"``) gives one part.
        """
        tap = self._tap(spec)
        if tap.unit.step is not None:
            raise UnitError(f"{tap.unit} names one step; record the address without '@' to get all steps")
        return tap.stack()

    def keys(self) -> list[str]:
        return [str(tap.unit) for tap in self.parts]

    def items(self):
        return [(key, self[key]) for key in self.keys()]

    def __contains__(self, spec) -> bool:
        return any(tap.unit == spec for tap in self.parts)

    def __len__(self) -> int:
        return len(self.parts)

    def clear(self) -> None:
        """Forget what was recorded so far (the hooks stay)."""
        for tap in self.parts:
            tap.data.clear()
            tap.calls_per_pass = 0

    def __repr__(self) -> str:
        return f"record {', '.join(self.keys())}"


def _copy(value: Any, keep_graph: bool) -> Any:
    """A copy of every tensor in ``value`` (nested containers, named tuples, dataclasses, objects keep their type)."""
    if torch.is_tensor(value):
        return value.clone() if keep_graph else value.detach().clone()
    if isinstance(value, dict):
        copied = [(k, _copy(v, keep_graph)) for k, v in value.items()]
        try:
            return type(value)(copied)
        except TypeError:
            return dict(copied)
    if isinstance(value, (list, tuple)):
        items = [_copy(v, keep_graph) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _copy(getattr(value, f.name), keep_graph) for f in dataclasses.fields(value) if f.init}
        return dataclasses.replace(value, **fields)
    if hasattr(value, "__dict__") and not isinstance(value, (nn.Module, type)) and _holds_tensor(vars(value)):
        clone = copy.copy(value)
        for name, item in vars(value).items():
            setattr(clone, name, _copy(item, keep_graph))
        return clone
    return value


def _holds_tensor(value: Any) -> bool:
    if torch.is_tensor(value):
        return True
    if isinstance(value, dict):
        return any(_holds_tensor(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_holds_tensor(v) for v in value)
    return dataclasses.is_dataclass(value) or (hasattr(value, "__dict__") and _holds_tensor(vars(value)))


def _concat(values: list) -> Any:
    first = values[0]
    if len(values) == 1:
        return first
    if torch.is_tensor(first):
        return torch.cat(values) if first.ndim else torch.stack(values)
    if isinstance(first, dict):
        return {k: _concat([v[k] for v in values]) for k in first}
    if isinstance(first, (list, tuple)):
        items = [_concat([v[i] for v in values]) for i in range(len(first))]
        return type(first)(*items) if hasattr(first, "_fields") else type(first)(items)
    return values


def _batch_first(value: Any, unit: Unit, what: str) -> None:
    """Refuse to join a structured output along a batch axis that is not the first axis of all its tensors."""
    if torch.is_tensor(value):
        return
    sizes = sorted({leaf.shape[0] for leaf in _leaves(value) if leaf.ndim})
    if len(sizes) > 1:
        raise UnitError(
            f"cannot {what} of {str(unit)!r}: it returns {describe(value)}, whose tensors have different first "
            f"axes {sizes}, so the batch is not the first axis of all of them (an nn.LSTM's (h_n, c_n) put the "
            f"layers first); name a part whose first axis is the batch, e.g. '{unit.replace(output=0)}', or "
            "record one forward pass of one call at a time")


def _leaves(value: Any) -> list:
    if torch.is_tensor(value):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
    return [leaf for item in items for leaf in _leaves(item)]


def _stack(values: list, steps: list[int], unit: Unit) -> Any:
    """One value per step, stacked on axis 1 (N, T, ...), structures part by part (their type kept)."""
    first = values[0]
    if isinstance(first, dict):
        parts = {k: _stack([v[k] for v in values], steps, unit.replace(output=k)) for k in first}
        try:
            return type(first)(parts)
        except TypeError:
            return parts
    if isinstance(first, (list, tuple)):
        items = [_stack([v[i] for v in values], steps, unit.replace(output=i)) for i in range(len(first))]
        return type(first)(*items) if hasattr(first, "_fields") else type(first)(items)
    need_tensor(unit, first, " to stack its steps")
    shapes = {s: tuple(v.shape[1:]) for s, v in zip(steps, values)}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"@{s}: {shape}" for s, shape in shapes.items())
        raise UnitError(
            f"the steps of {str(unit)!r} have different shapes ({listed}), so they cannot be stacked; "
            "record and read them one at a time, e.g. probe.record("
            + ", ".join(f"'{unit.replace(step=s)}'" for s in shapes) + ")")
    return torch.stack(values, dim=1)


def _reduce(tensor: torch.Tensor, how: str, unit: Unit, model: nn.Module, known: dict | None = None) -> torch.Tensor:
    """``(N, C)``: ``tensor`` (a batch of ``unit``'s output in ``model``) pooled over its positions in its layout.

    The layout is read once per output shape (:func:`insilico.layout.read_layout`: the module and the
    model's family decide), so a Swin stage ``(N, H, W, C)`` pools over ``H, W`` and a ViT block ``(N, T, D)``
    over its patch tokens (:func:`insilico.layout.pool`); a layout without channels over positions is refused.
    """
    shape = tuple(tensor.shape[1:])
    known = {} if known is None else known
    if shape not in known:
        known[shape] = read_layout(model, unit, shape)
    layout, prefix = known[shape]
    return pool(tensor, how, layout, prefix, unit)
