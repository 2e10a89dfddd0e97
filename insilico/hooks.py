"""Hook sites and handles: the machinery under :class:`insilico.Probe`.

A site is the ONE forward hook the probe puts on a module (or, for op units,
the op watch's slot inside a module's forward): it counts the calls of a
forward pass (steps), applies the active edits in order, hands the edited
output to the active taps, and ends a truncated pass (:class:`StopForward`).
A handle is what the probe gives back for each request (a record, a lesion,
a stimulation): a context manager that removes exactly the parts it added.
Only :class:`insilico.Probe` creates sites and handles.
"""
from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn

from . import ops as _ops
from .errors import UnitError
from .survey import Call, Survey
from .units import Unit, describe


class HookOwner(Protocol):
    """What handles need of the probe that made them (:class:`insilico.Probe` is the one owner)."""

    model: nn.Module
    _handles: list
    _sites: dict

    def _site(self, unit: Unit) -> _Site: ...

    def _release(self, site: str) -> None: ...


class Edit(Protocol):
    """What a site calls on an edit (:mod:`insilico.edits`): on its ``steps`` (None: all), output -> output."""

    steps: frozenset | None

    def __call__(self, output: Any, step: int) -> Any: ...


# ---------------------------------------------------------------------------------------
# Hook sites: one forward hook per module
# ---------------------------------------------------------------------------------------
class StopForward(Exception):
    """Raised by a hook of a ``record(..., stop=True)`` once every recorded unit has run; the pass ends there."""


class _Site:
    """The single forward hook on one module; dispatches each call to edits, then taps."""

    def __init__(self, path: str, module: nn.Module):
        self.path = path
        self.edits: list[Edit] = []
        self.taps: list = []
        self.calls = 0
        self.handle = module.register_forward_hook(self._hook)

    def remove(self) -> None:
        self.handle.remove()

    def hint(self) -> str:
        return ""

    def _hook(self, module, args, output):
        step = self.calls
        self.calls += 1
        if _ops.STATE.watching:  # an op mode is open: our own tensor ops are not the model's
            with _ops.quiet():
                return self.fire(output, step)
        return self.fire(output, step)

    def fire(self, output, step):
        for edit in self.edits:
            if edit.steps is None or step in edit.steps:
                output = edit(output, step)
        for tap in self.taps:
            try:
                tap(output, step)
            except UnitError:  # a wrong address fails at once, with its message
                raise
            except Exception as error:  # noqa: BLE001 - anything else never breaks the user's forward
                tap.error = error
        for tap in self.taps:
            if tap.stop_at == (self.path, step):
                raise StopForward
        return output


class _InnerSite(_Site):
    """The site of an op unit or an attention part: fired by the probe's op watch (:mod:`insilico.ops`).

    ``calls`` is the number of calls of the owning module in which the op ran (its last step + 1).
    Attention parts arrive as ``{part: tensor}``, so taps and edits pick them like a dict output.
    """

    def __init__(self, unit: Unit, watch: _ops.OpWatch):
        self.unit, self.watch = unit, watch
        self.path = unit.site
        self.edits, self.taps, self.calls = [], [], 0
        self.owner: _ops.Owner | None = None

    def fire(self, output, step):
        self.calls = max(self.calls, step + 1)
        return super().fire(output, step)

    def remove(self) -> None:
        self.watch.remove_site(self.unit, self)

    def hint(self) -> str:
        owner = self.owner
        if owner is None:
            return ""
        if not owner.seen:
            return f" ({self.unit.owner!r} itself did not run)"
        if self.unit.part is not None:
            return ""
        seen = owner.ops_seen()
        if not seen:
            return f" ({self.unit.owner!r} ran no op of its own: its work is done by its children)"
        import difflib

        close = difflib.get_close_matches(self.unit.module, seen, n=5, cutoff=0.5) or seen[:8]
        return (f". Ops of {self.unit.owner!r}'s own forward: {', '.join(repr(c) for c in close)}"
                f"{' ...' if len(seen) > len(close) else ''}; list all with probe.names(example, ops=True)")


