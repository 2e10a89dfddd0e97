"""Orientation and spatial-frequency tuning of every channel of a layer, with gratings and a blank.

``orientation_tuning(model, "features.0")`` shows full-field sine gratings
(orientation x spatial frequency x phase, as :func:`insilico.stimuli.gratings`)
and a blank (mean-grey) screen, and reads each channel at the centre of its
feature map (a token layer at its centre patch token: the one rule of every
experiment, :func:`insilico.layers.at_centre`), all channels in one batched forward
pass per batch of stimuli that stops after the layer. The default grid is
sized to a time budget from the model's arithmetic up to the layer
(``budget=``, :data:`GRIDS`; ``settings["grid"]`` records the choice): the
full 36 orientations x 8 SFs x 8 phases for a small network, fewer through a
ResNet or a ViT at 224 px. It tunes the unit a neuroscientist means: a Conv or
Linear address is moved onto the nonlinearity that follows it
(``features.3`` -> ``features.4``, its ReLU; :func:`~.runs.after_nonlinearity`);
``raw=True`` keeps the address as given. Per unit it reports:

- the blank response (baseline) and whether the unit is *responsive*: not
  silent, driven above baseline by a margin relative to its response range on
  natural images (``natural=``) or to the baseline, and reliable across
  grating phases; otherwise a reason ("silent on the stimulus set", "not
  driven by gratings", "unreliable across grating phases") and NaN for every
  index: no selectivity number is reported for a unit that fails;
- on baseline-subtracted, rectified responses: OSI, circular variance
  (Ringach et al. 2002), orientation bandwidth (half width at half height of the
  curve; De Valois, Yund & Hepler 1982), preferred orientation (only for
  tuned units, OSI >= 1/3, and always within one sampling step of the
  curve's peak), ``osi_saturated`` (the orthogonal response at the blank's:
  OSI = 1 by the floor), preferred SF and SF bandwidth (log-Gaussian; De
  Valois, Albrecht & Thorell 1982; NaN with ``sf_bandwidth_reason`` where the
  grid does not resolve it), and ``sf_peak_at_edge`` when the tested SFs do
  not bracket the peak; F0, F1, F1/F0 and ``cell_type`` (simple / complex,
  Skottun et al. 1991; "unresolved" when the SF peak is at the edge, where the
  SF bandwidth is withheld too); ``spontaneous`` (a blank response that a stimulus
  can lower). The definitions and their sources are in
  :mod:`insilico.experiments.selectivity`.

Phase: every unit's F0 (evoked mean over the sampled phases, blank-subtracted), F1 (first-harmonic amplitude)
and modulation ratio F1/F0 at its preferred orientation and SF are reported always, with the simple (F1/F0 > 1)
/ complex split of Skottun et al. (1991), ``cell_type``. The tuning curves and indices read every unit alike
through ``phase_reduce``; the default is **not** Skottun et al.'s per-type choice (F1 for simple, F0 for
complex cells) but the maximum over phase (``"max"``: the peak response over a phase sweep, defined for linear,
rectified and phase-invariant units alike and on the same scale as the blank, so one baseline subtraction and
one responsiveness criterion serve both types). ``"mean"`` is the F0 of a drifting grating (flat for a linear
unit such as a conv layer before its ReLU), ``"f1"`` the simple-cell modulation amplitude, and ``"skottun"``
reads each unit as a V1 paper would: F1 for simple units, F0 for complex ones (``tuning - baseline`` is then F1
or the evoked F0; the colour axis is still chosen by the phase maximum).
Fits use :func:`scipy.optimize.curve_fit`.

Macaque V1 reference values (used by :meth:`TuningResult.plot_population`)
--------------------------------------------------------------------------
- Orientation bandwidth (full width at half amplitude) ranges from 6 deg to
  360 deg (untuned) with a median near 40 deg over all cells, untuned ones
  included (so :meth:`TuningResult.plot_population` and ``summary()["median_bandwidth_full_all_deg"]``
  count every responsive unit, untuned at 360 deg); the foveal sample has more
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
>>> res.curves.shape, res.preferred_orientation.shape, str(res.units[0])
((4, 12), (4,), '1[0,16,16]')
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from .. import stimuli as stim
from ..errors import InsilicoError
from ..layers import image_size
from ..options import Options
from ..plan import Plan
from ..registry import register_tool
from ..plot.images import new_axes
from .results import Result
from .budget import DEFAULT_BUDGET, fit, seconds_per_stimulus
from .runs import after_nonlinearity, as_units, record_units
from .selectivity import (
    SF_EDGE, SF_NO_FIT, cell_type, circular_distance, circular_variance, even_orientations, even_phases,
    fit_log_gaussian, fit_von_mises,
    full_bandwidths_like_v1, half_width, log_gaussian, median as _median, osi_saturated, phase_harmonics,
    phase_reduce as _phase_reduce, phase_reliability, responsiveness, selectivity_index, sf_bandwidth_guard,
    spontaneous, von_mises, von_mises_hwhm,
)

PHASE_REDUCTIONS = ("max", "mean", "f1", "skottun")
#: Reference values for macaque V1 (see the module docstring for the sources).
MACAQUE_V1 = {
    "orientation_bandwidth_full_median_deg": 40.0,      # De Valois, Yund & Hepler 1982
    "orientation_bandwidth_full_range_deg": (6.0, 360.0),
    "peak_sf_range_cpd": (0.5, 8.0),                   # Foster et al. 1985 (2-5 deg eccentricity)
    "sf_bandwidth_foveal_mean_octaves": 1.4,            # Foster et al. 1985
}
TUNED_OSI = 1.0 / 3.0
#: ``cell_type`` of a unit whose SF peak is at the edge of the tested range: F1/F0 not read at a bracketed optimum.
UNRESOLVED = "unresolved"
#: Colour axes of the gratings as RGB modulation directions (uncalibrated approximations of the luminance,
#: L-M and S-(L+M) cone-opponent axes of Derrington, Krauskopf & Lennie 1984): at contrast 1 the red-green
#: grating swings R and G in opposition, the blue-yellow one B against R+G, with the mean grey kept.
COLOUR_AXES = {"luminance": (1.0, 1.0, 1.0), "red-green": (1.0, -1.0, 0.0), "blue-yellow": (-0.5, -0.5, 1.0)}
#: Default responsiveness criteria (see :mod:`insilico.experiments.selectivity`).
MARGIN = 0.2
MIN_RELIABILITY = 0.5


def default_sfs(size: int, n: int = 8) -> list[float]:
    """``n`` log-spaced spatial frequencies from 1 cycle per image to 0.4 x size (below Nyquist).

    The widest range a ``size``-pixel image shows well, so that the peak of
    most units is bracketed; ``sf_peak_at_edge`` flags the others.
    """
    return [round(float(f), 3) for f in np.geomspace(1.0, 0.4 * size, n)]


#: The ladder of default grids (orientations, SFs, phases), largest first: :func:`default_grid` takes the first that
#: fits the time budget. Every grid keeps 4+ orientations and 4+ SFs (the curve fits); all but the last keep 6+
#: phases (the phase-reliability criterion).
GRIDS = ((36, 8, 8), (18, 8, 8), (12, 8, 8), (12, 6, 6), (8, 6, 6), (8, 5, 6), (6, 4, 6), (4, 4, 4))


#: How to write each grid dimension, for the message that refuses a scalar (a count or one value is ambiguous).
_EXAMPLES = {"orientations": "[i * 180 / 4 for i in range(4)] for 4 orientations (degrees)",
             "sfs": "[2, 4, 8] (cycles per image)", "phases": "[0, 90, 180, 270] (degrees)"}


def default_grid(model: torch.nn.Module, units: list, example: torch.Tensor, orientations=None, sfs=None,
                 phases=None, n_colours: int = 1, budget: float | None = DEFAULT_BUDGET,
                 plan: Plan | None = None) -> tuple:
    """``(orientations, sfs, phases, record)``: the grid to show, and how it was chosen.

    Given any of ``orientations``, ``sfs``, ``phases``, those are used and the
    others take the full defaults (``GRIDS[0]``): ``record["rule"] ==
    "explicit"``. Else, with ``budget=None``, the full grid (``"full"``);
    else the largest of :data:`GRIDS` whose ``(O x S x P x n_colours + 1)``
    gratings fit ``budget`` seconds at
    :func:`~insilico.experiments.budget.seconds_per_stimulus` (``"budget"``;
    ``record["fits"]`` is False when even the smallest does not fit).
    Orientations are evenly spaced over [0, 180), phases over [0, 360), SFs
    are :func:`default_sfs` of the image side. ``plan`` is the call's
    :class:`~insilico.plan.Plan` (its survey counted the FLOPs); default one surveying ``example``.
    """
    size = int(example.shape[-1])
    for name, given in (("orientations", orientations), ("sfs", sfs), ("phases", phases)):
        if given is not None and (isinstance(given, (str, bytes)) or not hasattr(given, "__iter__")):
            raise InsilicoError(f"orientation_tuning: {name}= takes a list of values, not {given!r}: e.g. "
                                f"{_EXAMPLES[name]} (None: the default grid)")

    def values(grid):
        o, s, p = grid
        return ([round(i * 180.0 / o, 3) for i in range(o)] if orientations is None else list(orientations),
                default_sfs(size, s) if sfs is None else list(sfs),
                [round(i * 360.0 / p, 3) for i in range(p)] if phases is None else list(phases))

    if orientations is not None or sfs is not None or phases is not None or budget is None:
        rule = "full" if orientations is None and sfs is None and phases is None else "explicit"
        return values(GRIDS[0]) + ({"rule": rule},)
    cost = seconds_per_stimulus(model, units, example, plan=plan)
    count = lambda g: g[0] * g[1] * g[2] * n_colours + 1
    grid, fits = fit(GRIDS, count, cost["seconds"], float(budget))
    record = {"rule": "budget", "budget_s": float(budget), "fits": fits, "grid": list(grid), "stimuli": count(grid),
              "seconds_per_stimulus": cost["seconds"], "flops_per_stimulus": cost["flops"], "device": cost["device"],
              "estimated_s": count(grid) * cost["seconds"]}
    if not fits:
        warnings.warn(f"orientation_tuning: even the smallest default grid ({count(grid)} gratings) takes about "
                      f"{record['estimated_s']:.3g} s, over the budget of {budget:.3g} s; pass budget=None or a grid "
                      "to choose yourself", stacklevel=3)
    return values(grid) + (record,)


@dataclass(frozen=True)
class TuningOptions(Options):
    """The method of :func:`orientation_tuning` (not its stimulus dimensions), checked when built.

    Attributes
    ----------
    phase_reduce : {"max", "mean", "f1", "skottun"}
        How responses over phase become one number (default "max"; "skottun": F1 for simple units, F0 for
        complex ones; see the module docstring).
    natural : images (N, C, H, W) or StimulusSet, optional
        Natural images: each unit's response range on them sets the margin of
        the "driven" criterion (default: the blank response sets it).
    margin : float
        A responsive unit's peak exceeds its blank response by ``margin`` x its
        natural-image range (or x ``|blank response|``) (default 0.2).
    min_reliability : float
        Least correlation between the tuning grids of two interleaved phase
        halves (applied with 6 or more phases; default 0.5).
    raw : bool
        True: tune the addresses as given (e.g. a conv output before its
        ReLU); default False moves Conv / Linear units onto the following
        nonlinearity (:func:`~insilico.experiments.runs.after_nonlinearity`).
    budget : float or None
        Seconds of forward passes the default grid may take (default
        :data:`~insilico.experiments.budget.DEFAULT_BUDGET`). When none of
        ``orientations``, ``sfs``, ``phases`` is given, the grid is the
        largest of :data:`GRIDS` (orientations x SFs x phases, from
        36 x 8 x 8 down to 4 x 4 x 4) whose gratings x ``colours`` fit it,
        by the model's arithmetic up to the units
        (:func:`~insilico.experiments.budget.seconds_per_stimulus`: counted
        FLOPs at a nominal device throughput, not timed, so the same call
        picks the same grid on every machine of a device kind). ``None``:
        the full 36 x 8 x 8 grid. Given any of the three, you choose the
        grid: the others take their full defaults. The choice and the
        estimate are in ``result.settings["grid"]``.
    fov : float, optional
        Degrees of visual angle spanned by the image; adds cycles/deg values
        and the macaque reference to :meth:`TuningResult.plot_population`.

    Example
    -------
    >>> TuningOptions(phase_reduce="f1", budget=None).phase_reduce
    'f1'
    >>> TuningOptions(phase_reduce="median")
    Traceback (most recent call last):
    ...
    insilico.errors.InsilicoError: phase_reduce must be one of ('max', 'mean', 'f1', 'skottun'), not 'median'
    """

    phase_reduce: str = "max"
    natural: Any = None
    margin: float = MARGIN
    min_reliability: float = MIN_RELIABILITY
    raw: bool = False
    budget: float | None = DEFAULT_BUDGET
    fov: float | None = None

    def validate(self) -> TuningOptions:
        """Check the method's settings; returns ``self``."""
        if self.phase_reduce not in PHASE_REDUCTIONS:
            raise InsilicoError(f"phase_reduce must be one of {PHASE_REDUCTIONS}, not {self.phase_reduce!r}")
        for name in ("budget", "fov"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                          and value > 0):
                raise InsilicoError(f"{name} must be a number > 0 or None, not {value!r}")
        return self


