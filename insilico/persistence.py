"""The one decoder for every file insilico reads: plain data only, an allow-list of classes, a format version.

Every file insilico reads back (results, the chunk files of ``out=`` folders,
predictors, recordings' metadata and arrays, experiment tables, caches) goes
through this module:

- :func:`read` opens a ``torch.save`` file with ``weights_only=True`` (no
  pickled code ever runs); :func:`read_json` and :func:`open_npy` read JSON
  metadata and ``.npy`` arrays. A missing, truncated or corrupt file is a
  :class:`~insilico.errors.SavedFileError` that names the file and says what
  to do, never a raw ``OSError``/``JSONDecodeError``.
- :func:`check_format` refuses a file with no format number, or one newer or
  older than this insilico reads, naming the file, the file's format and
  insilico version and the running ones.
- :func:`pack` turns a value into plain data (tensors, numbers, strings,
  lists, dicts) and :func:`unpack` turns it back. A packed dataclass records
  its class as ``"module:qualname"``; :func:`unpack` rebuilds only classes on
  the **allow-list**: the registry (:func:`register`; every
  :class:`insilico.results.Result` subclass registers itself when it is
  defined) plus :data:`KINDS`, a static table of insilico's own classes whose
  module is imported on first use (then the class must have registered itself
  under exactly that name). No dotted name from a file is ever walked with
  ``getattr``: ``"insilico.results:os.system"`` is refused, not called.
- :func:`build` calls a class with a file's fields; fields that this version's
  class does not have (or lacks) are a :class:`SavedFileError` naming the file,
  the class, the fields and both versions.

Legacy readers are data (:data:`LEGACY_KINDS`), not imports: this module
imports nothing above the foundations.

Example
-------
>>> import os, tempfile, torch
>>> from insilico.errors import SavedFileError
>>> path = os.path.join(tempfile.mkdtemp(), "evil.pt")
>>> torch.save({"format": 2, "kind": "insilico.results:os.system", "result": {}}, path)
>>> try:
...     resolve(read(path)["kind"], path)
... except SavedFileError as e:
...     print(e.path == path, "allow-list" in str(e))
True True
>>> unpack(pack({"eps": (1, 2), "dtype": torch.float16}))
{'eps': (1, 2), 'dtype': torch.float16}
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import os
import pickle
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._version import __version__
from .errors import InsilicoError, SavedFileError

#: The current format of a result file written by :meth:`insilico.results.Result.save` and of chunk parts.
FORMAT = 2

#: insilico's own classes a file may name (``"module:qualname"``), imported lazily on first use.
#: A class that moves keeps its old name here as an alias in :data:`MOVED`. tests/test_persistence.py
#: checks that this table and the classes that register themselves agree.
KINDS = frozenset({
    "insilico.attribution.exemplars:Exemplars",
    "insilico.attribution.exemplars:Projections",
    "insilico.behaviour.confusion:ConfusionResult",
    "insilico.behaviour.consistency:ConsistencyResult",
    "insilico.behaviour.psychometric:PsychometricResult",
    "insilico.behaviour.reaction_times:ReactionTimeResult",
    "insilico.behaviour.trials:Trials",
    "insilico.design.adversarial_result:AdversarialResult",
    "insilico.design.controversial:ControversialResult",
    "insilico.design.eigendistortions:EigendistortionResult",
    "insilico.design.mad:MADResult",
    "insilico.design.metamer_result:MetamerResult",
    "insilico.design.population_control:PopulationControlResult",
    "insilico.design.closed_loop:ClosedLoopResult",
    "insilico.encoding.ridge:Ceiling",
    "insilico.encoding.ridge:EncodingResult",
    "insilico.experiments.dynamics:DynamicsResult",
    "insilico.experiments.dynamics:RecurrentLesionResult",
    "insilico.experiments.lesions:CumulativeLesionResult",
    "insilico.experiments.lesions:LesionResult",
    "insilico.experiments.microstimulation:MicrostimulationResult",
    "insilico.experiments.receptive_fields:RFResult",
    "insilico.experiments.receptive_fields:RFSizesResult",
    "insilico.experiments.results:Result",
    "insilico.experiments.tuning:TuningResult",
    "insilico.lab.study:StudyResult",
    "insilico.recording:Recording",
    "insilico.rsa.bootstrap:BootstrapResult",
    "insilico.rsa.noise_ceiling:NoiseCeiling",
    "insilico.rsa.rdm:RDM",
    "insilico.rsa.time_resolved:TimeResolvedResult",
    "insilico.synthesis.result:SynthesisResult",
})

#: Old names of classes that moved: ``old kind -> current kind`` (files keep the name they were saved under).
MOVED: dict[str, str] = {
    "insilico.encoding:Ceiling": "insilico.encoding.ridge:Ceiling",
    "insilico.encoding:EncodingResult": "insilico.encoding.ridge:EncodingResult",
}

#: Files written before they recorded their class: ``(format, key the file holds, kind)``, first match wins.
#: The synthesis results' own format 1 (``SynthesisResult.save``) holds ``images``; metamers add ``metamer``.
LEGACY_KINDS = (
    (1, "metamer", "insilico.design.metamer_result:MetamerResult"),
    (1, "images", "insilico.synthesis.result:SynthesisResult"),
)

_REGISTRY: dict[str, tuple[type, str]] = {}
_ROLES = ("result", "dataclass", "folder")


def kind_name(cls: type) -> str:
    """The name a file records for ``cls``: ``"module:qualname"``."""
    return f"{cls.__module__}:{cls.__qualname__}"


def register(cls: type, role: str = "dataclass") -> type:
    """Put ``cls`` on the allow-list under :func:`kind_name`; returns ``cls`` (usable as a decorator).

    ``role`` says what a file may do with it: ``"result"`` (a file's ``kind``; done by
    :class:`insilico.results.Result` for every subclass), ``"dataclass"`` (a value nested in a
    result, rebuilt as ``cls(**fields)``) or ``"folder"`` (a folder :func:`insilico.load` opens
    with ``cls.load(path)``).
    """
    if role not in _ROLES:
        raise InsilicoError(f"register({cls.__name__}): role must be one of {_ROLES}, not {role!r}")
    _REGISTRY[kind_name(cls)] = (cls, role)
    return cls


def registered() -> dict[str, type]:
    """The classes on the allow-list that are defined in this process, by kind."""
    return {kind: cls for kind, (cls, _) in _REGISTRY.items()}


def resolve(kind: Any, path: Any, roles: tuple[str, ...] = ("result",)) -> type:
    """The allow-listed class a file names as ``kind``; :class:`SavedFileError` for anything else.

    ``kind`` is looked up, never walked: a registered class, or one of :data:`KINDS`
    (its module, named by the table, is imported and must register exactly that name).
    """
    if not isinstance(kind, str):
        raise SavedFileError(f"{path} names no class (kind {kind!r}); it was not written by insilico", path)
    kind = MOVED.get(kind, kind)
    if kind not in _REGISTRY and kind in KINDS:
        try:
            importlib.import_module(kind.partition(":")[0])  # the module named by the table, not by the file
        except ImportError as e:
            raise SavedFileError(f"{path} holds a {kind}, whose module cannot be imported here ({e}): install "
                                 "what it needs", path) from e
    if kind not in _REGISTRY:
        raise SavedFileError(
            f"{path} asks to rebuild {kind!r}, which is not on insilico's allow-list of saved classes "
            f"(insilico {__version__} reads its own results only); do not load files from untrusted "
            "sources, or re-save the result with the insilico that made it", path)
    cls, role = _REGISTRY[kind]
    if role not in roles:
        raise SavedFileError(f"{path} names {kind} as a {'/'.join(roles)}, but insilico only reads it as a {role}",
                             path)
    return cls


def versions() -> dict:
    """Versions of insilico, torch, numpy and Python, recorded with every file insilico writes."""
    return {"insilico": str(__version__), "torch": str(torch.__version__), "numpy": str(np.__version__),
            "python": platform.python_version()}


def versions_text(recorded: Any) -> str:
    """Which insilico and torch wrote a file (its recorded ``versions``) and which are running, in words."""
    recorded = recorded if isinstance(recorded, dict) else {}
    mine = versions()
    return (f"the file was written by insilico {recorded.get('insilico', '(unknown)')} with torch "
            f"{recorded.get('torch', '(unknown)')}; this is insilico {mine['insilico']} with torch {mine['torch']}")


# ---------------------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------------------
def read(path: str | os.PathLike, what: str = "result") -> dict:
    """The contents (a dict) of a ``torch.save`` file insilico wrote, read with ``weights_only=True``.

    Raises
    ------
    SavedFileError
        No such file; a truncated or corrupt file; a file holding pickled objects (code);
        not a dict. The message names the file and ``what`` it should have been.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise SavedFileError(f"no {what} at {path!r}" + (" (it is a folder)" if os.path.isdir(path) else ""), path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        if isinstance(e, pickle.UnpicklingError) and "weights_only" in str(e):
            reason = "it holds pickled objects (code), which insilico never loads"
        else:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0][:160]
            reason = f"the file is damaged (cut short while it was written?) or not insilico's ({first})"
        raise SavedFileError(f"{path!r} is not a {what} saved by insilico: {reason}; compute it again (a damaged "
                             "chunk of an out= folder is computed again by the run itself)", path) from e
    if not isinstance(blob, dict):
        raise SavedFileError(f"{path!r} is not a {what} saved by insilico (it holds a {type(blob).__name__})", path)
    return blob


