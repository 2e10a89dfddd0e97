"""Attention heads as units: per-head context vectors and attention probabilities, right or refused.

An attention module has two parts, addressed like outputs (:mod:`insilico.units`):

- ``"attn:heads"``: the per-head context vectors before the output
  projection, ``(N, heads, L, head_dim)``; ``"attn:heads[5]"`` is head 5.
  Concatenated over heads (``heads.permute(0, 2, 1, 3).reshape(N, L, E)``)
  they are the tensor the output projection is applied to.
- ``"attn:weights"``: the attention probabilities ``(N, heads, L, S)``
  (each row sums to 1 over the S keys, before dropout).

Modules that fold windows into the batch axis (Swin) deliver them unfolded, one
row per stimulus: ``(N, heads, windows, T, head_dim)`` and ``(N, heads,
windows, T, T)`` (their ``(N * windows, heads, T, .)`` tensors, image-major as
Swin's window partition orders them, reshaped to ``(N, windows, heads, ...)``
and the two axes swapped; an edit is folded back the same way), so
``"attn:heads[1]"`` is head 1 in every window and ``"attn:weights[1, 3]"`` head 1
of window 3.

Which modules (:data:`KNOWN`, the registry; :func:`known` looks a module up by its class
or a parent class whose ``forward`` it keeps):

- ``heads``, from the fused call written out: torch ``nn.MultiheadAttention``
  (open_clip's towers and torchvision's ViT use it);
- ``heads``, from ``F.scaled_dot_product_attention`` (timm's fused path, Hugging
  Face's ``sdpa``) or from ``softmax(q @ k.T) @ v`` written out: timm ``Attention``
  (ViT, DeiT, ...), ``AttentionRope``, ``EvaAttention``, BEiT ``Attention``, CaiT and XCiT
  ``ClassAttn``, VOLO ``ClassAttention``, CrossViT ``CrossAttention`` (the class token's queries,
  L = 1), LeViT ``AttentionDownsample`` (a subsampled grid's queries), Twins
  ``GlobalSubSampleAttn``, MaxViT/CoAtNet ``Attention2d`` (``v @ attn.transpose(-2, -1)``);
  Hugging Face ``ViTAttention``, ``DeiTAttention``, ``Dinov2Attention``,
  ``CLIPAttention``, ``SiglipAttention``; open_clip ``Attention``;
- ``windows`` (the same, windows unfolded): torchvision ``ShiftedWindowAttention``
  and ``ShiftedWindowAttentionV2``, timm Swin v1/v2 and DaViT ``WindowAttention``, Swin v2 CR
  ``WindowMultiHeadAttention``;
- refused, with the reason: channel attention ``(N, heads, hd, hd)`` (XCiT
  ``XCA``, EdgeNeXt ``CrossCovarianceAttn``, DaViT ``ChannelAttention(V2)``),
  CoaT's factorized attention (``k.softmax(dim=2)``: no ``(L, S)`` matrix), heads
  folded into the batch axis (``BottleneckAttn``, ``HaloAttn``), windows or blocks
  on axes of their own (Twins ``LocallyGroupedAttn``, NesT ``Attention``, Hiera
  ``MaskUnitAttention``, VOLO ``OutlookAttention``).

Any other module outside torch.nn may have parts too, found when it runs by
strict checks (:class:`Finder`): ``:weights`` is a softmax over the last axis
of a 4-d tensor that a ``matmul``/``bmm`` then uses, that very tensor (through
dropout, a dtype cast or ``.transpose(-2, -1)``: ``attn @ v`` and
``v @ attn.transpose(-2, -1)`` are both read), or a call of
``F.scaled_dot_product_attention`` with a 4-d query; its first axis is the
model's batch, its second axis has the module's ``num_heads`` entries and
``heads * head_dim`` is the width of one of the module's projections (Linear,
1x1 conv or 2-d weight); for a module the registry does not know, its rows are the tokens
of the module's input (a channel attention ``(N, heads, hd, hd)`` is not). One attention per call. A module whose
attention fails a check (heads computed one at a time in a loop, heads or windows
folded into the batch axis, a gate or channel softmax, 5-d parts, a second attention
in the same call) is refused with a :class:`~insilico.errors.UnitError` that says
which check failed and names the module's ops to address instead
(``"PATH/softmax"``, ``"PATH/matmul#1"``; ``probe.names(x, ops=True)`` lists them).
Checks on shapes cannot tell a channel attention from token attention when the
tokens equal the head width; the registry names the known ones.

How: the op watch (:mod:`insilico.ops`) hands a :class:`Finder` every torch call of
the module's own forward (and the outputs of its nn.Softmax / dropout children).
``F.multi_head_attention_forward`` and ``F.scaled_dot_product_attention`` run
as :func:`multi_head_attention` / :func:`attend`, the same math written out
so the parts exist as tensors; for attention written out, ``:weights`` is
given (and edited) where the matmul uses it and ``:heads`` is the matmul's
result. The fused fast paths (``torch._native_multi_head_attention``,
``nn.TransformerEncoderLayer``'s) are switched off while parts are watched
and switched back after, so they cannot bypass the probe.

One probe at a time should watch the parts of one attention module (a second
probe's op watch would see the written-out math, not the fused call).

Written by hand because the fused kernels never materialise the parts; the
math follows ``torch.nn.functional.multi_head_attention_forward``.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InsilicoError, UnitError

#: Names of the functions whose parts are exposed (names, not objects: tracers such as torchlens
#: replace torch's functions with wrappers of the same name).
FUNCTIONS = frozenset({"multi_head_attention_forward", "scaled_dot_product_attention"})
_MHA_SIGNATURE = inspect.signature(F.multi_head_attention_forward)
_SDPA_NAMES = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")

Emit = Callable[[str, torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------------------------
# The registry of known attention modules
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Known:
    """One known attention class: the layout of its parts (``"heads"``, ``"windows"``, ``"refused"``) and how
    they are produced (for ``"refused"``: why they are not)."""

    layout: str
    how: str


_CHANNELS = ("channel attention: its softmax is over the head's channels (N, heads, head_dim, head_dim), "
             "not over tokens, so there is no token-by-token (L, S) matrix")
_FOLDED = "it folds its heads into the batch axis (N * heads, ...), so no axis of its parts is the head axis"
_BLOCKS = "its parts have windows or blocks on axes of their own beside the heads (5-d or 6-d), not (N, heads, L, S)"
_WRITTEN = "F.scaled_dot_product_attention (fused) or softmax(q @ k.T) @ v written out"
_SWIN = _WRITTEN + "; windows unfolded from the batch axis"
#: Known attention classes by ``"module.QualName"`` (the extension point: :func:`register`).
KNOWN: dict[str, Known] = {}


@functools.lru_cache(maxsize=None)
def _known(cls: type) -> Known | None:
    for base in cls.__mro__:
        entry = KNOWN.get(f"{base.__module__}.{base.__qualname__}")
        if entry is not None and (base is cls or getattr(cls, "forward", None) is getattr(base, "forward", None)):
            return entry
    return None


def register(path: str, layout: str, how: str) -> Known:
    """Add (or replace) a known attention class, named ``"package.module.ClassName"``.

    ``layout``: ``"heads"`` (parts ``(N, heads, L, .)``), ``"windows"`` (windows folded into the batch
    axis, delivered unfolded) or ``"refused"`` (``how`` says why; asking for its parts raises it).
    """
    if layout not in ("heads", "windows", "refused") or "." not in path:
        raise InsilicoError(f"register an attention class as 'package.module.Class' with the layout 'heads', "
                            f"'windows' or 'refused', not {path!r} / {layout!r}")
    KNOWN[path] = Known(layout, how)
    _known.cache_clear()
    return KNOWN[path]


for _path, _layout, _how in [
    ("torch.nn.modules.activation.MultiheadAttention", "heads", "F.multi_head_attention_forward, written out"),
    ("timm.layers.attention.Attention", "heads", _WRITTEN),
    ("timm.layers.attention.AttentionRope", "heads", _WRITTEN),
    ("timm.models.eva.EvaAttention", "heads", _WRITTEN),
    ("timm.models.beit.Attention", "heads", _WRITTEN),
    ("timm.models.twins.GlobalSubSampleAttn", "heads", _WRITTEN),
    ("timm.models.cait.ClassAttn", "heads", _WRITTEN + " (queries: the class token, L = 1)"),
    ("timm.models.xcit.ClassAttn", "heads", _WRITTEN + " (queries: the class token, L = 1)"),
    ("timm.models.volo.ClassAttention", "heads", _WRITTEN + " (queries: the class token, L = 1)"),
    ("timm.models.crossvit.CrossAttention", "heads", _WRITTEN + " (queries: the class token, L = 1)"),
    ("timm.models.levit.AttentionDownsample", "heads", _WRITTEN + " (queries: a subsampled grid)"),
    ("timm.models.maxxvit.Attention2d", "heads", _WRITTEN.replace("softmax(q @ k.T) @ v",
                                                                  "v @ softmax(q.T @ k).transpose(-2, -1)")),
    ("timm.models.swin_transformer.WindowAttention", "windows", _SWIN),
    ("timm.models.swin_transformer_v2.WindowAttention", "windows", _SWIN),
    ("timm.models.davit.WindowAttention", "windows", _SWIN),
    ("timm.models.swin_transformer_v2_cr.WindowMultiHeadAttention", "windows", _SWIN),
    ("torchvision.models.swin_transformer.ShiftedWindowAttention", "windows", _SWIN),
    ("torchvision.models.swin_transformer.ShiftedWindowAttentionV2", "windows", _SWIN),
    ("transformers.models.vit.modeling_vit.ViTAttention", "heads", "its attention function (SDPA or eager)"),
    ("transformers.models.deit.modeling_deit.DeiTAttention", "heads", "its attention function (SDPA or eager)"),
    ("transformers.models.dinov2.modeling_dinov2.Dinov2Attention", "heads", "its attention function (SDPA or eager)"),
    ("transformers.models.clip.modeling_clip.CLIPAttention", "heads", "its attention function (SDPA or eager)"),
    ("transformers.models.siglip.modeling_siglip.SiglipAttention", "heads", "its attention function (SDPA or eager)"),
    ("open_clip.transformer.Attention", "heads", _WRITTEN),
    ("timm.models.xcit.XCA", "refused", _CHANNELS),
    ("timm.models.edgenext.CrossCovarianceAttn", "refused", _CHANNELS),
    ("timm.models.davit.ChannelAttention", "refused", _CHANNELS),
    ("timm.models.davit.ChannelAttentionV2", "refused", _CHANNELS),
    ("timm.models.coat.FactorAttnConvRelPosEnc", "refused",
     "factorized attention: it takes k.softmax(dim=2) over tokens and multiplies k.T @ v, so there is no "
     "(L, S) attention matrix"),
    ("timm.layers.bottleneck_attn.BottleneckAttn", "refused", _FOLDED),
    ("timm.layers.halo_attn.HaloAttn", "refused", _FOLDED),
    ("timm.models.twins.LocallyGroupedAttn", "refused", _BLOCKS),
    ("timm.models.nest.Attention", "refused", _BLOCKS),
    ("timm.models.hiera.MaskUnitAttention", "refused", _BLOCKS),
    ("timm.models.volo.OutlookAttention", "refused",
     "outlook attention: local (k*k, k*k) weights per position (N, heads, H*W, k*k, k*k), no (L, S) matrix"),
]:
    register(_path, _layout, _how)


def known(module: nn.Module) -> Known | None:
    """The registry's entry for ``module``: its class's, or a parent class's when it keeps that ``forward``.

    >>> known(nn.MultiheadAttention(4, 2)).layout, known(nn.Linear(2, 2))
    ('heads', None)
    """
    return _known(type(module))



def check_parts(unit, module: nn.Module) -> None:
    """Refuse the parts ``:heads``/``:weights`` of a module that cannot have them, at once, with the reason.

    Raises
    ------
    UnitError
        ``module`` is a torch.nn layer other than nn.MultiheadAttention, or a known attention class whose
        parts are refused (channel attention, heads folded into the batch, 5-d parts...).
    """
    entry = known(module)
    name = type(module).__name__
    if entry is not None and entry.layout == "refused":
        raise UnitError(f"{unit}: the attention of {unit.owner!r} ({name}) is not delivered as parts: {entry.how}. "
                        f"{_instead(unit.owner)}")
    if entry is None and type(module).__module__.startswith("torch.nn."):
        raise UnitError(f"{unit}: {unit.owner!r} is a {name}; the parts ':heads' and ':weights' belong to "
                        "nn.MultiheadAttention modules and modules whose forward computes attention "
                        "(F.scaled_dot_product_attention, or softmax(q @ k.T) @ v)")


def _instead(path: str, ops: list[str] | None = None) -> str:
    listed = ", ".join(repr(op) for op in ops[:4]) if ops else f"'{path}/softmax', '{path}/matmul#1'"
    return (f"Address its ops instead ({listed}; probe.names(x, ops=True) lists every op of its forward), "
            "or the parts of a child module that computes the attention")


def unidentified(path: str, module: nn.Module, reason: str, ops: list[str]) -> UnitError:
    """The error for a module whose attention parts were asked for but not identified in its forward."""
    return UnitError(f"{path!r} ({type(module).__name__}) ran, but its attention could not be identified, so it "
                     f"has no ':heads'/':weights': {reason}. {_instead(path, ops)}")


# ---------------------------------------------------------------------------------------
# Finding the attention of one call of a module
# ---------------------------------------------------------------------------------------
_PASS = frozenset({"dropout", "to", "type_as", "float", "half", "bfloat16", "double", "contiguous", "clone"})
_SWAPS = frozenset({"transpose", "swapaxes", "swapdims", "permute"})
_HEAD_COUNTS = ("num_heads", "num_attention_heads", "n_heads", "n_head", "nhead", "heads")


@dataclasses.dataclass
class _Flow:
    """A tensor that carries a softmax's output: itself, through dropout or a cast, or transposed."""

    tensor: torch.Tensor
    softmax: torch.Tensor  # the softmax's output: the part ':weights'
    transposed: bool       # tensor is softmax.transpose(-2, -1)
    exact: bool            # its values are the softmax's (not a dropout of them)


