"""Lesion studies: silence channels of a layer and measure what the network can no longer do.

``lesion_sweep(model, layer, stimuli, labels)`` lesions each channel of
``layer`` (or each group of channels) in turn with
:meth:`insilico.Probe.lesion` and measures the accuracy on every class of a
labelled stimulus set. The change in per-class accuracy, groups x classes, is
the *dissociation matrix*. A per-class accuracy moves in steps of one image,
so each entry carries a 95% interval (the change of a proportion measured twice
on the same images, Agresti & Min 2005) and an exact McNemar test, the matrix
carries its split-half reliability (would it replicate on other images?), and
classes at floor or ceiling at baseline are flagged: only entries whose
interval excludes 0 and that survive the false discovery rate control over
the whole matrix (Benjamini & Hochberg 1995), in unflagged classes
(``dissociable``), may be read as an effect, and a "double dissociation" only
where both are and the reliability is high. ``cumulative_lesion`` lesions the
channels one after another, most important first and least important first (importance = the
drop in overall accuracy when the channel alone is lesioned), against several
random orders (their mean and band), tracing how gracefully the network
degrades.

Example
-------
>>> import numpy as np, torch, insilico
>>> from insilico.experiments import lesion_sweep
>>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
>>> x, y = torch.rand(20, 4), torch.randint(0, 2, (20,))
>>> res = lesion_sweep(net, "1", insilico.pixels.raw(x), y, progress=False)  # not images: the explicit door
>>> res.class_accuracy.shape, res.effect.shape, res.effect_interval.shape, res.dissociable.shape
((3, 2), (3, 2), (3, 2, 2), (3, 2))
>>> bool(-1 <= float(res.split_half_r) <= 1) or bool(np.isnan(res.split_half_r))
True
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import InsilicoError, UnitError
from ..evaluate import predict
from ..jsonfiles import to_json
from ..layers import unit_layout
from ..plan import Plan
from ..recording import stimulus_source
from ..registry import register_tool
from ..units import Unit
from ..stimuli.labels import check_outputs, class_labels, per_class_accuracy, stimulus_labels
from ..plot.images import new_axes
from .results import Result, write_csv
from ..statistics import (LEVEL, correlation, fdr_q, interval, matched_difference_interval, mcnemar_p,
                          proportion_interval, rng_for, spearman_brown, split_halves)


#: Where each layout keeps its channels (:mod:`insilico.layout`): a map's axis 0, a token layer's features (its
#: last axis), a channels-last stage's last axis, a vector's entries.
_CHANNEL_AXIS = {"map": 0, "vector": 0, "tokens": -1, "channels_last": -1, "heads": 0}


def _channels(plan: Plan, layer: Unit) -> tuple[int, int]:
    """``(axis, count)``: the channel axis of ``layer``'s output (one sample) and its size, read from the plan's
    survey and the layer's layout (a Swin stage's channels are its last axis, a ViT block's its features)."""
    whole = Unit(layer.module, layer.step if layer.step is not None else -1, None, layer.output)
    shape = plan.shape(whole)
    layout = unit_layout(plan.model, whole, shape) if shape else "scalar"
    if layout not in _CHANNEL_AXIS:
        raise InsilicoError(f"{layer} has no channel axis to lesion (per-sample shape {shape}, layout {layout!r}): "
                            "name a conv map, a token layer, a channels-last stage or a vector")
    axis = _CHANNEL_AXIS[layout] % len(shape)
    return axis, int(shape[axis])


def _labels(stimuli, model, labels, classes) -> tuple:
    """``(y, classes, check)``: the labels given, else the stimulus folder's (matched by name to the model's
    classes); ``check`` the class names to hold against the model's outputs when the folder's order stands in."""
    if isinstance(labels, str) and labels == "decision":
        return None, classes, None  # the intact model's choices, read in _lesion_runs
    if labels is not None:
        return class_labels(labels, len(stimuli)), classes, None
    y, classes, mapped = stimulus_labels(stimuli, model, classes)
    return y, classes, (None if mapped else classes)


