"""The objective protocol and its algebra: :class:`Objective`, :class:`Composite`, :class:`Stacked`.

An objective maps recorded activations (:class:`Activations`, one whole-module
recording per needed module) and the pixel images to one value per sample,
``(N,)``. Every operator (``+``, ``-``, unary ``-``, ``*`` and ``/`` by a
number) goes through :func:`_combine`, the one place that builds a
:class:`Composite`; a composite's ``.units`` is the union of its parts' units
without duplicates (captum.optim's ``_core/loss.py`` does the same), so the
engine hooks exactly the modules needed. :meth:`Objective.stack` assigns
objective ``i`` to sample ``i`` (:class:`Stacked`).

Example
-------
>>> import torch
>>> from insilico.objectives import Activation
>>> obj = Objective.stack([Activation("fc[2]"), Activation("fc[0]")]) - 0.5 * Activation("fc[1]")
>>> obj({"fc": torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])}).tolist()
[2.0, 1.5]
"""
from __future__ import annotations

import numbers
from typing import Callable, Iterable, Mapping, Sequence

import torch

from ..errors import InsilicoError, UnitError
from ..layers.families import read_layout
from ..units import Unit, UnitLike, need_tensor


class Activations(Mapping):
    """Whole-module recordings ``{whole_unit_key: (N, ...)}``; ``acts[unit]`` selects a unit's index.

    Synthesis records each needed module once (the unit address without its
    index) and objectives select their units from it.
    """

    def __init__(self, wholes: Mapping[str, torch.Tensor], model: torch.nn.Module | None = None):
        self._wholes = {key: need_tensor(key, value) for key, value in wholes.items()}  # a tuple output: its parts
        self.model = model  # whose units these are: their layouts are read from it (None: channels first)

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

    def layout(self, unit: UnitLike) -> tuple[str, int | None] | None:
        """``(layout, prefix tokens)`` of the unit's whole output in :attr:`model`
        (:func:`insilico.layers.families.read_layout`); None without a model (read channels first)."""
        if self.model is None:
            return None
        whole = self.whole(unit)
        return read_layout(self.model, self.whole_unit(unit), tuple(whole.shape[1:]))

    def __iter__(self):
        return iter(self._wholes)

    def __len__(self) -> int:
        return len(self._wholes)

    def subset(self, rows: torch.Tensor) -> Activations:
        """The recordings of some samples only (``rows``: indices into the batch)."""
        return Activations({k: v.index_select(0, rows) for k, v in self._wholes.items()}, self.model)

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

    def _plain_mean(self) -> bool:
        """True when the value is exactly the mean of ``self.unit``'s values: :meth:`stack` gathers those together."""
        return False

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

        Runs in a :func:`~insilico.session.session` (eval mode; every module's
        flags restored after) and records only the modules in ``self.units``
        with an :class:`insilico.Probe`, ending the pass after the last of
        them; without ``grad=True`` no graph is built (with it, gradients flow
        to ``images`` whatever the caller's grad mode).
        """
        from ..probe import Probe
        from ..session import session

        wholes = unique_wholes(self.units)
        with session(model, grad=grad):
            if not wholes:
                return self(Activations({}), images)
            with Probe(model).record(*wholes, keep_graph=grad, stop=True) as rec:
                rec.forward(images)
                acts = Activations({w.key: rec[w] for w in wholes}, model)
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
        >>> from insilico.objectives import Activation
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
    >>> from insilico.objectives import Activation
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
        plain = [i for i, o in enumerate(objectives) if o._plain_mean()]  # gathered in one product
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
            weights = self._weights_for(key, rows, whole, acts)
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

    def _weights_for(self, key: str, rows: list[int], whole: torch.Tensor, acts: Activations) -> torch.Tensor:
        cache = (key, tuple(whole.shape[1:]), whole.device, whole.dtype, id(acts.model))
        if cache not in self._weights:
            weights = torch.zeros(len(rows), *whole.shape[1:], device=whole.device, dtype=whole.dtype)
            for r, i in enumerate(rows):
                where = self.objectives[i].read_unit(acts).where(whole[:1])
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



__all__ = ["Activations", "Composite", "Objective", "Stacked", "inhibit", "unique_wholes"]
