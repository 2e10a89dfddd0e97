"""RDMs of several layers: insilico vs rsatoolbox, side by side.

Default problem: 1,000 stimuli x 9,216 features (AlexNet conv5-sized) for 5
layers, float32 responses as a Recording holds them, CPU. insilico computes in
float64 (its default) and, as a second line, in float32. rsatoolbox's
correlation RDM takes tens of seconds per layer here, so it runs on
``--rsatoolbox-layers`` layers and is extrapolated linearly to all (printed as
such; the layers have the same size). Values are checked to agree.

    python benchmarks/bench_rsa.py
    python benchmarks/bench_rsa.py --n 300 --p 2048 --layers 3       # quick
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _threads import limit_threads

from insilico import rsa


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="stimuli")
    parser.add_argument("--p", type=int, default=9216, help="features per layer")
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--methods", nargs="+", default=["correlation", "euclidean", "crossnobis"])
    parser.add_argument("--runs", type=int, default=4, help="runs for crossnobis (stimuli are split among them)")
    parser.add_argument("--crossnobis-p", type=int, default=1024,
                        help="features for crossnobis (rsatoolbox forms P x P noise matrices in a Python loop)")
    parser.add_argument("--rsatoolbox-layers", type=int, default=1, help="layers actually computed by rsatoolbox")
    parser.add_argument("--threads", type=int, help="threads for torch and BLAS (1 is fairer on a busy machine)")
    args = parser.parse_args(argv)
    limit_threads(args.threads)
    try:
        import rsatoolbox
    except ImportError:
        raise SystemExit("pip install rsatoolbox to compare with it")
    rng = np.random.default_rng(0)
    layers = {f"layer{k}": rng.standard_normal((args.n, args.p), dtype=np.float32) for k in range(args.layers)}
    tensors = {k: torch.from_numpy(v) for k, v in layers.items()}
    print(f"RDMs: {args.n} stimuli x {args.p} features x {args.layers} layers, {torch.get_num_threads()} threads")
    k = min(args.rsatoolbox_layers, args.layers)
    for method in args.methods:
        if method == "crossnobis":  # the stimuli become n/runs conditions measured in each of `runs` runs
            m = args.n // args.runs
            runs = np.repeat(np.arange(args.runs), m)
            conds = np.tile(np.arange(m), args.runs)
            q = min(args.p, args.crossnobis_p)
            ours_in = {name: v[: m * args.runs, :q].reshape(args.runs, m, q) for name, v in tensors.items()}

            def theirs(v):
                ds = rsatoolbox.data.Dataset(v[: m * args.runs, :q].astype(np.float64),
                                             obs_descriptors=dict(run=runs, cond=conds))
                # residuals around each condition's mean over runs, dof (runs - 1) x conditions (rsatoolbox's
                # prec_from_measurements would use (conditions - 1) x runs)
                cube = v[: m * args.runs, :q].astype(np.float64).reshape(args.runs, m, q)
                res = (cube - cube.mean(0)).reshape(-1, q)
                noise = rsatoolbox.data.noise.prec_from_residuals(res, dof=(args.runs - 1) * m,
                                                                  method="shrinkage_diag")
                return rsatoolbox.rdm.calc_rdm(ds, method="crossnobis", descriptor="cond", cv_descriptor="run",
                                               noise=noise).get_vectors()[0]
            label = f"crossnobis ({args.runs} runs x {m} conditions x {q} features, shrinkage_diag noise)"
            ours_kwargs = dict(noise="shrinkage_diag")
        else:
            ours_in = tensors
            label, ours_kwargs = method, {}

            def theirs(v, method=method):
                ds = rsatoolbox.data.Dataset(v.astype(np.float64))
                return rsatoolbox.rdm.calc_rdm(ds, method=method).get_vectors()[0]

        ours_method = "sqeuclidean" if method == "euclidean" else method
        per_feature = True if method == "euclidean" else None  # rsatoolbox's "euclidean" is squared / n_features
        start = time.perf_counter()
        ours = rsa.rdm(ours_in, ours_method, per_feature=per_feature, **ours_kwargs)
        t64 = time.perf_counter() - start
        start = time.perf_counter()
        rsa.rdm(ours_in, ours_method, per_feature=per_feature, dtype=torch.float32, **ours_kwargs)
        t32 = time.perf_counter() - start
        start = time.perf_counter()
        ref = [theirs(layers[name]) for name in list(layers)[:k]]
        t_ref = (time.perf_counter() - start) / k * args.layers
        err = max(np.abs(ours[name].numpy() - r).max() for name, r in zip(layers, ref))
        print(f"{label}:")
        print(f"  insilico float64 {t64:8.2f} s   float32 {t32:8.2f} s")
        print(f"  rsatoolbox       {t_ref:8.2f} s   ({k} of {args.layers} layers timed, extrapolated)   "
              f"max |difference| {err:.1e}")
        print(f"  ratio rsatoolbox / insilico: {t_ref / t64:6.1f}x (float64), {t_ref / t32:6.1f}x (float32)")


if __name__ == "__main__":
    main()
