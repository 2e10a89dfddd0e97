"""Eigendistortions (Berardino et al. 2017): the most and least noticeable distortions of an image for a layer.

For a layer ``f`` and an image ``x``, a small distortion ``e`` changes the
response by about ``J e`` (``J`` the Jacobian of ``f`` at ``x``), so
``|J e|^2 = e^T J^T J e``: the eigenvectors of ``J^T J`` with the largest
and smallest eigenvalues are the distortions the layer is most and least
sensitive to.

``J`` is never formed. One forward pass builds the graph ``y = f(x)``; then
``J^T u`` is a backward pass, and ``J v`` the derivative of ``J^T u`` with
respect to ``u`` (the double-backward trick), so each product ``J^T J v``
costs two backward passes over the kept graph, for all images at once (the
images are independent, so ``J`` is block-diagonal over the batch and one
(N, D) block of vectors holds one vector per image). Eigenvectors come from

- ``method="lanczos"`` (default): batched Lanczos with full
  reorthogonalisation; the top and bottom Ritz pairs of one run;
- ``method="power"``: block power (subspace) iteration with Rayleigh-Ritz
  for the top ``k``, and the same on ``lambda_max I - J^T J`` for the bottom.

This is linear algebra rather than an optimisation, so it does not run on
the synthesis engine; written here because plenoptic's version takes one
image at a time and captum/torchattacks have none. The model runs in one
:func:`insilico.session.session` (eval mode, frozen parameters, gradients even
under ``torch.no_grad()``, every module's own flags restored after, also on
errors) and keeps its dtype: float64 in, float64 eigenvalues and distortions out.

Example
-------
>>> import torch
>>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Tanh())
>>> r = eigendistortion(model, "1", torch.rand(3, 1, 5, 5), k=2, progress=False)
>>> tuple(r.eigenvalues.shape), tuple(r.distortions.shape), r.indices
((3, 4), (3, 4, 1, 5, 5), [0, 1, -2, -1])
>>> bool((r.eigenvalues[:, :-1] >= r.eigenvalues[:, 1:] - 1e-6).all())
True
"""
from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..errors import InsilicoError
from ..performance import at_model_door, working_dtype
from ..pixels import check_images
from ..probe import Probe
from ..registry import register_tool
from ..results import Result
from ..seeding import run_seed
from ..session import session
from ..synthesis.engine import derive_seed
from ..synthesis.seeds import content_key
from ..units import Unit, UnitLike, need_tensor

METHODS = ("lanczos", "power")


class GramOperator:
    """``v -> J^T J v`` for a layer at a batch of images (one vector per image), by autograd.

    Parameters
    ----------
    model : nn.Module
    unit : str or Unit
        The layer (any unit address: a module, a channel, a neuron ...).
    images : tensor (N, C, H, W)

    Attributes
    ----------
    dim : int
        Pixels per image (D).
    out_dim : int
        Recorded values per image (M).
    """

    def __init__(self, model: nn.Module, unit: UnitLike, images: torch.Tensor):
        dtype = images.dtype  # the model's; products and vectors in its working dtype (float32 for half models)
        self.x = images.detach().to(working_dtype(dtype)).requires_grad_(True)
        # the products differentiate the backward pass again: fused attention kernels (CPU flash attention) have
        # no double backward, the math kernel has
        with Probe(model).record(unit, keep_graph=True) as rec, sdpa_kernel(SDPBackend.MATH):
            model(at_model_door(self.x, dtype))
            y = need_tensor(Unit.coerce(unit, model), rec[unit], " for eigendistortions")
        if y.shape[0] != images.shape[0]:
            raise InsilicoError(f"{unit} did not give a tensor with one row per image")
        self.y = at_model_door(y.reshape(y.shape[0], -1), self.x.dtype)
        if not self.y.requires_grad:
            raise InsilicoError(f"{unit} does not depend on the input image (no gradient)")
        self.u = torch.zeros_like(self.y, requires_grad=True)
        (self.jt_u,) = torch.autograd.grad(self.y, self.x, self.u, create_graph=True)
        self.n, self.dim, self.out_dim = images.shape[0], self.x[0].numel(), self.y.shape[1]

    def jvp(self, v: torch.Tensor) -> torch.Tensor:
        """``J v`` (N, M) for ``v`` (N, D)."""
        (out,) = torch.autograd.grad(self.jt_u, self.u, v.view_as(self.x), retain_graph=True)
        return out

    def vjp(self, w: torch.Tensor) -> torch.Tensor:
        """``J^T w`` (N, D) for ``w`` (N, M)."""
        (out,) = torch.autograd.grad(self.y, self.x, w, retain_graph=True)
        return out.reshape(self.n, -1)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        return self.vjp(self.jvp(v))


