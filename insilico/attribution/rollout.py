"""Attention rollout (Abnar & Zuidema 2020): how much each image patch flows into a ViT's CLS token.

Abnar, S. & Zuidema, W. (2020), "Quantifying Attention Flow in Transformers", ACL
(arXiv:2005.00928). Each block's attention weights ``(N, heads, T, T)`` are fused
over the heads (their mean; ``head_fusion="max"``/``"min"`` are the variants of
Gildenblat's vit-explain), the identity is added for the residual connection and
the rows are renormalised, ``Â = (A + I) / rowsum``; the rollout multiplies them
through the blocks in order, ``R = Â_L ... Â_2 Â_1``. The CLS token's row of
``R`` over the patch tokens (the prefix tokens, CLS and registers, dropped:
:func:`insilico.layout.patch_grid`) is a ``g x g`` map, upsampled to the image
as Grad-CAM's is (:func:`insilico.attribution.gradients.to_image`).

The weights are read through the Probe as the attention parts ``"<block>:weights"``
(:mod:`insilico.attention`): no hook of our own, and the same parts a user
records. captum has no attention rollout, so it is written here.

Example
-------
>>> import torch, torchvision, insilico
>>> vit = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
...                                            hidden_dim=16, mlp_dim=32)
>>> maps = insilico.attention_rollout(vit, torch.rand(2, 3, 32, 32))
>>> tuple(maps.shape)
(2, 3, 32, 32)
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import InsilicoError, UnitError
from ..layers import attention_modules, family_of
from ..layout import patch_grid, token_grid
from ..pixels import check_images
from ..probe import Probe
from ..registry import register_tool
from ..session import result_dtype, session
from ..units import Unit, UnitLike
from .gradients import to_image

HEAD_FUSIONS = ("mean", "max", "min")


@register_tool("attribution", saves=False, per_sample=True)
def attention_rollout(
    model: nn.Module,
    images: torch.Tensor,
    blocks: Sequence[UnitLike] | None = None,
    head_fusion: str = "mean",
) -> torch.Tensor:
    """Attention rollout maps of a ViT (Abnar & Zuidema 2020): the CLS token's attention flow to each patch.

    Parameters
    ----------
    model : nn.Module
        A ViT-style model: a CLS token first (then registers, if any), then a g x g grid of patch
        tokens, and attention modules insilico reads (:func:`insilico.layers.attention_modules`).
    images : tensor (N, C, H, W)
        Pixel-space images in [0, 1].
    blocks : list of addresses, optional
        The attention modules to roll out (default: every attention module of the model), multiplied
        in the model's module order (the order a ViT calls its blocks).
    head_fusion : {"mean", "max", "min"}
        How the heads' weights become one matrix per block (the paper: the mean).

    Returns
    -------
    tensor (N, C, H, W)
        One map per image, the CLS row of the rollout over the patches (each row of the rollout
        sums to 1), upsampled bilinearly and repeated over the channels; float64 for a float64
        model, else float32.

    Raises
    ------
    UnitError
        No attention module, a module whose parts fold windows into the batch axis (Swin), weights that
        are not ``(N, heads, T, T)``, blocks with different token counts, or tokens that are not a CLS
        token (and registers) then a square patch grid.
    InsilicoError
        An unknown ``head_fusion``.
    """
    if head_fusion not in HEAD_FUSIONS:
        raise InsilicoError(f"head_fusion must be one of {HEAD_FUSIONS}, not {head_fusion!r}")
    images = check_images(images)
    probe = Probe(model)
    family = family_of(model)
    units = _weight_units(probe, model, family, blocks)
    with session(model) as s, torch.no_grad(), probe.record(*units) as rec:
        model(s.inputs(images))
        weights = [rec[u] for u in units]
    rollout, tokens = None, None
    for unit, w in zip(units, weights):
        fused = _fused(unit, w, head_fusion, tokens).to(result_dtype(w.dtype))
        tokens = fused.shape[-1]
        rollout = fused if rollout is None else fused @ rollout
    grid = patch_grid(tokens, family.prefix())
    if grid is None or grid[0] == 0:
        raise UnitError(f"attention rollout reads the CLS token's row over a patch grid, but the {tokens} tokens of "
                        f"{units[0].module!r} are not a CLS token (and registers) then a square g x g grid (prefix "
                        f"tokens: {family.prefix()}, family {family.name!r}); use a ViT with a class token")
    cls = rollout[:, :1, :]                                    # (N, 1, T): the CLS row
    return to_image(token_grid(cls.transpose(1, 2), grid), images.to(cls.dtype))


def _weight_units(probe: Probe, model: nn.Module, family, blocks) -> list[Unit]:
    """The ``"<block>:weights"`` units of the blocks to roll out, in the model's module order."""
    found = attention_modules(model, family)
    names = list(found) if blocks is None else [Unit.coerce(b, model).module for b in blocks]
    if not names:
        said = "blocks= is empty" if blocks is not None else \
            f"found no attention module in {type(model).__name__} (family {family.name!r})"
        raise UnitError(f"attention rollout {said}; name them with blocks=[...] (addresses of modules whose "
                        "':weights' part insilico reads, see insilico.attention)")
    for name in names:
        if found.get(name) == "windows":
            raise UnitError(f"attention rollout: {name!r} attends within windows folded into the batch axis (Swin), "
                            "so there is no image-wide token-to-token matrix to roll out; use a ViT")
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    names = sorted(dict.fromkeys(names), key=lambda n: order.get(n, len(order)))
    return probe.units(*(f"{name}:weights" for name in names))


def _fused(unit: Unit, weights: torch.Tensor, how: str, tokens: int | None) -> torch.Tensor:
    """One block's ``Â = (fuse_heads(A) + I) / rowsum``, ``(N, T, T)``."""
    if not torch.is_tensor(weights) or weights.ndim != 4 or weights.shape[-1] != weights.shape[-2]:
        shape = tuple(weights.shape) if torch.is_tensor(weights) else type(weights).__name__
        raise UnitError(f"attention rollout needs {unit} as (N, heads, T, T) attention weights, got {shape}")
    if tokens is not None and weights.shape[-1] != tokens:
        raise UnitError(f"{unit} attends over {weights.shape[-1]} tokens, the block before it over {tokens}: "
                        "rollout multiplies blocks of one token sequence; name those with blocks=[...]")
    fused = {"mean": lambda w: w.mean(dim=1), "max": lambda w: w.amax(dim=1), "min": lambda w: w.amin(dim=1)}[how]
    a = fused(weights) + torch.eye(weights.shape[-1], device=weights.device, dtype=weights.dtype)
    return a / a.sum(dim=-1, keepdim=True)


__all__ = ["HEAD_FUSIONS", "attention_rollout"]
