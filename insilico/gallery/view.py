"""How the gallery reads a layer of any architecture: its units and the positions they are read over.

One :class:`LayerView` per layer: a unit is a channel of a map ``(C, H, W)`` or
of a channels-last stage ``(H, W, C)`` (Swin, ConvNeXt), a feature of a token
layer ``(T, D)`` (a ViT block), a head of an attention module's per-head outputs
``"attn:heads"`` ``(heads, L, head_dim)`` (its value at a query token: the norm of
the head's output there; :func:`head_exemplars`, :func:`attention_rows`), or a
value of a vector ``(D,)``; it is read at
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
>>> h = LayerView.of("blocks.3.attn:heads", (2, 5, 8), "heads", None)   # 2 heads, CLS + 2 x 2 queries
>>> h.n_units, h.grid, h.spatial, str(h.channel("blocks.3.attn:heads", 1)), tuple(h.as_map(torch.ones(3, 2, 5, 8)).shape)
(2, (2, 2), False, 'blocks.3.attn:heads[1]', (3, 2, 2, 2))
>>> LayerView.of("blocks.3.attn:weights", (2, 5, 5), "heads", None)
Traceback (most recent call last):
...
insilico.errors.InsilicoError: blocks.3.attn:weights is an attention part (2, 5, 5): the gallery's head units are ...
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..errors import InsilicoError
from ..layers import at_centre
from ..layers.families import family_at
from ..layout import channel_index, patch_grid, prefix_count, read_layout
from ..objectives import Objective
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
    calls : int or None
        How many times the layer's module runs in one forward pass, when more than once (a recurrent
        layer's time steps; the layer names one of them, ``"layers.1.lateral@2"``); else None.
    """

    shape: tuple
    layout: str
    prefix: int | None
    grid: tuple | None
    calls: int | None = None

    @classmethod
    def read(cls, model: nn.Module, layer: str | Unit, shape: tuple, calls: int | None = None) -> LayerView:
        """The view of ``layer``'s output ``shape`` (one sample) in ``model``, its layout by the layout rule
        (:func:`insilico.layout.read_layout`: the module and the model's family decide); ``calls`` the module's
        calls per forward pass (kept when more than one)."""
        layout, prefix = read_layout(model, Unit.coerce(layer, model), tuple(shape))
        view = cls.of(str(layer), tuple(shape), layout, prefix)
        return dataclasses.replace(view, calls=calls) if calls is not None and calls > 1 else view

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
        elif layout == "heads" and len(shape) == 3 and Unit.parse(layer).part == "heads":
            found = patch_grid(shape[1], prefix)
            grid = (found[1], found[1]) if found else (shape[1] - prefix_count(shape[1], prefix), 1)
        elif layout == "heads":
            raise InsilicoError(_refused_part(layer, shape))
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
        """Units read at a position of a 2-d grid (tuning curves and RF maps apply; not to heads, whose value is
        the norm of a vector, :meth:`as_map`, which no experiment reads)."""
        return self.grid is not None and self.layout != "heads" and (self.layout != "tokens" or self.grid[1] > 1)

    @property
    def centre_patch(self) -> int:
        """The centre position's flat index on :attr:`grid` (rows x columns; prefix tokens not counted)."""
        return (self.grid[0] // 2) * self.grid[1] + self.grid[1] // 2

    @property
    def prefix_tokens(self) -> int:
        """The leading tokens that are no patches (CLS, registers) of a token layer or a head's queries; else 0."""
        if self.layout not in ("tokens", "heads"):
            return 0
        return self.shape[self.layout == "heads"] - self.grid[0] * self.grid[1]

    def channel(self, layer: str, c: int) -> Unit:
        """Unit ``c`` over every position (what :func:`insilico.top_exemplars` ranks by its best position):
        ``layer[c]`` (map, vector, head), ``layer[:, :, c]`` (channels-last), ``layer[prefix:, c]`` (tokens)."""
        if self.layout == "heads":
            return Unit.parse(layer).replace(index=(c,))
        return Unit.parse(layer).replace(index=channel_index(c, self.shape, self.layout, self.prefix, layer))

    def neuron(self, model: nn.Module, layer: str, c: int) -> Unit:
        """Unit ``c`` at the centre (:func:`insilico.layers.at_centre`): ``layer[c, H//2, W//2]``,
        ``layer[H//2, W//2, c]``, ``layer[t, c]`` (``t`` the centre patch token), ``layer[c, t]`` (head ``c`` at
        the centre patch query); ``layer[c]`` for a vector."""
        index = [slice(None)] * len(self.shape)
        index[-1 if self.layout in ("channels_last", "tokens") else 0] = c
        unit = Unit.coerce(layer, model)
        module = unit.resolve(model) if unit.op is None else None
        return at_centre(unit.replace(index=tuple(index)), self.shape, module, family_at(model, unit))

    def as_map(self, whole: torch.Tensor) -> torch.Tensor:
        """A batch of the layer ``(N, *shape)`` as ``(N, units, *grid)`` (channels first, the positions a map;
        tokens: the patch tokens only), or ``(N, units)`` for a vector. Heads ``(N, heads, L, head_dim)``: the
        Euclidean norm of each head's output at each patch query token (the CLS and register queries left out),
        ``(N, heads, *grid)``: how strongly the head writes into that token's stream."""
        if self.grid is None:
            return whole.flatten(1)
        if self.layout == "channels_last":
            return whole.movedim(-1, 1)
        if self.layout == "tokens":
            return whole[:, self.prefix_tokens:].transpose(1, 2).unflatten(2, self.grid)
        if self.layout == "heads":
            return torch.linalg.vector_norm(whole[:, :, self.prefix_tokens:], dim=-1).unflatten(2, self.grid)
        return whole

    def position(self, index: tuple) -> tuple | None:
        """The ``(row, column)`` on :attr:`grid` of a neuron's full index into one sample's output (ints), None
        where it names no grid position (a prefix token, a vector)."""
        if self.grid is None or len(index) != len(self.shape) or not all(isinstance(i, int) for i in index):
            return None
        if self.layout in ("tokens", "heads"):
            patch = index[self.layout == "heads"] - self.prefix_tokens
            return divmod(patch, self.grid[1]) if patch >= 0 else None
        return tuple(index[:2]) if self.layout == "channels_last" else tuple(index[1:3])

    def describe(self, layer: str | None = None) -> str:
        """The reading, as the layer page states it (``layer``: the address, for a recurrent layer's time step)."""
        reading = self._reading()
        if self.calls is None or layer is None:
            return reading
        step = Unit.parse(layer).step
        step = step % self.calls if step is not None else self.calls - 1
        when = (f"a unit is read at time step {step} of 0-{self.calls - 1} (the module's call {step + 1} of "
                f"{self.calls} in one forward pass; every figure is at that step; the other steps are the layers "
                f"{Unit.parse(layer).replace(step=0, index=None)} ... @{self.calls - 1}), and each unit page shows its "
                "time course: the unit at every step on its top exemplars, where each drives it most at this step")
        return f"{reading}; {when}" if reading else when

    def _reading(self) -> str:
        if self.layout == "tokens":
            return ("a unit is feature d at the centre patch token (the patch at the image centre; the CLS "
                    "and register tokens excluded); exemplars rank its best patch token")
        if self.layout == "channels_last":
            return "a unit is channel c of the channels-last stage (H, W, C), read at the centre position"
        if self.layout == "heads":
            return ("a unit is attention head h: its activation is the norm of the head's output (its context vector "
                    "before the output projection) at a patch query token, read at the centre patch token (the CLS "
                    "and register queries excluded); exemplars rank its best patch token, and under each exemplar "
                    "the head's attention from that token and from the CLS token (the centre patch token where "
                    "the model has none) is drawn over the image; heads have no tuning curves or RF maps")
        return ""


class HeadNorm(Objective):
    """Per sample: the norm of head ``head``'s output at patch query ``position`` (flat on the patch grid; default
    the centre patch), :meth:`LayerView.as_map`'s rule, as an :class:`insilico.objectives.Objective`, so that
    :func:`insilico.maximize` can drive a head (``Objective.stack`` of one per image) by the value its page shows.

    Example
    -------
    >>> import torch
    >>> view = LayerView.of("attn:heads", (2, 5, 4), "heads", None)       # 2 heads, CLS + 2 x 2 queries
    >>> out = torch.zeros(1, 2, 5, 4); out[0, 1, 4] = torch.tensor([3.0, 4.0, 0.0, 0.0])
    >>> HeadNorm("attn:heads", view, 1)({"attn:heads": out}).tolist()   # centre patch (1, 1): token 4
    [5.0]
    """

    def __init__(self, layer: str, view: LayerView, head: int, position: int | None = None):
        if view.layout != "heads":
            raise InsilicoError(f"HeadNorm reads an attention module's ':heads', not {layer} ({view.layout})")
        self.layer, self.view, self.head = Unit.parse(layer).replace(index=None), view, int(head)
        self.position = view.centre_patch if position is None else int(position)
        self.units = (self.layer,)

    def forward(self, acts, images):
        return self.view.as_map(acts.whole(self.layer))[:, self.head].flatten(1)[:, self.position]

    def __repr__(self) -> str:
        return f"HeadNorm({str(self.layer)!r}, head={self.head}, position={self.position})"


def head_exemplars(model: nn.Module, stimuli, layer: str, view: LayerView, heads: list[int], k: int,
                   batch_size: int = 64) -> list:
    """The top ``k`` stimuli of each of ``heads`` of ``layer`` (an attention module's ``:heads``), ranked by the
    head's best patch query token (:meth:`LayerView.as_map`: the norm of the head's output there).

    One pass over ``stimuli`` (batches of :func:`insilico.recording.batches`, the layer recorded by a Probe
    with ``stop=True``); the heads' norm maps ``(N, heads, *grid)`` are ranked by :func:`insilico.top_exemplars`
    (a Recording of them), so ties, ``k`` and positions follow the one ranking rule. Returns one
    :class:`~insilico.attribution.exemplars.Exemplars` per head: ``unit`` the head (``"attn:heads[h]"``),
    ``positions`` the best patch's ``(row, column)`` on the patch grid, ``neurons`` the head's output at
    that query token (``"attn:heads[h,t]"``, ``t`` counting the CLS and register tokens).
    """
    from ..attribution.exemplars import top_exemplars
    from ..probe import Probe
    from ..recording import Recording, batches, stimulus_source
    from ..session import session

    probe, source, maps = Probe(model), stimulus_source(stimuli, model=model), []
    with session(model) as s:
        for _, batch in batches(source, batch_size, s.device, s.dtype):
            with probe.record(layer, stop=True) as rec:
                rec.forward(s.inputs(batch))  # stops after the layer
                maps.append(view.as_map(rec[layer].detach())[:, heads].float().cpu())
    norms = Recording({"head_norm": torch.cat(maps).numpy()}, ids=source.ids, params=source.params)
    found = top_exemplars(None, norms, [f"head_norm[{i}]" for i in range(len(heads))], k=k, progress=False)
    unit = Unit.parse(layer)
    for h, ex in zip(heads, found):
        ex.unit = str(unit.replace(index=(h,)))
        tokens = [view.prefix_tokens + r * view.grid[1] + c for r, c in ex.positions.tolist()]
        ex.neurons = [str(unit.replace(index=(h, t))) for t in tokens]
    return found


def attention_rows(model: nn.Module, images: torch.Tensor, layer: str, view: LayerView, heads: list[int],
                   queries: list[int]) -> dict:
    """Each image's attention pattern of one head, from two query tokens, drawn over the image.

    ``images`` ``(M, C, H, W)`` in pixel space, ``heads[m]`` the head and ``queries[m]`` the query token
    (an index along the tokens, CLS counted) of image ``m``. The pattern is the module's ``:weights`` part
    (:mod:`insilico.attention`, rows sum to 1), recorded by a Probe in one forward pass; each row over
    the patch keys is put on the patch grid, upsampled (nearest: one block per patch) and the image is
    shown with each pixel's brightness scaled by its patch's attention over the row's largest
    (``0.1 + 0.9 * a / max a``).

    Returns
    -------
    dict
        ``"query"`` and ``"cls"``: ``(M, H, W, 3)`` arrays in [0, 1], attention from ``queries[m]`` and from
        token 0 (the CLS token; the centre patch token where the model has no prefix tokens, ``cls_query``);
        ``"prefix_share"``: ``(M,)`` the share of ``queries[m]``'s attention on the prefix tokens (not drawn);
        ``"peak"``: ``(M,)`` its most attended patch's attention over the mean patch's (1: uniform, the drawing
        then flat); ``"cls_query"``: the second query's token index.
    """
    from ..probe import Probe
    from ..session import session

    weights = Unit.parse(layer).replace(output="weights", index=None)
    extra, (h, w) = view.prefix_tokens, images.shape[-2:]
    second = 0 if extra else view.prefix_tokens + view.centre_patch
    with session(model) as s, Probe(model).record(weights, stop=True) as rec:
        rec.forward(s.inputs(images.to(s.device, s.dtype)))
        pattern = rec[weights].detach().float().cpu()                      # (M, heads, L, S)
    rows = torch.arange(len(images))
    picked = pattern[rows, torch.as_tensor(heads)]                         # (M, L, S)
    query = picked[rows, torch.as_tensor(queries)]                         # (M, S)
    out = {"prefix_share": query[:, :extra].sum(-1).numpy(), "cls_query": second,
           "peak": (query[:, extra:].amax(-1) / query[:, extra:].mean(-1).clamp_min(1e-30)).numpy()}
    for name, query in (("query", torch.as_tensor(queries)), ("cls", torch.full((len(images),), second))):
        grid = picked[rows, query, extra:].reshape(len(images), 1, *view.grid)
        grid = grid / grid.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)
        scale = torch.nn.functional.interpolate(grid, size=(h, w), mode="nearest")
        shown = images.float().cpu() * (0.1 + 0.9 * scale)
        out[name] = shown.expand(-1, 3, -1, -1).permute(0, 2, 3, 1).clamp(0, 1).numpy()
    return out


