"""Objectives: differentiable functions of recorded units, one value per sample, with an algebra.

An :class:`Objective` names the units it reads with unit addresses
(:mod:`insilico.units`), declares them in ``.units``, and maps the recorded
activations (and the pixel images, for regularizers) to a tensor of shape
``(N,)``: one value per sample, larger = more of what it measures. Synthesis
maximizes or minimizes these values sample by sample.

Objectives combine with ``+``, ``-``, unary ``-``, and ``*`` / ``/`` by a
number; every operator goes through one helper that builds a
:class:`Composite`, and a composite's ``.units`` is the union of its parts'
units without duplicates, so synthesis hooks exactly the modules needed (each
module once, however many of its units are read). :meth:`Objective.stack`
assigns objective ``i`` to sample ``i``; stacked unit activations (neuron,
channel) are evaluated in one vectorised gather, not a loop over samples.

=================== ===========================================================
objective           value per sample
=================== ===========================================================
Activation(unit)    mean of the unit's values (a neuron, a channel, any index)
Neuron(layer, c)    one neuron: channel ``c`` at (y, x) (default: the centre)
Channel(layer, c)   mean of channel ``c`` over positions
Direction(l, v)     mean over positions of <activation, v / |v|>
DeepDream(layer)    mean of the squared activations of a layer
Diversity(layer)    minus the mean cosine similarity of the sample's Gram matrix
                    with the other samples' (of its group)
TotalVariation()    mean absolute difference of neighbouring pixels
L1(c), L2(c)        mean absolute / squared deviation of the pixels from ``c``
=================== ===========================================================

Example
-------
>>> import torch, insilico
>>> from insilico.objectives import Channel, TotalVariation
>>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU())
>>> objective = Channel("1", 2) - 0.5 * Channel("1", 3) - 0.1 * TotalVariation()
>>> [str(u) for u in objective.units]
['1[2]', '1[3]']
>>> tuple(objective.evaluate(model, torch.rand(5, 1, 8, 8)).shape)
(5,)
"""
from __future__ import annotations

import numbers
from typing import Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F

from ..errors import InsilicoError, UnitError
from ..units import Unit, UnitLike


class Activations(Mapping):
    """Whole-module recordings ``{whole_unit_key: (N, ...)}``; ``acts[unit]`` selects a unit's index.

    Synthesis records each needed module once (the unit address without its
    index) and objectives select their units from it.
    """

    def __init__(self, wholes: Mapping[str, torch.Tensor]):
        self._wholes = dict(wholes)

    @staticmethod
    def whole_unit(unit: UnitLike) -> Unit:
        """The address of the whole module output a unit is read from (its index dropped)."""
        unit = Unit.parse(unit)
        return unit.replace(index=None)

    def whole(self, unit: UnitLike) -> torch.Tensor:
        key = self.whole_unit(unit).key
        if key not in self._wholes:
            raise UnitError(
                f"{unit} was not recorded: recorded {', '.join(self._wholes) or 'nothing'}. "
                "An objective must list every unit it reads in .units"
            )
        return self._wholes[key]

    def __getitem__(self, unit: UnitLike) -> torch.Tensor:
        return Unit.parse(unit).select(self.whole(unit))

    def __iter__(self):
        return iter(self._wholes)

    def __len__(self) -> int:
        return len(self._wholes)

    def subset(self, rows: torch.Tensor) -> Activations:
        """The recordings of some samples only (``rows``: indices into the batch)."""
        return Activations({k: v.index_select(0, rows) for k, v in self._wholes.items()})

    @property
    def batch_size(self) -> int:
        for value in self._wholes.values():
            return value.shape[0]
        return 0


