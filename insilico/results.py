"""The one result protocol: every tool's result saves, loads, concatenates and plots the same way.

A result is a dataclass that inherits :class:`Result`. ``save(path)`` writes
ONE ``torch.save`` file of tensors, numbers, strings, lists and dicts (numpy
arrays as tensors, nested insilico results by class name) plus the versions
of the libraries that made it; ``load(path)`` reads it back with
``torch.load(..., weights_only=True)``: no pickled code ever runs. Fields
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
import importlib
import os
import platform
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from .errors import InsilicoError

FORMAT = 2


def versions() -> dict:
    """Versions of insilico, torch, numpy and Python, recorded with every result."""
    from ._version import __version__

    return {"insilico": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


class Result:
    """Base of every insilico result (subclasses are dataclasses). See the module docstring."""

    #: Fields with a sample axis (tensors, arrays, lists), joined by :meth:`concat`.
    sample_fields: ClassVar[tuple[str, ...]] = ()

    @property
    def versions(self) -> dict:
        """Versions of the libraries that made the result (the running ones if it was not loaded)."""
        return self.__dict__.get("_versions") or versions()

    def save(self, path: str | os.PathLike) -> None:
        """Write the result to ``path`` (one file; read back with :meth:`load`)."""
        cls = type(self)
        blob = {"format": FORMAT, "kind": f"{cls.__module__}:{cls.__qualname__}", "result": pack(self),
                "versions": pack(self.versions)}
        torch.save(blob, os.fspath(path))

    @classmethod
    def load(cls, path: str | os.PathLike):
        """Read a result written by :meth:`save` (``weights_only=True``: no code is unpickled)."""
        return cls._from_blob(read(path), os.fspath(path))

    @classmethod
    def _from_blob(cls, blob: dict, path: str):
        """The result held by a file's contents ``blob`` (read by :func:`read`)."""
        if blob.get("format") != FORMAT or "result" not in blob:
            raise InsilicoError(f"{path!r} is not a result saved by insilico (format {FORMAT})")
        result = unpack(blob["result"], {f"{cls.__module__}:{cls.__qualname__}": cls})
        if not isinstance(result, cls):
            raise InsilicoError(f"{path!r} holds a {type(result).__name__}, not a {cls.__name__}: "
                                f"load it with {type(result).__name__}.load")
        result.__dict__["_versions"] = unpack(blob.get("versions"))
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

    def plot(self, ax=None):
        """Draw the result; returns the matplotlib Figure."""
        raise NotImplementedError(f"{type(self).__name__} has no plot")

    def check(self, model) -> Any:  # pragma: no cover - overridden where it means something
        """Re-evaluate the result against ``model`` (e.g. recompute the responses to the saved images)."""
        raise NotImplementedError(f"{type(self).__name__} cannot re-check itself against a model")


def load(path: str | os.PathLike):
    """Any saved insilico result, rebuilt as the type that saved it (no need to know it beforehand).

    Reads files written by :meth:`Result.save` (they name their class), the synthesis results'
    own format (:class:`~insilico.synthesis.SynthesisResult`, and
    :class:`~insilico.design.metamer_result.MetamerResult` when the file holds the metamer part),
    an experiment's exported ``.npz`` table, and an on-disk :class:`~insilico.Recording` folder.
    ``torch.load(..., weights_only=True)`` throughout: no pickled code runs.

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
        from .recording import Recording

        return Recording.load(path)
    if path.endswith(".npz"):
        return _load_table(path)
    blob = read(path)
    if blob.get("format") == FORMAT and isinstance(blob.get("kind"), str):
        return _class_named(blob["kind"], path)._from_blob(blob, path)
    from .synthesis import result as synthesis_result

    if blob.get("format") == synthesis_result.FORMAT and "images" in blob:
        if "metamer" in blob:
            from .design.metamer_result import MetamerResult

            return MetamerResult._from_blob(blob, path)
        return synthesis_result.SynthesisResult._from_blob(blob, path)
    raise InsilicoError(f"{path!r} is not a result saved by insilico (no recorded type; format "
                        f"{blob.get('format')!r})")


def read(path: str | os.PathLike, what: str = "result") -> dict:
    """The contents of a file saved by insilico, read with ``weights_only=True``; InsilicoError otherwise."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InsilicoError(f"no {what} at {path!r}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise InsilicoError(f"{path!r} is not a {what} saved by insilico: {e}") from e
    if not isinstance(blob, dict):
        raise InsilicoError(f"{path!r} is not a {what} saved by insilico")
    return blob


