"""Feature visualizations of a chunk of units: maximizing, diverse and inhibiting images, in ONE synthesis.

For ``n`` units and a diverse set of ``d`` images, one
:class:`insilico.synthesis.Synthesis` optimises ``n * (d + 1)`` images:
rows ``[u*d, u*d + d)`` maximize unit ``u`` (row ``u*d`` plainly, the other
``d - 1`` with a diversity term among the unit's ``d`` images), and the last
``n`` rows minimize their unit (the inhibiting images). Seeds come from the
unit's address, so a unit's images do not depend on the chunk it is in.

Why not :func:`insilico.maximize`: it stacks per-unit objectives with a dense
weighted sum over the whole layer output and compares diversity Gram
matrices across the whole batch (O(n^2)); for a gallery layer of 256 units x 4
images these cost more than the network itself on a CPU. Here one value per
sample is gathered, and diversity is compared within each unit's group only
(:func:`grouped_diversity`). The defaults (parameterization, transforms) are
maximize's.

Any architecture: a token layer's feature is read on its patch grid (the
centre patch token, the CLS token excluded), a channels-last stage's channel
on its map (:func:`map_reader`, :class:`insilico.gallery.view.LayerView`).
A conv channel is optimised at the centre of its map (the neuron the tuning
and RF sections describe): in short runs the channel mean of a pre-ReLU map
stays dominated by the negative bias far from the feature and its images stay
grey. The activation reported for an image is the channel's best single neuron
on it (its largest value over the map; the smallest for an inhibiting image),
the quantity :func:`insilico.top_exemplars` ranks exemplars by, so an image and
the unit's top exemplar compare like for like (for a unit without a map both
are its value). The maximizing image is the unit's image with the highest
activation among its ``d``.

Short runs with random transforms end on an iterate that the untransformed
image may not reward; ``settle`` runs the last steps without transforms and
keeps each image's best iterate among them (:class:`insilico.synthesis.Synthesis`
``transforms_until``, ``keep="best"``). A *stretched exemplar* starts from the
unit's top exemplar and ascends the neuron at the exemplar's best position,
without transforms, keeping the best iterate; the exemplar is its first
iterate, so it drives the unit at least as much as the exemplar by construction.

Example
-------
>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
>>> out = visualize(net, "1", [0, 2], size=(3, 16, 16), steps=3, diverse=2, progress=False)
>>> tuple(out["maximizing"].shape), tuple(out["diverse"].shape), tuple(out["inhibiting"].shape)
((2, 3, 16, 16), (2, 2, 3, 16, 16), (2, 3, 16, 16))
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InsilicoError
from ..layers import centre
from ..objectives import Objective
from ..session import session
from ..synthesis import Synthesis, SynthesisOptions, Transforms
from ..units import Unit, need_tensor


def unit_values(whole: torch.Tensor) -> torch.Tensor:
    """(N, C) from a layer output: each channel at the centre of its map (maps), or the value."""
    if whole.ndim != 4:
        return whole.flatten(1)
    middle = centre(tuple(whole.shape[1:]), "map")  # the one centre rule (insilico.layers)
    return whole[:, :, middle[1], middle[2]]


def neuron_values(whole: torch.Tensor, channels: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
    """(N,): sample ``i``'s channel ``channels[i]`` at flat map position ``positions[i]`` (default: the centre).

    A layer without maps (N, C) gives ``whole[i, channels[i]]``.
    """
    rows = torch.arange(whole.shape[0], device=whole.device)
    if whole.ndim != 4:
        return whole.flatten(1)[rows, channels]
    if positions is None:
        middle = centre(tuple(whole.shape[1:]), "map")
        return whole[rows, channels, middle[1], middle[2]]
    return whole.flatten(2)[rows, channels, positions]


def best_neuron_values(whole: torch.Tensor, channels: torch.Tensor, reduce: str = "max") -> torch.Tensor:
    """(N,): sample ``i``'s channel ``channels[i]`` at its largest (``reduce="max"``) or smallest value over the map.

    The quantity :func:`insilico.top_exemplars` ranks a conv channel's exemplars by (the channel's best single
    neuron on the image), so a synthesized image and an exemplar compare like for like; a layer without maps
    gives the value itself.
    """
    rows = torch.arange(whole.shape[0], device=whole.device)
    picked = whole.flatten(2)[rows, channels] if whole.ndim == 4 else whole.flatten(1)[rows, channels][:, None]
    return picked.amax(1) if reduce == "max" else picked.amin(1)


def grouped_diversity(whole: torch.Tensor, group: int) -> torch.Tensor:
    """Minus the mean cosine similarity of each sample's Gram matrix with the others of its group (N,)."""
    n = whole.shape[0]
    flat = whole.reshape(n, whole.shape[1], -1)
    gram = F.normalize(torch.bmm(flat, flat.transpose(1, 2)).flatten(1), dim=1).view(n // group, group, -1)
    cosine = torch.bmm(gram, gram.transpose(1, 2))
    others = cosine.sum(2) - cosine.diagonal(dim1=1, dim2=2)
    return -(others / max(group - 1, 1)).flatten()


def map_reader(model: nn.Module, layer: Unit) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function that puts a batch of ``layer``'s output on ``(N, units, *grid)`` (``(N, units)`` for a vector):
    :meth:`LayerView.as_map <insilico.gallery.view.LayerView.as_map>`, the layout read once per output shape
    (a token layer's patch tokens as their grid, a channels-last stage's channels first)."""
    from .view import LayerView

    views: dict = {}

    def read(whole: torch.Tensor) -> torch.Tensor:
        shape = tuple(whole.shape[1:])
        if shape not in views:
            views[shape] = LayerView.read(model, layer, shape)
        return views[shape].as_map(whole)

    return read


class UnitImages(Objective):
    """Per-sample value: ``sign * unit value (+ diversity)`` for the layout described in the module docstring.

    ``positions`` (one flat map index per channel, default the centre) picks the neuron each channel is read at;
    ``inhibit=False`` leaves out the inhibiting rows; ``as_map`` (:func:`map_reader`, default: the output as it
    is, channels first) puts a token or channels-last layer's output on its map.
    """

    def __init__(self, layer: Unit, channels: Sequence[int], diverse: int, diversity: float,
                 positions: Sequence[int] | None = None, inhibit: bool = True, as_map: Callable | None = None):
        self.layer, self.units = layer, (layer,)
        self.as_map = as_map or (lambda whole: whole)
        self.diverse, self.diversity = int(diverse), float(diversity)
        positive = [c for c in channels for _ in range(self.diverse)]
        self.channels = torch.tensor(positive + (list(channels) if inhibit else []))
        self.sign = torch.cat([torch.ones(len(positive)), -torch.ones(len(self.channels) - len(positive))])
        self.positions = None
        if positions is not None:
            where = [int(p) for p in positions for _ in range(self.diverse)]
            self.positions = torch.tensor(where + ([int(p) for p in positions] if inhibit else []))
        plain = torch.zeros(len(positive), dtype=torch.bool)
        plain[:: self.diverse] = True
        self.pushed = ~plain  # which positive images feel the diversity term

    def forward(self, acts, images):
        whole = self.as_map(acts.whole(self.layer))
        channels, sign = self.channels.to(whole.device), self.sign.to(whole.device, whole.dtype)
        positions = None if self.positions is None else self.positions.to(whole.device)
        values = sign * neuron_values(whole, channels, positions)
        if self.diverse > 1 and self.diversity:
            m = len(self.pushed)
            spread = grouped_diversity(whole[:m], self.diverse) * self.pushed.to(whole.device, whole.dtype)
            values = torch.cat([values[:m] + self.diversity * spread, values[m:]])
        return values

    def __repr__(self) -> str:
        return f"UnitImages({str(self.layer)!r}, {len(self.channels)} images, diverse={self.diverse})"


#: Where the gallery's feature visualisation differs from :class:`~insilico.synthesis.SynthesisOptions`'.
VISUALIZE_DEFAULTS = {"lr": 0.1, "transforms": "default"}


def default_transforms(model: nn.Module, shape: Sequence[int]) -> Transforms:
    """:func:`insilico.maximize`'s default transforms for images of ``shape`` (C, H, W)
    (:meth:`SynthesisOptions.make_transforms <insilico.synthesis.SynthesisOptions.make_transforms>`)."""
    return SynthesisOptions(transforms="default").make_transforms(model, shape)


@dataclass(frozen=True)
class VisualizeOptions(SynthesisOptions):
    """The gallery's feature visualisation: every field of :class:`~insilico.synthesis.SynthesisOptions` (the
    synthesis loop; defaults here: ``VISUALIZE_DEFAULTS``) and its own below; checked when built.

    Attributes
    ----------
    diverse : int
        Images per unit from noise, >= 1 (default 3), pushed apart by ``diversity``.
    diversity : float
        Weight of the diversity term among a unit's images (default 1).
    settle : int
        The last ``settle`` steps run without transforms, and each image is its best iterate among them
        (``Synthesis(transforms_until=steps - settle, keep="best")``); 0 (default): the last iterate,
        transforms throughout.
    stretch_steps : int
        Steps of the stretched exemplars (default 0: with ``exemplars``, at least 1).

    Example
    -------
    >>> VisualizeOptions(diverse=2, settle=4).settle
    4
    """

    diverse: int = 3
    diversity: float = 1.0
    settle: int = 0
    stretch_steps: int = 0

    def validate(self) -> VisualizeOptions:
        """Check every option (the loop's and the gallery's own); returns ``self``."""
        super().validate()
        for name, least in (("diverse", 1), ("settle", 0), ("stretch_steps", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
                raise InsilicoError(f"{name} must be an int >= {least}, not {value!r}")
        if isinstance(self.diversity, bool) or not isinstance(self.diversity, numbers.Real):
            raise InsilicoError(f"diversity must be a number, not {self.diversity!r}")
        return self


def visualize(model: nn.Module, layer: str | Unit, channels: Sequence[int], size: Sequence[int], *, seed: int = 0,
              exemplars: torch.Tensor | None = None, positions: Sequence[int] | None = None, progress: bool = True,
              options: VisualizeOptions | SynthesisOptions | None = None, **option_overrides) -> dict:
    """Maximizing, diverse and inhibiting images of ``channels`` of ``layer`` (and stretched exemplars).

    Parameters
    ----------
    model : nn.Module
        Takes pixel-space images in [0, 1].
    layer : str or Unit
        The layer whose ``channels`` are visualised.
    channels : sequence of int
    size : (C, H, W)
        The image size.
    seed : int
        Seeds every image (default 0).
    options : VisualizeOptions or SynthesisOptions, optional
        The knobs: the gallery's own (``diverse``, ``diversity``, ``settle``, ``stretch_steps``:
        :class:`VisualizeOptions`) and the synthesis loop's (steps, lr, schedule, ...).
    **option_overrides
        Any field of :class:`VisualizeOptions`, on top of ``options``. Defaults here
        (``VISUALIZE_DEFAULTS``): lr 0.1, ``transforms="default"`` (:func:`default_transforms`), Fourier 1/f
        parameterization, Adam; ``steps`` as the class (512) unless given. ``settle`` sets ``transforms_until``
        and ``keep``.
    exemplars : tensor (n, C, H, W), optional
        Each unit's top exemplar: the start of its *stretched exemplar*, ``stretch_steps`` steps of gradient
        ascent on the neuron at flat map position ``positions[i]`` (the exemplar's best neuron), without
        transforms, keeping the best iterate; the exemplar itself is the first iterate, so the stretched
        image drives that neuron at least as much as the exemplar does.

    Returns
    -------
    dict
        ``maximizing`` (n, C, H, W), ``diverse`` (n, d, C, H, W) (the first is the maximizing image: the unit's
        image from noise with the highest activation, with or without the diversity term),
        ``inhibiting`` (n, C, H, W), with ``stretched`` (n, C, H, W) when ``exemplars`` are given; and their
        activations ``maximizing_value``, ``diverse_value`` (n, d), ``inhibiting_value`` (n,),
        ``stretched_value`` (n,): for a conv channel its largest value over the map (smallest for the
        inhibiting image), the quantity the exemplars are ranked by (:func:`best_neuron_values`).
    """
    options = VisualizeOptions.from_kwargs("visualize", VISUALIZE_DEFAULTS, options, progress=progress,
                                           **option_overrides)
    diverse, diversity, settle, stretch_steps = options.diverse, options.diversity, options.settle, options.stretch_steps
    options = options.base(SynthesisOptions)  # the engine's knobs; the gallery's own are read above
    steps = options.steps
    layer = Unit.coerce(layer).replace(index=None)
    channels = [int(c) for c in channels]
    n, d, settle = len(channels), int(diverse), min(int(settle), int(steps))
    labels = [f"{layer.replace(index=(c,))}#{j}" for c in channels for j in range(d)]
    labels += [f"{layer.replace(index=(c,))}#inhibit" for c in channels]
    as_map = map_reader(model, layer)
    objective = UnitImages(layer, channels, d, diversity, as_map=as_map)
    synth = Synthesis(model, objective, n=len(labels), size=tuple(size), seed=seed, labels=labels, options=options,
                      transforms_until=steps - settle if settle else None, keep="best" if settle else "last")
    images = synth.run().images
    reduce = ["max"] * (n * d) + ["min"] * n
    acts = _activations(model, layer, images, objective.channels, reduce, as_map)
    diverse_images, diverse_values = _best_first(images[: n * d].view(n, d, *images.shape[1:]),
                                                 acts[: n * d].view(n, d))
    out = {
        "maximizing": diverse_images[:, 0], "diverse": diverse_images, "inhibiting": images[n * d :],
        "maximizing_value": diverse_values[:, 0], "diverse_value": diverse_values, "inhibiting_value": acts[n * d :],
    }
    if exemplars is not None:
        out["stretched"] = stretch(model, layer, channels, exemplars, positions, stretch_steps, options.lr,
                                 progress, as_map)
        out["stretched_value"] = _activations(model, layer, out["stretched"], torch.tensor(channels), ["max"] * n,
                                              as_map)
    return out


def stretch(model: nn.Module, layer: Unit, channels: Sequence[int], exemplars: torch.Tensor,
            positions: Sequence[int] | None, steps: int, lr: float, progress: bool = False,
            as_map: Callable | None = None) -> torch.Tensor:
    """Stretched exemplars (n, C, H, W): each exemplar after ``steps`` of ascent on its unit's neuron at
    ``positions`` (flat map index; default the centre), without transforms, each its best iterate (the exemplar
    itself when no step beats it); ``as_map`` as :class:`UnitImages` (default: :func:`map_reader`)."""
    as_map = as_map or map_reader(model, layer)
    objective = UnitImages(layer, channels, 1, 0.0, positions=positions, inhibit=False, as_map=as_map)
    labels = [f"{layer.replace(index=(c,))}#stretched" for c in channels]
    synth = Synthesis(model, objective, "fourier", init=exemplars, lr=lr, steps=max(1, int(steps)), keep="best",
                      labels=labels, progress=progress)
    return synth.run().images


def _best_first(images: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each unit's images (n, d, ...) and values (n, d) with the highest value first (the others keep their order)."""
    d = values.shape[1]
    best = values.argmax(1, keepdim=True)
    rest = torch.arange(d).expand(len(values), d)
    order = torch.cat([best, rest[rest != best].view(len(values), d - 1)], 1)
    return images[torch.arange(len(values))[:, None], order], values.gather(1, order)


def _activations(model: nn.Module, layer: Unit, images: torch.Tensor, channels: torch.Tensor,
                 reduce: Sequence[str], as_map: Callable) -> torch.Tensor:
    """Each image's activation of its unit, without transforms (what the page reports): the channel's largest
    (``"max"``) or smallest (``"min"``) value over its map (:func:`best_neuron_values`)."""
    from ..probe import Probe

    probe = Probe(model)
    with session(model) as s, probe.record(layer, stop=True) as rec:
        rec.forward(s.inputs(images))  # stops after the layer: later layers may not take this image size
        whole = as_map(need_tensor(rec._tap(layer).unit, rec[layer])).float().cpu()
    high, low = best_neuron_values(whole, channels, "max"), best_neuron_values(whole, channels, "min")
    return torch.where(torch.tensor([r == "max" for r in reduce]), high, low)


__all__ = ["UnitImages", "map_reader", "VISUALIZE_DEFAULTS", "VisualizeOptions", "best_neuron_values", "default_transforms", "grouped_diversity", "neuron_values", "stretch",
           "unit_values", "visualize"]
