"""Confusion matrices: which classes a model (or a person) mistakes for which (Walther et al. 2009).

:func:`confusion` runs a classifier over labelled stimuli (the one batched
loop, :func:`insilico.evaluate.predict`, inside the call's session) and counts
its responses per true class; :meth:`ConfusionResult.from_trials` does the same
for a table of human trials. Per-class accuracies come with Wilson intervals
(:func:`insilico.statistics.proportion_interval`; a bootstrap of a class
all right would give ``[1, 1]``).

Example
-------
>>> import torch
>>> from insilico.pixels import raw
>>> net = torch.nn.Linear(3, 3)
>>> with torch.no_grad():
...     _ = net.weight.copy_(torch.eye(3)); _ = net.bias.zero_()
>>> x = torch.tensor([[1., 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 0]])
>>> res = confusion(net, raw(x), [0, 1, 2, 2], class_names=["cat", "dog", "car"], n_boot=0, progress=False)
>>> res.counts.tolist(), res.accuracy
([[1, 0, 0], [0, 1, 0], [0, 1, 1]], 0.75)
>>> res.matrix[2].tolist()
[0.0, 0.5, 0.5]
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import InsilicoError
from ..evaluate import predict
from ..plan import Plan
from ..recording import stimulus_source
from ..registry import register_tool
from ..results import Result
from ..plot.images import new_axes
from ..statistics import proportion_interval
from .trials import Trials, class_indices, observer_labels


@dataclasses.dataclass(repr=False)
class ConfusionResult(Result):
    """Counts of responses per true class, with accuracies and their Wilson intervals.

    Attributes
    ----------
    counts : tensor (K, K) int64
        ``counts[i, j]``: trials of true class ``i`` answered ``j``.
    classes : list of str
        The K class names.
    truth, predicted : tensor (N,) int64
        Each trial's true class and response (class indices).
    images : list of str
        Each trial's image id.
    class_low, class_high : tensor (K,)
        95% Wilson interval of each class's accuracy (Wilson 1927; NaN with ``n_boot=0``).
    accuracy_interval : list of float
        ``[low, high]`` of the overall accuracy.
    settings : dict
    """

    # no sample_fields: joining chunks would leave the counts and intervals of the first chunk (run all at once)

    counts: torch.Tensor
    classes: list
    truth: torch.Tensor
    predicted: torch.Tensor
    images: list
    class_low: torch.Tensor
    class_high: torch.Tensor
    accuracy_interval: list
    settings: dict = dataclasses.field(default_factory=dict)

    @property
    def matrix(self) -> torch.Tensor:
        """``counts`` normalised per true class (K, K) float64: each row sums to 1 (NaN for a class never shown)."""
        rows = self.counts.sum(1, keepdim=True).double()
        return self.counts.double() / torch.where(rows > 0, rows, torch.nan)

    @property
    def accuracy(self) -> float:
        """The fraction of trials answered correctly."""
        return float((self.truth == self.predicted).double().mean())

    @property
    def class_accuracy(self) -> torch.Tensor:
        """The diagonal of :attr:`matrix` (K,): each class's accuracy."""
        return self.matrix.diagonal()

    def trials(self, name: str | None = None) -> "Trials":
        """The trials as an observer (:class:`~insilico.behaviour.trials.Trials`) for the consistency measures."""
        names = [self.classes[int(k)] for k in self.predicted]
        return Trials.from_predictions(self.images, [self.classes[int(k)] for k in self.truth], names,
                                       name=name or self.settings.get("model", "model"))

    @classmethod
    def from_trials(cls, trials: Trials, classes: Sequence[str] | None = None, n_boot: int = 1000,
                    seed: int | None = 0) -> "ConfusionResult":
        """The confusion matrix of a table of trials (e.g. people's, :func:`~insilico.behaviour.read_trials`).

        Raises
        ------
        InsilicoError
            A true class that is not in ``classes`` (responses outside them are counted nowhere, but are errors).
        """
        classes = list(classes) if classes is not None else sorted(set(trials.truth))
        index = {c: k for k, c in enumerate(classes)}
        missing = sorted(set(trials.truth) - set(index))
        if missing:
            raise InsilicoError(f"trials of {trials.name!r} have true classes {missing[:5]} that are not in classes=")
        truth = np.array([index[c] for c in trials.truth])
        predicted = np.array([index.get(r, -1) for r in trials.response])
        return _result(truth, predicted, classes, trials.images, n_boot, seed, dict(model=trials.name))

    def to_pandas(self):
        """The normalised matrix as a ``pandas.DataFrame`` (true classes as rows, responses as columns)."""
        import pandas as pd

        return pd.DataFrame(self.matrix.numpy(), index=pd.Index(self.classes, name="true"),
                            columns=pd.Index(self.classes, name="response"))

    def plot(self, ax=None, normalize: bool = True):
        """The matrix (true class x response), per-class normalised by default; returns the Figure."""
        k = len(self.classes)
        fig, ax = new_axes(ax, (0.3 * k + 2.5, 0.3 * k + 2), close=True)
        values = self.matrix if normalize else self.counts
        image = ax.imshow(values.numpy(), cmap="viridis", vmin=0, vmax=1 if normalize else None,
                          interpolation="nearest")
        ax.set_xticks(range(k))
        ax.set_xticklabels(self.classes, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(k))
        ax.set_yticklabels(self.classes, fontsize=7)
        ax.set_xlabel("response")
        ax.set_ylabel("true class")
        ax.set_title(f"{self.settings.get('model', '')} accuracy {self.accuracy:.2f}", fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of the class" if normalize else "trials")
        return fig

    def __repr__(self) -> str:
        return f"ConfusionResult({len(self.classes)} classes, {len(self.truth)} trials, accuracy {self.accuracy:.3f})"


def _result(truth: np.ndarray, predicted: np.ndarray, classes: list, images: Sequence, n_boot: int,
            seed: int | None, settings: dict) -> ConfusionResult:
    """Counts, intervals and the result of trials given as class indices (a response of -1 is no class)."""
    k = len(classes)
    answered = predicted >= 0
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (truth[answered], predicted[answered]), 1)
    correct = truth == predicted
    if n_boot < 0:
        raise InsilicoError(f"n_boot must be >= 0 (0: no intervals), not {n_boot}")
    # Wilson intervals of proportions (a bootstrap of 16 right of 16 is [1, 1]); n_boot=0: none
    right = np.array([correct[truth == c].sum() for c in range(k)])
    n = np.array([(truth == c).sum() for c in range(k)])
    per_class = proportion_interval(right, n) if n_boot else np.full((k, 2), np.nan)
    low, high = per_class[:, 0].copy(), per_class[:, 1].copy()
    overall = proportion_interval(correct.sum(), len(truth)).tolist() if n_boot and len(truth) else [np.nan, np.nan]
    return ConfusionResult(torch.from_numpy(counts), [str(c) for c in classes], torch.from_numpy(truth).long(),
                           torch.from_numpy(predicted).long(), [str(i) for i in images], torch.from_numpy(low),
                           torch.from_numpy(high), list(overall), dict(settings, n_boot=n_boot, seed=seed))


