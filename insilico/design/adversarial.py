"""Adversarial stimuli: FGSM and PGD under L-infinity and L2, on the shared synthesis engine.

An attack is one :class:`insilico.synthesis.Synthesis` run:

- **parameterization**: the pixels themselves (``Pixel(squash="clamp")``),
  started at the clean images or at a random point of the epsilon-ball;
- **objective**: cross-entropy of the model's logits (unit ``""``, the
  model's output) away from the true class (untargeted) or towards a target
  class (targeted), or ANY :class:`insilico.objectives.Objective` (drive a unit
  up, or silence it with ``-Channel(layer, c)``), maximized;
- **optimizer**: :class:`SignSGD`, a signed-gradient step (L-infinity) or a
  normalised-gradient step (L2), with one step size per sample;
- **projection**: :class:`EpsBall`, the exact epsilon-ball around each clean
  image intersected with [0, 1], after every step;
- **stopping**: a sample freezes at the first step where it is adversarial
  (``early_stop=True``), so its image is the one that succeeded.

Several epsilons and random restarts run in ONE batch: the samples are
``(eps, restart, image)``; for each image and epsilon the best restart is
kept (successful first, then the largest objective). The model is put in eval
mode and its mode restored afterwards (also on errors).

Written here rather than wrapping torchattacks/foolbox/ART because those
attack class labels only, one epsilon per call, without per-sample stopping;
here any unit can be the target and the engine is shared with the other
syntheses.

Example
-------
>>> import torch, insilico
>>> torch.manual_seed(0) is not None
True
>>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
>>> images = torch.rand(4, 3, 2, 2)
>>> result = pgd(model, images, eps=[0.05, 0.3], steps=5, progress=False)
>>> tuple(result.images.shape), bool((result.linf <= torch.tensor([[0.05], [0.3]])).all())
((2, 4, 3, 2, 2), True)
>>> [r["eps"] for r in result.report()]
[0.05, 0.3]
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import sharding
from ..errors import InsilicoError, StimulusError
from ..objectives import Activations, Objective, unique_wholes
from ..pixels import check_images
from ..probe import Probe
from ..synthesis.engine import Synthesis, derive_seed
from ..synthesis.parameterization import Pixel
from ..synthesis.result import SynthesisResult
from ..synthesis.stopping import TargetReached
from ..units import Unit

NORMS = {"inf": "inf", "linf": "inf", "l_inf": "inf", "l2": "l2", "2": "l2"}
LOSSES = ("ce", "margin")


# ---------------------------------------------------------------------------------------
# Building blocks: optimizer, projection, objective, stopping rule
# ---------------------------------------------------------------------------------------
class SignSGD(torch.optim.Optimizer):
    """Steepest descent under a norm: ``p -= lr * scale_i * sign(g)`` (L-inf) or ``* g / |g_i|`` (L2).

    Row ``i`` of each parameter (axis 0 = sample) has its own step factor
    ``scale[i]``, so several epsilons share one run. This is the PGD/FGSM
    update (Madry et al. 2018; Goodfellow et al. 2015).

    Parameters
    ----------
    params : iterable of tensors
        Parameters whose axis 0 is the sample.
    lr : float
        Step size (multiplied by ``scale``).
    norm : {"inf", "l2"}
        Sign of the gradient, or the gradient divided by its per-sample L2 norm.
    scale : tensor (N,), optional
        Per-sample step factors (default 1).

    Example
    -------
    >>> p = torch.nn.Parameter(torch.zeros(2, 3))
    >>> opt = SignSGD([p], lr=0.1, scale=torch.tensor([1.0, 2.0]))
    >>> p.grad = torch.tensor([[1.0, -2.0, 0.0], [3.0, 4.0, -5.0]])
    >>> opt.step()
    >>> p.tolist()
    [[-0.10000000149011612, 0.10000000149011612, 0.0], [-0.20000000298023224, -0.20000000298023224, 0.20000000298023224]]
    """

    def __init__(self, params, lr: float, norm: str = "inf", scale: torch.Tensor | None = None):
        if lr <= 0:
            raise InsilicoError(f"step size must be > 0, got {lr}")
        super().__init__(params, dict(lr=float(lr), norm=NORMS[str(norm).lower()]))
        self.scale = scale

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group["norm"] == "inf":
                    direction = g.sign()
                else:
                    direction = g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (g.ndim - 1))
                step = group["lr"] if self.scale is None else (
                    group["lr"] * self.scale.to(p.device, p.dtype).view(-1, *[1] * (p.ndim - 1)))
                p.sub_(direction * step)
        return loss


class EpsBall:
    """Exact projection onto ``{x : |x - center_i| <= eps_i} ∩ [0, 1]``, one epsilon per sample.

    "Exact" means ``|x - center|`` computed in float64 never exceeds ``eps``
    (float32 rounding of ``center + eps`` is corrected by one ulp).

    Parameters
    ----------
    center : tensor (N, C, H, W)
        The clean images.
    eps : float or tensor (N,)
        Radius of each sample's ball.
    norm : {"inf", "l2"}

    Example
    -------
    >>> ball = EpsBall(torch.full((1, 1, 1, 3), 0.5), 0.1)
    >>> [round(v, 4) for v in ball(torch.tensor([[[[0.0, 0.55, 1.0]]]])).flatten().tolist()]
    [0.4, 0.55, 0.6]
    """

    def __init__(self, center: torch.Tensor, eps, norm: str = "inf"):
        self.center = center.detach()
        self.norm = NORMS[str(norm).lower()]
        eps = torch.as_tensor(eps, dtype=torch.float64, device=center.device)
        self.eps = eps.expand(center.shape[0]).clone() if eps.ndim == 0 else eps
        if self.norm == "inf":
            e = self.eps.view(-1, *[1] * (center.ndim - 1))
            c64 = self.center.double()
            lo64, hi64 = (c64 - e).clamp(0, 1), (c64 + e).clamp(0, 1)
            lo, hi = lo64.to(center.dtype), hi64.to(center.dtype)
            # rounding to float32 may step outside the ball: one ulp inwards there
            lo = torch.where(lo.double() < lo64, torch.nextafter(lo, torch.ones_like(lo)), lo)
            hi = torch.where(hi.double() > hi64, torch.nextafter(hi, torch.zeros_like(hi)), hi)
            self.low, self.high = lo, hi

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.norm == "inf":
            return torch.clamp(images, self.low.to(images.dtype), self.high.to(images.dtype))
        center = self.center.to(images.dtype)
        delta = (images - center).double()
        e = self.eps.view(-1)
        norm = delta.flatten(1).norm(dim=1)
        # aim a hair (4e-6 relative) inside, so that a norm computed in float32 stays <= eps too
        inner = e * (1 - 4e-6)
        factor = torch.where(norm > inner, inner / norm.clamp_min(1e-30), torch.ones_like(norm))
        x = (center.double() + delta * factor.view(-1, *[1] * (delta.ndim - 1))).clamp(0, 1).to(images.dtype)
        for attempt in range(8):  # float32 rounding may leave a sample a hair outside: shrink it a hair more
            d = x.double() - center.double()
            n = d.flatten(1).norm(dim=1)
            out = n > e
            if not bool(out.any()):
                break
            shrink = torch.where(out, (e / n) * (1 - 1e-7 * 4**attempt), torch.ones_like(n))
            x = (center.double() + d * shrink.view(-1, *[1] * (d.ndim - 1))).clamp(0, 1).to(images.dtype)
        return x

    def __repr__(self) -> str:
        values = sorted(set(round(float(e), 6) for e in self.eps.unique()))
        return f"EpsBall(norm={self.norm!r}, eps={values})"


class ClassLoss(Objective):
    """Per-sample classification loss of the model's logits, to maximize in an attack.

    Untargeted: the loss of the true class (cross-entropy, or the margin
    ``max_{k != y} z_k - z_y``); targeted: minus the loss of the target class.
    After each call ``.success`` (N,) says which samples are adversarial
    (untargeted: predicted class != label; targeted: == target).

    Parameters
    ----------
    classes : tensor (N,)
        True labels (untargeted) or target classes (targeted).
    targeted : bool
    loss : {"ce", "margin"}
        Default "ce" (as torchattacks' PGD).
    unit : str
        Where the logits are: default ``""``, the model's output.

    Example
    -------
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    >>> obj = ClassLoss(torch.tensor([0, 0]), targeted=False, loss="margin")
    >>> obj({"": logits}).tolist(), obj.success.tolist()
    ([-2.0, 3.0], [False, True])
    """

    def __init__(self, classes: torch.Tensor, targeted: bool, loss: str = "ce", unit: str = ""):
        if loss not in LOSSES:
            raise InsilicoError(f"loss must be one of {LOSSES}, not {loss!r}")
        self.classes, self.targeted, self.loss = classes.long(), bool(targeted), loss
        self.unit = Unit.parse(unit)
        self.units = (self.unit,)
        self.success: torch.Tensor | None = None
        self._whole: tuple | None = None  # (full objective, rows) of a subset: success is reported to the full one

    def forward(self, acts, images):
        logits = acts[self.unit]
        if logits.ndim != 2:
            raise InsilicoError(f"class attacks need logits (N, classes) at {str(self.unit)!r}; got "
                                f"{tuple(logits.shape)}: pass target=an Objective for other outputs")
        y = self.classes.to(logits.device)
        if self.loss == "ce":
            value = F.cross_entropy(logits, y, reduction="none")
        else:
            true = logits.gather(1, y[:, None])[:, 0]
            other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(dim=1)
            value = other - true
        pred = logits.detach().argmax(dim=1)
        self.success = pred == y if self.targeted else pred != y
        if self._whole is not None:
            whole, rows = self._whole
            whole.success = torch.zeros(whole.classes.shape[0], dtype=torch.bool, device=y.device).index_copy(
                0, rows.to(y.device), self.success)
        return -value if self.targeted else value

    def subset(self, rows: torch.Tensor) -> ClassLoss:
        """The loss for the samples ``rows``; its ``success`` is also written, full size, to this objective."""
        cut = ClassLoss(self.classes.index_select(0, rows.to(self.classes.device)), self.targeted, self.loss,
                        str(self.unit))
        cut._whole = (self, rows)
        return cut

    def __repr__(self) -> str:
        return f"ClassLoss({'targeted' if self.targeted else 'untargeted'}, loss={self.loss!r})"


class Succeeded:
    """Stopping rule: stop the samples that a :class:`ClassLoss` found adversarial at this step."""

    __name__ = "success"

    def __init__(self, objective: ClassLoss):
        self.objective = objective

    def __call__(self, trace: torch.Tensor, state) -> torch.Tensor:
        return self.objective.success.to(trace.device)


# ---------------------------------------------------------------------------------------
# Result
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class AdversarialResult:
    """Adversarial images and a per-sample, per-epsilon success report.

    Arrays have a leading epsilon axis ``(E, N, ...)``; when ``eps`` was one
    number that axis is dropped from the public attributes (``images`` is
    then (N, C, H, W) and ``success`` (N,)). ``result.at(eps)`` picks one
    epsilon.

    Attributes
    ----------
    images : tensor ([E,] N, C, H, W)
        Adversarial images in [0, 1].
    success : bool tensor ([E,] N)
        Class attacks: prediction != label (untargeted) or == target
        (targeted). Objective attacks: objective reached ``target_value``
        (or, without one, went up from the clean image).
    prediction, confidence : tensors ([E,] N)
        Predicted class and its softmax probability on the adversarial
        images (when the model outputs logits; else -1 / NaN).
    objective : tensor ([E,] N)
        The attack objective on the adversarial images.
    linf, l2 : tensors ([E,] N)
        Perturbation norms.
    clean, labels, target : the inputs (``labels``/``target`` may be None).
    clean_prediction, clean_confidence, clean_objective : tensors (N,)
    eps : list of float
    norm : str
    synthesis : SynthesisResult
        The engine's result (all restarts; traces, steps, stop reasons).
    """

    eps_list: list
    norm: str
    clean: torch.Tensor
    labels: torch.Tensor | None
    target: torch.Tensor | None
    all_images: torch.Tensor
    all_success: torch.Tensor
    all_prediction: torch.Tensor
    all_confidence: torch.Tensor
    all_objective: torch.Tensor
    clean_prediction: torch.Tensor
    clean_confidence: torch.Tensor
    clean_objective: torch.Tensor
    steps_taken: torch.Tensor
    synthesis: SynthesisResult | None
    settings: dict
    scalar: bool = False
    classes: list | None = None

    def _view(self, x):
        return x[0] if self.scalar else x

    @property
    def eps(self):
        return self.eps_list[0] if self.scalar else list(self.eps_list)

    @property
    def images(self):
        return self._view(self.all_images)

    @property
    def success(self):
        return self._view(self.all_success)

    @property
    def prediction(self):
        return self._view(self.all_prediction)

    @property
    def confidence(self):
        return self._view(self.all_confidence)

    @property
    def objective(self):
        return self._view(self.all_objective)

    @property
    def perturbation(self) -> torch.Tensor:
        """``images - clean``."""
        return self.images - (self.clean if self.scalar else self.clean[None])

    @property
    def all_linf(self) -> torch.Tensor:
        return (self.all_images.double() - self.clean[None].double()).flatten(2).abs().amax(dim=2)

    @property
    def all_l2(self) -> torch.Tensor:
        return (self.all_images.double() - self.clean[None].double()).flatten(2).norm(dim=2)

    @property
    def linf(self):
        return self._view(self.all_linf)

    @property
    def l2(self):
        return self._view(self.all_l2)

    @property
    def success_rate(self):
        """Fraction of successful samples (a float, or a list per epsilon)."""
        rates = self.all_success.float().mean(dim=1).tolist()
        return rates[0] if self.scalar else rates

    def at(self, eps: float) -> AdversarialResult:
        """The result for one of the epsilons."""
        matches = [k for k, e in enumerate(self.eps_list) if math.isclose(e, float(eps), rel_tol=1e-9)]
        if not matches:
            raise InsilicoError(f"eps={eps} was not attacked; eps: {self.eps_list}")
        k = matches[0]
        pick = lambda x: x[k: k + 1]
        return dataclasses.replace(
            self, eps_list=[self.eps_list[k]], all_images=pick(self.all_images), all_success=pick(self.all_success),
            all_prediction=pick(self.all_prediction), all_confidence=pick(self.all_confidence),
            all_objective=pick(self.all_objective), steps_taken=pick(self.steps_taken), scalar=True)

    def report(self) -> list[dict]:
        """One dict per epsilon: success rate, perturbation norms, confidences, steps (JSON-able).

        Example
        -------
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3, 2))
        >>> r = fgsm(model, torch.rand(5, 3, 1, 1), eps=0.5, progress=False)
        >>> row = r.report()[0]
        >>> row["eps"], row["linf_max"] <= 0.5, 0.0 <= row["success_rate"] <= 1.0
        (0.5, True, True)
        """
        out = []
        linf, l2 = self.all_linf, self.all_l2
        for k, eps in enumerate(self.eps_list):
            row = {
                "eps": eps, "norm": self.norm, "n": int(self.clean.shape[0]),
                "success_rate": float(self.all_success[k].float().mean()),
                "linf_mean": float(linf[k].mean()), "linf_max": float(linf[k].max()),
                "l2_mean": float(l2[k].mean()), "l2_max": float(l2[k].max()),
                "confidence_mean": float(self.all_confidence[k].nanmean()),
                "clean_confidence_mean": float(self.clean_confidence.nanmean()),
                "objective_mean": float(self.all_objective[k].mean()),
                "clean_objective_mean": float(self.clean_objective.mean()),
                "steps_mean": float(self.steps_taken[k].float().mean()),
            }
            if self.labels is not None:
                row["clean_accuracy"] = float((self.clean_prediction == self.labels).float().mean())
                row["accuracy"] = float((self.all_prediction[k] == self.labels).float().mean())
            out.append(row)
        return out

    def per_sample(self) -> list[dict]:
        """One dict per (epsilon, image): success, predictions, confidences, norms (JSON-able)."""
        linf, l2 = self.all_linf, self.all_l2
        rows = []
        for k, eps in enumerate(self.eps_list):
            for i in range(self.clean.shape[0]):
                rows.append({
                    "eps": eps, "index": i, "success": bool(self.all_success[k, i]),
                    "label": None if self.labels is None else int(self.labels[i]),
                    "target": None if self.target is None else int(self.target[i]),
                    "clean_prediction": int(self.clean_prediction[i]),
                    "prediction": int(self.all_prediction[k, i]),
                    "clean_confidence": float(self.clean_confidence[i]), "confidence": float(self.all_confidence[k, i]),
                    "clean_objective": float(self.clean_objective[i]), "objective": float(self.all_objective[k, i]),
                    "linf": float(linf[k, i]), "l2": float(l2[k, i]), "steps": int(self.steps_taken[k, i]),
                })
        return rows

    def _name(self, c: int) -> str:
        if c < 0:
            return "-"
        return self.classes[c] if self.classes and c < len(self.classes) else str(c)

    def plot(self, n: int = 6, eps: float | None = None, ax=None, gain: float | None = None):
        """Rows of clean image | perturbation (amplified, grey = 0) | adversarial image, titled with predictions.

        Parameters
        ----------
        n : int
            How many images (default 6).
        eps : float, optional
            Which epsilon (default: the largest).
        ax : matplotlib Axes, optional
            Draw the mosaic into this axes.
        gain : float, optional
            Perturbation shown as ``0.5 + gain * delta`` (default: 0.5 / max |delta|).

        Returns
        -------
        matplotlib Figure
        """
        from .. import plot

        k = self.eps_list.index(eps) if eps is not None else int(torch.tensor(self.eps_list).argmax())
        n = min(n, self.clean.shape[0])
        clean, adv = self.clean[:n], self.all_images[k, :n]
        delta = adv - clean
        g = gain if gain is not None else 0.5 / max(float(delta.abs().max()), 1e-12)
        tiles, titles = [], []
        for i in range(n):
            tiles += [clean[i], (0.5 + g * delta[i]).clamp(0, 1), adv[i]]
            truth = "" if self.labels is None else f"y={self._name(int(self.labels[i]))}: "
            titles += [f"{truth}{self._name(int(self.clean_prediction[i]))} {float(self.clean_confidence[i]):.2f}",
                       f"x{g:.3g} eps={self.eps_list[k]:.3g}",
                       f"{self._name(int(self.all_prediction[k, i]))} {float(self.all_confidence[k, i]):.2f}"
                       + (" ✓" if bool(self.all_success[k, i]) else " ✗")]
        return plot.image_grid(torch.stack(tiles), titles=titles, ncols=3, ax=ax)

    def plot_success(self, ax=None):
        """Success rate against epsilon; returns the Figure."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(3.5, 2.8))
        rates = self.all_success.float().mean(dim=1).numpy()
        ax.plot(self.eps_list, rates, "o-")
        ax.set_xlabel(f"eps (L{'∞' if self.norm == 'inf' else '2'})")
        ax.set_ylabel("success rate")
        ax.set_ylim(-0.02, 1.02)
        return ax.figure

    def __repr__(self) -> str:
        rates = ", ".join(f"{e:.4g}: {r:.0%}" for e, r in zip(self.eps_list, self.all_success.float().mean(1).tolist()))
        return f"AdversarialResult({self.clean.shape[0]} images, L{self.norm}, success {{{rates}}})"


