"""The layout of a unit's output, and the centre rule: which value of a map or a sequence is "the" unit.

One sample's output (no batch axis) has one of these layouts
(:func:`layout_of` tells which, from its shape, the module that gives it and
the model's family, :mod:`insilico.layers.families`):

=============== ================ ========================================================================
layout          shape            centre (:func:`centre`): the value the experiments read
=============== ================ ========================================================================
"map"           (C, H, W, ...)   every position axis at its middle ``(H // 2, W // 2, ...)``; also
                (C, L)           the 1-d maps of :data:`~insilico.layers.modules.MAPS_1D` (Conv1d, ...)
"channels_last" (H, W, C)        ``(H // 2, W // 2)``: Swin's stages, a ConvNeXt block's inner layers,
                                 any Linear / LayerNorm / permute-to-NHWC with a 3-axis output
"tokens"        (T, D)           the patch token at the image centre (:func:`centre_token`), after the
                                 family's prefix tokens (the CLS token, registers)
"heads"         (heads, L, E)    an attention part (``"attn:heads"``, ``"attn:weights"``): the centre
                                 query token on axis 1 (:mod:`insilico.attention`)
"vector"        (D,)             as written (a linear layer, logits)
"scalar"        ()               as written
=============== ================ ========================================================================

What each layout means (its channel and position axes, the centre rule,
pooling over positions) is the plain rule of :mod:`insilico.layout`, one row
down, which probing reads too; this module adds which layout a unit *has*
(:func:`layout_of`: the module and the family decide) and :func:`at_centre`.

The choice for tokens: the centre *patch*, not the CLS token. The CLS token
sees every patch (its receptive field is the whole image), so tuning curves
and receptive fields of a "token layer" would mix every position; the centre
patch is the position a conv map's centre neuron takes (``vit.conv_proj`` and
the blocks after it are read at the same patch). Name the CLS token yourself
(``"encoder.ln[0]"``) when you mean it.

Example
-------
>>> from torch import nn
>>> layout_of((64, 56, 56)), layout_of((197, 768)), layout_of((7, 7, 96), nn.LayerNorm(96)), layout_of((10,))
('map', 'tokens', 'channels_last', 'vector')
>>> centre((64, 56, 56), "map"), centre((197, 768), "tokens"), centre((7, 7, 96), "channels_last")
({1: 28, 2: 28}, {0: 106}, {0: 3, 1: 3})
>>> str(at_centre(Unit.parse("layer1[3]"), (64, 56, 56))), str(at_centre(Unit.parse("blk[:, 0:8]"), (197, 768)))
('layer1[3,28,28]', 'blk[106,0:8]')
"""
from __future__ import annotations

from torch import nn

from .. import attention
from ..errors import UnitError
from ..layout import LAYOUTS, centre, centre_token, channels_first, patch_grid
from ..units import Unit, check_index
from .modules import CONV, CONV_LINEAR_NAMES, MAPS_1D, SPATIAL, _named, is_activation


def layout_of(shape: tuple, module: nn.Module | None = None, family=None, part: str | None = None) -> str:
    """The layout of one sample's output ``shape`` (a name of :data:`LAYOUTS`).

    Parameters
    ----------
    shape : tuple of int
        One sample's output shape (no batch axis).
    module : nn.Module, optional
        The module that gives it (tells 1-d maps from tokens, channels-last from maps);
        None for an op's output (the family's rule alone decides).
    family : Family, optional
        The model's family (:func:`~insilico.layers.families.family_of`): it knows which of its modules
        give channels-last outputs (Swin).
    part : str, optional
        ``"heads"`` or ``"weights"`` for an attention part (``Unit.part``).

    Without a module, two axes are tokens and three a map.
    """
    n = len(shape)
    if part in ("heads", "weights") and n == 3:
        return "heads"
    if n <= 1:
        return ("scalar", "vector")[n]
    if n == 2:
        return "map" if isinstance(module, MAPS_1D) else "tokens"
    if n == 3 and _channels_last(module, family, shape[-1]):
        return "channels_last"
    return "map"


def _channels_last(module: nn.Module | None, family, width: int) -> bool:
    dims = getattr(module, "dims", None)
    if type(module).__name__ == "Permute" and dims is not None and len(dims) == 4:   # torchvision.ops.Permute
        return list(dims)[-1] == 1
    rule = getattr(family, "channels_last", None)
    root = getattr(family, "root", None)
    if rule is not None:
        # module None: an op in the family's forward (Swin's residual add); root: the family's network
        return bool(rule(module, root))
    return module is not None and (last_axis_features(module) or after_last_axis(module, root, width) is True)


def after_last_axis(module: nn.Module, root: nn.Module | None, width: int | None = None) -> bool | None:
    """For an activation: whether the layer registered before it in its parent (under ``root``) acts on the last
    axis (an MLP's ``fc1`` then ``act``, in (H, W, C)) and, with ``width``, gives ``width`` features (so an
    activation registered after a network's Linear head but applied to its conv maps stays a map); None when it
    has no layer before it (or is no activation)."""
    if not is_activation(module):
        return None
    before = registered_before(root, module)
    if before is None:
        return None
    if is_activation(before):
        return after_last_axis(before, root, width) is True
    features = getattr(before, "out_features", None) or getattr(before, "normalized_shape", (None,))[-1]
    return last_axis_features(before) and (width is None or features is None or features == width)


