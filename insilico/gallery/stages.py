"""What a gallery computes for a chunk of units of one layer: one small function per stage.

Every stage is ``stage(work, layer, channels) -> list of dicts`` (one JSON-able
dict per unit, saved as ``units/<layer>/<c>/<stage>.json``) and may write
images into each unit's folder with :meth:`Work.save_png`. Stages call the
library's tools; nothing here re-implements them:

============ =================================================================
stage        what, with which tool
============ =================================================================
features     maximizing / diverse / inhibiting images and stretched exemplars (:func:`insilico.maximize`,
             batched over the chunk's units, through :func:`.features.visualize`)
exemplars    top exemplars (:func:`insilico.top_exemplars`) with deconvolution
             projections and gradient maps (:func:`insilico.project_exemplars`)
tuning       orientation and SF tuning (:func:`insilico.experiments.orientation_tuning`: the unit
             after its nonlinearity, blank baseline, responsiveness), spatial layers
rf           receptive-field map from gradients on white noise (:func:`insilico.experiments.receptive_field`'s
             gradient method, batched over units), spatial layers
lesion       per-class effect of silencing the unit (:func:`insilico.experiments.lesion_sweep`, many
             lesions per forward pass), on the bundled photos or the user's labelled folder
             (:func:`_lesion_measure`)
============ =================================================================

Any architecture: a unit is a channel of a map ``(C, H, W)`` or of a channels-last
stage ``(H, W, C)``, a feature of a token layer ``(T, D)`` or a value of a vector,
read at the centre of its positions (the centre rule, :func:`insilico.layers.at_centre`:
for tokens the patch token at the image centre, the CLS token excluded), as
:class:`LayerView` says; spatial layers (a 2-d map of positions) also get tuning and RF.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..errors import InsilicoError
from ..layers import example_input
from ..plot import as_images, map_to_rgb, mosaic
from ..statistics import class_mean_interval
from ..synthesis.projection import rms_contrast
from ..units import Unit
from .features import visualize
from .view import LayerView, add_time_course, head_exemplar_pages, head_exemplars
from .settings import GallerySettings


@dataclasses.dataclass
class Work:
    """What every stage needs: the model, the settings, where units live, shared stimuli."""

    model: nn.Module
    settings: GallerySettings
    root: Path
    shape: tuple          # the model's input (C, H, W)
    progress: bool = False

    def unit_dir(self, layer: str, channel: int) -> Path:
        return self.root / "units" / slug(layer) / str(channel)

    def save_png(self, layer: str, channel: int, name: str, image: np.ndarray) -> None:
        """Write an (H, W, 3) array in [0, 1] as ``<unit folder>/<name>.png`` (atomically)."""
        import skimage.io

        folder = self.unit_dir(layer, channel)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{name}.{os.getpid()}.png"
        skimage.io.imsave(tmp, (np.clip(image, 0, 1) * 255).round().astype(np.uint8), check_contrast=False)
        os.replace(tmp, folder / f"{name}.png")

    @functools.cached_property
    def photos(self) -> tuple[torch.Tensor, list[str]]:
        """The exemplar stimulus set and a label per stimulus (the user's files: a stimulus source, read per
        chunk, labelled by class name in a ``DIR/<class>/<image>`` folder, else by relative path)."""
        from .. import stimuli
        from ..models import photos

        if self.settings.stimuli not in ("photos", "natural"):
            s = self.settings
            return _files(self.model, s.stimuli, self.shape, s.labels, s.class_names)
        if self.settings.stimuli == "photos":
            x, y = photos.held_out(self.settings.per_class, seed=1234 + self.settings.seed)
            return _fit(x, self.shape), [photos.CLASSES[int(i)] for i in y]
        found = stimuli.natural_images(size=self.shape[-1], n_crops=self.settings.per_class, seed=self.settings.seed, crop=0.5,
                                       channels=self.shape[0])
        return found.images, [str(p.get("name", i)) for i, p in enumerate(found.params)]

    @functools.cached_property
    def lesion_set(self) -> tuple[torch.Tensor, torch.Tensor | None, list | None]:
        """``(images, labels, class names)`` the lesions are measured on: the bundled photos' held-out crops
        (``settings.lesion_per_class`` per class; names None: the model's classes), or, when the stimuli are the
        user's files, the first ``lesion_per_class`` images of each class of a ``DIR/<class>/<image>`` folder
        (its labels and class names) or the first ``16 * lesion_per_class`` files without classes (labels None)."""
        from ..models import photos

        s = self.settings
        if s.stimuli in ("photos", "natural"):
            x, y = photos.held_out(s.lesion_per_class, seed=4321 + s.seed)
            return _fit(x, self.shape), y, None
        source = self.photos[0]
        if source.labels is None:
            return source[list(range(min(len(source), 16 * s.lesion_per_class)))], None, None
        labels = np.asarray(source.labels)
        picked = [int(i) for k in sorted(set(labels.tolist())) for i in np.flatnonzero(labels == k)[:s.lesion_per_class]]
        return source[picked], torch.as_tensor(labels[picked]), list(source.class_names)

    def top_exemplars(self, layer: str, channels: list[int]) -> list:
        """The top ``settings.exemplars`` photos of each channel (:func:`insilico.top_exemplars`, one pass over
        :attr:`photos`), computed once per chunk: the ``features`` stage compares its images with the first,
        the ``exemplars`` stage shows them all, so both read one ranking."""
        from ..attribution.exemplars import top_exemplars

        cache = self.__dict__.setdefault("_top", {})
        key = (layer, tuple(channels))
        if key not in cache:
            x, view, k = self.photos[0], self.view(layer), min(self.settings.exemplars, len(self.photos[0]))
            units = [str(view.channel(layer, c)) for c in channels]
            cache.clear()  # one chunk at a time: the stages of a chunk run together
            cache[key] = (head_exemplars(self.model, x, layer, view, channels, k) if view.layout == "heads" else
                          top_exemplars(self.model, x, units, k=k, progress=False))
        return cache[key]

    def layer_shape(self, layer: str) -> tuple:
        """One sample's output shape of ``layer``, from one survey of a grey image for every layer (a
        :class:`~insilico.plan.Plan`, made on first use); a layout the gallery has no units in is refused
        (:meth:`view`)."""
        return self.view(layer).shape

    def view(self, layer: str) -> LayerView:
        """How the gallery reads ``layer``: its layout, units and the map of positions they are read over
        (:class:`LayerView`), from its output shape (one :class:`~insilico.plan.Plan` per build) and the
        layout rule (:func:`insilico.layout.read_layout`: the module and the model's family decide)."""
        from ..plan import Plan

        views = self.__dict__.setdefault("_views", {})
        if layer not in views:
            if "_plan" not in self.__dict__:
                self.__dict__["_plan"] = Plan(self.model, example_input(self.model, self.shape))
            plan, unit = self.__dict__["_plan"], Unit.coerce(layer, self.model)
            calls = None if unit.op else plan.count(unit.module)  # > 1: a recurrent layer's time steps
            views[layer] = LayerView.read(self.model, layer, tuple(plan.shape(unit)), calls=calls)
        return views[layer]

    def n_units(self, layer: str) -> int:
        """The units of ``layer``: its channels (maps, channels-last stages), features (tokens) or values (vectors)."""
        return self.view(layer).n_units


def slug(layer: str) -> str:
    """A file-name-safe form of a layer address (``blt.conv2@3`` -> ``blt.conv2_at3``)."""
    text = str(layer).replace("@", "_at")
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in text)


