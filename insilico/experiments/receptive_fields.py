"""Receptive fields: where in the image a unit looks, three ways.

``receptive_field(model, unit, method=...)`` returns the RF of one unit (a
neuron ``"features.3[5,6,6]"``; a channel ``"features.3[5]"`` or a whole layer
``"features.3"`` means the centre position of the map, summed over the
named channels):

``"theoretical"``
    The pixels that can influence the unit through the network's wiring.
    Computed by walking the autograd graph of one forward pass from the unit
    back to the image, mapping an index interval through every convolution
    and pooling node (``lo * stride - padding`` .. ``hi * stride - padding +
    dilation * (kernel - 1)``) and every nearest/bilinear upsampling; paths
    are merged by taking the hull. Because it follows the real graph it
    covers branches and recurrence: the RF of a recurrent layer grows with
    its lateral and top-down inputs over time steps (``"layers.1@3"``), and
    inputs that are zero at a step (no graph) add nothing. Pointwise ops
    (activations, additions, normalisation, whose statistics are ignored as
    usual) pass the interval on; ops that mix all positions (linear layers,
    global pooling, reshapes, permutes, matrix products) make the RF the
    whole image. The size is the unclamped extent (it can exceed the image).
    Token ``(T, D)`` and channels-last ``(H, W, C)`` layers reach the image
    through a reshape or permute of their patch embedding, so their
    theoretical RF is the whole image (an upper bound; ``"gradient"`` measures it).
``"gradient"``
    The unit's **linear (gradient) footprint**: mean ``|d unit / d image|``
    (summed over colour channels) over white-noise images, via
    :func:`insilico.gradient_map`, of the unit as addressed (a conv output is
    read before its nonlinearity, so the footprint is the linearised RF, not
    where the rectified unit fires). The size's standard error ``size_se``
    is a bootstrap over groups of images (:data:`SE_FOLDS` groups, image ``j``
    in group ``j % SE_FOLDS``; :data:`SE_RESAMPLES` resamples of the groups with
    replacement, the SD of the resampled sizes times ``sqrt(G / (G - 1))`` for G
    groups; Efron & Tibshirani 1993, *An Introduction to the Bootstrap*, ch. 6).
    On 32 conv centre neurons of the bundled minialex (``features.3`` to
    ``.10``, 8 fresh draws of n images each) it matches the draw-to-draw SD of
    the size: RMS ratio 1.06, 1.04, 1.14 at n = 16, 32, 64 (the former
    two-halves value: 0.87, 0.82, 0.96, and 0 in 5-14% of draws); with fewer
    images than groups it runs wider (1.69 at n = 4).
    By default (``n_images=None``)
    the number of images doubles from 64 until ``size_se <=`` :data:`TARGET_SE`
    (10%) of the size or :data:`MAX_GRADIENT_IMAGES` images
    (``settings["n_images"]`` is the number used, ``settings["se_reached"]``
    whether the target was met); an int ``n_images`` uses exactly that many.
    A linear unit has the same gradient for every image: its ``size_se`` is 0.
    :func:`gradient_fields` is the same measurement batched over many neurons (one backward pass per chunk of
    (neuron, image) pairs; the gallery's RF panels call it).
``"sparse_noise"``
    Reverse correlation with sparse noise (:func:`insilico.stimuli.sparse_noise`):
    the ON map is the mean response when a light dot covers a pixel minus the
    mean response overall, the OFF map the same for dark dots; the RF
    strength is ``|ON| + |OFF|`` after removing each map's median.

For the two measured maps the RF is the bounding box of the 8-connected
region around the peak of the pixels whose strength exceeds ``threshold`` times the maximum (and, for sparse noise, a
noise floor of 4 standard deviations of the map's noise, estimated from
the difference of the maps of odd and even frames); ``size`` is the
geometric mean of the box's height and width, ``center`` its centre ``(y, x)``
in pixel coordinates (row, column), and ``centroid`` the strength-weighted mean.

Example
-------
>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 5, stride=2), torch.nn.ReLU(), torch.nn.Conv2d(2, 2, 3))
>>> rf = receptive_field(net, "2[0,1,1]", size=16)
>>> rf.size, rf.center
(9.0, (6.0, 6.0))
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .. import stimuli as stim
from ..errors import InsilicoError
from ..layout import read_layout
from ..performance import as_numpy
from ..probe import Probe
from ..registry import register_tool
from ..units import Unit, need_tensor
from ..plot.images import new_axes
from .results import Result
from ..layers import LOCAL, at_centre, choose_layers, example_input, image_size, renamed
from ..layers.families import family_at
from ..session import session
from ..plan import Plan, plan_for
from .runs import record_units, sample_shapes

METHODS = ("theoretical", "gradient", "sparse_noise")
#: The most white-noise images the gradient method doubles up to while ``size_se`` is above its target.
MAX_GRADIENT_IMAGES = 1024
#: The gradient method's default image count doubles from :data:`FIRST_GRADIENT_IMAGES` until the size's standard
#: error is at most this fraction of the size.
TARGET_SE = 0.1
FIRST_GRADIENT_IMAGES = 64
#: Groups of images the gradient method's ``size_se`` bootstraps over (fewer when there are fewer images).
SE_FOLDS = 8
#: Bootstrap resamples of the groups for ``size_se``.
SE_RESAMPLES = 100
# autograd nodes after which every input position matters
_WHOLE = ("Addmm", "MmBackward", "BmmBackward", "Mean", "SumBackward", "Adaptive", "View", "Reshape", "Permute",
          "Transpose", "Softmax", "Linear", "Unfold", "TBackward", "Einsum", "Matmul")


@register_tool("experiment", takes_images=False)
@renamed(input_size="size")
def receptive_field(
    model: nn.Module,
    unit: str | Unit,
    size: int | Sequence[int] | None = None,
    method: str = "theoretical",
    threshold: float = 0.1,
    n_images: int | None = None,
    n_frames: int = 4000,
    dots: int = 4,
    dot_size: int = 1,
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = False,
) -> "RFResult":
    """Receptive field of one unit: theoretical, gradient and sparse-noise estimates.

    Parameters
    ----------
    model : nn.Module
    unit : str or Unit
        A neuron (``"features.3[5,6,6]"``); a channel or a layer is read at the
        centre of its map (summed over its channels), a token layer at its
        centre patch token (:func:`insilico.layers.at_centre`).
    size : int, (H, W) or (C, H, W), optional
        The image size (square), as every tool reads it (:func:`insilico.layers.image_size`): an int is
        the side, with the model's channels; default ``model.input_size``.
    method : {"theoretical", "gradient", "sparse_noise"}
    threshold : float
        Measured maps: fraction of the peak strength that counts as inside.
    n_images : int
        Gradient: number of white-noise images averaged (>= 2); default None: 64, doubled until the size's
        standard error is at most :data:`TARGET_SE` of the size (up to :data:`MAX_GRADIENT_IMAGES`).
    n_frames, dots, dot_size : int
        Sparse noise: frames, dots per frame and dot side (pixels).
    batch_size, seed, progress
        Sparse noise batching, the noise seed, and a progress bar.

    Returns
    -------
    RFResult
        ``size`` (pixels), ``center`` (y, x), ``extent`` (height, width),
        ``map`` (H, W) and ``box`` (y0, y1, x0, x1), inclusive; gradient: ``size_se`` (pixels) and
        ``settings["measure"]``, which names the linear footprint.

    Raises
    ------
    InsilicoError
        An unknown method; ``n_images`` not None and not an int >= 2 for the gradient method.
    """
    if method not in METHODS:
        raise InsilicoError(f"unknown RF method {method!r}; use one of {', '.join(METHODS)}")
    channels, _, size = image_size(model, size, square=True)
    plan = Plan(model, example_input(model, (channels, size, size)))  # the call's one survey
    neuron, sample_shape = locate(model, unit, channels, size, plan=plan)
    settings = dict(unit=str(unit), neuron=str(neuron), method=method, input_size=[channels, size, size],
                    threshold=threshold)
    if method == "theoretical":
        box = theoretical_box(model, neuron, channels, size)
        strength = np.zeros((size, size))
        if box is not None:
            y0, y1, x0, x1 = (int(np.clip(v, 0, size - 1)) for v in box)
            strength[y0:y1 + 1, x0:x1 + 1] = 1.0
        return RFResult.from_box(box, strength, strength, settings)
    if method == "gradient":
        return gradient_rf(model, neuron, channels, size, threshold, n_images, seed, settings)
    noise = stim.sparse_noise(size=size, n_frames=n_frames, dots=dots, dot_size=dot_size, seed=seed,
                              channels=channels)
    strength, signed, floor = sparse_noise_map(model, neuron, noise, batch_size, progress, plan=plan)
    settings.update(n_frames=n_frames, dots=dots, dot_size=dot_size, seed=seed)
    return RFResult.from_map(strength, signed, threshold, settings, floor=floor)


def gradient_rf(model: nn.Module, neuron: Unit, channels: int, size: int, threshold: float, n_images: int | None,
                seed: int, settings: dict) -> "RFResult":
    """The linear (gradient) footprint of ``neuron`` on ``n_images`` white-noise images; None: 64, doubled until the
    size's standard error is at most :data:`TARGET_SE` of the size (see :func:`receptive_field`)."""
    if n_images is not None and (isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 2):
        raise InsilicoError(f"receptive_field: n_images must be None (doubled until the size is stable) or an int "
                            f">= 2 (a bootstrap over groups of images gives the size's standard error), not "
                            f"{n_images!r}")
    return gradient_fields(model, [neuron], (channels, size, size), threshold, n_images, seed, [settings])[0]