def _insilico_class(kind: str, where: str) -> type:
    """The class named ``"module:qualname"``, which must be insilico's own (no other code is ever loaded)."""
    module, _, name = kind.partition(":")
    if module.split(".")[0] != "insilico" or not name:
        raise InsilicoError(f"{where} names the class {kind!r}; only insilico's results are read")
    try:
        cls = importlib.import_module(module)
        for part in name.split("."):
            cls = getattr(cls, part)
    except (ImportError, AttributeError) as e:
        raise InsilicoError(f"{where} holds a {kind}, which this version of insilico does not have: {e}") from e
    return cls


def _class_named(kind: str, path: str) -> type:
    cls = _insilico_class(kind, repr(path))
    if not (isinstance(cls, type) and issubclass(cls, Result)):
        raise InsilicoError(f"{path!r} names {kind}, which is not an insilico result")
    return cls


def _load_table(path: str):
    """An experiment's exported ``.npz`` (its JSON settings name the result class)."""
    import json

    from . import experiments

    if not os.path.exists(path):
        raise InsilicoError(f"no result at {path!r}")
    with np.load(path, allow_pickle=False) as data:
        settings = json.loads(str(data["settings"])) if "settings" in data.files else {}
    name = settings.get("result")
    classes = {c.__name__: c for c in _subclasses(experiments.Result)}
    if name not in classes:
        raise InsilicoError(f"{path!r} does not name an experiment result (settings 'result' is {name!r}); "
                            "load it with that result's class, e.g. TuningResult.load(path)")
    return classes[name].load(path)


def _subclasses(cls: type) -> list[type]:
    return [cls] + [s for c in cls.__subclasses__() for s in _subclasses(c)]


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


def pack(value: Any) -> Any:
    """``value`` as data ``torch.load(weights_only=True)`` reads: tensors, numbers, strings, lists, dicts."""
    if torch.is_tensor(value):
        return value.detach().cpu()
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "U":  # strings (unit addresses, class names): a list, with dtype and shape
            return {"__ndarray__": [str(v) for v in value.ravel().tolist()], "dtype": value.dtype.str,
                    "shape": list(value.shape)}
        return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(value)) if value.dtype != object
                else [pack(v) for v in value.tolist()]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        fields = {f.name: pack(getattr(value, f.name)) for f in dataclasses.fields(value)
                  if f.init and not isinstance(getattr(value, f.name), torch.nn.Module)}
        return {"__dataclass__": f"{cls.__module__}:{cls.__qualname__}", "fields": fields}
    if isinstance(value, dict):
        return {"__dict__": [[pack(k), pack(v)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [pack(v) for v in value]}
    if isinstance(value, list):
        return [pack(v) for v in value]
    if isinstance(value, torch.dtype):
        return {"__dtype__": str(value).replace("torch.", "")}
    if hasattr(value, "item") and not isinstance(value, (bool, int, float, str)):  # numpy scalars
        return value.item()
    for plain in (bool, int, float, str):  # subclasses (e.g. torch.__version__) become the plain type
        if isinstance(value, plain):
            return plain(value)
    if value is None:
        return None
    raise InsilicoError(f"cannot save a value of type {type(value).__name__} in a result: keep results to "
                        "tensors, arrays, numbers, strings, lists, dicts and insilico results")


def unpack(value: Any, classes: dict | None = None) -> Any:
    """The inverse of :func:`pack`; only insilico's own classes (and the ``classes`` given by name) are rebuilt."""
    classes = classes or {}
    if isinstance(value, list):
        return [unpack(v, classes) for v in value]
    if not isinstance(value, dict):
        return value
    if "__ndarray__" in value:
        inner = value["__ndarray__"]
        if "dtype" in value:
            return np.array(inner, dtype=value["dtype"]).reshape(value["shape"])
        return inner.numpy() if torch.is_tensor(inner) else np.array([unpack(v) for v in inner], dtype=object)
    if "__tuple__" in value:
        return tuple(unpack(v, classes) for v in value["__tuple__"])
    if "__dict__" in value:
        return {unpack(k, classes): unpack(v, classes) for k, v in value["__dict__"]}
    if "__dtype__" in value:
        return getattr(torch, value["__dtype__"])
    if "__dataclass__" in value:
        kind = value["__dataclass__"]
        fields = {k: unpack(v, classes) for k, v in value["fields"].items()}
        if kind in classes:
            return classes[kind](**fields)
        return _insilico_class(kind, "a saved result")(**fields)
    return {k: unpack(v, classes) for k, v in value.items()}  # dicts packed by older versions


__all__ = ["FORMAT", "Result", "join", "load", "pack", "unpack", "versions"]
