"""The result of :func:`insilico.metamer`: the metamers, their references, and what each one matches.

:class:`MetamerResult` is a :class:`~insilico.synthesis.SynthesisResult`
(images, loss traces, stop reasons, settings, engine state) with the
references, the layer spec and reference of each metamer, and the final
relative errors. It saves (one ``torch.save`` file read with
``weights_only=True``; the model is not saved), loads, concatenates the
chunks of a sharded job in the job's sample order, plots the metamers beside
their references, and reports its validity
(:mod:`insilico.design.metamer_validity`).

Example
-------
>>> import torch, insilico
>>> r = insilico.metamer(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3)), "0", torch.rand(1, 1, 8, 8), steps=5,
...                      progress=False)
>>> type(r).__name__, r.layer_of(0)
('MetamerResult', {'0': 1.0})
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import torch
from torch import nn

from .. import persistence
from ..errors import InsilicoError, SavedFileError
from ..synthesis.result import SynthesisResult
from .metamer_validity import ValidityReport, record, relative_distances, validity


@dataclasses.dataclass(repr=False)
class MetamerResult(SynthesisResult):
    """A :class:`~insilico.synthesis.SynthesisResult` with the references and what each metamer matches.

    Attributes (besides the synthesis result's)
    -------------------------------------------
    references : tensor (R, C, H, W)
    reference_index, condition_index : list of int
        Reference and layer spec of each metamer.
    conditions : list of dict {unit: weight}
        The layer specs.
    final_errors : tensor (N,)
        Relative representation error of each final image (recomputed after the run).
    layer_errors : dict {unit: tensor (N,)}
        Relative error at each matched unit (NaN where a metamer does not match that unit).
    model : nn.Module or None
        The model (not saved); :meth:`validity` uses it unless given another.
    """

    references: torch.Tensor | None = None
    reference_index: list = dataclasses.field(default_factory=list)
    condition_index: list = dataclasses.field(default_factory=list)
    conditions: list = dataclasses.field(default_factory=list)
    final_errors: torch.Tensor | None = None
    layer_errors: dict = dataclasses.field(default_factory=dict)
    model: nn.Module | None = dataclasses.field(default=None, compare=False)

    @property
    def power(self) -> float:
        return float(self.settings.get("metamer", {}).get("power", 1.0))

    @classmethod
    def concat(cls, results: Sequence[MetamerResult]) -> MetamerResult:
        """Join the results of consecutive reference chunks of one job, in the job's sample order
        (layer spec, reference, seed); reference indices become the job's."""
        results = list(results)
        if len(results) == 1:
            return results[0]
        base = SynthesisResult.concat(results)
        offsets = [r.settings["metamer"].get("first_reference", 0) for r in results]
        reference_index = [i + o for r, o in zip(results, offsets) for i in r.reference_index]
        condition_index = [c for r in results for c in r.condition_index]
        position = [k for r in results for k in range(len(r))]  # inside its chunk: seeds in order
        order = sorted(range(len(base)), key=lambda i: (condition_index[i], reference_index[i], position[i]))
        idx = torch.tensor(order)
        joined = lambda tensors: torch.cat(list(tensors))[idx]
        settings = {**base.settings, "metamer": {**base.settings["metamer"], "first_reference": 0}}
        return cls(
            images=base.images[idx], trace=base.trace[:, idx], steps=base.steps[idx],
            stop_reasons=[base.stop_reasons[i] for i in order], labels=[base.labels[i] for i in order],
            settings=settings, seeds=[base.seeds[i] for i in order], versions=base.versions, state=base.state,
            references=torch.cat([r.references for r in results]),
            reference_index=[reference_index[i] for i in order], condition_index=[condition_index[i] for i in order],
            conditions=results[0].conditions, final_errors=joined(r.final_errors for r in results),
            layer_errors={u: joined(r.layer_errors[u] for r in results) for u in results[0].layer_errors},
            model=results[0].model,
        )

    @property
    def errors(self) -> torch.Tensor:
        """Relative representation error (T, N) of every sample at every step (NaN after it stopped)."""
        return self.trace.clamp_min(0).pow(1.0 / self.power)

    @property
    def threshold(self) -> float | None:
        return self.settings.get("metamer", {}).get("threshold")

    def layer_of(self, i: int) -> dict[str, float]:
        """The layer spec {unit: weight} metamer ``i`` matches."""
        return self.conditions[self.condition_index[i]]

    # -- persistence ---------------------------------------------------------------------
    @classmethod
    def _fields_of(cls, blob: dict, path: str) -> dict:
        """The synthesis result's fields of a format-1 file plus the metamer part."""
        extra = blob.get("metamer")
        if not isinstance(extra, dict):
            raise SavedFileError(f"{path!r} is a synthesis result but not a metamer result: load it with "
                                 "SynthesisResult.load", path)
        meta = persistence.json_field(extra, "json", path)
        return {**super()._fields_of(blob, path), "references": extra.get("references"),
                "final_errors": extra.get("final_errors"), "layer_errors": dict(extra.get("layer_errors") or {}),
                **meta}

    def check(self, model: nn.Module | None = None) -> torch.Tensor:
        """Each metamer's relative error at its matched layer(s) (N,), recomputed with ``model`` now.

        For the model the metamers were made for this equals ``final_errors``
        (up to float rounding); for another model it says how well they
        transfer. ``model`` defaults to the one kept with the result (required
        after ``load``).
        """
        model = model if model is not None else self.model
        if model is None:
            raise InsilicoError("check() needs the model: result.check(model) (models are not saved)")
        layers = list(dict.fromkeys(u for c in self.conditions for u in c))
        feats, _ = record(model, layers, self.images)
        refs, _ = record(model, layers, self.references)
        index = torch.as_tensor(self.reference_index, dtype=torch.long)
        per_layer = torch.stack([relative_distances(feats[u], refs[u][index]) for u in layers], dim=1)
        weights = torch.tensor([[self.layer_of(i).get(u, 0.0) for u in layers] for i in range(len(self))])
        return (weights * per_layer.double().pow(self.power)).sum(dim=1).pow(1.0 / self.power).float()

    # -- validity -------------------------------------------------------------------------
    def validity(self, model: nn.Module | None = None, **options) -> ValidityReport:
        """Is each metamer a metamer? Null-distribution test, class check, and distances at every layer.

        ``model`` defaults to the model the metamers were made for (required
        after ``load``); ``options`` (``layers``, ``other_models``,
        ``null_images``, ``null_groups``, ``criterion``, ``percentile``,
        ``seed``, ``batch_size``) are those of
        :func:`insilico.design.metamer_validity.validity`.
        """
        return validity(self, model, **options)

    # -- figures ----------------------------------------------------------------------------
    def plot(self, ax=None, max_references: int = 8):
        """References (first column) beside their metamers, titled with layer and error; returns the Figure."""
        from .. import plot as plot_mod

        refs = list(range(min(self.references.shape[0], max_references)))
        per_ref = [[i for i in range(len(self)) if self.reference_index[i] == r] for r in refs]
        ncols = 1 + max(len(p) for p in per_ref)
        tiles, titles = [], []
        errors = self.final_errors if self.final_errors is not None else self.values.sqrt()
        for r, members in zip(refs, per_ref):
            tiles.append(self.references[r])
            titles.append(f"reference {r}")
            for i in members:
                tiles.append(self.images[i])
                titles.append(f"{self.labels[i].split('|')[0]}\nerr {float(errors[i]):.2g}")
            for _ in range(ncols - 1 - len(members)):
                tiles.append(torch.ones_like(self.references[r]))
                titles.append("")
        return plot_mod.image_grid(torch.stack(tiles), titles=titles, ncols=ncols, ax=ax)

    def plot_losses(self, ax=None):
        """Relative representation error against step (log scale), one line per metamer; returns the Figure."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3))
        errors = self.errors
        for i, (label, steps) in enumerate(zip(self.labels, self.steps)):
            ax.plot(errors[: int(steps), i].numpy(), lw=0.8, label=f"{label} ({self.stop_reasons[i]})")
        if self.threshold:
            ax.axhline(self.threshold, color="k", ls="--", lw=0.8, label="threshold")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("relative error |f(x)-f(x0)|/|f(x0)|")
        if len(self) <= 10:
            ax.legend(fontsize=6)
        return ax.figure

    def __repr__(self) -> str:
        reasons = {r: self.stop_reasons.count(r) for r in dict.fromkeys(self.stop_reasons)}
        err = "" if self.final_errors is None else f", errors {float(self.final_errors.min()):.3g}..{float(self.final_errors.max()):.3g}"
        return (f"MetamerResult({len(self)} metamers {tuple(self.images.shape[1:])} of {self.references.shape[0]} "
                f"references, up to {int(self.steps.max()) if len(self) else 0} steps{err}, stopped: {reasons})")


__all__ = ["MetamerResult"]
