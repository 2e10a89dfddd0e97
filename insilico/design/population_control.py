"""Population control: images that drive chosen neurons of a predicted population (Bashivan, Kar & DiCarlo 2019).

``population_control(predictor, targets, mode=...)`` synthesizes one image per
target on the one synthesis engine (:class:`insilico.synthesis.Synthesis`),
all targets of a chunk in one batch:

- ``mode="stretch"``: maximize the target's predicted response (the most
  exciting image, MEI; Walker et al. 2019), to push it beyond anything in the
  natural image set;
- ``mode="one_hot"``: maximize the target while suppressing every other
  target, with the softmax-style control score of Bashivan et al.:

  ``control_k = z_k - T * log mean_{j != k} exp(z_j / T)``

  where ``z`` standardises each target's response by its statistics over
  natural images (``predictor.response_mean/std``), and the temperature ``T``
  moves the score from "above the mean of the others" (large T) to "above the
  strongest other" (small T).

Each target gets ``restarts`` starts (default 4: other noise and transform
draws), optimised in the same batch; the start its predictor scores best is
kept. From a near-grey start a target's channels are often silent at its
receptive field (post-ReLU zeros, no gradient), and one ascent settles on
whatever drives it first: on the simulated matched brain one start reached
the natural maximum on the predictor for 84% of the neurons, 384 steps did
not rescue the others, 4 starts did (97%). An RMS ``contrast`` budget keeps
images in the contrast range of natural images (off by default: it bounds
how far a target can be driven).

The result (:class:`PopulationControlResult`) holds the images, the predicted
responses of every target to each image, the control scores, and, for
comparison, the best natural image per target with its predictions;
``result.check(brain, natural)`` presents the images to a brain (any model of
the same targets, e.g. :class:`insilico.data.simulated.SimulatedBrain`) and
reports the fraction of targets driven beyond their natural maximum and the
one-hot control scores against the best natural image's.

Stimuli that transfer from the predictor to the brain (options, combinable):
an :class:`insilico.encoding.Ensemble` of predictors (several networks or
fits); ``init="natural"`` with a distance ``budget`` (start from the best
natural image and stay within an L2 or L-inf ball around it); robustness
``transforms`` (random jitter, scale, rotation at every step); a contrast
budget; a factorized readout (``fit_predictor(..., readout="factorized")``).
:func:`controllability` scores a candidate model of a brain by the fraction of
its neurons the loop drives beyond their natural maxima (judged on ``brain(images)``);
:func:`insilico.design.transfer.rank_candidates` ranks several candidates by a pilot
judged on the brain's recorded responses only and ensembles the best. The adaptive experiment
(design, show to the brain, refit on its answers, design again) is
:func:`insilico.design.closed_loop.closed_loop`.

Example
-------
>>> import torch, insilico
>>> from torch import nn
>>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3))
>>> x = torch.rand(64, 3, 16, 16)
>>> with torch.no_grad():
...     y = net[:2](x).mean((2, 3))[:, :4]
>>> p = insilico.encoding.fit_predictor(net, x, y, layers=["1"], reduce="mean", progress=False)
>>> r = insilico.population_control(p, [0, 2], mode="one_hot", natural=x, steps=16, progress=False)
>>> tuple(r.images.shape), tuple(r.predicted.shape), r.labels
((2, 3, 16, 16), (2, 4), ['0', '2'])
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import evaluate
from ..errors import InsilicoError, StimulusError
from ..objectives.control import MODES, PopulationControl, control_score
from ..pixels import check_images
from ..registry import register_tool
from ..results import Result
from ..seeding import run_seed
from ..session import session
from ..synthesis.options import DEFAULT_DECAY, SynthesisOptions
from ..synthesis.projection import Chain, ContrastBudget
from ..units import Unit

DEFAULT_STEPS = 128
DEFAULT_LR = 0.05
DEFAULT_BATCH_SIZE = 64
#: Default RMS contrast budget of synthesized images (pixel std, [0, 1] units); natural photos have about 0.14.
DEFAULT_CONTRAST = None
#: Default number of starts per target (the best predicted is kept).
DEFAULT_RESTARTS = 4
#: Where population_control's defaults differ from :class:`~insilico.synthesis.SynthesisOptions`'.
POPULATION_CONTROL_DEFAULTS = {"steps": DEFAULT_STEPS, "lr": DEFAULT_LR, "transforms": "default"}


# ---------------------------------------------------------------------------------------
# The result
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class PopulationControlResult(Result):
    """Images that control targets of a predicted population, with the natural images to beat.

    Attributes
    ----------
    images : tensor (K, C, H, W)           one synthesized image per controlled target
    targets : tensor (K,)                  index of each image's target
    labels : list of str (K,)              its name
    predicted : tensor (K, n_targets)      predicted response of every target to each image
    control : tensor (K,)                  control score of each image's target (see :func:`control_score`)
    natural_images : tensor (K, C, H, W)   best natural image per target (for the mode's score), or None
    natural_predicted : tensor (K, n_targets)
    natural_control : tensor (K,)
    natural_max : tensor (n_targets,)      largest predicted response of each target over the natural images
    losses : tensor (K, steps)             objective of each image at every step
    mode : str
    target_names : list of str (n_targets,)
    settings : dict
    """

    sample_fields = ("images", "targets", "labels", "predicted", "control", "natural_images", "natural_predicted",
                     "natural_control", "losses")

    images: torch.Tensor
    targets: torch.Tensor
    labels: list
    predicted: torch.Tensor
    control: torch.Tensor
    natural_images: torch.Tensor | None
    natural_predicted: torch.Tensor | None
    natural_control: torch.Tensor | None
    natural_max: torch.Tensor | None
    losses: torch.Tensor
    mode: str = "stretch"
    target_names: list = dataclasses.field(default_factory=list)
    settings: dict = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def target_response(self) -> torch.Tensor:
        """Predicted response of each image's own target (K,)."""
        return self.predicted.gather(1, self.targets.view(-1, 1))[:, 0]

    @property
    def stretch(self) -> torch.Tensor | None:
        """Each target's predicted response to its image over its natural maximum (K,); > 1: beyond nature."""
        if self.natural_max is None:
            return None
        return self.target_response / self.natural_max[self.targets].clamp_min(1e-12)

    def check(self, brain: nn.Module, natural: torch.Tensor | None = None, mean=None, std=None,
              batch_size: int = 256) -> dict:
        """Present the images to ``brain`` (images -> (N, n_targets), same targets) and score the control.

        Parameters
        ----------
        brain : nn.Module
            The ground truth (or any model of the same targets).
        natural : tensor (M, C, H, W), optional
            Natural images whose brain responses define each target's natural
            maximum and standardisation (default: the result's natural images).
        mean, std : tensor (n_targets,), optional
            Standardisation of the brain's responses for the control score
            (default: over ``natural``).

        Returns
        -------
        dict
            ``responses`` (K, n_targets) of the brain to the images;
            ``target_response`` (K,); ``natural_max`` (K,) each target's maximal
            natural response; ``beyond_natural`` (K,) bool;
            ``fraction_beyond_natural``; ``control`` (K,) brain control scores
            of the images, ``natural_control`` (K,) of each target's best
            natural image (chosen on the brain's own responses);
            ``fraction_control_beats_natural``; ``median_stretch`` (target
            response / natural max).
        """
        natural = self.natural_images if natural is None else check_images(natural, name="natural")
        if natural is None:
            raise InsilicoError("give natural= images to compare with (the result holds none)")
        responses = responses_of(brain, self.images, batch_size)
        nat = responses_of(brain, natural, batch_size)
        if responses.shape[1] != len(self.target_names or range(responses.shape[1])):
            raise InsilicoError(f"the brain gives {responses.shape[1]} responses; the predictor had "
                                f"{len(self.target_names)} targets")
        t = self.targets
        own = responses.gather(1, t.view(-1, 1))[:, 0]
        nat_max = nat.amax(0)[t]
        mean = nat.mean(0) if mean is None else torch.as_tensor(mean, dtype=nat.dtype)
        std = nat.std(0).clamp_min(1e-12) if std is None else torch.as_tensor(std, dtype=nat.dtype)
        out = {"responses": responses, "target_response": own, "natural_max": nat_max,
               "beyond_natural": own > nat_max, "fraction_beyond_natural": float((own > nat_max).float().mean()),
               "median_stretch": float((own / nat_max.clamp_min(1e-12)).median())}
        if responses.shape[1] >= 2:
            control = control_score(responses, t, mean, std, self.settings.get("temperature", 1.0))
            nat_scores = torch.stack([control_score(nat, torch.full((len(nat),), int(k)), mean, std,
                                                    self.settings.get("temperature", 1.0)) for k in t.tolist()])
            best = nat_scores.amax(1)
            out.update(control=control, natural_control=best,
                       fraction_control_beats_natural=float((control > best).float().mean()),
                       median_control_gain=float((control - best).median()))
        return out

    def __repr__(self) -> str:
        shape = "x".join(str(v) for v in self.images.shape[1:])
        scores = ", ".join(f"{name}:{value:.3g}" for name, value in zip(self.labels[:4], self.control.tolist()[:4]))
        return (f"PopulationControlResult({self.mode}, {len(self)} images of {shape} for {self.predicted.shape[1]} "
                f"targets; control {scores}{', ...' if len(self) > 4 else ''})")

    def plot(self, ax=None):
        """Predicted response of every target (columns) to each image (rows), over the target's natural maximum."""
        import matplotlib.pyplot as plt

        fig, ax = (plt.subplots(figsize=(6, 4)) if ax is None else (ax.figure, ax))
        rel = self.predicted.float()
        title = f"{self.mode}: predicted response"
        if self.natural_max is not None:
            rel = rel / self.natural_max.float().clamp_min(1e-12)
            title += " / natural maximum"
        image = ax.imshow(rel.numpy(), aspect="auto", cmap="magma", interpolation="nearest")
        ax.scatter(self.targets.numpy(), np.arange(len(self)), marker="s", facecolors="none", edgecolors="cyan",
                   s=30, label="target")
        ax.set_xlabel("target (predicted neuron)")
        ax.set_ylabel("synthesized image")
        if self.mode == "one_hot" and self.natural_control is not None:
            beats = float((self.control > self.natural_control).float().mean())
            title += f"\ncontrol score beats the best natural image's for {beats:.0%} of targets"
        elif self.stretch is not None:
            title += f"\n{float((self.stretch > 1).float().mean()):.0%} of targets beyond their natural maximum"
        ax.set_title(title, fontsize=9)
        fig.colorbar(image, ax=ax)
        return fig


@dataclasses.dataclass(frozen=True)
class PopulationControlOptions(SynthesisOptions):
    """:func:`population_control`'s knobs: every field of :class:`~insilico.synthesis.SynthesisOptions` (the
    synthesis loop) and the tool's own control score, budgets and restarts below (checked with ``init`` when
    the tool runs).

    Attributes
    ----------
    temperature : float
        Of the one-hot control score (default 1).
    budget : float, optional
        Keep each image within this distance of its start (``norm`` "l2" in
        pixel units over the whole image, or "linf"); needs ``init``.
    norm : {"l2", "linf"}
        The norm of ``budget`` (default "l2").
    contrast : float or None
        RMS contrast budget: after every step each image's pixel standard
        deviation is brought down to at most ``contrast`` (its mean kept), so
        images stay in the contrast range the predictor was fitted on (Walker
        et al. 2019 fixed the norm of their MEIs); None (default): no budget.
    restarts : int
        Starts per target (different noise and transform draws; from a
        natural start, different transform draws), optimised together in one
        batch; the image with the best predicted score is kept (default 4:
        from a near-grey start the target's channels are often silent, and
        one ascent settles on whatever drives it first; on the simulated
        matched brain 4 starts of 128 steps drove 97% of neurons beyond their
        natural maximum, one start of 96 steps 81%, and 384 steps did not
        rescue the stuck ones).

    Example
    -------
    >>> PopulationControlOptions(restarts=2, contrast=0.14).restarts
    2
    """

    temperature: float = 1.0
    budget: float | None = None
    norm: str = "l2"
    contrast: float | None = DEFAULT_CONTRAST
    restarts: int = DEFAULT_RESTARTS

    def validate(self) -> PopulationControlOptions:
        """Check every option (the loop's and the temperature); returns ``self`` (the budgets, which need
        ``init``, are checked by the tool)."""
        super().validate()
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float)) or not (
                math.isfinite(self.temperature) and self.temperature > 0):
            raise InsilicoError(f"temperature must be a finite number > 0, not {self.temperature!r}")
        return self


