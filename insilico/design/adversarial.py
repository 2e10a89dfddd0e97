"""Adversarial stimuli: FGSM and PGD under L-infinity and L2, on the shared synthesis engine.

An attack is one :class:`insilico.synthesis.Synthesis` run:

- **parameterization**: the pixels themselves (``Pixel(squash="clamp")``),
  started at the clean images or at a random point of the epsilon-ball;
- **objective**: cross-entropy of the model's logits (unit ``""``, the
  model's output) away from the true class (untargeted) or towards a target
  class (targeted): :class:`insilico.objectives.classification.ClassLoss`; or ANY :class:`insilico.objectives.Objective` (drive a unit
  up, or silence it with ``-Channel(layer, c)``), maximized;
- **optimizer**: :class:`insilico.synthesis.SignSGD`, a signed-gradient step
  (L-infinity) or a normalised-gradient step (L2), with one step size per sample;
- **projection**: :class:`insilico.synthesis.EpsBall`, the exact epsilon-ball
  around each clean image intersected with [0, 1], after every step;
- **stopping**: a sample freezes at the first step where it is adversarial
  (``early_stop=True``), so its image is the one that succeeded.

Several epsilons and random restarts run in ONE batch: the samples are
``(eps, restart, image)``; for each image and epsilon the best restart is
kept (successful first, then the largest objective). The images are cut
into chunks of ``batch_size`` and every run, sharded or not, goes through the
same chunks (:func:`insilico.sharding.map_chunks`), so a sample sees the same
batch whatever the number of processes. The model runs inside
:func:`insilico.session.session` (eval mode, frozen parameters, gradients on
even under ``torch.no_grad()``; every module's own flags restored after, also
on errors) and keeps its dtype: a float64 model gives float64 images inside
the exact ball. The result is an :class:`AdversarialResult`
(:mod:`insilico.design.adversarial_result`).

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

import math
import numbers
import os
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .. import evaluate, sharding
from ..errors import InsilicoError
from ..objectives import Activations, Objective, unique_wholes
from ..objectives.classification import LOSSES, ClassLoss
from ..options import Job, Options
from ..pixels import check_images
from ..registry import register_tool
from ..plan import Plan
from ..seeding import run_seed
from ..synthesis.engine import Synthesis, derive_seed
from ..synthesis.optimizers import NORMS, SignSGD, norm_name
from ..synthesis.parameterization import Pixel
from ..synthesis.projection import EpsBall
from ..identity import job_identity, value_digest
from ..synthesis.seeds import content_key
from ..synthesis.stopping import TargetReached
from ..units import Unit
from .adversarial_result import AdversarialResult, predict


class Succeeded:
    """Stopping rule: stop the samples that a :class:`ClassLoss` found adversarial at this step."""

    __name__ = "success"

    def __init__(self, objective: ClassLoss):
        self.objective = objective

    def __call__(self, trace: torch.Tensor, state) -> torch.Tensor:
        return self.objective.success.to(trace.device)


#: The largest radius :func:`pgd` takes: far past the pixel cube's diameter (1 for L-inf, sqrt(C H W) for L2,
#: C H W for L1, below 1e6 for images up to 577 px); a radius beyond it is a mistake, and past about 1e38 the
#: float32 steps overflow into NaN images.
EPS_MAX = 1e6


def _check_eps(eps) -> tuple[list[float], bool]:
    scalar = isinstance(eps, numbers.Real) or (torch.is_tensor(eps) and eps.ndim == 0)
    values = [float(eps)] if scalar else [float(e) for e in eps]
    if not values or not all(math.isfinite(e) and 0 < e <= EPS_MAX for e in values):
        raise InsilicoError(f"eps must be > 0 and <= {EPS_MAX:g} (one number or a list), got {eps!r}; for 8/255 "
                            "write eps=8/255")
    return values, scalar


def _as_classes(value, n: int, what: str, device) -> torch.Tensor:
    """``value`` (an int, or one class per image) as a long tensor (n,); InsilicoError naming ``what`` for
    non-integer, NaN or negative classes (an index past the model's classes is refused at the first forward
    pass, by :class:`~insilico.objectives.classification.ClassLoss`, which sees the logits)."""
    t = torch.as_tensor(value, device=device).flatten()
    if t.is_floating_point() and not bool((torch.isfinite(t) & (t == t.round())).all()):
        raise InsilicoError(f"{what} must be class indices (whole numbers 0 .. classes-1), got {t.tolist()[:8]}")
    if t.dtype == torch.bool or t.is_complex():
        raise InsilicoError(f"{what} must be class indices (ints 0 .. classes-1), got a {t.dtype} tensor")
    t = t.long()
    if t.numel() and int(t.min()) < 0:
        raise InsilicoError(f"{what} must be class indices 0 .. classes-1, got {int(t.min())}")
    if t.numel() == 1 and n != 1:
        t = t.expand(n)
    if t.numel() != n:
        raise InsilicoError(f"{what} has {t.numel()} entries for {n} images; give one per image (or one int)")
    return t.clone()


def _evaluate(plan: Plan, objective: Objective, images: torch.Tensor, batch_size: int):
    """Objective values (N,), predicted class (N,) and its probability (N,) of ``images`` (no grad, eval mode),
    recorded with the call's Probe in its session (:func:`insilico.evaluate.responses`)."""
    wholes = unique_wholes(objective.units)
    out_unit = Unit("")
    need = wholes + ([out_unit] if all(w.key != "" for w in wholes) else [])
    recorded = evaluate.responses(plan.model, images, need, batch_size=batch_size, plan=plan, stop=False)
    values = dict(zip([w.key for w in need], recorded))
    with plan.session():
        value = objective(Activations({w.key: values[w.key] for w in wholes}, plan.model), images).float()
    out = values[""]
    if torch.is_tensor(out) and out.ndim == 2:
        conf, pred = out.float().softmax(dim=1).max(dim=1)
    else:
        conf, pred = torch.full((images.shape[0],), float("nan")), torch.full((images.shape[0],), -1)
    return value.cpu(), pred.cpu(), conf.cpu()


