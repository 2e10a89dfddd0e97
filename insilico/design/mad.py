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
reference, held distance and direction
(:class:`insilico.objectives.adjudication.MADObjective`). The held distance is
kept by a penalty (as plenoptic does): each sample maximizes
``± log(d_push / d_push(x0)) - lam * log(d_held / d_held(x0))^2``;
``result.held_error`` reports how well it held. Two models are run side by
side in a :class:`insilico.models.ModelGroup`. The model(s) run
in one :func:`insilico.session.session` (eval mode, frozen parameters,
gradients even under ``torch.no_grad()``, every module's own flags restored
after); images keep the model's dtype.

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
from typing import ClassVar, Mapping, Sequence

import torch
from torch import nn

from ..models.group import ModelGroup
from ..registry import register_tool
from ..errors import InsilicoError
from ..objectives import Activations, unique_wholes
from ..objectives.adjudication import ROLE_NAMES, ROLES, MADObjective, distance
from ..pixels import check_images
from ..probe import Probe
from ..results import Result
from ..seeding import run_seed
from ..session import session
from ..synthesis.engine import Synthesis, derive_seed
from ..synthesis.result import SynthesisResult
from ..synthesis.seeds import content_key
from ..units import Unit


@dataclasses.dataclass
class MADResult(Result):
    """The four MAD images per reference.

    A :class:`insilico.results.Result`: ``save``/``load`` (``weights_only``),
    ``concat`` (along the references), ``plot(ax=)``, ``check(model)``.

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
        The two units (with two models: prefixed by each model's name).
    synthesis : SynthesisResult
        Samples ordered (role, reference) as the engine ran them.

    Images keep the model's dtype; tensors are on its device.
    """

    sample_fields: ClassVar[tuple[str, ...]] = ("reference", "initial", "images", "distances", "initial_distances",
                                                "held_error")

    reference: torch.Tensor
    initial: torch.Tensor
    images: torch.Tensor
    distances: torch.Tensor
    initial_distances: torch.Tensor
    held_error: torch.Tensor
    units: tuple
    synthesis: SynthesisResult | None
    settings: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def concat(cls, results: Sequence[MADResult]) -> MADResult:
        """Join the results of consecutive chunks of references (the engine results are joined too)."""
        joined = super().concat(results)
        syn = [r.synthesis for r in results]
        if len(syn) > 1:
            joined = dataclasses.replace(joined, synthesis=None if any(s is None for s in syn) else
                                         SynthesisResult.concat(syn))
        return joined

    def check(self, models) -> torch.Tensor:
        """``d_1, d_2`` (N, 4, 2) of the saved images re-evaluated on ``models`` (as given to :func:`mad`).

        Equal to :attr:`distances` (up to float rounding) for the model(s) that made them.
        """
        model, pair = _model_and_units(models, self.units, prefixed=True)
        images = self.images.transpose(0, 1).reshape(-1, *self.images.shape[2:])
        return _distances(model, pair, self.reference, images).to(self.distances.device)

    @property
    def pushed_ratio(self) -> torch.Tensor:
        """``d_push / d_push(x0)`` per image (N, 4): > 1 for the max images, < 1 for the min images."""
        push = torch.tensor([1 - h for h, _, _ in ROLES], device=self.distances.device)
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
        im = self.images[i].float().cpu()
        tiles = torch.stack([self.reference[i].float().cpu(), im[0], im[1], self.initial[i].float().cpu(), im[2], im[3]])
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