def gradient_fields(model: nn.Module, neurons: Sequence[Unit], size: Sequence[int], threshold: float = 0.1,
                    n_images: int | None = None, seed: int = 0, settings: Sequence[dict] | None = None,
                    batch_size: int = 256, progress: bool = False) -> list["RFResult"]:
    """The linear (gradient) footprints of many neurons at once: :func:`receptive_field`'s gradient method, batched.

    Every neuron sees the same white-noise images (``white_noise(seed=seed)``, the first ``n`` of them); one
    backward pass serves ``batch_size`` (neuron, image) pairs of any neurons (:func:`insilico.gradient_map` with
    one unit per image), so a layer's channels cost one pass per chunk instead of one call each. Only running
    sums are kept (``|g|`` and ``g`` summed over colour channels, per group ``j % SE_FOLDS`` of the images, which
    the bootstrap of ``size_se`` resamples), so memory does not grow with the image count. ``n_images`` None: 64
    images, doubled (the new images only) for the neurons whose ``size_se`` is above :data:`TARGET_SE` of their
    size, up to :data:`MAX_GRADIENT_IMAGES`; an int: exactly that many (1: no standard error, ``size_se`` NaN).

    Parameters
    ----------
    neurons : list of Unit
        Located neurons (:func:`locate`), any modules.
    size : (C, H, W)
        The image size.
    settings : list of dict, optional
        Each neuron's result settings (default ``unit`` and ``neuron`` its address, ``method`` "gradient").

    Returns
    -------
    list of RFResult
        One per neuron, as :meth:`RFResult.from_gradient_maps` builds it, ``settings["n_images"]`` the count used.

    Example
    -------
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 5, stride=2), torch.nn.ReLU(), torch.nn.Conv2d(2, 2, 3))
    >>> found = gradient_fields(net, [Unit.parse("2[0,1,1]"), Unit.parse("2[1,2,2]")], (1, 16, 16), n_images=4)
    >>> [0 < f.size <= 9 for f in found], [f.settings["n_images"] for f in found]  # within the 9-px theoretical field
    ([True, True], [4, 4])
    """
    from ..attribution.gradients import gradient_map

    if n_images is not None and (isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 1):
        raise InsilicoError(f"gradient_fields: n_images must be None (doubled until the size is stable) or an "
                            f"int >= 1, not {n_images!r}")
    channels, side = int(size[0]), int(size[-1])
    settings = settings or [dict(unit=str(u), neuron=str(u), method="gradient") for u in neurons]
    target_se = TARGET_SE if n_images is None else None
    sums = np.zeros((len(neurons), 2 * SE_FOLDS, side, side))  # |g|, then g, per group j % SE_FOLDS of the images
    done, n, results = 0, FIRST_GRADIENT_IMAGES if n_images is None else n_images, [None] * len(neurons)
    running = list(range(len(neurons)))
    while running:
        images = stim.white_noise(size=side, n=n, seed=seed, channels=channels).images
        pairs = [(i, j) for i in running for j in range(done, n)]
        for a in range(0, len(pairs), batch_size):
            part = pairs[a:a + batch_size]
            maps = as_numpy(gradient_map(model, images[[j for _, j in part]], [neurons[i] for i, _ in part],
                                         method="gradient", progress=False)).astype(float)
            for (i, j), g in zip(part, maps):
                sums[i, j % SE_FOLDS] += np.abs(g).sum(0)
                sums[i, SE_FOLDS + j % SE_FOLDS] += g.sum(0)
        still = []
        for i in running:
            found = RFResult.from_gradient_sums(sums[i], n, threshold, dict(settings[i], n_images=n, seed=seed))
            reached = target_se is None or found.size_se <= target_se * found.size or not np.isfinite(found.size)
            results[i] = found
            if reached or 2 * n > MAX_GRADIENT_IMAGES:
                found.settings.update(target_se=target_se, se_reached=bool(reached))
            else:
                still.append(i)
        running, done, n = still, n, 2 * n
    return results


