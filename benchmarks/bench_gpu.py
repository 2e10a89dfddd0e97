"""GPU performance pass: our tools against the raw model's throughput, in fp32 and bf16, and against the peers.

    python benchmarks/bench_gpu.py                        # CUDA: torchvision ResNet-50 (random init), 224 px, batch 64
    python benchmarks/bench_gpu.py --device cpu --quick   # smoke run: bundled minialex, batch 8, a few steps

For each precision (fp32, then bf16; on CUDA with channels-last weights: ``precision=``/``channels_last=`` of
maximize and record_stimuli, :func:`insilico.performance.tuned` around the others) it measures, best of
``--repeats`` after one warm-up, synchronised:

- raw fwd+bwd: ``model(x)`` and a backward pass to the input (parameters frozen): images/s, the ceiling
  of any gradient tool;
- maximize: ``insilico.maximize`` of ``batch`` logit units for ``--steps`` steps, with its defaults
  (Fourier parameterization, per-sample transforms) and bare (pixel, no transforms): images*steps/s;
- pgd: ``insilico.design.adversarial.pgd`` (no early stop), images*steps/s;
- plain inference: ``model(x)`` over the batches of ``--stimuli`` images on the device, no grad: images/s;
- record_stimuli: the same batches recording ``--record-layer`` in memory: stimuli/s.

Prints each throughput and the ratios (targets: maximize >= 0.70 of raw fwd+bwd, recording >= 0.90 of
plain inference), then the peers when importable (``pip install -e .[bench]``), in fp32: lucent's
``render_vis`` against maximize, torchattacks' PGD against pgd, torchlens' ``trace`` against
record_stimuli. plenoptic (metamers, one image at a time) is compared in ``bench_metamers.py``.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _threads import limit_threads  # noqa: E402

import insilico  # noqa: E402
from insilico.jsonfiles import write_json  # noqa: E402
from insilico.performance import tuned  # noqa: E402

RECORD_LAYER = {"resnet50": "avgpool", "resnet18": "avgpool", "minialex": "features.12", "alexnet": "features.12"}


def build(name: str, device: str) -> tuple[nn.Module, tuple, str]:
    """The model (eval, frozen, on ``device``), its input shape and its logit layer."""
    if name in insilico.models.available():
        model = insilico.models.load(name)
    else:
        import torchvision

        torch.manual_seed(0)
        model = getattr(torchvision.models, name)()
    model = model.eval().to(device).requires_grad_(False)
    shape = tuple(getattr(model, "input_size", (3, 224, 224)))
    logits = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    return model, shape, logits


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def best_seconds(fn, device: str, repeats: int) -> float:
    fn()  # warm-up (cuDNN autotuning, allocator)
    best = math.inf
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def ours(model, shape, logits, args, precision: str) -> dict:
    """Throughputs of the raw model and of our tools in one precision."""
    dev, b, steps = args.device, args.batch, args.steps
    n_out = dict(model.named_modules())[logits].out_features
    k = min(b, n_out)
    units = [f"{logits}[{c}]" for c in range(k)]
    x = torch.rand(b, *shape, device=dev)
    stimuli = torch.rand(args.stimuli, *shape, device=dev)
    labels = torch.arange(b, device=dev) % n_out
    layer = args.record_layer or RECORD_LAYER.get(args.model, logits)
    channels_last = dev.startswith("cuda")

    def raw():
        xg = x.clone().requires_grad_(True)
        model(xg)[:, :k].sum().backward()

    def maximize(**options):
        insilico.maximize(model, units, images_per_unit=b // k, steps=steps, batch_size=b, progress=False,
                          size=shape, precision=precision, channels_last=channels_last, **options)

    def attack():
        insilico.design.adversarial.pgd(model, x, labels, eps=4 / 255, steps=steps, early_stop=False, batch_size=b,
                                 progress=False)

    def plain():
        with torch.no_grad():
            for start in range(0, len(stimuli), b):
                model(stimuli[start:start + b])

    def record():
        insilico.Probe(model).record_stimuli(stimuli, layer, batch_size=b, progress=False, precision=precision,
                                             channels_last=channels_last)

    def tuned_run(fn):  # the raw model and pgd (no precision option yet) run inside the same settings
        def run():
            with tuned(model, precision, channels_last):
                fn()
        return run

    out = {}
    out["raw fwd+bwd"] = b / best_seconds(tuned_run(raw), dev, args.repeats)
    out["maximize"] = b * steps / best_seconds(maximize, dev, args.repeats)
    out["maximize bare"] = b * steps / best_seconds(
        lambda: maximize(parameterization="pixel", transforms=None), dev, args.repeats)
    out["pgd"] = b * steps / best_seconds(tuned_run(attack), dev, args.repeats)
    out["plain inference"] = len(stimuli) / best_seconds(tuned_run(plain), dev, args.repeats)
    out["record_stimuli"] = len(stimuli) / best_seconds(record, dev, args.repeats)
    return out


def peers(model, shape, logits, args) -> dict:
    """Throughputs of lucent, torchattacks and torchlens (fp32), where they import."""
    dev, b, steps = args.device, args.batch, args.steps
    n_out = dict(model.named_modules())[logits].out_features
    k = min(b, n_out)
    layer = args.record_layer or RECORD_LAYER.get(args.model, logits)
    out = {}
    try:
        from bench_maximize import run_lucent

        out["lucent render_vis"] = k * steps / best_seconds(
            lambda: run_lucent(model, logits, list(range(k)), shape[-1], steps), dev, args.repeats)
    except Exception as error:  # not installed, or failing on this model: report, don't crash
        print(f"lucent skipped: {type(error).__name__}: {error}")
    try:
        import torchattacks

        x = torch.rand(b, *shape, device=dev)
        y = torch.arange(b, device=dev) % n_out
        attack = torchattacks.PGD(model, eps=4 / 255, alpha=1 / 255, steps=steps, random_start=True)
        out["torchattacks PGD"] = b * steps / best_seconds(lambda: attack(x, y), dev, args.repeats)
    except Exception as error:
        print(f"torchattacks skipped: {type(error).__name__}: {error}")
    try:
        import torchlens as tl

        stimuli = torch.rand(args.stimuli, *shape, device=dev)

        def lens():
            with torch.no_grad():
                for start in range(0, len(stimuli), b):
                    tl.trace(model, stimuli[start:start + b], save=tl.module(layer))

        out["torchlens trace"] = len(stimuli) / best_seconds(lens, dev, args.repeats)
    except Exception as error:
        print(f"torchlens skipped: {type(error).__name__}: {error}")
    return out


RATIOS = [  # (ours, reference, target)
    ("maximize", "raw fwd+bwd", 0.70), ("maximize bare", "raw fwd+bwd", None), ("pgd", "raw fwd+bwd", None),
    ("record_stimuli", "plain inference", 0.90),
]
PEER_RATIOS = [("maximize", "lucent render_vis"), ("pgd", "torchattacks PGD"), ("record_stimuli", "torchlens trace")]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", default=None, help="bundled name or torchvision model (default resnet50; "
                                                       "minialex with --quick)")
    parser.add_argument("--batch", type=int, default=None, help="images per batch (default 64; 8 with --quick)")
    parser.add_argument("--steps", type=int, default=None, help="synthesis steps (default 32; 4 with --quick)")
    parser.add_argument("--stimuli", type=int, default=None, help="images recorded (default 1024; 32 with --quick)")
    parser.add_argument("--record-layer", default=None)
    parser.add_argument("--repeats", type=int, default=None, help="timed runs, best counts (default 3; 1 with --quick)")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--quick", action="store_true", help="small everything, for a smoke test on the CPU")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    quick = args.quick
    for name, full, small in [("model", "resnet50", "minialex"), ("batch", 64, 8), ("steps", 32, 4),
                              ("stimuli", 1024, 32), ("repeats", 3, 1)]:
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)
    limit_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
        print(f"device: {torch.cuda.get_device_name()}; torch {torch.__version__}")
    else:
        print(f"device: cpu ({torch.get_num_threads()} threads); torch {torch.__version__}")
    model, shape, logits = build(args.model, args.device)
    print(f"model {args.model} {shape}, batch {args.batch}, {args.steps} steps, {args.stimuli} stimuli recorded")
    started = time.perf_counter()
    report = {}
    for precision in args.precisions:
        report[precision] = numbers = ours(model, shape, logits, args, precision)
        print(f"\n[{precision}]")
        for name, value in numbers.items():
            print(f"  {name:18s} {value:12.1f} /s")
        for a, ref, target in RATIOS:
            aim = f"  (target >= {target:.2f})" if target else ""
            print(f"  {a} / {ref}: {numbers[a] / numbers[ref]:.2f}{aim}")
    if not args.no_peers:
        report["peers fp32"] = theirs = peers(model, shape, logits, args)
        print("\n[peers, fp32]")
        for name, value in theirs.items():
            print(f"  {name:18s} {value:12.1f} /s")
        for a, peer in PEER_RATIOS:
            if peer in theirs:
                print(f"  insilico {a} / {peer}: {report['fp32'][a] / theirs[peer]:.2f}")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    if args.json:
        write_json(args.json, report)


if __name__ == "__main__":
    main()
