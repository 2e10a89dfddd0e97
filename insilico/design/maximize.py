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

import math
import numbers
import os
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..errors import InsilicoError, StimulusError
from ..layers import example_input, image_size
from ..objectives import Activation, Diversity, Objective, Stacked
from ..options import Job
from ..pixels import check_images
from ..plan import Plan
from ..probe import Probe
from ..identity import job_identity, value_digest
from ..registry import register_tool
from ..seeding import run_seed
from ..sharding import map_chunks
from ..units import Unit
from ..synthesis.engine import Synthesis
from ..synthesis.options import (DEFAULT_DECAY, DEFAULT_JITTER, DEFAULT_PAD, DEFAULT_ROTATE, DEFAULT_SCALE,
                                 SynthesisOptions)
from ..synthesis.result import SynthesisResult

DEFAULT_STEPS = 512
DEFAULT_LR = 0.05
DEFAULT_PARAMETERIZATION = "fourier"
DEFAULT_BATCH_SIZE = 64
#: Where maximize's defaults differ from :class:`~insilico.synthesis.SynthesisOptions`'.
MAXIMIZE_DEFAULTS = {"transforms": "default"}


@dataclass(frozen=True)
class MaximizeOptions(SynthesisOptions):
    """:func:`maximize`'s knobs: every field of :class:`~insilico.synthesis.SynthesisOptions` (the synthesis loop),
    and the tool's own below; checked when built.

    Attributes
    ----------
    negative : bool
        Find inhibiting images instead (minimize the activation; default False).
    diversity : float
        Weight (>= 0) of the :class:`~insilico.objectives.Diversity` term among one unit's images (default 0);
        used with ``images_per_unit > 1``.
    diversity_layer : str, optional
        Layer whose Gram matrices are compared (default: the units' layer).

    Example
    -------
    >>> MaximizeOptions(steps=64, negative=True).negative, MaximizeOptions().transforms
    (True, None)
    """

    negative: bool = False
    diversity: float = 0.0
    diversity_layer: str | None = None

    def validate(self) -> MaximizeOptions:
        """Check every option (the loop's and the tool's own); returns ``self``."""
        super().validate()
        if not isinstance(self.negative, bool):
            raise InsilicoError(f"negative must be True or False, not {self.negative!r}")
        if isinstance(self.diversity, bool) or not isinstance(self.diversity, numbers.Real) or not (
                math.isfinite(self.diversity) and self.diversity >= 0):
            raise InsilicoError(f"diversity must be a finite number >= 0, not {self.diversity!r}")
        if self.diversity_layer is not None and not isinstance(self.diversity_layer, str):
            raise InsilicoError(f"diversity_layer must be a layer address (str), not {self.diversity_layer!r}")
        return self


