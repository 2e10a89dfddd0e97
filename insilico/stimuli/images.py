"""Image arrays to pixel-space tensors: dtype scaling, alpha and colour layout, square resizing."""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import StimulusError
from .grids import _check_channels


def decode_image(path) -> np.ndarray:
    """The one decoder of image files: float32 (H, W, 3) or (H, W, 1) in [0, 1] (:func:`_to_float_rgb`).

    scikit-image reads the file (Pillow underneath); an animated or multi-page file gives its first frame.

    Raises
    ------
    StimulusError
        An empty file, one that cannot be decoded, a CMYK file (its inks would be read as red, green, blue),
        or values :func:`_to_float_rgb` refuses; the message names the file.
    """
    import skimage.io

    path = os.fspath(path)
    if os.path.getsize(path) == 0:
        raise StimulusError(f"stimulus file {path} is empty (0 bytes): remove it or replace it with the image")
    try:
        array = np.asarray(skimage.io.imread(path))
    except Exception as exc:  # noqa: BLE001 - any decoder failure is re-raised naming the file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StimulusError(f"cannot read image {path!r}: {reason}; remove or convert the file") from None
    if array.ndim == 4 or (array.ndim == 3 and array.shape[-1] not in (1, 2, 3, 4)):
        array = array[0]  # an animated or multi-page file: its first frame
    if array.ndim == 3 and array.shape[-1] == 4 and _mode(path) == "CMYK":
        raise StimulusError(f"{path} is a CMYK image: its four channels are inks, not red, green, blue and alpha; "
                            "convert it to RGB with its colour profile (e.g. ImageMagick: magick in.jpg "
                            "-colorspace sRGB out.jpg)")
    try:
        return _to_float_rgb(array)
    except StimulusError as exc:
        raise StimulusError(f"{path}: {exc}") from None


def _mode(path: str) -> str | None:
    """Pillow's colour mode of an image file (None when Pillow cannot open it)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.mode
    except Exception:  # noqa: BLE001 - a file Pillow cannot open has no mode to check
        return None


def _to_float_rgb(arr: np.ndarray) -> np.ndarray:
    """Any image array -> float32 (H, W, 3) or (H, W, 1) in [0, 1].

    Unsigned 8- and 16-bit images are scaled by their dtype's maximum, booleans are 0 / 1, float images must
    already be in [0, 1] (a step of 1/255 beyond is clipped); alpha is dropped. Refused (StimulusError): more
    than 1% of the pixels see-through (alpha below 1/2: what lies under them is undefined), float values beyond
    that (e.g. 0..255 saved as float: clipping would make them white) or not finite, and integer images
    whose white level the dtype does not say (signed, or wider than 16 bits: dividing an int32 image by
    2**31 makes it black).
    """
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise StimulusError(f"expected a 2-D or 3-D image array, got shape {arr.shape}.")
    if arr.shape[2] in (2, 4):  # gray or RGB + alpha: alpha dropped, unless it hides what the image shows
        white = np.iinfo(arr.dtype).max if np.issubdtype(arr.dtype, np.integer) else 1
        alpha = arr[..., -1].astype(np.float64) / white
        see_through = float((alpha < 0.5).mean())
        if see_through > 0.01:
            raise StimulusError(f"{see_through:.0%} of its pixels are see-through (alpha below 1/2): the colours under "
                                "them are undefined (often black), so the model would see a background nobody "
                                "chose; composite it onto the background you mean (PIL: Image.alpha_composite("
                                "Image.new('RGBA', im.size, (128, 128, 128, 255)), im).convert('RGB')) or save it "
                                "without alpha")
        arr = arr[..., :-1]
    if arr.dtype == bool:
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.signedinteger) or arr.dtype.itemsize > 2:
            raise StimulusError(f"a {arr.dtype} image (values {arr.min()} to {arr.max()}): insilico reads unsigned "
                                "8- or 16-bit images, scaled by their maximum; save it as 8 or 16 bit, or read it "
                                "yourself and pass a float tensor in [0, 1]")
        return arr.astype(np.float32) / np.iinfo(arr.dtype).max
    out = arr.astype(np.float32)
    if not np.isfinite(out).all():
        raise StimulusError(f"a float image with {int((~np.isfinite(out)).sum())} NaN or inf values: fix or drop it")
    low, high = float(out.min(initial=0.0)), float(out.max(initial=0.0))
    if low < -1 / 255 or high > 1 + 1 / 255:
        raise StimulusError(f"a float image with values {low:.4g} to {high:.4g}, but float images are read as "
                            f"pixel values in [0, 1]{' (values up to 255: divide by 255)' if high <= 255 else ''}; "
                            "rescale it to [0, 1], or save it as 8 or 16 bit")
    return np.clip(out, 0, 1)


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