# ---------------------------------------------------------------------------------------
# Attacks
# ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def eval_mode(*models: nn.Module):
    """Put models in eval mode for the block; every module's mode is restored after (also on errors)."""
    modes = [(m, m.training) for model in models for m in model.modules()]
    try:
        for model in models:
            model.eval()
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def _check_eps(eps) -> tuple[list[float], bool]:
    scalar = isinstance(eps, numbers.Real) or (torch.is_tensor(eps) and eps.ndim == 0)
    values = [float(eps)] if scalar else [float(e) for e in eps]
    if not values or not all(math.isfinite(e) and e > 0 for e in values):
        raise InsilicoError(f"eps must be > 0 (one number or a list), got {eps!r}; for 8/255 write eps=8/255")
    return values, scalar


def _as_classes(value, n: int, what: str, device) -> torch.Tensor:
    t = torch.as_tensor(value, device=device).long().flatten()
    if t.numel() == 1 and n != 1:
        t = t.expand(n)
    if t.numel() != n:
        raise InsilicoError(f"{what} has {t.numel()} entries for {n} images; give one per image (or one int)")
    return t.clone()


def _evaluate(model: nn.Module, objective: Objective, images: torch.Tensor, batch_size: int):
    """Objective values (N,), predicted class (N,) and its probability (N,) of ``images`` (no grad, eval mode)."""
    wholes = unique_wholes(objective.units)
    out_unit = Unit("")
    need = wholes + ([out_unit] if all(w.key != "" for w in wholes) else [])
    values, preds, confs = [], [], []
    with eval_mode(model), torch.no_grad(), Probe(model).record(*need) as rec:
        for start in range(0, images.shape[0], batch_size):
            rec.clear()
            x = images[start: start + batch_size]
            model(x)
            acts = Activations({w.key: rec[w] for w in wholes})
            values.append(objective(acts, x).float())
            out = rec[out_unit]
            if torch.is_tensor(out) and out.ndim == 2:
                p = out.float().softmax(dim=1)
                conf, pred = p.max(dim=1)
            else:
                conf, pred = torch.full((x.shape[0],), float("nan")), torch.full((x.shape[0],), -1)
            preds.append(pred.cpu())
            confs.append(conf.cpu())
    return torch.cat(values).cpu(), torch.cat(preds), torch.cat(confs)


