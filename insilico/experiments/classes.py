"""Class labels and per-class accuracy: what the lesion and dynamics experiments score a model by."""
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


__all__ = ["class_labels", "per_class_accuracy"]
