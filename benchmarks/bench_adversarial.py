"""Adversarial and controversial stimuli: insilico side by side with torchattacks, and batched vs sequential.

1. PGD L-inf: ``insilico.pgd`` and ``torchattacks.PGD`` on the same model (bundled minialex), the
   same held-out images and labels, the same eps, step size, steps and random start. Success = the
   prediction on the adversarial image differs from the label, measured by one forward pass for
   both (torchattacks' timing includes that pass; insilico's includes its whole report: clean and
   adversarial predictions, confidences, norms). Runs alternate (``--repeats``, median wall time).
   Targets: success within 2 points of torchattacks, wall time <= 1.1x.
2. Controversial stimuli: 16 class pairs for two models in ONE batched ``insilico.controversial``
   run, against 16 sequential runs of one pair each (same settings, steps, stopping). Target:
   batched >= 3x faster.

Run (about 3 minutes on 2 shared CPU cores)::

    pip install torchattacks --no-deps
    python benchmarks/bench_adversarial.py
    python benchmarks/bench_adversarial.py --images 2 --repeats 1 --pairs 4    # quick look

``--threads`` (default 1) sets torch's intra-op threads: on a shared 2-core machine more threads
than free cores make every run slower and noisier.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import insilico
from insilico.models import photos


def bench_pgd(args) -> dict:
    import torchattacks

    from insilico.design.adversarial import pgd

    model = insilico.models.load("minialex")
    x, y = photos.held_out(args.images, seed=0)
    eps, alpha, steps = args.eps / 255, args.alpha / 255, args.steps

    def run_torchattacks():
        attack = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
        adv = attack(x, y)
        with torch.no_grad():
            return (model(adv).argmax(dim=1) != y).float().mean().item()

    def run_insilico(early_stop=True):
        result = pgd(model, x, y, eps=eps, step_size=alpha, steps=steps, early_stop=early_stop,
                                          progress=False)
        return result.success_rate

    contenders = (("torchattacks", run_torchattacks), ("insilico", run_insilico),
                  ("insilico-all", lambda: run_insilico(early_stop=False)))
    run_insilico(), run_torchattacks()  # warm-up
    times = {k: [] for k, _ in contenders}
    rates = {k: [] for k, _ in contenders}
    for _ in range(args.repeats):
        for name, fn in contenders:
            t = time.perf_counter()
            rates[name].append(fn())
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    rate = {k: statistics.mean(v) for k, v in rates.items()}
    print(f"PGD L-inf, minialex, {len(x)} images, eps={args.eps}/255, step={args.alpha}/255, {steps} steps, "
          f"random start, {args.repeats} alternating repeats (median time)")
    print(f"  {'':14s} {'success':>8s} {'time (s)':>9s}")
    for k, _ in contenders:
        print(f"  {k:14s} {rate[k]:8.1%} {med[k]:9.2f}")
    print("  (insilico: per-sample early stop, frozen samples skipped; insilico-all: early_stop=False, every "
          "sample takes every step, as torchattacks)")
    ratio = med["insilico"] / med["torchattacks"]
    gap = 100 * (rate["insilico"] - rate["torchattacks"])
    print(f"  success difference: {gap:+.1f} points (target within 2)   time ratio insilico/torchattacks: "
          f"{ratio:.2f} (target <= 1.1); without early stop: {med['insilico-all'] / med['torchattacks']:.2f}")
    return {"success_gap_points": gap, "time_ratio": ratio, "time_ratio_no_early_stop": med["insilico-all"] / med["torchattacks"]}


def bench_controversial(args) -> dict:
    from insilico.design.controversial import controversial

    second = args.second if args.second in insilico.models.available() else None
    models = [insilico.models.load("minialex")]
    if second is None:
        print(f"\nControversial stimuli: skipped (no bundled model {args.second!r})")
        return {}
    models.append(insilico.models.load(second))
    g = torch.Generator().manual_seed(0)
    pairs = []
    while len(pairs) < args.pairs:
        i, j = torch.randperm(16, generator=g)[:2].tolist()
        if (i, j) not in pairs:
            pairs.append((i, j))
    options = dict(steps=args.c_steps, progress=False, seed=0)
    t = time.perf_counter()
    batched = controversial(models, pairs, **options)
    t_batched = time.perf_counter() - t
    t = time.perf_counter()
    scores = []
    for pair in pairs:
        scores.append(controversial(models, [pair], **options).score)
    t_seq = time.perf_counter() - t
    seq_scores = torch.cat(scores)
    print(f"\nControversial stimuli, minialex vs {second}, {len(pairs)} class pairs, up to {args.c_steps} steps")
    print(f"  one batched run:      {t_batched:7.2f} s   score >= 0.75: {(batched.score >= 0.75).float().mean():.0%} "
          f"(median {batched.score.median():.3f})")
    print(f"  {len(pairs)} sequential runs: {t_seq:7.2f} s   score >= 0.75: {(seq_scores >= 0.75).float().mean():.0%} "
          f"(median {seq_scores.median():.3f})")
    print(f"  speed-up batched/sequential: {t_seq / t_batched:.2f}x (target >= 3)")
    return {"speedup": t_seq / t_batched}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=4, help="held-out images per class (16 classes)")
    parser.add_argument("--eps", type=float, default=8.0, help="L-inf radius in 1/255")
    parser.add_argument("--alpha", type=float, default=2.0, help="step size in 1/255")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--c-steps", type=int, default=200, help="controversial-stimulus steps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--second", default="b", help="the bundled model minialex is pitted against (default b)")
    parser.add_argument("--skip", choices=("pgd", "controversial"), default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = {}
    if args.skip != "pgd":
        out["pgd"] = bench_pgd(args)
    if args.skip != "controversial":
        out["controversial"] = bench_controversial(args)
    return out


if __name__ == "__main__":
    main()