def _files(model: nn.Module, files: str, shape: tuple, labels=None, class_names=None) -> tuple:
    """The user's image files as a stimulus source fitted to the model's input (its preprocessing, else the
    gallery's input ``shape``), labelled by ``labels`` / ``class_names`` files when given, and a label per stimulus."""
    from types import SimpleNamespace

    from ..recording import stimulus_source
    from ..stimuli.labels import labelled

    fitting = model if getattr(model, "preprocessing", None) is not None else SimpleNamespace(input_size=shape)
    source = stimulus_source(labelled(files, labels, class_names), name=f"stimuli {files}", model=fitting)
    if source.labels is None:
        return source, list(source.ids)
    return source, [source.class_names[y] for y in source.labels]


def _fit(x: torch.Tensor, shape: tuple) -> torch.Tensor:
    """Photos resized / converted to the model's input shape."""
    if x.shape[1] != shape[0]:
        x = x.mean(1, keepdim=True).expand(-1, shape[0], -1, -1) if shape[0] != 3 else x.expand(-1, 3, -1, -1)
    if tuple(x.shape[-2:]) != tuple(shape[1:]):
        x = torch.nn.functional.interpolate(x, size=tuple(shape[1:]), mode="bilinear", align_corners=False)
    return x.contiguous()


def _finite(values) -> list:
    """A JSON-able list with NaN/inf as None."""
    return [None if not math.isfinite(v) else float(v) for v in np.asarray(values, float).ravel().tolist()]


