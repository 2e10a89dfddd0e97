"""Functional operations as units: values computed inside a module's own forward.

Much of what a network computes never leaves a module as its output: the
residual sum ``out += identity`` of a ResNet block, ``torch.cat`` in a
DenseNet, ``softmax(q @ k.T)`` in a transformer, everything in a model that
has no submodules. An op unit ``"PATH/OP#K"`` (grammar in
:mod:`insilico.units`) names the output of the K-th call of the torch function
OP in the forward of the module PATH itself; calls made inside its children's
forwards are theirs, not its. ``@STEP`` is the call of the module, so
``"cell/mul#1@2"`` is the second ``mul`` in the third call of ``cell``.

Op names are torch's function names as torchvision's FX feature extraction
names the node (:func:`op_name`): ``x + y``, ``torch.add(x, y)``,
``x.add(y)`` and the in-place ``x += y`` / ``x.add_(y)`` are all ``add``;
``F.relu``, ``torch.relu`` and ``x.relu()`` are ``relu``; ``x[i]`` is
``getitem``; ``x / y`` is ``div``. A call counts when it returns a tensor (or
a tuple of tensors: ``chunk``, ``split``, ``max(dim=)``; name the part with
``:0``); attribute reads (``x.shape``, ``x.T``) are not ops. A composite
``torch.nn.functional`` call counts once, by its own name (``layer_norm``,
``multi_head_attention_forward``), not by the ops it is made of.

How: only when a unit of a module's ops (or attention parts) is asked for,
the :class:`~insilico.Probe` registers, through its own handles, a forward
pre-hook and a forward hook on that module (the *owner*) and on the owner's
descendants. The owner's hooks open and close one
:class:`torch.overrides.TorchFunctionMode` for the time of its forward; the
descendants' hooks close it while they run (their ops are not the owner's,
and they keep their native speed and fused kernels) and reopen it after.
The mode counts each torch call per (owner call, op name) as the code runs,
so Python control flow needs no tracing and the count is deterministic for
one input. The chosen calls' outputs go to the probe's edits
and taps exactly as a module output does. Without op units no hook and no mode
exists, so plain module probing costs what it did.

Good to know:

- An op's first axis is read as the batch axis, as a module output's is (an
  index like ``[5]`` starts after it). Ops that fold the batch into it keep
  that folding: Swin's window attention ops are ``(N * windows, heads, ...)``
  (its parts ``:heads``/``:weights`` are unfolded, :mod:`insilico.attention`); an
  op on parameters alone (a bias ``view``) has no batch axis at all.
- ``probe.names(example, ops=True)`` leaves out the ops inside torch.nn's own
  layers (a ``Conv2d``'s ``conv2d`` is the layer's output); they stay
  addressable (``"conv1/conv2d"``).
- Hooks the user registers on the owner's children while the probe is
  attached run after the probe's, with the owner's mode open: tensor ops in
  them would be counted as the owner's. Hooks registered before are not.
- Composite ``torch.nn.functional`` calls count once: to reach inside
  ``nn.MultiheadAttention`` use its parts (:mod:`insilico.attention`).

Written by hand because no library does this for an arbitrary eager model:
torchvision's ``create_feature_extractor`` needs an FX-traceable model (no
data-dependent control flow) and rebuilds it; torchlens logs every op of the
whole model; nnsight's ``.source`` rewrites module code.

Example
-------
>>> import torch, insilico
>>> class Block(torch.nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.conv = torch.nn.Conv2d(2, 2, 3, padding=1)
...     def forward(self, x):
...         return torch.relu(self.conv(x) + x)
>>> model = torch.nn.Sequential(Block())
>>> x = torch.rand(1, 2, 4, 4)
>>> with insilico.Probe(model).record("0/add") as rec:
...     _ = model(x)
>>> torch.allclose(rec["0/add"], model[0].conv(x) + x)
True
>>> op_name(torch.Tensor.__iadd__), op_name(torch.Tensor.relu_), op_name(torch.Tensor.__getitem__)
(('add', True), ('relu', True), ('getitem', False))
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from . import attention
from .units import Unit

_BINARY = {"add", "sub", "mul", "matmul", "truediv", "floordiv", "div", "pow", "mod", "and", "or", "xor",
           "lshift", "rshift"}
_RENAME = {"truediv": "div", "floordiv": "floor_divide", "and": "and_", "or": "or_"}
_ATTENTION_OPS = ("softmax", "matmul", "bmm", "scaled_dot_product_attention")
_NOT_OPS = {"__get__", "__set__", "__delete__", "__setitem__", "__delitem__", "__setstate__", "__reduce_ex__",
            "__deepcopy__", "__torch_function__"}


class _State:
    """Process-wide flags read by the probe's module hooks: ``watching`` while an owner runs,
    ``quiet`` while insilico's own hook code runs (its tensor ops are never the model's ops)."""

    watching = 0
    quiet = 0
    blocking = 0  # watches holding the attention fast path off
    fastpath = True  # its setting before the first of them


STATE = _State()


class quiet:
    """Context manager: torch calls made inside are not counted as ops of any module."""

    def __enter__(self):
        STATE.quiet += 1

    def __exit__(self, *exc):
        STATE.quiet -= 1


def op_name(func: Callable) -> tuple[str, bool] | None:
    """The op name of a torch function and whether the call is in-place; None for attribute access.

    >>> op_name(torch.add), op_name(torch.Tensor.__radd__), op_name(torch.Tensor.__truediv__)
    (('add', False), ('add', False), ('div', False))
    >>> import torch.nn.functional as F
    >>> op_name(F.softmax), op_name(torch.Tensor.__matmul__), op_name(torch.cat)
    (('softmax', False), ('matmul', False), ('cat', False))
    """
    try:
        return _op_name_cached(func)
    except TypeError:  # unhashable callables
        return _op_name(func)


@functools.lru_cache(maxsize=4096)
def _op_name_cached(func: Callable) -> tuple[str, bool] | None:
    return _op_name(func)


def _op_name(func: Callable) -> tuple[str, bool] | None:
    raw = getattr(func, "__name__", None)
    if not raw or raw in _NOT_OPS:
        return None
    name, inplace = raw, False
    if len(name) > 4 and name.startswith("__") and name.endswith("__"):
        name = name[2:-2]
        if name[:1] in ("i", "r") and name[1:] in _BINARY:
            inplace, name = name[0] == "i", name[1:]
    elif name.endswith("_") and not name.startswith("_"):
        name, inplace = name[:-1], True
    name = name.strip("_") or raw
    return _RENAME.get(name, name), inplace


def batch_size(args: tuple, kwargs: dict) -> int | None:
    """The batch size of a model's input: axis 0 of its first tensor (positional, keyword or in a dict)."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, dict):
            value = next((v for v in value.values() if torch.is_tensor(v)), None)
        if torch.is_tensor(value) and value.ndim:
            return int(value.shape[0])
    return None