class Finder:
    """Finds the attention of one call of one module and exposes its parts through ``emit``.

    The op watch (:mod:`insilico.ops`) makes one per call of a module whose parts are watched, hands it
    every torch call of the module's own forward (:meth:`call`) and the outputs of its children
    (:meth:`child`), and asks :meth:`missing` when the call ends. ``emit(part, tensor)`` records and edits
    a part; ``strict`` (parts asked for, not only surveyed) makes a second attention in one call an error.
    The checks are listed in this module's docstring.
    """

    def __init__(self, path: str, module: nn.Module, args: tuple, batch: int | None, emit: Emit, strict: bool):
        self.path, self.module, self.batch, self.emit, self.strict = path, module, batch, emit, strict
        entry = known(module)
        self.layout = None if entry is None else entry.layout
        self.refused = entry.how if entry is not None and entry.layout == "refused" else None
        self.tokens = _tokens(args, batch)
        self.flows: list[_Flow] = []
        self.found = 0
        self.groups: int | None = None  # windows per stimulus, unfolded from the batch axis
        self.reason: str | None = None  # the first check that failed
        self.note: str | None = None    # a softmax that is not over the last axis

    # -- what the module's forward does ------------------------------------------------------
    def call(self, name: str, func, args: tuple, kwargs: dict, inplace: bool = False) -> Any:
        """Run one torch call of the module's own forward; returns its (possibly edited) result."""
        if self.refused is not None:
            return func(*args, **kwargs)
        if name in FUNCTIONS:
            return self._function(name, func, args, kwargs)
        if name in ("matmul", "bmm") and len(args) >= 2 and self.flows:
            done = self._matmul(func, args, kwargs)
            if done is not None:
                return done
        result = func(*args, **kwargs)
        if name == "softmax" and torch.is_tensor(result):
            self._softmax(result, kwargs.get("dim", args[1] if len(args) > 1 else None))
        elif self.flows and args and torch.is_tensor(args[0]) and torch.is_tensor(result):
            self._follow(name, args, kwargs, result, inplace)
        return result

    def child(self, module: nn.Module, args: tuple, output: Any) -> None:
        """A child module ran inside the forward: an ``nn.Softmax`` is the module's softmax; dropout and
        ``nn.Identity`` pass a softmax's output on."""
        if self.refused is not None or not torch.is_tensor(output):
            return
        if isinstance(module, nn.Softmax):
            self._softmax(output, module.dim)
        elif isinstance(module, (nn.Dropout, nn.Identity)) and args and torch.is_tensor(args[0]):
            flow = self._flow_of(args[0])
            if flow is not None:
                self.flows.append(_Flow(output, flow.softmax, flow.transposed, flow.exact and output is args[0]))

    def missing(self) -> str | None:
        """Why no attention was identified in this call (None when it was)."""
        if self.found:
            return None
        if self.refused is not None:
            return self.refused
        if self.reason is not None:
            return self.reason
        if self.flows:
            return ("its softmax over the last axis never reached a matmul as attn @ v or v @ attn.transpose(-2, -1) "
                    "(through dropout or a dtype cast only)" + (f"; {self.note}" if self.note else ""))
        if self.note is not None:
            return f"no softmax over the last axis ran in its own forward ({self.note})"
        return ("no softmax over the last axis, F.scaled_dot_product_attention or nn.MultiheadAttention call ran in "
                "its own forward (if a child module computes the attention, ask for that child's parts)")

    # -- the pieces ---------------------------------------------------------------------------------
    def _softmax(self, result: torch.Tensor, dim) -> None:
        if dim is None or dim not in (-1, result.ndim - 1):
            self.note = self.note or (f"a softmax over axis {dim} of a {result.ndim}-d tensor ran: a gate or "
                                      "channel softmax, not attention over keys")
            return
        self.flows.append(_Flow(result, result, False, True))

    def _follow(self, name: str, args: tuple, kwargs: dict, result: torch.Tensor, inplace: bool) -> None:
        flow = self._flow_of(args[0])
        if flow is None:
            return
        if inplace and name not in ("dropout",):
            self.flows.remove(flow)
            self.reason = self.reason or f"its softmax output is changed in place ({name}_) before it is used"
        elif name in _PASS and result.shape == args[0].shape:
            exact = flow.exact and (result is args[0] or name != "dropout")
            self.flows.append(_Flow(result, flow.softmax, flow.transposed, exact))
        elif name in _SWAPS and _swaps_last(name, args, kwargs, result.ndim):
            self.flows.append(_Flow(result, flow.softmax, not flow.transposed, flow.exact))

    def _flow_of(self, tensor) -> _Flow | None:
        for flow in reversed(self.flows):
            if flow.tensor is tensor:
                return flow
        return None

    def _matmul(self, func, args: tuple, kwargs: dict) -> torch.Tensor | None:
        """``attn @ v`` or ``v @ attn.transpose(-2, -1)`` with a softmax's output: the parts (None: not one)."""
        a, b = args[0], args[1]
        left = self._flow_of(a) if torch.is_tensor(a) else None
        right = self._flow_of(b) if torch.is_tensor(b) else None
        flow = left if left is not None and not left.transposed else None
        if flow is None and right is not None and right.transposed:
            flow = right
        if flow is None:
            if left is not None or right is not None:
                self.reason = self.reason or ("its softmax output is multiplied the wrong way round for attention "
                                              "(attn.transpose(-2, -1) @ v, or v @ attn)")
            return None
        on_left = flow is left
        value = b if on_left else a
        if not self._accept(flow.softmax.shape, value.shape[-1] if on_left else value.shape[-2]):
            return None
        weights = self._emit("weights", flow.softmax)
        if weights is not flow.softmax:
            if not flow.exact:
                raise UnitError(f"{self.path!r}: an edit of ':weights' cannot act through its attention dropout, "
                                "which is active in training mode; call model.eval() first")
            weights = weights.to(flow.tensor.dtype)
            args = (weights, b, *args[2:]) if on_left else (a, weights.transpose(-2, -1), *args[2:])
        result = func(*args, **kwargs)
        if on_left:
            return self._emit("heads", result)
        return self._emit("heads", result.transpose(-2, -1)).transpose(-2, -1)

    def _function(self, name: str, func, args: tuple, kwargs: dict) -> Any:
        if name == "multi_head_attention_forward":  # torch's own layout, whatever the model's batch
            return run(func, args, kwargs, self._emit) if self._claim() else func(*args, **kwargs)
        named = dict(zip(_SDPA_NAMES, args))
        named.update(kwargs)
        query, key, value = named.get("query"), named.get("key"), named.get("value")
        if not all(torch.is_tensor(t) and t.ndim >= 2 for t in (query, key, value)):
            return func(*args, **kwargs)
        if not self._accept((*query.shape[:-1], key.shape[-2]), value.shape[-1]):
            return func(*args, **kwargs)
        return attend(emit=self._emit, **named)

    def _accept(self, shape: tuple, head_dim: int) -> bool:
        reason = self._check(tuple(shape), head_dim)
        if reason is not None:
            self.reason = self.reason or reason
            return False
        return self._claim()

    def _claim(self) -> bool:
        if self.found:
            if self.strict:
                raise UnitError(f"{self.path!r} ({type(self.module).__name__}) computes attention more than once per "
                                f"call, so ':heads'/':weights' would not name one of them. {_instead(self.path)}")
            return False
        self.found = 1
        return True

    def _check(self, shape: tuple, head_dim: int) -> str | None:
        """Why a candidate attention of this shape ``(N, heads, L, S)`` is not the module's (None: it is)."""
        if len(shape) != 4:
            where = ("its heads have no axis of their own (computed one at a time, or folded into the batch axis)"
                     if len(shape) < 4 else "windows or blocks sit on axes of their own beside the heads")
            return f"its attention probabilities are {len(shape)}-d {shape}, not (N, heads, L, S): {where}"
        first, heads, rows = shape[:3]
        if self.batch is None:
            return "the model's batch size is unknown (its forward was given no tensor)"
        groups = None
        if self.layout == "windows" and first % self.batch == 0:
            groups = first // self.batch
        elif first != self.batch:
            return (f"its attention has {first} entries on the batch axis for a batch of {self.batch} stimuli: it "
                    "folds windows, heads or frames into the batch axis")
        count = _head_count(self.module)
        if count is not None and count != heads:
            return f"the axis after the batch has {heads} entries, but the module has {count} heads"
        widths = _widths(self.module)
        if widths and heads * head_dim not in widths:
            return (f"heads x head_dim = {heads} x {head_dim} is the width of none of the module's projections "
                    f"({sorted(widths)}): the axis after the batch is not the one its projection splits into heads")
        if self.layout is None and self.tokens and rows not in self.tokens:  # known modules: the registry says
            return (f"its attention has {rows} query rows but the module's input has {sorted(self.tokens)} tokens: a "
                    "channel attention (N, heads, head_dim, head_dim), or queries that are not its input's tokens")
        self.groups = groups
        return None

    def _emit(self, part: str, value: torch.Tensor) -> torch.Tensor:
        """Expose a part; windows folded into the batch axis are unfolded to (N, heads, windows, ...) and back."""
        if self.groups is None or value.ndim != 4:
            return self.emit(part, value)
        n = value.shape[0] // self.groups
        shown = value.reshape(n, self.groups, *value.shape[1:]).transpose(1, 2)
        return self.emit(part, shown).transpose(1, 2).reshape(value.shape)


