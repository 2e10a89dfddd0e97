"""Op units and attention heads: overhead against a plain forward and against torchlens.

    python benchmarks/bench_ops.py [--repeats 5] [--device cpu] [--threads 0] [--models resnet18 vit_b_16]

For torchvision resnet18 and vit_b_16 (random weights), seconds per forward
(min / median over repeats, timed in turns, no gradients) of:

- ``plain``: the model alone;
- ``modules``: insilico recording 4 module outputs (resnet: ``layerK.0``; vit:
  4 encoder blocks): module hooks only, no op interception (the cost
  everyone paid before op units existed);
- ``ops``: insilico recording 4 op units (resnet: the residual sums
  ``layerK.0/add``; vit: each block's first residual sum ``encoder_layer_K/add``);
- ``heads`` (vit): insilico recording ``:heads`` and ``:weights`` of 4 blocks
  (the fused attention replaced by the written-out math, fast path off);
- ``all ops``: ``probe.survey(x, ops=True)``, every module and op logged (the
  analogue of a full torchlens trace);
- ``torchlens all``: ``torchlens.trace(model, x)`` saving every op (with
  ``unwrap_when_done=True``, so that torch's functions are not left wrapped
  for the other runs; the wrapping is part of its time);
- ``torchlens sel``: ``torchlens.trace(model, x, save=tl.func("iadd"))``
  (vit: ``"add"``), saving only the residual sums (and other adds);

and the ratios to ``plain``. Timings are reported, never asserted.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's insilico, not an installed one
from _threads import limit_threads  # noqa: E402

import insilico  # noqa: E402

SETUPS = {
    "resnet18": dict(
        build=lambda: torchvision.models.resnet18(),
        shape=(3, 224, 224), batch=16,
        modules=[f"layer{k}.0" for k in range(1, 5)],
        ops=[f"layer{k}.0/add" for k in range(1, 5)],
        heads=[],
        lens="iadd",  # torchlens' name of `out += identity`
    ),
    "vit_b_16": dict(
        build=lambda: torchvision.models.vit_b_16(),
        shape=(3, 224, 224), batch=4,
        modules=[f"encoder.layers.encoder_layer_{k}" for k in (0, 3, 7, 11)],
        ops=[f"encoder.layers.encoder_layer_{k}/add" for k in (0, 3, 7, 11)],
        heads=[f"encoder.layers.encoder_layer_{k}.self_attention:{part}" for k in (0, 3, 7, 11)
               for part in ("heads", "weights")],
        lens="add",
    ),
}


def _time(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def round_robin(runs, repeats):
    """Min and median seconds of each run, timed in turns (one of each per round), so that load
    changes on a shared machine hit every run alike; a run that fails is reported and dropped."""
    times = {}
    for label, fn in runs.items():
        try:
            fn()  # warm-up
            times[label] = []
        except Exception as error:  # a peer failing on this model: report, go on
            print(f"  {label} failed: {type(error).__name__}: {str(error)[:200]}")
    for _ in range(repeats):
        for label in times:
            times[label].append(_time(runs[label]))
    return {label: (min(t), statistics.median(t)) for label, t in times.items()}


def bench(name, args):
    setup = SETUPS[name]
    torch.manual_seed(0)
    model = setup["build"]().eval().to(args.device)
    x = torch.rand(args.batch or setup["batch"], *setup["shape"], device=args.device)
    probe = insilico.Probe(model)

    def plain():
        with torch.no_grad():
            model(x)

    def recorder(units):
        def run():
            with torch.no_grad(), probe.record(*units) as rec:
                model(x)
            return [rec[u] for u in units]
        return run

    runs = {"plain": plain, "modules": recorder(setup["modules"]), "ops": recorder(setup["ops"])}
    if setup["heads"]:
        runs["heads"] = recorder(setup["heads"])
    runs["all ops"] = lambda: probe.survey(x, ops=True)
    try:
        import torchlens as tl
        from torchlens.options import CaptureOptions

        # unwrap after each trace: torchlens otherwise leaves torch's functions wrapped, slowing the other runs
        unwrap = CaptureOptions(unwrap_when_done=True)
        runs["torchlens all"] = lambda: tl.trace(model, x, capture=unwrap)
        runs["torchlens sel"] = lambda: tl.trace(model, x, save=tl.func(setup["lens"]), capture=unwrap)
    except Exception as error:  # torchlens missing: report, don't crash
        print(f"torchlens unavailable: {error}")
    results = round_robin(runs, args.repeats)
    base = results["plain"][0]
    print(f"{name}, batch {x.shape[0]}, {tuple(x.shape[1:])}, {args.device}, threads {torch.get_num_threads()} "
          "(min / median s, ratio of min to plain):")
    for label, (low, mid) in results.items():
        print(f"  {label:14s} {low:8.4f} / {mid:8.4f}   x{low / base:6.2f}")
    return {label: low / base for label, (low, _) in results.items()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=0, help="batch size (default: 16 resnet18, 4 vit_b_16)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="limit torch/BLAS threads (0: leave alone)")
    parser.add_argument("--models", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    args = parser.parse_args()
    limit_threads(args.threads)
    if len(args.models) == 1:
        print(json.dumps({"torch": torch.__version__, "torchvision": torchvision.__version__}))
    if len(args.models) > 1:  # one process per model: torchlens leaves torch's functions wrapped after a trace
        for name in args.models:
            subprocess.run([sys.executable, __file__, *sys.argv[1:], "--models", name], check=False)
    else:
        ratios = {name: bench(name, args) for name in args.models}
        print(json.dumps({"ratios_to_plain": ratios}))
