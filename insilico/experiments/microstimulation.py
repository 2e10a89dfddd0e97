"""Microstimulation: drive a group of units harder and harder and watch the network's choices shift.

As in Salzman, Britten & Newsome's (1990) MT experiments, where stimulating
a cluster of direction-tuned neurons biased the monkey's choices towards their
preferred direction, ``microstimulation(model, units, stimuli, strengths=...)``
adds a current to ``units`` (:meth:`insilico.Probe.stimulate`, ``add=``) at a
series of strengths and records the class probabilities (softmax of the
output) for every stimulus. The result gives psychometric-style curves: the
mean probability of each class and the fraction of stimuli *choosing* each
class vs strength. The class the stimulation favours (``target``) is the one
whose probability rises most at the highest strength, unless given.

Strengths are in the units of the layer's activity, or, with
``scale="std"``, in standard deviations of the stimulated units' responses
over the stimuli, which makes layers comparable.

Example
-------
>>> import torch, insilico
>>> from insilico.experiments import microstimulation
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
>>> with torch.no_grad():
...     _ = net[2].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
>>> res = microstimulation(net, "1[1]", insilico.pixels.raw(torch.rand(8, 3)), strengths=[0, 5, 50], progress=False)
>>> res.target_class, bool(res.choice[-1, 1] == 1.0)
(1, True)
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import InsilicoError
from ..evaluate import predict
from ..plan import Plan
from ..registry import register_tool
from .results import Result, new_axes
from .runs import as_units, record_units


@register_tool("experiment", per_sample=True)
def microstimulation(
    model: nn.Module,
    units: Any,
    stimuli: Any,
    strengths: Sequence[float] = (0, 0.5, 1, 2, 4, 8),
    scale: str = "absolute",
    target: int | None = None,
    steps: int | Sequence[int] | None = None,
    output: str | None = None,
    classes: Sequence[str] | None = None,
    batch_size: int = 256,
    progress: bool = True,
) -> "MicrostimulationResult":
    """Class probabilities as ``units`` are stimulated with increasing strength.

    Parameters
    ----------
    model : nn.Module
        A classifier (its output, or the unit ``output``, holds class scores).
    units : str or list of str
        The stimulated group, e.g. ``"features.10[5]"`` (a channel's whole map),
        ``"features.10[5,3,3]"`` or ``["features.10[5]", "features.10[9]"]``.
    stimuli : tensor (N, C, H, W), StimulusSet or Dataset
        The "trials": every strength is applied to every stimulus.
    strengths : list of float
        Current added to each stimulated unit (may be negative: inhibition).
    scale : {"absolute", "std"}
        ``"std"``: strengths in standard deviations of the units' responses
        over ``stimuli`` (one scale for the whole group).
    target : int, optional
        The class whose choice rate is the psychometric curve; default the
        class whose mean probability rises most at the highest strength.
    steps : int or list, optional
        Stimulate only these calls of a recurrent module.
    output : str, optional
        Read class scores from this unit (e.g. ``"readout@2"``).

    Returns
    -------
    MicrostimulationResult
    """
    if scale not in ("absolute", "std"):
        raise InsilicoError(f"scale must be 'absolute' or 'std', not {scale!r}")
    parsed = as_units(units)
    strengths = [float(s) for s in strengths]
    if not strengths:
        raise InsilicoError("give at least one strength")
    plan = Plan(model)  # the call's one Probe and session
    probe = plan.probe
    unit_scale = 1.0
    if scale == "std":
        values, _ = record_units(model, stimuli, parsed, batch_size=batch_size, progress=False, plan=plan)
        unit_scale = float(values.std(0).mean()) or 1.0
    base = torch.softmax(predict(model, stimuli, batch_size=batch_size, output=output, plan=plan), -1)
    probabilities = []
    for strength in tqdm(strengths, desc="microstimulation", disable=not progress, leave=False):
        if strength == 0.0:
            probabilities.append(base.numpy())
            continue
        with probe.stimulate(*parsed, add=strength * unit_scale, steps=steps):
            out = predict(model, stimuli, batch_size=batch_size, output=output, plan=plan)
        probabilities.append(torch.softmax(out, -1).numpy())
    probs = np.stack(probabilities)  # (S, N, K)
    n_classes = probs.shape[-1]
    choice = np.stack([np.bincount(p.argmax(-1), minlength=n_classes) / p.shape[0] for p in probs])
    mean = probs.mean(1)
    shift = mean - base.numpy().mean(0)[None]
    if target is None:
        target = int(shift[int(np.argmax(np.abs(strengths)))].argmax())
    names = list(classes) if classes is not None else list(getattr(model, "classes", range(n_classes)))
    arrays = dict(strengths=np.array(strengths), probabilities=probs, mean_probability=mean, shift=shift,
                  choice=choice, classes=np.array([str(c) for c in names]), target=np.array(target),
                  baseline=base.numpy().mean(0))
    settings = dict(units=[str(u) for u in parsed], scale=scale, unit_scale=unit_scale, steps=steps, output=output,
                    n_stimuli=int(probs.shape[1]), model=type(model).__name__)
    return MicrostimulationResult(arrays, settings)


class MicrostimulationResult(Result):
    """Class probabilities per strength.

    Attributes
    ----------
    strengths : (S,)
    probabilities : (S, N, K) softmax per stimulus
    mean_probability : (S, K), shift : (S, K) change from the unstimulated model
    choice : (S, K) fraction of stimuli classified as each class
    target_class : int, the class the stimulation favours
    """

    @property
    def target_class(self) -> int:
        return int(self.arrays["target"])

    def psychometric(self) -> np.ndarray:
        """Fraction of stimuli choosing the target class at each strength."""
        return self.choice[:, self.target_class]

    def table(self) -> dict:
        cols = {"strength": self.strengths, "target_choice": self.psychometric(),
                "target_probability": self.mean_probability[:, self.target_class]}
        for k, c in enumerate(self.classes):
            cols[f"p_{c}"] = self.mean_probability[:, k]
        return cols

    def plot(self, ax=None, top: int = 4):
        """Psychometric-style curves: mean probability of the ``top`` most shifted classes, and the target's choice rate."""
        fig, ax = new_axes(ax)
        strongest = int(np.argmax(np.abs(self.strengths)))
        order = np.argsort(-np.abs(self.shift[strongest]))[:top]
        for k in order:
            ax.plot(self.strengths, self.mean_probability[:, k], "o-", ms=3, label=f"P({self.classes[k]})")
        ax.plot(self.strengths, self.psychometric(), "k--", label=f"choice rate: {self.classes[self.target_class]}")
        ax.set_xlabel("stimulation strength" + (" (response SD)" if self.settings["scale"] == "std" else ""))
        ax.set_ylabel("probability")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(", ".join(self.settings["units"])[:60], fontsize=8)
        ax.legend(fontsize=7, frameon=False)
        return fig
