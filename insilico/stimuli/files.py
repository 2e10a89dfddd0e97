"""The user's image files as a stimulus set: a folder (ImageFolder layout gives labels), a glob, a list of paths.

:func:`image_files` lists the files (nothing is decoded); :func:`read_image`
decodes one file to a pixel-space tensor ``(C, H, W)``; :func:`fit_image`
resizes and centre-crops one image to a model's input. The one reader of stimulus
sets, :func:`insilico.recording.stimulus_source`, composes them chunk by chunk,
so a folder is never held in memory (only the chunk being recorded).

Layouts
-------
- ``DIR/<class>/<image>`` (torchvision's ``ImageFolder``): the classes are the
  sub-folder names in sorted order, each image's label the index of its class;
- a flat ``DIR/<image>``: no labels;
- a glob (``"stimuli/**/*.png"``) or a list of paths: no labels.

A stimulus id is the file's path relative to the folder (the glob's folder
before its first wildcard, the list's common folder), with ``/`` separators:
ids and the decoded pixels go into a resumable recording's identity, so
another folder, a renamed or a changed file is a different job.

Decoding is scikit-image's (``skimage.io.imread``, Pillow underneath), in one place
(:func:`insilico.stimuli.images.decode_image`): unsigned 8- and 16-bit images are scaled by their
dtype's maximum, float images must be in [0, 1], CMYK, signed and 32-bit images are refused, alpha dropped, grey repeated to RGB
(or RGB turned to luminance for a one-channel model); an animated file gives its
first frame.

Example
-------
>>> import tempfile, numpy as np, skimage.io
>>> d = tempfile.mkdtemp()
>>> import os; os.makedirs(f"{d}/cat"); os.makedirs(f"{d}/dog")
>>> skimage.io.imsave(f"{d}/cat/a.png", np.zeros((6, 9, 3), np.uint8), check_contrast=False)
>>> skimage.io.imsave(f"{d}/dog/b.png", np.full((8, 8), 255, np.uint8), check_contrast=False)
>>> files = image_files(d)
>>> files.ids, files.labels, files.class_names
(['cat/a.png', 'dog/b.png'], [0, 1], ['cat', 'dog'])
>>> tuple(read_image(files.paths[0]).shape), float(read_image(files.paths[1]).min())
((3, 6, 9), 1.0)
>>> tuple(fit_image(read_image(files.paths[0]), (4, 4)).shape)
(3, 4, 4)
"""
from __future__ import annotations

import dataclasses
import glob
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import StimulusError
from .folder import _IMAGE_EXTENSIONS
from .images import _layout, decode_image

_WILDCARDS = "*?["


@dataclasses.dataclass
class ImageFiles:
    """Image files to read as stimuli, in order (nothing decoded).

    Attributes
    ----------
    paths : list of Path
    ids : list of str
        Each file's path relative to ``root`` (``/``-separated): the stimulus ids.
    root : Path
        The folder the ids are relative to.
    labels : list of int or None
        The class index of each file (ImageFolder layout only).
    class_names : list of str or None
        The class of each label (the sub-folder names, sorted).
    """

    paths: list
    ids: list
    root: Path
    labels: list | None = None
    class_names: list | None = None

    def __len__(self) -> int:
        return len(self.paths)


def is_files(stimuli: Any) -> bool:
    """Whether ``stimuli`` names image files: a path (str or PathLike) or a non-empty list of them."""
    if isinstance(stimuli, (str, os.PathLike)):
        return True
    return isinstance(stimuli, (list, tuple)) and bool(stimuli) and \
        all(isinstance(s, (str, os.PathLike)) for s in stimuli)


