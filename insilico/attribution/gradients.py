"""Gradient maps for any unit: what in the image drives this unit?

``gradient_map(model, images, unit, method=...)`` returns one map per image,
shaped like ``images``, for any :class:`~insilico.units.Unit`: a class logit
(``"[281]"``), a channel (``"features.8[12]"``), one neuron
(``"features.8[12,6,6]"``), a slice, or one call of a recurrent module
(``"blt.conv2@3[12]"``). A unit that selects several values is reduced to one
number per image by ``reduce="sum"`` (default) or ``"mean"``.

Methods
-------
=====================  ==========================================================
``"gradient"``         d unit / d image (Simonyan et al. 2014), signed.
``"gradient_x_input"`` gradient times the image.
``"guided"``           guided backprop (Springenberg et al. 2015): at every ReLU
                       only positive gradient passes, and only where the
                       forward input was positive.
``"deconv"``           Zeiler & Fergus (2014) deconvnet: at every ReLU the
                       backward signal is rectified (``relu(grad)``), whatever
                       the forward input; max-pooling routes the signal through
                       the switches of the forward pass (ordinary autograd).
                       The signal starts at 1, so the map is Zeiler & Fergus's
                       projection divided by the unit's (positive) activation.
``"integrated"``       integrated gradients (Sundararajan et al. 2017) from a
                       black image (``baselines=``), ``n_steps`` points,
                       ``internal_batch_size`` rows per forward pass (default:
                       as many as fit ``memory_budget``, see below).
``"smoothgrad"``       mean gradient over ``nt_samples`` noisy copies
                       (Smilkov et al. 2017), ``stdevs`` in pixel units.
``"gradcam"``          Grad-CAM (Selvaraju et al. 2017) at ``layer=``, upsampled
                       bilinearly to the image size and repeated over channels.
                       The layer's layout (:func:`insilico.layers.unit_layout`)
                       decides its grid: a map ``(C, H, W)`` as it is; channels-
                       last ``(H, W, C)`` (Swin stages) with channels moved first;
                       tokens ``(T, D)`` (ViT blocks) without the family's prefix
                       tokens (CLS, registers), the ``g * g`` patch tokens
                       (row-major) as a ``(D, g, g)`` grid. Any other layer
                       (vector, attention parts, a token count that is not
                       prefix + a square) raises a UnitError.
=====================  ==========================================================

What captum does and what we add
--------------------------------
The arithmetic of each method is captum's: ``Saliency`` (gradient, guided,
deconv; SmoothGrad is its mean over noisy copies we draw per image, not
captum's ``NoiseTunnel``: see Memory), ``InputXGradient``,
``IntegratedGradients`` and ``LayerGradCam`` (Grad-CAM's arithmetic, computed from the
Probe's recording so that the layer's layout is read first). Their ``forward_func`` is a :class:`UnitFunction`: the model
run under a :class:`~insilico.probe.Probe` recording of the unit with
``keep_graph=True``, returning one value per image. We do not use captum's
``Neuron*`` classes or its ``GuidedBackprop``/``Deconvolution`` because

- captum's layer hook keeps only the *last* call of a module, so a time step
  ``@t`` of a recurrent module cannot be addressed; the Probe counts calls;
- its neuron selector is one index for the whole batch; the Probe-based
  function takes one unit *per image* (``unit=[...]``), which
  :func:`insilico.project_exemplars` needs (each exemplar has its own max
  position), and still runs every image in one batch;
- ``GuidedBackprop``/``Deconvolution`` override the backward pass of
  ``nn.ReLU`` *modules* only: ``F.relu``/``torch.relu``/``Tensor.relu`` in a
  ``forward`` keep their true gradient and the map is silently wrong. We
  intercept every ReLU at the torch-function level instead
  (:class:`ReluRule`, a ``TorchFunctionMode``): modules, functional calls and
  in-place calls alike get the guided or deconv rule, by a small autograd
  Function. In-place ReLUs stay in-place (the result is copied back into the
  input), so models such as torchvision's ResNet give the same map with
  ``inplace=True`` and ``False``. Other nonlinearities (GELU, ReLU6, ...) keep
  their true gradient, as in captum.

The cost is one extra copy of the unit's layer output (the Probe's recording);
``benchmarks/bench_gradients.py`` measures it against captum's ``Neuron*``.

Memory
------
Integrated gradients and SmoothGrad run ``n_steps`` (``nt_samples``) copies of
every image. captum runs them all in one batch unless told otherwise, which for
six 224-px images through a ResNet-18 and 50 steps is 300 rows and about 8 GB.
Here the rows per forward/backward pass are chosen so that the activations the
pass keeps for its backward fit ``memory_budget`` (default 1 GiB), estimated
from one surveyed forward pass of one image (:func:`rows_per_pass`); images
are split into groups when even one step of all of them would not fit. The
maps are the same whatever the split: SmoothGrad's noise is drawn per image and
copy from generators of its own, seeded from ``seed`` and the image's content
(captum's ``NoiseTunnel`` draws from torch's global generator, per batch, so its
maps change with their batch companions and with the split; we add the noise
ourselves and take captum's ``Saliency`` of the noisy copies). Runs of more than :data:`ANNOUNCE_ROWS` rows say
what they will do, on stderr, before they start.

Example
-------
>>> import torch, insilico
>>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2))
>>> images = torch.rand(2, 3, 10, 10)
>>> maps = insilico.gradient_map(model, images, "2[1,2,2]", method="deconv")
>>> tuple(maps.shape)
(2, 3, 10, 10)
"""
from __future__ import annotations