# ---------------------------------------------------------------------------------------
# The tool
# ---------------------------------------------------------------------------------------
@register_tool("design", takes_images=False, per_sample=True)
def population_control(
    predictor: nn.Module,
    targets: Any = None,
    mode: str = "stretch",
    *,
    natural: torch.Tensor | None = None,
    init: str | torch.Tensor | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int | None = 0,
    progress: bool = True,
    options: PopulationControlOptions | SynthesisOptions | None = None,
    **option_overrides,
) -> PopulationControlResult:
    """One image per predicted neuron that stretches it, or drives it alone (Bashivan, Kar & DiCarlo 2019).

    Parameters
    ----------
    predictor : nn.Module
        Images (N, C, H, W) -> (N, n_targets), e.g. a :class:`~insilico.encoding.NeuralPredictor`
        or an :class:`~insilico.encoding.Ensemble`. Its ``response_mean`` /
        ``response_std`` buffers (natural statistics) standardise the targets;
        without them the natural images do.
    targets : int, str, list of them, or None
        Targets to control (indices or names; default all).
    mode : {"stretch", "one_hot"}
    natural : tensor (M, C, H, W), optional
        Natural images to compare with (the best one per target is kept);
        default the bundled held-out photo crops when the predictor takes
        (3, 64, 64) images.
    init : None, "natural" or tensor (K, C, H, W)
        Start from noise (default), from each target's best natural image, or
        from given images.
    batch_size : int
        Targets optimised together, each with its restarts (default 64).
    seed : int or None
        Each image's seed is derived from it and its target's name, so a
        target gets the same image alone or in a batch.
    progress : bool
        A progress bar (default True).
    options : PopulationControlOptions or SynthesisOptions, optional
        The knobs: the tool's own (``temperature``, ``budget``, ``norm``, ``contrast``, ``restarts``:
        :class:`PopulationControlOptions`) and the synthesis loop's (a plain SynthesisOptions, e.g. one
        object shared with other tools, sets those).
    **option_overrides
        Any field of :class:`PopulationControlOptions`: the tool's own and those of
        :class:`~insilico.synthesis.SynthesisOptions` (steps, lr, optimizer, schedule,
        parameterization, param_options, transforms, tv, precision, ...), on top of ``options``; not
        ``projection`` (the contrast and distance budgets are this tool's projection). Defaults for this tool
        (``POPULATION_CONTROL_DEFAULTS``): 128 Adam steps (``DEFAULT_STEPS``) of lr 0.05; the Fourier 1/f
        parameterization with decay 1.5 as :func:`insilico.maximize`'s; ``transforms="default"`` without
        padding (``pad`` default 0: jitter by size/28 pixels, scale by (0.9, 1.1), rotate by 10 degrees at every step).

    Returns
    -------
    PopulationControlResult
    """
    seed = run_seed(seed)
    options = PopulationControlOptions.from_kwargs("population_control", POPULATION_CONTROL_DEFAULTS, options,
                                                   progress=progress, **option_overrides)
    temperature, budget, norm, contrast = options.temperature, options.budget, options.norm, options.contrast
    restarts = options.restarts
    options = options.base(SynthesisOptions)  # the engine's knobs; the tool's own are read above
    if options.projection is not None:
        raise InsilicoError("population_control makes its own projection (contrast=, budget=): leave projection= out")
    if mode not in MODES:
        raise InsilicoError(f"mode must be one of {MODES}, not {mode!r}")
    names = [str(t) for t in getattr(predictor, "targets", [])]
    index = _target_index(predictor, targets, names)
    shape, natural = _shape_and_natural(predictor, natural)
    _check_budgets(budget, init, norm, restarts, contrast)
    restarts = int(restarts)

    nat_pred = responses_of(predictor, natural, 256) if natural is not None else None
    mean, std = _statistics(predictor, nat_pred)
    if not names:
        names = [str(i) for i in range(int(mean.numel()))]
    if mode == "one_hot" and len(names) < 2:
        raise InsilicoError("one-hot control needs a predictor of at least 2 targets")
    t_index = torch.as_tensor(index)
    best_natural = None if natural is None else _best_natural(nat_pred, index, mode, mean, std, temperature)
    init = _start_images(init, natural, best_natural, shape, len(index))
    if options.transforms == "default" and options.pad is None:  # this tool's default transforms do not pad
        options = options.replace(pad=0)
    options = options.replace(transforms=options.make_transforms(predictor, shape), pad=None, jitter=None,
                              scale=None, rotate=None)
    if options.parameterization in (None, "fourier"):
        options = options.replace(parameterization="fourier", param_options={"decay": DEFAULT_DECAY, **(options.param_options or {})})

    labels = [names[k] for k in index]
    # every (target, restart) is one sample of the engine; restart 0 is labelled by the target alone, so
    # restarts=1 gives the images of a plain run
    runs = [(i, r) for i in range(len(index)) for r in range(restarts)]
    run_index = [index[i] for i, _ in runs]
    run_labels = [labels[i] if r == 0 else f"{labels[i]}/restart{r}" for i, r in runs]
    run_init = None if init is None else init[[i for i, _ in runs]]
    with session(predictor, grad=True):  # gradients whatever the caller's grad mode
        chunk = batch_size * restarts
        parts = []
        for a in range(0, len(runs), chunk):
            rows = slice(a, min(len(runs), a + chunk))
            start = None if run_init is None else run_init[rows]
            objective = PopulationControl(run_index[rows], mode, mean, std, temperature)
            projection = _projection(start, contrast, budget, norm)
            parts.append(_synthesize(predictor, objective, start, shape, run_labels[rows], seed,
                                     options.replace(projection=projection)))
    images = torch.cat([p.images for p in parts])
    losses = torch.cat([p.trace.T for p in parts])
    predicted = responses_of(predictor, images, 256)
    if restarts > 1:  # keep each target's best start, by its score on the predictor (no transforms)
        scores = PopulationControl(run_index, mode, mean, std, temperature).forward({Unit.parse(""): predicted}, None)
        best = scores.view(len(index), restarts).argmax(1) + torch.arange(len(index)) * restarts
        images, losses, predicted = images[best], losses[best], predicted[best]
    control = _control(predicted, t_index, mean, std, temperature, len(names))
    nat_images = nat_p = nat_control = nat_max = None
    if natural is not None:
        nat_images = natural[best_natural].cpu()
        nat_p = nat_pred[best_natural]
        nat_control = _control(nat_p, t_index, mean, std, temperature, len(names))
        nat_max = nat_pred.amax(0)
    settings = {"mode": mode, "steps": options.steps, "lr": options.lr, "temperature": temperature,
                "parameterization": options.parameterization, "transforms": None if options.transforms.identity else repr(options.transforms),
                "init": "images" if init is not None else None, "budget": budget, "norm": norm, "tv": options.tv,
                "contrast": contrast, "restarts": restarts,
                "batch_size": batch_size, "seed": seed, "predictor": type(predictor).__name__,
                "synthesis": parts[0].settings}
    return PopulationControlResult(images.cpu(), t_index, labels, predicted, control, nat_images, nat_p, nat_control,
                                   nat_max, losses, mode, names, settings)