def read_json(path: str | os.PathLike, what: str = "metadata file") -> dict:
    """A JSON object from ``path``; :class:`SavedFileError` naming the file when it is missing or corrupt."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise SavedFileError(f"no {what} at {path}", path) from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SavedFileError(f"{path} ({what}) is damaged and cannot be read ({e}); delete the folder's "
                             "damaged file or the folder, and run again", path) from e
    if not isinstance(data, dict):
        raise SavedFileError(f"{path} ({what}) holds a JSON {type(data).__name__}, not an object", path)
    return data


def json_field(blob: dict, key: str, path: Any, types: tuple = (dict,)) -> Any:
    """The JSON value (of one of ``types``) stored as the string ``blob[key]`` of a file; SavedFileError if damaged."""
    try:
        data = json.loads(blob[key])
    except (KeyError, TypeError, ValueError) as e:
        raise SavedFileError(f"{path} is damaged or not written by insilico (its {key!r} entry: "
                             f"{type(e).__name__}: {e})", path) from e
    if not isinstance(data, types):
        raise SavedFileError(f"{path} is damaged (its {key!r} entry is a JSON {type(data).__name__})", path)
    return data


def open_npy(path: str | os.PathLike, mmap_mode: str | None = "c") -> np.ndarray:
    """A ``.npy`` array (memory-mapped by default; never unpickled); :class:`SavedFileError` when damaged."""
    path = Path(path)
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except FileNotFoundError as e:
        raise SavedFileError(f"{path} is missing", path) from e
    except (OSError, ValueError, EOFError) as e:
        raise SavedFileError(f"{path} is damaged (cut short or overwritten?): {e}; delete the folder and "
                             "record again", path) from e


def read_npz(path: str | os.PathLike, keys: tuple[str, ...] = (), what: str = "array file") -> dict:
    """Every array of a ``.npz`` file, read whole (never unpickled); :class:`SavedFileError` naming the
    file when it is missing, cut short, corrupt, holds pickled objects or lacks one of ``keys``.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.npz")
    >>> np.savez(path, x=np.arange(3))
    >>> read_npz(path, ("x",))["x"].tolist()
    [0, 1, 2]
    >>> _ = open(path, "r+b").truncate(20)
    >>> try:
    ...     read_npz(path, ("x",), "stimulus set")
    ... except SavedFileError as e:
    ...     print(e.path == path, "a.npz' is not a stimulus set" in str(e))
    True True
    """
    path = Path(path)
    if not path.is_file():
        raise SavedFileError(f"no {what} at {str(path)!r}", path)
    try:
        with np.load(path, allow_pickle=False) as z:
            lacking = [k for k in keys if k not in z]
            if lacking:
                raise SavedFileError(f"{str(path)!r} is not a {what} saved by insilico (it lacks {lacking})", path)
            return {k: z[k].copy() for k in z.files}
    except SavedFileError:
        raise
    except Exception as e:  # zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError: all "damaged"
        raise SavedFileError(f"{str(path)!r} is not a {what} saved by insilico: the file is damaged (cut short "
                             f"while it was written?) or of another kind ({type(e).__name__}: {e}); write it "
                             "again", path) from e


def read_table(path: str | os.PathLike, what: str = "table exported by insilico") -> tuple[dict, dict]:
    """The arrays and the JSON settings (array ``"settings"``; ``{}`` without one) of an experiment's exported
    ``.npz`` table (:func:`read_npz`); :class:`SavedFileError` naming the file when the settings are not a JSON
    object either."""
    arrays = read_npz(path, (), what)
    text = arrays.pop("settings", None)
    try:
        settings = {} if text is None else json.loads(str(text))
    except ValueError as e:
        raise SavedFileError(f"{str(path)!r} holds damaged settings (not JSON: {e})", path) from e
    if not isinstance(settings, dict):
        raise SavedFileError(f"{str(path)!r} holds damaged settings (not a JSON object)", path)
    return arrays, settings


def check_format(blob: dict, path: Any, newest: int, what: str = "result", oldest: int = 1) -> int:
    """The file's format number, which must be one this insilico reads (``oldest..newest``)."""
    fmt = blob.get("format")
    if fmt is None:
        raise SavedFileError(f"{path!r} is not a {what} saved by insilico (no recorded type: it has no format "
                             "number)", path)
    if not isinstance(fmt, int) or isinstance(fmt, bool) or not oldest <= fmt <= newest:
        advice = ("upgrade insilico (pip install -U insilico-ephys)" if isinstance(fmt, int) and fmt > newest
                  else "read it with the insilico that wrote it and save it again")
        raise SavedFileError(f"{path!r} is a {what} in file format {fmt!r}; this insilico reads formats "
                             f"{oldest}..{newest} ({versions_text(blob.get('versions'))}): {advice}", path)
    return fmt