class Objective:
    """Base class: a function of recorded units (and pixel images) giving one value per sample.

    Subclasses set ``units`` (the unit addresses they read) and implement
    ``forward(acts, images) -> (N,)``.
    """

    units: tuple[Unit, ...] = ()

    def forward(self, acts: Activations, images: torch.Tensor | None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def __call__(self, acts: Activations | Mapping[str, torch.Tensor], images: torch.Tensor | None = None) -> torch.Tensor:
        if not isinstance(acts, Activations):
            acts = Activations({Activations.whole_unit(k).key: v for k, v in acts.items()})
        value = self.forward(acts, images)
        n = acts.batch_size if len(acts) else (images.shape[0] if images is not None else None)
        if value.ndim != 1 or (n is not None and value.shape[0] != n):
            raise InsilicoError(f"objective {self} returned shape {tuple(value.shape)}; objectives return (N,)")
        return value

    def evaluate(self, model: torch.nn.Module, images: torch.Tensor, grad: bool = False) -> torch.Tensor:
        """Values (N,) of this objective for ``images`` (N, C, H, W) fed to ``model``.

        Records only the modules in ``self.units`` with an :class:`insilico.Probe`;
        without ``grad=True`` it runs under ``torch.no_grad``.
        """
        from ..probe import Probe

        wholes = unique_wholes(self.units)
        with torch.set_grad_enabled(grad):
            if not wholes:
                return self(Activations({}), images)
            with Probe(model).record(*wholes, keep_graph=grad) as rec:
                model(images)
                acts = Activations({w.key: rec[w] for w in wholes})
            return self(acts, images)

    # -- algebra ---------------------------------------------------------------------
    def __add__(self, other):
        return _combine("+", self, other)

    def __radd__(self, other):
        return _combine("+", other, self)

    def __sub__(self, other):
        return _combine("-", self, other)

    def __rsub__(self, other):
        return _combine("-", other, self)

    def __mul__(self, other):
        return _combine("*", self, other)

    def __rmul__(self, other):
        return _combine("*", other, self)

    def __truediv__(self, other):
        return _combine("/", self, other)

    def __neg__(self):
        return _combine("*", -1.0, self)

    def subset(self, rows: torch.Tensor) -> Objective:
        """The objective for the samples ``rows`` (indices into the batch) only, for a batch of those samples.

        Synthesis with ``compact=True`` runs the model on the running samples
        only and evaluates this. The default returns ``self`` (the objective
        treats every sample alike); objectives that hold per-sample tensors
        (targets, classes, references) return a copy with those rows.

        Example
        -------
        >>> obj = Objective.stack([Activation("fc[0]"), Activation("fc[1]"), Activation("fc[2]")])
        >>> obj.subset(torch.tensor([2, 0]))({"fc": torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])}).tolist()
        [3.0, 4.0]
        """
        return self

    @staticmethod
    def stack(objectives: Sequence[Objective]) -> Stacked:
        """Objective ``i`` for sample ``i`` (the batch must have ``len(objectives)`` samples)."""
        return Stacked(objectives)

    def __repr__(self) -> str:
        return type(self).__name__ + "()"


_OPS: dict[str, Callable] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
}


def _combine(op: str, left, right) -> Composite:
    """The one place that builds composites: ``left op right`` for objectives and numbers."""
    for side in (left, right):
        if not isinstance(side, (Objective, numbers.Real)):
            raise InsilicoError(f"cannot combine an objective with {type(side).__name__} by {op!r}")
    if op in "*/" and isinstance(left, Objective) and isinstance(right, Objective):
        raise InsilicoError(f"objectives combine by {op!r} only with numbers (e.g. 0.5 * obj); use + and - between objectives")
    if op == "/" and not isinstance(right, numbers.Real):
        raise InsilicoError("an objective can only be divided by a number")
    return Composite(op, left, right)


def unique_wholes(units: Iterable[UnitLike]) -> list[Unit]:
    """The whole-module addresses behind ``units``, each once, in first-seen order."""
    return list({Activations.whole_unit(u).key: Activations.whole_unit(u) for u in units}.values())


