"""Model families: what the model-agnostic rules cannot see from one module, per kind of network.

A family is an adapter over the core (:mod:`insilico.layers.modules`,
:mod:`insilico.layers.layout`): the core never names a family, a family only
answers the few questions that differ between architectures. It is found by
the class name of the model or of any module inside it (so a wrapper such as
a ``Sequential(Normalize(...), net)`` still finds the network in it), and it says:

- ``prefix_tokens``: how many tokens come before the patch grid (CLS,
  registers): the token centre rule (:func:`~insilico.layers.layout.centre_token`);
- ``channels_last``: which of its modules give ``(H, W, C)`` outputs
  (:func:`~insilico.layers.layout.layout_of`);
- ``attention``: attention classes of the family that the registry of known
  attention modules (:data:`insilico.attention.KNOWN`, which names torch's, timm's,
  torchvision's, Hugging Face's and open_clip's) does not know, and the layout of
  their parts: ``"heads"`` is ``(N, heads, L, head_dim)``, ``"windows"``
  ``(N, heads, windows, window tokens, head_dim)`` (windows unfolded from the batch axis).

The families insilico ships (``FAMILIES``; any other model is ``generic``):

``generic``
    Conv nets (ResNet, AlexNet, VGG, MiniAlexNet, BLT) and anything else.
    Prefix tokens inferred (a ``g * g + 1`` sequence has a CLS token);
    channels-last: Linear / LayerNorm / permute-to-NHWC modules with a
    3-axis output.
``vit``
    ``VisionTransformer`` (torchvision, timm), timm's ``Eva`` and ``VisionTransformerDistilled``, DINOv2's
    ``DinoVisionTransformer``, Hugging Face's ``Dinov2WithRegistersModel`` and ``DeiTModel``. Prefix tokens:
    timm's ``num_prefix_tokens`` (CLS, registers, distillation token); a Hugging Face model's embeddings'
    ``cls_token``, ``distillation_token`` and ``register_tokens``; else 1 (CLS) plus DINOv2's
    ``num_register_tokens``.
``swin``
    ``SwinTransformer`` / ``SwinTransformerV2`` (torchvision, timm). No prefix;
    channels-last: every 3-axis output except convolutions, pooling and a
    permute back to NCHW (its stages run in ``(N, H, W, C)``).
``convnext``
    ``ConvNeXt`` (torchvision, timm), Hugging Face's ``ConvNextModel`` and ``ConvNextV2Model``. Channels-last: a
    block's Linear,
    LayerNorm (between its two permutes; ``LayerNorm2d`` is channels-first), and an
    activation or Hugging Face GRN after one of them (the layer registered before it: timm's small
    ConvNeXts run the MLP as 1x1 convolutions on ``(C, H, W)``, ``conv_mlp``); a norm that says its
    axis (``data_format``, ``channel_dim``) as it says.

Attention modules are the registry's (:mod:`insilico.attention`), whatever the family.

How to add a model family
-------------------------
1. Survey the model (``print(insilico.Probe(model).survey(x).table())``) and
   look for what the generic rules get wrong: a 3-axis output that is
   ``(H, W, C)``, a token sequence with registers, an attention module.
2. Write a :class:`Family` with the class names that identify it and only
   the answers that differ, and :func:`register` it (in this module for a
   family insilico ships, or in your own code for a private one).
3. Add a small model of the family to ``FAMILY_MODELS`` in
   ``tests/layers/test_layers.py`` with the layouts of a few of its layers: the test
   iterates :data:`FAMILIES` and fails for a family without a model.

Example
-------
>>> import torchvision
>>> vit = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=2,
...                                            hidden_dim=16, mlp_dim=32)
>>> family_of(vit).name, family_of(vit).prefix(), family_of(nn.Conv2d(1, 1, 1)).name
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
from ..layout import set_reader
from ..units import Unit, UnitLike
from .layout import after_last_axis, attention_layout, last_axis_features, layout_of, map_like, registered_before
from .modules import _named, is_activation


@dataclasses.dataclass(frozen=True, eq=False)
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
        ``(module, root) -> bool``: True when a 3-axis output of the module is ``(H, W, C)``
        (``module`` None: an op's output in the family's forward; ``root`` the family's network,
        None when unknown, for rules that look at a module's neighbours); None: the generic
        rule, Linear and LayerNorm outputs.
    attention : mapping
        Attention class name -> layout of its parts (``"heads"``, ``"windows"``, ``"refused"``) for classes
        the registry :data:`insilico.attention.KNOWN` does not know (it is asked first).
    """

    name: str
    classes: tuple[str, ...] = ()
    prefix_tokens: Callable[[nn.Module], int] | None = None
    channels_last: Callable[[nn.Module | None, nn.Module | None], bool] | None = None
    attention: Mapping[str, str] = dataclasses.field(default_factory=dict)
    root: nn.Module | None = dataclasses.field(default=None, compare=False, repr=False)

    def prefix(self) -> int | None:
        """Tokens before the patch grid in this model (None: the family does not say)."""
        if self.prefix_tokens is None or self.root is None:
            return None
        return int(self.prefix_tokens(self.root))


def _vit_prefix(root: nn.Module) -> int:
    if hasattr(root, "num_prefix_tokens"):
        return int(root.num_prefix_tokens)               # timm: CLS, registers, distillation token
    embeddings = getattr(root, "embeddings", None)
    if hasattr(root, "config") and isinstance(embeddings, nn.Module):  # Hugging Face: what its embeddings prepend
        tokens = [getattr(embeddings, k, None) for k in ("cls_token", "distillation_token", "register_tokens")]
        return sum(t.shape[1] if t.ndim == 3 else 1 for t in tokens if isinstance(t, torch.Tensor))
    return 1 + int(getattr(root, "num_register_tokens", 0))  # torchvision: CLS; DINOv2: CLS + registers