def kind_of(blob: dict, path: Any) -> str:
    """The class a result file holds: its recorded ``kind``, or the :data:`LEGACY_KINDS` rule for older files."""
    fmt = blob.get("format")
    if fmt == FORMAT or (isinstance(fmt, int) and fmt > FORMAT) or "kind" in blob:
        check_format(blob, path, FORMAT, oldest=FORMAT)
        return blob.get("kind")
    for old, key, kind in LEGACY_KINDS:
        if fmt == old and key in blob:
            return kind
    raise SavedFileError(f"{path!r} is not a result saved by insilico (no recorded type; format {fmt!r})", path)


# ---------------------------------------------------------------------------------------
# Plain data, and classes rebuilt from it
# ---------------------------------------------------------------------------------------
def build(cls: type, fields: dict, path: Any, recorded: Any = None):
    """``cls(**fields)`` for a file's ``fields``; a field set this version does not know is a SavedFileError.

    ``recorded`` are the versions the file records (named in the message beside the running ones).
    """
    if not isinstance(fields, dict) or not all(isinstance(k, str) for k in fields):
        raise SavedFileError(f"{path} holds a damaged {cls.__name__} (its fields are not named)", path)
    if dataclasses.is_dataclass(cls):
        known = {f.name: f for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(fields) - set(known))
        missing = sorted(n for n, f in known.items() if n not in fields and f.default is dataclasses.MISSING
                         and f.default_factory is dataclasses.MISSING)
        if unknown or missing:
            said = "; ".join(([f"fields this version does not have: {unknown}"] if unknown else [])
                             + ([f"missing fields: {missing}"] if missing else []))
            raise SavedFileError(f"{path} holds a {kind_name(cls)} of another insilico version ({said}); "
                                 f"{versions_text(recorded)}: load it with that version", path)
    try:
        return cls(**fields)
    except SavedFileError:
        raise
    except Exception as e:
        raise SavedFileError(f"{path} holds a {kind_name(cls)} that cannot be rebuilt ({type(e).__name__}: {e}); "
                             f"{versions_text(recorded)}", path) from e