@register_tool("design", takes_images=False, per_sample=True)
def maximize(
    model: nn.Module,
    units: str | Unit | Sequence[str | Unit] | Objective,
    *,
    size: int | Sequence[int] | None = None,
    images_per_unit: int = 1,
    init: torch.Tensor | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int | None = 0,
    progress: bool = True,
    resume: SynthesisResult | None = None,
    out: str | os.PathLike | Job | None = None,
    options: MaximizeOptions | SynthesisOptions | None = None,
    **option_overrides,
) -> SynthesisResult | None:
    """Images that maximize (``negative=True``: minimize) the activation of each unit (lucid: Olah et al. 2017).

    Parameters
    ----------
    model : nn.Module
        Takes pixel-space images in [0, 1].
    units : str, Unit, list of them, or Objective
        ``"features.3"``: every channel of a layer (every output of a linear
        layer); ``"features.3[5]"``: one channel (mean over positions),
        ``"features.3[5,6,6]"``: one neuron; a slice ``"features.3[0:4]"`` is ONE unit,
        the mean over its channels (one image; list the channels for one image each); a list mixes
        them; an Objective is optimised ``images_per_unit`` times (a stacked one once per entry).
    size : int, (H, W) or (C, H, W), optional
        Image size, as every tool reads it (:func:`insilico.layers.image_size`): an int is the side, with
        the model's channels; default ``model.input_size``. Required when the model has none.
    images_per_unit : int
        Images per unit (default 1); with ``diversity > 0`` they are pushed apart.
    init : tensor, optional
        Start images (N, C, H, W) (e.g. strongly driving natural images),
        one per image to optimise; default noise.
    batch_size : int
        Images optimised together (default 64); rounded down to a multiple of ``images_per_unit``.
    seed : int or None
        Seed of the job (default 0); each image's seed is derived from it and its label.
    progress : bool
        Progress bars (default True).
    resume : SynthesisResult, optional
        Continue this earlier result (same units and settings) for ``steps`` more steps.
    out : folder or Job, optional
        Keep each finished chunk of ``batch_size`` images there; a rerun into
        the same folder computes only the missing chunks
        (:func:`insilico.sharding.map_chunks`). The folder keeps the job's
        identity (the model's parameters, ``init``, every option that changes
        the images: :mod:`insilico.identity`); a folder of another job is
        refused (:class:`~insilico.errors.JobMismatchError` naming the differences).
        ``Job(folder, shard=(rank, world))`` computes only this rank's chunks (default: the ranks of an
        initialised ``torch.distributed`` process group share them, e.g. under ``torchrun``); every rank
        returns the whole result, identical to a single-process run. ``Job(folder, overwrite=True)``
        deletes the chunks already there and starts over.
    options : MaximizeOptions or SynthesisOptions, optional
        The knobs: the tool's own (``negative``, ``diversity``, ``diversity_layer``: :class:`MaximizeOptions`)
        and the synthesis loop's (a plain SynthesisOptions, e.g. one object shared with
        :func:`~insilico.design.metamers.metamer`, sets those and leaves the tool's own at their defaults).
    **option_overrides
        Any field of :class:`MaximizeOptions`: ``negative``, ``diversity``, ``diversity_layer``, and those of
        :class:`~insilico.synthesis.SynthesisOptions` (steps, lr, optimizer, schedule,
        parameterization, param_options, transforms, pad, jitter, scale, rotate, tv, l1, l2, blur_every,
        blur_sigma, stop, precision, channels_last, ...), on top of ``options``. Defaults for this tool:
        ``transforms="default"`` (pad ``DEFAULT_PAD * size``, 0 for models with ``input_size``; jitter
        ``DEFAULT_JITTER * size``; scale (0.9, 1.1); rotate 10 degrees: lucid's; a model that refuses the
        padded size but takes ``size`` (a ViT) gets the canvas resampled back to ``size``), the Fourier
        parameterization's ``decay`` 1.5 (``DEFAULT_DECAY``; lucid's 1 needs twice the steps,
        benchmarks/bench_maximize.py); steps 512, lr 0.05 (Adam), as the class. ``steps`` must be >= 1.

    Returns
    -------
    SynthesisResult
        ``images`` (N, C, H, W), ``labels`` (unit address, ``#k`` for copy k),
        traces of the activation, settings. None for a hand-made ``shard``
        whose peers have not finished yet.

    Raises
    ------
    InsilicoError
        An unknown option (with close matches) or one out of range; ``images_per_unit < 1``; units from
        several layers with ``diversity`` but no ``diversity_layer``.
    """
    seed = run_seed(seed, out)
    options = MaximizeOptions.from_kwargs("maximize", MAXIMIZE_DEFAULTS, options, progress=progress,
                                          **option_overrides)
    negative, diversity, diversity_layer = options.negative, options.diversity, options.diversity_layer
    if images_per_unit < 1:
        raise InsilicoError("images_per_unit must be >= 1")
    if options.steps < 1:  # a unit's value is its activation after the last step: none without a step
        raise InsilicoError(f"steps must be at least 1, not {options.steps!r}")
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
    options = options.replace(transforms=options.make_transforms(model, shape), pad=None, jitter=None, scale=None,
                              rotate=None)
    if options.parameterization in (None, "fourier"):
        options = options.replace(parameterization="fourier", param_options={"decay": DEFAULT_DECAY, **(options.param_options or {})})
    options = options.base(SynthesisOptions)  # the engine's knobs; the tool's own are read above
    goal = "minimize" if negative else "maximize"
    sign = -1.0 if negative else 1.0  # diversity always works against the goal's direction
    chunk = max(images_per_unit, (batch_size // images_per_unit) * images_per_unit)
    chunk_states = _chunk_states(resume, labels, chunk)

    def compute(a: int, b: int) -> SynthesisResult:
        rows = slice(a, b)
        objective: Objective = Objective.stack(objectives[rows])
        if diversity and images_per_unit > 1:
            objective = objective + sign * diversity * Diversity(diversity_layer, group_size=images_per_unit)
        synth = Synthesis(model, objective, n=b - a, size=shape, init=None if init is None else init[rows],
                          goal=goal, seed=seed, labels=labels[rows], options=options)
        if chunk_states is not None:
            synth.load_state_dict(chunk_states[a // chunk])
        result = synth.run()
        result.settings["maximize"] = {"units": labels, "images_per_unit": images_per_unit, "negative": negative,
                                       "diversity": diversity, "diversity_layer": diversity_layer,
                                       "tv": options.tv, "l1": options.l1, "l2": options.l2, "batch_size": chunk,
                                       "precision": options.precision, "channels_last": options.channels_last}
        return result

    def job() -> dict:  # every setting that changes the images (insilico.identity), computed only with out=
        settings = {"tool": "maximize", "labels": labels, "objectives": value_digest(objectives),
                    "batch_size": chunk, "seed": seed, "negative": negative, "shape": list(shape),
                    "diversity": diversity, "diversity_layer": diversity_layer, **options.identity()}
        resumed = None if resume is None else resume.images
        return job_identity(model, settings, {"init": init, "resume": resumed}, chunk)

    parts = map_chunks(compute, len(labels), chunk, out=out, job=job)
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
        shape = plan.shape(unit)  # the one shape rule: a tuple output without a part is refused with its parts
        if len(shape) < 1:
            raise InsilicoError(f"{unit} has no channel axis to expand; name units one by one, e.g. '{unit}[0]'")
        sizes[unit.key] = shape[0]
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
           "DEFAULT_ROTATE", "DEFAULT_SCALE", "DEFAULT_STEPS", "MAXIMIZE_DEFAULTS", "MaximizeOptions", "maximize"]
