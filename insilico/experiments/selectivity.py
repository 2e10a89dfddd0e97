"""Tuning-curve models, fits, selectivity indices and the responsiveness criteria (pure numpy functions).

Definitions (what :class:`~insilico.experiments.TuningResult` reports)
--------------------------------------------------------------------
Every index is computed on *baseline-subtracted, rectified* responses
``r = max(R - R_blank, 0)``, where ``R_blank`` is the response to a blank
(mean-grey) screen, as in physiology, where selectivity is computed on the
evoked rate above the spontaneous rate (Ringach, Shapley & Hawken 2002;
Marques, Schrimpf & DiCarlo 2021, the Brain-Score V1 property benchmarks,
which record a blank stimulus for the baseline and rectify responses):

- **circular variance** ``CV = 1 - |sum_k r_k e^{2i th_k}| / sum_k r_k``
  (Ringach et al. 2002, J. Neurosci. 22:5639; 0 = responds at one
  orientation only, 1 = the same at every orientation);
- **orientation selectivity index** ``OSI = (r_pref - r_orth) / (r_pref + r_orth)``,
  ``r_orth`` 90 deg from the sampled peak (1 - the orthogonal-to-preferred
  ratio of Ringach et al. 2002 / Marques et al. 2021, mapped to [0, 1]);
  after a ReLU the orthogonal response is often exactly the blank's, so
  OSI = 1 is common and true for such units: circular variance is the graded
  measure (the reason Ringach et al. 2002 prefer it);
- **orientation bandwidth**: the half width at half height of the curve
  itself (:func:`half_width`: linear interpolation between the sampled
  orientations, on the circle, from the peak to where ``r`` falls to half of
  it on each side, averaged), model-free like the spline estimate of the
  Brain-Score benchmarks (Marques et al. 2021); De Valois, Yund & Hepler
  (1982), Vision Res. 22:531, report the full width (twice this);
- **preferred orientation**: the fitted von Mises peak, accepted only within
  one sampling step of the sampled peak (otherwise the sampled peak): the
  reported preference is never far from the curve it summarises;
- **preferred SF / SF bandwidth**: the peak and full width at half height
  (octaves) of a log-Gaussian (:func:`fit_log_gaussian`; De Valois, Albrecht
  & Thorell 1982, Vision Res. 22:545), accepted only within one step of the
  sampled peak; when the sampled peak lies on the first or last SF tested the
  range does not bracket it (``sf_peak_at_edge``) and no SF bandwidth is given;
- **SF bandwidth guard** (:func:`sf_bandwidth_guard`), like the orientation
  bandwidth's ``bandwidth_resolved``: the fitted bandwidth is reported only
  when the sampled curve falls to half its height on both sides of the peak
  within the tested SFs (else a flat low-pass or high-pass curve whose width
  the range does not show), is at least one SF sampling step (octaves) wide
  and at most the tested range; otherwise NaN and a reason
  (``sf_bandwidth_reason``);
- **F0, F1 and the modulation ratio** (:func:`phase_harmonics`; Skottun et
  al. 1991, Vision Res. 31:1079): over the sampled phases of the grating at
  the unit's preferred orientation and SF, ``F0`` is the mean response minus
  the blank response (blank-subtracted: the evoked mean, as Skottun et al.
  subtract the spontaneous rate) and ``F1`` the amplitude of the first
  harmonic, ``2 |sum_k R_k e^{-i phi_k}| / P`` (no baseline: a constant has
  none); exact discrete Fourier coefficients when the P >= 3 phases are
  evenly spaced over 360 deg (otherwise NaN). ``F1 / F0 > 1`` is a *simple*
  cell, else *complex* (:data:`SIMPLE_F1_F0`); a unit whose evoked mean is at
  or below 0 while it is modulated (F1 > 0) is simple (its ratio is infinite:
  ``modulation_ratio`` is NaN there). A half-wave rectified sinusoid has
  F1/F0 = pi/2, an energy unit (sum of squares of a quadrature pair) 0;
- **OSI saturated** (``osi_saturated``): the orthogonal response is at the
  blank's (its baseline-subtracted, rectified value is 0 within rounding), so
  OSI = 1 whatever the curve's shape: after a ReLU whose blank response is
  exactly 0 this is a floor effect, not sharper tuning than a V1 cell's; a
  histogram of OSI marks these units apart;
- **V1 comparison on the same selection**: De Valois, Yund & Hepler (1982)
  give the median orientation bandwidth over *all* cells, untuned ones counted
  at 360 deg; :func:`full_bandwidths_like_v1` counts every responsive unit,
  those whose curve never halves (or untuned ones) at 360 deg.

Responsiveness (:func:`responsiveness`): a unit is *responsive* when (1) it
is not silent (its responses to the blank, every grating and the natural
images, when given, differ by more than rounding: :data:`UNIT_PRECISION` of
its own largest response, and :data:`LAYER_PRECISION` of the largest response
of any unit measured in the same call, so a float residue is never a
response), (2) its peak grating response
exceeds the blank response by ``margin`` (default 0.2) times the unit's
response range on natural images (when given; else times ``|R_blank|``), the analogue of
Marques et al.'s threshold relative to the maximal response, and (3) its
tuning is reliable across grating phases: the correlation between the
orientation x SF grids measured with two interleaved halves of the phases
is at least ``min_reliability`` (applied when each half has at least 3
phases, i.e. 6 or more phases; a deterministic network has no trials, so
phase halves stand in for the split-half reliability of repeated trials).
Units that fail get NaN for every index and a reason.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.optimize import curve_fit

SILENT = "silent on the stimulus set"
NOT_DRIVEN = "not driven by gratings"
UNRELIABLE = "unreliable across grating phases"
#: Rounding, not a response: differences below this fraction of a unit's own largest |response| (at least 1)...
UNIT_PRECISION = 1e-6
#: ... or below this fraction of the largest |response| of any unit measured in the same call. A float32 sum
#: leaves residues up to ~1e-5 of its terms (a red-green opponent unit shown grey gratings answers 2e-7 to
#: 3e-6 by CPU, beside 25 from a luminance unit of its layer); the layer's scale is what those terms are.
LAYER_PRECISION = 1e-4
#: Skottun et al. (1991): a modulation ratio F1/F0 above 1 is a simple cell, below a complex one.
SIMPLE_F1_F0 = 1.0
SF_NARROW = "narrower than one SF sampling step"
SF_WIDE = "wider than the tested SF range"
SF_OPEN = "does not fall to half height on both sides within the tested SFs (low- or high-pass)"
SF_EDGE = "peak at the edge of the tested SFs"
SF_NO_FIT = "log-Gaussian fit failed or far from the sampled peak"
#: Full orientation bandwidth (deg) counted for untuned units, as De Valois, Yund & Hepler (1982) count them.
UNTUNED_FULL_BANDWIDTH = 360.0


def von_mises(theta: np.ndarray, mu: float, kappa: float, base: float, amp: float) -> np.ndarray:
    """``base + amp * exp(kappa * (cos 2(theta - mu) - 1))``, angles in radians (180 deg periodic)."""
    return base + amp * np.exp(kappa * (np.cos(2 * (theta - mu)) - 1.0))


def von_mises_hwhm(kappa: float) -> float:
    """Half width at half height (degrees) of :func:`von_mises` above its baseline; 90 if it never halves."""
    c = 1.0 - math.log(2.0) / kappa if kappa > 0 else -2.0
    return 90.0 if c <= -1.0 else math.degrees(0.5 * math.acos(c))


def _half_turn(degrees: float) -> float:
    """An orientation in [0, 180): ``x % 180`` rounds a tiny negative angle up to 180.0, which is 0."""
    wrapped = float(degrees) % 180.0
    return 0.0 if wrapped >= 180.0 else wrapped


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

    p0 = (mu0, math.log(k0), curve.min(), span)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                p, _ = curve_fit(model, theta, curve, p0=p0, jac=jac, method="lm", maxfev=600)
            except RuntimeError:  # a near-cosine curve sends kappa to 0 and the amplitude to infinity: bound kappa
                low, high = [-np.inf, math.log(0.05), -np.inf, -np.inf], [np.inf, math.log(100.0), np.inf, np.inf]
                p0 = (mu0, float(np.clip(p0[1], low[1] + 1e-6, high[1] - 1e-6)), p0[2], p0[3])
                p, _ = curve_fit(model, theta, curve, p0=p0, jac=jac, method="trf", bounds=(low, high), max_nfev=600)
    except (RuntimeError, ValueError):
        return (_half_turn(np.rad2deg(mu0)),) + (np.nan,) * 5
    mu, log_k, b, a = p
    k = float(np.exp(min(log_k, 50.0)))
    err = np.sum((von_mises(theta, mu, k, b, a) - curve) ** 2)
    r2 = 1.0 - err / np.sum((curve - curve.mean()) ** 2)
    if a <= 0:  # a trough, not a peak: no preferred orientation
        return (_half_turn(np.rad2deg(mu0)), np.nan, float(r2), float(b), float(a), k)
    return (_half_turn(np.rad2deg(mu)), von_mises_hwhm(k), float(r2), float(b), float(a), k)


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
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # a vanishing sigma: the fit is judged below
        r2 = 1.0 - np.sum((log_gaussian(x, m, s, b, a) - curve) ** 2) / np.sum((curve - curve.mean()) ** 2)
    if a <= 0 or not x.min() - 1.0 <= m <= x.max() + 1.0:
        return (float(2 ** x[curve.argmax()]), np.nan, float(r2), float(b), float(a), s)
    return (float(2**m), float(2 * s * math.sqrt(2 * math.log(2))), float(r2), float(b), float(a), s)


def circular_variance(orientations_deg: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """``1 - |sum r e^{2i theta}| / sum r`` per row of ``curves`` (U, O), responses clipped at 0 (Ringach et al. 2002).

    Give baseline-subtracted responses (``R - R_blank``); NaN for a row with no response above 0.
    """
    r = np.clip(np.atleast_2d(curves), 0, None)
    total = r.sum(1)
    vec = np.abs((r * np.exp(2j * np.deg2rad(orientations_deg))).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 1.0 - vec / total, np.nan)


def preferred_and_orthogonal(orientations_deg: np.ndarray, curves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(r_pref, r_orth)`` per row of ``curves`` (U, O), responses clipped at 0: the sampled peak and the
    sample nearest 90 deg from it."""
    r = np.clip(np.atleast_2d(np.asarray(curves, float)), 0, None)
    oris = np.asarray(orientations_deg, float)
    pref = r.argmax(1)
    target = (oris[pref] + 90.0) % 180.0
    dist = np.abs(((oris[None, :] - target[:, None]) + 90.0) % 180.0 - 90.0)
    rows = np.arange(len(r))
    return r[rows, pref], r[rows, dist.argmin(1)]


