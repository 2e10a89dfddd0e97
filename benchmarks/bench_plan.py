"""One forward plan per call: what orientation_tuning and pgd ask of the plumbing, and what they cost.

Counts, per call on the bundled minialex: the forward passes ``orientation_tuning`` runs besides its
stimuli (gratings and blank), and the Probes and sessions ``pgd`` makes; then the median CPU seconds
(``time.process_time``, so other processes on a shared machine move it less than wall time) of
``orientation_tuning`` (an explicit grid, and the default grid sized by the FLOP budget) and of ``pgd``.

Measured on 2 shared CPU cores (load average 2-9, 7 rounds of 5 calls alternating with the tree before
the plan, one thread): tuning with an explicit grid 0.386 s vs 0.385 s (x1.00), budget-sized grid
0.450 s vs 0.466 s (x0.97), pgd 0.104 s vs 0.104 s (x1.00); the probing part of a tuning call
(after_nonlinearity + record_units of 16 gratings) 16.5 ms vs 18.5 ms (x0.89). The grating passes and
the curve fits dominate a call; the plan removes 4 of its 5 probing passes (1 instead of 5) and in pgd
2 of 3 Probes per chunk and 4 of 5 sessions per call.

Run: ``python benchmarks/bench_plan.py [--reps 5] [--threads 1]``
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import insilico
import insilico.probe
import insilico.session
from insilico.design.adversarial import pgd
from insilico.experiments import orientation_tuning

GRID = dict(orientations=range(0, 180, 30), sfs=[2, 4, 8, 16], phases=[0, 90, 180, 270])


def counted(model: torch.nn.Module):
    """``model`` wrapped so that its forward counts calls and batch items."""

    class Counting(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net, self.input_size, self.calls, self.items = model, model.input_size, 0, 0

        def forward(self, x):
            self.calls, self.items = self.calls + 1, self.items + len(x)
            return self.net(x)

    return Counting()


def cpu_seconds(f, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.process_time()
        f()
        times.append(time.process_time() - start)
    return statistics.median(times)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = insilico.models.load("minialex")
    images = torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(0))

    wrapped = counted(model)
    result = orientation_tuning(wrapped, "net.features.3", progress=False, **GRID)
    stimuli = len(result.settings["orientations"]) * len(result.settings["sfs"]) * len(result.settings["phases"]) + 1
    print(f"orientation_tuning: {wrapped.items - stimuli} forward pass(es) besides its {stimuli} stimuli")
    made = {"probes": 0, "sessions": 0}
    probe_init, session_init = insilico.probe.Probe.__init__, insilico.session.Session.__init__

    def count(kind, init):
        def wrapper(self, *a, **k):
            made[kind] += 1
            init(self, *a, **k)
        return wrapper

    insilico.probe.Probe.__init__ = count("probes", probe_init)
    insilico.session.Session.__init__ = count("sessions", session_init)
    try:
        pgd(model, images, eps=[2 / 255, 8 / 255], steps=5, progress=False)
    finally:
        insilico.probe.Probe.__init__, insilico.session.Session.__init__ = probe_init, session_init
    print(f"pgd: {made['probes']} Probe(s), {made['sessions']} session(s) per call")

    orientation_tuning(model, "features.3", progress=False, **GRID)  # warm-up
    timings = {
        "orientation_tuning, explicit grid": lambda: orientation_tuning(model, "features.3", progress=False, **GRID),
        "orientation_tuning, budget-sized grid": lambda: orientation_tuning(model, "features.0", budget=0.5,
                                                                            progress=False),
        "pgd, 8 images x 2 eps, 5 steps": lambda: pgd(model, images, eps=[2 / 255, 8 / 255], steps=5, progress=False),
    }
    for name, f in timings.items():
        print(f"{name}: median {cpu_seconds(f, args.reps):.3f} CPU s over {args.reps} calls")


if __name__ == "__main__":
    main()