def image_files(stimuli: Any) -> ImageFiles:
    """The files a folder, a glob or a list of paths names (sorted; nothing decoded).

    Raises
    ------
    StimulusError
        A path that does not exist, a folder with no image files (or with images both at its top and in
        class sub-folders), a glob that matches no image file.
    """
    if isinstance(stimuli, (list, tuple)):
        paths = [Path(p) for p in stimuli]
        for p in paths:
            if not p.is_file():
                raise StimulusError(f"stimulus file {str(p)!r} does not exist (or is not a file)")
        root = Path(os.path.commonpath([str(p.absolute().parent) for p in paths]))
        return ImageFiles(paths, [p.absolute().relative_to(root).as_posix() for p in paths], root)
    text = os.fspath(stimuli)
    if Path(text).is_dir():
        return _folder(Path(text))
    if Path(text).is_file():
        return image_files([text])
    if any(c in text for c in _WILDCARDS):
        return _glob(text)
    raise StimulusError(f"stimuli {text!r} is no folder, file or glob: give a folder of images (DIR/<class>/<image> "
                        "gives labels), a glob such as 'DIR/*.png', or a list of image files")


def _images_in(folder: Path, recursive: bool) -> list:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in _IMAGE_EXTENSIONS
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _folder(root: Path) -> ImageFiles:
    top = _images_in(root, recursive=False)
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    per_class = {c: _images_in(root / c, recursive=True) for c in classes}
    per_class = {c: files for c, files in per_class.items() if files}  # torchvision skips empty classes too
    if top and per_class:
        raise StimulusError(f"{root} holds images both at its top ({top[0].name}, ...) and in sub-folders "
                            f"({', '.join(list(per_class)[:3])}): put every image in a class folder "
                            "(DIR/<class>/<image>, labels read from the folders) or none (a flat folder)")
    if top:
        return ImageFiles(top, [p.relative_to(root).as_posix() for p in top], root)
    if not per_class:
        raise StimulusError(f"{root} holds no image files ({', '.join(_IMAGE_EXTENSIONS)}), neither at its top nor "
                            "in class sub-folders")
    names = list(per_class)
    paths = [p for c in names for p in per_class[c]]
    labels = [i for i, c in enumerate(names) for _ in per_class[c]]
    return ImageFiles(paths, [p.relative_to(root).as_posix() for p in paths], root, labels, names)


def _glob(pattern: str) -> ImageFiles:
    paths = sorted(Path(p) for p in glob.glob(pattern, recursive=True)
                   if Path(p).is_file() and Path(p).suffix.lower() in _IMAGE_EXTENSIONS)
    if not paths:
        raise StimulusError(f"the glob {pattern!r} matches no image file ({', '.join(_IMAGE_EXTENSIONS)})")
    parts = Path(pattern).parts
    fixed = next(i for i, part in enumerate(parts) if any(c in part for c in _WILDCARDS))
    root = Path(*parts[:fixed]) if fixed else Path(".")
    return ImageFiles(paths, [p.relative_to(root).as_posix() for p in paths], root)


def read_image(path: str | os.PathLike, channels: int = 3) -> torch.Tensor:
    """One image file as a float32 tensor ``(channels, H, W)`` in [0, 1].

    Raises
    ------
    StimulusError
        An empty file, one scikit-image cannot decode, or pixel values that mean something else (CMYK, float
        beyond [0, 1], signed or 32-bit integers: :func:`insilico.stimuli.images.decode_image`); the message
        names it.
    """
    image = torch.from_numpy(np.ascontiguousarray(decode_image(path))).permute(2, 0, 1)
    return _layout(image, gray=channels == 1, channels=channels).contiguous()


def fit_image(image: torch.Tensor, size: tuple) -> torch.Tensor:
    """Resize ``image`` ``(C, h, w)`` to cover ``size`` ``(H, W)`` (aspect kept, antialiased bilinear), then
    centre-crop it to ``size``: torchvision's eval ``Resize(S)`` + ``CenterCrop(S)`` for a square ``size``."""
    (h, w), (height, width) = image.shape[-2:], size
    if height * w >= width * h:  # the height sets the scale; the width follows as torchvision truncates it
        shape = (height, max(width, int(height * w / h)))
    else:
        shape = (max(height, int(width * h / w)), width)
    x = image[None]
    if shape != (h, w):
        x = F.interpolate(x, size=shape, mode="bilinear", align_corners=False, antialias=True)
    top, left = (shape[0] - height) // 2, (shape[1] - width) // 2
    return x[0, :, top:top + height, left:left + width].clamp(0, 1)


__all__ = ["ImageFiles", "fit_image", "image_files", "is_files", "read_image"]
