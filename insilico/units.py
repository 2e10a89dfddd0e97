"""Unit addresses: one way to say "which units" for every tool in insilico.

A unit address names a module (or an operation inside a module's own
forward), optionally one of its calls in a forward pass, and optionally a
numpy-style index into ONE sample's output::

    PATH[/OP[#K]][:OUTPUT][@STEP][INDEX]

- ``PATH``: the module path as ``model.named_modules()`` spells it
  (``"features.8"``); the empty path is the model itself, so ``"[281]"`` is
  output 281 of the model (a class logit).
- ``/OP#K``: the output of the K-th (from 0; ``#0`` may be left out) call of the
  functional operation OP in the module's OWN forward, not in its children's
  (:mod:`insilico.ops`): ``"layer1.0/add"`` is ResNet block ``layer1.0``'s
  residual sum ``out += identity`` before its last ReLU, ``"/relu#1"`` the
  second ``relu`` in the root model's forward. OP is torch's function name,
  as torchvision's FX feature extraction names the node (``x + y``,
  ``torch.add`` and ``x += y`` are all ``add``); list them with
  ``insilico.Probe(model).names(example, ops=True)``.
- ``:OUTPUT``: for modules (and ops) that return a tuple, list or dict, the
  position or key of the tensor meant (``"lstm:0"``). Attention modules have
  two parts computed inside their forward (:mod:`insilico.attention`):
  ``":heads"``, the per-head context before the output projection,
  ``(N, heads, L, head_dim)``, and ``":weights"``, the attention
  probabilities ``(N, heads, L, S)`` (windowed attention: ``(N, heads, windows, T, .)``);
  ``"attn:heads[5]"`` is head 5. A module whose attention is not identified is refused.
- ``@STEP``: for modules called several times per forward pass (recurrent
  networks), the call number, counted from 0; negative steps count from the
  last call (``"blt.conv2@3"``, ``"cell@-1"``). For an op it is the call of
  the module that runs it: ``"cell/mul#1@2"`` is the second ``mul`` in
  ``cell``'s third call; ``"cell@2/mul#1"`` is accepted as the same address.
- ``INDEX``: ints, slices, ``...`` and lists of ints, indexing the output of
  one sample without its batch axis (``"[12]"`` = channel 12,
  ``"[12,6,6]"`` = the neuron at row 6, column 6 of channel 12).

``str(Unit.parse(s)) == s``: an address prints the way it was written; two
spellings of one address (``"[12, 6, 6]"``, ``"[12,6,6]"``, ``"a/add"``,
``"a/add#0"``; ``"a@1/add"``, ``"a/add@1"``) compare equal.

Why the op goes into PATH (and ``@STEP`` after it): ``PATH/OP#K`` names one
place where values appear, as a module path does, so every other part of
the grammar keeps one meaning and one position, and a tool that rebuilds a
unit from its fields (``Unit(u.module, u.step, None, u.output)``, "the whole
layer of this unit") keeps the op without knowing about ops.

Example
-------
>>> import torch
>>> from insilico import Unit
>>> u = Unit.parse("features.0@2[3,:,1:4]")
>>> u.module, u.step, u.index
('features.0', 2, (3, slice(None, None, None), slice(1, 4, None)))
>>> tuple(u.select(torch.zeros(8, 5, 7, 7)).shape)
(8, 7, 3)
>>> v = Unit.parse("cell@2/mul#1[0]")
>>> v.module, v.owner, v.op, v.op_call, v.step, v.key
('cell/mul#1', 'cell', 'mul', 1, 2, 'cell/mul#1@2[0]')
"""
from __future__ import annotations

import dataclasses
import difflib
import re
import weakref
from typing import Any, Union

import torch
from torch import nn

from .errors import UnitError

IndexItem = Union[int, slice, "ellipsis", tuple]
UnitLike = Union[str, "Unit", nn.Module]

ATTENTION_PARTS = ("heads", "weights")

