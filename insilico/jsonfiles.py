"""The one writer of the JSON files insilico writes: strict JSON, written atomically.

Every JSON file insilico writes (``manifest.json``, ``demo.json``, a recording's ``meta.json``, a
gallery's ``gallery.json`` and per-unit ``<stage>.json``, the progress logs and job files of resumable
folders, map sidecars, settings files) goes through :func:`write_json`, and every JSON text embedded in
another file through :func:`to_json`. Both write what a strict reader (a browser's ``JSON.parse``,
``json.loads(text, parse_constant=...)`` that refuses ``NaN``) accepts:

- NaN and +-inf (Python, numpy or torch) become ``null``, the JSON for a missing value;
- numpy and torch scalars become numbers, their arrays and tensors nested lists, tuples lists,
  paths strings;
- anything else (an object, a function) is an :class:`~insilico.errors.InsilicoError` naming the
  file and the key, and nothing is written; ``allow_nan=False`` guards the rest.

:func:`write_json` writes a temporary file next to the target and renames it, so a reader never sees
half a file (:func:`temporary` is the temporary name, unique per host and process).

Example
-------
>>> import math
>>> to_json({"value": math.nan, "n": 3, "pair": (1, math.inf)}, indent=None)
'{"value": null, "n": 3, "pair": [1, null]}'
"""
from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path

from .errors import InsilicoError


def to_json(data, *, indent: int | None = 1, where: str = "a JSON text") -> str:
    """``data`` as strict JSON text (see the module docstring); ``where`` names it in errors."""
    return json.dumps(_plain(data, where, "$"), indent=indent, allow_nan=False)


def write_json(path: str | os.PathLike, data) -> None:
    """Write ``data`` to ``path`` as strict JSON, atomically (a temporary file, then a rename).

    Raises :class:`~insilico.errors.InsilicoError` (before anything is written) for a value JSON cannot
    hold.
    """
    path = Path(path)
    text = to_json(data, where=str(path))
    tmp = temporary(path)
    tmp.write_text(text)
    os.replace(tmp, path)


def temporary(path: Path) -> Path:
    """A temporary name next to ``path`` that no other process, on any machine sharing the folder, uses."""
    return path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")


def _plain(value, where: str, key: str):
    """``value`` made of dicts, lists, strings, finite numbers, booleans and None only."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {_key(k, where, key): _plain(v, where, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, where, f"{key}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if callable(getattr(value, "tolist", None)):  # numpy / torch scalars, arrays and tensors
        return _plain(value.tolist(), where, key)
    raise InsilicoError(f"cannot write {where}: {key} is a {type(value).__name__}, which JSON cannot hold; "
                        "give numbers, strings, lists or dicts")


def _key(k, where: str, key: str) -> str:
    if isinstance(k, str):
        return k
    if isinstance(k, (bool, int, float)) or k is None or callable(getattr(k, "item", None)):
        return json.dumps(_plain(k.item() if callable(getattr(k, "item", None)) else k, where, key))
    raise InsilicoError(f"cannot write {where}: a key of {key} is a {type(k).__name__}; keys must be strings")


def jsonable(value):
    """A plain-JSON copy of settings, for a result or a job to keep: dicts (string keys), lists (from tuples),
    numbers (numpy and torch scalars), lists (arrays, tensors), strings (paths and any other object, by
    ``str``). Lenient where :func:`to_json` is strict: non-finite floats stay floats (:func:`to_json`
    writes them as ``null``) and an object becomes its ``str`` instead of an error.

    >>> import numpy as np, torch
    >>> jsonable({"size": (3, 8), "lr": np.float32(0.5), "mask": torch.tensor([1, 0]), 2: max})
    {'size': [3, 8], 'lr': 0.5, 'mask': [1, 0], '2': '<built-in function max>'}
    """
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if callable(getattr(value, "tolist", None)):  # numpy / torch scalars, arrays and tensors
        return value.tolist()
    return str(value)


__all__ = ["jsonable", "temporary", "to_json", "write_json"]
