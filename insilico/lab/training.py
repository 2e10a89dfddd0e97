"""Training one variant of the lab, and its task accuracy on held-out photos.

One loop for every variant: AdamW with a one-cycle schedule, batches from
:mod:`insilico.lab.inputs`, the loss of the variant's objective
(:mod:`insilico.lab.objectives`), the gradient of its learning rule
(:mod:`insilico.lab.rules`: feedback alignment is in the layers' backward). The
initialisation draws from torch's global generator seeded with ``seed`` inside a
fork (the caller's random state is untouched), so two variants of one
architecture trained with one seed start from the same weights (a learning
rule's or an objective's effect is not an initialisation's); the batches
come from a generator of their own seeded with ``seed`` as well.

Accuracy is measured on the held-out regions of the bundled photos
(:func:`insilico.models.photos.held_out`, class-balanced, never degraded): by the
network's own readout for the classification objective, and for every variant
by a linear probe on its output (ridge regression to one-hot labels with a
leave-one-out penalty, :func:`insilico.encoding.ridge.solve_ridge_cv`, fitted on
unaugmented training-region crops).
"""
from __future__ import annotations

import time

import torch
from torch import nn

from ..encoding.ridge import solve_ridge_cv
from ..errors import InsilicoError
from ..models import photos
from ..models.train import step_weights
from ..seeding import generator, keep_global_rng, run_seed
from . import inputs, objectives
from .variant import Variant, build

EVAL_SEED = 1234       # the held-out crops (as the bundled models' cards)
PROBE_SEED = 4321      # the training-region crops the linear probe is fitted on


def _loss(variant: Variant, model: nn.Module, decoder: nn.Module | None, gen: torch.Generator,
          batch: int) -> torch.Tensor:
    """One batch's loss of ``variant``'s objective."""
    kind, device = variant.objective, next(model.parameters()).device
    if kind in ("slowness", "contrastive"):
        a, b, _ = (t.to(device) for t in inputs.views(variant, batch, gen))
        z0, z1 = model(a), model(b)
        return objectives.slowness(z0, z1) if kind == "slowness" else objectives.contrastive(z0, z1)
    x, y = (t.to(device) for t in inputs.batch(variant, batch, gen))
    if kind == "classification":
        if hasattr(model, "forward_steps"):
            out = model.forward_steps(x)
            return objectives.classification(out, y, step_weights(out.shape[1], {"step_weights": "geometric"}))
        return objectives.classification(model(x), y)
    code = model(x)
    if kind == "autoencoding":
        return objectives.autoencoding(decoder(code), x)
    return objectives.sparse(decoder(code), x, code, variant.sparsity)