_OP = re.compile(r"^(?P<owner>[^:@\[\]/#]*)/(?P<op>[A-Za-z_][A-Za-z0-9_]*)(?:#(?P<call>\d+))?$")
_STEP_BEFORE_OP = re.compile(r"^(?P<owner>[^:@\[\]/#]*)@(?P<step>-?\d+)(?P<op>/[^:@\[\]]*)"
                             r"(?P<rest>(?::[^:@\[\]]+)?(?:\[.*\])?)$")
_ADDRESS = re.compile(
    r"^(?P<module>[^:@\[\]]*)"
    r"(?::(?P<output>[^:@\[\]]+))?"
    r"(?:@(?P<step>-?\d+))?"
    r"(?P<index>\[.*\])?$"
)


@dataclasses.dataclass(frozen=True, eq=False)
class Unit:
    """Which units: a module, optionally one call (``step``) and an index into one sample's output.

    Parameters
    ----------
    module : str
        Path as ``model.named_modules()`` spells it; ``""`` is the model itself.
    step : int, optional
        Call number within one forward pass (negative: from the last call).
        ``None`` means every call.
    index : tuple, optional
        Numpy-style index (ints, slices, ``...``, tuples of ints for lists)
        into one sample's output, without the batch axis. ``None`` = all units.
    output : int or str, optional
        Position or key of the tensor in a tuple/list/dict output.
    """

    module: str
    step: int | None = None
    index: tuple | None = None
    output: int | str | None = None
    text: str | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self):
        if "/" in self.module or "#" in self.module:
            object.__setattr__(self, "module", _canonical_op_path(self.module))
        if self.index is not None:
            items = self.index if isinstance(self.index, tuple) else (self.index,)
            object.__setattr__(self, "index", tuple(_normalise_item(i) for i in items))

    # -- construction --------------------------------------------------------------
    @classmethod
    def parse(cls, spec: str | Unit) -> Unit:
        """Parse ``"path[:output][@step][index]"``; a Unit is returned unchanged."""
        if isinstance(spec, Unit):
            return spec
        if not isinstance(spec, str):
            raise UnitError(f"a unit address is a string like 'features.3[12]', not {type(spec).__name__}")
        text = spec.strip()
        moved = _STEP_BEFORE_OP.match(text)
        if moved is not None:  # 'cell@2/mul#1[0]' is 'cell/mul#1@2[0]'
            rest = moved["rest"]
            cut = rest.find("[")
            output, index = (rest, "") if cut < 0 else (rest[:cut], rest[cut:])
            text = f"{moved['owner']}{moved['op']}{output}@{moved['step']}{index}"
        match = _ADDRESS.match(text)
        if match is None:
            raise UnitError(
                f"cannot read unit address {spec!r}: write 'path[/op#k][:output][@step][index]', "
                "e.g. 'features.8', 'features.8[12,6,6]', 'blt.conv2@3[12]', 'layer1.0/add#0[5]'"
            )
        output = match["output"]
        if output is not None and re.fullmatch(r"-?\d+", output):
            output = int(output)
        index = _parse_index(match["index"], spec) if match["index"] else None
        step = int(match["step"]) if match["step"] is not None else None
        return cls(match["module"], step, index, output, text=spec)

    @classmethod
    def coerce(cls, spec: UnitLike, model: nn.Module | None = None) -> Unit:
        """A Unit from an address string, a Unit, or a module object of ``model``."""
        if isinstance(spec, nn.Module):
            if model is None:
                raise UnitError("a module object can only be used as a unit together with its model")
            name = _path_of(model, spec)
            if name is not None:
                return cls(name)
            raise UnitError(f"the module {type(spec).__name__} is not part of this model")
        return cls.parse(spec)

    def replace(self, **changes) -> Unit:
        """A copy with some fields changed (its string form becomes canonical)."""
        return dataclasses.replace(self, text=None, **changes)

    # -- ops and parts ---------------------------------------------------------------------
    @property
    def owner(self) -> str:
        """The module whose forward computes this unit: ``module`` itself, or the module of an op unit."""
        return self.module.split("/", 1)[0]

    @property
    def op(self) -> str | None:
        """The op name of an op unit (``"add"`` in ``"layer1.0/add#1"``), else None."""
        return self.module.split("/", 1)[1].split("#")[0] if "/" in self.module else None

    @property
    def op_call(self) -> int | None:
        """Which call of the op in one call of the owner's forward (``1`` in ``"layer1.0/add#1"``), else None."""
        if "/" not in self.module:
            return None
        _, _, call = self.module.partition("#")
        return int(call) if call else 0

    @property
    def part(self) -> str | None:
        """``"heads"`` or ``"weights"`` for the attention parts of a module, else None."""
        return self.output if self.output in ATTENTION_PARTS and self.op is None else None

    @property
    def site(self) -> str:
        """The name of the place where this unit's values appear: the module path, the op path
        (``"layer1.0/add"``), or ``"attn:heads"`` / ``"attn:weights"`` for attention parts."""
        return f"{self.module}:{self.output}" if self.part is not None else self.module

    # -- identity ----------------------------------------------------------------------
    @property
    def key(self) -> str:
        """Canonical string form, used for equality, hashing and as a dict key."""
        out = self.module
        if self.output is not None:
            out += f":{self.output}"
        if self.step is not None:
            out += f"@{self.step}"
        if self.index is not None:
            out += "[" + ",".join(_format_item(i) for i in self.index) + "]"
        return out

    def __str__(self) -> str:
        return self.text if self.text is not None else self.key

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, str):
            try:
                other = Unit.parse(other)
            except UnitError:
                return False
        return isinstance(other, Unit) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    # -- resolution against a model ----------------------------------------------------------
    def resolve(self, model: nn.Module) -> nn.Module:
        """The module this unit lives in (for an op unit: the module whose forward runs the op);
        unknown paths fail with the closest names. Op names are checked when the model runs.

        The path is looked up in the model's :func:`module_table` (no traversal of the model per unit).
        """
        module = _lookup(model, self.owner)
        if module is not None:
            return module
        hint = close_matches(self.owner, module_table(model), model)
        raise UnitError(
            f"{type(model).__name__} has no module {self.owner!r}.{hint} "
            "List the valid paths with insilico.Probe(model).names() or model.named_modules() "
            "(and ops with insilico.Probe(model).names(example, ops=True))."
        )

    def pick(self, output: Any) -> Any:
        """The tensor meant by ``:output`` in a module's (possibly structured) output."""
        if self.output is None:
            return need_tensor(self, output, " to index") if self.index is not None else output
        if torch.is_tensor(output):  # indexing a tensor with ':k' would pick batch sample k: never what is meant
            raise UnitError(
                f"{self.module!r} returns one tensor ({describe(output)}), which has no parts: drop "
                f"':{self.output}', and index channels with [i], e.g. '{self.replace(output=None, index=(0,))}'"
            )
        try:
            part = output[self.output]
        except (KeyError, IndexError, TypeError):
            raise UnitError(f"{self.module!r} returns {describe(output)}: it has no part {self.output!r}") from None
        if not torch.is_tensor(part):
            raise UnitError(f"part {self.output!r} of {self.module!r}'s output is {describe(part)}, not a tensor: an "
                            f"address names one level of parts; record {self.module!r} whole and read "
                            f"rec[{self.module!r}][{self.output!r}] (its axes are the module's, batch maybe not first)")
        return part

    def put(self, output: Any, part: torch.Tensor) -> Any:
        """``output`` with the part named by ``:output`` replaced by ``part``."""
        if self.output is None:
            return part
        if isinstance(output, dict):
            return {**output, self.output: part}
        items = list(output)
        items[self.output] = part
        return type(output)(*items) if hasattr(output, "_fields") else type(output)(items)

    def where(self, tensor: torch.Tensor) -> tuple:
        """The full index (batch axis first) of this unit in a batch ``tensor``; checked against its shape."""
        if self.index is None:
            return (slice(None),)
        check_index(self.index, tuple(tensor.shape[1:]), self)
        return (slice(None),) + tuple(list(i) if isinstance(i, tuple) else i for i in self.index)

    def select(self, tensor: torch.Tensor) -> torch.Tensor:
        """This unit's values in a batch ``tensor`` (N, ...), batch axis kept (a 0-dim output as it is)."""
        if self.index is None:
            return tensor
        return tensor[self.where(tensor)]


