"""Random transforms applied before the model at each step: pad, jitter, scale, rotate.

Transformation robustness (Olah et al. 2017) keeps optimised images from
exploiting pixel-exact high-frequency patterns. Each sample gets its OWN
random translation, scale and rotation at every step, drawn from its own
``torch.Generator`` (so a sample's draws do not depend on the batch it is in),
and the whole batch is resampled in ONE ``affine_grid``/``grid_sample`` call on
the images' device. Written here rather than with torchvision/kornia because
those draw one transform per batch (or per call), not per sample, and would
need a Python loop over samples.

The output canvas is the image padded by ``pad`` pixels on each side, filled
with ``fill`` (mid-grey). With ``pad=0`` the output has the input's size. With
``size=(H, W)`` the padded canvas is resampled to that size in the same
``grid_sample`` call (no extra pass), so a model with a fixed input size (a
ViT) gets its size while the image still moves within the padding;
:class:`~insilico.synthesis.Synthesis` switches to it by itself when the
model refuses the padded size and takes the parameterized one.

Example
-------
>>> import torch
>>> t = Transforms(pad=4, jitter=2, scale=(0.9, 1.1), rotate=10)
>>> gens = [torch.Generator().manual_seed(i) for i in range(3)]
>>> out = t(torch.rand(3, 1, 16, 20), gens)
>>> tuple(out.shape)
(3, 1, 24, 28)
>>> tuple(t.resized((16, 20))(torch.rand(3, 1, 16, 20), gens).shape)   # padded, then back to 16 x 20
(3, 1, 16, 20)
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import torch
import torch.nn.functional as F

from ..errors import InsilicoError


@dataclasses.dataclass(frozen=True)
class Transforms:
    """Per-sample random pad/jitter/scale/rotate, in one batched resampling.

    Parameters
    ----------
    pad : int
        Pixels of ``fill`` added on each side (default 0: output size = input size).
    jitter : float
        Maximal translation in pixels, uniform in [-jitter, jitter] per axis (default 0).
    scale : (float, float)
        Range of the random zoom factor, uniform (default (1, 1): none).
    rotate : float
        Maximal rotation in degrees, uniform in [-rotate, rotate] (default 0).
    fill : float
        Value shown where the transformed image does not reach (default 0.5).
    size : (int, int), optional
        Resample the padded canvas to this output size (default: the canvas
        size, input + 2 ``pad``). A fixed-input model's size.
    """

    pad: int = 0
    jitter: float = 0.0
    scale: tuple = (1.0, 1.0)
    rotate: float = 0.0
    fill: float = 0.5
    size: tuple | None = None

    def __post_init__(self):
        if self.pad < 0 or self.jitter < 0 or self.rotate < 0:
            raise InsilicoError("pad, jitter and rotate must be >= 0")
        lo, hi = self.scale
        if not 0 < lo <= hi:
            raise InsilicoError(f"scale must be a range (low, high) with 0 < low <= high, got {self.scale}")
        object.__setattr__(self, "scale", (float(lo), float(hi)))
        if self.size is not None:
            size = tuple(int(v) for v in self.size)
            if len(size) != 2 or min(size) < 1:
                raise InsilicoError(f"size must be (height, width) in pixels, got {self.size}")
            object.__setattr__(self, "size", size)

    @property
    def identity(self) -> bool:
        return self.pad == 0 and self.jitter == 0 and self.scale == (1.0, 1.0) and self.rotate == 0 and self.size is None

    def resized(self, size: tuple[int, int]) -> "Transforms":
        """The same transforms with the output canvas resampled to ``size`` (H, W)."""
        return dataclasses.replace(self, size=tuple(size))

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(H, W) of the output for inputs of ``size``."""
        h, w = size
        return self.size if self.size is not None else (h + 2 * self.pad, w + 2 * self.pad)

    def draw(self, generators: Sequence[torch.Generator]) -> torch.Tensor:
        """Per-sample parameters (N, 4): x shift, y shift (pixels), zoom, angle (radians); one row per generator."""
        u = torch.stack([torch.rand(4, generator=g, dtype=torch.float64) for g in generators])
        lo, hi = self.scale
        return torch.stack(
            [
                (2 * u[:, 0] - 1) * self.jitter,
                (2 * u[:, 1] - 1) * self.jitter,
                lo + (hi - lo) * u[:, 2],
                (2 * u[:, 3] - 1) * math.radians(self.rotate),
            ],
            dim=1,
        )

    def matrices(self, params: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """``affine_grid`` matrices (N, 2, 3) mapping the padded output canvas to the input image.

        In centred pixel coordinates the output point ``q`` shows the input point
        ``R(-angle) (q - shift) / zoom``; both sides are then normalised by
        their half-sizes, which keeps non-square images undistorted.
        """
        h, w = size
        ho, wo = h + 2 * self.pad, w + 2 * self.pad
        dx, dy, zoom, angle = params.unbind(dim=1)
        cos, sin = torch.cos(angle), torch.sin(angle)
        # inverse rotation divided by zoom, in pixel units
        a, b = cos / zoom, sin / zoom
        c, d = -sin / zoom, cos / zoom
        theta = torch.stack(
            [
                torch.stack([a * (wo / w), b * (ho / w), -(a * dx + b * dy) * 2 / w], dim=1),
                torch.stack([c * (wo / h), d * (ho / h), -(c * dx + d * dy) * 2 / h], dim=1),
            ],
            dim=1,
        )
        return theta

    def apply(self, images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Transform ``images`` (N, C, H, W) with drawn ``params`` (N, 4) in one ``grid_sample``."""
        if self.identity:
            return images
        n, c, h, w = images.shape
        theta = self.matrices(params, (h, w)).to(device=images.device, dtype=images.dtype, non_blocking=True)
        # normalised coordinates: the same affine map covers the canvas at any output resolution
        grid = F.affine_grid(theta, [n, c, *self.output_size((h, w))], align_corners=False)
        out = F.grid_sample(images - self.fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out + self.fill

    def __call__(self, images: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
        if self.identity:
            return images
        return self.apply(images, self.draw(generators))

    def spec(self) -> dict:
        return {**dataclasses.asdict(self), "scale": list(self.scale),
                "size": list(self.size) if self.size is not None else None}


__all__ = ["Transforms"]