def controllability(predictor: nn.Module, brain: nn.Module, natural: torch.Tensor, targets: Any = None,
                    mode: str = "stretch", **options) -> float:
    """Fraction of a brain's targets that images designed on ``predictor`` drive beyond their natural maximum.

    A score for comparing candidate models of the same brain: synthesize
    with :func:`population_control` on the candidate's predictor, present to
    ``brain``, count. ``mode="one_hot"`` counts targets whose brain control
    score beats that of their best natural image instead. The brain's ``brain(images)`` judges (a simulated
    brain's noise-free rates); to rank candidates on what an experimenter records (noisy repetitions) and
    ensemble the best, use :func:`insilico.design.transfer.rank_candidates`.
    """
    result = population_control(predictor, targets, mode, natural=natural, **options)
    report = result.check(brain, natural)
    return report["fraction_beyond_natural"] if mode == "stretch" else report["fraction_control_beats_natural"]


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------
def _shape_and_natural(predictor: nn.Module, natural) -> tuple[tuple, torch.Tensor | None]:
    """The images' (C, H, W) (the predictor's ``input_size``, else the natural images') and the natural images
    through the image gate (the bundled photographs for a (3, 64, 64) predictor given none)."""
    shape = tuple(getattr(predictor, "input_size", ()) or ())
    if natural is None and shape == (3, 64, 64):
        from ..models import photos

        natural, _ = photos.held_out(per_class=16)
    if natural is not None:
        natural = check_images(natural, name="natural")
        shape = shape or tuple(natural.shape[1:])
    if len(shape) != 3:
        raise StimulusError(f"{type(predictor).__name__} has no input_size: pass natural= images (N, C, H, W)")
    return shape, natural