_KEPT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> (path -> weakref(module), id -> path)


def module_table(model: nn.Module) -> dict[str, nn.Module]:
    """Every module of ``model`` by its path, as ``model.named_modules()`` spells it (``""``: the model).

    One traversal of the model. The table is also kept for the model (weakly:
    it keeps neither the model nor its modules alive) and every later lookup
    (:meth:`Unit.resolve`, :meth:`Unit.coerce`) reads it instead of traversing
    the model again, so resolving k addresses costs one traversal and k walks
    down their paths, not k traversals. A lookup trusts an entry only after
    walking its path through the modules' children (a few dict reads) and
    traverses the model anew when the path is missing or now leads to another
    module: a module added, replaced or removed after a first call is seen.
    (Known limit: a module already listed that is later also registered under
    an earlier path keeps its first path until the next traversal.)

    Parameters
    ----------
    model : nn.Module
        Any module.

    Returns
    -------
    dict[str, nn.Module]
        A new dict, in ``named_modules()`` order.

    Example
    -------
    >>> import torch
    >>> from insilico.units import module_table
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    >>> list(module_table(model))
    ['', '0']
    >>> model.add_module("head", torch.nn.ReLU())
    >>> type(Unit("head").resolve(model)).__name__, list(module_table(model))
    ('ReLU', ['', '0', 'head'])
    """
    table = dict(model.named_modules())
    _KEPT[model] = ({path: weakref.ref(m) for path, m in table.items()}, {id(m): path for path, m in table.items()})
    return table