class Composite(Objective):
    """``left op right`` for objectives and numbers; built by the operators, not by hand."""

    def __init__(self, op: str, left: Objective | float, right: Objective | float):
        self.op, self.left, self.right = op, left, right
        parts = [p for p in (left, right) if isinstance(p, Objective)]
        self.units = tuple(dict.fromkeys(u for p in parts for u in p.units))

    def forward(self, acts, images):
        left = self.left(acts, images) if isinstance(self.left, Objective) else self.left
        right = self.right(acts, images) if isinstance(self.right, Objective) else self.right
        return _OPS[self.op](left, right)

    def subset(self, rows: torch.Tensor) -> Objective:
        cut = [p.subset(rows) if isinstance(p, Objective) else p for p in (self.left, self.right)]
        return self if cut == [self.left, self.right] else Composite(self.op, *cut)

    def __repr__(self) -> str:
        return f"({self.left!r} {self.op} {self.right!r})"


# ---------------------------------------------------------------------------------------
# Unit activations
# ---------------------------------------------------------------------------------------
class Activation(Objective):
    """Mean of the values of ``unit`` (any address: a channel, a neuron, a slice, a logit).

    Parameters
    ----------
    unit : str or Unit
        E.g. ``"features.3[5]"`` (channel 5, mean over positions),
        ``"features.3[5,6,6]"`` (one neuron), ``"[281]"`` (a logit).

    Example
    -------
    >>> import torch
    >>> acts = {"fc": torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])}
    >>> Activation("fc[1:3]")(acts).tolist()
    [2.5, 5.5]
    """

    def __init__(self, unit: UnitLike):
        self.unit = Unit.parse(unit)
        self.units = (self.unit,)

    def forward(self, acts, images):
        return _mean(acts[self.unit])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.unit)!r})"


class Channel(Activation):
    """Mean over positions of channel ``channel`` of ``layer`` (for (N, C, ...) outputs).

    Parameters
    ----------
    layer : str
        Module address, e.g. ``"features.3"`` (may carry ``@step`` / ``:output``).
    channel : int
        Channel index.
    """

    def __init__(self, layer: UnitLike, channel: int):
        super().__init__(Unit.parse(layer).replace(index=(int(channel),)))


class Neuron(Activation):
    """One neuron: channel ``channel`` at row ``y``, column ``x`` of ``layer``.

    ``y``/``x`` default to ``None``: the centre position, resolved on the
    first call from the layer's output shape.
    """

    def __init__(self, layer: UnitLike, channel: int, y: int | None = None, x: int | None = None):
        self.layer, self.channel, self.y, self.x = Unit.parse(layer), int(channel), y, x
        super().__init__(self.layer.replace(index=(self.channel,)))  # declares the module; position set lazily

    def forward(self, acts, images):
        whole = acts.whole(self.unit)
        if whole.ndim != 4:
            raise UnitError(f"Neuron needs (N, C, H, W) outputs; {self.layer} gives {tuple(whole.shape)}: use Activation")
        y = whole.shape[2] // 2 if self.y is None else self.y
        x = whole.shape[3] // 2 if self.x is None else self.x
        self.unit = self.layer.replace(index=(self.channel, y, x))
        return _mean(acts[self.unit])