def holds_tensor(value: Any) -> bool:
    """True for a tensor, or a tuple/list with a tensor in it (the outputs an op unit can address)."""
    return torch.is_tensor(value) or (isinstance(value, (tuple, list)) and any(torch.is_tensor(v) for v in value))


class Owner:
    """A module whose own forward is watched: its op sites, attention-part sites and survey observers."""

    def __init__(self, path: str, module: nn.Module):
        self.path, self.module = path, module
        self.calls = 0
        self.sites: dict[tuple[str, int], Any] = {}
        self.parts: dict[str, Any] = {}
        self.observers: list[Callable] = []
        self.seen: dict[int, dict[str, int]] = {}  # per call of the module: op name -> how many calls

    @property
    def empty(self) -> bool:
        return not (self.sites or self.parts or self.observers)

    def ops_seen(self) -> list[str]:
        """Op addresses this module's forward ran in the last pass (for error messages)."""
        names = {}
        for counts in self.seen.values():
            for name, n in counts.items():
                names[name] = max(names.get(name, 0), n)
        return [f"{self.path}/{name}" + (f"#{k}" if k else "") for name, n in names.items() for k in range(n)]


class _Frame:
    __slots__ = ("owner", "step", "counts", "finder")

    def __init__(self, owner: Owner | None, step: int):
        self.owner, self.step, self.counts = owner, step, {}
        self.finder: attention.Finder | None = None  # finds the call's attention while parts are watched


