"""Maximum differentiation (MAD) competition (Wang & Simoncelli 2008) between two representation distances.

Two distances compete: ``d_k(x) = mean((f_k(x) - f_k(ref))^2)`` with
``f_1``, ``f_2`` two units/layers of one model, or of two models. From each
reference image a distorted start ``x0 = ref + noise`` is drawn; then four
images are synthesized per reference:

====== ================== =====================
image  held fixed          pushed
====== ================== =====================
0      d_1 = d_1(x0)       d_2 up (maximize)
1      d_1 = d_1(x0)       d_2 down (minimize)
2      d_2 = d_2(x0)       d_1 up
3      d_2 = d_2(x0)       d_1 down
====== ================== =====================

If the two representations agreed, holding one distance would hold the
other; how far the other moves shows where they disagree.

All ``4 N`` images are ONE synthesis on the shared engine
(:class:`insilico.synthesis.Synthesis`, pixel parameterization clamped to
[0, 1], Adam), with :class:`MADObjective` giving every sample its own
reference, held distance and direction. The held distance is kept by a
penalty (as plenoptic does): each sample maximizes
``± log(d_push / d_push(x0)) - lam * log(d_held / d_held(x0))^2``;
``result.held_error`` reports how well it held. Two models are run side by
side in a :class:`insilico.controversial.ModelGroup`.

Example
-------
>>> import torch
>>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3), torch.nn.Tanh())
>>> r = mad(model, torch.rand(2, 1, 8, 8), ("1", "3"), steps=20, progress=False)
>>> tuple(r.images.shape), tuple(r.distances.shape)
((2, 4, 1, 8, 8), (2, 4, 2))
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import torch
from torch import nn

from .adversarial import eval_mode
from .controversial import ModelGroup
from ..errors import InsilicoError
from ..objectives import Activations, Objective, unique_wholes
from ..pixels import check_images
from ..probe import Probe
from ..synthesis.engine import Synthesis, derive_seed
from ..synthesis.result import SynthesisResult
from ..units import Unit

#: What each of the four images per reference does: (held distance, pushed distance, direction).
ROLES = ((0, 1, +1.0), (0, 1, -1.0), (1, 0, +1.0), (1, 0, -1.0))
ROLE_NAMES = ("d1 held, d2 max", "d1 held, d2 min", "d2 held, d1 max", "d2 held, d1 min")


def _distance(act: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return (act - ref).pow(2).reshape(act.shape[0], -1).mean(dim=1)


class MADObjective(Objective):
    """``sign * log(d_push / c_push) - lam * log(d_held / c_held)^2`` per sample.

    Parameters
    ----------
    units : (Unit, Unit)
        The two representations.
    references : (tensor (N, ...), tensor (N, ...))
        Each sample's reference response of each unit.
    levels : tensor (N, 2)
        ``d_1``, ``d_2`` at the start image (the held level; the push's scale).
    held : tensor (N,) of 0/1
        Which distance each sample holds (the other is pushed).
    sign : tensor (N,)
        +1 to maximize the pushed distance, -1 to minimize it.
    lam : float
        Weight of the penalty on the held distance.
    """

    def __init__(self, units, references, levels, held, sign, lam: float):
        self.pair = tuple(Unit.parse(u) for u in units)
        self.units = tuple(dict.fromkeys(self.pair))
        self.references = references
        self.levels, self.held, self.sign, self.lam = levels, held.long(), sign, float(lam)

    def subset(self, rows: torch.Tensor) -> MADObjective:
        """The objective for the samples ``rows`` (their references, levels and roles)."""
        cut = lambda t: t.index_select(0, rows.to(t.device))
        return MADObjective(self.pair, [cut(r) for r in self.references], cut(self.levels), cut(self.held),
                            cut(self.sign), self.lam)

    def distances(self, acts) -> torch.Tensor:
        """(N, 2): d_1 and d_2 of the batch."""
        out = []
        for unit, ref in zip(self.pair, self.references):
            act = acts[unit]
            ref = ref.to(act.device, act.dtype)
            out.append(_distance(act, ref))
        return torch.stack(out, dim=1)

    def forward(self, acts, images):
        d = self.distances(acts).clamp_min(1e-30)
        levels, held, sign = (t.to(d.device) for t in (self.levels, self.held, self.sign))
        ratio = (d / levels.to(d.dtype).clamp_min(1e-30)).log()
        push = ratio.gather(1, (1 - held)[:, None])[:, 0]
        keep = ratio.gather(1, held[:, None])[:, 0]
        return sign.to(d.dtype) * push - self.lam * keep.pow(2)

    def __repr__(self) -> str:
        return f"MADObjective({[str(u) for u in self.pair]}, lam={self.lam})"


@dataclasses.dataclass
class MADResult:
    """The four MAD images per reference.

    Attributes
    ----------
    reference, initial : tensors (N, C, H, W)
        The references and the distorted start images.
    images : tensor (N, 4, C, H, W)
        Per reference, in the order of :data:`ROLES`.
    distances : tensor (N, 4, 2)
        ``d_1``, ``d_2`` of each final image.
    initial_distances : tensor (N, 2)
    held_error : tensor (N, 4)
        ``|d_held / d_held(x0) - 1|`` per image.
    units : (str, str)
    synthesis : SynthesisResult
    """

    reference: torch.Tensor
    initial: torch.Tensor
    images: torch.Tensor
    distances: torch.Tensor
    initial_distances: torch.Tensor
    held_error: torch.Tensor
    units: tuple
    synthesis: SynthesisResult | None
    settings: dict = dataclasses.field(default_factory=dict)

    @property
    def pushed_ratio(self) -> torch.Tensor:
        """``d_push / d_push(x0)`` per image (N, 4): > 1 for the max images, < 1 for the min images."""
        push = torch.tensor([1 - h for h, _, _ in ROLES])
        final = self.distances.gather(2, push.view(1, 4, 1).expand(self.distances.shape[0], 4, 1))[..., 0]
        start = self.initial_distances[:, push]
        return final / start

    def report(self) -> list[dict]:
        """One JSON-able dict per (reference, role)."""
        rows = []
        for i in range(self.reference.shape[0]):
            for r, name in enumerate(ROLE_NAMES):
                rows.append({"reference": i, "role": name, "d1": float(self.distances[i, r, 0]),
                             "d2": float(self.distances[i, r, 1]), "d1_start": float(self.initial_distances[i, 0]),
                             "d2_start": float(self.initial_distances[i, 1]), "held_error": float(self.held_error[i, r]),
                             "pushed_ratio": float(self.pushed_ratio[i, r])})
        return rows

    def plot(self, reference: int = 0, ax=None):
        """Reference and start image beside the MAD 2 x 2 grid (rows: d1 held / d2 held; columns: max / min)."""
        from .. import plot

        i = reference
        im = self.images[i]
        tiles = torch.stack([self.reference[i], im[0], im[1], self.initial[i], im[2], im[3]])
        d = self.distances[i]
        u1, u2 = self.units
        titles = ["reference", f"d1 held, d2 max\nd1={d[0, 0]:.3g} d2={d[0, 1]:.3g}",
                  f"d1 held, d2 min\nd1={d[1, 0]:.3g} d2={d[1, 1]:.3g}",
                  f"start\nd1={self.initial_distances[i, 0]:.3g} d2={self.initial_distances[i, 1]:.3g}",
                  f"d2 held, d1 max\nd1={d[2, 0]:.3g} d2={d[2, 1]:.3g}",
                  f"d2 held, d1 min\nd1={d[3, 0]:.3g} d2={d[3, 1]:.3g}"]
        fig = plot.image_grid(tiles, titles=titles, ncols=3, ax=ax)
        (ax if ax is not None else fig.axes[0]).set_xlabel(f"d1: {u1}    d2: {u2}", fontsize=8)
        return fig

    def __repr__(self) -> str:
        return (f"MADResult({self.reference.shape[0]} references x 4, units {list(self.units)}, "
                f"held error median {float(self.held_error.median()):.3g})")


def mad(
    models: nn.Module | Sequence[nn.Module] | Mapping[str, nn.Module],
    images: torch.Tensor,
    units: Sequence[str],
    *,
    noise: float = 0.1,
    steps: int = 200,
    lr: float = 0.005,
    lam: float = 10.0,
    seed: int = 0,
    progress: bool = True,
) -> MADResult:
    """MAD competition between two representation distances: four extremal images per reference, batched.

    Parameters
    ----------
    models : nn.Module, or two models (list, dict or ModelGroup)
        One model whose two units compete, or two models (unit ``k`` belongs to model ``k``).
    images : tensor (N, C, H, W)
        Reference images in [0, 1].
    units : (str, str)
        The two representations (e.g. ``("features.3", "features.10")``;
        with two models, each model's own address; ``""`` is its output).
    noise : float
        Standard deviation of the Gaussian pixel noise of the start image (default 0.1).
    steps : int
        Adam steps (default 200).
    lr : float
        Learning rate in pixel units (default 0.005).
    lam : float
        Weight of the held distance's penalty (default 10).
    seed : int
        Seeds the start noise (per reference).
    progress : bool

    Returns
    -------
    MADResult
    """
    images = check_images(images)
    if isinstance(units, (str, Unit)) or len(units) != 2:
        raise InsilicoError(f"give two units, one per distance, e.g. ('features.3', 'features.10'); got {units!r}")
    if isinstance(models, nn.Module) and not isinstance(models, ModelGroup):
        model, pair = models, tuple(Unit.parse(u) for u in units)
    else:
        model = ModelGroup(models)
        if len(model.names) != 2:
            raise InsilicoError(f"MAD compares two models; got {len(model.names)}")
        pair = []
        for name, u in zip(model.names, units):
            u = Unit.parse(u)
            pair.append(u.replace(module=f"{name}.{u.module}" if u.module else name))
        pair = tuple(pair)
    if not noise > 0:
        raise InsilicoError(f"noise must be > 0 (the start image must differ from the reference), got {noise}")
    probe = Probe(model)
    probe.units(*pair)
    images = images.to(probe.device, probe.dtype)
    n = images.shape[0]
    starts = []
    for i in range(n):
        g = torch.Generator().manual_seed(derive_seed(seed, f"mad|{i}"))
        starts.append(torch.randn(images.shape[1:], generator=g))
    initial = (images + noise * torch.stack(starts).to(images.device, images.dtype)).clamp(0, 1)

    wholes = unique_wholes(pair)
    with eval_mode(model), torch.no_grad(), probe.record(*wholes) as rec:
        model(torch.cat([images, initial]))
        acts = Activations({w.key: rec[w] for w in wholes})
        resp = [acts[u] for u in pair]
    refs = [r[:n] for r in resp]
    levels = torch.stack([_distance(r[n:], r[:n]) for r in resp], dim=1)  # (N, 2)
    if bool((levels <= 0).any()):
        raise InsilicoError("a distance is 0 at the start image (the unit does not respond to the noise): "
                            "use more noise= or other units")
    held = torch.tensor([h for h, _, _ in ROLES]).repeat_interleave(n)
    sign = torch.tensor([s for _, _, s in ROLES]).repeat_interleave(n)
    objective = MADObjective(pair, [r.repeat(4, *[1] * (r.ndim - 1)) for r in refs], levels.repeat(4, 1), held, sign,
                             lam)
    labels = [f"{ROLE_NAMES[r]}|{i}" for r in range(4) for i in range(n)]
    synth = Synthesis(
        model, objective, "pixel", init=initial.repeat(4, 1, 1, 1), param_options={"squash": "clamp"},
        goal="maximize", lr=lr, steps=steps, seed=seed, labels=labels, progress=progress, compact="cpu")
    syn = synth.run()
    final = syn.images.to(images.device, images.dtype)
    with eval_mode(model), torch.no_grad(), probe.record(*wholes) as rec:
        model(final)
        acts = Activations({w.key: rec[w] for w in wholes})
        dist = objective.distances(acts).float().cpu()  # (4N, 2)
    dist = dist.view(4, n, 2).transpose(0, 1)
    lv = levels.float().cpu()
    held_idx = torch.tensor([h for h, _, _ in ROLES])
    held_final = dist.gather(2, held_idx.view(1, 4, 1).expand(n, 4, 1))[..., 0]
    held_error = (held_final / lv[:, held_idx] - 1).abs()
    return MADResult(
        reference=images.float().cpu(), initial=initial.float().cpu(),
        images=syn.images.view(4, n, *images.shape[1:]).transpose(0, 1).contiguous(), distances=dist,
        initial_distances=lv, held_error=held_error, units=tuple(str(u) for u in pair), synthesis=syn,
        settings={**syn.settings, "noise": noise, "lam": lam})


__all__ = ["MADObjective", "MADResult", "ROLES", "ROLE_NAMES", "mad"]

