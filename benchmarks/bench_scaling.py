"""Scale-out: throughput of 1 rank vs 2 ranks (gloo, 1 thread each) on the bundled minialex.

    python benchmarks/bench_scaling.py [--stimuli 2048] [--units 16] [--steps 32] [--ranks 2] [--repeats 2]

For plain forward+backward passes split by hand (the machine's own ceiling:
two processes on two vCPUs rarely give 2x), ``record_stimuli`` (stimuli/s,
batches of 64, one layer) and ``maximize``
(images x steps / s, chunks of 4 units) it spawns 1 rank, then ``--ranks``
ranks, each with one torch thread; every rank times the job between two
barriers (after imports and warm-up), the slowest rank counts, the best of
``--repeats`` runs (1 and N ranks alternate) is kept. Prints the
throughputs, the ratio (ideal = number of ranks; the target is >= 1.8 for 2)
and the load average before and after each run: the wall-clock ratio only
means something on a machine with a free core per rank. The same ratio from
the busiest rank's CPU time (its share of the work, without waiting) is
printed too: it estimates what free cores would give.
"""
import argparse
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).parent))
from _threads import limit_threads  # noqa: E402

import insilico  # noqa: E402


def record_job(model, args):
    """The recording job, its stimuli made beforehand (not timed)."""
    stimuli = torch.rand(args.stimuli, *model.input_size, generator=torch.Generator().manual_seed(0))

    def run(folder):
        insilico.Probe(model).record_stimuli(stimuli, ["features.8"], batch_size=64, out=folder, progress=False)
        return args.stimuli

    return run


def maximize_job(model, args):
    units = [f"features.8[{c}]" for c in range(args.units)]

    def run(folder):
        insilico.maximize(model, units, steps=args.steps, batch_size=4, out=folder, progress=False)
        return args.units * args.steps

    return run


def raw_job(model, args):
    """The machine's own ceiling: plain forward+backward passes, batches split among the ranks by hand."""
    stimuli = torch.rand(args.stimuli, *model.input_size, generator=torch.Generator().manual_seed(0))

    def run(folder):
        rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        for batch in stimuli.split(64)[rank::world]:
            model(batch.requires_grad_()).sum().backward()
        return args.stimuli

    return run


JOBS = {"raw fwd+bwd": (raw_job, "stimuli/s"), "record_stimuli": (record_job, "stimuli/s"),
        "maximize": (maximize_job, "images*steps/s")}


def worker(rank, world, port, job, args, folder, times):
    limit_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = insilico.models.load("minialex")
        # warm-up: a process's first synthesis pays one-time costs (about 1.5 s here) that a long job amortizes
        insilico.maximize(model, "features.8[0]", steps=2, progress=False)
        insilico.Probe(model).record_stimuli(torch.rand(8, *model.input_size), "features.8", progress=False)
        run = JOBS[job][0](model, args)
        dist.barrier()
        start, cpu = time.perf_counter(), time.process_time()
        work = run(folder)
        busy = time.process_time() - cpu  # before the last barrier: waiting is not work
        dist.barrier()
        times[rank] = (time.perf_counter() - start, busy, work)
    finally:
        dist.destroy_process_group()


def throughput(job, world, args) -> tuple[float, float]:
    """Work per wall second (slowest rank), and work per CPU second of the busiest rank."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder, mp.Manager() as manager:
        times = manager.dict()
        mp.spawn(worker, args=(world, port, job, args, folder, times), nprocs=world, join=True)
        work = times[0][2]
        return work / max(t for t, _, _ in times.values()), work / max(c for _, c, _ in times.values())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stimuli", type=int, default=2048)
    parser.add_argument("--units", type=int, default=16)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; torch {torch.__version__}")
    for job, (_, unit) in JOBS.items():
        results = {1: (0.0, 0.0), args.ranks: (0.0, 0.0)}
        for _ in range(args.repeats):
            for world in results:
                load = os.getloadavg()[0]
                value = throughput(job, world, args)
                results[world] = tuple(max(a, b) for a, b in zip(results[world], value))
                print(f"{job:15s} {world} rank(s): {value[0]:9.1f} {unit}  "
                      f"(load average {load:.2f} before, {os.getloadavg()[0]:.2f} after)")
        (wall_1, cpu_1), (wall_n, cpu_n) = results[1], results[args.ranks]
        print(f"{job:15s} speed-up {args.ranks} ranks / 1 rank: {wall_n / wall_1:.2f}x wall clock "
              f"(ideal {args.ranks}, target >= {0.9 * args.ranks:.1f}); {cpu_n / cpu_1:.2f}x by the busiest "
              "rank's CPU time (what free cores would give)")


if __name__ == "__main__":
    main()