def _orthonormalize(v: torch.Tensor, basis: torch.Tensor | None) -> torch.Tensor:
    """Remove from ``v`` (N, D) its components in ``basis`` (N, j, D) twice, then normalise."""
    if basis is not None and basis.shape[1]:
        for _ in range(2):
            v = v - torch.einsum("njd,nj->nd", basis, torch.einsum("njd,nd->nj", basis, v))
    return v / v.norm(dim=1, keepdim=True).clamp_min(1e-30)


def _draw(generator, n: int, shape: tuple, dtype, device) -> torch.Tensor:
    """Normal draws (n, *shape): one row from each generator of a list (one per sample), or all from one generator."""
    if isinstance(generator, torch.Generator):
        return torch.randn(n, *shape, generator=generator).to(device, dtype)
    if len(generator) != n:
        raise InsilicoError(f"give one generator per sample: {len(generator)} generators for {n} samples")
    return torch.stack([torch.randn(*shape, generator=g) for g in generator]).to(device, dtype)


def sample_generators(images: torch.Tensor, seed: int) -> list[torch.Generator]:
    """One generator per image, seeded from ``seed`` and the image's content
    (:func:`insilico.synthesis.seeds.content_key`): an image gets the same start vectors alone, in any
    batch and at any position."""
    return [torch.Generator().manual_seed(derive_seed(seed, f"eigendistortion|{key}")) for key in content_key(images)]


def lanczos(op, n: int, dim: int, iterations: int, generator, dtype, device):
    """Batched Lanczos with full reorthogonalisation; returns Ritz values (N, m) ascending and vectors (N, m, D).

    ``generator``: a ``torch.Generator`` for the whole batch, or a list of one per sample (each sample's
    start and restart vectors from its own: its result does not depend on its batch companions).
    """
    m = min(iterations, dim)
    q = _orthonormalize(_draw(generator, n, (dim,), dtype, device), None)
    basis = q[:, None]
    alphas, betas = [], []
    for j in range(m):
        w = op(q)
        alpha = (w * q).sum(dim=1)
        w = w - alpha[:, None] * q - (betas[-1][:, None] * basis[:, -2] if j > 0 else 0)
        for _ in range(2):  # full reorthogonalisation against every earlier vector
            w = w - torch.einsum("njd,nj->nd", basis, torch.einsum("njd,nd->nj", basis, w))
        alphas.append(alpha)
        if j == m - 1:
            break
        beta = w.norm(dim=1)
        scale = alphas[0].abs().clamp_min(1e-30) if j == 0 else torch.stack(alphas).abs().amax(0).clamp_min(1e-30)
        broke = beta <= 1e-10 * scale  # invariant subspace found: continue with a fresh orthogonal vector
        fresh = _orthonormalize(_draw(generator, n, (dim,), dtype, device), basis)
        q = torch.where(broke[:, None], fresh, w / beta.clamp_min(1e-30)[:, None])
        beta = torch.where(broke, torch.zeros_like(beta), beta)
        betas.append(beta)
        basis = torch.cat([basis, q[:, None]], dim=1)
    k = len(alphas)
    t = torch.diag_embed(torch.stack(alphas, 1))
    if k > 1:
        b = torch.stack(betas, 1)
        t = t + torch.diag_embed(b, 1) + torch.diag_embed(b, -1)
    values, vectors = torch.linalg.eigh(t.double())
    ritz = torch.einsum("njd,njk->nkd", basis.double(), vectors).to(dtype)
    return values.to(dtype), ritz


def _subspace(op, v: torch.Tensor, iterations: int, shift: torch.Tensor | None):
    """Block power iteration on ``op`` (or ``shift - op``) from ``v`` (N, k, D); Rayleigh-Ritz at the end."""
    def apply(block):
        out = torch.stack([op(block[:, c]) for c in range(block.shape[1])], dim=1)
        return out if shift is None else shift[:, None, None] * block - out

    for _ in range(iterations):
        v = torch.linalg.qr(apply(v).transpose(1, 2))[0].transpose(1, 2)
    av = torch.stack([op(v[:, c]) for c in range(v.shape[1])], dim=1)
    small = torch.einsum("nid,njd->nij", v, av)
    values, vectors = torch.linalg.eigh(((small + small.transpose(1, 2)) / 2).double())
    return values.to(v.dtype), torch.einsum("nij,nid->njd", vectors.to(v.dtype), v)


