"""Objectives of the lab: what a network is trained to do, each a pure loss function of tensors.

================= ====================================================================================
name              loss (``code``: the network's output, (N, D); the last time step of a recurrent one)
================= ====================================================================================
classification    cross-entropy of the logits with the photo labels; a recurrent network's readouts of
                  every step, weighted ``2**t`` (:func:`insilico.models.train.step_weights`, "geometric")
autoencoding      mean squared error of a linear decoder's image (``code`` -> 3 x 16 x 16, sigmoid) with
                  the input, area-downsampled to 16 x 16 (compression through the D-dim code)
sparse            autoencoding plus ``sparsity * mean |code|`` (the L1 activity penalty of Olshausen &
                  Field 1996)
slowness          temporal stability over two neighbouring frames (a crop and the same crop shifted by up
                  to 2 px): with ``z`` the codes standardised per dimension over both frames (zero mean, unit
                  variance: Wiskott & Sejnowski's constraints), ``mean((z1 - z0)**2)`` plus the mean squared
                  off-diagonal correlation (their decorrelation constraint, as a penalty; Foldiak 1991)
contrastive       NT-Xent (SimCLR, Chen et al. 2020) over two augmented views of each crop: cosine
                  similarities / ``temperature`` (0.1), each view's positive is the other view of its crop
================= ====================================================================================

Example
-------
>>> import torch
>>> z = torch.eye(2)
>>> round(float(contrastive(z, z, temperature=1.0)), 4)   # each code: -log(e / (e + 1 + 1))
0.5514
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: The objectives a :class:`~insilico.lab.Variant` names.
OBJECTIVES = ("classification", "autoencoding", "sparse", "slowness", "contrastive")
#: Side of the images the autoencoding decoder reconstructs.
DECODED = 16


def classification(logits: torch.Tensor, labels: torch.Tensor, step_weights=None) -> torch.Tensor:
    """Cross-entropy; ``logits`` (N, C), or (N, T, C) with one weight per step in ``step_weights``."""
    if logits.dim() == 2:
        return F.cross_entropy(logits, labels)
    return sum(w * F.cross_entropy(logits[:, t], labels) for t, w in enumerate(step_weights))


def decoder(code_size: int) -> nn.Module:
    """The autoencoders' linear decoder: code (N, code_size) -> image (N, 3, 16, 16) in (0, 1)."""
    return nn.Sequential(nn.Linear(code_size, 3 * DECODED * DECODED), nn.Sigmoid(),
                         nn.Unflatten(1, (3, DECODED, DECODED)))


def target(images: torch.Tensor) -> torch.Tensor:
    """What the decoder reconstructs: ``images`` (N, 3, H, W) area-downsampled to (N, 3, 16, 16)."""
    return F.interpolate(images, size=(DECODED, DECODED), mode="area")


def autoencoding(reconstruction: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Mean squared error of ``reconstruction`` (N, 3, 16, 16) with :func:`target` of ``images``."""
    return F.mse_loss(reconstruction, target(images))


def sparse(reconstruction: torch.Tensor, images: torch.Tensor, code: torch.Tensor, sparsity: float) -> torch.Tensor:
    """:func:`autoencoding` plus ``sparsity`` times the mean absolute code (an L1 activity penalty)."""
    return autoencoding(reconstruction, images) + sparsity * code.abs().mean()


def slowness(z0: torch.Tensor, z1: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Slowness of codes ``z0``, ``z1`` (N, D) of two neighbouring frames, under the decorrelation penalty.

    Both frames are standardised with one mean and (biased) standard deviation per dimension, taken over
    the 2N codes; then ``mean((z1 - z0)**2) + mean(offdiag(C)**2)`` with ``C = z^T z / 2N`` over both frames.
    """
    both = torch.cat([z0, z1])
    z = (both - both.mean(0)) / (both.std(0, unbiased=False) + eps)
    a, b = z[: len(z0)], z[len(z0):]
    corr = z.T @ z / len(z)
    off = corr - torch.diag(torch.diagonal(corr))
    d = corr.shape[0]
    decorrelation = off.pow(2).sum() / max(d * (d - 1), 1)
    return (b - a).pow(2).mean() + decorrelation


def contrastive(z0: torch.Tensor, z1: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """NT-Xent of two views' codes (N, D): row ``i`` of ``z0`` and of ``z1`` are the positive pair.

    With ``u`` the 2N L2-normalised codes and ``s = u u^T / temperature`` (self-similarities masked out),
    the loss is the mean over the 2N codes of the cross-entropy of row ``s_k`` with its partner's index.
    """
    u = F.normalize(torch.cat([z0, z1]), dim=1)
    n = len(z0)
    sim = u @ u.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=u.device), float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(u.device)
    return F.cross_entropy(sim, partner)


__all__ = ["DECODED", "OBJECTIVES", "autoencoding", "classification", "contrastive", "decoder", "slowness",
           "sparse", "target"]