def pgd(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    eps: float | Sequence[float] = 8 / 255,
    step_size: float | Sequence[float] | None = None,
    steps: int = 10,
    norm: str = "inf",
    target: torch.Tensor | int | Objective | str | None = None,
    target_value: float | None = None,
    random_start: bool = True,
    restarts: int = 1,
    loss: str = "ce",
    early_stop: bool = True,
    batch_size: int | None = None,
    seed: int = 0,
    progress: bool = True,
    out=None,
    shard: tuple[int, int] | None = None,
) -> AdversarialResult:
    """Projected gradient descent (Madry et al. 2018) for a class or any unit objective, batched over epsilons.

    Parameters
    ----------
    model : nn.Module
        Takes pixel-space images in [0, 1]; class attacks need logits (N, K).
    images : tensor (N, C, H, W)
        Clean images in [0, 1].
    labels : tensor (N,), optional
        True classes; default: the model's predictions on the clean images.
    eps : float or list of float
        Radius of the ball (L-inf: per pixel; L2: per image). Default 8/255.
        Several values run in one batch.
    step_size : float or list of float, optional
        Step per iteration (one for all, or one per epsilon); default
        ``2.5 * eps / steps`` per epsilon.
    steps : int
        Iterations (default 10).
    norm : {"inf", "l2"}
    target : int, tensor (N,), Objective or unit address, optional
        A class (targeted attack), or an objective PGD maximizes
        (``-Channel("features.10", 12)`` silences channel 12; a unit address
        string means ``Activation(unit)``). Default: untargeted.
    target_value : float, optional
        For objective targets: success (and early stop) once the objective
        reaches this value.
    random_start : bool
        Start at a uniform random point of the ball (default True).
    restarts : int
        Random restarts per image and epsilon, in the same batch; the best is kept.
    loss : {"ce", "margin"}
        Class-attack loss (default cross-entropy).
    early_stop : bool
        Freeze each sample at its first successful step (default True).
    batch_size : int, optional
        Images per synthesis run (each run holds ``E * restarts`` copies).
    seed : int
        Seeds the random starts (per sample).
    progress : bool
        Progress bar.
    out, shard : folder, (rank, world), optional
        Share the ``batch_size`` chunks among ranks and keep them in ``out``
        (see :func:`insilico.sharding.map_chunks`; default: the process group's ranks).

    Returns
    -------
    AdversarialResult

    Example
    -------
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    >>> x = torch.rand(6, 3, 2, 2)
    >>> r = pgd(model, x, eps=0.5, steps=10, progress=False)
    >>> bool((r.linf <= 0.5).all()), bool(((r.images >= 0) & (r.images <= 1)).all())
    (True, True)
    """
    if not isinstance(model, nn.Module):
        raise InsilicoError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if torch.is_tensor(images) and images.ndim == 4 and images.shape[0] == 0:
        raise StimulusError("no images to attack (the batch is empty)")
    images = check_images(images)
    eps_list, scalar = _check_eps(eps)
    norm_key = NORMS.get(str(norm).lower().replace("∞", "inf"))
    if norm_key is None:
        raise InsilicoError(f"norm must be 'inf' or 'l2', not {norm!r}")
    steps = int(steps)
    if steps < 1 or int(restarts) < 1:
        raise InsilicoError(f"steps and restarts must be >= 1, got steps={steps}, restarts={restarts}")
    if step_size is not None:
        sizes = [float(step_size)] * len(eps_list) if isinstance(step_size, numbers.Real) else [
            float(v) for v in step_size]
        if len(sizes) != len(eps_list) or not all(v > 0 for v in sizes):
            raise InsilicoError(f"step_size must be > 0 (one number, or one per eps), got {step_size!r}")
        step_size = sizes
    probe = Probe(model)
    device, dtype = probe.device, probe.dtype
    images = images.to(device, dtype)
    n = images.shape[0]
    classes = getattr(model, "classes", None)

    # what to maximize
    objective_target = isinstance(target, (Objective, str, Unit))
    if objective_target:
        from ..objectives import Activation

        user_objective = target if isinstance(target, Objective) else Activation(target)
        target_classes = None
        labels = None if labels is None else _as_classes(labels, n, "labels", device)
    else:
        if labels is None and target is None:
            with eval_mode(model), torch.no_grad():
                labels = torch.cat([model(images[s: s + 256]).argmax(dim=1) for s in range(0, n, 256)])
        labels = None if labels is None else _as_classes(labels, n, "labels", device)
        target_classes = None if target is None else _as_classes(target, n, "target", device)
        user_objective = None

    chunk = int(batch_size) if batch_size else n
    parts = sharding.map_chunks(lambda a, b: _attack_chunk(
        model, images[a:b], None if labels is None else labels[a:b],
        None if target_classes is None else target_classes[a:b], user_objective, eps_list, step_size, steps,
        norm_key, target_value, random_start, int(restarts), loss, early_stop, seed, progress, a),
        n, chunk, out=out, shard=shard, job={"tool": "pgd", "n": n, "batch_size": chunk, "eps": eps_list, "seed": seed})
    if parts is None:
        return None
    cat = lambda key, dim: torch.cat([p[key] for p in parts], dim=dim)
    syn = SynthesisResult.concat([p["synthesis"] for p in parts])
    settings = {
        "attack": "pgd", "eps": eps_list, "norm": norm_key, "steps": steps,
        "step_size": step_size if step_size is not None else [2.5 * e / steps for e in eps_list],
        "random_start": bool(random_start), "restarts": int(restarts), "loss": loss, "early_stop": bool(early_stop),
        "targeted": target is not None, "objective": repr(user_objective) if user_objective is not None else None,
        "target_value": target_value, "seed": seed, "model": type(model).__name__,
    }
    return AdversarialResult(
        eps_list=eps_list, norm=norm_key, clean=images.detach().float().cpu(),
        labels=None if labels is None else labels.cpu(),
        target=None if target_classes is None else target_classes.cpu(),
        all_images=cat("images", 1), all_success=cat("success", 1), all_prediction=cat("prediction", 1),
        all_confidence=cat("confidence", 1), all_objective=cat("objective", 1),
        clean_prediction=cat("clean_prediction", 0), clean_confidence=cat("clean_confidence", 0),
        clean_objective=cat("clean_objective", 0), steps_taken=cat("steps", 1), synthesis=syn,
        settings=settings, scalar=scalar, classes=list(classes) if classes is not None else None)


