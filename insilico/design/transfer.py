"""Choose the predictor by what transfers: a pilot on the brain ranks candidate networks.

A predictor that predicts a brain well need not design images that drive it:
on the simulated brain that reads a recurrent network (``blt``), ``minialex``'s
predictor reaches a held-out r of 0.73 (0.87 against the noise-free truth) yet
the images designed on it drive 6% of the neurons beyond their natural maximum
(one-hot: 9%), while an ensemble of BLT's relatives (``b``, ``bl``, ``bt``,
held-out r 0.86-0.89) drives about half of them. Held-out r does not say which
network to design on; the brain does.

:func:`rank_candidates` runs a cheap pilot per candidate network: one round of
the closed loop (:func:`~insilico.design.closed_loop.closed_loop`, ``rounds=1``:
design a stretch and a one-hot image per target on the candidate's predictor,
show them to the brain, record), and scores each candidate by its *recorded*
stretch: the median over targets of the recorded response to the target's
stretch image over its largest recorded response to the natural stimuli. Beside
it, the fractions of targets whose recorded response beats that maximum and
whose recorded one-hot control score beats the best natural stimulus's. Only what an experimenter records enters the ranking (``brain.respond`` where
the brain has it, else ``brain(images)``); the ``truth_*`` columns
(``brain(images)``, a simulated brain's noise-free rates) are reported beside
it to check the pilot, never used. The top candidates form the
:class:`~insilico.encoding.Ensemble` to design on.

Measured on the different-network brain (32 neurons, 1,000 natural stimuli x 4 Poisson repetitions,
``probes/population_control.py``; pilot: 64 steps, 1 start): held-out r / recorded median stretch /
fraction beyond natural and one-hot wins judged on the noise-free truth: ``bl`` 0.89 / 0.71 / 47% and 31%,
``b`` 0.86 / 0.68 / 16% and 6%, ``bt`` 0.87 / 0.60 / 22% and 22%, ``minialex`` 0.73 / 0.28 / 6% and 6%
(it predicted 91% and 88%: the best-predicting network by its own account): the pilot keeps ``bl``, ``b``,
``bt`` (the ensemble a user who knew the brain is a BLT would have picked) and drops ``minialex``;
``population_control``'s defaults on that ensemble drive 44% / 44% of the neurons (``minialex`` alone:
6% / 9%). The score is the recorded median stretch, not a recorded fraction: a fraction counts a few
of 32 neurons and flips with the pilot's seed (seed 0: ``bl`` 12%, ``b`` 11%, ``bt`` 9%; seed 1: 14%, 6%,
5%, which would have dropped ``b`` and ``bt``), while the median stretch ranks ``bl`` > ``b`` > ``bt`` >
``minialex`` at both seeds (0.71, 0.68, 0.60, 0.28; seed 1: 0.70, 0.61, 0.50, 0.20). The recorded
numbers are lower than the truth's (the largest of 1,000 noisy natural means is inflated by the noise):
they rank candidates, they do not estimate success.

Example
-------
>>> import torch, insilico
>>> from torch import nn
>>> from insilico.data.simulated import SimulatedBrain
>>> from insilico.design.transfer import rank_candidates
>>> def net(seed):
...     torch.manual_seed(seed)
...     return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU())
>>> x = torch.rand(64, 3, 16, 16)
>>> brain = SimulatedBrain(net(0), "3", n_neurons=3, calibration=x, seed=0)
>>> def fit(seed):
...     return lambda images, responses: insilico.encoding.fit_predictor(
...         net(seed), images, responses, layers=["1"], reduce="mean", progress=False)
>>> ranking = rank_candidates({"a": fit(1), "b": fit(2)}, brain, x, brain.respond(x), top=1, steps=4,
...                           progress=False)
>>> sorted(ranking.order) == ["a", "b"], len(ranking.chosen), sorted(ranking.rows[0])[:3]
(True, 1, ['held_out_r', 'name', 'predicted_beyond'])
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from ..encoding import Ensemble
from ..errors import InsilicoError
from ..objectives.control import MODES
from .closed_loop import beats_natural, closed_loop, held_out_r

#: Pilot settings by default: population_control's defaults with one start and half its steps.
PILOT_OPTIONS = {"steps": 64, "restarts": 1, "confirm": None}  # the score reads the round's own recordings: no re-test
#: Members of the chosen ensemble by default.
DEFAULT_TOP = 3


@dataclasses.dataclass
class TransferRanking:
    """The pilot's ranking of candidate networks by what transfers to the brain.

    Attributes
    ----------
    rows : list of dict, best first
        Per candidate: ``name``; ``score`` (the ranking's: ``recorded_stretch``, the median over targets of
        the recorded response to the target's stretch image / its largest recorded natural response);
        ``recorded_beyond`` / ``recorded_one_hot`` (fractions of targets whose recorded response to their
        stretch image beats their recorded natural maximum / whose recorded one-hot control score beats
        the best natural stimulus's; their mean breaks ties); ``predicted_beyond`` /
        ``predicted_one_hot`` (the same fractions on the candidate's own predictor); ``truth_beyond`` /
        ``truth_one_hot`` (judged on ``brain(images)``: a simulated brain's noise-free rates; not
        used); ``held_out_r`` (the predictor's median held-out r, None when it has none).
    order : list of str
        The candidates' names, best first.
    chosen : list of str
        The ensemble's members (the first ``top`` whose score is at least ``floor`` x the best).
    ensemble : nn.Module
        The chosen predictors: an :class:`~insilico.encoding.Ensemble`, or the one predictor.
    predictors : dict
        Every candidate's fitted predictor, by name.
    pilots : dict
        Every candidate's pilot, by name (a one-round :class:`~insilico.design.closed_loop.ClosedLoopResult`:
        the images shown and the brain's recorded responses).
    fits : dict
        Every candidate's fit callable (a fitted predictor's returns it unchanged).
    """

    rows: list
    order: list
    chosen: list
    ensemble: nn.Module
    predictors: dict
    pilots: dict
    fits: dict

    def fit(self, images: torch.Tensor, responses: torch.Tensor) -> nn.Module:
        """Refit the chosen members on (images, responses): an Ensemble (or the one predictor), for
        :func:`~insilico.design.closed_loop.closed_loop`'s ``fit``."""
        fitted = [self.fits[name](images, responses) for name in self.chosen]
        return fitted[0] if len(fitted) == 1 else Ensemble(fitted)

    def __repr__(self) -> str:
        ranks = ", ".join(f"{row['name']}:{row['score']:.2f}" for row in self.rows)
        return f"TransferRanking({ranks}; chosen {'+'.join(self.chosen)})"


def rank_candidates(
    candidates: Mapping[str, Any],
    brain: nn.Module,
    stimuli: torch.Tensor,
    responses: torch.Tensor,
    natural: torch.Tensor | None = None,
    *,
    top: int = DEFAULT_TOP,
    floor: float = 0.5,
    seed: int = 0,
    progress: bool = True,
    **control_options,
) -> TransferRanking:
    """Rank candidate networks by the controllability the brain's recorded responses measure; ensemble the best.

    Parameters
    ----------
    candidates : dict name -> fit callable or fitted predictor
        A callable ``fit(images (N, C, H, W), responses) -> predictor`` (fitted here on ``stimuli``,
        ``responses``), or a predictor already fitted (images -> (N, n_targets)). Every candidate
        predicts the brain's targets, in the same order.
    brain : nn.Module
        The brain: images -> (N, n_targets); with ``respond(images, repetitions, seed)`` (a
        :class:`~insilico.data.simulated.SimulatedBrain`) the pilot records noisy repetitions.
    stimuli : tensor (N, C, H, W)
        Natural images already shown.
    responses : tensor (N, n_targets) or (repetitions, N, n_targets)
        The brain's recorded responses to them: the natural maxima and control scores the pilot's
        images must beat.
    natural : tensor (M, C, H, W), optional
        Natural images the designs start from and are compared with on the predictor (default ``stimuli``).
    top : int
        Members of the ensemble (default 3).
    floor : float
        A candidate joins only with a score of at least ``floor`` x the best's (default 0.5: on the
        different-network brain, adding a network that transfers badly to good ones lowered the
        ensemble's success; ``minialex`` scored 0.28 and 0.20 against ``bl``'s 0.71 and 0.70).
    seed : int
        The pilot's seed (every candidate gets the same).
    **control_options
        :func:`~insilico.population_control`'s options for the pilot's designs, over
        :data:`PILOT_OPTIONS` (64 steps, 1 start; its other defaults: noise start, Fourier, transforms).

    Returns
    -------
    TransferRanking
        ``rows`` (best first), ``chosen``, ``ensemble`` and ``fit`` (refits the chosen members).

    Raises
    ------
    InsilicoError
        No candidates, a candidate that is neither callable nor a module, ``top < 1``, ``floor`` outside
        [0, 1], responses that do not match the stimuli, predictors of different targets.
    """
    _check_ranking(candidates, top, floor)
    if "stretch" not in control_options.get("modes", MODES):
        raise InsilicoError(f"the pilot scores the stretch designs: keep 'stretch' in modes, not {control_options['modes']!r}")
    recorded_natural = torch.as_tensor(responses).detach().float().cpu()
    recorded_natural = recorded_natural.mean(0) if recorded_natural.ndim == 3 else recorded_natural
    options = {**PILOT_OPTIONS, **control_options}
    fits, predictors, pilots, rows = {}, {}, {}, []
    for name, candidate in candidates.items():
        fits[name] = _fit_of(candidate)
        pilot = closed_loop(fits[name], brain, stimuli, responses, natural, rounds=1, seed=seed, progress=progress,
                            **options)
        predictors[name], pilots[name] = pilot.predictor, pilot
        rows.append({"name": name, **_pilot_scores(pilot, recorded_natural, options.get("temperature", 1.0)),
                     "held_out_r": held_out_r(pilot.predictor)})
    _check_targets(predictors)
    rows.sort(key=lambda row: (-row["score"], -np.nanmean([row["recorded_beyond"], row["recorded_one_hot"]])))
    best = rows[0]["score"]
    chosen = [row["name"] for row in rows if row["score"] >= floor * best][:top]
    members = [predictors[name] for name in chosen]
    ensemble = members[0] if len(members) == 1 else Ensemble(members)
    return TransferRanking(rows, [row["name"] for row in rows], chosen, ensemble, predictors, pilots, fits)


def _pilot_scores(pilot, recorded_natural: torch.Tensor, temperature: float) -> dict:
    """A one-round pilot's success judged on the recorded responses (``recorded_*``), beside its report's
    predicted and truth-judged numbers."""
    recorded = pilot.responses.mean(0)  # (n_shown, n_targets): the mean over repetitions
    out = {}
    for mode in MODES:
        rows = torch.as_tensor([m == mode for m in pilot.modes])
        if not bool(rows.any()):  # one-hot not designed
            out["recorded_one_hot"] = float("nan")
            continue
        targets = pilot.targets[rows]
        wins = beats_natural(recorded[rows], recorded_natural, targets, mode, temperature)
        if mode == "stretch":
            own = recorded[rows].gather(1, targets[:, None])[:, 0]
            out["recorded_beyond"] = float(wins.float().mean())
            out["recorded_stretch"] = float((own / recorded_natural.amax(0)[targets].clamp_min(1e-12)).median())
        else:
            out["recorded_one_hot"] = float(wins.float().mean())
    report = pilot.report[0]
    out["score"] = out["recorded_stretch"]
    for key, mode, field in (("predicted_beyond", "stretch", "predicted_beyond"),
                             ("truth_beyond", "stretch", "measured_beyond"),
                             ("predicted_one_hot", "one_hot", "predicted_one_hot"),
                             ("truth_one_hot", "one_hot", "measured_one_hot")):
        out[key] = report[mode][field] if mode in report else float("nan")
    return out


def _fit_of(candidate) -> Callable:
    """The candidate as a fit callable: itself, or (a fitted predictor) one that returns it."""
    if isinstance(candidate, nn.Module):
        return lambda images, responses: candidate
    return candidate


def _check_ranking(candidates, top, floor) -> None:
    if not isinstance(candidates, Mapping) or not candidates:
        raise InsilicoError("candidates must be a non-empty dict name -> fit callable or fitted predictor, not "
                            f"{type(candidates).__name__}")
    for name, candidate in candidates.items():
        if not (isinstance(candidate, nn.Module) or callable(candidate)):
            raise InsilicoError(f"candidate {name!r} is a {type(candidate).__name__}: give a fit callable "
                                "(images, responses) -> predictor or a fitted predictor")
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise InsilicoError(f"top must be an integer >= 1, not {top!r}")
    if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not 0 <= floor <= 1:
        raise InsilicoError(f"floor must be a number in [0, 1], not {floor!r}")


def _check_targets(predictors: dict) -> None:
    """InsilicoError when the candidates' predictors name different targets (an ensemble averages by position)."""
    named = {name: [str(t) for t in getattr(p, "targets", [])] for name, p in predictors.items()}
    first = next(iter(named))
    for name, targets in named.items():
        if targets and named[first] and targets != named[first]:
            raise InsilicoError(f"candidates {first!r} and {name!r} predict different targets "
                                f"({named[first][:3]}... vs {targets[:3]}...): fit every candidate on the same "
                                "responses")


__all__ = ["DEFAULT_TOP", "PILOT_OPTIONS", "TransferRanking", "rank_candidates"]
