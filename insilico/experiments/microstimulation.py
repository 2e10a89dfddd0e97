"""Microstimulation: drive a site harder and harder and test whether the network's choices shift to its class.

As in Salzman, Britten & Newsome's (1990) MT experiments, where stimulating
a cluster of direction-tuned neurons biased the monkey's choices towards their
preferred direction, ``microstimulation(model, units, stimuli, strengths=...)``
adds a current to ``units`` (the *site*; :meth:`insilico.Probe.stimulate`,
``add=``) at a series of strengths and records the class probabilities
(softmax of the output) for every stimulus. As in the experiment:

- the predicted class is chosen **a priori** from the site's tuning: the
  stimuli are split at random into two halves (stratified by class); on the
  first the site's preferred class is measured (the class whose stimuli drive
  the site most, its mean response over every stimulated neuron, unstimulated);
  the second half are the trials on which the effect is measured
  (``held_out``). Classes are ``labels`` when given, else the model's own
  choices on the unstimulated pass. ``target=`` names the class instead
  (then every stimulus is a trial);
- the effect on that class against the others is tested with a paired
  permutation test on the trials (stimulated vs. unstimulated swapped per
  trial): ``p_value`` per strength, that the target's probability rises (as
  probabilities sum to 1, the same as rising more than the others' mean), with
  a bootstrap interval of the target's probability shift and the target's rank
  among the classes' shifts. A current that lifts many classes (a generic
  drift) passes that test, so ``specificity_p`` tests that the target rises
  more than *every* other class: the same paired test of the target's shift
  minus each other class's, its largest p-value (an intersection-union test,
  Berger 1982: level 5% with no correction for the K - 1 comparisons);
- with ``scale="std"`` the current is scaled **per neuron**: each stimulated
  neuron gets ``strength`` times its own standard deviation over the stimuli
  (a silent neuron gets none), so a strength means the same for every neuron
  of a map.

The result gives psychometric-style curves on the trials: the mean
probability of each class and the fraction of trials *choosing* each class vs
strength.

Example
-------
>>> import torch, insilico
>>> from insilico.experiments import microstimulation
>>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.Linear(2, 2))
>>> with torch.no_grad():
...     _ = net[0].weight.copy_(torch.eye(2)); _ = net[0].bias.zero_()
...     _ = net[2].weight.copy_(torch.eye(2)); _ = net[2].bias.zero_()
>>> x = torch.eye(2).repeat(8, 1)           # 8 stimuli of class 0 (drive unit 0), 8 of class 1
>>> res = microstimulation(net, "1[1]", insilico.pixels.raw(x), strengths=[0, 5], labels=[0, 1] * 8, progress=False)
>>> res.target_class, float(res.choice[-1, 1]), float(res.p_value[-1]) < 0.01
(1, 1.0, True)
"""
from __future__ import annotations

import contextlib
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import InsilicoError
from ..evaluate import predict, responses
from ..plan import Plan
from ..registry import register_tool
from ..stimuli.labels import class_labels
from ..plot.images import new_axes
from .results import Result
from .runs import as_units
from ..statistics import LEVEL, interval, rng_for, sign_flip_p, split_halves

#: Permutations of the paired test and bootstrap resamples of the target's shift.
N_PERMUTATIONS = 1000


def _site(model, stimuli, parsed, plan, batch_size, scale) -> tuple[np.ndarray, list]:
    """The site's mean response per stimulus (N,) over every stimulated neuron, and the current's per-neuron scale
    (one tensor per unit in its selection's shape: ones, or each neuron's SD over the stimuli for ``"std"``)."""
    values = responses(model, stimuli, parsed, batch_size=batch_size, plan=plan)
    site = torch.cat([v.reshape(len(v), -1).double() for v in values], 1).mean(1).cpu().numpy()
    if scale == "absolute":
        return site, [torch.ones((), dtype=v.dtype, device=v.device) for v in values]
    if len(site) < 2:
        raise InsilicoError("scale='std' needs at least 2 stimuli (each neuron's SD over them); give more stimuli "
                            "or scale='absolute'")
    sds = [v.std(0) for v in values]
    if not any(bool((sd > 0).any()) for sd in sds):
        raise InsilicoError(f"no stimulated neuron of {[str(u) for u in parsed]} varies over the stimuli (every SD is "
                            "0), so scale='std' would stimulate nothing: use scale='absolute' or other units")
    return site, sds