@register_tool("experiment", takes_images=False, per_sample=True)
def orientation_tuning(
    model: torch.nn.Module,
    units: Any,
    size: int | Sequence[int] | None = None,
    orientations: Sequence[float] | None = None,
    sfs: Sequence[float] | None = None,
    phases: Sequence[float] | None = None,
    contrast: float = 1.0,
    *,
    colours: Sequence[str] = ("luminance",),
    batch_size: int = 288,
    progress: bool = True,
    options: TuningOptions | None = None,
    **option_overrides,
) -> "TuningResult":
    """Orientation and SF tuning of units with full-field sine gratings and a blank baseline.

    Parameters
    ----------
    model : nn.Module
        Takes pixel-space images (N, C, size, size).
    units : str or list of str
        ``"features.0"`` (every channel, read at the centre of the map),
        ``"features.0[3]"``, ``"features.0[3,7,7]"`` (one neuron), or a list;
        tokens ``(N, T, F)``: ``"encoder.layers.encoder_layer_3[:, 0:8]"``
        (features 0-7 of the centre patch token), ``"...[0, 0:8]"`` (the CLS
        token), as :func:`insilico.layers.at_centre` says.
        Recurrent modules need a step: ``"layers.0@3"``.
    size : int, (H, W) or (C, H, W), optional
        The image size (square), as every tool reads it (:func:`insilico.layers.image_size`): an int is
        the side, with the model's channels; default ``model.input_size``.
    orientations : list of float, degrees
        As :func:`insilico.stimuli.gratings` (0 = vertical bars); default
        sized by ``budget`` (every 5 deg over [0, 180) when it allows).
    sfs : list of float, cycles per image
        Default :func:`default_sfs` (log-spaced, 1 to 0.4 x size; 8 values
        when ``budget`` allows).
    phases : list of float, degrees
        Default evenly spaced over 360 deg, 8 when ``budget`` allows (6 or
        more let the phase-reliability criterion apply).
    contrast : float
        Michelson contrast of the gratings (mean luminance 0.5, the blank's).
    colours : list of {"luminance", "red-green", "blue-yellow"}
        Colour axes of the gratings (:data:`COLOUR_AXES`; the chromatic ones
        need 3-channel input): each unit is characterised on the axis that
        drives it most (``preferred_colour``; ``colour_peak`` per axis), so a
        colour-opponent unit is tuned with colour gratings. Each axis adds a
        full grating set.
    batch_size : int
        Gratings per forward pass.
    progress : bool
        Show a progress bar.
    options : TuningOptions, optional
        The method: ``phase_reduce``, ``natural``, ``margin``, ``min_reliability``, ``raw``, ``budget`` (which
        sizes the default grid), ``fov``.
    **option_overrides
        Any field of :class:`TuningOptions`, on top of ``options`` (``phase_reduce="f1"``, ``budget=None``).

    Returns
    -------
    TuningResult

    Raises
    ------
    InsilicoError
        An unknown option (with close matches) or one out of range; fewer than 4 orientations; colours the
        model's input cannot show.
    """
    options = TuningOptions.from_kwargs("orientation_tuning", None, options, **option_overrides)
    phase_reduce, natural, margin, min_reliability = (options.phase_reduce, options.natural, options.margin,
                                                      options.min_reliability)
    raw, budget, fov = options.raw, options.budget, options.fov
    channels, _, size = image_size(model, size, square=True)
    requested = as_units(units)
    blank = torch.full((1, channels, size, size), 0.5)
    sized = budget is not None and orientations is None and sfs is None and phases is None  # FLOPs size the grid
    plan = Plan(model, blank, flops=sized)  # one survey of the blank: shapes, stop point, FLOPs, the layer order
    parsed = requested if raw else after_nonlinearity(model, requested, plan=plan)
    n_colours = 1 if isinstance(colours, str) else len(colours)
    orientations, sfs, phases, grid = default_grid(model, parsed, blank, orientations, sfs, phases, n_colours, budget,
                                                   plan=plan)
    orientations = [float(o) for o in orientations]
    sfs = [float(f) for f in sfs]
    phases = [float(p) for p in phases]
    if len(orientations) < 4:
        raise InsilicoError("orientation tuning needs at least 4 orientations to fit a curve")
    if not even_orientations(orientations):  # circular variance and OSI sum over the circle
        raise InsilicoError(f"orientation tuning needs orientations evenly spaced over [0, 180) (e.g. range(0, 180, "
                            f"15)), not {orientations[:12]}: circular variance and OSI sum over the whole circle, "
                            "so a part of it makes every unit look tuned; to sample a part of a curve, record "
                            "insilico.stimuli.gratings(...) with Probe.record_stimuli")
    colours = [str(c) for c in ([colours] if isinstance(colours, str) else colours)]
    unknown = [c for c in colours if c not in COLOUR_AXES]
    if unknown or not colours:
        raise InsilicoError(f"colours must be a non-empty list of {tuple(COLOUR_AXES)}, not {colours!r}")
    if channels != 3 and any(c != "luminance" for c in colours):
        raise InsilicoError(f"colour gratings need 3-channel input, the model takes {channels}: use colours=['luminance']")
    gratings = stim.gratings(size=size, orientation=orientations, sf=sfs, phase=phases, contrast=contrast,
                             channels=channels)
    images = torch.cat([coloured(gratings.images, c) for c in colours] + [blank])
    values, names = record_units(model, images, parsed, batch_size=batch_size, progress=progress, desc="gratings",
                                 plan=plan)
    n_o, n_s, n_p = len(orientations), len(sfs), len(phases)
    values = values.numpy().astype(np.float64)
    baseline = values[-1]
    blocks = np.moveaxis(values[:-1].reshape(len(colours), n_o, n_s, n_p, -1), -1, 1)  # (C, U, O, S, P)
    by = "max" if phase_reduce == "skottun" else phase_reduce   # the colour axis: by the phase maximum
    colour_peak = (_phase_reduce(blocks, phases, by).reshape(len(colours), blocks.shape[1], -1).max(-1)
                   - baseline).T                                                      # (U, C)
    best = colour_peak.argmax(1)
    responses = blocks[best, np.arange(blocks.shape[1])]                               # (U, O, S, P)
    nat = None
    if natural is not None:
        nat, _ = record_units(model, natural, parsed, batch_size=batch_size, progress=False, desc="natural images",
                              plan=plan)
        nat = nat.numpy().astype(np.float64)
    settings = dict(units=[str(u) for u in requested], tuned_units=[str(u) for u in parsed], size=size,
                    orientations=orientations, sfs=sfs, phases=phases, contrast=contrast, fov=fov,
                    phase_reduce=phase_reduce, natural=None if nat is None else len(nat), margin=margin,
                    min_reliability=min_reliability, raw=raw, colours=colours, model=type(model).__name__, grid=grid)
    result = TuningResult.from_responses(responses, baseline, names, settings, natural_responses=nat)
    result.arrays["colour_peak"] = colour_peak
    result.arrays["preferred_colour"] = np.where(result.responsive, np.array(colours)[best], "")
    return result


