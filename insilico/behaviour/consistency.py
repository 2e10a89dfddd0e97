"""Do two observers fail on the same images? Error consistency and image-level consistency.

Two observers (models or people, as :class:`~insilico.behaviour.trials.Trials`)
are aligned by image id; a trial of one observer without its image in the other
is an error, never silently dropped.

- :func:`error_consistency`: Cohen's kappa of trial-wise correctness
  (Geirhos, Meding & Wichmann 2020, "Beyond accuracy: quantifying trial-by-trial
  behaviour of CNNs and humans by measuring error consistency", NeurIPS):
  with accuracies ``p_a``, ``p_b`` and the observed fraction of images both got
  right or both got wrong ``c_obs``, the agreement expected from the accuracies
  alone is ``c_exp = p_a p_b + (1 - p_a)(1 - p_b)`` and
  ``kappa = (c_obs - c_exp) / (1 - c_exp)``: 1 for the same errors, 0 for
  errors as independent as their accuracies allow.
- :func:`image_consistency`: the i1n consistency of Rajalingham et al. 2018
  (J Neurosci 38(33), "Large-scale, high-resolution comparison of the core visual
  object recognition behavior of humans, monkeys, and state-of-the-art deep
  artificial neural networks"); see its docstring for the definition.

Example
-------
>>> from insilico.behaviour.trials import Trials
>>> a = Trials.from_predictions("pqrs", "xxyy", "xyyy", name="a")   # wrong on q
>>> b = Trials.from_predictions("srqp", "yyxx", "xyyx", name="b")   # wrong on s and q
>>> round(error_consistency(a, b, n_boot=0).value, 6)
0.5
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy.stats import norm

from ..errors import InsilicoError
from ..results import Result
from ..plot.images import new_axes
from ..statistics import bootstrap, interval, rng
from .trials import Trials


@dataclasses.dataclass(repr=False)
class ConsistencyResult(Result):
    """A consistency between two observers with its bootstrap interval over images.

    Attributes
    ----------
    value : float
        Kappa (:func:`error_consistency`) or the corrected i1n correlation (:func:`image_consistency`).
    low, high : float
        The percentile bootstrap interval over images (NaN without a bootstrap).
    measure : str
        ``"error_consistency"`` or ``"image_consistency"``.
    observers : list of str
        The two observers' names.
    n_images : int
        Images both observers saw.
    details : dict
        The parts: ``c_obs``, ``c_exp``, ``accuracy_a``, ``accuracy_b``; or ``raw`` (uncorrected r),
        ``reliability_a``, ``reliability_b``.
    """

    value: float
    low: float
    high: float
    measure: str
    observers: list
    n_images: int
    details: dict = dataclasses.field(default_factory=dict)

    def __repr__(self) -> str:
        return f"ConsistencyResult({self.measure} {self.value:.3f} [{self.low:.3f}, {self.high:.3f}], " \
               f"{self.observers[0]} vs {self.observers[1]}, {self.n_images} images)"

    def table(self) -> list:
        """One row: ``measure``, ``observer_a``, ``observer_b``, ``value``, ``low``, ``high``, ``n_images``."""
        return [{"measure": self.measure, "observer_a": self.observers[0], "observer_b": self.observers[1],
                 "value": self.value, "low": self.low, "high": self.high, "n_images": self.n_images}]

    def plot(self, ax=None):
        """The value with its interval (one bar); returns the Figure."""
        fig, ax = new_axes(ax, (2.5, 3), close=True)
        err = [[self.value - self.low], [self.high - self.value]] if math.isfinite(self.low) else None
        ax.bar([0], [self.value], yerr=err, color="0.6", capsize=4)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks([0])
        ax.set_xticklabels([" vs ".join(self.observers)], fontsize=7)
        ax.set_ylabel(self.measure.replace("_", " "))
        return fig


def _trials(observer, what: str) -> Trials:
    if isinstance(observer, Trials):
        return observer
    if hasattr(observer, "trials") and callable(observer.trials):  # a ConfusionResult, a ReactionTimeResult
        return observer.trials()
    if isinstance(observer, (list, tuple, np.ndarray)) or hasattr(observer, "__array__"):
        correct = np.asarray(observer.cpu() if hasattr(observer, "cpu") else observer)
        if correct.ndim == 1 and len(correct) and np.isin(correct, (0, 1)).all():  # correctness, images by position
            return Trials.from_predictions([str(k) for k in range(len(correct))], ["right"] * len(correct),
                                           ["right" if c else "wrong" for c in correct], name=what)
    raise InsilicoError(f"{what} must be an observer's Trials (read_trials(path), Trials.from_predictions(...)), a "
                        "result with .trials() (behaviour.confusion(model, ...)) or a 1-D array of trial-wise "
                        f"correctness (0/1, images by position), not {type(observer).__name__}")


def aligned_correctness(a, b) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Both observers' correctness (n,) on the same images, in ``a``'s order, and the image ids.

    Raises
    ------
    InsilicoError
        An observer saw an image more than once (select one subject), or the two saw different images.
    """
    a, b = _trials(a, "a"), _trials(b, "b")
    for t in (a, b):
        if len(set(t.images)) != len(t):
            twice = sorted({i for i in t.images if t.images.count(i) > 1})[:5]
            raise InsilicoError(f"observer {t.name!r} has several trials of images {twice}: error consistency "
                                f"compares one trial per image; pick one subject (trials.select(subject=...))")
    only_a, only_b = set(a.images) - set(b.images), set(b.images) - set(a.images)
    if only_a or only_b:
        raise InsilicoError(f"observers {a.name!r} and {b.name!r} saw different images: {len(only_a)} only in "
                            f"{a.name!r} (e.g. {sorted(only_a)[:3]}), {len(only_b)} only in {b.name!r} (e.g. "
                            f"{sorted(only_b)[:3]}); keep the shared ones with trials.select(condition=...)")
    where = {image: k for k, image in enumerate(b.images)}
    order = np.array([where[i] for i in a.images])
    return a.correct, b.correct[order], list(a.images)


