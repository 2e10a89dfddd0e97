"""The closed loop: design on a predictor, show the images to the brain, refit on what it answered, design again.

Population control (:func:`insilico.population_control`) designs images on a
*predictor* of the brain; on a brain that is not the predictor's network, the
predictor is wrong exactly where the designed images take it (far from the
natural images it was fitted on), so it predicts success the brain does not
give. The adaptive experiment of the closed-loop literature (Bashivan, Kar &
DiCarlo 2019 showed their images and measured; Ponce et al. 2019 and Walker et
al. 2019 closed the loop over rounds) fixes that with the brain's own answers:

1. fit a predictor on the stimuli shown so far (``fit(images, responses)``);
2. design one image per target and mode on it (:func:`population_control`);
3. show them to the brain (``brain.respond(images, repetitions, seed)`` where the
   brain has it, as :class:`~insilico.data.simulated.SimulatedBrain` does, else
   ``brain(images)``), and add (images, responses) to the training set;
4. repeat for ``rounds`` rounds (``rounds=1``: population control and one check).

Each round is scored against the brain: the fraction of targets driven beyond
their natural maximum (stretch) and of one-hot control scores that beat the
best natural image's, *predicted* (on the round's predictor) and *measured*
(on the brain), and their gap. The experimenter keeps, per target, the image
the brain answered most to over all rounds (chosen on the responses recorded,
with their noise): :attr:`ClosedLoopResult.report` gives that too ("best").

That choice suffers the winner's curse: among a dozen images per target, each recorded a few
times, the largest recorded mean is often a lucky draw. Physiologists re-test: after the rounds
each target's ``top`` images of each mode (ranked by their recorded responses) are shown again
``repetitions`` times more (``confirm=(repetitions, top)``, default ``(16, 4)``), and the pick is
made on every recording of them; :attr:`ClosedLoopResult.confirmation` gives the success of the
confirmed picks beside the unconfirmed "best", and the extra presentations it cost. Every choice
uses recorded responses only (standardised by the natural stimuli's recorded responses); the
brain's ``brain(images)`` only judges the chosen images.

With ``out=`` each finished round is kept in a folder (one chunk per round,
with a job identity: the brain, the stimuli, the settings and the first
predictor's fingerprint); a rerun redoes only the missing rounds, and a
folder of another loop is refused.

Example
-------
>>> import torch, insilico
>>> from torch import nn
>>> from insilico.data.simulated import SimulatedBrain
>>> from insilico.design.closed_loop import closed_loop
>>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU())
>>> x = torch.rand(64, 3, 16, 16)
>>> brain = SimulatedBrain(net, "3", n_neurons=3, calibration=x, seed=0)
>>> fit = lambda images, responses: insilico.encoding.fit_predictor(net, images, responses, layers=["1"],
...                                                                  reduce="mean", progress=False)
>>> loop = closed_loop(fit, brain, x, brain.respond(x), rounds=2, steps=4, restarts=1, progress=False)
>>> tuple(loop.images.shape), loop.rounds.tolist()            # 3 targets x 2 modes per round, 2 rounds
((12, 3, 16, 16), [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
>>> [(row["round"], row["mode"]) for row in loop.table()]   # predicted vs measured success, per round and mode
[(0, 'stretch'), (0, 'one_hot'), (1, 'stretch'), (1, 'one_hot')]
>>> loop.confirmation["presentations"]   # the re-test: 3 targets x 2 modes x 2 images, 16 more times each
192
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..errors import InsilicoError
from ..identity import job_identity, model_fingerprint
from ..objectives.control import MODES, control_score
from ..options import Job
from ..pixels import check_images
from ..results import Result
from ..sharding import part_file, load_part, map_chunks
from .population_control import population_control, responses_of

#: Design rounds by default (each designs, shows and adds; the first on the natural images alone).
DEFAULT_ROUNDS = 3
#: The re-test after the rounds by default: (repetitions of each re-shown image, images re-shown per target and mode).
DEFAULT_CONFIRM = (16, 4)
#: The climb: ``closed_loop(..., candidates=4, rounds=5, confirm=(16, 8), **CLIMB)`` is the recipe for a brain that is
#: not the predictor's network (README: 75% of the different-network brain's neurons beyond their natural maximum).
#: Each round each target climbs from its best images so far, in pixels, without transforms, within an L2 budget
#: of 4 (a pixel RMS change of 0.036 on 64 x 64 images): near the natural images, where the predictor is right.
CLIMB = {"init": "best", "budget": 4.0, "parameterization": "pixel", "transforms": None, "lr": 0.01,
         "contrast": None, "restarts": 1}


@dataclasses.dataclass
class ClosedLoopResult(Result):
    """Every image a closed loop showed the brain, what the brain answered, and each round's score.

    Attributes
    ----------
    images : tensor (n_shown, C, H, W)       every designed image shown, in the order shown
    responses : tensor (repetitions, n_shown, n_targets)   the brain's recorded responses to them
    rounds : tensor (n_shown,)               the round (0, 1, ...) that designed each image
    modes : list of str (n_shown,)           "stretch" or "one_hot"
    targets : tensor (n_shown,)              the target each image was designed for
    predicted : tensor (n_shown, n_targets)  its round's predictor's responses to it
    report : list of dict (rounds,)          per round, per mode: ``predicted_beyond``, ``measured_beyond``,
        ``gap_beyond`` (predicted - measured fraction of targets beyond their natural maximum), the same
        for one-hot wins (``*_one_hot``), ``median_stretch`` (brain response / natural max) and, over
        the images of this and the earlier rounds, ``best_beyond`` / ``best_one_hot``: the fractions when
        each target keeps the image its recorded responses rank best; and ``fit_r`` (the round's
        predictor's median held-out r, over every member of an Ensemble, where it has one; its held-out
        stimuli include the designed images of earlier rounds)
    target_names : list of str (n_targets,)
    settings : dict
    confirmed : tensor (n_confirmed,)        indices into ``images`` of the images re-shown after the rounds
    confirm_responses : tensor (confirm repetitions, n_confirmed, n_targets)   the brain's responses to them
    confirmation : dict
        ``repetitions``, ``top``, ``presentations`` (extra image presentations: the re-test's cost in brain
        time) and per mode ``best_beyond`` / ``best_one_hot`` (the choice on the rounds' recordings, as the
        last report's), ``confirmed_beyond`` / ``confirmed_one_hot`` (the choice on every recording of each
        target's re-shown images), ``targets`` and ``picks`` (per target, the index into ``images`` chosen);
        empty without a re-test
    """

    sample_fields = ("images", "responses", "rounds", "modes", "targets", "predicted")

    images: torch.Tensor
    responses: torch.Tensor
    rounds: torch.Tensor
    modes: list
    targets: torch.Tensor
    predicted: torch.Tensor
    report: list
    target_names: list = dataclasses.field(default_factory=list)
    settings: dict = dataclasses.field(default_factory=dict)
    confirmed: torch.Tensor = dataclasses.field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    confirm_responses: torch.Tensor = dataclasses.field(default_factory=lambda: torch.zeros(0, 0, 0))
    confirmation: dict = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return self.images.shape[0]

    def table(self) -> list[dict]:
        """One row per round and mode: ``round``, ``mode`` and the report's numbers."""
        return [{"round": r, "mode": mode, **numbers} for r, entry in enumerate(self.report)
                for mode, numbers in entry.items() if mode in MODES]


def closed_loop(
    fit: Callable[[torch.Tensor, torch.Tensor], nn.Module],
    brain: nn.Module,
    stimuli: torch.Tensor,
    responses: torch.Tensor,
    natural: torch.Tensor | None = None,
    *,
    rounds: int = DEFAULT_ROUNDS,
    modes: tuple = MODES,
    candidates: int = 1,
    confirm: tuple | None = DEFAULT_CONFIRM,
    seed: int = 0,
    out: Any = None,
    **control_options,
) -> ClosedLoopResult:
    """Adaptive rounds of population control: design, show to the brain, refit with its responses, design again.

    Parameters
    ----------
    fit : callable (images (N, C, H, W), responses) -> predictor
        Fits a predictor of the brain's targets, e.g. ``lambda x, y: fit_predictor(net, x, y, layers=[...])``,
        or an :class:`~insilico.encoding.Ensemble` of several fits. Called once per round on the
        stimuli shown so far; it must be deterministic (a rerun into ``out=`` checks the first fit).
    brain : nn.Module
        Images -> (N, n_targets) responses of the same targets. With a ``respond(images,
        repetitions, seed)`` method (a :class:`~insilico.data.simulated.SimulatedBrain`) the loop
        records noisy repetitions from it; ``brain(images)`` is the response the images are
        judged by (the noise-free truth of a simulated brain).
    stimuli : tensor (N, C, H, W)
        Natural images already shown.
    responses : tensor (N, n_targets) or (repetitions, N, n_targets)
        The brain's responses to them (with repetitions, each new image is recorded as often).
    natural : tensor (M, C, H, W), optional
        The natural images every design is compared with (default ``stimuli``).
    rounds : int
        Design rounds (default 3); ``rounds=1`` is population control and one check.
    modes : tuple of {"stretch", "one_hot"}
        Designs per round (each target gets one image per mode and candidate; all are shown and added).
    candidates : int
        Designs per target and mode in each round, each from its own seed (default 1; with ``init="best"``
        candidate ``c`` climbs from the target's ``c``-th best image instead): all are shown, so the brain
        screens them; the report scores the first, and ``best_*`` every one.
    confirm : (repetitions, top) or None
        The re-test after the rounds (default ``(16, 4)``): each target's ``top`` images of each mode, ranked
        by their recorded responses, are shown ``repetitions`` times more (targets with a single image are
        not), and each target's pick is the best on all their recordings (``result.confirmation``).
        ``None``: no re-test.
    seed : int
        Round ``r`` designs with seed ``seed + r`` (candidate ``c``: ``+ 10000 c``) and records with seed
        ``seed + 1000 + r``; the re-test records with seed ``seed + 2000``.
    out : folder or Job, optional
        Keep each finished round there; a rerun computes only the missing rounds.
    **control_options
        Passed to :func:`population_control` (``steps``, ``restarts``, ``init``, ``budget``, ``transforms``,
        ``progress`` (default True: a bar per design), ...). ``init="best"`` (the loop's own): every round
        starts each target from the images shown so far (natural stimuli included) that score it best for the
        mode, so each round climbs from the brain's best answers so far, within ``budget`` of them. The
        score is each image's recorded mean shrunk toward the round's predictor (:func:`shrinkage`, empirical
        Bayes): the predictor proposes where to climb from, the recordings alone choose what is kept.

    Returns
    -------
    ClosedLoopResult
        Also ``result.predictor``: the predictor of the last round this call designed (the first fit
        when every round was read back from ``out=``); not saved with the result.

    Raises
    ------
    InsilicoError
        ``rounds < 1``, an unknown mode, responses that do not match the stimuli, a ``confirm`` that is not
        ``(repetitions >= 1, top >= 1)`` or None, ``init="best"`` with more candidates than stimuli, a brain
        or predictor whose number of targets differs, a sharded ``out=`` (rounds run in turn).
    JobMismatchError
        ``out`` holds the rounds of another loop (another brain, stimuli, settings or first fit).
    """
    stimuli = check_images(stimuli, name="stimuli")
    natural = stimuli if natural is None else check_images(natural, name="natural")
    responses = torch.as_tensor(responses).detach().float().cpu()
    _check_loop(rounds, modes, candidates, stimuli, responses, out)
    if isinstance(control_options.get("init"), str) and control_options["init"] == "best" and candidates > len(stimuli):
        raise InsilicoError(f"init='best' climbs from each target's {candidates} best images, but only {len(stimuli)} "
                            "stimuli are shown before the first round: give candidates <= the number of stimuli")
    confirm = _check_confirm(confirm)
    # not rounds: a rerun with more rounds continues a folder
    settings = {"modes": list(modes), "candidates": int(candidates), "seed": int(seed), "confirm": confirm,
                "repetitions": int(responses.shape[0]) if responses.ndim == 3 else None,
                "control": {k: v for k, v in control_options.items() if k != "progress"}}  # the job, not its display
    fits: dict = {0: fit(stimuli, responses)}
    parts: dict = {}

    def part(j: int) -> dict:
        if j not in parts:  # a round done by an earlier run: read it back from the folder
            parts[j] = load_part(part_file(Path(Job.of(out).path), (j, j + 1)))
        return parts[j]

    def compute(a: int, b: int) -> dict:
        if a not in fits:
            earlier = [part(j) for j in range(a)]
            images = torch.cat([stimuli.cpu()] + [p["images"] for p in earlier])
            shown = _join_responses(responses, [p["responses"] for p in earlier])
            fits[a] = fit(images, shown)
        earlier = [part(j) for j in range(a)]
        options = dict(control_options)
        if isinstance(options.get("init"), str) and options["init"] == "best":  # each target's best images so far
            options["init"] = _best_starts(fits[a], stimuli, responses, earlier, modes, candidates,
                                           options.get("temperature", 1.0))
        parts[a] = _round(fits[a], brain, natural, earlier, a, modes, seed, settings["repetitions"], options,
                          candidates, _recorded_statistics(responses))
        return parts[a]

    def identity() -> dict:  # read only with out=
        job = job_identity(brain, settings, {"stimuli": stimuli, "responses": responses, "natural": natural})
        return {**job, "settings": {**settings, "first_predictor": model_fingerprint(fits[0])["digest"]}}

    done = map_chunks(compute, int(rounds), 1, out=out, job=identity)
    result = _result(done, {**settings, "rounds": int(rounds)}, list(getattr(fits[0], "targets", [])))
    if confirm is not None:
        temperature = control_options.get("temperature", 1.0)
        _confirm(result, brain, natural, _recorded_statistics(responses), confirm, seed + 2000, temperature)
    result.predictor = fits[max(fits)]
    return result


def _round(predictor, brain, natural, earlier: list, r: int, modes, seed: int, repetitions: int | None,
           control_options: dict, candidates: int, statistics: tuple) -> dict:
    """Round ``r``: design every mode on ``predictor`` (``candidates`` designs each, seeds ``seed + r + 10000 c``),
    show the images to the brain, score (the first candidate's design); a part of the loop."""
    images, targets, mode_of, predicted, report = [], [], [], [], {}
    for mode in modes:
        options = dict(control_options)
        starts = options.get("init")
        for c in range(candidates):
            if isinstance(starts, dict):  # init="best": candidate c climbs from each target's c-th best image
                options["init"] = starts[mode][c]
            design = population_control(predictor, None, mode, natural=natural, seed=seed + r + 10_000 * c, **options)
            if c == 0:
                report[mode] = _scores(design, design.check(brain, natural))
            images.append(design.images)
            targets.append(design.targets)
            mode_of += [mode] * len(design)
            predicted.append(design.predicted)
    images = torch.cat(images)
    shown = _record(brain, images, repetitions, seed + 1000 + r)
    targets, mode_of = torch.cat(targets), mode_of
    so_far = earlier + [{"images": images, "responses": shown, "targets": targets, "modes": mode_of}]
    truth = responses_of(brain, natural, 256)  # the natural images' truth, once for every mode's judgement
    for mode in modes:
        report[mode].update(_best(brain, truth, so_far, mode, statistics, design.settings.get("temperature", 1.0)))
    report["fit_r"] = held_out_r(predictor)
    return {"images": images, "responses": shown, "targets": targets, "modes": mode_of,
            "predicted": torch.cat(predicted), "report": report}


def _scores(design, check: dict) -> dict:
    """Predicted (on the predictor) vs measured (on the brain) success of one design, and their gaps."""
    predicted_beyond = float((design.stretch > 1).float().mean()) if design.stretch is not None else float("nan")
    predicted_one_hot = float((design.control > design.natural_control).float().mean()) \
        if design.natural_control is not None else float("nan")
    measured_one_hot = check.get("fraction_control_beats_natural", float("nan"))
    return {"predicted_beyond": predicted_beyond, "measured_beyond": check["fraction_beyond_natural"],
            "gap_beyond": predicted_beyond - check["fraction_beyond_natural"],
            "predicted_one_hot": predicted_one_hot, "measured_one_hot": measured_one_hot,
            "gap_one_hot": predicted_one_hot - measured_one_hot, "median_stretch": check["median_stretch"]}


def _best(brain, natural_truth, parts: list, mode: str, statistics: tuple, temperature: float) -> dict:
    """Per target, the image of ``mode`` shown so far with the best *recorded* response (stretch: the target's
    mean response; one-hot: its control score on the recorded means), judged on ``brain(images)``."""
    rows = [(p["images"][i], p["responses"][:, i], int(p["targets"][i])) for p in parts
            for i, m in enumerate(p["modes"]) if m == mode]
    images = torch.stack([row[0] for row in rows])
    recorded = torch.stack([row[1].mean(0) for row in rows])
    targets = torch.as_tensor([row[2] for row in rows])
    seen = _recorded_scores(recorded, targets, mode, statistics, temperature)
    picks = [int(rows_k[seen[rows_k].argmax()]) for rows_k in _rows_of_targets(targets)]
    wins = beats_natural(responses_of(brain, images[picks], 256), natural_truth, targets[picks], mode, temperature)
    return {_key("best", mode): float(wins.float().mean())}


def _key(kind: str, mode: str) -> str:
    """``best_beyond`` / ``best_one_hot``, ``confirmed_beyond`` / ``confirmed_one_hot``: the report's names."""
    return f"{kind}_beyond" if mode == "stretch" else f"{kind}_one_hot"


def _rows_of_targets(targets: torch.Tensor) -> list:
    """Per target present (ascending), the indices of its rows."""
    return [(targets == k).nonzero()[:, 0] for k in targets.unique().tolist()]


def _recorded_statistics(responses: torch.Tensor) -> tuple:
    """Each target's mean and std over the natural stimuli's *recorded* (mean) responses: how a choice
    standardises one-hot control scores without the brain's truth."""
    natural = responses if responses.ndim == 2 else responses.mean(0)
    return natural.mean(0), natural.std(0).clamp_min(1e-12)


def _recorded_scores(recorded: torch.Tensor, targets: torch.Tensor, mode: str, statistics: tuple,
                     temperature: float) -> torch.Tensor:
    """The score (N,) a choice ranks images by, from recorded mean responses (N, n_targets) only: stretch, the
    row's target's response; one-hot, its control score standardised by ``statistics``."""
    if mode == "stretch":
        return recorded.gather(1, targets[:, None])[:, 0]
    return control_score(recorded, targets, *statistics, temperature)


def beats_natural(responses: torch.Tensor, natural: torch.Tensor, targets: torch.Tensor, mode: str,
                  temperature: float = 1.0) -> torch.Tensor:
    """Does each image's response row (``responses`` (N, n_targets)) drive its target (``targets`` (N,)) beyond
    the target's largest response to the natural images (``natural`` (M, n_targets): stretch), or give a control
    score beyond the target's best natural image's (one-hot, standardised by ``natural``)? (N,) bool. The same
    rule judges the brain's truth (the loop's report) and recorded responses (a pilot's score)."""
    if mode == "stretch":
        return responses.gather(1, targets[:, None])[:, 0] > natural.amax(0)[targets]
    mean, std = natural.mean(0), natural.std(0).clamp_min(1e-12)
    natural_best = torch.stack([control_score(natural, torch.full((len(natural),), int(k)), mean, std,
                                              temperature).amax() for k in targets.tolist()])
    return control_score(responses, targets, mean, std, temperature) > natural_best


def held_out_r(predictor) -> float | None:
    """The median held-out r of a predictor (over every member of an Ensemble); None without scores."""
    scores = getattr(predictor, "scores", {}) or {}
    r = scores.get("r", scores.get("member_r"))
    return None if r is None else float(np.nanmedian(np.asarray(r)))


def _confirm(result: ClosedLoopResult, brain, natural, statistics: tuple, confirm: tuple, seed: int,
             temperature: float) -> None:
    """The re-test: each target's ``top`` images of each mode (by the rounds' recordings) shown ``repetitions``
    times more (with ``seed``); the pick is the best on all recordings; fills ``result``'s confirmation fields."""
    repetitions, top = confirm
    recorded = result.responses.mean(0)
    candidates = {}
    for mode in sorted(set(result.modes), key=list(MODES).index):
        rows = torch.as_tensor([i for i, m in enumerate(result.modes) if m == mode])
        seen = _recorded_scores(recorded[rows], result.targets[rows], mode, statistics, temperature)
        candidates[mode] = [rows[k][seen[k].argsort(descending=True, stable=True)[:top]]
                            for k in _rows_of_targets(result.targets[rows])]
    shown = sorted({int(i) for ranked in candidates.values() for rows in ranked if len(rows) > 1 for i in rows})
    shown = torch.as_tensor(shown, dtype=torch.long)
    new = _record(brain, result.images[shown], repetitions, seed) if len(shown) else \
        torch.zeros(repetitions, 0, recorded.shape[1])
    pooled = recorded.clone()  # every recording of each image: the rounds' and the re-test's
    pooled[shown] = torch.cat([result.responses[:, shown], new]).mean(0)
    confirmation = {"repetitions": repetitions, "top": top, "presentations": int(new.shape[0] * len(shown))}
    natural_truth = responses_of(brain, natural, 256)
    for mode, ranked in candidates.items():
        firsts = torch.stack([rows[0] for rows in ranked])  # the choice without a re-test
        targets = result.targets[firsts]
        picks = torch.stack([rows[_recorded_scores(pooled[rows], result.targets[rows], mode, statistics,
                                                   temperature).argmax()] for rows in ranked])
        won = [beats_natural(responses_of(brain, result.images[chosen], 256), natural_truth, targets, mode, temperature)
               for chosen in (firsts, picks)]
        confirmation[mode] = {_key("best", mode): float(won[0].float().mean()),
                              _key("confirmed", mode): float(won[1].float().mean()),
                              "targets": targets.tolist(), "picks": picks.tolist()}
    result.confirmed, result.confirm_responses, result.confirmation = shown, new, confirmation


def _best_starts(predictor, stimuli, responses, earlier: list, modes, n: int, temperature: float) -> dict:
    """Per mode, each target's ``n`` starts (n, n_targets, C, H, W): the images shown so far (natural stimuli
    included) whose estimated responses score best for it (stretch: the target's response; one-hot: its
    control score, standardised by the natural stimuli's recorded responses), best first.

    The estimate is empirical Bayes (Efron & Morris 1975): each recorded mean shrunk toward the round's
    predictor by :func:`shrinkage`, so a lucky draw of a few noisy repetitions does not pick the start; the
    weight of a natural stimulus's recording is set by the predictor's error on the natural stimuli, that of
    a designed image's by its error on the designs of earlier rounds, measured before it saw them (the
    predictions stored with each round), where it is larger (it extrapolates there)."""
    images = torch.cat([stimuli.cpu()] + [p["images"] for p in earlier])
    recorded = torch.cat([responses if responses.ndim == 2 else responses.mean(0)]
                         + [p["responses"].mean(0) for p in earlier])
    predicted = responses_of(predictor, images, 256)
    weight = shrinkage(responses, predicted[:len(stimuli)]).expand(len(images), -1).clone()
    if earlier:  # the predictor errs more on designs: weigh them by its error there, out of sample
        weight[len(stimuli):] = shrinkage(torch.cat([p["responses"] for p in earlier], 1),
                                          torch.cat([p["predicted"] for p in earlier]))
    estimate = predicted + weight * (recorded - predicted)
    mean, std = _recorded_statistics(responses)
    starts = {}
    for mode in modes:
        scores = estimate.T if mode == "stretch" else torch.stack(
            [control_score(estimate, torch.full((len(estimate),), k), mean, std, temperature)
             for k in range(estimate.shape[1])])
        pick = scores.topk(min(n, len(images)), dim=1).indices.T  # (n, n_targets)
        starts[mode] = images[pick]
    return starts


def shrinkage(responses: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
    """How far to trust a recorded mean over a predictor, per target (n_targets,): the empirical-Bayes weight
    ``v / (v + s)``, where ``s`` is the variance of a recorded mean (the repetitions' variance over their
    number, averaged over the stimuli) and ``v`` the predictor's error variance (its mean squared difference
    from the recorded means, less ``s``; floored at 1% of ``s``). ``responses`` (repetitions, N, n_targets) or
    (N, n_targets) (one recording each: weight 1, the recording alone); ``predicted`` (N, n_targets).

    On the different-network brain (32 neurons, 4 repetitions, an ensemble of ``b``, ``bl``, ``bt``) the median
    weight on the natural stimuli is 0.19 (a 4-repetition mean is noisier than the predictor there): the best
    of a neuron's 4 top natural stimuli by the estimate reaches a median 1.00 of its natural maximum (the
    recorded means' 4 top: 0.98), and 3 rounds of 4 designs from them (L2 budget 4) end, after the re-test,
    with 72% of the neurons beyond their natural maximum (from the recorded means' top: 62%).

    Example
    -------
    >>> import torch
    >>> truth = torch.arange(100.0)[:, None]
    >>> noisy = truth + torch.randn(4, 100, 1, generator=torch.Generator().manual_seed(0)) * 4   # mean's variance 4
    >>> round(float(shrinkage(noisy, truth + 2)), 1)    # a predictor off by 2 (error variance 4): half and half
    0.5
    """
    if responses.ndim == 2 or responses.shape[0] < 2:
        return torch.ones(responses.shape[-1])
    noise = responses.var(0).mean(0) / responses.shape[0]
    error = ((responses.mean(0) - predicted) ** 2).mean(0) - noise
    error = torch.maximum(error, 0.01 * noise)
    return error / (error + noise.clamp_min(1e-12))


def _record(brain, images: torch.Tensor, repetitions: int | None, seed: int) -> torch.Tensor:
    """The brain's recorded responses (repetitions or 1, N, n_targets), float32 on the CPU."""
    if hasattr(brain, "respond"):
        shown = brain.respond(images, repetitions or 1, seed=seed)
    else:
        shown = responses_of(brain, images, 256)[None]
    shown = shown.float().cpu()
    return shown if repetitions else shown[:1]


def _check_confirm(confirm) -> tuple | None:
    """``confirm`` as ``(repetitions, top)`` ints, or None; InsilicoError for anything else."""
    if confirm is None:
        return None
    ok = isinstance(confirm, (tuple, list)) and len(confirm) == 2 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in confirm)
    if not ok:
        raise InsilicoError(f"confirm must be (repetitions >= 1, top >= 1), e.g. {DEFAULT_CONFIRM}, or None for no "
                            f"re-test, not {confirm!r}")
    return int(confirm[0]), int(confirm[1])


def _join_responses(responses: torch.Tensor, more: list) -> torch.Tensor:
    """The natural responses and every round's, along the stimulus axis (repetitions kept where given)."""
    if responses.ndim == 2:
        return torch.cat([responses] + [m.mean(0) for m in more])
    return torch.cat([responses] + list(more), dim=1)


def _check_loop(rounds, modes, candidates, stimuli: torch.Tensor, responses: torch.Tensor, out) -> None:
    """InsilicoError for rounds or candidates < 1, an unknown mode, responses that do not match the stimuli, a
    sharded out."""
    for name, value in (("rounds", rounds), ("candidates", candidates)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InsilicoError(f"{name} must be an integer >= 1, not {value!r}")
    if isinstance(modes, str) or not modes or any(m not in MODES for m in modes):
        raise InsilicoError(f"modes must be a tuple of {MODES}, not {modes!r}")
    if responses.ndim not in (2, 3) or responses.shape[-2] != len(stimuli):
        raise InsilicoError(f"responses of shape {tuple(responses.shape)} do not match {len(stimuli)} stimuli: give "
                            "(N, n_targets) or (repetitions, N, n_targets)")
    job = Job.of(out)
    if job is not None and job.shard is not None:
        raise InsilicoError("closed_loop's rounds run one after the other: give out= without shard")


def _result(parts: list, settings: dict, names: list) -> ClosedLoopResult:
    rounds = torch.cat([torch.full((len(p["targets"]),), r) for r, p in enumerate(parts)])
    return ClosedLoopResult(torch.cat([p["images"] for p in parts]), torch.cat([p["responses"] for p in parts], 1),
                            rounds, [m for p in parts for m in p["modes"]], torch.cat([p["targets"] for p in parts]),
                            torch.cat([p["predicted"] for p in parts]), [p["report"] for p in parts], names, settings)


__all__ = ["CLIMB", "DEFAULT_CONFIRM", "DEFAULT_ROUNDS", "ClosedLoopResult", "closed_loop", "shrinkage"]
