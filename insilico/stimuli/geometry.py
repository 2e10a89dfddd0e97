"""Rendering on a parameter grid: image coordinates, oriented waves, apertures, and the final StimulusSet.

Each helper works on all N stimuli at once: parameters are length-N tensors
(from a :class:`~insilico.stimuli.grids._Grid`) broadcast against one
coordinate grid. Conventions (centre, orientation, phase, spatial frequency
units) are those of the package docstring, :mod:`insilico.stimuli`.
"""
from __future__ import annotations

import difflib
import math

import numpy as np
import torch

from ..errors import StimulusError
from .grids import _Grid, _check_choice, _numbers
from .stimulus_set import StimulusSet


def _coords(grid: _Grid, size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-stimulus coordinates relative to ``center``, in fractions of the image side.

    Returns X of shape (N, 1, W) (rightwards) and Y of shape (N, H, 1) (upwards).
    """
    pix = (torch.arange(size, dtype=torch.float64) - size // 2) / size
    c = grid.column("center", fn=lambda p: p)  # (N, 2)
    x = pix[None, :] - (c[:, 0:1] - 0.5)
    y = -(pix[None, :] - (c[:, 1:2] - 0.5))
    return (x.to(device, torch.float32)[:, None, :], y.to(device, torch.float32)[:, :, None])


def _sf_cycles_per_image(grid: _Grid, size: int, sf_unit: str, fov: float | None, key: str = "sf") -> torch.Tensor:
    if sf_unit not in ("cpi", "cpd"):
        close = difflib.get_close_matches(str(sf_unit), ["cpi", "cpd"], n=1)
        raise StimulusError(
            f"unknown sf_unit {sf_unit!r}; use 'cpi' (cycles per image) or 'cpd' (cycles per degree, needs fov)."
            + (f" Did you mean {close[0]!r}?" if close else "")
        )
    if fov is not None and (isinstance(fov, bool) or not isinstance(fov, (int, float, np.number)) or not fov > 0
                            or not math.isfinite(fov)):
        raise StimulusError(
            f"fov (degrees of visual angle spanned by the image) must be a positive number, got {fov!r}."
        )
    if sf_unit == "cpd" and fov is None:
        raise StimulusError("sf_unit='cpd' needs fov=, the degrees of visual angle the image spans (e.g. fov=8).")
    _numbers(grid, key, 0.0, None, allow_none=(key != "sf"))
    scale = float(fov) if sf_unit == "cpd" else 1.0
    sf = grid.column(key, fn=lambda v: math.nan if v is None else v) * scale
    top = torch.nan_to_num(sf, nan=0.0).max().item() if len(sf) else 0.0
    if top > size / 2 + 1e-9:
        raise StimulusError(
            f"{key} = {top / scale:g} {sf_unit} is {top:g} cycles per image, above the Nyquist limit of "
            f"{size / 2:g} cycles for size={size}; lower {key} or raise size."
        )
    return sf


def _finish(lum: torch.Tensor, channels: int, params: list[dict]) -> StimulusSet:
    """(N, H, W) luminance -> StimulusSet; ``params`` must be JSON-clean (built from a _Grid)."""
    lum = lum.clamp_(0.0, 1.0)
    images = lum.unsqueeze(1)
    if channels == 3:
        images = images.expand(-1, 3, -1, -1).contiguous()
    return StimulusSet._trusted(images, params)


def _aperture(lum: torch.Tensor, grid: _Grid, X: torch.Tensor, Y: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Set every pixel farther than ``aperture`` from the centre to the mean luminance."""
    _numbers(grid, "aperture", 0.0, None, allow_none=True)
    if all(v is None for v in grid.options["aperture"]):
        return lum
    r = grid.column("aperture", fn=lambda v: math.inf if v is None else v).to(lum.device, torch.float32)
    outside = (X * X + Y * Y) > (r * r)[:, None, None]
    return torch.where(outside, mean[:, None, None].expand_as(lum), lum)


def _rotated(grid: _Grid, X: torch.Tensor, Y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates rotated by each stimulus's orientation: (across, along) the orientation, (N, H, W) each."""
    th = torch.deg2rad(grid.column("orientation"))
    c = torch.cos(th).to(X.device, torch.float32)[:, None, None]
    s = torch.sin(th).to(X.device, torch.float32)[:, None, None]
    return X * c + Y * s, Y * c - X * s


def _wave(grid: _Grid, X, Y, sf, orientation_deg, phase_deg, device) -> torch.Tensor:
    """cos(2*pi*sf*(x cos(th) + y sin(th)) + phase), (N, H, W), computed separably.

    cos(a + b) = cos a cos b - sin a sin b with a depending on x only and b on
    y only, so only N*(H + W) trigonometric evaluations are needed.
    """
    th = torch.deg2rad(orientation_deg)
    k = 2 * math.pi * sf
    kx = (k * torch.cos(th)).to(device, torch.float32)[:, None, None]
    ky = (k * torch.sin(th)).to(device, torch.float32)[:, None, None]
    ph = torch.deg2rad(phase_deg).to(device, torch.float32)[:, None, None]
    a = kx * X + ph  # (N, 1, W)
    b = ky * Y  # (N, H, 1)
    out = torch.cos(a) * torch.cos(b)
    out.addcmul_(torch.sin(a), torch.sin(b), value=-1.0)
    return out


def _apply_wave_shape(grid: _Grid, w: torch.Tensor) -> torch.Tensor:
    _check_choice(grid, "wave", ("sine", "square"))
    if "square" not in grid.options["wave"]:
        return w
    sq = torch.where(w >= 0, 1.0, -1.0)
    if "sine" not in grid.options["wave"]:
        return sq
    is_sq = (grid.column("wave", fn=lambda v: v == "square") > 0).to(w.device)[:, None, None]
    return torch.where(is_sq, sq, w)
