"""Objectives on unit activity: one unit's mean, a neuron, a direction, DeepDream, diversity; and their factories.

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
=================== ===========================================================

The lower-case factories (``channel("features.3[12]")``, ``neuron(...)``, ...)
take one unit address and return the objective.

Example
-------
>>> import torch
>>> channel("fc[1]")({"fc": torch.tensor([[1.0, 2.0, 3.0]])}).tolist()
[2.0]
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InsilicoError, UnitError
from ..layers import centre
from ..layout import channel_index, positions
from ..units import Unit, UnitLike
from .core import Objective


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
        return _mean(acts[self.read_unit(acts)])

    def read_unit(self, acts) -> Unit:
        """The unit this objective reads in ``acts`` (as written; :class:`Channel` reads its layer's layout)."""
        return self.unit

    def _plain_mean(self) -> bool:
        return type(self) in (Activation, Channel)  # a subclass with its own forward (Neuron) is evaluated alone

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.unit)!r})"


class Channel(Activation):
    """Mean over positions of channel ``channel`` of ``layer``, in the layer's layout.

    The layout is read from the model the activations come from
    (:meth:`Activations.layout`; every tool records with it): a map
    ``(N, C, H, W)`` is read at ``[:, c]``, a channels-last stage ``(N, H, W, C)``
    (Swin) at ``[..., c]``, tokens ``(N, T, D)`` at feature ``c`` of the patch
    tokens (CLS and registers dropped; :func:`insilico.layout.channel_index`), a
    vector at ``[:, c]``. Activations given without a model are read channels
    first. An attention part or a scalar raises a UnitError.

    Parameters
    ----------
    layer : str
        Module address, e.g. ``"features.3"`` (may carry ``@step`` / ``:output``).
    channel : int
        Channel (feature) index.
    """

    def __init__(self, layer: UnitLike, channel: int):
        self.layer, self.channel = Unit.parse(layer), int(channel)
        super().__init__(self.layer.replace(index=(self.channel,)))
        self._read: dict = {}

    def read_unit(self, acts) -> Unit:
        if acts.model is None:
            return self.unit
        shape = tuple(acts.whole(self.layer).shape[1:])
        key = (id(acts.model), shape)  # the layout is read once per model and output shape
        if key not in self._read:
            layout, prefix = acts.layout(self.layer)
            self._read[key] = self.layer.replace(index=channel_index(self.channel, shape, layout, prefix, self.layer))
        return self._read[key]

    def __repr__(self) -> str:
        return f"Channel({str(self.layer)!r}, {self.channel})"


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
        middle = centre(tuple(whole.shape[1:]), "map")  # the one centre rule (insilico.layers)
        y = middle[1] if self.y is None else self.y
        x = middle[2] if self.x is None else self.x
        self.unit = self.layer.replace(index=(self.channel, y, x))
        return _mean(acts[self.unit])


class Direction(Objective):
    """Mean over positions of the projection of ``layer``'s activation onto ``vector / |vector|``.

    Channels and positions are the layer's layout's (as :class:`Channel`'s): a Swin stage's channels
    are its last axis, a ViT block's features over its patch tokens.

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
        flat = _by_channel(acts, self.layer)
        if v.ndim == 1 and flat.shape[1] == v.shape[0]:
            return (flat * v.view(1, -1, 1)).sum(dim=1).mean(dim=1)
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
    activation of ``layer`` (in the layer's layout, as :class:`Channel` reads it).
    All pairwise cosines come from one matrix product, not a loop over pairs.

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
        flat = _by_channel(acts, self.layer)
        gram = torch.bmm(flat, flat.transpose(1, 2)).flatten(1)
        gram = F.normalize(gram, dim=1)
        size = self.group_size or n
        if size < n and n % size == 0:  # within groups only: (n / size) products of size x size, not n x n
            grouped = gram.view(n // size, size, -1)
            cosine = torch.bmm(grouped, grouped.transpose(1, 2))
            others = cosine.sum(2) - cosine.diagonal(dim1=1, dim2=2)
            return -(others / max(size - 1, 1)).flatten()
        cosine = gram @ gram.T
        group = torch.arange(n, device=act.device) // (self.group_size or n)
        others = (group[:, None] == group[None, :]) & ~torch.eye(n, dtype=torch.bool, device=act.device)
        count = others.sum(dim=1).clamp_min(1)
        return -(cosine * others).sum(dim=1) / count

    def __repr__(self) -> str:
        return f"Diversity({str(self.layer)!r}, group_size={self.group_size})"


def _by_channel(acts, layer: Unit) -> torch.Tensor:
    """``(N, C, P)``: ``layer``'s values with its channels (features) on axis 1 and its positions flattened after,
    in the layer's layout (:func:`insilico.layout.positions`: a Swin stage's ``H, W``, a ViT block's patch tokens);
    a vector is ``(N, D, 1)``; a layer with an index, or activations without a model, are read channels first."""
    act = acts[layer]
    read = acts.layout(layer) if layer.index is None else None
    if read is not None and read[0] in ("channels_last", "tokens") or act.ndim >= 3:
        return positions(act, *(read or ("map", None)), layer)
    return act.reshape(act.shape[0], act.shape[1] if act.ndim > 1 else 1, -1)


def _mean(values: torch.Tensor) -> torch.Tensor:
    """Per-sample mean of (N, ...) values (an int index may have left only the batch axis)."""
    return values.reshape(values.shape[0], -1).mean(dim=1)



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


__all__ = ["Activation", "Channel", "DeepDream", "Direction", "Diversity", "Neuron", "activation", "channel",
           "deepdream", "direction", "diversity", "neuron"]