def _swin_channels_last(module: nn.Module | None, root: nn.Module | None = None) -> bool:
    return module is None or not map_like(module)   # its stages, their ops too, run in (N, H, W, C)


def _convnext_channels_last(module: nn.Module | None, root: nn.Module | None = None) -> bool:
    """Linear and LayerNorm; an activation or Hugging Face GRN as the layer registered before it (torchvision's
    block and timm's Linear MLP: a Linear; timm's conv MLP, ``conv_mlp``: a 1x1 convolution, channels-first)."""
    if module is None:
        return False
    if last_axis_features(module):
        return True
    if _named(module, ("ConvNextV2GRN",)):  # acts on what the activation before it gave
        before = registered_before(root, module)
        return before is None or _convnext_channels_last(before, root)
    return is_activation(module) and after_last_axis(module, root) is not False  # first in its parent: channels-last


GENERIC = Family("generic")
#: The registered families by name, in the order they are tried (the extension point: :func:`register`).
FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Add (or replace) a family; :func:`family_of` tries families in registration order."""
    if not isinstance(family, Family) or not family.classes:
        raise InsilicoError("register a Family with at least one class name that identifies it")
    FAMILIES[family.name] = family
    return family


register(Family("vit", ("VisionTransformer", "Eva", "VisionTransformerDistilled", "DinoVisionTransformer",
                        "Dinov2WithRegistersModel", "DeiTModel"), prefix_tokens=_vit_prefix))
register(Family("swin", ("SwinTransformer", "SwinTransformerV2"), prefix_tokens=lambda root: 0,
                channels_last=_swin_channels_last))
register(Family("convnext", ("ConvNeXt", "ConvNextModel", "ConvNextV2Model"), channels_last=_convnext_channels_last))


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


def family_at(model: nn.Module, unit: UnitLike) -> Family:
    """The family of the network ``unit`` lives in: the nearest module on its path (itself, then its parents up
    to ``model``) whose class identifies a family; :data:`GENERIC` when none does.

    So in a group of two networks (:class:`~insilico.models.group.ModelGroup` of a Swin and a ResNet) a
    ResNet layer is read by the generic rules, not the Swin's; a wrapper around one network finds it.

    >>> import torchvision
    >>> group = nn.ModuleDict({"a": torchvision.models.swin_t(), "b": torchvision.models.resnet18()})
    >>> family_at(group, "a.features.1").name, family_at(group, "b.layer1").name, family_of(group).name
    ('swin', 'generic', 'swin')
    """
    unit = Unit.coerce(unit, model)
    parts = unit.owner.split(".") if unit.owner else []  # an op unit lives in its owner module
    for n in range(len(parts), -1, -1):
        module = model.get_submodule(".".join(parts[:n]))
        names = {cls.__name__ for cls in type(module).__mro__}
        for family in FAMILIES.values():
            if names.intersection(family.classes):
                return dataclasses.replace(family, root=module)
    return dataclasses.replace(GENERIC, root=model)


def unit_layout(model: nn.Module, unit: UnitLike, shape: tuple, family: Family | None = None) -> str:
    """The layout of a unit's whole output ``shape`` (one sample) in ``model``: its module, part and the family
    (default: the family of the network it lives in, :func:`family_at`).

    ``unit`` is an address or a :class:`~insilico.units.Unit`; an op unit is read by the family's rule alone
    (:func:`~insilico.layers.layout.layout_of`).
    """
    unit = Unit.coerce(unit, model)
    module = unit.resolve(model) if unit.op is None else None
    return layout_of(tuple(shape), module, family or family_at(model, unit), unit.part)


def read_layout(model: nn.Module, unit: UnitLike, shape: tuple) -> tuple[str, int | None]:
    """``(layout, prefix tokens)`` of ``unit``'s output ``shape`` (one sample): the reader probing asks
    (:func:`insilico.layout.read_layout`, registered when this module is imported).

    >>> import torchvision
    >>> swin = torchvision.models.swin_t()
    >>> read_layout(swin, "features.1", (8, 8, 96)), read_layout(swin, "features.0.0", (96, 8, 8))
    (('channels_last', 0), ('map', 0))
    """
    family = family_at(model, unit)
    return unit_layout(model, unit, shape, family), family.prefix()


set_reader(read_layout)


def attention_modules(model: nn.Module, family: Family | None = None) -> dict[str, str]:
    """Addresses of the model's known attention modules and the layout of their parts.

    ``"heads"``: ``:heads`` is ``(N, heads, L, head_dim)``, ``:weights`` ``(N, heads, L, S)``;
    ``"windows"``: ``(N, heads, windows, T, .)``; ``"refused"``: the module's attention is not delivered
    as parts (asking for them says why). Known means in the registry :data:`insilico.attention.KNOWN`
    or the family's ``attention``; another module may still have parts, found (or refused) when it runs.
    """
    family = family or family_of(model)
    out = {}
    for name, module in model.named_modules():
        layout = attention_layout(module, family)
        if layout is not None and name:
            out[name] = layout
    return out


__all__ = ["Family", "FAMILIES", "GENERIC", "register", "family_of", "family_at", "unit_layout", "read_layout",
           "attention_modules"]