def _check_budgets(budget, init, norm: str, restarts, contrast) -> None:
    """InsilicoError for a distance budget without a start, an unknown norm, restarts < 1 or a contrast <= 0."""
    if budget is not None and init is None:
        raise InsilicoError("a distance budget needs a start: init='natural' or init=images")
    if norm not in ("l2", "linf"):
        raise InsilicoError(f"norm must be 'l2' or 'linf', not {norm!r}")
    if int(restarts) < 1:
        raise InsilicoError(f"restarts must be >= 1, not {restarts}")
    if contrast is not None and not contrast > 0:
        raise InsilicoError(f"contrast is an RMS contrast budget > 0 (pixel std), not {contrast}")


def _best_natural(nat_pred: torch.Tensor, index, mode: str, mean, std, temperature: float) -> torch.Tensor:
    """Per target, the natural image that drives it most (stretch) or controls it best (one-hot)."""
    if mode == "stretch":
        return nat_pred[:, torch.as_tensor(index)].argmax(0)
    return torch.stack([control_score(nat_pred, torch.full((len(nat_pred),), k), mean, std, temperature).argmax()
                        for k in index])


def _start_images(init, natural, best_natural, shape: tuple, n: int) -> torch.Tensor | None:
    """``init`` through the image gate: None, images (n, *shape), or ``"natural"`` (each target's best natural)."""
    if isinstance(init, str):
        if init != "natural":
            raise InsilicoError(f"init must be None, 'natural' or images, not {init!r}")
        if best_natural is None:
            raise InsilicoError("init='natural' needs natural= images")
        init = natural[best_natural]
    return None if init is None else check_images(init, shape=shape, n=n, name="init")


