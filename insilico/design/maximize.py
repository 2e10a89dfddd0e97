"""Activation maximization: the images that drive (or silence) many units at once.

``maximize(model, units)`` optimises one image (or ``images_per_unit``
diverse images) per unit in ONE batched synthesis per chunk of
``batch_size`` images: every unit's activation is read from a single
recording of its module (:meth:`insilico.objectives.Objective.stack`), and
every image has its own seed (derived from ``seed`` and the unit's address,
so a unit gets the same image whether it is optimised alone or with others)
and its own random transforms.

Defaults follow lucid (Olah et al. 2017), at the model's own input size:

=========================== ===============================================
``DEFAULT_STEPS``           512 Adam steps
``DEFAULT_LR``              0.05
``DEFAULT_PARAMETERIZATION`` Fourier 1/f^decay spectrum, decorrelated colour, sigmoid
``DEFAULT_DECAY``           1.5 (lucid uses 1; 1.5 gives as smooth images in half the steps,
                            see benchmarks/bench_maximize.py)
``DEFAULT_JITTER``          size / 28 pixels (8 at 224)
``DEFAULT_PAD``             size / 18 pixels (12 at 224), 0 for models with ``input_size``
``DEFAULT_SCALE``           (0.9, 1.1)
``DEFAULT_ROTATE``          10 degrees
``DEFAULT_BATCH_SIZE``      64 images per chunk
=========================== ===============================================

Example
-------
>>> import torch, insilico
>>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 6, 3))
>>> result = insilico.maximize(model, "2", size=24, steps=16, progress=False)
>>> len(result), result.labels[:2]
(6, ['2[0]', '2[1]'])
"""
from __future__ import annotations

import os
from typing import Sequence

import torch
from torch import nn

from ..errors import InsilicoError, StimulusError
from ..layers import example_input, image_size
from ..objectives import Activation, Diversity, L1, L2, Objective, Stacked, TotalVariation
from ..pixels import check_images
from ..plan import Plan
from ..probe import Probe
from ..identity import job_identity, value_digest
from ..registry import register_tool
from ..sharding import map_chunks
from ..units import Unit
from ..synthesis import stopping
from ..synthesis.engine import Synthesis
from ..synthesis.result import SynthesisResult
from ..synthesis.transforms import Transforms

DEFAULT_STEPS = 512
DEFAULT_LR = 0.05
DEFAULT_PARAMETERIZATION = "fourier"
DEFAULT_DECAY = 1.5
DEFAULT_JITTER = 1 / 28
DEFAULT_PAD = 1 / 18
DEFAULT_SCALE = (0.9, 1.1)
DEFAULT_ROTATE = 10.0
DEFAULT_BATCH_SIZE = 64