def head_exemplar_pages(work, layer: str, channels: list[int], found: list) -> list[dict]:
    """The gallery's exemplars stage for attention heads (``work`` a :class:`~insilico.gallery.stages.Work`):
    per head its exemplars (:func:`head_exemplars`), each with the head's attention from its best query token
    and from the CLS token drawn over it (:func:`attention_rows`), saved as ``exemplars.png`` (three rows);
    the fields are the exemplars stage's, plus ``rows="attention"``, ``prefix_share`` (per exemplar, the best
    query's attention on the CLS and register tokens, which the drawing leaves out), ``peak`` (its most attended
    patch over the mean patch) and ``second_query``."""
    import numpy as np

    from ..plot import as_images, mosaic

    x, labels = work.photos
    k, view = len(found[0].indices), work.view(layer)
    picked = [int(j) for e in found for j in e.indices.tolist()]
    queries = [int(Unit.parse(n).index[1]) for e in found for n in e.neurons]
    drawn = attention_rows(work.model, x[picked], layer, view, [c for c in channels for _ in range(k)], queries)
    pages = []
    for i, c in enumerate(channels):
        part = slice(i * k, (i + 1) * k)
        rows = [as_images(x[picked[part]]), drawn["query"][part], drawn["cls"][part]]
        work.save_png(layer, c, "exemplars", mosaic(np.concatenate(rows), ncols=k, pad=2))
        pages.append({"k": k, "indices": found[i].indices.tolist(), "activations": found[i].activations.tolist(),
                      "labels": [labels[j] for j in found[i].indices.tolist()], "n_stimuli": len(x),
                      "neurons": found[i].neurons, "rows": "attention",
                      "prefix_share": [float(v) for v in drawn["prefix_share"][part]],
                      "peak": [float(v) for v in drawn["peak"][part]],
                      "second_query": int(drawn["cls_query"])})
    return pages