def train_variant(variant: Variant, steps: int = 300, seed: int = 0, batch: int = 64, progress: bool = True,
                  threads: int | None = None, device: str | torch.device | None = None) -> tuple[nn.Module, dict]:
    """Train ``variant`` from scratch on the bundled photos; returns the model (eval mode) and its history.

    Parameters
    ----------
    variant : Variant
    steps, batch : int
        Optimiser steps and images per step (default 300 x 64: about a CPU-minute for minialex).
    seed : int
        The initialisation, the feedback matrices and the batches (see the module docstring).
    threads : int, optional
        Torch CPU threads while training (default: as they are).
    device : str or torch.device, optional
        Where the network trains (default: the CPU); the batches are drawn on the CPU and moved there.

    Returns
    -------
    model : nn.Module
        The network (eval mode), taking (N, 3, size, size) images in [0, 1]; its output is the logits
        (classification) or the code the objective shaped.
    history : dict
        ``loss`` (one float per step), ``steps``, ``batch``, ``seed``, ``cpu_seconds``, ``variant`` (settings).

    Example
    -------
    >>> model, history = train_variant(Variant(architecture="b", size=16, timesteps=1), steps=2, batch=8,
    ...                                progress=False)
    >>> len(history["loss"]), tuple(model(torch.rand(1, 3, 16, 16)).shape)
    (2, (1, 16))
    """
    from tqdm.auto import tqdm

    if not isinstance(variant, Variant):
        raise InsilicoError(f"train_variant takes an insilico.lab.Variant, not {type(variant).__name__}")
    if steps < 1 or batch < 2:
        raise InsilicoError(f"train_variant needs steps >= 1 and batch >= 2, got steps={steps}, batch={batch}")
    seed = run_seed(seed)
    old_threads = torch.get_num_threads()
    with keep_global_rng():
        torch.manual_seed(seed)
        model = build(variant, seed)
        decoder = objectives.decoder(len(photos.CLASSES)) if variant.objective in ("autoencoding", "sparse") else None
    model.to(device or "cpu")
    if decoder is not None:
        decoder.to(device or "cpu")
    params = list(model.parameters()) + (list(decoder.parameters()) if decoder is not None else [])
    opt = torch.optim.AdamW(params, lr=variant.lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=variant.lr, total_steps=steps, pct_start=0.15)
    gen, losses, start = generator(seed), [], time.process_time()
    model.train()
    try:
        if threads:
            torch.set_num_threads(threads)
        for _ in tqdm(range(steps), desc=f"train {variant.name}", disable=not progress):
            with keep_global_rng():  # dropout draws from the global generator
                torch.manual_seed(seed + len(losses))
                loss = _loss(variant, model, decoder, gen, batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
    finally:
        torch.set_num_threads(old_threads)
    model.eval()
    history = dict(loss=losses, steps=steps, batch=batch, seed=seed, variant=variant.settings(),
                   cpu_seconds=round(time.process_time() - start, 2))
    return model, history


def features(model: nn.Module, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """The model's output (N, D) for images ``x``, run on the model's device in eval mode without gradients
    (float64, on the CPU)."""
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch].to(device)).double().cpu() for i in range(0, len(x), batch)])


def accuracy(model: nn.Module, variant: Variant, per_class: int = 16, probe_per_class: int = 32) -> dict:
    """Held-out accuracy of a trained variant: ``readout`` (classification only, else None) and ``probe``
    (a linear probe on the output, see the module docstring), with ``chance``."""
    xt, yt = photos.held_out(per_class=per_class, seed=EVAL_SEED)
    xt = inputs.resize(xt, variant.size)
    ft = features(model, xt)
    readout = float((ft.argmax(1) == yt).double().mean()) if variant.objective == "classification" else None
    n = probe_per_class * len(photos.CLASSES)
    xs, ys = photos.sample(n, "train", seed=PROBE_SEED, augment=False)
    fs = features(model, inputs.resize(xs, variant.size))
    mean, scale = fs.mean(0), fs.std(0) + 1e-8
    onehot = torch.nn.functional.one_hot(ys, len(photos.CLASSES)).double()
    fit = solve_ridge_cv((fs - mean) / scale, onehot, torch.logspace(-2, 4, 7, dtype=torch.float64), None)
    weight, bias = (fit["coef"] / scale[:, None]).T, fit["intercept"] - (mean / scale) @ fit["coef"]
    probe = float(((ft @ weight.T + bias).argmax(1) == yt).double().mean())
    return dict(readout=readout, probe=probe, chance=1 / len(photos.CLASSES), n_test=len(yt),
                probe_weight=weight.float(), probe_bias=bias.float())


def observer(model: nn.Module, variant: Variant, scores: dict) -> nn.Module:
    """A classifier of the 16 photo classes made of a trained variant: the model itself (classification), or
    the model followed by its linear probe (``scores``: :func:`accuracy`'s ``probe_weight`` and ``probe_bias``),
    so every variant can be an observer of :mod:`insilico.behaviour`."""
    if variant.objective == "classification":
        return model
    head = nn.Linear(*reversed(scores["probe_weight"].shape))
    with torch.no_grad():
        head.weight.copy_(scores["probe_weight"])
        head.bias.copy_(scores["probe_bias"])
    net = nn.Sequential(model, head).eval()
    net.input_size, net.classes = (3, variant.size, variant.size), list(photos.CLASSES)
    return net


__all__ = ["accuracy", "features", "observer", "train_variant"]
