"""A survey of one forward pass: which modules ran, in which order, how often, with which output shapes.

:meth:`insilico.Probe.survey` runs one pass with a light observer of every
module and returns a :class:`Survey`. The observer is one process-wide forward
hook for the pass (``torch.nn.modules.module.register_module_forward_hook``,
owned by the probe and removed in ``finally``), not a hook per module: on a model
of 2,000 modules, registering and removing per-module hooks cost more than the
pass. Modules with forward hooks of their own (the user's, the probe's records
and edits) keep an observer on their own hook, after those, as torch runs global
hooks first and the survey logs what the caller gets. It replaces the dry runs each tool used
to make on its own: shapes of units (to size recordings and arrays), call
counts (recurrent modules), the call order (where a truncated pass may stop)
and the candidates of the layer chooser (:mod:`insilico.layers`).

Example
-------
>>> import torch, insilico
>>> m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 2))
>>> s = insilico.Probe(m).survey(torch.rand(1, 3, 8, 8))
>>> s.shape("0[1]"), s.count("3"), s.address("3")
((6, 6), 1, '3')
>>> print(s.table().splitlines()[1])
0        Conv2d      (4, 6, 6)

With ``ops=True`` the survey also logs every op of the modules' own forwards
(:mod:`insilico.ops`) and the attention parts of attention modules
(:mod:`insilico.attention`); their ``module`` is the op's site
(``"layer1.0/add"``, ``"attn:heads"``):

>>> s = insilico.Probe(m).survey(torch.rand(1, 3, 8, 8), ops=True)
>>> [c.module for c in s][:3], s.addresses()[-1]
(['0', '1', '2'], '')
"""
from __future__ import annotations

import dataclasses
from typing import Iterator, Mapping

import torch
from torch import nn

from .errors import UnitError
from .units import Unit, UnitLike, module_table


@dataclasses.dataclass(frozen=True)
class Call:
    """One call of a module in a forward pass.

    ``shape`` is one sample's output shape (without the batch axis; ``()`` for a
    0-dim output, None when the output is not a tensor), ``kind`` describes
    the output, ``scalar`` marks a 0-dim output (a loss).
    """

    module: str  # the site: a module path, an op path ("layer1.0/add#1") or an attention part ("attn:heads")
    step: int
    shape: tuple | None
    dtype: torch.dtype | None
    kind: str
    scalar: bool = False
    flops: float | None = None  # FLOPs of the pass up to the end of this call (a survey with flops=True)


