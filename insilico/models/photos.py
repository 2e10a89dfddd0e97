"""The offline training task of the bundled models: which photo is this crop from?

Every bundled model is trained on crops of scikit-image's *bundled* photos
(files shipped inside the ``skimage`` wheel, read straight from disk; no
fetcher, no network). Each photo is one class: a crop of ``brick`` must be
told from a crop of ``gravel``, ``coffee`` or ``astronaut``. The task mixes
textures, scenes and objects at one scale, so networks learn edge and texture
detectors, much as on natural-image datasets.

The held-out split is spatial: each photo is resized to a short side of
``SIZE`` pixels; training crops come from the left ``1 - HELD_OUT`` of its
columns, held-out crops from the right ``HELD_OUT``, with a ``GAP``-pixel
band between them that neither uses. Held-out crops are unaugmented and drawn
with a seed of their own, so no held-out pixel was ever seen in training.

Crops are cut with one batched ``affine_grid``/``grid_sample`` per photo
(scale, rotation, flip, position), which is why this is written here and not
with torchvision transforms (torchvision is an optional dependency).

Example
-------
>>> from insilico.models import photos
>>> x, y = photos.held_out(2, seed=0)
>>> tuple(x.shape), len(photos.CLASSES), float(x.min()) >= 0 and float(x.max()) <= 1
((32, 3, 64, 64), 16, True)
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InsilicoError, StimulusError
from ..stimuli import bundled_photo_path

#: Class names: the bundled scikit-image photos, in label order.
CLASSES = [
    "astronaut", "brick", "camera", "chelsea", "coffee", "coins", "grass", "gravel",
    "hubble_deep_field", "ihc", "moon", "motorcycle_left", "page", "retina", "rocket", "text",
]
SIZE = 320          # short side of every photo after resizing, in pixels
HELD_OUT = 0.3      # fraction of columns (on the right) reserved for held-out crops
GAP = 8             # unused columns between the training and held-out regions
CROP = (48, 88)     # side of a crop, in resized-photo pixels (min, max)
OUT = 64            # crops are resampled to OUT x OUT
#: Mean and std of the RGB channels of the training crops (used by the models' ``normalize``).
MEAN = (0.44, 0.42, 0.39)
STD = (0.27, 0.26, 0.27)


def _file(name: str) -> str:
    for ext in (".png", ".jpg"):
        try:
            return bundled_photo_path(name + ext)
        except StimulusError:
            continue
    raise InsilicoError(f"bundled photo {name!r} not found; reinstall scikit-image (>= 0.21)")


@functools.lru_cache(maxsize=None)
def photo(name: str) -> torch.Tensor:
    """One bundled photo as an RGB float tensor (3, H, W) in [0, 1], short side ``SIZE``.

    Examples
    --------
    >>> tuple(photo("brick").shape)
    (3, 320, 320)
    """
    import skimage.io
    import skimage.transform

    img = skimage.io.imread(_file(name))
    img = img.astype(np.float32) / (65535.0 if img.dtype == np.uint16 else 255.0)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    img = img[:, :, :3]
    h, w = img.shape[:2]
    k = SIZE / min(h, w)
    img = skimage.transform.resize(img, (round(h * k), round(w * k)), anti_aliasing=k < 1, order=1)
    return torch.from_numpy(np.clip(img, 0, 1).astype(np.float32)).permute(2, 0, 1).contiguous()


def region(name: str, split: str) -> tuple[float, float]:
    """Column range ``(x0, x1)`` in pixels of ``split`` ("train" or "test") in photo ``name``."""
    w = photo(name).shape[2]
    cut = (1 - HELD_OUT) * w
    if split == "train":
        return 0.0, cut - GAP / 2
    if split == "test":
        return cut + GAP / 2, float(w)
    raise InsilicoError(f"split must be 'train' or 'test', got {split!r}")


def _crops(name: str, split: str, n: int, gen: torch.Generator, augment: bool) -> torch.Tensor:
    img = photo(name)
    _, h, w = img.shape
    x0, x1 = region(name, split)
    side = CROP[0] + (CROP[1] - CROP[0]) * torch.rand(n, generator=gen)
    if augment:
        angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(30)
        angle = angle + (math.pi / 2) * torch.randint(0, 4, (n,), generator=gen)
        flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    else:
        angle, flip = torch.zeros(n), torch.ones(n)
    cos, sin = torch.cos(angle), torch.sin(angle)
    half = side / 2 * (cos.abs() + sin.abs())       # half-extent of the rotated square
    half = torch.minimum(half, torch.tensor(min((x1 - x0), h) / 2))
    cx = x0 + half + (x1 - x0 - 2 * half) * torch.rand(n, generator=gen)
    cy = half + (h - 2 * half) * torch.rand(n, generator=gen)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = side / w * cos * flip
    theta[:, 0, 1] = -side / w * sin
    theta[:, 1, 0] = side / h * sin * flip
    theta[:, 1, 1] = side / h * cos
    theta[:, 0, 2] = 2 * cx / w - 1
    theta[:, 1, 2] = 2 * cy / h - 1
    grid = F.affine_grid(theta, (n, 3, OUT, OUT), align_corners=False)
    return F.grid_sample(img.expand(n, -1, -1, -1), grid, mode="bilinear",
                         padding_mode="border", align_corners=False)


def _jitter(x: torch.Tensor, gen: torch.Generator, gray: float = 0.5) -> torch.Tensor:
    """Colour-channel shuffles, grayscale, saturation, contrast and brightness jitter, pixel noise.

    Half the crops get their RGB channels permuted and a fraction ``gray`` is made gray, so
    colour alone does not name the photo: the networks must use luminance
    structure (edges, textures), which is what makes their first layers grow
    oriented filters.
    """
    n = x.shape[0]

    def u(lo, hi):
        return (lo + (hi - lo) * torch.rand(n, 1, 1, 1, generator=gen))

    perm = torch.argsort(torch.rand(n, 3, generator=gen), dim=1)
    keep = torch.rand(n, generator=gen) < 0.5
    perm[keep] = torch.arange(3)
    x = x.gather(1, perm[:, :, None, None].expand_as(x))
    lum = x.mean(1, keepdim=True)
    sat = torch.where(torch.rand(n, 1, 1, 1, generator=gen) < gray, torch.zeros(n, 1, 1, 1), u(0.4, 1.3))
    x = lum + sat * (x - lum)
    mean = x.mean((1, 2, 3), keepdim=True)
    x = mean + u(0.6, 1.4) * (x - mean) + u(-0.15, 0.15)
    x = x + 0.02 * torch.randn(x.shape, generator=gen)
    return x.clamp(0, 1)


def _occlude(x: torch.Tensor, p: float, gen: torch.Generator, count: int = 2,
             side: tuple[int, int] = (16, 32)) -> torch.Tensor:
    """Clutter: paste up to ``count`` square patches of OTHER crops of the batch onto a fraction ``p`` of crops.

    Each patch (side drawn from ``side``) is cut at the same place from another
    crop of the batch (often another class) and pasted over this one, so part of
    the object is hidden behind distracting structure, as in Spoerer et al.'s
    cluttered-digit task.
    """
    n, _, h, w = x.shape
    yy = torch.arange(h)[None, :, None]
    xx = torch.arange(w)[None, None, :]
    out = x.clone()
    for _ in range(count):
        on = torch.rand(n, generator=gen) < p
        s = torch.randint(side[0], side[1] + 1, (n,), generator=gen)
        y0 = (torch.rand(n, generator=gen) * (h - s + 1)).long()
        x0 = (torch.rand(n, generator=gen) * (w - s + 1)).long()
        src = x[torch.randint(0, n, (n,), generator=gen)]
        mask = ((yy >= y0[:, None, None]) & (yy < (y0 + s)[:, None, None])
                & (xx >= x0[:, None, None]) & (xx < (x0 + s)[:, None, None]) & on[:, None, None])
        out = torch.where(mask[:, None], src, out)
    return out


def sample(n: int, split: str = "train", seed: int = 0, augment: bool | None = None,
           generator: torch.Generator | None = None, occlude: float = 0.0,
           gray: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Random crops with labels.

    Parameters
    ----------
    n : int
        Number of crops; labels are drawn uniformly over ``CLASSES``.
    split : {"train", "test"}
        Which region of every photo the crops come from.
    seed : int
        Seeds a fresh generator (ignored when ``generator`` is given).
    augment : bool, optional
        Rotation, flips and colour jitter; default True for "train", False for "test".
    generator : torch.Generator, optional
        Continue an existing random stream (used by the training loop).
    occlude : float
        Fraction of crops cluttered with patches of other crops (see :func:`_occlude`); 0 draws nothing.
    gray : float
        Fraction of augmented crops turned gray (the rest keep a jittered saturation).

    Returns
    -------
    x : Tensor (n, 3, 64, 64) in [0, 1]
    y : Tensor (n,) of int64 class indices

    Examples
    --------
    >>> x, y = sample(8, seed=1)
    >>> tuple(x.shape), tuple(y.shape)
    ((8, 3, 64, 64), (8,))
    """
    gen = generator if generator is not None else torch.Generator().manual_seed(seed)
    augment = (split == "train") if augment is None else augment
    y = torch.randint(0, len(CLASSES), (n,), generator=gen)
    x = torch.empty(n, 3, OUT, OUT)
    for k, name in enumerate(CLASSES):
        idx = (y == k).nonzero().flatten()
        if len(idx):
            x[idx] = _crops(name, split, len(idx), gen, augment)
    if augment:
        x = _jitter(x, gen, gray)
    if occlude > 0:
        x = _occlude(x, occlude, gen)
    return x.clamp(0, 1), y


def held_out(per_class: int = 16, seed: int = 1234) -> tuple[torch.Tensor, torch.Tensor]:
    """A class-balanced, unaugmented held-out set from the held-out regions.

    Parameters
    ----------
    per_class : int
        Crops per class; the set has ``per_class * len(CLASSES)`` images.
    seed : int
        Crop positions and sizes; training never uses the held-out regions.

    Returns
    -------
    x : Tensor (per_class * 16, 3, 64, 64) in [0, 1]
    y : Tensor of int64 class indices, grouped by class
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.cat([_crops(name, "test", per_class, gen, augment=False) for name in CLASSES])
    y = torch.arange(len(CLASSES)).repeat_interleave(per_class)
    return x.clamp(0, 1), y