def pack(value: Any) -> Any:
    """``value`` as data ``torch.load(weights_only=True)`` reads: tensors, numbers, strings, lists, dicts.

    Dataclasses are recorded by :func:`kind_name` (they must be on the allow-list to be read back);
    ``nn.Module`` fields are left out.
    """
    if torch.is_tensor(value):
        return value.detach().cpu()
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "U":  # strings (unit addresses, class names): a list, with dtype and shape
            return {"__ndarray__": [str(v) for v in value.ravel().tolist()], "dtype": value.dtype.str,
                    "shape": list(value.shape)}
        return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(value).reshape(value.shape))  # 0-d stays 0-d
                if value.dtype != object
                else [pack(v) for v in value.tolist()]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: pack(getattr(value, f.name)) for f in dataclasses.fields(value)
                  if f.init and not isinstance(getattr(value, f.name), torch.nn.Module)}
        return {"__dataclass__": kind_name(type(value)), "fields": fields}
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
    raise SavedFileError(f"cannot save a value of type {type(value).__name__}: keep saved values to tensors, "
                         "arrays, numbers, strings, lists, dicts and insilico results")


def unpack(value: Any, path: Any = "a saved file", recorded: Any = None) -> Any:
    """The inverse of :func:`pack`; only allow-listed classes are rebuilt (:func:`resolve`).

    ``path`` names the file in errors and ``recorded`` its versions. Anything that is not what
    :func:`pack` writes is a :class:`SavedFileError`.
    """
    try:
        return _unpack(value, path, recorded)
    except SavedFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise SavedFileError(f"{path} is damaged or was not written by insilico ({type(e).__name__}: {e})",
                             path) from e