class Survey:
    """The calls of one forward pass, in execution order (a module's output hook fires after its children's)."""

    def __init__(self, model: nn.Module, table: Mapping[str, nn.Module] | None = None):
        self.model = model
        self.calls: list[Call] = []
        self.error: Exception | None = None
        self.counter = None  # a FlopCounterMode while a survey with flops=True runs
        self.flops: float | None = None  # FLOPs of the whole pass (a survey with flops=True)
        table = module_table(model) if table is None else table  # path -> module (the probe's pass passes its own)
        self._types = {name: type(m).__name__ for name, m in table.items()}
        self._sites: dict[str, list[Call]] = {}  # site -> its calls in order, for the calls indexed so far
        self._indexed = 0

    def add(self, call: Call) -> None:
        if self.counter is not None:
            call = dataclasses.replace(call, flops=float(self.counter.get_total_flops()))
        self.calls.append(call)

    def _calls_of(self, site: str) -> list[Call]:
        """The calls of one site in order: an index kept up to date with ``calls`` (one pass over new calls)."""
        for call in self.calls[self._indexed:]:
            self._sites.setdefault(call.module, []).append(call)
        self._indexed = len(self.calls)
        return self._sites.get(site, [])

    def __iter__(self) -> Iterator[Call]:
        return iter(self.calls)

    def __len__(self) -> int:
        return len(self.calls)

    def modules(self) -> list[str]:
        """Module paths in the order of their first call (each once); ops and attention parts not included."""
        return list(dict.fromkeys(c.module for c in self.calls if _kind(c.module) == "module"))

    def addresses(self) -> list[str]:
        """Every address the pass produced, in execution order: ``site`` for a site that ran once
        per pass, ``site@step`` for each call of a site that ran more often (ops: their module's call)."""
        steps: dict[str, set] = {}
        for call in self.calls:
            steps.setdefault(call.module, set()).add(call.step)
        out = []
        for call in self.calls:
            out.append(_address(call.module, call.step if len(steps[call.module]) > 1 else None))
        return list(dict.fromkeys(out))

    def count(self, module: str) -> int:
        """How many times ``module`` ran in the pass (0: never)."""
        return len(self._calls_of(module))

    def address(self, module: str, step: int = -1) -> str:
        """``module`` as a unit address: its path alone if it ran once, else ``path@step`` (default: last call)."""
        total = self.count(module)
        if total == 0:
            raise UnitError(f"{module!r} was never called in the surveyed forward pass")
        if total == 1:
            return module
        return _address(module, step if step >= 0 else total + step)

    def call(self, unit: UnitLike) -> Call:
        """The call a unit address reads (its step; the only call when it has none)."""
        unit = Unit.coerce(unit, self.model)
        calls = self._calls_of(unit.site)
        if not calls:
            unit.resolve(self.model)  # no such module: its closest paths and how to list them (Unit.resolve)
            hint = f" {unit.owner!r} is a module of the model that did not run; list what ran with Survey.addresses()"
            if unit.op is not None or unit.part is not None:
                import difflib

                inner = list(dict.fromkeys(c.module for c in self.calls if _kind(c.module) != "module"))
                close = difflib.get_close_matches(unit.site, inner, n=5, cutoff=0.5)
                hint = (f" Did you mean {', '.join(repr(c) for c in close)}?" if close else "") + \
                    " (survey with ops=True to see ops and attention parts; list them with survey.addresses())"
            raise UnitError(f"{unit.site!r} was never called in the surveyed forward pass.{hint}")
        if unit.step is None:
            if len(calls) > 1:
                raise UnitError(f"{unit.module!r} was called {len(calls)} times per forward pass: name one call, "
                                f"e.g. '{unit.replace(step=len(calls) - 1)}'")
            return calls[0]
        if not -len(calls) <= unit.step < len(calls):
            raise UnitError(f"step {unit.step} of {unit.module!r} never happened: it was called {len(calls)} time(s)")
        return calls[unit.step]

    def reached(self, unit: UnitLike) -> Call:
        """:meth:`call`; when the surveyed pass failed before the unit ran (a survey with ``strict=False``), the
        model's own error (kept in :attr:`error`) instead of "never called"."""
        try:
            return self.call(unit)
        except UnitError:
            if self.error is not None:
                raise self.error
            raise

    def shape(self, unit: UnitLike) -> tuple:
        """One sample's shape of a unit's values (its index applied), e.g. ``(H, W)`` for a channel."""
        unit = Unit.coerce(unit, self.model)
        call = self.call(unit)
        if call.shape is None:
            raise UnitError(f"{unit.module!r} returns {call.kind}, not a tensor: name a part, e.g. '{unit.module}:0'")
        if unit.index is None or (unit.output is not None and unit.part is None):
            return call.shape
        return tuple(unit.select(torch.empty((1,) + call.shape, device="meta")).shape[1:])

    def table(self) -> str:
        """A printable table: address, module type, output shape, one row per call."""
        rows = [("address", "module", "output")]
        for call in self.calls:
            address = call.module if self.count(call.module) == 1 else _address(call.module, call.step)
            kind = _kind(call.module)
            what = self._types.get(call.module, "?") if kind == "module" else \
                (call.module.rsplit(":", 1)[1] if kind == "part" else "op " + call.module.split("/", 1)[1])
            rows.append((address or "(model)", what, str(call.shape) if call.shape is not None else call.kind))
        widths = [max(len(r[i]) for r in rows) for i in range(2)]
        return "\n".join(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}" for a, b, c in rows)

    def __repr__(self) -> str:
        return f"Survey({len(self.calls)} calls of {len(self.modules())} modules)"


def _kind(site: str) -> str:
    return "op" if "/" in site else "part" if ":" in site else "module"


def _address(site: str, step: int | None) -> str:
    """A site (module, op path or ``module:part``) and a step as a unit address."""
    if step is None:
        return site
    if ":" in site and "/" not in site:
        module, part = site.rsplit(":", 1)
        return f"{module}:{part}@{step}"
    return f"{site}@{step}"


__all__ = ["Call", "Survey"]