def _kappa(ca: np.ndarray, cb: np.ndarray) -> float:
    pa, pb = ca.mean(), cb.mean()
    expected = pa * pb + (1 - pa) * (1 - pb)
    if expected >= 1:
        return float("nan")  # both always right (or always wrong): kappa is undefined
    return float(((ca == cb).mean() - expected) / (1 - expected))


def error_consistency(a, b, n_boot: int = 1000, seed: int | None = 0, ci: float = 0.95) -> ConsistencyResult:
    """Cohen's kappa of two observers' trial-wise correctness beyond what their accuracies predict (Geirhos 2020).

    ``c_exp = p_a p_b + (1 - p_a)(1 - p_b)``, ``kappa = (c_obs - c_exp) / (1 - c_exp)`` (module docstring).

    Observers with several subjects (a :class:`Trials` table of people, one trial per image and subject) are
    compared subject by subject, as Geirhos et al. report it: kappa of every pair of a subject of ``a`` and a
    subject of ``b`` (a model against each person on that person's images; a table against itself: every
    pair of different subjects), and ``value`` is their mean, with a percentile bootstrap interval over the
    subjects (resampled with replacement on each side; on both sides alike for a table against itself).
    A pair whose kappa is undefined (both always right on those images) is left out of the mean and named in
    ``details["undefined"]``.

    Parameters
    ----------
    a, b : Trials, a result with ``.trials()`` (``behaviour.confusion(model, ...)``), or 1-D arrays of correctness
        One trial per image each, on the same images (aligned by image id, in any order; arrays of 0/1 or
        booleans are trial-wise correctness on the same images in the same order).
    n_boot : int
        Bootstrap resamplings of the images for the interval (0: none).
    seed : int or None
        Seed of the resampling.
    ci : float
        Coverage of the interval.

    Returns
    -------
    ConsistencyResult
        ``value`` (kappa), ``low``, ``high``, ``details`` (``c_obs``, ``c_exp``, ``accuracy_a``, ``accuracy_b``);
        by subject: ``details["pairs"]`` (``[subject_a, subject_b, kappa]`` each), ``n_subjects_a``,
        ``n_subjects_b``, ``undefined`` (the pairs left out), ``interval`` (``"subjects"``).

    Raises
    ------
    InsilicoError
        Different images, several trials of one image (by one subject), or both observers always right (or
        always wrong): kappa is then undefined (0 / 0); by subject: a person's image the other observer
        never saw, two people's different image sets, or every pair undefined.

    Example
    -------
    >>> from insilico.behaviour.trials import Trials
    >>> model = Trials.from_predictions("pqrs", "xxxx", "xyxy", name="net")       # wrong on q and s
    >>> people = Trials(list("pqrspq"), list("xxxxxx"), list("xyxxxy"), ["s1"] * 4 + ["s2"] * 2, [0.0] * 6)
    >>> res = error_consistency(model, people, n_boot=0)
    >>> res.details["pairs"], res.value                  # s1 on p, q, r, s; s2 on p, q
    ([['net', 's1', 0.5], ['net', 's2', 1.0]], 0.75)
    """
    ta, tb = _trials(a, "a"), _trials(b, "b")
    if len(set(ta.subject)) > 1 or len(set(tb.subject)) > 1:
        return _by_subject(ta, tb, n_boot, seed, ci)
    ca, cb, images = aligned_correctness(a, b)
    value = _kappa(ca, cb)
    names = [_trials(a, "a").name, _trials(b, "b").name]  # (a result's .trials() is cheap: no model runs)
    if math.isnan(value):
        raise InsilicoError(f"error consistency of {names[0]!r} and {names[1]!r} is undefined: both are "
                            f"{'always right' if ca.all() else 'always wrong'} on these {len(ca)} images "
                            "(c_exp = 1); use harder (or easier) images")
    pa, pb = float(ca.mean()), float(cb.mean())
    low, high = bootstrap(lambda i: _kappa(ca[i], cb[i]), len(ca), n_boot, seed, ci)
    details = dict(c_obs=float((ca == cb).mean()), c_exp=pa * pb + (1 - pa) * (1 - pb), accuracy_a=pa,
                   accuracy_b=pb, n_boot=n_boot, seed=seed, ci=ci)
    return ConsistencyResult(value, low, high, "error_consistency", names, len(images), details)


