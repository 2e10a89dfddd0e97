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

**Half models** (float16 / bfloat16 weights) follow one rule, decided here and read by every tool
(:func:`working_dtype`, :func:`at_model_door`, :func:`check_finite`):

- the model runs in its own dtype: the tools cast what they feed it to that dtype at the model's
  door, and autograd brings the gradients back in the working dtype;
- everything the tools optimise, accumulate or solve (synthesis parameters and optimizer state,
  objectives over recorded layers, integrated-gradient sums, ridge regressions) is in
  :func:`working_dtype`: float32 for half models, the model's own dtype otherwise (float64 stays float64);
- results (images, maps, responses) come back in the model's dtype, as for every other dtype;
- a NaN or inf loss or image is never returned: :class:`~insilico.errors.NumericsError` names the step,
  the dtype and the fix;
- an op without a half kernel on the device (CPU float16 ``local_response_norm``, ``cdist``) is an
  :class:`~insilico.errors.UnsupportedDtypeError` with the fix (every tool's session, :func:`kernels_for`).

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
import re
from typing import Callable, Iterator

import torch
from torch import nn

from .errors import InsilicoError, NumericsError, UnsupportedDtypeError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

#: Half dtypes: models in them run in their own dtype, the tools optimise and accumulate in float32.
HALF = (torch.float16, torch.bfloat16)


def working_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the tools optimise, accumulate and solve in for a model (or values) of ``dtype``.

    float32 for float16 and bfloat16 (Adam's ``eps=1e-8`` is 0 in float16, so a zero gradient
    gives 0/0 = NaN; bfloat16 has no complex FFT; CPU half has no ``eigh``; a sum over a layer
    overflows float16's 65504); ``dtype`` itself otherwise (float64 stays float64).

    >>> working_dtype(torch.bfloat16), working_dtype(torch.float64)
    (torch.float32, torch.float64)
    """
    return torch.float32 if dtype in HALF else dtype


def at_model_door(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x`` cast to the model's ``dtype`` as it enters the model (differentiable: gradients come back in
    ``x``'s dtype); non-floating tensors and other values pass unchanged."""
    if torch.is_tensor(x) and x.is_floating_point() and x.dtype != dtype:
        return x.to(dtype)
    return x


def as_numpy(x: torch.Tensor):
    """``x`` on the CPU as a numpy array in its own dtype, but float32 for bfloat16 (numpy has no bfloat16).

    >>> as_numpy(torch.ones(2, dtype=torch.bfloat16)).dtype
    dtype('float32')
    """
    x = x.detach().cpu()
    return (x.float() if x.dtype == torch.bfloat16 else x).numpy()


def check_finite(values: torch.Tensor, what: str, dtype: torch.dtype, where: str = "", also: str = "") -> None:
    """:class:`~insilico.errors.NumericsError` when ``values`` holds NaN or inf (one host sync).

    ``what`` names the values (``"the objective"``, ``"the gradient map of fc[1]"``), ``where`` the place
    (``"at step 3"``), ``dtype`` the model's dtype, ``also`` a tool's own remedy (``"lower lr"``), so the
    message says what to do.

    >>> check_finite(torch.tensor([1.0, float("nan")]), "the objective", torch.float16, "at step 2")
    Traceback (most recent call last):
    ...
    insilico.errors.NumericsError: the objective is NaN or inf at step 2 (1 of 2 values) with a torch.float16 model: ...
    """
    bad = ~torch.isfinite(values.detach())
    if bool(bad.any()):
        raise numerics_error(what, dtype, f"{where} ({int(bad.sum())} of {bad.numel()} values)", also)


def numerics_error(what: str, dtype: torch.dtype, where: str = "", also: str = "") -> NumericsError:
    """The :class:`~insilico.errors.NumericsError` for NaN/inf ``what`` at ``where`` with a ``dtype`` model,
    with the fix (and ``also``, a tool's own remedy)."""
    if dtype in HALF:
        fix = (f"{dtype} overflows or underflows here: run the model in float32 (model.float(); precision='bf16' "
               "or 'fp16' then keeps the speed of half matmuls under autocast)")
    else:
        fix = "check the model for overflows, divisions by zero or logs of zero"
    return NumericsError(" ".join(f"{what} is NaN or inf {where}".split()) + f" with a {dtype} model: {fix}"
                         + (f", or {also}" if also else ""))


_NO_KERNEL = re.compile(r"not implemented for '(Half|BFloat16)'|Unsupported dtype (Half|BFloat16)")


@contextlib.contextmanager
def kernels_for(dtype: torch.dtype, device: torch.device | str = "cpu") -> Iterator[None]:
    """Inside the block, torch's "not implemented for 'Half'" (an op without a float16/bfloat16 kernel on
    ``device``) becomes :class:`~insilico.errors.UnsupportedDtypeError` naming the dtype, the op and the fix.

    >>> with kernels_for(torch.float16):
    ...     torch.cdist(torch.rand(2, 3).half(), torch.rand(2, 3).half())
    Traceback (most recent call last):
    ...
    insilico.errors.UnsupportedDtypeError: an operation has no torch.float16 kernel on cpu ("cdist" not implemented ...
    """
    try:
        yield
    except (NotImplementedError, RuntimeError) as error:
        if isinstance(error, InsilicoError) or not _NO_KERNEL.search(str(error)):
            raise
        raise UnsupportedDtypeError(
            f"an operation has no {dtype} kernel on {torch.device(device).type} ({error}): run the model in "
            f"float32 (model.float(); on a GPU, precision='bf16' or 'fp16' keeps half matmuls under autocast), "
            f"or run the {dtype} model on a GPU") from error


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


__all__ = ["HALF", "PRECISIONS", "as_numpy", "at_model_door", "autocast", "check_finite", "compiled", "kernels_for", "numerics_error", "to_channels_last", "tuned",
           "working_dtype"]