def _lesion_runs(model, unit, stimuli, y, groups, mode, output, batch_size, progress, check=None) -> dict:
    """Per group: predictions scored per stimulus (``correct`` (G, N) bool), per class and overall, the probability
    of each stimulus's label (``label_probability`` (G, N)) and the mean probability of each output
    (``mean_probability`` (G, K)); and the intact model's (``baseline_*``). One Plan (Probe, session, survey) for
    the whole call. ``y`` None: the intact model's choices are the labels. ``check``: class names whose count must
    equal the model's outputs (:func:`check_outputs`), or None."""
    plan = Plan(model, stimuli.batch(0, 1, None, None))
    with plan.session():
        scores = predict(model, stimuli, batch_size=batch_size, output=output, plan=plan)
        n_classes = int(scores.shape[-1])
        if check is not None:
            check_outputs(check, n_classes)
        base_pred = scores.argmax(-1).numpy()
        y = base_pred if y is None else y
        if len(y) and (y.min() < 0 or y.max() >= n_classes):
            raise InsilicoError(f"lesion labels run from {y.min()} to {y.max()}, but the class scores of "
                                f"{output or 'the model'} have {n_classes} entries: give each stimulus the index of its "
                                f"class among the model's outputs (or labels='decision')")
        base = _summary(scores, y)
        axis, n_channels = _channels(plan, unit)
        groups = [[int(c) for c in g] for g in _groups(groups, n_channels, unit)]
        if mode == "zero":
            lesioned = [g for g in groups if g]
            found = iter(_batched_runs(model, plan, unit, stimuli, y, lesioned, axis, output, batch_size, progress)
                         if lesioned else [])
            runs = [next(found) if group else base for group in groups]
        else:
            runs = [_summary(predict(model, stimuli, batch_size=batch_size, output=output, plan=plan), y)
                    if group else base for group in _lesioned(plan, unit, stimuli, groups, axis, batch_size, progress)]
    pred = np.array([r[0] for r in runs], dtype=int).reshape(len(groups), len(y))
    probability = np.array([r[1] for r in runs], dtype=float).reshape(len(groups), len(y))
    mean = np.array([r[2] for r in runs], dtype=float).reshape(len(groups), n_classes)
    correct = pred == y
    return dict(groups=groups, n_classes=n_classes, labels=y, accuracy=correct.mean(1),
                class_accuracy=np.stack([per_class_accuracy(p, y, n_classes) for p in pred]).reshape(len(groups),
                                                                                                   n_classes),
                baseline=np.array(float((base_pred == y).mean())), baseline_class=per_class_accuracy(base_pred, y, n_classes),
                changed=(pred != base_pred).mean(1), correct=correct.reshape(len(groups), len(y)),
                baseline_correct=base_pred == y, label_probability=probability.reshape(len(groups), len(y)),
                baseline_label_probability=base[1], mean_probability=mean.reshape(len(groups), n_classes),
                baseline_mean_probability=base[2])


