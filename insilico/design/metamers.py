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

:meth:`MetamerResult.validity` reports, per metamer: (a) the distance to its
reference at the matched layer against a null distribution of distances
between pairs of natural images from different photos at that layer (valid
when below the null's minimum, or a chosen percentile); (b) the model's top-1
class of the metamer and of the reference; (c) the distance at every layer of
the model (and of other models), against each layer's null.

A sample's metamer does not depend on the batch it is in (with either
optimizer), so a batch of references costs one batched run, not a compromise.
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

import copy
import dataclasses
import json
import math
import os
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import InsilicoError, StimulusError
from ..objectives import Activations, Objective
from ..probe import Probe
from ..sharding import map_chunks
from ..synthesis import stopping
from ..synthesis.engine import Synthesis, derive_seed
from ..synthesis.parameterization import check_images
from ..synthesis.result import SynthesisResult
from ..units import Unit

#: Steps of a run without ``steps=``.
DEFAULT_STEPS = 1000
#: Learning rate per optimizer (pixel units for Adam, tuned on bench_metamers.py; L-BFGS's first trial step).
DEFAULT_LR = {"adam": 0.03, "sgd": 0.1, "lbfgs": 1.0}
#: Stop a sample once its relative representation error is at most this.
DEFAULT_THRESHOLD = 0.01
#: Halvings of the learning rate over ``steps`` with ``schedule="halving"``.
DEFAULT_STAGES = 4
#: Plateau rule: stop when the error improved by less than this (relative) ...
DEFAULT_PLATEAU_TOL = 1e-3
#: ... between the means of the last two windows of this many steps.
DEFAULT_PLATEAU_WINDOW = 100
#: Null distribution: held-out crops per bundled photo (16 photos), and the seed of their positions.
NULL_PER_CLASS, NULL_SEED = 5, 9001
CRITERIA = ("min", "percentile")
#: Start noise: 0.5 + INIT_NOISE_SD * N(0, 1), clipped to [0, 1] (far from the bounds, where a sigmoid saturates).
INIT_NOISE_SD = 0.1


# ---------------------------------------------------------------------------------------
# The loss
# ---------------------------------------------------------------------------------------
class RepresentationDistance(Objective):
    """Per-sample weighted relative distance to target representations at one or more layers.

    ``value[n] = sum_l weights[n, l] * (|a_l[n] - targets_l[n]| / |targets_l[n]|) ** power``
    with ``|.|`` the Euclidean norm over the unit's values.

    Parameters
    ----------
    targets : dict {unit address: tensor (N, ...)}
        The representation to match at each unit, one row per sample.
    weights : tensor (N, L), optional
        Weight of each of the ``L`` units for each sample (default: 1/L each).
    power : float
        1 (the relative error; default) or 2 (its square: smooth, for L-BFGS).

    Example
    -------
    >>> import torch
    >>> d = RepresentationDistance({"fc": torch.tensor([[3.0, 4.0]])})
    >>> d({"fc": torch.tensor([[3.0, 4.5]])}).tolist()
    [0.10000000149011612]
    """

    def __init__(self, targets: Mapping[str, torch.Tensor], weights: torch.Tensor | None = None, power: float = 1.0):
        if not targets:
            raise InsilicoError("RepresentationDistance needs at least one target: {unit: tensor (N, ...)}")
        self.layers = [Unit.parse(u) for u in targets]
        self.units = tuple(self.layers)
        self.targets = [t.detach() for t in targets.values()]
        n = self.targets[0].shape[0]
        if any(t.shape[0] != n for t in self.targets):
            raise InsilicoError("every target needs the same number of rows (one per sample)")
        self.norms = [t.reshape(n, -1).norm(dim=1) for t in self.targets]
        weights = torch.full((n, len(self.layers)), 1.0 / len(self.layers)) if weights is None else weights
        self.set_weights(weights)
        self.power = float(power)

    def set_weights(self, weights: torch.Tensor) -> None:
        """Change the weights (N, L) (e.g. between coarse-to-fine stages)."""
        weights = torch.as_tensor(weights, dtype=torch.float32)
        if tuple(weights.shape) != (self.targets[0].shape[0], len(self.layers)):
            raise InsilicoError(f"weights must be (N, L) = {(self.targets[0].shape[0], len(self.layers))}, "
                                f"got {tuple(weights.shape)}")
        for l, norm in enumerate(self.norms):
            dead = (weights[:, l] > 0) & (norm.cpu() == 0)
            if bool(dead.any()):
                rows = dead.nonzero().flatten().tolist()
                raise InsilicoError(
                    f"the reference of sample(s) {rows} gives an all-zero representation at {self.layers[l]}: "
                    "the relative distance is undefined there; match another layer (e.g. before the ReLU)")
        self.weights = weights

    def layer_errors(self, acts: Activations) -> torch.Tensor:
        """Relative errors (N, L) at every unit."""
        columns = []
        for unit, target, norm in zip(self.layers, self.targets, self.norms):
            a = acts[unit]
            target, norm = target.to(a.device, a.dtype), norm.to(a.device, a.dtype)
            columns.append((a - target).reshape(a.shape[0], -1).norm(dim=1) / norm.clamp_min(1e-30))
        return torch.stack(columns, dim=1)

    def subset(self, rows: torch.Tensor) -> RepresentationDistance:
        """The distance for the samples ``rows`` only (their targets and weights)."""
        cut = copy.copy(self)
        cut.targets = [t.index_select(0, rows.to(t.device)) for t in self.targets]
        cut.norms = [n.index_select(0, rows.to(n.device)) for n in self.norms]
        cut.weights = self.weights.index_select(0, rows.to(self.weights.device))
        return cut

    def forward(self, acts, images):
        errors = self.layer_errors(acts)
        weights = self.weights.to(errors.device, errors.dtype)
        return (weights * errors.pow(self.power)).sum(dim=1)

    def __repr__(self) -> str:
        return f"RepresentationDistance({[str(u) for u in self.layers]}, power={self.power:g})"