class Direction(Objective):
    """Mean over positions of the projection of ``layer``'s activation onto ``vector / |vector|``.

    Parameters
    ----------
    layer : str
        Module address.
    vector : tensor
        ``(C,)``: a direction in channel space, applied at every position; or
        one sample's full output shape: a direction in the whole layer space.
    """

    def __init__(self, layer: UnitLike, vector: torch.Tensor):
        self.layer = Unit.parse(layer)
        vector = torch.as_tensor(vector, dtype=torch.float32)
        self.vector = vector / vector.norm().clamp_min(1e-12)
        self.units = (self.layer,)

    def forward(self, acts, images):
        act = acts[self.layer]
        v = self.vector.to(act.device, act.dtype)
        if tuple(v.shape) == tuple(act.shape[1:]):
            return (act * v).flatten(1).sum(dim=1)
        if v.ndim == 1 and act.ndim >= 2 and act.shape[1] == v.shape[0]:
            return (act * v.view(1, -1, *([1] * (act.ndim - 2)))).sum(dim=1).flatten(1).mean(dim=1)
        raise InsilicoError(
            f"direction of shape {tuple(v.shape)} does not fit {self.layer} with output {tuple(act.shape[1:])}: "
            "give (C,) or the full per-sample shape"
        )

    def __repr__(self) -> str:
        return f"Direction({str(self.layer)!r}, <{tuple(self.vector.shape)}>)"


class DeepDream(Objective):
    """Mean of the squared activations of ``layer`` (Mordvintsev et al.'s DeepDream objective)."""

    def __init__(self, layer: UnitLike):
        self.layer = Unit.parse(layer)
        self.units = (self.layer,)

    def forward(self, acts, images):
        return _mean(acts[self.layer].pow(2))

    def __repr__(self) -> str:
        return f"DeepDream({str(self.layer)!r})"


class Diversity(Objective):
    """Minus the mean cosine similarity of each sample's Gram matrix to the other samples' (Olah et al. 2017).

    The Gram matrix of a sample is ``A A^T`` with ``A`` its (C, positions)
    activation of ``layer``. All pairwise cosines come from one matrix
    product, not a loop over pairs.

    Parameters
    ----------
    layer : str
        Module address whose activation styles are compared.
    group_size : int, optional
        Compare each sample only with the others of its group of
        ``group_size`` consecutive samples (e.g. the k images of one unit).
        Default ``None``: the whole batch is one group.

    Example
    -------
    >>> import torch
    >>> a = torch.rand(4, 3, 5, 5)
    >>> d = Diversity("conv", group_size=2)({"conv": a})
    >>> tuple(d.shape), bool((d <= 0).all())     # non-negative activations: cosines >= 0
    ((4,), True)
    """

    def __init__(self, layer: UnitLike, group_size: int | None = None):
        self.layer = Unit.parse(layer)
        self.group_size = group_size
        self.units = (self.layer,)

    def forward(self, acts, images):
        act = acts[self.layer]
        n = act.shape[0]
        flat = act.reshape(n, act.shape[1], -1)
        gram = torch.bmm(flat, flat.transpose(1, 2)).flatten(1)
        gram = F.normalize(gram, dim=1)
        cosine = gram @ gram.T
        group = torch.arange(n, device=act.device) // (self.group_size or n)
        others = (group[:, None] == group[None, :]) & ~torch.eye(n, dtype=torch.bool, device=act.device)
        count = others.sum(dim=1).clamp_min(1)
        return -(cosine * others).sum(dim=1) / count

    def __repr__(self) -> str:
        return f"Diversity({str(self.layer)!r}, group_size={self.group_size})"


# ---------------------------------------------------------------------------------------
# Image regularizers (read the pixel images, no units)
# ---------------------------------------------------------------------------------------
class TotalVariation(Objective):
    """Mean absolute difference between vertically and horizontally neighbouring pixels.

    Subtract it to smooth images: ``Channel(...) - 0.1 * TotalVariation()``.
    """

    def forward(self, acts, images):
        _need_images(self, images)
        dy = (images[:, :, 1:, :] - images[:, :, :-1, :]).abs().flatten(1).mean(dim=1)
        dx = (images[:, :, :, 1:] - images[:, :, :, :-1]).abs().flatten(1).mean(dim=1)
        return dx + dy


class L1(Objective):
    """Mean absolute deviation of the pixels from ``constant`` (default 0.5, mid-grey)."""

    def __init__(self, constant: float = 0.5):
        self.constant = float(constant)

    def forward(self, acts, images):
        _need_images(self, images)
        return (images - self.constant).abs().flatten(1).mean(dim=1)

    def __repr__(self) -> str:
        return f"L1({self.constant})"


