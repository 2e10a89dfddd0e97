"""Photographs bundled with scikit-image (read from disk, never downloaded), as square crops."""
from __future__ import annotations

import difflib
import os
from functools import lru_cache
from typing import Sequence

import numpy as np
import torch

from ..errors import StimulusError
from .grids import _check_channels, _check_count, _check_size, _generator
from .images import _layout, _resize, _to_float_rgb
from .stimulus_set import StimulusSet


#: Photographs bundled inside scikit-image (no download): name -> file in skimage.data's folder.
PHOTOS: dict[str, str] = {
    "astronaut": "astronaut.png",
    "brick": "brick.png",
    "camera": "camera.png",
    "cell": "cell.png",
    "chelsea": "chelsea.png",
    "clock": "clock_motion.png",
    "coffee": "coffee.png",
    "coins": "coins.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
    "horse": "horse.png",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "immunohistochemistry": "ihc.png",
    "microaneurysms": "microaneurysms.png",
    "moon": "moon.png",
    "motorcycle": "motorcycle_left.png",
    "page": "page.png",
    "retina": "retina.jpg",
    "rocket": "rocket.jpg",
    "text": "text.png",
}
_ALIASES = {"cat": "chelsea"}


def bundled_photo_path(filename: str) -> str:
    """Path of a photo file shipped inside the scikit-image package.

    Read from the package folder itself, never ``skimage.data.data_dir``, which
    may point at an (empty) download cache.
    """
    import skimage.data

    path = os.path.join(os.path.dirname(skimage.data.__file__), filename)
    if not os.path.exists(path):
        raise StimulusError(f"{filename} is not in {os.path.dirname(path)}; reinstall scikit-image (>= 0.21)")
    return path


@lru_cache(maxsize=32)
def _read_photo(name: str) -> np.ndarray:
    import skimage.io

    return _to_float_rgb(skimage.io.imread(bundled_photo_path(PHOTOS[name])))  # cached: callers copy, never write


def natural_images(names: str | Sequence[str] | None = None, size: int = 64, n_crops: int = 1, seed: int | None = 0,
                   gray: bool = False, crop: float = 1.0, channels: int | None = None,
                   device: str | torch.device | None = None) -> StimulusSet:
    """Square crops of the photographs bundled with scikit-image, resized to ``size``.

    Only files shipped inside the scikit-image package are read (see
    :data:`PHOTOS`), straight from disk: no download is ever attempted.

    Parameters
    ----------
    names : str, list of str or None
        Photo names (None: all of :data:`PHOTOS`).
    size : int
        Output side in pixels.
    n_crops : int
        Crops per photo. With 1 the crop is centred; with more they are placed at random (seeded).
    seed : int or None
    gray : bool
        Convert colour photos to luminance.
    crop : float in (0, 1]
        Crop side as a fraction of the photo's shorter side.
    channels : {1, 3} or None
        Output channels (None: 1 if ``gray`` else 3). Gray content with 3
        channels is replicated over RGB.
    device : torch device, optional

    Returns
    -------
    StimulusSet
        params: ``name``, ``crop_index``, ``box`` (``[x0, y0, side]`` in photo
        pixels) plus the keywords ``size``, ``crop``, ``gray``, ``seed``.

    Examples
    --------
    >>> s = natural_images(["camera", "astronaut"], size=32, n_crops=2, crop=0.5)
    >>> tuple(s.images.shape), [p["name"] for p in s.params]
    ((4, 3, 32, 32), ['camera', 'camera', 'astronaut', 'astronaut'])
    """
    size = _check_size(size)
    n_crops = _check_count("n_crops", n_crops)
    if channels is not None:
        _check_channels(channels)
    if isinstance(crop, bool) or not isinstance(crop, (int, float)) or not 0 < crop <= 1:
        raise StimulusError(f"crop (fraction of the photo's shorter side) must lie in (0, 1], got {crop!r}.")
    if names is None:
        names = list(PHOTOS)
    elif isinstance(names, str):
        names = [names]
    resolved = []
    for nm in names:
        key = _ALIASES.get(str(nm).lower(), str(nm).lower())
        if key not in PHOTOS:
            close = difflib.get_close_matches(str(nm), list(PHOTOS) + list(_ALIASES), n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise StimulusError(
                f"unknown photo {nm!r}.{hint} Available (bundled with scikit-image): {', '.join(PHOTOS)}. "
                "For your own images use insilico.stimuli.from_folder(path)."
            )
        resolved.append(key)
    if not resolved:
        raise StimulusError("names is empty; give at least one photo name (or None for all).")
    _, seed = _generator(seed)  # validates; None draws a seed that is recorded
    rng = np.random.default_rng(seed)
    chunks, params = [], []
    for nm in resolved:
        arr = _read_photo(nm)
        h, w = arr.shape[:2]
        side = max(1, int(round(crop * min(h, w))))
        if n_crops == 1:
            boxes = [((w - side) // 2, (h - side) // 2)]
        else:
            xs = rng.integers(0, w - side + 1, n_crops)
            ys = rng.integers(0, h - side + 1, n_crops)
            boxes = list(zip(xs.tolist(), ys.tolist()))
        img = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
        img = _layout(img, gray, channels)
        batch = torch.stack([img[:, y0:y0 + side, x0:x0 + side] for x0, y0 in boxes])
        chunks.append(_resize(batch, size))
        params += [dict(name=nm, crop_index=i, box=[x0, y0, side], size=size, crop=float(crop), gray=bool(gray),
                        seed=seed)
                   for i, (x0, y0) in enumerate(boxes)]
    images = torch.cat(chunks).contiguous().to(device)
    return StimulusSet(images, params)