def locate(model: nn.Module, unit: str | Unit, channels: int, size: int,
           plan: Plan | None = None) -> tuple[Unit, tuple]:
    """The unit read at the centre of its map (:func:`insilico.layers.at_centre`, the rule of every experiment); and its
    module's sample shape, from the survey of ``plan`` (the call's :class:`~insilico.plan.Plan`; default one
    surveying an example input of ``(channels, size, size)``)."""
    unit = Unit.coerce(unit, model)
    module = unit.resolve(model)
    plan = plan_for(model, plan, example_input(model, (channels, size, size)))
    shape = sample_shapes(plan, [unit])[0]
    return at_centre(unit, shape, module if unit.op is None else None, family_at(model, unit)), shape


# ---------------------------------------------------------------------------------------
# Theoretical RF from the autograd graph
# ---------------------------------------------------------------------------------------
def theoretical_box(model: nn.Module, neuron: Unit, channels: int, size: int) -> tuple | None:
    """Inclusive ``(y0, y1, x0, x1)`` input box of ``neuron`` from kernel sizes, strides and paddings (unclamped).

    None when no path leads from the image to the unit.
    """
    probe = Probe(model)
    x = example_input(model, (channels, size, size)).requires_grad_()
    whole = Unit(neuron.module, neuron.step, None, neuron.output)
    with session(model, grad=True), probe.record(whole, keep_graph=True) as rec:
        model(x)
        out = need_tensor(whole, rec[whole], " for its receptive field")
    if out.grad_fn is None:
        return None
    hull = _walk(out.grad_fn, _start_box(model, neuron, tuple(out.shape[1:])), x)
    if hull is _NOTHING:
        return None
    if hull is None or len(hull) < 2:
        return (0, size - 1, 0, size - 1)
    (y0, y1), (x0, x1) = hull[-2], hull[-1]
    return (y0, y1, x0, x1)