def _choose_target(site, conditions, n_classes, target, seed) -> tuple[int, np.ndarray, np.ndarray, str]:
    """The predicted class, the trials (N,) bool, the site's tuning (K,) and how the class was chosen."""
    tuning = np.full(n_classes, np.nan)
    if target is not None:
        if not 0 <= int(target) < n_classes:
            raise InsilicoError(f"target={target} is not a class index of the model's {n_classes} outputs")
        for k in np.unique(conditions[conditions < n_classes]):
            tuning[k] = site[conditions == k].mean()
        return int(target), np.ones(len(site), dtype=bool), tuning, "given"
    rng = rng_for(seed, "microstimulation halves")
    selection = split_halves(conditions, rng)
    if not selection.any():  # every class has one stimulus: a random half of the stimuli, unstratified
        selection = split_halves(np.zeros(len(site), dtype=int), rng)
    if not selection.any():
        raise InsilicoError(f"{len(site)} stimulus cannot be split into a half that finds the site's preferred class "
                            "and a half to stimulate: give at least 2 stimuli, or name the class with target=")
    for k in np.unique(conditions[selection & (conditions < n_classes)]):
        tuning[k] = site[selection & (conditions == k)].mean()
    if np.ptp(site[selection]) == 0:
        raise InsilicoError("the site gives the same response to every stimulus of the half that measures its tuning "
                            "(a silent site), so it has no preferred class: name the class with target=, or "
                            "stimulate other units")
    return int(np.nanargmax(tuning)), ~selection, tuning, "preferred class on the other half"


def _statistics(probs, base, trials, target, seed) -> dict:
    """Per strength on the trials: mean probabilities, shifts, choices, the paired permutation p-value of the
    target's shift against the others', its bootstrap interval and rank."""
    probs, base = probs[:, trials], base[trials]
    n_classes = probs.shape[-1]
    delta = probs - base[None]                                          # (S, n, K) per trial
    others = np.delete(delta, target, axis=-1).mean(-1) if n_classes > 1 else np.zeros(delta.shape[:2])
    d = delta[..., target] - others                                     # (S, n): target vs the others
    mean = probs.mean(1)
    shift = mean - base.mean(0)[None]
    rng = rng_for(seed, "microstimulation bootstrap")
    boot = rng.integers(0, d.shape[1], (N_PERMUTATIONS, d.shape[1]))
    rest = delta[..., target:target + 1] - np.delete(delta, target, axis=-1)  # (S, n, K-1): target vs each other
    each = sign_flip_p(np.moveaxis(rest, 1, -1).reshape(-1, d.shape[1]), N_PERMUTATIONS,
                       rng_for(seed, "microstimulation specificity")).reshape(len(d), -1)
    return dict(mean_probability=mean, shift=shift, specificity_p=each.max(1) if each.size else np.ones(len(d)),
                choice=np.stack([np.bincount(p.argmax(-1), minlength=n_classes) / p.shape[0] for p in probs]),
                p_value=sign_flip_p(d, N_PERMUTATIONS, rng_for(seed, "microstimulation permutations")),
                target_shift_interval=interval(delta[:, boot, target].mean(-1), axis=1),
                target_rank=(shift >= shift[:, target:target + 1]).sum(1))  # ties count against the target


