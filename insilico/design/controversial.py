"""Controversial stimuli (Golan, Raju & Kriegeskorte 2020): images that two models classify differently.

For models A, B and classes (i, j), a controversial image is one that A
calls ``i`` and B calls ``j``, both with high confidence. Its
controversiality score is

    score = min(p_A(i), 1 - p_B(i), 1 - p_A(j), p_B(j))

and synthesis maximizes the log of that minimum (Golan et al.'s objective),
so every one of the four terms is pushed up.

Everything runs as ONE synthesis on the shared engine
(:class:`insilico.synthesis.Synthesis`), batched over model pairs, class
pairs and seeds, with per-sample stopping once a sample's score reaches
``stop_at``:

- the models are wrapped in a :class:`ModelGroup`, an ``nn.Module`` whose
  submodules ARE the models (named by their names) and whose forward runs
  each on the same images. The engine records one model, so the group is
  that model; the objective reads units ``"minialex"`` and ``"blt"`` (each
  model's logits), and any inner unit is addressable too
  (``"blt.layers.2@3"``). All the models run in one
  :func:`insilico.session.session` (eval mode, frozen parameters, gradients
  even under ``torch.no_grad()``, every module's own flags restored after).
- :class:`insilico.objectives.adjudication.Controversy` is the objective: one
  value per sample, with the models and classes of each sample given as index
  tensors (so many pairs cost one forward pass of each model, not one per pair).

The samples, ordered (model pair, class pair, seed), are cut into chunks of
``batch_size`` (model pair, class pair) combinations; every run, sharded
among processes or not, goes through the same chunks, so each sample is
optimised in exactly the same batch and its image does not depend on how
many processes shared the job.

Example
-------
>>> import torch
>>> a = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
>>> b = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
>>> r = controversial({"a": a, "b": b}, [(0, 1), (2, 0)], size=(3, 2, 2), steps=30, progress=False)
>>> tuple(r.images.shape), r.score.shape[0], r.labels[0]
((2, 3, 2, 2), 2, 'a:0|b:1#0')
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import os
from typing import ClassVar, Mapping, Sequence

import torch
from torch import nn

from .. import sharding
from ..errors import InsilicoError
from ..identity import job_identity
from ..layers import image_size, renamed
from ..models.group import ModelGroup
from ..objectives.adjudication import Controversy
from ..options import Job
from ..pixels import check_images
from ..registry import register_tool
from ..results import Result
from ..seeding import run_seed
from ..session import session
from ..synthesis.engine import Synthesis
from ..synthesis.options import SynthesisOptions
from ..synthesis.result import SynthesisResult
from ..synthesis.stopping import TargetReached


#: The per-sample fields of a ControversialResult (joined when chunks are merged).
CONTROVERSIAL_SAMPLES = ("images", "score", "probabilities", "model_a", "model_b", "class_i", "class_j", "labels",
                         "synthesis")
#: Where controversial's defaults differ from :class:`~insilico.synthesis.SynthesisOptions`'.
CONTROVERSIAL_DEFAULTS = {"steps": 300, "parameterization": "pixel"}


@dataclasses.dataclass
class ControversialResult(Result):
    """Controversial images and how each model sees them.

    A :class:`insilico.results.Result`: ``save``/``load`` (``weights_only``),
    ``concat`` (along the samples), ``plot(ax=)``, ``check(models)``.

    Attributes
    ----------
    images : tensor (N, C, H, W)
    score : tensor (N,)
        ``min(p_A(i), 1 - p_B(i), 1 - p_A(j), p_B(j))`` on the final images.
    probabilities : tensor (N, M, K)
        Softmax of every model on every image.
    predictions : tensor (N, M)
    model_names : list of str
    model_a, model_b, class_i, class_j : tensors (N,)
    labels : list of str
        ``"A:i|B:j#seed"`` per sample.
    classes : list of str or None
    synthesis : SynthesisResult

    Images keep the models' dtype; tensors are on the first model's device.
    """

    sample_fields: ClassVar[tuple[str, ...]] = CONTROVERSIAL_SAMPLES

    images: torch.Tensor
    score: torch.Tensor
    probabilities: torch.Tensor
    model_names: list
    model_a: torch.Tensor
    model_b: torch.Tensor
    class_i: torch.Tensor
    class_j: torch.Tensor
    labels: list
    classes: list | None
    synthesis: SynthesisResult | None
    settings: dict = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def predictions(self) -> torch.Tensor:
        return self.probabilities.argmax(dim=2)

    @property
    def success(self) -> torch.Tensor:
        """Model A predicts i and model B predicts j (N,)."""
        rows = torch.arange(len(self), device=self.probabilities.device)
        return (self.predictions[rows, self.model_a] == self.class_i) & (self.predictions[rows, self.model_b] == self.class_j)

    def _name(self, c: int) -> str:
        return self.classes[c] if self.classes and c < len(self.classes) else str(c)

    def check(self, models) -> torch.Tensor:
        """The score (N,) re-evaluated on ``models`` (as given to :func:`controversial`, with the same names).

        Equal to :attr:`score` (up to float rounding) for the models that made the images.
        """
        group = ModelGroup(models)
        if group.names != self.model_names:
            raise InsilicoError(f"these models are named {group.names}; the result's are {self.model_names}")
        probs, score = _judge(group, self._objective(), self.images)
        return score.to(self.score.device)

    def _objective(self) -> Controversy:
        return Controversy(self.model_names, self.model_a, self.model_b, self.class_i, self.class_j)

    def report(self) -> list[dict]:
        """One JSON-able dict per image: models, classes, the four probabilities, score, success."""
        rows = []
        for s in range(len(self)):
            a, b, i, j = (int(t[s]) for t in (self.model_a, self.model_b, self.class_i, self.class_j))
            p = self.probabilities[s]
            rows.append({
                "label": self.labels[s], "model_a": self.model_names[a], "model_b": self.model_names[b],
                "class_i": self._name(i), "class_j": self._name(j),
                "p_a_i": float(p[a, i]), "p_b_i": float(p[b, i]), "p_a_j": float(p[a, j]), "p_b_j": float(p[b, j]),
                "score": float(self.score[s]), "success": bool(self.success[s]),
                "steps": int(self.synthesis.steps[s]) if self.synthesis is not None else None,
            })
        return rows

    def plot(self, ax=None, ncols: int | None = None, max_images: int = 32):
        """The images, each titled ``A: class p / B: class p``; returns the Figure."""
        from .. import plot

        n = min(len(self), max_images)
        titles = []
        for s in range(n):
            a, b, i, j = (int(t[s]) for t in (self.model_a, self.model_b, self.class_i, self.class_j))
            p = self.probabilities[s]
            titles.append(f"{self.model_names[a]}: {self._name(i)} {float(p[a, i]):.2f}\n"
                          f"{self.model_names[b]}: {self._name(j)} {float(p[b, j]):.2f}")
        return plot.image_grid(self.images[:n].float().cpu(), titles=titles, ncols=ncols or min(n, 4), ax=ax)

    def __repr__(self) -> str:
        return (f"ControversialResult({len(self)} images, models {self.model_names}, "
                f"score median {float(self.score.median()):.3f}, >= 0.75: {float((self.score >= 0.75).float().mean()):.0%})")


def _class_pairs(pairs, classes, k) -> list[tuple[int, int]]:
    """The class pairs ``(i, j)`` as class indices (names looked up in ``classes``), checked."""
    if not pairs:
        raise InsilicoError("give at least one class pair (i, j)")
    class_pairs = []
    for pair in pairs:
        if len(pair) != 2:
            raise InsilicoError(f"a class pair is (i, j), got {pair!r}")
        i, j = (_class_index(c, classes, k) for c in pair)
        if i == j:
            raise InsilicoError(f"class pair {pair!r}: i and j must differ")
        class_pairs.append((i, j))
    return class_pairs


def _model_pairs(model_pairs, names: list[str]) -> list[tuple[int, int]]:
    """The model pairs as indices into ``names`` (default: every pair), checked."""
    if model_pairs is None:
        return list(itertools.combinations(range(len(names)), 2))
    model_pairs = [tuple(names.index(m) if isinstance(m, str) else int(m) for m in mp) for mp in model_pairs]
    if any(a == b or not (0 <= a < len(names) and 0 <= b < len(names)) for a, b in model_pairs):
        raise InsilicoError(f"model_pairs must name two different models of {names}")
    return model_pairs


def _class_index(c, classes, k: int | None) -> int:
    if isinstance(c, str):
        if not classes or c not in classes:
            raise InsilicoError(f"unknown class {c!r}; classes: {classes}")
        return classes.index(c)
    c = int(c)
    if c < 0 or (k is not None and c >= k):
        raise InsilicoError(f"class index {c} out of range (the models have {k} classes)")
    return c


@dataclasses.dataclass(frozen=True)
class ControversialOptions(SynthesisOptions):
    """:func:`controversial`'s knobs: every field of :class:`~insilico.synthesis.SynthesisOptions` (the synthesis
    loop) and the tool's own stopping score; checked when built.

    Attributes
    ----------
    stop_at : float
        A sample stops once its score reaches this, in (0, 1] (default 0.95).

    Example
    -------
    >>> ControversialOptions(stop_at=0.9, steps=50).stop_at
    0.9
    """

    stop_at: float = 0.95

    def validate(self) -> ControversialOptions:
        """Check every option (the loop's and ``stop_at``); returns ``self``."""
        super().validate()
        if isinstance(self.stop_at, bool) or not isinstance(self.stop_at, (int, float)) or not 0 < self.stop_at <= 1:
            raise InsilicoError(f"stop_at is a score in (0, 1], got {self.stop_at!r}")
        return self


@register_tool("design", per_sample=True)
@renamed(shape="size", pairs_per_chunk="batch_size")
def controversial(
    models: Mapping[str, nn.Module] | Sequence[nn.Module],
    pairs: Sequence[tuple],
    *,
    seeds: int = 1,
    model_pairs: Sequence[tuple] | None = None,
    init: torch.Tensor | None = None,
    size: int | Sequence[int] | None = None,
    batch_size: int = 16,
    seed: int | None = 0,
    progress: bool = True,
    out: str | os.PathLike | Job | None = None,
    options: ControversialOptions | SynthesisOptions | None = None,
    **option_overrides,
) -> ControversialResult:
    """Images that model A calls class i and model B class j, per model pair (Golan, Raju & Kriegeskorte 2020).

    Parameters
    ----------
    models : dict name -> nn.Module, list of nn.Module, or ModelGroup
        Two or more classifiers taking the same pixel-space images in [0, 1].
    pairs : list of (i, j)
        Class pairs, as indices or class names (``model.classes``); A is
        pushed to i, B to j.
    seeds : int
        Images per (model pair, class pair), from different random starts.
    model_pairs : list of (a, b), optional
        Which models are A and B (names or indices); default: every pair
        ``a < b`` in the order given.
    init : tensor (N, C, H, W), optional
        Start images (one per sample, or one broadcast to all); default noise
        around mid-grey (each sample seeded).
    size : int, (H, W) or (C, H, W), optional
        Image size when not starting from images, as every tool reads it
        (:func:`insilico.layers.image_size`, with the first model's channels); default the first
        model's ``input_size``.
    batch_size : int
        (model pair, class pair) combinations per chunk (each with its
        ``seeds`` images; default 16). A run without ``out`` goes through the
        same chunks, so a sharded run equals the one-process run exactly.
    seed : int or None
        Seeds every sample's start (default 0).
    progress : bool
        A progress bar (default True).
    out : folder or Job, optional
        Keep each chunk there (:func:`insilico.sharding.map_chunks`); a :class:`~insilico.options.Job` also
        shares the chunks among ranks (``shard``; default: the process group's ranks) or starts over
        (``overwrite``). The folder keeps the job's identity (every model's parameters, ``init``,
        every setting: :mod:`insilico.identity`); a folder of another job is
        refused (:class:`~insilico.errors.JobMismatchError`).
    options : ControversialOptions or SynthesisOptions, optional
        The knobs: ``stop_at`` (a sample stops once its score reaches it; default 0.95) and the synthesis
        loop's (a plain SynthesisOptions, e.g. one object shared with other tools, sets those).
    **option_overrides
        Any field of :class:`ControversialOptions`: ``stop_at`` and those of
        :class:`~insilico.synthesis.SynthesisOptions` (steps, lr, optimizer, schedule,
        parameterization, param_options, stop, ...), on top of ``options``. Defaults for this tool
        (``CONTROVERSIAL_DEFAULTS``): at most 300 steps (Adam, lr 0.05) and the "pixel" parameterization, with
        ``squash="clamp"`` (projected to [0, 1] after each step) unless ``param_options`` says otherwise:
        sigmoid squashing saturates and stalls here. ``stop`` rules are added to the ``stop_at`` rule.

    Returns
    -------
    ControversialResult
        None for a hand-made shard whose companions are still missing.

    Raises
    ------
    StimulusError
        ``init`` not (N, C, H, W) floats in [0, 1], or an empty batch.
    InsilicoError
        Fewer than two models, bad class or model pairs, seeds, stop_at or size.

    Example
    -------
    >>> a = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3, 2))
    >>> b = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3, 2))
    >>> r = controversial([a, b], [(0, 1)], seeds=2, size=(3, 1, 1), steps=5, progress=False)
    >>> r.labels
    ['model0:0|model1:1#0', 'model0:0|model1:1#1']
    """
    seed = run_seed(seed, out)
    options = ControversialOptions.from_kwargs("controversial", CONTROVERSIAL_DEFAULTS, options, progress=progress,
                                               **option_overrides)
    stop_at = options.stop_at
    group = ModelGroup(models)
    names = group.names
    members = [getattr(group, n) for n in names]
    classes = getattr(members[0], "classes", None)
    k = len(classes) if classes else None
    class_pairs = _class_pairs(pairs, classes, k)
    model_pairs = _model_pairs(model_pairs, names)
    if int(seeds) < 1:
        raise InsilicoError(f"seeds must be >= 1, got {seeds}")
    if options.steps < 1:
        raise InsilicoError(f"steps must be >= 1, got {options.steps}")
    if int(batch_size) < 1:
        raise InsilicoError(f"batch_size must be >= 1 (class pairs per chunk), got {batch_size}")
    seeds = int(seeds)
    samples = [(a, b, i, j, s) for a, b in model_pairs for i, j in class_pairs for s in range(seeds)]
    labels = [f"{names[a]}:{classes[i] if classes else i}|{names[b]}:{classes[j] if classes else j}#{s}"
              for a, b, i, j, s in samples]
    n = len(samples)
    col = lambda q, rows=samples: torch.tensor([x[q] for x in rows], dtype=torch.long)
    if init is not None:
        init = check_images(init, name="init")  # an empty batch is a StimulusError that says to give images
        if init.shape[0] == 1 and n > 1:
            init = init.expand(n, *init.shape[1:]).contiguous()
        if init.shape[0] != n:
            raise InsilicoError(f"init has {init.shape[0]} images for {n} samples (model pairs x class pairs x seeds)")
    elif size is None and getattr(members[0], "input_size", None) is None:
        raise InsilicoError(f"{type(members[0]).__name__} has no input_size attribute: say the image size with "
                            "size= (an int side, (H, W) or (C, H, W)), or pass init=images")
    shape = None if init is not None else image_size(members[0], size)
    if options.parameterization is None:  # the tool's: pixels (a shared options object leaves it to the tool)
        options = options.replace(parameterization="pixel")
    squash = {"squash": "clamp"} if options.parameterization == "pixel" else {}
    options = options.base(SynthesisOptions).replace(param_options={**squash, **(options.param_options or {})},
                                                     stop=[*options.stop, TargetReached(math.log(stop_at))],
                                                     compact="cpu")
    settings = {"pairs": class_pairs, "model_pairs": model_pairs, "seeds": seeds, "stop_at": stop_at,
                "batch_size": int(batch_size)}

    def chunk(start: int, stop: int) -> ControversialResult:
        rows = samples[start:stop]
        objective = Controversy(names, col(0, rows), col(1, rows), col(2, rows), col(3, rows))
        synth = Synthesis(group, objective, n=stop - start, size=shape, init=None if init is None else init[start:stop],
                          goal="maximize", seed=seed, labels=labels[start:stop], options=options,
                          sync_every=1 if synth_device.type == "cpu" else 8)
        syn = synth.run()
        images = synth.images.detach().cpu()  # in the models' dtype (the engine's result holds float32 copies)
        probs, score = _judge(group, objective, images)
        return ControversialResult(
            images=images, score=score, probabilities=probs, model_names=list(names), model_a=col(0, rows),
            model_b=col(1, rows), class_i=col(2, rows), class_j=col(3, rows), labels=labels[start:stop],
            classes=list(classes) if classes else None, synthesis=syn, settings={**syn.settings, **settings})

    def job() -> dict:  # every setting that changes the images (insilico.identity), computed only with out=
        return job_identity(dict(zip(names, members)), {
            "tool": "controversial", **settings, "seed": seed, "shape": shape, **options.identity()}, {"init": init},
            int(batch_size) * seeds)
    with session(group, grad=True) as s:  # eval, frozen parameters, gradients even under an outer no_grad
        synth_device = s.device
        init = None if init is None else s.inputs(init)
        parts = sharding.map_chunks(chunk, n, int(batch_size) * seeds, out=out, job=job)
    if parts is None:
        return None
    result = ControversialResult.concat(parts)
    return dataclasses.replace(result, settings={**result.settings, **settings}).to(synth_device)


def _judge(group: ModelGroup, objective: Controversy, images: torch.Tensor):
    """Softmax of every model (N, M, K) and the score (N,) of ``images`` (no grad, eval mode, in the models' dtype)."""
    with session(group) as s:
        outs = group(s.inputs(images))
        kk = min(o.shape[1] for o in outs)
        dtype = torch.float64 if s.dtype == torch.float64 else torch.float32
        probs = torch.stack([o[:, :kk].to(dtype).softmax(dim=1) for o in outs], dim=1).cpu()  # (N, M, K)
        score = objective({name: o for name, o in zip(group.names, outs)}).exp().cpu()
    return probs, score


__all__ = ["CONTROVERSIAL_DEFAULTS", "CONTROVERSIAL_SAMPLES", "ControversialOptions", "Controversy", "ControversialResult", "ModelGroup", "controversial"]