def _kept(model: nn.Module, fresh: bool) -> tuple:
    """The kept ``(path -> weakref, id -> path)`` of ``model`` (made now when ``fresh`` or none is kept)."""
    if fresh or model not in _KEPT:
        module_table(model)
    return _KEPT[model]


def _walk(model: nn.Module, path: str) -> nn.Module | None:
    """The module at ``path`` through the children dicts, as ``named_modules()`` walks them; None if there is none."""
    module = model
    for atom in path.split(".") if path else ():
        module = module._modules.get(atom)
        if module is None:
            return None
    return module


def _lookup(model: nn.Module, path: str) -> nn.Module | None:
    """The module at ``path`` by the kept table, checked by a walk; one traversal when the table is out of date."""
    for fresh in (False, True):
        ref = _kept(model, fresh)[0].get(path)
        module = None if ref is None else ref()
        if module is not None and _walk(model, path) is module:
            return module
    return None


def _path_of(model: nn.Module, module: nn.Module) -> str | None:
    """The path of a module object of ``model`` by the kept table, checked by a walk; one traversal when out of date."""
    for fresh in (False, True):
        path = _kept(model, fresh)[1].get(id(module))
        if path is not None and _walk(model, path) is module:
            return path
    return None


def close_matches(path: str, paths, model: nn.Module | None = None) -> str:
    """`` Did you mean ...?`` for an unknown module ``path`` among ``paths`` (``""`` when nothing is close).

    The same path under a wrapper's prefix comes first: a model whose one container child holds the network
    (a ZooModel's ``'net'`` beside its ``normalize``, DataParallel's ``'module'``) is asked ``'layer1'`` and
    answers ``'net.layer1'``, and says where its modules are; a path written with a prefix the model lacks
    (``'module.layer1'``, ``'net.layer1'`` copied from a wrapped model) answers the path without it; then
    spelling neighbours.

    >>> close_matches("module.fc", ["", "fc", "conv"])
    " Did you mean 'fc'?"
    >>> close_matches("conv", ["", "module", "module.conv"])
    " Did you mean 'module.conv'?"
    >>> wrapper = nn.Sequential()
    >>> wrapper.add_module("normalize", nn.Identity()); wrapper.add_module("net", nn.Sequential(nn.Conv2d(1, 1, 1)))
    >>> close_matches("0", [n for n, _ in wrapper.named_modules()], wrapper)
    " Did you mean 'net.0'? Sequential keeps its network under 'net.': write 'net.0' (its modules are 'net.<name>')."
    """
    names = [n for n in paths if n]
    wrapped = sorted((n for n in names if n.endswith("." + path)), key=len) if path else []
    prefix, _, rest = path.partition(".")
    tops = {n.partition(".")[0] for n in names}
    unwrapped = [rest] if rest and prefix not in tops and rest in names else []
    holder = _network_child(model) if prefix != "module" else None
    inside = [f"{holder}.{path}"] if holder is not None and f"{holder}.{path}" in names else []
    close = list(dict.fromkeys(inside + unwrapped + wrapped + difflib.get_close_matches(path, names, n=5, cutoff=0.5)))
    hint = f" Did you mean {', '.join(repr(c) for c in close[:5])}?" if close else ""
    parallel = (nn.DataParallel, nn.parallel.DistributedDataParallel)
    if isinstance(model, parallel) and prefix != "module":
        example = (wrapped or [n for n in names if n.startswith("module.")] or ["module"])[0]
        hint += (f" The model is wrapped in {type(model).__name__}: its modules are under 'module.' "
                 f"(e.g. {example!r}), or probe model.module itself.")
    elif inside:
        hint += (f" {type(model).__name__} keeps its network under '{holder}.': write {inside[0]!r} (its modules are "
                 f"'{holder}.<name>').")
    return hint


