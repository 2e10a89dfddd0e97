"""Projections: hard constraints applied in pixel space after every synthesis step.

A projection is any callable ``images (N, C, H, W) -> images`` in [0, 1]. The
engine applies it after each optimizer step and writes the result back
through the parameterization (:meth:`Parameterization.assign`), only for
samples that are still running. Adversarial attacks (PGD) use an epsilon-ball
around the clean images; every projection here also clamps to [0, 1].

Example
-------
>>> import torch
>>> clean = torch.full((1, 1, 2, 2), 0.5)
>>> project = LinfBall(clean, eps=0.1)
>>> [round(v, 4) for v in project(torch.tensor([[[[0.0, 0.55], [0.9, 0.5]]]])).flatten().tolist()]
[0.4, 0.55, 0.6, 0.5]
"""
from __future__ import annotations

import torch


class Clamp:
    """Clamp to [low, high] (default [0, 1])."""

    def __init__(self, low: float = 0.0, high: float = 1.0):
        self.low, self.high = low, high

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return images.clamp(self.low, self.high)

    def __repr__(self) -> str:
        return f"Clamp({self.low}, {self.high})"


class LinfBall:
    """Within ``eps`` of ``center`` (N, C, H, W) in every pixel (L-infinity), and in [0, 1]."""

    def __init__(self, center: torch.Tensor, eps: float):
        self.center, self.eps = center.detach(), float(eps)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        center = self.center.to(images.device, images.dtype)
        return (center + (images - center).clamp(-self.eps, self.eps)).clamp(0.0, 1.0)

    def __repr__(self) -> str:
        return f"LinfBall(eps={self.eps})"


class L2Ball:
    """Within Euclidean distance ``eps`` of ``center`` (per sample), and in [0, 1]."""

    def __init__(self, center: torch.Tensor, eps: float):
        self.center, self.eps = center.detach(), float(eps)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        center = self.center.to(images.device, images.dtype)
        delta = images - center
        norm = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        return (center + delta * (self.eps / norm).clamp(max=1.0)).clamp(0.0, 1.0)

    def __repr__(self) -> str:
        return f"L2Ball(eps={self.eps})"


__all__ = ["Clamp", "L2Ball", "LinfBall"]
