"""Observers' trials: which image, its true class, the response, correct or not, and the reaction time.

An observer is a model or a person. A :class:`Trials` table holds one row per
trial (image id, true class, response, subject, reaction time) and is what the
consistency measures (:mod:`insilico.behaviour.consistency`) compare: two
observers are aligned by image id, never by position. A model's trials come
from :meth:`ConfusionResult.trials() <insilico.behaviour.confusion.ConfusionResult.trials>`
(or :meth:`Trials.from_predictions`); a person's from a CSV file
(:func:`read_trials`) in the layout of Geirhos et al.'s released
model-vs-human data (columns ``subj, session, trial, rt, object_response,
category, condition, imagename``; other spellings are listed in :data:`COLUMNS`).
The CSV is read with the standard library's :mod:`csv` (pandas is optional:
:meth:`Trials.to_pandas`).

Example
-------
>>> import os, tempfile
>>> t = Trials.from_predictions(["a", "b", "c"], ["cat", "dog", "cat"], ["cat", "cat", "cat"], name="net")
>>> t.correct.tolist(), t.accuracy
([True, False, True], 0.6666666666666666)
>>> path = os.path.join(tempfile.mkdtemp(), "trials.csv")
>>> t.to_csv(path)
>>> read_trials(path).images
['a', 'b', 'c']
"""
from __future__ import annotations

import csv
import dataclasses
import math
import os
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..errors import InsilicoError
from ..results import Result
from ..stimuli.labels import check_outputs, class_labels, stimulus_labels

#: What each field of a trial is called in a CSV file (first match wins; case-insensitive). Geirhos et al.'s
#: model-vs-human layout first.
COLUMNS = {
    "image": ("imagename", "image", "imageid", "image_id", "stimulus"),
    "truth": ("category", "true_class", "true", "label", "target"),
    "response": ("object_response", "response", "prediction", "choice"),
    "subject": ("subj", "subject", "observer"),
    "rt": ("rt", "reaction_time"),
}


