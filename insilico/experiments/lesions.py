"""Lesion studies: silence channels of a layer and measure what the network can no longer do.

``lesion_sweep(model, layer, stimuli, labels)`` lesions each channel of
``layer`` (or each group of channels) in turn with
:meth:`insilico.Probe.lesion` and measures the accuracy on every class of a
labelled stimulus set. The change in per-class accuracy, groups x classes, is
the *dissociation matrix*: a double dissociation is two groups whose lesions
hurt different classes. ``cumulative_lesion`` lesions the channels one after
another, most important first and least important first (importance = the
drop in overall accuracy when the channel alone is lesioned), tracing how
gracefully the network degrades.

Example
-------
>>> import torch, insilico
>>> from insilico.experiments import lesion_sweep
>>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
>>> x, y = torch.rand(20, 4), torch.randint(0, 2, (20,))
>>> res = lesion_sweep(net, "1", insilico.pixels.raw(x), y, progress=False)  # not images: the explicit door
>>> res.class_accuracy.shape, res.effect.shape
((3, 2), (3, 2))
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from torch import nn
from tqdm.auto import tqdm

from ..errors import InsilicoError
from ..evaluate import predict
from ..jsonfiles import to_json
from ..plan import Plan
from ..recording import stimulus_source
from ..registry import register_tool
from ..units import Unit
from .classes import check_outputs, class_labels, per_class_accuracy, stimulus_labels
from .results import Result, new_axes, write_csv


def _n_channels(plan: Plan, layer: Unit) -> int:
    """The number of channels (axis 1) of ``layer``'s output, from the plan's survey of one stimulus."""
    shape = plan.shape(Unit(layer.module, layer.step if layer.step is not None else -1, None, layer.output))
    if len(shape) < 1:
        raise InsilicoError(f"{layer} has no channel axis to lesion (per-sample shape {shape})")
    return int(shape[0])


def _evaluate(model, plan, stimuli, y, n_classes, batch_size, output):
    out = predict(model, stimuli, batch_size=batch_size, output=output, plan=plan)
    pred = out.argmax(-1).numpy()
    return pred, per_class_accuracy(pred, y, n_classes), float((pred == y).mean())


@register_tool("experiment", follows_dtype=False)
def lesion_sweep(
    model: nn.Module,
    layer: str | Unit,
    stimuli: Any,
    labels: Any = None,
    groups: Sequence[Sequence[int]] | None = None,
    mode: str = "zero",
    classes: Sequence[str] | None = None,
    output: str | None = None,
    batch_size: int = 256,
    progress: bool = True,
) -> "LesionResult":
    """Per-class accuracy with each channel (or group of channels) of ``layer`` lesioned.

    Parameters
    ----------
    model : nn.Module
        A classifier: its output (or the unit ``output``) holds class scores.
    layer : str
        A layer address, e.g. ``"features.10"``; recurrent modules are
        lesioned at every step unless the address names one (``"layers.1@2"``).
    stimuli : tensor (N, C, H, W), StimulusSet, Dataset, folder, glob or list of image files
        Anything :func:`insilico.recording.stimulus_source` reads (files fitted to the model's input).
    labels : (N,) ints, optional
        The class index of each stimulus (an index of the model's outputs). Default: the labels the
        stimuli carry (a ``DIR/<class>/<image>`` folder, a Dataset with ``targets``), matched to the
        model's outputs by name when the model names its classes (``classes`` or ``model.classes``),
        else in the folder's order, when the model has exactly as many outputs as the folder classes
        (otherwise refused: :func:`insilico.experiments.classes.stimulus_labels`).
    groups : list of lists of int, optional
        Channels lesioned together; default one group per channel. An empty
        group is the intact model.
    mode : {"zero", "mean"}
        Lesioned units are set to 0, or to their mean response over ``stimuli``.
    classes : list of str, optional
        Class names (default ``model.classes`` when it exists).
    output : str, optional
        Read class scores from this unit instead of the model's output
        (e.g. ``"readout@1"``: step 1 of a recurrent model).

    Returns
    -------
    LesionResult
    """
    if mode not in ("zero", "mean"):
        raise InsilicoError(f"lesion mode must be 'zero' or 'mean' here, not {mode!r}")
    unit = Unit.coerce(layer, model)
    unit.resolve(model)
    if unit.index is not None:
        raise InsilicoError(f"name the whole layer ({unit.module!r}) and choose channels with groups=")
    stimuli = stimulus_source(stimuli, model=model)  # read once more per group: files are decoded per chunk
    n = len(stimuli)
    if labels is None:
        y, classes, mapped = stimulus_labels(stimuli, model, classes)
    else:
        y, mapped = class_labels(labels, n), True
    plan = Plan(model, stimuli.batch(0, 1, None, None))  # the call's one Probe, session and survey
    probe = plan.probe
    with plan.session():
        scores = predict(model, stimuli, batch_size=batch_size, output=output, plan=plan)
        n_classes = int(scores.shape[-1])
        if not mapped:
            check_outputs(classes, n_classes)
        base_pred = scores.argmax(-1).numpy()
        base_class, base_acc = per_class_accuracy(base_pred, y, n_classes), float((base_pred == y).mean())
        if groups is None:
            groups = [[c] for c in range(_n_channels(plan, unit))]
        groups = [[int(c) for c in g] for g in groups]
        accuracy, class_accuracy, changed = [], [], []
        for group in tqdm(groups, desc=f"lesion {unit}", disable=not progress, leave=False):
            if not group:
                pred, per_class, acc = base_pred, base_class, base_acc
            else:
                target = unit.replace(index=(tuple(group),))
                options = dict(mode=mode)
                if mode == "mean":
                    options.update(reference=stimuli, batch_size=batch_size)
                with probe.lesion(target, **options):
                    pred, per_class, acc = _evaluate(model, plan, stimuli, y, n_classes, batch_size, output)
            accuracy.append(acc)
            class_accuracy.append(per_class)
            changed.append(float((pred != base_pred).mean()))
    names = list(classes) if classes is not None else list(getattr(model, "classes", range(n_classes)))
    arrays = dict(
        groups=np.array([",".join(map(str, g)) for g in groups]), accuracy=np.array(accuracy),
        class_accuracy=np.array(class_accuracy), baseline=np.array(base_acc),
        baseline_class=base_class, changed=np.array(changed), classes=np.array([str(c) for c in names]),
    )
    settings = dict(layer=str(unit), mode=mode, n_stimuli=n, output=output, model=type(model).__name__)
    return LesionResult(arrays, settings)


class LesionResult(Result):
    """Accuracy with each group lesioned.

    Attributes
    ----------
    groups : (G,) str, channels of each group ("3" or "3,7,9")
    accuracy : (G,) overall accuracy with the group lesioned
    class_accuracy : (G, K) per-class accuracy
    baseline, baseline_class : intact accuracy, overall and (K,) per class
    effect : (G, K) change in per-class accuracy (the dissociation matrix)
    importance : (G,) drop in overall accuracy
    changed : (G,) fraction of predictions the lesion changed
    """

    sample_arrays = ("groups", "accuracy", "class_accuracy", "changed")

    @property
    def effect(self) -> np.ndarray:
        return self.class_accuracy - self.baseline_class[None, :]

    @property
    def importance(self) -> np.ndarray:
        return float(self.baseline) - self.accuracy

    def ranking(self) -> np.ndarray:
        """Group positions from most to least important (stable order for ties)."""
        return np.argsort(-self.importance, kind="stable")

    def table(self) -> dict:
        return {"group": self.groups, "accuracy": self.accuracy, "importance": self.importance,
                "changed": self.changed}

    def export(self, path) -> list:
        """The tables of :meth:`Result.export`, and ``<stem>_dissociation.csv`` (groups x classes)."""
        paths = super().export(path)
        stem = Path(paths[0]).with_suffix("")
        matrix = stem.parent / (stem.name + "_dissociation.csv")
        columns = {"group": self.groups, **{str(c): self.effect[:, k] for k, c in enumerate(self.classes)}}
        write_csv(matrix, columns, to_json({"result": "dissociation (class accuracy change)", **self.settings}, indent=None))
        return paths + [matrix]

    def plot(self, ax=None, top: int | None = 32):
        """The dissociation matrix: change in per-class accuracy, groups (most important first) x classes."""
        fig, ax = new_axes(ax, figsize=(7, 5))
        order = self.ranking()[:top] if top else self.ranking()
        effect = self.effect[order]
        lim = float(np.nanmax(np.abs(effect))) or 1.0
        image = ax.imshow(effect, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto", interpolation="nearest")
        ax.set_yticks(range(len(order)))
        ax.set_yticklabels([self.groups[i] for i in order], fontsize=6)
        ax.set_xticks(range(len(self.classes)))
        ax.set_xticklabels(self.classes, rotation=60, ha="right", fontsize=6)
        ax.set_ylabel(f"lesioned channel(s) of {self.settings['layer']}")
        ax.set_title("change in accuracy per class", fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.8)
        fig.tight_layout()
        return fig


@register_tool("experiment", follows_dtype=False)
def cumulative_lesion(
    model: nn.Module,
    layer: str | Unit,
    stimuli: Any,
    labels: Any = None,
    sweep: LesionResult | None = None,
    n_points: int = 12,
    mode: str = "zero",
    output: str | None = None,
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = True,
) -> "CumulativeLesionResult":
    """Accuracy as more and more channels are lesioned: most important first, least first, random.

    Parameters
    ----------
    stimuli, labels
        As :func:`lesion_sweep` reads them (labels default to those the stimuli carry).
    sweep : LesionResult, optional
        Single-channel lesion results giving the importance ranking
        (computed with :func:`lesion_sweep` when omitted).
    n_points : int
        Number of lesion sizes from 0 to all channels.
    seed : int
        Seed of the random order (the control curve).

    Returns
    -------
    CumulativeLesionResult
    """
    unit = Unit.coerce(layer, model)
    stimuli = stimulus_source(stimuli, model=model)
    if sweep is None:
        sweep = lesion_sweep(model, unit, stimuli, labels, mode=mode, output=output, batch_size=batch_size,
                             progress=progress)
    channels = np.array([int(g) for g in sweep.groups])
    ranked = channels[sweep.ranking()]
    rng = np.random.default_rng(seed)
    orders = {"most": ranked, "least": ranked[::-1], "random": rng.permutation(channels)}
    counts = np.unique(np.linspace(0, len(channels), n_points).round().astype(int))
    curves = {}
    for name, order in orders.items():
        groups = [list(order[:k]) for k in counts]
        res = lesion_sweep(model, unit, stimuli, labels, groups=groups, mode=mode, output=output,
                           batch_size=batch_size, progress=progress)
        curves[name] = res.accuracy
    arrays = dict(n_lesioned=counts, fraction=counts / len(channels), accuracy_most=curves["most"],
                  accuracy_least=curves["least"], accuracy_random=curves["random"], ranking=ranked,
                  chance=np.array(1.0 / len(sweep.classes)))
    return CumulativeLesionResult(arrays, dict(sweep.settings, n_points=n_points, seed=seed))


class CumulativeLesionResult(Result):
    """Accuracy vs number of lesioned channels (``n_lesioned``) for three orders."""

    def plot(self, ax=None):
        """Accuracy vs fraction lesioned: most important first, least important first, random."""
        fig, ax = new_axes(ax)
        ax.plot(self.fraction, self.accuracy_most, "o-", label="most important first")
        ax.plot(self.fraction, self.accuracy_least, "s-", label="least important first")
        ax.plot(self.fraction, self.accuracy_random, "^-", color="0.5", label="random order")
        ax.axhline(float(self.chance), color="k", ls=":", lw=1, label="chance")
        ax.set_xlabel(f"fraction of {self.settings['layer']} lesioned")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7, frameon=False)
        return fig
