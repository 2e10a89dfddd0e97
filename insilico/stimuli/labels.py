"""Class labels of stimuli and per-class accuracy: what the experiments and the behaviour tools score a model by
(one rule for both, below every tool)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import InsilicoError


def class_labels(labels: Any, n: int) -> np.ndarray:
    """One class index per stimulus (n,), as ints; InsilicoError when there are not ``n`` of them.

    Example
    -------
    >>> class_labels(torch.tensor([2, 0, 1]), 3).tolist()
    [2, 0, 1]
    """
    y = np.asarray(labels.cpu() if torch.is_tensor(labels) else labels).astype(int).ravel()
    if len(y) != n:
        raise InsilicoError(f"{len(y)} labels for {n} stimuli: give one class index per stimulus")
    return y


def stimulus_labels(source: Any, model: Any, classes: Any = None) -> tuple[np.ndarray, list, bool]:
    """The labels a stimulus set carries (a ``DIR/<class>/<image>`` folder, a Dataset with ``targets``), as
    indices of the model's outputs: ``(y (N,), class names, mapped)``.

    When the model names its classes (``classes`` given, or ``model.classes``), every class of the
    stimuli must be one of them and its stimuli are labelled with its position there (``mapped``);
    otherwise the stimuli's own class order is taken as the model's output order, which the caller
    checks against the number of outputs (:func:`check_outputs`).

    Raises
    ------
    InsilicoError
        The stimuli carry no labels, or classes the model does not name.

    Example
    -------
    >>> from types import SimpleNamespace as NS
    >>> y, names, mapped = stimulus_labels(NS(labels=[0, 1, 1], class_names=["dog", "cat"]), NS(classes=["cat", "dog"]))
    >>> y.tolist(), names, mapped
    ([1, 0, 0], ['cat', 'dog'], True)
    """
    if source.labels is None:
        raise InsilicoError("labels are needed: give labels= (one class index per stimulus), or stimuli that carry "
                            "them (a folder DIR/<class>/<image>, a Dataset with targets)")
    own = list(source.class_names or range(max(source.labels) + 1))
    named = list(classes) if classes is not None else getattr(model, "classes", None)
    if not named:
        return np.asarray(source.labels, dtype=int), [str(c) for c in own], False
    named = [str(c) for c in named]
    unknown = [str(c) for c in own if str(c) not in named]
    if unknown:
        raise InsilicoError(f"the stimuli's classes {unknown[:5]} are not among the model's classes ({named[:5]}, "
                            f"...): name the folders as the model names its classes, or give labels= (the model's "
                            "output index of each stimulus)")
    index = [named.index(str(c)) for c in own]
    return np.asarray([index[y] for y in source.labels], dtype=int), named, True


def check_outputs(names: list, n_outputs: int) -> None:
    """Refuse stimuli labelled in their own class order when the model has another number of outputs."""
    if len(names) != n_outputs:
        raise InsilicoError(f"the stimuli have {len(names)} classes ({', '.join(names[:5])}) but the model "
                            f"{n_outputs} outputs and names none of them: set model.classes = [...] (the name of "
                            "each output) so the stimuli's classes are matched by name, or give labels=")


def per_class_accuracy(pred: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """The fraction of each class's stimuli predicted as that class (n_classes,); NaN for a class with none.

    Example
    -------
    >>> per_class_accuracy(np.array([0, 1, 1, 0]), np.array([0, 0, 1, 1]), 3).tolist()
    [0.5, 0.5, nan]
    """
    out = np.full(n_classes, np.nan)
    for c in range(n_classes):
        mask = y == c
        if mask.any():
            out[c] = float((pred[mask] == c).mean())
    return out


__all__ = ["check_outputs", "class_labels", "per_class_accuracy", "stimulus_labels"]
