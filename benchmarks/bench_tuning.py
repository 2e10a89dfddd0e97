"""Orientation tuning of every channel of a layer: 36 orientations x 8 phases x 8 SFs (2304 gratings) and a blank.

Target: <= 60 s on CPU for the bundled CNN. Prints the time of the batched
recording (one forward pass per batch of gratings, all channels at once) and
of the curve fits, beside a naive per-unit loop over the model (each channel
recorded in its own pass over the gratings) timed on a few units and
extrapolated, as the ratio. No peer library does this for an arbitrary layer,
so the comparison is with the naive loop.

Run: ``python benchmarks/bench_tuning.py [--model minialex] [--layer features.0] [--threads 2]``
"""
from __future__ import annotations

import argparse
import time

import torch

from insilico import Probe, models, stimuli
from insilico.experiments import orientation_tuning
from insilico.experiments.tuning import default_sfs


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="minialex")
    p.add_argument("--layer", nargs="+", default=["features.0", "features.3", "features.10"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--naive-units", type=int, default=2, help="units timed in the naive loop")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = models.load(args.model) if args.model in models.available() else models.MiniAlexNet().eval()
    trained = args.model in models.available()
    size = model.input_size[-1]
    oris, sfs, phases = list(range(0, 180, 5)), default_sfs(size), list(range(0, 360, 45))
    print(f"model {args.model} ({'trained' if trained else 'untrained: weights not shipped yet'}), "
          f"{len(oris)} orientations x {len(phases)} phases x {len(sfs)} SFs = {len(oris) * len(phases) * len(sfs)} "
          f"gratings, {args.threads} threads")
    for layer in args.layer:
        start = time.perf_counter()
        result = orientation_tuning(model, layer, orientations=oris, sfs=sfs, phases=phases, progress=False)
        total = time.perf_counter() - start
        units = len(result.units)
        g = stimuli.gratings(size=size, orientation=oris, sf=sfs, phase=phases, channels=3)
        probe = Probe(model)
        start = time.perf_counter()
        for c in range(args.naive_units):
            probe.record_stimuli(g, f"{layer}[{c}]", batch_size=288, reduce="center", progress=False)
        naive = (time.perf_counter() - start) / args.naive_units * units
        print(f"{layer}: {units} channels in {total:.1f} s (fraction tuned {result.fraction_tuned:.2f}); "
              f"naive per-unit loop ~{naive:.0f} s (x{naive / total:.0f})")


if __name__ == "__main__":
    main()