@register_tool("behaviour", saves=True, follows_dtype=False)
def confusion(
    model: nn.Module,
    stimuli: Any,
    labels: Any = None,
    class_names: Sequence[str] | None = None,
    image_ids: Sequence[str] | None = None,
    output: str | None = None,
    batch_size: int = 256,
    n_boot: int = 1000,
    seed: int | None = 0,
    progress: bool = True,
) -> ConfusionResult:
    """Confusion matrix of a classifier over labelled stimuli, per-class accuracies with Wilson intervals.

    Parameters
    ----------
    model : nn.Module
        A classifier: its output (or the unit ``output``) holds class scores (N, K); the response is the argmax.
    stimuli : tensor (N, C, H, W) in [0, 1], StimulusSet, Dataset, or raw(...)
        Anything :func:`insilico.recording.stimulus_source` reads.
    labels : (N,) ints, optional
        The true class index of each stimulus (an index of the model's outputs). Default: the labels the stimuli
        carry (a folder ``DIR/<class>/<image>``, :func:`insilico.stimuli.labelled`, a Dataset with ``targets``),
        matched by name to ``class_names`` or ``model.classes``; a model that names no classes takes the
        stimuli's classes in their order, and must have as many outputs.
    class_names : list of str, optional
        The K class names (default ``model.classes`` when it has them, else the stimuli's classes when they are
        the labels, else ``"0" .. "K-1"``).
    image_ids : list of str, optional
        Each stimulus's id, which aligns this observer with others (default the files' relative paths for
        image files, else ``"0" .. "N-1"``).
    output : str, optional
        Read the class scores from this unit (``"readout@2"``: step 2 of a recurrent model).
    batch_size, progress
        Stimuli per forward pass; progress bar.
    n_boot, seed
        0: no intervals; otherwise each accuracy gets its 95% Wilson interval (exact for the class's count of
        images; ``n_boot`` and ``seed`` no longer draw resamples, kept for the signature).

    Returns
    -------
    ConfusionResult
        ``.counts`` and ``.matrix`` (K, K), ``.accuracy``, ``.class_accuracy``, ``.class_low``/``.class_high``,
        ``.trials()``, ``.plot()``, ``.to_pandas()``.

    Raises
    ------
    StimulusError
        Empty stimuli, or images failing the image gate.
    InsilicoError
        Labels not one per stimulus or outside the model's classes, ``class_names`` or ``image_ids`` of the
        wrong length, repeated image ids; without ``labels``, stimuli that carry none, classes the model does
        not name, or (a model naming none) a number of classes other than its outputs.

    Example
    -------
    >>> import pathlib, tempfile, numpy as np, skimage.io, torch
    >>> d = tempfile.mkdtemp()
    >>> for name in ("cat/1.png", "cat/2.png", "dog/1.png"):
    ...     pathlib.Path(d, name).parent.mkdir(exist_ok=True)
    ...     skimage.io.imsave(f"{d}/{name}", np.zeros((8, 8, 3), np.uint8), check_contrast=False)
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 2))
    >>> net.classes = ["dog", "cat"]
    >>> result = confusion(net, d, n_boot=0, progress=False)      # the folder's labels, matched by name
    >>> result.truth.tolist(), result.classes
    ([1, 1, 0], ['dog', 'cat'])
    """
    source = stimulus_source(stimuli)
    n = len(source)
    plan = Plan(model)
    with plan.session():
        scores = predict(model, stimuli, batch_size=batch_size, output=output, plan=plan, progress=progress,
                         desc="confusion")
    if scores.ndim != 2:
        raise InsilicoError(f"confusion needs class scores (N, K) from the model (or output=), got shape "
                            f"{tuple(scores.shape)}: name the unit that holds the logits with output=")
    k = int(scores.shape[1])
    if k < 2:
        raise InsilicoError(f"the model gives {k} class score per stimulus: a confusion matrix needs at least 2 "
                            "classes (name the unit with the logits with output=)")
    y, names = observer_labels(source, model, labels, class_names, k)
    if y is None:
        class_indices(None, n, k)  # refuses: a confusion matrix needs the true classes
    ids = [str(i) for i in (image_ids if image_ids is not None else source.ids or range(n))]
    if len(ids) != n or len(set(ids)) != n:
        raise InsilicoError(f"image_ids: give {n} distinct ids, one per stimulus (got {len(ids)}, "
                            f"{len(set(ids))} distinct)")
    settings = dict(model=type(model).__name__, output=output, n_stimuli=n)
    return _result(y, scores.argmax(-1).numpy(), names, ids, n_boot, seed, settings)


__all__ = ["ConfusionResult", "confusion"]