def _summary(scores, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(predictions (N,), probability of each stimulus's label (N,), mean probability of each output (K,))``
    from class scores ``(N, K)`` (softmax in float64)."""
    probability = torch.softmax(scores.double(), -1)
    picked = probability.gather(1, torch.as_tensor(y, dtype=torch.long).view(-1, 1))[:, 0]
    return scores.argmax(-1).numpy(), picked.numpy(), probability.mean(0).numpy()


def _lesioned(plan, unit, stimuli, groups, axis, batch_size, progress):
    """Yield each group with it lesioned (mode "mean": each unit set to its mean over ``stimuli``)."""
    for group in tqdm(groups, desc=f"lesion {unit}", disable=not progress, leave=False):
        if not group:
            yield group
            continue
        target = unit.replace(index=(slice(None),) * axis + (tuple(group),))
        with plan.probe.lesion(target, mode="mean", reference=stimuli, batch_size=batch_size):
            yield group


def _batched_runs(model, plan, unit, stimuli, y, groups, axis, output, batch_size, progress) -> list:
    """:func:`_summary` of each group zeroed, many groups per forward pass: each batch of stimuli repeated once
    per group of a chunk, the layer multiplied by a per-sample gain that is 0 on that copy's group (one
    :meth:`~insilico.probe.Probe.stimulate`; the same values as :meth:`~insilico.probe.Probe.lesion` "zero")."""
    from ..pixels import raw
    from ..recording import batches

    whole = Unit(unit.module, unit.step if unit.step is not None else -1, None, unit.output)
    shape, n = tuple(plan.shape(whole)), len(stimuli)
    per_batch = min(n, batch_size)
    chunk = max(1, batch_size // per_batch)
    pred, probability, means = np.zeros((len(groups), n), int), np.zeros((len(groups), n)), None
    bar = tqdm(total=len(groups) * n, desc=f"lesion {unit}", disable=not progress, leave=False)
    for start, batch in batches(stimuli, per_batch, plan.probe.device, plan.probe.dtype):
        rows = slice(start, start + len(batch))
        for a in range(0, len(groups), chunk):
            part = groups[a:a + chunk]
            gain = torch.ones((len(part),) + shape, device=batch.device, dtype=plan.probe.dtype)
            for i, group in enumerate(part):
                gain[(i,) + (slice(None),) * axis + (torch.tensor(group, dtype=torch.long),)] = 0.0
            with plan.probe.stimulate(unit, gain=gain.repeat_interleave(len(batch), 0)):
                out = predict(model, raw(batch.repeat(len(part), *[1] * (batch.ndim - 1))),
                              batch_size=len(part) * len(batch), output=output, plan=plan)
            for i, scores in enumerate(out.view(len(part), len(batch), -1)):  # reduced at once: memory (G, N)
                pred[a + i, rows], probability[a + i, rows], mean = _summary(scores, y[rows])
                means = np.zeros((len(groups), len(mean))) if means is None else means
                means[a + i] += mean * len(batch)
            bar.update(len(part) * len(batch))
    bar.close()
    return [(pred[g], probability[g], means[g] / n) for g in range(len(groups))]


def _groups(groups, n_channels: int, unit: Unit) -> list:
    """The groups of channels to lesion: as given, one per channel (None) or consecutive runs of ``groups`` channels
    (an int >= 1; the last run may be shorter)."""
    if groups is None:
        return [[c] for c in range(n_channels)]
    if isinstance(groups, (int, np.integer)) and not isinstance(groups, bool):
        if groups < 1:
            raise InsilicoError(f"groups={groups}: a group size must be at least 1 (channels of {unit} lesioned together)")
        return [list(range(s, min(s + int(groups), n_channels))) for s in range(0, n_channels, int(groups))]
    outside = sorted({int(c) for g in groups for c in g if not -n_channels <= int(c) < n_channels})
    if outside:
        raise UnitError(f"channel(s) {outside} of groups= are out of range for {unit}, which has {n_channels} "
                        f"channels (0..{n_channels - 1})")
    return groups


def _class_means(correct: np.ndarray, y: np.ndarray, n_classes: int, keep: np.ndarray | None = None) -> np.ndarray:
    """Per-class accuracy (..., K) of per-stimulus scores ``correct`` (..., N), over the stimuli in ``keep``."""
    out = np.full(correct.shape[:-1] + (n_classes,), np.nan)
    for k in range(n_classes):
        mask = (y == k) if keep is None else (y == k) & keep
        if mask.any():
            out[..., k] = correct[..., mask].mean(-1)
    return out


def _changes(correct: np.ndarray, base: np.ndarray, y: np.ndarray, n_classes: int) -> tuple:
    """``(gained, lost, n)``: per group and class (G, K) the images right only with the group lesioned / only
    intact, and each class's number of images (K,)."""
    correct, base = np.asarray(correct, dtype=bool), np.asarray(base, dtype=bool)
    members = (np.asarray(y)[None, :] == np.arange(n_classes)[:, None]).astype(np.int64)   # (K, N)
    gained = (correct & ~base[None]).astype(np.int64) @ members.T
    lost = (~correct & base[None]).astype(np.int64) @ members.T
    return gained, lost, members.sum(1)


def lesion_uncertainty(correct, baseline_correct, labels, n_classes, n_boot=1000, seed=0, n_splits=20) -> dict:
    """The noise estimates of a dissociation matrix from per-stimulus scores (see :class:`LesionResult`).

    ``correct`` (G, N) bool with each group lesioned, ``baseline_correct`` (N,) intact, ``labels`` (N,).
    Returns ``effect_interval`` (G, K, 2): the 95% interval of each entry of the effect, a change of a proportion
    measured twice on the same images (:func:`insilico.statistics.matched_difference_interval`, Agresti & Min
    2005; ``n_boot=0``: NaN, not computed);
    ``normalised_interval`` (G, K, 2): the interval of the normalised effect, the extremes of the effect's
    interval over the Wilson interval of ``baseline - chance`` (NaN where that reaches chance, see
    :func:`_normalised_interval`);
    ``split_half_r``: the mean over ``n_splits`` random halves (stratified by class) of Pearson r between the
    two halves' effect matrices (all finite entries); ``reliability``: its Spearman-Brown correction.
    """
    correct = np.asarray(correct, dtype=np.float64)
    base = np.asarray(baseline_correct, dtype=np.float64)
    y = np.asarray(labels)
    ci = np.full(correct.shape[:1] + (n_classes, 2), np.nan)
    normalised = ci.copy()
    if n_boot > 0 and len(y):
        gained, lost, n = _changes(correct, base, y, n_classes)
        ci = matched_difference_interval(gained, lost, n[None])
        right = np.asarray([base[y == k].sum() for k in range(n_classes)])
        normalised = _normalised_interval(ci, proportion_interval(right, n) - 1.0 / n_classes)
    rng, rs = rng_for(seed, "lesion split halves"), []
    for _ in range(n_splits):
        half = split_halves(y, rng)
        a = _class_means(correct, y, n_classes, half) - _class_means(base, y, n_classes, half)
        b = _class_means(correct, y, n_classes, ~half) - _class_means(base, y, n_classes, ~half)
        rs.append(correlation(a, b))
    r = float(np.nanmean(rs)) if np.isfinite(rs).any() else float("nan")
    return dict(effect_interval=ci, normalised_interval=normalised, split_half_r=np.array(r),
                reliability=np.array(spearman_brown(r)))


def _normalised_interval(effect: np.ndarray, span: np.ndarray) -> np.ndarray:
    """(G, K, 2): the interval of ``effect / (baseline - chance)`` from the effect's interval ``effect`` (G, K, 2)
    and the interval of ``baseline - chance`` ``span`` (K, 2): the least and greatest ratio over both intervals
    (covers when both do, so at least 90% by Bonferroni's inequality; 99.8% measured on ``minialex``); NaN
    where the baseline's interval reaches chance (the ratio is unbounded there)."""
    with np.errstate(all="ignore"):
        corners = effect[..., :, None] / span[None, :, None, :]              # (G, K, 2, 2)
        out = np.stack([corners.min((-2, -1)), corners.max((-2, -1))], -1)
    return np.where((span[:, 0] > 0)[None, :, None], out, np.nan)


@register_tool("experiment", follows_dtype=False)
def lesion_sweep(
    model: nn.Module,
    layer: str | Unit,
    stimuli: Any,
    labels: Any = None,
    groups: Sequence[Sequence[int]] | int | None = None,
    mode: str = "zero",
    classes: Sequence[str] | None = None,
    output: str | None = None,
    batch_size: int = 256,
    n_boot: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> "LesionResult":
    """Per-class accuracy with each channel (or group of channels) of ``layer`` lesioned, with its noise.

    The change in per-class accuracy (groups x classes, :attr:`LesionResult.effect`) comes with a 95%
    interval and an exact McNemar p-value per entry (the same images scored intact and lesioned), q-values
    controlling the false discovery rate over the matrix, the split-half reliability of the whole matrix, the
    effect normalised for floor and ceiling, and the classes that sit at floor (baseline <= chance) or
    ceiling (baseline 1.0), where a drop or a gain cannot show. Read a dissociation only off entries whose
    interval excludes 0 and whose q-value is below 5%, in classes not flagged
    (:attr:`LesionResult.dissociable`), and only when the reliability says the matrix would replicate on
    other images.

    Parameters
    ----------
    model : nn.Module
        A classifier: its output (or the unit ``output``) holds class scores.
    layer : str
        A layer address, e.g. ``"features.10"``; recurrent modules are
        lesioned at every step unless the address names one (``"layers.1@2"``).
    stimuli : tensor (N, C, H, W), StimulusSet, Dataset, folder, glob or list of image files
        Anything :func:`insilico.recording.stimulus_source` reads (files fitted to the model's input).
    labels : (N,) ints or "decision", optional
        The class index of each stimulus (an index of the model's outputs); ``"decision"``: the intact model's
        choice on each stimulus (accuracy is then agreement with the intact model; for stimuli without labels,
        or labels that are not the model's outputs). Default: the labels the
        stimuli carry (a ``DIR/<class>/<image>`` folder, a Dataset with ``targets``), matched to the
        model's outputs by name when the model names its classes (``classes`` or ``model.classes``),
        else in the folder's order, when the model has exactly as many outputs as the folder classes
        (otherwise refused: :func:`insilico.stimuli.labels.stimulus_labels`).
    groups : list of lists of int, or int, optional
        Channels lesioned together; default one group per channel; an int ``g``: consecutive runs of ``g``
        channels (``[0..g-1], [g..2g-1], ...``, the last may be shorter). An empty
        group is the intact model. A channel is read from the layer's layout: a conv map's axis 0, a token
        layer's feature (every token's), a channels-last stage's last axis (every position's).
    mode : {"zero", "mean"}
        Lesioned units are set to 0, or to their mean response over ``stimuli``.
    classes : list of str, optional
        Class names (default ``model.classes`` when it exists).
    output : str, optional
        Read class scores from this unit instead of the model's output
        (e.g. ``"readout@1"``: step 1 of a recurrent model).
    n_boot : int
        0: no intervals (NaN; for a quick ranking); any other value computes them (closed form: they were
        bootstrap intervals, which covered 60% instead of 95% with 16 images per class).
    seed : int
        Seed of the random halves (never the global random state).

    Returns
    -------
    LesionResult

    Raises
    ------
    InsilicoError
        A mode other than "zero"/"mean", an address with an index (choose channels with ``groups=``),
        not one label per stimulus.
    """
    if mode not in ("zero", "mean"):
        raise InsilicoError(f"lesion mode must be 'zero' or 'mean' here, not {mode!r}")
    unit = Unit.coerce(layer, model)
    unit.resolve(model)
    if unit.index is not None:
        raise InsilicoError(f"name the whole layer ({unit.module!r}) and choose channels with groups=")
    stimuli = stimulus_source(stimuli, model=model)  # read once more per group: files are decoded per chunk
    n = len(stimuli)
    y, classes, check = _labels(stimuli, model, labels, classes)
    runs = _lesion_runs(model, unit, stimuli, y, groups, mode, output, batch_size, progress, check)
    groups, n_classes, y = runs.pop("groups"), runs.pop("n_classes"), runs["labels"]
    names = list(classes) if classes is not None else list(getattr(model, "classes", range(n_classes)))
    arrays = dict(groups=np.array([",".join(map(str, g)) for g in groups]), classes=np.array([str(c) for c in names]),
                  chance=np.array(1.0 / n_classes), **runs)
    arrays.update(lesion_uncertainty(runs["correct"], runs["baseline_correct"], y, n_classes, n_boot, seed))
    intact = np.array([not g for g in groups], dtype=bool)   # the intact model itself: no effect by construction
    for key in ("effect_interval", "normalised_interval"):
        arrays[key][intact] = np.where(np.isnan(arrays[key][intact]), np.nan, 0.0)
    settings = dict(layer=str(unit), mode=mode, n_stimuli=n, output=output, model=type(model).__name__,
                    n_boot=int(n_boot), seed=int(seed), level=LEVEL,
                    labels="decision" if isinstance(labels, str) else "given" if labels is not None else "stimuli")
    return LesionResult(arrays, settings)


class LesionResult(Result):
    """Accuracy with each group lesioned, with the noise estimates of its effects.

    Attributes
    ----------
    groups : (G,) str, channels of each group ("3" or "3,7,9")
    accuracy : (G,) overall accuracy with the group lesioned
    class_accuracy : (G, K) per-class accuracy
    baseline, baseline_class : intact accuracy, overall and (K,) per class
    effect : (G, K) change in per-class accuracy (the dissociation matrix)
    effect_interval : (G, K, 2) 95% interval (low, high) of each effect, from the class's images right only
        lesioned / only intact (Agresti & Min 2005, :func:`insilico.statistics.matched_difference_interval`): a
        lesion that changed none of a class's 16 images still has +-0.11, since it may change others; the
        empty group (the intact model itself) has [0, 0]
    nonzero : (G, K) bool, the interval excludes 0 (the others are not distinguishable from no effect)
    p_value : (G, K) exact two-sided McNemar test of each entry (:func:`insilico.statistics.mcnemar_p`);
        q_value : (G, K) its Benjamini-Hochberg q over the entries of classes at neither floor nor ceiling (the
        family read together; NaN in flagged classes)
    normalised_effect : (G, K) ``(acc - baseline) / (baseline - chance)``: 0 unchanged, -1 down to chance,
        below -1 below chance; NaN for classes at floor; normalised_interval : (G, K, 2) its interval: the
        extremes of ``effect_interval`` over the Wilson interval of ``baseline - chance`` (at least 90%
        coverage; NaN where the baseline's interval reaches chance)
    label_probability : (G, N) probability (softmax of the scores) of each stimulus's label with the group
        lesioned; baseline_label_probability : (N,); probability_effect : (G, K) its mean change per class
    mean_probability : (G, K) each output's probability averaged over the stimuli; baseline_mean_probability :
        (K,); output_effect : (G, K) its change
    at_floor, at_ceiling : (K,) bool, intact accuracy <= chance (no drop can show) / == 1.0 (no gain can show)
    dissociable : (G, K) bool, ``nonzero`` with ``q_value < 0.05`` in a class at neither floor nor ceiling
        (``labels="decision"``: every class is at ceiling by construction, so only the floor flags):
        the only entries to read a (double) dissociation off (a 95% interval per entry alone would mark 5% of
        a matrix of null entries)
    split_half_r : Pearson r between the effect matrices of two random halves of the images (stratified by
        class; mean over 20 splits); reliability : its Spearman-Brown correction ``2r / (1 + r)``
    importance : (G,) drop in overall accuracy
    changed : (G,) fraction of predictions the lesion changed
    correct : (G, N) bool, each stimulus classified right with the group lesioned; baseline_correct : (N,)
    labels : (N,) class of each stimulus; chance : 1 / K
    """

    sample_arrays = ("groups", "accuracy", "class_accuracy", "changed", "correct", "effect_interval",
                     "normalised_interval", "label_probability", "mean_probability")
    required_arrays = ("correct", "baseline_correct", "labels", "effect_interval", "split_half_r", "reliability")

    @classmethod
    def _joined(cls, result: "LesionResult") -> "LesionResult":
        """The split-half reliability of the joined matrix (the intervals of each group do not depend on others)."""
        arrays = dict(result.arrays)
        arrays.update(lesion_uncertainty(arrays["correct"], arrays["baseline_correct"], arrays["labels"],
                                         len(arrays["classes"]), 0, result.settings.get("seed", 0)))
        arrays["effect_interval"] = result.effect_interval
        if "normalised_interval" in result.arrays:
            arrays["normalised_interval"] = result.arrays["normalised_interval"]
        else:
            arrays.pop("normalised_interval")
        return cls(arrays, result.settings)

    @property
    def effect(self) -> np.ndarray:
        return self.class_accuracy - self.baseline_class[None, :]

    @property
    def nonzero(self) -> np.ndarray:
        ci = self.effect_interval
        return (ci[..., 0] > 0) | (ci[..., 1] < 0)

    @property
    def at_floor(self) -> np.ndarray:
        return self.baseline_class <= float(self.chance)

    @property
    def at_ceiling(self) -> np.ndarray:
        return self.baseline_class >= 1.0

    @property
    def dissociable(self) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return self.nonzero & (self.q_value < 1.0 - float(self.settings.get("level", LEVEL)))

    def _flagged(self) -> np.ndarray:
        """(K,) classes whose entries are no claim: at floor, or at ceiling with real labels (with
        ``labels="decision"`` every class is at ceiling by construction, the intact model agreeing with itself,
        and agreement can only drop: no class is flagged for it)."""
        decision = self.settings.get("labels") == "decision"
        return self.at_floor | (self.at_ceiling & (not decision))

    @property
    def p_value(self) -> np.ndarray:
        """(G, K) exact McNemar p of each entry, from the stored per-image scores (NaN for a class without images)."""
        gained, lost, n = _changes(self.correct, self.baseline_correct, self.labels, len(self.classes))
        return np.where(n[None, :] > 0, mcnemar_p(gained, lost), np.nan)

    @property
    def q_value(self) -> np.ndarray:
        """(G, K) Benjamini-Hochberg q of :attr:`p_value` over the classes at neither floor nor ceiling (NaN there;
        with ``labels="decision"`` the ceiling, true of every class by construction, is no flag)."""
        return fdr_q(np.where(self._flagged()[None, :], np.nan, self.p_value))

    @property
    def normalised_effect(self) -> np.ndarray:
        span = self.baseline_class - float(self.chance)
        with np.errstate(all="ignore"):
            return np.where(span[None, :] > 0, self.effect / span[None, :], np.nan)

    @property
    def normalised_interval(self) -> np.ndarray:
        """(G, K, 2) 95% interval of :attr:`normalised_effect` (NaN in a result saved before it)."""
        return self.arrays.get("normalised_interval", np.full(self.effect_interval.shape, np.nan))

    @property
    def probability_effect(self) -> np.ndarray:
        """(G, K) per class, the mean change of the probability of the stimuli's label over that class's stimuli
        (softmax of the class scores; NaN for a class without stimuli)."""
        return self.probability_change()

    def probability_change(self, by: Any = None, n_classes: int | None = None) -> np.ndarray:
        """(G, n_classes) the mean change of the probability of each stimulus's label, over the stimuli of each
        class of ``by`` ((N,) ints; default the labels, with the result's classes): e.g. with
        ``labels="decision"``, the change of the intact model's choice per class of the user's folders."""
        by = self.labels if by is None else class_labels(by, len(self.labels))
        n_classes = len(self.classes) if n_classes is None else int(n_classes)
        return _class_means(self.label_probability - self.baseline_label_probability[None, :], by, n_classes)

    @property
    def output_effect(self) -> np.ndarray:
        """(G, K) the change of each output's probability, averaged over all stimuli."""
        return self.mean_probability - self.baseline_mean_probability[None, :]

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
        """The tables of :meth:`Result.export`, and ``<stem>_dissociation.csv`` (groups x classes): each class's
        effect, its interval (``<class> low``, ``<class> high``), its q-value (``<class> q``) and whether it is
        dissociable."""
        paths = super().export(path)
        stem = Path(paths[0]).with_suffix("")
        matrix = stem.parent / (stem.name + "_dissociation.csv")
        columns, q = {"group": self.groups}, self.q_value
        for k, c in enumerate(self.classes):
            columns.update({str(c): self.effect[:, k], f"{c} low": self.effect_interval[:, k, 0],
                            f"{c} high": self.effect_interval[:, k, 1], f"{c} q": q[:, k],
                            f"{c} dissociable": self.dissociable[:, k]})
        header = {"result": "dissociation (class accuracy change)", "split_half_r": float(self.split_half_r),
                  "reliability": float(self.reliability), **self.settings}
        write_csv(matrix, columns, to_json(header, indent=None))
        return paths + [matrix]

    def plot(self, ax=None, top: int | None = 32):
        """The dissociation matrix, groups (most important first) x classes: entries not :attr:`dissociable` (interval
        containing 0, or q >= 0.05) greyed and hatched, classes at floor (F) or ceiling (C) greyed; the split-half
        reliability in the title."""
        from matplotlib.patches import Rectangle

        fig, ax = new_axes(ax, figsize=(7, 5))
        order = self.ranking()[:top] if top else self.ranking()
        effect, plain = self.effect[order], ~self.dissociable[order]
        lim = float(np.nanmax(np.abs(effect))) if np.isfinite(effect).any() else 0.0
        image = ax.imshow(np.where(plain, np.nan, effect), cmap="RdBu_r", vmin=-(lim or 1.0), vmax=lim or 1.0,
                          aspect="auto", interpolation="nearest")
        for i, k in zip(*np.nonzero(plain)):
            ax.add_patch(Rectangle((k - 0.5, i - 0.5), 1, 1, facecolor="0.88", edgecolor="0.65", hatch="///", lw=0))
        flags = np.where(self.at_floor, " (F)", np.where(self._flagged() & self.at_ceiling, " (C)", ""))
        ax.set_yticks(range(len(order)))
        ax.set_yticklabels([self.groups[i] for i in order], fontsize=6)
        ax.set_xticks(range(len(self.classes)))
        ax.set_xticklabels([f"{c}{f}" for c, f in zip(self.classes, flags)], rotation=60, ha="right", fontsize=6)
        for label, flagged in zip(ax.get_xticklabels(), flags):
            label.set_color("0.6" if flagged else "k")
        ax.set_ylabel(f"lesioned channel(s) of {self.settings['layer']}")
        ax.set_title(f"change in accuracy per class (hatched: 95% interval contains 0 or FDR q >= 0.05; "
                     f"F/C: floor/ceiling)\n"
                     f"split-half r {float(self.split_half_r):.2f}, reliability {float(self.reliability):.2f}",
                     fontsize=8)
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
    n_random: int = 19,
    progress: bool = True,
) -> "CumulativeLesionResult":
    """Accuracy as more and more channels are lesioned: most important first, least first, random orders.

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
        Seed of the random orders (the control curves) and of the sweep's random halves.
    n_random : int
        Number of random orders (permutations of the channels); the result holds each curve, their mean,
        their 95% band and per lesion size the permutation p-value that the most (least) important first
        curve lies below (above) random orders, ``(1 + #{random at or beyond it}) / (1 + n_random)``: its floor
        is ``1 / (n_random + 1)``, so the default 19 is the fewest orders that can reach p = 0.05 (10 could not:
        a curve below all 10 has p = 0.09).

    Returns
    -------
    CumulativeLesionResult
    """
    if int(n_random) < 1:
        raise InsilicoError(f"n_random must be at least 1 (random orders of the control curve), not {n_random}")
    unit = Unit.coerce(layer, model)
    stimuli = stimulus_source(stimuli, model=model)
    if sweep is None:
        sweep = lesion_sweep(model, unit, stimuli, labels, mode=mode, output=output, batch_size=batch_size,
                             seed=seed, progress=progress)
    channels = np.array([int(g) for g in sweep.groups])
    ranked = channels[sweep.ranking()]
    rng = rng_for(seed, "cumulative lesion orders")
    randoms = [rng.permutation(channels) for _ in range(int(n_random))]
    counts = np.unique(np.linspace(0, len(channels), n_points).round().astype(int))
    groups = [list(order[:k]) for order in [ranked, ranked[::-1], *randoms] for k in counts]
    n = len(stimuli)
    y, _, check = _labels(stimuli, model, labels, None)
    runs = _lesion_runs(model, unit, stimuli, y, groups, mode, output, batch_size, progress, check)
    hits = runs["correct"].sum(1).reshape(2 + int(n_random), len(counts))  # right answers per order and size
    random_acc = hits[2:] / n
    arrays = dict(n_lesioned=counts, fraction=counts / len(channels), accuracy_most=hits[0] / n,
                  accuracy_least=hits[1] / n, accuracy_random=hits[2:].sum(0) / (int(n_random) * n),
                  accuracy_random_all=random_acc, accuracy_random_band=interval(random_acc, axis=0),
                  random_orders=np.stack(randoms), ranking=ranked, chance=np.array(1.0 / len(sweep.classes)),
                  p_most=(1.0 + (hits[2:] <= hits[0]).sum(0)) / (1.0 + int(n_random)),
                  p_least=(1.0 + (hits[2:] >= hits[1]).sum(0)) / (1.0 + int(n_random)))
    return CumulativeLesionResult(arrays, dict(sweep.settings, n_points=n_points, seed=seed, n_random=int(n_random)))


class CumulativeLesionResult(Result):
    """Accuracy vs number of lesioned channels (``n_lesioned``) for three orders.

    Attributes
    ----------
    n_lesioned, fraction : (P,) lesion sizes
    accuracy_most, accuracy_least : (P,) most / least important channels first
    accuracy_random : (P,) mean over the random orders; accuracy_random_all : (R, P) each random order;
    accuracy_random_band : (P, 2) the 2.5-97.5 percentiles over the random orders
    random_orders : (R, C) the channel orders; ranking : (C,) most important first; chance : 1 / K
    p_most, p_least : (P,) one-sided permutation p-values (the random orders as the null; ties count against)
        that the most important first curve is below the random orders / the least important first above:
        ``(1 + #{random order at or beyond it}) / (1 + R)``; 1 where all lesion the same channels (none, all)
    """

    required_arrays = ("accuracy_random_all", "accuracy_random_band", "random_orders", "p_most", "p_least")

    def table(self) -> dict[str, np.ndarray]:
        """One row per lesion size: the curves (not the per-channel ``ranking``, which is longer)."""
        band = self.accuracy_random_band
        return {k: self.arrays[k] for k in ("n_lesioned", "fraction", "accuracy_most", "accuracy_least",
                                            "accuracy_random")} | {"random_low": band[:, 0], "random_high": band[:, 1],
                                                                   "p_most": self.p_most, "p_least": self.p_least}

    def plot(self, ax=None):
        """Accuracy vs fraction lesioned: most important first, least important first, random orders (mean, band)."""
        fig, ax = new_axes(ax)
        ax.plot(self.fraction, self.accuracy_most, "o-", label="most important first")
        ax.plot(self.fraction, self.accuracy_least, "s-", label="least important first")
        band = self.accuracy_random_band
        ax.fill_between(self.fraction, band[:, 0], band[:, 1], color="0.5", alpha=0.25, lw=0)
        ax.plot(self.fraction, self.accuracy_random, "^-", color="0.5",
                label=f"random order (mean, 95% band of {len(self.accuracy_random_all)})")
        ax.axhline(float(self.chance), color="k", ls=":", lw=1, label="chance")
        ax.set_xlabel(f"fraction of {self.settings['layer']} lesioned")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7, frameon=False)
        return fig
