"""Neural predictors and population control: fit time at scale, and batched vs one-target-at-a-time synthesis.

1. ``fit_predictor`` on 2,000 stimuli x 5,000 targets from a conv layer of the
   bundled ``minialex`` (``features.10``: 96 x 6 x 6 = 3,456 features, every
   position kept; ridge in the kernel form, leave-one-out alphas per target,
   20 % held out for the scores, refit on all). Targets are noisy linear
   readouts of the layer. Target: <= 60 s on 2 CPU cores. Side by side:
   sklearn's ``RidgeCV(alpha_per_target=True)`` (efficient LOO) on the same
   standardised features, when scikit-learn is installed.
2. ``population_control`` for 64 targets in one batch vs one target at a time
   (``batch_size=1``: each target with its restarts, 4 by default), same steps
   and seeds: the images are the same, the speed-up is printed (target >= 5x).

Timings are ratios on this machine, never asserted in tests.

    python benchmarks/bench_population_control.py                   # both (~2-4 min on 2 cores)
    python benchmarks/bench_population_control.py --stimuli 500 --targets 1000 --steps 4   # quick
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _threads import limit_threads

import insilico
from insilico.encoding import fit_predictor


def bench_fit(n_stimuli: int, n_targets: int, layer: str, sklearn: bool) -> dict:
    model = insilico.models.load("minialex")
    images, _ = insilico.models.photos.sample(n_stimuli, split="train", seed=0)
    with torch.no_grad(), insilico.Probe(model).record(layer) as rec:
        model(images[:512])
        feats = rec[layer].flatten(1)
    g = torch.Generator().manual_seed(0)
    readout = torch.randn(feats.shape[1], n_targets, generator=g) * (torch.rand(feats.shape[1], 1, generator=g) < 0.02)
    with torch.no_grad(), insilico.Probe(model).record(layer) as rec:
        for a in range(0, n_stimuli, 256):
            model(images[a:a + 256])
        feats = rec[layer].flatten(1)
    clean = feats @ readout
    responses = clean + clean.std(0) * torch.randn(clean.shape, generator=g)
    start, cpu = time.perf_counter(), time.process_time()
    predictor = fit_predictor(model, images, responses, layers=[layer], progress=False)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    out = {"stimuli": n_stimuli, "targets": n_targets, "features": int(feats.shape[1]), "seconds": seconds, "cpu_seconds": cpu,
           "median_r": float(np.median(predictor.scores["r"]))}
    print(f"fit_predictor: {n_stimuli} stimuli x {n_targets} targets from {layer} ({feats.shape[1]} features): "
          f"{seconds:.1f} s wall ({cpu:.1f} CPU-s over the threads), median held-out r {out['median_r']:.2f}")
    if sklearn:
        try:
            from sklearn.linear_model import RidgeCV as SkRidgeCV
        except ImportError:
            print("scikit-learn not installed: no side-by-side")
            return out
        x = ((feats - feats.mean(0)) / feats.std(0).clamp_min(0.1 * feats.std(0).mean())).numpy()
        start = time.perf_counter()
        SkRidgeCV(alphas=list(10.0 ** np.arange(-1, 7)), alpha_per_target=True).fit(x, responses.numpy())
        out["sklearn_ridge_seconds"] = time.perf_counter() - start
        print(f"  sklearn RidgeCV(alpha_per_target=True) on the same features, ridge only: "
              f"{out['sklearn_ridge_seconds']:.1f} s ({out['sklearn_ridge_seconds'] / seconds:.1f}x our whole fit)")
    return out


def bench_batching(n_targets: int, steps: int, restarts: int | None = None) -> dict:
    model = insilico.models.load("minialex")
    images, _ = insilico.models.photos.sample(400, split="train", seed=1)
    with torch.no_grad():
        responses = model.features[:10](model.normalize(images)).mean((2, 3))[:, :n_targets]
    predictor = fit_predictor(model, images, responses, layers=["features.9"], progress=False)
    natural = images[:64]
    insilico.population_control(predictor, [0], natural=natural, steps=2, progress=False)  # warm-up
    timings = {}
    options = {} if restarts is None else {"restarts": restarts}
    for batch in (n_targets, 1):
        start = time.perf_counter()
        result = insilico.population_control(predictor, list(range(n_targets)), "one_hot", natural=natural, steps=steps,
                                             batch_size=batch, progress=False, **options)
        timings[batch] = (time.perf_counter() - start, result.images)
    same = float((timings[n_targets][1] - timings[1][1]).abs().max())
    speedup = timings[1][0] / timings[n_targets][0]
    print(f"population_control, {n_targets} targets x {steps} steps x {result.settings['restarts']} restarts: "
          f"batched {timings[n_targets][0]:.1f} s, "
          f"one at a time {timings[1][0]:.1f} s: {speedup:.1f}x faster batched; largest pixel difference {same:.1e}")
    return {"targets": n_targets, "steps": steps, "restarts": result.settings["restarts"],
            "batched_seconds": timings[n_targets][0],
            "one_at_a_time_seconds": timings[1][0], "speedup": speedup, "max_pixel_difference": same}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stimuli", type=int, default=2000)
    parser.add_argument("--targets", type=int, default=5000)
    parser.add_argument("--layer", default="features.10")
    parser.add_argument("--control-targets", type=int, default=64)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--restarts", type=int, default=None, help="starts per target (default: population_control's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-sklearn", action="store_true")
    parser.add_argument("--only", choices=["fit", "batching"])
    args = parser.parse_args(argv)
    limit_threads(args.threads)
    out = {}
    if args.only in (None, "fit"):
        out["fit"] = bench_fit(args.stimuli, args.targets, args.layer, not args.no_sklearn)
    if args.only in (None, "batching"):
        out["batching"] = bench_batching(args.control_targets, args.steps, args.restarts)
    return out


if __name__ == "__main__":
    main()