def coloured(images: torch.Tensor, colour: str) -> torch.Tensor:
    """Grey gratings (N, C, H, W) around 0.5 re-drawn along a colour axis of :data:`COLOUR_AXES` (same contrast)."""
    if colour == "luminance":
        return images
    axis = torch.tensor(COLOUR_AXES[colour], dtype=images.dtype).view(1, 3, 1, 1)
    return (0.5 + (images[:, :1] - 0.5) * axis).clamp(0, 1)




class TuningResult(Result):
    """Tuning of U units: curves, responsiveness, fits and indices, one entry per unit.

    Attributes
    ----------
    units : (U,) str
        The address recorded (channel, y, x spelled out): after the
        nonlinearity unless ``raw=True``; ``settings["units"]`` holds the
        addresses as requested.
    tuning : (U, O, S)
        Response per orientation and SF (reduced over phase).
    baseline : (U,)
        Response to the blank (mean-grey) screen.
    curves : (U, O)
        Orientation tuning curve at each unit's best SF (not baseline-subtracted).
    sf_curves : (U, S)
        SF tuning curve at each unit's best orientation.
    responsive : (U,) bool
        Passes the criteria of :mod:`insilico.experiments.selectivity`.
    reason : (U,) str
        Why not ("silent on the stimulus set", "not driven by gratings",
        "unreliable across grating phases"); "" when responsive.
    peak_response : (U,)
        Best grating response minus the blank response.
    reliability : (U,)
        Correlation of the tuning grids of two phase halves (NaN: fewer than 6 phases).
    peak_orientation : (U,) degrees
        The sampled orientation of the curve's peak (responsive units).
    preferred_orientation : (U,) degrees in [0, 180)
        Tuned units only (responsive, OSI >= 1/3): the von Mises peak, within
        one sampling step of ``peak_orientation``.
    bandwidth : (U,) degrees
        Half width at half height of the baseline-subtracted curve (tuned units;
        :func:`~insilico.experiments.selectivity.half_width`).
    circular_variance, osi : (U,)
        On baseline-subtracted, rectified responses (responsive units; NaN otherwise).
    preferred_sf : (U,) cycles per image; ``preferred_sf_cpd`` with ``fov``.
    sf_peak_at_edge : (U,) bool
        The SF curve peaks at the lowest or highest SF tested: the range does
        not bracket the peak (``preferred_sf`` is then a bound, no bandwidth).
    bandwidth_resolved : (U,) bool
        The bandwidth is at least one orientation sampling step. A narrower
        one is not resolved by the grid: the curve falls below half height
        between two sampled orientations, so the true half width is only
        known to be below about one step (sample more orientations).
    sf_bandwidth : (U,) octaves (full width at half height)
        Reported only when resolved (:func:`~insilico.experiments.selectivity.sf_bandwidth_guard`): NaN where
        the curve does not fall to half height on both sides within the tested SFs (flat low-pass / high-pass),
        where the width is below one SF step or above the tested range.
    sf_bandwidth_reason : (U,) str
        Why a responsive unit has no ``sf_bandwidth`` ("" when it has one or is not responsive).
    osi_saturated : (U,) bool
        Responsive units whose orthogonal response is at the blank's (OSI = 1 by the floor of a rectified
        response, not by the curve's shape): a histogram of ``osi`` should show them apart.
    f0, f1 : (U,)
        Over the sampled phases at the preferred orientation and SF (the grating that drives the unit most at its
        best phase, whatever ``phase_reduce``): the mean response minus the blank
        response, and the first-harmonic amplitude (NaN unless 3+ phases evenly spaced over 360 deg).
    modulation_ratio : (U,)
        F1 / F0 (NaN where F0 <= 0 or not responsive).
    cell_type : (U,) str
        "simple" (F1/F0 > 1, Skottun et al. 1991), "complex", "unresolved" (the SF peak is at the edge of the
        tested range, ``sf_peak_at_edge``: F1/F0 is not read at a bracketed optimum, so no call), or "" (not
        responsive / no F0, F1).
    cell_type_reason : (U,) str
        Why a unit with F0 and F1 has no simple/complex call (:data:`.selectivity.SF_EDGE`), else "".
    spontaneous : (U,) bool
        The blank response is above the lowest response to any stimulus shown
        (:func:`~insilico.experiments.selectivity.spontaneous`): only such units can be inhibited below the
        blank; for the others (a ReLU unit at 0 on the blank) inhibition is defined before the nonlinearity or
        not at all.
    orientation_r2, sf_r2 : (U,) goodness of the fits
    tuned : (U,) bool, responsive and OSI >= 1/3
    natural_min, natural_max : (U,)
        Range of the unit on the natural images (NaN without ``natural``).
    colour_peak : (U, C)
        Best grating response above the blank per colour axis (``settings["colours"]``).
    preferred_colour : (U,) str
        The axis the unit is characterised on (most driving; "" when not responsive).
    """

    sample_arrays = ("units", "tuning", "responses", "baseline", "curves", "sf_curves", "responsive", "reason",
                     "peak_response", "reliability", "peak_orientation", "preferred_orientation", "bandwidth",
                     "bandwidth_resolved", "orientation_r2", "orientation_fit", "circular_variance", "osi", "tuned", "peak_sf",
                     "preferred_sf", "sf_peak_at_edge", "sf_bandwidth", "sf_r2", "sf_fit", "preferred_sf_cpd",
                     "natural_min", "natural_max", "colour_peak", "preferred_colour", "sf_bandwidth_reason",
                     "osi_saturated", "f0", "f1", "modulation_ratio", "cell_type", "spontaneous", "cell_type_reason")

    @classmethod
    def from_responses(cls, responses: np.ndarray, baseline: np.ndarray, names: list[str], settings: dict,
                       natural_responses: np.ndarray | None = None) -> "TuningResult":
        """Everything from the raw responses ``(U, O, S, P)``, the blank responses ``(U,)`` and the settings."""
        oris = np.asarray(settings["orientations"], float)
        sfs = np.asarray(settings["sfs"], float)
        how = settings.get("phase_reduce", "max")
        tuning, reliability, at_peak = _reduce_over_phase(responses, baseline, settings["phases"], how)
        n_units = tuning.shape[0]
        rows = np.arange(n_units)
        best_o, best_s = np.unravel_index(tuning.reshape(n_units, -1).argmax(1), tuning.shape[1:])
        curves = tuning[rows, :, best_s]
        sf_curves = tuning[rows, best_o, :]
        peak = tuning.reshape(n_units, -1).max(1)
        low = np.minimum(responses.reshape(n_units, -1).min(1), baseline)
        high = np.maximum(responses.reshape(n_units, -1).max(1), baseline)
        natural_min = natural_max = np.full(n_units, np.nan)
        natural_range = None
        if natural_responses is not None and len(natural_responses):
            natural_min, natural_max = natural_responses.min(0), natural_responses.max(0)
            natural_range = natural_max - natural_min
            low, high = np.minimum(low, natural_min), np.maximum(high, natural_max)
        responsive, reason = responsiveness(peak, baseline, low, high, natural_range, reliability,
                                            float(settings.get("margin", MARGIN)),
                                            float(settings.get("min_reliability", MIN_RELIABILITY)))
        evoked = np.clip(curves - baseline[:, None], 0, None)     # baseline-subtracted, rectified
        sf_evoked = np.clip(sf_curves - baseline[:, None], 0, None)
        nan = np.full(n_units, np.nan)
        osi = np.where(responsive, selectivity_index(oris, evoked), nan)
        cv = np.where(responsive, circular_variance(oris, evoked), nan)
        tuned = responsive & (osi >= TUNED_OSI)
        step = _step(oris, 180.0)
        ori = np.array([fit_von_mises(oris, c) if t else (np.nan,) * 6 for c, t in zip(evoked, tuned)])
        peak_o = np.where(responsive, oris[best_o], np.nan)
        fit_ok = np.isfinite(ori[:, 0]) & (circular_distance(ori[:, 0], peak_o) <= step + 1e-9)
        preferred = np.where(tuned, np.where(fit_ok, ori[:, 0], peak_o), np.nan)
        bandwidth = np.array([half_width(oris, c) if t else np.nan for c, t in zip(evoked, tuned)])
        with np.errstate(invalid="ignore"):
            resolved = tuned & (bandwidth >= _step(oris, 180.0) - 1e-9)
        n_s = len(sfs)
        at_edge = responsive & ((best_s == 0) | (best_s == n_s - 1)) & (n_s > 1)
        sf = np.array([fit_log_gaussian(sfs, c) if r else (np.nan,) * 6 for c, r in zip(sf_evoked, responsive)])
        log_sfs = np.log2(sfs)
        sf_step = _step(log_sfs, None)
        peak_sf = np.where(responsive, sfs[best_s], np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            sf_ok = np.isfinite(sf[:, 0]) & (np.abs(np.log2(sf[:, 0]) - np.log2(peak_sf)) <= sf_step + 1e-9) \
                & (sf[:, 0] >= sfs.min()) & (sf[:, 0] <= sfs.max())
        preferred_sf = np.where(responsive, np.where(sf_ok & ~at_edge, sf[:, 0], peak_sf), np.nan)
        sf_bandwidth, sf_reason = _guarded_sf_bandwidth(sfs, sf_evoked, sf[:, 1], responsive & sf_ok & ~at_edge,
                                                        responsive, at_edge)
        arrays = dict(
            units=np.array(names), tuning=tuning, responses=responses, baseline=baseline, curves=curves,
            sf_curves=sf_curves, responsive=responsive, reason=reason, peak_response=peak - baseline,
            reliability=reliability, peak_orientation=peak_o, preferred_orientation=preferred,
            bandwidth=bandwidth, bandwidth_resolved=resolved, orientation_r2=ori[:, 2], orientation_fit=ori[:, 3:], circular_variance=cv,
            osi=osi, tuned=tuned, peak_sf=peak_sf, preferred_sf=preferred_sf, sf_peak_at_edge=at_edge,
            sf_bandwidth=sf_bandwidth, sf_r2=sf[:, 2], sf_fit=sf[:, 3:], natural_min=natural_min,
            natural_max=natural_max, sf_bandwidth_reason=sf_reason,
            osi_saturated=responsive & osi_saturated(oris, evoked), spontaneous=spontaneous(baseline, low, high),
        )
        arrays.update(_phase_modulation(at_peak, baseline, settings["phases"], responsive, at_edge))
        if settings.get("fov"):
            arrays["preferred_sf_cpd"] = preferred_sf / float(settings["fov"])
        return cls(arrays, settings)

    def table(self) -> dict[str, np.ndarray]:
        keys = ["units", "responsive", "reason", "baseline", "peak_response", "reliability", "peak_orientation",
                "preferred_orientation", "bandwidth", "bandwidth_resolved", "orientation_r2", "circular_variance", "osi",
                "osi_saturated", "tuned", "peak_sf", "preferred_sf", "sf_peak_at_edge", "sf_bandwidth",
                "sf_bandwidth_reason", "sf_r2", "f0", "f1", "modulation_ratio", "cell_type", "spontaneous"]
        keys += [k for k in ("preferred_sf_cpd", "preferred_colour") if k in self.arrays]
        return {k: self.arrays[k] for k in keys}

    @property
    def orientation_step(self) -> float:
        """The largest gap between sampled orientations (degrees, on the 180-degree circle): the resolution that
        ``bandwidth_resolved`` is judged by."""
        return _step(np.asarray(self.settings["orientations"], float), 180.0)

    @property
    def fraction_tuned(self) -> float:
        """Fraction of responsive units with OSI >= 1/3."""
        responsive = self.responsive
        return float(self.tuned[responsive].mean()) if responsive.any() else float("nan")

    def summary(self) -> dict:
        """Population medians over responsive units, the fraction responsive and the fraction tuned."""
        t = self.tuned
        return {
            "units": int(len(self.units)),
            "responsive": int(self.responsive.sum()),
            "fraction_tuned": self.fraction_tuned,
            "median_bandwidth_hwhm_deg": _median(self.bandwidth[t]),
            "median_osi": _median(self.osi),
            "median_circular_variance": _median(self.circular_variance),
            "median_preferred_sf_cpi": _median(self.preferred_sf[~self.sf_peak_at_edge]),
            "median_sf_bandwidth_oct": _median(self.sf_bandwidth),
            "sf_peak_at_edge": int(self.sf_peak_at_edge.sum()),
            **self._physiology_summary(),
        }

    def _physiology_summary(self) -> dict:
        """The counts and medians that compare with V1 on V1's footing (absent from results of older versions)."""
        a, out = self.arrays, {}
        if "osi_saturated" in a:
            out["osi_saturated"] = int(a["osi_saturated"].sum())
        if "cell_type" in a:
            out.update(simple=int((a["cell_type"] == "simple").sum()), complex=int((a["cell_type"] == "complex").sum()),
                       unresolved=int((a["cell_type"] == UNRESOLVED).sum()),
                       median_modulation_ratio=_median(a["modulation_ratio"]))
        if "sf_bandwidth_reason" in a:
            refused = a["sf_bandwidth_reason"][self.responsive]
            out["sf_bandwidth_refused"] = {str(k): int((refused == k).sum()) for k in sorted(set(refused)) if k}
        full = full_bandwidths_like_v1(self.bandwidth, self.responsive)
        out["median_bandwidth_full_all_deg"] = _median(full)  # every responsive unit, untuned at 360: V1's footing
        return out

    def _plot_osi(self, ax):
        """OSI of responsive units, those whose orthogonal response is at the floor (OSI = 1 by the floor,
        ``osi_saturated``) stacked apart."""
        osi, responsive = self.osi, self.responsive
        floor = self.arrays.get("osi_saturated", np.zeros(len(osi), bool)) & responsive
        bins = np.linspace(0, 1, 11)
        ax.hist([osi[responsive & ~floor], osi[floor]], bins=bins, stacked=True, color=["0.4", "tab:orange"],
                label=["graded", f"orthogonal at floor ({int(floor.sum())})"])
        ax.set_xlabel("OSI (responsive units)")
        ax.legend(fontsize=6, frameon=False)

    # -- figures ------------------------------------------------------------------------
    def plot(self, units: Sequence[int] | None = None, ax=None, normalize: bool = True):
        """Orientation tuning curves above the blank response (dots) and von Mises fits (lines, where the fit
        explains the curve: r² > 0.5) of some units.

        Default: up to 6 units, responsive ones first. Unresponsive units are drawn with their reason.
        """
        created, (fig, ax) = ax is None, new_axes(ax)
        oris = np.asarray(self.settings["orientations"], float)
        chosen = list(units) if units is not None else self._default_units()
        dense = np.linspace(0, 180, 361)
        for i in chosen:
            line, scale = self._points(ax, oris, self.curves[i], i, normalize)
            if line is None:
                continue
            b, a, k = self.orientation_fit[i]
            label = f"{self.units[i]}: OSI {self.osi[i]:.2f}"
            if np.isfinite(self.preferred_orientation[i]):
                label = f"{self.units[i]}: {self.preferred_orientation[i]:.0f}°, OSI {self.osi[i]:.2f}"
            if np.isfinite(self.preferred_orientation[i]) and np.isfinite(k) and self.orientation_r2[i] > 0.5:
                fit = von_mises(np.deg2rad(dense), np.deg2rad(self.preferred_orientation[i]), k, b, a)
                ax.plot(dense, fit / scale, "-", color=line.get_color(), label=label)
            else:
                line.set_label(label)
        ax.axhline(0, color="0.7", lw=0.8, ls="--")
        ax.set_xlabel("orientation (deg; 0 = vertical bars)")
        ax.set_ylabel("response - blank" + (" (normalised)" if normalize else ""))
        ax.set_xlim(0, 180)
        return _legend_beside(fig, ax, created)

    def _points(self, ax, xs: np.ndarray, curve: np.ndarray, i: int, normalize: bool):
        """Unit ``i``'s sampled ``curve`` above its blank response (scaled to its largest |value| when
        ``normalize``): dots for a responsive unit, grey crosses labelled with the reason otherwise.
        Returns ``(line, scale)``; ``line`` is None for an unresponsive unit (nothing more to draw)."""
        curve = curve - self.baseline[i]
        top = np.nanmax(np.abs(curve)) if len(curve) else 0.0
        scale = top if normalize and top > 0 else 1.0
        if not self.responsive[i]:
            ax.plot(xs, curve / scale, "x", ms=3, color="0.6", label=f"{self.units[i]}: {self.reason[i]}")
            return None, scale
        return ax.plot(xs, curve / scale, "o", ms=3)[0], scale

    def _default_units(self) -> list[int]:
        order = np.argsort(~self.responsive, kind="stable")
        return [int(i) for i in order[: min(6, len(order))]]

    def plot_sf(self, units: Sequence[int] | None = None, ax=None, normalize: bool = True):
        """SF tuning curves above the blank response at the best orientation, with log-Gaussian fits."""
        created, (fig, ax) = ax is None, new_axes(ax)
        sfs = np.asarray(self.settings["sfs"], float)
        chosen = list(units) if units is not None else self._default_units()
        dense = np.geomspace(sfs.min(), sfs.max(), 200)
        for i in chosen:
            line, scale = self._points(ax, sfs, self.sf_curves[i], i, normalize)
            if line is None:
                continue
            b, a, s = self.sf_fit[i]
            edge = " (at edge)" if self.sf_peak_at_edge[i] else ""
            label = f"{self.units[i]}: {self.preferred_sf[i]:.1f} c/img{edge}"
            if np.isfinite(self.sf_bandwidth[i]):
                ax.plot(dense, log_gaussian(np.log2(dense), np.log2(self.preferred_sf[i]), s, b, a) / scale, "-",
                        color=line.get_color(), label=label)
            else:
                line.set_label(label)
        ax.axhline(0, color="0.7", lw=0.8, ls="--")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("spatial frequency (cycles per image)")
        ax.set_ylabel("response - blank" + (" (normalised)" if normalize else ""))
        return _legend_beside(fig, ax, created)

    def plot_population(self, fig=None):
        """Histograms of preferred orientation, orientation bandwidth (every responsive unit, untuned at 360 deg,
        the selection of the V1 median), peak SF, SF bandwidth (reported ones) and OSI (the floor-saturated units
        apart), with macaque V1 references."""
        import matplotlib.pyplot as plt

        fig = fig or plt.figure(figsize=(12.5, 2.8))
        axes = fig.subplots(1, 5)
        tuned = self.tuned
        axes[0].hist(self.preferred_orientation[tuned] % 180, bins=np.arange(0, 181, 15), color="0.4")
        axes[0].set_xlabel("preferred orientation (deg)")
        axes[0].set_ylabel(f"tuned units ({int(tuned.sum())}/{len(tuned)})")
        for cardinal in (0, 90, 180):
            axes[0].axvline(cardinal, color="tab:red", ls=":", lw=1)
        axes[0].set_title("macaque fovea: more at 0°/90°", fontsize=7)
        full = full_bandwidths_like_v1(self.bandwidth, self.responsive)   # V1's selection: untuned at 360
        axes[1].hist(full, bins=np.arange(0, 361, 20), color="0.4")
        axes[1].axvline(MACAQUE_V1["orientation_bandwidth_full_median_deg"], color="tab:red", ls="--",
                        label="macaque V1 median (all cells)")
        axes[1].axvline(_median(full), color="0.1", ls=":", label="median here (all responsive)")
        axes[1].set_xlabel("orientation bandwidth (full, deg; untuned = 360)")
        axes[1].legend(fontsize=6, frameon=False)
        fov = self.settings.get("fov")
        good = np.isfinite(self.preferred_sf) & ~self.sf_peak_at_edge & (self.sf_r2 > 0.5)
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
        self._plot_osi(axes[4])
        fig.tight_layout()
        return fig


# Curve models, fits and indices live in :mod:`.selectivity`; re-exported here.

def _guarded_sf_bandwidth(sfs: np.ndarray, sf_evoked: np.ndarray, fitted: np.ndarray, usable: np.ndarray,
                          responsive: np.ndarray, at_edge: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(sf_bandwidth, sf_bandwidth_reason)`` (U,): the fitted full width where :func:`.selectivity.sf_bandwidth_guard`
    accepts it, else NaN and why ("" for units that are not responsive and for reported widths)."""
    reason = np.array([("" if not r else SF_EDGE if e else SF_NO_FIT if not u else sf_bandwidth_guard(sfs, c, w))
                       for c, w, u, r, e in zip(sf_evoked, fitted, usable, responsive, at_edge)], dtype=object)
    reason = reason.astype(str) if len(reason) else np.array([], dtype=str)
    return np.where(responsive & (reason == ""), fitted, np.nan), reason


def _reduce_over_phase(responses: np.ndarray, baseline: np.ndarray, phases, how: str) -> tuple:
    """``(tuning (U, O, S), reliability (U,), at_peak (U, P))``: responses ``(U, O, S, P)`` reduced over phase by
    ``how``, their :func:`.selectivity.phase_reliability`, and the phase responses at the grating (O, S) whose best
    phase drives the unit most (where F0, F1 and the cell type are read, whatever ``how``).

    ``"skottun"``: simple units (F1/F0 > 1 at that grating) are read by F1, stored as ``baseline + F1`` so that
    ``tuning - baseline`` is F1; complex units by F0 (the mean over phase). Needs :func:`.selectivity.even_phases`.
    A unit whose SF peak is at the edge of the range is read by its F1/F0 here too (a reading must be chosen),
    though its reported ``cell_type`` is "unresolved" (:func:`_phase_modulation`).
    """
    grid = _phase_reduce(responses, phases, "max")
    n_units = grid.shape[0]
    best_o, best_s = np.unravel_index(grid.reshape(n_units, -1).argmax(1), grid.shape[1:])
    at_peak = responses[np.arange(n_units), best_o, best_s]
    if how != "skottun":
        return _phase_reduce(responses, phases, how), phase_reliability(responses, baseline, phases, how), at_peak
    if not even_phases(phases):
        raise InsilicoError(f"phase_reduce='skottun' reads F1 and F0, which need 3 or more phases evenly spaced over "
                            f"360 deg, not {list(phases)}: pass such phases or another phase_reduce")
    _, kind = cell_type(*phase_harmonics(at_peak, baseline, phases), np.ones(n_units, bool))
    simple = kind == "simple"
    tuning = np.where(simple[:, None, None], _phase_reduce(responses, phases, "f1") + baseline[:, None, None],
                      _phase_reduce(responses, phases, "mean"))
    reliability = np.where(simple, phase_reliability(responses, np.zeros_like(baseline), phases, "f1"),
                           phase_reliability(responses, baseline, phases, "mean"))
    return tuning, reliability, at_peak


def _phase_modulation(at_preferred: np.ndarray, baseline: np.ndarray, phases, responsive: np.ndarray,
                      at_edge: np.ndarray) -> dict:
    """F0, F1, F1/F0 and the simple/complex split of responses (U, P) over phase at each unit's preferred
    grating (the most driving one at its best phase; :func:`.selectivity.phase_harmonics`,
    :func:`.selectivity.cell_type`). Skottun et al. (1991) read F1/F0 at the optimal SF: where the SF peak is at
    the edge of the tested range (``at_edge``, the rule that withholds the SF bandwidth) the optimum is not
    bracketed, so the call is :data:`UNRESOLVED` with ``cell_type_reason`` :data:`.selectivity.SF_EDGE` (F0, F1
    and F1/F0 are still reported: measured, at the edge)."""
    f0, f1 = phase_harmonics(at_preferred, baseline, phases)
    ratio, kind = cell_type(f0, f1, responsive)
    unresolved = (kind != "") & np.asarray(at_edge, bool)
    nan = np.full(len(f0), np.nan)
    return dict(f0=np.where(responsive, f0, nan), f1=np.where(responsive, f1, nan), modulation_ratio=ratio,
                cell_type=np.where(unresolved, UNRESOLVED, kind).astype(str),
                cell_type_reason=np.where(unresolved, SF_EDGE, "").astype(str))


def _legend_beside(fig, ax, created: bool):
    """The legend beside the axis (it never covers the data); a figure made here is laid out so that nothing,
    labels included, is cut off when saved."""
    ax.legend(fontsize=6, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if created:
        fig.set_size_inches(7.5, 3.5)
        fig.tight_layout()
    return fig

__all__ = ["orientation_tuning", "TuningOptions", "TuningResult", "MACAQUE_V1", "default_sfs", "circular_variance", "selectivity_index",
           "fit_von_mises", "fit_log_gaussian", "von_mises", "von_mises_hwhm", "log_gaussian"]


def _step(values: np.ndarray, period: float | None) -> float:
    """The largest gap between neighbouring sampled values (on a circle of ``period`` when given)."""
    v = np.sort(np.asarray(values, float))
    if len(v) < 2:
        return float(period or np.inf)
    gaps = np.diff(v)
    if period:
        gaps = np.append(gaps, v[0] + period - v[-1])
    return float(gaps.max())