def time_course(model: nn.Module, images: torch.Tensor, layer: str, view: LayerView, channels: list[int],
                positions: list[int] | None) -> torch.Tensor:
    """``(M, T)``: unit ``channels[m]`` of ``layer``'s module at each of its ``T`` calls (time steps) in one
    forward pass on ``images[m]``, read at flat position ``positions[m]`` of :attr:`LayerView.grid`
    (None: a layer without positions).

    One forward pass with a Probe recording every call of the module (the record's ``steps``: ``(M, T, ...)``),
    each step put on its map by :meth:`LayerView.as_map`.

    Example
    -------
    >>> import insilico
    >>> blt = insilico.models.load("blt")
    >>> v = LayerView.read(blt, "layers.1.lateral@2", (64, 8, 8), calls=4)
    >>> tuple(time_course(blt, torch.rand(2, 3, 64, 64), "layers.1.lateral@2", v, [3, 5], [0, 36]).shape)
    (2, 4)
    """
    from ..probe import Probe
    from ..session import session

    every = Unit.parse(layer).replace(step=None, index=None)
    with session(model) as s, Probe(model).record(every) as rec:
        model(s.inputs(images))
        steps = rec.steps(every).detach().float().cpu()                 # (M, T, *shape)
    m, t = steps.shape[:2]
    maps = view.as_map(steps.flatten(0, 1)).unflatten(0, (m, t))        # (M, T, units, *grid)
    rows = torch.arange(m)
    picked = maps[rows, :, torch.as_tensor(channels)]                   # (M, T, *grid)
    if view.grid is None:
        return picked
    return picked.flatten(2)[rows, :, torch.as_tensor(positions)]