def _network_child(model: nn.Module | None) -> str | None:
    """The name of ``model``'s one child that holds submodules (a wrapper's network), else None."""
    if model is None:
        return None
    holders = [name for name, child in model.named_children() if next(iter(child.children()), None) is not None]
    return holders[0] if len(holders) == 1 else None


def check_index(index: tuple, shape: tuple, unit: Unit | str = "") -> None:
    """Raise a UnitError unless ``index`` fits one sample's ``shape``."""
    n_real = sum(i is not Ellipsis for i in index)
    if sum(i is Ellipsis for i in index) > 1 or n_real > len(shape):
        raise UnitError(f"index of {str(unit)!r} has {n_real} entries but one sample's output has shape {shape}")
    expanded = list(index)
    if Ellipsis in expanded:
        at = expanded.index(Ellipsis)
        expanded[at : at + 1] = [slice(None)] * (len(shape) - n_real)
    for axis, (item, size) in enumerate(zip(expanded, shape)):
        values = item if isinstance(item, tuple) else (item,) if isinstance(item, int) else ()
        for value in values:
            if not -size <= value < size:
                raise UnitError(
                    f"index {value} is out of range for axis {axis} of size {size} in {str(unit)!r}: "
                    f"one sample's output has shape {shape}"
                )


def need_tensor(unit: Unit | str, value: Any, purpose: str = "") -> torch.Tensor:
    """``value`` when it is one tensor; else a UnitError listing the parts the address grammar names, with shapes.

    The one reader of a structured output (an LSTM's ``(output, (h, c))``, a detection head's tuple, a
    dict) for every tool that needs a tensor; ``purpose`` says for what (``" for Grad-CAM"``).

    >>> need_tensor(Unit.parse("cell[0]"), (torch.zeros(2, 3), torch.zeros(2, 4)))
    Traceback (most recent call last):
    ...
    insilico.errors.UnitError: 'cell[0]' reads (Tensor[2, 3], Tensor[2, 4]), not one tensor: name one of its parts: 'cell:0[0]' (Tensor[2, 3]), 'cell:1[0]' (Tensor[2, 4])
    """
    if torch.is_tensor(value):
        return value
    unit = Unit.parse(unit)
    if isinstance(value, dict):
        parts = list(value.items())
    elif isinstance(value, (list, tuple)):
        parts = list(enumerate(value))
    else:
        parts = []
    named = [f"'{unit.replace(output=k)}' ({describe(v)})" for k, v in parts if torch.is_tensor(v)]
    whole = unit.replace(output=None, step=None, index=None)
    nested = [f"part {k!r} is {describe(v)} (an address names one level of parts: record '{whole}' whole and read "
              f"rec['{whole}'][{k!r}])" for k, v in parts if not torch.is_tensor(v)]
    what = f"name one of its parts: {', '.join(named)}" if named else \
        "no part of it is a tensor that an address can name; address a module inside it instead"
    raise UnitError(f"{str(unit)!r} reads {describe(value)}, not one tensor{purpose}: {what}"
                    + ("; " + "; ".join(nested) if nested else ""))


