"""What a gallery reader needs to know about the model: readable layer descriptions and a model card.

Everything here comes from one :meth:`insilico.Probe.survey` of a grey image
(with ops): the call order of the modules, their output shapes, and what
follows each layer, so a description says what the layer *is* in this
forward pass, not what its name suggests:

>>> import torch
>>> from insilico.models import load
>>> net = load("minialex")
>>> d = describe_layers(net, (3, 64, 64), ["features.3", "classifier.6"])
>>> d["features.3"]["text"]
'conv2: Conv2d 48→96, 5×5, stride 1, before ReLU'
>>> d["classifier.6"]["text"]
"fc3: Linear 256→16, the model's output (one logit per class)"
"""
from __future__ import annotations

import math

from torch import nn

from ..errors import InsilicoError
from ..layers import example_input, is_activation, is_conv_linear, is_pass_through
from ..survey import Survey
from ..units import Unit

#: Modules that pass a layer's output on channel by channel (named, and the walk goes on).
#: Walked past and named besides the pass-through modules (:func:`insilico.layers.is_pass_through`).
_ALSO_WALKED = (nn.LayerNorm, nn.Upsample)

#: Gallery settings a reader needs (the rest, internals such as lr, chunk, seed, go in a collapsed list).
READER_SETTINGS = {
    "steps": "activation-maximization steps per image",
    "diverse": "images from noise per unit (pushed apart from each other)",
    "exemplars": "top exemplars shown per unit",
    "stimuli": "exemplar stimulus set",
    "per_class": "exemplar crops per class",
    "lesion_per_class": "held-out crops per class for each lesion",
    "orientations": "grating orientations over 180°",
    "phases": "grating phases",
    "colour_gratings": "colour gratings too",
    "rf_images": "white-noise images per receptive-field map",
}


def survey_model(model: nn.Module, shape: tuple) -> Survey:
    """One survey (with ops) of a grey image of ``shape`` (C, H, W): call order and output shapes."""
    from ..probe import Probe

    return Probe(model).survey(example_input(model, shape), ops=True, strict=False)


def module_text(module: nn.Module) -> str:
    """``"Conv2d 48→96, 5×5, stride 1"``, ``"Linear 256→16"``, else the module's type name."""
    name = type(module).__name__
    if isinstance(module, nn.modules.conv._ConvNd):
        text = f"{name} {module.in_channels}→{module.out_channels}, {'×'.join(map(str, module.kernel_size))}"
        stride = set(module.stride)
        text += f", stride {module.stride[0] if len(stride) == 1 else '×'.join(map(str, module.stride))}"
        if any(d != 1 for d in module.dilation):
            text += f", dilation {module.dilation[0]}"
        if module.groups != 1:
            text += ", depthwise" if module.groups == module.in_channels else f", {module.groups} groups"
        return text
    if isinstance(module, nn.Linear):
        return f"{name} {module.in_features}→{module.out_features}"
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        return f"{name} {module.kernel_size}, stride {module.stride}"
    return name


def _site_calls(survey: Survey, unit: Unit) -> list[int]:
    return [i for i, c in enumerate(survey.calls) if c.module == unit.site]


def _what_follows(survey: Survey, start: int, modules: dict) -> str:
    """What the layer's output goes through next, in call order: ``"before BatchNorm2d → ReLU"``.

    Per-channel modules (BatchNorm, Dropout, Upsample, ...) and functional ops (``add``) are named and the
    walk goes on to the first activation. A weighted module met on the way is a parallel branch (a ResNet's
    downsample, a recurrent net's lateral and top-down inputs) when an ``add`` of the current shape joins
    it back before any activation: the walk skips to that add. Otherwise the walk stops there ("then
    MaxPool2d (no nonlinearity)").
    """
    calls, chain, i = survey.calls, [], start + 1
    shape = calls[start].shape
    while i < len(calls) and len(chain) < 5:
        call = calls[i]
        i += 1
        if ":" in call.module:
            continue
        if "/" in call.module and is_activation(modules.get(call.module.split("/", 1)[0])):
            continue  # an op of an activation written in Python (timm's GELUTanh)
        if "/" in call.module:
            if not chain or chain[-1] != _op(call.module):  # a three-way sum is one "add"
                chain.append(_op(call.module))
            shape = call.shape
            continue
        module = modules.get(call.module)
        if call.module == "" or module is None:
            break
        if any(True for _ in module.children()):
            continue  # a container's own call fires after its children's
        if is_activation(module):
            return "before " + " → ".join(chain + [type(module).__name__])
        if is_pass_through(module) or isinstance(module, _ALSO_WALKED):
            chain.append(type(module).__name__)
            shape = call.shape
            continue
        join = _branch_end(calls, i - 1, shape, modules)
        if join is not None:
            i = join
            continue
        return "then " + " → ".join(chain + [type(module).__name__]) + ("" if chain else " (no nonlinearity)")
    return "then " + " → ".join(chain) if chain else ""


def _op(site: str) -> str:
    return site.split("/", 1)[1].split("#")[0].rstrip("_").replace("iadd", "add")


def _branch_end(calls, i: int, shape, modules: dict) -> int | None:
    """Index of the ``add`` op of ``shape`` that closes a parallel branch starting at call ``i`` (None when an
    activation or the model's end comes first: then the module at ``i`` is what our output feeds)."""
    for j in range(i, len(calls)):
        site = calls[j].module
        if "/" in site and _op(site) == "add":
            return j if calls[j].shape == shape else None
        if site == "" or is_activation(modules.get(site)):
            return None
    return None