def _unpack(value: Any, path: Any, recorded: Any) -> Any:
    if isinstance(value, list):
        return [_unpack(v, path, recorded) for v in value]
    if not isinstance(value, dict):
        return value
    if "__ndarray__" in value:
        inner = value["__ndarray__"]
        if "dtype" in value:
            if np.dtype(value["dtype"]).kind != "U":
                raise SavedFileError(f"{path} holds a text array of dtype {value['dtype']!r}", path)
            return np.array(inner, dtype=value["dtype"]).reshape(value["shape"])
        if torch.is_tensor(inner):
            return inner.numpy()
        return np.array([_unpack(v, path, recorded) for v in inner], dtype=object)
    if "__tuple__" in value:
        return tuple(_unpack(v, path, recorded) for v in value["__tuple__"])
    if "__dict__" in value:
        return {_unpack(k, path, recorded): _unpack(v, path, recorded) for k, v in value["__dict__"]}
    if "__dtype__" in value:
        dtype = getattr(torch, str(value["__dtype__"]), None)
        if not isinstance(dtype, torch.dtype):
            raise SavedFileError(f"{path} names {value['__dtype__']!r}, which is not a torch dtype", path)
        return dtype
    if "__dataclass__" in value:
        cls = resolve(value["__dataclass__"], path, roles=("result", "dataclass"))
        if not dataclasses.is_dataclass(cls):
            raise SavedFileError(f"{path} names {value['__dataclass__']}, which insilico does not rebuild from "
                                 "fields", path)
        fields = value["fields"]
        if not isinstance(fields, dict):
            raise SavedFileError(f"{path} holds a damaged {value['__dataclass__']} (no fields)", path)
        return build(cls, {k: _unpack(v, path, recorded) for k, v in fields.items()}, path, recorded)
    return {k: _unpack(v, path, recorded) for k, v in value.items()}  # dicts packed by older versions


__all__ = ["FORMAT", "KINDS", "LEGACY_KINDS", "MOVED", "build", "check_format", "json_field", "kind_name", "kind_of",
           "open_npy",
           "pack", "read", "read_json", "register", "registered", "resolve", "unpack", "versions", "versions_text"]