_NOTHING = object()


def _start_box(model: nn.Module, neuron: Unit, shape: tuple) -> tuple | None:
    """The walk's start: ``((lo, hi), ...)`` of the position axes ``neuron`` reads in a map ``(C, H, W, ...)``
    (an index or a range per axis); None (no spatial origin: the whole image wherever a path leads) otherwise.

    The layout rule (:func:`insilico.layout.read_layout`) decides: channels-last ``(H, W, C)`` and token ``(T, D)``
    outputs reach the image through a permute or a reshape of the patch embedding, which the walk cannot follow
    position by position, so their theoretical RF is the whole image (an upper bound); a linear unit, or channels
    without a position, have no origin either.
    """
    index = neuron.index or ()
    layout, _ = read_layout(model, Unit(neuron.module, neuron.step, None, neuron.output), shape)
    if layout != "map" or len(shape) < 2 or len(index) < len(shape):
        return None
    start = []
    for axis, item in zip(shape[1:], index[1:]):
        picked = range(*item.indices(axis)) if isinstance(item, slice) else [int(item) % axis]
        if len(picked) == 0:
            return None
        start.append((min(picked), max(picked)))
    return tuple(start)


def _walk(root, start, image):
    order, seen, stack = [], set(), [(root, False)]
    while stack:  # iterative post-order DFS -> reverse gives a topological order (consumers first)
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if node in seen:
            continue
        seen.add(node)
        stack.append((node, True))
        for child, _ in node.next_functions:
            if child is not None and child not in seen:
                stack.append((child, False))
    order.reverse()
    need = {root: start}
    found = _NOTHING
    for node in order:
        if node not in need:
            continue
        box = need[node]
        if type(node).__name__ == "AccumulateGrad":
            if getattr(node, "variable", None) is image:
                found = box
            continue
        for k, (child, _) in enumerate(node.next_functions):
            if child is None:
                continue
            mapped = _back(node, k, box)
            if mapped is _NOTHING:
                continue
            need[child] = _hull(need[child], mapped) if child in need else mapped
    return found


