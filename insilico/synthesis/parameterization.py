"""Parameterizations: how the optimised numbers become pixel-space images (N, C, H, W) in [0, 1].

============ =================================================================
Pixel        the pixels themselves; ``squash="clamp"`` keeps them in [0, 1] by
             projection after every step (PGD-style, for metamers/attacks),
             ``"sigmoid"`` optimises logits
Fourier      a spectrum with 1/f^decay amplitude scaling (lucid's "fft"
             parameterization), optionally in a decorrelated colour space
             (:mod:`insilico.synthesis.color`), squashed by sigmoid or clamp
============ =================================================================

Every parameterization keeps one parameter tensor whose axis 0 is the sample,
so the engine can freeze samples row by row, and can start from noise (drawn
from one ``torch.Generator`` per sample, so sample ``i`` does not depend on
the batch it is in) or from given images: :meth:`Parameterization.assign`
inverts the mapping, so a Fourier/sigmoid parameterization starts exactly at
the given image (up to the sigmoid's ``EPS`` margin at 0 and 1).

Any channel count and any size work; colour decorrelation needs 3 channels
(``color="auto"`` uses it for RGB and the identity otherwise).

Example
-------
>>> import torch
>>> from insilico.synthesis.parameterization import Fourier
>>> images = torch.rand(2, 3, 20, 30)
>>> p = Fourier.from_images(images)
>>> float((p().detach() - images).abs().max()) < 1e-4
True
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import StimulusError
from ..performance import working_dtype
from ..pixels import check_images
from .color import normalized_color_matrix

SQUASHES = ("sigmoid", "clamp")
#: Margin kept from 0 and 1 when inverting a sigmoid (logit of 0 or 1 is infinite).
EPS = 1e-4
#: Standard deviation of the initial noise around mid-grey, in parameter units (lucid uses 0.01).
INIT_SD = 0.01


class Parameterization(nn.Module):
    """Base class: ``forward()`` returns images (N, C, H, W) in [0, 1] from ``self.param`` (N, ...).

    Parameters
    ----------
    n : int
        Number of images.
    shape : (C, H, W)
        Image shape; any channel count and size.
    squash : {"sigmoid", "clamp"}
        How values are kept in [0, 1].
    """

    def __init__(self, n: int, shape: Sequence[int], squash: str):
        super().__init__()
        if squash not in SQUASHES:
            raise StimulusError(f"squash must be one of {SQUASHES}, not {squash!r}")
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3 or min(shape) < 1:
            raise StimulusError(f"image shape must be (channels, height, width), got {shape}")
        self.n, self.shape, self.squash = int(n), shape, squash

    # the optimised tensor; subclasses register it as `param`
    param: nn.Parameter

    def _squash(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x) if self.squash == "sigmoid" else x.clamp(0.0, 1.0)

    def _unsquash(self, images: torch.Tensor) -> torch.Tensor:
        if self.squash == "sigmoid":
            return torch.logit(images.clamp(EPS, 1.0 - EPS))
        return images

    def assign(self, images: torch.Tensor, mask: torch.Tensor | None = None, check: bool = True) -> None:
        """Set the parameters so that ``forward()`` gives ``images`` (only the rows where ``mask`` is True).

        ``check=False`` skips the range check (which synchronises a GPU); the engine uses it every step.
        """
        if check:
            images = check_images(images, self.shape, self.n)
        images = images.to(self.param.device, self.param.dtype)
        with torch.no_grad():
            new = self._invert(images)
            if mask is not None:
                new = torch.where(mask.view(-1, *[1] * (new.ndim - 1)), new, self.param)
            self.param.copy_(new)

    def _invert(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def project_(self) -> None:
        """Hard constraint applied after each step (in place); default: none."""

    def blur_(self, sigma: float) -> None:  # pragma: no cover - overridden
        """Blur the images by a Gaussian of ``sigma`` pixels, in place on the parameters."""
        raise NotImplementedError

    @classmethod
    def from_images(cls, images: torch.Tensor, **options) -> Parameterization:
        """A parameterization that starts exactly at ``images`` (N, C, H, W) in [0, 1]."""
        images = check_images(images)
        param = cls(images.shape[0], images.shape[1:], **options).to(images.device, images.dtype)
        param.assign(images)
        return param

    def spec(self) -> dict:
        """JSON-able description (for a result's settings)."""
        return {"kind": type(self).__name__, "n": self.n, "shape": list(self.shape), "squash": self.squash}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.spec().items() if k != "kind")