def _swaps_last(name: str, args: tuple, kwargs: dict, ndim: int) -> bool:
    """Whether a transpose/permute call swaps exactly the last two axes."""
    if name == "permute":
        dims = args[1] if len(args) == 2 and isinstance(args[1], (tuple, list)) else args[1:] or kwargs.get("dims", ())
        return [d % ndim for d in dims] == [*range(ndim - 2), ndim - 1, ndim - 2]
    dims = (*args[1:3], *(kwargs[k] for k in ("dim0", "dim1", "axis0", "axis1") if k in kwargs))
    return len(dims) == 2 and all(isinstance(d, int) for d in dims) and {d % ndim for d in dims} == {ndim - 2, ndim - 1}


def _tokens(args: tuple, batch: int | None) -> set:
    """Token counts the module's first input can have: (N, L, C) -> L, (N, C, H, W) / (N, H, W, C) -> H*W,
    (N, heads, L, head_dim) -> L (a module given queries)."""
    x = next((a for a in args if torch.is_tensor(a)), None)
    if x is None:
        return set()
    if x.ndim == 3:
        return {x.shape[1]} if x.shape[0] == batch else {x.shape[0], x.shape[1]}
    if x.ndim == 4:
        return {x.shape[1] * x.shape[2], x.shape[2] * x.shape[3], x.shape[2]}
    return set()