def _attack_chunk(model, images, labels, target_classes, user_objective, eps_list, step_size, steps, norm,
                  target_value, random_start, restarts, loss, early_stop, seed, progress, offset) -> dict:
    n, e_count = images.shape[0], len(eps_list)
    s_count = e_count * restarts * n  # samples ordered (eps, restart, image)
    device, dtype = images.device, images.dtype
    eps_s = torch.tensor(eps_list, dtype=torch.float64, device=device).repeat_interleave(restarts * n)
    center = images.repeat(e_count * restarts, 1, 1, 1)
    if user_objective is None:
        classes = target_classes if target_classes is not None else labels
        objective = ClassLoss(classes.repeat(e_count * restarts), targeted=target_classes is not None, loss=loss)
        rules = [Succeeded(objective)] if early_stop else []
    else:
        objective = user_objective
        rules = [TargetReached(float(target_value))] if (early_stop and target_value is not None) else []
    sample_labels = [f"eps={eps_list[k]:.6g}|restart={r}|{offset + i}"
                     for k in range(e_count) for r in range(restarts) for i in range(n)]
    seeds = [derive_seed(seed, label) for label in sample_labels]
    ball = EpsBall(center, eps_s, norm)
    start = center
    if random_start:
        noise = torch.stack([torch.rand(center.shape[1:], generator=torch.Generator().manual_seed(s)) for s in seeds])
        noise = noise.to(device, dtype) * 2 - 1
        if norm == "l2":
            gauss = torch.stack([torch.randn(center.shape[1:], generator=torch.Generator().manual_seed(s + 1))
                                 for s in seeds]).to(device, dtype)
            radius = (noise.flatten(1)[:, 0] + 1) / 2
            noise = gauss / gauss.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1) * radius.view(-1, 1, 1, 1)
        start = ball(center + noise * eps_s.to(dtype).view(-1, 1, 1, 1))
    step_sizes = (torch.tensor(step_size, dtype=dtype, device=device).repeat_interleave(restarts * n)
                  if step_size is not None else (2.5 * eps_s / steps).to(dtype))
    synth = Synthesis(
        model, objective, Pixel(s_count, tuple(images.shape[1:]), squash="clamp"), init=start, goal="maximize",
        optimizer=SignSGD, optimizer_options={"norm": norm, "scale": step_sizes}, lr=1.0, steps=steps, stop=rules,
        projection=ball, seed=seeds, labels=sample_labels, progress=progress,
        sync_every=1 if device.type == "cpu" else 4, compact="cpu")
    syn = synth.run()
    adv = syn.images.to(device, dtype)
    adv = ball(adv)  # a no-op up to float rounding: the engine wrote the projected images back
    clean_objective = objective if user_objective is not None else ClassLoss(
        classes, targeted=target_classes is not None, loss=loss)
    clean_value, clean_pred, clean_conf = _evaluate(model, clean_objective, images, batch_size=512)
    value, pred, conf = _evaluate(model, objective, adv, batch_size=512)
    if user_objective is None:
        ref = (target_classes if target_classes is not None else labels).cpu().repeat(e_count * restarts)
        success = pred == ref if target_classes is not None else pred != ref
    elif target_value is not None:
        success = value >= target_value
    else:
        success = value > clean_value.repeat(e_count * restarts)
    # best restart per (eps, image): successful first, then the largest objective
    score = success.double() * 1e30 + value.double().nan_to_num(-1e29)
    best = score.view(e_count, restarts, n).argmax(dim=1)  # (E, N)
    pick = lambda x: x.view(e_count, restarts, n, *x.shape[1:]).gather(
        1, best.view(e_count, 1, n, *[1] * (x.ndim - 1)).expand(e_count, 1, n, *x.shape[1:]))[:, 0]
    return {
        "images": pick(adv.float().cpu()), "success": pick(success), "prediction": pick(pred),
        "confidence": pick(conf), "objective": pick(value), "steps": pick(syn.steps),
        "clean_prediction": clean_pred, "clean_confidence": clean_conf, "clean_objective": clean_value,
        "synthesis": syn,
    }


def fgsm(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    eps: float | Sequence[float] = 8 / 255,
    norm: str = "inf",
    target: torch.Tensor | int | Objective | str | None = None,
    loss: str = "ce",
    progress: bool = True,
) -> AdversarialResult:
    """Fast gradient sign method (Goodfellow et al. 2015): one step of size ``eps`` from the clean images.

    Same arguments and result as :func:`pgd` (it is ``pgd(steps=1,
    step_size=eps, random_start=False)``); ``norm="l2"`` gives the fast
    gradient method.

    Example
    -------
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3, 2))
    >>> r = fgsm(model, torch.rand(4, 3, 1, 1), eps=0.1, progress=False)
    >>> bool((r.linf <= 0.1).all())
    True
    """
    eps_list, scalar = _check_eps(eps)
    result = pgd(model, images, labels, eps=eps if scalar else eps_list, step_size=eps_list, steps=1, norm=norm,
                 target=target, random_start=False, restarts=1, loss=loss, early_stop=True, progress=progress)
    result.settings = {**result.settings, "attack": "fgsm"}
    return result


__all__ = ["AdversarialResult", "ClassLoss", "EpsBall", "SignSGD", "Succeeded", "eval_mode",
           "fgsm", "pgd"]