@dataclasses.dataclass(repr=False)
class Trials(Result):
    """One observer's trials, one row each (an insilico result: ``save``, ``load``, ``to_pandas``).

    Attributes
    ----------
    images : list of str
        The image id of each trial (how two observers are aligned).
    truth, response : list of str
        The true class and the observer's response (class names).
    subject : list of str
        Who made each trial (a model's name, or the ``subj`` column).
    rt : list of float
        Reaction times (milliseconds for people, time steps for recurrent models; NaN when unknown).
    name : str
        The observer's name.
    deterministic : bool
        The observer answers an image the same way every time (a model in eval mode): its responses are
        noiseless, so :func:`~insilico.behaviour.consistency.image_consistency` needs no repeats of it.
    """

    sample_fields = ("images", "truth", "response", "subject", "rt")

    images: list
    truth: list
    response: list
    subject: list
    rt: list
    name: str = "observer"
    deterministic: bool = False

    def __post_init__(self):
        n = len(self.images)
        for field in ("truth", "response", "subject", "rt"):
            if len(getattr(self, field)) != n:
                raise InsilicoError(f"Trials {self.name!r}: {len(getattr(self, field))} {field} values for {n} "
                                    "images: give one per trial")
        if n == 0:
            raise InsilicoError(f"Trials {self.name!r} has no trials: an observer needs at least one trial")
        self.images = [str(v) for v in self.images]
        self.truth = [str(v) for v in self.truth]
        self.response = [str(v) for v in self.response]
        self.subject = [str(v) for v in self.subject]
        self.rt = [float(v) for v in self.rt]

    @classmethod
    def from_predictions(cls, images: Sequence, truth: Sequence, response: Sequence, rt: Sequence | None = None,
                         name: str = "model") -> "Trials":
        """Trials of one deterministic observer (a model) from its responses (``rt`` optional: NaN)."""
        rt = [math.nan] * len(images) if rt is None else list(rt)
        return cls(list(images), list(truth), list(response), [name] * len(images), rt, name, deterministic=True)

    @property
    def correct(self) -> np.ndarray:
        """Whether each trial's response is its true class (n,) bool."""
        return np.array([r == t for r, t in zip(self.response, self.truth)], dtype=bool)

    @property
    def accuracy(self) -> float:
        """The fraction of trials answered correctly."""
        return float(self.correct.mean())

    @property
    def classes(self) -> list[str]:
        """The true classes, in order of first appearance."""
        return list(dict.fromkeys(self.truth))

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return f"Trials({self.name!r}, {len(self)} trials, {len(set(self.subject))} subject(s), " \
               f"accuracy {self.accuracy:.3f})"

    def select(self, subject: str | None = None, condition: Sequence[bool] | None = None) -> "Trials":
        """The trials of one ``subject`` and/or where ``condition`` (a mask, one per trial) holds."""
        keep = np.ones(len(self), dtype=bool)
        if subject is not None:
            keep &= np.array([s == str(subject) for s in self.subject])
        if condition is not None:
            keep &= np.asarray(condition, dtype=bool)
        if not keep.any():
            raise InsilicoError(f"Trials {self.name!r}: no trial of subject {subject!r} (subjects: "
                                f"{sorted(set(self.subject))[:8]}) under that condition")
        index = np.flatnonzero(keep)
        pick = lambda values: [values[i] for i in index]  # noqa: E731
        return Trials(pick(self.images), pick(self.truth), pick(self.response), pick(self.subject),
                      pick(self.rt), self.name if subject is None else f"{self.name}:{subject}", self.deterministic)

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write the trials in Geirhos et al.'s column layout (``subj, trial, rt, object_response, category,
        imagename``); :func:`read_trials` reads it back."""
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["subj", "trial", "rt", "object_response", "category", "imagename"])
            for k in range(len(self)):
                writer.writerow([self.subject[k], k + 1, self.rt[k], self.response[k], self.truth[k], self.images[k]])

    def to_pandas(self):
        """A ``pandas.DataFrame`` with one row per trial (pandas must be installed)."""
        import pandas as pd

        return pd.DataFrame({"subject": self.subject, "image": self.images, "truth": self.truth,
                             "response": self.response, "correct": self.correct, "rt": self.rt})


def read_trials(path: str | os.PathLike, name: str | None = None, subject: str | None = None,
                image_id: Callable[[str], str] | None = None) -> Trials:
    """Human (or model) trials from a CSV file: one row per trial, columns named as in :data:`COLUMNS`.

    Parameters
    ----------
    path : str or path
        A CSV file with a header row; Geirhos et al.'s model-vs-human files
        (``subj, session, trial, rt, object_response, category, condition, imagename``) read as they are.
        UTF-8 (with or without Excel's byte-order mark); spaces around cells are dropped.
    name : str, optional
        The observer's name (default the file's stem).
    subject : str, optional
        Only this subject's trials.
    image_id : callable, optional
        Maps the image column to the id that aligns observers, where file names carry a per-session or
        per-trial part (e.g. ``lambda name: name.split("_", 3)[-1]`` drops a ``0001_cl_s01_`` prefix).

    Returns
    -------
    Trials

    Raises
    ------
    InsilicoError
        The file has no image, true-class or response column (the message lists the names looked for),
        or no rows.
    """
    path = os.fspath(path)
    with open(path, newline="", encoding="utf-8-sig") as f:  # a BOM (Excel's "CSV UTF-8") would hide column 1
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None}  # "cat, cat ": no spaces
                for row in csv.DictReader(f)]
    if not rows:
        raise InsilicoError(f"{path!r} has no trials (an empty file, or a header only)")
    found = {k.strip().lower(): k for k in rows[0]}
    columns = {}
    for field, names in COLUMNS.items():
        hit = next((found[n] for n in names if n in found), None)
        if hit is None and field in ("image", "truth", "response"):
            raise InsilicoError(f"{path!r} has no {field} column: name one of {list(names)} (it has "
                                f"{list(rows[0])})")
        columns[field] = hit
    name = name or os.path.splitext(os.path.basename(path))[0]

    def column(field, default):
        return [row[columns[field]] if columns[field] else default for row in rows]

    rt = [float(v) if v not in ("", "NaN", "nan", None) else math.nan for v in column("rt", "")]
    images = column("image", "")
    if image_id is not None:
        images = [str(image_id(i)) for i in images]
    trials = Trials(images, column("truth", ""), column("response", ""), column("subject", name), rt, name)
    return trials if subject is None else trials.select(subject)


def class_indices(labels: Any, n: int, n_classes: int | None = None) -> np.ndarray:
    """One class index per stimulus (n,) ints; InsilicoError for no labels, a wrong count or an index outside the
    classes."""
    if labels is None:
        raise InsilicoError("labels are needed: one class index (of the model's outputs) per stimulus, or stimuli "
                            "that carry them (a folder DIR/<class>/<image>, insilico.stimuli.labelled(...), a "
                            "Dataset with targets)")
    y = np.asarray(labels.cpu() if torch.is_tensor(labels) else labels)
    if y.dtype.kind not in "iu":
        raise InsilicoError(f"labels must be class indices (ints), got dtype {y.dtype}; map class names to indices "
                            "and give the names as class_names=")
    y = class_labels(y, n)  # the count, as every tool checks it
    if len(y) and (y.min() < 0 or (n_classes is not None and y.max() >= n_classes)):
        raise InsilicoError(f"labels must lie in 0..{(n_classes or 1) - 1} (the model's classes), got "
                            f"{y.min()}..{y.max()}")
    return y


def observer_labels(source: Any, model: Any, labels: Any, class_names: Any, k: int) -> tuple[np.ndarray | None, list]:
    """``(y (N,) or None, class names (k,))`` of an observer's stimuli: the ``labels`` given (indices of the model's
    ``k`` outputs), else the labels the stimuli ``source`` carries, matched to the model's outputs by the one rule
    of :func:`insilico.stimuli.labels.stimulus_labels` (by name to ``class_names`` / ``model.classes``; a model
    naming none takes the stimuli's class order and must have as many outputs); None when neither has any.

    Raises
    ------
    InsilicoError
        What :func:`class_indices` refuses; classes the model does not name; a class count other than ``k``;
        ``class_names`` not one per output.
    """
    if labels is None and source.labels is not None:
        labels, own, mapped = stimulus_labels(source, model, class_names)
        if not mapped:
            check_outputs(own, k)
        class_names = own if class_names is None else class_names
    y = None if labels is None else class_indices(labels, len(source), k)
    names = [str(c) for c in (class_names if class_names is not None else getattr(model, "classes", range(k)))]
    if len(names) != k:
        raise InsilicoError(f"{len(names)} class_names for a model with {k} outputs: give one name per output")
    return y, names


__all__ = ["COLUMNS", "Trials", "class_indices", "observer_labels", "read_trials"]