@dataclasses.dataclass(frozen=True)
class Halving:
    """Learning-rate factor ``factor ** (step // stage_steps)``: stages of constant rate, each half the last.

    Example
    -------
    >>> [Halving(10)(s) for s in (0, 9, 10, 25)]
    [1.0, 1.0, 0.5, 0.25]
    """

    stage_steps: int
    factor: float = 0.5

    def __call__(self, step: int) -> float:
        return float(self.factor ** (int(step) // max(1, int(self.stage_steps))))


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
    return check_images(references)


def _init_images(init, references: torch.Tensor, labels: list[str], ref_index: list[int], seed: int) -> torch.Tensor:
    n, shape = len(labels), tuple(references.shape[1:])
    if isinstance(init, str):
        if init == "noise":  # one generator per sample: a sample's start never depends on the batch
            gens = [torch.Generator().manual_seed(derive_seed(seed, "init|" + label)) for label in labels]
            return torch.stack([0.5 + INIT_NOISE_SD * torch.randn(shape, generator=g) for g in gens]).clamp(0, 1)
        if init in ("gray", "grey"):
            return torch.full((n, *shape), 0.5)
        raise InsilicoError(f"init must be 'noise', 'gray' or images, not {init!r}")
    init = init.detach().float().cpu()
    if init.ndim == 3:
        init = init[None]
    init = check_images(init)
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


@torch.no_grad()
def record(model: nn.Module, units: Sequence[str], images: torch.Tensor, batch_size: int = 64,
           logits: bool = False) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """Flattened responses ``{unit: (N, D)}`` of ``units`` to ``images`` (and the model's outputs if ``logits``).

    Example
    -------
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU())
    >>> feats, out = record(model, ["0"], torch.rand(3, 1, 5, 5), logits=True)
    >>> tuple(feats["0"].shape), tuple(out.shape)
    ((3, 18), (3, 2, 3, 3))
    """
    probe = Probe(model)
    device, dtype = probe.device, probe.dtype
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    feats: dict[str, list] = {u: [] for u in units}
    outs = []
    try:
        for start in range(0, images.shape[0], batch_size):
            x = images[start:start + batch_size].to(device, dtype)
            with probe.record(*units) as rec:
                try:
                    out = model(x)
                except Exception:
                    if logits:
                        raise
                    out = None  # the layers after the recorded ones may not take this size
                for u in units:
                    feats[u].append(rec[u].reshape(x.shape[0], -1).float().cpu())
            if logits:
                outs.append(out.float().cpu() if torch.is_tensor(out) else None)
    finally:
        for m, mode in modes:
            m.training = mode
    out = None
    if logits and all(o is not None for o in outs):
        out = torch.cat(outs)
    return {u: torch.cat(v) for u, v in feats.items()}, out


def relative_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``|a - b| / |b|`` row by row for flattened responses (N, D).

    Example
    -------
    >>> relative_distances(torch.tensor([[3.0, 4.5]]), torch.tensor([[3.0, 4.0]])).tolist()
    [0.10000000149011612]
    """
    return (a - b).norm(dim=1) / b.norm(dim=1).clamp_min(1e-30)


def null_distances(features: torch.Tensor, groups: Sequence | None = None) -> torch.Tensor:
    """Relative distances ``|f_i - f_j| / |f_j|`` of all ordered pairs i != j (of different groups).

    Parameters
    ----------
    features : tensor (M, D)
        Flattened responses of M natural images at one layer.
    groups : sequence of M labels, optional
        Pairs within a group (e.g. crops of one photo) are left out.

    Example
    -------
    >>> d = null_distances(torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 1.0]]), groups=["a", "b", "b"])
    >>> [round(v, 3) for v in d.tolist()]       # pairs (0, 1), (0, 2), (1, 0), (2, 0)
    [1.118, 1.414, 2.236, 1.414]
    """
    f = features.double()
    sq = (f * f).sum(dim=1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * f @ f.T).clamp_min(0)
    dist = d2.sqrt() / sq.sqrt().clamp_min(1e-30)[None, :]
    keep = ~torch.eye(len(f), dtype=torch.bool)
    if groups is not None:
        g = np.asarray([str(x) for x in groups])
        keep &= torch.from_numpy(g[:, None] != g[None, :])
    return dist[keep].float()


def natural_null_images(shape: Sequence[int], per_class: int = NULL_PER_CLASS,
                        seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    """Held-out crops of the bundled photos (:func:`insilico.models.photos.held_out`) and the photo of each.

    Resized to ``shape`` (C, H, W) (grey for one channel) when it is not (3, 64, 64).

    Example
    -------
    >>> images, groups = natural_null_images((1, 32, 32), per_class=1)
    >>> tuple(images.shape), groups[:2]
    ((16, 1, 32, 32), ['astronaut', 'brick'])
    """
    from ..models import photos

    x, y = photos.held_out(per_class, seed=NULL_SEED + int(seed))
    c, h, w = (int(v) for v in shape)
    if (h, w) != tuple(x.shape[2:]):
        x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", antialias=True,
                                            align_corners=False).clamp(0, 1)
    if c != 3:
        x = x.mean(dim=1, keepdim=True).expand(-1, c, -1, -1).contiguous()
    return x, [photos.CLASSES[int(k)] for k in y]


def default_layers(model: nn.Module, shape: Sequence[int]) -> list[str]:
    """Addresses of the modules with parameters, in call order (last call of a module called several times).

    Example
    -------
    >>> m = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Conv2d(2, 2, 3))
    >>> default_layers(m, (1, 8, 8))
    ['0', '2']
    """
    named = {m: n for n, m in model.named_modules() if n and any(True for _ in m.parameters(recurse=False))}
    order, counts = [], {}

    def hook(module, args, output):
        order.append(named[module])
        counts[named[module]] = counts.get(named[module], 0) + 1

    handles = [m.register_forward_hook(hook) for m in named]
    device, dtype = Probe(model).device, Probe(model).dtype
    try:
        with torch.no_grad():
            model(torch.full((1, *shape), 0.5, device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
    seen = list(dict.fromkeys(order))
    return [n if counts[n] == 1 else f"{n}@-1" for n in seen]


# ---------------------------------------------------------------------------------------
# Synthesis
# ---------------------------------------------------------------------------------------
class MetamerSynthesis:
    """Metamers of many references, layer specs and seeds in one batched, resumable run.

    Samples are ordered layer spec first, then reference, then seed: sample
    ``(c * R + r) * n_seeds + k`` matches reference ``r`` at layer spec ``c``
    from the ``k``-th random start; its label is ``"<layer>|<r>"`` (plus
    ``"#k"`` with ``n_seeds > 1``) and its start noise and engine seed are
    derived from ``seed`` and that label.

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
    steps : int
        Steps of a ``run()`` without argument (default 1000).
    optimizer : {"lbfgs", "adam", "sgd"}
        Default "lbfgs".
    lr : float, optional
        Default ``DEFAULT_LR[optimizer]``.
    schedule : "halving", "constant", "cosine", "linear" or callable
        Default "halving" for Adam/SGD: the rate halves ``stages`` times over
        ``steps`` (stages of ``steps / (stages + 1)`` steps), "constant" for L-BFGS.
    stages : int
        Halvings (default 4).
    threshold : float
        Stop a sample when its relative error is at most this (default 0.01);
        0 or None: never.
    plateau_tol, plateau_window : float, int
        Stop a sample when its error improved by less than ``plateau_tol``
        (relative) between the last two windows of ``plateau_window`` steps
        (defaults 1e-3, 100); ``plateau_tol=None``: never.
    max_steps : int, optional
        Stop every sample after this many steps in total, over resumed runs.
    stop : list of rules, optional
        More stopping rules (:mod:`insilico.synthesis.stopping`), on the loss values.
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
    seed : int
        Seed of the job (default 0).
    first_reference : int
        Index of ``references[0]`` in the whole job (labels, and so the start
        noise, use it): a chunk of a sharded job gets the samples it has in
        the whole job (default 0).
    progress : bool
        Progress bar (default True).

    Example
    -------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU())
    >>> synth = MetamerSynthesis(model, ["0", "1"], torch.rand(3, 1, 10, 10), steps=20, progress=False)
    >>> synth.labels[:4]
    ['0|0', '0|1', '0|2', '1|0']
    >>> r = synth.run(); r = synth.run(10)       # continues
    >>> synth.step, tuple(r.images.shape)
    (30, (6, 1, 10, 10))
    """

    def __init__(self, model: nn.Module, layer, references, *, n_seeds: int = 1, init="noise",
                 steps: int = DEFAULT_STEPS, optimizer: str = "lbfgs", lr: float | None = None,
                 schedule: str | Callable[[int], float] | None = None, stages: int = DEFAULT_STAGES,
                 threshold: float | None = DEFAULT_THRESHOLD, plateau_tol: float | None = DEFAULT_PLATEAU_TOL,
                 plateau_window: int = DEFAULT_PLATEAU_WINDOW, max_steps: int | None = None,
                 stop: Sequence[stopping.Rule] = (), constraint: str = "auto", power: float | None = None,
                 coarse_to_fine: bool | Sequence[str] = False, ctf_steps: int | None = None, seed: int = 0,
                 first_reference: int = 0, progress: bool = True, sync_every: int = 16):
        if not isinstance(model, nn.Module):
            raise InsilicoError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if optimizer not in DEFAULT_LR:
            raise InsilicoError(f"optimizer must be one of {tuple(DEFAULT_LR)}, not {optimizer!r}")
        if constraint not in ("auto", "clamp", "sigmoid"):
            raise InsilicoError(f"constraint must be 'auto', 'clamp' or 'sigmoid', not {constraint!r}")
        if int(n_seeds) < 1:
            raise InsilicoError(f"n_seeds must be at least 1, got {n_seeds}")
        self.model = model
        self.references = _references(references).detach().float().cpu()
        self.scales = self._scales(model, coarse_to_fine)
        self.conditions = _conditions(layer, self.scales)
        if self.scales is not None:
            if len(self.conditions) != 1 or set(self.conditions[0]) - set(self.scales):
                raise InsilicoError(f"with coarse_to_fine, layer must be None or weights over the scales {self.scales}")
        probe = Probe(model)
        self.layers = list(dict.fromkeys(k for c in self.conditions for k in c))
        probe.units(*self.layers)  # unknown modules fail now, with close matches
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
        self.steps, self.stages = int(steps), int(stages)
        if schedule is None:
            schedule = "constant" if optimizer == "lbfgs" else "halving"
        self.schedule_name = schedule if isinstance(schedule, str) else "custom"
        engine_schedule = Halving(max(1, math.ceil(self.steps / (self.stages + 1)))) if schedule == "halving" else schedule
        self.threshold = float(threshold) if threshold else None
        self.plateau_tol, self.plateau_window = plateau_tol, int(plateau_window)
        self.max_steps = max_steps
        self.extra_rules = list(stop)
        rules: list = []
        if self.threshold is not None:
            rules.append(stopping.TargetReached(self.threshold ** self.power))
        if plateau_tol is not None:
            rules.append(stopping.Plateau(tol=float(plateau_tol), window=self.plateau_window))
        if max_steps is not None:
            rules.append(stopping.MaxSteps(int(max_steps)))
        self.rules = rules + self.extra_rules

        # targets: every matched unit, for every sample's reference
        targets = self._targets(probe)
        weights = torch.tensor([[cond.get(u, 0.0) for u in self.layers] for cond in self.conditions])
        self.final_weights = weights[self.condition_index]
        self.objective = RepresentationDistance(targets, self.final_weights, power=self.power)
        if self.scales is not None:
            self.ctf_steps = int(ctf_steps) if ctf_steps else max(1, self.steps // (2 * len(self.scales)))
        else:
            self.ctf_steps = 0
        init_images = _init_images(init, self.references, self.labels, self.reference_index, self.seed)
        self.init_kind = init if isinstance(init, str) else "images"
        self.lr = float(lr if lr is not None else DEFAULT_LR[optimizer])
        self.engine = Synthesis(
            model, self.objective, "pixel", init=init_images, param_options={"squash": self.constraint},
            goal="minimize", optimizer=optimizer, lr=self.lr, schedule=engine_schedule, steps=self.steps,
            stop=self.rules, seed=self.seed, labels=self.labels, progress=False, sync_every=sync_every,
            compact="cpu",
        )
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

    def _targets(self, probe: Probe) -> dict[str, torch.Tensor]:
        device, dtype = probe.device, probe.dtype
        index = torch.as_tensor(self.reference_index)
        out: dict[str, list] = {u: [] for u in self.layers}
        with torch.no_grad():
            for start in range(0, self.references.shape[0], 64):
                x = self.references[start:start + 64].to(device, dtype)
                with probe.record(*self.layers) as rec:
                    try:
                        self.model(x)
                    except Exception:
                        pass  # later layers may not take this size; missing units fail just below
                    for u in self.layers:
                        out[u].append(rec[u])
        return {u: torch.cat(v)[index.to(device)] for u, v in out.items()}

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
        bar = tqdm(total=budget, disable=not self.progress, desc="metamers", leave=False)
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
        with torch.no_grad():
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
        s.update(overrides)
        synth = cls(model, conditions, result.references, init=result.images.clamp(0, 1), **s)
        if list(synth.labels) != list(result.labels):
            raise InsilicoError("the result's samples do not match this synthesis (labels differ)")
        synth.engine.load_state_dict(result.state)
        return synth

    def __repr__(self) -> str:
        return (f"MetamerSynthesis({len(self.labels)} metamers: {len(self.conditions)} layer spec(s) x "
                f"{self.references.shape[0]} references x {self.n_seeds} seeds, {self.optimizer}, step {self.step})")


def metamer(model: nn.Module, layer=None, references=None, *, steps: int = DEFAULT_STEPS, seed: int = 0,
            resume: MetamerResult | None = None, batch_size: int | None = None, out=None,
            shard: tuple[int, int] | None = None, **options) -> MetamerResult | None:
    """Metamers of ``references`` for ``layer`` of ``model``: images with the same representation there.

    Parameters
    ----------
    model : nn.Module
        Takes pixel-space images (N, C, H, W) in [0, 1].
    layer : str, dict or list
        One unit address, ``{address: weight}`` for several layers in one
        loss, or a list of these (one metamer per entry, one batched run).
    references : tensor (R, C, H, W) in [0, 1]
        The images to match (finite, in [0, 1]; checked before anything runs).
    steps : int
        Step budget (default 1000); with ``resume=``: steps to add.
    seed : int
        Seeds every metamer's start noise (default 0).
    resume : MetamerResult, optional
        Continue this result (also one loaded with :meth:`MetamerResult.load`)
        for ``steps`` more steps; ``layer``/``references`` come from it.
    batch_size : int, optional
        References per chunk (default: all in one batch); each chunk is one
        batched run of all its metamers.
    out, shard : folder, (rank, world), optional
        Keep each finished chunk in ``out`` (a rerun computes only the missing
        ones) and share the chunks among ranks (default: the ranks of an
        initialised ``torch.distributed`` group, e.g. under ``torchrun``):
        see :func:`insilico.sharding.map_chunks`. Every rank returns the whole
        result, equal to a single-process run with the same ``batch_size``;
        a hand-made ``shard`` returns None until every chunk is done.
    **options
        Of :class:`MetamerSynthesis`: ``n_seeds``, ``init``, ``optimizer``,
        ``lr``, ``schedule``, ``stages``, ``threshold``, ``plateau_tol``,
        ``plateau_window``, ``max_steps``, ``stop``, ``constraint``, ``power``,
        ``coarse_to_fine``, ``ctf_steps``, ``progress``.

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
    if resume is not None:
        overrides = {k: v for k, v in options.items() if k == "progress"}
        return MetamerSynthesis.from_result(resume, model, **overrides).run(steps)
    if references is None:
        raise InsilicoError("give the reference images: metamer(model, layer, references)")
    if batch_size is None and out is None and shard is None:
        return MetamerSynthesis(model, layer, references, steps=steps, seed=seed, **options).run()
    references = _references(references)
    size = len(references) if batch_size is None else int(batch_size)
    job = {"tool": "metamer", "n": len(references), "batch_size": size, "steps": steps, "seed": seed,
           "layer": layer if isinstance(layer, (str, dict)) else list(layer)}
    parts = map_chunks(lambda a, b: MetamerSynthesis(model, layer, references[a:b], steps=steps, seed=seed,
                                                     first_reference=a, **options).run(),
                       len(references), size, out=out, shard=shard, job=job)
    return None if parts is None else MetamerResult.concat(parts)