class _OpObserver:
    """Logs every op (and attention part) of the watched modules into a :class:`Survey`.

    The ops inside torch.nn's own layers (a Conv2d's ``conv2d``, which is the
    layer's output) stay addressable but are not logged, so listings show the
    ops a model's author wrote.
    """

    def __init__(self, survey: Survey, model: nn.Module):
        self.survey = survey
        self.builtin = {name for name, m in model.named_modules()
                        if name and type(m).__module__.startswith("torch.nn.modules")}

    def __call__(self, site: str, step: int, value):
        if "/" in site and site.split("/", 1)[0] in self.builtin:
            return
        first = value if torch.is_tensor(value) else None
        shape = tuple(first.shape[1:]) if first is not None and first.ndim else (() if first is not None else None)
        self.survey.add(Call(site, step, shape, None if first is None else first.dtype, describe(value),
                             first is not None and first.ndim == 0))


def _call_of(path: str, step: int, output) -> Call:
    """One module call as a survey logs it: one sample's output shape, dtype, a description."""
    value = output if torch.is_tensor(output) else None
    shape = tuple(value.shape[1:]) if value is not None and value.ndim else (() if value is not None else None)
    return Call(path, step, shape, None if value is None else value.dtype, describe(output),
                value is not None and value.ndim == 0)


class _Observer:
    """Logs every call of a module into a :class:`Survey` (used by :meth:`Probe.survey`)."""

    stop_at = None
    error = None

    def __init__(self, unit: Unit, survey: Survey):
        self.unit, self.survey = unit, survey

    def __call__(self, output, step):
        self.survey.add(_call_of(self.unit.module, step, output))


# ---------------------------------------------------------------------------------------
# Handles
# ---------------------------------------------------------------------------------------
class Handle:
    """Something a Probe attached. A context manager; ``remove()`` detaches it (idempotent)."""

    def __init__(self, probe: HookOwner):
        self.probe = probe
        self.removed = False

    def _attach(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _detach(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def remove(self) -> None:
        if self.removed:
            return
        self.removed = True
        try:
            self._detach()
        finally:
            if self in self.probe._handles:
                self.probe._handles.remove(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


class _SurveyHook(Handle):
    """ONE process-wide forward hook that logs the calls of many modules into a :class:`Survey`.

    A hook per module costs more than the pass itself on a model of thousands of
    modules (registering and removing 2,000 hooks); the global hook
    (``torch.nn.modules.module.register_module_forward_hook``) is registered
    once, for the one surveyed pass, and picks the surveyed modules by identity
    (``modules``: ``id(module) -> path``; any other module's call is ignored).
    Torch runs global hooks before a module's own, so :meth:`Probe.survey` gives
    it only modules without forward hooks of their own (what it sees is what the
    caller gets); the others keep an :class:`_Observer` on their site, after the
    probe's edits and the user's hooks. Steps count the calls from the handle's
    attachment: one survey is one forward pass.
    """

    def __init__(self, probe: HookOwner, modules: dict[int, str], survey: Survey):
        super().__init__(probe)
        self.paths, self.survey = modules, survey
        self.steps: dict[int, int] = {}
        self.handle = None

    def _attach(self) -> None:
        self.handle = nn.modules.module.register_module_forward_hook(self._hook)

    def _detach(self) -> None:
        if self.handle is not None:
            self.handle.remove()

    def _hook(self, module, args, output):
        key = id(module)
        path = self.paths.get(key)
        if path is None:
            return None
        step = self.steps.get(key, 0)
        self.steps[key] = step + 1
        if _ops.STATE.watching:  # an op mode is open: our own tensor ops are not the model's
            with _ops.quiet():
                self.survey.add(_call_of(path, step, output))
        else:
            self.survey.add(_call_of(path, step, output))
        return None

    def __repr__(self) -> str:
        return f"survey hook (global, one pass) on {len(self.paths)} module(s)"


class _SiteHandle(Handle):
    """A handle whose parts (edits or taps) live on module sites."""

    kind = "taps"

    def __init__(self, probe: HookOwner, parts: list):
        super().__init__(probe)
        self.parts = parts

    def _attach(self) -> None:
        for part in self.parts:
            site = self.probe._site(part.unit)
            getattr(site, self.kind).append(part)
            if hasattr(part, "hint"):
                part.hint = site.hint

    def _detach(self) -> None:
        for part in self.parts:
            site = self.probe._sites.get(part.unit.site)
            if site is not None and part in getattr(site, self.kind):
                getattr(site, self.kind).remove(part)
                self.probe._release(part.unit.site)