def _subject_trials(t: Trials, subject: str, other: Trials) -> Trials:
    """``t``'s trials of ``subject``; a one-subject observer (a model) facing a table of several people is cut to
    the images of ``other`` (one person), which it must all have seen."""
    if len(set(t.subject)) > 1:
        return t.select(subject=subject)
    missing = set(other.images) - set(t.images)
    if missing:
        raise InsilicoError(f"observer {t.name!r} never saw {len(missing)} image(s) of {other.name!r} (e.g. "
                            f"{sorted(missing)[:3]}): error consistency compares each person with the other observer "
                            "on that person's images; give the other observer every image the people saw")
    keep = set(other.images)
    return t.select(condition=[i in keep for i in t.images])


def _by_subject(a: Trials, b: Trials, n_boot: int, seed, ci: float) -> ConsistencyResult:
    """Mean kappa over subject pairs, with a bootstrap interval over the subjects (see :func:`error_consistency`)."""
    same = a is b
    subjects_a, subjects_b = list(dict.fromkeys(a.subject)), list(dict.fromkeys(b.subject))
    kappas = np.full((len(subjects_a), len(subjects_b)), np.nan)
    pairs, undefined, images = [], [], set()
    for i, sa in enumerate(subjects_a):
        for j, sb in enumerate(subjects_b):
            if same and i == j:
                continue
            one_a = _subject_trials(a, sa, b.select(subject=sb))
            one_b = _subject_trials(b, sb, one_a)
            ca, cb, seen = aligned_correctness(one_a, one_b)
            kappas[i, j] = _kappa(ca, cb)
            images.update(seen)
            (undefined if math.isnan(kappas[i, j]) else pairs).append([sa, sb, float(kappas[i, j])])
    if not pairs:
        raise InsilicoError(f"error consistency of {a.name!r} and {b.name!r} is undefined for every pair of subjects "
                            "(each pair always right, or always wrong, on its images); use harder (or easier) images")
    if not 0 < ci < 1 or n_boot < 0:
        raise InsilicoError(f"error consistency needs ci in (0, 1) and n_boot >= 0, got ci={ci}, n_boot={n_boot}")
    g, draws = rng(seed), []
    for _ in range(n_boot):
        ia = g.integers(0, len(subjects_a), len(subjects_a))
        ib = ia if same else g.integers(0, len(subjects_b), len(subjects_b))
        draw = kappas[np.ix_(ia, ib)]
        draws.append(np.nanmean(draw) if np.isfinite(draw).any() else np.nan)
    low, high = interval(np.array(draws), level=ci).tolist() if draws else (math.nan, math.nan)
    details = dict(pairs=pairs, undefined=undefined, n_subjects_a=len(subjects_a), n_subjects_b=len(subjects_b),
                   interval="subjects", n_boot=n_boot, seed=seed, ci=ci)
    value = float(np.mean([k for _, _, k in pairs]))
    return ConsistencyResult(value, float(low), float(high), "error_consistency", [a.name, b.name], len(images),
                             details)


