"""Recording overhead: insilico vs a plain forward vs torchlens, and streaming memory.

    python benchmarks/bench_recording.py [--repeats 5] [--batch 64] [--size 224] [--device cpu]

Prints, for torchvision AlexNet (random init) at batch 64, 3 layers recorded
detached: seconds per forward for (a) the plain model, (b) insilico's
``Probe.record``, (c) torchlens ``trace(save=[...])`` on the same layers, and
the ratios. Then the peak RSS of streaming 1,000 and 10,000 stimuli to disk
with ``record_stimuli`` (each in a fresh process), which should be flat.
"""
import argparse
import json
import subprocess
import sys

import torch
import torchvision

import insilico
from _timing import best_of  # noqa: E402  (benchmarks/, the script's folder)

LAYERS = ["features.2", "features.5", "features.12"]


def overhead(args):
    model = torchvision.models.alexnet().eval().to(args.device)
    x = torch.rand(args.batch, 3, args.size, args.size, device=args.device)
    probe = insilico.Probe(model)

    def plain():
        with torch.no_grad():
            model(x)

    def ours():
        with torch.no_grad(), probe.record(*LAYERS) as rec:
            model(x)
        return [rec[u] for u in LAYERS]

    results = {"plain": best_of(plain, args.repeats, warm_up=True), "insilico": best_of(ours, args.repeats, warm_up=True)}
    try:
        import torchlens as tl

        selection = tl.module(LAYERS[0])
        for layer in LAYERS[1:]:
            selection = selection | tl.module(layer)

        def lens():
            with torch.no_grad():
                return tl.trace(model, x, save=selection)

        results["torchlens"] = best_of(lens, args.repeats, warm_up=True)
    except Exception as error:  # torchlens missing or failing: report, don't crash
        print(f"torchlens unavailable: {error}")
    print(f"AlexNet, batch {args.batch}, {args.size}px, {args.device}, record {LAYERS} (min / median s):")
    for name, (low, mid) in results.items():
        print(f"  {name:10s} {low:.4f} / {mid:.4f}")
    base = results["plain"][0]
    print(f"  ratio insilico / plain forward: {results['insilico'][0] / base:.3f}  (target <= 1.10)")
    if "torchlens" in results:
        print(f"  ratio torchlens / plain forward: {results['torchlens'][0] / base:.3f}")
        print(f"  ratio insilico / torchlens:     {results['insilico'][0] / results['torchlens'][0]:.3f}  (target < 1)")


STREAM = """
import resource, sys, tempfile, torch, insilico
n = int(sys.argv[1])
class Lazy(torch.utils.data.Dataset):
    def __len__(self): return n
    def __getitem__(self, i):
        return torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(i))
model = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 5, stride=2), torch.nn.ReLU(), torch.nn.Conv2d(32, 64, 3), torch.nn.ReLU())
with tempfile.TemporaryDirectory() as out:
    rec = insilico.Probe(model).record_stimuli(Lazy(), ["1", "3"], batch_size=100, out=out, progress=False)
    assert rec["3"].shape[0] == n
    size = sum(rec.array(u).nbytes for u in rec.units)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, size / 2**20)
"""


def streaming():
    print("Streaming to disk (fresh process each; peak RSS in MiB):")
    peaks = {}
    for n in (1000, 10000):
        out = subprocess.run([sys.executable, "-c", STREAM, str(n)], capture_output=True, text=True, check=True)
        peak, written = map(float, out.stdout.split())
        peaks[n] = peak
        print(f"  {n:6d} stimuli: peak RSS {peak:8.1f} MiB, recording on disk {written:8.1f} MiB")
    print(f"  ratio peak RSS 10,000 / 1,000: {peaks[10000] / peaks[1000]:.3f}  (target ~1.0: flat)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-streaming", action="store_true")
    args = parser.parse_args()
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads()}))
    overhead(args)
    if not args.skip_streaming:
        streaming()
