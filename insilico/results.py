"""The one result protocol: every tool's result saves, loads, concatenates and plots the same way.

A result is a dataclass that inherits :class:`Result`. ``save(path)`` writes
ONE ``torch.save`` file of tensors, numbers, strings, lists and dicts (numpy
arrays as tensors, nested insilico results by class name) plus the versions
of the libraries that made it; ``load(path)`` reads it back through the one
decoder (:mod:`insilico.persistence`: ``torch.load(..., weights_only=True)``,
a format version, an allow-list of classes): no pickled code ever runs, and a
file can rebuild only insilico's results (every subclass registers itself). Fields
named in ``sample_fields`` have a sample axis, and ``concat`` joins results of
chunks of one job along it. ``plot(ax=None)`` draws the result and returns the
Figure; ``check(model)`` re-evaluates it against a model where that means
something.

Example
-------
>>> import dataclasses, os, tempfile, torch
>>> @dataclasses.dataclass
... class Rates(Result):
...     sample_fields = ("rates",)
...     rates: torch.Tensor
...     settings: dict = dataclasses.field(default_factory=dict)
>>> path = os.path.join(tempfile.mkdtemp(), "rates.pt")
>>> Rates(torch.tensor([0.5, 1.0]), {"eps": 0.03}).save(path)
>>> r = Rates.load(path)
>>> r.rates.tolist(), r.settings, sorted(r.versions)
([0.5, 1.0], {'eps': 0.03}, ['insilico', 'numpy', 'python', 'torch'])
>>> Rates.concat([r, r]).rates.tolist()
[0.5, 1.0, 0.5, 1.0]
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from . import persistence
from .errors import InsilicoError, SavedFileError
from .persistence import FORMAT, pack, read, unpack, versions


class Result:
    """Base of every insilico result (subclasses are dataclasses). See the module docstring."""

    #: Fields with a sample axis (tensors, arrays, lists), joined by :meth:`concat`.
    sample_fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        persistence.register(cls, "result")  # on the decoder's allow-list under "module:qualname"

    @property
    def versions(self) -> dict:
        """Versions of the libraries that made the result (the running ones if it was not loaded)."""
        return self.__dict__.get("_versions") or versions()

    def save(self, path: str | os.PathLike) -> None:
        """Write the result to ``path`` (one file; read back with :meth:`load`)."""
        blob = {"format": FORMAT, "kind": persistence.kind_name(type(self)), "result": pack(self),
                "versions": pack(self.versions)}
        torch.save(blob, os.fspath(path))

    @classmethod
    def load(cls, path: str | os.PathLike):
        """Read a result written by :meth:`save` (``weights_only=True``: no code is unpickled).

        Raises
        ------
        SavedFileError
            A missing, damaged or foreign file, a newer format, a class not on the allow-list, or
            fields of another insilico version (the message names the file and the versions).
        InsilicoError
            The file holds another kind of result (the message names the class to load it with).
        """
        return cls._from_blob(read(path), os.fspath(path))

    @classmethod
    def _from_blob(cls, blob: dict, path: str):
        """The result held by a file's contents ``blob`` (read by :func:`read`)."""
        persistence.check_format(blob, path, FORMAT, oldest=FORMAT)
        packed, kind = blob.get("result"), blob.get("kind")
        if not isinstance(packed, dict) or not isinstance(kind, str) or \
                persistence.MOVED.get(packed.get("__dataclass__"), packed.get("__dataclass__")) \
                != persistence.MOVED.get(kind, kind):
            raise SavedFileError(f"{path!r} is not a result saved by insilico (its kind {kind!r} and its contents "
                                 "disagree)", path)
        result = unpack(packed, path, blob.get("versions"))
        if not isinstance(result, cls):
            raise InsilicoError(f"{path!r} holds a {type(result).__name__}, not a {cls.__name__}: "
                                f"load it with {type(result).__name__}.load")
        result.__dict__["_versions"] = unpack(blob.get("versions"), path)
        return result

    @classmethod
    def concat(cls, results: Sequence[Result]):
        """Join results of consecutive chunks of one job along the sample axis (``sample_fields``)."""
        results = list(results)
        if not results:
            raise InsilicoError(f"{cls.__name__}.concat needs at least one result")
        if len(results) > 1 and not cls.sample_fields:
            raise InsilicoError(f"{cls.__name__} has no sample axis to concatenate along (no sample_fields)")
        if len(results) == 1:
            return results[0]
        joined = {name: join([getattr(r, name) for r in results]) for name in cls.sample_fields}
        return dataclasses.replace(results[0], **joined)

    def to(self, device: torch.device | str):
        """A copy whose tensor fields (and those of nested results) are on ``device``; dtypes are kept."""
        return _to_device(self, torch.device(device))

    def table(self) -> dict | list:
        """The result's table, for :meth:`to_pandas` and CSV files: a dict of equal-length 1-D columns, or a
        list of row dicts (one row per unit, target, stimulus, level...); empty when the result is not tabular."""
        return {}

    def to_pandas(self):
        """:meth:`table` as a ``pandas.DataFrame`` (pandas is an optional extra).

        Raises
        ------
        InsilicoError
            pandas is not installed (the message names the extra that installs it), or the result has no
            table (read its fields instead).
        """
        return data_frame(self.table(), f"{type(self).__name__}.to_pandas")

    def plot(self, ax=None):
        """Draw the result; returns the matplotlib Figure."""
        raise NotImplementedError(f"{type(self).__name__} has no plot")

    def check(self, model) -> Any:  # pragma: no cover - overridden where it means something
        """Re-evaluate the result against ``model`` (e.g. recompute the responses to the saved images)."""
        raise NotImplementedError(f"{type(self).__name__} cannot re-check itself against a model")