@register_tool("design", takes_images=False, per_sample=True)
def maximize(
    model: nn.Module,
    units: str | Unit | Sequence[str | Unit] | Objective,
    *,
    size: int | Sequence[int] | None = None,
    images_per_unit: int = 1,
    diversity: float = 0.0,
    diversity_layer: str | None = None,
    negative: bool = False,
    steps: int = DEFAULT_STEPS,
    lr: float = DEFAULT_LR,
    optimizer: str = "adam",
    schedule: str = "constant",
    parameterization: str = DEFAULT_PARAMETERIZATION,
    param_options: dict | None = None,
    transforms: Transforms | None | str = "default",
    pad: int | None = None,
    jitter: float | None = None,
    scale: tuple = DEFAULT_SCALE,
    rotate: float = DEFAULT_ROTATE,
    tv: float = 0.0,
    l1: float = 0.0,
    l2: float = 0.0,
    blur_every: int = 0,
    blur_sigma: float = 0.5,
    init: torch.Tensor | None = None,
    stop: Sequence[stopping.Rule] = (),
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    progress: bool = True,
    resume: SynthesisResult | None = None,
    out: str | os.PathLike | None = None,
    shard: tuple[int, int] | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
    overwrite: bool = False,
) -> SynthesisResult | None:
    """Images that maximize (``negative=True``: minimize) the activation of each unit (lucid: Olah et al. 2017).

    Parameters
    ----------
    model : nn.Module
        Takes pixel-space images in [0, 1].
    units : str, Unit, list of them, or Objective
        ``"features.3"``: every channel of a layer (every output of a linear
        layer); ``"features.3[5]"``: one channel (mean over positions),
        ``"features.3[5,6,6]"``: one neuron; a list mixes them; an Objective
        is optimised ``images_per_unit`` times (a stacked one once per entry).
    size : int, (H, W) or (C, H, W), optional
        Image size, as every tool reads it (:func:`insilico.layers.image_size`): an int is the side, with
        the model's channels; default ``model.input_size``. Required when the model has none.
    images_per_unit : int
        Images per unit (default 1); with ``diversity > 0`` they are pushed apart.
    diversity : float
        Weight of the :class:`~insilico.objectives.Diversity` term among one
        unit's images (default 0).
    diversity_layer : str, optional
        Layer whose Gram matrices are compared (default: the units' layer).
    negative : bool
        Find inhibiting images instead (minimize the activation; default False).
    steps, lr, optimizer, schedule
        Optimisation (defaults 512, 0.05, "adam", "constant").
    parameterization, param_options
        ``"fourier"`` (default; options ``decay`` (default ``DEFAULT_DECAY`` = 1.5), ``color``,
        ``squash``) or ``"pixel"`` (option ``squash``).
    transforms : "default", Transforms or None
        "default" builds ``Transforms(pad, jitter, scale, rotate)`` from the
        next four arguments; None: no transforms.
    pad, jitter : int, float, optional
        Default ``DEFAULT_PAD * size`` (0 for models with ``input_size``) and ``DEFAULT_JITTER * size``.
        A model that refuses the padded size but takes ``size`` (a ViT) gets the padded,
        transformed canvas resampled back to ``size`` (``Transforms.size``; recorded in the settings).
    scale, rotate
        Default (0.9, 1.1) and 10 degrees.
    tv, l1, l2 : float
        Weights of total-variation, L1 and L2 penalties on the images (default 0).
    blur_every, blur_sigma : int, float
        Blur the images every ``blur_every`` steps (default never).
    init : tensor, optional
        Start images (N, C, H, W) (e.g. strongly driving natural images),
        one per image to optimise; default noise.
    stop : list of rules
        Extra stopping rules, e.g. ``[stopping.TargetReached(50.0)]``.
    batch_size : int
        Images optimised together (default 64); rounded down to a multiple of ``images_per_unit``.
    seed : int
        Seed of the job (default 0); each image's seed is derived from it and its label.
    progress : bool
        Progress bars (default True).
    resume : SynthesisResult, optional
        Continue this earlier result (same units and settings) for ``steps`` more steps.
    out : folder, optional
        Keep each finished chunk of ``batch_size`` images there; a rerun into
        the same folder computes only the missing chunks
        (:func:`insilico.sharding.map_chunks`). The folder keeps the job's
        identity (the model's parameters, ``init``, every setting that changes
        the images: :mod:`insilico.identity`); a folder of another job is
        refused (:class:`~insilico.errors.JobMismatchError` naming the differences).
    overwrite : bool
        Delete the chunks already in ``out`` and start over (default False).
    shard : (rank, world), optional
        Compute only this rank's chunks (default: the ranks of an initialised
        ``torch.distributed`` process group share them, e.g. under
        ``torchrun``). Needs ``out``; every rank returns the whole result,
        identical to a single-process run.
    precision, channels_last : str, bool
        Run the model under :func:`torch.autocast` (``"bf16"``, ``"fp16"``;
        default ``"fp32"``) and with NHWC weights (default False): see
        :mod:`insilico.performance`. Images and optimizer stay in fp32.

    Returns
    -------
    SynthesisResult
        ``images`` (N, C, H, W), ``labels`` (unit address, ``#k`` for copy k),
        traces of the activation, settings. None for a hand-made ``shard``
        whose peers have not finished yet.
    """
    if images_per_unit < 1:
        raise InsilicoError("images_per_unit must be >= 1")
    if int(steps) < 1:  # a unit's value is its activation after the last step: none without a step
        raise InsilicoError(f"steps must be at least 1, not {steps!r}")
    probe = Probe(model)
    shape = image_size(model, size)
    objectives, labels = _per_sample_objectives(probe, units, shape, images_per_unit)
    if init is not None:
        init = check_images(init, shape=shape, name="init")
    if init is not None and init.shape[0] != len(labels):
        raise StimulusError(f"init has {init.shape[0]} images; this job optimises {len(labels)} "
                            f"({len(labels) // images_per_unit} units x {images_per_unit})")
    if diversity and images_per_unit > 1 and diversity_layer is None:
        modules = {o.unit.module for o in objectives if isinstance(o, Activation)}
        if len(modules) != 1:
            raise InsilicoError("units from several layers: say which layer diversity compares with diversity_layer=")
        diversity_layer = modules.pop()
    fixed_size = hasattr(model, "input_size")
    if transforms == "default":
        side = min(shape[1:])
        transforms = Transforms(
            pad=int(round(DEFAULT_PAD * side)) if pad is None and not fixed_size else int(pad or 0),
            jitter=DEFAULT_JITTER * side if jitter is None else jitter,
            scale=tuple(scale), rotate=rotate,
        )
    if parameterization == "fourier":
        param_options = {"decay": DEFAULT_DECAY, **(param_options or {})}
    goal = "minimize" if negative else "maximize"
    sign = -1.0 if negative else 1.0  # penalties and diversity always work against the goal's direction
    chunk = max(images_per_unit, (batch_size // images_per_unit) * images_per_unit)
    chunk_states = _chunk_states(resume, labels, chunk)


    def compute(a: int, b: int) -> SynthesisResult:
        rows = slice(a, b)
        objective: Objective = Objective.stack(objectives[rows])
        if diversity and images_per_unit > 1:
            objective = objective + sign * diversity * Diversity(diversity_layer, group_size=images_per_unit)
        for weight, penalty in ((tv, TotalVariation()), (l1, L1()), (l2, L2())):
            if weight:
                objective = objective - sign * weight * penalty
        synth = Synthesis(
            model, objective, parameterization, n=b - a, size=shape,
            init=None if init is None else init[rows], param_options=param_options, goal=goal,
            transforms=transforms, optimizer=optimizer, lr=lr, schedule=schedule, steps=steps, stop=stop,
            blur_every=blur_every, blur_sigma=blur_sigma, seed=seed, labels=labels[rows], progress=progress,
            precision=precision, channels_last=channels_last,
        )
        if chunk_states is not None:
            synth.load_state_dict(chunk_states[a // chunk])
        result = synth.run()
        result.settings["maximize"] = {"units": labels, "images_per_unit": images_per_unit, "negative": negative,
                                       "diversity": diversity, "diversity_layer": diversity_layer,
                                       "tv": tv, "l1": l1, "l2": l2, "batch_size": chunk,
                                       "precision": precision, "channels_last": channels_last}
        return result

    def job() -> dict:  # every setting that changes the images (insilico.identity), computed only with out=
        settings = {"tool": "maximize", "labels": labels, "objectives": value_digest(objectives),
                    "batch_size": chunk, "steps": steps, "lr": lr, "optimizer": optimizer, "schedule": schedule,
                    "seed": seed, "negative": negative, "shape": list(shape), "parameterization": parameterization,
                    "param_options": param_options, "transforms": transforms, "diversity": diversity,
                    "diversity_layer": diversity_layer, "tv": tv, "l1": l1, "l2": l2, "blur_every": blur_every,
                    "blur_sigma": blur_sigma, "stop": list(stop), "precision": precision}
        resumed = None if resume is None else resume.images
        return job_identity(model, settings, {"init": init, "resume": resumed}, chunk)

    parts = map_chunks(compute, len(labels), chunk, out=out, shard=shard, job=job, overwrite=overwrite)
    return None if parts is None else SynthesisResult.concat(parts)


def _per_sample_objectives(probe: Probe, units, shape, k: int) -> tuple[list[Objective], list[str]]:
    """One objective and one label per image; whole layers are expanded into their channels."""
    if isinstance(units, Stacked):
        objectives = [o for o in units.objectives for _ in range(k)]
        labels = [f"{i}" + (f"#{j}" if k > 1 else "") for i in range(len(units)) for j in range(k)]
        return objectives, labels
    if isinstance(units, Objective):
        return [units] * k, [f"objective#{j}" if k > 1 else "objective" for j in range(k)]
    specs = [units] if isinstance(units, (str, Unit)) else list(units)
    parsed = probe.units(*specs)
    whole_layers = [u for u in parsed if u.index is None]
    sizes = _output_sizes(probe, whole_layers, shape) if whole_layers else {}
    expanded: list[Unit] = []
    for unit in parsed:
        if unit.index is None:
            expanded.extend(unit.replace(index=(c,)) for c in range(sizes[unit.key]))
        else:
            expanded.append(unit)
    objectives, labels = [], []
    for unit in expanded:
        objective = Activation(unit)
        for j in range(k):
            objectives.append(objective)
            labels.append(unit.key + (f"#{j}" if k > 1 else ""))
    if len(set(labels)) != len(labels):
        raise InsilicoError("a unit is listed twice; list each unit once (use images_per_unit= for more images)")
    return objectives, labels


def _output_sizes(probe: Probe, units: list[Unit], shape) -> dict[str, int]:
    """Channels (axis 1) of each unit's module output, from the plan's survey of one grey image (no dry run of its
    own; :class:`~insilico.plan.Plan`).

    Layers after the units need not take this size; an error of the model
    before a unit ran reaches the caller unchanged.
    """
    plan = Plan(probe.model, example_input(probe.model, shape), probe=probe)
    sizes = {}
    for unit in units:
        call = plan.call(unit)
        if call.shape is None or len(call.shape) < 1:
            raise InsilicoError(f"{unit} has no channel axis to expand; name units one by one, e.g. '{unit}[0]'")
        sizes[unit.key] = call.shape[0]
    return sizes


def _chunk_states(resume: SynthesisResult | None, labels: list[str], chunk: int):
    if resume is None:
        return None
    if list(resume.labels) != labels:
        raise InsilicoError("resume= needs the same units (and images_per_unit) as the run it continues")
    state = resume.state
    if state is None:
        raise InsilicoError("this result has no saved state (saved with state=False); it cannot be resumed")
    states = state["chunks"] if "chunks" in state else [state]
    if len(states) != -(-len(labels) // chunk):
        raise InsilicoError("resume= needs the same batch_size as the run it continues")
    return states


__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_DECAY", "DEFAULT_JITTER", "DEFAULT_LR", "DEFAULT_PAD", "DEFAULT_PARAMETERIZATION",
           "DEFAULT_ROTATE", "DEFAULT_SCALE", "DEFAULT_STEPS", "maximize"]
