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
  (``"blt.layers.2@3"``). Eval mode, hooks and ``requires_grad`` of all the
  models are handled by the engine at once.
- :class:`Controversy` is the objective: one value per sample, with the
  models and classes of each sample given as index tensors (so many pairs
  cost one forward pass of each model, not one per pair).

Example
-------
>>> import torch
>>> a = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
>>> b = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
>>> r = controversial({"a": a, "b": b}, [(0, 1), (2, 0)], shape=(3, 2, 2), steps=30, progress=False)
>>> tuple(r.images.shape), r.score.shape[0], r.labels[0]
((2, 3, 2, 2), 2, 'a:0|b:1#0')
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Mapping, Sequence

import torch
from torch import nn

from .. import sharding
from .adversarial import eval_mode
from ..errors import InsilicoError
from ..objectives import Objective
from ..pixels import check_images
from ..synthesis.engine import Synthesis
from ..synthesis.result import SynthesisResult
from ..synthesis.stopping import TargetReached
from ..units import Unit


class ModelGroup(nn.Module):
    """Several models side by side on the same input; ``forward`` returns the tuple of their outputs.

    The models become submodules named by ``names`` (so ``"blt.layers.2"``
    is a unit of model ``blt``), which lets one :class:`insilico.Probe` and
    one synthesis run record and optimise through all of them.

    Parameters
    ----------
    models : dict name -> nn.Module, or list of nn.Module
        A list is named by each model's ``.name`` (bundled models have one),
        else ``model0``, ``model1``, ...

    Example
    -------
    >>> g = ModelGroup([torch.nn.Linear(2, 3), torch.nn.Linear(2, 4)])
    >>> g.names, [tuple(o.shape) for o in g(torch.rand(5, 2))]
    (['model0', 'model1'], [(5, 3), (5, 4)])
    """

    def __init__(self, models: Mapping[str, nn.Module] | Sequence[nn.Module]):
        super().__init__()
        if isinstance(models, ModelGroup):
            models = {n: getattr(models, n) for n in models.names}
        if isinstance(models, Mapping):
            items = [(str(k), m) for k, m in models.items()]
        else:
            items, seen = [], set()
            for k, m in enumerate(models):
                name = str(getattr(m, "name", "") or f"model{k}")
                while name in seen:
                    name = f"{name}_{k}"
                seen.add(name)
                items.append((name, m))
        if len(items) < 2:
            raise InsilicoError(f"need two or more models, got {len(items)}")
        ids = [id(m) for _, m in items]
        if len(set(ids)) != len(ids):
            raise InsilicoError("the same model object was given twice; pass different models "
                                "(copy.deepcopy(model) for a copy)")
        self.names = []
        for name, m in items:
            if not isinstance(m, nn.Module):
                raise InsilicoError(f"model {name!r} is a {type(m).__name__}, not a torch.nn.Module")
            if not name.isidentifier():
                raise InsilicoError(f"model name {name!r} must be an identifier (letters, digits, _): it becomes "
                                    "a module path")
            self.add_module(name, m)
            self.names.append(name)

    def forward(self, x: torch.Tensor) -> tuple:
        return tuple(getattr(self, name)(x) for name in self.names)

    def extra_repr(self) -> str:
        return f"names={self.names}"


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x <= 0, accurate at both ends."""
    x = x.clamp(max=-1e-12)
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


class Controversy(Objective):
    """``log min(p_A(i), 1 - p_B(i), 1 - p_A(j), p_B(j))`` per sample, for models and classes given per sample.

    Parameters
    ----------
    units : list of str
        Where each model's logits are (e.g. ``["minialex", "blt"]`` in a :class:`ModelGroup`).
    model_a, model_b : tensor (N,)
        Indices into ``units`` of each sample's model A and B.
    class_i, class_j : tensor (N,)
        The class A should see, and the class B should see.

    Example
    -------
    >>> acts = {"a": torch.tensor([[4.0, 0.0]]), "b": torch.tensor([[0.0, 4.0]])}
    >>> obj = Controversy(["a", "b"], torch.tensor([0]), torch.tensor([1]), torch.tensor([0]), torch.tensor([1]))
    >>> round(float(obj(acts).exp()), 4)      # min(p_a(0), 1 - p_b(0), 1 - p_a(1), p_b(1))
    0.982
    """

    def __init__(self, units: Sequence[str], model_a: torch.Tensor, model_b: torch.Tensor,
                 class_i: torch.Tensor, class_j: torch.Tensor):
        self.units = tuple(Unit.parse(u) for u in units)
        self.model_a, self.model_b = model_a.long(), model_b.long()
        self.class_i, self.class_j = class_i.long(), class_j.long()

    def subset(self, rows: torch.Tensor) -> Controversy:
        """The objective for the samples ``rows`` (their model and class pairs)."""
        cut = [t.index_select(0, rows.to(t.device)) for t in (self.model_a, self.model_b, self.class_i, self.class_j)]
        return Controversy([str(u) for u in self.units], *cut)

    def terms(self, acts) -> torch.Tensor:
        """The four log-terms (N, 4): log p_A(i), log(1 - p_B(i)), log(1 - p_A(j)), log p_B(j)."""
        logits = [acts[u] for u in self.units]
        if any(l.ndim != 2 for l in logits):
            raise InsilicoError(f"controversial stimuli need logits (N, classes) from every model; got shapes "
                                f"{[tuple(l.shape) for l in logits]}")
        k = min(l.shape[1] for l in logits)
        logp = torch.stack([l[:, :k].float().log_softmax(dim=1) for l in logits])  # (M, N, K)
        a, b, i, j = (t.to(logp.device) for t in (self.model_a, self.model_b, self.class_i, self.class_j))
        if int(torch.maximum(i, j).max()) >= k:
            raise InsilicoError(f"class index {int(torch.maximum(i, j).max())} out of range: the models have {k} classes")
        rows = torch.arange(logp.shape[1], device=logp.device)
        la, lb = logp[a, rows], logp[b, rows]
        ai, aj = la.gather(1, i[:, None])[:, 0], la.gather(1, j[:, None])[:, 0]
        bi, bj = lb.gather(1, i[:, None])[:, 0], lb.gather(1, j[:, None])[:, 0]
        return torch.stack([ai, _log1mexp(bi), _log1mexp(aj), bj], dim=1)

    def forward(self, acts, images):
        return self.terms(acts).amin(dim=1)

    def __repr__(self) -> str:
        return f"Controversy({[str(u) for u in self.units]}, {self.model_a.shape[0]} samples)"


#: The per-sample fields of a ControversialResult (joined when chunks are merged).
CONTROVERSIAL_SAMPLES = ("images", "score", "probabilities", "model_a", "model_b", "class_i", "class_j", "labels",
                         "synthesis")


@dataclasses.dataclass
class ControversialResult:
    """Controversial images and how each model sees them.

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
    """

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
        rows = torch.arange(len(self))
        return (self.predictions[rows, self.model_a] == self.class_i) & (self.predictions[rows, self.model_b] == self.class_j)

    def _name(self, c: int) -> str:
        return self.classes[c] if self.classes and c < len(self.classes) else str(c)

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
        return plot.image_grid(self.images[:n], titles=titles, ncols=ncols or min(n, 4), ax=ax)

    def __repr__(self) -> str:
        return (f"ControversialResult({len(self)} images, models {self.model_names}, "
                f"score median {float(self.score.median()):.3f}, >= 0.75: {float((self.score >= 0.75).float().mean()):.0%})")


def _class_index(c, classes, k: int | None) -> int:
    if isinstance(c, str):
        if not classes or c not in classes:
            raise InsilicoError(f"unknown class {c!r}; classes: {classes}")
        return classes.index(c)
    c = int(c)
    if c < 0 or (k is not None and c >= k):
        raise InsilicoError(f"class index {c} out of range (the models have {k} classes)")
    return c


def controversial(
    models: Mapping[str, nn.Module] | Sequence[nn.Module],
    pairs: Sequence[tuple],
    *,
    seeds: int = 1,
    model_pairs: Sequence[tuple] | None = None,
    init: torch.Tensor | None = None,
    shape: Sequence[int] | None = None,
    parameterization: str = "pixel",
    param_options: dict | None = None,
    steps: int = 300,
    lr: float = 0.05,
    stop_at: float = 0.95,
    seed: int = 0,
    progress: bool = True,
    out=None,
    shard: tuple[int, int] | None = None,
    pairs_per_chunk: int = 4,
) -> ControversialResult:
    """Images that model A calls class i and model B calls class j, batched over model pairs, class pairs and seeds.

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
    shape : (C, H, W), optional
        Image shape when not starting from images (default: the first model's ``input_size``).
    parameterization : {"pixel", "fourier"}
        Default "pixel" (with ``squash="clamp"``, projected to [0, 1] after each step, unless
        ``param_options`` says otherwise: sigmoid squashing saturates and stalls here).
    steps : int
        Most steps (Adam, default 300).
    lr : float
        Learning rate (default 0.05).
    stop_at : float
        A sample stops once its score reaches this (default 0.95).
    seed : int
    progress : bool
    out, shard, pairs_per_chunk : folder, (rank, world), int, optional
        Share the class pairs, ``pairs_per_chunk`` at a time, among ranks and keep each chunk in ``out``
        (:func:`insilico.sharding.map_chunks`; default: the process group's ranks). With one model pair
        the result equals the unshared run.

    Returns
    -------
    ControversialResult

    Example
    -------
    >>> a = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3, 2))
    >>> b = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3, 2))
    >>> r = controversial([a, b], [(0, 1)], seeds=2, shape=(3, 1, 1), steps=5, progress=False)
    >>> r.labels
    ['model0:0|model1:1#0', 'model0:0|model1:1#1']
    """
    if out is not None or shard is not None:
        one = lambda a, b: controversial(models, pairs[a:b], seeds=seeds, model_pairs=model_pairs, init=init,
                                         shape=shape, parameterization=parameterization, param_options=param_options,
                                         steps=steps, lr=lr, stop_at=stop_at, seed=seed, progress=progress)
        job = {"tool": "controversial", "pairs": [list(p) for p in pairs], "steps": steps, "seed": seed}
        parts = sharding.map_chunks(one, len(pairs), pairs_per_chunk, out=out, shard=shard, job=job)
        if parts is None:
            return None
        every_pair = [q for part in parts for q in part.settings["pairs"]]
        return sharding.join_samples(parts, CONTROVERSIAL_SAMPLES, settings={**parts[0].settings, "pairs": every_pair})
    group = ModelGroup(models)
    names = group.names
    members = [getattr(group, n) for n in names]
    classes = getattr(members[0], "classes", None)
    k = len(classes) if classes else None
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
    if model_pairs is None:
        model_pairs = list(itertools.combinations(range(len(names)), 2))
    else:
        model_pairs = [tuple(names.index(m) if isinstance(m, str) else int(m) for m in mp) for mp in model_pairs]
        if any(a == b or not (0 <= a < len(names) and 0 <= b < len(names)) for a, b in model_pairs):
            raise InsilicoError(f"model_pairs must name two different models of {names}")
    if int(seeds) < 1:
        raise InsilicoError(f"seeds must be >= 1, got {seeds}")
    samples = [(a, b, i, j, s) for a, b in model_pairs for i, j in class_pairs for s in range(int(seeds))]
    labels = [f"{names[a]}:{classes[i] if classes else i}|{names[b]}:{classes[j] if classes else j}#{s}"
              for a, b, i, j, s in samples]
    n = len(samples)
    col = lambda q: torch.tensor([x[q] for x in samples])
    objective = Controversy(names, col(0), col(1), col(2), col(3))
    if init is not None:
        init = check_images(init)
        if init.shape[0] == 1 and n > 1:
            init = init.expand(n, *init.shape[1:]).contiguous()
        if init.shape[0] != n:
            raise InsilicoError(f"init has {init.shape[0]} images for {n} samples (model pairs x class pairs x seeds)")
    elif shape is None:
        shape = getattr(members[0], "input_size", None)
        if shape is None:
            raise InsilicoError("say the image shape: shape=(C, H, W), or init=images")
    if not 0 < stop_at <= 1:
        raise InsilicoError(f"stop_at is a score in (0, 1], got {stop_at}")
    options = {"squash": "clamp"} if parameterization == "pixel" else {}
    options.update(param_options or {})
    synth = Synthesis(
        group, objective, parameterization, n=n, shape=shape, init=init, param_options=options, goal="maximize",
        lr=lr, steps=steps, stop=[TargetReached(math.log(stop_at))], seed=seed, labels=labels, progress=progress,
        sync_every=1 if next(group.parameters(), torch.empty(0)).device.type == "cpu" else 8, compact="cpu")
    syn = synth.run()
    images = syn.images
    with eval_mode(group), torch.no_grad():
        dev = synth.device
        outs = group(images.to(dev, synth.dtype))
        kk = min(o.shape[1] for o in outs)
        probs = torch.stack([o[:, :kk].float().softmax(dim=1) for o in outs], dim=1).cpu()  # (N, M, K)
        score = objective({n_: o for n_, o in zip(names, outs)}).exp().cpu()
    return ControversialResult(
        images=images, score=score, probabilities=probs, model_names=list(names), model_a=col(0), model_b=col(1),
        class_i=col(2), class_j=col(3), labels=labels, classes=list(classes) if classes else None, synthesis=syn,
        settings={**syn.settings, "pairs": class_pairs, "model_pairs": model_pairs, "seeds": int(seeds),
                  "stop_at": stop_at})


__all__ = ["Controversy", "ControversialResult", "ModelGroup", "controversial"]