def registered_before(root: nn.Module | None, module: nn.Module) -> nn.Module | None:
    """The sibling registered just before ``module`` in its parent under ``root`` (None: first, or not found)."""
    for parent in (root.modules() if root is not None else ()):
        children = list(parent.children())
        for k, child in enumerate(children):
            if child is module:
                return children[k - 1] if k else None
    return None


def last_axis_features(module: nn.Module) -> bool:
    """True for modules that act on the last axis of their input (Linear, LayerNorm; not LayerNorm2d), or that
    say so: Hugging Face's ConvNeXt norms (``data_format``), timm's GRN (``channel_dim``)."""
    said = getattr(module, "data_format", None)
    if said in ("channels_first", "channels_last"):
        return said == "channels_last"
    if getattr(module, "channel_dim", None) in (1, -1):
        return module.channel_dim == -1
    if isinstance(module, nn.Linear) or _named(module, CONV_LINEAR_NAMES):
        return True
    return isinstance(module, nn.LayerNorm) and not type(module).__name__.endswith("2d")


def map_like(module: nn.Module) -> bool:
    """True for modules whose outputs are always channels-first maps (convolutions, 2-d pooling)."""
    return isinstance(module, CONV + SPATIAL + (nn.ConvTranspose2d,))


def at_centre(unit: Unit, shape: tuple, module: nn.Module | None = None, family=None) -> Unit:
    """The unit as the experiments read it: every position axis it leaves open at the centre (:func:`centre`).

    The one rule for every experiment (tuning, receptive fields,
    microstimulation...), for one sample's output ``shape`` of ``module``
    (layout by :func:`layout_of`; ``family`` from
    :func:`~insilico.layers.families.family_of`):

    - a map ``(C, H, W, ...)``: the position axes ``H, W, ...`` left open
      (not indexed, or ``:``) are read at ``(H // 2, W // 2, ...)``:
      ``"layer1"`` is every channel at the centre, ``"layer1[3]"`` channel 3
      at the centre, ``"layer1[3,5,5]"`` that neuron;
    - channels-last ``(H, W, C)`` (Swin): ``"features.1"`` is every channel at
      ``(H // 2, W // 2)``; ``"features.1[:, :, 3]"`` channel 3 there;
    - tokens ``(T, D)`` (a transformer block's output): a token axis left open
      is read at the centre patch token (:func:`centre_token`):
      ``"encoder.layers.encoder_layer_3"`` is every feature of the centre
      patch, ``"encoder.layers.encoder_layer_3[:, 0:8]"`` its features 0-7;
      a token index picks that token: ``[0, 0:8]`` is the CLS token of a
      ViT (CLS first), ``[106, 0:8]`` the centre patch of ViT-B/16 at 224 px;
    - an attention part ``(heads, L, E)``: the centre query token;
    - a vector ``(D,)`` (a linear layer) or a scalar: as written.

    An axis given a range (``[3, 2:5, 2:5]``) is kept as written.

    Raises
    ------
    UnitError
        The unit's index does not fit ``shape``; an attention part of a module
        that attends within windows (Swin: ``"windows"`` in :func:`attention_layout`).
    """
    if unit.part is not None and module is not None and attention_layout(module, family) == "windows":
        raise UnitError(f"{unit}: {type(module).__name__} attends within windows; its parts are (N, heads, windows, "
                        f"T, .) (:mod:`insilico.attention`), with no one centre query token; give the index in full "
                        f"with a Probe (e.g. '{unit.module}[0, 3]', head 0 of window 3), or read the module's output "
                        f"{unit.module!r}")
    if len(shape) < 2:
        return unit
    index = list(_expand(unit, shape))
    prefix = family.prefix() if family is not None else None
    for axis, middle in centre(shape, layout_of(shape, module, family, unit.part), prefix).items():
        if index[axis] == slice(None):
            index[axis] = middle
    return Unit(unit.module, unit.step, tuple(index), unit.output)


def attention_layout(module: nn.Module, family=None) -> str | None:
    """The layout of a module's attention parts: ``"heads"``, ``"windows"`` or ``"refused"`` from the
    registry (:data:`insilico.attention.KNOWN`), else the family's own classes (``Family.attention``), else None."""
    entry = attention.known(module)
    if entry is not None:
        return entry.layout
    return None if family is None else family.attention.get(type(module).__name__)


def _expand(unit: Unit, shape: tuple) -> tuple:
    """The unit's index with one item per axis of ``shape`` (``...`` and missing trailing axes as ``:``)."""
    index = list(unit.index or ())
    check_index(tuple(index), shape, unit)
    if Ellipsis in index:
        at = index.index(Ellipsis)
        index[at:at + 1] = [slice(None)] * (len(shape) - len(index) + 1)
    return tuple(index + [slice(None)] * (len(shape) - len(index)))


__all__ = ["LAYOUTS", "layout_of", "last_axis_features", "map_like", "centre_token", "patch_grid", "centre", "channels_first",
           "at_centre"]