#: Hit and false-alarm rates are clipped to this range before the z-transform (d' within +-4.65; Rajalingham et
#: al. bound d' to +-5), so an image every trial got right has a finite d'.
RATE_RANGE = (0.01, 0.99)


def _i1n(image: np.ndarray, truth: np.ndarray, response: np.ndarray, n_images: int,
         image_class: np.ndarray) -> np.ndarray:
    """Per-image normalised d' (n_images,): z(hit rate of the image) - z(false-alarm rate of its class), minus the
    mean over the images of its class. ``image``, ``truth``, ``response``: one entry per trial (class indices)."""
    counts = np.bincount(image, minlength=n_images)
    hits = np.bincount(image, weights=(response == truth), minlength=n_images) / np.maximum(counts, 1)
    n_classes = int(image_class.max()) + 1
    far = np.array([(response[truth != c] == c).mean() if (truth != c).any() else 0.0 for c in range(n_classes)])
    z = lambda p: norm.ppf(np.clip(p, *RATE_RANGE))  # noqa: E731
    dprime = z(hits) - z(far)[image_class]
    means = np.bincount(image_class, weights=dprime) / np.bincount(image_class)
    return dprime - means[image_class]


def _coded(t: Trials, ids: dict, classes: dict):
    image = np.array([ids[i] for i in t.images])
    truth = np.array([classes[c] for c in t.truth])
    response = np.array([classes.get(r, -1) for r in t.response])  # a response outside the classes: never a hit
    return image, truth, response


def _reliability(image, truth, response, n_images, image_class, n_splits, g, name) -> float:
    """Split-half reliability of the i1n vector, Spearman-Brown corrected, averaged over random splits."""
    counts = np.bincount(image, minlength=n_images)
    if counts.min() < 2:
        raise InsilicoError(f"observer {name!r} has one trial of some images: split-half reliability needs at least 2 "
                            "trials per image (several subjects); a model is noiseless: make its trials with "
                            "Trials.from_predictions (deterministic=True)")
    rs = []
    for _ in range(n_splits):
        order = g.permutation(len(image))
        rank = np.empty(len(image), dtype=int)  # the position of each trial among its image's trials, at random
        seen = np.zeros(n_images, dtype=int)
        for k in order:
            rank[k], seen[image[k]] = seen[image[k]], seen[image[k]] + 1
        half = rank % 2 == 0
        x = _i1n(image[half], truth[half], response[half], n_images, image_class)
        y = _i1n(image[~half], truth[~half], response[~half], n_images, image_class)
        r = np.corrcoef(x, y)[0, 1]
        rs.append(2 * r / (1 + r))
    return float(np.mean(rs))