@dataclass(frozen=True)
class AttackOptions(Options):
    """The attack's own settings of :func:`pgd`, checked when built (an unknown name gets its close matches).

    Attributes
    ----------
    eps : float or list of float
        Radius of the ball (L-inf: per pixel; L2: per image), in (0, ``EPS_MAX``]. Default 8/255.
        Several values run in one batch.
    step_size : float or list of float, optional
        Step per iteration (one for all, or one per epsilon), > 0; default ``2.5 * eps / steps`` per epsilon.
    steps : int
        Iterations, >= 1 (default 10).
    norm : {"inf", "l2"}
        The ball's norm (default "inf"; :data:`insilico.synthesis.optimizers.NORMS`).
    random_start : bool
        Start at a uniform random point of the ball (default True).
    restarts : int
        Random restarts per image and epsilon, >= 1, in the same batch; the best is kept (default 1).
    loss : {"ce", "margin"}
        Class-attack loss (default "ce", cross-entropy).
    early_stop : bool
        Freeze each sample at its first successful step (default True).

    Example
    -------
    >>> AttackOptions(eps=[2/255, 8/255], restarts=4).replace(norm="l2").norm
    'l2'
    >>> AttackOptions(eps=0)
    Traceback (most recent call last):
    ...
    insilico.errors.InsilicoError: eps must be > 0 and <= 1e+06 (one number or a list), got 0; for 8/255 write eps=8/255
    """

    eps: float | Sequence[float] = 8 / 255
    step_size: float | Sequence[float] | None = None
    steps: int = 10
    norm: str = "inf"
    random_start: bool = True
    restarts: int = 1
    loss: str = "ce"
    early_stop: bool = True

    def validate(self) -> AttackOptions:
        """Check every setting; returns ``self``. Raises InsilicoError naming the setting and its values."""
        eps_list, _ = _check_eps(self.eps)
        norm_name(self.norm)
        for name in ("steps", "restarts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise InsilicoError(f"steps and restarts must be ints >= 1, got {name}={value!r}")
        if self.step_size is not None:
            sizes = _step_sizes(self.step_size, len(eps_list))
            if len(sizes) != len(eps_list) or not all(v > 0 for v in sizes):
                raise InsilicoError(f"step_size must be > 0 (one number, or one per eps), got {self.step_size!r}")
        if self.loss not in LOSSES:
            raise InsilicoError(f"loss must be one of {tuple(LOSSES)}, not {self.loss!r}")
        return self


def _step_sizes(step_size, n_eps: int) -> list[float]:
    """One step size per epsilon: a number repeated, or the list as given."""
    return [float(step_size)] * n_eps if isinstance(step_size, numbers.Real) else [float(v) for v in step_size]


@register_tool("design", per_sample=True)
def pgd(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    target: torch.Tensor | int | Objective | str | None = None,
    target_value: float | None = None,
    batch_size: int | None = None,
    seed: int | None = 0,
    progress: bool = True,
    out: str | os.PathLike | Job | None = None,
    options: AttackOptions | None = None,
    **option_overrides,
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
    target : int, tensor (N,), Objective or unit address, optional
        A class (targeted attack), or an objective PGD maximizes
        (``-Channel("features.10", 12)`` silences channel 12; a unit address
        string means ``Activation(unit)``). Default: untargeted.
    target_value : float, optional
        For objective targets: success (and early stop) once the objective
        reaches this value.
    batch_size : int, optional
        Images per synthesis run (each run holds ``E * restarts`` copies).
    seed : int or None
        Seeds the random starts: each sample's from ``seed``, its epsilon, its
        restart and its image's content (:func:`insilico.synthesis.seeds.content_key`),
        so an image gets the same start alone or in any batch.
    progress : bool
        Progress bar.
    out : folder or Job, optional
        Keep each ``batch_size`` chunk there (a rerun computes only the missing ones); a
        :class:`~insilico.options.Job` also shares the chunks among ranks (``shard``; default: the process
        group's ranks) or starts over (``overwrite``): see :func:`insilico.sharding.map_chunks`.
        The folder keeps the job's identity (the model's parameters, the images,
        labels and targets, every setting: :mod:`insilico.identity`); a folder
        of another job is refused (:class:`~insilico.errors.JobMismatchError`).
    options : AttackOptions, optional
        The attack's settings: ``eps`` (default 8/255; a list runs in one batch), ``step_size``, ``steps``
        (10), ``norm`` ("inf" or "l2"), ``random_start``, ``restarts``, ``loss``, ``early_stop``.
    **option_overrides
        Any field of :class:`AttackOptions`, on top of ``options`` (``pgd(model, x, eps=8/255, steps=20)``).

    Returns
    -------
    AdversarialResult
        Images in the model's dtype, tensors on its device (None for a
        hand-made shard whose companions are still missing).

    Raises
    ------
    StimulusError
        ``images`` not (N, C, H, W) floats in [0, 1], or an empty batch.
    InsilicoError
        An unknown option (with close matches), a bad ``eps``, ``norm``, ``steps``, ``restarts``,
        ``step_size``, or labels/targets that do not match the images.

    Example
    -------
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    >>> x = torch.rand(6, 3, 2, 2)
    >>> r = pgd(model, x, eps=0.5, steps=10, progress=False)
    >>> bool((r.linf <= 0.5).all()), bool(((r.images >= 0) & (r.images <= 1)).all())
    (True, True)
    """
    seed = run_seed(seed, out)
    options = AttackOptions.from_kwargs("pgd", None, options, **option_overrides)
    if not isinstance(model, nn.Module):
        raise InsilicoError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    images = check_images(images)  # an empty batch is a StimulusError that says to give images
    eps_list, scalar = _check_eps(options.eps)
    step_size = None if options.step_size is None else _step_sizes(options.step_size, len(eps_list))
    plan = Plan(model)  # the call's one Probe and one session
    with plan.session(grad=True) as s:  # eval, frozen parameters, gradients even under an outer no_grad
        attack = _Attack(eps_list, scalar, step_size, int(options.steps), norm_name(options.norm), target_value,
                         bool(options.random_start), int(options.restarts), options.loss, bool(options.early_stop),
                         seed, progress)
        return _pgd(plan, s.inputs(images), labels, target, attack, batch_size, out)


@dataclass(frozen=True)
class _Attack:
    """:func:`pgd`'s checked settings, passed down to every chunk as one object (``step_size``: one per epsilon,
    or None for ``2.5 * eps / steps``)."""

    eps_list: list
    scalar: bool
    step_size: list | None
    steps: int
    norm: str
    target_value: float | None
    random_start: bool
    restarts: int
    loss: str
    early_stop: bool
    seed: int
    progress: bool


def _pgd(plan, images, labels, target, attack: _Attack, batch_size, out) -> AdversarialResult | None:
    """:func:`pgd` after its checks, inside the plan's session, with ``images`` on the model's device and in its dtype."""
    model = plan.model
    device = images.device
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
            labels = predict(model, images, plan=plan)
        labels = None if labels is None else _as_classes(labels, n, "labels", device)
        target_classes = None if target is None else _as_classes(target, n, "target", device)
        user_objective = None

    chunk = int(batch_size) if batch_size else n
    eps_list, steps = attack.eps_list, attack.steps
    settings = {
        "attack": "pgd", "eps": eps_list, "norm": attack.norm, "steps": steps,
        "step_size": attack.step_size if attack.step_size is not None else [2.5 * e / steps for e in eps_list],
        "random_start": attack.random_start, "restarts": attack.restarts, "loss": attack.loss,
        "early_stop": attack.early_stop,
        "targeted": target is not None, "objective": repr(user_objective) if user_objective is not None else None,
        "target_value": attack.target_value, "seed": attack.seed, "model": type(model).__name__,
        "dtype": str(images.dtype).replace("torch.", ""),
    }
    common = dict(eps_list=eps_list, scalar=attack.scalar, norm=attack.norm, settings=settings,
                  classes=list(classes) if classes is not None else None)
    parts = sharding.map_chunks(lambda a, b: _attack_chunk(
        plan, images[a:b], None if labels is None else labels[a:b],
        None if target_classes is None else target_classes[a:b], user_objective, attack, a, common),
        n, chunk, out=out,
        job=lambda: job_identity(model, {**settings, "tool": "pgd", "batch_size": chunk,
                                         "objective": value_digest(user_objective)},
                                 {"images": images, "labels": labels, "target": target_classes}, chunk))
    if parts is None:
        return None
    return AdversarialResult.concat(parts).to(device)


def _attack_chunk(plan, images, labels, target_classes, user_objective, attack: _Attack, offset,
                  common) -> AdversarialResult:
    """The attack of one chunk of images (``offset``: the index of its first image in the job), on the CPU."""
    eps_list, norm, restarts, steps = attack.eps_list, attack.norm, attack.restarts, attack.steps
    loss, early_stop, target_value, seed = attack.loss, attack.early_stop, attack.target_value, attack.seed
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
    # each sample's random start is seeded by its image's content, not its position: the same alone or in a batch
    keys = content_key(images)
    seeds = [derive_seed(seed, f"eps={eps_list[k]:.6g}|restart={r}|{keys[i]}")
             for k in range(e_count) for r in range(restarts) for i in range(n)]
    ball = EpsBall(center, eps_s, norm)
    start = center
    if attack.random_start:
        noise = torch.stack([torch.rand(center.shape[1:], generator=torch.Generator().manual_seed(s)) for s in seeds])
        noise = noise.to(device, dtype) * 2 - 1
        if norm == "l2":
            gauss = torch.stack([torch.randn(center.shape[1:], generator=torch.Generator().manual_seed(s + 1))
                                 for s in seeds]).to(device, dtype)
            radius = (noise.flatten(1)[:, 0] + 1) / 2
            noise = gauss / gauss.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1) * radius.view(-1, 1, 1, 1)
        start = ball(center + noise * eps_s.to(dtype).view(-1, 1, 1, 1))
    step_sizes = (torch.tensor(attack.step_size, dtype=dtype, device=device).repeat_interleave(restarts * n)
                  if attack.step_size is not None else (2.5 * eps_s / steps).to(dtype))
    synth = Synthesis(
        plan.model, objective, Pixel(s_count, tuple(images.shape[1:]), squash="clamp"), init=start, goal="maximize",
        optimizer=SignSGD, optimizer_options={"norm": norm, "scale": step_sizes}, lr=1.0, steps=steps, stop=rules,
        projection=ball, seed=seeds, labels=sample_labels, progress=attack.progress,
        sync_every=1 if device.type == "cpu" else 4, compact="cpu", plan=plan)
    syn = synth.run()
    adv = synth.images.to(device, dtype)  # in the model's dtype (the engine's result holds float32 copies)
    adv = ball(adv)  # a no-op up to float rounding: the engine wrote the projected images back
    clean_objective = objective if user_objective is not None else ClassLoss(
        classes, targeted=target_classes is not None, loss=loss)
    clean_value, clean_pred, clean_conf = _evaluate(plan, clean_objective, images, batch_size=512)
    value, pred, conf = _evaluate(plan, objective, adv, batch_size=512)
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
    return AdversarialResult(
        clean=images.detach().cpu(), labels=None if labels is None else labels.cpu(),
        target=None if target_classes is None else target_classes.cpu(),
        all_images=pick(adv.detach().cpu()), all_success=pick(success), all_prediction=pick(pred),
        all_confidence=pick(conf), all_objective=pick(value), clean_prediction=clean_pred,
        clean_confidence=clean_conf, clean_objective=clean_value, steps_taken=pick(syn.steps), synthesis=syn,
        **common)


@register_tool("design", per_sample=True)
def fgsm(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    eps: float | Sequence[float] = 8 / 255,
    norm: str = "inf",
    target: torch.Tensor | int | Objective | str | None = None,
    loss: str = "ce",
    batch_size: int | None = None,
    progress: bool = True,
) -> AdversarialResult:
    """Fast gradient sign method (Goodfellow et al. 2015): one step of size ``eps`` from the clean images.

    Same arguments and result as :func:`pgd` (it is ``pgd(steps=1,
    step_size=eps, random_start=False)``, :class:`AttackOptions`); ``norm="l2"`` gives the fast
    gradient method.

    Example
    -------
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3, 2))
    >>> r = fgsm(model, torch.rand(4, 3, 1, 1), eps=0.1, progress=False)
    >>> bool((r.linf <= 0.1).all())
    True
    """
    eps_list, scalar = _check_eps(eps)
    attack = AttackOptions(eps=eps if scalar else eps_list, step_size=eps_list, steps=1, norm=norm, random_start=False,
                           restarts=1, loss=loss, early_stop=True)
    result = pgd(model, images, labels, target=target, batch_size=batch_size, progress=progress, options=attack)
    result.settings = {**result.settings, "attack": "fgsm"}
    return result


__all__ = ["AdversarialResult", "AttackOptions", "ClassLoss", "EpsBall", "LOSSES", "NORMS", "SignSGD", "Succeeded", "fgsm", "pgd",
           "predict"]