@dataclasses.dataclass
class EigendistortionResult(Result):
    """Eigendistortions of a layer at each image.

    A :class:`insilico.results.Result`: ``save``/``load`` (``weights_only``),
    ``concat`` (along the images), ``plot(ax=)``, ``check(model)``.

    Attributes
    ----------
    reference : tensor (N, C, H, W)
        The images.
    distortions : tensor (N, K, C, H, W)
        Unit-norm eigenvectors of J^T J: the top ``k`` (largest eigenvalue
        first), then the bottom ``k`` (smallest last).
    eigenvalues : tensor (N, K)
        Matching eigenvalues (|J e|^2 for unit e), in descending order.
    indices : list of int
        Rank of each: 0, 1, ... from the top; -k ... -1 from the bottom.
    residuals : tensor (N, K)
        ``|J^T J e - lambda e| / lambda_max``: how converged each pair is.
    alpha : float
        L2 norm of the distortion in :attr:`images`.
    unit : str

    Tensors keep the model's dtype and are on its device.
    """

    sample_fields: ClassVar[tuple[str, ...]] = ("reference", "distortions", "eigenvalues", "residuals")

    reference: torch.Tensor
    distortions: torch.Tensor
    eigenvalues: torch.Tensor
    indices: list
    residuals: torch.Tensor
    alpha: float
    unit: str
    settings: dict = dataclasses.field(default_factory=dict)

    @property
    def images(self) -> torch.Tensor:
        """``clamp(reference + alpha * distortion, 0, 1)`` (N, K, C, H, W)."""
        return self.distorted(self.alpha)

    def distorted(self, alpha: float) -> torch.Tensor:
        """The images plus ``alpha`` times each distortion, clamped to [0, 1] (N, K, C, H, W)."""
        return (self.reference[:, None] + alpha * self.distortions).clamp(0, 1)

    def check(self, model: nn.Module) -> torch.Tensor:
        """``|J e|^2`` (N, K) of each saved distortion ``e``, re-evaluated on ``model`` at the saved images.

        Equal to :attr:`eigenvalues` (up to float rounding) for the model that made them.
        """
        n, k = self.distortions.shape[:2]
        with session(model, grad=True) as s:
            op = GramOperator(model, self.unit, s.inputs(self.reference))
            vectors = s.inputs(self.distortions).reshape(n, k, -1)
            values = torch.stack([(op.jvp(vectors[:, c]) ** 2).sum(dim=1) for c in range(k)], dim=1)
        return values.detach().to(self.eigenvalues.device)

    def plot(self, image: int = 0, alpha: float | None = None, ax=None):
        """One image and its distortions added at +alpha and -alpha (columns), with the distortions; returns the Figure.

        Rows: the distortion (grey = 0), image + alpha e, image - alpha e; one
        column per eigendistortion, titled with its rank and eigenvalue.
        """
        from .. import plot

        alpha = self.alpha if alpha is None else float(alpha)
        d = self.distortions[image].float().cpu()
        shown = 0.5 + 0.5 * d / d.flatten(1).abs().amax(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        ref = self.reference[image].float().cpu()
        tiles = torch.cat([ref[None], shown, ref[None], (ref + alpha * d).clamp(0, 1), ref[None],
                           (ref - alpha * d).clamp(0, 1)])
        k = d.shape[0]
        titles = (["image"] + [f"#{i} λ={float(v):.3g}" for i, v in zip(self.indices, self.eigenvalues[image])]
                  + [""] + [f"+{alpha:.3g} e" for _ in range(k)] + [""] + [f"-{alpha:.3g} e" for _ in range(k)])
        return plot.image_grid(tiles, titles=titles, ncols=k + 1, ax=ax)

    def __repr__(self) -> str:
        return (f"EigendistortionResult({self.reference.shape[0]} images, {self.unit!r}, ranks {self.indices}, "
                f"top eigenvalue median {float(self.eigenvalues[:, 0].median()):.4g})")


@register_tool("design", per_sample=True)
def eigendistortion(
    model: nn.Module,
    layer: UnitLike,
    images: torch.Tensor,
    *,
    k: int = 1,
    method: str = "lanczos",
    iterations: int | None = None,
    alpha: float | None = None,
    seed: int | None = 0,
    progress: bool = True,
) -> EigendistortionResult:
    """The ``k`` most and ``k`` least noticeable distortions of each image for ``layer`` (Berardino et al. 2017).

    Parameters
    ----------
    model : nn.Module
        Takes pixel-space images; put in eval mode for the call (mode restored).
    layer : str or Unit
        Any unit address (``"features.10"``, ``"features.10[12]"``, ``"layers.2@3"``).
    images : tensor (N, C, H, W)
        In [0, 1]; all handled in one batch.
    k : int
        Eigenvectors from each end (default 1).
    method : {"lanczos", "power"}
        Default "lanczos".
    iterations : int, optional
        Lanczos steps (default ``min(D, max(64, 4 k))``) or power iterations
        (default 100).
    alpha : float, optional
        L2 norm of the distortions added in ``result.images`` (default
        ``0.1 * sqrt(D)``: an RMS pixel change of 0.1).
    seed : int or None
        Start vectors: each image's from ``seed`` and the image's content
        (:func:`insilico.synthesis.seeds.content_key`), so an image's result is
        the same alone and in any batch.
    progress : bool
        Unused (the work is one batched loop); kept for a uniform signature.

    Returns
    -------
    EigendistortionResult
        Tensors on the model's device; ``reference`` and ``distortions`` in the model's dtype, ``eigenvalues`` and
        ``residuals`` in :func:`~insilico.performance.working_dtype` (float32 for a float16/bfloat16 model, whose
        Gram operator runs in float32 around the half model: its eigenvalues overflow float16).

    Raises
    ------
    StimulusError
        ``images`` not (N, C, H, W) floats in [0, 1], or an empty batch.
    UnitError, InsilicoError
        An unknown layer, a bad ``method``, ``k`` or ``iterations``, or a
        layer that does not depend on the image.

    Example
    -------
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> r = eigendistortion(model, "1", torch.rand(1, 1, 2, 2), progress=False)
    >>> w = model[1].weight.detach()
    >>> torch.allclose(r.eigenvalues[0], torch.linalg.eigvalsh(w.T @ w).flip(0)[[0, -1]], atol=1e-5)
    True
    """
    seed = run_seed(seed)
    if not isinstance(model, nn.Module):
        raise InsilicoError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if method not in METHODS:
        raise InsilicoError(f"method must be one of {METHODS}, not {method!r}")
    images = check_images(images)
    unit = Unit.parse(layer)
    probe = Probe(model)
    probe.units(unit)  # unknown modules fail now
    images = images.to(probe.device, probe.dtype)  # (moved again by the session: an inference tensor is copied)
    n, dim = images.shape[0], images[0].numel()
    k = int(k)
    if not 1 <= k <= dim // 2 + dim % 2:
        raise InsilicoError(f"k must be between 1 and {(dim + 1) // 2} for images of {dim} pixels, got {k}")
    generators = sample_generators(images, int(seed))  # per sample: the same alone or in a batch
    with session(model, grad=True) as s:  # eval, frozen parameters, gradients even under an outer no_grad
        images = s.inputs(images)
        op = GramOperator(model, unit, images)
        if method == "lanczos":
            m = min(dim, iterations or max(64, 4 * k))
            if m < 2 * k:
                raise InsilicoError(f"iterations={m} gives fewer than 2k={2 * k} Ritz vectors")
            values, vectors = lanczos(op, n, dim, m, generators, op.x.dtype, images.device)
            top_v, top_e = values[:, -k:].flip(1), vectors[:, -k:].flip(1)
            bot_v, bot_e = values[:, :k].flip(1), vectors[:, :k].flip(1)
        else:
            its = iterations or 100
            start = _draw(generators, n, (2 * k, dim), op.x.dtype, images.device)
            tv, te = _subspace(op, start[:, :k], its, None)
            top_v, top_e = tv.flip(1), te.flip(1)
            shift = top_v[:, 0] * 1.01
            bv, be = _subspace(op, start[:, k:], its, shift)
            bot_v, bot_e = bv.flip(1), be.flip(1)
            bot_v = torch.stack([(op(bot_e[:, c]) * bot_e[:, c]).sum(dim=1) for c in range(k)], dim=1)
            order = bot_v.argsort(dim=1, descending=True)
            bot_v = bot_v.gather(1, order)
            bot_e = bot_e.gather(1, order[..., None].expand_as(bot_e))
        values = torch.cat([top_v, bot_v], dim=1)
        vectors = torch.cat([top_e, bot_e], dim=1)
        vectors = vectors / vectors.norm(dim=2, keepdim=True).clamp_min(1e-30)
        # a deterministic sign: the largest-magnitude pixel is positive
        pick = vectors.abs().argmax(dim=2, keepdim=True)
        vectors = vectors * vectors.gather(2, pick).sign().where(vectors.gather(2, pick) != 0,
                                                                 torch.ones_like(pick, dtype=vectors.dtype))
        applied = torch.stack([op(vectors[:, c]) for c in range(vectors.shape[1])], dim=1)
        values = (applied * vectors).sum(dim=2)
        residuals = (applied - values[..., None] * vectors).norm(dim=2) / values[:, :1].abs().clamp_min(1e-30)
    alpha = 0.1 * math.sqrt(dim) if alpha is None else float(alpha)
    return EigendistortionResult(
        reference=images.detach(), distortions=vectors.detach().view(n, 2 * k, *images.shape[1:]).to(images.dtype),
        eigenvalues=values.detach(), indices=list(range(k)) + list(range(-k, 0)),
        residuals=residuals.detach(), alpha=alpha, unit=str(unit),
        settings={"method": method, "k": k, "iterations": iterations, "seed": seed, "model": type(model).__name__})


__all__ = ["EigendistortionResult", "GramOperator", "eigendistortion", "lanczos"]