def _is_output(survey: Survey, index: int) -> bool:
    """True when the model returns this call's output (the same shape, and only pass-through modules after it)."""
    calls = survey.calls
    final = [c for c in calls if c.module == ""]
    if not final or final[-1].shape != calls[index].shape:
        return False
    return all(c.module == "" or "/" in c.module or c.shape == calls[index].shape for c in calls[index + 1:])


def describe_layers(model: nn.Module, shape: tuple, layers: list[str], survey: Survey | None = None) -> dict:
    """Per layer address: ``name`` (conv2, fc1: the n-th Conv / Linear in call order), ``module``
    (:func:`module_text`), ``follows`` (what its output goes through next), ``output`` (True for the model's
    output), ``shape`` (one sample's output shape) and ``text``, all of it in one line.

    Parameters
    ----------
    model : nn.Module
    shape : (C, H, W)
        The model's input.
    layers : list of str
        Unit addresses of layers (``"features.3"``, ``"blt.conv2@3"``).
    survey : Survey, optional
        A survey with ops of a grey image (default: made here, :func:`survey_model`).
    """
    survey = survey or survey_model(model, shape)
    modules = dict(model.named_modules())
    counts, names = {"conv": 0, "fc": 0}, {}
    for site in survey.modules():
        module = modules.get(site)
        if site and is_conv_linear(module):
            kind = "fc" if isinstance(module, nn.Linear) else "conv"
            counts[kind] += 1
            names[site] = f"{kind}{counts[kind]}"
    out = {}
    for layer in layers:
        unit = Unit.coerce(layer, model)
        calls = _site_calls(survey, unit)
        if not calls:
            raise InsilicoError(f"{layer!r} did not run in a forward pass of a grey {tuple(shape)} image")
        index = calls[unit.step if unit.step is not None else -1]
        module = modules.get(unit.module)
        info = {"name": names.get(unit.site, unit.site), "module": module_text(module) if module is not None
                else unit.site, "output": _is_output(survey, index), "shape": tuple(survey.calls[index].shape or ())}
        info["follows"] = _what_follows(survey, index, modules) if not info["output"] else \
            "the model's output" + (" (one logit per class)" if output_classes(model, info) else "")
        if len(calls) > 1:
            info["name"] += f" at step {calls.index(index)} (of steps 0–{len(calls) - 1})"
        info["text"] = f"{info['name']}: {info['module']}" + (f", {info['follows']}" if info["follows"] else "")
        out[layer] = info
    return out


def output_classes(model: nn.Module, info: dict) -> list[str] | None:
    """The class names of an output layer's units (``model.classes``), else None."""
    classes = getattr(model, "classes", None)
    if not info.get("output") or classes is None or len(info.get("shape", ())) != 1:
        return None
    return list(classes) if len(classes) == info["shape"][0] else None


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_card(model: nn.Module, settings, shape: tuple, layers: list[str], survey: Survey | None = None) -> dict:
    """What the index tells a reader about the model: ``architecture`` (one row per leaf module in the order
    of first calls: ``address``, ``module`` text, ``shape`` of its last call, ``parameters``, ``calls`` per
    forward pass, ``gallery`` and ``layer``: the gallery layer it is), ``parameters``, ``input`` (size, range), ``trained`` (description,
    data, held-out accuracy and chance, when the bundled model's card records them), ``settings`` (reader's)
    and ``internals`` (the other build settings)."""
    survey = survey or survey_model(model, shape)
    modules = dict(model.named_modules())
    rows, shown = [], {Unit.coerce(layer, model).site: layer for layer in layers}
    for site in survey.modules():
        module = modules.get(site)
        if not site or module is None or any(True for _ in module.children()):
            continue
        call = [c for c in survey.calls if c.module == site][-1]
        rows.append({"address": site, "module": module_text(module), "shape": tuple(call.shape or ()),
                     "parameters": sum(p.numel() for p in module.parameters()), "calls": survey.count(site),
                     "gallery": site in shown, "layer": shown.get(site)})
    normalise = any(type(m).__name__ == "Normalize" for m in modules.values())
    card = {"architecture": rows, "parameters": parameter_count(model), "type": type(model).__name__,
            "input": {"size": tuple(shape), "range": "pixel values in [0, 1]" + (
                ", normalised inside the model" if normalise else "")},
            "trained": _training(settings), "classes": list(getattr(model, "classes", []) or [])}
    given = settings.to_dict()
    card["settings"] = {k: given[k] for k in READER_SETTINGS if given.get(k) is not None}
    card["internals"] = {k: v for k, v in given.items() if k not in READER_SETTINGS and v is not None
                         and k not in ("model", "name", "layers")}
    return card


def _training(settings) -> dict:
    """From the bundled model's card: what it was trained on and its held-out accuracy (empty otherwise)."""
    from .. import models

    if settings.weights is not None:
        return {}
    try:
        found = models.card(settings.model)
    except (InsilicoError, OSError, ValueError):
        return {}
    keep = {k: found[k] for k in ("description", "held_out_accuracy", "held_out_n", "chance", "held_out", "training")
            if found.get(k) is not None and not (isinstance(found[k], float) and math.isnan(found[k]))}
    keep["n_classes"] = len(found.get("classes", []))
    return keep


__all__ = ["READER_SETTINGS", "describe_layers", "model_card", "module_text", "output_classes", "parameter_count",
           "survey_model"]
