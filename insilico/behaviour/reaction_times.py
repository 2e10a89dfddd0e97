"""Reaction times of recurrent models: the time step at which the readout is confident enough to answer.

Following Spoerer, Kietzmann, Mehrer, Charest & Kriegeskorte 2020 (PLoS Comput
Biol 16(10): e1008215, "Recurrent neural networks can explain flexible trading
of speed and accuracy in biological vision"), a recurrent network answers at the
first time step whose readout crosses a threshold: its softmax confidence (the
largest class probability) reaches ``threshold``, or its entropy (in nats) falls
to ``threshold`` or below. That step is the reaction time; the response is the
argmax at that step. An image whose readout never crosses is answered at the
last step (``decided`` False there). Sweeping the threshold traces the
speed-accuracy trade-off: low thresholds answer early and less accurately.

The readout of every step is recorded in one forward pass per batch
(:func:`insilico.evaluate.responses` on ``"readout@0"``, ``"readout@1"``, ...;
the bundled BLT family calls ``readout`` once per step).

Example
-------
>>> import torch
>>> p = torch.tensor([[[0.5, 0.5], [0.8, 0.2], [0.95, 0.05]]])  # one image, 3 steps, 2 classes
>>> rt, choice, decided = decide(p, 0.9, "confidence")
>>> rt.tolist(), choice.tolist(), decided.tolist()
([2], [0], [True])
>>> decide(p, 0.75, "confidence")[0].tolist()
[1]
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import InsilicoError
from ..evaluate import responses
from ..plan import Plan
from ..recording import stimulus_source
from ..registry import register_tool
from ..results import Result
from ..plot.images import new_axes
from .trials import Trials, class_indices

CRITERIA = ("confidence", "entropy")


def evidence(probabilities: torch.Tensor, criterion: str) -> torch.Tensor:
    """Per step (N, T): the largest class probability (``"confidence"``) or the entropy in nats (``"entropy"``)."""
    if criterion == "confidence":
        return probabilities.max(-1).values
    if criterion == "entropy":
        return -(probabilities * probabilities.clamp_min(1e-30).log()).sum(-1)
    raise InsilicoError(f"criterion must be one of {CRITERIA}, not {criterion!r}")


def decide(probabilities: torch.Tensor, threshold: float, criterion: str = "confidence"):
    """The reaction time, response and whether the threshold was crossed, per image.

    Parameters
    ----------
    probabilities : tensor (N, T, K)
        Class probabilities of the readout at every step.
    threshold : float
        Confidence to reach (in (0, 1]) or entropy (nats, >= 0) to fall to.
    criterion : {"confidence", "entropy"}

    Returns
    -------
    rt : tensor (N,) int64
        The first step that crosses (T - 1 where none does).
    choice : tensor (N,) int64
        The argmax at that step.
    decided : tensor (N,) bool
    """
    e = evidence(probabilities, criterion)
    crossed = e >= threshold if criterion == "confidence" else e <= threshold
    decided = crossed.any(1)
    first = crossed.int().argmax(1)  # the first True (0 where none)
    rt = torch.where(decided, first, torch.full_like(first, probabilities.shape[1] - 1)).long()
    choice = probabilities.argmax(-1).gather(1, rt[:, None])[:, 0]
    return rt, choice, decided


@dataclasses.dataclass(repr=False)
class ReactionTimeResult(Result):
    """Reaction times, responses and the speed-accuracy trade-off of a recurrent model.

    Attributes
    ----------
    rt : tensor (N,) int64
        Each image's reaction time (time step) at ``threshold``.
    choice : tensor (N,) int64
        The response at that step.
    decided : tensor (N,) bool
        Whether the readout crossed the threshold (else the last step's answer).
    probabilities : tensor (N, T, K)
        The readout's class probabilities at every step.
    labels : tensor (N,) int64, or None
    thresholds, mean_rt, accuracy : tensor (M,)
        The speed-accuracy trade-off: mean reaction time and accuracy (NaN without labels) per threshold.
    threshold : float
    criterion : str
    classes, images : list of str
    settings : dict
    """

    # no sample_fields: joining chunks would leave the first chunk's speed-accuracy sweep (run all at once)

    rt: torch.Tensor
    choice: torch.Tensor
    decided: torch.Tensor
    probabilities: torch.Tensor
    labels: Any
    thresholds: torch.Tensor
    mean_rt: torch.Tensor
    accuracy: torch.Tensor
    threshold: float
    criterion: str
    classes: list
    images: list
    settings: dict = dataclasses.field(default_factory=dict)

    def trials(self, name: str | None = None) -> Trials:
        """The trials as an observer (reaction time in steps); needs labels."""
        if self.labels is None:
            raise InsilicoError("these reaction times were measured without labels: pass labels= to reaction_times")
        truth = [self.classes[int(k)] for k in self.labels]
        return Trials.from_predictions(self.images, truth, [self.classes[int(k)] for k in self.choice],
                                       rt=self.rt.tolist(), name=name or self.settings.get("model", "model"))

    def table(self) -> dict:
        """One row per image: ``image``, ``label`` (its class; absent without labels), ``choice``, ``rt`` (time
        steps) and ``decided`` (whether the readout crossed the threshold)."""
        columns = {"image": [str(i) for i in self.images]}
        if self.labels is not None:
            columns["label"] = [self.classes[int(k)] for k in self.labels]
        return {**columns, "choice": [self.classes[int(k)] for k in self.choice], "rt": self.rt.numpy(),
                "decided": self.decided.numpy()}

    def plot(self, ax=None):
        """The speed-accuracy trade-off: accuracy vs mean reaction time over thresholds; returns the Figure."""
        fig, ax = new_axes(ax, close=True)
        ax.plot(self.mean_rt.numpy(), self.accuracy.numpy(), "o-")
        for t, x, y in zip(self.thresholds.tolist(), self.mean_rt.tolist(), self.accuracy.tolist()):
            ax.annotate(f"{t:.2g}", (x, y), fontsize=6, textcoords="offset points", xytext=(3, 3))
        ax.set_xlabel("mean reaction time (time steps)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"speed-accuracy trade-off ({self.criterion} threshold)", fontsize=9)
        return fig

    def __repr__(self) -> str:
        return f"ReactionTimeResult({len(self.rt)} images, {self.probabilities.shape[1]} steps, mean rt " \
               f"{float(self.rt.double().mean()):.2f} at {self.criterion} {self.threshold:g})"


def _default_thresholds(criterion: str, k: int) -> list[float]:
    if criterion == "confidence":
        return [float(v) for v in np.linspace(1.0 / k, 1.0, 11)[1:]]
    return [float(v) for v in np.linspace(math.log(k), 0.0, 11)[1:]]


def _step_probabilities(model, stimuli, readout, batch_size, progress) -> torch.Tensor:
    """The readout's softmax at every step (N, T, K), in one pass per batch."""
    source = stimulus_source(stimuli, model=model)  # image files fitted to the model's input
    plan = Plan(model, source.batch(0, 1, None, None))  # the image gate refuses an empty set here
    with plan.session():
        plan.call(f"{readout}@0")  # the model's own error, or a UnitError naming a readout that never ran
        steps = plan.count(readout)
        units = [f"{readout}@{t}" for t in range(steps)]
        logits = responses(model, source, units, batch_size=batch_size, plan=plan, stop=False, progress=progress,
                           desc="reaction times")
    logits = torch.stack([v.double().cpu() for v in logits], 1)
    if logits.ndim != 3:
        raise InsilicoError(f"{readout!r} gives per-step values of shape {tuple(logits.shape[2:])}, not class scores "
                            "(K,): name the module that outputs the logits (readout=)")
    return logits.softmax(-1)


@register_tool("behaviour", saves=True, per_sample=True, follows_dtype=False)
def reaction_times(
    model: nn.Module,
    stimuli: Any,
    labels: Any = None,
    threshold: float = 0.9,
    criterion: str = "confidence",
    readout: str | None = None,
    thresholds: Sequence[float] | None = None,
    class_names: Sequence[str] | None = None,
    image_ids: Sequence[str] | None = None,
    batch_size: int = 128,
    progress: bool = True,
) -> ReactionTimeResult:
    """Reaction time of a recurrent model per image: the step its readout crosses a threshold (Spoerer 2020).

    Parameters
    ----------
    model : nn.Module
        A recurrent classifier whose ``readout`` module runs once per time step (the bundled BLT family).
    stimuli : tensor (N, C, H, W) in [0, 1], StimulusSet or Dataset
    labels : (N,) ints, optional
        True classes: the speed-accuracy trade-off's accuracies (NaN without).
    threshold : float
        Confidence to reach (``criterion="confidence"``, in (0, 1]) or entropy in nats to fall to
        (``"entropy"``).
    criterion : {"confidence", "entropy"}
    readout : str, optional
        The module whose every call gives class scores (default ``"readout"`` when the model has one, else the
        model's last module: one step).
    thresholds : list of float, optional
        The thresholds of the speed-accuracy trade-off (default 10 from chance to certainty).
    class_names, image_ids : optional
        Names of the classes and ids of the images (default indices), for :meth:`ReactionTimeResult.trials`.

    Returns
    -------
    ReactionTimeResult
        ``rt`` (N,) steps, ``choice``, ``decided``, ``probabilities`` (N, T, K), the trade-off
        (``thresholds``, ``mean_rt``, ``accuracy``) and ``.plot()``.

    Raises
    ------
    StimulusError
        Empty stimuli, or images failing the image gate.
    InsilicoError
        An unknown criterion, a threshold outside its range, a readout that never runs or gives no class
        scores, labels not one per image.
    """
    if criterion not in CRITERIA:
        raise InsilicoError(f"criterion must be one of {CRITERIA}, not {criterion!r}")
    if criterion == "confidence" and not 0 < threshold <= 1:
        raise InsilicoError(f"a confidence threshold lies in (0, 1], got {threshold}")
    if criterion == "entropy" and threshold < 0:
        raise InsilicoError(f"an entropy threshold (nats) is >= 0, got {threshold}")
    names = dict(model.named_modules())
    readout = readout or ("readout" if "readout" in names else list(names)[-1])
    p = _step_probabilities(model, stimuli, readout, batch_size, progress)
    n, _, k = p.shape
    y = None if labels is None else torch.from_numpy(class_indices(labels, n, k))
    rt, choice, decided = decide(p, threshold, criterion)
    sweep = list(thresholds) if thresholds is not None else _default_thresholds(criterion, k)
    mean_rt, accuracy = [], []
    for t in sweep:
        r, c, _ = decide(p, t, criterion)
        mean_rt.append(float(r.double().mean()))
        accuracy.append(float((c == y).double().mean()) if y is not None else math.nan)
    classes = [str(c) for c in (class_names or getattr(model, "classes", range(k)))]
    images = [str(i) for i in (image_ids if image_ids is not None else stimulus_source(stimuli).ids or range(n))]
    settings = dict(model=type(model).__name__, readout=readout, n_images=n)
    return ReactionTimeResult(rt, choice, decided, p, y, torch.tensor(sweep, dtype=torch.float64),
                              torch.tensor(mean_rt, dtype=torch.float64), torch.tensor(accuracy, dtype=torch.float64),
                              float(threshold), criterion, classes, images, settings)


__all__ = ["CRITERIA", "ReactionTimeResult", "decide", "evidence", "reaction_times"]
