"""Image regularizers: objectives of the pixel images alone (no units), subtracted to keep images natural.

=================== ===========================================================
TotalVariation()    mean absolute difference of neighbouring pixels
L1(c), L2(c)        mean absolute / squared deviation of the pixels from ``c``
=================== ===========================================================

Example
-------
>>> import torch
>>> TotalVariation()({}, torch.zeros(2, 1, 4, 4)).tolist(), L2(0.0)({}, torch.ones(1, 1, 2, 2)).tolist()
([0.0, 0.0], [1.0])
"""
from __future__ import annotations

from ..errors import InsilicoError
from .core import Objective


class TotalVariation(Objective):
    """Mean absolute difference between vertically and horizontally neighbouring pixels.

    Subtract it to smooth images: ``Channel(...) - 0.1 * TotalVariation()``.
    """

    def forward(self, acts, images):
        _need_images(self, images)
        dy = (images[:, :, 1:, :] - images[:, :, :-1, :]).abs().flatten(1).mean(dim=1)
        dx = (images[:, :, :, 1:] - images[:, :, :, :-1]).abs().flatten(1).mean(dim=1)
        return dx + dy


class L1(Objective):
    """Mean absolute deviation of the pixels from ``constant`` (default 0.5, mid-grey)."""

    def __init__(self, constant: float = 0.5):
        self.constant = float(constant)

    def forward(self, acts, images):
        _need_images(self, images)
        return (images - self.constant).abs().flatten(1).mean(dim=1)

    def __repr__(self) -> str:
        return f"L1({self.constant})"


class L2(Objective):
    """Mean squared deviation of the pixels from ``constant`` (default 0.5, mid-grey)."""

    def __init__(self, constant: float = 0.5):
        self.constant = float(constant)

    def forward(self, acts, images):
        _need_images(self, images)
        return (images - self.constant).pow(2).flatten(1).mean(dim=1)

    def __repr__(self) -> str:
        return f"L2({self.constant})"


def _need_images(objective: Objective, images) -> None:
    if images is None:
        raise InsilicoError(f"{objective!r} reads the pixel images; call it as objective(acts, images)")


__all__ = ["L1", "L2", "TotalVariation"]
