"""Recurrent dynamics: responses per time step, and what lateral vs top-down connections contribute.

For networks that call their modules once per time step (the bundled BLT
family, ``"layers.1@3"`` = layer 1 at step 3), ``time_courses`` records the
spatially averaged response of every channel at every step, and
``connection_lesions`` silences the lateral and/or the top-down inputs
(:meth:`insilico.Probe.lesion` on the modules that compute them, at every
step) and measures the readout's accuracy at every step, as in Spoerer,
McClure & Kriegeskorte (2017), where recurrence improved recognition over
time steps.

Example
-------
>>> import torch
>>> from insilico.models import BLTNet
>>> from insilico.experiments import time_courses
>>> net = BLTNet("BLT", timesteps=3).eval()
>>> res = time_courses(net, ["layers.0", "layers.2"], torch.rand(4, 3, 64, 64), progress=False)
>>> res.mean_response(0).shape
(3,)
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import InsilicoError
from ..probe import Probe
from ..registry import register_tool
from ..stimuli.labels import class_labels, per_class_accuracy
from ..plot.images import new_axes
from .results import Result
from ..recording import batches, stimulus_source
from ..session import result_dtype, session
from .runs import as_units


@register_tool("experiment", per_sample=True)
def time_courses(
    model: nn.Module,
    units: Any,
    stimuli: Any,
    batch_size: int = 128,
    progress: bool = True,
) -> "DynamicsResult":
    """Mean response per time step of every channel of ``units`` (spatially averaged).

    Parameters
    ----------
    units : str or list of str
        Modules called once per step, without ``@``: ``"layers.0"``,
        ``"layers.1[5]"`` (one channel).
    stimuli : tensor (N, C, H, W), StimulusSet or Dataset

    Returns
    -------
    DynamicsResult
        ``responses_<k>`` (N, T, C) for the k-th unit address, and ``mean_response(k)`` (T,).
    """
    parsed = as_units(units)
    for unit in parsed:
        if unit.step is not None:
            raise InsilicoError(f"{unit}: give the module without '@' to get every time step")
        unit.resolve(model)
    probe = Probe(model)
    stimuli = stimulus_source(stimuli, model=model)  # image files are fitted to the model's input
    parts: list[list[torch.Tensor]] = [[] for _ in parsed]
    with session(model) as s:
        for _, batch in batches(stimuli, batch_size, s.device, s.dtype, progress, "time courses"):
            with probe.record(*parsed, reduce="mean") as rec:
                model(batch)
            for k, unit in enumerate(parsed):
                value = rec.steps(unit).to(result_dtype(s.dtype)).cpu()
                parts[k].append(value.reshape(value.shape[0], value.shape[1], -1))
    arrays = {"units": np.array([str(u) for u in parsed])}
    for k, chunks in enumerate(parts):
        arrays[f"responses_{k}"] = torch.cat(chunks).numpy()
    steps = arrays["responses_0"].shape[1]
    arrays["steps"] = np.arange(steps)
    arrays["mean"] = np.stack([arrays[f"responses_{k}"].mean((0, 2)) for k in range(len(parsed))])
    return DynamicsResult(arrays, dict(units=[str(u) for u in parsed], model=type(model).__name__))


class DynamicsResult(Result):
    """Responses per time step: ``responses_<k>`` (N, T, C) per unit address, ``mean`` (units, T).

    ``concat`` joins results over chunks of stimuli (``responses_<k>``) and recomputes ``mean``.
    """

    def _sample_keys(self) -> tuple[str, ...]:
        return tuple(k for k in self.arrays if k.startswith("responses_"))

    @classmethod
    def _joined(cls, result):
        k = len(result.arrays["units"])
        result.arrays["mean"] = np.stack([result.arrays[f"responses_{i}"].mean((0, 2)) for i in range(k)])
        return result

    def mean_response(self, k: int = 0) -> np.ndarray:
        """Mean over stimuli and channels of unit address ``k``, per step (T,)."""
        return self.arrays[f"responses_{k}"].mean((0, 2))

    def table(self) -> dict:
        cols = {"step": self.steps}
        for k, name in enumerate(self.units):
            cols[str(name)] = self.mean[k]
        return cols

    def plot(self, ax=None, normalize: bool = True):
        """Mean response (+- SEM over channels) per step, one line per unit address."""
        fig, ax = new_axes(ax)
        for k, name in enumerate(self.units):
            per_channel = self.arrays[f"responses_{k}"].mean(0)  # (T, C)
            if normalize:
                peak = np.abs(per_channel).max(0, keepdims=True)
                per_channel = per_channel / np.where(peak > 0, peak, 1.0)
            mean = per_channel.mean(1)
            sem = per_channel.std(1) / np.sqrt(per_channel.shape[1])
            ax.errorbar(self.steps, mean, yerr=sem, marker="o", capsize=2, label=str(name))
        ax.set_xticks(self.steps)
        ax.set_xlabel("time step")
        ax.set_ylabel("mean response" + (" (per channel / its peak)" if normalize else ""))
        ax.legend(fontsize=7, frameon=False)
        return fig


def recurrent_connections(model: nn.Module) -> dict[str, list[str]]:
    """Modules named ``*lateral`` and ``*top_down`` (the BLT convention), grouped by kind."""
    found = {"lateral": [], "top_down": []}
    for name, module in model.named_modules():
        last = name.rsplit(".", 1)[-1]
        if last in found and module is not None:
            found[last].append(name)
    return {k: v for k, v in found.items() if v}


@register_tool("experiment", follows_dtype=False)
def connection_lesions(
    model: nn.Module,
    stimuli: Any,
    labels: Any,
    connections: dict[str, Sequence[str]] | None = None,
    readout: str | None = None,
    classes: Sequence[str] | None = None,
    batch_size: int = 128,
    progress: bool = True,
) -> "RecurrentLesionResult":
    """Accuracy at every time step with lateral, top-down, or both kinds of connection lesioned.

    Parameters
    ----------
    connections : dict name -> list of module addresses, optional
        Default: every module named ``lateral`` and every module named
        ``top_down`` (the bundled BLT models). Each group is lesioned (output
        set to zero at every step) on its own, then all together.
    readout : str, optional
        The module whose every call gives class scores (default ``"readout"``
        when the model has one; otherwise the model's output, one step).
    stimuli, labels
        A labelled stimulus set, e.g. ``insilico.models.photos.held_out()``.

    Returns
    -------
    RecurrentLesionResult
        ``conditions``, ``accuracy`` (conditions, T), ``class_accuracy`` (conditions, T, K).
    """
    connections = dict(connections) if connections is not None else recurrent_connections(model)
    if not connections:
        raise InsilicoError(
            f"{type(model).__name__} has no modules named 'lateral' or 'top_down': pass "
            "connections={'lateral': [...], 'top_down': [...]} with the module addresses to lesion"
        )
    names = dict(model.named_modules())
    if readout is None and "readout" in names:
        readout = "readout"
    stimuli = stimulus_source(stimuli, model=model)  # image files are fitted to the model's input
    n = len(stimuli)
    y = class_labels(labels, n)
    conditions = {"intact": []}
    conditions.update({f"no {k.replace('_', '-')}": list(v) for k, v in connections.items()})
    if len(connections) > 1:
        conditions["no " + " + ".join(k.replace("_", "-") for k in connections)] = \
            [m for v in connections.values() for m in v]
    probe = Probe(model)
    accuracy, class_accuracy = [], []
    with session(model) as s:
        for label, modules in tqdm(conditions.items(), desc="connection lesions", disable=not progress,
                                   leave=False):
            scores = []
            lesion = probe.lesion(*modules) if modules else None
            try:
                for _, batch in batches(stimuli, batch_size, s.device, s.dtype, False, label):
                    if readout is None:
                        scores.append(model(batch)[:, None].float().cpu())
                    else:
                        with probe.record(readout) as rec:
                            model(batch)
                        scores.append(rec.steps(readout).float().cpu())
            finally:
                if lesion is not None:
                    lesion.remove()
            pred = torch.cat(scores).argmax(-1).numpy()  # (N, T)
            n_classes = int(scores[0].shape[-1])
            accuracy.append((pred == y[:, None]).mean(0))
            class_accuracy.append(np.stack([per_class_accuracy(pred[:, t], y, n_classes) for t in range(pred.shape[1])]))
    labels_ = list(classes) if classes is not None else list(getattr(model, "classes", range(n_classes)))
    arrays = dict(conditions=np.array(list(conditions)), accuracy=np.array(accuracy),
                  class_accuracy=np.array(class_accuracy), steps=np.arange(len(accuracy[0])),
                  classes=np.array([str(c) for c in labels_]))
    settings = dict(connections={k: list(v) for k, v in connections.items()}, readout=readout, n_stimuli=n,
                    model=type(model).__name__)
    return RecurrentLesionResult(arrays, settings)


class RecurrentLesionResult(Result):
    """Accuracy per step (``accuracy``: conditions x T) with recurrent connections lesioned."""

    def table(self) -> dict:
        cols = {"condition": self.conditions}
        for t in self.steps:
            cols[f"accuracy_step{t}"] = self.accuracy[:, t]
        return cols

    def plot(self, ax=None):
        """Accuracy vs time step, one line per lesion condition; chance dotted."""
        fig, ax = new_axes(ax)
        for k, name in enumerate(self.conditions):
            ax.plot(self.steps, self.accuracy[k], "o-", label=str(name))
        ax.axhline(1.0 / len(self.classes), color="k", ls=":", lw=1, label="chance")
        ax.set_xticks(self.steps)
        ax.set_xlabel("time step")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7, frameon=False)
        return fig