def add_time_course(work, layer: str, channels: list[int], found: list, pages: list[dict]) -> list[dict]:
    """The exemplars stage's records of a recurrent layer (``work.view(layer).calls``) with ``time_course``:
    ``steps`` (0..T-1), ``step`` (the layer's) and ``values`` (per top exemplar, the unit at every step, read at
    the position where the exemplar drives it most at the layer's step): :func:`time_course`."""
    view = work.view(layer)
    x = work.photos[0]
    k = len(found[0].indices)
    picked = [int(j) for e in found for j in e.indices.tolist()]
    where = None
    if view.grid is not None:
        where = [sum(int(v) * w for v, w in zip(p, (view.grid[-1], 1)[-len(p):]))
                 for e in found for p in e.positions.tolist()]
    values = time_course(work.model, x[picked], layer, view, [c for c in channels for _ in range(k)], where)
    step = Unit.parse(layer).step
    step = step % view.calls if step is not None else view.calls - 1
    for i, page in enumerate(pages):
        course = values[i * k:(i + 1) * k]
        page["time_course"] = {"steps": list(range(view.calls)), "step": step,
                               "values": [[float(v) for v in row] for row in course.tolist()]}
    return pages


def _refused_part(layer: str, shape: tuple) -> str:
    """Why an attention part other than a module's ``:heads`` ``(heads, queries, head_dim)`` is no gallery layer."""
    module = Unit.parse(layer).module
    if len(shape) != 3:
        return (f"{layer} is an attention part {shape} of a module that attends within windows (heads, windows, "
                f"T, .): its heads have no one patch grid and are not gallery units; give the module's output "
                f"'{module}' as the layer, or study the heads with a Probe (record '{layer}')")
    return (f"{layer} is an attention part {shape}: the gallery's head units are the per-head outputs (heads, "
            f"queries, head_dim) '{module}:heads' (their attention patterns are drawn on each head's exemplars); "
            f"give that as the layer, or study '{layer}' with a Probe (record '{layer}') or insilico.attention_rollout")


__all__ = ["HeadNorm", "LayerView", "add_time_course", "attention_rows", "head_exemplar_pages", "head_exemplars", "time_course"]