def _control(predicted: torch.Tensor, t_index: torch.Tensor, mean, std, temperature: float, n_targets: int):
    """The control score of each image for its target (NaN without at least 2 targets)."""
    if n_targets >= 2:
        return control_score(predicted, t_index, mean, std, temperature)
    return torch.full((len(t_index),), float("nan"))


def _projection(start: torch.Tensor | None, contrast: float | None, budget: float | None, norm: str):
    """The projection after every step: the contrast budget, then the distance budget around ``start``."""
    from ..synthesis import L2Ball, LinfBall

    projections = [] if contrast is None else [ContrastBudget(contrast)]
    if budget is not None:  # last: the distance budget holds exactly
        projections.append((L2Ball if norm == "l2" else LinfBall)(start, budget))
    return None if not projections else projections[0] if len(projections) == 1 else Chain(projections)


def _synthesize(predictor, objective, start, shape, labels, seed, options: SynthesisOptions):
    """One chunk of samples (``labels``) on the synthesis engine."""
    from ..synthesis import Synthesis

    synth = Synthesis(predictor, objective, n=len(labels), size=shape, init=start, seed=seed, labels=labels,
                      options=options)
    return synth.run()


@torch.no_grad()
def responses_of(model: nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Responses (N, n_targets) of ``model`` to images, batched, no gradients, on the CPU in float32."""
    out = evaluate.predict(model, images, batch_size=batch_size)  # the one batched loop: gated, in a session
    if out.ndim != 2:
        raise InsilicoError(f"{type(model).__name__} gives responses of shape {tuple(out.shape)}; expected (N, n_targets)")
    return out.float().cpu()


def _statistics(predictor: nn.Module, nat_pred: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = getattr(predictor, "response_mean", None), getattr(predictor, "response_std", None)
    if torch.is_tensor(mean) and torch.is_tensor(std) and bool((std > 0).all()):
        return mean.detach().float().cpu(), std.detach().float().cpu()
    if nat_pred is None:
        raise InsilicoError("say how to standardise the targets: a NeuralPredictor carries its natural statistics; "
                            "for another model pass natural= images")
    return nat_pred.mean(0), nat_pred.std(0).clamp_min(1e-12)


def _target_index(predictor, targets, names) -> list[int]:
    if hasattr(predictor, "target_index"):
        return predictor.target_index(targets)
    if targets is None:
        if not names:
            raise InsilicoError("say which targets to control (indices): this model has no .targets")
        return list(range(len(names)))
    targets = [targets] if isinstance(targets, (int, str)) else list(targets)
    if any(isinstance(t, str) for t in targets):
        if not names:
            raise InsilicoError("targets named by string need a model with .targets names")
        return [names.index(t) for t in targets]
    return [int(t) for t in targets]


__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_LR", "DEFAULT_STEPS", "MODES", "POPULATION_CONTROL_DEFAULTS", "PopulationControlOptions", "PopulationControlResult", "controllability",
           "population_control"]
