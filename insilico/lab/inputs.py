"""Input statistics of the lab: training batches of the bundled photos with a variant's class frequencies,
blur, contrast and clutter, and the paired views the slowness and contrastive objectives compare.

The crops and their augmentation are the bundled task's own (:mod:`insilico.models.photos`: the same
crop sampler, colour jitter and clutter); this module adds only what a variant changes. Held-out and
test images (accuracy, RSA) are never degraded, only resized to the variant's input side, so every
variant is scored on the same images.

Example
-------
>>> from insilico.lab.variant import Variant
>>> from insilico.seeding import generator
>>> x, y = batch(Variant(architecture="b", size=32, blur=1.0), 4, generator(0))
>>> tuple(x.shape), tuple(y.shape)
((4, 3, 32, 32), (4,))
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models import photos
from ..synthesis.parameterization import gaussian_blur

SHIFT = {"slowness": 2, "contrastive": 8}   # pixels (of the 64-px crop) between the two views of a crop


def crops(variant, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` augmented 64-px training crops (N, 3, 64, 64) and labels, classes drawn by ``variant.class_weights``."""
    weights = torch.tensor(variant.class_weights or [1.0] * len(photos.CLASSES))
    y = torch.multinomial(weights, n, replacement=True, generator=gen)
    x = torch.empty(n, 3, photos.OUT, photos.OUT)
    for k, name in enumerate(photos.CLASSES):
        idx = (y == k).nonzero().flatten()
        if len(idx):
            x[idx] = photos._crops(name, "train", len(idx), gen, augment=True)
    return x, y


def degrade(variant, x: torch.Tensor, gen: torch.Generator, size: bool = True) -> torch.Tensor:
    """``x`` (N, 3, h, w) under the variant's input statistics (colour jitter as in the bundled task, clutter,
    blur, contrast), in [0, 1], resized to ``variant.size`` unless ``size=False``."""
    x = photos._jitter(x, gen)
    if variant.clutter > 0:
        x = photos._occlude(x, variant.clutter, gen)
    x = x.clamp(0, 1)  # blur and contrast keep [0, 1]: a blurred or low-contrast image is no clipped one
    if variant.blur > 0:
        x = gaussian_blur(x, variant.blur)
    if variant.contrast != 1:
        mean = x.mean((1, 2, 3), keepdim=True)
        x = mean + variant.contrast * (x - mean)
    return resize(x, variant.size) if size else x


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Area-resize (N, C, H, W) to (N, C, size, size); unchanged when already that size."""
    return x if x.shape[-1] == size and x.shape[-2] == size else F.interpolate(x, size=(size, size), mode="area")


def batch(variant, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One training batch: images (n, 3, size, size) in [0, 1] under the variant's statistics, and labels."""
    x, y = crops(variant, n, gen)
    return degrade(variant, x, gen), y


def views(variant, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two views of ``n`` crops: windows of side ``64 - 2*shift`` at offsets up to ``shift`` apart (``SHIFT`` of
    the objective: neighbouring frames for slowness, independent crops for contrastive), each degraded
    separately (own colour jitter and clutter) for contrastive; for slowness the crop is degraded once and
    both frames cut from it (only the position moves)."""
    x, y = crops(variant, n, gen)
    if variant.objective == "slowness":
        x = degrade(variant, x, gen, size=False)
    shift = SHIFT[variant.objective]
    side = photos.OUT - 2 * shift
    offsets = torch.randint(0, 2 * shift + 1, (2, n, 2), generator=gen)
    pair = [torch.stack([img[:, oy:oy + side, ox:ox + side] for img, (oy, ox) in zip(x, off.tolist())])
            for off in offsets]
    if variant.objective == "slowness":
        return resize(pair[0], variant.size), resize(pair[1], variant.size), y
    return degrade(variant, pair[0], gen), degrade(variant, pair[1], gen), y


__all__ = ["SHIFT", "batch", "crops", "degrade", "resize", "views"]
