"""Top exemplars of units, and their projections to pixel space (Zeiler & Fergus 2014).

``top_exemplars`` streams a stimulus set through the model once, in batches,
for any number of units, keeping only a running top-k per unit (memory does not
grow with the number of stimuli). A unit that selects a map (a conv channel,
``"features.8[12]"``) is scored by the max over the map, and the position of
that max is kept; a unit that selects one value (a neuron, a class logit) is
scored by that value. A token layer's feature (``"blocks.3[:, 12]"``) is scored over
its patch tokens, the CLS and register tokens left out (the layout rule,
:mod:`insilico.layout`; a Recording ranked without the model cannot tell them apart),
and the position of the max is the patch's (row, column).

``project_exemplars`` then takes each exemplar down to pixel space for the
single neuron at its max (``"features.8[12,5,7]"``) with any method of
:func:`insilico.gradient_map` (``"deconv"`` by default), all exemplars of all
units in one batch per ``batch_size`` images, and crops image and map to the
neuron's receptive field. The receptive field is read from the gradient's
support with every path open (:class:`insilico.attribution.gradients.ReluRule`
``"support"``: ReLUs pass all gradient and max-pooling spreads it over its
window), so it needs no knowledge of kernel sizes and strides and works for any
architecture; where it is clipped by the image border the crop is padded with
zeros so that all crops of a unit have the size of its full receptive field.

Example
-------
>>> import torch, insilico
>>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU())
>>> stimuli = torch.rand(50, 1, 9, 9)
>>> ex = insilico.top_exemplars(model, stimuli, "1[0]", k=4, progress=False)
>>> tuple(ex.indices.shape), tuple(ex.positions.shape)
((4,), (4, 2))
>>> proj = insilico.project_exemplars(model, stimuli, ex, progress=False)
>>> tuple(proj.map_crops[0].shape)
(4, 1, 3, 3)
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import InsilicoError, StimulusError, UnitError
from ..layout import patch_grid, prefix_count, read_layout
from ..probe import Probe
from ..recording import Recording, batches, stimulus_source
from ..registry import register_tool
from ..results import Result
from ..session import result_dtype, session
from ..units import Unit, UnitLike, need_tensor
from .gradients import attribute, gradient_map


@dataclasses.dataclass(eq=False)
class Exemplars(Result):
    """The ``k`` stimuli that drive one unit most, best first.

    Saves and loads like every insilico result (:class:`insilico.results.Result`).

    Attributes
    ----------
    unit : str
        The unit address.
    indices : tensor (k,)
        Stimulus positions in the stimulus set.
    activations : tensor (k,)
        The unit's value (the max over its map) on each exemplar; float64 for a float64
        model (or recording), else float32.
    positions : tensor (k, d) or None
        Where in the unit's map the max is (row, column for a conv channel);
        None for units that select one value. A token layer's (``"blocks.3[:, 12]"``,
        ``(T, D)``) positions are its patch tokens only (the CLS and register tokens are
        not positions, :func:`insilico.layout.positions`): the patch's (row, column) in
        the patch grid (its token index after the prefix when the tokens make no square grid).
    neurons : list of str or None
        The single neuron at each exemplar's max, e.g. ``"features.8[12,5,7]"``
        (None when it cannot be told, e.g. from a recording of a slice).
    ids : list or None
        Stimulus labels of the exemplars (from a Recording; image files' relative paths).
    params : list or None
        Stimulus parameters of the exemplars (from a StimulusSet).
    n_stimuli : int
        How many stimuli were ranked.
    """

    unit: str
    indices: torch.Tensor
    activations: torch.Tensor
    positions: torch.Tensor | None = None
    neurons: list | None = None
    ids: list | None = None
    params: list | None = None
    n_stimuli: int = 0

    def __len__(self) -> int:
        return len(self.indices)

    def to_dict(self) -> dict:
        """A JSON-able summary (for gallery pages and figure sidecars)."""
        return {
            "unit": self.unit,
            "indices": self.indices.tolist(),
            "activations": self.activations.tolist(),
            "positions": None if self.positions is None else self.positions.tolist(),
            "neurons": self.neurons,
            "ids": self.ids,
            "n_stimuli": self.n_stimuli,
        }

    def table(self) -> dict:
        """One row per exemplar, best first: ``unit``, ``rank``, ``index`` (in the stimulus set), ``activation``,
        and ``id`` / ``neuron`` when known."""
        columns = {"unit": [self.unit] * len(self), "rank": np.arange(len(self)),
                   "index": self.indices.cpu().numpy(), "activation": self.activations.double().cpu().numpy()}
        for name in ("ids", "neurons"):
            if getattr(self, name) is not None:
                columns[name[:-1]] = [str(v) for v in getattr(self, name)]
        return columns

    def plot(self, ax=None):
        """The unit's value on each exemplar, best first (bars); returns the Figure."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(4, 3))
        ax.bar(range(len(self)), self.activations.float().numpy(), color="0.4")
        ax.set_xticks(range(len(self)), [str(i) for i in self.indices.tolist()], fontsize=7)
        ax.set_xlabel("stimulus")
        ax.set_ylabel(self.unit)
        return ax.figure

    def __repr__(self) -> str:
        top = ", ".join(f"{i}:{a:.3g}" for i, a in zip(self.indices.tolist()[:4], self.activations.tolist()[:4]))
        more = ", ..." if len(self) > 4 else ""
        return f"Exemplars({self.unit!r}, top {len(self)} of {self.n_stimuli}: {top}{more})"


@register_tool("attribution")
def top_exemplars(
    model: torch.nn.Module | None,
    stimuli: Any,
    unit: UnitLike | Sequence[UnitLike],
    k: int = 9,
    batch_size: int = 64,
    progress: bool = True,
) -> Exemplars | list[Exemplars]:
    """The ``k`` stimuli that drive each unit most, in one streaming pass.

    Parameters
    ----------
    model : nn.Module or None
        Put in eval mode for the pass (each module's mode restored after).
        May be None when ``stimuli`` is a Recording.
    stimuli : tensor (N, C, H, W), StimulusSet, Dataset, or Recording
        A Dataset is read batch by batch (never all in memory). A
        :class:`~insilico.recording.Recording` already holding the unit (or
        its whole module) is ranked without running the model.
    unit : address or list of addresses
        Units with a single value or a map per stimulus (``"fc[3]"``,
        ``"features.8[12]"``, ``"blt.conv2@3[12]"``).
    k : int
        How many exemplars per unit (ties go to the earlier stimulus).
    batch_size : int
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    Exemplars, or a list of them (one per unit) when ``unit`` is a list.

    Example
    -------
    >>> import torch, insilico
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> stimuli = torch.rand(100, 1, 2, 2)
    >>> a, b = insilico.top_exemplars(model, stimuli, ["1[0]", "1[1]"], k=3, progress=False)
    >>> int(a.indices[0]) == int(model(stimuli)[:, 0].argmax())
    True
    """
    many = isinstance(unit, (list, tuple))
    specs = list(unit) if many else [unit]
    if not specs:
        raise UnitError("no units given: name at least one, e.g. top_exemplars(model, stimuli, 'features.3[12]')")
    if batch_size < 1:
        raise InsilicoError(f"batch_size must be at least 1, not {batch_size}")
    if isinstance(stimuli, Recording):
        results = _from_recording(stimuli, [Unit.coerce(s, model) for s in specs], k, batch_size, progress, model)
    else:
        if model is None:
            raise InsilicoError("top_exemplars needs a model, unless the stimuli are a Recording of the unit")
        results = _from_model(model, stimuli, specs, k, batch_size, progress)
    return results if many else results[0]


def _from_model(model, stimuli, specs, k, batch_size, progress) -> list[Exemplars]:
    probe = Probe(model)
    units = probe.units(*specs)
    wholes = {u: Unit(u.module, step=u.step, output=u.output) for u in units}
    source = stimulus_source(stimuli, model=model)
    n = _check_k(k, len(source))
    rankers = [_Ranker(u, k, model) for u in units]
    with session(model) as s:
        for start, batch in batches(source, batch_size, s.device, s.dtype, progress, "top exemplars", leave=True):
            with probe.record(*dict.fromkeys(wholes.values())) as rec:
                model(batch)
            for ranker in rankers:
                ranker.update(rec[wholes[ranker.unit]], start, whole=True)
    return [r.result(n, source.ids, source.params) for r in rankers]  # ids: image files' relative paths


def _from_recording(rec: Recording, units, k, batch_size, progress, model=None) -> list[Exemplars]:
    n = _check_k(k, len(rec))
    plan = []
    for unit in units:
        whole = Unit(unit.module, step=unit.step, output=unit.output)
        if unit in rec:
            plan.append((_Ranker(unit, k), unit, False))
        elif whole in rec:
            plan.append((_Ranker(unit, k, model), whole, True))
        else:
            raise UnitError(f"{unit} is not in this recording (it holds {', '.join(rec.units)}); record it first")
    bar = tqdm(total=n, unit="stim", desc="top exemplars", disable=not progress)
    try:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            for ranker, name, whole in plan:
                values = torch.from_numpy(np.asarray(rec.array(name)[start:stop]))
                ranker.update(values, start, whole=whole)
            bar.update(stop - start)
    finally:
        bar.close()
    return [ranker.result(n, rec.ids, rec.params) for ranker, _, _ in plan]


def _check_k(k: int, n: int) -> int:
    if n == 0:
        raise StimulusError("the stimulus set is empty")
    if not 1 <= k <= n:
        raise InsilicoError(f"k must lie in [1, {n}] (the number of stimuli), not {k}")
    return n


class _Ranker:
    """Running top-k of one unit: values, stimulus indices, and the flat position of each max."""

    def __init__(self, unit: Unit, k: int, model: torch.nn.Module | None = None):
        self.unit, self.k, self.model = unit, k, model
        self.values = self.indices = self.flat = None
        self.map_shape = None  # shape of the unit's selection per stimulus
        self.whole_shape = None  # shape of the module's output per stimulus, when known
        self.where = None  # selection position -> flat position in the module's output
        self.tokens = None  # a token layer: (selection mask of its patch tokens, prefix, grid side or None)

    def update(self, batch: torch.Tensor, start: int, whole: bool) -> None:
        batch = need_tensor(self.unit, batch)
        if whole:
            if self.where is None:
                self.whole_shape = tuple(batch.shape[1:])
                numel = int(np.prod(self.whole_shape))
                self.where = self.unit.select(torch.arange(numel, device=batch.device).view(1, *self.whole_shape))[0]
                self.tokens = self._patch_tokens()
            batch = self.unit.select(batch)
            if self.tokens is not None:  # the prefix tokens (CLS, registers) are not positions: out of the max
                batch = batch.masked_fill(~self.tokens[0], float("-inf"))
        if self.map_shape is None:
            self.map_shape = tuple(batch.shape[1:])
        flat = batch.reshape(len(batch), -1)
        flat = flat.to(result_dtype(flat.dtype))  # float64 stays float64
        values, position = flat.max(dim=1) if flat.shape[1] else (flat.sum(dim=1), flat.new_zeros(len(flat)).long())
        indices = torch.arange(start, start + len(batch), device=values.device)
        if self.values is not None:
            values = torch.cat([self.values, values])
            indices = torch.cat([self.indices, indices])
            position = torch.cat([self.flat, position])
        by_index = torch.argsort(indices, stable=True)  # ties go to the earlier stimulus
        order = by_index[torch.argsort(values[by_index], descending=True, stable=True)][: self.k]
        self.values, self.indices, self.flat = values[order], indices[order], position[order]

    def _patch_tokens(self):
        """A token layer ``(T, D)`` whose selection keeps patch tokens (the layout rule, :func:`insilico.layout.read_layout`):
        ``(mask of the selection's patch-token values, prefix, grid side or None)``; None for any other unit."""
        if self.model is None or len(self.whole_shape) != 2 or self.where.ndim == 0:
            return None
        layout, prefix = read_layout(self.model, self.unit, self.whole_shape)
        if layout != "tokens":
            return None
        grid = patch_grid(self.whole_shape[0], prefix)
        extra = grid[0] if grid is not None else prefix_count(self.whole_shape[0], prefix)
        patches = self.where // self.whole_shape[1] >= extra
        if not bool(patches.any()) or not self._keeps_token_axis():
            return None  # the unit names prefix tokens only, or one token: as written
        return patches, extra, None if grid is None else grid[1]

    def _keeps_token_axis(self) -> bool:
        items = list(self.unit.index or ())
        if items and items[0] is Ellipsis:
            items = items[1:] if len(items) - 1 == len(self.whole_shape) else [slice(None)]
        return not items or isinstance(items[0], slice)

    def _positions(self) -> torch.Tensor | None:
        """The max's coordinates in the selection; a token layer's token axis as its patch ``(row, column)``."""
        if not self.map_shape:
            return None
        positions = torch.stack(torch.unravel_index(self.flat.cpu(), self.map_shape), dim=1)
        if self.tokens is None:
            return positions
        _, extra, side = self.tokens
        token = self.where.reshape(-1)[self.flat.to(self.where.device)].cpu() // self.whole_shape[1] - extra
        patch = torch.stack([token // side, token % side], dim=1) if side else token[:, None]
        return torch.cat([patch, positions[:, 1:]], dim=1)

    def result(self, n: int, ids, params) -> Exemplars:
        positions = self._positions()
        indices = self.indices.cpu()
        return Exemplars(
            unit=str(self.unit),
            indices=indices,
            activations=self.values.cpu(),
            positions=positions,
            neurons=self._neurons(positions),
            ids=[ids[i] for i in indices.tolist()] if ids is not None else None,
            params=[params[i] for i in indices.tolist()] if params is not None else None,
            n_stimuli=n,
        )

    def _neurons(self, positions) -> list | None:
        if self.where is not None:  # the module's whole output was seen: exact addresses
            flat = self.where.reshape(-1)[self.flat.to(self.where.device)].cpu()
            coords = torch.stack(torch.unravel_index(flat, self.whole_shape), dim=1).tolist()
            return [str(self.unit.replace(index=tuple(c))) for c in coords]
        index = self.unit.index or ()
        if positions is None:
            return [str(self.unit)] * len(self.indices)
        if all(isinstance(i, int) for i in index):  # ints then the map: append the position
            return [str(self.unit.replace(index=index + tuple(p))) for p in positions.tolist()]
        return None


# ---------------------------------------------------------------------------------------
# Projections to pixel space
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass(eq=False)
class Projections(Result):
    """Exemplars projected to pixel space, one entry per unit (all tensors on the CPU).

    Saves, loads and concatenates (over units) like every insilico result
    (:class:`insilico.results.Result`).

    Attributes
    ----------
    exemplars : list of Exemplars
    method : str
    images, maps : list of tensors (k, C, H, W)
        The exemplar images and their maps for the neuron at the max; float64 for a
        float64 model, else float32.
    boxes : list of tensors (k, 4) or None
        Receptive field of each exemplar's neuron as ``(top, left, bottom,
        right)`` pixel bounds (half-open); they may reach past the image where
        the field is clipped by its border. None without ``crop``.
    image_crops, map_crops : list of tensors (k, C, h, w) or None
        Images and maps cut to the receptive field (zero-padded outside the image).
    settings : dict
        The options the maps were computed with.
    """

    exemplars: list
    method: str
    images: list
    maps: list
    boxes: list | None = None
    image_crops: list | None = None
    map_crops: list | None = None
    settings: dict = dataclasses.field(default_factory=dict)

    sample_fields = ("exemplars", "images", "maps", "boxes", "image_crops", "map_crops")

    @property
    def units(self) -> list[str]:
        return [e.unit for e in self.exemplars]

    def plot(self, ax=None, **options):
        """The units x exemplars figure; see :func:`insilico.plot.exemplar_grid`."""
        from ..plot import exemplar_grid

        return exemplar_grid(self, ax=ax, **options)


@register_tool("attribution")
def project_exemplars(
    model: torch.nn.Module,
    stimuli: Any,
    exemplars: Exemplars | Sequence[Exemplars] | UnitLike | Sequence[UnitLike],
    method: str = "deconv",
    k: int = 9,
    crop: bool = True,
    batch_size: int = 64,
    progress: bool = True,
    **options,
) -> Projections:
    """Project each unit's top exemplars to pixel space (the Zeiler & Fergus figure).

    Parameters
    ----------
    model : nn.Module
    stimuli : tensor, StimulusSet or Dataset
        The stimuli the exemplars index into.
    exemplars : Exemplars, list of Exemplars, or unit address(es)
        Addresses are ranked first with :func:`top_exemplars` (``k``,
        ``batch_size``). Each exemplar is projected for its neuron
        (``Exemplars.neurons``); where those are unknown (ranked from a
        recording of a slice) for the whole unit, reduced by summing.
    method : str
        Any method of :func:`insilico.gradient_map` but ``"gradcam"``.
    crop : bool
        Also cut images and maps to each neuron's receptive field.
    batch_size : int
        Images per forward/backward pass (all units' exemplars share batches).
    **options
        Passed to :func:`insilico.gradient_map` (``n_steps``, ``stdevs``, ...).

    Returns
    -------
    Projections
    """
    if method == "gradcam":
        raise InsilicoError("project_exemplars projects single neurons; use method='deconv', 'guided', 'gradient', ...")
    if isinstance(exemplars, Exemplars) or (
        isinstance(exemplars, (list, tuple)) and exemplars and all(isinstance(e, Exemplars) for e in exemplars)
    ):
        found = [exemplars] if isinstance(exemplars, Exemplars) else list(exemplars)
    else:
        found = top_exemplars(model, stimuli, exemplars, k=k, batch_size=batch_size, progress=progress)
        found = found if isinstance(found, list) else [found]
    probe = Probe(model)
    source = stimulus_source(stimuli, model=model)
    counts = [len(e) for e in found]
    indices = torch.cat([e.indices for e in found]).tolist()
    neurons = [n for e in found for n in (e.neurons if e.neurons is not None else [e.unit] * len(e))]
    images = _fetch(stimuli, source, indices, result_dtype(probe.dtype))
    maps, supports = [], []
    bar = tqdm(total=len(indices), unit="img", desc=f"projecting ({method})", disable=not progress)
    try:
        for start in range(0, len(indices), batch_size):
            chunk, chunk_units = images[start : start + batch_size], neurons[start : start + batch_size]
            maps.append(gradient_map(model, chunk, chunk_units, method=method, **options).cpu())
            if crop:
                with session(model, grad=True):
                    on_device = chunk.to(probe.device, probe.dtype)
                    supports.append(attribute(probe, on_device, probe.units(*chunk_units), "support").cpu())
            bar.update(len(chunk))
    finally:
        bar.close()
    maps = torch.cat(maps)
    result = Projections(
        exemplars=found, method=method, images=list(images.split(counts)), maps=list(maps.split(counts)),
        settings={"method": method, **{k: v for k, v in options.items() if isinstance(v, (int, float, str))}},
    )
    if crop:
        boxes = receptive_boxes(torch.cat(supports), counts)
        result.boxes = list(boxes.split(counts))
        result.image_crops = [_crop(im, b) for im, b in zip(result.images, boxes.split(counts))]
        result.map_crops = [_crop(m, b) for m, b in zip(result.maps, boxes.split(counts))]
    return result


def _fetch(stimuli, source, indices: list[int], dtype: torch.dtype) -> torch.Tensor:
    """The stimuli at ``indices`` on the CPU in ``dtype`` (the model's: float64 for a float64 model, else float32)."""
    if torch.is_tensor(stimuli):
        return stimuli[torch.tensor(indices, dtype=torch.long)].to(dtype)
    return torch.cat([source.batch(i, i + 1, "cpu", dtype) for i in indices])


def receptive_boxes(support: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
    """Bounding boxes ``(top, left, bottom, right)`` of the nonzero support of maps (M, C, H, W).

    Within each group of ``counts`` maps (one unit's exemplars) every box is
    grown to the group's largest height and width: a field clipped by the
    image border is extended past that border, so crops have the full size.
    """
    mask = support.abs().sum(dim=1) > 0  # (M, H, W)
    height, width = mask.shape[1:]
    empty = ~mask.flatten(1).any(dim=1)
    rows, cols = mask.any(dim=2), mask.any(dim=1)
    top = torch.where(empty, 0, rows.float().argmax(dim=1))
    bottom = torch.where(empty, height, height - rows.flip(1).float().argmax(dim=1))
    left = torch.where(empty, 0, cols.float().argmax(dim=1))
    right = torch.where(empty, width, width - cols.flip(1).float().argmax(dim=1))
    group = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    size_h = torch.zeros(len(counts), dtype=torch.long).scatter_reduce(0, group, bottom - top, "amax")[group]
    size_w = torch.zeros(len(counts), dtype=torch.long).scatter_reduce(0, group, right - left, "amax")[group]
    top, bottom = _grow(top, bottom, size_h, height)
    left, right = _grow(left, right, size_w, width)
    return torch.stack([top, left, bottom, right], dim=1)


def _grow(low, high, size, limit):
    short = size - (high - low)
    at_low, at_high = low == 0, high == limit
    new_low = torch.where(at_low & ~at_high, high - size, torch.where(at_high & ~at_low, low, low - short // 2))
    return new_low, new_low + size


def _crop(images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Cut each image (C, H, W) to its box, zero-padded where the box leaves the image."""
    height, width = images.shape[2:]
    pad = int(max(0, -boxes[:, 0].min(), -boxes[:, 1].min(), boxes[:, 2].max() - height, boxes[:, 3].max() - width))
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    crops = [padded[i, :, t + pad : b + pad, l + pad : r + pad] for i, (t, l, b, r) in enumerate(boxes.tolist())]
    return torch.stack(crops)
