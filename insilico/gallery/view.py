"""How the gallery reads a layer of any architecture: its units and the positions they are read over.

One :class:`LayerView` per layer: a unit is a channel of a map ``(C, H, W)`` or
of a channels-last stage ``(H, W, C)`` (Swin, ConvNeXt), a feature of a token
layer ``(T, D)`` (a ViT block), or a value of a vector ``(D,)``; it is read at
the centre of its positions by the one centre rule
(:func:`insilico.layers.at_centre`; for tokens the patch token at the image
centre, the CLS and register tokens excluded) and its exemplars are ranked by
its best position (:func:`insilico.top_exemplars`). The layout comes from the
layout rule (:func:`insilico.layout.read_layout`), never from the shape alone.

Example
-------
>>> v = LayerView.of("blocks.3", (5, 32), "tokens", None)      # CLS + a 2 x 2 patch grid, 32 features
>>> v.n_units, v.grid, v.spatial, str(v.channel("blocks.3", 7))
(32, (2, 2), True, 'blocks.3[1:,7]')
>>> import torch
>>> tuple(v.as_map(torch.zeros(3, 5, 32)).shape)
(3, 32, 2, 2)
>>> v.position((4, 7)), v.position((0, 7)), LayerView.of("s", (4, 4, 8), "channels_last", None).position((1, 2, 5))
((1, 1), None, (1, 2))
>>> LayerView.of("blocks.3.attn:weights", (2, 5, 5), "heads", None)
Traceback (most recent call last):
...
insilico.errors.InsilicoError: blocks.3.attn:weights is an attention part (2, 5, 5) (heads, queries, .): ...
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..errors import InsilicoError
from ..layers import at_centre
from ..layers.families import family_at
from ..layout import channel_index, patch_grid, prefix_count, read_layout
from ..units import Unit


@dataclasses.dataclass(frozen=True)
class LayerView:
    """A layer as the gallery reads it: one unit per channel (a map ``(C, H, W)``, channels-last ``(H, W, C)``),
    per feature (tokens ``(T, D)``: feature ``d`` at every patch token, the CLS and register tokens left out)
    or per value (a vector ``(D,)``), each read at the centre of its ``grid`` of positions (the centre rule,
    :func:`insilico.layers.at_centre`: for tokens the patch token at the image centre).

    Attributes
    ----------
    shape : tuple
        One sample's output.
    layout : str
        ``"map"``, ``"channels_last"``, ``"tokens"`` or ``"vector"`` (:data:`insilico.layout.LAYOUTS`).
    prefix : int or None
        The family's prefix tokens (:func:`insilico.layout.patch_grid`).
    grid : (rows, columns) or None
        The positions a unit is read over, as a map: ``(H, W)`` (maps, channels-last), the patch grid
        (tokens; a sequence of ``P`` patches that is no square grid: ``(P, 1)``), None for a vector.
    """

    shape: tuple
    layout: str
    prefix: int | None
    grid: tuple | None

    @classmethod
    def read(cls, model: nn.Module, layer: str | Unit, shape: tuple) -> LayerView:
        """The view of ``layer``'s output ``shape`` (one sample) in ``model``, its layout by the layout rule
        (:func:`insilico.layout.read_layout`: the module and the model's family decide)."""
        layout, prefix = read_layout(model, Unit.coerce(layer, model), tuple(shape))
        return cls.of(str(layer), tuple(shape), layout, prefix)

    @classmethod
    def of(cls, layer: str, shape: tuple, layout: str, prefix: int | None) -> LayerView:
        """The view of ``layer``'s output ``shape`` in ``layout``; InsilicoError for layouts with no units."""
        if layout == "map" and len(shape) == 3 or layout == "channels_last" and len(shape) == 3:
            grid = tuple(shape[1:]) if layout == "map" else tuple(shape[:2])
        elif layout == "map" and len(shape) == 1 or layout == "vector":
            grid = None
        elif layout == "tokens":
            found = patch_grid(shape[0], prefix)
            grid = (found[1], found[1]) if found else (shape[0] - prefix_count(shape[0], prefix), 1)
        elif layout == "heads":
            raise InsilicoError(f"{layer} is an attention part {shape} (heads, queries, .): attention heads are not "
                                "gallery units yet; give the attention module's output or the block's tokens as the "
                                f"layer, and study the heads with a Probe (record '{layer}') or "
                                "insilico.attention_rollout")
        else:
            raise InsilicoError(f"the gallery shows channels of maps (C, H, W), channels-last stages (H, W, C), "
                                f"features of tokens (T, D) and values of vectors; {layer} gives a {layout} output "
                                f"{shape}: leave it out of the layers, or study it with the experiments "
                                "(insilico.experiments), which read every layout")
        return cls(tuple(shape), layout, prefix, grid)

    @property
    def n_units(self) -> int:
        return self.shape[-1] if self.layout in ("channels_last", "tokens") else self.shape[0]

    @property
    def spatial(self) -> bool:
        """Units read at a position of a 2-d grid (tuning curves and RF maps apply)."""
        return self.grid is not None and (self.layout != "tokens" or self.grid[1] > 1)

    def channel(self, layer: str, c: int) -> Unit:
        """Unit ``c`` over every position (what :func:`insilico.top_exemplars` ranks by its best position):
        ``layer[c]`` (map, vector), ``layer[:, :, c]`` (channels-last), ``layer[prefix:, c]`` (tokens)."""
        return Unit.parse(layer).replace(index=channel_index(c, self.shape, self.layout, self.prefix, layer))

    def neuron(self, model: nn.Module, layer: str, c: int) -> Unit:
        """Unit ``c`` at the centre (:func:`insilico.layers.at_centre`): ``layer[c, H//2, W//2]``,
        ``layer[H//2, W//2, c]``, ``layer[t, c]`` (``t`` the centre patch token); ``layer[c]`` for a vector."""
        index = [slice(None)] * len(self.shape)
        index[-1 if self.layout in ("channels_last", "tokens") else 0] = c
        unit = Unit.coerce(layer, model)
        module = unit.resolve(model) if unit.op is None else None
        return at_centre(unit.replace(index=tuple(index)), self.shape, module, family_at(model, unit))

    def as_map(self, whole: torch.Tensor) -> torch.Tensor:
        """A batch of the layer ``(N, *shape)`` as ``(N, units, *grid)`` (channels first, the positions a map;
        tokens: the patch tokens only), or ``(N, units)`` for a vector."""
        if self.grid is None:
            return whole.flatten(1)
        if self.layout == "channels_last":
            return whole.movedim(-1, 1)
        if self.layout == "tokens":
            extra = self.shape[0] - self.grid[0] * self.grid[1]
            return whole[:, extra:].transpose(1, 2).unflatten(2, self.grid)
        return whole

    def position(self, index: tuple) -> tuple | None:
        """The ``(row, column)`` on :attr:`grid` of a neuron's full index into one sample's output (ints), None
        where it names no grid position (a prefix token, a vector)."""
        if self.grid is None or len(index) != len(self.shape) or not all(isinstance(i, int) for i in index):
            return None
        if self.layout == "tokens":
            patch = index[0] - (self.shape[0] - self.grid[0] * self.grid[1])
            return divmod(patch, self.grid[1]) if patch >= 0 else None
        return tuple(index[:2]) if self.layout == "channels_last" else tuple(index[1:3])

    def describe(self) -> str:
        """The reading, as the layer page states it."""
        if self.layout == "tokens":
            return ("a unit is feature d at the centre patch token (the patch at the image centre; the CLS "
                    "and register tokens excluded); exemplars rank its best patch token")
        if self.layout == "channels_last":
            return "a unit is channel c of the channels-last stage (H, W, C), read at the centre position"
        return ""


__all__ = ["LayerView"]