def need_pandas(what: str):
    """The pandas module, or an InsilicoError saying that ``what`` needs it and which extra installs it."""
    try:
        import pandas
    except ImportError:
        raise InsilicoError(f"{what} needs pandas: pip install 'insilico-ephys[xarray]' (or pip install "
                            "pandas)") from None
    return pandas


def data_frame(table: dict | list, what: str, index: Any = None):
    """A table (a dict of equal-length columns, or a list of row dicts) as a ``pandas.DataFrame``.

    The one door to pandas for every result (:meth:`Result.to_pandas`), recordings and predictors.

    Raises
    ------
    InsilicoError
        pandas is not installed, or ``table`` is empty (``what`` has no table).

    Example
    -------
    >>> data_frame({"unit": ["a", "b"], "r": [0.5, 0.25]}, "scores").shape
    (2, 2)
    """
    pandas = need_pandas(what)
    if not len(table):
        raise InsilicoError(f"{what}: this result has no table (no per-row values): read its fields instead")
    return pandas.DataFrame(table, index=index)


def load(path: str | os.PathLike):
    """Any saved insilico result, rebuilt as the type that saved it (no need to know it beforehand).

    Reads files written by :meth:`Result.save` (they name their class), the synthesis results'
    own format (:class:`~insilico.synthesis.SynthesisResult`, and
    :class:`~insilico.design.metamer_result.MetamerResult` when the file holds the metamer part),
    an experiment's exported ``.npz`` table, and an on-disk :class:`~insilico.Recording` folder,
    all through the one decoder (:mod:`insilico.persistence`): ``weights_only=True``, a format
    version, and an allow-list of the classes a file may rebuild.

    Raises
    ------
    SavedFileError
        The file is missing, damaged, not insilico's, newer than this insilico, or names a class
        that is not on the allow-list; the message names the file (``error.path``).

    Example
    -------
    >>> import os, tempfile, torch, insilico
    >>> from insilico.synthesis import SynthesisResult
    >>> path = os.path.join(tempfile.mkdtemp(), "r.pt")
    >>> SynthesisResult(torch.rand(1, 1, 4, 4), torch.zeros(2, 1), torch.tensor([2]), ["steps"], ["a"]).save(path)
    >>> insilico.load(path)
    SynthesisResult(1 images (1, 4, 4), up to 2 steps, stopped: {'steps': 1})
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        return persistence.resolve("insilico.recording:Recording", path, roles=("folder",)).load(path)
    if path.endswith(".npz"):
        return _load_table(path)
    blob = read(path)
    return persistence.resolve(persistence.kind_of(blob, path), path)._from_blob(blob, path)


def _load_table(path: str):
    """An experiment's exported ``.npz``: its JSON settings name the result class (``"result"``)."""
    arrays, settings = persistence.read_table(path, "result")
    name = settings.get("result")
    for kind in persistence.KINDS:  # import (by the table) the modules that define a class of that name
        if kind.partition(":")[2] == name:
            persistence.resolve(kind, path)
    found = [c for k, c in persistence.registered().items()
             if k.partition(":")[2] == name and hasattr(c, "_from_table")]
    if len(found) != 1:
        raise SavedFileError(f"{path!r} does not name one experiment result (settings 'result' is {name!r}"
                             + (f", which {len(found)} classes are called" if found else "") + "); load it with "
                             "that result's class, e.g. TuningResult.load(path)", path)
    return found[0]._from_table(arrays, settings, path)


def _to_device(value: Any, device: torch.device) -> Any:
    if torch.is_tensor(value):
        return value.to(device)
    if isinstance(value, Result) and dataclasses.is_dataclass(value):
        moved = dataclasses.replace(value, **{f.name: _to_device(getattr(value, f.name), device)
                                              for f in dataclasses.fields(value) if f.init})
        moved.__dict__.update({k: v for k, v in value.__dict__.items() if k.startswith("_")})
        return moved
    return value


def join(values: list) -> Any:
    """Values of one per-sample field of consecutive chunks, joined (tensors and arrays on axis 0)."""
    first = values[0]
    if first is None:
        return None
    if torch.is_tensor(first):
        return torch.cat(values) if first.ndim else torch.stack(values)
    if isinstance(first, np.ndarray):
        return np.concatenate(values)
    if isinstance(first, list):
        return [v for vs in values for v in vs]
    if isinstance(first, dict):
        return {k: join([v[k] for v in values]) for k in first}
    if hasattr(type(first), "concat"):
        return type(first).concat(values)
    raise InsilicoError(f"cannot join values of type {type(first).__name__} over chunks")


__all__ = ["FORMAT", "Result", "data_frame", "join", "load", "need_pandas", "pack", "read", "unpack", "versions"]
