"""Scale-out: throughput of 1 rank vs 2 ranks (gloo, 1 thread each) on the bundled minialex.

    python benchmarks/bench_scaling.py [--stimuli 2048] [--units 16] [--steps 32] [--ranks 2]

For ``record_stimuli`` (stimuli/s, batches of 64, one layer) and ``maximize``
(images x steps / s, chunks of 4 units) it spawns 1 rank, then ``--ranks``
ranks, each with one torch thread; every rank times the job between two
barriers (after imports and warm-up), the slowest rank counts. Prints the
throughputs, the ratio (ideal = number of ranks; the target is >= 1.8 for 2)
and the load average before and after each run: the ratio only means
something on a machine with a free core per rank.
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


def record_job(model, args, folder):
    stimuli = torch.rand(args.stimuli, *model.input_size, generator=torch.Generator().manual_seed(0))
    insilico.Probe(model).record_stimuli(stimuli, ["features.8"], batch_size=64, out=folder, progress=False)
    return args.stimuli


def maximize_job(model, args, folder):
    units = [f"features.8[{c}]" for c in range(args.units)]
    insilico.maximize(model, units, steps=args.steps, batch_size=4, out=folder, progress=False)
    return args.units * args.steps


JOBS = {"record_stimuli": (record_job, "stimuli/s"), "maximize": (maximize_job, "images*steps/s")}


def worker(rank, world, port, job, args, folder, times):
    limit_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = insilico.models.load("minialex")
        with torch.no_grad():
            model(torch.rand(8, *model.input_size))  # warm-up
        dist.barrier()
        start = time.perf_counter()
        work = JOBS[job][0](model, args, folder)
        dist.barrier()
        times[rank] = (time.perf_counter() - start, work)
    finally:
        dist.destroy_process_group()


def throughput(job, world, args) -> float:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder, mp.Manager() as manager:
        times = manager.dict()
        mp.spawn(worker, args=(world, port, job, args, folder, times), nprocs=world, join=True)
        seconds = max(t for t, _ in times.values())
        return times[0][1] / seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stimuli", type=int, default=2048)
    parser.add_argument("--units", type=int, default=16)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--ranks", type=int, default=2)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; torch {torch.__version__}")
    for job, (_, unit) in JOBS.items():
        results = {}
        for world in (1, args.ranks):
            load = os.getloadavg()[0]
            results[world] = throughput(job, world, args)
            print(f"{job:15s} {world} rank(s): {results[world]:9.1f} {unit}  "
                  f"(load average {load:.2f} before, {os.getloadavg()[0]:.2f} after)")
        print(f"{job:15s} speed-up {args.ranks} ranks / 1 rank: {results[args.ranks] / results[1]:.2f}x "
              f"(ideal {args.ranks}, target >= {0.9 * args.ranks:.1f})")


if __name__ == "__main__":
    main()