@register_tool("design", per_sample=True)
def mad(
    models: nn.Module | Sequence[nn.Module] | Mapping[str, nn.Module],
    images: torch.Tensor,
    units: Sequence[str],
    *,
    noise: float = 0.1,
    steps: int = 200,
    lr: float = 0.005,
    lam: float = 10.0,
    seed: int | None = 0,
    progress: bool = True,
) -> MADResult:
    """MAD competition (Wang & Simoncelli 2008) of two representation distances: four extremal images per reference.

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
    seed : int or None
        Seeds the start noise of each reference from ``seed`` and the
        reference's content (the same alone or in a batch).
    progress : bool

    Returns
    -------
    MADResult
        Images in the model's dtype, tensors on its device.

    Raises
    ------
    StimulusError
        ``images`` not (N, C, H, W) floats in [0, 1], or an empty batch.
    InsilicoError
        Not two units (or two models), ``noise <= 0``, or a unit that does not
        respond to the start noise.
    """
    seed = run_seed(seed)
    images = check_images(images)  # an empty batch is a StimulusError that says to give images
    if isinstance(units, (str, Unit)) or len(units) != 2:
        raise InsilicoError(f"give two units, one per distance, e.g. ('features.3', 'features.10'); got {units!r}")
    model, pair = _model_and_units(models, units)
    if not noise > 0:
        raise InsilicoError(f"noise must be > 0 (the start image must differ from the reference), got {noise}")
    probe = Probe(model)
    probe.units(*pair)
    with session(model, grad=True) as s:  # eval, frozen parameters, gradients even under an outer no_grad
        images = s.inputs(images)
        n = images.shape[0]
        starts = []
        for key in content_key(images):  # seeded by the reference's content: the same alone or in a batch
            g = torch.Generator().manual_seed(derive_seed(seed, f"mad|{key}"))
            starts.append(torch.randn(images.shape[1:], generator=g))
        initial = (images + noise * torch.stack(starts).to(images.device, images.dtype)).clamp(0, 1)
        resp = _responses(model, pair, torch.cat([images, initial]))
        refs = [r[:n] for r in resp]
        levels = torch.stack([distance(r[n:], r[:n]) for r in resp], dim=1)  # (N, 2)
        if bool((levels <= 0).any()):
            raise InsilicoError("a distance is 0 at the start image (the unit does not respond to the noise): "
                                "use more noise= or other units")
        held = torch.tensor([h for h, _, _ in ROLES]).repeat_interleave(n)
        sign = torch.tensor([s for _, _, s in ROLES]).repeat_interleave(n)
        objective = MADObjective(pair, [r.repeat(4, *[1] * (r.ndim - 1)) for r in refs], levels.repeat(4, 1), held,
                                 sign, lam)
        labels = [f"{ROLE_NAMES[r]}|{i}" for r in range(4) for i in range(n)]
        synth = Synthesis(
            model, objective, "pixel", init=initial.repeat(4, 1, 1, 1), param_options={"squash": "clamp"},
            goal="maximize", lr=lr, steps=steps, seed=seed, labels=labels, progress=progress, compact="cpu")
        syn = synth.run()
        final = synth.images.to(images.device, images.dtype)  # the engine's result holds float32 copies
        dist = _distances(model, pair, images, final)  # (N, 4, 2)
    held_idx = torch.tensor([h for h, _, _ in ROLES], device=dist.device)
    held_final = dist.gather(2, held_idx.view(1, 4, 1).expand(n, 4, 1))[..., 0]
    held_error = (held_final / levels[:, held_idx] - 1).abs()
    return MADResult(
        reference=images.detach(), initial=initial.detach(),
        images=final.view(4, n, *images.shape[1:]).transpose(0, 1).contiguous(), distances=dist,
        initial_distances=levels, held_error=held_error, units=tuple(str(u) for u in pair), synthesis=syn,
        settings={**syn.settings, "noise": noise, "lam": lam})


def _model_and_units(models, units, prefixed: bool = False) -> tuple[nn.Module, tuple[Unit, Unit]]:
    """The model to run and the two units: one model's own, or each of two models' unit in a :class:`ModelGroup`.

    With ``prefixed`` the units already start with their model's name (as a :class:`MADResult` keeps them).
    """
    if isinstance(models, nn.Module) and not isinstance(models, ModelGroup):
        return models, tuple(Unit.parse(u) for u in units)
    model = ModelGroup(models)
    if len(model.names) != 2:
        raise InsilicoError(f"MAD compares two models; got {len(model.names)}")
    pair = []
    for name, u in zip(model.names, units):
        u = Unit.parse(u)
        pair.append(u if prefixed else u.replace(module=f"{name}.{u.module}" if u.module else name))
    return model, tuple(pair)


def _responses(model: nn.Module, pair, images: torch.Tensor) -> list[torch.Tensor]:
    """The responses of the two units to ``images`` (no grad, eval mode)."""
    wholes = unique_wholes(pair)
    with session(model) as s, Probe(model).record(*wholes) as rec:
        model(s.inputs(images))
        acts = Activations({w.key: rec[w] for w in wholes})
        return [acts[u] for u in pair]


def _distances(model: nn.Module, pair, reference: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """``d_1, d_2`` (N, 4, 2) of ``images`` (4 N, ordered role-major) to their references (N, C, H, W)."""
    n = reference.shape[0]
    refs = _responses(model, pair, reference)
    resp = _responses(model, pair, images)
    dist = torch.stack([distance(r, ref.repeat(4, *[1] * (ref.ndim - 1))) for r, ref in zip(resp, refs)], dim=1)
    return dist.view(4, n, 2).transpose(0, 1)


__all__ = ["MADObjective", "MADResult", "ROLES", "ROLE_NAMES", "mad"]

