"""Image arrays to pixel-space tensors: dtype scaling, alpha and colour layout, square resizing."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import StimulusError
from .grids import _check_channels


def _to_float_rgb(arr: np.ndarray) -> np.ndarray:
    """Any image array -> float32 (H, W, 3) or (H, W, 1) in [0, 1]."""
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise StimulusError(f"expected a 2-D or 3-D image array, got shape {arr.shape}.")
    if arr.shape[2] == 4:  # drop alpha
        arr = arr[..., :3]
    if arr.shape[2] == 2:  # gray + alpha
        arr = arr[..., :1]
    if arr.dtype == bool:
        out = arr.astype(np.float32)
    elif np.issubdtype(arr.dtype, np.integer):
        out = arr.astype(np.float32) / np.iinfo(arr.dtype).max
    else:
        out = np.clip(arr.astype(np.float32), 0, 1)
    return out


def _layout(img: torch.Tensor, gray: bool, channels: int | None) -> torch.Tensor:
    """(C, H, W) with C in {1, 3} -> requested colour and channel count."""
    out_c = channels if channels is not None else (1 if gray else 3)
    _check_channels(out_c)
    if out_c == 1 or gray:
        if img.shape[0] == 3:  # ITU-R BT.709 luminance, as skimage.color.rgb2gray
            w = torch.tensor([0.2125, 0.7154, 0.0721], dtype=img.dtype)
            img = (img * w[:, None, None]).sum(0, keepdim=True)
    return img.expand(out_c, -1, -1) if img.shape[0] == 1 else img


def _resize(batch: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, h, w) square crops -> (N, C, size, size); antialiased when shrinking."""
    if batch.shape[-1] == size and batch.shape[-2] == size:
        return batch
    shrink = batch.shape[-1] > size
    return F.interpolate(batch, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink).clamp_(0, 1)
