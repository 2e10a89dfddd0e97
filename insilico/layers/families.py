"""Model families: what the model-agnostic rules cannot see from one module, per kind of network.

A family is an adapter over the core (:mod:`insilico.layers.modules`,
:mod:`insilico.layers.layout`): the core never names a family, a family only
answers the few questions that differ between architectures. It is found by
the class name of the model or of any module inside it (so a wrapper such as
``insilico.models.Normalized`` still finds the network in it), and it says:

- ``prefix_tokens``: how many tokens come before the patch grid (CLS,
  registers): the token centre rule (:func:`~insilico.layers.layout.centre_token`);
- ``channels_last``: which of its modules give ``(H, W, C)`` outputs
  (:func:`~insilico.layers.layout.layout_of`);
- ``attention``: its attention modules (class names) and the layout of their
  parts (:mod:`insilico.attention`): ``"heads"`` is ``(N, heads, L, head_dim)``,
  ``"windows"`` the same with the windows folded into the batch axis
  ``(N * windows, heads, window tokens, head_dim)``.

============ =============================================== ======== ============================= =================
family       classes                                         prefix   channels-last modules         attention
============ =============================================== ======== ============================= =================
generic      any other model (conv nets: ResNet, AlexNet,    0 or 1   Linear / LayerNorm / Permute  MultiheadAttention
             VGG, MiniAlexNet, BLT)                          inferred to NHWC with 3-axis outputs   (heads)
vit          VisionTransformer (torchvision, timm), Eva,     timm:    none                          MultiheadAttention,
             Deit*                                           num_pre-                               Attention (heads)
                                                             fix_to-
                                                             kens; 1
swin         SwinTransformer, SwinTransformerV2 (tv, timm)   0        every 3-axis output but       ShiftedWindow-
                                                                      conv, pooling, NCHW permute   Attention(V2),
                                                                                                    WindowAttention
                                                                                                    (windows)
convnext     ConvNeXt (torchvision, timm)                    0        a block's Linear, LayerNorm,  none
                                                                      activation (between its
                                                                      permutes)
============ =============================================== ======== ============================= =================

How to add a model family
-------------------------
1. Survey the model (``print(insilico.Probe(model).survey(x).table())``) and
   look for what the generic rules get wrong: a 3-axis output that is
   ``(H, W, C)``, a token sequence with registers, an attention module.
2. Write a :class:`Family` with the class names that identify it and only
   the answers that differ, and :func:`register` it (in this module for a
   family insilico ships, or in your own code for a private one).
3. Add the model to ``tests/test_layers.py``: the layouts of its layers and
   the centre of each (the test iterates :data:`FAMILIES`).

Example
-------
>>> import torchvision
>>> vit = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=2,
...                                            hidden_dim=16, mlp_dim=32)
>>> family_of(vit).name, family_of(vit).prefix(), family_of(torch.nn.Conv2d(1, 1, 1)).name
('vit', 1, 'generic')
>>> attention_modules(vit)
{'encoder.layers.encoder_layer_0.self_attention': 'heads'}
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

import torch
from torch import nn

from ..errors import InsilicoError
from .layout import last_axis_features, map_like
from .modules import is_activation


@dataclasses.dataclass(frozen=True)
class Family:
    """One model family: how to recognise it, and its answers to the questions the core cannot answer.

    Parameters
    ----------
    name : str
    classes : tuple of str
        Class names (of the model or of a module inside it) that identify the family.
    prefix_tokens : callable, optional
        ``root -> int``: tokens before the patch grid (None: inferred, 0 or 1).
    channels_last : callable, optional
        ``module -> bool``: True when a 3-axis output of the module is ``(H, W, C)``
        (None: the generic rule, Linear and LayerNorm outputs).
    attention : mapping
        Attention module class name -> layout of its parts (``"heads"``, ``"windows"``).
    """

    name: str
    classes: tuple[str, ...] = ()
    prefix_tokens: Callable[[nn.Module], int] | None = None
    channels_last: Callable[[nn.Module], bool] | None = None
    attention: Mapping[str, str] = dataclasses.field(default_factory=lambda: {"MultiheadAttention": "heads"})
    root: nn.Module | None = dataclasses.field(default=None, compare=False, repr=False)

    def prefix(self) -> int | None:
        """Tokens before the patch grid in this model (None: the family does not say)."""
        if self.prefix_tokens is None or self.root is None:
            return None
        return int(self.prefix_tokens(self.root))


def _swin_channels_last(module: nn.Module) -> bool:
    return not map_like(module)


def _convnext_channels_last(module: nn.Module) -> bool:
    return last_axis_features(module) or is_activation(module)


GENERIC = Family("generic")
#: The registered families by name, in the order they are tried (the extension point: :func:`register`).
FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Add (or replace) a family; :func:`family_of` tries families in registration order."""
    if not isinstance(family, Family) or not family.classes:
        raise InsilicoError("register a Family with at least one class name that identifies it")
    FAMILIES[family.name] = family
    return family


register(Family("vit", ("VisionTransformer", "Eva", "Deit", "VisionTransformerDistilled"),
                prefix_tokens=lambda root: getattr(root, "num_prefix_tokens", 1),
                attention={"MultiheadAttention": "heads", "Attention": "heads"}))
register(Family("swin", ("SwinTransformer", "SwinTransformerV2"), prefix_tokens=lambda root: 0,
                channels_last=_swin_channels_last,
                attention={"ShiftedWindowAttention": "windows", "ShiftedWindowAttentionV2": "windows",
                           "WindowAttention": "windows"}))
register(Family("convnext", ("ConvNeXt",), channels_last=_convnext_channels_last, attention={}))


def family_of(model: nn.Module) -> Family:
    """The family of ``model`` bound to the module that identified it (:data:`GENERIC` when none matches).

    Modules are searched in ``model.modules()`` order (the model itself first),
    so a wrapper (input normalisation) finds the network inside it.
    """
    for module in model.modules():
        names = {cls.__name__ for cls in type(module).__mro__}
        for family in FAMILIES.values():
            if names.intersection(family.classes):
                return dataclasses.replace(family, root=module)
    return dataclasses.replace(GENERIC, root=model)


def attention_modules(model: nn.Module, family: Family | None = None) -> dict[str, str]:
    """Addresses of the model's attention modules and the layout of their parts (``"heads"``, ``"windows"``)."""
    family = family or family_of(model)
    out = {}
    for name, module in model.named_modules():
        layout = family.attention.get(type(module).__name__)
        if layout is not None and name:
            out[name] = layout
    return out


__all__ = ["Family", "FAMILIES", "GENERIC", "register", "family_of", "attention_modules"]