class OpWatch:
    """Counts and dispatches the ops of watched modules; one per Probe, with hooks only while needed."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.owners: dict[str, Owner] = {}
        self.stack: list[_Frame] = []
        self.handles: list = []
        self.mode: _OpMode | None = None
        self.fastpath = False  # whether this watch holds the attention fast path off
        self.batch: int | None = None  # the batch size of the model's input in this pass (attention checks)

    # -- what is watched ------------------------------------------------------------------
    def owner(self, path: str) -> Owner:
        if path not in self.owners:
            module = Unit(path).resolve(self.model)  # the kept module table, not a traversal per path
            self.owners[path] = Owner(path, module)
        return self.owners[path]

    def add_site(self, unit, site) -> Owner:
        owner = self.owner(unit.owner)
        if unit.part is not None:
            owner.parts[unit.part] = site
        else:
            owner.sites[unit.op, unit.op_call] = site
        self.rewire()
        return owner

    def remove_site(self, unit, site) -> None:
        owner = self.owners.get(unit.owner)
        if owner is None:
            return
        if unit.part is not None:
            owner.parts.pop(unit.part, None)
        else:
            owner.sites.pop((unit.op, unit.op_call), None)
        if owner.empty:
            del self.owners[unit.owner]
        self.rewire()

    def observe(self, paths: list[str], observer: Callable) -> Callable[[], None]:
        """Call ``observer(site, step, value)`` for every op (and attention part) of these modules' own
        forwards; returns the function that stops it."""
        for path in paths:
            self.owner(path).observers.append(observer)
        self.rewire()

        def stop():
            for path in paths:
                owner = self.owners.get(path)
                if owner is not None and observer in owner.observers:
                    owner.observers.remove(observer)
                    if owner.empty:
                        del self.owners[path]
            self.rewire()

        return stop

    @property
    def active(self) -> bool:
        return bool(self.owners)

    def rewire(self) -> None:
        """(Re)register the hooks for the current owners: owners open/close the mode, descendants mask."""
        for handle in self.handles:
            handle.remove()
        self.handles = []
        attending = any(o.parts or o.observers for o in self.owners.values())
        self._fastpath(attending)
        if not self.owners:
            return
        if attending:
            self.handles.append(self.model.register_forward_pre_hook(self._batch_of, with_kwargs=True, prepend=True))
        masks: dict[int, nn.Module] = {}
        for owner in self.owners.values():
            module = owner.module
            self.handles.append(module.register_forward_pre_hook(functools.partial(self._enter, owner)))
            self.handles.append(module.register_forward_hook(functools.partial(self._leave, owner), prepend=True,
                                                             always_call=True))
            for child in module.modules():
                if child is not module:
                    masks[id(child)] = child
        owned = {id(o.module) for o in self.owners.values()}
        for key, child in masks.items():
            if key not in owned:
                self.handles.append(child.register_forward_pre_hook(self._enter_child, prepend=True))
                self.handles.append(child.register_forward_hook(self._leave_child, always_call=True))

    def _fastpath(self, block: bool) -> None:
        """While attention parts are watched, the fused fast paths of nn.MultiheadAttention and
        nn.TransformerEncoderLayer are off (they would bypass the probe); restored after (counted over
        every probe, so the setting from before the first comes back after the last)."""
        backend = getattr(torch.backends, "mha", None)
        if backend is None or block == self.fastpath:
            return
        self.fastpath = block
        if block:
            if STATE.blocking == 0:
                STATE.fastpath = backend.get_fastpath_enabled()
                backend.set_fastpath_enabled(False)
            STATE.blocking += 1
        else:
            STATE.blocking -= 1
            if STATE.blocking == 0:
                backend.set_fastpath_enabled(STATE.fastpath)

    def close(self) -> None:
        self.owners.clear()
        self.rewire()
        self._unwind()

    # -- per pass -------------------------------------------------------------------------
    def new_pass(self) -> None:
        for owner in self.owners.values():
            owner.calls = 0
            owner.seen = {}
        self._unwind()

    def _unwind(self) -> None:
        """A pass that ended without closing its frames (an exception the hooks did not see)."""
        if any(f.owner is not None for f in self.stack):
            STATE.watching -= 1
        self.stack.clear()
        self._close_mode()

    # -- hooks ---------------------------------------------------------------------------------
    # The mode is on torch's stack exactly while the innermost running watched module is an owner:
    # a child's forward runs without it (its ops are not the owner's), so children keep their
    # native speed and fused paths.
    def _batch_of(self, module, args, kwargs) -> None:
        self.batch = batch_size(args, kwargs)

    def _enter(self, owner: Owner, module, args) -> None:
        frame = _Frame(owner, owner.calls)
        if owner.parts or owner.observers:
            frame.finder = attention.Finder(owner.path, module, args, self.batch,
                                            functools.partial(self._part, owner, frame.step), bool(owner.parts))
        owner.calls += 1
        owner.seen[frame.step] = frame.counts
        if not any(f.owner is not None for f in self.stack):
            STATE.watching += 1
        self.stack.append(frame)
        self._open_mode()

    def _leave(self, owner: Owner, module, args, output) -> None:
        frame = None
        while self.stack:
            frame = self.stack.pop()
            if frame.owner is owner:
                break
        self._follow_top()
        if not any(f.owner is not None for f in self.stack):
            STATE.watching -= 1
        if self.stack and self.stack[-1].finder is not None:  # an owner inside an owner (a survey watches all)
            with quiet():
                self.stack[-1].finder.child(module, args, output)
        if owner.parts and output is not None and frame is not None and frame.finder is not None:
            reason = frame.finder.missing()  # parts asked for and not found: refused, never silently absent
            if reason is not None:
                ops = [f"{owner.path}/{name}" + (f"#{k}" if k else "") for name in _ATTENTION_OPS
                       for k in range(frame.counts.get(name, 0))]
                raise attention.unidentified(owner.path, module, reason, ops)

    def _enter_child(self, module, args) -> None:
        self.stack.append(_Frame(None, 0))
        self._close_mode()

    def _leave_child(self, module, args, output) -> None:
        if self.stack and self.stack[-1].owner is None:
            self.stack.pop()
            if self.stack and self.stack[-1].finder is not None:  # a direct child of a watched owner
                with quiet():
                    self.stack[-1].finder.child(module, args, output)
        self._follow_top()

    def _follow_top(self) -> None:
        if self.stack and self.stack[-1].owner is not None:
            self._open_mode()
        else:
            self._close_mode()

    def _open_mode(self) -> None:
        if self.mode is None:
            self.mode = _OpMode(self)
            self.mode.__enter__()

    def _close_mode(self) -> None:
        if self.mode is not None and torch.overrides._get_current_function_mode() is self.mode:
            mode, self.mode = self.mode, None
            mode.__exit__(None, None, None)

    # -- dispatch --------------------------------------------------------------------------
    def call(self, func, args, kwargs) -> Any:
        frame = self.stack[-1] if self.stack else None
        if frame is None or frame.owner is None or STATE.quiet:
            return func(*args, **kwargs)
        owner = frame.owner
        named = op_name(func)
        if named is None:
            return func(*args, **kwargs)
        name, inplace = named
        if frame.finder is not None:
            result = frame.finder.call(name, func, args, kwargs, inplace)
        else:
            result = func(*args, **kwargs)
        if not holds_tensor(result):
            return result
        k = frame.counts.get(name, 0)
        frame.counts[name] = k + 1
        with quiet():
            for observer in owner.observers:
                observer(f"{owner.path}/{name}" + (f"#{k}" if k else ""), frame.step, result)
            site = owner.sites.get((name, k))
            if site is None:
                return result
            edited = site.fire(result, frame.step)
            if edited is not result and inplace and torch.is_tensor(result) and torch.is_tensor(edited):
                result.copy_(edited)  # in place, as the op was: `x.add_(y)` without assignment sees the edit too
                return result
            return edited

    def _part(self, owner: Owner, step: int, part: str, value: torch.Tensor) -> torch.Tensor:
        with quiet():
            for observer in owner.observers:
                observer(f"{owner.path}:{part}", step, value)
            site = owner.parts.get(part)
            if site is None:
                return value
            return site.fire({part: value}, step)[part]


class _OpMode(TorchFunctionMode):
    """Open only during a watched module's forward; hands every torch call to the :class:`OpWatch`."""

    def __init__(self, watch: OpWatch):
        super().__init__()
        self.watch = watch

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return self.watch.call(func, args, kwargs or {})


__all__ = ["OpWatch", "op_name", "holds_tensor", "quiet", "STATE"]