def describe(obj: Any) -> str:
    """A short description of a (nested) module output, e.g. ``'(Tensor[4, 8], Tensor[4])'``."""
    if torch.is_tensor(obj):
        return f"Tensor{list(obj.shape)}"
    if isinstance(obj, dict):
        return "{" + ", ".join(f"{k!r}: {describe(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, (tuple, list)):
        inner = ", ".join(describe(v) for v in obj)
        return f"({inner})" if isinstance(obj, tuple) else f"[{inner}]"
    return type(obj).__name__


def _canonical_op_path(path: str) -> str:
    match = _OP.match(path)
    if match is None:
        raise UnitError(
            f"cannot read the op address {path!r}: write 'module/op' or 'module/op#k' (k counted from 0), "
            "e.g. 'layer1.0/add', 'layer1.0/add#1', '/relu' (an op of the model's own forward)"
        )
    call = int(match["call"] or 0)
    return f"{match['owner']}/{match['op']}" + (f"#{call}" if call else "")


def _normalise_item(item: Any) -> IndexItem:
    if item is Ellipsis or isinstance(item, slice):
        return item
    if isinstance(item, (list, tuple)) or (torch.is_tensor(item) and item.ndim == 1):
        return tuple(int(i) for i in item)
    try:
        return int(item)
    except (TypeError, ValueError):
        raise UnitError(f"cannot use {item!r} in a unit index: use ints, slices, ... or lists of ints") from None


def _parse_index(text: str, spec: str) -> tuple:
    body = text[1:-1]
    parts, depth, start = [], 0, 0
    for pos, char in enumerate(body):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(body[start:pos])
            start = pos + 1
    parts.append(body[start:])
    try:
        return tuple(_parse_item(p.strip()) for p in parts)
    except ValueError:
        raise UnitError(
            f"cannot read the index of {spec!r}: use ints, slices (a:b:c), ... and lists [i,j], "
            "e.g. 'features.8[12,6,6]' or 'features.8[:, 2:5]'"
        ) from None


def _parse_item(text: str) -> IndexItem:
    if text == "...":
        return Ellipsis
    if text.startswith("[") and text.endswith("]"):
        return tuple(int(v) for v in text[1:-1].split(",") if v.strip())
    if ":" in text:
        fields = text.split(":")
        if len(fields) > 3:
            raise ValueError(text)
        return slice(*(int(f) if f.strip() else None for f in fields))
    return int(text)


def _format_item(item: IndexItem) -> str:
    if item is Ellipsis:
        return "..."
    if isinstance(item, tuple):
        return "[" + ",".join(str(i) for i in item) + "]"
    if isinstance(item, slice):
        text = ("" if item.start is None else str(item.start)) + ":" + ("" if item.stop is None else str(item.stop))
        return text + (f":{item.step}" if item.step is not None else "")
    return str(item)
