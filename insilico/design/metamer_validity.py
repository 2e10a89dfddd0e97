"""Are metamers metamers? The validity report: null distances between natural images, the class check,
distances at every layer.

A metamer test means something only if the metamers are *valid*: closer to
their reference at the matched layer than natural images are to each other
(Feather et al. 2019, 2023). :func:`validity` (also
:meth:`MetamerResult.validity <insilico.design.metamer_result.MetamerResult.validity>`)
reports, per metamer: (a) the relative distance to its reference at the
matched layer against the null distribution of relative distances between
pairs of natural images from different photos (:func:`null_distances` over
:func:`natural_null_images`); (b) the model's top-1 class of the metamer and
of the reference; (c) the distance at every layer of the model (and of other
models), the layers chosen by :func:`insilico.layers.choose_layers`
(``kind="weights"``).

Example
-------
>>> import torch
>>> d = null_distances(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
>>> [round(v, 3) for v in d.tolist()]
[1.118, 2.236]
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .. import evaluate
from ..errors import InsilicoError
from ..layers import choose_layers, example_input
from ..pixels import check_images

#: Null distribution: held-out crops per bundled photo (16 photos), and the seed of their positions.
NULL_PER_CLASS, NULL_SEED = 5, 9001
CRITERIA = ("min", "percentile")


def record(model: nn.Module, units: Sequence[str], images: torch.Tensor, batch_size: int = 64,
           logits: bool = False) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """Flattened responses ``{unit: (N, D)}`` of ``units`` to ``images`` (and the model's outputs if ``logits``).

    Runs :func:`insilico.evaluate.responses` (a session: eval mode, no gradients,
    every module's own flags restored after; ONE Probe record over the batches).
    Without ``logits`` each pass ends after the last unit (layers after them
    need not take this image size); an error of the model before the units
    reaches the caller unchanged.

    Parameters
    ----------
    model : nn.Module
    units : list of str
        Unit addresses.
    images : tensor (N, C, H, W)
        Moved batch by batch to the model's device and dtype.
    batch_size : int
        Images per forward pass (default 64).
    logits : bool
        Also return the model's outputs (N, ...) (None when they are not tensors).

    Returns
    -------
    (dict {unit: float32 CPU tensor (N, D)}, float32 CPU tensor (N, ...) or None)

    Example
    -------
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU())
    >>> feats, out = record(model, ["0"], torch.rand(3, 1, 5, 5), logits=True)
    >>> tuple(feats["0"].shape), tuple(out.shape)
    ((3, 18), (3, 2, 3, 3))
    """
    units = [str(u) for u in units]
    values = evaluate.responses(model, images, units + ([""] if logits else []), batch_size=batch_size,
                                stop=not logits)
    feats = {u: v.reshape(len(v), -1).float().cpu() for u, v in zip(units, values)}
    out = values[-1] if logits else None
    return feats, out.float().cpu() if torch.is_tensor(out) else None


def relative_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``|a - b| / |b|`` row by row for flattened responses (N, D).

    Example
    -------
    >>> relative_distances(torch.tensor([[3.0, 4.5]]), torch.tensor([[3.0, 4.0]])).tolist()
    [0.10000000149011612]
    """
    return (a - b).norm(dim=1) / b.norm(dim=1).clamp_min(1e-30)


def null_distances(features: torch.Tensor, groups: Sequence | None = None) -> torch.Tensor:
    """Relative distances ``|f_i - f_j| / |f_j|`` of all ordered pairs i != j (of different groups).

    Parameters
    ----------
    features : tensor (M, D)
        Flattened responses of M natural images at one layer.
    groups : sequence of M labels, optional
        Pairs within a group (e.g. crops of one photo) are left out.

    Example
    -------
    >>> d = null_distances(torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 1.0]]), groups=["a", "b", "b"])
    >>> [round(v, 3) for v in d.tolist()]       # pairs (0, 1), (0, 2), (1, 0), (2, 0)
    [1.118, 1.414, 2.236, 1.414]
    """
    f = features.double()
    sq = (f * f).sum(dim=1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * f @ f.T).clamp_min(0)
    dist = d2.sqrt() / sq.sqrt().clamp_min(1e-30)[None, :]
    keep = ~torch.eye(len(f), dtype=torch.bool)
    if groups is not None:
        g = np.asarray([str(x) for x in groups])
        keep &= torch.from_numpy(g[:, None] != g[None, :])
    return dist[keep].float()


def natural_null_images(shape: Sequence[int], per_class: int = NULL_PER_CLASS,
                        seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    """Held-out crops of the bundled photos (:func:`insilico.models.photos.held_out`) and the photo of each.

    Resized to ``shape`` (C, H, W) (grey for one channel) when it is not (3, 64, 64).

    Example
    -------
    >>> images, groups = natural_null_images((1, 32, 32), per_class=1)
    >>> tuple(images.shape), groups[:2]
    ((16, 1, 32, 32), ['astronaut', 'brick'])
    """
    from ..models import photos

    x, y = photos.held_out(per_class, seed=NULL_SEED + int(seed))
    c, h, w = (int(v) for v in shape)
    if (h, w) != tuple(x.shape[2:]):
        x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", antialias=True,
                                            align_corners=False).clamp(0, 1)
    if c != 3:
        x = x.mean(dim=1, keepdim=True).expand(-1, c, -1, -1).contiguous()
    return x, [photos.CLASSES[int(k)] for k in y]


def validity(result, model: nn.Module | None = None, *, layers: Sequence[str] | str | None = "auto",
         other_models: Mapping[str, nn.Module] | None = None, null_images: torch.Tensor | None = None,
         null_groups: Sequence | None = None, criterion: str = "min", percentile: float = 1.0,
         seed: int = 0, batch_size: int = 64) -> ValidityReport:
    """Is each metamer a metamer? Null-distribution test, class check, and distances at every layer.

    Parameters
    ----------
    result : MetamerResult
        Metamers made by :func:`insilico.metamer`.
    model : nn.Module, optional
        Default: the model the metamers were made for (required after ``load``).
    layers : "auto", list of str or None
        Layers at which to compare metamer and reference (c); "auto": every
        module with parameters, in call order; None: only the matched ones.
    other_models : dict {name: nn.Module}, optional
        More models to compare them at ("auto" layers each).
    null_images : tensor (M, C, H, W), optional
        Natural images of the null distribution; default: 5 held-out crops
        of each of the 16 bundled photos (80 images, resized to the metamers' shape).
    null_groups : sequence of M labels, optional
        Pairs within a group are left out (default: the photo of each crop,
        so pairs are from different photos).
    criterion : {"min", "percentile"}
        (a) A metamer is **valid** when its relative distance
        ``|f(x) - f(x0)| / |f(x0)|`` at every matched layer is **below the
        minimum** ("min", default) of the null distances ``|f(a) - f(b)| / |f(b)|``
        over ordered pairs of natural images from different photos, or below
        their ``percentile``-th percentile ("percentile").
    percentile : float
        For ``criterion="percentile"`` (default 1.0).
    seed : int
        Seed of the default null crops.
    batch_size : int
        Images per forward pass.

    Returns
    -------
    ValidityReport
    """
    model = model if model is not None else result.model
    if model is None:
        raise InsilicoError("validity() needs the model: result.validity(model) (models are not saved)")
    if criterion not in CRITERIA:
        raise InsilicoError(f"criterion must be one of {CRITERIA}, not {criterion!r}")
    shape = tuple(result.images.shape[1:])
    if null_images is None:
        null_images, groups = natural_null_images(shape, seed=seed)
        null_groups = groups if null_groups is None else null_groups
    else:
        null_images = check_images(null_images, name="null_images").float().cpu()
    if null_groups is not None and len(null_groups) != null_images.shape[0]:
        raise InsilicoError(f"{len(null_groups)} null_groups for {null_images.shape[0]} null images")
    matched = list(dict.fromkeys(u for c in result.conditions for u in c))
    ref_images = result.references[torch.as_tensor(result.reference_index)]

    def compare(net: nn.Module, units: list[str]):
        units = list(dict.fromkeys(units))
        both = torch.cat([result.images, ref_images])
        feats, logits = record(net, units, both, batch_size=batch_size, logits=True)
        null, _ = record(net, units, null_images, batch_size=batch_size)
        n = len(result)
        dist = {u: relative_distances(feats[u][:n], feats[u][n:]) for u in units}
        nulls = {u: null_distances(null[u], null_groups) for u in units}
        return dist, nulls, logits

    main_layers = matched if layers is None else list(matched)
    if layers == "auto":
        main_layers = list(dict.fromkeys(choose_layers(model, example_input(model, shape), "weights") + matched))
    elif layers is not None:
        main_layers = list(dict.fromkeys([layers] if isinstance(layers, str) else list(layers)))
        main_layers = list(dict.fromkeys(main_layers + matched))
    dist, nulls, logits = compare(model, main_layers)
    n = len(result)
    # (a) the null-distribution test at the matched layers
    bounds = {u: (float(nulls[u].min()) if criterion == "min" else
                  float(torch.quantile(nulls[u].double(), percentile / 100.0))) for u in matched}
    valid = torch.ones(n, dtype=torch.bool)
    matched_distance = torch.zeros(n)
    rank = torch.zeros(n)
    for i in range(n):
        spec = result.layer_of(i)
        ok = [float(dist[u][i]) < bounds[u] for u in spec]
        valid[i] = all(ok)
        matched_distance[i] = max(float(dist[u][i]) for u in spec)
        rank[i] = max(float((nulls[u] <= dist[u][i]).float().mean()) for u in spec)
    # (b) the class
    ref_class = met_class = None
    if logits is not None and logits.ndim == 2 and logits.shape[1] > 1:
        met_class, ref_class = logits[:n].argmax(1), logits[n:].argmax(1)
    classes = list(getattr(model, "classes", []) or [])
    # (c) every layer, this model and the others
    per_model = {_model_name(model): _LayerTable(main_layers, dist, nulls)}
    for name, other in (other_models or {}).items():
        units = choose_layers(other, example_input(other, shape), "weights")
        d, nl, _ = compare(other, units)
        per_model[str(name)] = _LayerTable(units, d, nl)
    return ValidityReport(
        labels=list(result.labels), matched=[list(result.layer_of(i)) for i in range(n)], criterion=criterion,
        percentile=percentile, distance=matched_distance, bound=bounds, null_min={u: float(nulls[u].min()) for u in matched},
        null_median={u: float(nulls[u].median()) for u in matched}, rank=rank, valid=valid,
        reference_class=ref_class, metamer_class=met_class, classes=classes, layers=per_model,
        n_null_pairs=int(nulls[matched[0]].numel()),
    )


def _model_name(model: nn.Module) -> str:
    return str(getattr(model, "name", type(model).__name__))


@dataclasses.dataclass
class _LayerTable:
    layers: list
    distance: dict
    null: dict

    def arrays(self):
        d = torch.stack([self.distance[u] for u in self.layers], dim=1)
        null_min = torch.tensor([float(self.null[u].min()) for u in self.layers])
        null_med = torch.tensor([float(self.null[u].median()) for u in self.layers])
        return d, null_min, null_med


@dataclasses.dataclass
class ValidityReport:
    """Per metamer: the null-distribution test (a), the class check (b), distances at every layer (c).

    Attributes
    ----------
    labels : list of str
    matched : list of list of str
        The matched layer(s) of each metamer.
    distance : tensor (N,)
        Relative distance to the reference at the matched layer (the largest, for several).
    bound : dict {layer: float}
        The null's minimum (criterion "min") or percentile at each matched layer.
    rank : tensor (N,)
        Fraction of null distances at or below the metamer's (0: closer than every natural pair).
    valid : tensor (N,) of bool
        ``distance < bound`` at every matched layer.
    reference_class, metamer_class : tensor (N,) or None
        The model's top-1 class (None when its output is not (N, classes) logits).
    layers : dict {model name: table}
        Distances at every compared layer and the null's min and median there.
    """

    labels: list
    matched: list
    criterion: str
    percentile: float
    distance: torch.Tensor
    bound: dict
    null_min: dict
    null_median: dict
    rank: torch.Tensor
    valid: torch.Tensor
    reference_class: torch.Tensor | None
    metamer_class: torch.Tensor | None
    classes: list
    layers: dict
    n_null_pairs: int

    @property
    def same_class(self) -> torch.Tensor | None:
        """Whether the model gives the metamer its reference's top-1 class (N,)."""
        if self.reference_class is None:
            return None
        return self.reference_class == self.metamer_class

    def layer_distances(self, model: str | None = None) -> tuple[list[str], torch.Tensor]:
        """(layers, distances (N, L)) of one model (default: the metamers' model)."""
        table = self.layers[model or next(iter(self.layers))]
        return list(table.layers), table.arrays()[0]

    def _class_name(self, k) -> str:
        k = int(k)
        return self.classes[k] if k < len(self.classes) else str(k)

    def to_dict(self) -> dict:
        """JSON-able summary (one record per metamer, plus the nulls)."""
        rows = []
        for i, label in enumerate(self.labels):
            row = {"label": label, "matched": self.matched[i], "distance": float(self.distance[i]),
                   "null_rank": float(self.rank[i]), "valid": bool(self.valid[i])}
            if self.reference_class is not None:
                row.update(reference_class=self._class_name(self.reference_class[i]),
                           metamer_class=self._class_name(self.metamer_class[i]),
                           same_class=bool(self.same_class[i]))
            for name, table in self.layers.items():
                row[f"distance_per_layer[{name}]"] = {u: float(table.distance[u][i]) for u in table.layers}
            rows.append(row)
        return {"criterion": self.criterion, "percentile": self.percentile if self.criterion == "percentile" else None,
                "bound": self.bound, "null_min": self.null_min, "null_median": self.null_median,
                "n_null_pairs": self.n_null_pairs, "valid_fraction": float(self.valid.float().mean()),
                "same_class_fraction": None if self.same_class is None else float(self.same_class.float().mean()),
                "metamers": rows}

    def __repr__(self) -> str:
        lines = [f"ValidityReport ({self.criterion}{'' if self.criterion == 'min' else f' {self.percentile:g}%'} "
                 f"of {self.n_null_pairs} natural pairs): {int(self.valid.sum())}/{len(self.labels)} valid"]
        for i, label in enumerate(self.labels):
            cls = ""
            if self.reference_class is not None:
                cls = (f"  class {self._class_name(self.metamer_class[i])} vs "
                       f"{self._class_name(self.reference_class[i])}")
            bound = max(self.bound[u] for u in self.matched[i])
            lines.append(f"  {label:24s} d={float(self.distance[i]):.3g} (bound {bound:.3g}, rank "
                         f"{float(self.rank[i]):.3f}) {'valid' if self.valid[i] else 'NOT valid'}{cls}")
        return "\n".join(lines)

    def plot(self, ax=None, model: str | None = None):
        """Distance metamer-reference per layer (lines) against the null (band: min..median); returns the Figure.

        Layers where a metamer's line enters the band tell it from its
        reference about as well as natural images are told apart; the matched
        layers are marked. Without ``ax``, one panel per compared model.
        """
        import matplotlib.pyplot as plt

        names = [model] if model is not None else list(self.layers)
        if ax is None:
            fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.2), squeeze=False)
            axes = list(axes[0])
        else:
            axes, names = [ax], names[:1]
        matched = set(u for m in self.matched for u in m)
        for a, name in zip(axes, names):
            table = self.layers[name]
            d, lo, med = table.arrays()
            x = np.arange(len(table.layers))
            a.fill_between(x, lo.numpy(), med.numpy(), color="0.85", label="natural pairs (min..median)")
            for i in range(d.shape[0]):
                a.plot(x, d[i].clamp_min(1e-8).numpy(), marker="o", ms=3, lw=0.8, label=self.labels[i] if d.shape[0] <= 8 else None)
            for k, u in enumerate(table.layers):
                if u in matched and name == next(iter(self.layers)):
                    a.axvline(k, color="k", ls=":", lw=0.8)
            a.set_xticks(x)
            a.set_xticklabels(table.layers, rotation=60, ha="right", fontsize=7)
            a.set_yscale("log")
            a.set_ylabel("|f(x)-f(x0)| / |f(x0)|")
            a.set_title(name, fontsize=9)
            a.legend(fontsize=6)
        fig = axes[0].figure
        return fig


__all__ = ["CRITERIA", "ValidityReport", "natural_null_images", "null_distances", "record", "relative_distances",
           "validity"]