def _hull(a, b):
    if a is None or b is None:
        return None
    if len(a) != len(b):
        return None
    return tuple((min(p[0], q[0]), max(p[1], q[1])) for p, q in zip(a, b))


def _back(node, k: int, box):
    """The interval of input ``k`` of autograd ``node`` that output interval ``box`` depends on."""
    name = type(node).__name__
    if box is None:
        return None
    if name.startswith("ConvolutionBackward"):
        if k != 0:
            return _NOTHING  # weight and bias
        if node._saved_transposed:
            return None
        kernel = tuple(node._saved_weight.shape[2:])
        return _through(box, kernel, node._saved_stride, node._saved_padding, node._saved_dilation)
    if "Pool" in name and "Adaptive" not in name and hasattr(node, "_saved_kernel_size"):
        kernel = node._saved_kernel_size
        stride = node._saved_stride or kernel
        dilation = getattr(node, "_saved_dilation", None) or (1,) * len(kernel)
        return _through(box, kernel, stride, node._saved_padding, dilation)
    if name.startswith("Upsample"):
        out_size = node._saved_output_size
        in_size = node._saved_self_sym_sizes[-len(out_size):] if out_size else None
        if not out_size or len(out_size) != len(box):
            return None
        margin = 0 if "Nearest" in name else 1
        return tuple((max(0, math.floor(lo * i / o) - margin), math.floor(hi * i / o) + margin)
                     for (lo, hi), i, o in zip(box, in_size, out_size))
    if any(tag in name for tag in _WHOLE):
        return None
    return box


def _through(box, kernel, stride, padding, dilation):
    n = len(kernel)
    if len(box) < n:
        return None
    head, tail = box[:-n], box[-n:]
    mapped = tuple((lo * s - p, hi * s - p + d * (kk - 1))
                   for (lo, hi), kk, s, p, d in zip(tail, kernel, stride, padding, dilation))
    return head + mapped


# ---------------------------------------------------------------------------------------
# Sparse-noise reverse correlation
# ---------------------------------------------------------------------------------------
def sparse_noise_map(model: nn.Module, neuron: Unit, noise, batch_size: int = 256, progress: bool = False,
                     plan: Plan | None = None):
    """``(strength, signed ON - OFF map, noise floor)`` of one unit from a sparse-noise StimulusSet
    (``plan``: the call's :class:`~insilico.plan.Plan`)."""
    values, _ = record_units(model, noise, [neuron], batch_size=batch_size, progress=progress, desc="sparse noise",
                             plan=plan)
    r = values.sum(1).double().numpy()
    p = noise.params[0]
    mean, contrast = p["mean"], p["contrast"]
    signs = torch.round((noise.images[:, 0].double() - mean) / (mean * contrast)).flatten(1).numpy()  # (F, HW)
    on, off = (signs > 0).astype(float), (signs < 0).astype(float)
    half = np.arange(len(r)) % 2 == 0

    def maps(rows):
        centred = r[rows] - r[rows].mean()
        n_on, n_off = on[rows].sum(0), off[rows].sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            on_map = np.where(n_on > 0, on[rows].T @ centred / np.maximum(n_on, 1), 0.0)
            off_map = np.where(n_off > 0, off[rows].T @ centred / np.maximum(n_off, 1), 0.0)
        return on_map - np.median(on_map), off_map - np.median(off_map)

    on_map, off_map = maps(slice(None))
    on_a, off_a = maps(half)
    on_b, off_b = maps(~half)
    # split-half estimate of the noise in one full-data map value: var(a - b) = 4 var(full)
    both = (on[half].sum(0) > 0) & (on[~half].sum(0) > 0) & (off[half].sum(0) > 0) & (off[~half].sum(0) > 0)
    diffs = np.concatenate([(on_a - on_b)[both], (off_a - off_b)[both]])
    sd = 0.5 * float(np.std(diffs)) if len(diffs) else 0.0
    side = noise.images.shape[-1]
    strength = (np.abs(on_map) + np.abs(off_map)).reshape(side, side)
    signed = (on_map - off_map).reshape(side, side)
    return strength, signed, 4.0 * sd