class L2(Objective):
    """Mean squared deviation of the pixels from ``constant`` (default 0.5, mid-grey)."""

    def __init__(self, constant: float = 0.5):
        self.constant = float(constant)

    def forward(self, acts, images):
        _need_images(self, images)
        return (images - self.constant).pow(2).flatten(1).mean(dim=1)

    def __repr__(self) -> str:
        return f"L2({self.constant})"


def _mean(values: torch.Tensor) -> torch.Tensor:
    """Per-sample mean of (N, ...) values (an int index may have left only the batch axis)."""
    return values.reshape(values.shape[0], -1).mean(dim=1)


def _need_images(objective: Objective, images) -> None:
    if images is None:
        raise InsilicoError(f"{objective!r} reads the pixel images; call it as objective(acts, images)")


def inhibit(objective: Objective) -> Objective:
    """The negative of ``objective``: maximizing it finds inhibiting stimuli. Same as ``-objective``."""
    return -objective


# ---------------------------------------------------------------------------------------
# Per-sample assignment
# ---------------------------------------------------------------------------------------
class Stacked(Objective):
    """Objective ``i`` for sample ``i``.

    Samples that share one objective object are evaluated together (so a
    ``Diversity`` term sees its group); :class:`Activation` objectives (neuron,
    channel, any index) are evaluated for all their samples at once as a
    weighted sum of each module's recording, built on the first call.

    Example
    -------
    >>> import torch
    >>> acts = {"fc": torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])}
    >>> Objective.stack([Activation("fc[2]"), Activation("fc[0]")])(acts).tolist()
    [3.0, 4.0]
    """

    def __init__(self, objectives: Sequence[Objective]):
        objectives = list(objectives)
        if not objectives or not all(isinstance(o, Objective) for o in objectives):
            raise InsilicoError("Objective.stack needs a non-empty list of objectives, one per sample")
        self.objectives = objectives
        self.units = tuple(dict.fromkeys(u for o in objectives for u in o.units))
        plain = [i for i, o in enumerate(objectives) if type(o) in (Activation, Channel)]
        self._gathered: dict[str, list[int]] = {}
        for i in plain:
            self._gathered.setdefault(Activations.whole_unit(objectives[i].unit).key, []).append(i)
        done = {i for rows in self._gathered.values() for i in rows}
        self._grouped: dict[int, list[int]] = {}
        for i, o in enumerate(objectives):
            if i not in done:
                self._grouped.setdefault(id(o), []).append(i)
        self._weights: dict[tuple, torch.Tensor] = {}
        self._indices: dict[tuple, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.objectives)

    def subset(self, rows: torch.Tensor) -> Stacked:
        return Stacked([self.objectives[i] for i in rows.tolist()])

    def forward(self, acts, images):
        n = acts.batch_size if len(acts) else images.shape[0]
        if n != len(self.objectives):
            raise InsilicoError(f"stacked objective for {len(self.objectives)} samples got a batch of {n}")
        out = None
        parts = []
        for key, rows in self._gathered.items():
            whole = acts.whole(self.objectives[rows[0]].unit)
            index = self._index(rows, whole.device)
            weights = self._weights_for(key, rows, whole)
            values = (whole.index_select(0, index).flatten(1) * weights).sum(dim=1)
            parts.append((index, values))
        for rows in self._grouped.values():
            index = self._index(rows, _device(acts, images))
            sub_images = images.index_select(0, index) if images is not None else None
            parts.append((index, self.objectives[rows[0]](acts.subset(index), sub_images)))
        for index, values in parts:
            if out is None:
                out = values.new_zeros(n)
            out = out.index_copy(0, index, values)
        return out

    def _index(self, rows: list[int], device: torch.device) -> torch.Tensor:
        """Row indices on ``device``, made once (no host-to-device copy every step)."""
        key = (tuple(rows), device)
        if key not in self._indices:
            self._indices[key] = torch.as_tensor(rows, device=device)
        return self._indices[key]

    def _weights_for(self, key: str, rows: list[int], whole: torch.Tensor) -> torch.Tensor:
        cache = (key, tuple(whole.shape[1:]), whole.device, whole.dtype)
        if cache not in self._weights:
            weights = torch.zeros(len(rows), *whole.shape[1:], device=whole.device, dtype=whole.dtype)
            for r, i in enumerate(rows):
                where = self.objectives[i].unit.where(whole[:1])
                weights[(r,) + where[1:]] = 1.0
            self._weights[cache] = (weights / weights.flatten(1).sum(dim=1).view(-1, *[1] * (weights.ndim - 1))).flatten(1)
        return self._weights[cache]

    def __repr__(self) -> str:
        shown = ", ".join(repr(o) for o in self.objectives[:3])
        return f"Objective.stack([{shown}{', ...' if len(self.objectives) > 3 else ''}])"