import contextlib
import math
import numbers
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import InsilicoError, StimulusError, UnitError
from ..layers import channels_first, patch_grid, unit_layout
from ..layers.families import family_at
from ..layout import token_grid
from ..options import Options
from ..performance import at_model_door, check_finite, working_dtype
from ..pixels import check_images
from ..probe import Probe
from ..registry import register_tool
from ..seeding import content_key, derive_seed, fresh_seed, generator
from ..session import session
from ..units import Unit, UnitLike, check_index, need_tensor

METHODS = ("gradient", "gradient_x_input", "guided", "deconv", "integrated", "smoothgrad", "gradcam")
REDUCTIONS = ("sum", "mean")
#: Default memory budget (bytes) of one forward/backward pass of the expanded batch.
MEMORY_BUDGET = 1 << 30
#: Integrated gradients / SmoothGrad runs of more rows (images x steps) than this announce themselves.
ANNOUNCE_ROWS = 256
#: Bytes a pass keeps per byte of module outputs (saved activations, the backward's gradients, the
#: Probe's copy): a conservative factor (resnet18, six 224-px images, 50 steps within the default
#: budget: 1.1 GB peak RSS of the whole process on the CPU, against 8.0 GB in one batch).
_KEPT_PER_OUTPUT = 3.0


@dataclass(frozen=True)
class GradientOptions(Options):
    """The settings of :func:`gradient_map`'s path and noise methods (integrated gradients, SmoothGrad),
    checked when built.

    Attributes
    ----------
    baselines : float or tensor
        Integrated gradients: the image(s) the path starts from (default 0,
        black): a grey level in [0, 1], one image (C, H, W) for all, or one per
        image (N, C, H, W); pixel space, checked like ``images`` (StimulusError
        naming ``baselines`` otherwise).
    n_steps : int
        Integrated gradients: points on the path (default 50).
    internal_batch_size : int, optional
        Integrated gradients and SmoothGrad: at most this many rows per forward
        pass (memory is bounded by it; results are the same). Default: as many
        as fit ``memory_budget``.
    nt_samples, stdevs : int, float
        SmoothGrad: noisy copies per image (default 25) and the noise's standard deviation (default 0.15).
    memory_budget : float
        Integrated gradients and SmoothGrad: bytes one forward/backward pass of
        the expanded batch may keep (estimated; default 1 GiB), when
        ``internal_batch_size`` is not given.

    Example
    -------
    >>> GradientOptions(n_steps=20).n_steps
    20
    >>> GradientOptions(nt_sample=5)
    Traceback (most recent call last):
    ...
    insilico.errors.InsilicoError: GradientOptions() got an unknown option 'nt_sample': did you mean 'nt_samples'? The options are GradientOptions' fields: baselines, n_steps, internal_batch_size, nt_samples, stdevs, memory_budget
    """

    baselines: float | torch.Tensor = 0.0
    n_steps: int = 50
    internal_batch_size: int | None = None
    nt_samples: int = 25
    stdevs: float = 0.15
    memory_budget: float = MEMORY_BUDGET

    def validate(self) -> GradientOptions:
        """Check the counts and sizes; returns ``self`` (``baselines`` is checked against the images)."""
        for name in ("n_steps", "nt_samples", "internal_batch_size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
                raise InsilicoError(f"{name} must be an int >= 1, not {value!r}")
        for name in ("stdevs", "memory_budget"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
                raise InsilicoError(f"{name} must be a number >= 0, not {value!r}")
        return self


@register_tool("attribution", saves=False, per_sample=True)
def gradient_map(
    model: nn.Module,
    images: torch.Tensor,
    unit: UnitLike | Sequence[UnitLike],
    method: str = "gradient",
    *,
    reduce: str = "sum",
    layer: UnitLike | None = None,
    seed: int | None = 0,
    progress: bool = True,
    options: GradientOptions | None = None,
    **option_overrides,
) -> torch.Tensor:
    """Map of what drives ``unit`` in each image (gradient, deconvolution of Zeiler & Fergus 2014, Grad-CAM, ...).

    Parameters
    ----------
    model : nn.Module
        Put in eval mode for the call (each module's mode is restored after).
    images : tensor (N, C, H, W)
        Pixel space: finite values in [0, 1]. Moved to the model's device and dtype.
    unit : address, Unit, or a list of N of them
        One unit for every image, or one per image (they may live in different
        modules; all images still run in one batch).
    method : str
        One of ``"gradient"``, ``"gradient_x_input"``, ``"guided"``, ``"deconv"``,
        ``"integrated"``, ``"smoothgrad"``, ``"gradcam"`` (see the module docstring).
    reduce : {"sum", "mean"}
        How a unit selecting several values becomes one number per image.
    layer : address, optional
        Grad-CAM only (required there): the layer whose channels are
        weighted, e.g. ``"features.10"`` or ``"blt.conv2@3"``: a conv map, a
        channels-last stage (Swin) or a token layer (ViT; CLS and registers
        dropped, the patches as a grid). UnitError for a layer without a grid.
    seed : int, optional
        SmoothGrad: seeds the noise of each image (with its content) and copy, so
        an image's map does not depend on the images beside it; None: fresh
        entropy. Torch's global random state is never used.
    progress : bool
        Say on stderr what a long integrated-gradients / SmoothGrad run will do
        (images x steps, passes) before it starts (default True).
    options : GradientOptions, optional
        Integrated gradients and SmoothGrad: ``baselines``, ``n_steps``, ``internal_batch_size``,
        ``nt_samples``, ``stdevs``, ``memory_budget``.
    **option_overrides
        Any field of :class:`GradientOptions`, on top of ``options`` (``method="integrated", n_steps=100``).

    Returns
    -------
    tensor (N, C, H, W)
        On the model's device, in its dtype (integrated gradients and SmoothGrad sum in float32 for a
        float16/bfloat16 model: :func:`~insilico.performance.working_dtype`); detached.

    Raises
    ------
    NumericsError
        The map holds NaN or inf (e.g. a float16 model that overflows): never returned.

    Example
    -------
    >>> import torch, insilico
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
    >>> images = torch.rand(5, 3, 2, 2)
    >>> g = insilico.gradient_map(model, images, "1[0]")
    >>> torch.allclose(g[0].flatten(), model[1].weight[0])
    True
    """
    options = GradientOptions.from_kwargs("gradient_map", None, options, **option_overrides)
    baselines, n_steps, internal_batch_size = options.baselines, options.n_steps, options.internal_batch_size
    nt_samples, stdevs, memory_budget = options.nt_samples, options.stdevs, options.memory_budget
    if method not in METHODS:
        raise InsilicoError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")
    if reduce not in REDUCTIONS:
        raise InsilicoError(f"reduce must be one of {REDUCTIONS}, not {reduce!r}")
    probe = Probe(model)
    images = check_images(images).detach().to(device=probe.device, dtype=probe.dtype)
    units = _per_image_units(probe, unit, len(images))
    if method == "gradcam" and layer is None:
        raise InsilicoError("method='gradcam' needs layer=, the conv layer to weight, e.g. layer='features.10'")
    if method != "gradcam" and layer is not None:
        raise InsilicoError(f"layer= is for method='gradcam' only, not {method!r}")

    from captum.attr import InputXGradient, IntegratedGradients, Saliency

    rule = method if method in ("guided", "deconv") else None
    function = UnitFunction(probe, units, reduce=reduce, rule=rule)
    args = (function.ids_for(units, images.device),)
    images.requires_grad_(True)
    with session(model, grad=True):
        if method in ("gradient", "guided", "deconv"):
            maps = Saliency(function).attribute(images, abs=False, additional_forward_args=args)
        elif method == "gradient_x_input":
            maps = InputXGradient(function).attribute(images, additional_forward_args=args)
        elif method in ("integrated", "smoothgrad"):
            copies = n_steps if method == "integrated" else nt_samples
            rows = internal_batch_size or rows_per_pass(probe, images, memory_budget)
            groups = _groups(len(images), rows, copies)
            if progress and len(images) * copies > ANNOUNCE_ROWS:
                passes = sum(math.ceil(copies / max(1, rows // (g.stop - g.start))) for g in groups)
                largest = max(max(1, rows // (g.stop - g.start)) * (g.stop - g.start) for g in groups)
                _announce(f"gradient_map({method!r}): {len(images)} images x {copies} "
                          f"{'steps' if method == 'integrated' else 'noisy copies'} = {len(images) * copies} "
                          f"rows, in {passes} forward/backward passes of up to {largest} rows"
                          + ("" if internal_batch_size else f" (memory_budget {memory_budget / 2**30:.2g} GiB)"))
            parts = []
            work = images.detach().to(working_dtype(images.dtype))  # sums of many gradients: float32 for half models
            if method == "integrated":
                base = _baselines(baselines, work)
            for group in groups:
                part_args = (args[0][group],)  # the target id of each image of the group
                if method == "integrated":
                    parts.append(IntegratedGradients(function).attribute(
                        work[group], baselines=base[group].contiguous(), additional_forward_args=part_args,
                        n_steps=n_steps, internal_batch_size=max(rows, group.stop - group.start),
                    ))
                else:
                    parts.append(_smoothgrad(function, work[group], part_args[0], nt_samples, float(stdevs),
                                             seed, max(1, rows // (group.stop - group.start))))
            maps = torch.cat(parts).to(images.dtype)  # in the model's dtype, as every method's
        else:
            maps = _gradcam(probe, function, images, layer, args)
    if rule is not None and function.relus_seen == 0:
        warnings.warn(f"the model ran no ReLU: the {method} map equals the plain gradient", stacklevel=2)
    check_finite(maps, f"the {method} map of {units[0]}", probe.dtype)  # e.g. an overflowing half model: refused
    return maps.detach()


def rows_per_pass(probe: Probe, images: torch.Tensor, memory_budget: float = MEMORY_BUDGET) -> int:
    """How many image rows one forward/backward pass may hold within ``memory_budget`` bytes (at least 1).

    Estimated from one surveyed forward pass of one image: the bytes of every
    call of every leaf module's output (a module without children; the model
    itself if it has none), times a safety factor for what the backward pass
    keeps, plus the image.

    Example
    -------
    >>> import torch, insilico
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU())
    >>> # per row: the image (12 KiB) + 3 x (conv output 32 KiB + ReLU output 32 KiB) = 204 KiB
    >>> rows_per_pass(insilico.Probe(model), torch.rand(1, 3, 32, 32), memory_budget=2**20)
    5
    """
    survey = probe.survey(images[:1])
    leaves = {name for name, m in probe.model.named_modules() if not any(True for _ in m.children())}
    per_row = images[0].numel() * images.element_size()
    for call in survey:
        if call.module in leaves and call.shape is not None and call.dtype is not None:
            per_row += _KEPT_PER_OUTPUT * int(np.prod(call.shape)) * torch.empty((), dtype=call.dtype).element_size()
    return max(1, int(memory_budget // per_row))


def _groups(n: int, rows: int, copies: int) -> list[slice]:
    """Consecutive image groups of at most ``rows`` images, sized for the fewest passes.

    A group of ``g`` images runs ``rows // g`` of its ``copies`` per pass.

    >>> _groups(6, 11, 50)   # 2 images x 5 steps per pass: 3 x 10 passes (6 images x 1 step: 50 passes)
    [slice(0, 2, None), slice(2, 4, None), slice(4, 6, None)]
    """
    def passes(g):
        return math.ceil(n / g) * math.ceil(copies / max(1, rows // g))

    size = min(range(1, max(1, min(n, rows)) + 1), key=lambda g: (passes(g), -g))
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def _announce(message: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(message, file=sys.stderr)


# ---------------------------------------------------------------------------------------
# The unit as a function of the images
# ---------------------------------------------------------------------------------------
class UnitFunction:
    """``f(images, ids) -> (N,)``: each image's unit value, recorded by a Probe with its graph.

    ``units`` is a list of distinct target units; ``ids[n]`` says which one
    image ``n`` is scored by. Targets are grouped by the module call they
    read (``module:output@step``); each group's output is recorded once, its
    single-neuron targets are gathered in one indexing operation, and other
    selections are reduced one target at a time (a loop over distinct targets,
    never over images). Used as captum's ``forward_func`` with ``ids`` as an
    ``additional_forward_args`` tensor, which captum expands along with the
    images for integrated gradients and SmoothGrad.

    Parameters
    ----------
    probe : Probe
    units : list of Unit
    reduce : {"sum", "mean"}
    rule : {"guided", "deconv", "support"}, optional
        A :class:`ReluRule` active during the forward pass.
    """

    def __init__(self, probe: Probe, units: list[Unit], reduce: str = "sum", rule: str | None = None):
        self.probe, self.reduce, self.rule = probe, reduce, rule
        self.targets = list(dict.fromkeys(units))
        self.groups: dict[Unit, list[int]] = {}
        for tid, target in enumerate(self.targets):
            whole = Unit(target.module, step=target.step, output=target.output)
            self.groups.setdefault(whole, []).append(tid)
        self._checked: set = set()
        self.relus_seen = 0

    def ids_for(self, units: list[Unit], device) -> torch.Tensor:
        """Target ids for images scored by ``units`` (one per image)."""
        position = {u: i for i, u in enumerate(self.targets)}
        return torch.tensor([position[u] for u in units], dtype=torch.long, device=device)

    def __call__(self, images: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        rule = ReluRule(self.rule) if self.rule else contextlib.nullcontext()
        with self.probe.record(*self.groups, keep_graph=True) as rec, rule:
            self.probe.model(at_model_door(images, self.probe.dtype))  # float32 steps of a half model's IG
        if isinstance(rule, ReluRule):
            self.relus_seen = rule.count
        columns, order = [], []
        for whole, tids in self.groups.items():
            columns.append(self._group_values(whole, rec[whole], tids))
            order.extend(tids)
        table = torch.cat(columns, dim=1)  # (N, n_targets), columns in group order
        if len(self.targets) == 1:
            return table[:, 0]
        column_of = torch.empty(len(order), dtype=torch.long, device=ids.device)
        column_of[torch.tensor(order, device=ids.device)] = torch.arange(len(order), device=ids.device)
        return table.gather(1, column_of[ids].unsqueeze(1)).squeeze(1)

    def _group_values(self, whole: Unit, act: Any, tids: list[int]) -> torch.Tensor:
        act = need_tensor(self.targets[tids[0]], act)  # a tuple output: its parts, as addresses of the unit
        shape = tuple(act.shape[1:])
        targets = [self.targets[t] for t in tids]
        if (whole, shape) not in self._checked:
            for target in targets:
                if target.index is not None:
                    check_index(target.index, shape, target)
            self._checked.add((whole, shape))
        flat = act.reshape(len(act), -1)
        points = [_flat_position(t.index, shape) for t in targets]
        if all(p is not None for p in points):  # single neurons: one gather for all of them
            return flat[:, torch.tensor(points, device=act.device)]
        columns = []
        for target, point in zip(targets, points):
            if point is not None:
                columns.append(flat[:, point])
                continue
            selected = target.select(act).reshape(len(act), -1)
            columns.append(selected.sum(1) if self.reduce == "sum" else selected.mean(1))
        return torch.stack(columns, dim=1)


def _flat_position(index: tuple | None, shape: tuple) -> int | None:
    """Flat position of a single-neuron index in one sample's output, else None."""
    if index is None or len(index) != len(shape) or not all(isinstance(i, int) for i in index):
        return None
    return int(np.ravel_multi_index(tuple(i % s for i, s in zip(index, shape)), shape))


# ---------------------------------------------------------------------------------------
# ReLU backward rules for every ReLU (module, functional, in-place)
# ---------------------------------------------------------------------------------------
class _GuidedReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        out = x.clamp(min=0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors  # the true ReLU gradient, then only its positive part
        return torch.ops.aten.threshold_backward(grad, out, 0).clamp_(min=0)


class _DeconvReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        return grad.clamp(min=0)


class _OpenReLU(_DeconvReLU):
    """ReLU forward, identity backward: every path stays open (receptive-field support)."""

    @staticmethod
    def backward(ctx, grad):
        return grad


_RULES = {"guided": _GuidedReLU, "deconv": _DeconvReLU, "support": _OpenReLU}
_RELU = {F.relu, torch.relu, torch.Tensor.relu}
_RELU_INPLACE = {F.relu_, torch.relu_, torch.Tensor.relu_}


class ReluRule(TorchFunctionMode):
    """Within this context every ReLU call gets a modified backward rule.

    ``rule``: ``"guided"`` (``relu(grad) * [x > 0]``), ``"deconv"``
    (``relu(grad)``) or ``"support"`` (ReLU passes every gradient, and
    ``F.max_pool2d`` spreads it over its whole window, so the gradient's
    support is the receptive field). Catches ``nn.ReLU`` (in-place or not),
    ``F.relu``, ``F.relu_``, ``torch.relu``, ``torch.relu_``, ``Tensor.relu``
    and ``Tensor.relu_``; ``count`` says how many calls it rewrote.

    Example
    -------
    >>> import torch
    >>> x = torch.tensor([-1.0, 2.0], requires_grad=True)
    >>> with ReluRule("deconv"):
    ...     y = torch.relu(x)
    >>> y.backward(torch.tensor([3.0, -4.0])); x.grad.tolist()
    [3.0, 0.0]
    """

    def __init__(self, rule: str):
        super().__init__()
        if rule not in _RULES:
            raise InsilicoError(f"unknown ReLU rule {rule!r}: use one of {', '.join(_RULES)}")
        self.rule, self.function, self.count = rule, _RULES[rule], 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _RELU or func in _RELU_INPLACE:
            inplace = func in _RELU_INPLACE or bool(kwargs.get("inplace", args[1] if len(args) > 1 else False))
            x = args[0]
            if x.is_floating_point():
                self.count += 1
                out = self.function.apply(x)
                return x.copy_(out) if inplace else out
        if func is F.max_pool2d and self.rule == "support":
            return _open_max_pool2d(*args, **kwargs)
        return func(*args, **kwargs)


def _open_max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    out = F.max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode, return_indices)
    if return_indices or dilation not in (1, (1, 1)):
        return out
    spread = F.avg_pool2d(x, kernel_size, stride, padding, ceil_mode, count_include_pad=True)
    return out.detach() + (spread - spread.detach())


# ---------------------------------------------------------------------------------------
# Grad-CAM
# ---------------------------------------------------------------------------------------
def _gradcam(probe: Probe, function: UnitFunction, images: torch.Tensor, layer: UnitLike, args) -> torch.Tensor:
    layer_unit = probe.units(layer)[0]
    if layer_unit.index is not None:
        raise UnitError(f"layer= names a whole layer for Grad-CAM, without an index: '{layer_unit.replace(index=None)}'")
    return to_image(_gradcam_probe(probe, function, images, layer_unit, args[0]), images)


def to_image(cam: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """A map on a layer's grid ``(N, 1, h, w)`` upsampled bilinearly to ``images`` ``(N, C, H, W)``, repeated
    over the channels (Grad-CAM, attention rollout)."""
    cam = F.interpolate(cam, size=images.shape[2:], mode="bilinear", align_corners=False)
    return cam.expand(-1, images.shape[1], -1, -1).contiguous()


def _gradcam_probe(probe, function, images, layer_unit, ids) -> torch.Tensor:
    """Grad-CAM (N, 1, h, w) at one call of a layer, read in its layout (:func:`_cam_grid`).

    captum's ``LayerGradCam`` weights axis 1 whatever the layout (a Swin stage's H
    taken for channels) and sees no time step, part or op: the Probe records the
    layer's output and its gradient (d unit / d a zero added to it), both are put on
    the layer's ``(C, h, w)`` grid, and the map is ``relu(sum_c mean_hw(grad) * act)``:
    captum's arithmetic (equal to ``LayerGradCam`` on a conv map).
    """
    with torch.no_grad(), probe.record(layer_unit) as rec:
        probe.model(images[:1])
    calls = rec._tap(layer_unit).calls_per_pass
    if layer_unit.step is None and calls > 1:  # never a silent choice of call
        raise UnitError(f"Grad-CAM's layer {str(layer_unit)!r} is called {calls} times per forward pass: name one "
                        f"call, e.g. layer='{layer_unit.replace(step=calls - 1)}' (the last; steps count from 0, "
                        f"or from the end as @-1)")
    first = need_tensor(layer_unit, rec[layer_unit], " for Grad-CAM's layer=")
    if layer_unit.step is not None and layer_unit.step < 0:  # '@-1': the last call; stimulate counts from 0
        layer_unit = layer_unit.replace(step=calls + layer_unit.step)
    to_grid = _cam_grid(probe.model, layer_unit, tuple(first.shape[1:]))
    delta = torch.zeros((len(images),) + tuple(first.shape[1:]), device=images.device,
                        dtype=first.dtype).requires_grad_(True)
    with torch.enable_grad(), probe.stimulate(layer_unit, add=delta), probe.record(layer_unit) as rec:
        values = function(images, ids)
        (grad,) = torch.autograd.grad(values.sum(), delta, allow_unused=True)
    if grad is None:
        raise UnitError(f"the unit does not depend on {layer_unit}: Grad-CAM needs a layer before the unit")
    if grad.count_nonzero() > 0 and to_grid(grad).count_nonzero() == 0:
        raise UnitError(f"Grad-CAM at {layer_unit}: the unit depends on its prefix tokens (CLS, registers) only, not on "
                        "its patch tokens, so the map would be zero; name an earlier token layer (after the last "
                        "block only the CLS token reaches the head: take the last block's first norm)")
    weights = to_grid(grad).mean(dim=(2, 3), keepdim=True)  # the mean of d unit / d activation over the grid
    return F.relu((weights * to_grid(rec[layer_unit].detach())).sum(dim=1, keepdim=True))


def _cam_grid(model: nn.Module, unit: Unit, shape: tuple):
    """How a batch of ``unit``'s output (one sample: ``shape``) becomes Grad-CAM's ``(N, C, h, w)`` grid.

    The layout (:func:`~insilico.layers.unit_layout`, the one home of architecture
    knowledge) decides: a map ``(C, H, W)`` as it is; channels-last ``(H, W, C)``
    (Swin's stages) with its channels moved first; tokens ``(T, D)`` (ViT blocks)
    without the family's prefix tokens (CLS, registers; :func:`~insilico.layers.patch_grid`),
    the ``g * g`` patch tokens, row-major, as a ``(D, g, g)`` grid. Anything else
    raises a UnitError naming the layer, its shape and layout.
    """
    family = family_at(model, unit)  # the network the layer lives in (a ModelGroup's members differ)
    layout = unit_layout(model, unit, shape, family)
    if layout == "map" and len(shape) == 3 or layout == "channels_last":
        return lambda value: channels_first(value, layout)
    if layout == "tokens":
        prefix = family.prefix()
        grid = patch_grid(shape[0], prefix)
        if grid is None:
            said = f"{prefix} prefix token(s) (family {family.name!r})" if prefix is not None else "0 or 1 prefix token"
            raise UnitError(f"Grad-CAM at {unit}: its {shape[0]} tokens (output {shape} per image, layout 'tokens') "
                            f"are not {said} then a square g x g patch grid, so there is no map to draw; name a "
                            f"conv/map layer or a token layer of a ViT-style model (prefix tokens, then the patches)")
        return lambda value: token_grid(value, grid)
    raise UnitError(f"Grad-CAM needs a spatial layer: {unit} gives {shape} per image, layout {layout!r}, which has "
                    f"no (H, W) grid; name a conv/map layer (C, H, W), a channels-last stage (H, W, C) or a token "
                    f"layer (T, D) before the unit, e.g. the last conv stage")


# ---------------------------------------------------------------------------------------
# Checks and context helpers (shared with insilico.attribution.exemplars)
# ---------------------------------------------------------------------------------------
def _per_image_units(probe: Probe, unit: Any, n: int) -> list[Unit]:
    if isinstance(unit, (list, tuple)):
        if len(unit) != n:
            raise UnitError(f"{len(unit)} units for {n} images: give one unit, or one per image")
        return probe.units(*unit)
    return probe.units(unit) * n


def _baselines(baselines: float | torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Integrated gradients' start images, one per image (N, C, H, W), through the image gate.

    A number is a flat grey level (in [0, 1]); a tensor is one image (C, H, W) or (1, C, H, W) for
    every image, or one per image (N, C, H, W).
    """
    if isinstance(baselines, np.ndarray):
        baselines = torch.from_numpy(baselines)
    if not torch.is_tensor(baselines):
        try:
            value = float(baselines)
        except (TypeError, ValueError):
            raise StimulusError(f"baselines must be a grey level in [0, 1] or image(s) (C, H, W) / (N, C, H, W) in "
                                f"[0, 1], not {type(baselines).__name__}") from None
        if not 0.0 <= value <= 1.0:
            raise StimulusError(f"baselines={value!r} is not a pixel value: give a grey level in [0, 1] "
                                f"(0 is black), or an image (C, H, W) in [0, 1]")
        return torch.full_like(images, value)
    if baselines.ndim == 3:
        baselines = baselines.unsqueeze(0)
    base = check_images(baselines, name="baselines").to(device=images.device, dtype=images.dtype)
    if tuple(base.shape[1:]) != tuple(images.shape[1:]) or len(base) not in (1, len(images)):
        raise StimulusError(f"baselines has shape {tuple(base.shape)}; the images {tuple(images.shape)}: give one "
                            f"baseline image {tuple(images.shape[1:])} for all, or one per image "
                            f"({len(images)}, {', '.join(map(str, images.shape[1:]))})")
    return base.expand_as(images)


def _smoothgrad(function: UnitFunction, images: torch.Tensor, ids: torch.Tensor, nt_samples: int, stdevs: float,
                seed: int | None, per_pass: int) -> torch.Tensor:
    """SmoothGrad: the mean gradient over ``nt_samples`` noisy copies of each image, ``per_pass`` copies a pass.

    Copy ``k`` of an image gets noise from its own generator, seeded from (``seed``, the image's
    :func:`~insilico.seeding.content_key`, ``k``): a map does not depend on the images beside it, their
    order, or how the copies are split into passes (captum's ``NoiseTunnel`` draws one batch of noise
    from torch's global generator, so a map changed with its batch companions).
    """
    from captum.attr import Saliency

    seed = fresh_seed() if seed is None else int(seed)
    keys = content_key(images)
    shape = tuple(images.shape[1:])
    total = torch.zeros_like(images)
    for start in range(0, nt_samples, per_pass):
        copies = range(start, min(start + per_pass, nt_samples))
        noise = torch.stack([torch.randn(shape, generator=generator(derive_seed(seed, f"smoothgrad|{key}|{k}")))
                             for k in copies for key in keys])  # copy-major: (copies x images, C, H, W)
        noisy = (images.detach().repeat(len(copies), *([1] * len(shape))) + stdevs * noise.to(images)).requires_grad_()
        grads = Saliency(function).attribute(noisy, abs=False, additional_forward_args=(ids.repeat(len(copies)),))
        total += grads.reshape(len(copies), *images.shape).sum(0)
    return total / nt_samples


def attribute(probe: Probe, images: torch.Tensor, units: list[Unit], method: str, reduce: str = "sum") -> torch.Tensor:
    """One map per image for ``units`` (one per image), one forward and one backward pass.

    Lower-level than :func:`gradient_map` (no checks, model mode untouched):
    ``method`` is ``"gradient"``, ``"guided"``, ``"deconv"`` or ``"support"``
    (the receptive-field support, see :class:`ReluRule`).
    """
    if method not in ("gradient", "guided", "deconv", "support"):
        raise InsilicoError(f"method must be gradient, guided, deconv or support here, not {method!r}")
    function = UnitFunction(probe, units, reduce=reduce, rule=None if method == "gradient" else method)
    x = images.detach().requires_grad_(True)
    with torch.enable_grad():
        values = function(x, function.ids_for(units, x.device))
        (grad,) = torch.autograd.grad(values.sum(), x)
    if method in ("guided", "deconv") and function.relus_seen == 0:
        warnings.warn(f"the model ran no ReLU: the {method} map equals the plain gradient", stacklevel=2)
    return grad
