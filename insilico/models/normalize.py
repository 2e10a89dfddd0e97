"""Pixel-space input: the per-channel normalisation that lives inside every bundled model."""
from __future__ import annotations

import torch
from torch import nn


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, so models take pixel-space input in [0, 1].

    Parameters
    ----------
    mean, std : sequence of float
        One value per input channel.

    Examples
    --------
    >>> norm = Normalize([0.5, 0.5, 0.5], [0.25, 0.25, 0.25])
    >>> float(norm(torch.ones(1, 3, 2, 2))[0, 0, 0, 0])
    2.0
    """

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"
