"""Feature visualizations of a chunk of units: maximizing, diverse and inhibiting images, by :func:`insilico.maximize`.

The gallery brings no synthesis of its own: for ``n`` units and a diverse set of ``d`` images,
:func:`visualize` makes two calls of :func:`insilico.maximize` (the library's tool, so a fix there is a fix
here): ``d`` images per unit pushed apart by its :class:`~insilico.objectives.Diversity` term (Gram matrices
compared within each unit's images), and one inhibiting image per unit (``negative=True``). Each unit is
optimised at one neuron, the centre of its map (:meth:`LayerView.neuron <insilico.gallery.view.LayerView.neuron>`:
a conv channel at the centre position, a token layer's feature at its centre patch token, a channels-last
stage's channel at its centre), the neuron the tuning and RF sections describe: in short runs the channel mean
of a pre-ReLU map stays dominated by the negative bias far from the feature and its images stay grey. Seeds
come from the unit's address (maximize's rule), so a unit's images do not depend on the chunk it is in; the
defaults (parameterization, transforms) are maximize's, ``lr`` the gallery's.

The activation reported for an image is the channel's best single neuron on it (its largest value over the
map; the smallest for an inhibiting image), the quantity :func:`insilico.top_exemplars` ranks exemplars by, so
an image and the unit's top exemplar compare like for like (for a unit without a map both are its value). The
maximizing image is the unit's image with the highest activation among its ``d``.

Short runs with random transforms end on an iterate that the untransformed image may not reward; ``settle``
runs the last steps without transforms and keeps each image's best iterate among them (maximize's
``transforms_until`` and ``keep="best"``). A *stretched exemplar* (:func:`stretch`) is maximize started from
the unit's top exemplar (``init=``), ascending the neuron at the exemplar's best position without transforms and
keeping the best iterate; the exemplar is its first iterate, so it drives the unit at least as much as the
exemplar by construction.

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

import numpy as np
import torch
from torch import nn

from ..errors import InsilicoError
from ..layers import centre
from ..session import session
from ..synthesis import ContrastBudget, SynthesisOptions, Transforms
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
              options: VisualizeOptions | SynthesisOptions | None = None, contrast: torch.Tensor | None = None,
              **option_overrides) -> dict:
    """Maximizing, diverse and inhibiting images of ``channels`` of ``layer`` (and stretched exemplars), by
    :func:`insilico.maximize` (see the module docstring).

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
        Seeds every image (default 0; each image's seed derives from it and its unit, maximize's rule).
    options : VisualizeOptions or SynthesisOptions, optional
        The knobs: the gallery's own (``diverse``, ``diversity``, ``settle``, ``stretch_steps``:
        :class:`VisualizeOptions`) and the synthesis loop's (steps, lr, schedule, ...), passed to maximize.
    **option_overrides
        Any field of :class:`VisualizeOptions`, on top of ``options``. Defaults here
        (``VISUALIZE_DEFAULTS``): lr 0.1, ``transforms="default"`` (:func:`default_transforms`); maximize's
        Fourier 1/f parameterization and Adam; ``steps`` as the class (512) unless given. ``settle`` sets
        ``transforms_until`` and ``keep``.
    exemplars : tensor (n, C, H, W), optional
        Each unit's top exemplar: the start of its *stretched exemplar* (:func:`stretch`, ``stretch_steps`` steps
        on the neuron at flat map position ``positions[i]``, the exemplar's best neuron).
    contrast : tensor (n,), optional
        Each unit's RMS contrast budget (pixel std, :func:`insilico.synthesis.projection.rms_contrast`): one more
        image per unit from noise (one maximize, no diversity term) whose RMS contrast stays at most its budget
        after every step (:class:`~insilico.synthesis.ContrastBudget`), e.g. the contrast of the unit's best photo,
        so the two compare at matched contrast.

    Returns
    -------
    dict
        ``maximizing`` (n, C, H, W), ``diverse`` (n, d, C, H, W) (the first is the maximizing image: the unit's
        image from noise with the highest activation), ``inhibiting`` (n, C, H, W), with ``stretched``
        (n, C, H, W) when ``exemplars`` are given; and their activations ``maximizing_value``, ``diverse_value``
        (n, d), ``inhibiting_value`` (n,), ``stretched_value`` (n,): for a conv channel its largest value over
        the map (smallest for the inhibiting image), the quantity the exemplars are ranked by
        (:func:`best_neuron_values`); with ``contrast``, ``matched`` (n, C, H, W) and ``matched_value`` (n,).
    """
    from ..design.maximize import maximize

    options = VisualizeOptions.from_kwargs("visualize", VISUALIZE_DEFAULTS, options, progress=progress,
                                           **option_overrides)
    d, diversity, settle, stretch_steps = options.diverse, options.diversity, options.settle, options.stretch_steps
    loop = options.base(SynthesisOptions)  # the engine's knobs; the gallery's own are read above
    settle = min(int(settle), int(loop.steps))
    if settle:
        loop = loop.replace(transforms_until=loop.steps - settle, keep="best")
    layer = Unit.coerce(layer).replace(index=None)
    channels, shape = [int(c) for c in channels], tuple(size)
    as_map = map_reader(model, layer)
    neurons = _neurons(model, layer, channels, shape)
    n = len(channels)
    diversity_layer = layer.module if layer.part == "heads" else str(layer)  # heads: diversity on the attention module
    up = maximize(model, neurons, size=shape, images_per_unit=d, seed=seed, batch_size=n * d, progress=progress,
                  options=loop, diversity=float(diversity) if d > 1 else 0.0, diversity_layer=diversity_layer)
    down = maximize(model, neurons, size=shape, seed=seed, batch_size=n, progress=progress, options=loop,
                    negative=True)
    ids = torch.tensor(channels)
    values = _activations(model, layer, up.images, ids.repeat_interleave(d), ["max"] * (n * d), as_map)
    diverse_images, diverse_values = _best_first(up.images.view(n, d, *up.images.shape[1:]), values.view(n, d))
    out = {
        "maximizing": diverse_images[:, 0], "diverse": diverse_images, "inhibiting": down.images,
        "maximizing_value": diverse_values[:, 0], "diverse_value": diverse_values,
        "inhibiting_value": _activations(model, layer, down.images, ids, ["min"] * n, as_map),
    }
    if contrast is not None:
        budget = ContrastBudget(torch.as_tensor(contrast, dtype=torch.float64).view(-1))
        matched = maximize(model, neurons, size=shape, seed=seed, batch_size=n, progress=progress,
                           options=loop.replace(projection=budget))  # one chunk of n: budget i on image i
        out["matched"] = matched.images
        out["matched_value"] = _activations(model, layer, matched.images, ids, ["max"] * n, as_map)
    if exemplars is not None:
        out["stretched"] = stretch(model, layer, channels, exemplars, positions, stretch_steps, loop.lr, progress)
        out["stretched_value"] = _activations(model, layer, out["stretched"], ids, ["max"] * n, as_map)
    return out


def _neurons(model: nn.Module, layer: Unit, channels: Sequence[int], size: Sequence[int],
             positions: Sequence[int] | None = None) -> list[Unit]:
    """The neuron each channel is optimised at: the centre (:meth:`LayerView.neuron`), or flat position
    ``positions[i]`` on the layer's grid of positions (a map's row * width + column; a token layer's patch)."""
    from ..layers import example_input
    from ..plan import Plan
    from .view import LayerView

    shape = tuple(Plan(model, example_input(model, tuple(size))).shape(layer))
    view = LayerView.read(model, layer, shape)
    if view.layout == "heads":  # attention heads: the norm of a head's output at a patch query (gallery/view.py)
        from ..objectives import Objective
        from .view import HeadNorm
        return Objective.stack([HeadNorm(str(layer), view, c, p) for c, p in
                                zip(channels, positions if positions is not None else [None] * len(channels))])
    if positions is None or view.grid is None:
        return [view.neuron(model, str(layer), c) for c in channels]
    out = []
    for c, p in zip(channels, positions):
        where = [int(v) for v in np.unravel_index(int(p), tuple(view.grid))]
        if view.layout == "tokens":
            index = (shape[0] - int(np.prod(view.grid)) + int(p), c)
        elif view.layout == "channels_last":
            index = (*where, c)
        else:
            index = (c, *where)
        out.append(layer.replace(index=tuple(index)))
    return out


def stretch(model: nn.Module, layer: Unit, channels: Sequence[int], exemplars: torch.Tensor,
            positions: Sequence[int] | None, steps: int, lr: float, progress: bool = False) -> torch.Tensor:
    """Stretched exemplars (n, C, H, W): :func:`insilico.maximize` started from the exemplars, ``steps`` steps on
    each unit's neuron at ``positions`` (flat map index; default the centre), without transforms, each its best
    iterate (the exemplar itself when no step beats it)."""
    from ..design.maximize import maximize

    layer = Unit.coerce(layer).replace(index=None)
    neurons = _neurons(model, layer, channels, tuple(exemplars.shape[1:]), positions)
    found = maximize(model, neurons, size=tuple(exemplars.shape[1:]), init=exemplars, steps=max(1, int(steps)),
                     lr=lr, transforms=None, keep="best", batch_size=len(neurons), progress=progress)
    return found.images


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


__all__ = ["map_reader", "VISUALIZE_DEFAULTS", "VisualizeOptions", "best_neuron_values", "default_transforms",
           "neuron_values", "stretch", "unit_values", "visualize"]
