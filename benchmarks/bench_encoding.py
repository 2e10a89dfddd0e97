"""Cross-validated ridge with a penalty per target: insilico vs sklearn and himalaya, side by side.

Default problem: 2,000 stimuli x 4,096 features -> 10,000 targets, 10 alphas,
5 folds, float32, CPU. Reported as ratios (no assertions).

- sklearn: ``RidgeCV(alphas, cv=KFold(5))`` fitted per target (sklearn picks
  one alpha per fit with ``cv=``, so per-target alphas need a loop). It takes
  seconds per target here, so it runs on ``--sklearn-targets`` targets and the
  time is extrapolated linearly to all targets (printed as such).
- himalaya: ``himalaya.kernel_ridge.KernelRidgeCV`` (its recommendation when
  samples < features; ``--himalaya-primal`` adds ``himalaya.ridge.RidgeCV``)
  with the torch backend (the same BLAS as insilico).

Each library's chosen alphas are checked against ours on the targets they share.

    python benchmarks/bench_encoding.py                      # the full problem (~2-3 min on 2 cores)
    python benchmarks/bench_encoding.py --n 500 --p 1024 --targets 2000   # quick
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _threads import limit_threads

from insilico.encoding import RidgeCV


def data(n, p, t, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p), dtype=np.float32)
    w = rng.standard_normal((p, t), dtype=np.float32) / np.sqrt(p)
    noise = rng.uniform(0.2, 5.0, size=t).astype(np.float32)
    y = x @ w + rng.standard_normal((n, t), dtype=np.float32) * noise
    return x, y


def timed(fn, repeats=1):
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="stimuli")
    parser.add_argument("--p", type=int, default=4096, help="features")
    parser.add_argument("--targets", type=int, default=10000)
    parser.add_argument("--alphas", type=int, default=10)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--sklearn-targets", type=int, default=1, help="targets actually fitted by sklearn's loop (0: skip sklearn)")
    parser.add_argument("--no-himalaya", action="store_true")
    parser.add_argument("--himalaya-primal", action="store_true", help="also time himalaya's primal RidgeCV")
    parser.add_argument("--threads", type=int, help="threads for every library (torch and BLAS); on a shared, "
                        "oversubscribed machine 1 is fairer and often faster")
    args = parser.parse_args(argv)
    limit_threads(args.threads)
    x, y = data(args.n, args.p, args.targets)
    alphas = np.logspace(-1, 5, args.alphas)
    print(f"ridge CV: {args.n} stimuli x {args.p} features -> {args.targets} targets, {args.alphas} alphas, "
          f"{args.folds} folds, float32, {torch.get_num_threads()} threads")

    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    t_ours, ours = timed(lambda: RidgeCV(alphas=alphas, cv=args.folds).fit(xt, yt))
    print(f"insilico RidgeCV ({'dual' if ours.dual_ else 'primal'}): {t_ours:8.2f} s")
    results = {}

    from sklearn.linear_model import RidgeCV as SkRidgeCV
    from sklearn.model_selection import KFold

    k = min(args.sklearn_targets, args.targets)
    if k > 0:
        t_sk, sk_alphas = timed(lambda: [SkRidgeCV(alphas=alphas, cv=KFold(args.folds)).fit(x, y[:, j]).alpha_
                                         for j in range(k)])
        t_sk_all = t_sk / k * args.targets
        agree = np.mean(np.isclose(sk_alphas, ours.alpha_[:k].numpy(), rtol=1e-3))
        print(f"sklearn RidgeCV per target: {t_sk:8.2f} s for {k} targets -> {t_sk_all:8.0f} s extrapolated to "
              f"{args.targets}  (alphas agree on {agree:.0%})")
        results["sklearn (extrapolated)"] = t_sk_all

    if not args.no_himalaya:
        try:
            import himalaya.backend
            from himalaya.kernel_ridge import KernelRidgeCV
            from himalaya.ridge import RidgeCV as HiRidgeCV
        except ImportError:
            print("himalaya not installed (pip install himalaya): skipped")
        else:
            himalaya.backend.set_backend("torch", on_error="warn")
            # himalaya's own advice: the kernel form when samples < features (its RidgeCV warns and is slower)
            peers = [("himalaya KernelRidgeCV", KernelRidgeCV)]
            if args.n >= args.p or args.himalaya_primal:
                peers.append(("himalaya RidgeCV", HiRidgeCV))
            for name, cls in peers:
                t_h, model = timed(lambda: cls(alphas=alphas, cv=KFold(args.folds)).fit(xt, yt))
                best = np.asarray(model.best_alphas_.cpu())
                agree = np.mean(np.isclose(best, ours.alpha_.numpy(), rtol=1e-3))
                print(f"{name}: {t_h:8.2f} s  (alphas agree on {agree:.0%} of targets)")
                results[name] = t_h
    print("\nratios (time of the peer / time of insilico; > 1 means insilico is faster):")
    for name, t in results.items():
        print(f"  {name:28s} {t / t_ours:8.2f}x")


if __name__ == "__main__":
    main()