def _device(acts: Activations, images) -> torch.device:
    for value in acts.values():
        return value.device
    return images.device


# ---------------------------------------------------------------------------------------
# Lower-case factories: one unit address in, an objective out
# ---------------------------------------------------------------------------------------
def activation(unit: UnitLike) -> Objective:
    """Mean of the unit's values (see :class:`Activation`): ``activation("[281]")`` is logit 281."""
    return Activation(unit)


def channel(unit: UnitLike, index: int | None = None) -> Objective:
    """A channel's mean activation: ``channel("features.3[12]")`` or ``channel("features.3", 12)``.

    ``-channel("features.3[12]")`` silences it when maximized.

    Example
    -------
    >>> [str(u) for u in (-channel("features.3[12]")).units]
    ['features.3[12]']
    """
    layer, picked = _split(unit, index, 1, "channel", "features.3[12]")
    return Channel(layer, picked[0])


def neuron(unit: UnitLike, index: int | None = None) -> Objective:
    """One neuron: ``neuron("features.3[12,6,6]")``; ``neuron("features.3[12]")`` takes the centre position."""
    parsed = Unit.parse(unit)
    if index is None and parsed.index is not None and len(parsed.index) == 3:
        return Neuron(parsed.replace(index=None), *(int(i) for i in parsed.index))
    layer, picked = _split(unit, index, 1, "neuron", "features.3[12,6,6]")
    return Neuron(layer, picked[0])


def direction(layer: UnitLike, vector: torch.Tensor) -> Objective:
    """Projection onto a direction in a layer's space (see :class:`Direction`)."""
    return Direction(layer, vector)


def deepdream(layer: UnitLike) -> Objective:
    """Mean squared activation of a layer (see :class:`DeepDream`)."""
    return DeepDream(layer)


def diversity(layer: UnitLike, group_size: int | None = None) -> Objective:
    """Diversity across a batch's samples (see :class:`Diversity`)."""
    return Diversity(layer, group_size=group_size)


def _split(unit: UnitLike, index, entries: int, name: str, example: str) -> tuple[Unit, tuple]:
    parsed = Unit.parse(unit)
    if index is not None:
        return parsed, (int(index),)
    if parsed.index is None or len(parsed.index) != entries or not all(isinstance(i, int) for i in parsed.index):
        raise UnitError(f"{name}() needs an address that picks one {name}, e.g. {example!r}; got {str(parsed)!r}")
    return parsed.replace(index=None), parsed.index


__all__ = [
    "Activation", "Activations", "Channel", "Composite", "DeepDream", "Direction", "Diversity", "L1", "L2",
    "Neuron", "Objective", "Stacked", "TotalVariation", "activation", "channel", "deepdream", "direction",
    "diversity", "inhibit", "neuron", "unique_wholes",
]