def _number(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------------------------------
# Stages
# ---------------------------------------------------------------------------------------
def features(work: Work, layer: str, channels: list[int]) -> list[dict]:
    """Images from noise (maximizing, diverse, inhibiting) and stretched exemplars (:func:`.features.visualize`).

    The grid's image (``max.png``, value ``maximizing``; the page and ``units.csv`` call the most activating
    synthesized image of the two maximizing: :func:`.pages.ranked_images`) is
    the image synthesized from noise when it drives the unit at least as much as its top exemplar, else the
    stretched exemplar (which does by construction; the exemplar itself where no ascent step improved on it);
    the other one is ``max-other.png`` (``other``). Values are
    the channel's best single neuron on the image (largest over the map), as the exemplars are ranked
    (:meth:`Work.top_exemplars`, the ranking the exemplars stage shows).
    """
    s = work.settings
    x, _ = work.photos
    top = work.top_exemplars(layer, channels)
    stretch, starts = {}, x[[int(e.indices[0]) for e in top]]
    if s.stretch_steps:
        stretch = {"exemplars": starts, "stretch_steps": s.stretch_steps,
                   "positions": _flat_positions(top, work.view(layer).grid)}
    budget = rms_contrast(starts.double())  # each unit's best photo's RMS contrast: the matched image's budget
    out = visualize(work.model, layer, channels, work.shape, steps=s.steps, diverse=s.diverse, settle=s.settle,
                    diversity=s.diversity, lr=s.lr, seed=s.seed, progress=work.progress, contrast=budget, **stretch)
    reached = rms_contrast(out["matched"].double())
    pages = []
    for i, c in enumerate(channels):
        best = _number(top[i].activations[0])
        shown = _maximizing(out, i, best, starts[i])
        for (kind, image, _), name in zip(shown, ("max", "max-other")):
            work.save_png(layer, c, name, as_images(image)[0])
        work.save_png(layer, c, "inhibit", as_images(out["inhibiting"][i])[0])
        for j in range(1, s.diverse):
            work.save_png(layer, c, f"diverse-{j}", as_images(out["diverse"][i, j])[0])
        other = {"kind": shown[1][0], "value": _number(shown[1][2])} if len(shown) > 1 else None
        work.save_png(layer, c, "matched", as_images(out["matched"][i])[0])
        matched = {"value": _number(out["matched_value"][i]),
                   "contrast": _number(reached[i]), "photo_contrast": _number(budget[i])}
        pages.append({"maximizing": _number(shown[0][2]), "maximizing_kind": shown[0][0], "other": other,
                      "matched": matched,
                      "diverse": _finite(out["diverse_value"][i]), "inhibiting": _number(out["inhibiting_value"][i]),
                      "top_exemplar": best, "measure": "largest value over the map"})
    return pages


def _maximizing(out: dict, i: int, top: float | None, exemplar: torch.Tensor | None = None
                ) -> list[tuple[str, torch.Tensor, float]]:
    """(kind, image, value) of unit ``i``'s maximizing image, then of the other one (if stretched exemplars ran):
    the image from noise first when it reaches the top exemplar's value ``top``, else the better of the two.

    A stretched exemplar that measures below ``top`` (no ascent step improved on its first iterate, the
    exemplar, and the pixels' round trip through the parameterization or another batch moved the value by a
    rounding error) is replaced by the ``exemplar`` itself, kind ``"top exemplar"``, with its value ``top``."""
    noise = ("from noise", out["maximizing"][i], float(out["maximizing_value"][i]))
    if "stretched" not in out:
        return [noise]
    stretched = ("stretched exemplar", out["stretched"][i], float(out["stretched_value"][i]))
    if top is not None and exemplar is not None and stretched[2] < top:
        stretched = ("top exemplar", exemplar, top)
    if (top is not None and noise[2] >= top) or noise[2] >= stretched[2]:
        return [noise, stretched]
    return [stretched, noise]


def _flat_positions(found: list, grid: tuple | None) -> list[int] | None:
    """Flat index on the layer's ``grid`` of positions (row * width + column; a patch sequence's patch) of each
    exemplar's best neuron; None for layers without positions (vectors)."""
    if grid is None:
        return None
    return [sum(int(p) * s for p, s in zip(e.positions[0].tolist(), (grid[-1], 1)[-len(e.positions[0]):]))
            for e in found]


def exemplars(work: Work, layer: str, channels: list[int]) -> list[dict]:
    from ..attribution.exemplars import project_exemplars

    x, labels = work.photos
    k = min(work.settings.exemplars, len(x))
    found = work.top_exemplars(layer, channels)
    if work.view(layer).layout == "heads":  # attention heads: their attention patterns instead of projections
        return head_exemplar_pages(work, layer, channels, found)
    deconv = project_exemplars(work.model, x, found, method="deconv", crop=False, progress=False)
    grads = project_exemplars(work.model, x, found, method="gradient", crop=False, progress=False)
    pages = []
    for i, c in enumerate(channels):
        rows = [as_images(deconv.images[i]), as_images(map_to_rgb(deconv.maps[i])[0]),
                as_images(map_to_rgb(grads.maps[i])[0])]
        work.save_png(layer, c, "exemplars", mosaic(np.concatenate(rows), ncols=k, pad=2))
        pages.append({"k": k, "indices": found[i].indices.tolist(), "activations": _finite(found[i].activations),
                      "labels": [labels[j] for j in found[i].indices.tolist()], "n_stimuli": len(x),
                      "neurons": found[i].neurons})
    return add_time_course(work, layer, channels, found, pages) if work.view(layer).calls else pages


def tuning(work: Work, layer: str, channels: list[int]) -> list[dict]:
    """Orientation / SF tuning by :func:`insilico.experiments.orientation_tuning` (the same rules as the library):
    the unit after its nonlinearity, a blank baseline, the responsiveness criteria with the exemplar photos as
    the natural-image range, indices only for responsive units."""
    from ..experiments import orientation_tuning
    from ..experiments.tuning import COLOUR_AXES

    s = work.settings
    step = 180.0 / s.orientations
    result = orientation_tuning(
        work.model, _unit_range(work.view(layer), layer, channels[0], channels[-1] + 1), size=work.shape[-1],
        orientations=[round(i * step, 3) for i in range(s.orientations)],
        phases=[round(i * 360.0 / s.phases, 3) for i in range(s.phases)], natural=work.photos[0],
        colours=list(COLOUR_AXES) if s.colour_gratings and work.shape[0] == 3 else ["luminance"], progress=False)
    keep = [c - channels[0] for c in channels]
    return [tuning_record(result, i) for i in keep]


def _unit_range(view: LayerView, layer: str, start: int, stop: int) -> str:
    """Units ``start:stop`` of ``layer`` with their positions open (read at the centre by the experiments):
    ``layer[a:b]`` (map), ``layer[:, :, a:b]`` (channels-last), ``layer[:, a:b]`` (tokens)."""
    return f"{layer}[{', '.join([':'] * _unit_axis(view) + [f'{start}:{stop}'])}]"


def tuning_record(result, i: int) -> dict:
    """One unit of a :class:`~insilico.experiments.TuningResult` as the JSON a unit page reads."""
    return {"unit": str(result.units[i]), "orientations": result.settings["orientations"],
            "sfs": result.settings["sfs"], "curve": _finite(result.curves[i]), "sf_curve": _finite(result.sf_curves[i]),
            "baseline": _number(result.baseline[i]), "responsive": bool(result.responsive[i]),
            "reason": str(result.reason[i]), "peak_response": _number(result.peak_response[i]),
            "reliability": _number(result.reliability[i]), "tuned": bool(result.tuned[i]),
            "peak_orientation": _number(result.peak_orientation[i]),
            "preferred_orientation": _number(result.preferred_orientation[i]), "osi": _number(result.osi[i]),
            "circular_variance": _number(result.circular_variance[i]), "bandwidth": _number(result.bandwidth[i]),
            "bandwidth_resolved": bool(result.arrays.get("bandwidth_resolved", result.tuned)[i]),
            "orientation_step": result.orientation_step,
            "preferred_sf": _number(result.preferred_sf[i]), "sf_peak_at_edge": bool(result.sf_peak_at_edge[i]),
            "sf_bandwidth": _number(result.sf_bandwidth[i]), "phase_reduce": result.settings["phase_reduce"],
            "margin": result.settings["margin"], "preferred_colour": str(result.preferred_colour[i]) or None,
            "colour_peak": dict(zip(result.settings["colours"], _finite(result.colour_peak[i]))),
            **_physiology(result, i)}


#: The tuning fields of physiology's own definitions (issue 28): F0, F1, F1/F0 and the simple/complex split
#: (Skottun et al. 1991), OSI at the floor, spontaneous activity, why an SF bandwidth is not given.
PHYSIOLOGY = ("f0", "f1", "modulation_ratio", "cell_type", "osi_saturated", "spontaneous", "sf_bandwidth_reason")


def _physiology(result, i: int) -> dict:
    """The :data:`PHYSIOLOGY` fields of unit ``i`` that the result has (a cache from before them has none)."""
    out = {}
    for name in PHYSIOLOGY:
        if name in result.arrays:
            value = result.arrays[name][i]
            out[name] = (bool(value) if isinstance(value, (bool, np.bool_)) else
                         str(value) if isinstance(value, (str, np.str_)) else _number(value))
    return out


def rf(work: Work, layer: str, channels: list[int], batch: int = 256) -> list[dict]:
    """The linear (gradient) footprint of each unit's centre neuron on white noise: :func:`insilico.experiments.
    receptive_field`'s gradient method, batched over the chunk's units
    (:func:`~insilico.experiments.receptive_fields.gradient_fields`: one backward pass per ``batch`` (unit,
    image) pairs), with ``settings.rf_images`` images (None: the tool's default, doubled from 64 until the size's
    standard error is within 10% of the size) and the size's standard error ``size_se`` (a bootstrap over
    ``se_groups`` groups of the images: :meth:`~insilico.experiments.receptive_fields.RFResult.from_gradient_sums`)."""
    from ..experiments.receptive_fields import gradient_fields

    view = work.view(layer)
    centre = [g // 2 for g in view.grid]  # the centre rule on the grid (tokens: the centre patch)
    neurons = [view.neuron(work.model, layer, c) for c in channels]
    found = gradient_fields(work.model, neurons, work.shape, 0.1, work.settings.rf_images, work.settings.seed,
                            batch_size=batch)
    pages = []
    for c, neuron, field in zip(channels, neurons, found):
        work.save_png(layer, c, "rf", as_images(map_to_rgb(field.signed_map[None, None])[0])[0])
        pages.append({"neuron": str(neuron), "size": _number(field.size), "size_se": _number(field.size_se),
                      "n_images": int(field.settings["n_images"]), "se_groups": field.settings.get("se_groups"),
                      "center": _finite(field.center),
                      "box": _finite(field.box), "map_center": list(centre), "stride": map_stride(work, layer),
                      "input_size": list(work.shape[1:]),
                      **({} if view.layout == "map" else {"layout": view.layout, "shape": list(view.shape),
                                                            "prefix": view.prefix})})
    return pages


def map_stride(work: Work, layer: str) -> list | None:
    """Input pixels between neighbouring positions of ``layer``'s map, ``[rows, columns]`` (None without a
    neighbour): the shift of the theoretical RF box (:func:`~insilico.experiments.receptive_fields.theoretical_box`,
    the network's real wiring) from the centre neuron to the next one, or the ratio of the input's size to the
    map's where the wiring's boxes do not move (paths that mix all positions). A unit page moves the RF box measured at
    the centre by ``(position - map_center) * stride`` to outline the RF of another neuron of the map. Patch
    tokens and channels-last stages: the size ratio (a ViT's patch size)."""
    cache = work.__dict__.setdefault("_strides", {})
    if layer not in cache:
        view = work.view(layer)
        ratio = [round(s / m) * 1.0 for s, m in zip(work.shape[1:], view.grid)]
        if 1 in view.grid:
            cache[layer] = None
        elif view.layout != "map":  # patches (tokens), a channels-last stage: input pixels per position
            cache[layer] = ratio
        else:
            shift = _wiring_shift(work, layer, view)
            cache[layer] = ratio if shift is None or 0 in shift else [float(v) for v in shift]
    return cache[layer]


def _wiring_shift(work: Work, layer: str, view: LayerView) -> list | None:
    """The shift of the theoretical RF box of a map's channel 0 from its centre neuron to the next one (None
    where the wiring gives no box)."""
    from ..experiments.receptive_fields import theoretical_box

    centre = [g // 2 for g in view.grid]
    step = [1 if c + 1 < s else -1 for c, s in zip(centre, view.grid)]
    unit = Unit.parse(layer)
    here = theoretical_box(work.model, unit.replace(index=(0, *centre)), work.shape[0], work.shape[-1])
    there = theoretical_box(work.model, unit.replace(index=(0, *[c + d for c, d in zip(centre, step)])),
                            work.shape[0], work.shape[-1])
    return None if here is None or there is None else [abs(there[0] - here[0]), abs(there[2] - here[2])]


def lesion(work: Work, layer: str, channels: list[int], batch: int = 512) -> list[dict]:
    """Each unit silenced (set to 0 at every position: a channel over its map, a feature at every token) on
    :attr:`Work.lesion_set` by :func:`insilico.experiments.lesion_sweep` (one group per unit, many lesions per
    forward pass); the change of the output probabilities it records, summarised by :func:`_lesion_measure`
    (per class of the labels, or per output unit), with the noise of each per-class bar (:func:`_per_class`)."""
    from ..evaluate import predict
    from ..experiments import lesion_sweep

    x, y, names = work.lesion_set
    measure = _lesion_measure(work.model, int(predict(work.model, x[:1]).shape[-1]), y, names)
    found = lesion_sweep(work.model, layer, x, measure.pop("labels"), groups=[[c] for c in channels], n_boot=0,
                         batch_size=batch, progress=False)
    effects = (measure.pop("effects")(found) if "effects" in measure else
               _per_class(found, measure.pop("per_class")))
    return [{**measure, **effect, "n_stimuli": len(x)} for effect in effects]


#: The fewest images per class a lesion bar's interval is drawn with (Student's t on 1 degree of freedom, 2 images,
#: is 12.7 standard errors wide: no reading).
LESION_MIN_PER_CLASS = 3


def _per_class(found, per_class: dict) -> list[dict]:
    """Per unit and shown class, the mean change of the probability of each image's label (``by``: the class each
    image is counted in; ``shown``: the classes drawn, named ``names``) with its noise
    (:func:`insilico.statistics.class_mean_interval`: each bar is the mean of continuous per-image changes, so the
    0/1 accuracy interval of :func:`~insilico.experiments.lesions.lesion_uncertainty` does not apply): the 95%
    Student's t interval of each bar's mean over its class's images (each image paired with the intact model),
    ``nonzero`` (the interval excludes 0, :attr:`~insilico.experiments.LesionResult.nonzero`'s rule; neither with fewer
    than :data:`LESION_MIN_PER_CLASS` images in a shown class), the classes at
    floor / ceiling of the sweep's accuracy (``flagged``: the sweep's labels are the true classes) and each image's
    change (``image_change``, ``image_class``: the index of its class among ``names``, -1 when not shown), from
    which a layer page computes the split-half reliability of its whole lesion matrix (:func:`lesion_reliability`)."""
    by, n, shown = np.asarray(per_class["by"]), int(per_class["n_classes"]), list(per_class["shown"])
    counts = np.array([int((by == k).sum()) for k in shown])
    drawn = bool(len(counts)) and counts.min() >= LESION_MIN_PER_CLASS  # else no interval at all
    change = found.label_probability - found.baseline_label_probability[None, :]  # (G, N), paired per image
    # each image's change (not lesioned minus intact means): no cancellation residue to call an effect
    ci = class_mean_interval(change, by, n)[:, shown]
    mean = found.probability_change(by, n)[:, shown]
    where = {k: i for i, k in enumerate(shown)}
    image_class = [where.get(int(k), -1) for k in by]
    flags = {}
    if per_class.get("flagged"):
        flags = {"at_floor": [bool(v) for v in found.at_floor[shown]],
                 "at_ceiling": [bool(v) for v in found.at_ceiling[shown]],
                 "baseline_accuracy": _finite(found.baseline_class[shown])}
    noise = [{"interval": [_finite(v) for v in ci[g]], "nonzero": [bool(lo > 0 or hi < 0) for lo, hi in ci[g]],
              "level": 0.95, "method": "t"} if drawn else {} for g in range(len(mean))]
    return [{"classes": [str(c) for c in per_class["names"]], "probability_change": _finite(mean[g]), **noise[g],
             **flags, "image_change": _finite(change[g]), "image_class": image_class} for g in range(len(mean))]


def lesion_reliability(datas: list[dict], seed: int = 0) -> dict | None:
    """The split-half reliability of a layer's lesion matrix (units x classes) from its units' lesion dicts
    (``image_change``, ``image_class``: :func:`_per_class`), by the sweep's own statistic
    (:func:`insilico.experiments.lesions.lesion_uncertainty`: Pearson r between the matrices of two random halves of
    the images, stratified by class, mean over 20 splits; and its Spearman-Brown correction). None without per-image
    changes (panels per output unit, a site built before them) or with fewer than 2 units or 2 images per class.

    >>> d = [{"image_change": [0.1, 0.2, -0.1, -0.2], "image_class": [0, 0, 1, 1], "classes": ["a", "b"]},
    ...      {"image_change": [0.0, 0.1, 0.3, 0.4], "image_class": [0, 0, 1, 1], "classes": ["a", "b"]}]
    >>> r = lesion_reliability(d)
    >>> r["units"], r["per_class"], round(r["split_half_r"], 2)
    (2, 2, 0.96)
    """
    from ..experiments.lesions import lesion_uncertainty

    found = [d for d in datas if d and d.get("image_change") is not None]
    if len(found) < 2 or any(d["image_class"] != found[0]["image_class"] for d in found):
        return None
    by = np.asarray(found[0]["image_class"])
    counts = np.bincount(by[by >= 0]) if (by >= 0).any() else np.zeros(0, int)
    if not len(counts) or counts[counts > 0].min() < 2:
        return None
    change = np.array([[np.nan if v is None else v for v in d["image_change"]] for d in found])
    noise = lesion_uncertainty(change, np.zeros(change.shape[1]), by, len(found[0]["classes"]), 0, seed)
    r, rel = float(noise["split_half_r"]), float(noise["reliability"])
    return {"units": len(found), "per_class": int(counts[counts > 0].min()),
            "split_half_r": r if math.isfinite(r) else None, "reliability": rel if math.isfinite(rel) else None}


def _unit_axis(view: LayerView) -> int:
    """The axis of one sample's output that holds the units (channels, features)."""
    return len(view.shape) - 1 if view.layout in ("channels_last", "tokens") else 0


def _lesion_measure(model: nn.Module, k: int, y: torch.Tensor | None, names: list | None) -> dict:
    """Which labels :func:`~insilico.experiments.lesion_sweep` scores the lesions against, what of its
    :class:`~insilico.experiments.LesionResult` a unit's panel shows, and the page's words for it; ``k`` outputs.

    - The bundled photos (``names`` None): the model's classes; per class the mean change of the true class's
      probability over its own stimuli where the model has one output per photo class (``labelled``), else of
      each output over all stimuli (as the gallery always did).
    - The user's labelled folder, its classes matched to the model's outputs (by name through
      ``model.classes``, or in the folder's order when the model names none and has one output per class:
      :func:`insilico.stimuli.labels.stimulus_labels`): per folder class, the true class's probability.
    - A labelled folder whose classes are not the model's outputs (a 1,000-way ImageNet model on two folders
      of the user's): per folder class, the change of the probability of the class the intact model chose,
      over that class's images (``measure="decision"``).
    - Files without labels: per output unit, the mean change over all images (each unit's 32 largest |changes|
      where there are more outputs, ``most``).

    Returns ``labels`` (for the sweep), ``labelled``, ``measure`` (``"true class"``, ``"decision"``,
    ``"outputs"``; absent for the bundled photos) and either ``per_class`` (per class of the labels:
    :func:`_per_class`'s ``by``, ``n_classes``, ``shown``, ``names`` and ``flagged``) or ``effects``: a function
    ``LesionResult -> G dicts`` of ``classes`` and ``probability_change`` (one value per output shown).
    """
    from ..stimuli.labels import check_outputs, stimulus_labels

    if names is None and y is not None:  # the bundled photos: today's rule, unchanged
        classes = list(getattr(model, "classes", [str(i) for i in range(k)]))
        if k == int(y.max()) + 1 == len(classes):
            return {"labels": y, "labelled": True, "per_class": {"by": y.numpy(), "n_classes": k, "flagged": True,
                                                                 "shown": range(k), "names": classes}}
        return {"labels": "decision", "labelled": False, "effects": lambda found: _shown(classes, found.output_effect)}
    if y is None:
        return _per_output(model, k)
    from types import SimpleNamespace

    try:
        mapped, named, by_name = stimulus_labels(SimpleNamespace(labels=y.tolist(), class_names=names), model)
        if not by_name:
            check_outputs(names, k)
    except InsilicoError:  # classes the model's outputs are not: the change of the intact model's decision
        return {"labels": "decision", "labelled": True, "measure": "decision",
                "per_class": {"by": y.numpy(), "n_classes": len(names), "shown": range(len(names)), "names": names,
                              "flagged": False}}  # the sweep's labels are the decisions: no floor / ceiling to flag
    true = torch.as_tensor(mapped)
    shown = sorted(set(true.tolist()))
    return {"labels": true, "labelled": True, "measure": "true class",
            "per_class": {"by": true.numpy(), "n_classes": k, "shown": shown, "names": [named[i] for i in shown],
                          "flagged": True}}


def _shown(classes: list, values) -> list[dict]:
    return [{"classes": [str(c) for c in classes], "probability_change": _finite(v)} for v in values]


def _per_output(model: nn.Module, k: int, most: int = 32) -> dict:
    """Per output unit (files without labels): the mean change of each output's probability over all images;
    of more than ``most`` outputs, each unit's ``most`` largest |changes| (in the outputs' order)."""
    names = [str(c) for c in getattr(model, "classes", range(k))]

    def effects(found) -> list[dict]:
        out = []
        for mean in found.output_effect:
            keep = sorted(np.argsort(-np.abs(mean), kind="stable")[:most].tolist())
            out.append({"classes": [names[i] for i in keep], "probability_change": _finite(mean[keep])})
        return out

    return {"labels": "decision", "labelled": False, "measure": "outputs", "most": most if k > most else None,
            "effects": effects}


def spatial(work: Work, layer: str) -> bool:
    """True for layers whose units are read at a position of a 2-d map (maps, channels-last stages, patch
    tokens on a square grid): tuning curves and RF maps apply (:attr:`LayerView.spatial`)."""
    return work.view(layer).spatial


def everywhere(work: Work, layer: str) -> bool:
    return True


#: Stage name -> (function, applies to layer?)
STAGES: dict[str, tuple[Callable, Callable]] = {
    "features": (features, everywhere),
    "exemplars": (exemplars, everywhere),
    "tuning": (tuning, spatial),
    "rf": (rf, spatial),
    "lesion": (lesion, everywhere),
}

__all__ = ["STAGES", "Work", "slug", "spatial"]
