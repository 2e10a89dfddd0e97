"""Benchmark: insilico.gradient_map vs captum's Neuron* classes, and top_exemplars' memory.

1. Time per call of ``insilico.gradient_map(model, x, unit, method)`` and of
   captum's ``NeuronGradient`` / ``NeuronGuidedBackprop`` /
   ``NeuronDeconvolution`` for the same neuron and images (torchvision AlexNet,
   random init, batch 32, 224 x 224), interleaved, best of ``--repeats``;
   prints the ratio insilico / captum (target <= 1.1) and the largest
   difference between the two maps.
2. ``insilico.top_exemplars`` over a lazy Dataset of 1,000 and 10,000
   stimuli, each run in a fresh process: peak RSS and tracemalloc peak should
   not grow with the number of stimuli (the running top-k is all that is kept).

Run: ``python benchmarks/bench_gradients.py [--small] [--repeats 3] [--device cuda] [--threads 1]``
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings

import torch
from torch import nn


def small_cnn():
    return nn.Sequential(
        nn.Conv2d(3, 32, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(64, 10),
    ).eval()


def timed(fn, device) -> float:
    """Wall time on CUDA; on the CPU the process's CPU time, which other jobs on a shared machine disturb less."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        return time.perf_counter() - start
    start = time.process_time()
    fn()
    return time.process_time() - start


def bench_overhead(small: bool, repeats: int, device: torch.device) -> None:
    import insilico
    from captum.attr import NeuronDeconvolution, NeuronGradient, NeuronGuidedBackprop

    if small:
        model, layer, neuron, size, name = small_cnn(), "6", (12, 4, 4), 32, "small CNN"
    else:
        import torchvision

        model, layer, neuron, size, name = torchvision.models.alexnet(weights=None).eval(), "features.10", (12, 6, 6), 224, "AlexNet"
    model = model.to(device)
    module = dict(model.named_modules())[layer]
    unit = f"{layer}[{','.join(map(str, neuron))}]"
    x = torch.rand(32, 3, size, size, device=device)
    print(f"\n== gradient maps: {name}, batch 32, unit {unit}, device {device}, best of {repeats} ({'wall' if device.type == 'cuda' else 'CPU'} seconds) ==")
    print(f"{'method':10s} {'insilico s':>11s} {'captum s':>9s} {'ratio':>6s} {'max |diff|':>11s}")
    peers = {"gradient": NeuronGradient, "guided": NeuronGuidedBackprop, "deconv": NeuronDeconvolution}
    for method, peer in peers.items():
        attribution = peer(model, module)
        ours = lambda: insilico.gradient_map(model, x, unit, method=method)  # noqa: E731
        theirs = lambda: attribution.attribute(x.clone().requires_grad_(), neuron_selector=neuron)  # noqa: E731
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            diff = float((ours() - theirs()).abs().max())  # also warms up
            t_ours, t_theirs = [], []
            for _ in range(repeats):
                t_ours.append(timed(ours, device))
                t_theirs.append(timed(theirs, device))
        a, b = min(t_ours), min(t_theirs)
        print(f"{method:10s} {a:11.4f} {b:9.4f} {a / b:6.2f} {diff:11.2e}")


class LazyStimuli(torch.utils.data.Dataset):
    """Random 3 x 32 x 32 images made on demand from their index (nothing is stored)."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(i)), i


def exemplar_child(n: int) -> None:
    import tracemalloc

    import insilico

    model = small_cnn()
    tracemalloc.start()
    start = time.perf_counter()
    result = insilico.top_exemplars(model, LazyStimuli(n), ["2[3]", "5[7]", "10[2]"], k=9, batch_size=250, progress=False)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    rss = peak_rss_mb()
    print(json.dumps({"n": n, "seconds": seconds, "peak_rss_mb": rss, "tracemalloc_peak_mb": peak / 2**20,
                      "top": result[0].indices[:3].tolist()}))


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; unlike ru_maxrss it is not inherited from the parent)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_exemplars() -> None:
    print("\n== top_exemplars over a lazy Dataset (small CNN, 3 units, batch 250), fresh process each ==")
    print(f"{'stimuli':>8s} {'seconds':>8s} {'peak RSS MB':>12s} {'tracemalloc peak MB':>20s}")
    rows = []
    for n in (1_000, 10_000):
        out = subprocess.run([sys.executable, __file__, "--exemplar-child", str(n)], capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{n:8d} {row['seconds']:8.2f} {row['peak_rss_mb']:12.1f} {row['tracemalloc_peak_mb']:20.2f}")
    print(f"peak RSS ratio 10,000 / 1,000: {rows[1]['peak_rss_mb'] / rows[0]['peak_rss_mb']:.3f} (flat = 1.0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="small CNN on 32 x 32 instead of AlexNet")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1: steadier timings on a shared machine)")
    parser.add_argument("--skip-exemplars", action="store_true")
    parser.add_argument("--exemplar-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.exemplar_child:
        exemplar_child(args.exemplar_child)
        return
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bench_overhead(args.small, args.repeats, torch.device(args.device))
    if not args.skip_exemplars:
        bench_exemplars()


if __name__ == "__main__":
    main()