class Pixel(Parameterization):
    """Images are the parameters (``squash="clamp"``: projected to [0, 1] after every step) or their logits.

    Parameters
    ----------
    n, shape : see :class:`Parameterization`.
    squash : {"clamp", "sigmoid"}
        Default "clamp".
    generators : list of torch.Generator, optional
        One per sample, for the initial noise: mid-grey plus ``INIT_SD`` Gaussian
        noise (in logit units for sigmoid). Default: mid-grey, no noise.

    Example
    -------
    >>> p = Pixel(2, (1, 4, 6))
    >>> p().tolist() == torch.full((2, 1, 4, 6), 0.5).tolist()
    True
    """

    def __init__(self, n: int, shape: Sequence[int], squash: str = "clamp",
                 generators: Sequence[torch.Generator] | None = None):
        super().__init__(n, shape, squash)
        start = 0.5 if squash == "clamp" else 0.0
        noise = _noise((n, *self.shape), generators, INIT_SD)
        self.param = nn.Parameter(start + noise)

    def forward(self) -> torch.Tensor:
        return self._squash(self.param)

    def _invert(self, images):
        return self._unsquash(images)

    def project_(self) -> None:
        if self.squash == "clamp":
            with torch.no_grad():
                self.param.clamp_(0.0, 1.0)

    def blur_(self, sigma: float) -> None:
        with torch.no_grad():
            self.param.copy_(gaussian_blur(self.param, sigma))