def selectivity_index(orientations_deg: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """OSI ``(r_pref - r_orth) / (r_pref + r_orth)`` per row, responses clipped at 0; r_orth 90 deg from the peak.

    Give baseline-subtracted responses (``R - R_blank``); NaN for a row with no response above 0.
    """
    top, bottom = preferred_and_orthogonal(orientations_deg, curves)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(top > 0, (top - bottom) / (top + bottom), np.nan)


def osi_saturated(orientations_deg: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """(U,) bool: the orthogonal response of the baseline-subtracted ``curves`` (U, O) is at the floor (0 after
    rectification, within :data:`UNIT_PRECISION` of the peak), so OSI = 1 by the floor, not by the curve's shape.

    >>> osi_saturated([0, 45, 90, 135], [[2.0, 1.0, 0.0, 1.0], [2.0, 1.0, 0.5, 1.0]]).tolist()
    [True, False]
    """
    top, bottom = preferred_and_orthogonal(orientations_deg, curves)
    return (top > 0) & (bottom <= UNIT_PRECISION * np.maximum(1.0, top))


def full_bandwidths_like_v1(bandwidth_hwhm: np.ndarray, responsive: np.ndarray) -> np.ndarray:
    """Full orientation bandwidths (deg) of every responsive unit, as De Valois, Yund & Hepler (1982) count cells:
    twice the half width, and :data:`UNTUNED_FULL_BANDWIDTH` (360) where none is given (untuned, or the curve never
    halves). Compare their median with the V1 median over all cells.

    >>> full_bandwidths_like_v1(np.array([10.0, np.nan, 20.0]), np.array([True, True, False])).tolist()
    [20.0, 360.0]
    """
    bw = np.asarray(bandwidth_hwhm, float)[np.asarray(responsive, bool)]
    return np.where(np.isfinite(bw), 2.0 * bw, UNTUNED_FULL_BANDWIDTH)


def even_orientations(orientations_deg) -> bool:
    """True when the orientations are distinct values evenly spaced over [0, 180) (to 0.01 deg, in any order): the
    grid circular variance and OSI sum over (the circle, its orthogonal).

    >>> even_orientations([0, 45, 90, 135]), even_orientations([0, 10, 20, 30, 40])
    (True, False)
    """
    o = np.sort(np.asarray(orientations_deg, float) % 180.0)
    if len(o) < 2:
        return False
    gaps = np.diff(np.append(o, o[0] + 180.0))
    return bool(np.allclose(gaps, 180.0 / len(o), atol=1e-2))


def even_phases(phases_deg) -> bool:
    """True when the phases are P >= 3 distinct values evenly spaced over 360 deg (the DFT is then exact)."""
    p = np.sort(np.asarray(phases_deg, float) % 360.0)
    if len(p) < 3:
        return False
    gaps = np.diff(np.append(p, p[0] + 360.0))
    return bool(np.allclose(gaps, 360.0 / len(p), atol=1e-6))


def phase_harmonics(responses: np.ndarray, baseline: np.ndarray, phases_deg) -> tuple[np.ndarray, np.ndarray]:
    """``(F0, F1)`` of responses ``(U, P)`` over grating phase: the mean minus ``baseline`` (U,), and the
    first-harmonic amplitude ``2 |sum_k R_k e^{-i phi_k}| / P``; NaN unless the phases are :func:`even_phases`.

    >>> r = np.maximum(np.cos(np.deg2rad(np.arange(0, 360, 45.0))), 0)[None]
    >>> f0, f1 = phase_harmonics(r, np.zeros(1), np.arange(0, 360, 45.0))
    >>> round(float(f1[0] / f0[0]), 4)  # the sampled half-wave rectified cosine (pi/2 = 1.5708 in the limit)
    1.6569
    """
    responses = np.atleast_2d(np.asarray(responses, float))
    if not even_phases(phases_deg):
        nan = np.full(len(responses), np.nan)
        return nan, nan.copy()
    f1 = phase_reduce(responses, phases_deg, "f1")
    return responses.mean(-1) - np.asarray(baseline, float), f1


def cell_type(f0: np.ndarray, f1: np.ndarray, responsive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(modulation_ratio F1/F0, type "simple" | "complex" | "")`` per unit (Skottun et al. 1991).

    Simple: ``F1 / F0 > SIMPLE_F1_F0``, or ``F1 > 0`` with an evoked mean ``F0 <= 0`` (ratio infinite: NaN in
    ``modulation_ratio``); complex otherwise; "" for units that are not responsive or whose F0/F1 are NaN.
    """
    f0, f1 = np.asarray(f0, float), np.asarray(f1, float)
    known = np.asarray(responsive, bool) & np.isfinite(f0) & np.isfinite(f1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(known & (f0 > 0), f1 / np.where(f0 > 0, f0, 1.0), np.nan)
        simple = known & np.where(f0 > 0, f1 > SIMPLE_F1_F0 * f0, f1 > 0)
    return ratio, np.where(simple, "simple", np.where(known, "complex", "")).astype(str)


def sf_bandwidth_guard(sfs: np.ndarray, curve: np.ndarray, bandwidth: float) -> str:
    """Why a fitted SF ``bandwidth`` (full width, octaves) of the baseline-subtracted SF ``curve`` is not reported,
    or "" when it is: the curve must fall to half its peak on both sides within the tested ``sfs``
    (:data:`SF_OPEN`), the width be at least the largest log2 step (:data:`SF_NARROW`) and at most the tested range
    (:data:`SF_WIDE`); NaN is :data:`SF_NO_FIT`.

    >>> sf_bandwidth_guard([1, 2, 4, 8, 16], [0.1, 0.5, 1.0, 0.5, 0.1], 2.0)
    ''
    >>> sf_bandwidth_guard([1, 2, 4, 8, 16], [1.0, 1.0, 0.9, 0.5, 0.1], 6.0)
    'does not fall to half height on both sides within the tested SFs (low- or high-pass)'
    """
    x = np.log2(np.asarray(sfs, float))
    order = np.argsort(x)
    x, r = x[order], np.clip(np.asarray(curve, float)[order], 0, None)
    if not np.isfinite(bandwidth):
        return SF_NO_FIT
    top = int(r.argmax())
    half = r[top] / 2
    if not (np.any(r[:top] <= half) and np.any(r[top + 1:] <= half)):
        return SF_OPEN
    if bandwidth < float(np.diff(x).max()) - 1e-9:
        return SF_NARROW
    if bandwidth > float(x[-1] - x[0]) + 1e-9:
        return SF_WIDE
    return ""


def half_width(orientations_deg: np.ndarray, curve: np.ndarray, resolution: float = 0.05) -> float:
    """Half width at half height (degrees) of a rectified orientation curve's peak; NaN if it never halves.

    The curve is interpolated linearly between the sampled orientations on
    the 180 deg circle; the width is the mean of the distances from the peak
    to the first points at or below half the peak on each side.
    """
    oris = np.asarray(orientations_deg, float) % 180.0
    order = np.argsort(oris)
    oris, r = oris[order], np.clip(np.asarray(curve, float)[order], 0, None)
    if not np.all(np.isfinite(r)) or r.max() <= 0:
        return float("nan")
    grid = np.arange(0.0, 180.0, resolution)
    y = np.interp(grid, np.concatenate([oris - 180.0, oris, oris + 180.0]), np.tile(r, 3))
    top = int(y.argmax())
    below = y <= y[top] / 2
    n = len(grid)
    sides = []
    for direction in (1, -1):
        hit = next((d for d in range(1, n // 2 + 1) if below[(top + direction * d) % n]), None)
        if hit is None:
            return float("nan")
        sides.append(hit * resolution)
    return float(np.mean(sides))


def phase_reduce(responses: np.ndarray, phases_deg, how: str) -> np.ndarray:
    """Responses ``(..., P)`` over grating phase -> one number: ``"max"``, ``"mean"`` (F0) or ``"f1"`` (amplitude)."""
    if how == "mean":
        return responses.mean(-1)
    if how == "max":
        return responses.max(-1)
    angles = np.deg2rad(np.asarray(phases_deg, float))
    return 2 * np.abs((responses * np.exp(-1j * angles)).sum(-1)) / responses.shape[-1]


def phase_reliability(responses: np.ndarray, baseline: np.ndarray, phases_deg, how: str) -> np.ndarray:
    """Per unit: correlation of the rectified ``tuning - baseline`` grids of two interleaved phase halves.

    ``responses`` is (U, O, S, P) with phases sorted; halves are the even and
    odd phase indices. NaN when a half has fewer than 3 phases (a half of two
    opposite phases cannot see a rectified unit in quadrature) or a grid is flat.
    """
    phases = np.asarray(phases_deg, float)
    order = np.argsort(phases % 360.0)
    responses, phases = responses[..., order], phases[order]
    n_units = responses.shape[0]
    if len(phases) < 6:
        return np.full(n_units, np.nan)
    a = np.clip(phase_reduce(responses[..., 0::2], phases[0::2], how) - baseline[:, None, None], 0, None)
    b = np.clip(phase_reduce(responses[..., 1::2], phases[1::2], how) - baseline[:, None, None], 0, None)
    a, b = a.reshape(n_units, -1), b.reshape(n_units, -1)
    a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    norm = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    one_flat = ((a * a).sum(1) > 0) != ((b * b).sum(1) > 0)   # tuned in one half only: 0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, (a * b).sum(1) / norm, np.where(one_flat, 0.0, np.nan))


def responsiveness(peak: np.ndarray, baseline: np.ndarray, low: np.ndarray, high: np.ndarray,
                   natural_range: np.ndarray | None, reliability: np.ndarray, margin: float,
                   min_reliability: float) -> tuple[np.ndarray, np.ndarray]:
    """``(responsive (U,) bool, reason (U,) str)`` by the criteria of the module docstring.

    ``peak``: best phase-reduced grating response; ``low``/``high``: the
    smallest and largest response to any stimulus shown (blank, gratings at
    every phase, natural images); ``natural_range``: max - min over natural
    images, or None; ``reliability``: :func:`phase_reliability` (NaN: not applied).
    """
    extent = np.maximum(np.abs(high), np.abs(low))
    recorded = float(extent.max()) if extent.size else 0.0
    scale_tol = np.maximum(UNIT_PRECISION * np.maximum(1.0, extent), LAYER_PRECISION * recorded)
    silent = (high - low) <= scale_tol
    scale = natural_range if natural_range is not None else np.abs(baseline)
    threshold = baseline + np.maximum(margin * scale, scale_tol)
    driven = peak > threshold
    reliable = ~(reliability < min_reliability)  # NaN: not applied
    reason = np.where(silent, SILENT, np.where(~driven, NOT_DRIVEN, np.where(~reliable, UNRELIABLE, "")))
    return (reason == ""), reason.astype(str)


def spontaneous(baseline: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """(U,) bool: the blank response lies above the lowest response to any stimulus shown (``low``) by more than
    rounding (:data:`UNIT_PRECISION` of the unit's largest |response|): activity that a stimulus can lower.

    A unit after a ReLU whose blank response is 0, its floor, has none: no image can inhibit it below the blank,
    and "inhibiting" images of it are scored before the nonlinearity (state so) or not shown.

    >>> spontaneous(np.array([0.0, 0.5]), np.array([0.0, 0.0]), np.array([2.0, 2.0])).tolist()
    [False, True]
    """
    extent = np.maximum(np.abs(high), np.abs(low))
    return np.asarray(baseline, float) > np.asarray(low, float) + UNIT_PRECISION * np.maximum(1.0, extent)


def circular_distance(a: np.ndarray, b: np.ndarray, period: float = 180.0) -> np.ndarray:
    """``|a - b|`` on a circle of ``period`` (degrees)."""
    return np.abs((np.asarray(a, float) - np.asarray(b, float) + period / 2) % period - period / 2)


def median(x: np.ndarray) -> float:
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    return float(np.median(x)) if len(x) else float("nan")


__all__ = ["NOT_DRIVEN", "SF_EDGE", "SF_NARROW", "SF_NO_FIT", "SF_OPEN", "SF_WIDE", "SILENT", "SIMPLE_F1_F0",
           "UNRELIABLE", "cell_type", "circular_distance", "circular_variance", "even_phases", "fit_log_gaussian",
           "fit_von_mises", "full_bandwidths_like_v1", "half_width", "log_gaussian", "osi_saturated",
           "phase_harmonics", "phase_reduce", "phase_reliability", "preferred_and_orthogonal", "responsiveness",
           "selectivity_index", "sf_bandwidth_guard", "spontaneous", "von_mises", "von_mises_hwhm"]
