"""What a gallery computes for a chunk of units of one layer: one small function per stage.

Every stage is ``stage(work, layer, channels) -> list of dicts`` (one JSON-able
dict per unit, saved as ``units/<layer>/<c>/<stage>.json``) and may write
images into each unit's folder with :meth:`Work.save_png`. Stages call the
library's tools; nothing here re-implements them:

============ =================================================================
stage        what, with which tool
============ =================================================================
features     maximizing / diverse / inhibiting images and stretched exemplars (:mod:`.features`)
exemplars    top exemplars (:func:`insilico.top_exemplars`) with deconvolution
             projections and gradient maps (:func:`insilico.project_exemplars`)
tuning       orientation and SF tuning (:func:`insilico.experiments.orientation_tuning`: the unit
             after its nonlinearity, blank baseline, responsiveness), conv layers
rf           receptive-field map from gradients on white noise
             (:func:`insilico.gradient_map`, :class:`~insilico.experiments.RFResult`), conv layers
lesion       per-class effect of silencing the unit (:meth:`insilico.Probe.stimulate`
             with a per-sample gain of 0, many lesions per forward pass)
============ =================================================================
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
from ..performance import as_numpy
from ..layers import centre as map_centre, example_input, unit_layout
from ..plot import as_images, map_to_rgb, mosaic
from ..session import session
from ..units import Unit
from .features import visualize
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
            return _files(self.model, self.settings.stimuli, self.shape)
        if self.settings.stimuli == "photos":
            x, y = photos.held_out(self.settings.per_class, seed=1234 + self.settings.seed)
            return _fit(x, self.shape), [photos.CLASSES[int(i)] for i in y]
        found = stimuli.natural_images(size=self.shape[-1], n_crops=self.settings.per_class, seed=self.settings.seed, crop=0.5,
                                       channels=self.shape[0])
        return found.images, [str(p.get("name", i)) for i, p in enumerate(found.params)]

    @functools.cached_property
    def lesion_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        from ..models import photos

        x, y = photos.held_out(self.settings.lesion_per_class, seed=4321 + self.settings.seed)
        return _fit(x, self.shape), y

    def top_exemplars(self, layer: str, channels: list[int]) -> list:
        """The top ``settings.exemplars`` photos of each channel (:func:`insilico.top_exemplars`, one pass over
        :attr:`photos`), computed once per chunk: the ``features`` stage compares its images with the first,
        the ``exemplars`` stage shows them all, so both read one ranking."""
        from ..attribution.exemplars import top_exemplars

        cache = self.__dict__.setdefault("_top", {})
        key = (layer, tuple(channels))
        if key not in cache:
            x = self.photos[0]
            units = [str(Unit.parse(layer).replace(index=(c,))) for c in channels]
            cache.clear()  # one chunk at a time: the stages of a chunk run together
            cache[key] = top_exemplars(self.model, x, units, k=min(self.settings.exemplars, len(x)), progress=False)
        return cache[key]

    def layer_shape(self, layer: str) -> tuple:
        """One sample's output shape of ``layer``, from one survey of a grey image for every layer (a
        :class:`~insilico.plan.Plan`, made on first use); a layout the gallery cannot lay out as channels is refused."""
        from ..plan import Plan

        if "_plan" not in self.__dict__:
            self.__dict__["_plan"] = Plan(self.model, example_input(self.model, self.shape))
        unit = Unit.coerce(layer, self.model)
        shape = self.__dict__["_plan"].shape(unit)
        layout = unit_layout(self.model, unit, shape)
        if layout not in ("map", "vector"):
            raise InsilicoError(f"the gallery reads the first axis of a layer's output as its channels; {layer} "
                                f"gives a {layout} output {shape}: leave it out of the layers, or study "
                                "it with the experiments (insilico.experiments), which read every layout")
        return shape


def slug(layer: str) -> str:
    """A file-name-safe form of a layer address (``blt.conv2@3`` -> ``blt.conv2_at3``)."""
    text = str(layer).replace("@", "_at")
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in text)


def _files(model: nn.Module, files: str, shape: tuple) -> tuple:
    """The user's image files as a stimulus source fitted to the model's input (its preprocessing, else the
    gallery's input ``shape``), and a label per stimulus."""
    from types import SimpleNamespace

    from ..recording import stimulus_source

    fitting = model if getattr(model, "preprocessing", None) is not None else SimpleNamespace(input_size=shape)
    source = stimulus_source(files, name=f"stimuli {files}", model=fitting)
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

    The page's maximizing image (``max.png``, value ``maximizing``, the ``max_activation`` of ``units.csv``) is
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
                   "positions": _flat_positions(top, work.layer_shape(layer))}
    out = visualize(work.model, layer, channels, work.shape, steps=s.steps, diverse=s.diverse, settle=s.settle,
                    diversity=s.diversity, lr=s.lr, seed=s.seed, progress=work.progress, **stretch)
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
        pages.append({"maximizing": _number(shown[0][2]), "maximizing_kind": shown[0][0], "other": other,
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


def _flat_positions(found: list, shape: tuple) -> list[int] | None:
    """Flat map index (row * width + column) of each exemplar's best neuron; None for layers without maps."""
    if len(shape) != 3:
        return None
    return [int(e.positions[0][0]) * shape[-1] + int(e.positions[0][1]) for e in found]


def exemplars(work: Work, layer: str, channels: list[int]) -> list[dict]:
    from ..attribution.exemplars import project_exemplars

    x, labels = work.photos
    k = min(work.settings.exemplars, len(x))
    found = work.top_exemplars(layer, channels)
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
    return pages


def tuning(work: Work, layer: str, channels: list[int]) -> list[dict]:
    """Orientation / SF tuning by :func:`insilico.experiments.orientation_tuning` (the same rules as the library):
    the unit after its nonlinearity, a blank baseline, the responsiveness criteria with the exemplar photos as
    the natural-image range, indices only for responsive units."""
    from ..experiments import orientation_tuning
    from ..experiments.tuning import COLOUR_AXES

    s = work.settings
    step = 180.0 / s.orientations
    result = orientation_tuning(
        work.model, f"{layer}[{channels[0]}:{channels[-1] + 1}]", size=work.shape[-1],
        orientations=[round(i * step, 3) for i in range(s.orientations)],
        phases=[round(i * 360.0 / s.phases, 3) for i in range(s.phases)], natural=work.photos[0],
        colours=list(COLOUR_AXES) if s.colour_gratings and work.shape[0] == 3 else ["luminance"], progress=False)
    keep = [c - channels[0] for c in channels]
    return [tuning_record(result, i) for i in keep]


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
            "colour_peak": dict(zip(result.settings["colours"], _finite(result.colour_peak[i])))}


def rf(work: Work, layer: str, channels: list[int], batch: int = 256) -> list[dict]:
    from .. import stimuli
    from ..experiments import RFResult
    from ..attribution.gradients import gradient_map

    m = work.settings.rf_images
    shape = work.layer_shape(layer)
    centre = tuple(map_centre(shape, "map").values())
    noise = stimuli.white_noise(size=work.shape[-1], n=m, seed=work.settings.seed, channels=work.shape[0]).images
    neurons = [Unit.parse(layer).replace(index=(c, *centre)) for c in channels for _ in range(m)]
    images = noise.repeat(len(channels), 1, 1, 1)
    maps = as_numpy(torch.cat([gradient_map(work.model, images[i:i + batch], neurons[i:i + batch]).cpu()
                               for i in range(0, len(images), batch)])).reshape(len(channels), m, *work.shape)
    pages = []
    for i, c in enumerate(channels):
        signed, strength = maps[i].sum(1).mean(0), np.abs(maps[i]).sum(1).mean(0)
        found = RFResult.from_map(strength, signed, 0.1, {"unit": str(neurons[i * m]), "method": "gradient"})
        work.save_png(layer, c, "rf", as_images(map_to_rgb(signed[None, None])[0])[0])
        pages.append({"neuron": str(neurons[i * m]), "size": _number(found.size), "center": _finite(found.center),
                      "box": _finite(found.box), "map_center": list(centre), "stride": map_stride(work, layer),
                      "input_size": list(work.shape[1:])})
    return pages


def map_stride(work: Work, layer: str) -> list | None:
    """Input pixels between neighbouring positions of ``layer``'s map, ``[rows, columns]`` (None without a
    neighbour): the shift of the theoretical RF box (:func:`~insilico.experiments.receptive_fields.theoretical_box`,
    the network's real wiring) from the centre neuron to the next one, or the ratio of the input's size to the
    map's where the wiring's boxes do not move (paths that mix all positions). A unit page moves the RF box measured at
    the centre by ``(position - map_center) * stride`` to outline the RF of another neuron of the map."""
    from ..experiments.receptive_fields import theoretical_box

    cache = work.__dict__.setdefault("_strides", {})
    if layer not in cache:
        shape = work.layer_shape(layer)
        centre = list(map_centre(shape, "map").values())
        step = [1 if c + 1 < s else -1 for c, s in zip(centre, shape[1:])]
        unit = Unit.parse(layer)
        here = theoretical_box(work.model, unit.replace(index=(0, *centre)), work.shape[0], work.shape[-1])
        there = theoretical_box(work.model, unit.replace(index=(0, *[c + d for c, d in zip(centre, step)])),
                                work.shape[0], work.shape[-1])
        shift = None if here is None or there is None else [abs(there[0] - here[0]), abs(there[2] - here[2])]
        if 1 in shape[1:]:
            cache[layer] = None
        elif shift is None or 0 in shift:  # the wiring gave no shift (paths that mix positions): the size ratio
            cache[layer] = [round(s / m) * 1.0 for s, m in zip(work.shape[1:], shape[1:])]
        else:
            cache[layer] = [float(v) for v in shift]
    return cache[layer]


def lesion(work: Work, layer: str, channels: list[int], batch: int = 512) -> list[dict]:
    from ..probe import Probe

    x, y = work.lesion_set
    probe = Probe(work.model)
    device = probe.device
    x = x.to(device, probe.dtype)
    n, shape = len(x), work.layer_shape(layer)
    with session(work.model):
        base = torch.softmax(work.model(x).float(), -1).cpu()
    classes = list(getattr(work.model, "classes", [str(k) for k in range(base.shape[1])]))
    labelled = base.shape[1] == int(y.max()) + 1 == len(classes)
    per = max(1, batch // n)
    effects = []
    for start in range(0, len(channels), per):
        group = channels[start:start + per]
        gain = torch.ones(len(group), shape[0], *[1] * (len(shape) - 1), device=device, dtype=probe.dtype)
        gain[torch.arange(len(group)), torch.tensor(group)] = 0.0
        with session(work.model), probe.stimulate(layer, gain=gain.repeat_interleave(n, 0)):
            prob = torch.softmax(work.model(x.repeat(len(group), *[1] * (x.ndim - 1))).float(), -1).cpu()
        effects.extend(_class_effects(prob.view(len(group), n, -1) - base, y, labelled))
    return [{"classes": classes, "labelled": labelled, "probability_change": _finite(e), "n_stimuli": n}
            for e in effects]


def _class_effects(change: torch.Tensor, y: torch.Tensor, labelled: bool) -> list[np.ndarray]:
    """Per lesion (G, N, K) -> (K,): mean change of each class's probability over its own stimuli (labelled)
    or over all stimuli."""
    if not labelled:
        return list(change.mean(1).numpy())
    k = change.shape[-1]
    member = torch.nn.functional.one_hot(y, k).float()            # (N, K)
    own = (change * member).sum(1) / member.sum(0).clamp_min(1)    # (G, K)
    return list(own.numpy())


def spatial(work: Work, layer: str) -> bool:
    """True for layers with a (C, H, W) output: tuning curves and RF maps apply."""
    return len(work.layer_shape(layer)) == 3


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
