"""Weight files the user gives: a ``state_dict`` saved with ``torch.save`` or a ``.safetensors`` file.

One reader for every loader (:func:`insilico.models.from_spec`, the bundled models and the zoo loaders of
:mod:`insilico.models.zoo`): pickles that are not plain tensors are refused (``torch.load(weights_only=True)``),
a checkpoint ``{"state_dict": ...}`` is unwrapped, and a file that does not fit the model says so with the file's
name.

Example
-------
>>> import os, tempfile, torch
>>> path = os.path.join(tempfile.mkdtemp(), "net.pt")
>>> torch.save(torch.nn.Linear(2, 1).state_dict(), path)
>>> sorted(read(path))
['bias', 'weight']
>>> load_into(torch.nn.Linear(2, 1), path, "a Linear")
"""
from __future__ import annotations

import os

import torch
from torch import nn

from ..errors import InsilicoError, SavedFileError


def read(path: str | os.PathLike) -> dict:
    """The ``state_dict`` in ``path`` (tensors on the CPU).

    Raises
    ------
    InsilicoError
        The file does not exist, or holds something other than a ``state_dict``.
    SavedFileError
        The file cannot be read as a ``weights_only`` torch file or a safetensors file (damaged, or a pickle
        of arbitrary objects).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InsilicoError(f"weights file {path!r} does not exist")
    if path.endswith(".safetensors"):
        try:
            from safetensors.torch import load_file
        except ImportError as e:
            raise InsilicoError(f"{path!r} is a safetensors file; `pip install safetensors` to read it") from e
        try:
            return load_file(path)
        except Exception as e:
            raise SavedFileError(f"could not read weights {path!r} (damaged safetensors file?): {e}", path) from e
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise SavedFileError(f"could not read weights {path!r} with torch.load(weights_only=True): {e}", path) from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InsilicoError(f"weights {path!r} hold a {type(state).__name__}, expected a state_dict")
    return state


def load_into(model: nn.Module, path: str | os.PathLike, what: str, state: dict | None = None) -> None:
    """Load the ``state_dict`` in ``path`` (or ``state``, already read from it) into ``model``, strictly.

    Raises
    ------
    InsilicoError
        The weights do not fit ``model`` (``what`` names it in the message: missing or unexpected keys, shapes).
    """
    state = read(path) if state is None else state
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise InsilicoError(f"weights {os.fspath(path)!r} do not fit {what}: {e}") from e


__all__ = ["read", "load_into"]