@register_tool("experiment", per_sample=True)
def microstimulation(
    model: nn.Module,
    units: Any,
    stimuli: Any,
    strengths: Sequence[float] = (0, 0.5, 1, 2, 4, 8),
    scale: str = "absolute",
    target: int | None = None,
    labels: Any = None,
    steps: int | Sequence[int] | None = None,
    output: str | None = None,
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = True,
) -> "MicrostimulationResult":
    """Class probabilities as ``units`` are stimulated with increasing strength; the effect on the site's class.

    Parameters
    ----------
    model : nn.Module
        A classifier (its output, or the unit ``output``, holds class scores; class names from
        ``model.classes`` when it has them).
    units : str or list of str
        The stimulated site, e.g. ``"features.10[5]"`` (a channel's whole map),
        ``"features.10[5,3,3]"`` or ``["features.10[5]", "features.10[9]"]``.
    stimuli : tensor (N, C, H, W), StimulusSet or Dataset
        The trials: every strength is applied to every stimulus.
    strengths : list of float
        Current added to each stimulated neuron (may be negative: inhibition).
    scale : {"absolute", "std"}
        ``"std"``: strengths in standard deviations of each neuron's own response
        over ``stimuli`` (per neuron; a neuron that never varies gets no current).
    target : int, optional
        The predicted class; default chosen a priori, the site's preferred class
        on a random half of the stimuli (the other half are the trials).
    labels : (N,) ints, optional
        The class of each stimulus for the site's tuning; default the model's
        own choices on the unstimulated pass.
    steps : int or list, optional
        Stimulate only these calls of a recurrent module.
    output : str, optional
        Read class scores from this unit (e.g. ``"readout@2"``).
    seed : int
        Seed of the random halves, the permutations and the bootstrap.

    Returns
    -------
    MicrostimulationResult

    Raises
    ------
    InsilicoError
        An unknown scale, no strength, a single stimulus or an untuned (e.g. silent) site and no ``target=``, ``scale="std"`` on
        fewer than 2 stimuli or on a site that never varies, a target that is not a class index.
    """
    if scale not in ("absolute", "std"):
        raise InsilicoError(f"scale must be 'absolute' or 'std', not {scale!r}")
    parsed = as_units(units)
    strengths = [float(s) for s in strengths]
    if not strengths:
        raise InsilicoError("give at least one strength")
    plan = Plan(model)  # the call's one Probe and session
    site, per_neuron = _site(model, stimuli, parsed, plan, batch_size, scale)
    base = torch.softmax(predict(model, stimuli, batch_size=batch_size, output=output, plan=plan), -1)
    probabilities = []
    for strength in tqdm(strengths, desc="microstimulation", disable=not progress, leave=False):
        if strength == 0.0:
            probabilities.append(base.numpy())
            continue
        with contextlib.ExitStack() as stack:
            for unit, pattern in zip(parsed, per_neuron):
                stack.enter_context(plan.probe.stimulate(unit, add=strength * pattern, steps=steps))
            out = predict(model, stimuli, batch_size=batch_size, output=output, plan=plan)
        probabilities.append(torch.softmax(out, -1).numpy())
    probs, base = np.stack(probabilities), base.numpy()  # (S, N, K), (N, K)
    n_classes = probs.shape[-1]
    conditions = base.argmax(-1) if labels is None else class_labels(labels, len(base))
    target, trials, tuning, chosen = _choose_target(site, conditions, n_classes, target, seed)
    names = list(getattr(model, "classes", range(n_classes)))
    arrays = dict(strengths=np.array(strengths), probabilities=probs, classes=np.array([str(c) for c in names]),
                  target=np.array(target), baseline=base[trials].mean(0), held_out=trials, site_tuning=tuning,
                  neuron_scale=torch.cat([p.reshape(-1).double().cpu() for p in per_neuron]).numpy(),
                  **_statistics(probs, base, trials, target, seed))
    settings = dict(units=[str(u) for u in parsed], scale=scale, unit_scale=float(arrays["neuron_scale"].mean()),
                    current="per neuron: strength x the neuron's own SD over the stimuli" if scale == "std"
                    else "strength added to every stimulated neuron", target_chosen=chosen,
                    tuning_classes="labels" if labels is not None else "the model's unstimulated choices",
                    steps=steps, output=output, n_stimuli=int(probs.shape[1]), n_trials=int(trials.sum()),
                    model=type(model).__name__, seed=int(seed), n_permutations=N_PERMUTATIONS, level=LEVEL)
    return MicrostimulationResult(arrays, settings)


