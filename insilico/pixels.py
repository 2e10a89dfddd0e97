"""Pixel space: every stimulus in insilico is a float tensor (N, C, H, W) in [0, 1].

Input normalisation belongs to the model (a module inside it), never to the
tools, so every tool can clamp, jitter and save in pixel space.
:func:`check_images` is the one gate all tools pass stimuli through: wrong
shape, dtype or range and NaN/inf fail there with a message that says what
to do.

Example
-------
>>> import torch
>>> from insilico.pixels import check_images
>>> check_images(torch.rand(2, 3, 8, 8)).shape
torch.Size([2, 3, 8, 8])
>>> check_images(torch.rand(3, 8, 8))
Traceback (most recent call last):
...
insilico.errors.StimulusError: images must be 4-D (N, C, H, W), got shape (3, 8, 8); one image (C, H, W): use images.unsqueeze(0); grayscale batch (N, H, W): use images.unsqueeze(1). Stimuli that are not images (token ids, vectors) go through insilico.pixels.raw(stimuli).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from .errors import StimulusError

_SHAPE_HINTS = {  # formatted with the argument's name
    2: "a single image (H, W): use {name}[None, None]",
    3: "one image (C, H, W): use {name}.unsqueeze(0); grayscale batch (N, H, W): use {name}.unsqueeze(1)",
}


def check_images(images: Any, shape: Sequence[int] | None = None, n: int | None = None,
                 empty: bool = False, name: str = "images") -> torch.Tensor:
    """``images`` as a float tensor (N, C, H, W) in [0, 1]; StimulusError otherwise.

    Parameters
    ----------
    images : tensor or numpy array
    shape : (C, H, W), optional
        Required per-sample shape.
    n : int, optional
        Required number of images.
    empty : bool
        Accept a batch of 0 images (default False: an empty batch is an error).
    name : str
        The argument's name as the user wrote it (``"baselines"``, ``"references"``,
        ``"natural"``...): every message starts with it.

    Raises
    ------
    StimulusError
        Not a tensor/array, not 4-D, not floating point (8-bit images say how to
        convert), wrong shape or count, an empty batch, NaN/inf, outside [0, 1].
    """
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not torch.is_tensor(images):
        raise StimulusError(
            f"{name} must be a torch.Tensor of shape (N, C, H, W), got {type(images).__name__}; "
            "convert with torch.as_tensor(images)."
        )
    if images.ndim != 4:
        hint = _SHAPE_HINTS.get(images.ndim, "reshape to (N, C, H, W)").format(name=name)
        raise StimulusError(f"{name} must be 4-D (N, C, H, W), got shape {tuple(images.shape)}; {hint}. "
                            "Stimuli that are not images (token ids, vectors) go through insilico.pixels.raw(stimuli).")
    if not images.is_floating_point():
        raise StimulusError(
            f"{name} must be floating point in [0, 1], got dtype {images.dtype}; "
            "for 8-bit images use images.float() / 255."
        )
    if shape is not None and tuple(images.shape[1:]) != tuple(shape):
        raise StimulusError(f"{name} have shape {tuple(images.shape[1:])} per sample; this needs {tuple(shape)}")
    if n is not None and images.shape[0] != n:
        raise StimulusError(f"{name}: got {images.shape[0]} images for {n} samples")
    if images.shape[0] == 0 and not empty:
        raise StimulusError(
            f"{name}: got an empty batch (0 images of shape {tuple(images.shape[1:])}); give at least one image."
        )
    if images.numel():
        low, high = (v.item() for v in torch.aminmax(images.detach()))  # NaN propagates; inf fails the range test
        if math.isnan(low) or math.isnan(high):
            raise StimulusError(
                f"{name} contain {int(torch.isnan(images).sum())} NaN values; fix their source or use "
                "torch.nan_to_num(images)."
            )
        if low < 0 or high > 1:
            raise StimulusError(
                f"{name} must lie in pixel space [0, 1], got range [{low:.4g}, {high:.4g}]; rescale or "
                "clamp them, and put input normalisation inside the model (see insilico.models.normalize)."
            )
    return images


class Raw:
    """Stimuli that are not images (token ids, feature vectors, audio): the explicit door past the image gate.

    Tools that take stimulus sets check images with :func:`check_images`;
    wrap other inputs with :func:`raw` and they reach the model unchanged
    (floating tensors still move to the model's dtype, and must be finite).
    """

    def __init__(self, data: Any):
        if isinstance(data, Raw):
            data = data.data
        if isinstance(data, np.ndarray):
            data = torch.from_numpy(data)
        if not torch.is_tensor(data):
            raise StimulusError(f"raw() takes a tensor or numpy array with the batch axis first, got {type(data).__name__}")
        if data.ndim < 1:
            raise StimulusError("raw() stimuli need a batch axis first, got a 0-d tensor")
        self.data = data

    def __len__(self) -> int:
        return self.data.shape[0]

    def __repr__(self) -> str:
        return f"raw({tuple(self.data.shape)}, {self.data.dtype})"


def raw(data: Any) -> Raw:
    """Mark ``data`` (N, ...) as non-image stimuli, so tools pass it to the model without the pixel-space gate.

    Example
    -------
    >>> import torch, insilico
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    >>> rec = insilico.Probe(model).record_stimuli(raw(torch.randn(5, 3)), "0", progress=False)
    >>> tuple(rec["0"].shape)
    (5, 2)
    """
    return Raw(data)
