"""The plain layout rule: where a layout keeps its channels and positions, the centre rule, and position pooling.

One sample's output (no batch axis) has one of :data:`LAYOUTS`. *Which* one
a unit's output has is architecture knowledge (the module that gives it, the
model's family: :func:`insilico.layers.layout_of`, one row up); *what a layout
means* is this module's, so that probing (:meth:`insilico.Probe.record`'s
``reduce=``), the objectives and the gradient tools all read it the same way:

=============== ============ ===================================== ===================================
layout          shape        channels (features)                   positions
=============== ============ ===================================== ===================================
"map"           (C, H, W...) axis 0                                every axis after it
"channels_last" (H, W, C)    the last axis                         the axes before it
"tokens"        (T, D)       axis 1                                the patch tokens: the ``prefix``
                                                                   tokens (CLS, registers) dropped
                                                                   (:func:`patch_grid`)
"heads"         (heads, L, E) an attention part: no channel axis; position pooling refused
"vector"        (D,)         as written; no position axis
"scalar"        ()           as written
=============== ============ ===================================== ===================================

:func:`positions` puts a batch on ``(N, C, P)`` (channels, then the
positions flattened); :func:`pool` pools it over positions (``"mean"``,
``"max"``, ``"center"``: the centre rule, :func:`centre`). A layout that has
no channels and positions is refused with a :class:`~insilico.errors.UnitError`
that names the unit, its shape and its layout.

Which layout a unit has is read through :func:`read_layout`:
:mod:`insilico.layers` registers the family-aware reader when it is imported
(:func:`set_reader`; the row above cannot be imported from here), and
``insilico.Probe`` imports it. Without a reader, a layout is refused, never guessed.

Example
-------
>>> import torch
>>> x = torch.arange(2 * 3 * 2 * 4.0).view(2, 3, 2, 4)          # (N, H, W, C): channels last
>>> positions(x, "channels_last").shape, pool(x, "mean", "channels_last").shape
(torch.Size([2, 4, 6]), torch.Size([2, 4]))
>>> tokens = torch.rand(2, 1 + 9, 5)                              # CLS, then a 3 x 3 grid of patches
>>> bool((pool(tokens, "center", "tokens") == tokens[:, 1 + 4]).all())
True
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from .errors import InsilicoError, UnitError

LAYOUTS = ("map", "channels_last", "tokens", "heads", "vector", "scalar")
POOLS = ("mean", "max", "center")

#: The family-aware reader ``(model, unit, shape) -> (layout, prefix)`` (:func:`set_reader`).
_READER: list[Callable] = []


def set_reader(reader: Callable) -> None:
    """Register the reader of layouts: ``reader(model, unit, shape) -> (layout, prefix tokens or None)``.

    :mod:`insilico.layers` registers :func:`insilico.layers.families.read_layout` when imported.
    """
    _READER[:] = [reader]


def read_layout(model, unit, shape: tuple) -> tuple[str, int | None]:
    """``(layout, prefix)`` of ``unit``'s output ``shape`` (one sample) in ``model``, by the registered reader.

    Raises
    ------
    InsilicoError
        No reader is registered (``insilico.layers`` was never imported): import it, or use ``insilico.Probe``.
    """
    if not _READER:
        raise InsilicoError(f"the layout of {unit} (output {tuple(shape)} per sample) needs insilico's architecture "
                            "rules: `import insilico.layers` first (insilico.Probe and every tool do)")
    return _READER[0](model, unit, tuple(shape))


def centre_token(n_tokens: int, prefix: int | None = None) -> int:
    """The token at the image centre in a ViT-style sequence of ``n_tokens``.

    ``prefix`` tokens (a CLS token, registers) come first, then a g x g patch
    grid (row-major); the centre patch is row ``g // 2``, column ``g // 2``,
    the position a conv map's centre neuron takes (``H // 2, W // 2``). With
    ``prefix=None`` (the family does not say) ``g * g`` tokens are a grid and
    ``g * g + 1`` a CLS token followed by the grid (torchvision's and timm's
    ViTs); any other count is read at its middle (``rest // 2``: a 1-d sequence). With
    ``prefix`` given (the family's ViT) the rest is a patch grid: one that is no square
    (a non-square image) has no centre the count can tell, and is refused (its middle
    would be the start of a row, the image's left edge): name the token yourself.

    Raises
    ------
    UnitError
        ``prefix`` given and the tokens after it are no square grid.

    >>> centre_token(197), centre_token(196), centre_token(10), centre_token(201, prefix=5)
    (106, 105, 5, 110)
    """
    grid = patch_grid(n_tokens, prefix)
    if grid is not None:
        extra, side = grid
        return extra + (side // 2) * side + side // 2
    if prefix is not None and n_tokens > prefix:
        rest = n_tokens - prefix
        raise UnitError(f"{rest} patch tokens (after {prefix} prefix token{'s' if prefix != 1 else ''}) are no "
                        "square grid (a non-square image?), so the centre patch is not known from their count: "
                        "use square images, or name the token in the address (row r, column c of a grid w wide: "
                        f"token {prefix} + r * w + c)")
    extra = prefix or 0
    return extra + (n_tokens - extra) // 2


def patch_grid(n_tokens: int, prefix: int | None = None) -> tuple[int, int] | None:
    """``(prefix, side)`` when ``n_tokens`` are ``prefix`` tokens then a ``side`` x ``side`` patch grid, else None.

    ``prefix=None`` (the family does not say): ``g * g`` tokens have no prefix,
    ``g * g + 1`` a CLS token (torchvision's and timm's ViTs).

    >>> patch_grid(197), patch_grid(196), patch_grid(201, prefix=5), patch_grid(12), patch_grid(17, prefix=0)
    ((1, 14), (0, 14), (5, 14), None, None)
    """
    for extra in (0, 1) if prefix is None else (prefix,):
        side = math.isqrt(max(n_tokens - extra, 0))
        if side > 0 and side * side == n_tokens - extra:
            return extra, side
    return None


def prefix_count(n_tokens: int, prefix: int | None = None) -> int:
    """How many leading tokens are not patches: the grid's prefix (:func:`patch_grid`), else ``prefix`` (or 0)."""
    grid = patch_grid(n_tokens, prefix)
    return grid[0] if grid is not None else min(prefix or 0, n_tokens)


def centre(shape: tuple, layout: str, prefix: int | None = None) -> dict[int, int]:
    """The centre rule: ``{axis: index}`` of the position axes of one sample's ``shape`` in ``layout``.

    The feature / channel axes are not in it (a map's centre is every channel at
    ``(H // 2, W // 2)``); ``prefix`` is the family's count of prefix tokens
    (:func:`centre_token`). Vectors and scalars have no position axis (``{}``).
    """
    if layout == "map":
        return {axis: shape[axis] // 2 for axis in range(1, len(shape))}
    if layout == "channels_last":
        return {axis: shape[axis] // 2 for axis in range(len(shape) - 1)}
    if layout == "tokens":
        return {0: centre_token(shape[0], prefix)}
    if layout == "heads":
        return {1: centre_token(shape[1], prefix)}
    return {}


def channels_first(value: torch.Tensor, layout: str) -> torch.Tensor:
    """A batch ``(N, *shape)`` of ``layout`` with its channels (features) on axis 1 and its positions after.

    Channels-last ``(N, H, W, C)`` becomes ``(N, C, H, W)``; tokens ``(N, T, D)``
    become ``(N, D, T)`` (the features as channels, the tokens as positions);
    maps and the rest are returned as they are. What a tool that pools "over
    positions" or reads "a channel" applies before it does.

    >>> channels_first(torch.zeros(2, 7, 7, 96), "channels_last").shape, channels_first(torch.zeros(2, 17, 8), "tokens").shape
    (torch.Size([2, 96, 7, 7]), torch.Size([2, 8, 17]))
    """
    if layout == "channels_last":
        return value.movedim(-1, 1)
    if layout == "tokens":
        return value.transpose(1, 2)
    return value


def positions(value: torch.Tensor, layout: str, prefix: int | None = None, unit=None) -> torch.Tensor:
    """A batch ``(N, *shape)`` of ``layout`` as ``(N, C, P)``: channels, then the positions flattened (row-major).

    Tokens lose their ``prefix`` tokens (:func:`prefix_count`: CLS, registers),
    so the positions are the patches. A layout without channels and positions
    (vector, scalar, attention parts, a 1-axis map) raises a UnitError naming
    ``unit``, its shape and layout.
    """
    shape = tuple(value.shape[1:])
    if layout == "tokens" and len(shape) == 2:
        return value[:, prefix_count(shape[0], prefix):].transpose(1, 2)
    if layout == "map" and len(shape) >= 2 or layout == "channels_last" and len(shape) >= 2:
        return channels_first(value, layout).flatten(2)
    raise UnitError(f"{unit if unit is not None else 'this output'} gives {shape} per sample, layout {layout!r}: it "
                    f"has no channels over positions to pool; record it without reduce= and index it yourself, or "
                    f"name a map (C, H, W), a channels-last (H, W, C) or a token (T, D) layer")


def pool(value: torch.Tensor, how: str, layout: str, prefix: int | None = None, unit=None) -> torch.Tensor:
    """``(N, C)``: each channel of a batch ``(N, *shape)`` of ``layout`` pooled over its positions.

    ``how``: ``"mean"``, ``"max"``, or ``"center"`` (the value at the centre
    position, :func:`centre`; for tokens the centre patch, :func:`centre_token`).
    Errors as :func:`positions`.
    """
    if how not in POOLS:
        raise InsilicoError(f"pool over positions by one of {POOLS}, not {how!r}")
    flat = positions(value, layout, prefix, unit)
    if how == "mean":
        return flat.mean(dim=2)
    if how == "max":
        return flat.amax(dim=2)
    shape = tuple(value.shape[1:])
    middle = centre(shape, layout, prefix)
    index = [slice(None)] + [middle.get(axis, slice(None)) for axis in range(len(shape))]
    return value[tuple(index)]


def token_grid(value: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """A batch of tokens ``(N, T, D)`` as its patch grid ``(N, D, side, side)``, ``grid = (prefix, side)``
    (:func:`patch_grid`): the prefix tokens (CLS, registers) dropped, the patches row-major.

    >>> token_grid(torch.arange(10.0).view(1, 10, 1), patch_grid(10))[0, 0].tolist()
    [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]
    """
    extra, side = grid
    return value[:, extra:].transpose(1, 2).unflatten(2, (side, side))


def channel_index(channel: int, shape: tuple, layout: str, prefix: int | None = None, unit=None) -> tuple:
    """The index into one sample's ``shape`` that picks channel ``channel`` at every position (:func:`positions`).

    ``(c,)`` for a map; ``(:, :, c)`` for channels-last ``(H, W, C)``;
    ``(prefix:, c)`` for tokens (the patch tokens' feature ``c``); ``(c,)`` for a vector (feature ``c``).
    Other layouts raise as :func:`positions`.

    >>> channel_index(3, (7, 7, 96), "channels_last"), channel_index(3, (10, 8), "tokens")
    ((slice(None, None, None), slice(None, None, None), 3), (slice(1, None, None), 3))
    """
    if layout == "vector":
        return (channel,)
    positions(torch.empty((1, *shape), device="meta"), layout, prefix, unit)  # the same refusals
    if layout == "channels_last":
        return (slice(None),) * (len(shape) - 1) + (channel,)
    if layout == "tokens":
        return (slice(prefix_count(shape[0], prefix), None), channel)
    return (channel,)


__all__ = ["LAYOUTS", "POOLS", "centre", "centre_token", "channel_index", "channels_first", "patch_grid", "pool",
           "positions", "prefix_count", "read_layout", "set_reader", "token_grid"]
