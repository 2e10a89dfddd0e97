"""Architecture knowledge, in one place: module kinds, output layouts, the centre rule, model families, layers.

Every tool that needs to know something about a network's architecture asks
here instead of keeping a rule of its own:

================================= ===================================================================
module                            what it knows
================================= ===================================================================
:mod:`~insilico.layers.modules`   the one list of each module kind: activations (torch's classes and
                                  timm / Hugging Face class names), pass-through norms and inert
                                  modules, convolutions, spatial layers, 1-d maps
:mod:`~insilico.layers.layout`    the layout of a unit's output ("map" ``(C, H, W)``, "channels_last"
                                  ``(H, W, C)``, "tokens" ``(T, D)``, "heads", "vector", "scalar") and
                                  the centre rule of each (:func:`at_centre`)
:mod:`~insilico.layers.families`  model families (vit, swin, convnext; generic for the rest): prefix
                                  tokens, channels-last modules, attention modules and the layout of
                                  their parts; "how to add a model family" is its docstring
:mod:`~insilico.layers.inputs`    the model's input image size: what ``size=`` means for every tool
                                  (:func:`image_size`)
:mod:`~insilico.layers.chooser`   the layer chooser: "which layers" by kind, in call order
                                  (:func:`choose_layers`)
================================= ===================================================================

The core (modules, layout, chooser) is model-agnostic; a family is an adapter
that answers only what the core cannot see from one module (STYLE.md:
TransformerLens ``supported_architectures/``, nnsight ``modeling/``). The
attention math and the parts ``"attn:heads"`` / ``"attn:weights"`` live in
:mod:`insilico.attention`, with the registry of known attention modules and the
layout of their parts (:func:`attention_modules` reads it; a family may add classes of its own).

Example
-------
>>> import torchvision
>>> from insilico.units import Unit
>>> net = torchvision.models.resnet18()
>>> choose_layers(net, (3, 32, 32), "activations")[:2], choose_layers(net, (3, 32, 32), "conv", step="first")[0]
(['relu', 'layer1.0.relu@1'], 'conv1')
>>> unit = at_centre(Unit.parse("layer1[3]"), (64, 8, 8), net.layer1, family_of(net))
>>> str(unit), family_of(net).name
('layer1[3,4,4]', 'generic')
"""
from __future__ import annotations

from .chooser import KINDS, STEPS, choose_layers, example_input
from .families import FAMILIES, GENERIC, Family, attention_modules, family_of, read_layout, register, unit_layout
from .inputs import image_size, renamed, size_failure
from .layout import LAYOUTS, at_centre, centre, centre_token, channels_first, layout_of, patch_grid
from .modules import (ACTIVATION_NAMES, ACTIVATIONS, CONV, CONV_LINEAR, INERT, LOCAL, MAPS_1D, PASS_THROUGH, SPATIAL,
                      input_channels, is_activation, is_conv_linear, is_inert, is_pass_through)

__all__ = ["KINDS", "STEPS", "choose_layers", "example_input", "FAMILIES", "GENERIC", "Family", "attention_modules",
           "family_of", "read_layout", "register", "unit_layout", "LAYOUTS", "at_centre", "centre", "centre_token",
           "channels_first", "layout_of", "patch_grid", "ACTIVATION_NAMES",
           "ACTIVATIONS", "CONV", "CONV_LINEAR", "INERT", "LOCAL", "MAPS_1D", "PASS_THROUGH", "SPATIAL",
           "image_size", "renamed", "size_failure", "input_channels", "is_activation", "is_conv_linear", "is_inert",
           "is_pass_through"]
