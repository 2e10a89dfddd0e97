#!/usr/bin/env python
"""Metamers: insilico.metamer against plenoptic's Metamer, same model, layer, images, start and step budget.

plenoptic runs its defaults (Adam with amsgrad, lr 0.01, MSE loss, range penalty 0.1) for ``--steps``
steps; its final relative representation error |f(x) - f(x0)| / |f(x0)| is the target. insilico then runs
with a stopping rule "relative error <= plenoptic's final error" (per sample) and the same step budget;
we report wall times and their ratios (targets: <= 1/2 for one metamer, <= 1/3 for a batch of 8 against
8 sequential plenoptic runs), for Adam and for the per-sample L-BFGS.

    python benchmarks/bench_metamers.py --steps 300 --layer features.3 --threads 1
"""
from __future__ import annotations

import argparse
import contextlib
import io
import time
import warnings

import torch
from torch import nn

import insilico
from _threads import limit_threads
from insilico.design.metamers import metamer, relative_distances


def truncated(model: nn.Module, layer: str) -> nn.Module:
    """minialex up to ``features.k`` as one Sequential (plenoptic needs model(x) -> representation)."""
    k = int(layer.split(".")[1])
    return nn.Sequential(model.normalize, *model.features[: k + 1]).eval()


def plenoptic_run(f: nn.Module, image: torch.Tensor, init: torch.Tensor, steps: int) -> tuple[float, float]:
    import plenoptic as po

    met = po.Metamer(image, f)
    met.setup(initial_image=init)
    t0 = time.perf_counter()
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):  # its per-step tqdm postfix
        warnings.simplefilter("ignore")
        met.synthesize(steps, stop_criterion=0.0)
    wall = time.perf_counter() - t0
    with torch.no_grad():
        err = float(relative_distances(f(met.metamer.clamp(0, 1)).flatten(1), f(image).flatten(1))[0])
    return wall, err


def per_sample_target(targets: torch.Tensor):
    """A stopping rule: sample i stops once its loss (relative error, power 1) is <= targets[i]."""
    def reached_plenoptic(trace, state):
        return trace[-1] <= targets.to(trace.device)
    return reached_plenoptic


def ours(model, layer, refs, init, steps, targets, optimizer):
    t0 = time.perf_counter()
    power = 2.0 if optimizer == "lbfgs" else 1.0
    r = metamer(model, layer, refs, init=init, steps=steps, optimizer=optimizer, threshold=None, plateau_tol=None,
                stop=[per_sample_target(targets ** power)], progress=False)
    return time.perf_counter() - t0, r


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--layer", default="features.3")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    limit_threads(args.threads)
    model = insilico.models.load("minialex")
    for q in model.parameters():
        q.requires_grad_(False)
    f = truncated(model, args.layer)
    x, _ = insilico.models.photos.held_out(1, seed=0)
    refs = x[: args.batch]
    g = torch.Generator().manual_seed(0)
    inits = torch.rand(refs.shape, generator=g)  # plenoptic's default start: uniform noise
    try:
        import plenoptic  # noqa: F401
    except ImportError:
        raise SystemExit("pip install plenoptic (see the module docstring)")

    print(f"minialex {args.layer}, {args.steps} steps budget, {args.threads} thread(s), torch {torch.__version__}")
    # -- one metamer
    t_pl, e_pl = plenoptic_run(f, refs[:1], inits[:1], args.steps)
    print(f"one metamer   plenoptic      {t_pl:7.2f} s  final error {e_pl:.4f}")
    for optimizer in ("adam", "lbfgs"):
        t, r = ours(model, args.layer, refs[:1], inits[:1], args.steps, torch.tensor([e_pl]), optimizer)
        print(f"one metamer   insilico {optimizer:5s} {t:7.2f} s  final error {float(r.final_errors[0]):.4f} "
              f"({r.stop_reasons[0]} after {int(r.steps[0])} steps)  time ratio {t / t_pl:.2f}")
    # -- a batch of references
    walls, errs = [], []
    for i in range(args.batch):
        w, e = plenoptic_run(f, refs[i:i + 1], inits[i:i + 1], args.steps)
        walls.append(w)
        errs.append(e)
    total = sum(walls)
    print(f"{args.batch} metamers   plenoptic x{args.batch} sequential {total:7.2f} s  mean final error "
          f"{sum(errs) / len(errs):.4f}")
    for optimizer in ("adam", "lbfgs"):
        t, r = ours(model, args.layer, refs, inits, args.steps, torch.tensor(errs), optimizer)
        reached = sum(s != "steps" for s in r.stop_reasons)
        print(f"{args.batch} metamers   insilico {optimizer:5s} batched {t:7.2f} s  reached plenoptic's error: "
              f"{reached}/{args.batch}, max steps {int(r.steps.max())}  time ratio {t / total:.2f}")

if __name__ == "__main__":
    main()