# ---------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass(repr=False)
class MetamerResult(SynthesisResult):
    """A :class:`~insilico.synthesis.SynthesisResult` with the references and what each metamer matches.

    Attributes (besides the synthesis result's)
    -------------------------------------------
    references : tensor (R, C, H, W)
    reference_index, condition_index : list of int
        Reference and layer spec of each metamer.
    conditions : list of dict {unit: weight}
        The layer specs.
    final_errors : tensor (N,)
        Relative representation error of each final image (recomputed after the run).
    layer_errors : dict {unit: tensor (N,)}
        Relative error at each matched unit (NaN where a metamer does not match that unit).
    model : nn.Module or None
        The model (not saved); :meth:`validity` uses it unless given another.
    """

    references: torch.Tensor | None = None
    reference_index: list = dataclasses.field(default_factory=list)
    condition_index: list = dataclasses.field(default_factory=list)
    conditions: list = dataclasses.field(default_factory=list)
    final_errors: torch.Tensor | None = None
    layer_errors: dict = dataclasses.field(default_factory=dict)
    model: nn.Module | None = dataclasses.field(default=None, compare=False)

    @property
    def power(self) -> float:
        return float(self.settings.get("metamer", {}).get("power", 1.0))

    @classmethod
    def concat(cls, results: Sequence[MetamerResult]) -> MetamerResult:
        """Join the results of consecutive reference chunks of one job, in the job's sample order
        (layer spec, reference, seed); reference indices become the job's."""
        results = list(results)
        if len(results) == 1:
            return results[0]
        base = SynthesisResult.concat(results)
        offsets = [r.settings["metamer"].get("first_reference", 0) for r in results]
        reference_index = [i + o for r, o in zip(results, offsets) for i in r.reference_index]
        condition_index = [c for r in results for c in r.condition_index]
        position = [k for r in results for k in range(len(r))]  # inside its chunk: seeds in order
        order = sorted(range(len(base)), key=lambda i: (condition_index[i], reference_index[i], position[i]))
        idx = torch.tensor(order)
        joined = lambda tensors: torch.cat(list(tensors))[idx]
        settings = {**base.settings, "metamer": {**base.settings["metamer"], "first_reference": 0}}
        return cls(
            images=base.images[idx], trace=base.trace[:, idx], steps=base.steps[idx],
            stop_reasons=[base.stop_reasons[i] for i in order], labels=[base.labels[i] for i in order],
            settings=settings, seeds=[base.seeds[i] for i in order], versions=base.versions, state=base.state,
            references=torch.cat([r.references for r in results]),
            reference_index=[reference_index[i] for i in order], condition_index=[condition_index[i] for i in order],
            conditions=results[0].conditions, final_errors=joined(r.final_errors for r in results),
            layer_errors={u: joined(r.layer_errors[u] for r in results) for u in results[0].layer_errors},
            model=results[0].model,
        )

    @property
    def errors(self) -> torch.Tensor:
        """Relative representation error (T, N) of every sample at every step (NaN after it stopped)."""
        return self.trace.clamp_min(0).pow(1.0 / self.power)

    @property
    def threshold(self) -> float | None:
        return self.settings.get("metamer", {}).get("threshold")

    def layer_of(self, i: int) -> dict[str, float]:
        """The layer spec {unit: weight} metamer ``i`` matches."""
        return self.conditions[self.condition_index[i]]

    # -- persistence ---------------------------------------------------------------------
    def save(self, path: str | os.PathLike, state: bool = True) -> None:
        """Write to ``path`` (one file; the model is not saved)."""
        super().save(path, state=state)
        blob = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
        blob["metamer"] = {
            "references": self.references.cpu(),
            "final_errors": self.final_errors.cpu() if self.final_errors is not None else None,
            "layer_errors": {k: v.cpu() for k, v in self.layer_errors.items()},
            "json": json.dumps({"reference_index": self.reference_index, "condition_index": self.condition_index,
                                "conditions": self.conditions}),
        }
        torch.save(blob, os.fspath(path))

    @classmethod
    def load(cls, path: str | os.PathLike) -> MetamerResult:
        """Read a result written by :meth:`save`."""
        result = super().load(path)
        blob = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
        if "metamer" not in blob:
            raise InsilicoError(f"{os.fspath(path)!r} is a synthesis result but not a metamer result")
        extra = blob["metamer"]
        meta = json.loads(extra["json"])
        result.references = extra["references"]
        result.final_errors = extra["final_errors"]
        result.layer_errors = dict(extra["layer_errors"])
        result.reference_index, result.condition_index = meta["reference_index"], meta["condition_index"]
        result.conditions = meta["conditions"]
        return result

    # -- validity -------------------------------------------------------------------------
    def validity(self, model: nn.Module | None = None, *, layers: Sequence[str] | str | None = "auto",
                 other_models: Mapping[str, nn.Module] | None = None, null_images: torch.Tensor | None = None,
                 null_groups: Sequence | None = None, criterion: str = "min", percentile: float = 1.0,
                 seed: int = 0, batch_size: int = 64) -> ValidityReport:
        """Is each metamer a metamer? Null-distribution test, class check, and distances at every layer.

        Parameters
        ----------
        model : nn.Module, optional
            Default: the model the metamers were made for (required after ``load``).
        layers : "auto", list of str or None
            Layers at which to compare metamer and reference (c); "auto": every
            module with parameters, in call order; None: only the matched ones.
        other_models : dict {name: nn.Module}, optional
            More models to compare them at ("auto" layers each).
        null_images : tensor (M, C, H, W), optional
            Natural images of the null distribution; default: 5 held-out crops
            of each of the 16 bundled photos (80 images, resized to the metamers' shape).
        null_groups : sequence of M labels, optional
            Pairs within a group are left out (default: the photo of each crop,
            so pairs are from different photos).
        criterion : {"min", "percentile"}
            (a) A metamer is **valid** when its relative distance
            ``|f(x) - f(x0)| / |f(x0)|`` at every matched layer is **below the
            minimum** ("min", default) of the null distances ``|f(a) - f(b)| / |f(b)|``
            over ordered pairs of natural images from different photos, or below
            their ``percentile``-th percentile ("percentile").
        percentile : float
            For ``criterion="percentile"`` (default 1.0).
        seed : int
            Seed of the default null crops.
        batch_size : int
            Images per forward pass.

        Returns
        -------
        ValidityReport
        """
        model = model if model is not None else self.model
        if model is None:
            raise InsilicoError("validity() needs the model: result.validity(model) (models are not saved)")
        if criterion not in CRITERIA:
            raise InsilicoError(f"criterion must be one of {CRITERIA}, not {criterion!r}")
        shape = tuple(self.images.shape[1:])
        if null_images is None:
            null_images, groups = natural_null_images(shape, seed=seed)
            null_groups = groups if null_groups is None else null_groups
        else:
            null_images = check_images(null_images).float().cpu()
        if null_groups is not None and len(null_groups) != null_images.shape[0]:
            raise InsilicoError(f"{len(null_groups)} null_groups for {null_images.shape[0]} null images")
        matched = list(dict.fromkeys(u for c in self.conditions for u in c))
        ref_images = self.references[torch.as_tensor(self.reference_index)]

        def compare(net: nn.Module, units: list[str]):
            units = list(dict.fromkeys(units))
            both = torch.cat([self.images, ref_images])
            feats, logits = record(net, units, both, batch_size=batch_size, logits=True)
            null, _ = record(net, units, null_images, batch_size=batch_size)
            n = len(self)
            dist = {u: relative_distances(feats[u][:n], feats[u][n:]) for u in units}
            nulls = {u: null_distances(null[u], null_groups) for u in units}
            return dist, nulls, logits

        main_layers = matched if layers is None else list(matched)
        if layers == "auto":
            main_layers = list(dict.fromkeys(default_layers(model, shape) + matched))
        elif layers is not None:
            main_layers = list(dict.fromkeys([layers] if isinstance(layers, str) else list(layers)))
            main_layers = list(dict.fromkeys(main_layers + matched))
        dist, nulls, logits = compare(model, main_layers)
        n = len(self)
        # (a) the null-distribution test at the matched layers
        bounds = {u: (float(nulls[u].min()) if criterion == "min" else
                      float(torch.quantile(nulls[u].double(), percentile / 100.0))) for u in matched}
        valid = torch.ones(n, dtype=torch.bool)
        matched_distance = torch.zeros(n)
        rank = torch.zeros(n)
        for i in range(n):
            spec = self.layer_of(i)
            ok = [float(dist[u][i]) < bounds[u] for u in spec]
            valid[i] = all(ok)
            matched_distance[i] = max(float(dist[u][i]) for u in spec)
            rank[i] = max(float((nulls[u] <= dist[u][i]).float().mean()) for u in spec)
        # (b) the class
        ref_class = met_class = None
        if logits is not None and logits.ndim == 2 and logits.shape[1] > 1:
            met_class, ref_class = logits[:n].argmax(1), logits[n:].argmax(1)
        classes = list(getattr(model, "classes", []) or [])
        # (c) every layer, this model and the others
        per_model = {_model_name(model): _LayerTable(main_layers, dist, nulls)}
        for name, other in (other_models or {}).items():
            units = default_layers(other, shape)
            d, nl, _ = compare(other, units)
            per_model[str(name)] = _LayerTable(units, d, nl)
        return ValidityReport(
            labels=list(self.labels), matched=[list(self.layer_of(i)) for i in range(n)], criterion=criterion,
            percentile=percentile, distance=matched_distance, bound=bounds, null_min={u: float(nulls[u].min()) for u in matched},
            null_median={u: float(nulls[u].median()) for u in matched}, rank=rank, valid=valid,
            reference_class=ref_class, metamer_class=met_class, classes=classes, layers=per_model,
            n_null_pairs=int(nulls[matched[0]].numel()),
        )

    # -- figures ----------------------------------------------------------------------------
    def plot(self, ax=None, max_references: int = 8):
        """References (first column) beside their metamers, titled with layer and error; returns the Figure."""
        from .. import plot as plot_mod

        refs = list(range(min(self.references.shape[0], max_references)))
        per_ref = [[i for i in range(len(self)) if self.reference_index[i] == r] for r in refs]
        ncols = 1 + max(len(p) for p in per_ref)
        tiles, titles = [], []
        errors = self.final_errors if self.final_errors is not None else self.values.sqrt()
        for r, members in zip(refs, per_ref):
            tiles.append(self.references[r])
            titles.append(f"reference {r}")
            for i in members:
                tiles.append(self.images[i])
                titles.append(f"{self.labels[i].split('|')[0]}\nerr {float(errors[i]):.2g}")
            for _ in range(ncols - 1 - len(members)):
                tiles.append(torch.ones_like(self.references[r]))
                titles.append("")
        return plot_mod.image_grid(torch.stack(tiles), titles=titles, ncols=ncols, ax=ax)

    def plot_losses(self, ax=None):
        """Relative representation error against step (log scale), one line per metamer; returns the Figure."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3))
        errors = self.errors
        for i, (label, steps) in enumerate(zip(self.labels, self.steps)):
            ax.plot(errors[: int(steps), i].numpy(), lw=0.8, label=f"{label} ({self.stop_reasons[i]})")
        if self.threshold:
            ax.axhline(self.threshold, color="k", ls="--", lw=0.8, label="threshold")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("relative error |f(x)-f(x0)|/|f(x0)|")
        if len(self) <= 10:
            ax.legend(fontsize=6)
        return ax.figure

    def __repr__(self) -> str:
        reasons = {r: self.stop_reasons.count(r) for r in dict.fromkeys(self.stop_reasons)}
        err = "" if self.final_errors is None else f", errors {float(self.final_errors.min()):.3g}..{float(self.final_errors.max()):.3g}"
        return (f"MetamerResult({len(self)} metamers {tuple(self.images.shape[1:])} of {self.references.shape[0]} "
                f"references, up to {int(self.steps.max()) if len(self) else 0} steps{err}, stopped: {reasons})")


def _model_name(model: nn.Module) -> str:
    return str(getattr(model, "name", type(model).__name__))


@dataclasses.dataclass
class _LayerTable:
    layers: list
    distance: dict
    null: dict

    def arrays(self):
        d = torch.stack([self.distance[u] for u in self.layers], dim=1)
        null_min = torch.tensor([float(self.null[u].min()) for u in self.layers])
        null_med = torch.tensor([float(self.null[u].median()) for u in self.layers])
        return d, null_min, null_med


@dataclasses.dataclass
class ValidityReport:
    """Per metamer: the null-distribution test (a), the class check (b), distances at every layer (c).

    Attributes
    ----------
    labels : list of str
    matched : list of list of str
        The matched layer(s) of each metamer.
    distance : tensor (N,)
        Relative distance to the reference at the matched layer (the largest, for several).
    bound : dict {layer: float}
        The null's minimum (criterion "min") or percentile at each matched layer.
    rank : tensor (N,)
        Fraction of null distances at or below the metamer's (0: closer than every natural pair).
    valid : tensor (N,) of bool
        ``distance < bound`` at every matched layer.
    reference_class, metamer_class : tensor (N,) or None
        The model's top-1 class (None when its output is not (N, classes) logits).
    layers : dict {model name: table}
        Distances at every compared layer and the null's min and median there.
    """

    labels: list
    matched: list
    criterion: str
    percentile: float
    distance: torch.Tensor
    bound: dict
    null_min: dict
    null_median: dict
    rank: torch.Tensor
    valid: torch.Tensor
    reference_class: torch.Tensor | None
    metamer_class: torch.Tensor | None
    classes: list
    layers: dict
    n_null_pairs: int

    @property
    def same_class(self) -> torch.Tensor | None:
        """Whether the model gives the metamer its reference's top-1 class (N,)."""
        if self.reference_class is None:
            return None
        return self.reference_class == self.metamer_class

    def layer_distances(self, model: str | None = None) -> tuple[list[str], torch.Tensor]:
        """(layers, distances (N, L)) of one model (default: the metamers' model)."""
        table = self.layers[model or next(iter(self.layers))]
        return list(table.layers), table.arrays()[0]

    def _class_name(self, k) -> str:
        k = int(k)
        return self.classes[k] if k < len(self.classes) else str(k)

    def to_dict(self) -> dict:
        """JSON-able summary (one record per metamer, plus the nulls)."""
        rows = []
        for i, label in enumerate(self.labels):
            row = {"label": label, "matched": self.matched[i], "distance": float(self.distance[i]),
                   "null_rank": float(self.rank[i]), "valid": bool(self.valid[i])}
            if self.reference_class is not None:
                row.update(reference_class=self._class_name(self.reference_class[i]),
                           metamer_class=self._class_name(self.metamer_class[i]),
                           same_class=bool(self.same_class[i]))
            for name, table in self.layers.items():
                row[f"distance_per_layer[{name}]"] = {u: float(table.distance[u][i]) for u in table.layers}
            rows.append(row)
        return {"criterion": self.criterion, "percentile": self.percentile if self.criterion == "percentile" else None,
                "bound": self.bound, "null_min": self.null_min, "null_median": self.null_median,
                "n_null_pairs": self.n_null_pairs, "valid_fraction": float(self.valid.float().mean()),
                "same_class_fraction": None if self.same_class is None else float(self.same_class.float().mean()),
                "metamers": rows}

    def __repr__(self) -> str:
        lines = [f"ValidityReport ({self.criterion}{'' if self.criterion == 'min' else f' {self.percentile:g}%'} "
                 f"of {self.n_null_pairs} natural pairs): {int(self.valid.sum())}/{len(self.labels)} valid"]
        for i, label in enumerate(self.labels):
            cls = ""
            if self.reference_class is not None:
                cls = (f"  class {self._class_name(self.metamer_class[i])} vs "
                       f"{self._class_name(self.reference_class[i])}")
            bound = max(self.bound[u] for u in self.matched[i])
            lines.append(f"  {label:24s} d={float(self.distance[i]):.3g} (bound {bound:.3g}, rank "
                         f"{float(self.rank[i]):.3f}) {'valid' if self.valid[i] else 'NOT valid'}{cls}")
        return "\n".join(lines)

    def plot(self, ax=None, model: str | None = None):
        """Distance metamer-reference per layer (lines) against the null (band: min..median); returns the Figure.

        Layers where a metamer's line enters the band tell it from its
        reference about as well as natural images are told apart; the matched
        layers are marked. Without ``ax``, one panel per compared model.
        """
        import matplotlib.pyplot as plt

        names = [model] if model is not None else list(self.layers)
        if ax is None:
            fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.2), squeeze=False)
            axes = list(axes[0])
        else:
            axes, names = [ax], names[:1]
        matched = set(u for m in self.matched for u in m)
        for a, name in zip(axes, names):
            table = self.layers[name]
            d, lo, med = table.arrays()
            x = np.arange(len(table.layers))
            a.fill_between(x, lo.numpy(), med.numpy(), color="0.85", label="natural pairs (min..median)")
            for i in range(d.shape[0]):
                a.plot(x, d[i].clamp_min(1e-8).numpy(), marker="o", ms=3, lw=0.8, label=self.labels[i] if d.shape[0] <= 8 else None)
            for k, u in enumerate(table.layers):
                if u in matched and name == next(iter(self.layers)):
                    a.axvline(k, color="k", ls=":", lw=0.8)
            a.set_xticks(x)
            a.set_xticklabels(table.layers, rotation=60, ha="right", fontsize=7)
            a.set_yscale("log")
            a.set_ylabel("|f(x)-f(x0)| / |f(x0)|")
            a.set_title(name, fontsize=9)
            a.legend(fontsize=6)
        fig = axes[0].figure
        return fig


__all__ = ["DEFAULT_STEPS", "DEFAULT_THRESHOLD", "Halving", "MetamerResult", "MetamerSynthesis",
           "RepresentationDistance", "ValidityReport", "metamer", "null_distances", "record", "relative_distances"]
