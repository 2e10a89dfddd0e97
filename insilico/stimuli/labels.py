"""Class labels of stimuli and per-class accuracy: what the experiments and the behaviour tools score a model by
(one rule for both, below every tool); and the user's label files.

A labels file (``--labels FILE``, :func:`labelled`) is a CSV of ``image, label`` rows (an optional header
row): the image is a stimulus id (a file's path relative to the folder, as
:mod:`insilico.stimuli.files` names it) or the file's path; the label a class name or a class index. A
class-names file (``--class-names FILE``) is a JSON list of names, or one name per line: the name of each
class index (for a classifier's labels, of each output). Labels from a file override a folder's.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InsilicoError, StimulusError

#: Header cells that name the image column of a labels file (a first row starting with one is a header).
ID_HEADERS = ("image", "images", "id", "stimulus", "stimulus_id", "path", "file", "filename", "imagename")


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


@dataclasses.dataclass(frozen=True)
class Labelled:
    """Stimuli with labels and class names given apart from them (files, or ``{id: label}`` and a list):
    what :func:`labelled` returns and :func:`insilico.recording.stimulus_source` reads."""

    stimuli: Any
    labels: Any = None
    class_names: Any = None


def labelled(stimuli: Any, labels: Any = None, class_names: Any = None) -> Labelled:
    """``stimuli`` (any stimulus set a tool takes) with the labels of a labels file and the class names of a
    class-names file (see the module docstring), or a dict ``{id: label}`` and a list of names; they override
    the labels the stimuli carry (a folder's classes). Checked when the stimuli are read.

    Example
    -------
    >>> import tempfile, numpy as np, skimage.io
    >>> from insilico.recording import stimulus_source
    >>> d = tempfile.mkdtemp()
    >>> for name in ("x.png", "y.png", "z.png"):
    ...     skimage.io.imsave(f"{d}/{name}", np.zeros((4, 4, 3), np.uint8), check_contrast=False)
    >>> source = stimulus_source(labelled(d, {"x.png": "dog", "y.png": "cat", "z.png": "dog"}))
    >>> source.labels, source.class_names
    ([1, 0, 1], ['cat', 'dog'])
    """
    return Labelled(stimuli, labels, class_names)


def read_labels(path: str | os.PathLike) -> dict[str, str]:
    """``{image: label}`` from a labels CSV (``image, label`` rows; a first row naming the columns is skipped).

    Raises
    ------
    StimulusError
        A missing file, a row without two cells, an image listed twice (the line is named).
    """
    path = Path(path)
    if not path.is_file():
        raise StimulusError(f"labels file {str(path)!r} does not exist")
    table: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        for line, row in enumerate(csv.reader(f), start=1):
            cells = [c.strip() for c in row]
            if not any(cells) or (line == 1 and cells[0].lower() in ID_HEADERS):
                continue
            if len(cells) != 2 or not all(cells):
                raise StimulusError(f"{path}, line {line}: {row!r} is not 'image,label' (two cells)")
            if cells[0] in table:
                raise StimulusError(f"{path}, line {line}: {cells[0]!r} is labelled twice")
            table[cells[0]] = cells[1]
    if not table:
        raise StimulusError(f"labels file {path} holds no 'image,label' rows")
    return table


def read_class_names(path: str | os.PathLike) -> list[str]:
    """The class names of a class-names file: a JSON list, or one name per line (blank lines skipped).

    Raises
    ------
    StimulusError
        A missing or empty file, JSON that is not a list of names.
    """
    path = Path(path)
    if not path.is_file():
        raise StimulusError(f"class-names file {str(path)!r} does not exist")
    text = path.read_text(encoding="utf-8-sig").strip()
    if text.startswith("["):
        try:
            names = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StimulusError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
        if not all(isinstance(n, (str, int)) for n in names):
            raise StimulusError(f"{path} must hold a JSON list of class names")
        names = [str(n) for n in names]
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise StimulusError(f"class-names file {path} names no class")
    return names


def assign_labels(ids: list, paths: list | None, table: dict) -> tuple[list, list | None]:
    """``(labels, class_names)`` of stimuli ``ids`` (their files ``paths``, if any) from ``{image: label}``.

    An image is matched by its id, else by its file's path. Labels that are all whole numbers are class
    indices (no names); otherwise class names, indexed in sorted order.

    Raises
    ------
    StimulusError
        Images of the table that are not among the stimuli, or stimuli without a label (the first few named).
    """
    where = {str(i): k for k, i in enumerate(ids)}
    for k, p in enumerate(paths or ()):
        where.setdefault(os.path.abspath(p), k)
    found, unknown = {}, []
    for image, label in table.items():
        k = where.get(image, where.get(os.path.abspath(image)))
        if k is None:
            unknown.append(image)
        else:
            found[k] = str(label)
    if unknown:
        raise StimulusError(f"{len(unknown)} labelled images are not among the {len(ids)} stimuli: {unknown[:3]} "
                            f"(the stimuli's ids are like {[str(i) for i in ids[:2]]}: name them so)")
    unlabelled = [str(ids[k]) for k in range(len(ids)) if k not in found]
    if unlabelled:
        raise StimulusError(f"{len(unlabelled)} stimuli have no label in the labels file: {unlabelled[:3]}")
    values = [found[k] for k in range(len(ids))]
    if all(v.lstrip("-").isdigit() for v in values):
        return [int(v) for v in values], None
    names = sorted(set(values))
    return [names.index(v) for v in values], names


def name_classes(labels: list, own: list | None, class_names: list) -> list:
    """``labels`` (indices into the stimuli's ``own`` class names, or bare class indices when ``own`` is None)
    as indices into ``class_names``: named classes are matched by name, bare indices must be covered.

    Raises
    ------
    StimulusError
        A class of the stimuli that ``class_names`` lacks, or an index beyond it.

    Example
    -------
    >>> name_classes([0, 1, 1], ["dog", "cat"], ["cat", "dog", "owl"])
    [1, 0, 0]
    """
    names = [str(n) for n in class_names]
    if own is None:
        beyond = sorted({y for y in labels if not 0 <= y < len(names)})
        if beyond:
            raise StimulusError(f"class indices {beyond[:3]} have no name among the {len(names)} class names: "
                                "give a name for every class index")
        return list(labels)
    missing = [str(c) for c in own if str(c) not in names]
    if missing:
        raise StimulusError(f"the stimuli's classes {missing[:3]} are not among the class names ({names[:5]}, ...)")
    index = [names.index(str(c)) for c in own]
    return [index[y] for y in labels]


__all__ = ["Labelled", "assign_labels", "check_outputs", "class_labels", "labelled", "name_classes",
           "per_class_accuracy", "read_class_names", "read_labels", "stimulus_labels"]
