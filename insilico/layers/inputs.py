"""The model's input image size: one name (``size=``) and one meaning, for every tool.

Every tool that takes an image size calls it ``size=`` and reads it through
:func:`image_size`, so a size means the same thing everywhere:

============== ===================================================================
``size=``      the image, as ``(C, H, W)``
============== ===================================================================
``None``       the model's ``input_size`` attribute ``(C, H, W)``; an error naming
               ``size=`` when the model has none
``s`` (int)    side ``s``: ``(C, s, s)`` with the model's channels
``(h, w)``     those sides: ``(C, h, w)`` with the model's channels
``(c, h, w)``  explicit
============== ===================================================================

"The model's channels" are ``model.input_size[0]`` when the model has an
``input_size``, else the ``in_channels`` of its first convolution
(:func:`~insilico.layers.modules.input_channels`), else 3.

Example
-------
>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU())
>>> image_size(net, 16), image_size(net, (8, 12)), image_size(net, (3, 8, 8))
((1, 16, 16), (1, 8, 12), (3, 8, 8))
>>> net.input_size = (1, 32, 32)
>>> image_size(net), image_size(net, 20)
((1, 32, 32), (1, 20, 20))
>>> image_size(torch.nn.Linear(4, 2))
Traceback (most recent call last):
...
insilico.errors.StimulusError: Linear has no input_size attribute: say the image size with size= (an int side, (H, W) or (C, H, W), e.g. size=224), or set model.input_size = (C, H, W)
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np
from torch import nn

from ..errors import InsilicoError, ModelInputError, StimulusError
from .modules import input_channels

#: What ``size=`` may be, for messages.
SPELLINGS = "an int side, (H, W) or (C, H, W)"


def _model_channels(model: nn.Module) -> int:
    known = getattr(model, "input_size", None)
    if known is not None and len(tuple(known)) == 3:
        return int(tuple(known)[0])
    return input_channels(model)


def _dims(size: Any, name: str) -> tuple[int, ...]:
    if isinstance(size, (bool, np.bool_)):
        raise StimulusError(f"{name}= must be {SPELLINGS}, not {size!r}")
    if isinstance(size, (int, np.integer)):
        return (int(size),)
    try:
        dims = tuple(size)
        if any(isinstance(v, (bool, np.bool_)) or int(v) != v for v in dims):
            raise ValueError
        dims = tuple(int(v) for v in dims)
    except (TypeError, ValueError):
        raise StimulusError(f"{name}= must be {SPELLINGS}, not {size!r}") from None
    if len(dims) not in (2, 3):
        raise StimulusError(f"{name}= must be {SPELLINGS}, not {size!r} ({len(dims)} numbers)")
    return dims


def image_size(model: nn.Module, size: Any = None, *, name: str = "size", square: bool = False) -> tuple[int, int, int]:
    """The image size ``(C, H, W)`` that ``size=`` means for ``model`` (the table in the module docstring).

    Parameters
    ----------
    model : nn.Module
        The model the images are for: its ``input_size`` attribute ``(C, H, W)`` (when it has one), else
        its first convolution's ``in_channels``, say the channels.
    size : None, int, (H, W) or (C, H, W)
        What the user passed as ``size=``.
    name : str
        The option's name as the user wrote it (``"size"``; ``"--size"`` on the command line).
    square : bool
        Refuse ``H != W`` (tools whose stimuli are square: the experiments).

    Returns
    -------
    tuple of int
        ``(C, H, W)``, each at least 1.

    Raises
    ------
    StimulusError
        No ``size`` and no ``model.input_size``; a size that is not an int, (H, W) or (C, H, W); a side or
        channel count below 1; ``H != W`` with ``square=True``.
    """
    if size is None:
        size = getattr(model, "input_size", None)
        if size is None:
            raise StimulusError(f"{type(model).__name__} has no input_size attribute: say the image size with "
                                f"{name}= ({SPELLINGS}, e.g. {name}=224), or set model.input_size = (C, H, W)")
    dims = _dims(size, name)
    if len(dims) == 1:
        dims = (dims[0], dims[0])
    if len(dims) == 2:
        dims = (_model_channels(model), *dims)
    if min(dims) < 1:
        raise StimulusError(f"{name}={size!r} gives the image (C, H, W) = {dims}: every number must be at least 1")
    if square and dims[1] != dims[2]:
        raise StimulusError(f"{name}={size!r}: this tool uses square images; give one side ({name}={dims[2]}) or "
                            "H == W")
    return dims


#: What a model raises on images of a size it cannot take (torch's shape errors are RuntimeErrors).
SIZE_ERRORS = (RuntimeError, ValueError, IndexError)


def size_failure(error: BaseException, shape: tuple, name: str = "size", where: str = "") -> Exception:
    """The error to raise when the model failed (``error``) on the first images of ``shape`` a tool made.

    A shape error of the model (:data:`SIZE_ERRORS`) becomes a :class:`~insilico.errors.ModelInputError`
    naming ``name`` (the option as the user wrote it: ``"size"``, ``"--size"``), the shape and the model's
    own message (the original is its ``__cause__``); insilico's own errors and other exceptions are returned
    unchanged (re-raise them as they are).

    Example
    -------
    >>> found = size_failure(RuntimeError("Kernel size can't be greater than actual input size"), (1, 3, 2, 2))
    >>> type(found).__name__, str(found)[:62]
    ('ModelInputError', 'the model failed on images of shape (1, 3, 2, 2): Kernel size ')
    >>> isinstance(found, RuntimeError), "check size=" in str(found), size_failure(KeyError("x"), (1,)).args
    (True, True, ('x',))
    """
    if isinstance(error, InsilicoError) or not isinstance(error, SIZE_ERRORS):
        return error
    lines = str(error).strip().splitlines()
    found = ModelInputError(f"the model failed on images of shape {tuple(shape)}{where}: "
                            f"{lines[0] if lines else type(error).__name__}; check {name}= (the model's input size: "
                            "large enough for its convolutions, or its fixed size)")
    found.__cause__ = error
    return found


def renamed(**former: str):
    """A decorator that refuses a tool's former keyword names with an error that names the new one.

    ``@renamed(input_size="size")`` above ``def receptive_field(..., size=None)``: a call with
    ``input_size=`` raises ``InsilicoError`` ("receptive_field(): input_size= is now size= ...");
    ``inspect.signature`` shows the new signature. No silent alias: the old name never works.

    >>> @renamed(shape="size")
    ... def tool(size=None):
    ...     return size
    >>> tool(size=3)
    3
    >>> tool(shape=3)
    Traceback (most recent call last):
    ...
    insilico.errors.InsilicoError: tool(): shape= is now size= (an int side, (H, W) or (C, H, W)); rename the argument
    """
    def decorate(fn):
        name = fn.__qualname__.removesuffix(".__init__")  # a class says its own name

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            for old, new in former.items():
                if old in kwargs:
                    what = f" ({SPELLINGS})" if new == "size" else ""
                    raise InsilicoError(f"{name}(): {old}= is now {new}={what}; rename the argument")
            return fn(*args, **kwargs)
        return wrapper
    return decorate


__all__ = ["SIZE_ERRORS", "SPELLINGS", "image_size", "renamed", "size_failure"]
