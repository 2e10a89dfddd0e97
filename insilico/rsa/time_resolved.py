"""Time-resolved RSA: a recurrent model's RDM at every time step against a brain's RDM at every time point.

As in Cichy et al. 2016 (Sci Rep, MEG vs DNN layers) and Kietzmann et al. 2019
(PNAS, recurrent models vs MEG), each model RDM (one per time step of a
recurrent network, e.g. :func:`insilico.rsa.model_rdms` of ``"layers.6@t"``)
is compared with each brain RDM of a time series (``(time, conditions,
conditions)``): the result is a (steps x times) similarity matrix. Given
subjects' RDM series, the brain series is their mean, every time point gets its
noise ceiling (:func:`insilico.rsa.noise_ceiling`), and each step's peak
latency a percentile bootstrap interval over subjects. The comparisons are
:func:`insilico.rsa.compare_all`'s (batched; labelled RDMs aligned by label).

MEG/EEG data come in as MNE ``Epochs`` (mne is optional: ``pip install insilico[mne]``):
:func:`epochs_rdms` turns one subject's epochs into an RDM per time point over its conditions
(the event ids), by the correlation distance of the conditions' mean sensor patterns or by the
cross-validated (crossnobis) distance over folds of each condition's epochs (Guggenmos et al. 2018,
"Multivariate pattern analysis for MEG: a comparison of dissimilarity measures"); ``time_resolved``
takes an ``Epochs`` as the brain, or a list of them (one per subject) as ``subjects=``.

Example
-------
>>> import torch
>>> g = torch.Generator().manual_seed(0)
>>> base = torch.rand(3, 10, generator=g, dtype=torch.float64)         # 3 "steps", 10 pairs (5 conditions)
>>> brain = torch.stack([base[0], base[0], base[1], base[2]])            # 4 time points
>>> res = time_resolved(base, brain, times=[0.0, 0.1, 0.2, 0.3], method="pearson")
>>> tuple(res.similarity.shape), res.peak_time.tolist()
((3, 4), [0.0, 0.2, 0.3])
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..errors import InsilicoError
from ..plot.images import new_axes
from ..results import Result
from .arrays import _check_choice
from .compare import _compare_method, _condensed, aligned, compare_all
from .noise_ceiling import noise_ceiling
from .rdm import RDM, rdm

#: How :func:`epochs_rdms` measures the dissimilarity of two conditions at one time point.
EPOCHS_METHODS = ("correlation", "crossnobis")


@dataclasses.dataclass(repr=False)
class TimeResolvedResult(Result):
    """Model-brain RDM similarity per (model step, brain time).

    Attributes
    ----------
    similarity : tensor (S, T) float64
    steps : list of str
        The model steps (or layers) in order.
    times : tensor (T,) float64
        The brain's time points (seconds, or indices when none were given).
    ceiling_lower, ceiling_upper : tensor (T,) or None
        The noise ceiling at each time point (given subjects' RDMs).
    peak_low, peak_high : tensor (S,)
        Bootstrap interval over subjects of each step's peak latency (NaN without subjects).
    method : str
    settings : dict
    """

    similarity: torch.Tensor
    steps: list
    times: torch.Tensor
    ceiling_lower: Any
    ceiling_upper: Any
    peak_low: torch.Tensor
    peak_high: torch.Tensor
    method: str
    settings: dict = dataclasses.field(default_factory=dict)

    @property
    def peak_time(self) -> torch.Tensor:
        """Each step's time of peak similarity (S,)."""
        return self.times[self.similarity.argmax(1)]

    def table(self) -> dict:
        """One row per (model step, brain time): ``step``, ``time``, ``similarity``, the ceiling at that time
        (``ceiling_lower`` / ``ceiling_upper``, NaN without subjects) and the step's ``peak_low`` / ``peak_high``."""
        s, t = self.similarity.shape
        nan = torch.full((t,), float("nan"))
        low, high = (nan if c is None else torch.as_tensor(c) for c in (self.ceiling_lower, self.ceiling_upper))
        return {"step": [str(self.steps[k]) for k in range(s) for _ in range(t)],
                "time": self.times.repeat(s).numpy(), "similarity": self.similarity.reshape(-1).numpy(),
                "ceiling_lower": low.double().repeat(s).numpy(), "ceiling_upper": high.double().repeat(s).numpy(),
                "peak_low": self.peak_low.double().repeat_interleave(t).numpy(),
                "peak_high": self.peak_high.double().repeat_interleave(t).numpy()}

    def plot(self, ax=None, image: bool = False):
        """One line per step over brain time (the noise ceiling a grey band), or with ``image=True`` the
        (steps x times) matrix; returns the Figure."""
        fig, ax = new_axes(ax, (5.5, 3.5), close=True)
        t = self.times.numpy()
        if image:
            shown = ax.imshow(self.similarity.numpy(), aspect="auto", origin="lower", interpolation="nearest",
                              extent=(t[0], t[-1], -0.5, len(self.steps) - 0.5))
            ax.set_yticks(range(len(self.steps)))
            ax.set_yticklabels(self.steps, fontsize=7)
            ax.set_ylabel("model step")
            fig.colorbar(shown, ax=ax, label=f"RDM similarity ({self.method})")
        else:
            if self.ceiling_lower is not None:
                ax.fill_between(t, self.ceiling_lower.numpy(), self.ceiling_upper.numpy(), color="0.85",
                                label="noise ceiling")
            for k, name in enumerate(self.steps):
                ax.plot(t, self.similarity[k].numpy(), label=str(name))
            ax.set_ylabel(f"RDM similarity ({self.method})")
            ax.legend(fontsize=7, frameon=False)
        ax.set_xlabel("brain time")
        return fig

    def __repr__(self) -> str:
        return f"TimeResolvedResult({len(self.steps)} steps x {len(self.times)} times, {self.method})"


def _series(x, what: str) -> tuple[torch.Tensor, list[str]]:
    """Condensed RDMs (k, pairs) of a series (list/dict of RDMs, array (k, n, n) or (k, pairs)) and their names."""
    if isinstance(x, RDM):
        raise InsilicoError(f"{what} must be a series of RDMs (one per step or time point), not one RDM")
    names = [str(k) for k in x] if isinstance(x, Mapping) else None
    v = _condensed(x)
    return v, names or [str(k) for k in range(len(v))]


def _is_epochs(x) -> bool:
    """Whether ``x`` is an MNE ``Epochs`` (read by its attributes: mne is never imported here)."""
    return all(hasattr(x, a) for a in ("get_data", "event_id", "events", "times", "info"))


def epochs_rdms(epochs: Any, method: str = "correlation", conditions: Sequence[str] | None = None, picks: Any = None,
                n_folds: int = 2, noise: Any = "shrinkage_diag") -> tuple[list, torch.Tensor]:
    """One RDM per time point over the conditions (event ids) of one subject's MNE ``Epochs``.

    Parameters
    ----------
    epochs : mne.Epochs (any ``mne.BaseEpochs``: ``EpochsArray``, read from a file, ...)
        Epochs (n_epochs, n_channels, n_times); the event code of each epoch names its condition through
        ``epochs.event_id``. Crop or decimate first (``epochs.crop``, ``epochs.decimate``) for fewer times.
    method : {"correlation", "crossnobis"}
        ``"correlation"``: 1 - Pearson r between the conditions' mean sensor patterns (mixes channel types as
        they are scaled: pick one type, ``picks="mag"``); ``"crossnobis"``: the cross-validated squared
        Mahalanobis distance (:func:`insilico.rsa.rdm`) over ``n_folds`` folds of each condition's epochs
        (epoch ``k`` of a condition in fold ``k % n_folds``), with the shrinkage noise covariance ``noise``
        (``None``: cross-validated Euclidean); unbiased, so noise alone gives distances around 0.
    conditions : list of str, optional
        Which conditions, in this order (default: every event id with epochs, in ``event_id`` order).
    picks : optional
        Channels, as ``epochs.get_data(picks=)`` takes them (default: MNE's, the good data channels).
    n_folds : int
        Folds of the crossnobis distance (at least 2; every condition needs as many epochs).

    Returns
    -------
    rdms : list of RDM
        One per time point, labelled by the condition names (``name``: the time in seconds).
    times : tensor (n_times,) float64
        ``epochs.times`` (seconds).

    Raises
    ------
    InsilicoError
        Not an Epochs, fewer than 2 conditions, a condition without epochs (or with fewer than ``n_folds``),
        or an unknown ``method``.

    Example
    -------
    >>> import numpy as np
    >>> mne = __import__("pytest").importorskip("mne")
    >>> info = mne.create_info(8, 100.0, "eeg")
    >>> events = np.c_[np.arange(12) * 10, np.zeros(12, int), np.tile([1, 2, 3], 4)]
    >>> data = np.random.default_rng(0).normal(size=(12, 8, 5))
    >>> ep = mne.EpochsArray(data, info, events, tmin=0.0, event_id={"face": 1, "house": 2, "car": 3}, verbose=False)
    >>> rdms, times = epochs_rdms(ep)
    >>> len(rdms), rdms[0].labels, times.tolist()
    (5, ['face', 'house', 'car'], [0.0, 0.01, 0.02, 0.03, 0.04])
    """
    method = _check_choice(method, EPOCHS_METHODS, "method")
    if not _is_epochs(epochs):
        raise InsilicoError(f"epochs_rdms takes an MNE Epochs (mne.EpochsArray, mne.read_epochs(...)), not "
                            f"{type(epochs).__name__}")
    code_name = {int(code): name for name, code in epochs.event_id.items()}
    label = np.array([code_name.get(int(c), str(int(c))) for c in epochs.events[:, 2]])
    wanted = [str(c) for c in conditions] if conditions is not None else [n for n in epochs.event_id if n in label]
    counts = {c: int((label == c).sum()) for c in wanted}
    if method == "crossnobis" and n_folds < 2:
        raise InsilicoError(f"epochs_rdms(method='crossnobis') cross-validates over folds: n_folds >= 2, not {n_folds}")
    least = n_folds if method == "crossnobis" else 1
    if len(wanted) < 2 or min(counts.values(), default=0) < least:
        raise InsilicoError(f"epochs_rdms needs at least 2 conditions with epochs (at least {least} each for "
                            f"{method}); epochs per condition: {counts} (event ids: {list(epochs.event_id)})")
    keep = np.isin(label, wanted)
    x = torch.tensor(np.asarray(epochs.get_data(picks=picks))[keep], dtype=torch.float64)  # (n, channels, T)
    label = label[keep]
    times = torch.tensor(np.asarray(epochs.times), dtype=torch.float64)
    if method == "correlation":
        means = torch.stack([x[torch.from_numpy(label == c)].mean(0) for c in wanted])  # (C, channels, T)
        return [rdm(means[..., t], "correlation", labels=wanted, name=f"{float(s):.4g}")
                for t, s in enumerate(times)], times
    index = np.array([wanted.index(c) for c in label])  # conditions as their order in `wanted`
    folds = np.zeros(len(label), dtype=int)
    for k in range(len(wanted)):
        folds[index == k] = np.arange(int((index == k).sum())) % n_folds
    return [RDM(rdm(x[..., t], "crossnobis", runs=folds, conditions=index, noise=noise).vector, wanted, "crossnobis",
                f"{float(s):.4g}") for t, s in enumerate(times)], times


def _from_epochs(brain, subjects, times, distance, conditions):
    """Epochs given as the brain or as the subjects, as RDM series (and their times when none were given)."""
    if brain is not None and _is_epochs(brain):
        brain, found = epochs_rdms(brain, distance, conditions)
        times = found.tolist() if times is None else times
    if subjects is not None and any(_is_epochs(s) for s in subjects):
        if not all(_is_epochs(s) for s in subjects):
            raise InsilicoError("subjects= mixes MNE Epochs with other RDM series: give one kind")
        series = [epochs_rdms(s, distance, conditions) for s in subjects]
        if any(len(t) != len(series[0][1]) or not torch.allclose(t, series[0][1]) for _, t in series):
            raise InsilicoError("the subjects' Epochs have different time points: crop or resample them to one "
                                "time axis first (epochs.crop, epochs.resample)")
        subjects = [r for r, _ in series]
        times = series[0][1].tolist() if times is None else times
    return brain, subjects, times


def time_resolved(model_rdms_by_step: Any, brain_rdms_by_time: Any | None = None, *, subjects: Any | None = None,
                  times: Sequence[float] | None = None, method: str = "spearman", n_boot: int = 200,
                  seed: int | None = 0, distance: str = "correlation",
                  conditions: Sequence[str] | None = None) -> TimeResolvedResult:
    """Similarity of each model step's RDM with each brain time point's RDM, (steps x times).

    Parameters
    ----------
    model_rdms_by_step : list or dict of RDM, or array (S, n, n) or (S, pairs)
        One RDM per model time step (dict keys name the steps).
    brain_rdms_by_time : list of RDM, array (T, n, n) or (T, pairs), or mne.Epochs, optional
        One RDM per brain time point (Epochs: :func:`epochs_rdms`); default the mean of ``subjects``.
    subjects : array (n_subjects, T, n, n) or (n_subjects, T, pairs), or list of mne.Epochs, optional
        Each subject's RDM series (or epochs, one per subject): gives the noise ceiling per time point and
        the peak-latency intervals.
    times : list of float, optional
        The time points (default: the Epochs' times in seconds, else 0 .. T-1).
    method : str
        The comparison (:func:`insilico.rsa.compare`).
    n_boot, seed
        Bootstrap resamplings of the subjects for the peak latencies, and their seed.
    distance : {"correlation", "crossnobis"}
        How Epochs become RDMs (:func:`epochs_rdms`'s ``method``).
    conditions : list of str, optional
        Epochs: which conditions (event ids), in this order (default: all).

    Returns
    -------
    TimeResolvedResult

    Raises
    ------
    InsilicoError
        No brain series, different numbers of conditions, ``times`` of the wrong length, fewer than 2 subjects,
        or labelled RDMs of different stimuli (labelled RDMs are put in one stimulus order first, as
        :func:`insilico.rsa.compare` does; unlabelled ones and arrays are matched by position).
    """
    method = _compare_method(method)
    brain_rdms_by_time, subjects, times = _from_epochs(brain_rdms_by_time, subjects, times, distance, conditions)
    series = [model_rdms_by_step, brain_rdms_by_time, *(subjects if subjects is not None else [])]
    model_rdms_by_step, brain_rdms_by_time, *subjects_in = aligned(*series)  # labelled RDMs in one stimulus order
    model, steps = _series(model_rdms_by_step, "model_rdms_by_step")
    per_subject = None
    if subjects is not None:  # each subject's series, condensed: (n_subjects, T, pairs)
        per_subject = torch.stack([_condensed(one) for one in subjects_in])
        if len(per_subject) < 2:
            raise InsilicoError("noise ceilings need at least 2 subjects' RDM series")
    if brain_rdms_by_time is None:
        if per_subject is None:
            raise InsilicoError("give the brain's RDM series (brain_rdms_by_time) or the subjects' (subjects=)")
        brain = per_subject.mean(0)
    else:
        brain = _series(brain_rdms_by_time, "brain_rdms_by_time")[0]
    if model.shape[1] != brain.shape[1]:
        raise InsilicoError(f"the model's RDMs have {model.shape[1]} pairs of conditions, the brain's "
                            f"{brain.shape[1]}: compute both over the same conditions")
    t = torch.arange(len(brain), dtype=torch.float64) if times is None else torch.tensor(list(times), dtype=torch.float64)
    if len(t) != len(brain):
        raise InsilicoError(f"{len(t)} times for {len(brain)} brain RDMs: give one time per RDM")
    similarity = compare_all(model, brain, method).cpu()
    lower = upper = None
    low, high = torch.full((len(steps),), math.nan), torch.full((len(steps),), math.nan)
    if per_subject is not None:
        bounds = [noise_ceiling(per_subject[:, k], method) for k in range(per_subject.shape[1])]
        lower = torch.tensor([b.lower for b in bounds], dtype=torch.float64)
        upper = torch.tensor([b.upper for b in bounds], dtype=torch.float64)
        low, high = _peak_intervals(model, per_subject, t, method, n_boot, seed)
    settings = dict(n_subjects=0 if per_subject is None else len(per_subject), n_boot=n_boot, seed=seed)
    return TimeResolvedResult(similarity, steps, t, lower, upper, low, high, method, settings)


def simulate_brain(model_rdms_by_step: Any, schedule: Sequence[int | None], n_subjects: int = 8,
                   noise: float = 0.5, seed: int | None = 0) -> torch.Tensor:
    """A simulated time-resolved brain: subjects' RDM series whose time point ``t`` shows model step ``schedule[t]``.

    Each subject's RDM at time ``t`` is the model's step-``schedule[t]`` RDM (``None``: a time with no signal,
    pure noise around the mean dissimilarity) plus Gaussian noise of ``noise`` times the standard deviation of
    the model's dissimilarities, drawn from a generator of its own. For tests and tutorials of
    :func:`time_resolved`: the peak of step ``k`` is where the schedule shows it.

    Returns
    -------
    tensor (n_subjects, T, pairs) float64

    Raises
    ------
    InsilicoError
        A step in ``schedule`` the model does not have, or fewer than 1 subject.

    Example
    -------
    >>> steps = torch.rand(3, 10, dtype=torch.float64)
    >>> tuple(simulate_brain(steps, [None, 0, 1, 2, 2], n_subjects=4).shape)
    (4, 5, 10)
    """
    from ..seeding import generator

    model, _ = _series(model_rdms_by_step, "model_rdms_by_step")
    if n_subjects < 1 or any(k is not None and not 0 <= k < len(model) for k in schedule):
        raise InsilicoError(f"simulate_brain: the schedule names steps of 0..{len(model) - 1} (or None) and there is "
                            f"at least 1 subject (got {list(schedule)}, {n_subjects} subjects)")
    blank = torch.full_like(model[0], float(model.mean()))
    series = torch.stack([model[k] if k is not None else blank for k in schedule])
    g = generator(seed)
    return series + noise * float(model.std()) * torch.randn(n_subjects, *series.shape, generator=g,
                                                             dtype=series.dtype)


def _peak_intervals(model, per_subject, t, method, n_boot, seed, ci=0.95):
    """95% percentile intervals of each step's peak latency over bootstrap resamplings of the subjects."""
    g = np.random.default_rng(seed)
    k = len(per_subject)
    peaks = torch.stack([t[compare_all(model, per_subject[torch.from_numpy(g.integers(0, k, k))].mean(0),
                                       method).cpu().argmax(1)] for _ in range(n_boot)]) if n_boot else None
    if peaks is None:
        return torch.full((len(model),), math.nan), torch.full((len(model),), math.nan)
    tail = (1 - ci) / 2
    return peaks.quantile(tail, dim=0), peaks.quantile(1 - tail, dim=0)


__all__ = ["EPOCHS_METHODS", "TimeResolvedResult", "epochs_rdms", "simulate_brain", "time_resolved"]
