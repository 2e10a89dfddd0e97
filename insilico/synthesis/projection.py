"""Projections: hard constraints applied in pixel space after every synthesis step.

A projection is any callable ``images (N, C, H, W) -> images`` in [0, 1]. The
engine applies it after each optimizer step and writes the result back
through the parameterization (:meth:`Parameterization.assign`), only for
samples that are still running. Adversarial attacks (PGD) use :class:`EpsBall`,
the exact epsilon-ball around each clean image with one epsilon per sample;
every projection here also clamps to [0, 1].

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

from ..errors import InsilicoError
from .optimizers import norm_name


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


class EpsBall:
    """Exact projection onto ``{x : |x - center_i| <= eps_i} ∩ [0, 1]``, one epsilon per sample.

    "Exact" means that the distance of a projected image to its center,
    computed in float64 (for float32 images: exactly; for float64 images: as
    ``(x - center).abs()`` computes it), never exceeds ``eps``: where rounding
    ``center ± eps`` to the images' dtype steps outside the ball, the bound
    moves one ulp inwards. The images keep the center's dtype and device.

    Parameters
    ----------
    center : tensor (N, C, H, W)
        The clean images (float32 or float64).
    eps : float or tensor (N,)
        Radius of each sample's ball (> 0).
    norm : {"inf", "l2"}
        L-infinity (per pixel) or L2 (per image).

    Example
    -------
    >>> ball = EpsBall(torch.full((1, 1, 1, 3), 0.5), 0.1)
    >>> [round(v, 4) for v in ball(torch.tensor([[[[0.0, 0.55, 1.0]]]])).flatten().tolist()]
    [0.4, 0.55, 0.6]
    >>> c = torch.rand(8, 3, 4, 4, dtype=torch.float64)
    >>> x = EpsBall(c, 8 / 255)(torch.rand(8, 3, 4, 4, dtype=torch.float64))
    >>> bool((x - c).abs().max() <= 8 / 255), x.dtype
    (True, torch.float64)
    """

    def __init__(self, center: torch.Tensor, eps, norm: str = "inf"):
        self.center = center.detach()
        self.norm = norm_name(norm)
        eps = torch.as_tensor(eps, dtype=torch.float64, device=center.device)
        self.eps = eps.expand(center.shape[0]).clone() if eps.ndim == 0 else eps
        if self.norm == "inf":
            e = self.eps.view(-1, *[1] * (center.ndim - 1))
            c64 = self.center.double()
            lo, hi = (c64 - e).clamp(0, 1).to(center.dtype), (c64 + e).clamp(0, 1).to(center.dtype)
            for _ in range(4):  # rounding may step outside the ball: one ulp inwards there (rarely twice)
                low_out, high_out = (c64 - lo.double()) > e, (hi.double() - c64) > e
                if not bool(low_out.any() or high_out.any()):
                    break
                lo = torch.where(low_out, torch.nextafter(lo, self.center), lo)
                hi = torch.where(high_out, torch.nextafter(hi, self.center), hi)
            self.low, self.high = lo, hi

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.norm == "inf":
            return torch.clamp(images, self.low.to(images.dtype), self.high.to(images.dtype))
        center = self.center.to(images.dtype)
        delta = (images - center).double()
        e = self.eps.view(-1)
        norm = delta.flatten(1).norm(dim=1)
        # aim a hair (4e-6 relative) inside, so that a norm computed in float32 stays <= eps too
        inner = e * (1 - 4e-6)
        factor = torch.where(norm > inner, inner / norm.clamp_min(1e-30), torch.ones_like(norm))
        x = (center.double() + delta * factor.view(-1, *[1] * (delta.ndim - 1))).clamp(0, 1).to(images.dtype)
        for attempt in range(8):  # float32 rounding may leave a sample a hair outside: shrink it a hair more
            d = x.double() - center.double()
            n = d.flatten(1).norm(dim=1)
            out = n > e
            if not bool(out.any()):
                break
            shrink = torch.where(out, (e / n) * (1 - 1e-7 * 4**attempt), torch.ones_like(n))
            x = (center.double() + d * shrink.view(-1, *[1] * (d.ndim - 1))).clamp(0, 1).to(images.dtype)
        return x

    def __repr__(self) -> str:
        values = sorted(set(round(float(e), 6) for e in self.eps.unique()))
        return f"EpsBall(norm={self.norm!r}, eps={values})"


def rms_contrast(images: torch.Tensor) -> torch.Tensor:
    """(N,) RMS contrast of each image (N, C, H, W): the standard deviation of its pixels over C, H, W (population,
    in the images' units: pixel values in [0, 1]), the quantity :class:`ContrastBudget` bounds.

    >>> rms_contrast(torch.tensor([[[[0.0, 1.0]]]])).tolist()
    [0.5]
    """
    return (images - images.mean((1, 2, 3), keepdim=True)).flatten(1).pow(2).mean(1).sqrt()


class ContrastBudget:
    """Projection: each image's RMS contrast (pixel std over C, H, W) at most ``rms``, its mean kept, in [0, 1].

    ``rms``: one budget for every image, or a tensor ``(N,)`` of one budget per image of a batch of exactly ``N``
    (another batch size is refused: a budget must not land on another image).

    Example
    -------
    >>> x = torch.rand(2, 3, 8, 8)
    >>> bool((ContrastBudget(0.1)(x).flatten(1).std(1, unbiased=False) <= 0.1 + 1e-6).all())
    True
    >>> ContrastBudget(torch.tensor([0.05, 0.1]))(x).flatten(1).std(1, unbiased=False).le(
    ...     torch.tensor([0.05, 0.1]) + 1e-6).tolist()
    [True, True]
    """

    def __init__(self, rms: float | torch.Tensor):
        self.rms = rms.detach().double().flatten() if isinstance(rms, torch.Tensor) and rms.ndim else float(rms)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        budget = self.rms
        if isinstance(budget, torch.Tensor):
            if len(budget) != images.shape[0]:
                raise InsilicoError(f"ContrastBudget holds {len(budget)} per-image budgets but got {images.shape[0]} "
                                    "images: give one budget per image of the batch (maximize's batch_size = N)")
            budget = budget.to(images.device, images.dtype).view(-1, 1, 1, 1)
        mean = images.mean((1, 2, 3), keepdim=True)
        rms = rms_contrast(images).clamp_min(1e-12).view(-1, 1, 1, 1)
        return (mean + (images - mean) * (budget / rms).clamp(max=1.0)).clamp(0.0, 1.0)

    def __repr__(self) -> str:
        if isinstance(self.rms, torch.Tensor):
            return f"ContrastBudget(per image, {len(self.rms)} budgets {float(self.rms.min()):.4g}-{float(self.rms.max()):.4g})"
        return f"ContrastBudget({self.rms})"


class Chain:
    """Projections applied in order (e.g. a contrast budget, then a distance budget that must hold exactly)."""

    def __init__(self, projections):
        self.projections = list(projections)

    def __call__(self, images):
        for project in self.projections:
            images = project(images)
        return images

    def __repr__(self) -> str:
        return " then ".join(map(repr, self.projections))


__all__ = ["Chain", "Clamp", "ContrastBudget", "EpsBall", "L2Ball", "LinfBall", "rms_contrast"]