class MicrostimulationResult(Result):
    """Class probabilities per strength, and the test of the effect on the predicted class.

    Attributes
    ----------
    strengths : (S,)
    probabilities : (S, N, K) softmax per stimulus (every stimulus, trials or not)
    held_out : (N,) bool, the trials: stimuli not used to choose the target (all when ``target=`` was given)
    mean_probability : (S, K), shift : (S, K) change from the unstimulated model, over the trials
    choice : (S, K) fraction of trials classified as each class
    baseline : (K,) mean unstimulated probability over the trials
    target_class : int, the predicted class (``settings["target_chosen"]`` says how it was chosen)
    site_tuning : (K,) the site's mean unstimulated response to each class's stimuli on the half that chose
        the target (all stimuli when the target was given); NaN for a class with none there
    p_value : (S,) one-sided paired permutation test (1000 sign flips) that the target's probability rises more
        than the others' mean; its floor is 1/1001, and 1 at strength 0
    specificity_p : (S,) the target's shift exceeds every other class's: the largest of the K - 1 one-sided
        paired permutation p-values of (target's shift - that class's shift) per trial (intersection-union
        test, Berger 1982); a small ``p_value`` with a large ``specificity_p`` is a drift, not the site's class
    target_shift_interval : (S, 2) 95% bootstrap interval (over trials) of the target's probability shift
    target_rank : (S,) rank of the target's shift among all classes' (1: it rises most; ties count against
        it, so with no current, where nothing moves, it is K)
    neuron_scale : (M,) the current per unit of strength of each stimulated neuron (its SD with
        ``scale="std"``, else 1); ``settings["unit_scale"]`` is their mean
    """

    required_arrays = ("held_out", "p_value", "specificity_p", "target_shift_interval", "target_rank", "site_tuning",
                       "neuron_scale")

    @property
    def target_class(self) -> int:
        return int(self.arrays["target"])

    def psychometric(self) -> np.ndarray:
        """Fraction of trials choosing the target class at each strength."""
        return self.choice[:, self.target_class]

    def table(self) -> dict:
        cols = {"strength": self.strengths, "target_choice": self.psychometric(),
                "target_probability": self.mean_probability[:, self.target_class],
                "target_shift_low": self.target_shift_interval[:, 0],
                "target_shift_high": self.target_shift_interval[:, 1], "target_rank": self.target_rank,
                "p_value": self.p_value, "specificity_p": self.specificity_p}
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
        t = self.target_class
        band = self.baseline[t] + self.target_shift_interval
        ax.fill_between(self.strengths, band[:, 0], band[:, 1], color="k", alpha=0.12, lw=0,
                        label=f"P({self.classes[t]}): 95% interval")
        ax.plot(self.strengths, self.psychometric(), "k--", label=f"choice rate: {self.classes[t]}")
        ax.set_xlabel("stimulation strength" + (" (each neuron's response SD)" if self.settings["scale"] == "std"
                                                else ""))
        ax.set_ylabel("probability (held-out trials)")
        ax.set_ylim(-0.02, 1.02)
        strongest_p = float(self.p_value[strongest])
        ax.set_title(f"{', '.join(self.settings['units'])[:50]}: predicted {self.classes[t]} "
                     f"({self.settings.get('target_chosen', '')}); p = {strongest_p:.3g}, above every other class: "
                     f"p = {float(self.specificity_p[strongest]):.3g}", fontsize=7)
        ax.legend(fontsize=7, frameon=False)
        return fig
