"""Scale of the model: Probe.names() / survey() / unit resolution against one forward pass (issue 25, item 6).

    python benchmarks/bench_scale.py [--blocks 250 500 1000 2000] [--timm ghostnetv3_050] [--threads 1]

A synthetic deep model (``nn.Sequential`` of tiny blocks, 3 modules each: a 1x1
conv, a BatchNorm and a ReLU in a block ``Sequential``, so ``--blocks 667`` is
~2,000 modules) and, when timm is installed, a real many-module timm model
(random weights). For each it prints the seconds of one forward pass, of
``names()`` (module paths), ``names(example)`` (one surveyed pass),
``survey(example)``, ``names(example, ops=True)`` (every op of every module's own forward too) and ``units(*every path)`` (every address resolved), and
each one's ratio to the forward pass (the target: ``names(example)`` within
3x of one forward pass on a 2,000-module model). Best of ``--repeats``.
Timings are printed, never asserted (tests/test_scale.py checks the
property that makes them linear: a fixed number of module traversals per call).
Run it from the repository root with ``PYTHONPATH=.`` to time this checkout rather than an installed copy.

Measured (2 shared cores, one thread, best of 9, this checkout against the one before, run in turns):
one global survey hook instead of 2,001 module hooks, and a session that sets ``training`` past
``nn.Module.__setattr__``, took ``names(example)`` of the 2,001-module Sequential from 5.4-5.9x to
2.5-2.6x one forward pass (``names(example, ops=True)`` 16x to 11x) and of ghostnetv3_050 (2,269
modules) from 1.7-3.2x to 1.5-1.6x.
"""
import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _threads import limit_threads  # noqa: E402
from _timing import best_of  # noqa: E402

import insilico  # noqa: E402


def deep_model(blocks: int) -> nn.Module:
    """``blocks`` tiny conv blocks in a row: 1 + 4 * blocks modules (the model, each block and its 3 layers)."""
    return nn.Sequential(*[nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4), nn.ReLU()) for _ in range(blocks)])


def measure(name: str, model: nn.Module, x: torch.Tensor, repeats: int) -> None:
    model.eval()
    probe = insilico.Probe(model)
    paths = probe.names()
    with torch.no_grad():
        forward = best_of(lambda: model(x), repeats)[0]
    rows = {
        "names()": best_of(probe.names, repeats)[0],
        "names(x)": best_of(lambda: probe.names(x), repeats)[0],
        "survey(x)": best_of(lambda: probe.survey(x), repeats)[0],
        "names(x, ops)": best_of(lambda: probe.names(x, ops=True), repeats)[0],
        "units(all)": best_of(lambda: probe.units(*paths), repeats)[0],
    }
    cells = "  ".join(f"{k} {v:8.4f}s ({v / forward:6.2f}x)" for k, v in rows.items())
    print(f"{name:<22} {len(paths):>6} modules  forward {forward:8.4f}s  {cells}", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, nargs="*", default=[63, 125, 250, 500])
    parser.add_argument("--timm", nargs="*", default=["ghostnetv3_050"], help="timm models (skipped without timm)")
    parser.add_argument("--size", type=int, default=224, help="input size of the timm models")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    limit_threads(args.threads)
    torch.manual_seed(0)
    for blocks in args.blocks:
        measure(f"deep Sequential x{blocks}", deep_model(blocks), torch.rand(1, 4, 8, 8), args.repeats)
    try:
        import timm
    except ImportError:
        print("timm is not installed: the timm rows are skipped")
        return
    for name in args.timm:
        model = timm.create_model(name, pretrained=False)
        measure(name, model, torch.rand(1, 3, args.size, args.size), args.repeats)


if __name__ == "__main__":
    main()
