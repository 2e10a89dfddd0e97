"""Orientation and spatial-frequency tuning of every channel of a layer, with gratings.

``orientation_tuning(model, "features.0")`` shows full-field sine gratings
(orientation x spatial frequency x phase, as :func:`insilico.stimuli.gratings`)
and reads each channel at the centre of its feature map (``reduce="center"``),
all channels in one batched forward pass per batch of gratings. Per unit it
reports:

- the orientation tuning curve at the unit's best SF, and a fitted von Mises
  function of the *doubled* angle (orientation is 180 deg periodic),
  ``r(th) = b + a * exp(k * (cos 2(th - mu) - 1))``: preferred orientation
  ``mu`` and bandwidth, the half width at half height above baseline,
  ``0.5 * arccos(1 - ln 2 / k)`` (90 deg when the curve never halves);
- the SF tuning curve at the unit's best orientation, and a fitted
  log-Gaussian ``r(f) = b + a * exp(-(log2 f - log2 f0)^2 / (2 s^2))``:
  preferred SF ``f0`` and the full bandwidth at half height in octaves,
  ``2 s sqrt(2 ln 2)``;
- circular variance ``1 - |sum r e^{2i th}| / sum r`` (Ringach et al. 2002)
  and the orientation selectivity index ``(r_pref - r_orth) / (r_pref + r_orth)``,
  both on responses clipped at 0 (firing rates); a unit is counted as
  orientation *tuned* when OSI >= 1/3 (preferred response at least twice the
  orthogonal one).

Responses over phase become one number by their maximum (``phase_reduce="max"``,
the default: the peak response over a phase sweep, meaningful for linear,
rectified and phase-invariant units alike), their mean (``"mean"``, the F0 of
a drifting grating; flat for a linear unit such as a conv layer before its
ReLU) or their first harmonic (``"f1"``, the simple-cell modulation amplitude). Fits use :func:`scipy.optimize.curve_fit`.

Macaque V1 reference values (used by :meth:`TuningResult.plot_population`)
--------------------------------------------------------------------------
- Orientation bandwidth (full width at half amplitude) ranges from 6 deg to
  360 deg (untuned) with a median near 40 deg; the foveal sample has more
  horizontal and vertical preferred orientations than oblique ones.
  De Valois, Yund & Hepler (1982), Vision Res. 22:531-544 (abstract).
- Peak SF at 2-5 deg eccentricity ranges from 0.5 to 8 cycles/deg; SF full
  bandwidth in the foveal representation is 1.4 octaves on average.
  Foster, Gaska, Nagler & Pollen (1985), J. Physiol. 365:331-363 (abstract);
  De Valois, Albrecht & Thorell (1982), Vision Res. 22:545-559, report the
  same broad range of peak SFs at a given eccentricity.

Degrees per pixel come from ``fov`` (the visual angle spanned by the image);
without it SFs stay in cycles per image and the SF reference is not drawn.

Example
-------
>>> import torch
>>> from insilico.experiments import orientation_tuning
>>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 7, padding=3), torch.nn.ReLU())
>>> res = orientation_tuning(net, "0", size=32, orientations=range(0, 180, 15), sfs=[2, 4, 8], progress=False)
>>> res.curves.shape, res.preferred_orientation.shape
((4, 12), (4,))
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np
import torch
from scipy.optimize import curve_fit

from .. import stimuli as stim
from ..errors import InsilicoError
from .results import Result, new_axes
from .runs import as_units, input_shape, record_units

PHASE_REDUCTIONS = ("max", "mean", "f1")
#: Reference values for macaque V1 (see the module docstring for the sources).
MACAQUE_V1 = {
    "orientation_bandwidth_full_median_deg": 40.0,      # De Valois, Yund & Hepler 1982
    "orientation_bandwidth_full_range_deg": (6.0, 360.0),
    "peak_sf_range_cpd": (0.5, 8.0),                   # Foster et al. 1985 (2-5 deg eccentricity)
    "sf_bandwidth_foveal_mean_octaves": 1.4,            # Foster et al. 1985
}
TUNED_OSI = 1.0 / 3.0


def default_sfs(size: int, n: int = 6) -> list[float]:
    """``n`` log-spaced spatial frequencies from 2 cycles per image to 0.4 x size (below Nyquist)."""
    return [round(float(f), 3) for f in np.geomspace(2.0, 0.4 * size, n)]


def orientation_tuning(
    model: torch.nn.Module,
    units: Any,
    size: int | Sequence[int] | None = None,
    orientations: Sequence[float] = tuple(range(0, 180, 5)),
    sfs: Sequence[float] | None = None,
    phases: Sequence[float] = tuple(range(0, 360, 45)),
    contrast: float = 1.0,
    fov: float | None = None,
    phase_reduce: str = "max",
    batch_size: int = 288,
    progress: bool = True,
) -> "TuningResult":
    """Orientation and SF tuning of units with full-field sine gratings.

    Parameters
    ----------
    model : nn.Module
        Takes pixel-space images (N, C, size, size).
    units : str or list of str
        ``"features.0"`` (every channel, read at the centre of the map),
        ``"features.0[3]"``, ``"features.0[3,7,7]"`` (one neuron), or a list.
        Recurrent modules need a step: ``"layers.0@3"``.
    size : int or (C, H, W), optional
        Image side in pixels, or the input size as ``model.input_size`` spells
        it (square images); default ``model.input_size``.
    orientations : list of float, degrees
        As :func:`insilico.stimuli.gratings` (0 = vertical bars); default every
        5 deg over [0, 180).
    sfs : list of float, cycles per image
        Default :func:`default_sfs` (6 log-spaced values).
    phases : list of float, degrees
        Default 8 phases.
    contrast : float
        Michelson contrast of the gratings.
    fov : float, optional
        Degrees of visual angle spanned by the image; adds cycles/deg values
        and the macaque reference to :meth:`TuningResult.plot_population`.
    phase_reduce : {"max", "mean", "f1"}
        How responses over phase become one number (see the module docstring).
    batch_size : int
        Gratings per forward pass.
    progress : bool
        Show a progress bar.

    Returns
    -------
    TuningResult
    """
    if phase_reduce not in PHASE_REDUCTIONS:
        raise InsilicoError(f"phase_reduce must be one of {PHASE_REDUCTIONS}, not {phase_reduce!r}")
    channels, size = input_shape(model, size)
    orientations = [float(o) for o in orientations]
    sfs = [float(f) for f in (sfs if sfs is not None else default_sfs(size))]
    phases = [float(p) for p in phases]
    if len(orientations) < 4:
        raise InsilicoError("orientation tuning needs at least 4 orientations to fit a curve")
    gratings = stim.gratings(size=size, orientation=orientations, sf=sfs, phase=phases, contrast=contrast,
                             channels=channels)
    parsed = as_units(units)
    values, names = record_units(model, gratings, parsed, batch_size=batch_size, progress=progress,
                                 desc="gratings")
    n_o, n_s, n_p = len(orientations), len(sfs), len(phases)
    grid = values.numpy().astype(np.float64).reshape(n_o, n_s, n_p, -1)
    responses = np.moveaxis(grid, -1, 0)  # (U, O, S, P)
    if phase_reduce == "mean":
        tuning = responses.mean(-1)
    elif phase_reduce == "max":
        tuning = responses.max(-1)
    else:
        angles = np.deg2rad(phases)
        tuning = 2 * np.abs((responses * np.exp(-1j * angles)).sum(-1)) / n_p
    settings = dict(units=[str(u) for u in parsed], size=size, orientations=orientations, sfs=sfs, phases=phases,
                    contrast=contrast, fov=fov, phase_reduce=phase_reduce, model=type(model).__name__)
    return TuningResult.from_tuning(tuning, responses, names, settings)


class TuningResult(Result):
    """Tuning of U units: curves, fits and indices, one entry per unit.

    Attributes
    ----------
    units : (U,) str
        The address of each unit (channel, y, x spelled out).
    tuning : (U, O, S)
        Response per orientation and SF (reduced over phase).
    curves : (U, O)
        Orientation tuning curve at each unit's best SF.
    sf_curves : (U, S)
        SF tuning curve at each unit's best orientation.
    preferred_orientation : (U,) degrees in [0, 180)
    bandwidth : (U,) degrees
        Half width at half height of the fitted von Mises (orientation).
    circular_variance, osi : (U,)
    preferred_sf : (U,) cycles per image; ``preferred_sf_cpd`` with ``fov``.
    sf_bandwidth : (U,) octaves (full width at half height)
    orientation_r2, sf_r2 : (U,) goodness of the fits
    tuned : (U,) bool, OSI >= 1/3
    """

    sample_arrays = ("units", "tuning", "responses", "curves", "sf_curves", "preferred_orientation", "bandwidth",
                     "orientation_r2", "orientation_fit", "circular_variance", "osi", "tuned", "preferred_sf",
                     "sf_bandwidth", "sf_r2", "sf_fit", "preferred_sf_cpd")

    @classmethod
    def from_tuning(cls, tuning: np.ndarray, responses: np.ndarray, names: list[str], settings: dict) -> "TuningResult":
        oris = np.asarray(settings["orientations"], float)
        sfs = np.asarray(settings["sfs"], float)
        n_units = tuning.shape[0]
        flat = tuning.reshape(n_units, -1)
        best = flat.argmax(1)
        best_o, best_s = np.unravel_index(best, tuning.shape[1:])
        curves = tuning[np.arange(n_units), :, best_s]
        sf_curves = tuning[np.arange(n_units), best_o, :]
        ori = np.array([fit_von_mises(oris, c) for c in curves])  # (U, 5): mu, hwhm, r2, b, a ... kappa
        sf = np.array([fit_log_gaussian(sfs, c) for c in sf_curves])
        cv, osi = circular_variance(oris, curves), selectivity_index(oris, curves)
        arrays = dict(
            units=np.array(names), tuning=tuning, responses=responses, curves=curves, sf_curves=sf_curves,
            preferred_orientation=ori[:, 0], bandwidth=ori[:, 1], orientation_r2=ori[:, 2],
            orientation_fit=ori[:, 3:], circular_variance=cv, osi=osi, tuned=osi >= TUNED_OSI,
            preferred_sf=sf[:, 0], sf_bandwidth=sf[:, 1], sf_r2=sf[:, 2], sf_fit=sf[:, 3:],
        )
        if settings.get("fov"):
            arrays["preferred_sf_cpd"] = sf[:, 0] / float(settings["fov"])
        return cls(arrays, settings)

    def table(self) -> dict[str, np.ndarray]:
        keys = ["units", "preferred_orientation", "bandwidth", "orientation_r2", "circular_variance", "osi",
                "tuned", "preferred_sf", "sf_bandwidth", "sf_r2"]
        if "preferred_sf_cpd" in self.arrays:
            keys.append("preferred_sf_cpd")
        return {k: self.arrays[k] for k in keys}

    @property
    def fraction_tuned(self) -> float:
        """Fraction of responsive units with OSI >= 1/3."""
        responsive = np.isfinite(self.osi)
        return float(self.tuned[responsive].mean()) if responsive.any() else float("nan")

    def summary(self) -> dict:
        """Population medians and the fraction of tuned units."""
        t = self.tuned
        return {
            "units": int(len(self.units)),
            "fraction_tuned": self.fraction_tuned,
            "median_bandwidth_hwhm_deg": _median(self.bandwidth[t]),
            "median_osi": _median(self.osi),
            "median_circular_variance": _median(self.circular_variance),
            "median_preferred_sf_cpi": _median(self.preferred_sf),
            "median_sf_bandwidth_oct": _median(self.sf_bandwidth),
        }

    # -- figures ------------------------------------------------------------------------
    def plot(self, units: Sequence[int] | None = None, ax=None, normalize: bool = True):
        """Orientation tuning curves (dots) and von Mises fits (lines) of some units (default: up to 6)."""
        fig, ax = new_axes(ax)
        oris = np.asarray(self.settings["orientations"], float)
        chosen = list(units) if units is not None else list(range(min(6, len(self.units))))
        dense = np.linspace(0, 180, 361)
        for i in chosen:
            curve = self.curves[i]
            scale = np.nanmax(np.abs(curve)) if normalize and np.nanmax(np.abs(curve)) > 0 else 1.0
            line = ax.plot(oris, curve / scale, "o", ms=3)[0]
            b, a, k = self.orientation_fit[i]
            if np.isfinite(self.preferred_orientation[i]) and np.isfinite(k):
                fit = von_mises(np.deg2rad(dense), np.deg2rad(self.preferred_orientation[i]), k, b, a)
                ax.plot(dense, fit / scale, "-", color=line.get_color(),
                        label=f"{self.units[i]}: {self.preferred_orientation[i]:.0f}°, OSI {self.osi[i]:.2f}")
        ax.set_xlabel("orientation (deg; 0 = vertical bars)")
        ax.set_ylabel("response" + (" (normalised)" if normalize else ""))
        ax.set_xlim(0, 180)
        ax.legend(fontsize=6, frameon=False)
        return fig

    def plot_sf(self, units: Sequence[int] | None = None, ax=None, normalize: bool = True):
        """SF tuning curves at the preferred orientation, with log-Gaussian fits."""
        fig, ax = new_axes(ax)
        sfs = np.asarray(self.settings["sfs"], float)
        chosen = list(units) if units is not None else list(range(min(6, len(self.units))))
        dense = np.geomspace(sfs.min(), sfs.max(), 200)
        for i in chosen:
            curve = self.sf_curves[i]
            scale = np.nanmax(np.abs(curve)) if normalize and np.nanmax(np.abs(curve)) > 0 else 1.0
            line = ax.plot(sfs, curve / scale, "o", ms=3)[0]
            b, a, s = self.sf_fit[i]
            if np.isfinite(self.preferred_sf[i]):
                ax.plot(dense, log_gaussian(np.log2(dense), np.log2(self.preferred_sf[i]), s, b, a) / scale, "-",
                        color=line.get_color(), label=f"{self.units[i]}: {self.preferred_sf[i]:.1f} c/img")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("spatial frequency (cycles per image)")
        ax.set_ylabel("response" + (" (normalised)" if normalize else ""))
        ax.legend(fontsize=6, frameon=False)
        return fig

    def plot_population(self, fig=None):
        """Histograms of preferred orientation, bandwidth, peak SF and SF bandwidth, with macaque V1 references."""
        import matplotlib.pyplot as plt

        fig = fig or plt.figure(figsize=(10, 2.8))
        axes = fig.subplots(1, 4)
        tuned = self.tuned
        axes[0].hist(self.preferred_orientation[tuned] % 180, bins=np.arange(0, 181, 15), color="0.4")
        axes[0].set_xlabel("preferred orientation (deg)")
        axes[0].set_ylabel(f"tuned units ({int(tuned.sum())}/{len(tuned)})")
        for cardinal in (0, 90, 180):
            axes[0].axvline(cardinal, color="tab:red", ls=":", lw=1)
        axes[0].set_title("macaque fovea: more at 0°/90°", fontsize=7)
        full = 2 * self.bandwidth[tuned]
        axes[1].hist(full[np.isfinite(full)], bins=np.arange(0, 181, 10), color="0.4")
        axes[1].axvline(MACAQUE_V1["orientation_bandwidth_full_median_deg"], color="tab:red", ls="--",
                        label="macaque V1 median")
        axes[1].set_xlabel("orientation bandwidth (full, deg)")
        axes[1].legend(fontsize=6, frameon=False)
        fov = self.settings.get("fov")
        good = np.isfinite(self.preferred_sf) & (self.sf_r2 > 0.5)
        peak = self.preferred_sf[good] / (fov if fov else 1.0)
        if len(peak):
            axes[2].hist(peak, bins=np.geomspace(max(peak.min(), 1e-3) / 1.5, peak.max() * 1.5, 12), color="0.4")
        axes[2].set_xscale("log")
        axes[2].set_xlabel("peak SF (" + ("cycles/deg" if fov else "cycles/image") + ")")
        if fov:
            lo, hi = MACAQUE_V1["peak_sf_range_cpd"]
            axes[2].axvspan(lo, hi, color="tab:red", alpha=0.15, label="macaque V1 range")
            axes[2].legend(fontsize=6, frameon=False)
        bw = self.sf_bandwidth[good]
        axes[3].hist(bw[np.isfinite(bw)], bins=np.arange(0, 6.01, 0.4), color="0.4")
        axes[3].axvline(MACAQUE_V1["sf_bandwidth_foveal_mean_octaves"], color="tab:red", ls="--",
                        label="macaque V1 (fovea)")
        axes[3].set_xlabel("SF bandwidth (octaves)")
        axes[3].legend(fontsize=6, frameon=False)
        fig.tight_layout()
        return fig


# ---------------------------------------------------------------------------------------
# Curve models, fits and indices (pure functions)
# ---------------------------------------------------------------------------------------
def von_mises(theta: np.ndarray, mu: float, kappa: float, base: float, amp: float) -> np.ndarray:
    """``base + amp * exp(kappa * (cos 2(theta - mu) - 1))``, angles in radians (180 deg periodic)."""
    return base + amp * np.exp(kappa * (np.cos(2 * (theta - mu)) - 1.0))


def von_mises_hwhm(kappa: float) -> float:
    """Half width at half height (degrees) of :func:`von_mises` above its baseline; 90 if it never halves."""
    c = 1.0 - math.log(2.0) / kappa if kappa > 0 else -2.0
    return 90.0 if c <= -1.0 else math.degrees(0.5 * math.acos(c))


def fit_von_mises(orientations_deg: np.ndarray, curve: np.ndarray) -> tuple:
    """Fit :func:`von_mises` to a tuning curve: ``(mu_deg, hwhm_deg, r2, base, amp, kappa)`` (NaN if flat).

    Starts from the vector-average orientation and the concentration that
    matches the curve's mean resultant length (Banerjee et al. 2005), and
    fits ``log kappa`` with Levenberg-Marquardt and an analytic Jacobian, so
    one fit takes about a millisecond.
    """
    theta = np.deg2rad(orientations_deg)
    curve = np.asarray(curve, float)
    span = curve.max() - curve.min()
    if not np.all(np.isfinite(curve)) or span <= 1e-12 * max(1.0, abs(curve.max())):
        return (np.nan,) * 6
    above = curve - curve.min()
    vector = np.sum(above * np.exp(2j * theta))
    mu0 = np.angle(vector) / 2 if abs(vector) > 0 else theta[curve.argmax()]
    length = min(abs(vector) / above.sum(), 0.98)
    k0 = float(np.clip(length * (2 - length**2) / (1 - length**2), 0.1, 100.0))

    def model(t, mu, log_k, b, a):
        return von_mises(t, mu, np.exp(log_k), b, a)

    def jac(t, mu, log_k, b, a):
        k = np.exp(log_k)
        c = np.cos(2 * (t - mu))
        e = np.exp(k * (c - 1.0))
        return np.stack([a * e * k * 2 * np.sin(2 * (t - mu)), a * e * (c - 1.0) * k, np.ones_like(t), e], 1)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p, _ = curve_fit(model, theta, curve, p0=(mu0, math.log(k0), curve.min(), span), jac=jac,
                             method="lm", maxfev=600)
    except (RuntimeError, ValueError):
        return (float(np.rad2deg(mu0) % 180.0),) + (np.nan,) * 5
    mu, log_k, b, a = p
    k = float(np.exp(min(log_k, 50.0)))
    err = np.sum((von_mises(theta, mu, k, b, a) - curve) ** 2)
    r2 = 1.0 - err / np.sum((curve - curve.mean()) ** 2)
    if a <= 0:  # a trough, not a peak: no preferred orientation
        return (float(np.rad2deg(mu0) % 180.0), np.nan, float(r2), float(b), float(a), k)
    return (float(np.rad2deg(mu) % 180.0), von_mises_hwhm(k), float(r2), float(b), float(a), k)


def log_gaussian(log2_f: np.ndarray, log2_f0: float, sigma: float, base: float, amp: float) -> np.ndarray:
    """``base + amp * exp(-(log2 f - log2 f0)^2 / (2 sigma^2))`` (sigma in octaves)."""
    return base + amp * np.exp(-((log2_f - log2_f0) ** 2) / (2 * sigma**2))


def fit_log_gaussian(sfs: np.ndarray, curve: np.ndarray) -> tuple:
    """Fit :func:`log_gaussian`: ``(f0, full bandwidth in octaves, r2, base, amp, sigma)`` (NaN if flat).

    ``sigma`` is fitted as its logarithm with Levenberg-Marquardt; a peak
    outside the sampled range more than one octave is reported as NaN.
    """
    x = np.log2(np.asarray(sfs, float))
    curve = np.asarray(curve, float)
    span = curve.max() - curve.min()
    if len(x) < 4 or not np.all(np.isfinite(curve)) or span <= 1e-12 * max(1.0, abs(curve.max())):
        return (float(2 ** x[curve.argmax()]) if len(x) and span > 0 else np.nan,) + (np.nan,) * 5

    def model(v, m, log_s, b, a):
        return log_gaussian(v, m, np.exp(log_s), b, a)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p, _ = curve_fit(model, x, curve, p0=(x[curve.argmax()], 0.0, curve.min(), span), method="lm",
                             maxfev=800)
    except (RuntimeError, ValueError):
        return (float(2 ** x[curve.argmax()]),) + (np.nan,) * 5
    m, log_s, b, a = p
    s = float(np.exp(min(log_s, 10.0)))
    r2 = 1.0 - np.sum((log_gaussian(x, m, s, b, a) - curve) ** 2) / np.sum((curve - curve.mean()) ** 2)
    if a <= 0 or not x.min() - 1.0 <= m <= x.max() + 1.0:
        return (float(2 ** x[curve.argmax()]), np.nan, float(r2), float(b), float(a), s)
    return (float(2**m), float(2 * s * math.sqrt(2 * math.log(2))), float(r2), float(b), float(a), s)


def circular_variance(orientations_deg: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """``1 - |sum r e^{2i theta}| / sum r`` per row of ``curves`` (U, O), responses clipped at 0."""
    r = np.clip(np.atleast_2d(curves), 0, None)
    total = r.sum(1)
    vec = np.abs((r * np.exp(2j * np.deg2rad(orientations_deg))).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 1.0 - vec / total, np.nan)


def selectivity_index(orientations_deg: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """OSI ``(r_pref - r_orth) / (r_pref + r_orth)`` per row, responses clipped at 0; r_orth 90 deg from the peak."""
    r = np.clip(np.atleast_2d(curves), 0, None)
    oris = np.asarray(orientations_deg, float)
    pref = r.argmax(1)
    target = (oris[pref] + 90.0) % 180.0
    dist = np.abs(((oris[None, :] - target[:, None]) + 90.0) % 180.0 - 90.0)
    orth = dist.argmin(1)
    rows = np.arange(len(r))
    top, bottom = r[rows, pref], r[rows, orth]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(top + bottom > 0, (top - bottom) / (top + bottom), np.nan)


def _median(x: np.ndarray) -> float:
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    return float(np.median(x)) if len(x) else float("nan")