class RFResult(Result):
    """A receptive field: ``size`` and ``center`` (y, x) in pixels, the ``map``, its ``box`` and ``extent``."""

    @classmethod
    def from_box(cls, box, strength, signed, settings) -> "RFResult":
        if box is None:
            arrays = dict(box=np.full(4, np.nan), center=np.full(2, np.nan), extent=np.full(2, np.nan))
        else:
            y0, y1, x0, x1 = box
            arrays = dict(box=np.array(box, float), center=np.array([(y0 + y1) / 2, (x0 + x1) / 2]),
                          extent=np.array([y1 - y0 + 1, x1 - x0 + 1], float))
        arrays.update(map=np.asarray(strength, float), signed_map=np.asarray(signed, float),
                      centroid=arrays["center"].copy())
        return cls(arrays, settings)

    @classmethod
    def from_map(cls, strength, signed, threshold, settings, floor: float = 0.0) -> "RFResult":
        peak = float(strength.max())
        cut = max(threshold * peak, floor)
        inside = strength > cut if peak > 0 else np.zeros_like(strength, bool)
        if inside.any():  # keep the 8-connected region around the peak: isolated noise pixels stay out
            from scipy import ndimage

            labels, _ = ndimage.label(inside, structure=np.ones((3, 3)))
            inside = labels == labels[np.unravel_index(np.argmax(strength), strength.shape)]
        if not inside.any():
            return cls.from_box(None, strength, signed, settings)
        ys, xs = np.nonzero(inside)
        result = cls.from_box((ys.min(), ys.max(), xs.min(), xs.max()), strength, signed, settings)
        w = strength * inside
        yy, xx = np.indices(strength.shape)
        result.arrays["centroid"] = np.array([(w * yy).sum() / w.sum(), (w * xx).sum() / w.sum()])
        result.settings["cut"] = cut
        return result

    @classmethod
    def from_gradient_maps(cls, maps: np.ndarray, threshold: float, settings: dict) -> "RFResult":
        """The linear (gradient) footprint from gradient maps ``(M, C, H, W)`` of one unit on ``M >= 2`` images:
        strength ``mean_m sum_c |g|``, the signed map ``mean_m sum_c g``, and ``size_se`` (pixels), the bootstrap
        of the size over :data:`SE_FOLDS` groups of the images (see :meth:`from_gradient_sums`; 0 for a linear
        unit)."""
        maps = np.asarray(maps, float)
        sums = np.stack([np.abs(maps[k::SE_FOLDS]).sum((0, 1)) for k in range(SE_FOLDS)]
                        + [maps[k::SE_FOLDS].sum((0, 1)) for k in range(SE_FOLDS)])
        return cls.from_gradient_sums(sums, len(maps), threshold, settings)

    @classmethod
    def from_gradient_sums(cls, sums: np.ndarray, n: int, threshold: float, settings: dict) -> "RFResult":
        """:meth:`from_gradient_maps` from running sums ``(2K, H, W)`` over ``n`` images in ``K`` groups (image
        ``j`` in group ``j % K``): ``sum_c |g|`` per group, then ``sum_c g`` per group.

        ``size_se`` is the bootstrap over the ``G = min(K, n)`` non-empty groups: :data:`SE_RESAMPLES` draws of G
        groups with replacement (a fixed generator: the same sums give the same value), the size of each draw's
        summed maps, and their SD times ``sqrt(G / (G - 1))`` (the bootstrap's variance over G groups is
        ``(G - 1) / G`` of the sampling variance). With one image ``size_se`` is NaN."""
        sums = np.asarray(sums, float)
        k = len(sums) // 2
        counts = np.array([len(range(g, n, k)) for g in range(k)])  # images per group
        result = cls.from_map(sums[:k].sum(0) / n, sums[k:].sum(0) / n, threshold,
                              {**settings, "measure": "linear (gradient) footprint"})
        groups = np.flatnonzero(counts)
        result.settings["se_groups"] = int(len(groups))
        if len(groups) < 2:
            result.arrays["size_se"] = np.array(np.nan)
            return result
        draws = groups[np.random.default_rng(0).integers(0, len(groups), (SE_RESAMPLES, len(groups)))]
        sizes = [cls.from_map(sums[d].sum(0) / counts[d].sum(), sums[k + d].sum(0) / counts[d].sum(), threshold,
                              dict(settings)).size for d in draws]
        g = len(groups)
        result.arrays["size_se"] = np.array(float(np.std(sizes, ddof=1)) * math.sqrt(g / (g - 1)))
        return result

    @property
    def size_se(self) -> float:
        """Standard error of :attr:`size` (pixels): the bootstrap over groups of the noise images (gradient
        method; NaN for the others)."""
        return float(self.arrays.get("size_se", np.nan))

    @property
    def size(self) -> float:
        """Geometric mean of the RF's height and width, in pixels."""
        h, w = self.arrays["extent"]
        return float(math.sqrt(h * w))

    @property
    def center(self) -> tuple[float, float]:
        """Centre ``(y, x)`` of the RF box, pixel coordinates (row, column)."""
        return tuple(float(v) for v in self.arrays["center"])

    def table(self) -> dict:
        return {}

    def plot(self, ax=None, signed: bool = True):
        """The RF map with its box."""
        import matplotlib.patches as patches

        fig, ax = new_axes(ax, figsize=(3.5, 3.5))
        image = self.signed_map if signed else self.map
        lim = float(np.abs(image).max()) or 1.0
        ax.imshow(image, cmap="RdBu_r" if signed else "magma", vmin=-lim if signed else 0, vmax=lim)
        if np.all(np.isfinite(self.box)):
            y0, y1, x0, x1 = self.box
            ax.add_patch(patches.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False,
                                           edgecolor="k", lw=1))
        measure = self.settings.get("measure", self.settings["method"])
        se = f" ± {self.size_se:.1f}" if np.isfinite(self.size_se) else ""
        ax.set_title(f"{self.settings['neuron']} ({measure}): {self.size:.1f}{se} px", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        return fig


# ---------------------------------------------------------------------------------------
# RF size per layer
# ---------------------------------------------------------------------------------------
def spatial_layers(model: nn.Module, channels: int, size: int) -> list[str]:
    """Conv2d and (non-adaptive) pooling modules whose output depends on the image, in call order.

    The layer chooser's ``"local"`` kind (:func:`insilico.layers.choose_layers`)
    at the first call of recurrent modules (the feed-forward sweep): the
    modules with a local receptive field (adaptive pools see the whole
    image), kept when a path from the image reaches them (a theoretical box exists).
    """
    if not any(isinstance(m, LOCAL) for m in model.modules()):
        raise InsilicoError(f"{type(model).__name__} has no Conv2d or pooling layers; pass layers= explicitly")
    layers = choose_layers(model, example_input(model, (channels, size, size)), kind="local", step="first")
    plan = Plan(model, example_input(model, (channels, size, size)))  # one survey locates every layer
    return [layer for layer in layers if theoretical_box(model, locate(model, layer, channels, size, plan=plan)[0],
                                                         channels, size) is not None]


@register_tool("experiment", takes_images=False, follows_dtype=False)
@renamed(input_size="size")
def receptive_field_sizes(
    model: nn.Module,
    layers: Sequence[str] | None = None,
    size: int | Sequence[int] | None = None,
    methods: Sequence[str] = ("theoretical", "gradient"),
    progress: bool = True,
    **options: Any,
) -> "RFSizesResult":
    """RF size and centre of the centre unit of each layer (all channels), by each method.

    Parameters
    ----------
    layers : list of str, optional
        Default: every Conv2d and pooling module that sees the image, in
        module order; modules called several times (recurrence) at their
        first call, the feed-forward sweep (ask for ``"layers.1@3"`` to see
        the RF grow over time steps). A token layer ``(T, D)`` is read at its centre
        patch token, a channels-last stage ``(H, W, C)`` at its centre position, as
        :func:`receptive_field` reads them.
    size : int, (H, W) or (C, H, W), optional
        The image size (square), read as :func:`receptive_field` reads it; default ``model.input_size``.
    methods : list of str
        Among ``"theoretical"``, ``"gradient"``, ``"sparse_noise"``.
    **options
        Passed to :func:`receptive_field` (``threshold``, ``n_images``, ...).

    Returns
    -------
    RFSizesResult
        ``layers``, ``depth`` (1..L) and per method ``size_<method>``; with the gradient method its standard
        error ``size_se_gradient`` (:func:`receptive_field`).
    """
    from tqdm.auto import tqdm

    channels, _, size = image_size(model, size, square=True)
    layers = list(layers) if layers is not None else spatial_layers(model, channels, size)
    sizes = {m: [] for m in methods}
    centres = {m: [] for m in methods}
    errors = {m: [] for m in methods}
    for layer in tqdm(layers, desc="RF per layer", disable=not progress, leave=False):
        for method in methods:
            rf = receptive_field(model, layer, size=(channels, size, size), method=method, **options)
            sizes[method].append(rf.size)
            centres[method].append(rf.center)
            errors[method].append(rf.size_se)
    arrays = {"layers": np.array(layers), "depth": np.arange(1, len(layers) + 1)}
    for method in methods:
        arrays[f"size_{method}"] = np.array(sizes[method], float)
        arrays[f"center_{method}"] = np.array(centres[method], float)
        if method == "gradient":
            arrays["size_se_gradient"] = np.array(errors[method], float)
    return RFSizesResult(arrays, dict(methods=list(methods), input_size=[channels, size, size], model=type(model).__name__,
                                      **{k: v for k, v in options.items()}))


class RFSizesResult(Result):
    """RF size per layer (``layers``, ``depth``, ``size_<method>``), plotted against depth."""

    sample_arrays = ("layers", "size_se_gradient") + tuple(f"{kind}_{m}" for kind in ("size", "center")
                                                           for m in METHODS)

    @classmethod
    def _joined(cls, result):
        result.arrays["depth"] = np.arange(1, len(result.arrays["layers"]) + 1)
        return result

    def table(self) -> dict:
        cols = {"layer": self.layers, "depth": self.depth}
        for m in self.settings["methods"]:
            cols[f"size_{m}"] = self.arrays[f"size_{m}"]
        if "size_se_gradient" in self.arrays:
            cols["size_se_gradient"] = self.arrays["size_se_gradient"]
        return cols

    def plot(self, ax=None):
        """RF size (pixels) vs layer depth, one line per method; the image size dashed."""
        fig, ax = new_axes(ax, figsize=(6, 3.5))
        styles = {"theoretical": "k-", "gradient": "o-", "sparse_noise": "s-"}
        for m in self.settings["methods"]:
            ax.plot(self.depth, self.arrays[f"size_{m}"], styles.get(m, "o-"), label=m.replace("_", " "))
        side = np.ravel(self.settings["input_size"])[-1]  # (C, H, W); an int side in results of older versions
        ax.axhline(side, color="0.6", ls="--", lw=1, label="image")
        ax.set_xticks(self.depth)
        ax.set_xticklabels([str(n) for n in self.layers], rotation=45, ha="right", fontsize=7)
        ax.set_xlabel("layer")
        ax.set_ylabel("RF size (pixels)")
        ax.legend(fontsize=7, frameon=False)
        fig.tight_layout()
        return fig