def image_consistency(a, b, n_splits: int = 20, n_boot: int = 1000, seed: int | None = 0,
                      ci: float = 0.95) -> ConsistencyResult:
    """Image-level consistency (i1n) of two observers, corrected for their split-half reliabilities (Rajalingham 2018).

    Definition (Rajalingham et al. 2018, J Neurosci, "I1n"): for image ``i`` of class ``c``,
    ``d'_i = z(HR_i) - z(FAR_c)``, with ``HR_i`` the fraction of trials of image ``i`` answered ``c`` and
    ``FAR_c`` the fraction of trials of images of other classes answered ``c`` (rates clipped to
    :data:`RATE_RANGE`); ``i1n_i = d'_i - mean of d'_j over the images j of class c`` (image difficulty beyond
    its class's). The consistency is the Pearson r of the two observers' i1n vectors over images divided by
    ``sqrt(rel_a * rel_b)``, each reliability the correlation of i1n between random halves of the observer's
    trials of each image, Spearman-Brown corrected (``2 r / (1 + r)``) and averaged over ``n_splits`` splits.
    A deterministic observer (a model: ``Trials.deterministic``) has reliability 1 and may give one trial per
    image; people need at least two trials of every image (e.g. several subjects).

    Parameters
    ----------
    a, b : Trials, or results with ``.trials()``
        Trials over the same images (several per image allowed: subjects, repeats).
    n_splits : int
        Random split-halves averaged per observer.
    n_boot, seed, ci
        Bootstrap over images of the corrected correlation (reliabilities held fixed).

    Returns
    -------
    ConsistencyResult
        ``details``: ``raw`` (uncorrected r), ``reliability_a``, ``reliability_b``.

    Raises
    ------
    InsilicoError
        Different images or classes, fewer than 2 classes or 3 images, or a non-deterministic observer with one
        trial of some image.
    """
    a, b = _trials(a, "a"), _trials(b, "b")
    if set(a.images) != set(b.images):
        aligned_correctness(a.select(condition=_first(a)), b.select(condition=_first(b)))  # raises, naming images
    ids = {i: k for k, i in enumerate(dict.fromkeys(a.images))}
    classes = {c: k for k, c in enumerate(sorted(set(a.truth) | set(b.truth)))}
    image_class = np.zeros(len(ids), dtype=int)
    coded = []
    for k, t in enumerate((a, b)):
        image, truth, response = _coded(t, ids, classes)
        if k and (image_class[image] != truth).any():
            raise InsilicoError(f"observers {a.name!r} and {b.name!r} give different true classes for some images")
        image_class[image] = truth
        coded.append((image, truth, response))
    if len(classes) < 2 or len(ids) < 3:
        raise InsilicoError(f"image consistency needs at least 2 classes and 3 images (got {len(classes)} and "
                            f"{len(ids)})")
    g = rng(seed)
    rel = [1.0 if t.deterministic else _reliability(*c, len(ids), image_class, n_splits, g, t.name)
           for t, c in zip((a, b), coded)]
    x, y = (_i1n(*c, len(ids), image_class) for c in coded)
    scale = math.sqrt(rel[0] * rel[1]) if rel[0] > 0 and rel[1] > 0 else float("nan")
    raw = float(np.corrcoef(x, y)[0, 1])
    low, high = bootstrap(lambda i: np.corrcoef(x[i], y[i])[0, 1] / scale, len(ids), n_boot, seed, ci)
    details = dict(raw=raw, reliability_a=rel[0], reliability_b=rel[1], n_splits=n_splits, n_boot=n_boot, seed=seed)
    return ConsistencyResult(raw / scale, low, high, "image_consistency", [a.name, b.name], len(ids), details)


def _first(t: Trials) -> np.ndarray:
    """A mask of each image's first trial."""
    seen, keep = set(), []
    for image in t.images:
        keep.append(image not in seen)
        seen.add(image)
    return np.array(keep)


__all__ = ["RATE_RANGE", "ConsistencyResult", "aligned_correctness", "error_consistency", "image_consistency"]
