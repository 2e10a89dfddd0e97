"""Model metamers: images that a layer cannot tell from a reference, with built-in validity tests.

A metamer of a reference image ``x0`` for a layer ``f`` is an image ``x`` with
the same representation, ``f(x) = f(x0)``, found by gradient descent from
noise (Freeman & Simoncelli 2011; Feather et al. 2019, 2023). Showing
metamers to people tests whether they share the model's invariances; the test
means something only if the metamers are *valid*: closer to the reference at
the matched layer than natural images are to each other.

``metamer(model, layer, references)`` minimises, per sample,

    E(x) = ( sum_l w_l * (|f_l(x) - f_l(x0)| / |f_l(x0)|) ** p ) ** (1 / p)

(the relative representation error; one layer: ``|f(x) - f(x0)| / |f(x0)|``;
several layers: a weighted power mean with weights ``w_l`` summing to 1, p = 1
for Adam, 2 for L-BFGS, whose line search wants a smooth loss) in ONE batched
run of the shared engine (:class:`insilico.synthesis.Synthesis`) over every
(layer spec, reference, seed) triple, with:

=================== ===========================================================
constraint          images stay in [0, 1]: ``"clamp"`` (pixels projected after
                    every step; default for Adam) or ``"sigmoid"``
                    (reparameterization; default for L-BFGS)
optimizer           ``"lbfgs"`` (default): per-sample L-BFGS
                    (:class:`insilico.synthesis.lbfgs.BatchLBFGS`: each
                    metamer has its own curvature history and line search);
                    ``"adam"`` with ``schedule="halving"`` (the learning rate
                    halves ``stages`` times over ``steps``, as Feather et al.)
                    or any engine schedule
stopping            per sample: ``target_reached`` (E <= ``threshold``),
                    ``plateau`` (E improved by less than ``plateau_tol``
                    relative over ``plateau_window`` steps), ``steps``
resuming            ``MetamerSynthesis.run()`` again continues;
                    ``metamer(model, resume=result, steps=k)`` continues a
                    (saved) result exactly
coarse to fine      ``coarse_to_fine=True`` for models that expose ``scales``
                    (see :class:`MetamerSynthesis`)
=================== ===========================================================

:meth:`MetamerResult.validity` (:mod:`insilico.design.metamer_validity`) reports, per metamer: (a) the distance to its
reference at the matched layer against a null distribution of distances
between pairs of natural images from different photos at that layer (valid
when below the null's minimum, or a chosen percentile); (b) the model's top-1
class of the metamer and of the reference; (c) the distance at every layer of
the model (and of other models), against each layer's null.

Where things are: the loss is
:class:`insilico.objectives.RepresentationDistance`; the result
(:class:`MetamerResult`) is in :mod:`insilico.design.metamer_result`; the
validity report in :mod:`insilico.design.metamer_validity`. Every name is also
importable from here, as before.

A sample's metamer does not depend on the batch it is in (with either
optimizer: each sample has its own start, curvature history and line search),
so a batch of references costs one batched run, not a compromise. Up to float
rounding: float32 kernels round differently for another batch size (about
one ulp), which L-BFGS amplifies through its curvature pairs to about 1e-5
after a few steps (Adam: about 1e-7); in float64 the two agree to rounding.
L-BFGS is the default: on the bundled CNN it reaches plenoptic's Adam error in
about a tenth of the time (``benchmarks/bench_metamers.py``).

Example
-------
>>> import torch, insilico
>>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU())
>>> refs = torch.rand(2, 3, 12, 12)
>>> result = insilico.metamer(model, "0", refs, steps=50, seed=0, progress=False)
>>> tuple(result.images.shape), bool(result.final_errors.max() < result.errors[0].min())
((2, 3, 12, 12), True)
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import os
from typing import Mapping, Sequence

import torch
from torch import nn

from .. import evaluate
from ..errors import InsilicoError, StimulusError
from ..objectives import RepresentationDistance
from ..pixels import check_images
from ..plan import Plan
from ..options import Job
from ..registry import register_tool
from ..identity import job_identity
from ..seeding import run_seed
from ..sharding import map_chunks
from ..synthesis import stopping
from ..synthesis.engine import Synthesis, derive_seed
from ..synthesis.options import SynthesisOptions
from ..synthesis.result import SynthesisResult
from ..synthesis.settings import options_from
from ..synthesis.schedules import Halving
from ..synthesis.seeds import content_key
from ..units import Unit
from .metamer_result import MetamerResult
from .metamer_validity import (CRITERIA, NULL_PER_CLASS, NULL_SEED, ValidityReport, natural_null_images,  # noqa: F401
                               null_distances, record, relative_distances, validity)

#: Steps of a run without ``steps=``.
DEFAULT_STEPS = 1000
#: Learning rate per optimizer (pixel units for Adam, tuned on bench_metamers.py; L-BFGS's first trial step).
DEFAULT_LR = {"adam": 0.03, "sgd": 0.1, "lbfgs": 1.0}
#: Where metamer's defaults differ from :class:`~insilico.synthesis.SynthesisOptions`' (lr None:
#: ``DEFAULT_LR[optimizer]``; schedule None: "halving" for Adam/SGD, "constant" for L-BFGS).
METAMER_DEFAULTS = {"steps": DEFAULT_STEPS, "optimizer": "lbfgs", "lr": None, "schedule": None}
#: Stop a sample once its relative representation error is at most this.
DEFAULT_THRESHOLD = 0.01
#: Halvings of the learning rate over ``steps`` with ``schedule="halving"``.
DEFAULT_STAGES = 4
#: Plateau rule: stop when the error improved by less than this (relative) ...
DEFAULT_PLATEAU_TOL = 1e-3
#: ... between the means of the last two windows of this many steps.
DEFAULT_PLATEAU_WINDOW = 100
#: Start noise: 0.5 + INIT_NOISE_SD * N(0, 1), clipped to [0, 1] (far from the bounds, where a sigmoid saturates).
INIT_NOISE_SD = 0.1


# ---------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------
def _conditions(layer, scales: Sequence[str] | None) -> list[dict[str, float]]:
    """Layer specs -> list of {unit: weight} (weights summing to 1), one per condition."""
    if layer is None:
        if scales is None:
            raise InsilicoError("say which layer to match, e.g. metamer(model, 'features.3', references)")
        return [{str(s): 1.0 / len(scales) for s in scales}]
    if isinstance(layer, (str, Unit, Mapping)):
        layer = [layer]
    if not isinstance(layer, (list, tuple)) or not layer:
        raise InsilicoError("layer must be a unit address, a dict {address: weight}, or a list of them "
                            f"(one metamer per entry), not {layer!r}")
    out = []
    for entry in layer:
        spec = dict(entry) if isinstance(entry, Mapping) else {str(entry): 1.0}
        spec = {str(Unit.parse(k)): float(v) for k, v in spec.items()}
        if not spec or any(not math.isfinite(w) or w < 0 for w in spec.values()) or sum(spec.values()) <= 0:
            raise InsilicoError(f"layer weights must be non-negative numbers with a positive sum, got {entry!r}")
        total = sum(spec.values())
        out.append({k: w / total for k, w in spec.items()})
    names = [_condition_name(c) for c in out]
    if len(set(names)) != len(names):
        raise InsilicoError(f"a layer spec is listed twice: {names}; use n_seeds= for more metamers per layer")
    return out


def _condition_name(condition: Mapping[str, float]) -> str:
    if len(condition) == 1:
        return next(iter(condition))
    return "+".join(f"{w:.3g}*{k}" for k, w in condition.items())


def _references(references) -> torch.Tensor:
    if hasattr(references, "images") and not torch.is_tensor(references):
        references = references.images  # a StimulusSet
    if not torch.is_tensor(references):
        raise StimulusError(f"references must be a tensor (N, C, H, W) in [0, 1], got {type(references).__name__}")
    if references.ndim == 3:
        raise StimulusError(f"references must be 4-D (N, C, H, W); got one image {tuple(references.shape)}: "
                            "use references[None]")
    return check_images(references, name="references")


def _init_images(init, references: torch.Tensor, keys: list[str], ref_index: list[int], seed: int) -> torch.Tensor:
    n, shape = len(keys), tuple(references.shape[1:])
    if isinstance(init, str):
        if init == "noise":  # one generator per sample, keyed by its content: never depends on the batch
            gens = [torch.Generator().manual_seed(derive_seed(seed, "init|" + key)) for key in keys]
            return torch.stack([0.5 + INIT_NOISE_SD * torch.randn(shape, generator=g) for g in gens]).clamp(0, 1)
        if init in ("gray", "grey"):
            return torch.full((n, *shape), 0.5)
        raise InsilicoError(f"init must be 'noise', 'gray' or images, not {init!r}")
    if torch.is_tensor(init) and init.ndim == 3:
        init = init[None]
    init = check_images(init, name="init").detach().float().cpu()
    if tuple(init.shape[1:]) != shape:
        raise StimulusError(f"init images are {tuple(init.shape[1:])}, the references {shape}")
    if init.shape[0] == 1:
        return init.expand(n, *shape).clone()
    if init.shape[0] == references.shape[0]:
        return init[ref_index].clone()
    if init.shape[0] == n:
        return init.clone()
    raise StimulusError(f"give 1 init image, one per reference ({references.shape[0]}) or one per metamer ({n}); "
                        f"got {init.shape[0]}")



# ---------------------------------------------------------------------------------------
# Synthesis
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class MetamerOptions(SynthesisOptions):
    """The metamer's knobs: every field of :class:`~insilico.synthesis.SynthesisOptions` (the synthesis loop; the
    metamer's defaults: ``METAMER_DEFAULTS``) and its own stopping, constraint and coarse-to-fine below; checked
    when built.

    Attributes
    ----------
    stages : int
        Halvings of the learning rate over ``steps`` with ``schedule="halving"`` (default 4).
    threshold : float
        Stop a sample when its relative error is at most this (default 0.01); 0 or None: never.
    plateau_tol, plateau_window : float, int
        Stop a sample when its error improved by less than ``plateau_tol``
        (relative) between the last two windows of ``plateau_window`` steps
        (defaults 1e-3, 100); ``plateau_tol=None``: never.
    max_steps : int, optional
        Stop every sample after this many steps in total, over resumed runs.
    constraint : {"auto", "clamp", "sigmoid"}
        How images stay in [0, 1] (default: clamp for Adam/SGD, sigmoid for L-BFGS).
    power : {1, 2}, optional
        Loss = error ** power (default 1 for Adam/SGD, 2 for L-BFGS).
    coarse_to_fine : bool or list of str
        For models that expose scales. Contract: ``model.scales`` (or the list
        given here) is a sequence of unit addresses, coarsest first, whose
        outputs together are the representation (e.g. the bands of a
        pyramid, one module per scale). Stage ``k`` (``k = 0 .. S-1``) matches
        scales ``0..k`` with equal weights for ``ctf_steps`` steps; the last
        stage matches all scales (or ``layer``'s weights over them) until
        the stopping rules or the step budget; the rules run in the last stage
        only. Not needed for CNN layers.
    ctf_steps : int, optional
        Steps per coarse stage (default ``steps // (2 * S)``).

    Example
    -------
    >>> MetamerOptions(threshold=None, constraint="clamp", optimizer="adam").constraint
    'clamp'
    >>> MetamerOptions(constraint="clip")
    Traceback (most recent call last):
    ...
    insilico.errors.InsilicoError: constraint must be 'auto', 'clamp' or 'sigmoid', not 'clip'
    """

    stages: int = DEFAULT_STAGES
    threshold: float | None = DEFAULT_THRESHOLD
    plateau_tol: float | None = DEFAULT_PLATEAU_TOL
    plateau_window: int = DEFAULT_PLATEAU_WINDOW
    max_steps: int | None = None
    constraint: str = "auto"
    power: float | None = None
    coarse_to_fine: bool | Sequence[str] = False
    ctf_steps: int | None = None

    def validate(self) -> MetamerOptions:
        """Check every option (the loop's and the metamer's own); returns ``self``."""
        super().validate()
        if self.constraint not in ("auto", "clamp", "sigmoid"):
            raise InsilicoError(f"constraint must be 'auto', 'clamp' or 'sigmoid', not {self.constraint!r}")
        for name in ("stages", "plateau_window", "max_steps", "ctf_steps"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0):
                raise InsilicoError(f"{name} must be an int >= 0, not {value!r}")
        return self


class MetamerSynthesis:
    """Metamers of many references, layer specs and seeds in one batched, resumable run.

    Samples are ordered layer spec first, then reference, then seed: sample
    ``(c * R + r) * n_seeds + k`` matches reference ``r`` at layer spec ``c``
    from the ``k``-th random start; its label is ``"<layer>|<r>"`` (plus
    ``"#k"`` with ``n_seeds > 1``); its engine seed is derived from ``seed``
    and that label, its start noise from ``seed``, the layer spec, the
    reference's pixels and ``k``, so a metamer is the same whether its
    reference is given alone, in a batch or in a chunk of a sharded job.

    Parameters
    ----------
    model : nn.Module
        Takes pixel-space images (N, C, H, W) in [0, 1].
    layer : str, dict or list
        ``"features.3"``: one layer (any unit address, e.g. ``"features.3[5]"``
        for some channels); ``{"features.0": 1, "features.3": 2}``: several
        layers in one loss, with weights (normalised to sum 1); a list of these:
        one metamer per entry, all in the same run.
    references : tensor (R, C, H, W) in [0, 1] (or a StimulusSet)
    n_seeds : int
        Metamers per reference and layer spec, each from its own noise (default 1).
    init : "noise", "gray" or tensor
        Start: noise (default; ``0.5 + 0.1 N(0, 1)`` clipped to [0, 1], each
        sample from its own generator), mid-grey, or images: 1, one per
        reference, or one per metamer.
    seed : int or None
        Seed of the job (default 0).
    first_reference : int
        Index of ``references[0]`` in the whole job (labels, and so the start
        noise, use it): a chunk of a sharded job gets the samples it has in
        the whole job (default 0).
    progress : bool
        Progress bar (default True).
    options : MetamerOptions or SynthesisOptions, optional
        The knobs: the metamer's own stopping, constraint and coarse-to-fine (:class:`MetamerOptions`) and the
        synthesis loop's (a plain SynthesisOptions sets those; the metamer's own keep their defaults).
    **option_overrides
        Any field of :class:`MetamerOptions` (``threshold=None``, ``optimizer="adam"``, ``steps=200``, ...),
        on top of ``options``.

    Example
    -------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU())
    >>> synth = MetamerSynthesis(model, ["0", "1"], torch.rand(3, 1, 10, 10), steps=20, threshold=None,
    ...                          progress=False)
    >>> synth.labels[:4]
    ['0|0', '0|1', '0|2', '1|0']
    >>> r = synth.run(); r = synth.run(10)       # continues
    >>> synth.step, tuple(r.images.shape)
    (30, (6, 1, 10, 10))
    """

    def __init__(self, model: nn.Module, layer, references, *, n_seeds: int = 1, init="noise", seed: int = 0,
                 first_reference: int = 0, progress: bool = True,
                 options: MetamerOptions | SynthesisOptions | None = None, **option_overrides):
        options = MetamerOptions.from_kwargs("MetamerSynthesis", METAMER_DEFAULTS, options, **option_overrides)
        threshold, plateau_tol, max_steps, power = options.threshold, options.plateau_tol, options.max_steps, options.power
        constraint, ctf_steps = options.constraint, options.ctf_steps
        optimizer = options.optimizer
        if not isinstance(model, nn.Module):
            raise InsilicoError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if optimizer not in DEFAULT_LR:
            raise InsilicoError(f"optimizer must be one of {tuple(DEFAULT_LR)}, not {optimizer!r}")
        if options.parameterization not in (None, "pixel") or "squash" in (options.param_options or {}):
            raise InsilicoError("metamers are optimised in pixels, kept in [0, 1] by constraint=: leave "
                                "parameterization= and param_options['squash'] out")
        if int(n_seeds) < 1:
            raise InsilicoError(f"n_seeds must be at least 1, got {n_seeds}")
        self.model = model
        self.references = _references(references).detach().float().cpu()
        self.scales = self._scales(model, options.coarse_to_fine)
        self.conditions = _conditions(layer, self.scales)
        if self.scales is not None:
            if len(self.conditions) != 1 or set(self.conditions[0]) - set(self.scales):
                raise InsilicoError(f"with coarse_to_fine, layer must be None or weights over the scales {self.scales}")
        self.plan = Plan(model)  # the metamers' one Probe: their targets and the engine's runs
        self.layers = list(dict.fromkeys(k for c in self.conditions for k in c))
        self.plan.probe.units(*self.layers)  # unknown modules fail now, with close matches
        self.n_seeds, self.seed, self.first_reference = int(n_seeds), int(seed), int(first_reference)
        r = self.references.shape[0]
        self.condition_index, self.reference_index, self.seed_index, self.labels = [], [], [], []
        for c, cond in enumerate(self.conditions):
            for i in range(r):
                for k in range(self.n_seeds):
                    self.condition_index.append(c)
                    self.reference_index.append(i)
                    self.seed_index.append(k)
                    self.labels.append(f"{_condition_name(cond)}|{i + self.first_reference}"
                                       + (f"#{k}" if self.n_seeds > 1 else ""))
        self.optimizer = optimizer
        self.power = float(power if power is not None else (2.0 if optimizer == "lbfgs" else 1.0))
        self.constraint = constraint if constraint != "auto" else ("sigmoid" if optimizer == "lbfgs" else "clamp")
        self.steps, self.stages = options.steps, int(options.stages)
        schedule = options.schedule
        if schedule is None:
            schedule = "constant" if optimizer == "lbfgs" else "halving"
        self.schedule_name = schedule if isinstance(schedule, str) else "custom"
        engine_schedule = Halving(max(1, math.ceil(self.steps / (self.stages + 1)))) if schedule == "halving" else schedule
        self.threshold = float(threshold) if threshold else None
        self.plateau_tol, self.plateau_window = plateau_tol, int(options.plateau_window)
        self.max_steps = max_steps
        self.extra_rules = list(options.stop)
        rules: list = []
        if self.threshold is not None:
            rules.append(stopping.TargetReached(self.threshold ** self.power))
        if plateau_tol is not None:
            rules.append(stopping.Plateau(tol=float(plateau_tol), window=self.plateau_window))
        if max_steps is not None:
            rules.append(stopping.MaxSteps(int(max_steps)))
        self.rules = rules + self.extra_rules

        # targets: every matched unit, for every sample's reference
        targets = self._targets()
        weights = torch.tensor([[cond.get(u, 0.0) for u in self.layers] for cond in self.conditions])
        self.final_weights = weights[self.condition_index]
        self.objective = RepresentationDistance(targets, self.final_weights, power=self.power)
        if self.scales is not None:
            self.ctf_steps = int(ctf_steps) if ctf_steps else max(1, self.steps // (2 * len(self.scales)))
        else:
            self.ctf_steps = 0
        # start noise keyed by (layer spec, the reference's pixels, k): the same alone, in a batch or in a chunk
        digests = content_key(self.references)
        keys = [f"{_condition_name(self.conditions[c])}|{digests[r]}#{k}"
                for c, r, k in zip(self.condition_index, self.reference_index, self.seed_index)]
        init_images = _init_images(init, self.references, keys, self.reference_index, self.seed)
        self.init_kind = init if isinstance(init, str) else "images"
        self.lr = float(options.lr if options.lr is not None else DEFAULT_LR[optimizer])
        self.options = options.base(SynthesisOptions).replace(lr=self.lr, schedule=engine_schedule, stop=self.rules, progress=False,
                                       parameterization="pixel",
                                       param_options={**(options.param_options or {}), "squash": self.constraint},
                                       compact="cpu")
        self.engine = Synthesis(model, self.objective, init=init_images, goal="minimize", seed=self.seed,
                                labels=self.labels, plan=self.plan, options=self.options)
        self.progress = progress

    @staticmethod
    def _scales(model, coarse_to_fine) -> list[str] | None:
        if coarse_to_fine is False or coarse_to_fine is None:
            return None
        if coarse_to_fine is True:
            scales = getattr(model, "scales", None)
            if scales is None:
                raise InsilicoError(
                    f"coarse_to_fine=True needs {type(model).__name__}.scales: a list of unit addresses, coarsest "
                    "first (one module per scale); or pass the list: coarse_to_fine=['pyr.low', 'pyr.mid', ...]")
        else:
            scales = coarse_to_fine
        scales = [str(Unit.parse(s)) for s in scales]
        if len(scales) < 2:
            raise InsilicoError(f"coarse to fine needs at least 2 scales, got {scales}")
        return scales

    def _targets(self) -> dict[str, torch.Tensor]:
        """Every matched unit's response (N, ...) to each sample's reference, on the model's device and dtype.

        One session, one Probe record ending each pass after the units
        (:func:`insilico.evaluate.responses`): layers after them need not take
        this size; an error of the model before them reaches the caller unchanged.
        """
        values = evaluate.responses(self.model, self.references, self.layers, batch_size=64, plan=self.plan)
        index = torch.as_tensor(self.reference_index).to(values[0].device)
        return {u: v[index] for u, v in zip(self.layers, values)}

    # -- running -------------------------------------------------------------------------------
    @property
    def step(self) -> int:
        """Steps taken so far (over every run)."""
        return self.engine.step

    def _stage(self, step: int) -> int:
        if self.scales is None:
            return -1
        return min(step // self.ctf_steps, len(self.scales) - 1)

    def _set_stage(self, stage: int) -> None:
        if stage < 0 or stage == len(self.scales) - 1:
            self.objective.set_weights(self.final_weights)
            self.engine.rules = self.rules
            return
        active = set(self.scales[: stage + 1])
        w = torch.tensor([1.0 if u in active else 0.0 for u in self.layers])
        self.objective.set_weights((w / w.sum()).expand(len(self.labels), -1).clone())
        self.engine.rules = []  # the rules judge the full representation only

    def run(self, steps: int | None = None) -> MetamerResult:
        """Take up to ``steps`` more steps (default: ``steps`` of the constructor); returns the result.

        Calling it again continues exactly (``run(a); run(b)`` equals ``run(a + b)``).
        """
        from tqdm.auto import tqdm

        budget = self.steps if steps is None else int(steps)
        target = self.step + budget
        bar = tqdm(total=budget, disable=not self.progress, desc=f"metamers ({len(self.labels)} images x {budget} steps)",
                   unit="step", leave=False)
        try:
            while self.step < target and not bool(self.engine.frozen.all()):
                stage = self._stage(self.step)
                if self.scales is not None:
                    self._set_stage(stage)
                end = target
                if self.scales is not None and stage < len(self.scales) - 1:
                    end = min(end, (stage + 1) * self.ctf_steps)
                before = self.step
                self.engine.run(end - self.step)
                bar.update(self.step - before)
                if self.step < end:  # every sample stopped
                    break
        finally:
            bar.close()
        return self.result()

    synthesize = run

    def result(self) -> MetamerResult:
        """The current state as a :class:`MetamerResult`."""
        base = self.engine.result()
        base.settings["metamer"] = self.settings()
        fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(SynthesisResult)}
        result = MetamerResult(**fields, references=self.references.clone(),
                               reference_index=list(self.reference_index), condition_index=list(self.condition_index),
                               conditions=[dict(c) for c in self.conditions])
        feats, _ = record(self.model, self.layers, result.images)
        ref_feats = {u: self.objective.targets[l].reshape(len(self.labels), -1).float().cpu()
                     for l, u in enumerate(self.layers)}
        per_layer = torch.stack([relative_distances(feats[u], ref_feats[u]) for u in self.layers], dim=1)
        weights = self.final_weights
        result.layer_errors = {u: torch.where(weights[:, l] > 0, per_layer[:, l], torch.full_like(per_layer[:, l], float("nan")))
                               for l, u in enumerate(self.layers)}
        result.final_errors = (weights * per_layer.double().pow(self.power)).sum(dim=1).pow(1.0 / self.power).float()
        result.model = self.model
        return result

    def settings(self) -> dict:
        """JSON-able settings that rebuild this synthesis (with the references and the model)."""
        return {
            "conditions": [dict(c) for c in self.conditions], "n_seeds": self.n_seeds, "init": self.init_kind,
            "steps": self.steps, "optimizer": self.optimizer, "lr": self.lr, "schedule": self.schedule_name,
            "stages": self.stages, "threshold": self.threshold, "plateau_tol": self.plateau_tol,
            "plateau_window": self.plateau_window, "max_steps": self.max_steps,
            "stop": [stopping.rule_spec(r) for r in self.extra_rules], "constraint": self.constraint,
            "power": self.power, "coarse_to_fine": self.scales or False, "ctf_steps": self.ctf_steps or None,
            "seed": self.seed, "first_reference": self.first_reference,
        }

    @classmethod
    def from_result(cls, result: MetamerResult, model: nn.Module, **overrides) -> MetamerSynthesis:
        """A synthesis that continues ``result`` (e.g. loaded from disk) for ``model``."""
        if not isinstance(result, MetamerResult) or "metamer" not in result.settings:
            raise InsilicoError("resume= needs a result of insilico.metamer (a MetamerResult)")
        if result.state is None:
            raise InsilicoError("this result has no saved state (saved with state=False); it cannot be resumed")
        s = dict(result.settings["metamer"])
        conditions = s.pop("conditions")
        s["stop"] = [stopping.from_spec(r) for r in s["stop"]]
        s.pop("init")
        s.pop("loss_scale", None)
        if s["schedule"] == "custom" and "schedule" not in overrides:
            raise InsilicoError("this result used a custom schedule function; pass it again: schedule=...")
        _, engine = options_from(result)  # the engine's other options (precision, penalties, transforms...)
        fixed = ("n", "size", "seed", "labels", "goal", "param_options", "stop", "schedule", "steps", "optimizer", "lr",
                 "compact")
        s.update({k: v for k, v in engine.items() if k not in fixed}, **overrides)
        synth = cls(model, conditions, result.references, init=result.images.clamp(0, 1), **s)
        if list(synth.labels) != list(result.labels):
            raise InsilicoError("the result's samples do not match this synthesis (labels differ)")
        synth.engine.load_state_dict(result.state)
        return synth

    def __repr__(self) -> str:
        return (f"MetamerSynthesis({len(self.labels)} metamers: {len(self.conditions)} layer spec(s) x "
                f"{self.references.shape[0]} references x {self.n_seeds} seeds, {self.optimizer}, step {self.step})")


@register_tool("design", per_sample=True)
def metamer(model: nn.Module, layer=None, references=None, *, steps: int | None = None, seed: int = 0,
            resume: MetamerResult | None = None, batch_size: int | None = None,
            out: str | os.PathLike | Job | None = None, options: MetamerOptions | SynthesisOptions | None = None,
            **metamer_options) -> MetamerResult | None:
    """Metamers of ``references`` for ``layer``: same representation there (Freeman & Simoncelli 2011; Feather et al. 2019).

    Parameters
    ----------
    model : nn.Module
        Takes pixel-space images (N, C, H, W) in [0, 1].
    layer : str, dict or list
        One unit address, ``{address: weight}`` for several layers in one
        loss, or a list of these (one metamer per entry, one batched run).
    references : tensor (R, C, H, W) in [0, 1]
        The images to match (finite, in [0, 1]; checked before anything runs).
    steps : int, optional
        Step budget (default: ``options.steps``, else 1000: ``METAMER_DEFAULTS``); with ``resume=``: steps to
        add.
    seed : int or None
        Seeds every metamer's start noise (default 0).
    resume : MetamerResult, optional
        Continue this result (also one loaded with :meth:`MetamerResult.load`)
        for ``steps`` more steps; ``layer``/``references`` come from it.
    batch_size : int, optional
        References per chunk (default: all in one batch); each chunk is one
        batched run of all its metamers.
    out : folder or Job, optional
        Keep each finished chunk there (a rerun computes only the missing
        ones); a :class:`~insilico.options.Job` also shares the chunks among ranks (``shard``; default: the
        ranks of an initialised ``torch.distributed`` group, e.g. under ``torchrun``) or starts over
        (``overwrite``): see :func:`insilico.sharding.map_chunks`. Every rank returns the whole
        result, equal to a single-process run with the same ``batch_size``;
        a hand-made ``shard`` returns None until every chunk is done. The
        folder keeps the job's identity (the model's parameters, the
        references, every option: :mod:`insilico.identity`); a folder of
        another job is refused (:class:`~insilico.errors.JobMismatchError`).
    options : MetamerOptions or SynthesisOptions, optional
        The knobs (:class:`MetamerOptions`; a plain SynthesisOptions, e.g. one object shared with
        :func:`insilico.maximize`, sets the loop's and leaves the metamer's own at their defaults).
    **metamer_options
        Of :class:`MetamerSynthesis`: ``n_seeds``, ``init``, ``progress``; and any field of
        :class:`MetamerOptions`: the metamer's own (``threshold``, ``plateau_tol``, ``constraint``,
        ``coarse_to_fine``, ...) and the loop's (``optimizer``, ``lr``, ``schedule``, ``stop``, ...).

    Returns
    -------
    MetamerResult
        ``.images`` (N, C, H, W) in [0, 1], ``.final_errors``, ``.stop_reasons``,
        ``.validity()``, ``.plot()``, ``.plot_losses()``, ``.save()``.

    Example
    -------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.ReLU(), torch.nn.Conv2d(3, 2, 3))
    >>> r = metamer(net, ["0", "2"], torch.rand(2, 1, 9, 9), steps=30, n_seeds=2, threshold=1e-6, progress=False)
    >>> len(r), r.labels[-1], r.stop_reasons[0]
    (8, '2|1#1', 'steps')
    >>> r2 = metamer(net, resume=r, steps=10, progress=False)
    >>> int(r2.steps.max())
    40
    """
    seed = run_seed(seed, out)
    if resume is not None:
        overrides = {k: v for k, v in metamer_options.items() if k == "progress"}
        return MetamerSynthesis.from_result(resume, model, **overrides).run(steps)
    if references is None:
        raise InsilicoError("give the reference images: metamer(model, layer, references)")
    if steps is not None:
        metamer_options["steps"] = steps
    if batch_size is None and out is None:
        return MetamerSynthesis(model, layer, references, seed=seed, options=options, **metamer_options).run()
    references = _references(references)
    size = len(references) if batch_size is None else int(batch_size)
    fields = MetamerOptions.fields()
    knobs = MetamerOptions.from_kwargs("metamer", METAMER_DEFAULTS, options,
                                       **{k: v for k, v in metamer_options.items() if k in fields})
    settings = {"tool": "metamer", "batch_size": size, "seed": seed, "layer": layer,  # every option changes them
                **{k: v for k, v in metamer_options.items() if k != "progress" and k not in fields},
                **knobs.identity()}
    parts = map_chunks(lambda a, b: MetamerSynthesis(model, layer, references[a:b], seed=seed, first_reference=a,
                                                     options=options, **metamer_options).run(),
                       len(references), size, out=out,
                       job=lambda: job_identity(model, settings, {"references": references}, size))
    return None if parts is None else MetamerResult.concat(parts)


__all__ = ["CRITERIA", "DEFAULT_STEPS", "DEFAULT_THRESHOLD", "Halving", "METAMER_DEFAULTS", "MetamerOptions", "MetamerResult",
           "MetamerSynthesis", "RepresentationDistance", "ValidityReport", "metamer", "natural_null_images",
           "null_distances", "record", "relative_distances", "validity"]