class Fourier(Parameterization):
    """A 1/f-scaled spectrum per channel, optionally colour-decorrelated (lucid's fft + decorrelate).

    ``image = squash(color @ irfft2(scale * spectrum) / 4)`` with
    ``scale = 1 / max(f, 1 / max(H, W)) ** decay`` (``f`` in cycles per
    pixel), an orthonormal FFT and ``color`` the normalised colour matrix.

    Parameters
    ----------
    n, shape : see :class:`Parameterization`.
    decay : float
        Power of the 1/f amplitude scaling (default 1.0; 0 = white).
    color : "auto", None or tensor (C, C)
        "auto" (default): the photos' colour square root
        (:func:`insilico.synthesis.color.normalized_color_matrix`) for 3
        channels, identity otherwise; None: identity; or your own matrix.
    squash : {"sigmoid", "clamp"}
        Default "sigmoid".
    generators : list of torch.Generator, optional
        One per sample; the spectrum starts as ``INIT_SD`` Gaussian noise.
        Default: all zeros (mid-grey).

    Example
    -------
    >>> p = Fourier(3, (1, 32, 48), decay=1.5)
    >>> tuple(p().shape), p.color is None
    ((3, 1, 32, 48), True)
    """

    def __init__(self, n: int, shape: Sequence[int], decay: float = 1.0, color: str | torch.Tensor | None = "auto",
                 squash: str = "sigmoid", generators: Sequence[torch.Generator] | None = None):
        super().__init__(n, shape, squash)
        c, h, w = self.shape
        self.decay = float(decay)
        fy = torch.fft.fftfreq(h).view(-1, 1)
        fx = torch.fft.rfftfreq(w).view(1, -1)
        freq = (fy**2 + fx**2).sqrt()
        self.register_buffer("freq", freq, persistent=False)
        self.register_buffer("scale", 1.0 / freq.clamp_min(1.0 / max(h, w)) ** self.decay, persistent=False)
        if isinstance(color, str):
            if color != "auto":
                raise StimulusError(f"color must be 'auto', None or a (C, C) tensor, not {color!r}")
            color = normalized_color_matrix() if c == 3 else None
        if color is not None:
            color = torch.as_tensor(color, dtype=torch.float32)
            if tuple(color.shape) != (c, c):
                raise StimulusError(f"a colour matrix for {c} channels must be ({c}, {c}), got {tuple(color.shape)}")
            self.register_buffer("color", color, persistent=False)
            self.register_buffer("color_inverse", torch.linalg.inv(color), persistent=False)
        else:
            self.color = None
        self.param = nn.Parameter(_noise((n, c, h, w // 2 + 1, 2), generators, INIT_SD))

    _MAGIC = 4.0  # irfft2 output is divided by this, keeping the initial images near mid-grey (as lucid)

    def forward(self) -> torch.Tensor:
        _, h, w = self.shape
        spectrum = torch.view_as_complex(self.param.to(working_dtype(self.param.dtype)))  # no half complex FFT
        x = torch.fft.irfft2(spectrum * self.scale, s=(h, w), norm="ortho") / self._MAGIC
        if self.color is not None:
            x = torch.einsum("ij,njhw->nihw", self.color.to(x.dtype), x)
        return self._squash(x.to(self.param.dtype))

    def _invert(self, images):
        x = self._unsquash(images.to(working_dtype(images.dtype)))
        if self.color is not None:
            x = torch.einsum("ij,njhw->nihw", self.color_inverse.to(x.dtype), x)
        spectrum = torch.fft.rfft2(x * self._MAGIC, norm="ortho") / self.scale
        return torch.view_as_real(spectrum).contiguous()

    def blur_(self, sigma: float) -> None:
        """Exact (circular) Gaussian blur: the spectrum times exp(-2 pi^2 sigma^2 f^2)."""
        with torch.no_grad():
            gain = torch.exp(-2.0 * math.pi**2 * sigma**2 * self.freq**2).to(self.param.dtype)
            self.param.mul_(gain[..., None])

    def spec(self) -> dict:
        return {**super().spec(), "decay": self.decay, "decorrelated": self.color is not None}


PARAMETERIZATIONS = {"pixel": Pixel, "fourier": Fourier}


def make(kind: str | type, n: int, shape: Sequence[int], generators=None, **options) -> Parameterization:
    """A parameterization by name (``"pixel"`` or ``"fourier"``) or class."""
    cls = PARAMETERIZATIONS.get(kind) if isinstance(kind, str) else kind
    if cls is None:
        raise StimulusError(f"unknown parameterization {kind!r}; use one of {sorted(PARAMETERIZATIONS)} or a class")
    return cls(n, shape, generators=generators, **options)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) with reflect padding (radius 3 sigma)."""
    if sigma <= 0:
        return x
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    pad_h, pad_w = min(radius, x.shape[2] - 1), min(radius, x.shape[3] - 1)
    y = F.pad(x, (pad_w, pad_w, pad_h, pad_h), mode="reflect") if max(pad_h, pad_w) > 0 else x
    ky, kx = kernel[radius - pad_h: radius + pad_h + 1], kernel[radius - pad_w: radius + pad_w + 1]
    ky = (ky / ky.sum()).view(1, 1, -1, 1).repeat(c, 1, 1, 1)
    kx = (kx / kx.sum()).view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    y = F.conv2d(y, ky, groups=c)
    return F.conv2d(y, kx, groups=c)


def _noise(shape: tuple, generators: Sequence[torch.Generator] | None, sd: float) -> torch.Tensor:
    """``sd`` Gaussian noise, row ``i`` drawn from ``generators[i]`` (zeros without generators)."""
    if generators is None:
        return torch.zeros(shape)
    if len(generators) != shape[0]:
        raise StimulusError(f"need one generator per sample: {shape[0]} samples, {len(generators)} generators")
    return torch.stack([torch.randn(shape[1:], generator=g) * sd for g in generators])


__all__ = ["EPS", "INIT_SD", "Fourier", "PARAMETERIZATIONS", "Parameterization", "Pixel", "check_images",
           "gaussian_blur", "make"]
