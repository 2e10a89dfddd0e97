"""Speed settings shared by the tools: reduced precision, channels-last memory, ``torch.compile``.

- ``precision``: ``"fp32"`` (default: nothing changes), ``"bf16"`` or
  ``"fp16"``: the forward pass runs under :func:`torch.autocast` on the
  model's device (matmuls and convolutions in half precision, reductions in
  fp32). Gradients flow through autocast, so synthesis can use it too.
- ``channels_last``: the model's 4-d weights and the input batches in NHWC
  memory order, which cuDNN's tensor-core kernels prefer; values are
  unchanged and the model's own memory format comes back on exit.
- ``compile``: :func:`compiled` wraps a model with :func:`torch.compile`
  (slow first call; hooks added later make it recompile, so compile the
  model you will probe, after the probe's hooks exist, or not at all).

One context manager, :func:`tuned`, applies the first two around a block and
returns the function that prepares an input batch.

Example
-------
>>> import torch
>>> model = torch.nn.Conv2d(3, 4, 3)
>>> with tuned(model, precision="bf16", channels_last=True) as prepare:
...     y = model(prepare(torch.rand(2, 3, 8, 8)))
>>> y.dtype, model.weight.is_contiguous()
(torch.bfloat16, True)
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
from torch import nn

from .errors import InsilicoError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device | str, precision: str = "fp32") -> contextlib.AbstractContextManager:
    """:func:`torch.autocast` for ``precision`` on ``device`` (a no-op context for ``"fp32"``)."""
    if precision not in PRECISIONS:
        raise InsilicoError(f"precision must be one of {tuple(PRECISIONS)}, not {precision!r}")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """A 4-d batch in NHWC memory order (other tensors unchanged)."""
    return x.contiguous(memory_format=torch.channels_last) if torch.is_tensor(x) and x.ndim == 4 else x


@contextlib.contextmanager
def tuned(model: nn.Module, precision: str = "fp32", channels_last: bool = False
          ) -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
    """Run ``model`` in ``precision`` and (optionally) channels-last inside the block; yields ``prepare(batch)``.

    The model's 4-d parameters go back to their own memory format on exit, also on exceptions.
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    moved = []
    if channels_last:
        for p in model.parameters():
            if p.ndim == 4 and not p.is_contiguous(memory_format=torch.channels_last):
                moved.append(p)
                p.data = p.data.contiguous(memory_format=torch.channels_last)
    try:
        with autocast(device, precision):
            yield to_channels_last if channels_last else (lambda x: x)
    finally:
        for p in moved:
            p.data = p.data.contiguous()


def compiled(model: nn.Module, **options) -> nn.Module:
    """``torch.compile(model, **options)``, with a clear error where the platform has no compiler."""
    try:
        return torch.compile(model, **options)
    except RuntimeError as e:  # e.g. an unsupported Python version
        raise InsilicoError(f"torch.compile is not available here ({e}); run without compile") from e


__all__ = ["PRECISIONS", "autocast", "compiled", "to_channels_last", "tuned"]
