"""A folder of the user's own image files, centre-cropped and resized, as a StimulusSet."""
from __future__ import annotations

import os
import pathlib
from typing import Sequence

import numpy as np
import torch

from ..errors import StimulusError
from .grids import _check_channels, _check_size
from .images import _layout, _resize, decode_image
from .stimulus_set import StimulusSet


_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp")


def from_folder(path: str | os.PathLike, size: int = 64, gray: bool = False, channels: int | None = None,
                recursive: bool = False, extensions: Sequence[str] = _IMAGE_EXTENSIONS,
                device: str | torch.device | None = None) -> StimulusSet:
    """Every image in a folder, centre-cropped to a square and resized to ``size``.

    Files are read in sorted path order by the one decoder (:func:`insilico.stimuli.images.decode_image`):
    unsigned 8- and 16-bit images scaled by their dtype's maximum, float images in [0, 1], alpha channels
    dropped; CMYK, signed or 32-bit integer and out-of-range float images refused.

    Parameters
    ----------
    path : str or path-like
        Folder of images.
    size : int
    gray : bool
        Convert colour images to luminance.
    channels : {1, 3} or None
        Output channels (None: 1 if ``gray`` else 3).
    recursive : bool
        Also read sub-folders.
    extensions : sequence of str
        File suffixes to read (case-insensitive).
    device : torch device, optional

    Returns
    -------
    StimulusSet
        params: ``file`` (path relative to ``path``), ``name`` (file stem), ``size``.

    Examples
    --------
    >>> import tempfile, numpy as np, skimage.io
    >>> d = tempfile.mkdtemp()
    >>> skimage.io.imsave(f"{d}/a.png", np.zeros((20, 30), np.uint8), check_contrast=False)
    >>> s = from_folder(d, size=8, gray=True)
    >>> tuple(s.images.shape), s.params[0]["file"]
    ((1, 1, 8, 8), 'a.png')
    """
    size = _check_size(size)
    if channels is not None:
        _check_channels(channels)
    root = pathlib.Path(path)
    if not root.is_dir():
        raise StimulusError(f"from_folder: {str(root)!r} is not a folder; pass the directory holding the images.")
    exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    files = sorted(p for p in (root.rglob("*") if recursive else root.iterdir())
                   if p.is_file() and p.suffix.lower() in exts)
    if not files:
        raise StimulusError(
            f"from_folder: no image files ({', '.join(sorted(exts))}) in {str(root)!r}"
            + ("" if recursive else "; pass recursive=True to search sub-folders") + "."
        )
    imgs, params = [], []
    for f in files:
        arr = decode_image(f)  # the one decoder of image files
        if arr.shape[2] not in (1, 3):
            raise StimulusError(f"from_folder: {f} has {arr.shape[2]} channels; expected gray, RGB or RGBA.")
        h, w = arr.shape[:2]
        side = min(h, w)
        y0, x0 = (h - side) // 2, (w - side) // 2
        img = torch.from_numpy(np.ascontiguousarray(arr[y0:y0 + side, x0:x0 + side])).permute(2, 0, 1)
        imgs.append(_resize(_layout(img, gray, channels)[None], size)[0])
        params.append(dict(file=f.relative_to(root).as_posix(), name=f.stem, size=size))
    return StimulusSet(torch.stack(imgs).contiguous().to(device), params)