def _head_count(module: nn.Module) -> int | None:
    for name in _HEAD_COUNTS:
        value = getattr(module, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _widths(module: nn.Module) -> set:
    """The widths of the module's projections (Linear, conv, 2-d weights), with the thirds/halves of fused qkv/kv."""
    dims = []
    for child in module.modules():
        if isinstance(child, nn.Linear):
            dims += [child.in_features, child.out_features]
        elif isinstance(child, nn.modules.conv._ConvNd):
            dims += [child.in_channels, child.out_channels]
    dims += [d for p in module.parameters(recurse=False) if p.ndim == 2 for d in p.shape]
    return {w for d in dims for w in (d, d // 2 if d % 2 == 0 else d, d // 3 if d % 3 == 0 else d)}


def run(func, args: tuple, kwargs: dict, emit: Emit) -> Any:
    """Run an attention function with its parts exposed: ``emit(part, tensor)`` may replace each part."""
    if getattr(func, "__name__", None) == "multi_head_attention_forward":
        return multi_head_attention(*args, emit=emit, **kwargs)
    named = dict(zip(_SDPA_NAMES, args))
    named.update(kwargs)
    return attend(emit=emit, **named)


def attend(query, key, value, attn_mask=None, dropout_p: float = 0.0, is_causal: bool = False, scale=None,
           enable_gqa: bool = False, emit: Emit | None = None) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` written out: weights, then context; both go through ``emit``.

    Shapes: query ``(N, heads, L, E)``, key/value ``(N, heads_kv, S, E)``; returns ``(N, heads, L, Ev)``.
    """
    if enable_gqa and key.size(-3) != query.size(-3):
        repeat = query.size(-3) // key.size(-3)
        key, value = key.repeat_interleave(repeat, -3), value.repeat_interleave(repeat, -3)
    length, source = query.size(-2), key.size(-2)
    scale = 1.0 / math.sqrt(query.size(-1)) if scale is None else scale
    scores = (query @ key.transpose(-2, -1)) * scale
    if is_causal:
        allowed = torch.ones(length, source, dtype=torch.bool, device=query.device).tril()
        scores = scores.masked_fill(~allowed, float("-inf"))
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else scores + attn_mask
    weights = torch.softmax(scores, dim=-1)
    if emit is not None:
        weights = emit("weights", weights)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p, training=True)
    context = weights @ value
    if emit is not None:
        context = emit("heads", context)
    return context


def multi_head_attention(*args, emit: Emit | None = None, **kwargs):
    """``F.multi_head_attention_forward`` with its heads exposed (same arguments, same results)."""
    bound = _MHA_SIGNATURE.bind(*args, **kwargs)
    bound.apply_defaults()
    a = bound.arguments
    if a["static_k"] is not None or a["static_v"] is not None:
        raise UnitError("attention parts of nn.MultiheadAttention with static_k/static_v are not supported")
    query, key, value = a["query"], a["key"], a["value"]
    batched = query.dim() == 3
    if not batched:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
    length, batch, embed = query.shape
    heads = a["num_heads"]
    head_dim = embed // heads
    attn_mask, padding = a["attn_mask"], a["key_padding_mask"]
    if padding is not None and not batched:
        padding = padding.unsqueeze(0)

    if not a["use_separate_proj_weight"]:
        w_q, w_k, w_v = a["in_proj_weight"].chunk(3)
    else:
        w_q, w_k, w_v = a["q_proj_weight"], a["k_proj_weight"], a["v_proj_weight"]
    b_q = b_k = b_v = None
    if a["in_proj_bias"] is not None:
        b_q, b_k, b_v = a["in_proj_bias"].chunk(3)
    q, k, v = F.linear(query, w_q, b_q), F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)

    attn_mask = _additive(attn_mask, q.dtype)
    padding = _additive(padding, q.dtype)
    if a["bias_k"] is not None:
        k = torch.cat([k, a["bias_k"].repeat(1, batch, 1)])
        v = torch.cat([v, a["bias_v"].repeat(1, batch, 1)])
        attn_mask = None if attn_mask is None else F.pad(attn_mask, (0, 1))
        padding = None if padding is None else F.pad(padding, (0, 1))
    # (L, N, E) -> (N, heads, L, head_dim)
    q = q.reshape(length, batch, heads, head_dim).permute(1, 2, 0, 3)
    k = k.reshape(k.size(0), batch, heads, head_dim).permute(1, 2, 0, 3)
    v = v.reshape(v.size(0), batch, heads, head_dim).permute(1, 2, 0, 3)
    if a["add_zero_attn"]:
        k = torch.cat([k, k.new_zeros(batch, heads, 1, head_dim)], dim=2)
        v = torch.cat([v, v.new_zeros(batch, heads, 1, head_dim)], dim=2)
        attn_mask = None if attn_mask is None else F.pad(attn_mask, (0, 1))
        padding = None if padding is None else F.pad(padding, (0, 1))
    source = k.size(2)
    mask = None
    if attn_mask is not None:
        mask = attn_mask.view(batch, heads, length, source) if attn_mask.dim() == 3 and attn_mask.size(0) > 1 \
            else attn_mask.reshape(1, 1, length, source)
    if padding is not None:
        padding = padding.view(batch, 1, 1, source)
        mask = padding if mask is None else mask + padding
    if a["is_causal"] and mask is None:
        raise UnitError("nn.MultiheadAttention with is_causal=True needs attn_mask (as torch requires)")
    dropout = a["dropout_p"] if a["training"] else 0.0
    context = attend(q, k, v, mask, dropout, False, None, emit=_keep_weights(emit, store := {}))
    merged = context.permute(2, 0, 1, 3).reshape(length, batch, embed)
    output = F.linear(merged, a["out_proj_weight"], a["out_proj_bias"])
    weights = None
    if a["need_weights"]:
        weights = store["weights"]
        if a["average_attn_weights"]:
            weights = weights.mean(dim=1)
    if not batched:
        output = output.squeeze(1)
        weights = None if weights is None else weights.squeeze(0)
    return output, weights


def _keep_weights(emit: Emit | None, store: dict) -> Emit:
    def keep(part, value):
        value = emit(part, value) if emit is not None else value
        store[part] = value
        return value

    return keep


def _additive(mask, dtype):
    if mask is None or mask.dtype != torch.bool:
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))


__all__ = ["FUNCTIONS", "KNOWN", "Known", "Finder", "register", "known", "check_parts", "unidentified", "attend",
           "multi_head_attention", "run"]
