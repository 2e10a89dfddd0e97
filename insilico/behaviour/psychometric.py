"""Psychometric curves: accuracy as a stimulus is degraded, with a fitted logistic and a threshold.

:func:`psychometric` degrades labelled images along one parameter
(:func:`degrade`: contrast, additive noise, occlusion; torch ops, seeded),
measures the model's accuracy at every level (the one batched loop,
:func:`insilico.evaluate.predict`, in one session), fits

``p(x) = chance + (1 - chance - lapse) / (1 + exp(-(x - alpha) / beta))``

by least squares (:func:`scipy.optimize.curve_fit`; ``beta < 0`` where accuracy
falls with the level, as for noise; ``lapse`` fitted in ``[0, 1 - chance]``, as
a model may be imperfect on clean images) and reports the threshold: the level
where the fit crosses ``criterion`` (default halfway between chance and the
fitted top, where the threshold is ``alpha``), with a percentile bootstrap
interval over images. As
in Geirhos et al. 2018 (NeurIPS, "Generalisation in humans and deep neural
networks") the manipulations act in pixel space around mean grey (0.5).

Lesions and microstimulation show as psychometric shifts: run it inside
``Probe(model).lesion(...)`` (or ``stimulate``) and compare thresholds.

Example
-------
>>> import numpy as np
>>> x = np.linspace(0, 1, 9)
>>> p = 0.25 + 0.75 / (1 + np.exp(-(x - 0.4) / 0.1))
>>> alpha, beta, lapse = fit_logistic(x, p, chance=0.25)
>>> round(alpha, 4), round(beta, 4), lapse, round(threshold(alpha, beta, 0.25, 0.625), 4)
(0.4, 0.1, 0.0, 0.4)
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import InsilicoError
from ..evaluate import predict
from ..pixels import check_images
from ..plan import Plan
from ..recording import stimulus_source
from ..registry import register_tool
from ..results import Result
from ..seeding import content_key, derive_seed, generator
from ..plot.images import new_axes
from ..statistics import bootstrap, proportion_interval
from .trials import class_indices, observer_labels

#: The parameters :func:`degrade` varies, what a level means, and the levels used by default.
PARAMETERS = {
    "contrast": ("contrast c: x -> 0.5 + c (x - 0.5)  (1: the image, 0: mean grey)",
                 (1.0, 0.5, 0.3, 0.15, 0.1, 0.05, 0.03, 0.01)),
    "noise": ("width w of additive uniform noise U(-w, w), clipped to [0, 1]", (0.0, 0.03, 0.05, 0.1, 0.2, 0.35,
                                                                                  0.6, 0.9)),
    "gaussian": ("standard deviation s of additive Gaussian noise N(0, s^2), clipped to [0, 1]",
                 (0.0, 0.03, 0.05, 0.1, 0.2, 0.35, 0.6, 0.9)),
    "occlusion": ("fraction f of the image covered by mean-grey square patches at random places",
                  (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8)),
}


def degrade(images: torch.Tensor, parameter: str, level: float, seed: int | None = 0, patch: int | None = None):
    """``images`` (N, C, H, W) in [0, 1] degraded to ``level`` of ``parameter`` (see :data:`PARAMETERS`).

    Noise and patch places are drawn per image from ``derive_seed(seed, content_key(image))`` (the same for an
    image at any level, alone or in any batch), never from torch's global generator. Occlusion patches have side ``patch`` pixels (default a
    quarter of the image's shorter side) and are placed until the covered fraction reaches ``level``.

    Raises
    ------
    InsilicoError
        An unknown parameter, or a level outside [0, 1] (contrast, occlusion) or below 0 (noise).
    """
    if parameter not in PARAMETERS:
        raise InsilicoError(f"parameter must be one of {sorted(PARAMETERS)}, not {parameter!r}")
    level = float(level)
    if level < 0 or (parameter in ("contrast", "occlusion") and level > 1):
        raise InsilicoError(f"a {parameter} level must lie in [0, 1]{'' if parameter != 'noise' else ' or above'}, "
                            f"got {level}")
    if parameter == "contrast":
        return 0.5 + level * (images - 0.5)
    out = images.clone()
    keys = content_key(images)
    for k in range(len(images)):
        g = generator(None if seed is None else derive_seed(seed, keys[k]), images.device)
        if parameter == "noise":
            noise = torch.rand(images.shape[1:], generator=g, device=images.device, dtype=images.dtype)
            out[k] = (images[k] + level * (2 * noise - 1)).clamp(0, 1)
        elif parameter == "gaussian":
            noise = torch.randn(images.shape[1:], generator=g, device=images.device, dtype=images.dtype)
            out[k] = (images[k] + level * noise).clamp(0, 1)
        else:
            _occlude(out[k], level, g, patch)
    return out


def _occlude(image: torch.Tensor, fraction: float, g: torch.Generator, patch: int | None) -> None:
    h, w = image.shape[-2:]
    side = max(1, patch or min(h, w) // 4)
    covered = torch.zeros(h, w, dtype=torch.bool, device=image.device)
    while covered.float().mean() < fraction:
        y, x = (int(torch.randint(0, max(1, n - side + 1), (1,), generator=g, device=image.device)) for n in (h, w))
        covered[y:y + side, x:x + side] = True
    image[:, covered] = 0.5


def _logistic(x, alpha, beta, chance, lapse=0.0):
    from scipy.special import expit

    return chance + (1 - chance - lapse) * expit((x - alpha) / beta)


def fit_logistic(levels: Sequence[float], accuracy: Sequence[float], chance: float,
                 lapse: bool = False) -> tuple[float, float, float]:
    """``(alpha, beta, lapse)`` of the logistic from ``chance`` to ``1 - lapse`` that best fits ``accuracy`` per level.

    Least squares (:func:`scipy.optimize.curve_fit`). With ``lapse`` the upper asymptote is fitted too (in
    ``[chance, 1]``: a model that is not perfect on clean images, Wichmann & Hill 2001), else it is 1.
    Returns NaNs when the fit does not converge (e.g. a flat curve).
    """
    import warnings

    from scipy.optimize import OptimizeWarning, curve_fit

    x, p = np.asarray(levels, float), np.asarray(accuracy, float)
    if float(np.ptp(p)) == 0.0:  # a flat curve: any alpha fits (with a lapse, a logistic flat at chance)
        return math.nan, math.nan, math.nan
    span = float(np.ptp(x)) or 1.0
    slope = np.sign(np.corrcoef(x, p)[0, 1]) if np.std(p) > 0 else 1.0
    start = [float(x[np.argmin(np.abs(p - (p.max() + chance) / 2))]), (slope or 1.0) * span / 8]
    f = (lambda v, a, b, lam: _logistic(v, a, b, chance, lam)) if lapse else (lambda v, a, b: _logistic(v, a, b, chance))
    bounds = ([-np.inf, -np.inf, 0.0], [np.inf, np.inf, 1 - chance]) if lapse else (-np.inf, np.inf)
    if lapse:
        start.append(float(np.clip(1 - p.max(), 0.0, 1 - chance)))
    try:
        with warnings.catch_warnings():  # no covariance for a curve that fits exactly: not used here
            warnings.simplefilter("ignore", OptimizeWarning)
            fitted, _ = curve_fit(f, x, p, p0=start, bounds=bounds, maxfev=5000)
    except (RuntimeError, ValueError):
        return math.nan, math.nan, math.nan
    return float(fitted[0]), float(fitted[1]), float(fitted[2]) if lapse else 0.0


def threshold(alpha: float, beta: float, chance: float, criterion: float, lapse: float = 0.0) -> float:
    """The level where the logistic ``(alpha, beta, lapse)`` reaches accuracy ``criterion`` (NaN if it never does)."""
    top = 1 - chance - lapse
    f = (criterion - chance) / top if top > 1e-6 else math.nan  # a logistic that does not rise has no threshold
    if not 0 < f < 1 or not math.isfinite(alpha):
        return math.nan
    return float(alpha + beta * math.log(f / (1 - f)))


@dataclasses.dataclass(repr=False)
class PsychometricResult(Result):
    """Accuracy per level of a stimulus parameter, the fitted logistic and the threshold.

    Attributes
    ----------
    levels : tensor (L,)
    accuracy : tensor (L,)
        The fraction of images answered correctly at each level.
    correct : tensor (L, N) bool
        Each image's correctness at each level.
    accuracy_low, accuracy_high : tensor (L,)
        95% Wilson interval of each level's accuracy (Wilson 1927; a bootstrap of all right would be [1, 1]).
    alpha, beta, lapse : float
        The fitted logistic (``alpha`` the midpoint, ``beta`` the scale, negative when accuracy falls;
        ``1 - lapse`` the top).
    threshold : float
        The level where the fit reaches ``criterion``; ``threshold_interval`` its ``[low, high]``. NaN when the
        fit never reaches it, or reaches it only outside the tested levels (an extrapolation: test wider levels).
    chance, criterion : float
    parameter : str
    settings : dict
    """

    levels: torch.Tensor
    accuracy: torch.Tensor
    correct: torch.Tensor
    accuracy_low: torch.Tensor
    accuracy_high: torch.Tensor
    alpha: float
    beta: float
    lapse: float
    threshold: float
    threshold_interval: list
    chance: float
    criterion: float
    parameter: str
    settings: dict = dataclasses.field(default_factory=dict)

    def fitted(self, levels: Any) -> np.ndarray:
        """The fitted curve at ``levels``."""
        return _logistic(np.asarray(levels, float), self.alpha, self.beta, self.chance, self.lapse)

    def shift(self, other: "PsychometricResult", n_boot: int = 200, seed: int | None = 0) -> dict:
        """The threshold shift ``other.threshold - self.threshold`` (e.g. lesioned minus intact) with a paired
        bootstrap interval over images (both curves resampled on the same images).

        Returns
        -------
        dict
            ``shift``, ``low``, ``high``, ``n_boot``.

        Raises
        ------
        InsilicoError
            The two curves are not over the same parameter, levels and number of images.
        """
        if (self.parameter, self.levels.tolist(), self.correct.shape) != \
                (other.parameter, other.levels.tolist(), other.correct.shape):
            raise InsilicoError("a psychometric shift compares two curves over the same parameter, levels and images "
                                f"(got {self.parameter} {self.levels.tolist()} on {self.correct.shape[1]} images and "
                                f"{other.parameter} {other.levels.tolist()} on {other.correct.shape[1]})")
        a, b = self.correct.double().numpy(), other.correct.double().numpy()

        def at(table, index, criterion):
            alpha, beta, lapse = fit_logistic(self.levels.numpy(), table[:, index].mean(1), self.chance, lapse=True)
            return threshold(alpha, beta, self.chance, criterion, lapse)

        low, high = bootstrap(lambda i: at(b, i, other.criterion) - at(a, i, self.criterion), a.shape[1], n_boot, seed)
        return dict(shift=other.threshold - self.threshold, low=low, high=high, n_boot=n_boot)

    def table(self) -> dict:
        """One row per level: ``level``, ``accuracy``, ``accuracy_low``, ``accuracy_high`` and the ``fitted`` curve."""
        levels = self.levels.double().numpy()
        return {self.parameter: levels, "accuracy": self.accuracy.double().numpy(),
                "accuracy_low": self.accuracy_low.double().numpy(),
                "accuracy_high": self.accuracy_high.double().numpy(), "fitted": self.fitted(levels)}

    def plot(self, ax=None, label: str | None = None):
        """Accuracy per level (with intervals), the fitted curve, chance and the threshold; returns the Figure."""
        fig, ax = new_axes(ax, close=True)
        x, p = self.levels.numpy(), self.accuracy.numpy()
        err = np.stack([p - self.accuracy_low.numpy(), self.accuracy_high.numpy() - p])
        line = ax.errorbar(x, p, yerr=np.nan_to_num(err), fmt="o", capsize=2, label=label)
        if math.isfinite(self.alpha):
            grid = np.linspace(x.min(), x.max(), 200)
            ax.plot(grid, self.fitted(grid), color=line[0].get_color())
            ax.axvline(self.threshold, color=line[0].get_color(), ls="--", lw=0.8)
        ax.axhline(self.chance, color="k", ls=":", lw=1)
        ax.set_xlabel(self.parameter)
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1.02)
        return fig

    def __repr__(self) -> str:
        return f"PsychometricResult({self.parameter}: {len(self.levels)} levels, threshold {self.threshold:.3g})"


def _fit(levels, correct, chance, criterion, n_boot, seed):
    """Fit, criterion, threshold and bootstrap intervals of a correctness table (L, N); ``criterion`` None: the
    midpoint between chance and the fitted top (each resample's own). A threshold the fit reaches only outside the
    tested levels is extrapolated, not measured: NaN, with a NaN interval."""
    def fitted(table):
        alpha, beta, lapse = fit_logistic(levels, table.mean(1), chance, lapse=True)
        level = chance + (1 - lapse - chance) / 2 if criterion is None else criterion
        return alpha, beta, lapse, level, threshold(alpha, beta, chance, level, lapse)

    alpha, beta, lapse, level, value = fitted(correct)
    interval = bootstrap(lambda i: fitted(correct[:, i])[4], correct.shape[1], n_boot, seed)
    if math.isfinite(value) and not levels.min() <= value <= levels.max():  # extrapolated: not measured
        value, interval = math.nan, (math.nan, math.nan)
    # each level's proportion correct: Wilson (a bootstrap of all right is [1, 1]); n_boot=0: none
    bounds = proportion_interval(correct.sum(1), correct.shape[1]) if n_boot else np.full((len(correct), 2), np.nan)
    return (alpha, beta, lapse, value, level), list(interval), np.asarray(bounds).reshape(-1, 2)


@register_tool("behaviour", saves=True, follows_dtype=False)
def psychometric(
    model: nn.Module,
    images: Any,
    labels: Any = None,
    parameter: str = "contrast",
    levels: Sequence[float] | None = None,
    criterion: float | None = None,
    output: str | None = None,
    batch_size: int = 256,
    n_boot: int = 200,
    seed: int | None = 0,
    progress: bool = True,
) -> PsychometricResult:
    """Accuracy of a classifier as ``images`` are degraded along ``parameter``, with a fitted threshold.

    Parameters
    ----------
    model : nn.Module
        A classifier (its output, or the unit ``output``, holds class scores (N, K)).
    images : tensor (N, C, H, W) in [0, 1], StimulusSet or Dataset
        Held in memory (they are degraded level by level).
    labels : (N,) ints, optional
        The true class of each image (an index of the model's outputs); default the labels the images carry (a
        folder's classes), matched to the model's outputs as :func:`insilico.behaviour.confusion` does.
    parameter : {"contrast", "noise", "gaussian", "occlusion"}
        What is varied (:data:`PARAMETERS`, :func:`degrade`).
    levels : list of float, optional
        Levels of ``parameter`` (default :data:`PARAMETERS`'s).
    criterion : float, optional
        The accuracy that defines the threshold (default halfway between chance, 1/K, and the fitted top).
    n_boot, seed
        Bootstrap resamplings of the images (0: no intervals) and the seed of the noise, patches and resampling.

    Returns
    -------
    PsychometricResult

    Raises
    ------
    StimulusError
        Empty stimuli, or images failing the image gate.
    InsilicoError
        An unknown parameter, fewer than 3 levels, a criterion outside (chance, 1), labels not one per image.
    """
    if parameter not in PARAMETERS:
        raise InsilicoError(f"parameter must be one of {sorted(PARAMETERS)}, not {parameter!r}")
    levels = [float(v) for v in (levels if levels is not None else PARAMETERS[parameter][1])]
    if len(levels) < 3:
        raise InsilicoError(f"a psychometric fit needs at least 3 levels, got {levels}")
    source = stimulus_source(images, model=model)  # image files fitted to the model's input
    x = check_images(source.read(0, len(source)), name="images")
    plan = Plan(model)
    with plan.session():
        scores = [predict(model, degrade(x, parameter, v, seed), batch_size=batch_size, output=output, plan=plan,
                          progress=progress, desc=f"{parameter} {v:g}") for v in levels]
    k = int(scores[0].shape[-1])
    y, _ = observer_labels(source, model, labels, None, k)
    y = torch.from_numpy(class_indices(labels, len(x), k) if y is None else y)  # refuses no labels
    chance = 1.0 / k
    if criterion is not None and not chance < criterion < 1:
        raise InsilicoError(f"criterion must lie between chance ({chance:.3g}) and 1, got {criterion}")
    correct = np.stack([(s.argmax(-1) == y).numpy() for s in scores])
    (alpha, beta, lapse, value, criterion), interval, bounds = _fit(np.array(levels), correct.astype(float), chance,
                                                                    criterion, n_boot, seed)
    settings = dict(model=type(model).__name__, output=output, n_images=len(x), n_boot=n_boot, seed=seed,
                    meaning=PARAMETERS[parameter][0])
    return PsychometricResult(torch.tensor(levels, dtype=torch.float64), torch.from_numpy(correct.mean(1)),
                              torch.from_numpy(correct), torch.from_numpy(bounds[:, 0]), torch.from_numpy(bounds[:, 1]),
                              alpha, beta, lapse, value, interval, chance, criterion, parameter, settings)


__all__ = ["PARAMETERS", "PsychometricResult", "degrade", "fit_logistic", "psychometric", "threshold"]
